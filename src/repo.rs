//! The archive repository: content-addressed, zstd-compressed tar packs, an index that is only
//! a cache, and one JSON manifest per snapshot. The format is specified in `docs/FORMAT.md`.
//!
//! [`Repository`] reads (any number of readers, no lock). [`RepoWriter`] writes, holding the
//! exclusive lock; its commits follow the order packs -> index -> manifest, each file published
//! through [`crate::durable`], so a crash at any moment leaves a repository whose committed
//! snapshots are complete. The repository knows no POP3 and no mail syntax.

pub(crate) mod backend;
pub(crate) mod codec;
use backend::FileKind;
pub mod compressed;
pub mod crypto;
pub mod dictionary;
pub(crate) mod error;
#[cfg(test)]
mod faults;
mod files;
pub mod format;
mod frame;
pub mod id;
pub mod index;
mod keys;
mod layout;
pub(crate) mod location;
pub(crate) mod lock;
pub(crate) mod manifest;
pub mod pack;
pub mod records;
pub mod repair;
mod s3;
pub mod verified;
mod writer;

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::Path;

pub use error::RepoError;
pub use format::RepoConfig;
pub use id::{DictHash, ListingDigest, MessageHash, PackId, RecordsId, RepoId, SnapshotId};
pub use index::{Index, IndexFile, IndexedPack, Location};
pub use keys::{KeyEntry, RepoPassword};
pub(crate) use layout::Layout;
pub use location::{RepoLocation, S3Location, S3Secret, S3Url};
pub use lock::{LockInfo, RepoLock};
pub use manifest::{Manifest, MessageRecord, RecordsList, ServerInfo, SnapshotSummary, Tool};
pub use pack::{Dictionary, PackEntry, PackWriter, Stored};
pub use records::parse_records;

#[cfg(test)]
pub(crate) use files::break_index_for_tests;
pub use frame::{Frame, FrameCompressor, FramePlan};
pub use verified::VerifiedState;
pub use writer::{
    DICTIONARY_MAX_MESSAGE, DICTIONARY_SIZE, OpeningWriter, RETRAIN_GROWTH,
    RETRAIN_MIN_GAIN_PERCENT, RepoWriter, StoreError, TRAIN_AFTER_BYTES, TRAIN_AFTER_MESSAGES,
    TRAIN_MIN_BYTES,
};

/// A repository opened for reading.
#[derive(Debug)]
pub struct Repository {
    layout: Layout,
    config: RepoConfig,
    index: Index,
    dicts: HashMap<DictHash, Dictionary>,
    /// Dictionary files that cannot be used, and why: frames that need them cannot be read.
    damaged_dicts: Vec<(DictHash, String)>,
    /// Packs found without an index file at open time; a writer records them.
    unindexed: Vec<IndexedPack>,
    /// Packs without an index file whose tar headers cannot be read, and why.
    unreadable: Vec<(PackId, String)>,
    /// What reading one message after another reuses (restore, `cat`).
    reading: std::sync::Mutex<ReadCache>,
}

/// Largest message [`Repository::copy_message`] and [`Repository::read_message`] decompress
/// whole into memory, checked before any of it is handed over; larger ones stream.
const SMALL_MESSAGE: u64 = 1 << 20;

/// A zstd context with each dictionary digested once, and a frame buffer: creating a
/// decoder and loading a dictionary for every message cost more than decompressing a small
/// one (restore of 20,000 small messages: 40 % of its CPU). The backend keeps the pack read
/// last open.
#[derive(Default)]
struct ReadCache {
    decoder: pack::FrameDecoder,
    frame: Vec<u8>,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache").finish_non_exhaustive()
    }
}

impl Repository {
    /// Creates a new, empty repository at `at` (a directory that may exist, or a bucket and
    /// prefix), which must not hold one.
    pub fn init(at: impl Into<RepoLocation>) -> Result<Repository, RepoError> {
        Repository::init_in(Layout::at(&at.into())?, None)
    }

    /// [`Repository::init`] of an encrypted repository: a new random master key, wrapped for
    /// `password` with Argon2id at `kdf`'s cost in its first key file.
    pub fn init_encrypted(
        at: impl Into<RepoLocation>,
        password: &[u8],
        kdf: crypto::KdfParams,
    ) -> Result<Repository, RepoError> {
        Repository::init_in(Layout::at(&at.into())?, Some((password, kdf)))
    }

    fn init_in(
        layout: Layout,
        encryption: Option<(&[u8], crypto::KdfParams)>,
    ) -> Result<Repository, RepoError> {
        let existing = layout
            .backend()
            .list(FileKind::Config)
            .map_err(RepoError::io("cannot look at", layout.config()))?;
        if !existing.is_empty() {
            return Err(RepoError::AlreadyExists {
                path: layout.location().to_string().into(),
            });
        }
        layout.backend().prepare().map_err(RepoError::io(
            "cannot create",
            layout.location().to_string(),
        ))?;
        let layout = match encryption {
            None => layout,
            Some((password, kdf)) => {
                let master = crypto::MasterKey::generate()?;
                let file = keys::wrap(&master, password, kdf)?;
                // The key first: `config.json` is what makes the place a repository.
                let id = keys::add(&layout, &file)?;
                layout.with_codec(codec::Codec::Sealed(std::sync::Arc::new(master)), &id)
            }
        };
        let encrypted = layout.codec().is_sealed();
        let config = RepoConfig::new(RepoId(id::random_bytes()), chrono::Utc::now(), encrypted);
        write_config(&layout, &config)?;
        Repository::open_in(layout)
    }

