//! The server's inventory (UIDL + LIST, or `TOP n 0` fingerprints without UIDL) compared with
//! what the repository already holds for the account.
//!
//! A server message is *archived* when the account's latest snapshot (or a checkpoint of an
//! interrupted run) has a record with the same identity — UIDL or fingerprint — and the same
//! LIST size, and that record's message is stored. Everything else is *new* and will be
//! downloaded; a record of the latest snapshot that no server message matches has *vanished*.
//! Identities are matched as multisets, so duplicate UIDLs are kept one for one.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};

use sha2::{Digest as _, Sha256};

use crate::mail::{self, HeaderSummary};
use crate::pop3::{Fetch, ListEntry, Pop3Error, Reply, Session, Uidl, UidlEntry};
use crate::repo::records::read_file;
use crate::repo::{
    Layout, ListingDigest, Location, Manifest, MessageHash, MessageRecord, RecordsId, RepoError,
    SnapshotId, put_back_number, read_records_file,
};

/// One message as the server lists it in this session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMessage {
    pub msg: u32,
    pub uidl: Option<Uidl>,
    /// `sha256:<hex>` of `TOP msg 0`, for servers without UIDL.
    pub fingerprint: Option<String>,
    /// The size LIST announced.
    pub size: u64,
}

/// What identifies a message from one session to the next: its UIDL (or, without one, its
/// `TOP n 0` fingerprint) and its LIST size. Borrowed from the listing or the record: a
/// run matches tens of thousands of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct MessageKey<'a> {
    id: Identity<'a>,
    size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Identity<'a> {
    Uidl(&'a str),
    Top(&'a str),
}

impl ServerMessage {
    fn key(&self) -> Option<MessageKey<'_>> {
        identity(
            self.uidl.as_ref().map(Uidl::as_str),
            self.fingerprint.as_deref(),
            self.size,
        )
    }
}

fn identity<'a>(
    uidl: Option<&'a str>,
    fingerprint: Option<&'a str>,
    size: u64,
) -> Option<MessageKey<'a>> {
    let id = match (uidl, fingerprint) {
        (Some(u), _) => Identity::Uidl(u),
        (None, Some(f)) => Identity::Top(f),
        (None, None) => return None,
    };
    Some(MessageKey { id, size })
}

fn record_key(record: &MessageRecord) -> Option<MessageKey<'_>> {
    identity(
        record.uidl.as_deref(),
        record.fingerprint.as_deref(),
        record.list_size,
    )
}

/// The listing's messages by key, and how far matching has got among the messages of each
/// key: records are matched to messages of their key in order, first to last.
struct Matcher<'a> {
    /// Each key's cursor, by its place in `cursors`. The map is only read after it is built,
    /// so that records can be looked up with keys that borrow from them briefly (a records
    /// file at a time), not for as long as the listing.
    by_key: HashMap<MessageKey<'a>, u32>,
    cursors: Vec<KeyCursor>,
    /// For each message, the next one with the same key (`NO_MORE` if none): duplicate keys
    /// are rare, and this costs 4 bytes a message instead of a list per key.
    next_same: Vec<u32>,
}

struct KeyCursor {
    /// The next message of this key to give an archived record.
    to_archive: u32,
    /// The next message of this key to account for a previous record.
    to_count: u32,
}

const NO_MORE: u32 = u32::MAX;

