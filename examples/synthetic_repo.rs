//! Builds a repository of synthetic mail for measurements: every message of the corpus
//! (`$POPBACKUP_CORPUS/messages`), `COPIES` times over, each copy made unique by one added
//! header line, committed as one snapshot per copy.
//!
//! Usage: `cargo run --release --example synthetic_repo -- REPO COPIES`

use std::path::PathBuf;

use popbackup::repo::{Manifest, MessageRecord, Repository, ServerInfo, SnapshotId, Tool};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let repo_path = PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: REPO COPIES"))?,
    );
    let copies: usize = args.next().unwrap_or_else(|| "10".into()).parse()?;
    let corpus = PathBuf::from(
        std::env::var("POPBACKUP_CORPUS").unwrap_or_else(|_| "../shared/corpus".into()),
    );
    let mut files: Vec<Vec<u8>> = Vec::new();
    for entry in walkdir::WalkDir::new(corpus.join("messages")).sort_by_file_name() {
        let entry = entry?;
        if entry.file_type().is_file() {
            files.push(std::fs::read(entry.path())?);
        }
    }
    let mut writer = Repository::init(&repo_path)?.lock("synthetic_repo")?;
    let mut raw = 0u64;
    for copy in 0..copies {
        let mut records = Vec::new();
        for (i, file) in files.iter().enumerate() {
            let mut message = format!("X-Synthetic-Copy: {copy}\r\n").into_bytes();
            message.extend_from_slice(file);
            raw += message.len() as u64;
            let stored = writer.store_bytes(&message)?;
            records.push(MessageRecord::stored(
                i as u32 + 1,
                Some(format!("{copy}-{i}")),
                stored.hash(),
                message.len() as u64,
            ));
        }
        let time = chrono::DateTime::from_timestamp(1_767_225_600 + copy as i64, 0)
            .ok_or_else(|| anyhow::anyhow!("time out of range"))?;
        writer.commit(&Manifest {
            version: 1,
            id: SnapshotId::new(time),
            time: time.to_rfc3339(),
            account: format!("copy{copy}"),
            complete: true,
            tool: Tool::default(),
            server: ServerInfo::default(),
            records: None,
            listing: None,
            messages: records,
        })?;
    }
    writer.finish()?;
    println!(
        "{} messages, {raw} bytes, in {}",
        files.len() * copies,
        repo_path.display()
    );
    Ok(())
}
