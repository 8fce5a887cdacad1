//! The codec between the repository's files and its [`Backend`](super::backend::Backend):
//! what a file's bytes are on storage. A plain repository stores them as they are; an
//! encrypted one seals them with its master key (see `crypto` and `docs/FORMAT.md`,
//! "Encrypted repositories"). Every read and write of a repository file goes through one.
//!
//! What is sealed, and under which context (the associated data that binds a sealed object
//! to its place):
//! - every metadata file (index, manifests, checkpoints, records, dictionaries,
//!   `verified.json`), whole, under its relative name (`snapshots/<id>.json.zst`): a file
//!   copied over another does not open;
//! - each message's frame in a pack on its own, under [`FRAME_CONTEXT`], so that one message
//!   is still read alone and prune can copy frames between packs unopened (a frame cannot be
//!   bound to its name: a streamed message's name is known only once it has all arrived;
//!   every read checks the message against its name instead);
//! - a pack's table, under [`TABLE_CONTEXT`];
//! - `config.json`'s settings, inside the file (see `repo::read_config`).
//!
//! Key files and the pack's tar structure are not sealed.
//!
//! Names: a message is stored under its SHA-256 in a plain repository and under the keyed
//! [`MasterKey::name_of`] of it in an encrypted one; a content-addressed metadata file
//! (records, index) likewise under its content's SHA-256 or the keyed name of it.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::sync::Arc;

use super::backend::FileKind;
use super::crypto::{MasterKey, Sealer};
use super::id::MessageHash;

/// The context every frame is sealed under.
pub const FRAME_CONTEXT: &str = "packs/frame";
/// The context a pack's table is sealed under.
pub const TABLE_CONTEXT: &str = "packs/table";
/// The context of `config.json`'s sealed settings.
pub const CONFIG_CONTEXT: &str = "config.json";

/// How a repository's files are stored (see the module's comment).
#[derive(Debug, Clone, Default)]
pub enum Codec {
    #[default]
    Plain,
    Sealed(Arc<MasterKey>),
}

impl FileKind {
    /// Whether files of this kind are sealed whole in an encrypted repository. A pack is not:
    /// its frames and table are, one by one. `config.json` seals its settings inside.
    pub(crate) fn is_sealed_whole(self) -> bool {
        !matches!(self, FileKind::Config | FileKind::Key | FileKind::Pack)
    }
}

impl Codec {
    pub fn is_sealed(&self) -> bool {
        matches!(self, Codec::Sealed(_))
    }

    /// The name a message with SHA-256 `hash` is stored under.
    pub fn name(&self, hash: &MessageHash) -> MessageHash {
        match self {
            Codec::Plain => *hash,
            Codec::Sealed(key) => key.name_of(hash),
        }
    }

    /// The name of a content-addressed file whose content (before sealing) is `bytes`.
    pub fn content_name(&self, bytes: &[u8]) -> [u8; 32] {
        self.name(&MessageHash::of(bytes)).0
    }

    /// What is stored for file `name` of `kind` whose content is `plain`.
    pub fn seal_file<'a>(
        &self,
        kind: FileKind,
        name: &str,
        plain: &'a [u8],
    ) -> io::Result<Cow<'a, [u8]>> {
        match self {
            Codec::Sealed(_) if kind.is_sealed_whole() => self.seal(&kind.relative(name), plain),
            _ => Ok(Cow::Borrowed(plain)),
        }
    }

    /// The content of file `name` of `kind` stored as `stored`; an error says why it does not
    /// open (changed since it was written, or put in another file's place).
    pub fn open_file(
        &self,
        kind: FileKind,
        name: &str,
        stored: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        match self {
            Codec::Sealed(key) if kind.is_sealed_whole() => key
                .open(&kind.relative(name), &stored)
                .map_err(|e| e.to_string()),
            _ => Ok(stored),
        }
    }

    /// `plain` sealed under `context` (as it is in a plain repository).
    pub fn seal<'a>(&self, context: &str, plain: &'a [u8]) -> io::Result<Cow<'a, [u8]>> {
        match self {
            Codec::Plain => Ok(Cow::Borrowed(plain)),
            Codec::Sealed(key) => key
                .seal(context, plain)
                .map(Cow::Owned)
                .map_err(io::Error::other),
        }
    }

    /// The content of `stored`, sealed under `context`; `InvalidData` when it does not open.
    pub fn open<'a>(&self, context: &str, stored: &'a [u8]) -> io::Result<Cow<'a, [u8]>> {
        match self {
            Codec::Plain => Ok(Cow::Borrowed(stored)),
            Codec::Sealed(key) => key
                .open(context, stored)
                .map(Cow::Owned)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }

    /// The content of the `len` stored bytes `inner` yields, sealed under `context`, opened
    /// as it is read.
    pub fn reader<'a, R: Read + 'a>(
        &self,
        context: &str,
        inner: R,
        len: u64,
    ) -> Box<dyn Read + 'a> {
        match self {
            Codec::Plain => Box::new(inner),
            Codec::Sealed(key) => Box::new(key.opener(context, inner, len)),
        }
    }

    /// A writer that stores what it is given into `out`, sealed under `context`; its
    /// [`SealingWriter::finish`] must be called.
    pub fn writer<W: Write>(&self, context: &str, out: W) -> io::Result<SealingWriter<W>> {
        Ok(match self {
            Codec::Plain => SealingWriter::Plain(out),
            Codec::Sealed(key) => SealingWriter::Sealed(key.sealer(context, out)?),
        })
    }
}

/// What [`Codec::writer`] makes.
pub enum SealingWriter<W: Write> {
    Plain(W),
    Sealed(Sealer<W>),
}

impl<W: Write> SealingWriter<W> {
    /// Ends the object (seals its last segment) and hands back the writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            SealingWriter::Plain(out) => Ok(out),
            SealingWriter::Sealed(sealer) => sealer.finish(),
        }
    }
}

impl<W: Write> Write for SealingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            SealingWriter::Plain(out) => out.write(buf),
            SealingWriter::Sealed(sealer) => sealer.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            SealingWriter::Plain(out) => out.flush(),
            SealingWriter::Sealed(sealer) => sealer.flush(),
        }
    }
}
