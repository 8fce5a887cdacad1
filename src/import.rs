//! `popbackup import`: the mail a POP client already downloaded (and often deleted from the
//! server) into the archive, each folder as a snapshot of its own source.
//!
//! A message's identity in the archive is its wire form, so a message a client wrote with LF
//! line ends is stored as the server would have sent it: a CR put before every LF that has
//! none (the inverse of restore's default conversion, `mail::lf_to_crlf`). The copy a
//! `snapshot` took from the server is then the same message, stored once, and a restore gives
//! the file back byte for byte.
//!
//! Incremental: a Maildir file whose name, size and modification time are those the
//! account's latest snapshot recorded is not read again, and neither is an mbox whose size
//! and modification time are unchanged; their records are reused.
//!
//! A file that cannot be read, or an mbox message the file ends inside, is named in the
//! report and skipped; everything else is stored and committed.

mod maildir;
mod mbox;

use std::collections::VecDeque;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::failure::FailureKind;
use crate::repo::manifest::MANIFEST_VERSION;
use crate::repo::records::{ListItem, RecordsWriter};
use crate::repo::{
    Manifest, MessageRecord, RepoError, RepoWriter, ServerInfo, SnapshotId, Stored, Tool,
};
pub use mbox::Quoting;

/// Where the mail comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportSource {
    /// One Maildir folder (`cur/` and `new/`).
    Maildir(PathBuf),
    Mbox {
        path: PathBuf,
        quoting: Quoting,
    },
}

impl ImportSource {
    /// `maildir:PATH`, `mbox:PATH` (mboxrd) or `mboxo:PATH`, `~` expanded.
    pub fn parse(text: &str) -> Result<ImportSource, String> {
        let path = |p: &str| crate::config::expand_home(p);
        match text.split_once(':') {
            Some(("maildir", p)) if !p.is_empty() => Ok(ImportSource::Maildir(path(p)?)),
            Some(("mbox", p)) if !p.is_empty() => Ok(ImportSource::Mbox {
                path: path(p)?,
                quoting: Quoting::Rd,
            }),
            Some(("mboxo", p)) if !p.is_empty() => Ok(ImportSource::Mbox {
                path: path(p)?,
                quoting: Quoting::O,
            }),
            _ => Err(format!(
                "`{text}`: write maildir:PATH, mbox:PATH (or mboxo:PATH for an mbox whose \
                 writer quoted only `From ` lines)"
            )),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            ImportSource::Maildir(path) | ImportSource::Mbox { path, .. } => path,
        }
    }

    /// A name for the account when none is given: the folder's or file's name (an mbox's
    /// without `.mbox`).
    pub fn default_account(&self) -> String {
        let name = self
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = match self {
            ImportSource::Mbox { .. } => name
                .strip_suffix(".mbox")
                .map(str::to_string)
                .unwrap_or(name),
            ImportSource::Maildir(_) => name,
        };
        if name.is_empty() {
            "import".to_string()
        } else {
            name
        }
    }
}

impl std::fmt::Display for ImportSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportSource::Maildir(path) => write!(f, "maildir:{}", path.display()),
            ImportSource::Mbox {
                path,
                quoting: Quoting::Rd,
            } => write!(f, "mbox:{}", path.display()),
            ImportSource::Mbox {
                path,
                quoting: Quoting::O,
            } => write!(f, "mboxo:{}", path.display()),
        }
    }
}

/// One folder to import, and the account its snapshot is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportJob {
    pub source: ImportSource,
    pub account: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{} is not a Maildir (no cur/ or new/ in it, nor in any folder below it): {detail}", path.display())]
    NotAMaildir { path: PathBuf, detail: String },
    #[error("{}: {detail}; import it as maildir:PATH if it is a Maildir", path.display())]
    NotAnMbox { path: PathBuf, detail: String },
    #[error("{} does not exist: check the path", path.display())]
    Missing { path: PathBuf },
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl ImportError {
    pub fn kind(&self) -> FailureKind {
        match self {
            ImportError::NotAMaildir { .. }
            | ImportError::NotAnMbox { .. }
            | ImportError::Missing { .. } => FailureKind::Usage,
            ImportError::Repo(e) => e.kind(),
        }
    }
}

