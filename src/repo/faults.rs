//! Failures injected below the repository: a [`Backend`] that passes every call to the local
//! one but fails the Nth call of one kind, as an object store does when a request times out
//! or a connection drops. What must hold after any single failure: no committed snapshot
//! names a message that was not stored, the failure reaches the caller (never swallowed), and
//! the next run on a healthy store completes the work and verifies clean.

use std::io;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::backend::{Backend, FileKind, HeldLock, Listed, LocalBackend};
use super::error::RepoError;
use crate::durable;

/// The calls a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    /// `write`, `publish`, `publish_all`: a file going up.
    Write,
    /// `read`, `read_at`, `open`, `size`.
    Read,
    List,
    Remove,
}

#[derive(Debug)]
pub(crate) struct FaultyBackend {
    inner: LocalBackend,
    call: Call,
    /// Fails the call that brings the count of `call`s to this (1-based); 0: never.
    nth: usize,
    seen: AtomicUsize,
    pub(crate) failed: Mutex<Option<String>>,
}

impl FaultyBackend {
    pub(crate) fn new(root: PathBuf, call: Call, nth: usize) -> FaultyBackend {
        FaultyBackend {
            inner: LocalBackend::new(root),
            call,
            nth,
            seen: AtomicUsize::new(0),
            failed: Mutex::new(None),
        }
    }

    fn check(&self, call: Call, what: &str) -> io::Result<()> {
        if call != self.call {
            return Ok(());
        }
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.nth {
            *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(what.to_string());
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("injected failure of {call:?} #{n} ({what})"),
            ));
        }
        Ok(())
    }
}

impl Backend for FaultyBackend {
    fn location(&self, kind: FileKind, name: &str) -> PathBuf {
        self.inner.location(kind, name)
    }
    fn list(&self, kind: FileKind) -> io::Result<Vec<Listed>> {
        self.check(Call::List, &kind.relative(""))?;
        self.inner.list(kind)
    }
    fn size(&self, kind: FileKind, name: &str) -> io::Result<u64> {
        self.check(Call::Read, &kind.relative(name))?;
        self.inner.size(kind, name)
    }
    fn read(&self, kind: FileKind, name: &str) -> io::Result<Vec<u8>> {
        self.check(Call::Read, &kind.relative(name))?;
        self.inner.read(kind, name)
    }
    fn read_at(&self, kind: FileKind, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.check(Call::Read, &kind.relative(name))?;
        self.inner.read_at(kind, name, offset, buf)
    }
    fn open(&self, kind: FileKind, name: &str) -> io::Result<Box<dyn io::Read + Send>> {
        self.check(Call::Read, &kind.relative(name))?;
        self.inner.open(kind, name)
    }
    fn write(&self, kind: FileKind, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.check(Call::Write, &kind.relative(name))?;
        self.inner.write(kind, name, bytes)
    }
    fn publish(&self, kind: FileKind, name: &str, built: durable::TempFile) -> io::Result<()> {
        self.check(Call::Write, &kind.relative(name))?;
        self.inner.publish(kind, name, built)
    }
    fn publish_all(
        &self,
        kind: FileKind,
        built: Vec<(String, durable::TempFile)>,
    ) -> io::Result<usize> {
        self.check(Call::Write, &kind.relative("*"))?;
        self.inner.publish_all(kind, built)
    }
    fn scratch(&self) -> PathBuf {
        self.inner.scratch()
    }
    fn remove(&self, kind: FileKind, name: &str) -> io::Result<()> {
        self.check(Call::Remove, &kind.relative(name))?;
        self.inner.remove(kind, name)
    }
    fn prepare(&self) -> io::Result<()> {
        self.inner.prepare()
    }
    fn clear_scratch(&self) -> io::Result<()> {
        self.inner.clear_scratch()
    }
    fn strays(&self) -> io::Result<(Vec<String>, Vec<String>)> {
        self.inner.strays()
    }
    fn lock(&self, command: &str) -> Result<Box<dyn HeldLock>, RepoError> {
        self.inner.lock(command)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::repo::{Layout, Manifest, MessageHash, MessageRecord, RepoLocation, Repository};
    use crate::repo::{ServerInfo, SnapshotId, Tool};

    /// `count` small messages, different for each `night`, some shared with the night before.
    fn mail(night: usize, count: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|i| {
                let n = night * count / 2 + i;
                format!(
                    "Subject: message {n}\r\n\r\n{}\r\n",
                    "body text ".repeat(n % 40 + 1)
                )
                .into_bytes()
            })
            .collect()
    }

