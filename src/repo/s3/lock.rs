//! The writer lock on an object store, which has no `flock` and (Garage among them) no
//! put-if-absent: restic's protocol.
//!
//! 1. Write `locks/<random id>.json` naming host, pid, command and start time.
//! 2. Wait [`LOCK_SETTLE`], then list `locks/`. Another lock that is not stale and is named
//!    before ours (by object name) means someone else is writing or about to: remove ours and
//!    refuse. One named after ours is either backing off (it sees ours) or held since before
//!    ours was written: look again, a few times, and refuse if it stays. Two writers that start
//!    together therefore end with exactly one holder; two never both hold, because a holder
//!    listed before the other's lock existed, and the other then sees the holder's lock.
//! 3. While held, rewrite the object every [`LOCK_REFRESH`]; on release, delete it.
//!
//! A lock is stale when the store's own clock (its Last-Modified against the one it gives
//! our fresh lock, so clocks of different hosts never matter) says it was last written more
//! than [`LOCK_STALE`] ago, or when it names a process on this host that no longer runs
//! (kill -9, a crash): then it is removed.
//!
//! The check relies on the store listing a finished PUT at once (read-after-write), which
//! AWS S3, Garage, MinIO and Ceph give.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use super::S3Backend;
use crate::repo::backend::HeldLock;
use crate::repo::error::RepoError;
use crate::repo::lock::LockInfo;

/// A lock not rewritten for this long is taken as left behind by a writer that died.
pub(crate) const LOCK_STALE: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is rewritten: well within [`LOCK_STALE`].
pub(crate) const LOCK_REFRESH: Duration = Duration::from_secs(5 * 60);
/// How long after writing its lock a writer looks for others.
const LOCK_SETTLE: Duration = Duration::from_millis(200);
/// How many more times a writer looks while only locks named after its own are there (they
/// back off when they see it, unless they hold the lock).
const LOOKS_AT_LATER_LOCKS: u32 = 5;

const DIR: &str = "locks/";
const SUFFIX: &str = ".json";

pub(super) fn is_lock_object(path: &str) -> bool {
    path.strip_prefix(DIR)
        .and_then(|p| p.strip_suffix(SUFFIX))
        .is_some_and(|id| id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A held lock object; dropping it stops the refresher and deletes the object.
pub(super) struct ObjectLock {
    object: String,
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<std::thread::JoinHandle<()>>,
    op: opendal::blocking::Operator,
    state: Arc<std::sync::Mutex<LockState>>,
    /// Keeps the operator's runtime alive until the lock is gone.
    _runtime: Arc<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for ObjectLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectLock")
            .field("object", &self.object)
            .finish_non_exhaustive()
    }
}

impl HeldLock for ObjectLock {
    fn still_held(&self) -> Result<(), String> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(why) = &state.lost {
            return Err(why.clone());
        }
        // Well before anyone may take it as stale, even if the refresher is stuck.
        let since = state.refreshed.elapsed();
        if since > LOCK_STALE / 2 {
            return Err(format!(
                "the repository lock {} was last refreshed {} minutes ago",
                self.object,
                since.as_secs() / 60
            ));
        }
        Ok(())
    }
}

/// What the refresher knows about the lock.
struct LockState {
    /// When the lock object was last written.
    refreshed: std::time::Instant,
    /// Why the lock is no longer ours.
    lost: Option<String>,
}

impl ObjectLock {
    pub(super) fn acquire(backend: &S3Backend, command: &str) -> Result<ObjectLock, RepoError> {
        match try_acquire(backend, command)? {
            Ok(lock) => Ok(lock),
            Err(holder) => Err(locked(backend, holder)),
        }
    }
}

fn locked(backend: &S3Backend, (object, holder): (String, LockInfo)) -> RepoError {
    RepoError::Locked {
        path: backend.url(&object).into(),
        holder: Box::new(holder),
        freed: " (a lock object not rewritten for 30 minutes is taken over, and one of a \
                process gone from this host at once; or delete that object if the process is \
                gone)",
    }
}