    /// Opens an existing repository for reading: a local directory (a path) or a
    /// [`RepoLocation`]. An encrypted one needs [`Repository::open_with`].
    pub fn open(at: impl Into<RepoLocation>) -> Result<Repository, RepoError> {
        Repository::open_with(at, &RepoPassword::none())
    }

    /// Opens an existing repository, plain or encrypted (opened with `password`).
    pub fn open_with(
        at: impl Into<RepoLocation>,
        password: &RepoPassword,
    ) -> Result<Repository, RepoError> {
        Repository::open_in(unlock(Layout::at(&at.into())?, password)?)
    }

    /// Opens the same repository again, to see what was written since.
    pub fn reopen(&self) -> Result<Repository, RepoError> {
        Repository::open_in(self.layout.clone())
    }

    /// Whether the repository is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.layout.codec().is_sealed()
    }

    /// An encrypted repository's key files, by id, and the id of the one that opened it.
    pub fn keys(&self) -> Result<(Vec<KeyEntry>, Option<String>), RepoError> {
        Ok((
            keys::list(&self.layout)?,
            self.layout.key_file().map(str::to_string),
        ))
    }

    /// The name the message with SHA-256 `hash` is stored under: what pack tables and the
    /// index list (the hash itself, unless the repository is encrypted).
    pub fn stored_name(&self, hash: &MessageHash) -> MessageHash {
        self.layout.codec().name(hash)
    }

    pub(super) fn open_in(layout: Layout) -> Result<Repository, RepoError> {
        let config = read_config(&layout)?;
        let (dicts, damaged_dicts) = load_dicts(&layout)?;
        let index::Loaded {
            index,
            scanned: unindexed,
            unreadable,
        } = Index::load(&layout)?;
        Ok(Repository {
            layout,
            config,
            index,
            dicts,
            damaged_dicts,
            unindexed,
            unreadable,
            reading: Default::default(),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Where the repository is stored.
    pub fn storage(&self) -> &RepoLocation {
        self.layout.location()
    }

    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Packs that no index file covered when the repository was opened.
    pub fn unindexed_packs(&self) -> &[IndexedPack] {
        &self.unindexed
    }

    /// Packs no index file covers whose tar headers cannot be read (damaged), and why.
    pub fn unreadable_packs(&self) -> &[(PackId, String)] {
        &self.unreadable
    }

    /// The dictionary stored under `hash`, if present.
    pub fn dictionary(&self, hash: &DictHash) -> Option<&Dictionary> {
        self.dicts.get(hash)
    }

    /// Dictionary files that are damaged, and how: frames compressed with them cannot be read.
    pub fn damaged_dictionaries(&self) -> &[(DictHash, String)] {
        &self.damaged_dicts
    }

    /// The dictionary whose zstd id (as written in frame headers) is `id`.
    pub fn dictionary_by_zstd_id(&self, id: u32) -> Option<&Dictionary> {
        self.dicts.values().find(|d| d.zstd_id() == Some(id))
    }

    /// Takes the writer lock (failing at once if another process holds it).
    pub fn lock(self, command: &str) -> Result<RepoWriter, RepoError> {
        RepoWriter::new(self, command)
    }

    /// Committed snapshots, oldest first.
    /// The latest committed snapshot of `account`, with its message list.
    pub fn latest_snapshot(&self, account: &str) -> Result<Option<Manifest>, RepoError> {
        latest_snapshot_in(&self.layout, account)
    }

    pub fn snapshots(&self) -> Result<Vec<SnapshotId>, RepoError> {
        snapshots_in(&self.layout)
    }

    /// The records files present (named by snapshots, or left over after `forget`).
    pub fn records_files(&self) -> Result<Vec<RecordsId>, RepoError> {
        self.layout.names(FileKind::Records, |s| s.parse().ok())
    }

    /// Checkpoints of snapshots that were interrupted, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<Manifest>, RepoError> {
        checkpoints_in(&self.layout)
    }

    /// The newest committed snapshot of `account`, if any.
    pub fn latest_snapshot_of(&self, account: &str) -> Result<Option<Manifest>, RepoError> {
        latest_snapshot_in(&self.layout, account)
    }

    /// Every account's newest committed snapshot, by account name.
    pub fn latest_snapshots(
        &self,
    ) -> Result<std::collections::BTreeMap<String, SnapshotId>, RepoError> {
        let mut latest = std::collections::BTreeMap::new();
        for id in self.snapshots()? {
            let bytes = self.layout.read(FileKind::Snapshot, id.as_str())?;
            let account = manifest_account(&bytes)
                .map_err(|e| RepoError::corrupt(self.layout.snapshot(&id), e))?;
            latest.insert(account, id);
        }
        Ok(latest)
    }

    /// What earlier verifications found intact (empty when none ran yet).
    pub fn verified_state(&self) -> Result<VerifiedState, RepoError> {
        verified_state_in(&self.layout)
    }

    /// A committed snapshot's manifest.
    pub fn manifest(&self, id: &SnapshotId) -> Result<Manifest, RepoError> {
        let mut manifest = self.manifest_head(id)?;
        load_records(&self.layout, &mut manifest)?;
        Ok(manifest)
    }

    /// Every committed snapshot's summary, oldest first (`popbackup snapshots`). A records
    /// file is read once however many snapshots name it (a long nightly history shares most
    /// of its files), and only for the sizes.
    pub fn summaries(&self) -> Result<Vec<SnapshotSummary>, RepoError> {
        #[derive(serde::Deserialize)]
        struct Size {
            size: Option<u64>,
        }
        let mut counted: HashMap<RecordsId, (usize, u64)> = HashMap::new();
        let mut out = Vec::new();
        for id in self.snapshots()? {
            let head = self.manifest_head(&id)?;
            let (mut messages, mut bytes) = (0, 0);
            match &head.records {
                Some(list) if head.messages.is_empty() => {
                    for file in &list.0 {
                        let known = match counted.get(file) {
                            Some(known) => *known,
                            None => {
                                let sizes: Vec<Size> =
                                    records::read_file(&self.layout, &head.id, file)?;
                                let known =
                                    (sizes.len(), sizes.iter().filter_map(|s| s.size).sum());
                                counted.insert(*file, known);
                                known
                            }
                        };
                        messages += known.0;
                        bytes += known.1;
                    }
                }
                _ => {
                    let summary = head.summary();
                    (messages, bytes) = (summary.messages, summary.bytes);
                }
            }
            out.push(SnapshotSummary {
                id: head.id,
                time: head.time,
                account: head.account,
                messages,
                bytes,
            });
        }
        Ok(out)
    }

    /// A committed snapshot's manifest as its file has it: without the records when they are
    /// in a records file (`records` names it; [`load_records`] reads it).
    pub fn manifest_head(&self, id: &SnapshotId) -> Result<Manifest, RepoError> {
        let path = self.layout.snapshot(id);
        let bytes = self
            .layout
            .read_if_exists(FileKind::Snapshot, id.as_str())?
            .ok_or_else(|| RepoError::NotFound {
                what: "snapshot",
                id: id.to_string(),
            })?;
        parse_manifest(&path, &bytes)
    }

    /// Hands the records of `manifest` (as [`Repository::manifest_head`] read it) to `each`
    /// in order, one records file in memory at a time: read whole, the list of a snapshot of
    /// 100,000 messages takes 40 MB. Records kept inline (checkpoints, older formats) are
    /// taken out of `manifest`.
    pub fn for_each_record(
        &self,
        manifest: &mut Manifest,
        mut each: impl FnMut(MessageRecord),
    ) -> Result<(), RepoError> {
        let list = match &manifest.records {
            Some(list) if manifest.messages.is_empty() => list,
            _ => {
                std::mem::take(&mut manifest.messages)
                    .into_iter()
                    .for_each(each);
                return Ok(());
            }
        };
        let mut position = 0;
        for file in &list.0 {
            let records = read_records_file(&self.layout, &manifest.id, file, position, None)?;
            position += records.len();
            records.into_iter().for_each(&mut each);
        }
        Ok(())
    }

    /// A committed snapshot's manifest with its message list, for serializing: it serializes
    /// like [`Repository::manifest`]'s, but reads the records a records file at a time as
    /// they are written (`ls --json` of 100,000 messages held all of them: 69 MiB).
    pub fn manifest_view(&self, id: &SnapshotId) -> Result<ManifestView<'_>, RepoError> {
        let mut head = self.manifest_head(id)?;
        let inline = std::mem::take(&mut head.messages);
        Ok(ManifestView {
            repo: self,
            head,
            inline: std::cell::RefCell::new(inline),
        })
    }

    /// Finds a snapshot by id or unique prefix (`latest` for the newest).
    pub fn find_snapshot(&self, text: &str) -> Result<SnapshotId, RepoError> {
        let all = self.snapshots()?;
        if text == "latest" {
            return all.last().cloned().ok_or(RepoError::NotFound {
                what: "snapshot",
                id: text.into(),
            });
        }
        let matches: Vec<&SnapshotId> = all
            .iter()
            .filter(|id| id.as_str().starts_with(text))
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(RepoError::NotFound {
                what: "snapshot",
                id: text.into(),
            }),
            _ => Err(RepoError::Invalid(format!(
                "{text:?} matches {} snapshots; give more of the id",
                matches.len()
            ))),
        }
    }

    /// Finds a stored message by full SHA-256 or unique prefix.
    pub fn find_message(&self, text: &str) -> Result<MessageHash, RepoError> {
        if let Ok(hash) = text.parse::<MessageHash>() {
            return Ok(hash);
        }
        let lower = text.to_ascii_lowercase();
        let matches = |h: &MessageHash| !lower.is_empty() && h.to_hex().starts_with(&lower);
        let candidates: Vec<MessageHash> = if self.is_encrypted() {
            // The index knows only stored names: the SHA-256s are in the snapshots' records.
            let mut found = std::collections::BTreeSet::new();
            for id in self.snapshots()? {
                let mut manifest = self.manifest_head(&id)?;
                self.for_each_record(&mut manifest, |r| {
                    found.extend(
                        r.sha256
                            .filter(|h| matches(h) && self.location(h).is_some()),
                    )
                })?;
            }
            found.into_iter().take(2).collect()
        } else {
            self.index
                .messages()
                .map(|(h, _)| *h)
                .filter(|h| matches(h))
                .take(2)
                .collect()
        };
        let mut found = candidates.into_iter();
        match (found.next(), found.next()) {
            (Some(h), None) if !lower.is_empty() => Ok(h),
            (None, _) => Err(RepoError::NotFound {
                what: "message",
                id: text.into(),
            }),
            _ => Err(RepoError::Invalid(format!(
                "{text:?} matches several messages; give more of the hash"
            ))),
        }
    }

    /// Where the message with SHA-256 `hash` is stored.
    pub fn location(&self, hash: &MessageHash) -> Option<Location> {
        self.index.get(&self.stored_name(hash))
    }

    /// Streams a message's bytes: one seek into its pack, then sequential reads of its frame.
    /// The bytes are not checked against the hash; [`Repository::read_message`] does that.
    pub fn open_message(&self, hash: &MessageHash) -> Result<Box<dyn Read + '_>, RepoError> {
        let location = self.message_location(hash)?;
        let dict = self.dictionary_of(&location)?;
        pack::open_entry_in(
            self.layout.backend(),
            self.layout.codec(),
            &location.pack,
            &location.entry,
            dict,
        )
        .map_err(RepoError::io(
            "cannot read",
            self.layout.pack(&location.pack),
        ))
    }

    fn message_location(&self, hash: &MessageHash) -> Result<Location, RepoError> {
        self.location(hash).ok_or(RepoError::NotFound {
            what: "message",
            id: hash.to_string(),
        })
    }

    /// The dictionary the frame at `location` needs, if any.
    fn dictionary_of(&self, location: &Location) -> Result<Option<&Dictionary>, RepoError> {
        match location.entry.dict {
            Some(d) => Some(self.dicts.get(&d).ok_or_else(|| {
                RepoError::corrupt(
                    self.layout.dict(&d),
                    "the dictionary this message needs is missing or damaged (run `popbackup \
                     verify`)",
                )
            }))
            .transpose(),
            None => Ok(None),
        }
    }

    /// A message's exact bytes, checked against its hash, when it is small enough to be
    /// decompressed whole (a frame and content of at most 1 MiB); `None` for one to stream.
    pub fn read_small_message(&self, hash: &MessageHash) -> Result<Option<Vec<u8>>, RepoError> {
        let location = self.message_location(hash)?;
        if location.entry.length > SMALL_MESSAGE {
            return Ok(None);
        }
        let dict = self.dictionary_of(&location)?;
        let path = self.layout.pack(&location.pack);
        let mut cache = self.reading.lock().unwrap_or_else(|e| e.into_inner());
        let ReadCache { decoder, frame } = &mut *cache;
        frame.resize(location.entry.length as usize, 0);
        self.layout
            .backend()
            .read_at(
                FileKind::Pack,
                &location.pack.to_string(),
                location.entry.offset,
                frame,
            )
            .map_err(RepoError::io("cannot read", &path))?;
        let opened = self
            .layout
            .codec()
            .open(codec::FRAME_CONTEXT, frame)
            .map_err(|e| RepoError::corrupt(&path, format!("message {hash}: {e}")))?;
        let content = decoder
            .decompress(&opened, dict, SMALL_MESSAGE)
            .map_err(|e| {
                RepoError::corrupt(&path, format!("message {hash} cannot be decompressed: {e}"))
            })?;
        let Some(content) = content else {
            return Ok(None);
        };
        if MessageHash::of(content) != *hash {
            return Err(RepoError::corrupt(
                &path,
                format!("message {hash} does not match its hash"),
            ));
        }
        // The buffers stay for the next message: at most SMALL_MESSAGE each.
        Ok(Some(content.to_vec()))
    }

    /// A message's exact bytes, checked against its hash.
    pub fn read_message(&self, hash: &MessageHash) -> Result<Vec<u8>, RepoError> {
        if let Some(message) = self.read_small_message(hash)? {
            return Ok(message);
        }
        let pack_path = || {
            self.location(hash)
                .map(|l| self.layout.pack(&l.pack))
                .unwrap_or_default()
        };
        let mut bytes = Vec::new();
        self.open_message(hash)?
            .read_to_end(&mut bytes)
            .map_err(|e| {
                RepoError::corrupt(
                    pack_path(),
                    format!("message {hash} cannot be decompressed: {e}"),
                )
            })?;
        if MessageHash::of(&bytes) != *hash {
            return Err(RepoError::corrupt(
                pack_path(),
                format!("message {hash} does not match its hash"),
            ));
        }
        Ok(bytes)
    }

    /// Copies a message's exact bytes to `out`, checked against its hash: a small message
    /// before any of it is written, a larger one at the end.
    pub fn copy_message(
        &self,
        hash: &MessageHash,
        out: &mut dyn io::Write,
    ) -> Result<u64, RepoError> {
        if let Some(message) = self.read_small_message(hash)? {
            out.write_all(&message)
                .map_err(RepoError::io("cannot write", "the output"))?;
            return Ok(message.len() as u64);
        }
        let pack_path = || {
            self.location(hash)
                .map(|l| self.layout.pack(&l.pack))
                .unwrap_or_default()
        };
        let mut reader = HashingReader {
            inner: self.open_message(hash)?,
            hasher: sha2::Sha256::new(),
            read: 0,
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf).map_err(|e| {
                RepoError::corrupt(
                    pack_path(),
                    format!("message {hash} cannot be decompressed: {e}"),
                )
            })?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .map_err(RepoError::io("cannot write", "the output"))?;
        }
        use sha2::Digest as _;
        if MessageHash(reader.hasher.finalize().into()) != *hash {
            return Err(RepoError::corrupt(
                pack_path(),
                format!("message {hash} does not match its hash"),
            ));
        }
        Ok(reader.read)
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
    read: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// The most a dictionary file may decompress to: far beyond the dictionaries written, and a
