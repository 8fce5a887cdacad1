//! One writer at a time: an exclusive `flock` on `REPO/lock`, whose content says who holds it.
//!
//! The kernel drops the lock when its holder dies, so a lock left by a crashed or killed writer
//! is taken over by the next one without any guessing about pids; the holder information is only
//! for the error message a second writer gets. (flock does not work across hosts on some network
//! file systems: one repository should be written from one host.)

use std::fmt;
use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::RepoError;
use crate::durable;

/// Who holds (or held) the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub host: String,
    pub pid: u32,
    /// RFC 3339.
    pub started: String,
    pub command: String,
    /// When a lock object on an object store was last rewritten by its holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshed: Option<String>,
}

impl LockInfo {
    pub(crate) fn current(command: &str) -> LockInfo {
        LockInfo {
            host: host_name(),
            pid: std::process::id(),
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            command: command.to_string(),
            refreshed: None,
        }
    }

    /// The holder of a lock whose contents cannot be read.
    pub(crate) fn unreadable() -> LockInfo {
        LockInfo {
            host: "an unknown host".into(),
            pid: 0,
            started: "an unknown time".into(),
            command: "(unreadable lock file)".into(),
            refreshed: None,
        }
    }
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`popbackup {}` (pid {} on {}, since {})",
            self.command, self.pid, self.host, self.started
        )
    }
}

/// The held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RepoLock {
    file: File,
    path: PathBuf,
}

impl RepoLock {
    /// Takes the lock or fails at once with [`RepoError::Locked`] naming the holder.
    pub fn acquire(path: &Path, command: &str) -> Result<RepoLock, RepoError> {
        let mut file = durable::open_or_create(path)
            .map_err(RepoError::io("cannot open the lock file", path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = serde_json::from_str(&text).unwrap_or_else(|_| LockInfo::unreadable());
                return Err(RepoError::Locked {
                    path: path.to_path_buf(),
                    holder: Box::new(holder),
                    freed: ", or remove the lock file if that process is gone",
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(RepoError::io("cannot lock", path)(e));
            }
        }
        // Whatever the file said belonged to a holder that is gone: overwrite it.
        let info = serde_json::to_vec_pretty(&LockInfo::current(command)).unwrap_or_default();
        let write = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&info)?;
            file.sync_data()
        };
        write(&mut file).map_err(RepoError::io("cannot write the lock file", path))?;
        Ok(RepoLock {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        // Clear the holder information before the lock goes; a reader of an empty file knows
        // nobody holds it.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_first_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = RepoLock::acquire(&path, "snapshot").unwrap();
        let err = RepoLock::acquire(&path, "prune").unwrap_err();
        let RepoError::Locked { holder, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.command, "snapshot");
        assert!(err.to_string().contains("popbackup snapshot"), "{err}");
        assert_eq!(err.kind(), crate::failure::FailureKind::Temporary);
        drop(first);
        RepoLock::acquire(&path, "prune").unwrap();
    }

    #[test]
    fn a_stale_or_corrupt_lock_file_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        std::fs::write(
            &path,
            r#"{"host":"x","pid":999999,"started":"then","command":"snapshot"}"#,
        )
        .unwrap();
        drop(RepoLock::acquire(&path, "verify").unwrap());
        std::fs::write(&path, b"\0garbage{").unwrap();
        let _lock = RepoLock::acquire(&path, "verify").unwrap();
        let info: LockInfo = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(info.command, "verify");
    }
}
