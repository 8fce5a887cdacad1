//! Identifiers: 32-byte SHA-256 digests written as 64 lower-case hex digits, and snapshot ids.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

macro_rules! digest_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The SHA-256 of `bytes`.
            pub fn of(bytes: &[u8]) -> $name {
                $name(Sha256::digest(bytes).into())
            }

            pub fn to_hex(&self) -> String {
                to_hex(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.to_hex()[..12])
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<$name, String> {
                parse_hex32(s).map($name)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                // Parsed from the borrowed text: an index or records file holds tens of
                // thousands of these, and a String for each was a measurable part of reading.
                struct Hex;
                impl serde::de::Visitor<'_> for Hex {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("64 hex digits")
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$name, E> {
                        parse_hex32(s).map($name).map_err(E::custom)
                    }
                }
                d.deserialize_str(Hex)
            }
        }
    };
}

digest_id!(
    /// SHA-256 of a message's exact bytes as RETR delivered them (after dot-unstuffing).
    MessageHash
);
digest_id!(
    /// SHA-256 of a whole pack file; the pack's file name.
    PackId
);
digest_id!(
    /// SHA-256 of a zstd dictionary's bytes; the dictionary's file name.
    DictHash
);
digest_id!(
    /// SHA-256 of a records file (a committed snapshot's message list); the file's name.
    RecordsId
);
digest_id!(
    /// SHA-256 of a server listing as a snapshot saw it (see `Manifest::listing`).
    ListingDigest
);
digest_id!(
    /// A repository's random identity.
    RepoId
);

/// A snapshot's id: `YYYYMMDDTHHMMSSZ-` and 8 hex digits — the start time's milliseconds as
/// three digits, then five random ones — so ids sort by start time to the millisecond (one
/// account's runs are serialized by the repository lock, so they never share one).
#[derive(
    Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct SnapshotId(String);

impl SnapshotId {
    /// A new id for a snapshot taken at `time`.
    pub fn new(time: chrono::DateTime<chrono::Utc>) -> SnapshotId {
        let random = random_bytes();
        SnapshotId(format!(
            "{}-{:03x}{}",
            time.format("%Y%m%dT%H%M%SZ"),
            time.timestamp_subsec_millis().min(999),
            &to_hex(&random)[..5]
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Accepts only the shape we generate, so an id can never name a path outside the repo.
    pub fn parse(text: &str) -> Option<SnapshotId> {
        let ok = text.len() == 25
            && text.is_char_boundary(16)
            && text[..16]
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'T' || b == b'Z')
            && text.as_bytes()[16] == b'-'
            && text[17..].bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| SnapshotId(text.to_string()))
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// 32 bytes that differ between calls, processes and hosts: clock, pid, a counter and the
/// address of a stack variable, hashed. Ids need uniqueness, not secrecy.
pub fn random_bytes() -> [u8; 32] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = Sha256::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.update(now.as_nanos().to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let marker = 0u8;
    hasher.update((&marker as *const u8 as usize).to_le_bytes());
    if let Ok(boot) = std::fs::read("/proc/sys/kernel/random/uuid") {
        hasher.update(boot);
    }
    hasher.finalize().into()
}

pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

fn parse_hex32(s: &str) -> Result<[u8; 32], String> {
    // Manifests and index files hold tens of thousands of hashes: a table lookup per digit
    // (this was 9 % of a nothing-new snapshot with a `match` per digit, and 18 % with
    // `from_str_radix` per byte).
    const INVALID: u8 = 0xff;
    const NIBBLES: [u8; 256] = {
        let mut table = [INVALID; 256];
        let mut i = 0;
        while i < 10 {
            table[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            table[b'a' as usize + i] = 10 + i as u8;
            table[b'A' as usize + i] = 10 + i as u8;
            i += 1;
        }
        table
    };
    let bytes = s.as_bytes();
    let bad = || format!("{s:?} is not a SHA-256 (64 hex digits)");
    if bytes.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    let mut invalid = 0u8;
    for (byte, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let (hi, lo) = (NIBBLES[pair[0] as usize], NIBBLES[pair[1] as usize]);
        invalid |= (hi | lo) & 0xf0;
        *byte = hi << 4 | lo;
    }
    if invalid != 0 {
        return Err(bad());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let h = MessageHash::of(b"abc");
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(h.to_hex().parse::<MessageHash>().unwrap(), h);
        assert_eq!(h.to_hex().to_uppercase().parse::<MessageHash>().unwrap(), h);
        assert!("abc".parse::<MessageHash>().is_err());
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<MessageHash>(&json).unwrap(), h);
    }

    #[test]
    fn snapshot_ids_are_unique_sortable_and_validated() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-26T15:00:00Z")
            .unwrap()
            .to_utc();
        let a = SnapshotId::new(t);
        let b = SnapshotId::new(t);
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("20261126T150000Z-"));
        assert_eq!(SnapshotId::parse(a.as_str()), Some(a));
        assert_eq!(SnapshotId::parse("../../etc/passwd"), None);
        assert_eq!(SnapshotId::parse("20261126T150000Z-zzzzzzzz"), None);
        // Within one second, ids still sort by time.
        let mut previous = SnapshotId::new(t);
        for ms in [1, 9, 10, 250, 999] {
            let later = SnapshotId::new(t + chrono::Duration::milliseconds(ms));
            assert!(later > previous, "{later} after {previous}");
            previous = later;
        }
    }
}
