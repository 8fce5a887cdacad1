//! The index: message hash -> (pack, offset, length). A cache, never the truth: the packs are.
//!
//! It is stored as immutable files `index/<id>.json`, each describing some packs completely;
//! each commit adds one file for the packs it wrote, so a commit costs O(new data). On open, the
//! index files are read, entries of packs that no longer exist are dropped, and packs that no
//! index file covers (a crash between pack and index, a deleted index) are scanned from their
//! tar headers. A writer then records the scanned packs in a new index file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::backend::FileKind;
use super::error::RepoError;
use super::id::{DictHash, MessageHash, PackId};
use super::layout::Layout;
use super::pack::PackEntry;

/// Version of the index file schema.
pub const INDEX_VERSION: u32 = 1;

/// One `index/<id>.json` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexFile {
    pub version: u32,
    pub packs: Vec<IndexedPack>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexedPack {
    pub id: PackId,
    pub entries: Vec<PackEntry>,
}

/// What [`Index::load`] found.
pub struct Loaded {
    pub index: Index,
    /// Packs no index file covers, scanned from their tar headers.
    pub scanned: Vec<IndexedPack>,
    /// Packs no index file covers whose tar headers cannot be read, and why.
    pub unreadable: Vec<(PackId, String)>,
}

/// Where a message is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub pack: PackId,
    pub entry: PackEntry,
}

/// A [`Location`] as the index keeps it: the pack and the dictionary by their number in the
/// index's tables. A location spelled out is 120 bytes, and a repository of 100,000
/// messages kept 20 MB of them, mostly the same few pack and dictionary hashes over again.
#[derive(Debug, Clone, Copy)]
struct Slot {
    pack: u32,
    /// `NO_DICT`, or a number in `Index::dicts`.
    dict: u32,
    offset: u64,
    length: u64,
}

const NO_DICT: u32 = u32::MAX;

/// A pack the index covers.
#[derive(Debug, Clone, Copy)]
struct PackSlot {
    number: u32,
    entries: usize,
}

/// The in-memory index.
#[derive(Debug, Default, Clone)]
pub struct Index {
    messages: HashMap<MessageHash, Slot>,
    packs: BTreeMap<PackId, PackSlot>,
    /// Pack ids by number.
    pack_ids: Vec<PackId>,
    /// Dictionary hashes by number, and numbers by hash (a damaged index file could name
    /// any number of them).
    dicts: Vec<DictHash>,
    dict_numbers: HashMap<DictHash, u32>,
    /// Index file names (stems) that were read.
    files: Vec<String>,
}

impl Index {
    pub fn get(&self, hash: &MessageHash) -> Option<Location> {
        self.messages
            .get(hash)
            .map(|slot| self.location(hash, slot))
    }

    fn location(&self, hash: &MessageHash, slot: &Slot) -> Location {
        Location {
            pack: self.pack_ids[slot.pack as usize],
            entry: PackEntry {
                hash: *hash,
                offset: slot.offset,
                length: slot.length,
                dict: (slot.dict != NO_DICT).then(|| self.dicts[slot.dict as usize]),
            },
        }
    }

