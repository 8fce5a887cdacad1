//! Writing to the repository under its exclusive lock: messages into packs, then index files,
//! records files and manifests, each published crash-safely in that order; checkpoints of a
//! long run; the repository's zstd dictionary (sampled from a run's small messages, trained,
//! and retrained when it pays off). Reading is [`Repository`]'s; this module only adds.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};

use super::backend::{FileKind, HeldLock};
use super::codec::FRAME_CONTEXT;
use super::frame::compressed_total;
use super::location::RepoLocation;
use super::{
    DictHash, Dictionary, Frame, FrameCompressor, FramePlan, Index, IndexedPack, Layout, Location,
    Manifest, MessageHash, MessageRecord, PackEntry, PackId, PackWriter, RecordsId, RepoError,
    RepoPassword, Repository, SnapshotId, Stored, VerifiedState, compressed, dictionary, format,
    id, index, pack, read_config, records, write_config, write_json,
};

/// Messages up to this size are compressed with the repository's dictionary, when it has
/// one; larger ones compress well on their own.
pub const DICTIONARY_MAX_MESSAGE: usize = 128 * 1024;

/// A repository without a dictionary trains one once a run has stored this many small
/// messages...
pub const TRAIN_AFTER_MESSAGES: usize = 300;
/// ...or this many bytes of them, whichever comes first.
pub const TRAIN_AFTER_BYTES: usize = 3 << 19;
/// The largest dictionary trained. Measured on the generated 20,000-message mailbox of
/// `scripts/bench_mail.py`: 256 KiB makes the frames 3 % smaller than 64 KiB, for about 50 ms
/// more training and no slower compression (the bench: frames 1.01x `tar | zstd -3` of the
/// same messages). Every frame of a small message can reach back into the dictionary, so a
/// larger one stands in for the window a solid archive has.
pub const DICTIONARY_SIZE: usize = 256 * 1024;
/// A trained dictionary is at most this fraction of the sample data it is trained from. zstd's
/// trainer is sensitive to the size asked for: on the benchmark's mail, 256 KiB from 225
/// messages (0.87 MB) makes frames 4 % smaller than 218 KB from the same messages.
const DICTIONARY_SAMPLE_RATIO: usize = 3;
/// Dictionary files are zstd frames at this level: a 1 MiB dictionary of recent mail shrinks
/// to 190 KB in 30 ms (level 19 would take 0.4 s for 5 % less).
const DICTIONARY_FILE_LEVEL: i32 = 9;
/// The most recent sampled mail a dictionary of that kind holds (see [`dictionary`]): on the
/// corpus, 1 MiB made frames 15 % smaller than 256 KiB.
const RECENT_DICTIONARY_SIZE: usize = 1 << 20;
/// Below this much sample data a dictionary would cost more than it saves.
pub const TRAIN_MIN_BYTES: usize = 512 * 1024;
/// A repository with a dictionary samples for a new one once it holds this many times the
/// messages it held when the dictionary was trained (or last confirmed)...
pub const RETRAIN_GROWTH: u64 = 4;
/// ...and adopts the new one only if it compresses the samples at least this many percent
/// smaller than the current one: frames keep the dictionary they were made with, so every
/// dictionary adopted is kept for good.
pub const RETRAIN_MIN_GAIN_PERCENT: u64 = 3;

/// Small messages kept (uncompressed) until a dictionary is trained from them.
#[derive(Default)]
struct Samples {
    bytes: Vec<u8>,
    sizes: Vec<usize>,
    /// Where each sampled message is in `bytes`.
    at: HashMap<MessageHash, (usize, usize)>,
}

impl Samples {
    /// Each sampled message's bytes.
    fn bytes_of_each(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.sizes.iter().map(move |&len| {
            let piece = &self.bytes[start..start + len];
            start += len;
            piece
        })
    }
}

/// Whether a repository holding `messages` whose dictionary dates from `trained_at` messages
/// should sample for a new one.
fn retrain_due(messages: u64, trained_at: u64) -> bool {
    messages >= RETRAIN_GROWTH * trained_at.max(1)
}

/// A [`RepoWriter`] being opened on a thread; the lock is held already.
pub struct OpeningWriter {
    layout: Layout,
    thread: std::thread::JoinHandle<Result<RepoWriter, RepoError>>,
}

impl OpeningWriter {
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Waits until the writer is open.
    pub fn wait(self) -> Result<RepoWriter, RepoError> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(RepoError::Invalid("opening the repository failed".into())))
    }
}

/// A repository opened for writing, holding the exclusive lock.
pub struct RepoWriter {
    repo: Repository,
    lock: Box<dyn HeldLock>,
    pack: Option<PackWriter>,
    /// zstd level for new messages when it differs from the repository's.
    level_override: Option<i32>,
    /// Read every pack back before publishing it (on by default).
    verify_before_commit: bool,
    /// The writer's own compression context (for messages stored through it).
    compressor: FrameCompressor,
    /// Samples for training a dictionary; `None` once trained (or when there is one).
    samples: Option<Samples>,
    /// A dictionary was made in this session from this session's mail (see `commit`).
    adopted_dictionary: bool,
    /// Packs finished since the last index file was written.
    unindexed: Vec<IndexedPack>,
    /// What this session's lists name: records files made of a run still open at a
    /// checkpoint, the files of every list committed, and of each checkpoint still there.
    /// [`RepoWriter::close`] removes the first that neither of the others names.
    lists: SessionLists,
    /// Messages the last verify found damaged (`verified.json`): not taken as stored, so that
    /// a run that meets one stores a good copy, which then takes the damaged one's place in
    /// the index. A message leaves the set once its good copy's pack is written.
    damaged: HashSet<MessageHash>,
    /// Messages given a good copy in this session, in place of a damaged one.
    healed: Vec<MessageHash>,
    /// Messages being copied out of a pack that is to go: their copy takes over their index
    /// location when its pack is written.
    moving: HashSet<MessageHash>,
}

#[derive(Default)]
struct SessionLists {
    made_for_checkpoints: HashSet<RecordsId>,
    committed: HashSet<RecordsId>,
    checkpoints: HashMap<SnapshotId, Vec<RecordsId>>,
}

