//! `popbackup inventory ACCOUNT`: what is new, archived and vanished, without downloading.

use super::{GlobalArgs, human_bytes, warn};
use crate::config::Config;
use crate::repo::Repository;
use crate::snapshot;

pub fn run(
    global: &GlobalArgs,
    config_path: &std::path::Path,
    account: &str,
    no_headers: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    for w in &config.warnings {
        warn(None, w);
    }
    let repo_path = super::configured_location(global, &config)?;
    let account = config.select(&[account.to_string()])?[0];
    let repo = Repository::open_with(
        &repo_path,
        &super::repository_password(config_path, Some(&config)),
    )?;
    let report = snapshot::inspect(account, &repo, !no_headers)?;
    for w in &report.warnings {
        warn(Some(&report.account), w);
    }
    if global.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
        return Ok(());
    }
    let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    writeln!(
        out,
        "{}: {} messages on the server ({}); {} already archived{}",
        report.account,
        report.messages_on_server,
        human_bytes(report.bytes_on_server),
        report.already_archived,
        report
            .previous_snapshot
            .as_ref()
            .map(|s| format!(" (latest snapshot {s})"))
            .unwrap_or_else(|| " (no snapshot yet)".into()),
    )?;
    let new_bytes: u64 = report.new.iter().map(|m| m.size).sum();
    writeln!(
        out,
        "new: {} ({})",
        report.new.len(),
        human_bytes(new_bytes)
    )?;
    let width = super::browse::terminal_width();
    let fit = |line: String| match width {
        Some(w) => super::browse::cut(&line, w),
        None => line,
    };
    if !report.new.is_empty() {
        writeln!(
            out,
            "  {:>6} {:>10}  {:<31}  {:<30}  SUBJECT",
            "MSG", "SIZE", "DATE", "FROM"
        )?;
    }
    for m in &report.new {
        let line = format!(
            "  {:>6} {:>10}  {:<31}  {:<30}  {}",
            m.msg,
            human_bytes(m.size),
            dash(&m.date),
            super::browse::cut(&dash(&m.from), 30),
            dash(&m.subject)
        );
        writeln!(out, "{}", fit(line))?;
    }
    writeln!(
        out,
        "vanished from the server since the latest snapshot (still archived): {}",
        report.vanished.len()
    )?;
    if !report.vanished.is_empty() {
        writeln!(out, "  {:<31}  {:<30}  SUBJECT  [UIDL]", "DATE", "FROM")?;
    }
    for m in &report.vanished {
        let line = format!(
            "  {:<31}  {:<30}  {}  [{}]",
            dash(&m.date),
            super::browse::cut(&dash(&m.from), 30),
            dash(&m.subject),
            dash(&m.uidl)
        );
        writeln!(out, "{}", fit(line))?;
    }
    Ok(())
}