/// bound on what a damaged or hostile file can make us allocate.
const MAX_DICTIONARY_BYTES: u64 = 64 << 20;

/// See [`Repository::manifest_view`]. Serializing it a second time gives no records kept
/// inline (they are moved out as they are written).
pub struct ManifestView<'a> {
    repo: &'a Repository,
    head: Manifest,
    inline: std::cell::RefCell<Vec<MessageRecord>>,
}

impl serde::Serialize for ManifestView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // `Manifest`'s fields in its order (a test holds the two to the same JSON).
        #[derive(serde::Serialize)]
        struct Fields<'f> {
            version: u32,
            id: &'f SnapshotId,
            time: &'f str,
            account: &'f str,
            complete: bool,
            tool: &'f manifest::Tool,
            server: &'f manifest::ServerInfo,
            #[serde(skip_serializing_if = "Option::is_none")]
            records: Option<&'f RecordsList>,
            #[serde(skip_serializing_if = "Option::is_none")]
            listing: Option<&'f ListingDigest>,
            #[serde(skip_serializing_if = "Option::is_none")]
            messages: Option<ViewRecords<'f>>,
        }
        let head = &self.head;
        let none = self.inline.borrow().is_empty()
            && head.records.as_ref().is_none_or(|list| list.0.is_empty());
        Fields {
            version: head.version,
            id: &head.id,
            time: &head.time,
            account: &head.account,
            complete: head.complete,
            tool: &head.tool,
            server: &head.server,
            records: head.records.as_ref(),
            listing: head.listing.as_ref(),
            messages: (!none).then_some(ViewRecords(self)),
        }
        .serialize(serializer)
    }
}

