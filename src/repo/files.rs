//! The repository's files as the commands that check and maintain it need them: packs by id
//! (their size, tar structure, a sequential stream, frames by location), index files by name,
//! records files, and files that belong to no part of the format. Verify and prune go through
//! these, never through paths, so that the storage under them can change (see `docs/DESIGN.md`,
//! "The storage seam").

use std::borrow::Cow;
use std::io::{self, Read};

use super::backend::FileKind;
use super::codec::FRAME_CONTEXT;
use super::pack::{self, PackEntry, PackLayout};
use super::{
    DictHash, IndexedPack, Manifest, PackId, RecordLocation, RecordsId, RepoError, Repository,
    SnapshotId, index::Index, layout,
};

impl Repository {
    /// The packs there are, by id.
    pub fn pack_ids(&self) -> Result<Vec<PackId>, RepoError> {
        self.layout.names(FileKind::Pack, |s| s.parse().ok())
    }

    /// A pack's size in bytes, if it exists.
    pub fn pack_size(&self, id: &PackId) -> Option<u64> {
        self.layout
            .backend()
            .size(FileKind::Pack, &id.to_string())
            .ok()
    }

    /// A pack's tar structure and table.
    pub fn pack_layout(&self, id: &PackId) -> io::Result<PackLayout> {
        pack::read_layout_in(self.layout.backend(), self.layout.codec(), id)
    }

    /// A pack's bytes, from the first to the last, for reading it once in order.
    pub fn open_pack(&self, id: &PackId) -> io::Result<Box<dyn Read + Send>> {
        self.layout.backend().open(FileKind::Pack, &id.to_string())
    }

    /// A pack's entries, from its own table (or tar headers).
    pub fn pack_entries(&self, id: &PackId) -> Result<Vec<PackEntry>, RepoError> {
        pack::scan_pack_in(self.layout.backend(), self.layout.codec(), id)
            .map_err(RepoError::io("cannot read", self.layout.pack(id)))
    }

    /// A reader of pack `id`'s frames as they are stored, the pack opened once: for copying
    /// frames into another pack (it borrows nothing, so the writer can write meanwhile).
    pub fn frames_of(&self, id: &PackId) -> Result<PackFrames, RepoError> {
        Ok(PackFrames {
            layout: self.layout.clone(),
            pack: *id,
            frame: Vec::new(),
        })
    }

    /// A frame as a pack stores it, opened: the zstd frame itself (sealed frames are checked
    /// as they open; `InvalidData` when one does not).
    pub fn open_frame<'a>(&self, stored: &'a [u8]) -> io::Result<Cow<'a, [u8]>> {
        self.layout.codec().open(FRAME_CONTEXT, stored)
    }

    /// The `len` bytes of a frame as a pack stores it, read from `stored` and opened as they
    /// are read.
    pub fn frame_reader<'a>(&self, stored: impl Read + 'a, len: u64) -> Box<dyn Read + 'a> {
        self.layout.codec().reader(FRAME_CONTEXT, stored, len)
    }

    /// The index files there are, by name, in order.
    pub fn index_file_names(&self) -> Result<Vec<String>, RepoError> {
        Index::file_names(&self.layout)
    }

    /// Index file `name` as it is stored, a pack's listing at a time.
    pub fn read_index_file(
        &self,
        name: &str,
        each: &mut dyn FnMut(IndexedPack),
    ) -> Result<(), RepoError> {
        Index::read_file(&self.layout, name, each)
    }

    /// How an index file is named for people: its path in the repository.
    pub fn index_file_label(&self, name: &str) -> String {
        format!("{}/{name}{}", layout::INDEX, layout::INDEX_SUFFIX)
    }

    /// Where snapshot `id`'s manifest is, for messages about it.
    pub fn snapshot_file(&self, id: &SnapshotId) -> std::path::PathBuf {
        self.layout.snapshot(id)
    }

    /// How a dictionary is named for people: its path in the repository.
    pub fn dictionary_label(&self, hash: &DictHash) -> String {
        super::backend::FileKind::Dictionary.relative(&hash.to_string())
    }

    /// The records of records file `file`, which snapshot `snapshot` names.
    pub fn read_records_file<T: serde::de::DeserializeOwned>(
        &self,
        snapshot: &SnapshotId,
        file: &RecordsId,
    ) -> Result<Vec<T>, RepoError> {
        super::records::read_file(&self.layout, snapshot, file)
    }

    /// Where `manifest`'s records place their messages (inline, or from its records files).
    pub fn record_locations(&self, manifest: &Manifest) -> Result<Vec<RecordLocation>, RepoError> {
        super::record_locations(&self.layout, manifest)
    }

    /// Files that belong to no part of the format: leftovers of crashed writers in `tmp/`,
    /// foreign files elsewhere. For `verify`'s notes; never an error.
    pub fn stray_files(&self) -> Vec<String> {
        let (stray, scratch) = self.layout.backend().strays().unwrap_or_default();
        let mut notes: Vec<String> = stray
            .iter()
            .map(|name| format!("stray file {name} (not part of the repository format)"))
            .collect();
        notes.extend(scratch.iter().map(|name| {
            format!(
                "stray temporary file tmp/{name} (left by an interrupted writer; the next writer \
                 removes it)"
            )
        }));
        notes
    }
}

/// See [`Repository::frames_of`].
pub struct PackFrames {
    layout: super::Layout,
    pack: PackId,
    frame: Vec<u8>,
}

impl PackFrames {
    /// The stored bytes of one frame (valid until the next call).
    pub fn read(&mut self, entry: &PackEntry) -> Result<&[u8], RepoError> {
        self.frame.resize(entry.length as usize, 0);
        self.layout
            .backend()
            .read_at(
                FileKind::Pack,
                &self.pack.to_string(),
                entry.offset,
                &mut self.frame,
            )
            .map_err(RepoError::io("cannot read", self.layout.pack(&self.pack)))?;
        Ok(&self.frame)
    }
}

/// For tests of what a broken repository does to the modules above: a file where the index
/// directory of the repository at `root` belongs, so that opening a writer there fails.
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
pub(crate) fn break_index_for_tests(root: &std::path::Path) {
    let index = root.join(super::layout::INDEX);
    let _ = std::fs::remove_dir_all(&index);
    let _ = std::fs::write(&index, b"not a directory");
}