/// One round of the protocol: our lock, or the holder that keeps us out.
fn try_acquire(
    backend: &S3Backend,
    command: &str,
) -> Result<Result<ObjectLock, (String, LockInfo)>, RepoError> {
    let id: String = crate::repo::id::random_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let object = format!("{DIR}{id}{SUFFIX}");
    let info = LockInfo::current(command);
    write(backend, &object, &info)?;
    let now = backend
        .op
        .stat(&object)
        .ok()
        .and_then(|m| m.last_modified())
        .map(SystemTime::from)
        .unwrap_or_else(SystemTime::now);
    // Who else is there: a lock named before ours keeps us out; one named after ours is
    // either backing off (it sees ours) or a holder that listed before ours was written, so
    // we look again a few times and never hold while it is there.
    let mut looks = 0;
    loop {
        std::thread::sleep(LOCK_SETTLE);
        let others = live_locks(backend, Some(&object), now, true)?;
        let first = others.iter().min_by(|a, b| a.0.cmp(&b.0)).cloned();
        match first {
            None => break,
            Some(other) if other.0 < object || looks >= LOOKS_AT_LATER_LOCKS => {
                let _ = backend.op.delete(&object);
                return Ok(Err(other));
            }
            Some(_) => looks += 1,
        }
    }
    let (stop, stopped) = mpsc::channel::<()>();
    let state = Arc::new(std::sync::Mutex::new(LockState {
        refreshed: std::time::Instant::now(),
        lost: None,
    }));
    let refresher = {
        let op = backend.op.clone();
        let object = object.clone();
        let location = backend.location.clone();
        let state = state.clone();
        std::thread::Builder::new()
            .name("popbackup-lock".into())
            .spawn(move || {
                // Until the guard is dropped (or gone): rewrite the lock every LOCK_REFRESH.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(LOCK_REFRESH)
                {
                    if !refresh(&op, &location, &object, &info, &state) {
                        break;
                    }
                }
            })
            .map_err(|e| RepoError::Invalid(format!("cannot start the lock refresher: {e}")))?
    };
    Ok(Ok(ObjectLock {
        object,
        stop: Some(stop),
        refresher: Some(refresher),
        op: backend.op.clone(),
        state,
        _runtime: backend.runtime.clone(),
    }))
}

/// Rewrites the lock object with the time; `false` once the lock is lost (someone removed
/// it: rewriting it then would make two holders).
fn refresh(
    op: &opendal::blocking::Operator,
    location: &crate::repo::location::S3Location,
    object: &str,
    info: &LockInfo,
    state: &std::sync::Mutex<LockState>,
) -> bool {
    let mut info = info.clone();
    info.refreshed = Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let bytes = serde_json::to_vec_pretty(&info).unwrap_or_default();
    let outcome = match op.stat(object) {
        Err(e) if e.kind() == opendal::ErrorKind::NotFound => {
            let why = format!("the repository lock {object} was removed by another process");
            log::warn!("{why}");
            state.lock().unwrap_or_else(|e| e.into_inner()).lost = Some(why);
            return false;
        }
        Err(e) => Err(e),
        Ok(_) => op.write(object, bytes).map(|_| ()),
    };
    match outcome {
        Ok(()) => {
            state.lock().unwrap_or_else(|e| e.into_inner()).refreshed = std::time::Instant::now();
        }
        Err(e) => log::warn!(
            "cannot refresh the repository lock {object}: {}",
            super::describe(location, object, e)
        ),
    }
    true
}

fn write(backend: &S3Backend, object: &str, info: &LockInfo) -> Result<(), RepoError> {
    let bytes = serde_json::to_vec_pretty(info).unwrap_or_default();
    backend.op.write(object, bytes).map(|_| ()).map_err(|e| {
        RepoError::io("cannot write the lock", backend.url(object))(backend.failure(object, e))
    })
}

/// The locks under `locks/` other than `mine` that are not stale, with their holders; stale
/// ones are removed when `remove_stale`.
fn live_locks(
    backend: &S3Backend,
    mine: Option<&str>,
    now: SystemTime,
    remove_stale: bool,
) -> Result<Vec<(String, LockInfo)>, RepoError> {
    let entries = backend
        .op
        .list(DIR)
        .map_err(|e| RepoError::io("cannot list", backend.url(DIR))(backend.failure(DIR, e)))?;
    let host = crate::repo::lock::host_name();
    let mut live = Vec::new();
    for entry in entries {
        let object = entry.path().to_string();
        if Some(object.as_str()) == mine || !is_lock_object(&object) {
            continue;
        }
        let written = match backend.op.stat(&object) {
            Ok(meta) => meta.last_modified().map(SystemTime::from),
            // Released meanwhile.
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(RepoError::io("cannot read", backend.url(&object))(
                    backend.failure(&object, e),
                ));
            }
        };
        let info = match backend.op.read(&object) {
            Ok(bytes) => serde_json::from_slice::<LockInfo>(&bytes.to_vec())
                .unwrap_or_else(|_| LockInfo::unreadable()),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(RepoError::io("cannot read", backend.url(&object))(
                    backend.failure(&object, e),
                ));
            }
        };
        let old = written
            .and_then(|w| now.duration_since(w).ok())
            .is_some_and(|age| age > LOCK_STALE);
        let dead = info.host == host && info.pid != 0 && !process_runs(info.pid);
        if old || dead {
            if remove_stale {
                log::info!("removing the stale lock {object} of {info}");
                let _ = backend.op.delete(&object);
            }
            continue;
        }
        live.push((object, info));
    }
    Ok(live)
}

