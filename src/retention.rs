//! Retention: which snapshots to keep (`forget`), which data no snapshot needs (`prune`), and
//! which messages may be deleted on the server (`DelePlan`). Plans are data: they are built,
//! shown (`--dry-run`, `--json`) and only then carried out.
//!
//! Safety order of `prune`: new packs (the kept messages of mostly-unused packs), then one
//! index file covering every pack that stays, then removal of the old index files, then removal
//! of the packs that go. A crash at any point leaves a valid repository: every kept message is
//! always in a pack that exists, and an index file never names a pack before it exists.

pub mod dele;
pub mod policy;
pub mod prune;

pub use dele::{DeleCandidate, DelePlan, plan_deletions};
pub use policy::{Decision, KeepPolicy, decide};
pub use prune::{PrunePlan, PruneReport, plan_prune, prune};

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};

use crate::repo::{RepoError, RepoWriter, Repository, SnapshotId};

/// Refuses to let `command` (`forget`, `prune`) decide from a damaged picture: the last
/// `verify` found damage that no snapshot has healed since. The specification says retention
/// refuses to run on a repository that fails verify; `--force` in the CLI skips this check.
pub fn refuse_if_damaged(repo: &Repository, command: &str) -> Result<(), RepoError> {
    let state = repo.verified_state()?;
    if !state.has_damage() {
        return Ok(());
    }
    Err(RepoError::Damaged {
        detail: format!(
            "{command} refuses to run: the verify of {} found {} damaged message(s) and {} \
             damaged pack(s) that are not healed yet. Run `popbackup snapshot` (it downloads \
             the damaged messages again from the servers that still have them and retires the \
             damaged packs), then `popbackup verify`; or pass --force to {command} anyway",
            state.damage_found.as_deref().unwrap_or("an earlier run"),
            state.damaged_messages.len(),
            state.damaged_packs.len()
        ),
    })
}

/// What `forget` decided, per account.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ForgetPlan {
    pub decisions: Vec<Decision>,
}

impl ForgetPlan {
    pub fn removed(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| !d.keep())
    }
}

/// Decides which snapshots `policy` keeps, for each account (or only `account`).
pub fn plan_forget<Tz: TimeZone>(
    repo: &Repository,
    policy: &KeepPolicy,
    account: Option<&str>,
    tz: &Tz,
) -> Result<ForgetPlan, RepoError> {
    let mut by_account: BTreeMap<String, Vec<(SnapshotId, DateTime<Utc>)>> = BTreeMap::new();
    for id in repo.snapshots()? {
        // The head is enough (account and time): a snapshot whose records file is damaged
        // can still be forgotten, which is what the damage report advises.
        let manifest = repo.manifest_head(&id)?;
        if account.is_some_and(|a| a != manifest.account) {
            continue;
        }
        let time = DateTime::parse_from_rfc3339(&manifest.time)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                RepoError::corrupt(
                    repo.snapshot_file(&id),
                    format!("its time {:?} is not RFC 3339: {e}", manifest.time),
                )
            })?;
        by_account
            .entry(manifest.account)
            .or_default()
            .push((id, time));
    }
    let mut decisions = Vec::new();
    for (name, snapshots) in by_account {
        decisions.extend(decide(&name, &snapshots, policy, tz));
    }
    Ok(ForgetPlan { decisions })
}

/// Removes the manifests `plan` lets go (and their entries in `verified.json`). Data stays
/// until `prune`.
pub fn forget(writer: &mut RepoWriter, plan: &ForgetPlan) -> Result<usize, RepoError> {
    let mut removed = 0;
    let mut verified = writer.repo().verified_state().unwrap_or_default();
    for d in plan.removed() {
        writer.remove_snapshot(&d.snapshot)?;
        verified.snapshots.remove(&d.snapshot);
        removed += 1;
    }
    if removed > 0 {
        writer.record_verified(&verified)?;
    }
    Ok(removed)
}
