//! `popbackup import`: the mail a POP client already downloaded (and often deleted from the
//! server) into the archive, as a snapshot of its own source.
//!
//! A message's identity in the archive is its wire form, so a file a client wrote with LF
//! line ends is stored as the server would have sent it: a CR put before every LF that has
//! none (the inverse of restore's default conversion, `mail::lf_to_crlf`). The copy a
//! `snapshot` took from the server is then the same message, stored once, and a restore gives
//! the file back byte for byte.
//!
//! Incremental: a file whose name, size and modification time are those recorded by the
//! account's latest snapshot is not read again; its record is reused.
//!
//! This step reads Maildirs (`new/` and `cur/`, flags from the `:2,` suffix); mbox sources
//! are not read yet.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::failure::FailureKind;
use crate::repo::manifest::MANIFEST_VERSION;
use crate::repo::{Manifest, MessageRecord, RepoError, RepoWriter, ServerInfo, SnapshotId, Tool};

/// Where the mail comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportSource {
    Maildir(PathBuf),
}

impl ImportSource {
    /// `maildir:PATH` (`~` expanded).
    pub fn parse(text: &str) -> Result<ImportSource, String> {
        match text.split_once(':') {
            Some(("maildir", path)) if !path.is_empty() => {
                Ok(ImportSource::Maildir(crate::config::expand_home(path)?))
            }
            Some(("mbox", _)) => Err(format!(
                "`{text}`: importing an mbox is not available yet; import a Maildir \
                 (maildir:PATH)"
            )),
            _ => Err(format!("`{text}`: write maildir:PATH")),
        }
    }

    /// A name for the account when none is given: the folder's name.
    pub fn default_account(&self) -> String {
        let ImportSource::Maildir(path) = self;
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "import".to_string())
    }
}

impl std::fmt::Display for ImportSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ImportSource::Maildir(path) = self;
        write!(f, "maildir:{}", path.display())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{} is not a Maildir (no cur/ or new/ in it): {detail}", path.display())]
    NotAMaildir { path: PathBuf, detail: String },
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl ImportError {
    pub fn kind(&self) -> FailureKind {
        match self {
            ImportError::NotAMaildir { .. } => FailureKind::Usage,
            ImportError::Repo(e) => e.kind(),
        }
    }
}

/// What an import found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub account: String,
    pub source: String,
    /// Message files found.
    pub files: usize,
    /// Files read (new or changed since the last import).
    pub read: usize,
    /// Files taken over unread from the last import.
    pub unchanged: usize,
    /// Messages the archive did not hold before.
    pub new_messages: usize,
    /// Messages it held already (from a server's snapshot, or another file).
    pub duplicates: usize,
    /// Files that could not be read: path and why.
    pub unreadable: Vec<(String, String)>,
    pub snapshot: Option<SnapshotId>,
}

/// One message file of a Maildir.
struct MaildirFile {
    path: PathBuf,
    /// The unique part of the name (before `:2,`).
    unique: String,
    flags: Option<String>,
    size: u64,
    mtime_ns: Option<u64>,
}

