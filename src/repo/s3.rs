//! A repository in a bucket of an S3-compatible object store (AWS S3, Backblaze B2, Wasabi,
//! MinIO, Ceph RGW, Garage), through `opendal`'s S3 service.
//!
//! Object names are the local layout's paths under the prefix (`PREFIX/packs/<id>.tar`), so
//! a bucket can be copied to a disk and opened there. What differs (`docs/FORMAT.md`):
//! - There is no rename: a file is published by one PUT (or one completed multipart upload),
//!   which the store makes visible whole or not at all. Packs are still built in a local
//!   scratch directory first (their table needs random access) and uploaded when finished.
//! - The writer lock is an object under `locks/` (see [`lock`]), not an `flock`.
//!
//! opendal is async; its blocking operator runs each call on a small tokio runtime owned by
//! this backend, so nothing else in popbackup knows about async. Transient failures
//! (connection resets, 5xx, throttling) are retried with backoff by opendal's retry layer;
//! what is left is turned into an `io::Error` carrying a [`StorageFailure`] that says which
//! endpoint or bucket and what to do.

mod lock;

use std::io::{self, Read, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opendal::blocking;
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::options::{ListOptions, ReadOptions, WriteOptions};

use super::backend::{Backend, FileKind, HeldLock, Listed, StorageFailure};
use super::error::RepoError;
use super::location::S3Location;
use crate::durable;
use crate::failure::FailureKind;

/// Packs above this size are uploaded in parts of this size (S3's multipart upload), so a
/// 200 MB message is never held whole in memory.
const UPLOAD_PART: usize = 8 << 20;
/// Small reads from a pack fetch this much at once and keep it: restore, `cat` and the
/// index rebuild read one frame after another from the same pack, and one request per
/// frame would cost a round trip each (tens of milliseconds on most stores).
const READ_AHEAD: u64 = 4 << 20;
/// How many bytes of packs are kept for later reads, most recently used first.
const BLOCK_CACHE: usize = 16 << 20;

/// A repository under `s3://BUCKET/PREFIX`.
pub struct S3Backend {
    location: S3Location,
    op: blocking::Operator,
    /// Owns the threads the blocking operator runs on; shared with the lock's refresher.
    runtime: Arc<tokio::runtime::Runtime>,
    scratch: PathBuf,
    /// Blocks read from packs, most recently used first (at most [`BLOCK_CACHE`] bytes).
    blocks: Mutex<std::collections::VecDeque<Block>>,
    /// Sizes of the packs read from (they never change): a block must not be asked for
    /// past a pack's end.
    pack_sizes: Mutex<std::collections::HashMap<String, u64>>,
}

/// Bytes of a pack: (its name, the offset of the first byte, the bytes).
type Block = (String, u64, Arc<Vec<u8>>);

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl S3Backend {
    /// Sets up the client; nothing is sent until the first request.
    pub fn connect(location: &S3Location) -> Result<S3Backend, RepoError> {
        let invalid = |e: &dyn std::fmt::Display| {
            RepoError::Invalid(format!("cannot set up {}: {e}", location.url()))
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("popbackup-s3")
            .enable_all()
            .build()
            .map_err(|e| invalid(&e))?;
        let mut builder = opendal::services::S3::default()
            .bucket(&location.bucket)
            .root(&format!("/{}", location.prefix))
            .region(&location.region)
            .access_key_id(&location.access_key_id)
            .secret_access_key(location.secret_access_key.expose())
            // Only what the configuration says: no ~/.aws files, no instance metadata.
            .disable_config_load()
            .disable_ec2_metadata();
        if let Some(endpoint) = &location.endpoint {
            builder = builder.endpoint(endpoint);
        }
        let http = http_client().map_err(|e| invalid(&e))?;
        let op = opendal::Operator::new(builder)
            .map_err(|e| invalid(&e))?
            .with_context(opendal::OperationContext::new().with_http_transport(
                opendal::HttpTransporter::new(
                    opendal_http_transport_reqwest::ReqwestTransport::new(http),
                ),
            ))
            .layer(
                RetryLayer::new()
                    .with_max_times(5)
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(5))
                    .with_jitter(),
            )
            .layer(
                TimeoutLayer::new()
                    .with_timeout(Duration::from_secs(120))
                    .with_io_timeout(Duration::from_secs(60)),
            );
        let op = {
            let _entered = runtime.enter();
            blocking::Operator::new(op).map_err(|e| invalid(&e))?
        };
        Ok(S3Backend {
            scratch: scratch_dir(location),
            location: location.clone(),
            op,
            runtime: Arc::new(runtime),
            blocks: Mutex::default(),
            pack_sizes: Mutex::default(),
        })
    }

    fn url(&self, object: &str) -> String {
        let url = self.location.url();
        if url.prefix.is_empty() {
            format!("s3://{}/{object}", url.bucket)
        } else {
            format!("s3://{}/{}/{object}", url.bucket, url.prefix)
        }
    }

    /// The io::Error for a failed request on `object`.
    fn failure(&self, object: &str, error: opendal::Error) -> io::Error {
        describe(&self.location, object, error)
    }

    fn read_range(&self, object: &str, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let options = ReadOptions {
            range: (offset..offset + len).into(),
            ..Default::default()
        };
        match self.op.read_options(object, options) {
            Ok(buffer) => Ok(buffer.to_vec()),
            // A range that starts at or past the end.
            Err(e) if e.kind() == opendal::ErrorKind::RangeNotSatisfied => Ok(Vec::new()),
            Err(e) => Err(self.failure(object, e)),
        }
    }

    fn upload(&self, object: &str, built: durable::TempFile) -> io::Result<()> {
        let mut file = std::fs::File::open(built.path())?;
        let options = WriteOptions {
            chunk: Some(UPLOAD_PART),
            concurrent: 1,
            ..Default::default()
        };
        let writer = self
            .op
            .writer_options(object, options)
            .map_err(|e| self.failure(object, e))?;
        let mut writer = writer.into_std_write();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            writer
                .write_all(&buf[..n])
                .map_err(|e| annotate(self, object, e))?;
        }
        // The object becomes visible only when the upload is completed here.
        writer.close().map_err(|e| annotate(self, object, e))?;
        drop(built);
        Ok(())
    }

    fn pack_size(&self, name: &str) -> io::Result<u64> {
        if let Some(size) = self
            .pack_sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(*size);
        }
        let size = self.size(FileKind::Pack, name)?;
        let mut sizes = self.pack_sizes.lock().unwrap_or_else(|e| e.into_inner());
        if sizes.len() > 100_000 {
            sizes.clear();
        }
        sizes.insert(name.to_string(), size);
        Ok(size)
    }

    fn exists(&self, object: &str) -> io::Result<bool> {
        match self.op.stat(object) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound && !no_bucket(&e) => Ok(false),
            Err(e) => Err(self.failure(object, e)),
        }
    }
}