struct ViewRecords<'f>(&'f ManifestView<'f>);

impl serde::Serialize for ViewRecords<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq as _};
        let view = self.0;
        let mut seq = serializer.serialize_seq(None)?;
        let mut head = view.head.clone();
        head.messages = view.inline.take();
        let mut failed = None;
        view.repo
            .for_each_record(&mut head, |record| {
                if failed.is_none()
                    && let Err(e) = seq.serialize_element(&record)
                {
                    failed = Some(e);
                }
            })
            .map_err(S::Error::custom)?;
        match failed {
            Some(e) => Err(e),
            None => seq.end(),
        }
    }
}

/// [`Repository::snapshots`] of the repository at `layout`, without opening it (these
/// readers need no index, so a snapshot can read its starting point while it connects).
pub fn snapshots_in(layout: &Layout) -> Result<Vec<SnapshotId>, RepoError> {
    layout.names(FileKind::Snapshot, SnapshotId::parse)
}

/// [`Repository::checkpoints`] of the repository at `layout`.
/// What earlier verifications found (empty when none ran yet) in the repository at `layout`.
pub fn verified_state_in(layout: &Layout) -> Result<VerifiedState, RepoError> {
    let path = layout.verified();
    match layout.read_if_exists(FileKind::Verified, "")? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| RepoError::corrupt(&path, format!("not a verification record: {e}"))),
        None => Ok(VerifiedState::default()),
    }
}

