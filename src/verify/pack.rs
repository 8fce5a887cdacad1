//! Checking one pack file: its tar structure and table, its name against its content hash,
//! and (when its data is read) every frame decompressed and re-hashed — in one sequential pass.
//!
//! When the pack's own table is lost (a truncated pack), the index's list of its messages is
//! used instead; when that is missing too, the frames are walked one after the other and every
//! message that still decompresses is recovered by its hash.

use std::io::{self, BufRead, BufReader, Read};

use sha2::{Digest as _, Sha256};

use crate::repo::pack::{self, BLOCK, PackEntry};
use crate::repo::{MessageHash, PackId, Repository};

/// What was found about one message in a pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryState {
    /// Decompressed and its SHA-256 matches.
    Intact,
    /// Listed and within the file; its data was not read (quick or subset check).
    Present,
    /// Unreadable, cut off, or not matching its hash.
    Damaged(String),
}

#[derive(Debug, Clone)]
pub struct EntryCheck {
    pub hash: MessageHash,
    pub offset: u64,
    pub length: u64,
    pub state: EntryState,
}

/// The result of checking one pack.
#[derive(Debug, Clone)]
pub struct PackCheck {
    pub id: PackId,
    /// True when every byte was read (name and frames checked).
    pub read_data: bool,
    pub entries: Vec<EntryCheck>,
    /// Damage of the pack as a whole: wrong name, truncated, unreadable structure.
    pub problems: Vec<String>,
    /// Message bytes (decompressed) checked.
    pub message_bytes: u64,
    /// Pack bytes read.
    pub pack_bytes: u64,
}

impl PackCheck {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
            && self
                .entries
                .iter()
                .all(|e| !matches!(e.state, EntryState::Damaged(_)))
    }
}

/// Checks pack `id` of `repo`. With `read_data` the whole file is read once: its SHA-256 must
/// equal its name and every frame must decompress to its message's hash; otherwise only its
/// headers and table are read. `expected` gives what the index says the pack holds; it is
/// called only when the pack's own table is unreadable.
pub fn check_pack(
    repo: &Repository,
    id: PackId,
    read_data: bool,
    expected: impl FnOnce() -> Option<Vec<PackEntry>>,
) -> PackCheck {
    let mut check = PackCheck {
        id,
        read_data,
        entries: Vec::new(),
        problems: Vec::new(),
        message_bytes: 0,
        pack_bytes: 0,
    };
    let file_len = repo.pack_size(&id).unwrap_or(0);
    let (listed, frames) = match repo.pack_layout(&id) {
        Ok(layout) => match layout.table {
            Ok(table) => (Some(table), layout.frames),
            Err(problem) => {
                check.problems.push(problem);
                (expected(), layout.frames)
            }
        },
        Err(e) => {
            check
                .problems
                .push(format!("its tar structure is unreadable: {e}"));
            (expected(), None)
        }
    };
    let mut listed = listed;
    if let Some(list) = &mut listed {
        list.sort_by_key(|e| e.offset);
        // Held for the whole verify, every pack's: no room to spare (12 MB against 7 MB at
        // 100,000 messages).
        check.entries.reserve_exact(list.len());
    }
    if !read_data {
        for e in listed.unwrap_or_default() {
            let state = if e.offset + e.length <= file_len {
                EntryState::Present
            } else {
                EntryState::Damaged("cut off: the pack ends before its frame does".into())
            };
            check.entries.push(EntryCheck {
                hash: e.hash,
                offset: e.offset,
                length: e.length,
                state,
            });
        }
        return check;
    }

    let file = match repo.open_pack(&id) {
        Ok(f) => f,
        Err(e) => {
            check.problems.push(format!("cannot be opened: {e}"));
            return check;
        }
    };
    let mut reader = Position {
        inner: BufReader::with_capacity(
            1 << 20,
            Hashing {
                inner: file,
                hasher: Sha256::new(),
                read: 0,
            },
        ),
        pos: 0,
    };
    match listed {
        Some(list) => check_listed(repo, &mut reader, &list, &mut check),
        None => walk_frames(repo, &mut reader, frames, file_len, &mut check),
    }
    // The table, the end-of-archive blocks and anything after count for the pack's hash too.
    if let Err(e) = io::copy(&mut reader, &mut io::sink()) {
        check
            .problems
            .push(format!("cannot be read to its end: {e}"));
    }
    let hashing = reader.inner.into_inner();
    check.pack_bytes = hashing.read;
    let actual = PackId(hashing.hasher.finalize().into());
    if actual != id {
        check.problems.push(format!(
            "its content does not match its name (content hash {actual}): it was changed, \
             truncated or renamed"
        ));
    }
    check
}

type PackReader = Position<BufReader<Hashing<Box<dyn Read + Send>>>>;

/// Frames up to this size are read into memory to be decoded.
const WHOLE_FRAME_BYTES: u64 = 1 << 20;

