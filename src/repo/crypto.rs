//! Encryption at rest: the keys of an encrypted repository and the sealed objects its files are
//! made of. (This module is the codec's cryptography; the repository does not use it yet.)
//!
//! **Keys.** A repository has one random [`MasterKey`]: a 32-byte encryption key and a separate
//! 32-byte id key. It is stored only wrapped: each [`KeyFile`] holds it sealed under a key
//! derived from one password with Argon2id (its parameters and salt in the file), so several
//! passwords can open one repository and one can be removed or changed without touching
//! anything else — restic's and borg's design.
//!
//! **Sealed objects.** Every encrypted byte string (a key file's key, a metadata file, a
//! message's frame) has one format, built so that a large one can be opened as it is read:
//!
//! ```text
//! prefix (16 random bytes) || segment 0 || segment 1 || ... || segment n-1
//! segment i = XChaCha20-Poly1305(key, nonce_i, plaintext_i, aad = context)   (ciphertext || 16-byte tag)
//! nonce_i   = prefix || i as u32 big-endian || 0 0 0 || (1 if i = n-1 else 0)
//! ```
//!
//! Every segment's plaintext is [`SEGMENT`] bytes except the last, which holds the rest (1 to
//! [`SEGMENT`] bytes, or none when the whole plaintext is empty and so n = 1). The counter in
//! the nonce makes reordered segments fail, the last-segment flag a truncated or extended
//! object; `context` (what the object is and its name) makes one moved to another name fail.
//! Nonces are random: 128 bits per object make a repeated prefix as likely as guessing a
//! 64-bit key after four billion objects, and XChaCha's 192-bit nonce leaves room for the
//! counter without the bookkeeping a counter-based nonce would need across machines writing
//! one bucket.
//!
//! **Names.** In an encrypted repository a message is stored under [`MasterKey::name_of`], an
//! HMAC-SHA256 with the id key of its SHA-256: identical messages still share one name, but
//! whoever lacks the key cannot compute the name of a message they know, so cannot test whether
//! it is stored. (Keying the digest rather than the bytes gives the same guarantee, as SHA-256
//! is collision-resistant, and lets names be computed from records without reading messages.)

use std::io::{self, Read, Write};

use hmac::{KeyInit as _, Mac as _};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::failure::FailureKind;
use crate::repo::MessageHash;

/// Plaintext bytes per segment: large enough that the 16-byte tags cost 0.02 %, small enough
/// that opening a segment buffers little.
pub const SEGMENT: usize = 64 * 1024;

const PREFIX: usize = 16;
const TAG: usize = 16;

/// What sealing adds to a plaintext of `len` bytes.
pub fn overhead(len: usize) -> usize {
    PREFIX + TAG * len.div_ceil(SEGMENT).max(1)
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CryptoError {
    #[error("the repository password does not open any key in keys/")]
    WrongPassword,
    /// A sealed object did not authenticate: changed, truncated, or moved from another name.
    #[error("{0}: it was changed or damaged (it does not authenticate)")]
    Tampered(String),
    #[error("key file {name}: {why}")]
    BadKeyFile { name: String, why: String },
    #[error("the system's random number generator failed: {0}")]
    Random(String),
}

impl CryptoError {
    pub fn kind(&self) -> FailureKind {
        match self {
            CryptoError::WrongPassword => FailureKind::Auth,
            CryptoError::Tampered(_) | CryptoError::BadKeyFile { .. } => FailureKind::Data,
            CryptoError::Random(_) => FailureKind::Internal,
        }
    }
}

fn random<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| CryptoError::Random(e.to_string()))?;
    Ok(bytes)
}

/// A repository's keys. Never written anywhere unwrapped; wiped from memory when dropped.
pub struct MasterKey {
    encryption: Zeroizing<[u8; 32]>,
    id: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<secret>)")
    }
}

impl MasterKey {
    /// A new random key, for a new repository.
    pub fn generate() -> Result<MasterKey, CryptoError> {
        Ok(MasterKey {
            encryption: Zeroizing::new(random()?),
            id: Zeroizing::new(random()?),
        })
    }

    fn from_bytes(bytes: &[u8]) -> Option<MasterKey> {
        let (encryption, id) = bytes.split_at_checked(32)?;
        Some(MasterKey {
            encryption: Zeroizing::new(encryption.try_into().ok()?),
            id: Zeroizing::new(id.try_into().ok()?),
        })
    }

    fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(64));
        bytes.extend_from_slice(&*self.encryption);
        bytes.extend_from_slice(&*self.id);
        bytes
    }

    /// The name a message with SHA-256 `hash` is stored under.
    pub fn name_of(&self, hash: &MessageHash) -> MessageHash {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&*self.id)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(b"popbackup message name v1\0");
        mac.update(&hash.0);
        MessageHash(mac.finalize().into_bytes().into())
    }

    /// `plaintext` sealed, for the object `context` names (see the module's comment).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal_with(&self.encryption, context, plaintext)
    }

    /// The plaintext of a sealed object, or [`CryptoError::Tampered`] naming `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open_with(&self.encryption, context, sealed)
            .ok_or_else(|| CryptoError::Tampered(context.to_string()))
    }

    /// Opens a sealed object of `len` bytes as it is read from `inner`: only authenticated
    /// bytes come out, and a failure is an `InvalidData` error naming `context`.
    pub fn opener<R: Read>(&self, context: &str, inner: R, len: u64) -> Opener<R> {
        Opener::new(&self.encryption, context, inner, len)
    }

    /// Seals what is written into it for the object `context` names, into `out`: for what is
    /// too large to seal in memory (a large message's frame, a pack's table).
    pub fn sealer<W: Write>(&self, context: &str, out: W) -> io::Result<Sealer<W>> {
        Sealer::new(&self.encryption, context, out)
    }
}

fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305 {
        key: Zeroizing::new(*key),
    }
}

/// XChaCha20-Poly1305 as draft-irtf-cfrg-xchacha defines it: HChaCha20 of the key and the
/// nonce's first 16 bytes gives a subkey, used for IETF ChaCha20-Poly1305 (RFC 8439) with
/// four zero bytes and the nonce's last 8 as its nonce. The subkey comes from RustCrypto's
/// `chacha20`; the AEAD itself is ring's (assembly, already linked for TLS), because
/// RustCrypto's Poly1305 does not inline its AVX2 code unless the whole build targets AVX2,
/// which makes it several times slower on the small frames every message is sealed in. The
/// test `the_cipher_is_xchacha20_poly1305` holds this byte-identical to RustCrypto's
/// `XChaCha20Poly1305`.
struct XChaCha20Poly1305 {
    key: Zeroizing<[u8; 32]>,
}

impl XChaCha20Poly1305 {
    fn ietf(&self, nonce: &[u8; 24]) -> (ring::aead::LessSafeKey, ring::aead::Nonce) {
        let mut head = [0u8; 16];
        head.copy_from_slice(&nonce[..16]);
        let subkey = Zeroizing::new(<[u8; 32]>::from(chacha20::hchacha::<chacha20::R20>(
            (&*self.key).into(),
            (&head).into(),
        )));
        let mut ietf_nonce = [0u8; 12];
        ietf_nonce[4..].copy_from_slice(&nonce[16..]);
        let key = ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &subkey[..])
            .map(ring::aead::LessSafeKey::new)
            // A 32-byte key is the one length ChaCha20-Poly1305 takes.
            .unwrap_or_else(|_| unreachable!("ChaCha20-Poly1305 refused a 32-byte key"));
        (key, ring::aead::Nonce::assume_unique_for_key(ietf_nonce))
    }

    /// Encrypts `buf` in place and returns its tag.
    fn seal(&self, nonce: &[u8; 24], aad: &[u8], buf: &mut [u8]) -> Option<[u8; TAG]> {
        let (key, nonce) = self.ietf(nonce);
        let tag = key
            .seal_in_place_separate_tag(nonce, ring::aead::Aad::from(aad), buf)
            .ok()?;
        tag.as_ref().try_into().ok()
    }

    /// Decrypts `buf` in place when `tag` authenticates it; `None` (and `buf` unspecified)
    /// when it does not.
    fn open(&self, nonce: &[u8; 24], aad: &[u8], buf: &mut [u8], tag: &[u8; TAG]) -> Option<()> {
        let (key, nonce) = self.ietf(nonce);
        key.open_in_place_separate_tag(
            nonce,
            ring::aead::Aad::from(aad),
            ring::aead::Tag::from(*tag),
            buf,
            0..,
        )
        .ok()
        .map(|_| ())
    }
}