pub fn checkpoints_in(layout: &Layout) -> Result<Vec<Manifest>, RepoError> {
    let mut checkpoints = checkpoint_heads_in(layout)?;
    for checkpoint in &mut checkpoints {
        load_records(layout, checkpoint)?;
    }
    Ok(checkpoints)
}

/// The checkpoints of the repository at `layout` as their files have them: one that names
/// records files comes without its records (see [`load_records`]).
pub fn checkpoint_heads_in(layout: &Layout) -> Result<Vec<Manifest>, RepoError> {
    let ids = layout.names(FileKind::Checkpoint, SnapshotId::parse)?;
    ids.iter()
        .map(|id| {
            let bytes = layout.read(FileKind::Checkpoint, id.as_str())?;
            parse_manifest(&layout.checkpoint(id), &bytes)
        })
        .collect()
}

/// [`Repository::latest_snapshot_of`] of the repository at `layout`. Manifests are read
/// newest first and only until one matches, so this stays cheap however long the history is.
pub fn latest_snapshot_in(layout: &Layout, account: &str) -> Result<Option<Manifest>, RepoError> {
    let Some(mut manifest) = latest_snapshot_head_in(layout, account)? else {
        return Ok(None);
    };
    load_records(layout, &mut manifest)?;
    Ok(Some(manifest))
}

