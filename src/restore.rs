//! Restore: archived messages back into a Maildir or an mbox (mboxrd) that mail software opens.
//!
//! [`select`](mod@select) picks the messages (the latest snapshot of each account, or one
//! snapshot, narrowed by filters); [`run`] writes them through [`MaildirWriter`] or
//! [`MboxWriter`]. Messages are read only through the repository's API and checked against
//! their hash: a small one whole before any of it is written, a large one as it streams,
//! never held whole in memory. On disk, every CRLF of the wire form becomes LF unless `crlf` is asked;
//! putting a CR back before every LF gives the archived bytes exactly (the report counts the
//! rare messages with bare CR or LF, for which that cannot hold). Restoring the same messages
//! into the same place twice writes nothing the second time.
//!
//! Error policy: a destination that cannot be written stops the restore with
//! [`RestoreError::Io`] naming the path (an mbox is first truncated back to where it was; a
//! Maildir keeps only complete, published messages). A damaged message in the archive is
//! skipped and listed in the report, and the rest is restored.

pub mod maildir;
pub mod mbox;
pub mod select;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use maildir::MaildirWriter;
pub use mbox::MboxWriter;
pub use select::{Filters, Item, Selection, parse_time, select};

use crate::mail::CrlfToLf;
use crate::repo::{MessageHash, RepoError, Repository};

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Destination(String),
    #[error(
        "{} is locked by another program ({detail}); close the mail client using it and try again",
        path.display()
    )]
    Locked { path: PathBuf, detail: String },
    #[error("nothing to restore: {0}")]
    NothingToRestore(String),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl RestoreError {
    /// What kind of failure this is.
    pub fn kind(&self) -> crate::failure::FailureKind {
        use crate::failure::FailureKind;
        match self {
            RestoreError::Io { .. } => FailureKind::Io,
            RestoreError::Destination(_) | RestoreError::NothingToRestore(_) => FailureKind::Usage,
            RestoreError::Locked { .. } => FailureKind::Temporary,
            RestoreError::Repo(e) => e.kind(),
        }
    }
}

/// Where to restore to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Maildir(PathBuf),
    Mbox(PathBuf),
}

impl Destination {
    /// Parses `maildir:PATH` or `mbox:PATH`.
    pub fn parse(text: &str) -> Result<Destination, String> {
        let (kind, path) = text.split_once(':').ok_or_else(|| {
            format!("{text:?}: give the destination as maildir:PATH or mbox:PATH")
        })?;
        if path.is_empty() {
            return Err(format!("{text:?}: the path is missing"));
        }
        // No shell expands `~` after `maildir:`.
        let path = crate::config::expand_home(path)?;
        match kind {
            "maildir" => Ok(Destination::Maildir(path)),
            "mbox" => Ok(Destination::Mbox(path)),
            other => Err(format!(
                "{other:?} is not a destination format: use maildir:PATH or mbox:PATH"
            )),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Destination::Maildir(p) | Destination::Mbox(p) => p,
        }
    }

    pub fn format(&self) -> &'static str {
        match self {
            Destination::Maildir(_) => "maildir",
            Destination::Mbox(_) => "mbox",
        }
    }
}

/// How to write.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions {
    /// Keep the wire form's CRLF line ends instead of LF.
    pub crlf: bool,
    /// Maildir: deliver into `cur/` marked seen (`:2,S`) instead of `new/`.
    pub seen: bool,
    /// Only say what would be written.
    pub dry_run: bool,
}

/// What writing one message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Written {
        bytes: u64,
        reversible: bool,
    },
    /// The destination holds it already.
    Present,
}

/// A message that could not be restored because its archived copy is damaged.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Damaged {
    pub hash: MessageHash,
    pub error: String,
}

/// The summary of a restore; `--json` prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreReport<'a> {
    pub destination: PathBuf,
    pub format: &'static str,
    pub dry_run: bool,
    pub selected: usize,
    pub written: usize,
    /// Already in the destination (a previous restore); not written again.
    pub already_present: usize,
    /// Bytes written to the destination.
    pub bytes: u64,
    /// Written messages with a bare LF, whose LF → CRLF conversion is not exact (use `--crlf`
    /// for those if it matters).
    pub not_reversible: usize,
    pub damaged: Vec<Damaged>,
    /// With `dry_run`: the messages that would be written (borrowed from the selection: a
    /// copy of 100,000 items with their header fields is 35 MB).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would_write: Vec<&'a Item>,
}

