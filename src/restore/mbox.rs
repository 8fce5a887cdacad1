//! Restoring into an mbox, in the mboxrd dialect: a `From sender asctime` line before each
//! message, one more `>` on every line matching `>*From `, LF line ends, and a blank line after
//! each message — so that readers can split it and un-quoting gives the message back exactly.
//!
//! Appending is safe: the file is locked (a `PATH.lock` dot-lock, which mutt, Python and
//! Dovecot honour, plus `flock`), its length remembered, and on any failure truncated back to
//! it; success ends with an fsync. A message already in the mbox is recognised by the SHA-256
//! of its un-quoted content, so restoring twice adds nothing.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

use super::{Destination, Item, Outcome, RestoreError, RestoreOptions};
use crate::durable;
use crate::mail;
use crate::repo::{RepoError, Repository};

pub struct MboxWriter {
    path: PathBuf,
    file: File,
    dotlock: PathBuf,
    /// Length before this restore: where to truncate back to on failure.
    original_len: u64,
    /// Bytes to write before the first new `From ` line so that it follows a blank line.
    separator: &'static [u8],
    existing: HashSet<[u8; 32]>,
    crlf: bool,
}

impl MboxWriter {
    /// Locks and opens (creating it if needed) the mbox at `path`.
    pub fn open(path: &Path, crlf: bool) -> Result<MboxWriter, RestoreError> {
        if path.is_dir() {
            return Err(RestoreError::Destination(format!(
                "{} is a directory; an mbox is a file (use maildir:{} for a Maildir)",
                path.display(),
                path.display()
            )));
        }
        let io = |what: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| RestoreError::Io {
                what,
                path: p,
                source,
            }
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            durable::create_dir_all(parent).map_err(io("cannot create", parent))?;
        }
        let dotlock = dotlock_path(path);
        let info = format!("{} popbackup restore\n", std::process::id());
        match durable::create_new_file(&dotlock, info.as_bytes()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(&dotlock).unwrap_or_default();
                return Err(RestoreError::Locked {
                    path: path.to_path_buf(),
                    detail: format!(
                        "{} exists{}; remove it if no program is using the mbox",
                        dotlock.display(),
                        if holder.trim().is_empty() {
                            String::new()
                        } else {
                            format!(", held by {}", holder.trim())
                        }
                    ),
                });
            }
            Err(e) => {
                // Not someone else's (that is AlreadyExists): ours, if it was made at all.
                let _ = std::fs::remove_file(&dotlock);
                return Err(io("cannot create the lock file", &dotlock)(e));
            }
        }
        let opened = MboxWriter::open_locked(path, crlf, &dotlock);
        if opened.is_err() {
            let _ = durable::remove_file(&dotlock);
        }
        opened
    }

    fn open_locked(path: &Path, crlf: bool, dotlock: &Path) -> Result<MboxWriter, RestoreError> {
        let io = |what: &'static str| {
            let p = path.to_path_buf();
            move |source| RestoreError::Io {
                what,
                path: p,
                source,
            }
        };
        let file = durable::open_for_append(path).map_err(io("cannot open"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(RestoreError::Locked {
                    path: path.to_path_buf(),
                    detail: "another program holds an flock on it".into(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("cannot lock")(e)),
        }
        let original_len = file.metadata().map_err(io("cannot read"))?.len();
        let (existing, ending) = scan(&file).map_err(io("cannot read"))?;
        let separator: &'static [u8] = match (original_len, ending) {
            (0, _) => b"",
            (_, Ending::BlankLine) => b"",
            (_, Ending::Newline) => b"\n",
            (_, Ending::Other) => b"\n\n",
        };
        Ok(MboxWriter {
            path: path.to_path_buf(),
            file,
            dotlock: dotlock.to_path_buf(),
            original_len,
            separator,
            existing,
            crlf,
        })
    }

    /// Appends one message, unless the mbox holds it already.
    pub fn write(&mut self, repo: &Repository, item: &Item) -> Result<Outcome, RestoreError> {
        let start = self
            .file
            .seek(SeekFrom::End(0))
            .map_err(self.io("cannot write"))?;
        let appended = self.append(repo, item);
        let (converted, digest) = match appended {
            Ok(done) => done,
            Err(e) => {
                self.truncate(start)?;
                return Err(e);
            }
        };
        if !self.existing.insert(digest) {
            self.truncate(start)?;
            return Ok(Outcome::Present);
        }
        self.separator = b"";
        let end = self.file.metadata().map_err(self.io("cannot read"))?.len();
        Ok(Outcome::Written {
            bytes: end - start,
            reversible: converted.reversible && converted.last == Some(b'\n'),
        })
    }

    /// Writes the `From ` line, the quoted message and the blank line; returns what the
    /// conversion did and the SHA-256 of the un-quoted content.
    fn append(
        &self,
        repo: &Repository,
        item: &Item,
    ) -> Result<(super::Converted, [u8; 32]), RestoreError> {
        // A small message is decompressed once, for its sender and its bytes; a damaged one
        // gets its error from the copy.
        let small = repo.read_small_message(&item.hash).ok().flatten();
        // The `From ` line it had in the mbox it was imported from, else one made up.
        let envelope = match item.mbox_from.as_deref().filter(|e| is_envelope(e)) {
            Some(envelope) => envelope.to_string(),
            None => {
                let sender = match &small {
                    Some(message) => sender_of(message),
                    None => envelope_sender(repo, item),
                };
                format!("{sender} {}", asctime(item.time))
            }
        };
        let mut out = io::BufWriter::with_capacity(128 * 1024, &self.file);
        let entry = write_entry(
            &mut out,
            self.separator,
            &envelope,
            self.crlf,
            &self.path,
            |sink| match &small {
                Some(message) => sink
                    .write_all(message)
                    .map_err(RepoError::io("cannot write", "the output")),
                None => repo.copy_message(&item.hash, sink).map(|_| ()),
            },
        )?;
        out.flush().map_err(self.io("cannot write"))?;
        Ok(entry)
    }

    fn io(&self, what: &'static str) -> impl FnOnce(io::Error) -> RestoreError + use<> {
        let path = self.path.clone();
        move |source| RestoreError::Io { what, path, source }
    }

    fn truncate(&mut self, len: u64) -> Result<(), RestoreError> {
        self.file.set_len(len).map_err(self.io("cannot truncate"))
    }

    /// Makes the appended messages durable and releases the locks.
    pub fn finish(self) -> Result<(), RestoreError> {
        let synced = self.file.sync_all().map_err(self.io("cannot sync"));
        let _ = self.file.unlock();
        let unlocked =
            durable::remove_file(&self.dotlock).map_err(self.io("cannot remove the lock file"));
        synced.and(unlocked)
    }

    /// Undoes this restore's appends after `error`, and returns it (or a worse one).
    pub fn abort(self, error: RestoreError) -> RestoreError {
        let undone = self
            .file
            .set_len(self.original_len)
            .and_then(|()| self.file.sync_all());
        let _ = self.file.unlock();
        let _ = durable::remove_file(&self.dotlock);
        match undone {
            Ok(()) => error,
            Err(e) => RestoreError::Destination(format!(
                "{error}; and {} could not be truncated back to its {} bytes ({e}): remove \
                 the partial messages at its end by hand",
                self.path.display(),
                self.original_len
            )),
        }
    }
}

