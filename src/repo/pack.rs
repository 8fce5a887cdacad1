//! Packs: immutable tar files of zstd frames, one frame per message.
//!
//! A pack is a ustar archive with two entries: `messages.zst`, the frames of its messages one
//! after the other (so `zstd -d` of it prints every message), and `messages.json`, the table of
//! where each message's frame is (`PackTable`). A message costs its frame and nothing more —
//! a tar entry per message would cost a 512-byte header and up to 511 bytes of padding, a third
//! of the archive for small mail. A finished pack is named by the SHA-256 of its bytes and
//! never changed again.
//!
//! Frames are appended as messages arrive; the `messages.zst` header slot at the start is
//! filled in once the pack is finished. A message that turns out to be stored already is cut
//! back out of the file.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::backend::{Backend, FileKind, RangeReader};
use super::codec::{Codec, FRAME_CONTEXT, SealingWriter, TABLE_CONTEXT};
use super::id::{DictHash, MessageHash, PackId};
use crate::durable::TempFile;

/// tar's block size.
pub const BLOCK: u64 = 512;

/// A pack is closed once it reaches this size; larger messages get a pack of their own.
/// Big enough that a 10 GB mailbox is a few hundred files, small enough to repack cheaply.
pub const TARGET_PACK_SIZE: u64 = 32 * 1024 * 1024;

/// The tar entry holding the frames.
pub const FRAMES_ENTRY: &str = "messages.zst";
/// The tar entry holding the table of frames.
pub const TABLE_ENTRY: &str = "messages.json.zst";
/// Version of the `messages.json` schema.
pub const TABLE_VERSION: u32 = 1;

/// Where one message's frame lives in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    pub hash: MessageHash,
    /// Byte offset of the zstd frame in the pack file.
    pub offset: u64,
    /// Length of the zstd frame in bytes.
    pub length: u64,
    /// The dictionary the frame needs, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dict: Option<DictHash>,
}

/// `messages.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackTable {
    pub version: u32,
    pub messages: Vec<PackEntry>,
}

/// [`PackTable`] as it is written, borrowing the entries.
#[derive(Serialize)]
struct PackTableRef<'a> {
    version: u32,
    messages: &'a [PackEntry],
}

/// A zstd dictionary loaded for compression or decompression.
#[derive(Debug, Clone)]
pub struct Dictionary {
    pub hash: DictHash,
    pub bytes: Vec<u8>,
}

impl Dictionary {
    /// The dictionary id that zstd writes into frame headers (bytes 4..8 of a zstd dictionary).
    pub fn zstd_id(&self) -> Option<u32> {
        zstd_dict_id(&self.bytes)
    }
}

/// The id in a zstd dictionary's header, if it is a formatted dictionary.
pub fn zstd_dict_id(bytes: &[u8]) -> Option<u32> {
    if bytes.len() >= 8 && bytes[..4] == [0x37, 0xA4, 0x30, 0xEC] {
        Some(u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]))
    } else {
        None
    }
}

/// Writes one pack to a temporary file.
pub struct PackWriter {
    temp: TempFile,
    /// End of the last complete frame: where the next one goes.
    end: u64,
    entries: Vec<PackEntry>,
    /// The hashes of `entries`, for duplicate checks while writing.
    hashes: HashSet<MessageHash>,
    level: i32,
    /// CRC-32 of the frames appended so far, in file order, while every one of them was
    /// checked against its message when it was made; `None` once one was not (streamed or
    /// copied). Verifying the pack then needs only a comparison with the file.
    checked_frames: Option<FramesChecksum>,
    /// Frames appended but not written to the file yet: the bytes just before `end`.
    /// Small messages' frames are a kilobyte or two, and a system call each, made under the
    /// repository writer's lock, was time every compressing thread waited for.
    unwritten: Vec<u8>,
    /// How frames and the table are stored (sealed in an encrypted repository), and what
    /// messages are named.
    codec: Codec,
}

/// Appended frames are written to the file once this many bytes of them are waiting.
const APPEND_BUFFER: usize = 256 * 1024;

impl PackWriter {
    pub fn new(tmp_dir: &Path, level: i32, codec: Codec) -> io::Result<PackWriter> {
        Ok(PackWriter {
            temp: TempFile::new(tmp_dir, "pack")?,
            // The first block is the `messages.zst` header, written at `finish`.
            end: BLOCK,
            entries: Vec::new(),
            hashes: HashSet::new(),
            level,
            checked_frames: Some(FramesChecksum::new()),
            unwritten: Vec::new(),
            codec,
        })
    }

    /// The temporary file, with every frame appended so far written to it.
    fn file(&mut self) -> io::Result<&mut File> {
        let file = self.temp.file();
        if !self.unwritten.is_empty() {
            write_at(
                file,
                self.end - self.unwritten.len() as u64,
                &self.unwritten,
            )?;
            self.unwritten.clear();
        }
        Ok(file)
    }

    /// The zstd level for the messages that follow.
    pub fn set_level(&mut self, level: i32) {
        self.level = level;
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.end
    }

