//! Packs: immutable tar files of zstd frames, one frame per message.
//!
//! Each message is one tar entry named `<message-hash>.zst` whose data is a single zstd frame
//! of the message's exact bytes (with the dictionary id in the frame header when a dictionary
//! was used). Entries are 512-byte aligned as tar requires; the pack ends with the two zero
//! blocks of a tar end-of-archive. A finished pack is named by the SHA-256 of its bytes and never
//! changed again. `tar -tf` lists it, `tar -xOf p.tar H.zst | zstd -d` prints a message.
//!
//! A message is streamed in: the 512-byte header slot is reserved, the frame is written after
//! it as the bytes arrive, and the header is filled in once the hash and length are known. If
//! the message turns out to be stored already, the file is cut back to where the entry began.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::id::{DictHash, MessageHash, PackId};
use super::layout::ENTRY_SUFFIX;
use crate::durable::TempFile;

/// tar's block size.
pub const BLOCK: u64 = 512;

/// A pack is closed once it reaches this size; larger messages get a pack of their own.
/// Big enough that a 10 GB mailbox is a few hundred files, small enough to repack cheaply.
pub const TARGET_PACK_SIZE: u64 = 32 * 1024 * 1024;

/// Where one message's frame lives in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackEntry {
    pub hash: MessageHash,
    /// Byte offset of the zstd frame in the pack file (just after its tar header).
    pub offset: u64,
    /// Length of the zstd frame in bytes.
    pub length: u64,
    /// The dictionary the frame needs, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dict: Option<DictHash>,
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
    /// End of the last complete entry: where the next header goes.
    end: u64,
    entries: Vec<PackEntry>,
    /// The hashes of `entries`, for duplicate checks while writing.
    hashes: HashSet<MessageHash>,
    level: i32,
}

impl PackWriter {
    pub fn new(tmp_dir: &Path, level: i32) -> io::Result<PackWriter> {
        Ok(PackWriter {
            temp: TempFile::new(tmp_dir, "pack")?,
            end: 0,
            entries: Vec::new(),
            hashes: HashSet::new(),
            level,
        })
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

    pub fn contains(&self, hash: &MessageHash) -> bool {
        self.hashes.contains(hash)
    }

    /// Starts a message; write its bytes into the returned writer, then call `finish`.
    pub fn begin<'a>(&'a mut self, dict: Option<&'a Dictionary>) -> io::Result<MessageWriter<'a>> {
        let file = self.temp.file();
        file.seek(SeekFrom::Start(self.end + BLOCK))?;
        let level = self.level;
        let sink = BufWriter::with_capacity(128 * 1024, CountingFile { file, written: 0 });
        let encoder = match dict {
            Some(d) => zstd::stream::write::Encoder::with_dictionary(sink, level, &d.bytes)?,
            None => zstd::stream::write::Encoder::new(sink, level)?,
        };
        let header_at = self.end;
        Ok(MessageWriter {
            encoder,
            hasher: Sha256::new(),
            raw_len: 0,
            header_at,
            dict: dict.map(|d| d.hash),
            end: &mut self.end,
            entries: &mut self.entries,
            hashes: &mut self.hashes,
        })
    }

    /// Writes the end-of-archive blocks, fsyncs, computes the pack's id and moves it to
    /// `packs_dir`. Returns the id and the entries.
    ///
    /// With `verify`, every frame is first read back from the file, decompressed (with the
    /// dictionaries `verify` resolves) and re-hashed — restic's "verify before commit": a pack
    /// that does not read back (bad RAM, a bug, a failing disk) is never published and the
    /// error stops the commit.
    pub fn finish(
        mut self,
        packs_dir: &Path,
        verify: Option<&std::collections::HashMap<DictHash, Dictionary>>,
    ) -> io::Result<(PackId, Vec<PackEntry>)> {
        let end = self.end;
        let file = self.temp.file();
        file.set_len(end)?;
        file.seek(SeekFrom::Start(end))?;
        file.write_all(&[0u8; 2 * BLOCK as usize])?;
        // The id covers every byte; the header slots were patched after their data, so hash
        // the finished file in one sequential pass (it is in the page cache).
        file.seek(SeekFrom::Start(0))?;
        let id = PackId(hash_reader(&mut *file)?);
        if let Some(dictionaries) = verify {
            for entry in &self.entries {
                let dict = match &entry.dict {
                    Some(h) => Some(dictionaries.get(h).ok_or_else(|| {
                        io::Error::other(format!("dictionary {h} vanished while writing"))
                    })?),
                    None => None,
                };
                file.seek(SeekFrom::Start(entry.offset))?;
                let frame = io::BufReader::new((&mut *file).take(entry.length));
                let decoder: Box<dyn Read> = match dict {
                    Some(d) => Box::new(
                        zstd::stream::read::Decoder::with_dictionary(frame, &d.bytes)?
                            .single_frame(),
                    ),
                    None => {
                        Box::new(zstd::stream::read::Decoder::with_buffer(frame)?.single_frame())
                    }
                };
                if MessageHash(hash_reader(decoder)?) != entry.hash {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "verification before commit failed: message {} does not read back                              from the pack just written; nothing was committed (check the                              disk and memory of this machine)",
                            entry.hash
                        ),
                    ));
                }
            }
        }
        let dest = packs_dir.join(format!("{id}{}", super::layout::PACK_SUFFIX));
        self.temp.persist(&dest)?;
        Ok((id, self.entries))
    }
}