/// The imports `source` stands for under `account`: an mbox alone; a Maildir and each
/// folder below it (Maildir++ `.Sent`, `.Lists.rust`, or a Maildir nested in it, `Archive/2019`),
/// each an account of its own named after the folder: `inbox`, `inbox.Sent`,
/// `inbox.Lists.rust`, `inbox.Archive.2019`.
pub fn plan(source: &ImportSource, account: &str) -> Result<Vec<ImportJob>, ImportError> {
    let ImportSource::Maildir(root) = source else {
        return Ok(vec![ImportJob {
            source: source.clone(),
            account: account.to_string(),
        }]);
    };
    Ok(maildir::folders(root)?
        .into_iter()
        .map(|(folder, path)| ImportJob {
            source: ImportSource::Maildir(path),
            account: match folder {
                Some(folder) => format!("{account}.{folder}"),
                None => account.to_string(),
            },
        })
        .collect())
}

/// What an import found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub account: String,
    pub source: String,
    /// Messages found (Maildir files, or mbox messages).
    pub files: usize,
    /// Messages read (new or changed since the last import).
    pub read: usize,
    /// Messages taken over unread from the last import.
    pub unchanged: usize,
    /// Messages the archive did not hold before.
    pub new_messages: usize,
    /// Messages it held already (from a server's snapshot, or another file).
    pub duplicates: usize,
    /// What could not be read: the file (and where in it) and why.
    pub unreadable: Vec<(String, String)>,
    pub snapshot: Option<SnapshotId>,
}

/// Imports one folder (see [`plan`]) as a snapshot of `account`. With `dry_run`, reads and
/// counts but stores and commits nothing.
pub fn import(
    writer: &mut RepoWriter,
    source: &ImportSource,
    account: &str,
    dry_run: bool,
) -> Result<ImportReport, ImportError> {
    // Its head only: the records are read a file at a time, as often as needed.
    let latest = match writer.repo().latest_snapshots()?.remove(account) {
        Some(id) => Some(writer.repo().manifest_head(&id)?),
        None => None,
    };
    let mut run = Run::new(writer, source, account, dry_run);
    match source {
        ImportSource::Maildir(root) => maildir::import(&mut run, root, latest)?,
        ImportSource::Mbox { path, quoting } => import_mbox(&mut run, path, *quoting, latest)?,
    }
    run.finish()
}

/// Records held at most while their pack fills: a pack holds 32 MiB, which tiny messages
/// would take hundreds of thousands of records (and 100 MB) to reach.
const MAX_PENDING: usize = 8192;

/// One import under way: the writer, and the snapshot it is building.
struct Run<'w> {
    writer: &'w mut RepoWriter,
    out: Output,
}

/// The snapshot an import is building and its report. Its records go into records files as
/// they are final, so that an import of 100,000 files holds neither the last import's records
/// nor its own: a reused one at once, a stored one once its pack is finished (only then is
/// where it lies known).
struct Output {
    dry_run: bool,
    report: ImportReport,
    head: Manifest,
    list: RecordsWriter,
    /// Records of messages in the pack being written, in list order.
    pending: VecDeque<MessageRecord>,
    listed: u32,
}

/// What an import knows of a message besides its bytes.
#[derive(Default)]
struct Origin {
    uidl: Option<String>,
    list_size: u64,
    flags: Option<String>,
    mtime_ns: Option<u64>,
    mbox_offset: Option<u64>,
    mbox_from: Option<String>,
}

impl<'w> Run<'w> {
    fn new(
        writer: &'w mut RepoWriter,
        source: &ImportSource,
        account: &str,
        dry_run: bool,
    ) -> Self {
        let time = chrono::Utc::now();
        let list = RecordsWriter::new(writer.repo().layout());
        Run {
            writer,
            out: Output {
                dry_run,
                report: ImportReport {
                    account: account.to_string(),
                    source: source.to_string(),
                    ..ImportReport::default()
                },
                head: Manifest {
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
                    messages: Vec::new(),
                },
                list,
                pending: VecDeque::new(),
                listed: 0,
            },
        }
    }

    /// Each record of the last import's snapshot `latest`, read a file at a time; `each`
    /// gets the writer and the output, to reuse what it chooses.
    fn for_each_previous(
        &mut self,
        latest: &Manifest,
        mut each: impl FnMut(&RepoWriter, &mut Output, MessageRecord) -> Result<(), ImportError>,
    ) -> Result<(), ImportError> {
        let mut manifest = latest.clone();
        let (writer, out) = (&*self.writer, &mut self.out);
        let mut failed = None;
        writer.repo().for_each_record(&mut manifest, |record| {
            if failed.is_none()
                && let Err(e) = each(writer, out, record)
            {
                failed = Some(e);
            }
        })?;
        failed.map_or(Ok(()), Err)
    }