    pub fn entries(&self) -> &[PackEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the message stored under `name` is in this pack.
    pub fn contains(&self, name: &MessageHash) -> bool {
        self.hashes.contains(name)
    }

    /// The name the message with SHA-256 `hash` is stored under.
    pub fn name_of(&self, hash: &MessageHash) -> MessageHash {
        self.codec.name(hash)
    }

    /// Starts a message streamed in (compressed without a dictionary: streaming is for large
    /// messages); write its bytes into the returned writer, then call `finish`. With `check`,
    /// a thread decompresses the frame as it is written and `finish` compares the result with
    /// the message, so that the pack need not be read back for it.
    pub fn begin(&mut self, check: bool) -> io::Result<MessageWriter<'_>> {
        let before = self.checked_frames.clone();
        // Worth checking only while every frame so far was checked.
        let (frames, check) = match self.checked_frames.take() {
            Some(frames) if check => (Some(frames), Some(StreamCheck::start())),
            _ => (None, None),
        };
        let content_checksum = check.as_ref().map(|_| crc32fast::Hasher::new());
        // The frames appended before go first.
        self.file()?;
        let file = self.temp.file();
        file.seek(SeekFrom::Start(self.end))?;
        let counting = CountingFile {
            file,
            written: 0,
            frames,
        };
        let frame = FrameSink {
            check,
            out: self.codec.writer(FRAME_CONTEXT, counting)?,
        };
        let sink = BufWriter::with_capacity(128 * 1024, frame);
        let mut encoder = zstd::stream::write::Encoder::new(sink, self.level)?;
        encoder.include_checksum(false)?;
        Ok(MessageWriter {
            encoder,
            hasher: Sha256::new(),
            content_checksum,
            raw_len: 0,
            start: self.end,
            end: &mut self.end,
            entries: &mut self.entries,
            hashes: &mut self.hashes,
            checked_frames: &mut self.checked_frames,
            before,
            codec: &self.codec,
        })
    }

    /// Appends a frame compressed elsewhere for the message with SHA-256 `hash`, sealed when
    /// the repository is encrypted; `checked` says that it was decompressed and compared with
    /// the message already (see [`PackWriter::finish`]).
    pub fn append_frame(
        &mut self,
        hash: &MessageHash,
        frame: &[u8],
        dict: Option<DictHash>,
        checked: bool,
    ) -> io::Result<PackEntry> {
        let name = self.codec.name(hash);
        let stored = self.codec.seal(FRAME_CONTEXT, frame)?;
        self.append(name, &stored, dict, checked)
    }

    /// Appends a frame as it is stored (sealed, in an encrypted repository) for the message
    /// stored under `name`: a frame copied from another pack of the repository, or made by
    /// [`PackWriter::append_frame`]. `checked` as there.
    pub fn append(
        &mut self,
        name: MessageHash,
        frame: &[u8],
        dict: Option<DictHash>,
        checked: bool,
    ) -> io::Result<PackEntry> {
        if frame.len() >= APPEND_BUFFER {
            // A large frame goes to the file as it is, after what waits.
            let end = self.end;
            write_at(self.file()?, end, frame)?;
        } else {
            self.unwritten.extend_from_slice(frame);
            if self.unwritten.len() >= APPEND_BUFFER {
                let start = self.end + frame.len() as u64 - self.unwritten.len() as u64;
                if let Err(e) = write_at(self.temp.file(), start, &self.unwritten) {
                    // Not appended: the buffer keeps only the frames that were.
                    self.unwritten.truncate(self.unwritten.len() - frame.len());
                    return Err(e);
                }
                self.unwritten.clear();
            }
        }
        match &mut self.checked_frames {
            Some(hasher) if checked => hasher.update(frame),
            _ => self.checked_frames = None,
        }
        let entry = PackEntry {
            hash: name,
            offset: self.end,
            length: frame.len() as u64,
            dict,
        };
        self.end += entry.length;
        self.entries.push(entry);
        self.hashes.insert(name);
        Ok(entry)
    }

    /// The bytes of a frame already written to this pack, as they are stored.
    pub fn read_frame(&mut self, entry: &PackEntry) -> io::Result<Vec<u8>> {
        let file = self.file()?;
        file.seek(SeekFrom::Start(entry.offset))?;
        let mut frame = vec![0u8; entry.length as usize];
        file.read_exact(&mut frame)?;
        Ok(frame)
    }

