//! The index files against the packs.
//!
//! An index file lists, for each pack it covers, every entry of the pack's table. `verify`
//! needs those listings three ways: to read a pack whose own table is lost, to prove that each
//! listing matches its pack, and, when something is damaged, to say which messages a pack
//! should have held. Held whole they are 9 MB at 100,000 messages, which `prune` (it verifies
//! first) held on top of its own index. So the files are read one at a time and each listing
//! is kept as a digest; a listing is read again only for a pack that does not match, and all
//! of them only when something is damaged.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sha2::{Digest as _, Sha256};

use crate::repo::{IndexedPack, MessageHash, PackEntry, PackId, RepoError, Repository};

use super::pack::PackCheck;

/// A SHA-256 of a set of pack entries (hash, offset, length): equal for equal sets, whatever
/// their order or repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntriesDigest([u8; 32]);

impl EntriesDigest {
    pub fn of(entries: impl Iterator<Item = (MessageHash, u64, u64)>) -> EntriesDigest {
        let mut sorted: Vec<(MessageHash, u64, u64)> = entries.collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut hasher = Sha256::new();
        for (hash, offset, length) in &sorted {
            hasher.update(hash.0);
            hasher.update(offset.to_be_bytes());
            hasher.update(length.to_be_bytes());
        }
        EntriesDigest(hasher.finalize().into())
    }

    fn of_entries(entries: &[PackEntry]) -> EntriesDigest {
        EntriesDigest::of(entries.iter().map(|e| (e.hash, e.offset, e.length)))
    }

    fn of_check(check: &PackCheck) -> EntriesDigest {
        EntriesDigest::of(check.entries.iter().map(|e| (e.hash, e.offset, e.length)))
    }
}

/// What the readable index files say each pack holds, as digests.
pub struct IndexClaims {
    /// The readable index files, in name order.
    files: Vec<String>,
    /// For each pack, a listing's file (a position in `files`) and digest, in file order.
    listings: HashMap<PackId, Vec<(usize, EntriesDigest)>>,
}

/// The index files compared entry by entry with the packs.
pub struct IndexDetail {
    /// Listings that place messages where their pack does not hold them.
    pub problems: Vec<String>,
    /// For each pack an index file lists, the messages it should hold.
    pub expected: BTreeMap<PackId, BTreeSet<MessageHash>>,
}

impl IndexClaims {
    /// Reads every index file once. A file that cannot be read whole is left out, with a note
    /// saying so: the packs it covers are checked by their own tables.
    pub fn read(repo: &Repository, notes: &mut Vec<String>) -> Result<IndexClaims, RepoError> {
        let mut claims = IndexClaims {
            files: Vec::new(),
            listings: HashMap::new(),
        };
        for name in repo.index_file_names()? {
            let mut digests = Vec::new();
            let read = repo.read_index_file(&name, &mut |pack| {
                digests.push((pack.id, EntriesDigest::of_entries(&pack.entries)));
            });
            if let Err(e) = read {
                notes.push(format!(
                    "index file {name} is unreadable and ignored (the packs it covers are \
                     scanned instead): {e}"
                ));
                continue;
            }
            let file = claims.files.len();
            claims.files.push(name);
            for (pack, digest) in digests {
                claims
                    .listings
                    .entry(pack)
                    .or_default()
                    .push((file, digest));
            }
        }
        Ok(claims)
    }

    /// What the first index file that lists `pack` says it holds, read again: for a pack whose
    /// own table cannot be read.
    pub fn listing(&self, repo: &Repository, pack: PackId) -> Option<Vec<PackEntry>> {
        let &(file, _) = self.listings.get(&pack)?.first()?;
        let mut found = None;
        // A file that became unreadable since: the pack is reported without a listing.
        let _ = repo.read_index_file(&self.files[file], &mut |listed: IndexedPack| {
            if listed.id == pack && found.is_none() {
                found = Some(listed.entries);
            }
        });
        found
    }

    /// Whether every listing is exactly its pack's entries, and every listed pack was checked.
    /// `checks` is sorted by pack id.
    pub fn all_match(&self, checks: &[PackCheck]) -> bool {
        self.listings.iter().all(|(pack, listings)| {
            let Ok(i) = checks.binary_search_by_key(pack, |c| c.id) else {
                return false;
            };
            let actual = EntriesDigest::of_check(&checks[i]);
            listings.iter().all(|(_, digest)| *digest == actual)
        })
    }

    /// Compares every listing with its pack entry by entry, reading the files again.
    pub fn detail(&self, repo: &Repository, checks: &[PackCheck]) -> IndexDetail {
        let mut detail = IndexDetail {
            problems: Vec::new(),
            expected: BTreeMap::new(),
        };
        for name in &self.files {
            let mut compare = |listed: IndexedPack| {
                detail
                    .expected
                    .entry(listed.id)
                    .or_default()
                    .extend(listed.entries.iter().map(|e| e.hash));
                let Ok(i) = checks.binary_search_by_key(&listed.id, |c| c.id) else {
                    return;
                };
                let check = &checks[i];
                let found: BTreeSet<(MessageHash, u64, u64)> = check
                    .entries
                    .iter()
                    .map(|e| (e.hash, e.offset, e.length))
                    .collect();
                let misplaced = listed
                    .entries
                    .iter()
                    .map(|e| (e.hash, e.offset, e.length))
                    .filter(|e| !found.contains(e))
                    .collect::<BTreeSet<_>>()
                    .len();
                if misplaced > 0 && check.problems.is_empty() {
                    detail.problems.push(format!(
                        "index file {name} places {misplaced} message(s) in pack {} where the \
                         pack does not hold them; remove {} (it is rebuilt from the packs)",
                        listed.id,
                        repo.index_file_label(name)
                    ));
                }
            };
            // The file was read whole by `read`; if it fails now it changed since, and what
            // it handed over before failing is compared all the same.
            let _ = repo.read_index_file(name, &mut compare);
        }
        detail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entries_digest_is_of_the_set() {
        let e = |n: u8, offset: u64, length: u64| (MessageHash::of(&[n]), offset, length);
        let a = EntriesDigest::of([e(1, 512, 10), e(2, 522, 7)].into_iter());
        let b = EntriesDigest::of([e(2, 522, 7), e(1, 512, 10), e(1, 512, 10)].into_iter());
        assert_eq!(a, b, "order and repeats do not matter");
        for other in [
            vec![e(1, 512, 10)],
            vec![e(1, 512, 10), e(2, 522, 8)],
            vec![e(1, 512, 10), e(2, 523, 7)],
            vec![e(1, 512, 10), e(3, 522, 7)],
            vec![e(1, 512, 10), e(2, 522, 7), e(3, 529, 1)],
        ] {
            assert_ne!(a, EntriesDigest::of(other.iter().copied()), "{other:?}");
        }
    }
}
