//! `snapshots`, `ls [SNAPSHOT]`, `cat MESSAGE`: reading the repository.
//!
//! Human output has a header row, sizes for people and local times (see `human_time`); on a
//! terminal, long From and Subject fields are cut to its width. `--json` keeps UTC times and
//! exact numbers.

use std::io::Write as _;

use anyhow::Context as _;

use super::{human_bytes, human_time_text};
use crate::repo::{MessageRecord, Repository, SnapshotId};

/// The arguments of `ls`.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Snapshot id (or a unique prefix of it, or `latest`) [default: the latest snapshot of
    /// each account]
    pub snapshot: Option<String>,
    /// Only this account's latest snapshot (without SNAPSHOT)
    #[arg(long, value_name = "NAME", conflicts_with = "snapshot")]
    pub account: Option<String>,
    /// With --json: the whole manifest as stored, pack locations included
    #[arg(long)]
    pub manifest: bool,
}

/// `popbackup snapshots [--account NAME]`.
pub fn snapshots(
    repo: &Repository,
    account: Option<&str>,
    json: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let mut summaries = repo.summaries()?;
    summaries.retain(|s| account.is_none_or(|a| s.account == a));
    if json {
        serde_json::to_writer_pretty(&mut *out, &summaries)?;
        writeln!(out)?;
        return Ok(());
    }
    if summaries.is_empty() {
        match account {
            Some(a) => writeln!(out, "no snapshots of account {a:?} yet")?,
            None => writeln!(out, "no snapshots yet")?,
        }
        return Ok(());
    }
    let width = summaries
        .iter()
        .map(|s| s.account.chars().count())
        .max()
        .unwrap_or(0)
        .max("ACCOUNT".len());
    writeln!(
        out,
        "{:<26}  {:<25}  {:<width$}  {:>8}  {:>10}",
        "ID", "TIME", "ACCOUNT", "MESSAGES", "SIZE"
    )?;
    for s in summaries {
        writeln!(
            out,
            "{:<26}  {:<25}  {:<width$}  {:>8}  {:>10}",
            s.id,
            human_time_text(&s.time),
            s.account,
            s.messages,
            human_bytes(s.bytes)
        )?;
    }
    Ok(())
}

/// The snapshots `ls` lists: the one named, or the latest of each (or one) account.
fn chosen(repo: &Repository, args: &LsArgs) -> anyhow::Result<Vec<SnapshotId>> {
    if let Some(text) = &args.snapshot {
        return Ok(vec![repo.find_snapshot(text)?]);
    }
    let latest = repo.latest_snapshots()?;
    match &args.account {
        Some(account) => match latest.get(account) {
            Some(id) => Ok(vec![id.clone()]),
            None => Err(crate::repo::RepoError::NotFound {
                what: "snapshot of account",
                id: account.clone(),
            }
            .into()),
        },
        None => Ok(latest.into_values().collect()),
    }
}

/// A message as `ls --json` shows it: what the user knows it by, not where it is stored.
#[derive(serde::Serialize)]
struct Listed<'a> {
    msg: u32,
    uidl: Option<&'a str>,
    size: u64,
    sha256: Option<String>,
    date: Option<&'a str>,
    from: Option<&'a str>,
    subject: Option<&'a str>,
    message_id: Option<&'a str>,
    first_seen: Option<&'a str>,
}

