//! The repository's config file: format version, identity, compression settings.

use serde::{Deserialize, Serialize};

use super::id::{DictHash, RepoId};

/// The format this code writes and reads. Bump it (and document the change in
/// `docs/FORMAT.md`) whenever an older popbackup could misread a repository.
pub const FORMAT_VERSION: u32 = 6;

/// The oldest format this code reads. A writer that opens a repository of an older format it
/// reads marks it as [`FORMAT_VERSION`] before writing anything (format 4 differs only in
/// naming one records file per snapshot, format 5 in keeping a checkpoint's records inline;
/// this code reads both).
pub const OLDEST_READ_VERSION: u32 = 4;

/// The marker in `config.json` that says "this is a popbackup repository".
pub const FORMAT_NAME: &str = "popbackup-repository";

/// Default zstd level: level 3 is zstd's own default, fast enough for wire speed.
pub const DEFAULT_LEVEL: i32 = 3;

/// `config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    pub format: String,
    pub version: u32,
    pub id: RepoId,
    /// RFC 3339 creation time.
    pub created: String,
    pub compression: Compression,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compression {
    /// zstd level for new frames.
    pub level: i32,
    /// The dictionary new small messages are compressed with, if any (a file in `dicts/`).
    #[serde(default)]
    pub dictionary: Option<DictHash>,
    /// How many messages the repository held when the dictionary was trained, or last found
    /// still as good as a new one: a writer samples for a new dictionary once the repository
    /// has grown `RETRAIN_GROWTH` times beyond it.
    #[serde(default)]
    pub dictionary_messages: u64,
}

impl RepoConfig {
    pub fn new(id: RepoId, created: chrono::DateTime<chrono::Utc>) -> RepoConfig {
        RepoConfig {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            id,
            created: created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            compression: Compression {
                level: DEFAULT_LEVEL,
                dictionary: None,
                dictionary_messages: 0,
            },
        }
    }
}

/// Just enough of `config.json` to check the version before trusting the rest of the schema:
/// a newer format may have fields this version does not know.
#[derive(Debug, Deserialize)]
pub struct VersionProbe {
    pub format: String,
    pub version: u32,
}