/// The newest committed manifest of `account` as its file has it: a manifest that keeps its
/// records in a records file comes without them (`messages` empty, `records` naming the
/// file). For deciding from the head alone (the listing digest); [`latest_snapshot_in`]
/// loads the records.
pub fn latest_snapshot_head_in(
    layout: &Layout,
    account: &str,
) -> Result<Option<Manifest>, RepoError> {
    for id in snapshots_in(layout)?.iter().rev() {
        let path = layout.snapshot(id);
        let bytes = layout.read(FileKind::Snapshot, id.as_str())?;
        if manifest_account(&bytes).map_err(|e| RepoError::corrupt(&path, e))? == account {
            return parse_manifest(&path, &bytes).map(Some);
        }
    }
    Ok(None)
}

/// `layout` with the key `password` opens, when its repository is encrypted: every later
/// read and write goes through it. Nothing is written, whatever the outcome.
pub(crate) fn unlock(layout: Layout, password: &RepoPassword) -> Result<Layout, RepoError> {
    if layout.codec().is_sealed() {
        return Ok(layout);
    }
    let path = layout.config();
    if !matches!(read_config_file(&layout)?, ConfigFile::Encrypted(_)) {
        return Ok(layout);
    }
    let password = match password.get() {
        Ok(Some(password)) => password,
        Ok(None) => return Err(RepoError::PasswordNeeded { path }),
        Err(e) => return Err(RepoError::PasswordUnavailable(e)),
    };
    let (id, master) = keys::open(&layout, password)?;
    Ok(layout.with_codec(codec::Codec::Sealed(std::sync::Arc::new(master)), &id))
}

/// `config.json` before the key is open.
enum ConfigFile {
    Plain(RepoConfig),
    Encrypted(format::EncryptedConfig),
}

fn read_config_file(layout: &Layout) -> Result<ConfigFile, RepoError> {
    let path = layout.config();
    let bytes = match layout.backend().read(FileKind::Config, "") {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(RepoError::NotARepository {
                path: layout.location().to_string().into(),
            });
        }
        Err(e) => return Err(RepoError::io("cannot read", &path)(e)),
    };
    let probe: format::EncryptionProbe = serde_json::from_slice(&bytes)
        .map_err(|e| RepoError::corrupt(&path, format!("not valid JSON: {e}")))?;
    if probe.encryption.is_none() {
        return parse_config(&path, &bytes).map(ConfigFile::Plain);
    }
    check_version(&path, &bytes)?;
    let file: format::EncryptedConfig =
        serde_json::from_slice(&bytes).map_err(|e| RepoError::corrupt(&path, e.to_string()))?;
    if file.encryption != format::Encryption::current() {
        return Err(RepoError::corrupt(
            &path,
            format!(
                "it is encrypted with {:?}, which this popbackup does not know; use a newer \
                 popbackup",
                file.encryption
            ),
        ));
    }
    Ok(ConfigFile::Encrypted(file))
}

fn read_config(layout: &Layout) -> Result<RepoConfig, RepoError> {
    let path = layout.config();
    let file = match read_config_file(layout)? {
        // The key opened, so the repository was encrypted a moment ago.
        ConfigFile::Plain(_) if layout.codec().is_sealed() => {
            return Err(RepoError::corrupt(
                &path,
                "it no longer says the repository is encrypted, but key files are there; \
                 restore config.json from a copy of the repository",
            ));
        }
        ConfigFile::Plain(config) => return Ok(config),
        ConfigFile::Encrypted(file) => file,
    };
    if !layout.codec().is_sealed() {
        return Err(RepoError::PasswordNeeded { path });
    }
    use base64::Engine as _;
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(&file.sealed)
        .map_err(|e| RepoError::corrupt(&path, format!("its sealed settings: {e}")))?;
    let settings = layout
        .codec()
        .open(codec::CONFIG_CONTEXT, &sealed)
        .map_err(|e| RepoError::corrupt(&path, e.to_string()))?;
    let config = parse_config(&path, &settings)?;
    if config.version != file.version || config.format != file.format {
        return Err(RepoError::corrupt(
            &path,
            "its sealed settings are of another format version than the file says",
        ));
    }
    Ok(config)
}