impl<'a> Matcher<'a> {
    fn new(listing: &'a Listing) -> Matcher<'a> {
        let mut by_key: HashMap<MessageKey<'a>, u32> = HashMap::new();
        let mut cursors: Vec<KeyCursor> = Vec::new();
        let mut next_same = vec![NO_MORE; listing.messages.len()];
        // Backwards, so that each key's cursor ends at its first message.
        for (i, server) in listing.messages.iter().enumerate().rev() {
            let Some(key) = server.key() else { continue };
            let i = i as u32;
            let slot = *by_key.entry(key).or_insert_with(|| {
                cursors.push(KeyCursor {
                    to_archive: NO_MORE,
                    to_count: NO_MORE,
                });
                (cursors.len() - 1) as u32
            });
            let cursor = &mut cursors[slot as usize];
            next_same[i as usize] = cursor.to_archive;
            cursor.to_archive = i;
            cursor.to_count = i;
        }
        Matcher {
            by_key,
            cursors,
            next_same,
        }
    }

    /// The next message of `key` without an archived record, now taken.
    fn archive(&mut self, key: &MessageKey<'_>) -> Option<usize> {
        let next_same = &self.next_same;
        let by_key: &HashMap<MessageKey<'_>, u32> = &self.by_key;
        let cursor = self.cursors.get_mut(*by_key.get(key)? as usize)?;
        let i = cursor.to_archive;
        if i == NO_MORE {
            return None;
        }
        cursor.to_archive = next_same[i as usize];
        Some(i as usize)
    }

    /// Whether a message of `key` is left to account for one more previous record.
    fn count(&mut self, key: &MessageKey<'_>) -> bool {
        let next_same = &self.next_same;
        let by_key: &HashMap<MessageKey<'_>, u32> = &self.by_key;
        let Some(cursor) = by_key
            .get(key)
            .and_then(|&slot| self.cursors.get_mut(slot as usize))
        else {
            return false;
        };
        let i = cursor.to_count;
        if i == NO_MORE {
            return false;
        }
        cursor.to_count = next_same[i as usize];
        true
    }
}

/// The server's listing at the start of a session.
#[derive(Debug, Clone)]
pub struct Listing {
    pub messages: Vec<ServerMessage>,
    /// False when the server refused UIDL and fingerprints were used instead.
    pub uidl_supported: bool,
    pub warnings: Vec<String>,
}

impl Listing {
    /// What identifies this listing from one session to the next: every message's number,
    /// UIDL and LIST size. The same digest in two runs means the same mailbox, message for
    /// message. `None` without UIDLs (fingerprints are no proof of that).
    pub fn digest(&self) -> Option<ListingDigest> {
        if !self.uidl_supported {
            return None;
        }
        let mut hasher = Sha256::new();
        let mut line = String::with_capacity(96);
        for m in &self.messages {
            // A UIDL is printable ASCII without spaces (RFC 1939), so the lines are unambiguous.
            let uidl = m.uidl.as_ref()?;
            line.clear();
            let _ = writeln!(line, "{} {} {}", m.msg, uidl.as_str(), m.size);
            hasher.update(line.as_bytes());
        }
        Some(ListingDigest(hasher.finalize().into()))
    }
}

/// Lists the mailbox: UIDL and LIST, and without UIDL a pipelined `TOP n 0` pass whose
/// header bytes fingerprint each message.
pub fn take_listing<S: Read + Write>(session: &mut Session<S>) -> Result<Listing, Pop3Error> {
    let mut warnings = Vec::new();
    // Ask even when CAPA does not list UIDL: some servers support more than they announce.
    let (uidls, list) = session.uidl_and_list()?;
    let uidls = match uidls {
        Ok(u) => Some(u),
        Err(e @ Pop3Error::Server { .. }) => {
            warnings.push(format!(
                "the server does not support UIDL ({e}); messages are recognised by a \
                 fingerprint of their headers instead, which costs a TOP command per message \
                 on every run"
            ));
            None
        }
        Err(e) => return Err(e),
    };
    let uidl_supported = uidls.is_some();
    let mut messages = join_listing(uidls.unwrap_or_default(), list);
    let missing = messages.iter().filter(|m| m.uidl.is_none()).count();
    if uidl_supported && missing > 0 {
        warnings.push(format!(
            "UIDL did not list {missing} message(s) that LIST did; they are fingerprinted"
        ));
    }
    if missing > 0 {
        fingerprint(session, &mut messages, &mut warnings)?;
    }
    Ok(Listing {
        messages,
        uidl_supported,
        warnings,
    })
}

/// The LIST entries with their UIDLs, in message-number order. A message number UIDL gives
/// twice takes its last UIDL. The UIDLs are moved, and nothing is sorted that is in order
/// already (as every server sends it): a listing of 100,000 messages is kept once.
fn join_listing(mut uidls: Vec<UidlEntry>, mut list: Vec<ListEntry>) -> Vec<ServerMessage> {
    if !uidls.is_sorted_by_key(|e| e.msg) {
        uidls.sort_by_key(|e| e.msg);
    }
    if !list.is_sorted_by_key(|e| e.msg) {
        list.sort_by_key(|e| e.msg);
    }
    let mut uidls = uidls.into_iter().peekable();
    list.into_iter()
        .map(|entry| {
            // A second LIST entry of the same number finds its UIDL taken, as it should.
            let mut uidl = None;
            while let Some(next) = uidls.next_if(|e| e.msg <= entry.msg) {
                if next.msg == entry.msg {
                    uidl = Some(next.uidl);
                }
            }
            ServerMessage {
                msg: entry.msg,
                uidl,
                fingerprint: None,
                size: entry.size,
            }
        })
        .collect()
}

fn fingerprint<S: Read + Write>(
    session: &mut Session<S>,
    messages: &mut [ServerMessage],
    warnings: &mut Vec<String>,
) -> Result<(), Pop3Error> {
    let requests: Vec<Fetch> = messages
        .iter()
        .filter(|m| m.uidl.is_none())
        .map(|m| Fetch::top(m.msg, 0))
        .collect();
    let mut prints: HashMap<u32, String> = HashMap::new();
    let mut refused = 0usize;
    session
        .fetch(&requests, |request, reply| {
            match reply {
                Reply::Body(body) => {
                    let mut hasher = Sha256::new();
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        let n = body.read(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        hasher.update(&buf[..n]);
                    }
                    let hex = crate::repo::id::to_hex(&hasher.finalize());
                    prints.insert(request.msg, format!("sha256:{hex}"));
                }
                Reply::Refused(_) => refused += 1,
            }
            Ok::<(), std::io::Error>(())
        })
        .map_err(top_failure)?;
    if refused > 0 {
        warnings.push(format!(
            "the server refused TOP for {refused} message(s) without UIDL; they cannot be \
             recognised and are downloaded again on every run (stored once)"
        ));
    }
    for m in messages.iter_mut() {
        m.fingerprint = prints.remove(&m.msg);
    }
    Ok(())
}

/// A failed `TOP n 0` pass. Our sinks only fail when reading the body fails, which the
/// client reports as its own error first; the `Sink` case is kept for completeness.
fn top_failure(e: crate::pop3::FetchError<std::io::Error>) -> Pop3Error {
    match e {
        crate::pop3::FetchError::Pop3(e) => e,
        crate::pop3::FetchError::Sink(source) => Pop3Error::Io {
            during: "reading TOP output".into(),
            source,
        },
    }
}

/// One server message, and whether the repository archived it in an earlier run.
#[derive(Debug, Clone)]
pub struct InventoryEntry {
    pub server: ServerMessage,
    /// The latest snapshot or a checkpoint archived this message; it is not downloaded.
    pub archived: bool,
    /// The record that archived it, by its place in `Inventory::records`.
    record: Option<u32>,
}

/// The server's listing compared with the repository.
#[derive(Debug)]
pub struct Inventory {
    pub account: String,
    /// The account's latest committed snapshot.
    pub previous: Option<SnapshotId>,
    /// How many messages that snapshot listed.
    pub previous_messages: usize,
    /// In server order.
    pub entries: Vec<InventoryEntry>,
    /// Records of the previous snapshot no longer on the server.
    pub vanished: Vec<MessageRecord>,
    /// The previous snapshot's records, when they are in records files: read again, a file at
    /// a time, as the run takes them. Their places come first.
    files: Option<FileRecords>,
    /// Records held in memory (checkpoints, lists of older formats), after those of `files`;
    /// entries name the ones that archive them by place.
    records: Vec<MessageRecord>,
    pub uidl_supported: bool,
}

/// The records of a list of records files, read once to match them and then again, a file
/// at a time, as they are taken (in list order, in every run but one whose server reordered
/// its mailbox): a nightly run of 100,000 messages held the whole previous list, 60 MB.
#[derive(Debug)]
struct FileRecords {
    layout: Layout,
    snapshot: SnapshotId,
    files: Vec<RecordsId>,
    /// The place of each file's first record, and the number of records at the end.
    starts: Vec<usize>,
    /// How many of each file's records are still to be taken.
    left: Vec<u32>,
    /// Files whose records go, unchanged and in order, to the entries from the one this maps
    /// from: the run names them again.
    unchanged: HashMap<usize, usize>,
    /// Files read again, while some of their records are still to be taken.
    open: HashMap<usize, Vec<MessageRecord>>,
}

impl FileRecords {
    fn len(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    fn take(&mut self, at: usize) -> Result<MessageRecord, RepoError> {
        let file = self.starts.partition_point(|&start| start <= at) - 1;
        let start = self.starts[file];
        let records = match self.open.entry(file) {
            std::collections::hash_map::Entry::Occupied(open) => open.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let id = &self.files[file];
                let expected = self.starts[file + 1] - start;
                let records =
                    read_records_file(&self.layout, &self.snapshot, id, start, Some(expected))?;
                slot.insert(records)
            }
        };
        let record = std::mem::replace(&mut records[at - start], MessageRecord::listed(0, 0));
        self.left[file] -= 1;
        if self.left[file] == 0 {
            self.open.remove(&file);
        }
        Ok(record)
    }
}

/// Whether `record`, archiving `server`'s message stored at `location`, is written as it was
/// (but for its number, checked apart): same identity, size, first sighting and location.
fn unchanged_line(
    record: &MessageRecord,
    server: &ServerMessage,
    location: Option<Location>,
) -> bool {
    let located = location.is_some_and(|l| {
        record.pack == Some(l.pack)
            && record.offset == Some(l.entry.offset)
            && record.length == Some(l.entry.length)
    });
    located
        && record.uidl.as_deref() == server.uidl.as_ref().map(Uidl::as_str)
        && record.fingerprint == server.fingerprint
        && record.list_size == server.size
        && record.first_seen.is_some()
}

/// Where one record of the previous snapshot or a checkpoint goes.
struct Placing {
    /// The entry it archives.
    entry: Option<usize>,
    /// No message of its key is left on the server for it.
    vanished: bool,
}

impl Inventory {
    /// Matches `listing` against the account's previous snapshot and unfinished checkpoints.
    /// `locate` says where a message is stored, if it (still) is. A manifest that names
    /// records files but holds no records is read from `layout`, a file at a time.
    pub fn build(
        account: &str,
        listing: &Listing,
        previous: Option<Manifest>,
        checkpoints: Vec<Manifest>,
        layout: &Layout,
        locate: impl Fn(&MessageHash) -> Option<Location>,
    ) -> Result<Inventory, RepoError> {
        let mut entries: Vec<InventoryEntry> = listing
            .messages
            .iter()
            .map(|server| InventoryEntry {
                server: server.clone(),
                archived: false,
                record: None,
            })
            .collect();
        let previous_id = previous.as_ref().map(|m| m.id.clone());
        let mut matcher = Matcher::new(listing);
        // `stored`: the record's message is in the repository, so the record can archive.
        let mut place = |record: &MessageRecord, stored: bool, is_previous: bool, ours: bool| {
            let key = record_key(record);
            Placing {
                entry: key
                    .filter(|_| ours && stored)
                    .and_then(|k| matcher.archive(&k)),
                // Still on the server: a message of its key is left for it.
                vanished: is_previous && !key.is_some_and(|k| matcher.count(&k)),
            }
        };
        let mut vanished = Vec::new();
        let mut files = None;
        let mut records: Vec<MessageRecord> = Vec::new();
        let mut previous_messages = 0;
        // Checkpoints repeat records of the previous snapshot; a key may then be matched twice,
        // which only matters for duplicate UIDLs and is harmless: any stored copy will do.
        let is_previous = previous.is_some();
        let sources = previous
            .into_iter()
            .chain(checkpoints.into_iter().filter(|m| m.account == account));
        for (n, manifest) in sources.enumerate() {
            let is_previous = is_previous && n == 0;
            let ours = manifest.account == account;
            let in_files = manifest.messages.is_empty() && manifest.records.is_some();
            if let (true, Some(list)) = (in_files && n == 0, &manifest.records) {
                let list = list.clone();
                let mut starts = vec![0];
                let mut left = Vec::with_capacity(list.0.len());
                let mut unchanged = HashMap::new();
                for (file, id) in list.0.iter().enumerate() {
                    let start = starts[file];
                    let read: Vec<MessageRecord> = read_file(layout, &manifest.id, id)?;
                    starts.push(start + read.len());
                    let mut taken = 0;
                    // The entry this file's records go to, one after the other, as this run
                    // would write them: then the file is named again, not rewritten.
                    let mut run_at = None;
                    let mut same = true;
                    for (k, mut record) in read.into_iter().enumerate() {
                        let omitted = record.msg == 0;
                        put_back_number(&mut record, start + k);
                        let location = record.sha256.as_ref().and_then(&locate);
                        let placing = place(&record, location.is_some(), is_previous, ours);
                        if let Some(i) = placing.entry {
                            entries[i].archived = true;
                            entries[i].record = Some((start + k) as u32);
                            taken += 1;
                            let first = *run_at.get_or_insert(i);
                            let written = if omitted { i + 1 } else { record.msg as usize };
                            same = same
                                && first + k == i
                                && written == entries[i].server.msg as usize
                                && unchanged_line(&record, &entries[i].server, location);
                        } else {
                            same = false;
                        }
                        if placing.vanished {
                            vanished.push(record);
                        }
                    }
                    left.push(taken);
                    // Not the last file: it ended where the list did, not where its records
                    // cut it, and the next records belong in it. Named again, every night's
                    // new mail would make a file of its own.
                    let last = file + 1 == list.0.len();
                    if let Some(i) = run_at.filter(|_| same && !last) {
                        unchanged.insert(i, file);
                    }
                }
                let file_records = FileRecords {
                    layout: layout.clone(),
                    snapshot: manifest.id,
                    files: list.0,
                    starts,
                    left,
                    unchanged,
                    open: HashMap::new(),
                };
                if is_previous {
                    previous_messages = file_records.len();
                }
                files = Some(file_records);
                continue;
            }
            let mut manifest = manifest;
            if in_files {
                crate::repo::load_records(layout, &mut manifest)?;
            }
            if is_previous {
                previous_messages = manifest.messages.len();
            }
            let base = files.as_ref().map_or(0, FileRecords::len) + records.len();
            let placings: Vec<Placing> = manifest
                .messages
                .iter()
                .map(|record| {
                    let stored = record.sha256.as_ref().and_then(&locate).is_some();
                    place(record, stored, is_previous, ours)
                })
                .collect();
            if records.is_empty() {
                records = manifest.messages;
            } else {
                records.extend(manifest.messages);
            }
            for (k, placing) in placings.into_iter().enumerate() {
                let at = base + k;
                let local = at - files.as_ref().map_or(0, FileRecords::len);
                if placing.vanished {
                    vanished.push(match placing.entry {
                        Some(_) => records[local].clone(),
                        None => std::mem::replace(&mut records[local], MessageRecord::listed(0, 0)),
                    });
                }
                if let Some(i) = placing.entry {
                    entries[i].archived = true;
                    entries[i].record = Some(at as u32);
                }
            }
        }
        Ok(Inventory {
            account: account.to_string(),
            previous: previous_id,
            previous_messages,
            entries,
            vanished,
            files,
            records,
            uidl_supported: listing.uidl_supported,
        })
    }

