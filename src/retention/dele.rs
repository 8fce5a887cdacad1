//! Server-side deletion: which messages `delete_after_days` lets popbackup DELE.
//!
//! POP's habit is to delete after download, and that is how people lose mail when their one
//! disk dies. popbackup deletes only what the archive provably holds: a message may go only if
//! - it has been on the server for at least `delete_after_days` (since the first snapshot that
//!   listed it),
//! - it is in at least two snapshots of this account whose data `verify` found intact, under
//!   the same UIDL and with the same hash,
//! - its archived copy is in a verified pack and reads back with that hash right now,
//! - the snapshot just taken is committed (the caller's duty), and
//! - the server's UIDLs are stable: no UIDL support, or a message that came back under a new
//!   UIDL in this run, disables deletion altogether.
//!
//! The plan is data; the engine sends the DELEs, and only a successful QUIT commits them.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::repo::{Manifest, MessageHash, RepoError, Repository};

/// A message that may be deleted.
#[derive(Debug, Clone, Serialize)]
pub struct DeleCandidate {
    pub msg: u32,
    pub uidl: String,
    pub hash: MessageHash,
    pub first_seen: String,
    pub size: u64,
}

/// What may be deleted, or why nothing may.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DelePlan {
    pub candidates: Vec<DeleCandidate>,
    /// Set when deletion is off for this run, with the reason.
    pub disabled: Option<String>,
    /// Messages old enough but kept, and why (not yet in two verified snapshots, ...).
    pub kept: usize,
}

/// A message of the current snapshot old enough to go, if the other conditions hold.
struct OldEnough {
    msg: u32,
    uidl: String,
    hash: MessageHash,
    first_seen: String,
    size: u64,
}

/// Plans the deletions for the account of `current`, a committed manifest as
/// [`Repository::manifest_head`] reads it. Snapshots are read a records file at a time, and
/// only the messages old enough are kept: a mailbox of 100,000 messages held each snapshot's
/// whole list in turn.
pub fn plan_deletions(
    repo: &Repository,
    current: &Manifest,
    delete_after_days: u32,
    now: DateTime<Utc>,
    uidl_problem: Option<String>,
) -> Result<DelePlan, RepoError> {
    if let Some(reason) = uidl_problem {
        return Ok(DelePlan {
            disabled: Some(reason),
            ..DelePlan::default()
        });
    }
    let age = chrono::Duration::days(i64::from(delete_after_days));
    let mut old_enough: Vec<OldEnough> = Vec::new();
    repo.for_each_record(&mut current.clone(), |r| {
        let (Some(uidl), Some(hash), Some(first_seen)) = (r.uidl, r.sha256, r.first_seen) else {
            return;
        };
        let old = DateTime::parse_from_rfc3339(&first_seen)
            .is_ok_and(|t| now - t.with_timezone(&Utc) >= age);
        if old {
            old_enough.push(OldEnough {
                msg: r.msg,
                uidl,
                hash,
                first_seen,
                size: r.size.unwrap_or(r.list_size),
            });
        }
    })?;
    if old_enough.is_empty() {
        return Ok(DelePlan::default());
    }
    // In how many verified snapshots of this account each (UIDL, hash) pair of those appears.
    let mut slots: HashMap<(&str, MessageHash), usize> = HashMap::new();
    for r in &old_enough {
        let next = slots.len();
        slots.entry((r.uidl.as_str(), r.hash)).or_insert(next);
    }
    let mut counts = vec![0usize; slots.len()];
    let verified = repo.verified_state()?;
    for id in verified.snapshots.keys() {
        if *id == current.id {
            continue;
        }
        let Ok(mut manifest) = repo.manifest_head(id) else {
            continue;
        };
        if manifest.account != current.account {
            continue;
        }
        // Read only, the map can be asked with keys that borrow from each record in turn.
        let lookup: &HashMap<(&str, MessageHash), usize> = &slots;
        let mut found: HashSet<usize> = HashSet::new();
        let listed = repo.for_each_record(&mut manifest, |r| {
            if let (Some(uidl), Some(hash)) = (r.uidl.as_deref(), r.sha256)
                && let Some(&slot) = lookup.get(&(uidl, hash))
            {
                found.insert(slot);
            }
        });
        if listed.is_ok() {
            for slot in found {
                counts[slot] += 1;
            }
        }
    }
    let in_verified: Vec<usize> = old_enough
        .iter()
        .map(|r| {
            slots
                .get(&(r.uidl.as_str(), r.hash))
                .map_or(0, |&slot| counts[slot])
        })
        .collect();
    drop(slots);
    let mut plan = DelePlan::default();
    for (r, in_verified) in old_enough.into_iter().zip(in_verified) {
        let pack_verified = repo
            .location(&r.hash)
            .is_some_and(|l| verified.packs.contains_key(&l.pack));
        // Read it back now: damage since the last verify must stop the deletion too.
        let intact = pack_verified && repo.read_message(&r.hash).is_ok();
        if in_verified >= 2 && intact {
            plan.candidates.push(DeleCandidate {
                msg: r.msg,
                uidl: r.uidl,
                hash: r.hash,
                first_seen: r.first_seen,
                size: r.size,
            });
        } else {
            plan.kept += 1;
        }
    }
    Ok(plan)
}