/// Text for a `From ` line as an import recorded it: something after `From `, on one line.
fn is_envelope(text: &str) -> bool {
    !text.is_empty() && !text.starts_with(' ') && !text.chars().any(|c| c.is_control())
}

/// One mbox entry: `separator`, `From envelope`, the message `copy` writes (converted and
/// quoted) and the blank line. Returns the conversion and the SHA-256 of the un-quoted content,
/// the same digest [`read_messages`]'s reading gives, which is how a second restore knows the
/// message is there.
fn write_entry(
    out: &mut dyn Write,
    separator: &[u8],
    envelope: &str,
    crlf: bool,
    dest: &Path,
    copy: impl FnOnce(&mut dyn Write) -> Result<(), crate::repo::RepoError>,
) -> Result<(super::Converted, [u8; 32]), RestoreError> {
    let io = |source| RestoreError::Io {
        what: "cannot write",
        path: dest.to_path_buf(),
        source,
    };
    let head = format!("From {envelope}\n");
    out.write_all(separator)
        .and_then(|()| out.write_all(head.as_bytes()))
        .map_err(io)?;
    let mut hasher = Sha256::new();
    let mut quoted = Quoter::new(&mut *out);
    let mut hashing = Hashing {
        inner: &mut quoted,
        hasher: &mut hasher,
    };
    let converted = super::write_converted(crlf, &mut hashing, dest, copy)?;
    // mboxrd needs every message to end with a newline before the blank line.
    if converted.last != Some(b'\n') {
        hashing.write_all(b"\n").map_err(io)?;
    }
    quoted.finish().map_err(io)?;
    out.write_all(b"\n").map_err(io)?;
    Ok((converted, hasher.finalize().into()))
}

