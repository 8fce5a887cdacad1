//! `verified.json`: which packs and snapshots `popbackup verify` has read back completely and
//! found intact, and when — and what it found damaged that has not been healed since.
//! Retention may delete a message on the server only once it is in at least two verified
//! snapshots, and `forget`/`prune` refuse to run while damage is recorded, so this record is
//! written crash-safely like every other file.
//!
//! Packs are immutable, so a pack verified once stays verified until a later verify finds it
//! damaged (then it is dropped from the record). A snapshot is verified when every message it
//! lists was read back intact from a verified pack. Damage stays recorded until a verify reads
//! the message (or pack) intact again, or a snapshot stores a good copy and retires the
//! damaged pack (see `repo::repair`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::id::{MessageHash, PackId, SnapshotId};

pub const VERIFIED_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedState {
    pub version: u32,
    /// Pack → RFC 3339 time it was last read back intact.
    pub packs: BTreeMap<PackId, String>,
    /// Snapshot → RFC 3339 time all of its messages were last found intact.
    pub snapshots: BTreeMap<SnapshotId, String>,
    /// Messages some snapshot needs that could not be read back intact → what is wrong.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub damaged_messages: BTreeMap<MessageHash, String>,
    /// Damaged packs → what is wrong, and which of their frames cannot be read back.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub damaged_packs: BTreeMap<PackId, DamagedPackNote>,
    /// When the damage above was last found (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damage_found: Option<String>,
}

/// What verify found wrong with one pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedPackNote {
    pub problem: String,
    /// Frames in it that do not read back (whether or not a snapshot needs them).
    #[serde(default)]
    pub lost: Vec<MessageHash>,
}

impl VerifiedState {
    /// Whether damage is recorded that no run has healed yet.
    pub fn has_damage(&self) -> bool {
        !self.damaged_messages.is_empty() || !self.damaged_packs.is_empty()
    }
}

impl Default for VerifiedState {
    fn default() -> VerifiedState {
        VerifiedState {
            version: VERIFIED_VERSION,
            packs: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            damaged_messages: BTreeMap::new(),
            damaged_packs: BTreeMap::new(),
            damage_found: None,
        }
    }
}
