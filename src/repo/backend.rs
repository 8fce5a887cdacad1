//! The storage seam: every repository file is reached through a [`Backend`], keyed by its
//! kind and name, never by a path. [`LocalBackend`] keeps today's on-disk layout (the paths of
//! `layout.rs`, written crash-safely by `durable.rs`); an object store is another backend with
//! the same object names (see `docs/FORMAT.md`).
//!
//! The contract every backend keeps:
//! - `write` publishes a finished file whole, or not at all (readers never see part of one),
//!   and durably before it returns; the ordering rules of `docs/FORMAT.md` rest on that.
//! - Names are the file's stem (`<pack-id>`, `<snapshot-id>`, ...); the kind says where it
//!   lives and how it ends. `Config`, `Verified` and `Lock` have one file each (name `""`).
//! - A missing file is `io::ErrorKind::NotFound`, so callers can tell "absent" from "broken".
//! - `list` gives the names that have the kind's shape, with sizes, sorted; anything else in
//!   the place (temporary files, foreign files) is not listed.
//!
//! Files are built in the backend's scratch directory when they need random access while
//! they are written (packs) and then published through it. See `docs/DESIGN.md`, "The
//! storage seam".

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::error::RepoError;
use super::layout;
use crate::durable;

/// What a repository file is: where it lives and how its name ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Config,
    Verified,
    Pack,
    Index,
    Snapshot,
    Checkpoint,
    Records,
    Dictionary,
    /// A key file of an encrypted repository.
    Key,
}

impl FileKind {
    /// The directory it lives in (`None`: the repository's top level) and its suffix.
    fn place(self) -> (Option<&'static str>, &'static str) {
        match self {
            FileKind::Config => (None, layout::CONFIG),
            FileKind::Verified => (None, layout::VERIFIED),
            FileKind::Pack => (Some(layout::PACKS), layout::PACK_SUFFIX),
            FileKind::Index => (Some(layout::INDEX), layout::INDEX_SUFFIX),
            FileKind::Snapshot => (Some(layout::SNAPSHOTS), layout::MANIFEST_SUFFIX),
            FileKind::Checkpoint => (Some(layout::CHECKPOINTS), layout::MANIFEST_SUFFIX),
            FileKind::Records => (Some(layout::RECORDS), layout::RECORDS_SUFFIX),
            FileKind::Dictionary => (Some(layout::DICTS), layout::DICT_SUFFIX),
            FileKind::Key => (Some(layout::KEYS), layout::KEY_SUFFIX),
        }
    }

    /// Whether `stem` has the shape of a name of this kind.
    pub fn accepts(self, stem: &str) -> bool {
        use super::id::{PackId, RecordsId, SnapshotId};
        match self {
            FileKind::Config | FileKind::Verified => stem.is_empty(),
            FileKind::Pack => stem.parse::<PackId>().is_ok(),
            FileKind::Snapshot | FileKind::Checkpoint => SnapshotId::parse(stem).is_some(),
            FileKind::Index | FileKind::Key => {
                stem.len() == 64 && stem.chars().all(|c| c.is_ascii_hexdigit())
            }
            FileKind::Records => stem.parse::<RecordsId>().is_ok(),
            FileKind::Dictionary => stem.parse::<super::id::DictHash>().is_ok(),
        }
    }

    /// The file's name relative to the repository: `packs/<id>.tar`, `config.json`. The
    /// object name on an object store, too.
    pub fn relative(self, name: &str) -> String {
        match self.place() {
            (None, file) => file.to_string(),
            (Some(dir), suffix) => format!("{dir}/{name}{suffix}"),
        }
    }
}

/// One file as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    pub name: String,
    pub size: u64,
    /// When it was written, where the storage says.
    pub modified: Option<std::time::SystemTime>,
}