fn nonce(prefix: &[u8; PREFIX], index: u32, last: bool) -> [u8; 24] {
    let mut nonce = [0u8; 24];
    nonce[..PREFIX].copy_from_slice(prefix);
    nonce[PREFIX..PREFIX + 4].copy_from_slice(&index.to_be_bytes());
    nonce[23] = u8::from(last);
    nonce
}

fn seal_with(key: &[u8; 32], context: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let segments = plaintext.len().div_ceil(SEGMENT).max(1);
    if u32::try_from(segments).is_err() {
        return Err(CryptoError::Tampered(format!(
            "{context}: too large to seal"
        )));
    }
    let prefix: [u8; PREFIX] = random()?;
    let cipher = cipher(key);
    let mut out = Vec::with_capacity(plaintext.len() + overhead(plaintext.len()));
    out.extend_from_slice(&prefix);
    for i in 0..segments {
        let part = &plaintext
            [(i * SEGMENT).min(plaintext.len())..((i + 1) * SEGMENT).min(plaintext.len())];
        let start = out.len();
        out.extend_from_slice(part);
        let tag = cipher
            .seal(
                &nonce(&prefix, i as u32, i + 1 == segments),
                context.as_bytes(),
                &mut out[start..],
            )
            .ok_or_else(|| CryptoError::Tampered(format!("{context}: cannot be sealed")))?;
        out.extend_from_slice(&tag);
    }
    Ok(out)
}

/// Whether a sealer can have written a segment of `len` sealed bytes as segment `index`: a
/// last segment is empty only when it is the only one.
fn segment_is_possible(len: usize, last: bool, index: u32) -> bool {
    len >= TAG && !(last && len == TAG && index > 0)
}

/// What [`Opener`] reads from `sealed`, opened in memory: each byte is copied once and
/// decrypted in place (verify opens every small frame this way). `None` when it does not
/// authenticate.
fn open_with(key: &[u8; 32], context: &str, sealed: &[u8]) -> Option<Vec<u8>> {
    let (prefix, mut rest) = sealed.split_first_chunk::<PREFIX>()?;
    let cipher = cipher(key);
    let mut out = Vec::with_capacity(rest.len());
    let mut index = 0u32;
    loop {
        let last = rest.len() <= SEGMENT + TAG;
        let (segment, next) = rest.split_at(rest.len().min(SEGMENT + TAG));
        if !segment_is_possible(segment.len(), last, index) {
            return None;
        }
        let (body, tag) = segment.split_at(segment.len() - TAG);
        let tag: &[u8; TAG] = tag.try_into().ok()?;
        let start = out.len();
        out.extend_from_slice(body);
        cipher.open(
            &nonce(prefix, index, last),
            context.as_bytes(),
            &mut out[start..],
            tag,
        )?;
        if last {
            return Some(out);
        }
        rest = next;
        index = index.checked_add(1)?;
    }
}

/// A sealed object written as its plaintext arrives (see [`MasterKey::sealer`]): the same
/// bytes [`MasterKey::seal`] makes of the whole plaintext. A segment is sealed only once the
/// next byte arrives (or at [`Sealer::finish`]), because only then is it known whether it is
/// the last.
pub struct Sealer<W: Write> {
    out: W,
    cipher: XChaCha20Poly1305,
    context: String,
    prefix: [u8; PREFIX],
    index: u32,
    /// Plaintext of the segment not yet sealed, with room for its tag.
    segment: Vec<u8>,
}

impl<W: Write> Sealer<W> {
    fn new(key: &[u8; 32], context: &str, mut out: W) -> io::Result<Sealer<W>> {
        let prefix: [u8; PREFIX] = random().map_err(io::Error::other)?;
        out.write_all(&prefix)?;
        Ok(Sealer {
            out,
            cipher: cipher(key),
            context: context.to_string(),
            prefix,
            index: 0,
            segment: Vec::with_capacity(SEGMENT + TAG),
        })
    }

