//! `prune`: removing data no snapshot (or unfinished checkpoint) refers to.
//!
//! A pack nothing refers to is deleted; a pack mostly unused (`max_unused_percent` or more of
//! its frame bytes) is repacked: its used frames are copied byte for byte into new packs (no
//! recompression), then it is deleted. Order, so that a crash anywhere leaves a valid
//! repository: new packs → one index file covering every pack that stays → removal of the
//! other index files → removal of the packs that go.

use std::collections::HashSet;

use serde::Serialize;

use crate::repo::pack::PackEntry;
use crate::repo::{IndexedPack, MessageHash, PackId, RecordsId, RepoError, RepoWriter, Repository};

/// What happens to one pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PackAction {
    Keep,
    Repack,
    Delete,
}

#[derive(Debug, Clone, Serialize)]
pub struct PackPlan {
    pub pack: PackId,
    pub action: PackAction,
    pub messages: usize,
    pub used_messages: usize,
    pub bytes: u64,
    pub used_bytes: u64,
    /// The used entries, copied into new packs (only for a pack to repack).
    #[serde(skip)]
    pub used: Vec<PackEntry>,
    /// The entries, for the new index (only for a pack kept).
    #[serde(skip)]
    pub entries: Vec<PackEntry>,
}

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct PrunePlan {
    pub packs: Vec<PackPlan>,
    /// Distinct messages some snapshot or checkpoint refers to.
    pub referenced: usize,
    pub delete_packs: usize,
    pub repack_packs: usize,
    /// Frame bytes that will be gone afterwards.
    pub freed_bytes: u64,
    /// Frame bytes copied into new packs.
    pub copied_bytes: u64,
    /// Records files no snapshot or checkpoint names any more (their snapshots were
    /// forgotten, or a run's last checkpoint named the last records it had then).
    pub unused_records: Vec<RecordsId>,
}

/// What `prune` did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub plan: PrunePlan,
    pub new_packs: Vec<PackId>,
    pub removed_packs: usize,
}

/// Plans a prune. Refuses (with advice) when the repository's structure is not intact: prune
/// must never decide from a damaged picture.
pub fn plan_prune(repo: &Repository, max_unused_percent: f64) -> Result<PrunePlan, RepoError> {
    let check = crate::verify::verify(
        repo,
        crate::verify::VerifyOptions {
            data: crate::verify::DataCheck::Quick,
            threads: 0,
        },
    )?;
    if !check.clean {
        return Err(RepoError::Invalid(format!(
            "prune refuses to run on a damaged repository ({} damaged message(s), {} damaged \
             pack(s), {} unreadable snapshot(s)); run `popbackup verify` for the report",
            check.damaged_messages.len(),
            check.damaged_packs.len(),
            check.damaged_snapshots.len()
        )));
    }
    // By the names messages are stored under, which pack tables list.
    let mut referenced: HashSet<MessageHash> = HashSet::new();
    let mut named_records: HashSet<RecordsId> = HashSet::new();
    for id in repo.snapshots()? {
        // A records file at a time: a snapshot of 100,000 messages is 45 MB of records.
        let mut manifest = repo.manifest_head(&id)?;
        named_records.extend(
            manifest
                .records
                .iter()
                .flat_map(|list| list.0.iter().copied()),
        );
        repo.for_each_record(&mut manifest, |r| {
            referenced.extend(r.sha256.map(|h| repo.stored_name(&h)))
        })?;
    }
    for checkpoint in repo.checkpoints()? {
        referenced.extend(
            checkpoint
                .messages
                .iter()
                .filter_map(|r| r.sha256.map(|h| repo.stored_name(&h))),
        );
        // The run it belongs to resumes from these files.
        named_records.extend(checkpoint.records.into_iter().flat_map(|list| list.0));
    }
    let unused_records: Vec<RecordsId> = repo
        .records_files()?
        .into_iter()
        .filter(|r| !named_records.contains(r))
        .collect();
    // Each pack's entries, from its own table, a pack at a time; the copy the index uses is
    // the one kept.
    let mut ids: Vec<PackId> = repo.index().packs().map(|(id, _)| *id).collect();
    ids.sort();
    let mut packs = Vec::new();
    for id in ids {
        let mut entries = repo.pack_entries(&id)?;
        // Parsed into a vector grown by doubling: up to twice the room, for every kept pack.
        entries.shrink_to_fit();
        let used: Vec<PackEntry> = entries
            .iter()
            .filter(|e| referenced.contains(&e.hash))
            .filter(|e| repo.index().get(&e.hash).is_some_and(|l| l.pack == id))
            .copied()
            .collect();
        let bytes: u64 = entries.iter().map(|e| e.length).sum();
        let used_bytes: u64 = used.iter().map(|e| e.length).sum();
        let unused = bytes - used_bytes;
        let action = if used.is_empty() {
            PackAction::Delete
        } else if unused > 0 && unused as f64 * 100.0 >= bytes as f64 * max_unused_percent {
            PackAction::Repack
        } else {
            PackAction::Keep
        };
        // Only what carrying out the plan needs: a kept pack's entries go into the new
        // index, a repacked pack's used ones are copied (100,000 entries are 16 MB).
        let (used_messages, messages) = (used.len(), entries.len());
        let (used, entries) = match action {
            PackAction::Keep => (Vec::new(), entries),
            PackAction::Repack => (used, Vec::new()),
            PackAction::Delete => (Vec::new(), Vec::new()),
        };
        packs.push(PackPlan {
            pack: id,
            action,
            messages,
            used_messages,
            bytes,
            used_bytes,
            used,
            entries,
        });
    }
    let gone = |a: PackAction| packs.iter().filter(move |p| p.action == a);
    Ok(PrunePlan {
        referenced: referenced.len(),
        delete_packs: gone(PackAction::Delete).count(),
        repack_packs: gone(PackAction::Repack).count(),
        freed_bytes: packs
            .iter()
            .filter(|p| p.action != PackAction::Keep)
            .map(|p| p.bytes - p.used_bytes)
            .sum(),
        copied_bytes: gone(PackAction::Repack).map(|p| p.used_bytes).sum(),
        packs,
        unused_records,
    })
}