/// Where a repository's files are kept.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Where the file is, for messages: a path, or an object store's URL.
    fn location(&self, kind: FileKind, name: &str) -> PathBuf;
    /// The files of `kind` with their sizes, sorted by name.
    fn list(&self, kind: FileKind) -> io::Result<Vec<Listed>>;
    /// The file's size in bytes.
    fn size(&self, kind: FileKind, name: &str) -> io::Result<u64>;
    /// The whole file.
    fn read(&self, kind: FileKind, name: &str) -> io::Result<Vec<u8>>;
    /// Exactly `buf.len()` bytes from `offset` (`UnexpectedEof` where the file ends first).
    fn read_at(&self, kind: FileKind, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// The file's bytes from the first on, for reading it once in order.
    fn open(&self, kind: FileKind, name: &str) -> io::Result<Box<dyn Read + Send>>;
    /// Publishes a finished file (see the module's contract).
    fn write(&self, kind: FileKind, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Publishes a finished file that was built in a temporary file of [`Backend::scratch`]
    /// (a pack: its table needs random access while it is written).
    fn publish(&self, kind: FileKind, name: &str, built: durable::TempFile) -> io::Result<()>;
    /// Publishes several files built in [`Backend::scratch`] at once (a commit's records
    /// files: one sync for all where the storage allows it). A name that exists already is
    /// left as it is (files are content-addressed). Returns how many were new.
    fn publish_all(
        &self,
        kind: FileKind,
        built: Vec<(String, durable::TempFile)>,
    ) -> io::Result<usize>;
    /// The local directory where files are built before they are published.
    fn scratch(&self) -> PathBuf;
    /// Removes a file; a file that is not there is no error.
    fn remove(&self, kind: FileKind, name: &str) -> io::Result<()>;
    /// Makes the places files go (a new repository, or one a writer is about to write to:
    /// a directory lost by accident is made again rather than failing writes). Files are
    /// left as they are.
    fn prepare(&self) -> io::Result<()>;
    /// Removes what crashed writers left in [`Backend::scratch`]; only the lock holder may.
    fn clear_scratch(&self) -> io::Result<()>;
    /// What is there that belongs to no part of the format, for `verify`'s notes: stray
    /// files (relative names), and scratch files left by a crashed writer.
    fn strays(&self) -> io::Result<(Vec<String>, Vec<String>)>;
    /// Takes the one-writer lock for `command`, or fails at once with
    /// [`RepoError::Locked`] naming the holder. Held until the guard is dropped.
    fn lock(&self, command: &str) -> Result<Box<dyn HeldLock>, RepoError>;
}

/// Why a request to a storage service failed, for the user: which endpoint or bucket, and
/// what to do. Carried inside the `io::Error` a backend returns, so that the repository's
/// error can say what kind of failure it is (see [`RepoError::kind`]).
#[derive(Debug)]
pub struct StorageFailure {
    pub kind: crate::failure::FailureKind,
    message: String,
}

impl StorageFailure {
    pub fn new(kind: crate::failure::FailureKind, message: String) -> StorageFailure {
        StorageFailure { kind, message }
    }

    /// The failure inside `error`, when a storage service's request failed.
    pub fn of(error: &io::Error) -> Option<&StorageFailure> {
        error.get_ref()?.downcast_ref::<StorageFailure>()
    }
}

impl std::fmt::Display for StorageFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StorageFailure {}

/// A held writer lock; dropping it releases the lock.
pub trait HeldLock: Send + Sync + std::fmt::Debug {
    /// Whether the lock is still certainly ours; `Err` says why not. An `flock` is held
    /// until the process ends; a lock object can be lost.
    fn still_held(&self) -> Result<(), String> {
        Ok(())
    }
}

impl HeldLock for super::lock::RepoLock {}

/// A repository in a local directory, laid out as `docs/FORMAT.md` says.
#[derive(Debug)]
pub struct LocalBackend {
    root: PathBuf,
    /// The pack read from last, kept open: reading one message after another (restore,
    /// `cat`, verify's frames) mostly reads from one pack, and opening it for every frame
    /// cost more than reading a small one.
    last: Mutex<Option<(FileKind, String, Arc<std::fs::File>)>>,
}

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend {
            root: root.into(),
            last: Mutex::new(None),
        }
    }

    /// An open handle on the file; packs, which never change once written, stay open for
    /// the next read (other files are replaced by rename, so a kept handle could go stale).
    fn open_cached(&self, kind: FileKind, name: &str) -> io::Result<Arc<std::fs::File>> {
        if kind != FileKind::Pack {
            return Ok(Arc::new(std::fs::File::open(self.path(kind, name))?));
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, n, file)) = last.as_ref()
            && *k == kind
            && n == name
        {
            return Ok(file.clone());
        }
        let file = Arc::new(std::fs::File::open(self.path(kind, name))?);
        *last = Some((kind, name.to_string(), file.clone()));
        Ok(file)
    }

    fn path(&self, kind: FileKind, name: &str) -> PathBuf {
        self.root.join(kind.relative(name))
    }
}

impl Backend for LocalBackend {
    fn location(&self, kind: FileKind, name: &str) -> PathBuf {
        self.path(kind, name)
    }