    fn seal_segment(&mut self, last: bool) -> io::Result<()> {
        let tag = self
            .cipher
            .seal(
                &nonce(&self.prefix, self.index, last),
                self.context.as_bytes(),
                &mut self.segment[..],
            )
            .ok_or_else(|| io::Error::other(format!("{}: cannot be sealed", self.context)))?;
        self.segment.extend_from_slice(&tag);
        self.out.write_all(&self.segment)?;
        self.segment.clear();
        self.index = self
            .index
            .checked_add(1)
            .ok_or_else(|| io::Error::other(format!("{}: too large to seal", self.context)))?;
        Ok(())
    }

    /// Seals the last segment and hands back the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.seal_segment(true)?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.segment.len() == SEGMENT {
            self.seal_segment(false)?;
        }
        let n = buf.len().min(SEGMENT - self.segment.len());
        self.segment.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A sealed object opened as it is read (see [`MasterKey::opener`]).
pub struct Opener<R> {
    inner: R,
    cipher: XChaCha20Poly1305,
    context: String,
    prefix: Option<[u8; PREFIX]>,
    /// Sealed bytes not yet read from `inner`, prefix excluded once it is read.
    remaining: u64,
    index: u32,
    /// The opened segment and how much of it was handed out.
    segment: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: Read> Opener<R> {
    fn new(key: &[u8; 32], context: &str, inner: R, len: u64) -> Opener<R> {
        Opener {
            inner,
            cipher: cipher(key),
            context: context.to_string(),
            prefix: None,
            remaining: len,
            index: 0,
            segment: Vec::new(),
            pos: 0,
            done: false,
        }
    }

    fn tampered(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            CryptoError::Tampered(self.context.clone()),
        )
    }

    /// Reads and authenticates the next segment into `self.segment`.
    fn next_segment(&mut self) -> io::Result<()> {
        let prefix = match self.prefix {
            Some(prefix) => prefix,
            None => {
                if self.remaining < (PREFIX + TAG) as u64 {
                    return Err(self.tampered());
                }
                let mut prefix = [0u8; PREFIX];
                self.inner
                    .read_exact(&mut prefix)
                    .map_err(|e| self.short(e))?;
                self.remaining -= PREFIX as u64;
                self.prefix = Some(prefix);
                prefix
            }
        };
        let full = (SEGMENT + TAG) as u64;
        let last = self.remaining <= full;
        let len = self.remaining.min(full) as usize;
        if !segment_is_possible(len, last, self.index) {
            return Err(self.tampered());
        }
        self.segment.resize(len, 0);
        self.inner
            .read_exact(&mut self.segment)
            .map_err(|e| self.short(e))?;
        self.remaining -= len as u64;
        let body = len - TAG;
        let tag: [u8; TAG] = self.segment[body..]
            .try_into()
            .map_err(|_| self.tampered())?;
        let opened = self.cipher.open(
            &nonce(&prefix, self.index, last),
            self.context.as_bytes(),
            &mut self.segment[..body],
            &tag,
        );
        if opened.is_none() {
            self.segment.clear();
            return Err(self.tampered());
        }
        self.segment.truncate(body);
        self.pos = 0;
        self.done = last;
        self.index = self.index.checked_add(1).ok_or_else(|| self.tampered())?;
        Ok(())
    }

    /// A sealed object that ends before its stated length is damaged, not an I/O failure.
    fn short(&self, e: io::Error) -> io::Error {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            self.tampered()
        } else {
            e
        }
    }
}

impl<R: Read> Read for Opener<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.segment.len() {
            if self.done {
                return Ok(0);
            }
            self.next_segment()?;
        }
        let n = buf.len().min(self.segment.len() - self.pos);
        buf[..n].copy_from_slice(&self.segment[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Argon2id's cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl KdfParams {
    /// About half a second and 64 MiB on the development machine (seven passes over 64 MiB):
    /// slow for whoever guesses passwords, once per command for the user.
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        iterations: 7,
        parallelism: 1,
    };

    /// Bounds on what a key file may ask for: a hostile one must not make us allocate or
    /// compute without end before the password is even checked.
    const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
    const MAX_ITERATIONS: u32 = 100;
    const MAX_PARALLELISM: u32 = 16;

    fn check(&self) -> Result<argon2::Params, String> {
        if self.memory_kib > Self::MAX_MEMORY_KIB
            || self.iterations > Self::MAX_ITERATIONS
            || self.parallelism > Self::MAX_PARALLELISM
        {
            return Err(format!(
                "its Argon2id parameters ({self:?}) are beyond what popbackup accepts"
            ));
        }
        argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| format!("its Argon2id parameters are not valid: {e}"))
    }

    fn derive(&self, password: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, String> {
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            self.check()?,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(password, salt, &mut *key)
            .map_err(|e| format!("cannot derive its key: {e}"))?;
        Ok(key)
    }
}