    /// Writes the `messages.zst` header, the `messages.json` table and the end-of-archive
    /// blocks, fsyncs, computes the pack's id and moves it to `packs_dir`. Returns the id and
    /// the entries.
    ///
    /// With `verify`, the pack is checked before it is published — restic's "verify before
    /// commit": a pack that does not read back (bad RAM, a bug, a failing disk) is never
    /// published and the error stops the commit. When every frame was checked against its
    /// message as it was made (`append` with `checked`), the file must hold exactly those
    /// frames (compared by CRC-32 in the pass that computes the pack's id); otherwise every
    /// frame is read back from the file, decompressed (with the dictionaries `verify` holds)
    /// and re-hashed.
    pub fn finish(
        mut self,
        backend: &dyn Backend,
        verify: Option<&HashMap<DictHash, Dictionary>>,
    ) -> io::Result<(PackId, Vec<PackEntry>)> {
        let frames_end = self.end;
        self.file()?;
        let file = self.temp.file();
        file.set_len(frames_end)?;
        // The table streams from the entries through the compressor into the file, after the
        // frames' padding and its tar header, which is written once its length is known:
        // at 100,000 messages a copy of the entries, the JSON and the compressed table held
        // at once were the largest allocations of a snapshot's last checkpoint.
        let table_header = frames_end.div_ceil(BLOCK) * BLOCK;
        let table_start = table_header + BLOCK;
        write_at(
            file,
            frames_end,
            &vec![0u8; (table_start - frames_end) as usize],
        )?;
        let sealed = self
            .codec
            .writer(TABLE_CONTEXT, BufWriter::new(&mut *file))?;
        let mut table = super::compressed::Writer::into(sealed)?;
        serde_json::to_writer(
            &mut table,
            &PackTableRef {
                version: TABLE_VERSION,
                messages: &self.entries,
            },
        )?;
        table.finish()?.finish()?.flush()?;
        let table_end = file.stream_position()?;
        let mut tail = Vec::with_capacity(3 * BLOCK as usize);
        pad(&mut tail, table_end);
        tail.extend_from_slice(&[0u8; 2 * BLOCK as usize]);
        file.write_all(&tail)?;
        write_at(
            file,
            table_header,
            tar_header(TABLE_ENTRY, table_end - table_start)?.as_bytes(),
        )?;
        write_at(
            file,
            0,
            tar_header(FRAMES_ENTRY, frames_end - BLOCK)?.as_bytes(),
        )?;
        // The id covers every byte: hash the finished file in one sequential pass (it is in
        // the page cache), and checksum the frames on their own when they were checked.
        // Meanwhile another thread makes the file durable, so that the fsync (50 ms for the
        // 200 MB message's pack) and the hash (70 ms) overlap; `persist` then finds nothing
        // left to write.
        file.seek(SeekFrom::Start(0))?;
        let checked = self.checked_frames.take().filter(|_| verify.is_some());
        let syncing = file.try_clone()?;
        let (hashed, synced) = std::thread::scope(|scope| {
            let sync = scope.spawn(move || syncing.sync_all());
            let hashed = hash_file(&mut *file, checked.is_some().then_some(BLOCK..frames_end));
            (hashed, sync.join())
        });
        synced.unwrap_or_else(|_| Err(io::Error::other("the thread syncing a pack stopped")))?;
        let (id, frames_read) = hashed?;
        let id = PackId(id);
        if let Some(expected) = checked {
            if frames_read != Some(expected.finalize()) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "verification before commit failed: the pack just written does not hold \
                     the frames written to it; nothing was committed (check the disk and \
                     memory of this machine)",
                ));
            }
        } else if let Some(dictionaries) = verify {
            let mut frames = FrameDecoder::default();
            let mut frame = Vec::new();
            for entry in &self.entries {
                let dict = match &entry.dict {
                    Some(h) => Some(dictionaries.get(h).ok_or_else(|| {
                        io::Error::other(format!("dictionary {h} vanished while writing"))
                    })?),
                    None => None,
                };
                file.seek(SeekFrom::Start(entry.offset))?;
                let read_back = if entry.length <= WHOLE_FRAME_LIMIT {
                    frame.resize(entry.length as usize, 0);
                    file.read_exact(&mut frame)?;
                    self.codec
                        .open(FRAME_CONTEXT, &frame)
                        .and_then(|opened| frames.hash(&opened, dict).map(|(h, _)| h))
                } else {
                    // A large frame streams, so memory stays bounded whatever the message size.
                    let stored = (&mut *file).take(entry.length);
                    let opened = self.codec.reader(FRAME_CONTEXT, stored, entry.length);
                    decoder(io::BufReader::new(opened), dict)
                        .and_then(hash_reader)
                        .map(MessageHash)
                };
                if read_back.ok().map(|h| self.codec.name(&h)) != Some(entry.hash) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "verification before commit failed: message {} does not read \
                             back from the pack just written; nothing was committed (check \
                             the disk and memory of this machine)",
                            entry.hash
                        ),
                    ));
                }
            }
        }
        backend.publish(FileKind::Pack, &id.to_string(), self.temp)?;
        Ok((id, self.entries))
    }
}

fn write_at(file: &mut File, offset: u64, bytes: &[u8]) -> io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(bytes)
}

/// Zero bytes that bring a tar stream whose last part ended at `base + out.len()` to a block
/// boundary.
fn pad(out: &mut Vec<u8>, base: u64) {
    let at = base + out.len() as u64;
    let padded = at.div_ceil(BLOCK) * BLOCK;
    out.resize(out.len() + (padded - at) as usize, 0);
}

/// A decompressor for one frame, with its dictionary when it needs one.
pub fn decoder<'a, R: BufRead + 'a>(
    frame: R,
    dict: Option<&'a Dictionary>,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match dict {
        Some(d) => {
            Box::new(zstd::stream::read::Decoder::with_dictionary(frame, &d.bytes)?.single_frame())
        }
        None => Box::new(zstd::stream::read::Decoder::with_buffer(frame)?.single_frame()),
    })
}

/// Largest frame content decompressed in one piece into memory; larger frames stream.
const WHOLE_FRAME_LIMIT: u64 = 8 << 20;

/// Decompresses frames held in memory and hashes their content, reusing one zstd context and
/// a digested copy of each dictionary (loading a dictionary per frame costs more than
/// decompressing a small message).
pub struct FrameDecoder {
    dctx: zstd::zstd_safe::DCtx<'static>,
    ddicts: HashMap<DictHash, zstd::zstd_safe::DDict<'static>>,
    buffer: Vec<u8>,
}

impl Default for FrameDecoder {
    fn default() -> FrameDecoder {
        FrameDecoder {
            dctx: zstd::zstd_safe::DCtx::create(),
            ddicts: HashMap::new(),
            buffer: Vec::new(),
        }
    }
}