impl RepoWriter {
    pub(super) fn new(repo: Repository, command: &str) -> Result<RepoWriter, RepoError> {
        let layout = repo.layout.clone();
        drop(repo);
        read_config(&layout)?;
        let lock = layout.backend().lock(command)?;
        RepoWriter::open_locked(layout, lock)
    }

    /// Takes the writer lock of the repository at `at` and opens it once, under the lock (the
    /// index read is then the one this writer extends). Fails at once if another process
    /// holds the lock.
    pub fn open(at: impl Into<RepoLocation>, command: &str) -> Result<RepoWriter, RepoError> {
        RepoWriter::open_with(at, command, &RepoPassword::none())
    }

    /// [`RepoWriter::open`] of a repository that may be encrypted (opened with `password`).
    pub fn open_with(
        at: impl Into<RepoLocation>,
        command: &str,
        password: &RepoPassword,
    ) -> Result<RepoWriter, RepoError> {
        // Refuse a missing, newer or locked-away repository before creating a lock file in it.
        let layout = super::unlock(Layout::at(&at.into())?, password)?;
        read_config(&layout)?;
        let lock = layout.backend().lock(command)?;
        RepoWriter::open_locked(layout, lock)
    }

    /// Like [`RepoWriter::open`], but only the checks and the lock happen now: the rest (the
    /// index above all, tens of milliseconds for a large repository) is read on a thread,
    /// while the caller does something else (a snapshot connects to its servers), and
    /// `configure` is applied to the writer there.
    pub fn open_in_background(
        at: impl Into<RepoLocation>,
        command: &str,
        password: &RepoPassword,
        configure: impl FnOnce(&mut RepoWriter) + Send + 'static,
    ) -> Result<OpeningWriter, RepoError> {
        let layout = super::unlock(Layout::at(&at.into())?, password)?;
        read_config(&layout)?;
        let lock = layout.backend().lock(command)?;
        let opening = layout.clone();
        let thread = std::thread::spawn(move || {
            let mut writer = RepoWriter::open_locked(opening, lock)?;
            configure(&mut writer);
            Ok(writer)
        });
        Ok(OpeningWriter { layout, thread })
    }

    /// The rest of [`RepoWriter::open`], under the lock.
    fn open_locked(layout: Layout, lock: Box<dyn HeldLock>) -> Result<RepoWriter, RepoError> {
        // A directory lost by accident (say, `index/`) is recreated rather than failing writes.
        layout.backend().prepare().map_err(RepoError::io(
            "cannot create the directories of",
            layout.location().to_string(),
        ))?;
        // We are the only writer: anything in the scratch place is a crashed writer's.
        layout
            .backend()
            .clear_scratch()
            .map_err(RepoError::io("cannot clear", layout.backend().scratch()))?;
        let mut repo = Repository::open_in(layout.clone())?;
        let version = format::version_for(layout.codec().is_sealed());
        if repo.config.version < version {
            // Before anything of the new format is written: an older popbackup must refuse the
            // repository from then on, not misread it.
            let mut config = repo.config.clone();
            config.version = version;
            write_config(&layout, &config)?;
            repo.config = config;
        }
        let unindexed = std::mem::take(&mut repo.unindexed);
        let compression = &repo.config.compression;
        // Without a dictionary, `dictionary_messages` is where training last found too little
        // to work with (0: never tried).
        let due = match compression.dictionary {
            None if compression.dictionary_messages == 0 => true,
            _ => retrain_due(repo.index.len() as u64, compression.dictionary_messages),
        };
        let samples = due.then(Samples::default);
        // An unreadable record only means nothing is known damaged; verify rewrites it.
        let damaged = repo
            .verified_state()
            .map(|state| state.damaged_messages.into_keys().collect())
            .unwrap_or_default();
        let mut writer = RepoWriter {
            repo,
            lock,
            pack: None,
            level_override: None,
            verify_before_commit: true,
            compressor: FrameCompressor::default(),
            samples,
            adopted_dictionary: false,
            unindexed,
            lists: SessionLists::default(),
            damaged,
            healed: Vec::new(),
            moving: HashSet::new(),
        };
        writer.write_index()?;
        Ok(writer)
    }

    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// Makes room in the index for `messages` more, which a run is about to download: at
    /// 100,000 messages its table is the largest thing a snapshot holds.
    pub fn expect_messages(&mut self, messages: usize) {
        self.repo.index.reserve(messages);
    }

    /// Messages stored: indexed, and in the pack being written.
    fn message_count(&self) -> u64 {
        (self.repo.index.len() + self.pack.as_ref().map_or(0, |p| p.entries().len())) as u64
    }

    /// True if the message with SHA-256 `hash` is stored already (committed or written in
    /// this session), and not known damaged.
    pub fn contains(&self, hash: &MessageHash) -> bool {
        let name = self.repo.stored_name(hash);
        (self.repo.index.contains(&name) && !self.damaged.contains(&name))
            || self.pack.as_ref().is_some_and(|p| p.contains(&name))
    }

    /// Messages known damaged (by the last verify) that this session has not stored again,
    /// by the name they are stored under.
    pub fn is_damaged(&self, name: &MessageHash) -> bool {
        self.damaged.contains(name)
    }

    /// Messages this session stored again in place of a damaged copy, by stored name.
    pub fn healed(&self) -> &[MessageHash] {
        &self.healed
    }

    /// Whether every new frame is checked before its pack is published (default: yes; it
    /// costs one decompression of what was just written): a frame made from memory is
    /// decompressed and compared with the message as soon as it is made (a streamed one by a
    /// thread, as it is written), and the pack file is then read back and must hold exactly
    /// the frames appended; a frame that was not checked that way (copied from another pack)
    /// is decompressed from the file and re-hashed.
    pub fn set_verify_before_commit(&mut self, on: bool) {
        self.verify_before_commit = on;
        self.compressor = FrameCompressor::new(on);
    }

