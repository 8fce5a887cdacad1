//! Test support: a scripted fake POP3 server, the real Dovecot harness, a byte-at-a-time mock
//! stream, and the corpus.

pub mod dovecot;
pub mod fake_server;
pub mod files;
pub mod mock_stream;
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;

/// The `KEY=VALUE` lines of a harness's environment file (`harness.env`, `garage.env`).
pub fn env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every message file of `$POPBACKUP_CORPUS/messages`, sorted by path. Under `CI=true` a missing
/// corpus is a failure; elsewhere the caller skips.
/// A stored manifest's messages (`ls --json --manifest`) by UIDL: each one's `field`.
pub fn field_by_uidl(
    manifest: &serde_json::Value,
    field: &str,
) -> HashMap<String, serde_json::Value> {
    manifest["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["uidl"].as_str().unwrap().to_string(), m[field].clone()))
        .collect()
}

pub fn corpus_messages() -> Option<Vec<(String, Vec<u8>)>> {
    let root = std::env::var_os("POPBACKUP_CORPUS").filter(|v| !v.is_empty());
    let Some(root) = root.map(PathBuf::from) else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but POPBACKUP_CORPUS is not set");
        }
        eprintln!("SKIPPED: POPBACKUP_CORPUS is not set");
        return None;
    };
    let mut files: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(root.join("messages"))
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(&root).unwrap().display().to_string();
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no messages under {}", root.display());
    Some(files)
}

/// A manifest record of a stored message with its header summary filled in.
pub fn record(
    msg: u32,
    uidl: String,
    hash: popbackup::repo::MessageHash,
    size: u64,
    headers: popbackup::mail::HeaderSummary,
) -> popbackup::repo::MessageRecord {
    popbackup::repo::MessageRecord {
        date: headers.date,
        from: headers.from,
        subject: headers.subject,
        message_id: headers.message_id,
        ..popbackup::repo::MessageRecord::stored(msg, Some(uidl), hash, size)
    }
}

/// A complete manifest of `account` taken at `time` listing `messages`.
pub fn manifest(
    account: &str,
    time: chrono::DateTime<chrono::Utc>,
    messages: Vec<popbackup::repo::MessageRecord>,
) -> popbackup::repo::Manifest {
    popbackup::repo::Manifest {
        version: 1,
        id: popbackup::repo::SnapshotId::new(time),
        time: time.to_rfc3339(),
        account: account.into(),
        complete: true,
        tool: popbackup::repo::Tool::default(),
        server: popbackup::repo::ServerInfo::default(),
        records: None,
        listing: None,
        messages,
    }
}

/// A message of about `size` bytes of varied text, which zstd cannot shrink much: a pack
/// larger than one upload part.
pub fn large_message(size: usize) -> Vec<u8> {
    let mut out = b"From: big@example.org\nSubject: a large attachment\n\n".to_vec();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    while out.len() < size {
        for _ in 0..76 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push(alphabet[(x % 64) as usize]);
        }
        out.push(b'\n');
    }
    out
}