impl FrameDecoder {
    /// The SHA-256 and length of the content of `frame` (one whole zstd frame).
    pub fn hash(
        &mut self,
        frame: &[u8],
        dict: Option<&Dictionary>,
    ) -> io::Result<(MessageHash, u64)> {
        if let Some(content) = self.decompress(frame, dict, WHOLE_FRAME_LIMIT)? {
            return Ok((MessageHash::of(content), content.len() as u64));
        }
        let mut decoder = decoder(frame, dict)?;
        let mut hasher = Sha256::new();
        let n = io::copy(&mut decoder, &mut DigestSink(|b: &[u8]| hasher.update(b)))?;
        Ok((MessageHash(hasher.finalize().into()), n))
    }

    /// The content of `frame` (one whole zstd frame), decompressed into memory; `None` when
    /// its header does not say its content size or says more than `max` bytes (stream it).
    pub fn decompress(
        &mut self,
        frame: &[u8],
        dict: Option<&Dictionary>,
        max: u64,
    ) -> io::Result<Option<&[u8]>> {
        let size = zstd::zstd_safe::get_frame_content_size(frame)
            .ok()
            .flatten();
        let Some(size) = size.filter(|s| *s <= max) else {
            return Ok(None);
        };
        self.buffer.clear();
        self.buffer.reserve(size as usize);
        let result = match dict {
            Some(d) => {
                let ddict = self
                    .ddicts
                    .entry(d.hash)
                    .or_insert_with(|| zstd::zstd_safe::DDict::create(&d.bytes));
                self.dctx
                    .decompress_using_ddict(&mut self.buffer, frame, ddict)
            }
            None => self.dctx.decompress(&mut self.buffer, frame),
        };
        let n = result.map_err(|code| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                zstd::zstd_safe::get_error_name(code).to_string(),
            )
        })?;
        if n as u64 != size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the frame's content is not the size its header says",
            ));
        }
        Ok(Some(&self.buffer[..n]))
    }
}

/// A writer that only hands what it is given to a hash or checksum, for `io::copy`.
struct DigestSink<F: FnMut(&[u8])>(F);

impl<F: FnMut(&[u8])> Write for DigestSink<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (self.0)(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A message being streamed into a pack.
pub struct MessageWriter<'a> {
    encoder: zstd::stream::write::Encoder<'static, BufWriter<FrameSink<'a>>>,
    hasher: Sha256,
    /// What the frame check compares its output with, when there is a check (see
    /// [`StreamCheck`]).
    content_checksum: Option<crc32fast::Hasher>,
    raw_len: u64,
    start: u64,
    end: &'a mut u64,
    entries: &'a mut Vec<PackEntry>,
    hashes: &'a mut HashSet<MessageHash>,
    /// The pack's hash of checked frames: given back at `finish` (see `PackWriter::begin`).
    checked_frames: &'a mut Option<FramesChecksum>,
    /// Its state before this frame, for a frame that is cut back out.
    before: Option<FramesChecksum>,
    codec: &'a Codec,
}

impl Write for MessageWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.encoder.write(buf)?;
        self.hasher.update(&buf[..n]);
        if let Some(checksum) = &mut self.content_checksum {
            checksum.update(&buf[..n]);
        }
        self.raw_len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.encoder.flush()
    }
}

/// What storing a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Written as a new entry: the message's SHA-256, its entry (which names it by its
    /// stored name) and its size.
    New(MessageHash, PackEntry, u64),
    /// Already present; nothing was kept. Its SHA-256 and size.
    Duplicate(MessageHash, u64),
}

impl Stored {
    /// The message's SHA-256.
    pub fn hash(&self) -> MessageHash {
        match self {
            Stored::New(h, _, _) | Stored::Duplicate(h, _) => *h,
        }
    }

    /// The message's size in bytes before compression.
    pub fn raw_len(&self) -> u64 {
        match self {
            Stored::New(_, _, n) | Stored::Duplicate(_, n) => *n,
        }
    }
}

impl MessageWriter<'_> {
    /// Ends the frame. If the message is already in this pack, or `is_stored` says the name it
    /// is stored under is in the repository, the frame is cut back out.
    pub fn finish(self, is_stored: impl FnOnce(&MessageHash) -> bool) -> io::Result<Stored> {
        let hash = MessageHash(self.hasher.finalize().into());
        let name = self.codec.name(&hash);
        let sink = self.encoder.finish()?;
        let FrameSink { check, out } = sink.into_inner().map_err(|e| e.into_error())?;
        let CountingFile {
            file,
            written: length,
            frames,
        } = out.finish()?;
        if self.hashes.contains(&name) || is_stored(&name) {
            file.set_len(self.start)?;
            *self.checked_frames = self.before;
            return Ok(Stored::Duplicate(hash, self.raw_len));
        }
        if let Some(check) = check {
            let expected = self.content_checksum.map(crc32fast::Hasher::finalize);
            match check.result() {
                Ok((back, len)) if Some(back) == expected && len == self.raw_len => {
                    *self.checked_frames = frames;
                }
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "verification before commit failed: message {hash} does not \
                             decompress back from the frame just streamed; nothing was \
                             committed (check the memory of this machine)"
                        ),
                    ));
                }
            }
        }
        let entry = PackEntry {
            hash: name,
            offset: self.start,
            length,
            dict: None,
        };
        *self.end = self.start + length;
        self.entries.push(entry);
        self.hashes.insert(name);
        Ok(Stored::New(hash, entry, self.raw_len))
    }
}