/// The sealed form of the master key in a key file: context, and its exact length.
const KEY_CONTEXT: &str = "popbackup key file v1";
const SEALED_KEY_LEN: usize = PREFIX + 64 + TAG;

/// One password's way into a repository: `keys/<id>.json`, where `<id>` is the SHA-256 of
/// the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub version: u32,
    /// When it was made (RFC 3339), and on which host by which user: for `key list`.
    pub created: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub user: String,
    pub kdf: Kdf,
    /// The master key sealed under the password's key, base64.
    pub key: String,
}

/// How a key file's password becomes the key that opens it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kdf {
    /// `argon2id` (version 0x13).
    pub algorithm: String,
    pub params: KdfParams,
    /// Base64, 8 to 64 bytes.
    pub salt: String,
}

impl KeyFile {
    pub const VERSION: u32 = 1;

    /// `master` wrapped for `password`.
    pub fn wrap(
        master: &MasterKey,
        password: &[u8],
        params: KdfParams,
        created: String,
        host: String,
        user: String,
    ) -> Result<KeyFile, CryptoError> {
        let salt: [u8; 16] = random()?;
        let bad = |why: String| CryptoError::BadKeyFile {
            name: "(new)".into(),
            why,
        };
        let wrapping = params.derive(password, &salt).map_err(bad)?;
        let sealed = seal_with(&wrapping, KEY_CONTEXT, &master.to_bytes())?;
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(KeyFile {
            version: Self::VERSION,
            created,
            host,
            user,
            kdf: Kdf {
                algorithm: "argon2id".into(),
                params,
                salt: b64.encode(salt),
            },
            key: b64.encode(sealed),
        })
    }

