//! The run's message list, written to records files as its records become final.
//!
//! A snapshot lists every server message, in server order. A run used to hold that whole list
//! until its commit (about 450 bytes a record with its strings: 45 MB for a mailbox of
//! 100,000 messages), and each checkpoint serialized every record stored so far again (17 % of
//! a full snapshot's CPU at that size). Now each record goes into the snapshot's
//! [`RecordsWriter`] once, in list order, as soon as it and every record before it are final:
//! an archived message's at once, a downloaded one's when its message is stored, at the next
//! checkpoint or the commit (its location is known only once its pack is finished). A
//! checkpoint names the records files written so far; the run holds only the records of
//! downloads not yet written, and the previous snapshot's records that are yet to come.

use std::collections::{HashMap, HashSet};

use super::inventory::{Inventory, InventoryEntry};
use crate::repo::records::{ListItem, RecordsWriter};
use crate::repo::{Layout, Manifest, MessageHash, MessageRecord, RepoError, RepoWriter};

/// The message list of one run, written as it goes.
pub(super) struct RunList {
    /// The run's start (RFC 3339): `first_seen` of what it downloads.
    time: String,
    /// Entries before this one are written.
    next: usize,
    /// The records of this run's downloads not written yet, by entry; a record gets its
    /// content (hash, size) once its message is stored.
    downloads: HashMap<usize, MessageRecord>,
    list: RecordsWriter,
    checks: ContentChecks,
}

impl RunList {
    pub(super) fn new(layout: &Layout, inventory: &Inventory, time: &str) -> RunList {
        RunList {
            time: time.to_string(),
            next: 0,
            downloads: HashMap::new(),
            list: RecordsWriter::new(layout),
            checks: ContentChecks::new(inventory),
        }
    }

    /// The record of entry `slot`'s download (or of its refusal) before its message is stored.
    pub(super) fn downloaded(&mut self, slot: usize, record: MessageRecord) {
        self.downloads.insert(slot, record);
    }

    /// The record of entry `slot`'s download, to fill in once its message is stored.
    pub(super) fn download_mut(&mut self, slot: usize) -> Option<&mut MessageRecord> {
        self.downloads.get_mut(&slot)
    }

    /// A checkpoint naming every record that is final. Every download so far must have been
    /// stored (or have failed).
    pub(super) fn checkpoint(
        &mut self,
        writer: &mut RepoWriter,
        head: &Manifest,
        inventory: &mut Inventory,
    ) -> Result<(), RepoError> {
        let RunList {
            time,
            next,
            downloads,
            list,
            checks,
        } = self;
        let records = FinalRecords {
            time,
            next,
            downloads,
            checks,
            inventory,
            to_end: false,
        };
        writer.checkpoint_run(head, list, records)
    }

    /// Commits the snapshot. Every download must have been stored (or have failed); a message
    /// never downloaded is listed without content. Returns what the downloads showed.
    pub(super) fn commit(
        self,
        writer: &mut RepoWriter,
        head: &Manifest,
        inventory: &mut Inventory,
    ) -> Result<ContentChecks, RepoError> {
        let RunList {
            time,
            mut next,
            mut downloads,
            list,
            mut checks,
        } = self;
        let records = FinalRecords {
            time: &time,
            next: &mut next,
            downloads: &mut downloads,
            checks: &mut checks,
            inventory,
            to_end: true,
        };
        writer.commit_run(head, list, records)?;
        Ok(checks)
    }
}

/// The records that can be written now, in list order, from the first one not written yet:
/// while they are final, or (`to_end`) all of them.
struct FinalRecords<'a> {
    time: &'a str,
    next: &'a mut usize,
    downloads: &'a mut HashMap<usize, MessageRecord>,
    checks: &'a mut ContentChecks,
    inventory: &'a mut Inventory,
    to_end: bool,
}