/// A write error from opendal's `std::io::Write` adapter, with the object named.
fn annotate(backend: &S3Backend, object: &str, error: io::Error) -> io::Error {
    match error.downcast::<opendal::Error>() {
        Ok(e) => backend.failure(object, e),
        Err(e) => e,
    }
}

impl Backend for S3Backend {
    fn location(&self, kind: FileKind, name: &str) -> PathBuf {
        PathBuf::from(self.url(&kind.relative(name)))
    }

    fn list(&self, kind: FileKind) -> io::Result<Vec<Listed>> {
        let object = kind.relative("");
        let Some((dir, suffix)) = object.split_once('/') else {
            return match self.op.stat(&object) {
                Ok(meta) => Ok(vec![Listed {
                    name: String::new(),
                    size: meta.content_length(),
                    modified: meta.last_modified().map(Into::into),
                }]),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound && !no_bucket(&e) => {
                    Ok(Vec::new())
                }
                Err(e) => Err(self.failure(&object, e)),
            };
        };
        let dir = format!("{dir}/");
        let entries = self
            .op
            .list_options(&dir, ListOptions::default())
            .map_err(|e| self.failure(&dir, e))?;
        let mut out: Vec<Listed> = entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .filter_map(|e| {
                let stem = e.path().strip_prefix(&dir)?.strip_suffix(suffix)?;
                (!stem.is_empty() && !stem.starts_with('.') && !stem.contains('/')).then(|| {
                    Listed {
                        name: stem.to_string(),
                        size: e.metadata().content_length(),
                        modified: e.metadata().last_modified().map(Into::into),
                    }
                })
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn size(&self, kind: FileKind, name: &str) -> io::Result<u64> {
        let object = kind.relative(name);
        let meta = self
            .op
            .stat(&object)
            .map_err(|e| self.failure(&object, e))?;
        Ok(meta.content_length())
    }

    fn read(&self, kind: FileKind, name: &str) -> io::Result<Vec<u8>> {
        let object = kind.relative(name);
        let buffer = self
            .op
            .read(&object)
            .map_err(|e| self.failure(&object, e))?;
        Ok(buffer.to_vec())
    }

    fn read_at(&self, kind: FileKind, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let object = kind.relative(name);
        let len = buf.len() as u64;
        let short = || io::Error::new(io::ErrorKind::UnexpectedEof, "the file ends before that");
        if kind != FileKind::Pack || len > READ_AHEAD / 2 {
            let got = self.read_range(&object, offset, len)?;
            if got.len() as u64 != len {
                return Err(short());
            }
            buf.copy_from_slice(&got);
            return Ok(());
        }
        // Packs never change once written, so a block read once stays right.
        let cached = {
            let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
            let hit = blocks.iter().position(|(n, start, bytes)| {
                n == name && *start <= offset && offset + len <= start + bytes.len() as u64
            });
            hit.and_then(|i| blocks.remove(i)).map(|block| {
                let found = (block.1, block.2.clone());
                blocks.push_front(block);
                found
            })
        };
        let (start, bytes) = match cached {
            Some(hit) => hit,
            None => {
                let size = self.pack_size(name)?;
                if offset + len > size {
                    return Err(short());
                }
                let window = READ_AHEAD.min(size - offset);
                let bytes = Arc::new(self.read_range(&object, offset, window)?);
                let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
                blocks.push_front((name.to_string(), offset, bytes.clone()));
                let mut total = 0;
                blocks.retain(|(_, _, b)| {
                    total += b.len();
                    total <= BLOCK_CACHE
                });
                (offset, bytes)
            }
        };
        let from = (offset - start) as usize;
        let part = bytes.get(from..from + buf.len()).ok_or_else(short)?;
        buf.copy_from_slice(part);
        Ok(())
    }

    fn open(&self, kind: FileKind, name: &str) -> io::Result<Box<dyn Read + Send>> {
        let object = kind.relative(name);
        let size = self.size(kind, name)?;
        let reader = self
            .op
            .reader_options(
                &object,
                opendal::options::ReaderOptions {
                    chunk: Some(UPLOAD_PART),
                    ..Default::default()
                },
            )
            .and_then(|r| r.into_std_read(0..size))
            .map_err(|e| self.failure(&object, e))?;
        Ok(Box::new(reader))
    }

    fn write(&self, kind: FileKind, name: &str, bytes: &[u8]) -> io::Result<()> {
        let object = kind.relative(name);
        self.op
            .write(&object, bytes.to_vec())
            .map_err(|e| self.failure(&object, e))?;
        Ok(())
    }

    fn publish(&self, kind: FileKind, name: &str, built: durable::TempFile) -> io::Result<()> {
        self.upload(&kind.relative(name), built)
    }

    fn publish_all(
        &self,
        kind: FileKind,
        built: Vec<(String, durable::TempFile)>,
    ) -> io::Result<usize> {
        let mut new = 0;
        for (name, temp) in built {
            let object = kind.relative(&name);
            // Content-addressed: one that is there already has these bytes.
            if self.exists(&object)? {
                continue;
            }
            self.upload(&object, temp)?;
            new += 1;
        }
        Ok(new)
    }

    fn scratch(&self) -> PathBuf {
        self.scratch.clone()
    }

    fn remove(&self, kind: FileKind, name: &str) -> io::Result<()> {
        let object = kind.relative(name);
        self.op
            .delete(&object)
            .map_err(|e| self.failure(&object, e))
    }

    /// An object store has no directories to make; the scratch directory is local.
    fn prepare(&self) -> io::Result<()> {
        durable::create_dir_all(&self.scratch)
    }

    fn clear_scratch(&self) -> io::Result<()> {
        let entries = match std::fs::read_dir(&self.scratch) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            durable::remove_file(&entry.path())?;
        }
        Ok(())
    }

    fn strays(&self) -> io::Result<(Vec<String>, Vec<String>)> {
        let entries = self
            .op
            .list_options(
                "",
                ListOptions {
                    recursive: true,
                    ..Default::default()
                },
            )
            .map_err(|e| self.failure("", e))?;
        let stray = entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| e.path().to_string())
            .filter(|path| !belongs_to_format(path))
            .collect();
        Ok((stray, super::backend::file_names(&self.scratch)))
    }

    fn lock(&self, command: &str) -> Result<Box<dyn HeldLock>, RepoError> {
        let lock = lock::ObjectLock::acquire(self, command)?;
        Ok(Box::new(lock))
    }
}

/// Whether `path` (relative to the prefix) is a name the format gives a file.
fn belongs_to_format(path: &str) -> bool {
    const KINDS: [FileKind; 9] = [
        FileKind::Config,
        FileKind::Verified,
        FileKind::Pack,
        FileKind::Index,
        FileKind::Snapshot,
        FileKind::Checkpoint,
        FileKind::Records,
        FileKind::Dictionary,
        FileKind::Key,
    ];
    if lock::is_lock_object(path) {
        return true;
    }
    KINDS.iter().any(|&kind| {
        let pattern = kind.relative("");
        match pattern.split_once('/') {
            None => path == pattern,
            Some((dir, suffix)) => path
                .strip_prefix(dir)
                .and_then(|p| p.strip_prefix('/'))
                .and_then(|p| p.strip_suffix(suffix))
                .is_some_and(|stem| kind.accepts(stem)),
        }
    })
}

/// The local directory packs are built in before they are uploaded: one per repository,
/// private to the user, under the user's cache directory. Only the lock holder writes to it,
/// so what a crashed writer left there is cleared by the next one.
fn scratch_dir(location: &S3Location) -> PathBuf {
    use sha2::Digest as _;
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let key = format!("{}\n{}", location.endpoint_label(), location.url());
    let digest = sha2::Sha256::digest(key.as_bytes());
    let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    base.join("popbackup").join("scratch").join(name)
}

/// An HTTPS client that trusts what the POP3 client trusts (the system's store), over
/// rustls with `ring`.
fn http_client() -> Result<reqwest::Client, String> {
    let provider = crate::tls::provider();
    let verifier = crate::tls::system_verifier(provider.clone()).map_err(|e| e.to_string())?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())
}