    fn take(&mut self, bytes: &[u8], origin: Origin) -> Result<(), ImportError> {
        self.out.take(self.writer, bytes, origin)
    }

    fn unreadable(&mut self, what: String, why: String) {
        self.out.report.files += 1;
        self.out.report.unreadable.push((what, why));
    }

    /// Commits the snapshot, unless this is a dry run or nothing of the folder could be read:
    /// an empty snapshot would hide the last good one from restore.
    fn finish(self) -> Result<ImportReport, ImportError> {
        let Output {
            dry_run,
            report,
            head,
            list,
            pending,
            listed,
        } = self.out;
        let nothing_read = listed == 0 && !report.unreadable.is_empty();
        if dry_run || nothing_read {
            return Ok(report);
        }
        let items = pending.into_iter().map(|r| Ok(ListItem::Record(r)));
        self.writer.commit_run(&head, list, items)?;
        Ok(ImportReport {
            snapshot: Some(head.id),
            ..report
        })
    }
}

impl Output {
    /// True if the archive still holds what `record` names.
    fn holds(writer: &RepoWriter, record: &MessageRecord) -> bool {
        record
            .sha256
            .is_some_and(|h| writer.repo().location(&h).is_some())
    }

    fn next_msg(&mut self) -> u32 {
        self.listed += 1;
        self.listed
    }

    /// Lists a message of the last import again, unread.
    fn reuse(
        &mut self,
        writer: &RepoWriter,
        old: MessageRecord,
        flags: Option<String>,
    ) -> Result<(), ImportError> {
        self.report.files += 1;
        self.report.unchanged += 1;
        if self.dry_run {
            return Ok(());
        }
        let msg = self.next_msg();
        self.pending.push_back(MessageRecord {
            msg,
            flags,
            pack: None,
            offset: None,
            length: None,
            ..old
        });
        self.list_ready(writer)
    }

    /// Stores a message read from the folder, in its wire form, and lists it.
    fn take(
        &mut self,
        writer: &mut RepoWriter,
        bytes: &[u8],
        origin: Origin,
    ) -> Result<(), ImportError> {
        self.report.files += 1;
        self.report.read += 1;
        let wire = crate::mail::lf_to_crlf(bytes);
        let hash = crate::repo::MessageHash::of(&wire);
        if self.dry_run {
            if writer.repo().location(&hash).is_none() {
                self.report.new_messages += 1;
            } else {
                self.report.duplicates += 1;
            }
            return Ok(());
        }
        let stored = writer.store_bytes(&wire)?;
        match stored {
            Stored::New(..) => self.report.new_messages += 1,
            _ => self.report.duplicates += 1,
        }
        let headers = crate::mail::summarize(&wire);
        let msg = self.next_msg();
        self.pending.push_back(MessageRecord {
            list_size: origin.list_size,
            date: headers.date,
            from: headers.from,
            subject: headers.subject,
            message_id: headers.message_id,
            flags: origin.flags,
            mtime_ns: origin.mtime_ns,
            mbox_offset: origin.mbox_offset,
            mbox_from: origin.mbox_from,
            ..MessageRecord::stored(msg, origin.uidl, stored.hash(), wire.len() as u64)
        });
        self.list_stored(writer)
    }

    /// After a message is stored: the pending records that can be written, and when small
    /// messages leave too many waiting for their pack to fill, the pack finished early.
    fn list_stored(&mut self, writer: &mut RepoWriter) -> Result<(), ImportError> {
        if self.pending.len() >= MAX_PENDING {
            writer.flush()?;
        }
        self.list_ready(writer)
    }

    /// Writes the pending records whose messages are in finished packs, in order.
    fn list_ready(&mut self, writer: &RepoWriter) -> Result<(), ImportError> {
        let ready = self
            .pending
            .iter()
            .take_while(|r| Output::holds(writer, r))
            .count();
        if ready == 0 {
            return Ok(());
        }
        let items = self.pending.drain(..ready).map(|r| Ok(ListItem::Record(r)));
        writer.list_records(&self.head.id, &mut self.list, items)?;
        Ok(())
    }
}

/// One message of an mbox as `import` reads it ([`read_mbox`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MboxMessage {
    /// Where its `From ` line starts in the file.
    pub offset: u64,
    /// Bytes it takes in the file.
    pub span: u64,
    /// Its `From ` line after `From `.
    pub envelope: String,
    /// The message, un-quoted, line ends as in the file; `None` when the file ends inside it.
    pub bytes: Option<Vec<u8>>,
}