/// Where a streamed frame goes: to the [`StreamCheck`] as it is, and sealed (in an encrypted
/// repository) into the pack file. The check decompresses the frame before it is sealed: it
/// guards the compressor and memory; the seal is checked wherever the frame is read.
struct FrameSink<'a> {
    check: Option<StreamCheck>,
    out: SealingWriter<CountingFile<'a>>,
}

impl Write for FrameSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        if let Some(check) = &self.check {
            check.feed(&buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A file writer that counts what went through it and, while every frame is checked, hashes
/// it for the pack.
struct CountingFile<'a> {
    file: &'a mut File,
    written: u64,
    frames: Option<FramesChecksum>,
}

impl Write for CountingFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        if let Some(frames) = &mut self.frames {
            frames.update(&buf[..n]);
        }
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Decompresses a frame on a thread of its own as its bytes are written, and checksums what
/// comes out: the check of a streamed frame, on the other core, while the message still
/// arrives. A CRC-32 of the output against one of the message is enough: like the checksum
/// of a pack read back, this guards against a compressor or memory that returns other bytes,
/// not against an adversary, and a second SHA-256 of a 200 MB message cost 0.2 s of CPU, a
/// third of the check's (the message's own SHA-256 names it).
struct StreamCheck {
    chunks: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    thread: std::thread::JoinHandle<io::Result<(u32, u64)>>,
}

impl StreamCheck {
    fn start() -> StreamCheck {
        // A few chunks of the writer's 128 KiB: memory stays bounded if the check lags.
        let (chunks, incoming) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
        let thread = std::thread::spawn(move || {
            let reader = ChunkReader {
                incoming,
                chunk: Vec::new(),
                at: 0,
            };
            let mut decoder = zstd::stream::read::Decoder::new(reader)?.single_frame();
            let mut checksum = crc32fast::Hasher::new();
            let len = io::copy(&mut decoder, &mut DigestSink(|b: &[u8]| checksum.update(b)))?;
            Ok((checksum.finalize(), len))
        });
        StreamCheck {
            chunks: Some(chunks),
            thread,
        }
    }

    fn feed(&self, bytes: &[u8]) {
        if let Some(chunks) = &self.chunks {
            // A thread that stopped (a frame that does not decode) reports it at `result`.
            let _ = chunks.send(bytes.to_vec());
        }
    }

    /// What the frame decompressed to: its CRC-32 and length.
    fn result(mut self) -> io::Result<(u32, u64)> {
        self.chunks = None;
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the frame check stopped")))
    }
}

/// The chunks a [`StreamCheck`] receives, as one stream.
struct ChunkReader {
    incoming: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.incoming.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn tar_header(name: &str, length: u64) -> io::Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    header.set_path(name)?;
    header.set_size(length);
    header.set_mode(0o600);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    Ok(header)
}

/// What `finish` compares the frames written to a pack with, read back: a checksum of the
/// frames as they were appended. The check is against a disk or memory that returns other
/// bytes than were written, not against an adversary (the pack's name, the SHA-256 of the
/// file read back, is what verify holds it to later), and CRC-32 does it at a tenth of the
/// cost of a second and a third SHA-256 over every byte of every pack.
type FramesChecksum = crc32fast::Hasher;

/// SHA-256 of everything `reader` yields, and the checksum of the bytes in `part` (offsets in
/// it) if asked.
fn hash_file(
    mut reader: impl Read,
    part: Option<std::ops::Range<u64>>,
) -> io::Result<([u8; 32], Option<u32>)> {
    let mut whole = Sha256::new();
    let mut of_part = part.as_ref().map(|_| FramesChecksum::new());
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        whole.update(&buf[..n]);
        if let (Some(hasher), Some(part)) = (&mut of_part, &part) {
            let start = part.start.clamp(at, at + n as u64);
            let end = part.end.clamp(at, at + n as u64);
            hasher.update(&buf[(start - at) as usize..(end - at) as usize]);
        }
        at += n as u64;
    }
    Ok((
        whole.finalize().into(),
        of_part.map(FramesChecksum::finalize),
    ))
}

/// SHA-256 of everything `reader` yields.
pub fn hash_reader(reader: impl Read) -> io::Result<[u8; 32]> {
    hash_file(reader, None).map(|(whole, _)| whole)
}

/// The tar structure of a pack, read from its headers alone (data is skipped by seeking).
#[derive(Debug, Clone)]
pub struct PackLayout {
    /// Offset and length of the `messages.zst` data.
    pub frames: Option<(u64, u64)>,
    /// The table, or why it cannot be read.
    pub table: Result<Vec<PackEntry>, String>,
}

/// Reads the tar headers and table of a plain repository's pack from any seekable source.
/// Fails only when the first header is unreadable.
pub fn read_layout_from(pack: impl Read + io::Seek) -> io::Result<PackLayout> {
    read_layout_with(pack, &Codec::Plain)
}