/// Whether a "not found" is the bucket's, not an object's.
fn no_bucket(error: &opendal::Error) -> bool {
    error.to_string().contains("NoSuchBucket")
}

/// What a failed request means for the user: which endpoint or bucket, and what to do.
fn describe(location: &S3Location, object: &str, error: opendal::Error) -> io::Error {
    let endpoint = location.endpoint_label();
    let bucket = &location.bucket;
    let text = error.to_string();
    let (io_kind, kind, message) = match error.kind() {
        _ if no_bucket(&error) => (
            io::ErrorKind::Other,
            FailureKind::Config,
            format!(
                "the bucket `{bucket}` does not exist at {endpoint}: create it, or fix the \
                 bucket in `repository` / --repo (and `region`/`endpoint` in [s3])"
            ),
        ),
        opendal::ErrorKind::NotFound => {
            return io::Error::new(io::ErrorKind::NotFound, format!("{object} is not there"));
        }
        opendal::ErrorKind::PermissionDenied => (
            io::ErrorKind::PermissionDenied,
            FailureKind::Auth,
            format!(
                "{endpoint} refused access key `{}` for bucket `{bucket}`: check access_key_id \
                 and the secret key in [s3], and that the key may read and write the bucket",
                location.access_key_id
            ),
        ),
        opendal::ErrorKind::ConfigInvalid => (
            io::ErrorKind::InvalidInput,
            FailureKind::Config,
            format!("the [s3] settings are not usable: {}", first_line(&text)),
        ),
        opendal::ErrorKind::RateLimited => (
            io::ErrorKind::Other,
            FailureKind::Temporary,
            format!("{endpoint} is throttling requests; run again later"),
        ),
        _ if error.is_temporary() || looks_unreachable(&text) => (
            io::ErrorKind::Other,
            FailureKind::Unavailable,
            format!(
                "cannot reach the object store at {endpoint} ({}): check `endpoint` in [s3] \
                 and the network; nothing unfinished was committed, so the next run resumes",
                cause(&error)
            ),
        ),
        _ => (
            io::ErrorKind::Other,
            FailureKind::Unavailable,
            format!(
                "the object store at {endpoint} failed: {}",
                first_line(&text)
            ),
        ),
    };
    io::Error::new(io_kind, StorageFailure::new(kind, message))
}

