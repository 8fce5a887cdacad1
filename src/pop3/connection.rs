//! The one read loop: a buffered connection that reads status lines, multi-line bodies and
//! writes commands, over any `Read + Write` stream (TCP, TLS, or a test's mock).
//!
//! Memory is bounded by [`Limits`]: a status line, a listing and a message each have a cap, so a
//! hostile server cannot make us allocate without limit; message bodies are streamed through
//! [`Body`] and never held whole.

use std::io::{self, Read, Write};

use super::auth::Secret;
use super::dotstuff::Unstuffer;
use super::error::Pop3Error;
use super::response::{Status, parse_status};

/// Size of the receive buffer. Large enough that TLS records (16 KiB) and pipelined bodies are
/// decoded in big chunks.
const READ_BUFFER: usize = 64 * 1024;

/// Caps on what one response may make us hold or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A status line (`+OK ...`, `-ERR ...`); RFC 1939 allows 512 octets, servers send more.
    pub max_status_line: usize,
    /// One line of a CAPA, UIDL or LIST listing.
    pub max_listing_line: usize,
    /// A whole CAPA, UIDL or LIST listing (held in memory to be parsed).
    pub max_listing_bytes: u64,
    /// One message body (streamed, never held; the cap stops a body that never ends).
    pub max_message_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_status_line: 8 * 1024,
            max_listing_line: 8 * 1024,
            // About three million UIDL lines: far beyond any real mailbox.
            max_listing_bytes: 256 * 1024 * 1024,
            max_message_bytes: 8 * 1024 * 1024 * 1024,
        }
    }
}

/// A buffered POP3 connection.
pub struct Connection<S> {
    stream: S,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    limits: Limits,
    /// What was sent to log in (the password, SASL responses): scrubbed from every status
    /// line before it can reach an error message or a log, in case the server echoes it.
    secrets: Vec<Secret>,
}

impl<S: Read + Write> Connection<S> {
    pub fn new(stream: S, limits: Limits) -> Connection<S> {
        Connection {
            stream,
            buf: vec![0u8; READ_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            limits,
            secrets: Vec::new(),
        }
    }

    /// Adds a string the server must never get to show us again (see [`Connection::redact`]).
    pub fn add_secret(&mut self, secret: Secret) {
        if !self.secrets.contains(&secret) {
            self.secrets.push(secret);
        }
    }

    /// `text` with every secret given to [`Connection::add_secret`] replaced by `<redacted>`.
    pub fn redact(&self, text: &str) -> String {
        self.secrets
            .iter()
            .fold(text.to_string(), |text, secret| secret.scrub(&text))
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Gives the stream back, with the number of received bytes that were still unread. After
    /// STLS those bytes must be thrown away (RFC 2595 section 4; CVE-2021-39272).
    pub fn into_inner(self) -> (S, usize) {
        (self.stream, self.end - self.start)
    }

    /// Sends bytes that hold one or more complete commands.
    pub fn send(&mut self, wire: &[u8], command: &'static str) -> Result<(), Pop3Error> {
        if log::log_enabled!(log::Level::Debug) {
            for line in wire.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                log::debug!("> {}", loggable(command, line));
            }
        }
        let during = || format!("sending {command}");
        self.stream
            .write_all(wire)
            .map_err(|e| Pop3Error::io(during(), e))?;
        self.stream.flush().map_err(|e| Pop3Error::io(during(), e))
    }

    /// Reads more bytes into the buffer; `Ok(0)` is end of stream.
    fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads one line (up to and including LF) of at most `limit` bytes.
    fn read_line(&mut self, limit: usize, command: &'static str) -> Result<Vec<u8>, Pop3Error> {
        // A line must fit in the buffer; larger limits would make `fill` read nothing.
        let limit = limit.min(READ_BUFFER - 1);
        let mut scanned = 0;
        loop {
            let pending = &self.buf[self.start..self.end];
            if let Some(lf) = memchr::memchr(b'\n', &pending[scanned..]) {
                let len = scanned + lf + 1;
                if len > limit {
                    return Err(Pop3Error::LineTooLong { command, limit });
                }
                let line = pending[..len].to_vec();
                self.start += len;
                return Ok(line);
            }
            scanned = pending.len();
            if scanned > limit {
                return Err(Pop3Error::LineTooLong { command, limit });
            }
            match self.fill() {
                Ok(0) => {
                    return Err(Pop3Error::Closed {
                        during: format!("waiting for the answer to {command}"),
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(Pop3Error::io(
                        format!("waiting for the answer to {command}"),
                        e,
                    ));
                }
            }
        }
    }

    /// Reads and parses a status line. Anything that is not `+OK`, `-ERR` or `+ ` means we are
    /// out of step with the server (or it is not a POP3 server): a protocol error.
    pub fn read_status(&mut self, command: &'static str) -> Result<Status, Pop3Error> {
        let mut line = self.read_line(self.limits.max_status_line, command)?;
        if !self.secrets.is_empty() {
            line = self.redact(&String::from_utf8_lossy(&line)).into_bytes();
        }
        log::debug!("< {}", String::from_utf8_lossy(&line).trim_end());
        parse_status(&line).ok_or_else(|| Pop3Error::Protocol {
            command,
            detail: format!("expected +OK or -ERR, got {}", excerpt(&line)),
        })
    }

    /// A reader over the multi-line body that follows a `+OK`, capped at `limit` bytes.
    pub fn body(&mut self, command: &'static str, limit: u64) -> Body<'_, S> {
        Body {
            conn: self,
            unstuffer: Unstuffer::new(),
            read: 0,
            limit,
            command,
            failure: None,
        }
    }

    /// Reads a whole multi-line listing (CAPA, UIDL, LIST) into memory, within the limits.
    pub fn read_listing(&mut self, command: &'static str) -> Result<Vec<u8>, Pop3Error> {
        let limits = self.limits;
        let mut body = self.body(command, limits.max_listing_bytes);
        let mut out = Vec::new();
        let mut chunk = [0u8; 8192];
        let mut line_len = 0usize;
        loop {
            let n = match body.read(&mut chunk) {
                Ok(n) => n,
                Err(e) => {
                    return Err(body
                        .take_failure()
                        .unwrap_or_else(|| Pop3Error::io(command, e)));
                }
            };
            if n == 0 {
                break;
            }
            for part in chunk[..n].split_inclusive(|&b| b == b'\n') {
                line_len += part.len();
                if line_len > limits.max_listing_line {
                    return Err(Pop3Error::LineTooLong {
                        command,
                        limit: limits.max_listing_line,
                    });
                }
                if part.ends_with(b"\n") {
                    line_len = 0;
                }
            }
            out.extend_from_slice(&chunk[..n]);
        }
        Ok(out)
    }
}

/// A multi-line body being read: dot-stuffing undone, terminator removed, other bytes as sent.
///
/// When the transport fails or the cap is hit, `read` returns an `io::Error` and the precise
/// [`Pop3Error`] is kept for [`Body::take_failure`], so the caller's sink can use plain
/// `io::Read` and the session still reports what really happened.
pub struct Body<'a, S> {
    conn: &'a mut Connection<S>,
    unstuffer: Unstuffer,
    read: u64,
    limit: u64,
    command: &'static str,
    failure: Option<Pop3Error>,
}

impl<S: Read + Write> Body<'_, S> {
    /// True once the terminating `.` line has been consumed.
    pub fn is_complete(&self) -> bool {
        self.unstuffer.is_done()
    }

    /// Bytes delivered so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// The transport or limit failure behind the last `io::Error`, if any.
    pub fn take_failure(&mut self) -> Option<Pop3Error> {
        self.failure.take()
    }

    /// True if reading failed: the connection is no longer in step and must not be reused.
    pub fn has_failed(&self) -> bool {
        self.failure.is_some()
    }

    /// Reads and discards the rest of the body so the next response can be read.
    pub fn drain(&mut self) -> Result<(), Pop3Error> {
        let mut scratch = [0u8; 8192];
        loop {
            match self.read(&mut scratch) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => {
                    return Err(self
                        .take_failure()
                        .unwrap_or_else(|| Pop3Error::io(self.command, e)));
                }
            }
        }
    }

    fn fail(&mut self, err: Pop3Error) -> io::Error {
        let io_err = io::Error::other(err.to_string());
        self.failure = Some(err);
        io_err
    }
}

impl<S: Read + Write> Read for Body<'_, S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.failure.is_some() {
            return Err(io::Error::other("the POP3 response could not be read"));
        }
        if self.unstuffer.is_done() || out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.conn.start == self.conn.end {
                let during = || format!("reading the response to {}", self.command);
                match self.conn.fill() {
                    Ok(0) => {
                        let err = Pop3Error::Closed { during: during() };
                        return Err(self.fail(err));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let err = Pop3Error::io(during(), e);
                        return Err(self.fail(err));
                    }
                }
            }
            let step = self
                .unstuffer
                .step(&self.conn.buf[self.conn.start..self.conn.end], out);
            self.conn.start += step.consumed;
            self.read += step.produced as u64;
            if self.read > self.limit {
                let err = Pop3Error::ResponseTooLarge {
                    command: self.command,
                    limit: self.limit,
                };
                return Err(self.fail(err));
            }
            if step.produced > 0 || step.done {
                return Ok(step.produced);
            }
        }
    }
}

