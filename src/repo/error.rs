//! Errors of the repository layer.
//!
//! Policy: every error names the file it concerns and, where the user can act, what to do. A
//! damaged repository (`Corrupt`) is kept apart from an I/O failure and from "someone else is
//! writing" (`Locked`), because cron wrappers react differently: 65, 74 and 75.

use std::io;
use std::path::PathBuf;

use super::backend::StorageFailure;
use super::lock::LockInfo;
use crate::failure::FailureKind;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{op} {}: {source}{}", path.display(), io_advice(source))]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} is not a popbackup repository (no config.json); create one with `popbackup init` \
         or point --repo / `repository` at the right place",
        path.display()
    )]
    NotARepository { path: PathBuf },
    #[error("{} already holds a popbackup repository; nothing was changed", path.display())]
    AlreadyExists { path: PathBuf },
    #[error(
        "{} is an encrypted repository: give its password with repository_password_command, \
         repository_password_file or repository_password_env in the configuration",
        path.display()
    )]
    PasswordNeeded { path: PathBuf },
    /// The configured repository password could not be fetched (the text says why; it never
    /// holds the password).
    #[error("cannot get the repository password: {0}")]
    PasswordUnavailable(String),
    #[error(
        "{} is repository format {found}, but this popbackup reads format {supported}; \
         use a newer popbackup",
        path.display()
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{} is damaged: {detail}; run `popbackup verify` for a full report", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "the repository is locked by {holder} (lock {}); another popbackup is writing — try \
         again later{freed}",
        path.display()
    )]
    Locked {
        path: PathBuf,
        holder: Box<LockInfo>,
        /// When the lock goes away by itself, or what the user may do about it.
        freed: &'static str,
    },
    /// The writer's lock may have passed to another writer; it stopped before writing more.
    #[error(
        "stopped writing: {detail}; nothing unfinished was committed, so run again (another \
         popbackup may be writing to this repository now)"
    )]
    LockLost { detail: String },
    /// `verify` found damage that is not healed yet; the command will not act on it.
    #[error("{detail}")]
    Damaged { detail: String },
    #[error("no {what} {id} in the repository")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Crypto(#[from] super::crypto::CryptoError),
}

impl RepoError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> RepoError {
        let path = path.into();
        move |source| RepoError::Io { op, path, source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, detail: impl Into<String>) -> RepoError {
        RepoError::Corrupt {
            path: path.into(),
            detail: detail.into(),
        }
    }

    /// The same error again, for a second party it concerns (an `io::Error` cannot be
    /// cloned: its kind and text are kept, which is all that is shown and classified).
    pub fn duplicate(&self) -> RepoError {
        match self {
            RepoError::Io { op, path, source } => RepoError::Io {
                op,
                path: path.clone(),
                source: match StorageFailure::of(source) {
                    Some(failure) => io::Error::new(
                        source.kind(),
                        StorageFailure::new(failure.kind, failure.to_string()),
                    ),
                    None => io::Error::new(source.kind(), source.to_string()),
                },
            },
            RepoError::NotARepository { path } => RepoError::NotARepository { path: path.clone() },
            RepoError::AlreadyExists { path } => RepoError::AlreadyExists { path: path.clone() },
            RepoError::PasswordNeeded { path } => RepoError::PasswordNeeded { path: path.clone() },
            RepoError::PasswordUnavailable(e) => RepoError::PasswordUnavailable(e.clone()),
            RepoError::UnsupportedVersion {
                path,
                found,
                supported,
            } => RepoError::UnsupportedVersion {
                path: path.clone(),
                found: *found,
                supported: *supported,
            },
            RepoError::Corrupt { path, detail } => RepoError::Corrupt {
                path: path.clone(),
                detail: detail.clone(),
            },
            RepoError::Locked {
                path,
                holder,
                freed,
            } => RepoError::Locked {
                path: path.clone(),
                holder: holder.clone(),
                freed,
            },
            RepoError::NotFound { what, id } => RepoError::NotFound {
                what,
                id: id.clone(),
            },
            RepoError::Invalid(text) => RepoError::Invalid(text.clone()),
            RepoError::Crypto(e) => RepoError::Crypto(e.clone()),
            RepoError::Damaged { detail } => RepoError::Damaged {
                detail: detail.clone(),
            },
            RepoError::LockLost { detail } => RepoError::LockLost {
                detail: detail.clone(),
            },
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> FailureKind {
        match self {
            RepoError::Io { source, .. } if StorageFailure::of(source).is_some() => {
                StorageFailure::of(source).map_or(FailureKind::Io, |f| f.kind)
            }
            RepoError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                FailureKind::Auth
            }
            RepoError::Io { .. } => FailureKind::Io,
            RepoError::NotARepository { .. }
            | RepoError::AlreadyExists { .. }
            | RepoError::PasswordNeeded { .. }
            | RepoError::PasswordUnavailable(_) => FailureKind::Config,
            RepoError::UnsupportedVersion { .. }
            | RepoError::Corrupt { .. }
            | RepoError::Damaged { .. } => FailureKind::Data,
            RepoError::Locked { .. } | RepoError::LockLost { .. } => FailureKind::Temporary,
            RepoError::NotFound { .. } | RepoError::Invalid(_) => FailureKind::Usage,
            RepoError::Crypto(e) => e.kind(),
        }
    }
}

/// What to do about the I/O errors a user can fix.
fn io_advice(error: &io::Error) -> &'static str {
    if StorageFailure::of(error).is_some() {
        // It says what to do itself.
        return "";
    }
    match error.kind() {
        io::ErrorKind::PermissionDenied => {
            "; run popbackup as the user who owns the repository (its files are private to \
             that user)"
        }
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            "; free space on that file system and run again (nothing unfinished was committed, \
             so the next run resumes from the last checkpoint)"
        }
        io::ErrorKind::ReadOnlyFilesystem => {
            "; the file system is read-only: remount it read-write or use another repository"
        }
        _ => "",
    }
}
