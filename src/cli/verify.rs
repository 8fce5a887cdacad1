//! `popbackup verify`: the verdict on the repository, for people and for cron.

use super::{GlobalArgs, human_bytes};
use crate::repo::{RepoError, Repository};
use crate::verify::{self, DataCheck, VerifyOptions, VerifyReport};

/// The arguments of `verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Check the structure only; read no message data
    #[arg(long, conflicts_with = "read_data_subset")]
    pub quick: bool,
    /// Read only part of the data: N% of the packs at random, or part K of T (run 1/T … T/T
    /// on successive days to cover everything)
    #[arg(long, value_name = "N%|K/T", value_parser = DataCheck::parse_subset)]
    pub read_data_subset: Option<DataCheck>,
}

pub fn run(
    repo: Repository,
    args: &VerifyArgs,
    global: &GlobalArgs,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<u8> {
    let data = match (args.quick, args.read_data_subset) {
        (true, _) => DataCheck::Quick,
        (false, Some(subset)) => subset,
        (false, None) => DataCheck::Full,
    };
    let mut report = verify::verify(&repo, VerifyOptions { data, threads: 0 })?;
    // Record what was found intact; a busy repository only means it is recorded next time.
    // A read-only repository (a backup disk mounted read-only) is verified all the same.
    let recorded = repo
        .reopen()
        .and_then(|r| r.lock("verify"))
        .and_then(|mut writer| verify::record(&mut writer, &report));
    match recorded {
        Ok(()) => {}
        Err(RepoError::Locked { holder, .. }) => report.notes.push(format!(
            "the result was not recorded: the repository is locked by {holder}"
        )),
        Err(e @ RepoError::Io { .. }) => report
            .notes
            .push(format!("the result was not recorded: {e}")),
        Err(e) => return Err(e.into()),
    }
    if global.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        print_human(&report, global.quiet, out)?;
    }
    Ok(if report.clean {
        super::exit::OK
    } else {
        super::exit::DATA_ERR
    })
}

fn print_human(
    report: &VerifyReport,
    quiet: bool,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    for m in &report.damaged_messages {
        writeln!(out, "DAMAGED message {}: {}", m.hash, m.problem)?;
        for r in &m.references {
            writeln!(
                out,
                "    in snapshot {} (account {}): UIDL {}, {}, from {}, subject {}",
                r.snapshot,
                r.account,
                dash(&r.uidl),
                dash(&r.date),
                dash(&r.from),
                dash(&r.subject)
            )?;
        }
    }
    for p in &report.damaged_packs {
        writeln!(out, "DAMAGED pack {}: {}", p.pack, p.problems.join("; "))?;
        writeln!(
            out,
            "    {} message(s) still readable from it, {} lost from it; snapshots concerned: {}",
            p.readable.len(),
            p.lost.len(),
            if p.snapshots.is_empty() {
                "none".to_string()
            } else {
                p.snapshots
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )?;
    }
    for s in &report.damaged_snapshots {
        writeln!(out, "DAMAGED snapshot {}: {}", s.snapshot, s.problem)?;
    }
    for d in &report.damaged_dictionaries {
        writeln!(out, "DAMAGED dictionary {d}")?;
    }
    for p in &report.index_problems {
        writeln!(out, "INDEX: {p}")?;
    }
    for f in &report.damaged_files {
        writeln!(out, "DAMAGED {f}")?;
    }
    if quiet && report.clean {
        return Ok(());
    }
    for n in &report.notes {
        writeln!(out, "note: {n}")?;
    }
    let rate = if report.elapsed_seconds > 0.0 {
        report.message_bytes as f64 / report.elapsed_seconds
    } else {
        0.0
    };
    writeln!(
        out,
        "{} check of {}: {} snapshots, {} packs ({} read), {} messages ({} re-hashed, {}) in {:.1} s ({}/s)",
        report.mode,
        report.repository,
        report.snapshots,
        report.packs,
        report.packs_read.len(),
        report.messages,
        report.messages_read,
        human_bytes(report.message_bytes),
        report.elapsed_seconds,
        human_bytes(rate as u64),
    )?;
    if report.clean {
        // What vouches for the data: this run's reads, earlier ones' (packs are immutable, so
        // a pack read back intact once stays verified), or both.
        let oldest = report
            .verified_state
            .packs
            .values()
            .min()
            .map(|t| super::human_time_text(t));
        let by = match (report.packs_read.len(), oldest) {
            (n, _) if n == report.packs => "by this check".to_string(),
            (0, Some(oldest)) => format!("by earlier checks, the oldest of {oldest}"),
            (_, Some(oldest)) => {
                format!("by this check and earlier ones, the oldest of {oldest}")
            }
            (_, None) => String::new(),
        };
        if by.is_empty() {
            writeln!(
                out,
                "no damage found in the structure; no data has been read back yet (run \
                 `popbackup verify` without --quick to read it)"
            )?;
        } else {
            writeln!(
                out,
                "no damage found; {} of {} snapshots have all their data verified {by}",
                report.verified_snapshots.len(),
                report.snapshots
            )?;
        }
    } else {
        writeln!(
            out,
            "DAMAGE FOUND: {} message(s), {} pack(s), {} snapshot(s), {} dictionar(y/ies), {} \
             index problem(s), {} other file(s)",
            report.damaged_messages.len(),
            report.damaged_packs.len(),
            report.damaged_snapshots.len(),
            report.damaged_dictionaries.len(),
            report.index_problems.len(),
            report.damaged_files.len()
        )?;
        if !report.damaged_messages.is_empty() || !report.damaged_packs.is_empty() {
            writeln!(
                out,
                "to heal: run `popbackup snapshot`: it downloads the damaged messages again from \
                 the servers that still have them and retires the damaged packs; then run \
                 `popbackup verify` again (forget and prune refuse to run until then)"
            )?;
        }
    }
    Ok(())
}