/// A message being written into a pack.
pub struct MessageWriter<'a> {
    encoder: zstd::stream::write::Encoder<'static, BufWriter<CountingFile<'a>>>,
    hasher: Sha256,
    raw_len: u64,
    header_at: u64,
    dict: Option<DictHash>,
    end: &'a mut u64,
    entries: &'a mut Vec<PackEntry>,
    hashes: &'a mut HashSet<MessageHash>,
}

impl Write for MessageWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.encoder.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.raw_len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.encoder.flush()
    }
}

/// What `MessageWriter::finish` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Written as a new entry.
    New(PackEntry, u64),
    /// Already present (the caller said so); nothing was kept.
    Duplicate(MessageHash, u64),
}

impl Stored {
    pub fn hash(&self) -> MessageHash {
        match self {
            Stored::New(e, _) => e.hash,
            Stored::Duplicate(h, _) => *h,
        }
    }

    /// The message's size in bytes before compression.
    pub fn raw_len(&self) -> u64 {
        match self {
            Stored::New(_, n) | Stored::Duplicate(_, n) => *n,
        }
    }
}

impl MessageWriter<'_> {
    /// Ends the frame. If the message is already in this pack, or `is_stored` says it is in the
    /// repository, the entry is dropped; otherwise its tar header is written.
    pub fn finish(self, is_stored: impl FnOnce(&MessageHash) -> bool) -> io::Result<Stored> {
        let hash = MessageHash(self.hasher.finalize().into());
        let sink = self.encoder.finish()?;
        let counting = sink.into_inner().map_err(|e| e.into_error())?;
        let length = counting.written;
        let file = counting.file;
        if self.hashes.contains(&hash) || is_stored(&hash) {
            file.set_len(self.header_at)?;
            return Ok(Stored::Duplicate(hash, self.raw_len));
        }
        let header = tar_header(&hash, length)?;
        file.seek(SeekFrom::Start(self.header_at))?;
        file.write_all(header.as_bytes())?;
        let data_end = self.header_at + BLOCK + length;
        let padded_end = data_end.div_ceil(BLOCK) * BLOCK;
        file.seek(SeekFrom::Start(data_end))?;
        file.write_all(&vec![0u8; (padded_end - data_end) as usize])?;
        let entry = PackEntry {
            hash,
            offset: self.header_at + BLOCK,
            length,
            dict: self.dict,
        };
        *self.end = padded_end;
        self.entries.push(entry);
        self.hashes.insert(hash);
        Ok(Stored::New(entry, self.raw_len))
    }
}

