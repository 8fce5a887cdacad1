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

/// Plans the deletions for the account of `current` (a committed manifest).
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
    let old_enough: Vec<_> = current
        .messages
        .iter()
        .filter(|r| r.uidl.is_some() && r.sha256.is_some())
        .filter(|r| {
            r.first_seen
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| now - t.with_timezone(&Utc) >= age)
        })
        .collect();
    if old_enough.is_empty() {
        return Ok(DelePlan::default());
    }
    // In how many verified snapshots of this account each (UIDL, hash) pair appears.
    let verified = repo.verified_state()?;
    let mut seen: HashMap<(String, MessageHash), usize> = HashMap::new();
    for id in verified.snapshots.keys() {
        if *id == current.id {
            continue;
        }
        let Ok(manifest) = repo.manifest(id) else {
            continue;
        };
        if manifest.account != current.account {
            continue;
        }
        let pairs: HashSet<(String, MessageHash)> = manifest
            .messages
            .iter()
            .filter_map(|r| Some((r.uidl.clone()?, r.sha256?)))
            .collect();
        for pair in pairs {
            *seen.entry(pair).or_default() += 1;
        }
    }
    let mut plan = DelePlan::default();
    for r in old_enough {
        let (Some(uidl), Some(hash)) = (&r.uidl, r.sha256) else {
            continue;
        };
        let in_verified = seen.get(&(uidl.clone(), hash)).copied().unwrap_or(0);
        let pack_verified = repo
            .location(&hash)
            .is_some_and(|l| verified.packs.contains_key(&l.pack));
        // Read it back now: damage since the last verify must stop the deletion too.
        let intact = pack_verified && repo.read_message(&hash).is_ok();
        if in_verified >= 2 && intact {
            plan.candidates.push(DeleCandidate {
                msg: r.msg,
                uidl: uidl.clone(),
                hash,
                first_seen: r.first_seen.clone().unwrap_or_default(),
                size: r.size.unwrap_or(r.list_size),
            });
        } else {
            plan.kept += 1;
        }
    }
    Ok(plan)
}
