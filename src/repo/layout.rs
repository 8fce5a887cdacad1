//! Where everything lives inside a repository. Every file and directory name is here.
//!
//! ```text
//! REPO/
//!   config.json                 format version, repository id, compression settings
//!   lock                        exclusive-writer lock (flock) with the holder's host, pid, time
//!   packs/<pack-id>.tar         immutable tar packs of zstd frames, named by their SHA-256
//!   index/<index-id>.json.zst   which message lives where; a cache rebuilt from the packs
//!   snapshots/<snapshot>.json.zst   one committed manifest per snapshot
//!   records/<records-id>.json.zst   committed snapshots' message lists, shared by snapshots
//!                                   that saw the same mailbox, named by their SHA-256
//!   checkpoints/<snapshot>.json.zst the manifest of a snapshot still in progress
//!   dicts/<dict-hash>.zdict.zst zstd dictionaries (zstd-compressed), named by their SHA-256
//!   keys/<key-id>.json          an encrypted repository's key files, named by their SHA-256
//!   tmp/                        files being written; anything here is garbage after a crash
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use super::backend::{Backend, FileKind, Listed};
use super::codec::Codec;
use super::error::RepoError;
use super::id::{DictHash, PackId, RecordsId, SnapshotId};
use super::location::RepoLocation;

pub const CONFIG: &str = "config.json";
/// What `verify` found intact (optional).
pub const VERIFIED: &str = "verified.json";
pub const LOCK: &str = "lock";
pub const PACKS: &str = "packs";
pub const INDEX: &str = "index";
pub const SNAPSHOTS: &str = "snapshots";
pub const CHECKPOINTS: &str = "checkpoints";
pub const DICTS: &str = "dicts";
pub const RECORDS: &str = "records";
pub const KEYS: &str = "keys";
pub const TMP: &str = "tmp";

/// The directories `init` creates (`keys/` stays empty in a plain repository).
pub const DIRECTORIES: [&str; 8] = [
    PACKS,
    INDEX,
    SNAPSHOTS,
    RECORDS,
    CHECKPOINTS,
    DICTS,
    KEYS,
    TMP,
];

pub const PACK_SUFFIX: &str = ".tar";
/// Manifests and index files: JSON compressed with zstd (see `compressed`).
pub const MANIFEST_SUFFIX: &str = ".json.zst";
pub const INDEX_SUFFIX: &str = ".json.zst";
pub const RECORDS_SUFFIX: &str = ".json.zst";
pub const DICT_SUFFIX: &str = ".zdict.zst";
pub const KEY_SUFFIX: &str = ".json";

/// One repository's files: where the repository is, the [`Backend`] that holds them and the
/// [`Codec`] they are stored with (sealed, in an encrypted repository, once its key is open).
/// Outside `repo` it is only a handle to pass back to the repository's functions: no other
/// module computes, opens or lists a repository file.
#[derive(Debug, Clone)]
pub struct Layout {
    location: RepoLocation,
    backend: Arc<dyn Backend>,
    codec: Codec,
    /// The key file that opened an encrypted repository.
    key_file: Option<Arc<str>>,
}

impl Layout {
    /// The repository at `location`.
    pub(crate) fn at(location: &RepoLocation) -> Result<Layout, RepoError> {
        Ok(Layout {
            backend: location.backend()?,
            location: location.clone(),
            codec: Codec::Plain,
            key_file: None,
        })
    }

    /// The repository at `location`, reached through `backend` (a test's).
    #[cfg(test)]
    pub(crate) fn with_backend(location: RepoLocation, backend: Arc<dyn Backend>) -> Layout {
        Layout {
            location,
            backend,
            codec: Codec::Plain,
            key_file: None,
        }
    }

    /// The repository in the local directory `root`.
    #[cfg(test)]
    pub(crate) fn new(root: impl Into<PathBuf>) -> Layout {
        let root = root.into();
        Layout {
            backend: Arc::new(super::backend::LocalBackend::new(root.clone())),
            location: RepoLocation::Local(root),
            codec: Codec::Plain,
            key_file: None,
        }
    }

    /// The same files, stored with `codec`, which the key file `key_file` opened.
    pub(super) fn with_codec(mut self, codec: Codec, key_file: &str) -> Layout {
        self.codec = codec;
        self.key_file = Some(key_file.into());
        self
    }

    /// The id of the key file that opened the repository, when it is encrypted.
    pub(super) fn key_file(&self) -> Option<&str> {
        self.key_file.as_deref()
    }

