//! Checking one pack file: its tar structure, its name against its content hash, and (when its
//! data is read) every frame decompressed and re-hashed — all in one sequential pass.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::repo::layout::ENTRY_SUFFIX;
use crate::repo::{Dictionary, MessageHash, PackId, pack};

/// What was found about one message in a pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryState {
    /// Decompressed and its SHA-256 matches its name.
    Intact,
    /// Present in the tar structure; its data was not read (quick or subset check).
    Present,
    /// Present but unreadable or not matching its hash.
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

/// Checks the pack at `path`, named `id`. With `read_data`, the whole file is read once: its
/// SHA-256 must equal its name and every frame must decompress to its entry's hash; otherwise
/// only the tar headers are read.
pub fn check_pack<'d>(
    path: &Path,
    id: PackId,
    read_data: bool,
    dictionary: &dyn Fn(u32) -> Option<&'d Dictionary>,
) -> PackCheck {
    let mut check = PackCheck {
        id,
        read_data,
        entries: Vec::new(),
        problems: Vec::new(),
        message_bytes: 0,
        pack_bytes: 0,
    };
    if !read_data {
        match pack::scan_pack(path) {
            Ok(entries) => {
                check.entries = entries
                    .into_iter()
                    .map(|(e, _)| EntryCheck {
                        hash: e.hash,
                        offset: e.offset,
                        length: e.length,
                        state: EntryState::Present,
                    })
                    .collect();
            }
            Err(e) => check
                .problems
                .push(format!("its tar structure is unreadable: {e}")),
        }
        return check;
    }
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            check.problems.push(format!("cannot be opened: {e}"));
            return check;
        }
    };
    let mut reader = Hashing {
        inner: BufReader::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        read: 0,
    };
    {
        let mut archive = tar::Archive::new(&mut reader);
        let entries = match archive.entries() {
            Ok(entries) => entries,
            Err(e) => {
                check
                    .problems
                    .push(format!("its tar structure is unreadable: {e}"));
                return check;
            }
        };
        for entry in entries {
            let mut entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    check.problems.push(format!(
                        "its tar structure is broken after {} entries (truncated or \
                         overwritten): {e}",
                        check.entries.len()
                    ));
                    break;
                }
            };
            let name = entry
                .path()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Some(hash) = name
                .strip_suffix(ENTRY_SUFFIX)
                .and_then(|h| h.parse::<MessageHash>().ok())
            else {
                check
                    .problems
                    .push(format!("it holds an unexpected entry {name:?}"));
                continue;
            };
            let offset = entry.raw_file_position();
            let length = entry.size();
            let state = match check_frame(&mut entry, &hash, dictionary) {
                Ok(bytes) => {
                    check.message_bytes += bytes;
                    EntryState::Intact
                }
                Err(problem) => EntryState::Damaged(problem),
            };
            check.entries.push(EntryCheck {
                hash,
                offset,
                length,
                state,
            });
        }
    }
    // The end-of-archive blocks and anything after them count for the pack's hash too.
    if let Err(e) = io::copy(&mut reader, &mut io::sink()) {
        check
            .problems
            .push(format!("cannot be read to its end: {e}"));
    }
    check.pack_bytes = reader.read;
    let actual = PackId(reader.hasher.finalize().into());
    if actual != id {
        check.problems.push(format!(
            "its content does not match its name (content hash {actual}): it was changed, \
             truncated or renamed"
        ));
    }
    check
}

/// Decompresses one frame and compares its SHA-256 with `hash`; returns the message's size.
fn check_frame<'a, 'd: 'a>(
    entry: &'a mut dyn Read,
    hash: &MessageHash,
    dictionary: &dyn Fn(u32) -> Option<&'d Dictionary>,
) -> Result<u64, String> {
    let mut frame = BufReader::with_capacity(128 * 1024, entry);
    let head = frame.fill_buf().map_err(|e| format!("unreadable: {e}"))?;
    let dict_id = zstd::zstd_safe::get_dict_id_from_frame(head).map(|id| id.get());
    let dict = match dict_id {
        Some(id) => Some(dictionary(id).ok_or_else(|| {
            format!("it needs zstd dictionary {id}, which is not in the repository")
        })?),
        None => None,
    };
    let mut decoder: Box<dyn Read + 'a> = match dict {
        Some(d) => Box::new(
            zstd::stream::read::Decoder::with_dictionary(frame, &d.bytes)
                .map_err(|e| format!("cannot start decompressing: {e}"))?
                .single_frame(),
        ),
        None => Box::new(
            zstd::stream::read::Decoder::with_buffer(frame)
                .map_err(|e| format!("cannot start decompressing: {e}"))?
                .single_frame(),
        ),
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 128 * 1024];
    let mut total = 0u64;
    loop {
        let n = decoder
            .read(&mut buf)
            .map_err(|e| format!("does not decompress: {e}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    if MessageHash(hasher.finalize().into()) != *hash {
        return Err("its content does not match its hash".into());
    }
    Ok(total)
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