/// The mbox entry the writer appends for `message` (wire form), after `separator`; for
/// tests and fuzzing of the format without a repository.
pub fn format_entry(
    separator: &[u8],
    sender: &str,
    time: DateTime<Utc>,
    message: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    // Writing to memory cannot fail, and the source is a byte slice.
    let _ = write_entry(
        &mut out,
        separator,
        &format!("{sender} {}", asctime(time)),
        false,
        Path::new("memory"),
        |sink| {
            sink.write_all(message)
                .map_err(crate::repo::RepoError::io("cannot write", "memory"))
        },
    );
    out
}

fn dotlock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

/// How an existing mbox ends.
enum Ending {
    BlankLine,
    Newline,
    Other,
}

/// The SHA-256 of every message's un-quoted content in an mbox, and how the file ends.
fn scan(file: &File) -> io::Result<(HashSet<[u8; 32]>, Ending)> {
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    reader.seek(SeekFrom::Start(0))?;
    let mut hashes = HashSet::new();
    let mut current: Option<Sha256> = None;
    let ending = split(&mut reader, |event| match event {
        Event::Start => current = Some(Sha256::new()),
        Event::Content(bytes) => {
            if let Some(h) = current.as_mut() {
                h.update(bytes);
            }
        }
        Event::End => {
            if let Some(h) = current.take() {
                hashes.insert(h.finalize().into());
            }
        }
    })?;
    Ok((hashes, ending))
}

/// Every message of an mbox, un-quoted, as a reader such as Python's `mailbox` or mutt sees
/// it: split at `From ` lines that follow a blank line (or start the file), with the blank
/// separator line dropped.
pub fn read_messages(reader: impl BufRead) -> io::Result<Vec<Vec<u8>>> {
    let mut messages = Vec::new();
    let mut reader = reader;
    split(&mut reader, |event| match event {
        Event::Start => messages.push(Vec::new()),
        Event::Content(bytes) => {
            if let Some(m) = messages.last_mut() {
                m.extend_from_slice(bytes);
            }
        }
        Event::End => {}
    })?;
    Ok(messages)
}

enum Event<'a> {
    Start,
    /// Un-quoted content of the current message.
    Content(&'a [u8]),
    End,
}

/// Walks an mbox line by line, streaming; text before the first `From ` line is ignored.
fn split(reader: &mut impl BufRead, mut on: impl FnMut(Event<'_>)) -> io::Result<Ending> {
    let mut line = Vec::new();
    let mut in_message = false;
    // The previous line, held back: a blank line before `From ` belongs to the separator.
    let mut held: Option<Vec<u8>> = None;
    let mut prev_blank = true;
    let mut last_two = [0u8; 2];
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        last_two = match line.len() {
            1 => [last_two[1], line[0]],
            _ => [line[line.len() - 2], line[line.len() - 1]],
        };
        if prev_blank && line.starts_with(b"From ") {
            if in_message {
                on(Event::End);
            }
            held = None;
            in_message = true;
            on(Event::Start);
            prev_blank = false;
            continue;
        }
        prev_blank = line == b"\n";
        if in_message {
            if let Some(previous) = held.take() {
                on(Event::Content(&previous));
            }
            held = Some(unquote(&line).to_vec());
        }
    }
    if in_message {
        // The last line is the separator's blank line when it is one; otherwise content.
        if let Some(previous) = held.take().filter(|p| p != b"\n") {
            on(Event::Content(&previous));
        }
        on(Event::End);
    }
    Ok(match last_two {
        [b'\n', b'\n'] => Ending::BlankLine,
        [_, b'\n'] => Ending::Newline,
        _ => Ending::Other,
    })
}

