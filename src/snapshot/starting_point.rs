//! What an account's run starts from — its latest committed snapshot and the checkpoints of
//! interrupted runs — read on a thread while the session is set up, heads before records, so
//! that a run with nothing new never reads the records (see [`Shortcut`]).

use std::sync::mpsc;

use crate::repo::{Layout, ListingDigest, Manifest, RecordsList, RepoError};

/// The starting point, read on a thread. The thread reads the manifests' heads first and
/// sends what they allow to skip; when a [`Shortcut`] is possible it waits to be told whether
/// the records are needed after all (a run with nothing new does not read them).
pub(super) struct Prefetch {
    pub(super) shortcut: mpsc::Receiver<Option<Shortcut>>,
    /// `true`: read the records; `false` (or dropped): stop.
    pub(super) go: mpsc::Sender<bool>,
    pub(super) thread: std::thread::JoinHandle<Result<Option<StartingPoint>, RepoError>>,
}

impl Prefetch {
    pub(super) fn start(layout: Layout, account: String) -> Prefetch {
        let (tell, shortcut) = mpsc::channel();
        let (go, told) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            StartingPoint::read_telling(&layout, &account, |found| {
                let possible = found.is_some();
                if tell.send(found).is_err() {
                    return false;
                }
                !possible || told.recv().unwrap_or(false)
            })
        });
        Prefetch {
            shortcut,
            go,
            thread,
        }
    }
}

/// The latest snapshot of the account when it archived everything its server listed, and no
/// run was interrupted since: a run that sees the same listing has nothing to download, and
/// its manifest shares that snapshot's records file instead of reading and rewriting it.
pub(super) struct Shortcut {
    pub(super) listing: ListingDigest,
    pub(super) records: RecordsList,
}

/// What a run starts from: the account's latest committed snapshot and its checkpoints.
pub(super) struct StartingPoint {
    pub(super) previous: Option<Manifest>,
    pub(super) checkpoints: Vec<Manifest>,
}

impl StartingPoint {
    pub(super) fn read(layout: &Layout, account: &str) -> Result<StartingPoint, RepoError> {
        StartingPoint::read_telling(layout, account, |_| true)?
            .ok_or_else(|| RepoError::Invalid("the starting point was not read".into()))
    }

    /// Reads the starting point, telling `shortcut` what the heads of the manifests allow
    /// before the (much larger) records are read; it answers whether to go on (`None` when
    /// it says no).
    fn read_telling(
        layout: &Layout,
        account: &str,
        shortcut: impl FnOnce(Option<Shortcut>) -> bool,
    ) -> Result<Option<StartingPoint>, RepoError> {
        let head = crate::repo::latest_snapshot_head_in(layout, account);
        // Their records are read by the matching, a file at a time (see `Inventory::build`).
        let checkpoints = crate::repo::checkpoint_heads_in(layout).map(|all| {
            all.into_iter()
                .filter(|c| c.account == account)
                .collect::<Vec<_>>()
        });
        // Recorded damage is healed by matching the listing against the records (a damaged
        // message is downloaded again), so it rules the shortcut out.
        let damage = crate::repo::verified_state_in(layout).is_ok_and(|s| s.has_damage());
        let found = match (&head, &checkpoints) {
            (Ok(Some(head)), Ok(checkpoints))
                if head.complete && checkpoints.is_empty() && !damage =>
            {
                head.listing
                    .zip(head.records.clone())
                    // A lost records file is reported by the full path, with what to do.
                    .filter(|(_, list)| crate::repo::records_present(layout, list))
                    .map(|(listing, records)| Shortcut { listing, records })
            }
            _ => None,
        };
        if !shortcut(found) {
            return Ok(None);
        }
        let previous = head?;
        // The run reads the records as soon as it has the listing, a file at a time, to
        // match them, and again to write them: bring them into the page cache meanwhile.
        for list in previous.iter().flat_map(|m| &m.records) {
            crate::repo::warm_records(layout, list);
        }
        Ok(Some(StartingPoint {
            previous,
            checkpoints: checkpoints?,
        }))
    }
}