    /// The record that archived entry `i`, unless it was taken (for tests: a run only takes).
    #[cfg(test)]
    fn record(&self, i: usize) -> Option<&MessageRecord> {
        let at = self.entries[i].record? as usize;
        self.records
            .get(at - self.files.as_ref().map_or(0, FileRecords::len))
    }

    /// The position in `entries` of message `msg` (the last, if a hostile server numbered two
    /// messages alike). Entries are in message-number order.
    pub fn position_of(&self, msg: u32) -> Option<usize> {
        let after = self.entries.partition_point(|e| e.server.msg <= msg);
        after
            .checked_sub(1)
            .filter(|&i| self.entries[i].server.msg == msg)
    }

    /// Messages to download.
    pub fn new_entries(&self) -> impl Iterator<Item = &InventoryEntry> {
        self.entries.iter().filter(|e| !e.archived)
    }

    pub fn new_count(&self) -> usize {
        self.new_entries().count()
    }

    /// Sum of the LIST sizes of the new messages.
    pub fn new_bytes(&self) -> u64 {
        self.new_entries().map(|e| e.server.size).sum()
    }

    /// A records file of the previous snapshot that holds, unchanged, the records of entries
    /// `i..i + n`, with `n`: the run names it instead of reading and writing those records
    /// again (on a nightly run, all but the files around what changed). The entries' records
    /// count as taken.
    pub fn take_unchanged_file(&mut self, i: usize) -> Option<(RecordsId, usize)> {
        let files = self.files.as_mut()?;
        let file = files.unchanged.remove(&i)?;
        let n = files.starts[file + 1] - files.starts[file];
        if self.entries[i..i + n].iter().any(|e| e.record.is_none()) {
            return None;
        }
        for entry in &mut self.entries[i..i + n] {
            entry.record = None;
        }
        files.left[file] = 0;
        files.open.remove(&file);
        Some((files.files[file], n))
    }