    pub fn contains(&self, hash: &MessageHash) -> bool {
        self.messages.contains_key(hash)
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn has_pack(&self, id: &PackId) -> bool {
        self.packs.contains_key(id)
    }

    /// Packs and their entry counts, in the order of their ids.
    pub fn packs(&self) -> impl Iterator<Item = (&PackId, usize)> {
        self.packs.iter().map(|(id, p)| (id, p.entries))
    }

    pub fn messages(&self) -> impl Iterator<Item = (&MessageHash, Location)> {
        self.messages
            .iter()
            .map(|(hash, slot)| (hash, self.location(hash, slot)))
    }

    /// The index file stems this index was read from.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Notes that an index file now covers some packs.
    pub fn record_file(&mut self, name: String) {
        self.files.push(name);
    }

    /// The index files that now cover the packs, after some were rewritten.
    pub(super) fn set_files(&mut self, names: Vec<String>) {
        self.files = names;
    }

    /// Makes room for `more` messages at once: a run that will store many messages grows the
    /// table once instead of doubling it again and again, each time holding the old table
    /// and the new one together.
    pub fn reserve(&mut self, more: usize) {
        self.messages.reserve(more);
    }

    /// Adds a pack's entries. A message stored twice (two writers' crash leftovers) keeps its
    /// first location; both are valid copies.
    pub fn add_pack(&mut self, pack: PackId, entries: &[PackEntry]) {
        self.add_pack_preferring(pack, entries, |_| false);
    }

    /// Like [`Index::add_pack`], but the messages `prefer` names take their location in this
    /// pack even when they have one already: a good copy replacing a damaged one.
    pub fn add_pack_preferring(
        &mut self,
        pack: PackId,
        entries: &[PackEntry],
        prefer: impl Fn(&MessageHash) -> bool,
    ) {
        let next = self.pack_ids.len() as u32;
        let slot = self.packs.entry(pack).or_insert(PackSlot {
            number: next,
            entries: 0,
        });
        slot.entries += entries.len();
        let number = slot.number;
        if number == next {
            self.pack_ids.push(pack);
        }
        self.messages.reserve(entries.len());
        for entry in entries {
            let dict = match entry.dict {
                None => NO_DICT,
                Some(d) => *self.dict_numbers.entry(d).or_insert_with(|| {
                    self.dicts.push(d);
                    (self.dicts.len() - 1) as u32
                }),
            };
            let slot = Slot {
                pack: number,
                dict,
                offset: entry.offset,
                length: entry.length,
            };
            if prefer(&entry.hash) {
                self.messages.insert(entry.hash, slot);
            } else {
                self.messages.entry(entry.hash).or_insert(slot);
            }
        }
    }

    /// The messages whose location is in `pack`, in offset order.
    pub fn placed_in(&self, pack: &PackId) -> Vec<PackEntry> {
        let Some(number) = self.packs.get(pack).map(|p| p.number) else {
            return Vec::new();
        };
        let mut entries: Vec<PackEntry> = self
            .messages
            .iter()
            .filter(|(_, slot)| slot.pack == number)
            .map(|(hash, slot)| self.location(hash, slot).entry)
            .collect();
        entries.sort_by_key(|e| e.offset);
        entries
    }

    /// Takes out what [`Index::add_pack`] put in for `packs` (read from an index file that
    /// then turned out damaged). A message that an earlier pack holds too keeps that
    /// location: the first added wins, and it was not one of these.
    pub(super) fn forget_packs(&mut self, packs: &[PackId]) {
        let mut numbers = std::collections::HashSet::new();
        for id in packs {
            if let Some(slot) = self.packs.remove(id) {
                numbers.insert(slot.number);
            }
        }
        if !numbers.is_empty() {
            self.messages
                .retain(|_, slot| !numbers.contains(&slot.pack));
        }
    }

    /// Reads every index file and reconciles it with the packs present. Returns the index, the
    /// packs that had to be scanned (not covered by any index file), and the packs that could
    /// not even be scanned (damaged; their messages are simply not in the index — `verify`
    /// reports them, and a writer stores their messages again when it meets them).
    pub fn load(layout: &Layout) -> Result<Loaded, RepoError> {
        let present: Vec<PackId> = layout.names(FileKind::Pack, |s| s.parse().ok())?;
        let names = Index::file_names(layout)?;
        let mut index = Index::default();
        for name in names {
            let path = layout.index_file(&name);
            let bytes = layout.read(FileKind::Index, &name)?;
            let mut added = Vec::new();
            let read = parse_index_packs(&path, &bytes, &mut |pack| {
                if present.binary_search(&pack.id).is_ok() && !index.has_pack(&pack.id) {
                    index.add_pack(pack.id, &pack.entries);
                    added.push(pack.id);
                }
            });
            match read {
                Ok(()) => index.files.push(name),
                // A damaged index file is only a cache miss: nothing of it is kept, and its
                // packs are scanned below.
                Err(RepoError::Corrupt { .. }) => index.forget_packs(&added),
                Err(e) => return Err(e),
            }
        }
        let mut scanned = Vec::new();
        let mut unreadable = Vec::new();
        for pack in present {
            if index.has_pack(&pack) {
                continue;
            }
            let entries = match super::pack::scan_pack_in(layout.backend(), layout.codec(), &pack) {
                Ok(entries) => entries,
                Err(e) => {
                    unreadable.push((pack, format!("cannot read its tar headers: {e}")));
                    continue;
                }
            };
            index.add_pack(pack, &entries);
            scanned.push(IndexedPack { id: pack, entries });
        }
        Ok(Loaded {
            index,
            scanned,
            unreadable,
        })
    }

    /// The stems of the index files on disk, in order: for `verify`, which reads them one at
    /// a time with [`Index::read_file`].
    pub fn file_names(layout: &Layout) -> Result<Vec<String>, RepoError> {
        layout.names(FileKind::Index, |s| Some(s.to_string()))
    }

    /// Index file `name` as it is on disk, handed over a pack at a time (see
    /// [`parse_index_packs`]): for `verify`, which compares each listing with its pack.
    pub fn read_file(
        layout: &Layout,
        name: &str,
        each: &mut dyn FnMut(IndexedPack),
    ) -> Result<(), RepoError> {
        let bytes = layout.read(FileKind::Index, name)?;
        parse_index_packs(&layout.index_file(name), &bytes, each)
    }
}

/// Parses one index file read from `path` whole, every pack held at once (the fuzz checks
/// write it back and compare; the commands read index files a pack at a time).
pub fn parse_index_file(path: &Path, bytes: &[u8]) -> Result<IndexFile, RepoError> {
    let mut packs = Vec::new();
    parse_index_packs(path, bytes, &mut |mut pack| {
        // Exactly sized: a vector grown while parsing has up to twice the room it needs.
        pack.entries.shrink_to_fit();
        packs.push(pack);
    })?;
    Ok(IndexFile {
        version: INDEX_VERSION,
        packs,
    })
}

/// Parses the index file read from `path` a pack at a time, decompressing as it goes and
/// handing each pack to `each` as it is parsed. Once `prune` has replaced them, one index
/// file names every message of the repository: 18 MB of JSON and 9 MB of entries at 100,000
/// messages, which every command that opens the repository used to hold at once, beside the
/// index they went into.
///
/// On an error, the packs before it have been handed over already: a caller that must not
/// keep part of a damaged file takes them back out.
pub fn parse_index_packs(
    path: &Path,
    bytes: &[u8],
    each: &mut dyn FnMut(IndexedPack),
) -> Result<(), RepoError> {
    // The bytes are in memory: any error from here on is damage, not I/O.
    let corrupt = |e: &dyn std::fmt::Display| RepoError::corrupt(path, e.to_string());
    let json = super::compressed::reader(bytes)
        .map_err(|e| corrupt(&format!("cannot decompress: {e}")))?;
    let mut de = serde_json::Deserializer::from_reader(json);
    serde::de::DeserializeSeed::deserialize(IndexFileSeed(each), &mut de)
        .and_then(|()| de.end())
        .map_err(|e| corrupt(&e))
}

/// Deserializes an [`IndexFile`], handing its packs on one by one instead of collecting them.
/// `version` must come before `packs` (as it is written), so that no pack of a file in an
/// unknown version is handed over.
struct IndexFileSeed<'f>(&'f mut dyn FnMut(IndexedPack));

