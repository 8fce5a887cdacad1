//! Healing what `verify` found damaged, once good copies are stored.
//!
//! `verify` records damaged messages and packs in `verified.json`. A writer does not take a
//! damaged message as stored, so a snapshot whose server still has it (same UIDL, or the same
//! bytes under another) downloads and stores it again, and the new copy takes the damaged
//! one's place in the index. [`repair`] then retires each damaged pack whose every needed
//! message now reads from elsewhere: the frames of it that still read back and that the index
//! finds there are copied into new packs (and checked when those are read back), the index
//! files stop naming it, and it is deleted. A damaged pack still holding a needed message that
//! no good copy replaces stays, so that `verify` keeps naming that message; the healed ones
//! are taken out of its index listing, so that the index finds their good copies.
//!
//! Order, so that a crash anywhere leaves every message findable: new packs and their index
//! file, rewritten index files (each written before the one it replaces goes), the damaged
//! packs, then `verified.json`.

use std::collections::{BTreeSet, HashSet};

use serde::Serialize;

use super::{MessageHash, PackId, RepoError, RepoWriter};

/// What [`repair`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairReport {
    /// Damaged messages this session stored again from a good copy.
    pub healed: Vec<MessageHash>,
    /// Damaged packs deleted after what they held that still read back was copied out.
    pub retired_packs: Vec<PackId>,
    /// Frames copied out of them.
    pub moved: usize,
    /// Needed messages still damaged: no good copy was found.
    pub still_damaged: Vec<MessageHash>,
}

impl RepairReport {
    pub fn is_empty(&self) -> bool {
        self.healed.is_empty() && self.retired_packs.is_empty() && self.still_damaged.is_empty()
    }
}

/// Retires the damaged packs that can go, and records what is healed. A no-op (one small
/// read) when no damage is recorded.
pub fn repair(writer: &mut RepoWriter) -> Result<RepairReport, RepoError> {
    let Ok(mut state) = writer.repo().verified_state() else {
        return Ok(RepairReport::default());
    };
    if !state.has_damage() {
        return Ok(RepairReport::default());
    }
    // Good copies stored in this session are in packs, and the index finds them.
    writer.flush()?;
    let healed: HashSet<MessageHash> = writer.healed().iter().copied().collect();
    let still_damaged: BTreeSet<MessageHash> = state
        .damaged_messages
        .keys()
        .filter(|h| writer.is_damaged(h))
        .copied()
        .collect();

    // Which damaged packs can go, and what must move out of them first.
    let mut retiring: Vec<PackId> = Vec::new();
    let mut moved = 0;
    let verify_before = writer.verify_before_commit();
    // Copied frames are decompressed and re-hashed when their pack is read back: a frame of
    // a damaged pack must prove itself before it is published anywhere else.
    writer.set_verify_before_commit(true);
    let result = (|| {
        for (id, note) in &state.damaged_packs {
            if !writer.repo().index().has_pack(id) {
                continue;
            }
            let lost: HashSet<&MessageHash> = note.lost.iter().collect();
            let placed = writer.repo().index().placed_in(id);
            if placed
                .iter()
                .any(|e| lost.contains(&e.hash) && still_damaged.contains(&e.hash))
            {
                continue;
            }
            let mut frames = writer.repo().frames_of(id)?;
            for e in placed.iter().filter(|e| !lost.contains(&e.hash)) {
                writer.move_frame(e.hash, frames.read(e)?, e.dict)?;
                moved += 1;
            }
            retiring.push(*id);
        }
        writer.flush()
    })();
    writer.set_verify_before_commit(verify_before);
    result?;

    // The index stops naming the retired packs, and the damaged copies of healed messages.
    let gone: HashSet<PackId> = retiring.iter().copied().collect();
    let damaged_packs: HashSet<PackId> = state.damaged_packs.keys().copied().collect();
    writer.drop_index_entries(&|pack, entry| {
        gone.contains(pack) || (damaged_packs.contains(pack) && healed.contains(&entry.hash))
    })?;
    for id in &retiring {
        writer.remove_pack(id)?;
        state.damaged_packs.remove(id);
        state.packs.remove(id);
    }
    state
        .damaged_messages
        .retain(|h, _| still_damaged.contains(h));
    if !state.has_damage() {
        state.damage_found = None;
    }
    writer.record_verified(&state)?;
    Ok(RepairReport {
        healed: writer.healed().to_vec(),
        retired_packs: retiring,
        moved,
        still_damaged: still_damaged.into_iter().collect(),
    })
}
