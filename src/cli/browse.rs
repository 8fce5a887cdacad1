//! `snapshots`, `ls SNAPSHOT`, `cat MESSAGE`: reading the repository.

use std::io::Write as _;

use anyhow::Context as _;

use crate::repo::Repository;

/// `popbackup snapshots`.
pub fn snapshots(
    repo: &Repository,
    json: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let summaries = repo.summaries()?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &summaries)?;
        writeln!(out)?;
        return Ok(());
    }
    if summaries.is_empty() {
        writeln!(out, "no snapshots yet")?;
    }
    for s in summaries {
        writeln!(
            out,
            "{}  {}  {:<20} {:>7} messages {:>12} bytes",
            s.id, s.time, s.account, s.messages, s.bytes
        )?;
    }
    Ok(())
}

/// `popbackup ls SNAPSHOT`.
pub fn ls(
    repo: &Repository,
    snapshot: &str,
    json: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let id = repo.find_snapshot(snapshot)?;
    if json {
        let manifest = repo.manifest_view(&id)?;
        let mut out = std::io::BufWriter::new(out);
        serde_json::to_writer_pretty(&mut out, &manifest)?;
        writeln!(out)?;
        out.flush().context("cannot write to standard output")?;
        return Ok(());
    }
    // One records file in memory at a time; the first failed write ends the listing.
    let mut manifest = repo.manifest_head(&id)?;
    let mut written = Ok(());
    repo.for_each_record(&mut manifest, |m| {
        if written.is_err() {
            return;
        }
        let hash = m
            .sha256
            .map(|h| h.to_hex()[..16].to_string())
            .unwrap_or_else(|| "(not stored)".into());
        written = writeln!(
            out,
            "{hash}  {:>9}  {:<31}  {:<30}  {}  [{}]",
            m.size.unwrap_or(m.list_size),
            m.date.as_deref().unwrap_or("-"),
            m.from.as_deref().unwrap_or("-"),
            m.subject.as_deref().unwrap_or("-"),
            m.uidl.as_deref().unwrap_or("-"),
        );
    })?;
    Ok(written?)
}

/// `popbackup cat MESSAGE`: the exact archived bytes, checked against the hash.
pub fn cat(repo: &Repository, message: &str, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let hash = repo.find_message(message)?;
    repo.copy_message(&hash, out)?;
    out.flush().context("cannot write to standard output")?;
    Ok(())
}
