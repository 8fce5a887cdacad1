//! `popbackup snapshot [ACCOUNT...]`: the nightly job. Silent with `-q` when all is well, a
//! line per account otherwise, the spec's JSON object with `--json`; warnings and failures
//! always go to stderr so cron mails them.

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;
use std::time::Instant;

use super::{Failure, GlobalArgs, exit, human_bytes, warn};
use crate::config::Config;
use crate::repo::RepoWriter;
use crate::snapshot::{self, AccountReport, Observer, Outcome, SnapshotOptions};

/// `snapshot --json`: the spec's object (keys in this order, as they always came out).
#[derive(serde::Serialize)]
struct JsonSummary<'a> {
    accounts: Vec<JsonAccount<'a>>,
    /// Damage found by `verify` that this run healed.
    repair: &'a crate::repo::repair::RepairReport,
    elapsed_seconds: f64,
    exit_code: u8,
}

/// An account's report with the exit code the account alone would give.
#[derive(serde::Serialize)]
struct JsonAccount<'a> {
    #[serde(flatten)]
    report: &'a AccountReport,
    exit_code: u8,
}

/// The exit code of one account's run.
fn account_code(report: &AccountReport) -> u8 {
    match (report.outcome, report.failure) {
        (Outcome::Ok, _) => exit::OK,
        (_, Some(kind)) => exit::for_kind(kind),
        (_, None) => exit::SOME_FAILED,
    }
}

/// The exit code for a whole run: 0 when every account succeeded; the accounts' common code
/// when all failed alike (75 busy, 77 authentication, ...); otherwise 1.
fn run_code(reports: &[AccountReport]) -> u8 {
    let failed: Vec<u8> = reports
        .iter()
        .filter(|r| r.outcome != Outcome::Ok)
        .map(account_code)
        .collect();
    match failed.first() {
        None => exit::OK,
        Some(first) if failed.len() == reports.len() && failed.iter().all(|c| c == first) => *first,
        Some(_) => exit::SOME_FAILED,
    }
}

pub fn run(
    global: &GlobalArgs,
    config_path: &std::path::Path,
    names: &[String],
    dry_run: bool,
    out: &mut dyn std::io::Write,
) -> Result<(), Failure> {
    let started = Instant::now();
    let prepared = (|| -> anyhow::Result<_> {
        let config = Config::load(config_path)?;
        for w in &config.warnings {
            warn(None, w);
        }
        let repo_path = super::configured_location(global, &config)?;
        let accounts: Vec<crate::config::Account> =
            config.select(names)?.into_iter().cloned().collect();
        // The lock now; the index loads while the accounts connect.
        let verify = config.verify_before_commit;
        let writer = RepoWriter::open_in_background(
            &repo_path,
            &format!("snapshot {}", names.join(" ")),
            &super::repository_password(config_path, Some(&config)),
            move |w| w.set_verify_before_commit(verify),
        )?;
        Ok((config, accounts, writer))
    })();
    let (config, accounts, writer) = prepared.map_err(super::classify)?;
    // Ctrl-C and systemd's stop end the run cleanly at the next message (a second one ends
    // it at once); without a handler they would kill it like SIGKILL, which loses nothing
    // committed but says nothing either.
    let interrupt = snapshot::Interrupt::install().unwrap_or_default();
    let options = SnapshotOptions {
        parallel_accounts: config.parallel_accounts,
        compression_level: config.compression_level,
        checkpoint_size: config.checkpoint_size,
        checkpoint_interval: config.checkpoint_interval,
        dry_run,
        interrupt: interrupt.clone(),
    };
    let account_refs: Vec<&crate::config::Account> = accounts.iter().collect();
    let bars = (!global.quiet && std::io::stderr().is_terminal()).then(ProgressBars::default);
    let observer: &dyn Observer = match &bars {
        Some(b) => b,
        None => &snapshot::Silent,
    };
    let run = snapshot::run_snapshot(writer, &account_refs, &options, observer);
    let reports = run.reports;
    let finished = run
        .writer
        .and_then(|w| w.close())
        .map_err(|e| super::classify(e.into()));
    let mut code = run_code(&reports);
    for r in &reports {
        for w in &r.warnings {
            warn(Some(&r.account), w);
        }
        if let Some(message) = r.message.as_ref().filter(|_| !r.interrupted) {
            eprintln!(
                "popbackup: {}: {} (exit {}): {message}",
                r.account,
                match r.outcome {
                    Outcome::Temporary => "temporary failure, will retry next run",
                    _ => "failed",
                },
                account_code(r)
            );
        }
    }
    if let Some(signal) = interrupt.signal() {
        // The progress bars were cleared as each account finished.
        let kept: usize = reports.iter().map(|r| r.downloaded).sum();
        eprintln!("popbackup: interrupted: {kept} messages kept; run again to resume");
        code = 128u8.saturating_add(u8::try_from(signal).unwrap_or(0));
    }
    let repair = &run.repair;
    if !repair.healed.is_empty() || !repair.retired_packs.is_empty() {
        // Not a warning: the archive is better than before. Shown unless -q.
        if !global.quiet && !global.json {
            eprintln!(
                "popbackup: repaired: {} damaged message(s) stored again from the server; {} \
                 damaged pack(s) retired; run `popbackup verify` to confirm",
                repair.healed.len(),
                repair.retired_packs.len()
            );
        }
    }
    if !repair.still_damaged.is_empty() {
        warn(
            None,
            &format!(
                "{} damaged message(s) could not be repaired: no server still has them; \
                 `popbackup verify` names them and the snapshots that need them",
                repair.still_damaged.len()
            ),
        );
    }
    let write = |out: &mut dyn std::io::Write| -> std::io::Result<()> {
        if global.json {
            let summary = JsonSummary {
                accounts: reports
                    .iter()
                    .map(|report| JsonAccount {
                        report,
                        exit_code: account_code(report),
                    })
                    .collect(),
                repair,
                elapsed_seconds: started.elapsed().as_secs_f64(),
                exit_code: code,
            };
            // Written as it is serialized, in large writes: a first run with a retention rule
            // on a large mailbox reports tens of thousands of messages.
            let mut buffered = std::io::BufWriter::new(&mut *out);
            serde_json::to_writer_pretty(&mut buffered, &summary)?;
            writeln!(buffered)?;
            buffered.flush()?;
        } else if !global.quiet {
            for r in reports.iter().filter(|r| r.outcome == Outcome::Ok) {
                writeln!(out, "{}", human_line(r))?;
            }
        }
        out.flush()
    };
    write(out).map_err(|e| super::classify(e.into()))?;
    finished?;
    if code == exit::OK {
        Ok(())
    } else {
        Err(Failure::reported(code))
    }
}