/// Carries out `plan` (made from `writer`'s repository under the same lock).
pub fn prune(writer: &mut RepoWriter, mut plan: PrunePlan) -> Result<PruneReport, RepoError> {
    // 1. Copy the used frames of the packs to repack into new packs, byte for byte.
    let mut new_packs = Vec::new();
    for p in plan.packs.iter().filter(|p| p.action == PackAction::Repack) {
        let mut frames = writer.repo().frames_of(&p.pack)?;
        for e in &p.used {
            writer.copy_frame(e.hash, frames.read(e)?, e.dict)?;
        }
    }
    new_packs.extend(writer.flush_packs()?);
    // 2. One index file for every pack that stays; 3. the other index files go.
    let mut staying: Vec<IndexedPack> = plan
        .packs
        .iter_mut()
        .filter(|p| p.action == PackAction::Keep)
        .map(|p| IndexedPack {
            id: p.pack,
            entries: std::mem::take(&mut p.entries),
        })
        .collect();
    staying.extend(new_packs.iter().cloned());
    // A repack after an interrupted prune can write a pack identical to one the plan drops
    // (same frames, same order: same name). It stays: never remove a pack the index now names.
    let stays: HashSet<PackId> = staying.iter().map(|p| p.id).collect();
    writer.replace_index(staying)?;
    // 4. The packs that go.
    let mut removed = 0;
    let mut verified = writer.repo().verified_state().unwrap_or_default();
    for p in plan
        .packs
        .iter()
        .filter(|p| p.action != PackAction::Keep && !stays.contains(&p.pack))
    {
        writer.remove_pack(&p.pack)?;
        verified.packs.remove(&p.pack);
        removed += 1;
    }
    if removed > 0 {
        writer.record_verified(&verified)?;
    }
    // 5. Message lists no snapshot names (no manifest can come to name them: a snapshot that
    // writes the same list writes the file again, under this lock).
    for r in &plan.unused_records {
        writer.remove_records(r)?;
    }
    Ok(PruneReport {
        new_packs: new_packs.iter().map(|p| p.id).collect(),
        removed_packs: removed,
        plan,
    })
}