fn process_runs(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // EPERM: it runs, as another user.
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

impl Drop for ObjectLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.refresher.take() {
            let _ = thread.join();
        }
        if let Err(e) = self.op.delete(&self.object) {
            log::warn!("cannot remove the repository lock {}: {e}", self.object);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(name: &str) -> Option<S3Backend> {
        let location = super::super::tests::garage(name)?;
        Some(S3Backend::connect(&location).unwrap())
    }

    #[test]
    fn a_live_lock_refuses_and_an_old_one_is_stale() {
        let Some(b) = backend("lock-live") else {
            return;
        };
        let held = ObjectLock::acquire(&b, "snapshot").unwrap();
        let err = ObjectLock::acquire(&b, "prune").unwrap_err();
        let RepoError::Locked { holder, path, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            (holder.pid, holder.command.as_str()),
            (std::process::id(), "snapshot")
        );
        assert!(path.to_string_lossy().contains("/locks/"), "{path:?}");
        assert!(err.to_string().contains("30 minutes"), "{err}");
        assert!(held.still_held().is_ok());
        // Seen from half an hour later by the store's clock, it is stale.
        let now = SystemTime::now();
        assert_eq!(live_locks(&b, None, now, false).unwrap().len(), 1);
        let later = now + LOCK_STALE + Duration::from_secs(60);
        assert!(live_locks(&b, None, later, false).unwrap().is_empty());
        drop(held);
        assert!(
            live_locks(&b, None, now, false).unwrap().is_empty(),
            "released"
        );
        ObjectLock::acquire(&b, "prune").unwrap();
    }

    #[test]
    fn of_writers_starting_together_exactly_one_holds() {
        let Some(b) = backend("lock-race") else {
            return;
        };
        for round in 0..4 {
            let results: Vec<Result<ObjectLock, RepoError>> = std::thread::scope(|scope| {
                let racers: Vec<_> = (0..3)
                    .map(|_| scope.spawn(|| ObjectLock::acquire(&b, "snapshot")))
                    .collect();
                racers.into_iter().map(|r| r.join().unwrap()).collect()
            });
            let held = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(held, 1, "round {round}: {results:?}");
            for r in &results {
                if let Err(e) = r {
                    assert!(matches!(e, RepoError::Locked { .. }), "{e:?}");
                }
            }
            drop(results);
            assert!(
                live_locks(&b, None, SystemTime::now(), false)
                    .unwrap()
                    .is_empty()
            );
        }
    }

    #[test]
    fn the_lock_of_a_process_gone_from_this_host_is_taken_over() {
        let Some(b) = backend("lock-dead") else {
            return;
        };
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        let mut info = LockInfo::current("snapshot");
        info.pid = gone.id();
        let object = format!("{DIR}{}{SUFFIX}", "ab".repeat(16));
        write(&b, &object, &info).unwrap();
        let lock = ObjectLock::acquire(&b, "snapshot").unwrap();
        assert!(
            b.op.stat(&object).is_err(),
            "the dead process's lock was removed"
        );
        drop(lock);
    }

    #[test]
    fn a_lock_removed_by_someone_else_is_lost_and_not_written_again() {
        let Some(b) = backend("lock-lost") else {
            return;
        };
        let lock = ObjectLock::acquire(&b, "snapshot").unwrap();
        let info = LockInfo::current("snapshot");
        assert!(refresh(
            &b.op,
            &b.location,
            &lock.object,
            &info,
            &lock.state
        ));
        assert!(lock.still_held().is_ok());
        b.op.delete(&lock.object).unwrap();
        assert!(!refresh(
            &b.op,
            &b.location,
            &lock.object,
            &info,
            &lock.state
        ));
        let why = lock.still_held().unwrap_err();
        assert!(why.contains("removed by another process"), "{why}");
        assert!(b.op.stat(&lock.object).is_err(), "not recreated");
    }
}
