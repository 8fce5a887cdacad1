//! Durable file writes: the only code that creates, renames or removes files of a repository or
//! a restore target.
//!
//! A file is published by writing it under a temporary name, fsyncing it, renaming it into
//! place and fsyncing the directory (a rename without the fsyncs can leave a zero-length file
//! after a power cut). Readers therefore see either the old state or the complete new file.
//! Files are created 0600 and directories 0700: mail is private.

// This module is where the rule "files are published durably" is implemented.
#![allow(clippy::disallowed_methods)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of files we create.
pub const FILE_MODE: u32 = 0o600;
/// Mode of directories we create.
pub const DIR_MODE: u32 = 0o700;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creates `path` and its missing parents with mode 0700 (existing ones are left alone).
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Fsyncs a directory so that renames and creations in it survive a crash.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    // `Path::new("name").parent()` is the empty path: the current directory.
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    File::open(path)?.sync_all()
}

/// A file being written under a temporary name in `temp_dir`; [`TempFile::persist`] publishes
/// it. Dropped without `persist`, the temporary file is removed (best effort; a crash leaves
/// it for the next writer to clean up).
pub struct TempFile {
    file: File,
    path: TempPath,
}

/// Removes the temporary file on drop unless it was published.
struct TempPath(Option<PathBuf>);

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

impl TempFile {
    /// Creates a new, empty temporary file in `temp_dir`, named after `hint` for debugging.
    pub fn new(temp_dir: &Path, hint: &str) -> io::Result<TempFile> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let safe: String = hint
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(40)
            .collect();
        TempFile::named(&temp_dir.join(format!(".tmp-{safe}-{}-{n}", std::process::id())))
    }

    /// Creates a new, empty temporary file at exactly `path` (which must not exist), removed
    /// again unless published: a Maildir's `tmp/NAME`.
    pub fn named(path: &Path) -> io::Result<TempFile> {
        let path = path.to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)?;
        Ok(TempFile {
            file,
            path: TempPath(Some(path)),
        })
    }

    /// The open file, for writing, seeking and reading back.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    pub fn path(&self) -> &Path {
        self.path.0.as_deref().unwrap_or(Path::new(""))
    }

    /// fsync, rename to `dest`, fsync `dest`'s directory. `dest` must be on the same file
    /// system as the temporary directory; an existing `dest` is replaced atomically.
    pub fn persist(self, dest: &Path) -> io::Result<()> {
        let TempFile { file, mut path } = self;
        file.sync_all()?;
        drop(file);
        if let Some(temp) = path.0.as_deref() {
            fs::rename(temp, dest)?;
        }
        path.0 = None;
        sync_dir(dest.parent().unwrap_or(Path::new(".")))
    }
}

/// Files published together: written under temporary names without an fsync each, then one
/// `syncfs` makes all their data durable, then each is linked to its final name (never
/// replacing an existing file) and the destination directories are fsynced once. The order is
/// as crash-safe as one fsync per file (no final name ever points at unsynced data), at the
/// cost of one file-system sync per batch instead of one per file. A batch of a few files
/// fsyncs each instead: `syncfs` also waits for whatever other programs left unwritten on the
/// same file system, which on a busy machine costs more than a few fsyncs.
#[derive(Default)]
pub struct Batch {
    pending: Vec<(TempFile, PathBuf)>,
}

/// Batches of at most this many files fsync each file rather than the file system.
const FSYNC_EACH_UP_TO: usize = 8;

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Queues a written temporary file for publication as `dest`.
    pub fn add(&mut self, temp: TempFile, dest: PathBuf) {
        self.pending.push((temp, dest));
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Publishes every queued file. Returns how many were published; a destination that
    /// exists already is left alone and its temporary file removed (counted as not published).
    /// On error the files not yet published are removed.
    pub fn commit(&mut self) -> io::Result<usize> {
        let Some((first, _)) = self.pending.first() else {
            return Ok(0);
        };
        if self.pending.len() <= FSYNC_EACH_UP_TO {
            for (temp, _) in &self.pending {
                temp.file.sync_all()?;
            }
        } else {
            rustix::fs::syncfs(&first.file)?;
        }
        let mut published = 0;
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (temp, dest) in self.pending.drain(..) {
            // link + unlink, as Maildir deliveries do: link never replaces an existing file.
            match fs::hard_link(temp.path(), &dest) {
                Ok(()) => published += 1,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            drop(temp);
            let dir = dest.parent().unwrap_or(Path::new(".")).to_path_buf();
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        for dir in dirs {
            sync_dir(&dir)?;
        }
        Ok(published)
    }
}

/// Opens `path` for appending (creating it 0600 if missing) and reading: mbox files.
pub fn open_for_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Writes `bytes` to `dest` durably via a temporary file in `temp_dir`.
pub fn write_file(temp_dir: &Path, dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let hint = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temp = TempFile::new(temp_dir, &hint)?;
    temp.file().write_all(bytes)?;
    temp.persist(dest)
}

/// Creates `dest` with `bytes` only if it does not exist yet (mode 0600), without a temporary
/// file: for files whose partial content would do no harm, like a sample configuration.
pub fn create_new_file(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(dest)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    sync_dir(dest.parent().unwrap_or(Path::new(".")))
}

/// Opens (creating if needed, mode 0600) a file for reading and writing without truncating it:
/// lock files.
pub fn open_or_create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
}

/// Removes a file and fsyncs its directory. A file that is already gone is not an error.
pub fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("."))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn write_file_publishes_private_files_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        create_dir_all(&tmp).unwrap();
        let dest = dir.path().join("a.json");
        write_file(&tmp, &dest, b"one").unwrap();
        write_file(&tmp, &dest, b"two").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            FILE_MODE
        );
        assert_eq!(
            fs::metadata(&tmp).unwrap().permissions().mode() & 0o777,
            DIR_MODE
        );
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn a_dropped_temp_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = TempFile::new(dir.path(), "x").unwrap();
        t.file().write_all(b"partial").unwrap();
        let path = t.path().to_path_buf();
        drop(t);
        assert!(!path.exists());
    }

    #[test]
    fn a_batch_publishes_without_replacing() {
        // A few files (an fsync each) and many (one syncfs) alike.
        for count in [3, FSYNC_EACH_UP_TO + 3] {
            let dir = tempfile::tempdir().unwrap();
            let existing = dir.path().join("f1");
            create_new_file(&existing, b"keep me").unwrap();
            let mut batch = Batch::new();
            for i in 0..count {
                let name = format!("f{i}");
                let mut t = TempFile::named(&dir.path().join(format!("tmp-{name}"))).unwrap();
                t.file().write_all(name.as_bytes()).unwrap();
                batch.add(t, dir.path().join(name));
            }
            assert_eq!(batch.commit().unwrap(), count - 1);
            assert!(batch.is_empty());
            assert_eq!(fs::read(dir.path().join("f0")).unwrap(), b"f0");
            assert_eq!(fs::read(&existing).unwrap(), b"keep me");
            let names: Vec<String> = fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names.len(), count, "{names:?}");
            assert!(!names.iter().any(|n| n.starts_with("tmp-")), "{names:?}");
        }
    }

    #[test]
    fn create_new_file_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("config.toml");
        create_new_file(&dest, b"first").unwrap();
        assert_eq!(
            create_new_file(&dest, b"second").unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(fs::read(&dest).unwrap(), b"first");
    }
}