fn looks_unreachable(text: &str) -> bool {
    [
        "error sending request",
        "connection",
        "dns",
        "timed out",
        "timeout",
    ]
    .iter()
    .any(|needle| text.to_ascii_lowercase().contains(needle))
}

/// The deepest cause of a failed request, which is the one that says what happened
/// ("Connection refused"), without opendal's request context.
fn cause(error: &opendal::Error) -> String {
    let mut deepest = None;
    let mut next: Option<&dyn std::error::Error> = std::error::Error::source(error);
    while let Some(e) = next {
        let text = first_line(&e.to_string());
        if !text.is_empty() {
            deepest = Some(text);
        }
        next = e.source();
    }
    deepest
        .unwrap_or_else(|| first_line(&error.to_string()))
        .chars()
        .take(200)
        .collect()
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_string()
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
pub(super) mod tests {
    use super::*;
    use crate::repo::location::{S3Secret, S3Url};

    /// The test Garage `scripts/test.sh` starts, at a fresh prefix; `None` (skip) without
    /// one, except under `CI=true`.
    pub(crate) fn garage(name: &str) -> Option<S3Location> {
        let dir = std::env::var("POPBACKUP_GARAGE_DIR")
            .ok()
            .filter(|d| !d.is_empty());
        let text = dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(std::path::Path::new(d).join("garage.env")).ok());
        let Some(text) = text else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but no test Garage (POPBACKUP_GARAGE_DIR={dir:?})"
            );
            eprintln!("SKIPPED: no test Garage; run scripts/test.sh");
            return None;
        };
        let var = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("{key} in garage.env"))
                .to_string()
        };
        let secret = std::fs::read_to_string(var("POPBACKUP_GARAGE_SECRET_FILE")).unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let url = S3Url {
            bucket: var("POPBACKUP_GARAGE_BUCKET"),
            prefix: format!("unit/{name}-{}-{nanos}", std::process::id()),
        };
        Some(S3Location {
            bucket: url.bucket,
            prefix: url.prefix,
            endpoint: var("POPBACKUP_GARAGE_ENDPOINTS")
                .split_whitespace()
                .next()
                .map(str::to_string),
            region: var("POPBACKUP_GARAGE_REGION"),
            access_key_id: var("POPBACKUP_GARAGE_KEY_ID"),
            secret_access_key: S3Secret::new(secret.trim()),
        })
    }

    #[test]
    fn the_formats_names_are_known_and_others_are_strays() {
        let pack = format!("packs/{}.tar", "ab".repeat(32));
        assert!(belongs_to_format(&pack));
        assert!(belongs_to_format("config.json"));
        assert!(belongs_to_format(&format!(
            "locks/{}.json",
            "0f".repeat(16)
        )));
        for stray in [
            "packs/x.tar",
            "notes.txt",
            "locks/x.json",
            "tmp/y",
            "packs/",
        ] {
            assert!(!belongs_to_format(stray), "{stray}");
        }
    }

    #[test]
    fn files_go_up_whole_and_read_back_in_ranges() {
        let Some(location) = garage("backend") else {
            return;
        };
        let b = S3Backend::connect(&location).unwrap();
        b.prepare().unwrap();
        assert!(b.list(FileKind::Index).unwrap().is_empty());
        assert!(b.list(FileKind::Config).unwrap().is_empty());
        b.write(FileKind::Index, "bb", b"second").unwrap();
        b.write(FileKind::Config, "", b"{}").unwrap();
        let listed = b.list(FileKind::Index).unwrap();
        assert_eq!((listed[0].name.as_str(), listed[0].size), ("bb", 6));
        assert!(listed[0].modified.is_some());
        assert_eq!(b.list(FileKind::Config).unwrap()[0].size, 2);
        assert_eq!(
            b.read(FileKind::Index, "zz").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );

        // A pack larger than one upload part goes up in parts, from the scratch directory.
        let big: Vec<u8> = (0..(UPLOAD_PART + 12345) as u32)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut built = durable::TempFile::new(&b.scratch(), "pack").unwrap();
        std::io::Write::write_all(built.file(), &big).unwrap();
        b.publish(FileKind::Pack, "cd", built).unwrap();
        assert_eq!(std::fs::read_dir(b.scratch()).unwrap().count(), 0);
        assert_eq!(b.size(FileKind::Pack, "cd").unwrap(), big.len() as u64);
        let mut streamed = Vec::new();
        b.open(FileKind::Pack, "cd")
            .unwrap()
            .read_to_end(&mut streamed)
            .unwrap();
        assert!(streamed == big);
        // Small reads (through the block cache) and a large one; the end is the end.
        for (offset, len) in [(0, 10), (5, 100), (UPLOAD_PART as u64 - 3, 7), (1, 3 << 20)] {
            let mut buf = vec![0u8; len];
            b.read_at(FileKind::Pack, "cd", offset, &mut buf).unwrap();
            assert!(
                buf[..] == big[offset as usize..offset as usize + len],
                "{offset}+{len}"
            );
        }
        let mut past = [0u8; 10];
        let end = big.len() as u64 - 5;
        assert_eq!(
            b.read_at(FileKind::Pack, "cd", end, &mut past)
                .unwrap_err()
                .kind(),
            io::ErrorKind::UnexpectedEof
        );

        // Anything not named as the format names files is a stray (these test names are not
        // hashes); removing twice is no error.
        b.op.write("notes.txt", b"x".to_vec()).unwrap();
        let (strays, scratch) = b.strays().unwrap();
        assert_eq!(strays, ["index/bb.json.zst", "notes.txt", "packs/cd.tar"]);
        assert!(scratch.is_empty());
        b.remove(FileKind::Index, "bb").unwrap();
        b.remove(FileKind::Index, "bb").unwrap();
        assert!(b.list(FileKind::Index).unwrap().is_empty());
    }
}
