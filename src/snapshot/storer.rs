//! Storing downloaded messages on other threads, so that one account's connection keeps
//! reading (TLS, dot-unstuffing, header capture) while the previous messages are hashed,
//! compressed and written. Compression, the largest cost of a snapshot, runs on one worker per
//! core outside the repository's lock; only appending the frame to the pack takes the lock.
//! The queue is bounded, which bounds memory: at most `QUEUE` messages of at most
//! `BUFFER_LIMIT` bytes wait at a time, plus one being compressed per worker.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use crate::repo::{FrameCompressor, MessageHash, RepoError, RepoWriter, Stored};

/// Messages waiting to be stored, at most.
const QUEUE: usize = 16;

/// Compressing workers: one per core, at most this many.
const MAX_WORKERS: usize = 4;

struct Job {
    slot: usize,
    bytes: Vec<u8>,
}

/// One stored message: which manifest slot it was for, and what storing did.
pub struct Done {
    pub slot: usize,
    pub result: Result<Stored, RepoError>,
}

/// The connection thread's end of the store queue.
pub struct Storer {
    jobs: Option<SyncSender<Job>>,
    results: Receiver<(Done, Vec<u8>)>,
    pending: usize,
    /// Emptied buffers coming back, reused for the next messages.
    spare: Vec<Vec<u8>>,
}

impl Storer {
    /// Starts the storing workers in `scope`; they store with `level` (or the repository's).
    pub fn start<'scope, 'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        writer: &'env Mutex<RepoWriter>,
        level: Option<i32>,
    ) -> Storer {
        let (jobs, inbox) = sync_channel::<Job>(QUEUE);
        let (outbox, results) = sync_channel(QUEUE + MAX_WORKERS + 1);
        let inbox = Arc::new(Mutex::new(inbox));
        let check = writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .verify_before_commit();
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_WORKERS);
        for _ in 0..workers {
            let inbox = Arc::clone(&inbox);
            let outbox = outbox.clone();
            scope.spawn(move || {
                let mut compressor = FrameCompressor::new(check);
                loop {
                    let job = match inbox.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                        Ok(job) => job,
                        Err(_) => break,
                    };
                    let result = guarded(|| store(writer, &mut compressor, level, &job.bytes));
                    if result.is_err() {
                        // It may have been left half way through a frame.
                        compressor = FrameCompressor::new(check);
                    }
                    let mut bytes = job.bytes;
                    bytes.clear();
                    let done = Done {
                        slot: job.slot,
                        result,
                    };
                    if outbox.send((done, bytes)).is_err() {
                        break;
                    }
                }
            });
        }
        Storer {
            jobs: Some(jobs),
            results,
            pending: 0,
            spare: Vec::new(),
        }
    }

    /// An empty buffer to read the next message into.
    pub fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Queues a message for `slot`; waits while the queue is full. Results that arrived
    /// meanwhile are returned.
    pub fn submit(&mut self, slot: usize, bytes: Vec<u8>) -> Result<Vec<Done>, RepoError> {
        let mut done = self.ready();
        // Keep the results channel from filling while we wait for room in the queue.
        while self.pending >= QUEUE {
            done.push(self.next()?);
        }
        let sender = self
            .jobs
            .as_ref()
            .ok_or_else(|| RepoError::Invalid("the store queue is closed".into()))?;
        sender
            .send(Job { slot, bytes })
            .map_err(|_| RepoError::Invalid("the storing thread stopped".into()))?;
        self.pending += 1;
        Ok(done)
    }

    /// The results that are ready, without waiting.
    pub fn ready(&mut self) -> Vec<Done> {
        let mut out = Vec::new();
        while let Ok((done, bytes)) = self.results.try_recv() {
            self.pending -= 1;
            self.recycle(bytes);
            out.push(done);
        }
        out
    }

    /// Waits until every queued message is stored and returns their results.
    pub fn wait_all(&mut self) -> Result<Vec<Done>, RepoError> {
        let mut out = self.ready();
        while self.pending > 0 {
            out.push(self.next()?);
        }
        Ok(out)
    }

    fn next(&mut self) -> Result<Done, RepoError> {
        let (done, bytes) = self
            .results
            .recv()
            .map_err(|_| RepoError::Invalid("the storing thread stopped".into()))?;
        self.pending -= 1;
        self.recycle(bytes);
        Ok(done)
    }

    fn recycle(&mut self, bytes: Vec<u8>) {
        if self.spare.len() < 4 && bytes.capacity() <= 2 * super::engine::BUFFER_LIMIT {
            self.spare.push(bytes);
        }
    }

    /// Stops the thread once the queue is empty.
    pub fn close(&mut self) {
        self.jobs = None;
    }
}

/// Runs `store`, turning a panic into an error. The connection thread waits for a result for
/// every message it queued: a worker that died without one would leave the run, and the
/// repository's lock, hanging forever (a run from cron, night after night).
fn guarded(store: impl FnOnce() -> Result<Stored, RepoError>) -> Result<Stored, RepoError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(store)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(RepoError::Invalid(format!(
            "internal error while storing a message ({what}); the run stops here and what \
             it committed stays. This is a bug in popbackup: please report it"
        )))
    })
}

/// Stores one message: hashed and compressed without the lock, appended under it. While the
/// writer still samples messages for a dictionary, the whole store happens under the lock.
fn store(
    writer: &Mutex<RepoWriter>,
    compressor: &mut FrameCompressor,
    level: Option<i32>,
    bytes: &[u8],
) -> Result<Stored, RepoError> {
    let lock = || writer.lock().unwrap_or_else(|e| e.into_inner());
    let hash = MessageHash::of(bytes);
    let raw_len = bytes.len() as u64;
    let plan = {
        let mut w = lock();
        if w.contains(&hash) {
            return Ok(Stored::Duplicate(hash, raw_len));
        }
        match w.frame_plan(bytes.len(), level) {
            Some(plan) => plan,
            None => {
                w.set_compression_level(level);
                return w.store_bytes(bytes);
            }
        }
    };
    let frame = compressor.compress(bytes, plan, |h| {
        lock().repo().dictionary(h).map(|d| d.bytes.clone())
    })?;
    lock().store_frame(hash, raw_len, &frame, plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_that_panics_gives_an_error_instead_of_no_result() {
        let err = guarded(|| panic!("frame table out of step")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("frame table out of step"), "{text}");
        assert!(text.contains("please report it"), "{text}");
        let err = guarded(|| panic!("{} of {}", 3, 4)).unwrap_err();
        assert!(err.to_string().contains("3 of 4"), "{err}");
        let hash = MessageHash::of(b"m");
        assert!(matches!(
            guarded(|| Ok(Stored::Duplicate(hash, 1))),
            Ok(Stored::Duplicate(h, 1)) if h == hash
        ));
    }
}
