//! `popbackup import [maildir:PATH | mbox:PATH | NAME]`: local Maildirs and mboxes into the
//! archive, each folder as a snapshot of its own: the one given, or the `[imports.NAME]`
//! tables of the configuration.

use super::{GlobalArgs, UsageError, warn};
use crate::import::{self, ImportSource};
use crate::repo::RepoWriter;

pub fn run(
    global: &GlobalArgs,
    config_path: &std::path::Path,
    source: Option<&str>,
    account: Option<&str>,
    dry_run: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    // What to import: a source given, a configured import by name, or all of them.
    let configured = || -> anyhow::Result<Vec<crate::config::ImportConfig>> {
        Ok(crate::config::Config::load_optional(config_path)?
            .map(|c| c.imports)
            .unwrap_or_default())
    };
    let jobs: Vec<(ImportSource, String)> = match source {
        Some(text) if text.contains(':') => {
            let source = ImportSource::parse(text).map_err(UsageError)?;
            let name = account.map_or_else(|| source.default_account(), str::to_string);
            vec![(source, name)]
        }
        Some(name) => {
            let found = configured()?.into_iter().find(|i| i.name == name);
            let Some(import) = found else {
                return Err(UsageError(format!(
                    "`{name}` is neither maildir:PATH, mbox:PATH nor an [imports.{name}] table in {}",
                    config_path.display()
                ))
                .into());
            };
            let source = ImportSource::parse(&import.source).map_err(UsageError)?;
            vec![(source, account.unwrap_or(&import.name).to_string())]
        }
        None => {
            let all = configured()?;
            if all.is_empty() {
                return Err(UsageError(format!(
                    "nothing to import: give maildir:PATH or mbox:PATH, or add an [imports.NAME] table with \
                     path = \"maildir:~/Mail/inbox\" to {}",
                    config_path.display()
                ))
                .into());
            }
            all.into_iter()
                .map(|i| {
                    ImportSource::parse(&i.source)
                        .map(|s| (s, i.name))
                        .map_err(UsageError)
                })
                .collect::<Result<_, _>>()?
        }
    };
    // A Maildir's folders are imports of their own.
    let mut planned = Vec::new();
    for (source, account) in &jobs {
        planned.extend(import::plan(source, account)?);
    }
    let jobs = planned;
    let location = super::repository_location(global, config_path)?;
    let mut writer = RepoWriter::open_with(
        location,
        "import",
        &super::repository_password(config_path, None),
    )?;
    let mut unreadable = 0;
    let mut reports = Vec::new();
    for job in &jobs {
        let report = import::import(&mut writer, &job.source, &job.account, dry_run)?;
        unreadable += report.unreadable.len();
        reports.push(report);
    }
    writer.close()?;
    if global.json && jobs.len() == 1 && source.is_some() {
        serde_json::to_writer_pretty(&mut *out, &reports[0])?;
        writeln!(out)?;
    } else if global.json {
        serde_json::to_writer_pretty(&mut *out, &reports)?;
        writeln!(out)?;
    }
    for report in &reports {
        print_report(global, report, out)?;
    }
    if unreadable > 0 {
        return Err(crate::repo::RepoError::Corrupt {
            path: jobs
                .iter()
                .map(|job| job.source.to_string())
                .collect::<Vec<_>>()
                .join(", ")
                .into(),
            detail: format!(
                "{unreadable} message(s) or file(s) could not be read and were skipped (named \
                 above); what was read is stored"
            ),
        }
        .into());
    }
    Ok(())
}

fn print_report(
    global: &GlobalArgs,
    report: &import::ImportReport,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let account = &report.account;
    let source = &report.source;
    for (path, why) in &report.unreadable {
        warn(
            Some(account),
            &format!("cannot read {path}: {why}; skipped"),
        );
    }
    if !global.json && !global.quiet {
        writeln!(
            out,
            "{account}: {} messages in {source}, {} read ({} unchanged since the last import): {} new \
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
    Ok(())
}
