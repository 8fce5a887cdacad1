//! The repository's config file: format version, identity, compression settings.

use serde::{Deserialize, Serialize};

use super::id::{DictHash, RepoId};

/// The newest format this code writes and reads. Bump it (and document the change in
/// `docs/FORMAT.md`) whenever an older popbackup could misread a repository.
pub const FORMAT_VERSION: u32 = 7;

/// The format of a repository that is not encrypted: format 7 only added encryption, so a
/// plain repository stays readable by a popbackup of format 6.
pub const PLAIN_FORMAT_VERSION: u32 = 6;

/// The format a repository is written in: [`FORMAT_VERSION`] when it is encrypted.
pub fn version_for(encrypted: bool) -> u32 {
    if encrypted {
        FORMAT_VERSION
    } else {
        PLAIN_FORMAT_VERSION
    }
}

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
    pub fn new(id: RepoId, created: chrono::DateTime<chrono::Utc>, encrypted: bool) -> RepoConfig {
        RepoConfig {
            format: FORMAT_NAME.to_string(),
            version: version_for(encrypted),
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

/// `config.json` of an encrypted repository: the format and how it is encrypted, in the
/// clear; the [`RepoConfig`] itself sealed (base64), so that even the repository's id and
/// settings are hidden. The key files in `keys/` say how to get the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptedConfig {
    pub format: String,
    pub version: u32,
    pub encryption: Encryption,
    /// The sealed JSON of the [`RepoConfig`], base64 (standard alphabet, padded).
    pub sealed: String,
}

/// How an encrypted repository is encrypted (see `docs/FORMAT.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    /// The AEAD every sealed object uses.
    pub cipher: String,
    /// How messages are named.
    pub names: String,
}

impl Encryption {
    pub const CIPHER: &str = "xchacha20-poly1305-segmented";
    pub const NAMES: &str = "hmac-sha256";

    pub fn current() -> Encryption {
        Encryption {
            cipher: Encryption::CIPHER.into(),
            names: Encryption::NAMES.into(),
        }
    }
}

/// Whether `config.json` says the repository is encrypted, read before the rest.
#[derive(Debug, Deserialize)]
pub struct EncryptionProbe {
    #[serde(default)]
    pub encryption: Option<serde_json::Value>,
}
