//! `popbackup import maildir:PATH`: a local Maildir into the archive, as a snapshot.

use super::{GlobalArgs, UsageError, warn};
use crate::import::{self, ImportSource};
use crate::repo::RepoWriter;

pub fn run(
    global: &GlobalArgs,
    config_path: &std::path::Path,
    source: &str,
    account: Option<&str>,
    dry_run: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let source = ImportSource::parse(source).map_err(UsageError)?;
    let account = account.map_or_else(|| source.default_account(), str::to_string);
    let location = super::repository_location(global, config_path)?;
    let mut writer = RepoWriter::open(location, &format!("import {source}"))?;
    let report = import::import(&mut writer, &source, &account, dry_run)?;
    writer.close()?;
    for (path, why) in &report.unreadable {
        warn(
            Some(&account),
            &format!("cannot read {path}: {why}; skipped"),
        );
    }
    if global.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else if !global.quiet {
        writeln!(
            out,
            "{account}: {} files in {source}, {} read ({} unchanged since the last import): {} new \
             messages, {} already archived{}{}",
            report.files,
            report.read,
            report.unchanged,
            report.new_messages,
            report.duplicates,
            match &report.snapshot {
                Some(id) => format!("; snapshot {id}"),
                None => " (dry run: nothing stored)".to_string(),
            },
            if report.unreadable.is_empty() {
                String::new()
            } else {
                format!("; {} unreadable", report.unreadable.len())
            }
        )?;
    }
    if !report.unreadable.is_empty() {
        return Err(crate::repo::RepoError::Corrupt {
            path: source.to_string().into(),
            detail: format!(
                "{} file(s) could not be read and were skipped (named above); what was read is \
                 stored",
                report.unreadable.len()
            ),
        }
        .into());
    }
    Ok(())
}