/// Imports `source` as a snapshot of `account`. With `dry_run`, reads and counts but stores
/// and commits nothing.
pub fn import(
    writer: &mut RepoWriter,
    source: &ImportSource,
    account: &str,
    dry_run: bool,
) -> Result<ImportReport, ImportError> {
    let ImportSource::Maildir(root) = source;
    let files = scan_maildir(root)?;
    let mut report = ImportReport {
        account: account.to_string(),
        source: source.to_string(),
        files: files.len(),
        ..ImportReport::default()
    };
    // The last import's records, by file name, to skip what did not change.
    let mut known: HashMap<String, MessageRecord> = HashMap::new();
    if let Some(latest) = writer.repo().latest_snapshot(account)? {
        for record in latest.messages {
            if let Some(name) = record.uidl.clone() {
                known.insert(name, record);
            }
        }
    }
    let time = chrono::Utc::now();
    let mut manifest = Manifest {
        version: MANIFEST_VERSION,
        id: SnapshotId::new(time),
        time: time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        account: account.to_string(),
        complete: true,
        tool: Tool::default(),
        server: ServerInfo {
            host: source.to_string(),
            port: 0,
            tls: "none".into(),
            ..ServerInfo::default()
        },
        records: None,
        listing: None,
        messages: Vec::with_capacity(files.len()),
    };
    for file in files {
        let msg = manifest.messages.len() as u32 + 1;
        if let Some(old) = known.get(&file.unique).filter(|r| {
            r.list_size == file.size
                && r.mtime_ns.is_some()
                && r.mtime_ns == file.mtime_ns
                && r.sha256
                    .is_some_and(|h| writer.repo().location(&h).is_some())
        }) {
            report.unchanged += 1;
            manifest.messages.push(MessageRecord {
                msg,
                flags: file.flags,
                pack: None,
                offset: None,
                length: None,
                ..old.clone()
            });
            continue;
        }
        let bytes = match std::fs::read(&file.path) {
            Ok(b) => b,
            Err(e) => {
                report
                    .unreadable
                    .push((file.path.display().to_string(), e.to_string()));
                continue;
            }
        };
        report.read += 1;
        let wire = crate::mail::lf_to_crlf(&bytes);
        let hash = crate::repo::MessageHash::of(&wire);
        let new = writer.repo().location(&hash).is_none();
        if dry_run {
            if new {
                report.new_messages += 1;
            } else {
                report.duplicates += 1;
            }
            continue;
        }
        let stored = writer.store_bytes(&wire)?;
        match stored {
            crate::repo::Stored::New(..) => report.new_messages += 1,
            _ => report.duplicates += 1,
        }
        let headers = crate::mail::summarize(&wire);
        manifest.messages.push(MessageRecord {
            list_size: file.size,
            date: headers.date,
            from: headers.from,
            subject: headers.subject,
            message_id: headers.message_id,
            flags: file.flags,
            mtime_ns: file.mtime_ns,
            ..MessageRecord::stored(msg, Some(file.unique), stored.hash(), wire.len() as u64)
        });
    }
    if dry_run {
        return Ok(report);
    }
    writer.flush()?;
    writer.commit(&manifest)?;
    report.snapshot = Some(manifest.id);
    Ok(report)
}

/// The message files of a Maildir, `cur/` then `new/`, each sorted by name.
fn scan_maildir(root: &Path) -> Result<Vec<MaildirFile>, ImportError> {
    let mut out = Vec::new();
    let mut found_any = false;
    for sub in ["cur", "new"] {
        let dir = root.join(sub);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(ImportError::NotAMaildir {
                    path: root.to_path_buf(),
                    detail: format!("cannot read {}: {e}", dir.display()),
                });
            }
        };
        found_any = true;
        let mut files: Vec<MaildirFile> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    return None;
                }
                let meta = entry.metadata().ok().filter(|m| m.is_file())?;
                let (unique, flags) = match name.split_once(":2,") {
                    Some((unique, flags)) => (unique.to_string(), Some(flags.to_string())),
                    None => (name.clone(), None),
                };
                let mtime_ns = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .and_then(|d| u64::try_from(d.as_nanos()).ok());
                Some(MaildirFile {
                    path: entry.path(),
                    unique,
                    flags,
                    size: meta.len(),
                    mtime_ns,
                })
            })
            .collect();
        files.sort_by(|a, b| a.unique.cmp(&b.unique));
        out.extend(files);
    }
    if !found_any {
        return Err(ImportError::NotAMaildir {
            path: root.to_path_buf(),
            detail: "neither exists".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_named_by_kind() {
        assert_eq!(
            ImportSource::parse("maildir:/home/a/Mail/inbox").unwrap(),
            ImportSource::Maildir(PathBuf::from("/home/a/Mail/inbox"))
        );
        assert_eq!(
            ImportSource::parse("maildir:/home/a/Mail/inbox")
                .unwrap()
                .default_account(),
            "inbox"
        );
        assert!(
            ImportSource::parse("mbox:/x")
                .unwrap_err()
                .contains("not available yet")
        );
        assert!(
            ImportSource::parse("/x")
                .unwrap_err()
                .contains("maildir:PATH")
        );
    }
}