/// Writes `config.json`: as it is, or with the settings sealed in an encrypted repository.
fn write_config(layout: &Layout, config: &RepoConfig) -> Result<(), RepoError> {
    if !layout.codec().is_sealed() {
        return write_json(layout, FileKind::Config, config);
    }
    use base64::Engine as _;
    let settings = serde_json::to_vec(config).map_err(|e| RepoError::Invalid(e.to_string()))?;
    let sealed = layout
        .codec()
        .seal(codec::CONFIG_CONTEXT, &settings)
        .map_err(RepoError::io("cannot seal", layout.config()))?;
    let file = format::EncryptedConfig {
        format: config.format.clone(),
        version: config.version,
        encryption: format::Encryption::current(),
        sealed: base64::engine::general_purpose::STANDARD.encode(&sealed),
    };
    write_json(layout, FileKind::Config, &file)
}

/// Parses `config.json` (read from `path`): the format name and version are checked before
/// the rest of the schema, so a newer repository gets "upgrade popbackup", not a parse error.
pub fn parse_config(path: &Path, bytes: &[u8]) -> Result<RepoConfig, RepoError> {
    check_version(path, bytes)?;
    serde_json::from_slice(bytes).map_err(|e| RepoError::corrupt(path, e.to_string()))
}

/// The format name and version of `config.json`, checked.
fn check_version(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    let path = path.to_path_buf();
    let probe: format::VersionProbe = serde_json::from_slice(bytes)
        .map_err(|e| RepoError::corrupt(&path, format!("not valid JSON: {e}")))?;
    if probe.format != format::FORMAT_NAME {
        return Err(RepoError::corrupt(
            &path,
            format!(
                "format is {:?}, not {:?}",
                probe.format,
                format::FORMAT_NAME
            ),
        ));
    }
    if probe.version < format::OLDEST_READ_VERSION {
        return Err(RepoError::corrupt(
            &path,
            format!(
                "format {} is a pre-release format (before dictionaries were stored \
                 compressed, format 4) that this popbackup does not read; restore from it with \
                 the popbackup that wrote it, or create a new repository with `popbackup init`",
                probe.version
            ),
        ));
    }
    if probe.version > format::FORMAT_VERSION {
        return Err(RepoError::UnsupportedVersion {
            path,
            found: probe.version,
            supported: format::FORMAT_VERSION,
        });
    }
    Ok(())
}

/// The dictionaries in `dicts/`: each file is checked against its name, and one that does not
/// decompress to bytes with that SHA-256 is set aside as damaged rather than used.
type LoadedDicts = (HashMap<DictHash, Dictionary>, Vec<(DictHash, String)>);

fn load_dicts(layout: &Layout) -> Result<LoadedDicts, RepoError> {
    let hashes: Vec<DictHash> = layout.names(FileKind::Dictionary, |s| s.parse().ok())?;
    let mut out = HashMap::new();
    let mut damaged = Vec::new();
    for hash in hashes {
        let file = layout.read(FileKind::Dictionary, &hash.to_string())?;
        match dictionary_from_file(&file, &hash) {
            Ok(bytes) => {
                out.insert(hash, Dictionary { hash, bytes });
            }
            Err(problem) => damaged.push((hash, problem)),
        }
    }
    Ok((out, damaged))
}

/// A dictionary's bytes from its zstd-compressed file, checked against the hash it is named by.
fn dictionary_from_file(file: &[u8], hash: &DictHash) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    zstd::stream::read::Decoder::new(file)
        .and_then(|d| d.take(MAX_DICTIONARY_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("does not decompress: {e}"))?;
    if bytes.len() as u64 > MAX_DICTIONARY_BYTES {
        return Err("decompresses to more than any dictionary popbackup writes".into());
    }
    if DictHash::of(&bytes) != *hash {
        return Err("its content does not match its name (SHA-256)".into());
    }
    Ok(bytes)
}

/// The account of a manifest, without parsing its message list: the part before
/// `"messages":[` is parsed on its own when the file has the shape popbackup writes (the key is
/// last, and a quote inside a string value is always escaped, so the search cannot match
/// inside one); otherwise the whole file is.
pub fn manifest_account(bytes: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct AccountProbe {
        account: String,
    }
    // The head (server, capabilities, greeting) is well under this.
    const HEAD: usize = 256 * 1024;
    let start = compressed::decompress_prefix(bytes, HEAD).map_err(|e| e.to_string())?;
    if let Some(at) = memchr::memmem::find(&start, b",\"messages\":[") {
        let mut head = start[..at].to_vec();
        head.push(b'}');
        if let Ok(probe) = serde_json::from_slice::<AccountProbe>(&head) {
            return Ok(probe.account);
        }
    }
    let json = compressed::decompress(bytes).map_err(|e| e.to_string())?;
    serde_json::from_slice::<AccountProbe>(&json)
        .map(|p| p.account)
        .map_err(|e| e.to_string())
}