    /// How the files are stored.
    pub(super) fn codec(&self) -> &Codec {
        &self.codec
    }

    /// Where the files are kept.
    pub(super) fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// The names of the files of `kind` that `parse` accepts, sorted.
    pub(super) fn names<T: Ord>(
        &self,
        kind: FileKind,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Vec<T>, RepoError> {
        let listed = self.listing(kind)?;
        let mut out: Vec<T> = listed.iter().filter_map(|l| parse(&l.name)).collect();
        out.sort();
        Ok(out)
    }

    /// The files of `kind` with their sizes and times.
    pub(super) fn listing(&self, kind: FileKind) -> Result<Vec<Listed>, RepoError> {
        self.backend.list(kind).map_err(|e| {
            // The place the files are in: `packs/` (or the top level for `config.json`).
            let path = match self.backend.location(kind, "-") {
                one if kind.relative("-") == kind.relative("") => one,
                file => file.parent().map(Into::into).unwrap_or(file),
            };
            RepoError::Io {
                op: "cannot list",
                path,
                source: e,
            }
        })
    }

    /// The content of the whole file `name` of `kind` (opened, when it is sealed), or the
    /// error that names it.
    pub(super) fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, RepoError> {
        self.read_if_exists(kind, name)?.ok_or_else(|| {
            RepoError::io("cannot read", self.backend.location(kind, name))(
                std::io::ErrorKind::NotFound.into(),
            )
        })
    }

    /// [`Layout::read`] of a file that may not be there (`None`).
    pub(super) fn read_if_exists(
        &self,
        kind: FileKind,
        name: &str,
    ) -> Result<Option<Vec<u8>>, RepoError> {
        let stored = match self.backend.read(kind, name) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(RepoError::io(
                    "cannot read",
                    self.backend.location(kind, name),
                )(e));
            }
        };
        self.codec
            .open_file(kind, name, stored)
            .map(Some)
            .map_err(|e| RepoError::corrupt(self.backend.location(kind, name), e))
    }

    /// Publishes the finished file `name` of `kind` (see [`Backend::write`]), sealed when
    /// the repository is encrypted.
    pub(super) fn write(&self, kind: FileKind, name: &str, bytes: &[u8]) -> Result<(), RepoError> {
        let path = || self.backend.location(kind, name);
        let stored = self
            .codec
            .seal_file(kind, name, bytes)
            .map_err(RepoError::io("cannot seal", path()))?;
        self.backend
            .write(kind, name, &stored)
            .map_err(RepoError::io("cannot write", path()))
    }

    /// Removes the file `name` of `kind`; one that is not there is no error.
    pub(super) fn remove(&self, kind: FileKind, name: &str) -> Result<(), RepoError> {
        self.backend.remove(kind, name).map_err(RepoError::io(
            "cannot remove",
            self.backend.location(kind, name),
        ))
    }

    pub(super) fn location(&self) -> &RepoLocation {
        &self.location
    }

    pub(super) fn config(&self) -> PathBuf {
        self.backend.location(FileKind::Config, "")
    }

    pub(super) fn verified(&self) -> PathBuf {
        self.backend.location(FileKind::Verified, "")
    }

    /// A directory of the local layout, for tests that look at it.
    #[cfg(test)]
    fn root(&self) -> &std::path::Path {
        self.location.local_path().expect("a local repository")
    }

    #[cfg(test)]
    pub(super) fn dir(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }

    #[cfg(test)]
    pub(super) fn tmp(&self) -> PathBuf {
        self.root().join(TMP)
    }

    pub(super) fn pack(&self, id: &PackId) -> PathBuf {
        self.backend.location(FileKind::Pack, &id.to_string())
    }

    pub(super) fn index_file(&self, name: &str) -> PathBuf {
        self.backend.location(FileKind::Index, name)
    }

    pub(super) fn snapshot(&self, id: &SnapshotId) -> PathBuf {
        self.backend.location(FileKind::Snapshot, id.as_str())
    }

    pub(super) fn checkpoint(&self, id: &SnapshotId) -> PathBuf {
        self.backend.location(FileKind::Checkpoint, id.as_str())
    }

    pub(super) fn records(&self, id: &RecordsId) -> PathBuf {
        self.backend.location(FileKind::Records, &id.to_string())
    }

    pub(super) fn key(&self, id: &str) -> PathBuf {
        self.backend.location(FileKind::Key, id)
    }

    pub(super) fn dict(&self, hash: &DictHash) -> PathBuf {
        self.backend
            .location(FileKind::Dictionary, &hash.to_string())
    }
}