/// Reads the listed frames in file order, re-hashing each.
fn check_listed(
    repo: &Repository,
    reader: &mut PackReader,
    list: &[PackEntry],
    check: &mut PackCheck,
) {
    // Small frames are read whole and decoded with one reused context (a new decoder per
    // frame showed up at 10 % of a verify of small mail); large ones stream.
    let mut frames = pack::FrameDecoder::default();
    let mut whole = Vec::new();
    for e in list {
        let state = if e.offset < reader.pos {
            EntryState::Damaged("its place overlaps another message's".into())
        } else {
            let gap = e.offset - reader.pos;
            match io::copy(&mut reader.take(gap), &mut io::sink()) {
                Ok(n) if n == gap => {}
                _ => {
                    check.entries.push(cut_off(e));
                    continue;
                }
            }
            let dict = match &e.dict {
                Some(h) => repo.dictionary(h),
                None => None,
            };
            if e.dict.is_some() && dict.is_none() {
                EntryState::Damaged("it needs a dictionary that is missing or damaged".into())
            } else {
                let result = if e.length <= WHOLE_FRAME_BYTES {
                    whole.clear();
                    match reader.take(e.length).read_to_end(&mut whole) {
                        Ok(_) if whole.len() as u64 == e.length => repo
                            .open_frame(&whole)
                            .and_then(|frame| frames.hash(&frame, dict)),
                        Ok(_) => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                        Err(err) => Err(err),
                    }
                } else {
                    let mut frame = reader.take(e.length);
                    let result = hash_frame(
                        &mut BufReader::new(repo.frame_reader(&mut frame, e.length)),
                        dict,
                    );
                    let _ = io::copy(&mut frame, &mut io::sink());
                    result
                };
                if reader.pos < e.offset + e.length {
                    // The file ended inside the frame.
                    check.entries.push(cut_off(e));
                    continue;
                }
                match result {
                    Ok((hash, bytes)) if repo.stored_name(&hash) == e.hash => {
                        check.message_bytes += bytes;
                        EntryState::Intact
                    }
                    Ok(_) => EntryState::Damaged("its content does not match its hash".into()),
                    Err(err) => EntryState::Damaged(format!("does not decompress: {err}")),
                }
            }
        };
        check.entries.push(EntryCheck {
            hash: e.hash,
            offset: e.offset,
            length: e.length,
            state,
        });
    }
}

fn cut_off(e: &PackEntry) -> EntryCheck {
    EntryCheck {
        hash: e.hash,
        offset: e.offset,
        length: e.length,
        state: EntryState::Damaged("cut off: the pack ends before its frame does".into()),
    }
}

/// Without any list of its messages, decodes the frames one after the other and recovers each
/// message that still decompresses (its hash is then computed, not checked).
fn walk_frames(
    repo: &Repository,
    reader: &mut PackReader,
    frames: Option<(u64, u64)>,
    file_len: u64,
    check: &mut PackCheck,
) {
    if repo.is_encrypted() {
        // A sealed frame's end cannot be found without its length.
        check.problems.push(
            "neither its table nor the index lists its messages, and the frames of an \
             encrypted repository cannot be told apart without them: its messages are lost"
                .into(),
        );
        return;
    }
    let (start, len) = frames.unwrap_or((BLOCK, file_len.saturating_sub(BLOCK)));
    if io::copy(&mut reader.take(start), &mut io::sink()).is_err() {
        return;
    }
    let end = start + len;
    while reader.pos < end.min(file_len) {
        let offset = reader.pos;
        let head = match reader.fill_buf() {
            Ok(h) if !h.is_empty() => h,
            _ => break,
        };
        let dict = zstd::zstd_safe::get_dict_id_from_frame(head)
            .and_then(|id| repo.dictionary_by_zstd_id(id.get()));
        let mut frame = reader.take(end - offset);
        match hash_frame(&mut frame, dict) {
            Ok((hash, bytes)) => {
                check.message_bytes += bytes;
                check.entries.push(EntryCheck {
                    hash,
                    offset,
                    length: reader.pos - offset,
                    state: EntryState::Intact,
                });
            }
            Err(e) => {
                check.problems.push(format!(
                    "its frames cannot be decoded after byte {offset}: {e}; the messages \
                     after that point are lost"
                ));
                break;
            }
        }
    }
}

/// Decompresses one frame from `frame` (consuming exactly the frame) and returns the SHA-256
/// and size of its content.
fn hash_frame(
    frame: &mut dyn BufRead,
    dict: Option<&crate::repo::Dictionary>,
) -> io::Result<(MessageHash, u64)> {
    let mut decoder = pack::decoder(frame, dict)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 128 * 1024];
    let mut total = 0u64;
    loop {
        let n = decoder.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((MessageHash(hasher.finalize().into()), total))
}

/// Hashes and counts everything read through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// A buffered reader that knows how far its consumer has got.
struct Position<R> {
    inner: R,
    pos: u64,
}

impl<R: BufRead> Read for Position<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Position<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
        self.pos += amt as u64;
    }
}

impl<R: BufRead> Position<R> {
    fn take(&mut self, limit: u64) -> io::Take<&mut Self> {
        Read::take(self, limit)
    }
}