/// Fills in the records of a manifest that keeps them in a records file. The file must hash
/// to its name: a damaged list is an error, never a shorter snapshot.
pub fn load_records(layout: &Layout, manifest: &mut Manifest) -> Result<(), RepoError> {
    if manifest.messages.is_empty()
        && let Some(records) = read_records::<MessageRecord>(layout, manifest)?
    {
        manifest.messages = records;
        for (position, record) in manifest.messages.iter_mut().enumerate() {
            put_back_number(record, position);
        }
    }
    Ok(())
}

/// Whether every records file of `list` is there (a run that would name them again checks).
pub fn records_present(layout: &Layout, list: &RecordsList) -> bool {
    list.0.iter().all(|r| {
        layout
            .backend()
            .size(FileKind::Records, &r.to_string())
            .is_ok()
    })
}

/// Reads `list`'s records files into the page cache, for a run about to read them, maybe
/// twice; errors are left for the real read to report.
pub fn warm_records(layout: &Layout, list: &RecordsList) {
    for file in &list.0 {
        let _ = layout.backend().read(FileKind::Records, &file.to_string());
    }
}

/// The records of one records file of snapshot `snapshot`'s list, whose first record is at
/// `first` in the whole list (numbers left out are put back). With `expected`, a file that
/// holds another number of records is damaged (it changed since it was counted).
pub fn read_records_file(
    layout: &Layout,
    snapshot: &SnapshotId,
    id: &RecordsId,
    first: usize,
    expected: Option<usize>,
) -> Result<Vec<MessageRecord>, RepoError> {
    let mut records: Vec<MessageRecord> = records::read_file(layout, snapshot, id)?;
    if expected.is_some_and(|n| n != records.len()) {
        return Err(RepoError::corrupt(
            layout.records(id),
            "the file changed while the snapshot ran",
        ));
    }
    for (k, record) in records.iter_mut().enumerate() {
        put_back_number(record, first + k);
    }
    Ok(records)
}

/// A records file leaves out a record's message number when it is its position in the list,
/// counting from 1 (see `record_json`).
pub fn put_back_number(record: &mut MessageRecord, position: usize) {
    if record.msg == 0 {
        record.msg = u32::try_from(position + 1).unwrap_or(u32::MAX);
    }
}

/// Where each message of a manifest is, as its records say: what `verify` needs, read from
/// the records file without the header fields (a fraction of the memory of whole records).
#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct RecordLocation {
    pub sha256: Option<MessageHash>,
    pub pack: Option<PackId>,
    pub offset: Option<u64>,
    pub length: Option<u64>,
}

/// The [`RecordLocation`]s of `manifest`'s records (inline, or in its records file).
pub fn record_locations(
    layout: &Layout,
    manifest: &Manifest,
) -> Result<Vec<RecordLocation>, RepoError> {
    if manifest.messages.is_empty()
        && let Some(locations) = read_records(layout, manifest)?
    {
        return Ok(locations);
    }
    Ok(manifest
        .messages
        .iter()
        .map(|r| RecordLocation {
            sha256: r.sha256,
            pack: r.pack,
            offset: r.offset,
            length: r.length,
        })
        .collect())
}

/// The records `manifest`'s records files hold, parsed as a list of `T`; `None` when it
/// names none.
fn read_records<T: serde::de::DeserializeOwned>(
    layout: &Layout,
    manifest: &Manifest,
) -> Result<Option<Vec<T>>, RepoError> {
    match &manifest.records {
        Some(list) => records::read_list(layout, &manifest.id, list).map(Some),
        None => Ok(None),
    }
}

/// Parses a manifest read from `path` (compressed JSON, or plain). A committed manifest's
/// records stay in their file: see [`load_records`].
pub fn parse_manifest(path: &Path, bytes: &[u8]) -> Result<Manifest, RepoError> {
    let json = compressed::decompress(bytes)
        .map_err(|e| RepoError::corrupt(path, format!("cannot decompress: {e}")))?;
    let manifest: Manifest =
        serde_json::from_slice(&json).map_err(|e| RepoError::corrupt(path, e.to_string()))?;
    if manifest.version > manifest::MANIFEST_VERSION {
        return Err(RepoError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: manifest.version,
            supported: manifest::MANIFEST_VERSION,
        });
    }
    Ok(manifest)
}

/// Writes `value` as the pretty JSON file of `kind` (`config.json`, `verified.json`).
fn write_json<T: serde::Serialize>(
    layout: &Layout,
    kind: FileKind,
    value: &T,
) -> Result<(), RepoError> {
    let mut bytes =
        serde_json::to_vec_pretty(value).map_err(|e| RepoError::Invalid(e.to_string()))?;
    bytes.push(b'\n');
    layout.write(kind, "", &bytes)
}