impl Iterator for FinalRecords<'_> {
    type Item = Result<ListItem, RepoError>;

    fn next(&mut self) -> Option<Result<ListItem, RepoError>> {
        let i = *self.next;
        let archived = self.inventory.entries.get(i)?.archived;
        if let Some((id, records)) = self.inventory.take_unchanged_file(i) {
            *self.next += records;
            return Some(Ok(ListItem::File { id, records }));
        }
        let record = if archived {
            let record = match self.inventory.take_record(i) {
                Ok(record) => record,
                Err(e) => return Some(Err(e)),
            };
            initial_record(&self.inventory.entries[i], record, self.time)
        } else if let Some(record) = self.downloads.remove(&i) {
            self.checks.downloaded(&record);
            record
        } else if self.to_end {
            initial_record(&self.inventory.entries[i], None, self.time)
        } else {
            return None;
        };
        *self.next += 1;
        Some(Ok(ListItem::Record(record)))
    }
}

/// The manifest record of a server message before any download: the archived copy's data
/// when there is one, the server's listing otherwise.
pub(super) fn initial_record(
    entry: &InventoryEntry,
    archived: Option<MessageRecord>,
    time: &str,
) -> MessageRecord {
    let server = &entry.server;
    let mut record = archived.unwrap_or_else(|| MessageRecord::listed(server.msg, server.size));
    record.msg = server.msg;
    record.uidl = server.uidl.as_ref().map(|u| u.as_str().to_string());
    record.fingerprint = server.fingerprint.clone();
    record.list_size = server.size;
    if record.sha256.is_some() && record.first_seen.is_none() {
        // Archived before first_seen was recorded: it ages from now on.
        record.first_seen = Some(time.to_string());
    }
    record
}

/// What a server that is wrong or hostile did to this run's downloads: a UIDL whose content
/// changed since the last snapshot (both versions stay archived; a UIDL must never be reused),
/// messages whose size differs from what LIST announced, and a message that came back under
/// a new UIDL. (A changed message of unchanged LIST size cannot be seen without downloading
/// everything again; that is not done.)
pub(super) struct ContentChecks {
    /// What the last snapshot had under each UIDL no longer on the server: hash and size.
    vanished: HashMap<String, (MessageHash, u64)>,
    vanished_hashes: HashSet<MessageHash>,
    changed: Vec<String>,
    resized: Vec<String>,
    renumbered: bool,
}

impl ContentChecks {
    fn new(inventory: &Inventory) -> ContentChecks {
        let vanished = inventory
            .vanished
            .iter()
            .filter_map(|r| Some((r.uidl.clone()?, (r.sha256?, r.size.unwrap_or(r.list_size)))))
            .collect();
        ContentChecks {
            vanished,
            vanished_hashes: inventory.vanished.iter().filter_map(|r| r.sha256).collect(),
            changed: Vec::new(),
            resized: Vec::new(),
            renumbered: false,
        }
    }

    fn downloaded(&mut self, record: &MessageRecord) {
        let (Some(hash), Some(size)) = (record.sha256, record.size) else {
            return;
        };
        let uidl = record.uidl.as_deref();
        if let Some((old_hash, old_size)) = uidl.and_then(|u| self.vanished.get(u))
            && *old_hash != hash
        {
            self.changed.push(format!(
                "{} ({old_size} -> {size} bytes)",
                uidl.unwrap_or("-")
            ));
        }
        // Two bytes more is the CRLF a server adds to a stored file that lacks a final line
        // end, which LIST does not count (Dovecot does this): harmless, and common enough
        // that warning about it would make `-q` useless in cron.
        if size != record.list_size && size != record.list_size + 2 {
            self.resized.push(format!(
                "message {}: LIST {}, received {size}",
                record.msg, record.list_size
            ));
        }
        self.renumbered |= self.vanished_hashes.contains(&hash);
    }

    /// A message that vanished under one UIDL came back under another: the server renumbered.
    pub(super) fn renumbered(&self) -> bool {
        self.renumbered
    }

    pub(super) fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.changed.is_empty() {
            warnings.push(format!(
                "{} message(s) came with the UIDL of an archived message but different \
                 content: {}; the server reused or changed them, and both versions are kept",
                self.changed.len(),
                examples(&self.changed)
            ));
        }
        if !self.resized.is_empty() {
            warnings.push(format!(
                "{} message(s) differ in size from what LIST announced ({}); they are stored \
                 as received",
                self.resized.len(),
                examples(&self.resized)
            ));
        }
        warnings
    }
}

/// The first few items of a list, for a warning.
fn examples(items: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut text = items[..items.len().min(SHOWN)].join(", ");
    if items.len() > SHOWN {
        text.push_str(&format!(", and {} more", items.len() - SHOWN));
    }
    text
}