/// [`read_layout_from`] of a pack whose table is stored with `codec`.
fn read_layout_with(pack: impl Read + io::Seek, codec: &Codec) -> io::Result<PackLayout> {
    let mut archive = tar::Archive::new(pack);
    let mut layout = PackLayout {
        frames: None,
        table: Err(format!("it has no {TABLE_ENTRY}")),
    };
    for entry in archive.entries_with_seek()? {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) if layout.frames.is_some() => {
                if layout.table.is_err() {
                    layout.table = Err(format!("its tar structure breaks off: {e}"));
                }
                break;
            }
            Err(e) => return Err(e),
        };
        let name = entry.path()?.to_string_lossy().into_owned();
        match name.as_str() {
            FRAMES_ENTRY => layout.frames = Some((entry.raw_file_position(), entry.size())),
            TABLE_ENTRY => {
                let mut bytes = Vec::new();
                layout.table = match entry.read_to_end(&mut bytes) {
                    Ok(_) => codec
                        .open(TABLE_CONTEXT, &bytes)
                        .map_err(|e| format!("its {TABLE_ENTRY} does not open: {e}"))
                        .and_then(|table| {
                            super::compressed::decompress(&table).map_err(|e| {
                                format!("its {TABLE_ENTRY} cannot be decompressed: {e}")
                            })
                        })
                        .map_err(|e| format!("its {TABLE_ENTRY} cannot be decompressed: {e}"))
                        .and_then(|json| {
                            serde_json::from_slice::<PackTable>(&json)
                                .map_err(|e| format!("its {TABLE_ENTRY} is not valid: {e}"))
                        })
                        .and_then(|t| {
                            if t.version == TABLE_VERSION {
                                Ok(t.messages)
                            } else {
                                Err(format!("unknown {TABLE_ENTRY} version {}", t.version))
                            }
                        }),
                    Err(e) => Err(format!("its {TABLE_ENTRY} cannot be read: {e}")),
                };
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected entry {other:?}"),
                ));
            }
        }
    }
    Ok(layout)
}

/// The tar structure and table of pack `id` in `backend`, stored with `codec`.
pub(crate) fn read_layout_in(
    backend: &dyn Backend,
    codec: &Codec,
    id: &PackId,
) -> io::Result<PackLayout> {
    let name = id.to_string();
    let size = backend.size(FileKind::Pack, &name)?;
    read_layout_with(
        io::BufReader::with_capacity(
            64 * 1024,
            RangeReader::new(backend, FileKind::Pack, &name, 0, size),
        ),
        codec,
    )
}