fn human_line(r: &AccountReport) -> String {
    let mut parts = vec![format!("{} messages on the server", r.messages_on_server)];
    if r.downloaded == 0 {
        parts.push("nothing new".into());
    } else {
        parts.push(format!(
            "{} downloaded ({}), {} stored ({} written)",
            r.downloaded,
            human_bytes(r.bytes_downloaded),
            r.new_messages,
            human_bytes(r.bytes_written)
        ));
        if r.duplicates > 0 {
            parts.push(format!(
                "{} identical to messages already archived (kept once)",
                r.duplicates
            ));
        }
        if r.refused > 0 {
            parts.push(format!("{} listed but not sent by the server", r.refused));
        }
    }
    if r.vanished > 0 {
        parts.push(format!(
            "{} gone from the server (kept in the archive)",
            r.vanished
        ));
    }
    format!(
        "{}: {}; snapshot {} in {:.1} s",
        r.account,
        parts.join(", "),
        r.snapshot.as_ref().map(|s| s.as_str()).unwrap_or("-"),
        r.elapsed_seconds
    )
}

/// One progress bar per account, drawn on stderr (only created when it is a terminal).
#[derive(Default)]
struct ProgressBars {
    multi: indicatif::MultiProgress,
    bars: Mutex<HashMap<String, indicatif::ProgressBar>>,
}

impl Observer for ProgressBars {
    fn planned(&self, account: &str, _on_server: usize, to_download: usize, bytes: u64) {
        let bar = self.multi.add(indicatif::ProgressBar::new(bytes));
        let style = indicatif::ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(account.to_string());
        bar.set_message(format!("{to_download} messages"));
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(account.to_string(), bar);
        }
    }

    fn downloaded(&self, account: &str, bytes: u64) {
        if let Some(bar) = self.bars.lock().ok().and_then(|b| b.get(account).cloned()) {
            bar.inc(bytes);
        }
    }

    fn finished(&self, report: &AccountReport) {
        if let Some(bar) = self
            .bars
            .lock()
            .ok()
            .and_then(|mut b| b.remove(&report.account))
        {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;

    fn report(outcome: Outcome, failure: Option<FailureKind>) -> AccountReport {
        let mut r = crate::snapshot::engine::AccountReport::for_tests("a");
        r.outcome = outcome;
        r.failure = failure;
        r
    }

    #[test]
    fn run_exit_code() {
        use exit::*;
        let temporary = || report(Outcome::Temporary, Some(FailureKind::Temporary));
        let refused = || report(Outcome::Failed, Some(FailureKind::Auth));
        assert_eq!(run_code(&[]), OK);
        assert_eq!(run_code(&[report(Outcome::Ok, None)]), OK);
        assert_eq!(run_code(&[temporary()]), TEMP_FAIL);
        assert_eq!(run_code(&[refused(), refused()]), NO_PERM);
        assert_eq!(
            run_code(&[report(Outcome::Ok, None), temporary()]),
            SOME_FAILED
        );
        let config = report(Outcome::Failed, Some(FailureKind::Config));
        assert_eq!(run_code(&[refused(), config]), SOME_FAILED);
    }
}