/// One `>` less on a line matching `>+From `.
fn unquote(line: &[u8]) -> &[u8] {
    let gts = line.iter().take_while(|b| **b == b'>').count();
    if gts > 0 && line[gts..].starts_with(b"From ") {
        &line[1..]
    } else {
        line
    }
}

/// For a dry run: which items the destination holds already.
pub(crate) fn present_for_dry_run(
    repo: &Repository,
    items: &[Item],
    destination: &Destination,
    options: RestoreOptions,
) -> Result<Vec<bool>, RestoreError> {
    match destination {
        Destination::Maildir(path) => {
            if !path.join("new").is_dir() {
                return Ok(vec![false; items.len()]);
            }
            let writer = super::MaildirWriter::open(path, options.seen, options.crlf)?;
            Ok(items.iter().map(|i| writer.contains(i)).collect())
        }
        Destination::Mbox(path) => {
            let Ok(file) = File::open(path) else {
                return Ok(vec![false; items.len()]);
            };
            let (existing, _) = scan(&file).map_err(|source| RestoreError::Io {
                what: "cannot read",
                path: path.clone(),
                source,
            })?;
            items
                .iter()
                .map(|item| {
                    let mut hasher = Sha256::new();
                    let mut sink = Hashing {
                        inner: &mut io::sink(),
                        hasher: &mut hasher,
                    };
                    let c = super::write_message(repo, &item.hash, options.crlf, &mut sink, path)?;
                    if c.last != Some(b'\n') {
                        hasher.update(b"\n");
                    }
                    let digest: [u8; 32] = hasher.finalize().into();
                    Ok(existing.contains(&digest))
                })
                .collect()
        }
    }
}

/// The envelope sender for the `From ` line: Return-Path, else the From address, else
/// `MAILER-DAEMON`; never containing white space.
fn envelope_sender(repo: &Repository, item: &Item) -> String {
    let mut head = Vec::new();
    if let Ok(reader) = repo.open_message(&item.hash) {
        let _ = reader
            .take(mail::MAX_HEADER_BYTES as u64)
            .read_to_end(&mut head);
    }
    sender_of(&head)
}

/// [`envelope_sender`] from the start of the message (at least its header section, or the
/// first `MAX_HEADER_BYTES`).
fn sender_of(message: &[u8]) -> String {
    let head = &message[..message.len().min(mail::MAX_HEADER_BYTES)];
    let end = mail::header_end(head).unwrap_or(head.len());
    let Ok((headers, _)) = mailparse::parse_headers(&head[..end]) else {
        return "MAILER-DAEMON".into();
    };
    use mailparse::MailHeaderMap as _;
    let return_path = headers
        .get_first_value("Return-Path")
        .map(|v| {
            v.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .trim()
                .to_string()
        })
        .filter(|v| !v.is_empty());
    let from = || {
        let header = headers.get_first_header("From")?;
        let list = mailparse::addrparse_header(header).ok()?;
        list.iter().find_map(|a| match a {
            mailparse::MailAddr::Single(s) => Some(s.addr.clone()),
            mailparse::MailAddr::Group(g) => g.addrs.first().map(|s| s.addr.clone()),
        })
    };
    let sender = return_path.or_else(from).unwrap_or_default();
    if sender.is_empty() || sender.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "MAILER-DAEMON".into()
    } else {
        sender
    }
}

/// `Thu Nov 26 15:00:00 2026`, the asctime format of `From ` lines (UTC).
pub fn asctime(time: DateTime<Utc>) -> String {
    time.format("%a %b %e %H:%M:%S %Y").to_string()
}

/// Hashes what passes through.
struct Hashing<'a, W: Write + ?Sized> {
    inner: &'a mut W,
    hasher: &'a mut Sha256,
}

