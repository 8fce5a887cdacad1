//! One client connection: RFC 1939 with CAPA, UIDL, TOP, PIPELINING and RESP-CODES (RFC 2449)
//! and STLS (RFC 2595), bounded in memory and time whatever the client sends.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::{Maildrop, ServeOptions, ServeTls};
use crate::pop3::dotstuff::Stuffer;
use crate::repo::Repository;
use crate::snapshot::Interrupt;

/// Longest command line taken, CRLF included: RFC 2449 allows 255 octets.
pub(crate) const MAX_LINE: usize = 512;

/// Output gathered before it is written to the client.
const OUT_CHUNK: usize = 64 * 1024;

/// How often a waiting session looks at the interrupt and its deadlines.
const TICK: Duration = Duration::from_secs(1);

/// Wrong passwords before the connection is closed; each costs the client a second.
const MAX_LOGIN_FAILURES: u32 = 3;

/// Why a session ended, for the log.
#[derive(Debug)]
enum Ended {
    Quit,
    ClientClosed,
    Idle,
    SessionTimeout,
    Stopped,
    LineTooLong,
    LoginFailures,
    Injection,
    Busy,
    Damaged(String),
    Io(io::Error),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Quit => write!(f, "QUIT"),
            Ended::ClientClosed => write!(f, "the client closed the connection"),
            Ended::Idle => write!(f, "closed after the idle timeout"),
            Ended::SessionTimeout => write!(f, "closed after the session timeout"),
            Ended::Stopped => write!(f, "closed: the server is stopping"),
            Ended::LineTooLong => write!(f, "closed: a command line over {MAX_LINE} bytes"),
            Ended::LoginFailures => write!(f, "closed after {MAX_LOGIN_FAILURES} wrong passwords"),
            Ended::Injection => write!(f, "closed: commands sent after STLS before TLS"),
            Ended::Busy => write!(f, "refused: too many connections"),
            Ended::Damaged(e) => write!(f, "closed in the middle of a damaged message: {e}"),
            Ended::Io(e) => write!(f, "connection error: {e}"),
        }
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A connection with its input and output buffers and its clocks.
struct Conn<'a> {
    stream: Option<Stream>,
    input: Vec<u8>,
    /// Where the unread input starts.
    pos: usize,
    out: Vec<u8>,
    /// Bytes written to the client so far.
    sent: u64,
    last_input: Instant,
    deadline: Instant,
    options: &'a ServeOptions,
    stop: &'a Interrupt,
}