/// Writes `items` to `destination`.
pub fn run<'a>(
    repo: &Repository,
    items: &'a [Item],
    destination: &Destination,
    options: RestoreOptions,
) -> Result<RestoreReport<'a>, RestoreError> {
    let mut report = RestoreReport {
        destination: destination.path().to_path_buf(),
        format: destination.format(),
        dry_run: options.dry_run,
        selected: items.len(),
        written: 0,
        already_present: 0,
        bytes: 0,
        not_reversible: 0,
        damaged: Vec::new(),
        would_write: Vec::new(),
    };
    // Nothing selected: not even an empty Maildir or mbox is made.
    if items.is_empty() {
        return Ok(report);
    }
    if options.dry_run {
        let present = mbox::present_for_dry_run(repo, items, destination, options)?;
        for (item, present) in items.iter().zip(present) {
            if present {
                report.already_present += 1;
            } else {
                report.would_write.push(item);
            }
        }
        return Ok(report);
    }
    let mut tally = |outcome: Result<Outcome, RestoreError>, item: &Item| match outcome {
        Ok(Outcome::Written { bytes, reversible }) => {
            report.written += 1;
            report.bytes += bytes;
            if !reversible {
                report.not_reversible += 1;
            }
            Ok(())
        }
        Ok(Outcome::Present) => {
            report.already_present += 1;
            Ok(())
        }
        Err(RestoreError::Repo(e @ (RepoError::Corrupt { .. } | RepoError::NotFound { .. }))) => {
            report.damaged.push(Damaged {
                hash: item.hash,
                error: e.to_string(),
            });
            Ok(())
        }
        Err(e) => Err(e),
    };
    match destination {
        Destination::Maildir(path) => {
            let mut writer = MaildirWriter::open(path, options.seen, options.crlf)?;
            for item in items {
                tally(writer.write(repo, item), item)?;
            }
            writer.finish()?;
        }
        Destination::Mbox(path) => {
            let mut writer = MboxWriter::open(path, options.crlf)?;
            for item in items {
                let outcome = writer.write(repo, item);
                if let Err(e) = tally(outcome, item) {
                    return Err(writer.abort(e));
                }
            }
            writer.finish()?;
        }
    }
    Ok(report)
}

/// What streaming one message produced.
pub(crate) struct Converted {
    /// LF → CRLF of what was written gives the archived bytes.
    pub reversible: bool,
    /// The last byte written (an mbox message must end with a newline).
    pub last: Option<u8>,
    /// Bytes written.
    pub bytes: u64,
}

/// Streams a message's on-disk form into `out`: the wire bytes with `crlf`, else every CRLF
/// as LF. The bytes are checked against the hash as they go. A write failure is reported as
/// an I/O error on `dest`, a damaged message as the repository's error.
pub(crate) fn write_message(
    repo: &Repository,
    hash: &MessageHash,
    crlf: bool,
    out: &mut dyn Write,
    dest: &Path,
) -> Result<Converted, RestoreError> {
    write_converted(crlf, out, dest, |sink| {
        repo.copy_message(hash, sink).map(|_| ())
    })
}

/// [`write_message`] for any source: `copy` writes the wire bytes of one message.
pub(crate) fn write_converted(
    crlf: bool,
    out: &mut dyn Write,
    dest: &Path,
    copy: impl FnOnce(&mut dyn Write) -> Result<(), RepoError>,
) -> Result<Converted, RestoreError> {
    let mut sink = Recording {
        inner: out,
        error: None,
        bytes: 0,
        last: None,
    };
    let result = if crlf {
        copy(&mut sink).map(|()| true)
    } else {
        let mut lf = CrlfToLf::new(&mut sink);
        let copied = copy(&mut lf);
        let reversible = lf.reversible();
        copied.and_then(|()| {
            lf.finish()
                .map(|_| reversible)
                .map_err(RepoError::io("cannot write", dest))
        })
    };
    match (result, sink.error.take()) {
        (_, Some(source)) => Err(RestoreError::Io {
            what: "cannot write",
            path: dest.to_path_buf(),
            source,
        }),
        (Err(e), None) => Err(e.into()),
        (Ok(reversible), None) => Ok(Converted {
            reversible,
            last: sink.last,
            bytes: sink.bytes,
        }),
    }
}

/// Passes writes on, remembering the first error (so it can be told apart from a damaged
/// message) and counting bytes.
struct Recording<'a> {
    inner: &'a mut dyn Write,
    error: Option<io::Error>,
    bytes: u64,
    last: Option<u8>,
}

impl Write for Recording<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.inner.write(buf) {
            Ok(n) => {
                self.bytes += n as u64;
                if n > 0 {
                    self.last = Some(buf[n - 1]);
                }
                Ok(n)
            }
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.error.get_or_insert(e);
                Err(copy)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|e| {
            if self.error.is_none() {
                self.error = Some(io::Error::new(e.kind(), e.to_string()));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(
            Destination::parse("maildir:/a/b").unwrap(),
            Destination::Maildir("/a/b".into())
        );
        assert_eq!(
            Destination::parse("mbox:x:y").unwrap(),
            Destination::Mbox("x:y".into())
        );
        assert!(Destination::parse("/a/b").is_err());
        assert!(Destination::parse("mh:/a").is_err());
        assert!(Destination::parse("mbox:").is_err());
    }
}