/// The entries of pack `id` in `backend`, from its table: what rebuilds the index.
pub(crate) fn scan_pack_in(
    backend: &dyn Backend,
    codec: &Codec,
    id: &PackId,
) -> io::Result<Vec<PackEntry>> {
    read_layout_in(backend, codec, id)?
        .table
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Opens a message's frame in pack `id` of `backend` for streaming decompression:
/// sequential reads of exactly `entry.length` bytes from its offset, opened on the way in an
/// encrypted repository.
pub(crate) fn open_entry_in<'a>(
    backend: &'a dyn Backend,
    codec: &Codec,
    id: &PackId,
    entry: &PackEntry,
    dict: Option<&'a Dictionary>,
) -> io::Result<Box<dyn Read + 'a>> {
    let frame = RangeReader::new(
        backend,
        FileKind::Pack,
        &id.to_string(),
        entry.offset,
        entry.length,
    );
    let stored = io::BufReader::with_capacity(64 * 1024, frame);
    match codec {
        Codec::Plain => decoder(stored, dict),
        Codec::Sealed(_) => decoder(
            io::BufReader::with_capacity(
                64 * 1024,
                codec.reader(FRAME_CONTEXT, stored, entry.length),
            ),
            dict,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::backend::LocalBackend;

    fn write_pack(dir: &Path, messages: &[&[u8]]) -> PackWriter {
        let mut pack = PackWriter::new(dir, 3, Codec::Plain).unwrap();
        for m in messages {
            let mut w = pack.begin(false).unwrap();
            w.write_all(m).unwrap();
            w.finish(|_| false).unwrap();
        }
        pack
    }

    /// The entries of the plain pack at `path`, from its table.
    fn scan_pack(path: &Path) -> io::Result<Vec<PackEntry>> {
        read_layout_from(File::open(path)?)?
            .table
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// A message's frame in the plain pack at `path`, decompressed as it is read.
    fn open_entry<'d>(
        path: &Path,
        entry: &PackEntry,
        dict: Option<&'d Dictionary>,
    ) -> io::Result<Box<dyn Read + 'd>> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(entry.offset))?;
        decoder(io::BufReader::new(file.take(entry.length)), dict)
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // damages the pack in place, on purpose
    fn a_pack_is_a_tar_of_frames_and_a_table_plain_or_sealed() {
        let key = std::sync::Arc::new(super::super::crypto::MasterKey::generate().unwrap());
        for codec in [Codec::Plain, Codec::Sealed(key)] {
            let dir = tempfile::tempdir().unwrap();
            let packs = dir.path().join("packs");
            std::fs::create_dir(&packs).unwrap();
            let mut pack = PackWriter::new(dir.path(), 3, codec.clone()).unwrap();
            for m in [&b"one message\r\n"[..], b"another one\r\n"] {
                let mut w = pack.begin(true).unwrap();
                w.write_all(m).unwrap();
                assert!(matches!(w.finish(|_| false).unwrap(), Stored::New(..)));
            }
            // A duplicate is cut back out; a frame compressed elsewhere is appended (sealed
            // when the codec seals).
            let mut w = pack.begin(false).unwrap();
            w.write_all(b"one message\r\n").unwrap();
            assert_eq!(
                w.finish(|_| false).unwrap(),
                Stored::Duplicate(MessageHash::of(b"one message\r\n"), 13)
            );
            let third = b"third\r\n";
            let frame = zstd::bulk::compress(third, 3).unwrap();
            pack.append_frame(&MessageHash::of(third), &frame, None, false)
                .unwrap();
            let backend = LocalBackend::new(dir.path());
            let (id, entries) = pack.finish(&backend, Some(&HashMap::new())).unwrap();
            assert_eq!(entries.len(), 3);
            let path = packs.join(format!("{id}.tar"));
            assert_eq!(PackId(hash_reader(File::open(&path).unwrap()).unwrap()), id);
            assert_eq!(scan_pack_in(&backend, &codec, &id).unwrap(), entries);
            let names: Vec<String> = tar::Archive::new(File::open(&path).unwrap())
                .entries()
                .unwrap()
                .map(|e| e.unwrap().path().unwrap().display().to_string())
                .collect();
            assert_eq!(names, [FRAMES_ENTRY, TABLE_ENTRY]);
            let file = std::fs::read(&path).unwrap();
            for (entry, text) in
                entries
                    .iter()
                    .zip([&b"one message\r\n"[..], b"another one\r\n", third])
            {
                assert_eq!(entry.hash, codec.name(&MessageHash::of(text)));
                let mut out = Vec::new();
                open_entry_in(&backend, &codec, &id, entry, None)
                    .unwrap()
                    .read_to_end(&mut out)
                    .unwrap();
                assert_eq!(out, text);
                // A sealed frame is no zstd frame, and its message's hash is not its name.
                let stored = &file[entry.offset as usize..][..entry.length as usize];
                assert_eq!(
                    stored.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
                    !codec.is_sealed()
                );
            }
            if codec.is_sealed() {
                assert!(
                    read_layout_from(File::open(&path).unwrap())
                        .unwrap()
                        .table
                        .is_err()
                );
                let mut out = Vec::new();
                let plain_read =
                    open_entry(&path, &entries[0], None).and_then(|mut r| r.read_to_end(&mut out));
                assert!(plain_read.is_err());
                // One flipped byte in a frame: it does not open.
                let mut damaged = file.clone();
                damaged[entries[1].offset as usize + 20] ^= 1;
                std::fs::write(&path, &damaged).unwrap();
                let mut out = Vec::new();
                let read = open_entry_in(&backend, &codec, &id, &entries[1], None)
                    .and_then(|mut r| r.read_to_end(&mut out));
                assert_eq!(read.unwrap_err().kind(), io::ErrorKind::InvalidData);
            } else {
                assert_eq!(scan_pack(&path).unwrap(), entries);
            }
        }
    }

    #[test]
    fn appended_frames_wait_in_memory_and_land_where_their_entries_say() {
        let dir = tempfile::tempdir().unwrap();
        let packs = dir.path().join("packs");
        std::fs::create_dir(&packs).unwrap();
        let mut pack = PackWriter::new(dir.path(), 3, Codec::Plain).unwrap();
        let mut messages: Vec<Vec<u8>> = Vec::new();
        let append = |pack: &mut PackWriter, messages: &mut Vec<Vec<u8>>, message: Vec<u8>| {
            let frame = zstd::bulk::compress(&message, 3).unwrap();
            pack.append(MessageHash::of(&message), &frame, None, true)
                .unwrap();
            messages.push(message);
        };
        // Small frames, more than the buffer holds, so that some are written on the way.
        for i in 0..3000u32 {
            let message =
                format!("Subject: {i}\r\n\r\n{}\r\n", "x".repeat(i as usize % 97)).into_bytes();
            append(&mut pack, &mut messages, message);
        }
        assert!(!pack.unwritten.is_empty());
        // Reading a frame back writes what waits first.
        let first = pack.entries()[0];
        let frame = pack.read_frame(&first).unwrap();
        assert_eq!(
            zstd::bulk::decompress(&frame, 1 << 20).unwrap(),
            messages[0]
        );
        assert!(pack.unwritten.is_empty());
        // A frame larger than the buffer, after one that waits, and then one alone.
        append(&mut pack, &mut messages, b"waiting\r\n".to_vec());
        let noise: Vec<u8> = (0..600_000u64)
            .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
            .collect();
        append(&mut pack, &mut messages, noise.clone());
        let mut alone = noise;
        alone.reverse();
        append(&mut pack, &mut messages, alone);
        // A streamed message goes after every frame appended before it.
        append(&mut pack, &mut messages, b"before the stream\r\n".to_vec());
        let streamed = b"streamed\r\n".repeat(1000);
        let mut w = pack.begin(false).unwrap();
        w.write_all(&streamed).unwrap();
        w.finish(|_| false).unwrap();
        messages.push(streamed);
        append(&mut pack, &mut messages, b"last\r\n".to_vec());
        let (id, entries) = pack
            .finish(&LocalBackend::new(dir.path()), Some(&HashMap::new()))
            .unwrap();
        let path = packs.join(format!("{id}.tar"));
        assert_eq!(scan_pack(&path).unwrap(), entries);
        assert_eq!(entries.len(), messages.len());
        for (entry, message) in entries.iter().zip(&messages) {
            assert_eq!(entry.hash, MessageHash::of(message));
            let mut out = Vec::new();
            open_entry(&path, entry, None)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert!(out == *message, "message {} differs", entry.hash);
        }
    }

    #[test]
    fn verify_before_commit_refuses_a_pack_that_does_not_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let packs = dir.path().join("packs");
        std::fs::create_dir(&packs).unwrap();
        let no_dicts = HashMap::new();
        // A byte flipped in a frame after it was written (as bad RAM or a bad disk would):
        // the pack is not published, and nothing is left behind.
        let mut pack = write_pack(dir.path(), &[b"first\r\n", b"second message body\r\n"]);
        let entry = pack.entries()[1];
        let file = pack.file().unwrap();
        file.seek(SeekFrom::Start(entry.offset + entry.length / 2))
            .unwrap();
        let mut byte = [0u8; 1];
        file.read_exact(&mut byte).unwrap();
        file.seek(SeekFrom::Start(entry.offset + entry.length / 2))
            .unwrap();
        file.write_all(&[byte[0] ^ 0x40]).unwrap();
        let err = pack
            .finish(&LocalBackend::new(dir.path()), Some(&no_dicts))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("verification before commit failed"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(&packs).unwrap().count(), 0);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn frames_checked_when_made_must_be_exactly_what_the_file_holds() {
        let dir = tempfile::tempdir().unwrap();
        let packs = dir.path().join("packs");
        std::fs::create_dir(&packs).unwrap();
        let messages: [&[u8]; 2] = [b"first\r\n", b"second message body\r\n"];
        let checked_pack = || {
            let mut pack = PackWriter::new(dir.path(), 3, Codec::Plain).unwrap();
            for m in messages {
                let frame = zstd::bulk::compress(m, 3).unwrap();
                pack.append(MessageHash::of(m), &frame, None, true).unwrap();
            }
            pack
        };
        // Untouched: published.
        let (id, entries) = checked_pack()
            .finish(&LocalBackend::new(dir.path()), Some(&HashMap::new()))
            .unwrap();
        assert_eq!(entries.len(), 2);
        assert!(packs.join(format!("{id}.tar")).is_file());
        // A byte of a frame flipped in the file after it was appended: refused, although
        // the flip is in a frame nobody decompresses here.
        let mut pack = checked_pack();
        let entry = pack.entries()[0];
        let file = pack.file().unwrap();
        file.seek(SeekFrom::Start(entry.offset + 1)).unwrap();
        file.write_all(&[0xff]).unwrap();
        let err = pack
            .finish(&LocalBackend::new(dir.path()), Some(&HashMap::new()))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("does not hold the frames written to it"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(&packs).unwrap().count(), 1);
    }

    #[test]
    fn streamed_frames_are_checked_as_they_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let packs = dir.path().join("packs");
        std::fs::create_dir(&packs).unwrap();
        let big: Vec<u8> = (0..300_000u32)
            .flat_map(|i| format!("line {i} of a large message\r\n").into_bytes())
            .collect();
        let streamed_pack = || {
            let mut pack = PackWriter::new(dir.path(), 3, Codec::Plain).unwrap();
            for (m, cut) in [
                (&big[..], false),
                (&big[..], true),
                (&b"small\r\n"[..], false),
            ] {
                let mut w = pack.begin(true).unwrap();
                w.write_all(m).unwrap();
                // The second copy is a duplicate, cut back out: the pack's check must not
                // count its bytes.
                let stored = w.finish(|_| false).unwrap();
                assert_eq!(matches!(stored, Stored::Duplicate(..)), cut);
            }
            let frame = zstd::bulk::compress(b"in memory\r\n", 3).unwrap();
            pack.append(MessageHash::of(b"in memory\r\n"), &frame, None, true)
                .unwrap();
            assert!(pack.checked_frames.is_some(), "every frame was checked");
            pack
        };
        let (id, entries) = streamed_pack()
            .finish(&LocalBackend::new(dir.path()), Some(&HashMap::new()))
            .unwrap();
        assert_eq!(entries.len(), 3);
        let path = packs.join(format!("{id}.tar"));
        let mut frames = FrameDecoder::default();
        let mut file = File::open(&path).unwrap();
        for e in &entries {
            let mut frame = vec![0u8; e.length as usize];
            file.seek(SeekFrom::Start(e.offset)).unwrap();
            file.read_exact(&mut frame).unwrap();
            assert_eq!(frames.hash(&frame, None).unwrap().0, e.hash);
        }
        // A byte flipped in the streamed frame after it was written: the pack is refused.
        let mut pack = streamed_pack();
        let entry = pack.entries()[0];
        let file = pack.file().unwrap();
        file.seek(SeekFrom::Start(entry.offset + entry.length / 2))
            .unwrap();
        file.write_all(&[0xa5]).unwrap();
        let err = pack
            .finish(&LocalBackend::new(dir.path()), Some(&HashMap::new()))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("does not hold the frames written to it"),
            "{err}"
        );
    }

    #[test]
    fn a_stream_check_reports_what_the_frame_decompresses_to() {
        let message = b"Subject: checked\r\n\r\nbody\r\n".repeat(1000);
        let frame = zstd::bulk::compress(&message, 3).unwrap();
        let check = StreamCheck::start();
        for piece in frame.chunks(777) {
            check.feed(piece);
        }
        let (checksum, len) = check.result().unwrap();
        assert_eq!(
            (checksum, len),
            (crc32fast::hash(&message), message.len() as u64)
        );
        // A frame cut short, or bytes that are no frame at all: an error, not a checksum.
        let check = StreamCheck::start();
        check.feed(&frame[..frame.len() / 2]);
        assert!(check.result().is_err());
        let check = StreamCheck::start();
        check.feed(b"not a zstd frame at all");
        assert!(check.result().is_err());
    }
}