impl<'de> serde::de::DeserializeSeed<'de> for IndexFileSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for IndexFileSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an index file: {\"version\": 1, \"packs\": [...]}")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Field {
            Version,
            Packs,
        }
        let (mut version, mut packs) = (false, false);
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Version if version => return Err(A::Error::duplicate_field("version")),
                Field::Packs if packs => return Err(A::Error::duplicate_field("packs")),
                Field::Version => {
                    let found: u32 = map.next_value()?;
                    if found != INDEX_VERSION {
                        return Err(A::Error::custom(format!("unknown index version {found}")));
                    }
                    version = true;
                }
                Field::Packs if !version => {
                    return Err(A::Error::custom("\"packs\" before \"version\""));
                }
                Field::Packs => {
                    map.next_value_seed(PacksSeed(&mut *self.0))?;
                    packs = true;
                }
            }
        }
        match (version, packs) {
            (false, _) => Err(A::Error::missing_field("version")),
            (_, false) => Err(A::Error::missing_field("packs")),
            _ => Ok(()),
        }
    }
}

struct PacksSeed<'f>(&'f mut dyn FnMut(IndexedPack));

impl<'de> serde::de::DeserializeSeed<'de> for PacksSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for PacksSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of packs")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(pack) = seq.next_element::<IndexedPack>()? {
            (self.0)(pack);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, offset: u64, dict: Option<DictHash>) -> PackEntry {
        PackEntry {
            hash: MessageHash::of(&[n]),
            offset,
            length: 100 + u64::from(n),
            dict,
        }
    }

    #[test]
    fn locations_read_back_as_they_were_added() {
        let (d1, d2) = (DictHash::of(b"one"), DictHash::of(b"two"));
        let (p1, p2) = (PackId::of(b"pack one"), PackId::of(b"pack two"));
        let first = [entry(1, 512, None), entry(2, 700, Some(d1))];
        let second = [
            entry(3, 512, Some(d2)),
            entry(4, 4 << 30, Some(d1)),
            // Also in the first pack: the first location stays.
            entry(1, 900, None),
        ];
        let mut index = Index::default();
        index.add_pack(p1, &first);
        index.add_pack(p2, &second);

        assert_eq!(index.len(), 4);
        for e in &first {
            assert_eq!(
                index.get(&e.hash),
                Some(Location {
                    pack: p1,
                    entry: *e
                })
            );
        }
        for e in &second[..2] {
            assert_eq!(
                index.get(&e.hash),
                Some(Location {
                    pack: p2,
                    entry: *e
                })
            );
        }
        assert_eq!(index.get(&MessageHash::of(b"absent")), None);
        let counts: Vec<_> = index.packs().map(|(id, n)| (*id, n)).collect();
        let mut expected = vec![(p1, 2), (p2, 3)];
        expected.sort();
        assert_eq!(counts, expected);
        let mut listed: Vec<_> = index.messages().map(|(h, l)| (*h, l.pack)).collect();
        listed.sort();
        let mut wanted = vec![
            (first[0].hash, p1),
            (first[1].hash, p1),
            (second[0].hash, p2),
            (second[1].hash, p2),
        ];
        wanted.sort();
        assert_eq!(listed, wanted);

        // Packs taken back out (their index file was damaged) leave what other packs hold.
        let mut forgetting = index.clone();
        forgetting.forget_packs(&[p2]);
        assert!(!forgetting.has_pack(&p2));
        assert_eq!(forgetting.len(), 2);
        assert_eq!(forgetting.get(&first[0].hash).map(|l| l.pack), Some(p1));
        assert_eq!(forgetting.get(&second[0].hash), None);
        // Scanned afterwards, the pack comes back, under a number of its own.
        forgetting.add_pack(p2, &second);
        assert_eq!(
            forgetting.get(&second[1].hash).map(|l| l.entry),
            Some(second[1])
        );
        assert_eq!(forgetting.get(&first[0].hash).map(|l| l.pack), Some(p1));
        assert_eq!(forgetting.len(), 4);

        // A pack added again (a second index file naming it) keeps its number.
        index.add_pack(p1, &[entry(5, 1200, Some(d2))]);
        assert_eq!(index.get(&MessageHash::of(&[5])).map(|l| l.pack), Some(p1));
        assert_eq!(index.pack_ids.len(), 2);
        assert_eq!(index.dicts.len(), 2);
    }

    fn read_all(json: &[u8], compress: bool) -> (Vec<IndexedPack>, Result<(), RepoError>) {
        let bytes = if compress {
            super::super::compressed::compress(json).unwrap()
        } else {
            json.to_vec()
        };
        let mut packs = Vec::new();
        let result = parse_index_packs(Path::new("index/x.json.zst"), &bytes, &mut |p| {
            packs.push(p)
        });
        (packs, result)
    }

    #[test]
    fn index_files_are_read_a_pack_at_a_time_as_written() {
        let d = DictHash::of(b"dict");
        let written = IndexFile {
            version: INDEX_VERSION,
            packs: (0..5u8)
                .map(|p| IndexedPack {
                    id: PackId::of(&[p]),
                    entries: (0..=p).map(|n| entry(n, 512, Some(d))).collect(),
                })
                .collect(),
        };
        let json = serde_json::to_vec(&written).unwrap();
        for compress in [true, false] {
            let (packs, result) = read_all(&json, compress);
            result.unwrap();
            assert_eq!(
                serde_json::to_vec(&packs).unwrap(),
                serde_json::to_vec(&written.packs).unwrap()
            );
        }
        let packed = super::super::compressed::compress(&json).unwrap();
        let whole = parse_index_file(Path::new("x"), &packed).unwrap();
        assert_eq!(serde_json::to_vec(&whole).unwrap(), json);
        assert!(
            whole
                .packs
                .iter()
                .all(|p| p.entries.capacity() == p.entries.len())
        );
    }

    #[test]
    fn damaged_or_unknown_index_files_are_corrupt_and_hand_over_no_pack_of_an_unknown_version() {
        let pack = serde_json::to_string(&IndexedPack {
            id: PackId::of(b"p"),
            entries: vec![entry(1, 512, None)],
        })
        .unwrap();
        let cases = [
            (
                format!(r#"{{"version":2,"packs":[{pack}]}}"#),
                "unknown index version 2",
                0,
            ),
            (format!(r#"{{"packs":[{pack}],"version":1}}"#), "before", 0),
            (r#"{"version":1}"#.to_string(), "missing field `packs`", 0),
            (
                format!(r#"{{"version":1,"packs":[{pack}],"extra":1}}"#),
                "unknown field",
                1,
            ),
            (format!(r#"{{"version":1,"packs":[{pack},{pack}"#), "EOF", 2),
            (
                format!(r#"{{"version":1,"packs":[{pack}]}} trailing"#),
                "trailing",
                1,
            ),
        ];
        for (json, says, handed) in cases {
            let (packs, result) = read_all(json.as_bytes(), true);
            match result {
                Err(e @ RepoError::Corrupt { .. }) => {
                    assert!(e.to_string().contains(says), "{json}: {e}")
                }
                other => panic!("{json}: {other:?}"),
            }
            assert_eq!(packs.len(), handed, "{json}");
        }
        // A frame cut short is damage too, not an I/O error.
        let packed = super::super::compressed::compress(
            format!(r#"{{"version":1,"packs":[{pack}]}}"#).as_bytes(),
        )
        .unwrap();
        let cut = parse_index_packs(Path::new("x"), &packed[..packed.len() - 3], &mut |_| {});
        assert!(matches!(cut, Err(RepoError::Corrupt { .. })), "{cut:?}");
    }
}
