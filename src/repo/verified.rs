//! `verified.json`: which packs and snapshots `popbackup verify` has read back completely and
//! found intact, and when. Retention may delete a message on the server only once it is in at
//! least two verified snapshots, so this record is written crash-safely like every other file.
//!
//! Packs are immutable, so a pack verified once stays verified until a later verify finds it
//! damaged (then it is dropped from the record). A snapshot is verified when every message it
//! lists was read back intact from a verified pack.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::id::{PackId, SnapshotId};

pub const VERIFIED_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedState {
    pub version: u32,
    /// Pack → RFC 3339 time it was last read back intact.
    pub packs: BTreeMap<PackId, String>,
    /// Snapshot → RFC 3339 time all of its messages were last found intact.
    pub snapshots: BTreeMap<SnapshotId, String>,
}

impl Default for VerifiedState {
    fn default() -> VerifiedState {
        VerifiedState {
            version: VERIFIED_VERSION,
            packs: BTreeMap::new(),
            snapshots: BTreeMap::new(),
        }
    }
}