    /// Whether frames are checked before commit: compressing threads make their
    /// [`FrameCompressor`] with this.
    pub fn verify_before_commit(&self) -> bool {
        self.verify_before_commit
    }

    /// Sets the zstd level for the messages stored next (`None`: the repository's level).
    pub fn set_compression_level(&mut self, level: Option<i32>) {
        self.level_override = level;
    }

    fn level(&self) -> i32 {
        self.level_override
            .unwrap_or(self.repo.config.compression.level)
    }

    /// The pack being written, created on first use, set to the current level.
    fn open_pack(&mut self) -> Result<&mut PackWriter, RepoError> {
        let level = self.level();
        let tmp = self.repo.layout.backend().scratch();
        if self.pack.is_none() {
            self.pack = Some(
                PackWriter::new(&tmp, level, self.repo.layout.codec().clone())
                    .map_err(RepoError::io("cannot create a pack in", &tmp))?,
            );
        }
        let Some(pack) = self.pack.as_mut() else {
            return Err(RepoError::Invalid("no pack open".into()));
        };
        pack.set_level(level);
        Ok(pack)
    }

    /// Closes the pack once it is big enough.
    fn pack_written(&mut self) -> Result<(), RepoError> {
        if self
            .pack
            .as_ref()
            .is_some_and(|p| p.size() >= pack::TARGET_PACK_SIZE)
        {
            self.finish_pack()?;
        }
        Ok(())
    }