    /// Moves entry `i`'s archived record out (into the run's list: a second copy of every
    /// record would cost 45 MB on a mailbox of 100,000 messages). The entry stays archived.
    /// A record in a records file is read again; that can fail.
    pub fn take_record(&mut self, i: usize) -> Result<Option<MessageRecord>, RepoError> {
        let Some(at) = self.entries[i].record.take() else {
            return Ok(None);
        };
        let at = at as usize;
        let in_files = self.files.as_ref().map_or(0, FileRecords::len);
        if let Some(files) = self.files.as_mut().filter(|_| at < in_files) {
            return files.take(at).map(Some);
        }
        Ok(self
            .records
            .get_mut(at - in_files)
            .map(|r| std::mem::replace(r, MessageRecord::listed(0, 0))))
    }

    pub fn archived_count(&self) -> usize {
        self.entries.len() - self.new_count()
    }

    /// A warning when the mailbox shrank sharply since the last snapshot: a provider losing mail
    /// is exactly what a backup is for, so the user should hear of it.
    pub fn shrink_warning(&self) -> Option<String> {
        let before = self.previous_messages;
        let gone = self.vanished.len();
        if before >= SHRINK_MIN_MESSAGES && gone * 100 >= before * SHRINK_PERCENT {
            Some(format!(
                "{gone} of the {before} messages of the last snapshot are no longer on the \
                 server (now {} messages); if you did not delete them, your provider may have \
                 lost mail — the archive still holds every one of them",
                self.entries.len()
            ))
        } else {
            None
        }
    }
}

/// Warn when at least this share of the last snapshot's messages vanished...
pub const SHRINK_PERCENT: usize = 25;
/// ...and that snapshot had at least this many messages.
pub const SHRINK_MIN_MESSAGES: usize = 10;

/// Fetches the headers of `msgs` with a pipelined `TOP n 0`, for listings of new mail. A
/// message the server refuses TOP for is simply missing from the result.
pub fn fetch_headers<S: Read + Write>(
    session: &mut Session<S>,
    msgs: &[u32],
) -> Result<HashMap<u32, HeaderSummary>, Pop3Error> {
    let requests: Vec<Fetch> = msgs.iter().map(|m| Fetch::top(*m, 0)).collect();
    let mut out = HashMap::new();
    session
        .fetch(&requests, |request, reply| {
            if let Reply::Body(body) = reply {
                let mut capture = mail::HeaderCapture::new();
                let mut buf = [0u8; 16 * 1024];
                loop {
                    let n = body.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    capture.feed(&buf[..n]);
                }
                out.insert(request.msg, capture.summary());
            }
            Ok::<(), std::io::Error>(())
        })
        .map_err(top_failure)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::{ServerInfo, Tool};

    #[test]
    fn listing_joins_uidl_and_list_by_number_in_any_order() {
        let u = |msg, id: &str| UidlEntry {
            msg,
            uidl: Uidl::new(id),
        };
        let l = |msg, size| ListEntry { msg, size };
        let as_tuples = |messages: Vec<ServerMessage>| -> Vec<(u32, Option<String>, u64)> {
            messages
                .into_iter()
                .map(|m| (m.msg, m.uidl.map(|u| u.as_str().to_string()), m.size))
                .collect()
        };
        let some = |s: &str| Some(s.to_string());

        // In order, as servers send them; message 2 has no UIDL line.
        let joined = join_listing(
            vec![u(1, "a"), u(3, "c")],
            vec![l(1, 10), l(2, 20), l(3, 30)],
        );
        assert_eq!(
            as_tuples(joined),
            [(1, some("a"), 10), (2, None, 20), (3, some("c"), 30)]
        );

        // Out of order; a UIDL line for a number LIST does not have; a number UIDL gives
        // twice (the last wins) and LIST gives twice (the second gets none).
        let joined = join_listing(
            vec![u(3, "c"), u(9, "nine"), u(1, "a"), u(3, "c2")],
            vec![l(3, 30), l(1, 10), l(3, 31)],
        );
        assert_eq!(
            as_tuples(joined),
            [(1, some("a"), 10), (3, some("c2"), 30), (3, None, 31)]
        );

        // No UIDL at all.
        assert_eq!(
            as_tuples(join_listing(Vec::new(), vec![l(2, 5), l(1, 4)])),
            [(1, None, 4), (2, None, 5)]
        );
    }

    /// `Inventory::build` of manifests that hold their records.
    fn build(
        account: &str,
        listing: &Listing,
        previous: Option<Manifest>,
        checkpoints: Vec<Manifest>,
        is_stored: impl Fn(&MessageHash) -> bool,
    ) -> Inventory {
        let nowhere = Layout::new("/nonexistent");
        let locate = |h: &MessageHash| is_stored(h).then(|| somewhere(h));
        Inventory::build(account, listing, previous, checkpoints, &nowhere, locate).unwrap()
    }

    /// A location for a message of the tests' records, which name none.
    fn somewhere(hash: &MessageHash) -> Location {
        Location {
            pack: crate::repo::PackId([9; 32]),
            entry: crate::repo::PackEntry {
                hash: *hash,
                offset: 0,
                length: 1,
                dict: None,
            },
        }
    }

    fn server(msg: u32, uidl: &str, size: u64) -> ServerMessage {
        ServerMessage {
            msg,
            uidl: Some(Uidl::new(uidl)),
            fingerprint: None,
            size,
        }
    }

    fn record(msg: u32, uidl: &str, size: u64, byte: u8) -> MessageRecord {
        MessageRecord {
            subject: Some(format!("s{byte}")),
            ..MessageRecord::stored(msg, Some(uidl.into()), MessageHash([byte; 32]), size)
        }
    }

    fn manifest(account: &str, messages: Vec<MessageRecord>) -> Manifest {
        Manifest {
            version: 1,
            id: SnapshotId::parse("20260101T000000Z-00000000").unwrap(),
            time: "2026-01-01T00:00:00+00:00".into(),
            account: account.into(),
            complete: true,
            tool: Tool::default(),
            server: ServerInfo::default(),
            records: None,
            listing: None,
            messages,
        }
    }

    #[test]
    fn new_archived_vanished_and_duplicate_uidls() {
        let previous = manifest(
            "work",
            vec![
                record(1, "a", 10, 1),
                record(2, "dup", 20, 2),
                record(3, "dup", 20, 2),
                record(4, "gone", 40, 4),
                record(5, "resized", 50, 5),
            ],
        );
        let listing = Listing {
            messages: vec![
                server(1, "a", 10),
                server(2, "dup", 20),
                server(3, "dup", 20),
                server(4, "dup", 20),
                server(5, "resized", 51),
                server(6, "fresh", 60),
            ],
            uidl_supported: true,
            warnings: vec![],
        };
        let inv = build("work", &listing, Some(previous.clone()), Vec::new(), |_| {
            true
        });
        let archived: Vec<bool> = inv.entries.iter().map(|e| e.archived).collect();
        assert_eq!(archived, [true, true, true, false, false, false]);
        assert_eq!(inv.new_count(), 3);
        assert_eq!(inv.new_bytes(), 20 + 51 + 60);
        let vanished: Vec<&str> = inv
            .vanished
            .iter()
            .map(|r| r.uidl.as_deref().unwrap())
            .collect();
        assert_eq!(vanished, ["gone", "resized"]);
        assert_eq!(inv.record(0).unwrap().subject.as_deref(), Some("s1"));
        assert_eq!(inv.shrink_warning(), None);
        let positions: Vec<_> = (0..=7).map(|msg| inv.position_of(msg)).collect();
        assert_eq!(
            positions,
            [
                None,
                Some(0),
                Some(1),
                Some(2),
                Some(3),
                Some(4),
                Some(5),
                None
            ]
        );

        // A message whose archive copy is missing is new again; another account's snapshot
        // does not count.
        let inv = build("work", &listing, Some(previous.clone()), Vec::new(), |h| {
            h.0[0] != 1
        });
        assert!(!inv.entries[0].archived);
        let inv = build("home", &listing, Some(previous.clone()), Vec::new(), |_| {
            true
        });
        assert_eq!(inv.new_count(), 6);
    }

    /// The matching as first written, records cloned from queues per key: what `build`
    /// must still do.
    fn reference(
        listing: &Listing,
        previous: &Manifest,
        checkpoints: &[Manifest],
        is_stored: impl Fn(&MessageHash) -> bool,
    ) -> (Vec<Option<MessageRecord>>, Vec<MessageRecord>) {
        use std::collections::VecDeque;
        let mut known: HashMap<MessageKey, VecDeque<&MessageRecord>> = HashMap::new();
        for manifest in std::iter::once(previous).chain(checkpoints) {
            for record in &manifest.messages {
                let stored = record.sha256.as_ref().is_some_and(&is_stored);
                if let (true, Some(key)) = (stored, record_key(record)) {
                    known.entry(key).or_default().push_back(record);
                }
            }
        }
        let archived = listing
            .messages
            .iter()
            .map(|server| {
                let queue = server.key().and_then(|k| known.get_mut(&k));
                queue.and_then(VecDeque::pop_front).cloned()
            })
            .collect();
        let mut on_server: HashMap<MessageKey, usize> = HashMap::new();
        for key in listing.messages.iter().filter_map(ServerMessage::key) {
            *on_server.entry(key).or_default() += 1;
        }
        let vanished = previous
            .messages
            .iter()
            .filter(|record| {
                record_key(record)
                    .and_then(|k| on_server.get_mut(&k))
                    .filter(|n| **n > 0)
                    .map(|n| *n -= 1)
                    .is_none()
            })
            .cloned()
            .collect();
        (archived, vanished)
    }

    #[test]
    fn matching_moves_records_where_copying_them_put_them() {
        // Few UIDLs and sizes, so that keys repeat; some records not stored.
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..300 {
            let records = |count: u64, next: &mut dyn FnMut(u64) -> u64| -> Vec<MessageRecord> {
                (0..count)
                    .map(|i| {
                        let uidl = format!("u{}", next(6));
                        record(i as u32 + 1, &uidl, 10 + next(2), next(4) as u8)
                    })
                    .collect()
            };
            let listing = Listing {
                messages: (0..next(12))
                    .map(|i| server(i as u32 + 1, &format!("u{}", next(6)), 10 + next(2)))
                    .collect(),
                uidl_supported: true,
                warnings: vec![],
            };
            let count = next(10);
            let previous = manifest("work", records(count, &mut next));
            let count = next(4);
            let checkpoints = vec![manifest("work", records(count, &mut next))];
            let stored = |h: &MessageHash| h.0[0] != 0;
            let (archived, vanished) = reference(&listing, &previous, &checkpoints, stored);
            let inv = build("work", &listing, Some(previous), checkpoints, stored);
            let got: Vec<Option<MessageRecord>> = (0..inv.entries.len())
                .map(|i| inv.record(i).cloned())
                .collect();
            assert_eq!(got, archived);
            assert_eq!(inv.vanished, vanished);
        }
    }

    /// The previous list written as records files (a repository in a temporary directory).
    fn in_files(records: &[MessageRecord]) -> (tempfile::TempDir, Layout, Manifest) {
        let dir = tempfile::tempdir().unwrap();
        crate::repo::Repository::init(dir.path()).unwrap();
        let layout = Layout::new(dir.path());
        let mut list = crate::repo::records::RecordsWriter::new(&layout);
        for (position, record) in records.iter().enumerate() {
            // As popbackup writes them: the number left out when it is the position.
            let mut line = record.clone();
            if line.msg as usize == position + 1 {
                line.msg = 0;
            }
            list.push(&serde_json::to_vec(&line).unwrap()).unwrap();
        }
        let mut previous = manifest("work", Vec::new());
        previous.records = Some(list.finish().unwrap());
        (dir, layout, previous)
    }

    /// A night in which the oldest messages went and new ones came: the files whose records
    /// go unchanged, in order, to the new list are named again; the file that lost records,
    /// or whose records lack a location or a first sighting, is not. Named files read back
    /// as the records the run would have written, numbers included.
    #[test]
    fn unchanged_files_are_named_again() {
        let records: Vec<MessageRecord> = (0..3000u32)
            .map(|i| {
                let mut r = record(i + 1, &format!("u{i}"), 100, 1);
                let l = somewhere(&r.sha256.unwrap());
                (r.pack, r.offset, r.length) = (Some(l.pack), Some(l.entry.offset), Some(1));
                r.first_seen = Some("2026-01-01T00:00:00Z".into());
                if i == 1500 {
                    r.first_seen = None;
                }
                r
            })
            .collect();
        let (_dir, layout, previous) = in_files(&records);
        let files = &previous.records.as_ref().unwrap().0;
        let gone = 40;
        // Named again: the files with none of the messages gone and not the one with no first
        // sighting, nor the last.
        let mut start = 0;
        let mut expected = 0;
        for (n, id) in files.iter().enumerate() {
            let len = read_records_file(&layout, &previous.id, id, start, None)
                .unwrap()
                .len();
            let end = start + len;
            if start >= gone && !(start..end).contains(&1500) && n + 1 < files.len() {
                expected += 1;
            }
            start = end;
        }
        assert!(expected > 5, "{expected} of {} files", files.len());
        let listing = |order: &mut dyn FnMut(&mut Vec<ServerMessage>)| {
            let mut messages: Vec<ServerMessage> = records[gone..]
                .iter()
                .map(|r| server(0, r.uidl.as_deref().unwrap(), r.list_size))
                .chain((0..5).map(|i| server(0, &format!("new{i}"), 5)))
                .collect();
            order(&mut messages);
            for (i, m) in messages.iter_mut().enumerate() {
                m.msg = i as u32 + 1;
            }
            Listing {
                messages,
                uidl_supported: true,
                warnings: vec![],
            }
        };
        let locate = |h: &MessageHash| Some(somewhere(h));
        let in_order = listing(&mut |_| {});
        let mut inv = Inventory::build(
            "work",
            &in_order,
            Some(previous.clone()),
            vec![],
            &layout,
            locate,
        )
        .unwrap();
        let mut named = 0;
        let mut i = 0;
        while i < inv.entries.len() {
            let Some((id, n)) = inv.take_unchanged_file(i) else {
                i += 1;
                continue;
            };
            named += 1;
            let back = read_records_file(&layout, &previous.id, &id, i, None).unwrap();
            assert_eq!(back.len(), n);
            for (k, record) in back.iter().enumerate() {
                let server = &inv.entries[i + k].server;
                let old = &records[gone + i + k];
                assert_eq!(record.msg, server.msg, "numbers follow the new positions");
                assert_eq!(record.uidl, old.uidl);
                assert_eq!(record.sha256, old.sha256);
                assert!(inv.take_record(i + k).unwrap().is_none(), "taken");
            }
            i += n;
        }
        assert_eq!(
            named,
            expected,
            "{named} of {} files named again",
            files.len()
        );

        // Reordered by the server: nothing goes in order, nothing is named again.
        let reversed = listing(&mut |m| m.reverse());
        let mut inv =
            Inventory::build("work", &reversed, Some(previous), vec![], &layout, locate).unwrap();
        assert!((0..inv.entries.len()).all(|i| inv.take_unchanged_file(i).is_none()));
    }

    /// Read from records files a file at a time, the previous list archives what it archives
    /// held in memory, whatever order the server lists the messages in now; every file read
    /// again is let go once its records are taken.
    #[test]
    fn a_list_in_records_files_matches_as_one_in_memory() {
        let records: Vec<MessageRecord> = (0..3000u32)
            .map(|i| record(i + 1, &format!("u{}", i % 2900), 100 + u64::from(i % 7), 1))
            .collect();
        let (_dir, layout, previous) = in_files(&records);
        assert!(previous.records.as_ref().unwrap().0.len() > 5);
        let inline = manifest("work", records.clone());
        // The oldest 200 gone, 50 new, and the rest in three orders.
        let kept: Vec<ServerMessage> = records[200..]
            .iter()
            .map(|r| server(0, r.uidl.as_deref().unwrap(), r.list_size))
            .chain((0..50).map(|i| server(0, &format!("new{i}"), 5)))
            .collect();
        let mut reversed = kept.clone();
        reversed.reverse();
        let mut shuffled = kept.clone();
        shuffled.sort_by_key(|m| (m.size, m.uidl.as_ref().map(|u| u.as_str().len())));
        for order in [kept, reversed, shuffled] {
            let listing = Listing {
                messages: order
                    .into_iter()
                    .enumerate()
                    .map(|(i, m)| ServerMessage {
                        msg: i as u32 + 1,
                        ..m
                    })
                    .collect(),
                uidl_supported: true,
                warnings: vec![],
            };
            let stored = |h: &MessageHash| h.0[0] != 0;
            let mut expected = build("work", &listing, Some(inline.clone()), vec![], stored);
            let mut got = Inventory::build(
                "work",
                &listing,
                Some(previous.clone()),
                vec![],
                &layout,
                |h| stored(h).then(|| somewhere(h)),
            )
            .unwrap();
            assert_eq!(got.previous_messages, 3000);
            assert_eq!(got.vanished, expected.vanished);
            assert_eq!(got.vanished.len(), 200);
            assert_eq!(got.archived_count(), 2800);
            for i in 0..listing.messages.len() {
                assert_eq!(got.entries[i].archived, expected.entries[i].archived);
                assert_eq!(
                    got.take_record(i).unwrap(),
                    expected.take_record(i).unwrap()
                );
            }
            assert!(got.files.as_ref().unwrap().open.is_empty());
        }
    }

    #[test]
    fn checkpoints_resume_and_shrinking_warns() {
        let checkpoint = manifest("work", vec![record(7, "x", 70, 7)]);
        let listing = Listing {
            messages: vec![server(1, "x", 70), server(2, "y", 80)],
            uidl_supported: true,
            warnings: vec![],
        };
        let inv = build("work", &listing, None, vec![checkpoint], |_| true);
        assert_eq!(inv.new_count(), 1);
        assert!(inv.vanished.is_empty());

        let many: Vec<MessageRecord> = (0..40).map(|i| record(i, &format!("u{i}"), 1, 9)).collect();
        let previous = manifest("work", many);
        let inv = build("work", &listing, Some(previous.clone()), Vec::new(), |_| {
            true
        });
        assert_eq!(inv.vanished.len(), 40);
        assert!(inv.shrink_warning().unwrap().contains("40 of the 40"));
    }
}

/// What `popbackup inventory` shows: the comparison, with headers of the new messages.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InventoryReport {
    pub account: String,
    pub messages_on_server: usize,
    /// Sum of the LIST sizes of everything on the server.
    pub bytes_on_server: u64,
    pub already_archived: usize,
    pub previous_snapshot: Option<SnapshotId>,
    pub new: Vec<NewMessage>,
    pub vanished: Vec<VanishedMessage>,
    pub warnings: Vec<String>,
}

