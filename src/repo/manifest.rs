//! Snapshot manifests: what was on the server at one moment, and where each message is stored.
//!
//! A manifest lists the whole server inventory, not only what was new, so restoring snapshot X
//! gives the mailbox as it was at X. The repository treats messages as bytes plus this metadata;
//! it does not parse mail.

use serde::{Deserialize, Serialize};

use super::id::{ListingDigest, MessageHash, PackId, RecordsId, SnapshotId};

/// Version of the manifest schema (2: a committed manifest's records live in a records file;
/// 3: in a list of records files, each a run of the list, see [`RecordsList`]).
pub const MANIFEST_VERSION: u32 = 3;

/// One snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub id: SnapshotId,
    /// RFC 3339, UTC: when the snapshot started.
    pub time: String,
    /// The configured account name.
    pub account: String,
    /// False while the snapshot is a checkpoint of a run still in progress.
    pub complete: bool,
    pub tool: Tool,
    pub server: ServerInfo,
    /// The records files holding this snapshot's message list, in order, for a committed
    /// manifest. Each file is written once and shared by every snapshot whose list has the
    /// same run of records. Reading a manifest through the repository fills `messages` from
    /// them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<RecordsList>,
    /// The digest of the server listing (message numbers, UIDLs, sizes) when every message on
    /// it was archived: a later run that sees the same listing has nothing to download and
    /// shares this snapshot's records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<ListingDigest>,
    /// Every message on the server. Inline in a checkpoint; in the records file of a committed
    /// manifest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<MessageRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

impl Default for Tool {
    fn default() -> Tool {
        Tool {
            name: "popbackup".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub host: String,
    pub port: u16,
    /// `implicit`, `starttls` or `none`.
    pub tls: String,
    /// The greeting's text after `+OK`.
    pub greeting: String,
    /// CAPA lines as announced after login.
    pub capabilities: Vec<String>,
}

/// A committed snapshot's message list as the records files that hold it, in order.
///
/// The list is cut into runs of records at points that depend only on the records themselves
/// (see `docs/FORMAT.md`), so the next snapshot of a mailbox that gained or lost a few
/// messages names the same files for every run that did not change: a nightly snapshot adds
/// the runs around what changed, not the whole list again.
///
/// Format 4 named one records file, as a string; it is read as a list of one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RecordsList(pub Vec<RecordsId>);

impl<'de> Deserialize<'de> for RecordsList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RecordsList, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Named {
            One(RecordsId),
            Many(Vec<RecordsId>),
        }
        Ok(match Named::deserialize(d)? {
            Named::One(id) => RecordsList(vec![id]),
            Named::Many(ids) => RecordsList(ids),
        })
    }
}

/// One message of the server's inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The message number in that session. A records file leaves it out (0 here, which no
    /// message number is) when it is the record's position in the whole list, counting from
    /// 1, as it is for every server that numbers its messages as RFC 1939 says; reading the
    /// list puts it back.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub msg: u32,
    /// The server's unique id; `None` when the server has no UIDL.
    pub uidl: Option<String>,
    /// For servers without UIDL: `sha256:` and the hex SHA-256 of the message's `TOP n 0`
    /// output, which identifies it from one session to the next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The size LIST announced.
    pub list_size: u64,
    /// Bytes RETR delivered (the archived message's exact length); `None` if not stored.
    pub size: Option<u64>,
    /// SHA-256 of the delivered bytes; `None` if the message could not be retrieved.
    pub sha256: Option<MessageHash>,
    pub pack: Option<PackId>,
    pub offset: Option<u64>,
    pub length: Option<u64>,
    pub date: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    /// RFC 3339: the start of the first snapshot of this account that listed this message (by
    /// UIDL and hash); how long it has been on the server, for `delete_after_days`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    /// Imported from a Maildir: the flags after `:2,` in its file name (`RS`), given back
    /// when it is restored into `cur/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<String>,
    /// Imported from a local file: its modification time (nanoseconds since 1970), with
    /// `list_size` its size, so that an unchanged file is not read again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<u64>,
    /// Imported from an mbox: where its `From ` line starts in the file, with `list_size`
    /// the bytes it takes there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mbox_offset: Option<u64>,
    /// Imported from an mbox: its `From ` line after `From ` (`MAILER-DAEMON Thu Sep 18
    /// 17:54:04 2008`), given back when it is restored into an mbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mbox_from: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl MessageRecord {
    /// A message as listed by the server, nothing yet known of its content.
    pub fn listed(msg: u32, list_size: u64) -> MessageRecord {
        MessageRecord {
            msg,
            uidl: None,
            fingerprint: None,
            list_size,
            size: None,
            sha256: None,
            pack: None,
            offset: None,
            length: None,
            date: None,
            from: None,
            subject: None,
            message_id: None,
            first_seen: None,
            flags: None,
            mtime_ns: None,
            mbox_offset: None,
            mbox_from: None,
        }
    }

    /// A stored message (`size` bytes with this hash); the location is filled in at commit.
    pub fn stored(msg: u32, uidl: Option<String>, hash: MessageHash, size: u64) -> MessageRecord {
        MessageRecord {
            uidl,
            size: Some(size),
            sha256: Some(hash),
            ..MessageRecord::listed(msg, size)
        }
    }
}

impl Manifest {
    /// A copy with an empty message list (cheap, for writing the header part).
    pub fn clone_without_messages(&self) -> Manifest {
        Manifest {
            version: self.version,
            id: self.id.clone(),
            time: self.time.clone(),
            account: self.account.clone(),
            complete: self.complete,
            tool: self.tool.clone(),
            server: self.server.clone(),
            records: self.records.clone(),
            listing: self.listing,
            messages: Vec::new(),
        }
    }

    /// Summary for listings.
    pub fn summary(&self) -> SnapshotSummary {
        SnapshotSummary {
            id: self.id.clone(),
            time: self.time.clone(),
            account: self.account.clone(),
            messages: self.messages.len(),
            bytes: self.messages.iter().filter_map(|m| m.size).sum(),
        }
    }
}

/// A line of `popbackup snapshots`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotSummary {
    pub id: SnapshotId,
    pub time: String,
    pub account: String,
    pub messages: usize,
    pub bytes: u64,
}