/// Every message of the mbox `data` as `import` reads it, or why it is not an mbox; for
/// fuzzing and tests of the reader without a repository.
pub fn read_mbox(data: &[u8], quoting: Quoting) -> Result<Vec<MboxMessage>, String> {
    let mut reader = match mbox::MboxReader::new(data, quoting) {
        Ok(Ok(reader)) => reader,
        Ok(Err(why)) => return Err(why),
        Err(e) => return Err(e.to_string()),
    };
    let mut out = Vec::new();
    while let Some(entry) = reader.next_entry().map_err(|e| e.to_string())? {
        out.push(match entry {
            mbox::MboxEntry::Message(m) => MboxMessage {
                offset: m.offset,
                span: m.span,
                envelope: m.envelope,
                bytes: Some(m.bytes),
            },
            mbox::MboxEntry::Damaged { offset, .. } => MboxMessage {
                offset,
                span: data.len() as u64 - offset,
                envelope: String::new(),
                bytes: None,
            },
        });
    }
    Ok(out)
}

/// Modification time in nanoseconds since 1970.
fn mtime_ns(meta: &std::fs::Metadata) -> Option<u64> {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_nanos()).ok())
}

/// Imports the messages of an mbox.
fn import_mbox(
    run: &mut Run<'_>,
    path: &Path,
    quoting: Quoting,
    latest: Option<Manifest>,
) -> Result<(), ImportError> {
    let shown = path.display().to_string();
    let opened = std::fs::File::open(path).and_then(|f| f.metadata().map(|m| (f, m)));
    let (file, meta) = match opened {
        Ok((_, meta)) if meta.is_dir() => {
            return Err(ImportError::NotAnMbox {
                path: path.to_path_buf(),
                detail: "it is a directory".into(),
            });
        }
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ImportError::Missing {
                path: path.to_path_buf(),
            });
        }
        Err(e) => {
            run.unreadable(shown, e.to_string());
            return Ok(());
        }
    };
    let mtime = mtime_ns(&meta);
    // Unchanged since the last import (same size and time, its records covering the whole
    // file, every message still archived): nothing is read.
    if let Some(latest) = latest {
        let (mut unchanged, mut end) = (mtime.is_some(), None);
        run.for_each_previous(&latest, |writer, _, r| {
            unchanged &=
                r.mtime_ns == mtime && r.mbox_offset.is_some() && Output::holds(writer, &r);
            end = r.mbox_offset.map(|o| o + r.list_size);
            Ok(())
        })?;
        if unchanged && end == Some(meta.len()) {
            return run.for_each_previous(&latest, |writer, out, mut record| {
                let flags = record.flags.take();
                out.reuse(writer, record, flags)
            });
        }
    }
    let reader = BufReader::with_capacity(256 * 1024, file);
    let read_error = |run: &mut Run<'_>, e: std::io::Error| {
        let at = run.out.report.files;
        run.unreadable(shown.clone(), format!("after {at} messages: {e}"));
    };
    let mut mbox = match mbox::MboxReader::new(reader, quoting) {
        Ok(Ok(mbox)) => mbox,
        Ok(Err(detail)) => {
            return Err(ImportError::NotAnMbox {
                path: path.to_path_buf(),
                detail,
            });
        }
        Err(e) => {
            read_error(run, e);
            return Ok(());
        }
    };
    loop {
        match mbox.next_entry() {
            Ok(None) => break,
            Ok(Some(mbox::MboxEntry::Message(message))) => run.take(
                &message.bytes,
                Origin {
                    list_size: message.span,
                    mtime_ns: mtime,
                    mbox_offset: Some(message.offset),
                    mbox_from: Some(message.envelope),
                    ..Origin::default()
                },
            )?,
            Ok(Some(mbox::MboxEntry::Damaged { offset, detail })) => {
                run.unreadable(format!("{shown} at byte {offset}"), detail);
            }
            Err(e) => {
                read_error(run, e);
                break;
            }
        }
    }
    Ok(())
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
        let mbox = ImportSource::parse("mbox:/var/mail/old.mbox").unwrap();
        assert_eq!(mbox.default_account(), "old");
        assert_eq!(mbox.to_string(), "mbox:/var/mail/old.mbox");
        assert_eq!(
            ImportSource::parse("mboxo:/x").unwrap(),
            ImportSource::Mbox {
                path: "/x".into(),
                quoting: Quoting::O
            }
        );
        assert!(
            ImportSource::parse("/x")
                .unwrap_err()
                .contains("maildir:PATH")
        );
    }
}
