//! Restoring into a Maildir: `tmp/` → `new/` (or `cur/` with `:2,S`), batched.
//!
//! File names are `<date>.<sha256>.popbackup`: unique, free of `/` and `:`, and derived from
//! the message itself, so a second restore of the same message finds it already there — in
//! `new/` or in `cur/` with whatever flags a mail client has added since — and writes nothing.
//! Files are published in batches ([`durable::Batch`]): one file-system sync per batch instead
//! of one fsync per message, in the same crash-safe order.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{Item, Outcome, RestoreError};
use crate::durable::{self, Batch, TempFile};
use crate::repo::{MessageHash, Repository};

/// Messages written before their batch is published.
const BATCH_FILES: usize = 256;
/// Bytes written before their batch is published.
const BATCH_BYTES: u64 = 64 << 20;
/// Suffix of the names we give; our leftovers in `tmp/` are recognised by it.
const SUFFIX: &str = ".popbackup";

pub struct MaildirWriter {
    root: PathBuf,
    seen: bool,
    crlf: bool,
    /// The messages in `new/` and `cur/` under names we give.
    existing: HashSet<OurName>,
    batch: Batch,
    batch_bytes: u64,
}

impl MaildirWriter {
    /// Opens (creating `tmp/`, `new/` and `cur/` when missing) the Maildir at `root`.
    pub fn open(root: &Path, seen: bool, crlf: bool) -> Result<MaildirWriter, RestoreError> {
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| RestoreError::Io { what, path, source }
        };
        if root.exists() && !root.is_dir() {
            return Err(RestoreError::Destination(format!(
                "{} exists and is not a directory, so it cannot be a Maildir",
                root.display()
            )));
        }
        for sub in ["", "tmp", "new", "cur"] {
            let dir = root.join(sub);
            durable::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
        }
        let existing = unique_names(root)?;
        // Our own leftovers from a restore that crashed before publishing.
        let tmp = root.join("tmp");
        for entry in std::fs::read_dir(&tmp)
            .map_err(io("cannot list", &tmp))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().ends_with(SUFFIX) {
                durable::remove_file(&entry.path()).map_err(io("cannot remove", &entry.path()))?;
            }
        }
        Ok(MaildirWriter {
            root: root.to_path_buf(),
            seen,
            crlf,
            existing,
            batch: Batch::new(),
            batch_bytes: 0,
        })
    }

    /// True if the message is in the Maildir already.
    pub fn contains(&self, item: &Item) -> bool {
        self.existing.contains(&OurName::of(item))
    }

    /// Writes one message into `tmp/`; it is published with its batch.
    pub fn write(&mut self, repo: &Repository, item: &Item) -> Result<Outcome, RestoreError> {
        let ours = OurName::of(item);
        if self.existing.contains(&ours) {
            return Ok(Outcome::Present);
        }
        let name = ours.to_string();
        let temp_path = self.root.join("tmp").join(&name);
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| RestoreError::Io { what, path, source }
        };
        let mut temp = TempFile::named(&temp_path).map_err(io("cannot create", &temp_path))?;
        let converted = {
            let mut out = std::io::BufWriter::with_capacity(128 * 1024, temp.file());
            let converted =
                super::write_message(repo, &item.hash, self.crlf, &mut out, &temp_path)?;
            out.flush().map_err(io("cannot write", &temp_path))?;
            converted
        };
        // Flags it had where it was imported from; `--seen` adds S. Maildir keeps them sorted.
        let flags = match (&item.flags, self.seen) {
            (Some(flags), seen) => {
                let mut all: Vec<char> =
                    flags.chars().filter(|c| c.is_ascii_alphabetic()).collect();
                if seen && !all.contains(&'S') {
                    all.push('S');
                }
                all.sort_unstable();
                all.dedup();
                Some(all.into_iter().collect::<String>())
            }
            (None, true) => Some("S".to_string()),
            (None, false) => None,
        };
        let dest = match flags {
            Some(flags) => self.root.join("cur").join(format!("{name}:2,{flags}")),
            None => self.root.join("new").join(&name),
        };
        self.batch.add(temp, dest);
        self.existing.insert(ours);
        self.batch_bytes += converted.bytes;
        if self.batch.len() >= BATCH_FILES || self.batch_bytes >= BATCH_BYTES {
            self.publish()?;
        }
        Ok(Outcome::Written {
            bytes: converted.bytes,
            reversible: converted.reversible,
        })
    }

    fn publish(&mut self) -> Result<(), RestoreError> {
        self.batch_bytes = 0;
        self.batch.commit().map_err(|source| RestoreError::Io {
            what: "cannot publish messages in",
            path: self.root.clone(),
            source,
        })?;
        Ok(())
    }

    /// Publishes what is still pending.
    pub fn finish(mut self) -> Result<(), RestoreError> {
        self.publish()
    }
}

/// A file name we give, `<date>.<sha256>.popbackup`, kept as what it is made of: 40 bytes
/// instead of a string of 85 for every message of a large Maildir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct OurName {
    time: i64,
    hash: MessageHash,
}

impl OurName {
    fn of(item: &Item) -> OurName {
        OurName {
            time: item.time.timestamp().max(0),
            hash: item.hash,
        }
    }

    /// The name's unique part (before any `:`), if it is one we give, spelled exactly as we
    /// spell it.
    fn parse(unique: &str) -> Option<OurName> {
        let (time, hash) = unique.strip_suffix(SUFFIX)?.split_once('.')?;
        let ours = OurName {
            time: time.parse().ok()?,
            hash: hash.parse().ok()?,
        };
        (ours.to_string() == unique).then_some(ours)
    }
}

impl std::fmt::Display for OurName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}{SUFFIX}", self.time, self.hash)
    }
}

/// The messages in `new/` and `cur/` under names we give (other names cannot be ours).
fn unique_names(root: &Path) -> Result<HashSet<OurName>, RestoreError> {
    let mut names = HashSet::new();
    for sub in ["new", "cur"] {
        let dir = root.join(sub);
        let entries = std::fs::read_dir(&dir).map_err(|source| RestoreError::Io {
            what: "cannot list",
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(ours) = OurName::parse(name.split(':').next().unwrap_or(&name)) {
                names.insert(ours);
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_names_read_back_and_no_other_name_is_taken_for_one() {
        let ours = OurName {
            time: 1_767_225_600,
            hash: MessageHash::of(b"m"),
        };
        let name = ours.to_string();
        assert_eq!(
            name,
            format!("1767225600.{}.popbackup", MessageHash::of(b"m"))
        );
        assert_eq!(OurName::parse(&name), Some(ours));
        let hex = MessageHash::of(b"m").to_hex();
        for other in [
            format!("01767225600.{hex}.popbackup"),
            format!("1767225600.{hex}"),
            format!("1767225600.{}.popbackup", &hex[..60]),
            format!("x.{hex}.popbackup"),
            "1767225600.M1P2.host".to_string(),
        ] {
            assert_eq!(OurName::parse(&other), None, "{other}");
        }
    }
}