/// A file writer that counts what went through it.
struct CountingFile<'a> {
    file: &'a mut File,
    written: u64,
}

impl Write for CountingFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn tar_header(hash: &MessageHash, length: u64) -> io::Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    header.set_path(format!("{hash}{ENTRY_SUFFIX}"))?;
    header.set_size(length);
    header.set_mode(0o600);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    Ok(header)
}

/// SHA-256 of everything `reader` yields.
pub fn hash_reader(mut reader: impl Read) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buf[..n]);
    }
}

/// Lists the entries of a pack from its tar headers alone (data is skipped by seeking), with
/// the dictionary id of each frame. Used to rebuild the index.
pub fn scan_pack(path: &Path) -> io::Result<Vec<(PackEntry, Option<u32>)>> {
    let file = File::open(path)?;
    let mut archive = tar::Archive::new(file);
    let mut out = Vec::new();
    for entry in archive.entries_with_seek()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let hash = name
            .strip_suffix(ENTRY_SUFFIX)
            .and_then(|h| h.parse::<MessageHash>().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected entry {name:?}"),
                )
            })?;
        let offset = entry.raw_file_position();
        let length = entry.size();
        let mut head = [0u8; 18];
        let n = read_up_to(&mut entry, &mut head)?;
        let dict_id = zstd::zstd_safe::get_dict_id_from_frame(&head[..n]).map(|id| id.get());
        out.push((
            PackEntry {
                hash,
                offset,
                length,
                dict: None,
            },
            dict_id,
        ));
    }
    Ok(out)
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Opens a message's frame for streaming decompression: one seek, then sequential reads of
/// exactly `entry.length` bytes.
pub fn open_entry<'d>(
    pack: &Path,
    entry: &PackEntry,
    dict: Option<&'d Dictionary>,
) -> io::Result<Box<dyn Read + 'd>> {
    let mut file = File::open(pack)?;
    file.seek(SeekFrom::Start(entry.offset))?;
    let frame = io::BufReader::with_capacity(64 * 1024, file.take(entry.length));
    let decoder: Box<dyn Read + 'd> = match dict {
        Some(d) => {
            Box::new(zstd::stream::read::Decoder::with_dictionary(frame, &d.bytes)?.single_frame())
        }
        None => Box::new(zstd::stream::read::Decoder::with_buffer(frame)?.single_frame()),
    };
    Ok(decoder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pack(dir: &Path, messages: &[&[u8]]) -> PackWriter {
        let mut pack = PackWriter::new(dir, 3).unwrap();
        for m in messages {
            let mut w = pack.begin(None).unwrap();
            w.write_all(m).unwrap();
            w.finish(|_| false).unwrap();
        }
        pack
    }

    #[test]
    fn verify_before_commit_refuses_a_pack_that_does_not_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let packs = dir.path().join("packs");
        std::fs::create_dir(&packs).unwrap();
        let no_dicts = std::collections::HashMap::new();

        // A good pack is published.
        let pack = write_pack(dir.path(), &[b"one message\r\n", b"another one\r\n"]);
        let (id, entries) = pack.finish(&packs, Some(&no_dicts)).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(packs.join(format!("{id}.tar")).exists());

        // A byte flipped in a frame after it was written (as bad RAM or a bad disk would):
        // the pack is not published, and nothing is left behind.
        let mut pack = write_pack(dir.path(), &[b"first\r\n", b"second message body\r\n"]);
        let entry = pack.entries()[1];
        let file = pack.temp.file();
        file.seek(SeekFrom::Start(entry.offset + entry.length / 2))
            .unwrap();
        let mut byte = [0u8; 1];
        file.read_exact(&mut byte).unwrap();
        file.seek(SeekFrom::Start(entry.offset + entry.length / 2))
            .unwrap();
        file.write_all(&[byte[0] ^ 0x40]).unwrap();
        let err = pack.finish(&packs, Some(&no_dicts)).unwrap_err();
        assert!(
            err.to_string()
                .contains("verification before commit failed"),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(&packs).unwrap().count(), 1);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