    /// One night's run: store, checkpoint halfway, commit.
    fn night(repo: Repository, night: usize) -> Result<(), RepoError> {
        let mut writer = repo.lock("test")?;
        let messages = mail(night, 30);
        let time = chrono::DateTime::from_timestamp(1_767_225_600 + night as i64 * 86_400, 0)
            .unwrap_or_default();
        let mut manifest = Manifest {
            version: 1,
            id: SnapshotId::new(time),
            time: time.to_rfc3339(),
            account: "work".into(),
            complete: false,
            tool: Tool::default(),
            server: ServerInfo::default(),
            records: None,
            listing: None,
            messages: Vec::new(),
        };
        for (i, bytes) in messages.iter().enumerate() {
            let stored = writer.store_bytes(bytes)?;
            manifest.messages.push(MessageRecord::stored(
                i as u32 + 1,
                Some(format!("n{night}-{i}")),
                stored.hash(),
                bytes.len() as u64,
            ));
            if i == 14 {
                writer.flush()?;
                writer.checkpoint(&manifest)?;
            }
        }
        writer.commit(&manifest)?;
        writer.close()
    }

    fn everything_committed_reads_back(root: &std::path::Path) {
        let repo = Repository::open(root).unwrap();
        for id in repo.snapshots().unwrap() {
            let manifest = repo.manifest(&id).unwrap();
            for record in &manifest.messages {
                let hash = record.sha256.unwrap();
                let bytes = repo
                    .read_message(&hash)
                    .unwrap_or_else(|e| panic!("snapshot {id} names {hash}, unreadable: {e}"));
                assert_eq!(MessageHash::of(&bytes), hash);
            }
        }
    }

    #[test]
    fn any_one_failed_request_loses_nothing_and_the_next_run_completes() {
        for call in [Call::Write, Call::Read, Call::List, Call::Remove] {
            // Every call of this kind the night makes fails once, in turn, until a night
            // runs through without reaching the Nth.
            let mut injected = 0;
            for nth in 1.. {
                assert!(nth < 500, "{call:?}: the night never stops making calls");
                let dir = tempfile::tempdir().unwrap();
                let root = dir.path().join("repo");
                Repository::init(&root).unwrap();
                night(Repository::open(&root).unwrap(), 0).unwrap();
                let faulty = Arc::new(FaultyBackend::new(root.clone(), call, nth));
                let layout =
                    Layout::with_backend(RepoLocation::Local(root.clone()), faulty.clone());
                let outcome = Repository::open_in(layout).and_then(|repo| night(repo, 1));
                let failed = faulty.failed.lock().unwrap().clone();
                match (&outcome, &failed) {
                    // The failure reached the caller, as an I/O error naming the file.
                    (Err(e), Some(what)) => {
                        injected += 1;
                        let text = e.to_string();
                        assert!(
                            text.contains("injected failure") || text.contains(what.as_str()),
                            "{call:?} #{nth}: {text}"
                        );
                    }
                    (Ok(()), None) => break,
                    // A failed read of something optional (a cache) may be survived.
                    (Ok(()), Some(_)) if call == Call::Read || call == Call::Remove => {}
                    other => panic!("{call:?} #{nth}: {other:?}"),
                }
                everything_committed_reads_back(&root);
                // The next night, on a healthy store, completes and leaves it clean.
                night(Repository::open(&root).unwrap(), 2).unwrap();
                everything_committed_reads_back(&root);
                let repo = Repository::open(&root).unwrap();
                let report = crate::verify::verify(
                    &repo,
                    crate::verify::VerifyOptions {
                        data: crate::verify::DataCheck::Full,
                        threads: 1,
                    },
                )
                .unwrap();
                assert!(report.clean, "{call:?} #{nth}: {:?}", report.notes);
            }
            eprintln!("{call:?}: {injected} failures reported");
            assert!(injected > 0, "{call:?}: no failure reached the caller");
        }
    }
}