impl<'a> Listed<'a> {
    fn of(m: &'a MessageRecord) -> Listed<'a> {
        Listed {
            msg: m.msg,
            uidl: m.uidl.as_deref(),
            size: m.size.unwrap_or(m.list_size),
            sha256: m.sha256.map(|h| h.to_hex()),
            date: m.date.as_deref(),
            from: m.from.as_deref(),
            subject: m.subject.as_deref(),
            message_id: m.message_id.as_deref(),
            first_seen: m.first_seen.as_deref(),
        }
    }
}

/// `popbackup ls [SNAPSHOT] [--account NAME] [--manifest]`.
pub fn ls(
    repo: &Repository,
    args: &LsArgs,
    json: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let ids = chosen(repo, args)?;
    let mut out = std::io::BufWriter::new(out);
    if json && args.manifest {
        // One manifest as stored, or an array of them for several.
        if let [id] = ids.as_slice() {
            serde_json::to_writer_pretty(&mut out, &repo.manifest_view(id)?)?;
        } else {
            let views = ids
                .iter()
                .map(|id| repo.manifest_view(id))
                .collect::<Result<Vec<_>, _>>()?;
            serde_json::to_writer_pretty(&mut out, &views)?;
        }
        writeln!(out)?;
        out.flush().context("cannot write to standard output")?;
        return Ok(());
    }
    if json {
        // `[{snapshot, account, time, messages: [...]}, ...]`, written as it is read.
        writeln!(out, "[")?;
        for (n, id) in ids.iter().enumerate() {
            let mut manifest = repo.manifest_head(id)?;
            write!(
                out,
                "{}{{\"snapshot\":{},\"account\":{},\"time\":{},\"messages\":[",
                if n > 0 { ",\n" } else { "" },
                serde_json::to_string(id)?,
                serde_json::to_string(&manifest.account)?,
                serde_json::to_string(&manifest.time)?
            )?;
            let mut first = true;
            let mut written = Ok(());
            repo.for_each_record(&mut manifest, |m| {
                if written.is_ok() {
                    let sep = if std::mem::take(&mut first) { "" } else { "," };
                    written = write!(out, "{sep}\n  ")
                        .map_err(serde_json::Error::io)
                        .and_then(|()| serde_json::to_writer(&mut out, &Listed::of(&m)));
                }
            })?;
            written?;
            write!(out, "\n]}}")?;
        }
        writeln!(out, "\n]")?;
        out.flush().context("cannot write to standard output")?;
        return Ok(());
    }
    let width = terminal_width();
    for id in &ids {
        // One records file in memory at a time; the first failed write ends the listing.
        let mut manifest = repo.manifest_head(id)?;
        writeln!(
            out,
            "snapshot {id} of {} at {}",
            manifest.account,
            human_time_text(&manifest.time)
        )?;
        writeln!(
            out,
            "{:<16}  {:>9}  {:<31}  FROM / SUBJECT / UIDL",
            "HASH", "SIZE", "DATE"
        )?;
        let mut written = Ok(());
        repo.for_each_record(&mut manifest, |m| {
            if written.is_err() {
                return;
            }
            let hash = m
                .sha256
                .map(|h| h.to_hex()[..16].to_string())
                .unwrap_or_else(|| "(not stored)".into());
            let lead = format!(
                "{hash:<16}  {:>9}  {:<31}  ",
                human_bytes(m.size.unwrap_or(m.list_size)),
                cut(m.date.as_deref().unwrap_or("-"), 31),
            );
            let rest = format!(
                "{}  {}  [{}]",
                m.from.as_deref().unwrap_or("-"),
                m.subject.as_deref().unwrap_or("-"),
                m.uidl.as_deref().unwrap_or("-"),
            );
            let rest = match width {
                Some(w) => cut(&rest, w.saturating_sub(lead.chars().count()).max(20)),
                None => rest,
            };
            written = writeln!(out, "{lead}{rest}");
        })?;
        written?;
    }
    out.flush().context("cannot write to standard output")?;
    Ok(())
}

/// The terminal's width, when standard output is one.
pub(super) fn terminal_width() -> Option<usize> {
    terminal_size::terminal_size_of(std::io::stdout()).map(|(w, _)| usize::from(w.0))
}

/// `text`, cut to at most `max` characters (the last one an ellipsis when cut).
pub(super) fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `popbackup cat MESSAGE`: the exact archived bytes, checked against the hash.
pub fn cat(repo: &Repository, message: &str, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let hash = repo.find_message(message)?;
    repo.copy_message(&hash, out)?;
    out.flush().context("cannot write to standard output")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn long_fields_are_cut_with_an_ellipsis() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("exactly10!", 10), "exactly10!");
        assert_eq!(cut("a longer subject", 10), "a longer …");
        assert_eq!(cut("ünïcødé ok", 5), "ünïc…");
    }
}