    /// Parses a key file, checking everything that can be checked without the password.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<KeyFile, CryptoError> {
        let bad = |why: String| CryptoError::BadKeyFile {
            name: name.to_string(),
            why,
        };
        let file: KeyFile =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not a key file: {e}")))?;
        if file.version != Self::VERSION {
            return Err(bad(format!(
                "key file version {}, but this popbackup reads version {}; use a newer popbackup",
                file.version,
                Self::VERSION
            )));
        }
        if file.kdf.algorithm != "argon2id" {
            return Err(bad(format!(
                "unknown key derivation {:?}",
                file.kdf.algorithm
            )));
        }
        file.kdf.params.check().map_err(bad)?;
        let (salt, sealed) = file.decoded().map_err(bad)?;
        if !(8..=64).contains(&salt.len()) || sealed.len() != SEALED_KEY_LEN {
            return Err(bad("its salt or sealed key has the wrong length".into()));
        }
        Ok(file)
    }

    fn decoded(&self) -> Result<(Vec<u8>, Vec<u8>), String> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64
            .decode(&self.kdf.salt)
            .map_err(|e| format!("salt: {e}"))?;
        let key = b64.decode(&self.key).map_err(|e| format!("key: {e}"))?;
        Ok((salt, key))
    }

    /// The master key, if `password` is this file's.
    pub fn unwrap(&self, password: &[u8]) -> Result<MasterKey, CryptoError> {
        let bad = |why: String| CryptoError::BadKeyFile {
            name: "(key file)".into(),
            why,
        };
        let (salt, sealed) = self.decoded().map_err(bad)?;
        let wrapping = self.kdf.params.derive(password, &salt).map_err(bad)?;
        let mut opened = Zeroizing::new(Vec::with_capacity(64));
        Opener::new(
            &wrapping,
            KEY_CONTEXT,
            sealed.as_slice(),
            sealed.len() as u64,
        )
        .read_to_end(&mut opened)
        .map_err(|_| CryptoError::WrongPassword)?;
        MasterKey::from_bytes(&opened).ok_or(CryptoError::WrongPassword)
    }

    /// The file's bytes, as written under `keys/`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// Key files that are quick to make, for tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Argon2id's smallest costs: the tests check the format, not the hardness.
    pub(crate) const FAST: KdfParams = KdfParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };

    pub(crate) fn key_file(master: &MasterKey, password: &str) -> KeyFile {
        KeyFile::wrap(
            master,
            password.as_bytes(),
            FAST,
            "2026-12-03T00:00:00Z".into(),
            "host".into(),
            "user".into(),
        )
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::key_file;
    use super::*;

    #[test]
    fn the_cipher_is_xchacha20_poly1305() {
        use chacha20poly1305::aead::{AeadInOut, KeyInit};
        let key: [u8; 32] = random().unwrap();
        let ours = cipher(&key);
        let reference = chacha20poly1305::XChaCha20Poly1305::new(&key.into());
        for len in [0, 1, 63, 64, 65, 1400, SEGMENT] {
            let nonce: [u8; 24] = random().unwrap();
            let plain: Vec<u8> = (0..len).map(|i| (i * 13 % 256) as u8).collect();
            let aad = format!("packs/p frame {len}");
            let mut sealed = plain.clone();
            let tag = ours.seal(&nonce, aad.as_bytes(), &mut sealed).unwrap();
            let mut expected = plain.clone();
            let expected_tag = reference
                .encrypt_inout_detached(&nonce.into(), aad.as_bytes(), (&mut expected[..]).into())
                .unwrap();
            assert_eq!(sealed, expected, "{len}");
            assert_eq!(tag[..], expected_tag[..], "{len}");

            let mut opened = expected.clone();
            ours.open(&nonce, aad.as_bytes(), &mut opened, &tag)
                .unwrap();
            assert_eq!(opened, plain, "{len}");
            let mut wrong_tag = tag;
            wrong_tag[len % TAG] ^= 1;
            let mut opened = expected.clone();
            assert!(
                ours.open(&nonce, aad.as_bytes(), &mut opened, &wrong_tag)
                    .is_none()
            );
            let mut opened = expected.clone();
            assert!(
                ours.open(&nonce, b"another name", &mut opened, &tag)
                    .is_none()
            );
        }
    }

    #[test]
    fn sealed_objects_of_every_size_open_whole_and_streamed() {
        let key = MasterKey::generate().unwrap();
        for len in [
            0,
            1,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            3 * SEGMENT,
            3 * SEGMENT + 7,
        ] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let sealed = key.seal("packs/p frame 1", &plain).unwrap();
            assert_eq!(sealed.len(), len + overhead(len), "{len}");
            assert_eq!(key.open("packs/p frame 1", &sealed).unwrap(), plain);
            // Read a few bytes at a time.
            let mut opener = key.opener("packs/p frame 1", sealed.as_slice(), sealed.len() as u64);
            let mut out = Vec::new();
            let mut chunk = [0u8; 1000];
            loop {
                let n = opener.read(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&chunk[..n]);
            }
            assert_eq!(out, plain);
            // The same plaintext seals differently each time (random nonces).
            assert_ne!(key.seal("packs/p frame 1", &plain).unwrap(), sealed);
            // Sealed as it is written, in pieces that straddle segments: the same format.
            let mut sealer = key.sealer("packs/p frame 1", Vec::new()).unwrap();
            for piece in plain.chunks(5000) {
                sealer.write_all(piece).unwrap();
            }
            let streamed = sealer.finish().unwrap();
            assert_eq!(streamed.len(), sealed.len(), "{len}");
            assert_eq!(key.open("packs/p frame 1", &streamed).unwrap(), plain);
        }
    }

    #[test]
    fn a_changed_truncated_reordered_or_moved_object_does_not_open() {
        let key = MasterKey::generate().unwrap();
        let plain: Vec<u8> = (0..3 * SEGMENT + 100).map(|i| i as u8).collect();
        let sealed = key.seal("index/a", &plain).unwrap();
        let tampered = |bytes: &[u8]| key.open("index/a", bytes).is_err();
        // Every byte of the prefix, of each tag, and samples of each segment.
        let seg = SEGMENT + TAG;
        let mut positions: Vec<usize> = (0..PREFIX).collect();
        for s in 0..4 {
            let start = PREFIX + s * seg;
            positions.extend([start, start + 1, (start + seg - 1).min(sealed.len() - 1)]);
        }
        for at in positions {
            let mut bad = sealed.clone();
            bad[at] ^= 0x01;
            assert!(tampered(&bad), "a flipped bit at {at} opened");
        }
        // Cut at a segment boundary: the new last segment was not sealed as last.
        assert!(tampered(&sealed[..PREFIX + 2 * seg]));
        assert!(tampered(&sealed[..sealed.len() - 1]));
        let mut longer = sealed.clone();
        longer.extend_from_slice(&sealed[PREFIX..PREFIX + seg]);
        assert!(tampered(&longer));
        let mut swapped = sealed[..PREFIX].to_vec();
        swapped.extend_from_slice(&sealed[PREFIX + seg..PREFIX + 2 * seg]);
        swapped.extend_from_slice(&sealed[PREFIX..PREFIX + seg]);
        swapped.extend_from_slice(&sealed[PREFIX + 2 * seg..]);
        assert!(tampered(&swapped));
        // Another name, another key.
        assert!(key.open("index/b", &sealed).is_err());
        assert!(
            MasterKey::generate()
                .unwrap()
                .open("index/a", &sealed)
                .is_err()
        );
        assert!(tampered(&[]));
        let err = key.open("index/a", &sealed[..10]).unwrap_err();
        assert!(err.to_string().contains("index/a"), "{err}");
        assert_eq!(err.kind(), FailureKind::Data);
    }

    #[test]
    fn a_key_file_opens_with_its_password_only() {
        let master = MasterKey::generate().unwrap();
        let file = key_file(&master, "correct horse");
        let bytes = file.to_bytes();
        let parsed = KeyFile::parse("keys/k.json", &bytes).unwrap();
        assert_eq!(parsed, file);
        let opened = parsed.unwrap(b"correct horse").unwrap();
        assert_eq!(opened.to_bytes(), master.to_bytes());
        let err = parsed.unwrap(b"correct horse ").unwrap_err();
        assert!(matches!(err, CryptoError::WrongPassword));
        assert_eq!(err.kind(), FailureKind::Auth);
        // Neither key appears in the file, in any encoding.
        use base64::Engine as _;
        let text = String::from_utf8(bytes.clone()).unwrap();
        for secret in [&master.encryption[..], &master.id[..]] {
            assert!(!text.contains(&crate::repo::id::to_hex(secret)));
            assert!(!text.contains(&base64::engine::general_purpose::STANDARD.encode(secret)));
        }
        // Two files for one key: both open it.
        let other = key_file(&master, "battery staple");
        assert_ne!(other.kdf.salt, file.kdf.salt);
        let opened = other.unwrap(b"battery staple").unwrap();
        assert_eq!(
            opened.name_of(&MessageHash([1; 32])),
            master.name_of(&MessageHash([1; 32]))
        );
    }

    #[test]
    fn a_changed_key_file_is_refused_or_does_not_open() {
        let master = MasterKey::generate().unwrap();
        let file = key_file(&master, "pw");
        let mut sealed = file.decoded().unwrap().1;
        sealed[PREFIX + 3] ^= 1;
        use base64::Engine as _;
        let changed = KeyFile {
            key: base64::engine::general_purpose::STANDARD.encode(&sealed),
            ..file.clone()
        };
        assert!(matches!(
            changed.unwrap(b"pw"),
            Err(CryptoError::WrongPassword)
        ));
        let mut costly = file.clone();
        costly.kdf.params.memory_kib = u32::MAX;
        let err = KeyFile::parse("keys/x.json", &costly.to_bytes()).unwrap_err();
        assert!(err.to_string().contains("keys/x.json"), "{err}");
        for text in ["", "{}", "[1]", "{\"version\": 2}"] {
            assert!(KeyFile::parse("k", text.as_bytes()).is_err(), "{text}");
        }
        let mut newer = file.clone();
        newer.version = 2;
        let err = KeyFile::parse("k", &newer.to_bytes()).unwrap_err();
        assert!(err.to_string().contains("use a newer popbackup"), "{err}");
    }

    #[test]
    fn names_are_keyed_and_stable() {
        let (a, b) = (
            MasterKey::generate().unwrap(),
            MasterKey::generate().unwrap(),
        );
        let hash = MessageHash::of(b"Subject: hi\r\n\r\nbody\r\n");
        assert_eq!(a.name_of(&hash), a.name_of(&hash));
        assert_ne!(a.name_of(&hash), b.name_of(&hash));
        assert_ne!(a.name_of(&hash), hash);
    }
}