impl<W: Write + ?Sized> Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Adds one `>` to every line matching `>*From `, streaming: bytes at a line start are held
/// only while they could still be such a prefix.
pub struct Quoter<W: Write> {
    inner: W,
    at_line_start: bool,
    pending: Vec<u8>,
}

impl<W: Write> Quoter<W> {
    pub fn new(inner: W) -> Quoter<W> {
        Quoter {
            inner,
            at_line_start: true,
            pending: Vec::with_capacity(16),
        }
    }

    /// Writes out what is held back (a last line that was a prefix of `From `).
    pub fn finish(mut self) -> io::Result<W> {
        self.inner.write_all(&self.pending)?;
        self.pending.clear();
        Ok(self.inner)
    }
}

enum Prefix {
    /// Could still become `>*From `.
    Open,
    /// Is `>*From `: quote it.
    Quote,
    /// Cannot: write it as it is.
    No,
}

fn classify(pending: &[u8]) -> Prefix {
    let gts = pending.iter().take_while(|b| **b == b'>').count();
    let rest = &pending[gts..];
    const FROM: &[u8] = b"From ";
    if rest.len() >= FROM.len() {
        if rest.starts_with(FROM) {
            Prefix::Quote
        } else {
            Prefix::No
        }
    } else if FROM.starts_with(rest) {
        Prefix::Open
    } else {
        Prefix::No
    }
}

impl<W: Write> Write for Quoter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            if self.at_line_start {
                let b = rest[0];
                rest = &rest[1..];
                self.pending.push(b);
                match classify(&self.pending) {
                    Prefix::Open => continue,
                    Prefix::Quote => {
                        self.inner.write_all(b">")?;
                        self.inner.write_all(&self.pending)?;
                        self.pending.clear();
                        self.at_line_start = false;
                    }
                    Prefix::No => {
                        self.inner.write_all(&self.pending)?;
                        self.pending.clear();
                        self.at_line_start = b == b'\n';
                    }
                }
            } else {
                match memchr::memchr(b'\n', rest) {
                    Some(i) => {
                        self.inner.write_all(&rest[..=i])?;
                        rest = &rest[i + 1..];
                        self.at_line_start = true;
                    }
                    None => {
                        self.inner.write_all(rest)?;
                        rest = &[];
                    }
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut q = Quoter::new(Vec::new());
        for c in input.chunks(chunk.max(1)) {
            q.write_all(c).unwrap();
        }
        q.finish().unwrap()
    }

    #[test]
    fn mboxrd_quoting_streams_and_undoes() {
        let input: &[u8] = b"From x\nHi\n>From y\n>>From z\n>Fro\nFrom\n From a\nFromage\n>From";
        let expected: &[u8] =
            b">From x\nHi\n>>From y\n>>>From z\n>Fro\nFrom\n From a\nFromage\n>From";
        for chunk in 1..=input.len() {
            assert_eq!(quote(input, chunk), expected, "chunks of {chunk}");
        }
        let unquoted: Vec<u8> = expected
            .split_inclusive(|b| *b == b'\n')
            .flat_map(|l| unquote(l).to_vec())
            .collect();
        assert_eq!(unquoted, input);
    }

    #[test]
    fn asctime_pads_the_day() {
        let t = DateTime::parse_from_rfc3339("2026-11-06T05:04:03Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(asctime(t), "Fri Nov  6 05:04:03 2026");
    }

    #[test]
    fn scan_finds_messages_and_the_ending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mbox");
        #[allow(clippy::disallowed_methods)]
        std::fs::write(&path, b"From a Thu Nov 26 10:00:00 2026\nA: 1\n\n>From body\n\nFrom b Thu Nov 26 10:00:00 2026\nB: 2\n\nx\n\n").unwrap();
        let (hashes, ending) = scan(&File::open(&path).unwrap()).unwrap();
        let one: [u8; 32] = Sha256::digest(b"A: 1\n\nFrom body\n").into();
        let two: [u8; 32] = Sha256::digest(b"B: 2\n\nx\n").into();
        assert_eq!(hashes, HashSet::from([one, two]));
        assert!(matches!(ending, Ending::BlankLine));
    }
}