/// A message on the server that the archive does not hold.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewMessage {
    pub msg: u32,
    pub uidl: Option<String>,
    pub size: u64,
    pub date: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
}

/// A message of the last snapshot that is no longer on the server (the archive keeps it).
#[derive(Debug, Clone, serde::Serialize)]
pub struct VanishedMessage {
    pub uidl: Option<String>,
    pub size: Option<u64>,
    pub sha256: Option<MessageHash>,
    pub date: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
}

/// Logs in, lists, compares with `repo` and (with `headers`) fetches `TOP n 0` of the new
/// messages. Reads only: no body is downloaded and neither server nor repository changes.
pub fn inspect(
    account: &crate::config::Account,
    repo: &crate::repo::Repository,
    headers: bool,
) -> Result<InventoryReport, super::SnapshotError> {
    let mut warnings = Vec::new();
    let creds = account.credentials(&mut |w| warnings.push(w))?;
    let mut session = crate::pop3::open_session(&account.server_options(), &creds)?;
    drop(creds);
    let listing = take_listing(&mut session)?;
    warnings.extend(listing.warnings.iter().cloned());
    let previous = crate::repo::latest_snapshot_head_in(repo.layout(), &account.name)?;
    let checkpoints: Vec<Manifest> = repo
        .checkpoints()?
        .into_iter()
        .filter(|c| c.account == account.name)
        .collect();
    let inventory = Inventory::build(
        &account.name,
        &listing,
        previous,
        checkpoints,
        repo.layout(),
        |h| repo.location(h),
    )?;
    let new_msgs: Vec<u32> = inventory.new_entries().map(|e| e.server.msg).collect();
    let summaries = if headers && !new_msgs.is_empty() {
        fetch_headers(&mut session, &new_msgs)?
    } else {
        HashMap::new()
    };
    // Nothing was changed, so a failing QUIT loses nothing.
    let _ = session.quit();
    if let Some(w) = inventory.shrink_warning() {
        warnings.push(w);
    }
    let new = inventory
        .new_entries()
        .map(|e| {
            let h = summaries.get(&e.server.msg).cloned().unwrap_or_default();
            NewMessage {
                msg: e.server.msg,
                uidl: e.server.uidl.as_ref().map(|u| u.as_str().to_string()),
                size: e.server.size,
                date: h.date,
                from: h.from,
                subject: h.subject,
                message_id: h.message_id,
            }
        })
        .collect();
    let vanished = inventory
        .vanished
        .iter()
        .map(|r| VanishedMessage {
            uidl: r.uidl.clone(),
            size: r.size,
            sha256: r.sha256,
            date: r.date.clone(),
            from: r.from.clone(),
            subject: r.subject.clone(),
        })
        .collect();
    Ok(InventoryReport {
        account: account.name.clone(),
        messages_on_server: inventory.entries.len(),
        bytes_on_server: inventory.entries.iter().map(|e| e.server.size).sum(),
        already_archived: inventory.archived_count(),
        previous_snapshot: inventory.previous.clone(),
        new,
        vanished,
        warnings,
    })
}