    fn list(&self, kind: FileKind) -> io::Result<Vec<Listed>> {
        let (Some(dir), suffix) = kind.place() else {
            let path = self.path(kind, "");
            return match std::fs::metadata(&path) {
                Ok(m) => Ok(vec![Listed {
                    name: String::new(),
                    size: m.len(),
                    modified: m.modified().ok(),
                }]),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(e),
            };
        };
        let dir = self.root.join(dir);
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // A missing directory holds nothing; writers recreate it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let file_name = entry.file_name();
            let Some(stem) = file_name.to_str().and_then(|n| n.strip_suffix(suffix)) else {
                continue;
            };
            // Temporary files of older writers started with `.tmp-`; no name of the format
            // starts with a dot.
            if stem.is_empty() || stem.starts_with('.') {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) if m.is_file() => m,
                Ok(_) => continue,
                // Removed meanwhile (prune, another writer's rename).
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            out.push(Listed {
                name: stem.to_string(),
                size: meta.len(),
                modified: meta.modified().ok(),
            });
        }
        out.sort();
        Ok(out)
    }

    fn size(&self, kind: FileKind, name: &str) -> io::Result<u64> {
        Ok(std::fs::metadata(self.path(kind, name))?.len())
    }

    fn read(&self, kind: FileKind, name: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.path(kind, name))
    }

    fn read_at(&self, kind: FileKind, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let file = self.open_cached(kind, name)?;
        std::os::unix::fs::FileExt::read_exact_at(file.as_ref(), buf, offset)
    }

    fn open(&self, kind: FileKind, name: &str) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(std::fs::File::open(self.path(kind, name))?))
    }

    fn write(&self, kind: FileKind, name: &str, bytes: &[u8]) -> io::Result<()> {
        durable::write_file(&self.scratch(), &self.path(kind, name), bytes)
    }

    fn publish(&self, kind: FileKind, name: &str, built: durable::TempFile) -> io::Result<()> {
        built.persist(&self.path(kind, name))
    }

    fn publish_all(
        &self,
        kind: FileKind,
        built: Vec<(String, durable::TempFile)>,
    ) -> io::Result<usize> {
        let mut batch = durable::Batch::new();
        for (name, temp) in built {
            batch.add(temp, self.path(kind, &name));
        }
        batch.commit()
    }

    fn prepare(&self) -> io::Result<()> {
        let mut made = false;
        for dir in std::iter::once(self.root.clone())
            .chain(layout::DIRECTORIES.iter().map(|d| self.root.join(d)))
        {
            if !dir.is_dir() {
                durable::create_dir_all(&dir)?;
                made = true;
            }
        }
        // A new directory's entry is durable once its parent is synced.
        if made {
            durable::sync_dir(&self.root)?;
        }
        Ok(())
    }

    fn clear_scratch(&self) -> io::Result<()> {
        for entry in std::fs::read_dir(self.scratch())?.flatten() {
            durable::remove_file(&entry.path())?;
        }
        Ok(())
    }

    fn strays(&self) -> io::Result<(Vec<String>, Vec<String>)> {
        const KINDS: [FileKind; 5] = [
            FileKind::Pack,
            FileKind::Snapshot,
            FileKind::Checkpoint,
            FileKind::Index,
            FileKind::Records,
        ];
        let mut stray = Vec::new();
        for kind in KINDS {
            let (Some(dir), suffix) = kind.place() else {
                continue;
            };
            let Ok(entries) = std::fs::read_dir(self.root.join(dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name
                    .strip_suffix(suffix)
                    .is_some_and(|stem| kind.accepts(stem))
                {
                    stray.push(format!("{dir}/{name}"));
                }
            }
        }
        Ok((stray, file_names(&self.scratch())))
    }

    /// An exclusive `flock` on `lock`, which the kernel releases when the holder dies.
    fn lock(&self, command: &str) -> Result<Box<dyn HeldLock>, RepoError> {
        let lock = super::lock::RepoLock::acquire(&self.root.join(layout::LOCK), command)?;
        Ok(Box::new(lock))
    }

    /// `tmp/` in the repository: on its file system, so that publishing is a rename.
    fn scratch(&self) -> PathBuf {
        self.root.join(layout::TMP)
    }

    fn remove(&self, kind: FileKind, name: &str) -> io::Result<()> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last
            .as_ref()
            .is_some_and(|(k, n, _)| *k == kind && n == name)
        {
            *last = None;
        }
        drop(last);
        durable::remove_file(&self.path(kind, name))
    }
}