/// A printable, shortened copy of what the server sent, for error messages.
pub(crate) fn excerpt(line: &[u8]) -> String {
    let shown = &line[..line.len().min(80)];
    let mut text = format!("{:?}", String::from_utf8_lossy(shown));
    if line.len() > 80 {
        text.push_str("...");
    }
    text
}

/// A command line as `-vv` shows it: what carries a secret (the password, a SASL response,
/// an APOP digest) is replaced by `(hidden)`.
fn loggable(command: &str, line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end();
    let mut words = text.split(' ');
    let first = words.next().unwrap_or_default();
    match command {
        "PASS" => "PASS (hidden)".into(),
        "APOP" => format!("APOP {} (hidden)", words.next().unwrap_or_default()),
        // `AUTH MECH [initial response]`, then continuation lines that are all secret.
        "AUTH" if first.eq_ignore_ascii_case("AUTH") => match (words.next(), words.next()) {
            (Some(mechanism), Some(_)) => format!("AUTH {mechanism} (hidden)"),
            _ => text.to_string(),
        },
        "AUTH" => "(hidden)".into(),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::loggable;

    #[test]
    fn logged_commands_hide_their_secrets() {
        assert_eq!(loggable("PASS", b"PASS hunter2\r"), "PASS (hidden)");
        assert_eq!(
            loggable("APOP", b"APOP bob c4c9334bac560ecc979e58001b3e22fb\r"),
            "APOP bob (hidden)"
        );
        assert_eq!(
            loggable("AUTH", b"AUTH PLAIN AGJvYgBzZWNyZXQ=\r"),
            "AUTH PLAIN (hidden)"
        );
        assert_eq!(loggable("AUTH", b"AUTH LOGIN\r"), "AUTH LOGIN");
        assert_eq!(loggable("AUTH", b"c2VjcmV0\r"), "(hidden)");
        assert_eq!(loggable("USER", b"USER bob\r"), "USER bob");
        assert_eq!(loggable("RETR", b"RETR 7\r"), "RETR 7");
    }
}