impl Conn<'_> {
    /// The stream is away only while STLS turns it into a TLS one.
    fn stream(&mut self) -> io::Result<&mut Stream> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    fn is_tls(&self) -> bool {
        matches!(self.stream, Some(Stream::Tls(_)))
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), Ended> {
        self.out.extend_from_slice(bytes);
        if self.out.len() >= OUT_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn reply(&mut self, line: &str) -> Result<(), Ended> {
        self.send(line.as_bytes())?;
        self.send(b"\r\n")
    }

    fn flush(&mut self) -> Result<(), Ended> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let written = self
            .stream()
            .and_then(|stream| stream.write_all(&out).and_then(|()| stream.flush()));
        self.sent += out.len() as u64;
        self.out = out;
        self.out.clear();
        written.map_err(Ended::Io)
    }

    /// True when a whole command is waiting: then replies gather (pipelining) instead of
    /// going out one by one.
    fn line_waiting(&self) -> bool {
        memchr::memchr(b'\n', &self.input[self.pos..]).is_some()
    }

    /// The next command line without its line end (CRLF, or a bare LF from a sloppy client).
    fn read_line(&mut self) -> Result<Vec<u8>, Ended> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.input[self.pos..]) {
                let line = &self.input[self.pos..self.pos + i];
                let line = line.strip_suffix(b"\r").unwrap_or(line).to_vec();
                self.pos += i + 1;
                if i + 1 > MAX_LINE {
                    return Err(Ended::LineTooLong);
                }
                return Ok(line);
            }
            if self.input.len() - self.pos >= MAX_LINE {
                return Err(Ended::LineTooLong);
            }
            self.flush()?;
            self.input.drain(..self.pos);
            self.pos = 0;
            let mut chunk = [0u8; 4096];
            match self.stream().and_then(|stream| stream.read(&mut chunk)) {
                Ok(0) => return Err(Ended::ClientClosed),
                Ok(n) => {
                    self.input.extend_from_slice(&chunk[..n]);
                    self.last_input = Instant::now();
                }
                Err(e) if is_timeout(&e) => self.check_clocks()?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Ended::Io(e)),
            }
        }
    }

    fn check_clocks(&self) -> Result<(), Ended> {
        if self.stop.is_set() {
            return Err(Ended::Stopped);
        }
        let now = Instant::now();
        if now >= self.deadline {
            return Err(Ended::SessionTimeout);
        }
        if now.duration_since(self.last_input) >= self.options.idle_timeout {
            return Err(Ended::Idle);
        }
        Ok(())
    }

    /// Turns the plain connection into a TLS one and completes the handshake, within the
    /// idle timeout.
    fn start_tls(&mut self) -> Result<(), Ended> {
        let config = self
            .options
            .tls_config
            .clone()
            .ok_or_else(|| Ended::Io(io::Error::other("TLS without a certificate")))?;
        let Some(Stream::Plain(mut socket)) = self.stream.take() else {
            return Err(Ended::Io(io::Error::other("TLS started twice")));
        };
        let mut tls =
            rustls::ServerConnection::new(config).map_err(|e| Ended::Io(io::Error::other(e)))?;
        while tls.is_handshaking() {
            match tls.complete_io(&mut socket) {
                Ok(_) => {}
                Err(e) if is_timeout(&e) => self.check_clocks()?,
                Err(e) => return Err(Ended::Io(e)),
            }
        }
        self.last_input = Instant::now();
        self.stream = Some(Stream::Tls(Box::new(rustls::StreamOwned::new(tls, socket))));
        Ok(())
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Where a session stands (RFC 1939 section 3).
enum State {
    Authorization { user: Option<String>, failures: u32 },
    Transaction { deleted: Vec<bool> },
}

/// Serves one connection to its end and says how it ended.
pub(super) fn serve_connection(
    socket: TcpStream,
    repo: &Repository,
    maildrop: &Maildrop,
    options: &ServeOptions,
    stop: &Interrupt,
    busy: bool,
) -> String {
    let now = Instant::now();
    let setup = socket
        .set_nonblocking(false)
        .and_then(|()| socket.set_read_timeout(Some(TICK)))
        .and_then(|()| socket.set_write_timeout(Some(options.idle_timeout)))
        .and_then(|()| socket.set_nodelay(true));
    if let Err(e) = setup {
        return Ended::Io(e).to_string();
    }
    let mut conn = Conn {
        stream: Some(Stream::Plain(socket)),
        input: Vec::with_capacity(MAX_LINE),
        pos: 0,
        out: Vec::with_capacity(OUT_CHUNK),
        sent: 0,
        last_input: now,
        deadline: now + options.session_timeout,
        options,
        stop,
    };
    let ended = session(&mut conn, repo, maildrop, busy);
    // A last word where it helps the client, then the connection closes.
    let farewell = match &ended {
        Ended::Idle => Some("-ERR [SYS/TEMP] idle too long; closing"),
        Ended::SessionTimeout => Some("-ERR [SYS/TEMP] session too long; closing"),
        Ended::Stopped => Some("-ERR [SYS/TEMP] the server is stopping"),
        Ended::LineTooLong => Some("-ERR command line too long; closing"),
        _ => None,
    };
    if let Some(line) = farewell
        && conn.stream.is_some()
    {
        let _ = conn.reply(line).and_then(|()| conn.flush());
    }
    let _ = conn.flush();
    let socket = match conn.stream.take() {
        Some(Stream::Tls(mut tls)) => {
            tls.conn.send_close_notify();
            let _ = tls.flush();
            Some(tls.sock)
        }
        Some(Stream::Plain(socket)) => Some(socket),
        None => None,
    };
    if let Some(socket) = socket
        && !matches!(ended, Ended::ClientClosed | Ended::Io(_))
    {
        linger(socket);
    }
    ended.to_string()
}

/// Closes a connection the client may still be sending on. Closing with its input unread
/// would reset the connection, and the client could lose the last reply (why it is closed)
/// before reading it; so the sending side is shut first and what still comes is read and
/// dropped, for a few seconds and a little data at most.
fn linger(mut socket: TcpStream) {
    const LINGER: Duration = Duration::from_secs(2);
    const DRAIN: usize = 1 << 20;
    if socket.shutdown(std::net::Shutdown::Write).is_err() {
        return;
    }
    let until = Instant::now() + LINGER;
    let mut drained = 0;
    let mut chunk = [0u8; 4096];
    while drained < DRAIN && Instant::now() < until {
        match socket.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => drained += n,
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn session(conn: &mut Conn<'_>, repo: &Repository, maildrop: &Maildrop, busy: bool) -> Ended {
    match run_session(conn, repo, maildrop, busy) {
        Ok(()) => Ended::Quit,
        Err(ended) => ended,
    }
}

fn run_session(
    conn: &mut Conn<'_>,
    repo: &Repository,
    maildrop: &Maildrop,
    busy: bool,
) -> Result<(), Ended> {
    if conn.options.tls == ServeTls::Implicit {
        conn.start_tls()?;
    }
    if busy {
        conn.reply("-ERR [SYS/TEMP] too many connections; try again later")?;
        return Err(Ended::Busy);
    }
    conn.reply("+OK popbackup serve ready: a read-only archive (DELE deletes nothing from it)")?;
    let mut state = State::Authorization {
        user: None,
        failures: 0,
    };
    loop {
        if !conn.line_waiting() {
            conn.flush()?;
        }
        conn.check_clocks()?;
        let line = conn.read_line()?;
        let text = String::from_utf8_lossy(&line);
        let (verb, args) = match text.split_once(' ') {
            Some((verb, args)) => (verb.to_ascii_uppercase(), args.trim()),
            None => (text.trim().to_ascii_uppercase(), ""),
        };
        let authorization = matches!(state, State::Authorization { .. });
        match (&mut state, verb.as_str()) {
            (_, "CAPA") => capa(conn, authorization)?,
            (State::Transaction { .. }, "NOOP") => conn.reply("+OK")?,
            (State::Authorization { .. }, "QUIT") => {
                conn.reply("+OK bye")?;
                return Ok(());
            }
            (State::Transaction { .. }, "QUIT") => {
                conn.reply("+OK bye; the archive is unchanged (DELE deletes nothing here)")?;
                return Ok(());
            }
            (State::Authorization { .. }, "STLS") => {
                if conn.options.tls != ServeTls::Stls || conn.is_tls() {
                    conn.reply("-ERR STLS is not offered here")?;
                    continue;
                }
                // Anything sent after STLS in the same packet would be taken as if it came
                // over TLS (RFC 2595's injection); none may come.
                if conn.pos < conn.input.len() {
                    return Err(Ended::Injection);
                }
                conn.reply("+OK begin TLS")?;
                conn.flush()?;
                conn.start_tls()?;
            }
            (State::Authorization { user, .. }, "USER") => {
                if !plain_login_allowed(conn) {
                    conn.reply("-ERR [PRIVACY] say STLS first")?;
                } else if args.is_empty() {
                    conn.reply("-ERR USER needs a name")?;
                } else {
                    *user = Some(args.to_string());
                    conn.reply("+OK")?;
                }
            }
            (State::Authorization { user, failures }, "PASS") => {
                let Some(name) = user.take() else {
                    conn.reply("-ERR USER first")?;
                    continue;
                };
                // The whole rest of the line: a password may hold spaces.
                let given = text.get(5..).unwrap_or("");
                if name == conn.options.user
                    && constant_time_eq(given.as_bytes(), conn.options.password.expose().as_bytes())
                {
                    conn.reply(&format!(
                        "+OK {} messages ({} octets), read-only",
                        maildrop.len(),
                        maildrop.total_size()
                    ))?;
                    state = State::Transaction {
                        deleted: vec![false; maildrop.len()],
                    };
                } else {
                    *failures += 1;
                    std::thread::sleep(Duration::from_secs(1));
                    conn.reply("-ERR [AUTH] wrong user name or password")?;
                    if *failures >= MAX_LOGIN_FAILURES {
                        return Err(Ended::LoginFailures);
                    }
                }
            }
            (State::Transaction { deleted }, command) => {
                transaction(conn, repo, maildrop, deleted, command, args)?
            }
            (State::Authorization { .. }, _) => {
                conn.reply("-ERR log in first (USER and PASS), or CAPA, STLS, QUIT")?
            }
        }
    }
}

fn plain_login_allowed(conn: &Conn<'_>) -> bool {
    conn.is_tls() || conn.options.allow_plain_login
}

fn capa(conn: &mut Conn<'_>, authorization: bool) -> Result<(), Ended> {
    conn.reply("+OK capabilities follow")?;
    for line in [
        "USER",
        "TOP",
        "UIDL",
        "PIPELINING",
        "RESP-CODES",
        "AUTH-RESP-CODE",
    ] {
        conn.reply(line)?;
    }
    if authorization && conn.options.tls == ServeTls::Stls && !conn.is_tls() {
        conn.reply("STLS")?;
    }
    conn.reply("EXPIRE NEVER")?;
    conn.reply("IMPLEMENTATION popbackup-serve read-only")?;
    conn.reply(".")
}

/// The message a command's first argument names: 1-based, present, not deleted.
fn message_number(args: &str, deleted: &[bool]) -> Result<usize, &'static str> {
    let first = args
        .split_whitespace()
        .next()
        .ok_or("a message number is needed")?;
    let n: usize = first.parse().map_err(|_| "not a message number")?;
    match n
        .checked_sub(1)
        .and_then(|i| deleted.get(i).map(|d| (i, *d)))
    {
        Some((i, false)) => Ok(i),
        Some((_, true)) => Err("that message is deleted in this session"),
        None => Err("no such message"),
    }
}

fn transaction(
    conn: &mut Conn<'_>,
    repo: &Repository,
    maildrop: &Maildrop,
    deleted: &mut [bool],
    command: &str,
    args: &str,
) -> Result<(), Ended> {
    let messages = &maildrop.messages;
    let numbered = |args: &str, deleted: &[bool]| message_number(args, deleted);
    match command {
        "STAT" => {
            let (count, size) = messages
                .iter()
                .zip(deleted.iter())
                .filter(|(_, d)| !**d)
                .fold((0, 0), |(c, s), (m, _)| (c + 1, s + m.size));
            conn.reply(&format!("+OK {count} {size}"))
        }
        "LIST" | "UIDL" => {
            let field = |i: usize| match command {
                "LIST" => messages[i].size.to_string(),
                _ => messages[i].uidl.clone(),
            };
            if args.is_empty() {
                conn.reply("+OK")?;
                for i in (0..messages.len()).filter(|i| !deleted[*i]) {
                    conn.reply(&format!("{} {}", i + 1, field(i)))?;
                }
                conn.reply(".")
            } else {
                match numbered(args, deleted) {
                    Ok(i) => conn.reply(&format!("+OK {} {}", i + 1, field(i))),
                    Err(why) => conn.reply(&format!("-ERR {why}")),
                }
            }
        }
        "RETR" | "TOP" => {
            let i = match numbered(args, deleted) {
                Ok(i) => i,
                Err(why) => return conn.reply(&format!("-ERR {why}")),
            };
            let lines = if command == "TOP" {
                match args.split_whitespace().nth(1).map(str::parse::<u64>) {
                    Some(Ok(n)) => Some(n),
                    _ => return conn.reply("-ERR TOP needs a message number and a line count"),
                }
            } else {
                None
            };
            send_message(conn, repo, &messages[i], lines)
        }
        "DELE" => match numbered(args, deleted) {
            Ok(i) => {
                deleted[i] = true;
                conn.reply(&format!(
                    "+OK message {} deleted for this session; the archive keeps it",
                    i + 1
                ))
            }
            Err(why) => conn.reply(&format!("-ERR {why}")),
        },
        "RSET" => {
            deleted.iter_mut().for_each(|d| *d = false);
            conn.reply(&format!("+OK {} messages", messages.len()))
        }
        "USER" | "PASS" | "STLS" => conn.reply("-ERR already logged in"),
        _ => conn.reply("-ERR unknown command"),
    }
}

/// RETR (`lines` None) or TOP: the message streamed from the archive, dot-stuffed. A small
/// message is checked before any of it goes out, so a damaged one gets `-ERR` and the session
/// goes on; a large one found damaged at its end ends the connection, since the client has
/// most of it already and must not take it for whole.
fn send_message(
    conn: &mut Conn<'_>,
    repo: &Repository,
    message: &super::Served,
    lines: Option<u64>,
) -> Result<(), Ended> {
    let (sent_before, buffered_before) = (conn.sent, conn.out.len());
    let head = match lines {
        None => format!("+OK {} octets\r\n", message.size),
        Some(_) => "+OK\r\n".to_string(),
    };
    conn.send(head.as_bytes())?;
    let mut top = Top::new(Stuffer::new(ConnWriter(conn)), lines);
    let copied = repo.copy_message(&message.hash, &mut top);
    match copied {
        Ok(_) => top.inner.finish().map(drop).map_err(Ended::Io),
        Err(e) => {
            if conn.sent == sent_before {
                conn.out.truncate(buffered_before);
                conn.reply("-ERR [SYS/PERM] this message is damaged in the archive")
            } else {
                Err(Ended::Damaged(e.to_string()))
            }
        }
    }
}

/// Writes into the connection's output, flushing in chunks.
struct ConnWriter<'c, 'a>(&'c mut Conn<'a>);

impl Write for ConnWriter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send(buf).map_err(|e| match e {
            Ended::Io(e) => e,
            other => io::Error::other(other.to_string()),
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Passes the header section and then `lines` lines of the body (all of it when `None`);
/// what follows is dropped.
struct Top<W: Write> {
    inner: W,
    lines: Option<u64>,
    in_header: bool,
    /// The current line has a byte other than CR.
    line_has_content: bool,
    body_lines: u64,
    done: bool,
}

impl<W: Write> Top<W> {
    fn new(inner: W, lines: Option<u64>) -> Top<W> {
        Top {
            inner,
            lines,
            in_header: true,
            line_has_content: false,
            body_lines: 0,
            done: false,
        }
    }
}

impl<W: Write> Write for Top<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(limit) = self.lines else {
            self.inner.write_all(buf)?;
            return Ok(buf.len());
        };
        if self.done {
            return Ok(buf.len());
        }
        for (i, &b) in buf.iter().enumerate() {
            if b == b'\n' {
                let last = if self.in_header {
                    // An empty line ends the header section.
                    if !self.line_has_content {
                        self.in_header = false;
                    }
                    !self.in_header && limit == 0
                } else {
                    self.body_lines += 1;
                    self.body_lines >= limit
                };
                self.line_has_content = false;
                if last {
                    self.done = true;
                    self.inner.write_all(&buf[..=i])?;
                    return Ok(buf.len());
                }
            } else if b != b'\r' {
                self.line_has_content = true;
            }
        }
        self.inner.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
