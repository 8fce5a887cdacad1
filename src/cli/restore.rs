//! `popbackup restore --to maildir:PATH|mbox:PATH`: replay archived mail.

use super::{GlobalArgs, human_bytes};
use crate::repo::Repository;
use crate::restore::{self, Destination, Filters, RestoreOptions, Selection};

/// The arguments of `restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Destination: maildir:PATH or mbox:PATH
    #[arg(long, value_name = "maildir:PATH|mbox:PATH", value_parser = Destination::parse)]
    pub to: Destination,
    #[command(flatten)]
    pub select: SelectionArgs,
    /// List what would be written; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Maildir: deliver into cur/ marked as seen instead of new/
    #[arg(long)]
    pub seen: bool,
    /// Keep the archived CRLF line ends instead of converting them to LF
    #[arg(long)]
    pub crlf: bool,
}

/// Which archived messages: the arguments `restore` and `serve` share.
#[derive(Debug, Clone, clap::Args)]
pub struct SelectionArgs {
    /// Only this account [default: every account]
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// This snapshot (id or unique prefix) instead of the latest of each account
    #[arg(long, value_name = "ID")]
    pub snapshot: Option<String>,
    /// Messages dated on or after this day (YYYY-MM-DD) or time (RFC 3339)
    #[arg(long, value_name = "DATE", value_parser = |s: &str| restore::parse_time(s, false))]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Messages dated up to and including this day (YYYY-MM-DD), or before this time
    #[arg(long, value_name = "DATE", value_parser = |s: &str| restore::parse_time(s, true))]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Messages whose From contains this text (case-insensitive)
    #[arg(long, value_name = "TEXT")]
    pub from: Option<String>,
    /// Messages whose Subject contains this text (case-insensitive)
    #[arg(long, value_name = "TEXT")]
    pub subject: Option<String>,
    /// The message with this UIDL
    #[arg(long, value_name = "UIDL")]
    pub uidl: Option<String>,
    /// The message with this Message-ID
    #[arg(long, value_name = "ID")]
    pub message_id: Option<String>,
    /// The message with this SHA-256 (or a prefix of it)
    #[arg(long, value_name = "SHA256")]
    pub hash: Option<String>,
}

impl SelectionArgs {
    /// The selection; with `headers`, each item keeps its UIDL and header fields.
    pub fn selection(&self, headers: bool) -> Selection {
        Selection {
            account: self.account.clone(),
            snapshot: self.snapshot.clone(),
            filters: Filters {
                since: self.since,
                until: self.until,
                from: self.from.clone(),
                subject: self.subject.clone(),
                uidl: self.uidl.clone(),
                message_id: self.message_id.clone(),
                hash: self.hash.clone(),
            },
            headers,
        }
    }
}

pub fn run(
    repo: &Repository,
    args: &RestoreArgs,
    global: &GlobalArgs,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<u8> {
    // A dry run lists what it would write.
    let selection = args.select.selection(args.dry_run);
    let items = restore::select(repo, &selection)?;
    let options = RestoreOptions {
        crlf: args.crlf,
        seen: args.seen,
        dry_run: args.dry_run,
    };
    let report = restore::run(repo, &items, &args.to, options)?;
    for d in &report.damaged {
        eprintln!("popbackup: damaged, not restored: {}: {}", d.hash, d.error);
    }
    if global.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else if items.is_empty() {
        // Said even with -q: the user asked for something and got nothing.
        writeln!(
            out,
            "no archived message matches the selection; nothing was written to {}",
            args.to.path().display()
        )?;
    } else if report.dry_run {
        for item in &report.would_write {
            writeln!(
                out,
                "{}  {:>9}  {:<31}  {:<30}  {}",
                &item.hash.to_hex()[..16],
                human_bytes(item.size),
                item.date.as_deref().unwrap_or("-"),
                item.from.as_deref().unwrap_or("-"),
                item.subject.as_deref().unwrap_or("-"),
            )?;
        }
        writeln!(
            out,
            "dry run: would write {} messages to {}:{} ({} already there); nothing was written",
            report.would_write.len(),
            report.format,
            report.destination.display(),
            report.already_present
        )?;
    } else if !global.quiet {
        writeln!(
            out,
            "restored {} messages ({}) to {}:{}; {} were already there{}",
            report.written,
            human_bytes(report.bytes),
            report.format,
            report.destination.display(),
            report.already_present,
            if report.damaged.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} damaged in the archive (see above)",
                    report.damaged.len()
                )
            }
        )?;
        if report.not_reversible > 0 {
            writeln!(
                out,
                "note: {} messages had bare LF characters; their LF form cannot be turned back \
                 into the archived bytes exactly (restore them with --crlf if that matters)",
                report.not_reversible
            )?;
        }
    }
    Ok(if report.damaged.is_empty() {
        super::exit::OK
    } else {
        super::exit::DATA_ERR
    })
}