    /// Stores a message read from `source`, streaming: hashed and compressed as it arrives,
    /// whatever its size (no dictionary: streaming is for large messages). A message already
    /// in the repository is not stored twice.
    pub fn store(&mut self, source: &mut dyn Read) -> Result<Stored, StoreError> {
        let tmp = self.repo.layout.backend().scratch();
        let io_err = |e| StoreError::Repo(RepoError::io("cannot write a pack in", &tmp)(e));
        self.open_pack().map_err(StoreError::Repo)?;
        let index = &self.repo.index;
        let damaged = &self.damaged;
        let Some(pack) = &mut self.pack else {
            return Err(StoreError::Repo(RepoError::Invalid("no pack open".into())));
        };
        let mut writer = pack.begin(self.verify_before_commit).map_err(io_err)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::Source(e)),
            };
            io::Write::write_all(&mut writer, &buf[..n]).map_err(io_err)?;
        }
        let stored = writer
            .finish(|h| index.contains(h) && !damaged.contains(h))
            .map_err(io_err)?;
        self.pack_written().map_err(StoreError::Repo)?;
        Ok(stored)
    }

    /// Stores a message held in memory: hashed first (a duplicate costs no compression), then
    /// compressed in one call with a reused context — with the repository's dictionary when
    /// the message is small enough to profit from one.
    pub fn store_bytes(&mut self, bytes: &[u8]) -> Result<Stored, RepoError> {
        let hash = MessageHash::of(bytes);
        let raw_len = bytes.len() as u64;
        if self.contains(&hash) {
            return Ok(Stored::Duplicate(hash, raw_len));
        }
        let dict = self.dictionary_for(bytes.len());
        let level = self.level();
        let frame = self.compress(bytes, dict, level)?;
        let tmp = self.repo.layout.backend().scratch();
        let entry = self
            .open_pack()?
            .append_frame(&hash, &frame.bytes, dict, frame.checked)
            .map_err(RepoError::io("cannot write a pack in", &tmp))?;
        if let Some(samples) = &mut self.samples
            && bytes.len() <= DICTIONARY_MAX_MESSAGE
            && samples.bytes.len() < TRAIN_AFTER_BYTES
        {
            samples
                .at
                .insert(entry.hash, (samples.bytes.len(), bytes.len()));
            samples.bytes.extend_from_slice(bytes);
            samples.sizes.push(bytes.len());
            if samples.sizes.len() >= TRAIN_AFTER_MESSAGES
                || samples.bytes.len() >= TRAIN_AFTER_BYTES
            {
                self.train_dictionary()?;
            }
        }
        self.pack_written()?;
        Ok(Stored::New(hash, entry, raw_len))
    }

    /// Makes a zstd dictionary from the sampled small messages, stores it as the repository's
    /// dictionary, and recompresses the sampled messages still in the pack being written with
    /// it (frames of messages already in finished packs stay as they are). Of the two kinds of
    /// dictionary (see [`dictionary`]) the one that compresses held-out samples smaller is
    /// kept. Training failing — too little or too uniform data — only means no dictionary for
    /// now. When the repository has a dictionary already, the new one is adopted only if it
    /// pays off on the held-out samples.
    fn train_dictionary(&mut self) -> Result<(), RepoError> {
        let Some(samples) = self.samples.take() else {
            return Ok(());
        };
        if samples.bytes.len() < TRAIN_MIN_BYTES {
            return Ok(());
        }
        let messages = self.message_count();
        let current = self.repo.config.compression.dictionary;
        // Dictionaries are judged on every fourth sample and made from the others. A
        // dictionary of recent mail that wins is then made again with all of them.
        let held_out = |i: usize| i % 4 == 3;
        let mut judged = Vec::new();
        let mut training = Vec::with_capacity(samples.bytes.len());
        let mut sizes = Vec::with_capacity(samples.sizes.len());
        for (i, piece) in samples.bytes_of_each().enumerate() {
            if held_out(i) {
                judged.push(piece);
            } else {
                training.extend_from_slice(piece);
                sizes.push(piece.len());
            }
        }
        let size = DICTIONARY_SIZE.min(training.len() / DICTIONARY_SAMPLE_RATIO);
        let Some(trained) = dictionary::train(&training, &sizes, size) else {
            // Nothing zstd can use (too uniform): look again once the repository has grown.
            return self.dictionary_checked(messages);
        };
        let recent = dictionary::with_content(&trained, &training, RECENT_DICTIONARY_SIZE);
        drop(training);
        let level = self.level();
        // The smaller total wins; a dictionary zstd refuses is not a candidate.
        let mut best: Option<(u64, Vec<u8>, bool)> = None;
        let candidates = recent
            .map(|r| (r, true))
            .into_iter()
            .chain([(trained, false)]);
        for (candidate, is_recent) in candidates {
            let Some(total) = compressed_total(&judged, &candidate, level) else {
                continue;
            };
            if best.as_ref().is_none_or(|(smallest, ..)| total < *smallest) {
                best = Some((total, candidate, is_recent));
            }
        }
        let Some((new_size, mut bytes, is_recent)) = best else {
            return Ok(());
        };
        if is_recent {
            // Made again with the held-out samples in its content too.
            if let Some(all) =
                dictionary::with_content(&bytes, &samples.bytes, RECENT_DICTIONARY_SIZE)
            {
                bytes = all;
            }
        }
        if let Some(current) = current {
            let mut old_size = 0;
            for piece in &judged {
                old_size += self.compress(piece, Some(current), level)?.bytes.len() as u64;
            }
            if new_size * 100 > old_size * (100 - RETRAIN_MIN_GAIN_PERCENT) {
                // Not worth a new dictionary: look again once the repository has grown.
                return self.dictionary_checked(messages);
            }
        }
        drop(judged);
        let hash = self.adopt_dictionary(bytes, messages)?;
        // Rewrite the unfinished pack: sampled messages with the dictionary, the rest copied.
        let Some(mut old) = self.pack.take() else {
            return Ok(());
        };
        let tmp = self.repo.layout.backend().scratch();
        let io_err = RepoError::io("cannot rewrite a pack in", &tmp);
        let mut entries = old.entries().to_vec();
        entries.sort_by_key(|e| e.offset);
        let level = self.level();
        let mut frames = Vec::with_capacity(entries.len());
        for e in &entries {
            let frame = match samples.at.get(&e.hash) {
                Some(&(start, len)) if e.dict != Some(hash) => {
                    let sample = &samples.bytes[start..start + len];
                    let frame = self.compress(sample, Some(hash), level)?;
                    let stored = self
                        .repo
                        .layout
                        .codec()
                        .seal(FRAME_CONTEXT, &frame.bytes)
                        .map_err(RepoError::io("cannot seal a frame in", &tmp))?
                        .into_owned();
                    let frame = Frame {
                        bytes: stored,
                        checked: frame.checked,
                    };
                    (frame, Some(hash))
                }
                // Copied from the file: checked when the pack is read back at the end.
                _ => (
                    Frame {
                        bytes: old
                            .read_frame(e)
                            .map_err(|e| RepoError::io("cannot read a pack in", &tmp)(e))?,
                        checked: false,
                    },
                    e.dict,
                ),
            };
            frames.push(frame);
        }
        let mut new =
            PackWriter::new(&tmp, level, self.repo.layout.codec().clone()).map_err(io_err)?;
        for (e, (frame, dict)) in entries.iter().zip(frames) {
            new.append(e.hash, &frame.bytes, dict, frame.checked)
                .map_err(RepoError::io("cannot write a pack in", &tmp))?;
        }
        self.pack = Some(new);
        Ok(())
    }

    /// Records that the dictionary was looked at with `messages` stored, so that the next look
    /// waits until the repository has grown `RETRAIN_GROWTH` times.
    fn dictionary_checked(&mut self, messages: u64) -> Result<(), RepoError> {
        let mut config = self.repo.config.clone();
        config.compression.dictionary_messages = messages;
        write_config(&self.repo.layout, &config)?;
        self.repo.config = config;
        Ok(())
    }

    /// A run that stored too little mail to make a dictionary from (most nightly runs) tops
    /// its samples up with the repository's most recently stored small messages, read back
    /// from the newest packs, and makes one from those: otherwise a mailbox that never brings
    /// 300 small messages in one run would never get a dictionary, nor a newer one.
    fn train_with_stored_samples(&mut self) -> Result<(), RepoError> {
        let Some(run) = self.samples.take() else {
            return Ok(());
        };
        let wanted_bytes = TRAIN_AFTER_BYTES.saturating_sub(run.bytes.len());
        let wanted_messages = TRAIN_AFTER_MESSAGES.saturating_sub(run.sizes.len());
        // Newest first: packs by modification time, messages from the end of each.
        let mut by_pack: HashMap<PackId, Vec<(u64, MessageHash)>> = HashMap::new();
        for (hash, location) in self.repo.index.messages() {
            if location.entry.length <= DICTIONARY_MAX_MESSAGE as u64 && !run.at.contains_key(hash)
            {
                by_pack
                    .entry(location.pack)
                    .or_default()
                    .push((location.entry.offset, *hash));
            }
        }
        let written: HashMap<String, std::time::SystemTime> = self
            .repo
            .layout
            .listing(FileKind::Pack)?
            .into_iter()
            .filter_map(|l| Some((l.name, l.modified?)))
            .collect();
        let mut packs: Vec<(std::time::SystemTime, PackId)> = by_pack
            .keys()
            .map(|id| {
                let modified = written
                    .get(&id.to_string())
                    .copied()
                    .unwrap_or(std::time::UNIX_EPOCH);
                (modified, *id)
            })
            .collect();
        packs.sort_unstable_by(|a, b| b.cmp(a));
        let mut stored: Vec<Vec<u8>> = Vec::new();
        let mut stored_bytes = 0;
        // Bounded work: a repository of mostly large messages is not read whole.
        let mut looked_at = 0;
        'packs: for (_, id) in packs {
            let mut messages = by_pack.remove(&id).unwrap_or_default();
            messages.sort_unstable_by(|a, b| b.cmp(a));
            for (_, hash) in messages {
                if stored_bytes >= wanted_bytes
                    || stored.len() >= wanted_messages
                    || looked_at >= 4 * TRAIN_AFTER_MESSAGES
                {
                    break 'packs;
                }
                looked_at += 1;
                // A message that does not read back is verify's business, not a sample.
                let Ok(bytes) = self.repo.read_message(&hash) else {
                    continue;
                };
                if bytes.len() <= DICTIONARY_MAX_MESSAGE {
                    stored_bytes += bytes.len();
                    stored.push(bytes);
                }
            }
        }
        if stored_bytes + run.bytes.len() < TRAIN_MIN_BYTES {
            return Ok(());
        }
        // Oldest first, the run's own messages last: the most recent mail ends a dictionary.
        let mut samples = Samples::default();
        for bytes in stored.iter().rev() {
            samples.bytes.extend_from_slice(bytes);
            samples.sizes.push(bytes.len());
        }
        let shift = samples.bytes.len();
        samples.bytes.extend_from_slice(&run.bytes);
        samples.sizes.extend_from_slice(&run.sizes);
        samples.at = run
            .at
            .iter()
            .map(|(hash, &(start, len))| (*hash, (start + shift, len)))
            .collect();
        self.samples = Some(samples);
        self.train_dictionary()
    }

    /// Stores `bytes` as a content-addressed dictionary and makes it the one new small frames
    /// use, without finishing the pack being written: no frame refers to it yet, and the file
    /// is durable before any will.
    fn adopt_dictionary(&mut self, bytes: Vec<u8>, messages: u64) -> Result<DictHash, RepoError> {
        self.adopted_dictionary = true;
        let hash = DictHash::of(&bytes);
        let dictionary = Dictionary { hash, bytes };
        if dictionary.zstd_id().is_none() {
            return Err(RepoError::Invalid(
                "not a zstd dictionary (no dictionary header)".into(),
            ));
        }
        let name = hash.to_string();
        // Content-addressed: one already there is this one.
        if self
            .repo
            .layout
            .backend()
            .size(FileKind::Dictionary, &name)
            .is_err()
        {
            let file = zstd::bulk::compress(&dictionary.bytes, DICTIONARY_FILE_LEVEL).map_err(
                RepoError::io("cannot compress", self.repo.layout.dict(&hash)),
            )?;
            self.repo.layout.write(FileKind::Dictionary, &name, &file)?;
        }
        self.repo.dicts.insert(hash, dictionary);
        let mut config = self.repo.config.clone();
        config.compression.dictionary = Some(hash);
        config.compression.dictionary_messages = messages;
        write_config(&self.repo.layout, &config)?;
        self.repo.config = config;
        Ok(hash)
    }

    /// Compresses one message into a standard zstd frame, reusing the compression context and,
    /// with a dictionary, a digested copy of it (loading a raw dictionary per frame would cost
    /// more than compressing a small message).
    fn compress(
        &mut self,
        bytes: &[u8],
        dict: Option<DictHash>,
        level: i32,
    ) -> Result<Frame, RepoError> {
        let dicts = &self.repo.dicts;
        self.compressor
            .compress(bytes, FramePlan { level, dict }, |h| {
                dicts.get(h).map(|d| d.bytes.clone())
            })
    }

    /// How a message of `len` bytes is to be compressed now, at `level` (`None`: the
    /// repository's), so that a thread can compress it outside the writer's lock with a
    /// [`FrameCompressor`] and hand the frame to [`RepoWriter::store_frame`]. `None` for a
    /// message small enough to be sampled while the writer is still sampling messages to
    /// train a dictionary: store those with [`RepoWriter::store_bytes`], which sees their
    /// bytes.
    pub fn frame_plan(&self, len: usize, level: Option<i32>) -> Option<FramePlan> {
        // A message that could be sampled is stored whole under the lock, where the sample
        // is; a larger one never is, and is compressed outside it like any other.
        if self.samples.is_some() && len <= DICTIONARY_MAX_MESSAGE {
            return None;
        }
        Some(FramePlan {
            level: level.unwrap_or(self.repo.config.compression.level),
            dict: self.dictionary_for(len),
        })
    }

    /// The dictionary a new message of `len` bytes is compressed with: the repository's, for
    /// small messages, when it is loaded.
    fn dictionary_for(&self, len: usize) -> Option<DictHash> {
        self.repo
            .config
            .compression
            .dictionary
            .filter(|_| len <= DICTIONARY_MAX_MESSAGE)
            .filter(|d| self.repo.dicts.contains_key(d))
    }

    /// Stores a frame compressed elsewhere by a [`FrameCompressor`] following `plan`: the
    /// message `hash` of `raw_len` bytes. A message stored meanwhile (by another thread) makes
    /// it a duplicate and the frame is dropped.
    pub fn store_frame(
        &mut self,
        hash: MessageHash,
        raw_len: u64,
        frame: &Frame,
        plan: FramePlan,
    ) -> Result<Stored, RepoError> {
        if self.contains(&hash) {
            return Ok(Stored::Duplicate(hash, raw_len));
        }
        if plan.dict.is_some_and(|d| !self.repo.dicts.contains_key(&d)) {
            return Err(RepoError::Invalid(format!(
                "a frame names dictionary {:?}, which this repository does not have",
                plan.dict
            )));
        }
        let tmp = self.repo.layout.backend().scratch();
        let entry = self
            .open_pack()?
            .append_frame(&hash, &frame.bytes, plan.dict, frame.checked)
            .map_err(RepoError::io("cannot write a pack in", &tmp))?;
        self.pack_written()?;
        Ok(Stored::New(hash, entry, raw_len))
    }

    /// Where a stored message is. Messages in the pack still being written are not there yet:
    /// their location is known after the next `flush`, `checkpoint` or `commit`. A message
    /// known damaged has none until it is stored again.
    pub fn location(&self, hash: &MessageHash) -> Option<Location> {
        let name = self.repo.stored_name(hash);
        if self.damaged.contains(&name) {
            return None;
        }
        self.repo.index.get(&name)
    }

    fn finish_pack(&mut self) -> Result<(), RepoError> {
        let Some(pack) = self.pack.take() else {
            return Ok(());
        };
        if pack.is_empty() {
            return Ok(());
        }
        let verify = self.verify_before_commit.then_some(&self.repo.dicts);
        let backend = self.repo.layout.backend();
        let (id, entries) = pack.finish(backend, verify).map_err(RepoError::io(
            "cannot write a pack to",
            backend.location(FileKind::Pack, "*"),
        ))?;
        let (damaged, moving) = (&self.damaged, &self.moving);
        self.repo
            .index
            .add_pack_preferring(id, &entries, |h| damaged.contains(h) || moving.contains(h));
        if !self.damaged.is_empty() || !self.moving.is_empty() {
            for e in &entries {
                if self.damaged.remove(&e.hash) {
                    self.healed.push(e.hash);
                }
                self.moving.remove(&e.hash);
            }
        }
        self.unindexed.push(IndexedPack { id, entries });
        Ok(())
    }

    /// Rewrites every index file that lists an entry `drop` names, without those entries
    /// (a pack left with none is dropped from the file): each new file is written before the
    /// one it replaces is removed, so a crash leaves every message findable. The in-memory
    /// index forgets packs wholly dropped. For [`super::repair`], which retires damaged
    /// packs and takes healed messages out of the damaged copies' listings.
    pub(crate) fn drop_index_entries(
        &mut self,
        drop: &dyn Fn(&PackId, &PackEntry) -> bool,
    ) -> Result<(), RepoError> {
        self.flush()?;
        let mut gone: Vec<PackId> = Vec::new();
        let mut files = Vec::new();
        for name in self.repo.index.files().to_vec() {
            let mut packs: Vec<IndexedPack> = Vec::new();
            Index::read_file(&self.repo.layout, &name, &mut |p| packs.push(p))?;
            let mut changed = false;
            for p in &mut packs {
                let before = p.entries.len();
                p.entries.retain(|e| !drop(&p.id, e));
                changed |= p.entries.len() != before;
                if p.entries.is_empty() && before > 0 {
                    gone.push(p.id);
                }
            }
            if !changed {
                files.push(name);
                continue;
            }
            packs.retain(|p| !p.entries.is_empty());
            if !packs.is_empty() {
                files.push(self.write_index_file(&packs)?);
            }
            self.repo.layout.remove(FileKind::Index, &name)?;
        }
        self.repo.index.forget_packs(&gone);
        self.repo.index.set_files(files);
        Ok(())
    }

    fn write_index(&mut self) -> Result<(), RepoError> {
        if self.unindexed.is_empty() {
            return Ok(());
        }
        let packs = std::mem::take(&mut self.unindexed);
        let name = self.write_index_file(&packs)?;
        self.repo.index.record_file(name);
        Ok(())
    }

    /// Writes one index file (compressed JSON, named by the hash of its content) covering
    /// `packs`; returns its name.
    fn write_index_file(&self, packs: &[IndexedPack]) -> Result<String, RepoError> {
        // `IndexFile`, borrowed: after a prune, every message's entry is in it.
        #[derive(serde::Serialize)]
        struct IndexFileRef<'a> {
            version: u32,
            packs: &'a [IndexedPack],
        }
        let file = IndexFileRef {
            version: index::INDEX_VERSION,
            packs,
        };
        // Serialized into the compressor: the JSON of an index of 100,000 messages is 20 MB.
        let cannot = |e: &dyn std::fmt::Display| {
            RepoError::Invalid(format!("cannot compress the index: {e}"))
        };
        let mut out = compressed::Writer::new(64 << 10).map_err(|e| cannot(&e))?;
        serde_json::to_writer(&mut out, &file).map_err(|e| cannot(&e))?;
        let bytes = out.finish().map_err(|e| cannot(&e))?;
        let name = id::to_hex(&self.repo.layout.codec().content_name(&bytes));
        self.repo.layout.write(FileKind::Index, &name, &bytes)?;
        Ok(name)
    }

    /// Appends a frame copied byte for byte from another pack (prune), unless the pack being
    /// written has it already. The repository's index is not consulted: the old copy is about
    /// to go.
    pub fn copy_frame(
        &mut self,
        hash: MessageHash,
        frame: &[u8],
        dict: Option<DictHash>,
    ) -> Result<(), RepoError> {
        let tmp = self.repo.layout.backend().scratch();
        let pack = self.open_pack()?;
        if !pack.contains(&hash) {
            // Copied as it is: checked when the pack is read back at the end.
            pack.append(hash, frame, dict, false)
                .map_err(RepoError::io("cannot write a pack in", &tmp))?;
        }
        self.pack_written()
    }

    /// Like [`RepoWriter::copy_frame`], for a frame moving out of a pack that is to go: once
    /// its new pack is written, the index finds the message there.
    pub(crate) fn move_frame(
        &mut self,
        hash: MessageHash,
        frame: &[u8],
        dict: Option<DictHash>,
    ) -> Result<(), RepoError> {
        self.moving.insert(hash);
        self.copy_frame(hash, frame, dict)
    }

    /// Like [`RepoWriter::flush`], returning the packs it made findable.
    pub fn flush_packs(&mut self) -> Result<Vec<IndexedPack>, RepoError> {
        self.finish_pack()?;
        let packs = self.unindexed.clone();
        self.write_index()?;
        Ok(packs)
    }

    /// Writes one index file covering exactly `packs`, then removes every other index file:
    /// the index afterwards describes these packs and no others (prune).
    pub fn replace_index(&mut self, mut packs: Vec<IndexedPack>) -> Result<(), RepoError> {
        self.flush()?;
        packs.sort_by_key(|p| p.id);
        packs.dedup_by_key(|p| p.id);
        let old: Vec<String> = self.repo.index.files().to_vec();
        let name = self.write_index_file(&packs)?;
        for file in old.iter().filter(|f| **f != name) {
            self.repo.layout.remove(FileKind::Index, file)?;
        }
        // The old index goes first and the new one is sized once: at 100,000 messages the two
        // together, one of them doubling, were prune's peak.
        self.repo.index = Index::default();
        self.repo
            .index
            .reserve(packs.iter().map(|p| p.entries.len()).sum());
        for p in &packs {
            self.repo.index.add_pack(p.id, &p.entries);
        }
        self.repo.index.record_file(name);
        Ok(())
    }

    /// Deletes a pack (prune, after the index no longer names it).
    pub fn remove_pack(&mut self, id: &PackId) -> Result<(), RepoError> {
        self.ensure_locked()?;
        self.repo.layout.remove(FileKind::Pack, &id.to_string())
    }

    /// Deletes a records file no manifest names (prune).
    pub fn remove_records(&mut self, id: &RecordsId) -> Result<(), RepoError> {
        self.repo.layout.remove(FileKind::Records, &id.to_string())
    }

    /// Deletes a committed snapshot's manifest (forget).
    pub fn remove_snapshot(&mut self, id: &SnapshotId) -> Result<(), RepoError> {
        self.repo.layout.remove(FileKind::Snapshot, id.as_str())
    }

    /// Makes everything stored so far durable and findable: pack, then index.
    pub fn flush(&mut self) -> Result<(), RepoError> {
        self.finish_pack()?;
        self.write_index()
    }

    /// Records an unfinished snapshot so an interrupted run can resume: packs, index, records
    /// files, then the checkpoint manifest (with `complete = false`), listing only the records
    /// whose messages are stored so far.
    pub fn checkpoint(&mut self, manifest: &Manifest) -> Result<(), RepoError> {
        let mut list = records::RecordsWriter::new(&self.repo.layout);
        let stored = manifest.messages.iter().filter(|r| r.sha256.is_some());
        let items = stored.map(|r| Ok(records::ListItem::Record(r.clone())));
        self.checkpoint_run(manifest, &mut list, items)
    }

    /// A checkpoint of a run that writes its list as it goes: `records` (each stored, or never
    /// retrieved) are appended to `list` after packs and index are flushed, and the checkpoint
    /// names every file of `list` so far. `head` gives the manifest's other fields.
    pub fn checkpoint_run(
        &mut self,
        head: &Manifest,
        list: &mut records::RecordsWriter,
        items: impl IntoIterator<Item = Result<records::ListItem, RepoError>>,
    ) -> Result<(), RepoError> {
        self.flush()?;
        self.append_records(&head.id, list, items)?;
        let mut head = head.clone_without_messages();
        head.complete = false;
        head.listing = None;
        let (names, made) = list.publish()?;
        self.lists.made_for_checkpoints.extend(made);
        head.records = Some(names);
        self.write_head(FileKind::Checkpoint, &head)?;
        let names = head.records.map(|list| list.0).unwrap_or_default();
        self.lists.checkpoints.insert(head.id, names);
        Ok(())
    }

    /// Commits a snapshot: packs, index, records files, then its manifest; its checkpoint goes
    /// last. Every record is written, and one naming a message that is not stored is refused:
    /// a committed manifest must never point at nothing. A manifest with no messages but
    /// `records` set shares those (existing) files.
    pub fn commit(&mut self, manifest: &Manifest) -> Result<(), RepoError> {
        if !(manifest.messages.is_empty() && manifest.records.is_some()) {
            let list = records::RecordsWriter::new(&self.repo.layout);
            let items = manifest.messages.iter();
            let items = items.map(|r| Ok(records::ListItem::Record(r.clone())));
            return self.commit_run(manifest, list, items);
        }
        let present: HashSet<String> = self
            .repo
            .layout
            .listing(FileKind::Records)?
            .into_iter()
            .map(|l| l.name)
            .collect();
        if let Some(id) = manifest
            .records
            .iter()
            .flat_map(|list| &list.0)
            .find(|id| !present.contains(&id.to_string()))
        {
            return Err(RepoError::Invalid(format!(
                "manifest {} shares records file {}, which does not exist",
                manifest.id,
                self.repo.layout.records(id).display()
            )));
        }
        self.prepare_commit()?;
        let mut head = manifest.clone_without_messages();
        head.complete = true;
        self.publish_snapshot(&head)
    }

    /// Commits a run that wrote its list as it went: like [`RepoWriter::commit`], with the
    /// records not yet in `list` given as `records`.
    pub fn commit_run(
        &mut self,
        head: &Manifest,
        mut list: records::RecordsWriter,
        items: impl IntoIterator<Item = Result<records::ListItem, RepoError>>,
    ) -> Result<(), RepoError> {
        self.prepare_commit()?;
        self.append_records(&head.id, &mut list, items)?;
        let mut head = head.clone_without_messages();
        head.complete = true;
        if list.lacks_content() {
            // Not everything listed is archived: a later run seeing this listing must look.
            head.listing = None;
        }
        head.records = Some(list.finish()?);
        self.publish_snapshot(&head)
    }

    /// What a commit does before the manifest's records: a dictionary if one is due, then
    /// packs and index.
    fn prepare_commit(&mut self) -> Result<(), RepoError> {
        self.train_with_stored_samples()?;
        if std::mem::take(&mut self.adopted_dictionary) {
            // Made from mail as recent as anything the repository holds: the next look at
            // it waits until the repository has grown from here, not from where the sample
            // was taken (a first run of 20,000 messages samples its first 300).
            self.dictionary_checked(self.message_count())?;
        }
        self.flush()
    }

    /// Writes a committed manifest (its records files are written) and removes its checkpoint.
    fn publish_snapshot(&mut self, head: &Manifest) -> Result<(), RepoError> {
        self.write_head(FileKind::Snapshot, head)?;
        let names = head.records.iter().flat_map(|list| &list.0);
        self.lists.committed.extend(names.copied());
        self.discard_checkpoint(&head.id)
    }

    /// Appends `records` to the list of snapshot `snapshot`, each with its message's pack,
    /// offset and length from the index (only known once its pack is finished).
    /// Appends `items` to `list` now, for a run that writes its list as it goes without
    /// checkpoints (an import): each record's message must be in a finished pack.
    pub fn list_records(
        &self,
        snapshot: &SnapshotId,
        list: &mut records::RecordsWriter,
        items: impl IntoIterator<Item = Result<records::ListItem, RepoError>>,
    ) -> Result<(), RepoError> {
        self.append_records(snapshot, list, items)
    }

    fn append_records(
        &self,
        snapshot: &SnapshotId,
        list: &mut records::RecordsWriter,
        items: impl IntoIterator<Item = Result<records::ListItem, RepoError>>,
    ) -> Result<(), RepoError> {
        let mut line = Vec::with_capacity(1024);
        for item in items {
            let record = match item? {
                records::ListItem::Record(record) => record,
                records::ListItem::File { id, records } => {
                    list.push_file(id, records)?;
                    continue;
                }
            };
            let location = self.location_of(snapshot, &record)?;
            if location.is_none() {
                list.note_lacking_content();
            }
            line.clear();
            record_json(record, location, list.len(), &mut line)?;
            list.push(&line)?;
        }
        Ok(())
    }

    /// Writes a manifest without inline records (the list is in records files), as a
    /// snapshot or a checkpoint.
    /// Refuses to go on when the lock may no longer be ours (an object-store lock that could
    /// not be refreshed, or that another writer removed as stale): a manifest written, or a
    /// pack deleted, after another writer took over could point at data it removes.
    fn ensure_locked(&self) -> Result<(), RepoError> {
        self.lock
            .still_held()
            .map_err(|detail| RepoError::LockLost { detail })
    }

    fn write_head(&self, kind: FileKind, head: &Manifest) -> Result<(), RepoError> {
        self.ensure_locked()?;
        let invalid =
            |e: &dyn std::fmt::Display| RepoError::Invalid(format!("cannot write a manifest: {e}"));
        let json = serde_json::to_vec(head).map_err(|e| invalid(&e))?;
        let bytes = compressed::compress(&json).map_err(|e| invalid(&e))?;
        self.repo.layout.write(kind, head.id.as_str(), &bytes)
    }

    /// Where `record`'s message is stored, from the index: `None` for a record with no
    /// content (never retrieved); an error naming `snapshot` when its message is not stored.
    fn location_of(
        &self,
        snapshot: &SnapshotId,
        record: &MessageRecord,
    ) -> Result<Option<Location>, RepoError> {
        let Some(hash) = &record.sha256 else {
            return Ok(None);
        };
        match self.repo.index.get(&self.repo.stored_name(hash)) {
            Some(l) => Ok(Some(l)),
            None => Err(RepoError::Invalid(format!(
                "manifest {snapshot} refers to message {hash}, which is not stored"
            ))),
        }
    }

    /// Adds a key file that opens the repository with `password` (its key derived with
    /// Argon2id at `kdf`'s cost) and returns its id. Under the lock, like every change: two
    /// `key remove` at once must not remove the last two keys.
    pub fn add_key(
        &mut self,
        password: &[u8],
        kdf: super::crypto::KdfParams,
    ) -> Result<String, RepoError> {
        let super::codec::Codec::Sealed(master) = self.repo.layout.codec() else {
            return Err(RepoError::Invalid(
                "the repository is not encrypted: it has no keys (create an encrypted one with \
                 `popbackup init --encrypt`)"
                    .into(),
            ));
        };
        let file = super::keys::wrap(master, password, kdf)?;
        self.ensure_locked()?;
        super::keys::add(&self.repo.layout, &file)
    }

    /// Removes the key file `id` (or the one a unique prefix names), never the last one;
    /// returns its full id.
    pub fn remove_key(&mut self, id: &str) -> Result<String, RepoError> {
        if !self.repo.is_encrypted() {
            return Err(RepoError::Invalid(
                "the repository is not encrypted: it has no keys".into(),
            ));
        }
        self.ensure_locked()?;
        super::keys::remove(&self.repo.layout, id)
    }

    /// Replaces the verification record (crash-safely).
    pub fn record_verified(&mut self, state: &VerifiedState) -> Result<(), RepoError> {
        write_json(&self.repo.layout, FileKind::Verified, state)
    }

    /// Removes a checkpoint whose run will not be resumed.
    pub fn discard_checkpoint(&mut self, id: &SnapshotId) -> Result<(), RepoError> {
        self.repo.layout.remove(FileKind::Checkpoint, id.as_str())?;
        self.lists.checkpoints.remove(id);
        Ok(())
    }

    /// Stores a zstd dictionary as a content-addressed object and makes it the one new frames
    /// use. Frames already written keep the dictionary they were made with.
    pub fn set_dictionary(&mut self, bytes: Vec<u8>) -> Result<DictHash, RepoError> {
        self.flush()?;
        self.samples = None;
        let messages = self.message_count();
        self.adopt_dictionary(bytes, messages)
    }

    /// Gives the reader back, releasing the lock (after flushing).
    pub fn finish(self) -> Result<Repository, RepoError> {
        let layout = self.repo.layout.clone();
        self.close()?;
        Repository::open_in(layout)
    }

    /// Makes everything stored durable and findable, and releases the lock.
    ///
    /// Also removes the records files made for checkpoints that no list of this session
    /// names any more (the open run a checkpoint wrote as a file of its own, which the commit
    /// cut differently). Only here, once every run of the session is over: until then,
    /// another account's run may have found such a file and be about to name it.
    pub fn close(mut self) -> Result<(), RepoError> {
        self.flush()?;
        let lists = std::mem::take(&mut self.lists);
        let named = |id: &RecordsId| {
            lists.committed.contains(id) || lists.checkpoints.values().any(|l| l.contains(id))
        };
        for id in lists.made_for_checkpoints.iter().filter(|id| !named(id)) {
            self.remove_records(id)?;
        }
        Ok(())
    }
}

/// Appends `record` to `line` as one line of JSON, with its message's `location`. At
/// `position` in a list its number is left out when it is `position + 1` (the reader puts it
/// back), so that the record's line does not change when messages before it leave the server.
fn record_json(
    mut record: MessageRecord,
    location: Option<Location>,
    position: usize,
    line: &mut Vec<u8>,
) -> Result<(), RepoError> {
    if let Some(l) = location {
        record.pack = Some(l.pack);
        record.offset = Some(l.entry.offset);
        record.length = Some(l.entry.length);
    }
    if position as u64 + 1 == u64::from(record.msg) {
        record.msg = 0;
    }
    serde_json::to_writer(line, &record)
        .map_err(|e| RepoError::Invalid(format!("cannot write records: {e}")))
}

/// Why storing a message failed: the source (e.g. the POP3 connection) or the repository.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("reading the message failed: {0}")]
    Source(io::Error),
    #[error(transparent)]
    Repo(RepoError),
}