/// The names of the files in a local directory (none when it cannot be read), for the
/// scratch directory's leftovers.
pub(super) fn file_names(dir: &std::path::Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Reads `len` bytes of a file from `offset` on, through [`Backend::read_at`], with a
/// position that can be moved: a pack's frame streamed, or a pack's tar headers walked.
pub struct RangeReader<'a> {
    backend: &'a dyn Backend,
    kind: FileKind,
    name: String,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a> RangeReader<'a> {
    pub fn new(
        backend: &'a dyn Backend,
        kind: FileKind,
        name: &str,
        start: u64,
        len: u64,
    ) -> RangeReader<'a> {
        RangeReader {
            backend,
            kind,
            name: name.to_string(),
            start,
            len,
            pos: 0,
        }
    }
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.backend
            .read_at(self.kind, &self.name, self.start + self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl io::Seek for RangeReader<'_> {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let target = match to {
            io::SeekFrom::Start(n) => Some(n),
            io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn backend() -> (tempfile::TempDir, LocalBackend) {
        let dir = tempfile::tempdir().unwrap();
        for d in layout::DIRECTORIES {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let backend = LocalBackend::new(dir.path());
        (dir, backend)
    }

    #[test]
    fn names_are_the_formats_paths() {
        assert_eq!(FileKind::Pack.relative("ab"), "packs/ab.tar");
        assert_eq!(FileKind::Snapshot.relative("x"), "snapshots/x.json.zst");
        assert_eq!(FileKind::Config.relative(""), "config.json");
        assert_eq!(FileKind::Dictionary.relative("d"), "dicts/d.zdict.zst");
    }

    #[test]
    fn written_files_read_back_list_with_sizes_and_go() {
        let (dir, b) = backend();
        assert!(b.list(FileKind::Index).unwrap().is_empty());
        b.write(FileKind::Index, "bb", b"second").unwrap();
        b.write(FileKind::Index, "aa", b"first!!").unwrap();
        // Foreign and temporary files are not listed.
        std::fs::write(dir.path().join("index/notes.txt"), b"x").unwrap();
        std::fs::write(dir.path().join("index/.tmp-1.json.zst"), b"x").unwrap();
        let listed: Vec<(String, u64)> = b
            .list(FileKind::Index)
            .unwrap()
            .into_iter()
            .map(|l| (l.name, l.size))
            .collect();
        assert_eq!(listed, [("aa".to_string(), 7), ("bb".to_string(), 6)]);
        assert_eq!(b.read(FileKind::Index, "aa").unwrap(), b"first!!");
        assert_eq!(b.size(FileKind::Index, "aa").unwrap(), 7);
        let mut three = [0u8; 3];
        b.read_at(FileKind::Index, "aa", 2, &mut three).unwrap();
        assert_eq!(&three, b"rst");
        let mut past_the_end = [0u8; 10];
        let short = b.read_at(FileKind::Index, "aa", 5, &mut past_the_end);
        assert_eq!(short.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        let mut reader = RangeReader::new(&b, FileKind::Index, "aa", 1, 4);
        let mut got = String::new();
        reader.read_to_string(&mut got).unwrap();
        assert_eq!(got, "irst");
        io::Seek::seek(&mut reader, io::SeekFrom::Start(2)).unwrap();
        got.clear();
        reader.read_to_string(&mut got).unwrap();
        assert_eq!(got, "st");
        let mut all = Vec::new();
        b.open(FileKind::Index, "bb")
            .unwrap()
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all, b"second");
        assert_eq!(
            b.read(FileKind::Index, "zz").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        b.remove(FileKind::Index, "aa").unwrap();
        b.remove(FileKind::Index, "aa").unwrap();
        assert_eq!(b.list(FileKind::Index).unwrap().len(), 1);
        // Nothing is left in tmp/ by a write.
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn a_file_built_in_scratch_is_published_under_its_name() {
        let (_dir, b) = backend();
        let mut built = durable::TempFile::new(&b.scratch(), "pack").unwrap();
        std::io::Write::write_all(built.file(), b"tar bytes").unwrap();
        b.publish(FileKind::Pack, "cd", built).unwrap();
        assert_eq!(b.read(FileKind::Pack, "cd").unwrap(), b"tar bytes");
        assert_eq!(std::fs::read_dir(b.scratch()).unwrap().count(), 0);
    }

    #[test]
    fn single_files_list_as_one_nameless_entry() {
        let (_dir, b) = backend();
        assert!(b.list(FileKind::Verified).unwrap().is_empty());
        b.write(FileKind::Verified, "", b"{}").unwrap();
        let listed = b.list(FileKind::Verified).unwrap();
        assert_eq!((listed[0].name.as_str(), listed[0].size), ("", 2));
        assert_eq!(
            b.location(FileKind::Verified, ""),
            b.root.join("verified.json")
        );
    }
}
