//! POP3 sessions as types: a [`Client`] is connected but not logged in (AUTHORIZATION state);
//! [`Client::login`] turns it into a [`Session`] (TRANSACTION state). Both are generic over the
//! stream, so tests drive them with in-memory streams and fake servers.
//!
//! DELE is sent only by [`Session::dele`], which only the retention rules call, after the
//! snapshot is committed and every safety condition holds; nothing in the reading path can
//! delete mail. Deletions take effect only at a successful QUIT (RFC 1939 section 6).

use std::collections::VecDeque;
use std::io::{Read, Write};

use super::auth::{AuthMethod, Credentials, SaslExchange, apop_digest};
use super::command::Command;
use super::connection::{Body, Connection, Limits, excerpt};
use super::error::Pop3Error;
use super::response::{
    Capabilities, ListEntry, Stat, Status, UidlEntry, apop_timestamp, parse_list_line,
    parse_list_listing, parse_stat, parse_uidl_line, parse_uidl_listing,
};

/// Most SASL challenges we answer before deciding the server is looping.
const MAX_SASL_ROUNDS: usize = 8;

/// How many commands may be in flight at once, and how many response bytes they may stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineWindow {
    /// Commands sent but not yet answered. 1 means serial.
    pub commands: usize,
    /// Sum of the expected response sizes (LIST sizes) of the commands in flight. A single
    /// command larger than this is still sent on its own.
    pub bytes: u64,
}

impl PipelineWindow {
    pub const SERIAL: PipelineWindow = PipelineWindow {
        commands: 1,
        bytes: u64::MAX,
    };
}

impl Default for PipelineWindow {
    fn default() -> Self {
        PipelineWindow {
            commands: 64,
            bytes: 8 * 1024 * 1024,
        }
    }
}

/// Connection-wide options of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    pub limits: Limits,
    /// The window used when the server announces PIPELINING; otherwise commands go one by one.
    pub window: PipelineWindow,
    /// Pipeline only when true (and the server announces it).
    pub pipelining: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            limits: Limits::default(),
            window: PipelineWindow::default(),
            pipelining: true,
        }
    }
}

/// A connection in the AUTHORIZATION state.
pub struct Client<S> {
    conn: Connection<S>,
    greeting: String,
    capabilities: Capabilities,
    capa_supported: bool,
    options: SessionOptions,
    /// Host and port as configured, for OAUTHBEARER.
    server: (String, u16),
}

impl<S: Read + Write> Client<S> {
    /// Reads the greeting and asks CAPA.
    pub fn greet(stream: S, options: SessionOptions) -> Result<Client<S>, Pop3Error> {
        let mut conn = Connection::new(stream, options.limits);
        let greeting = match conn.read_status("the greeting")? {
            Status::Ok(text) => text,
            Status::Err { code, text } => {
                return Err(Pop3Error::Server {
                    command: "the greeting",
                    code,
                    text,
                });
            }
            Status::Continue(_) => {
                return Err(Pop3Error::Protocol {
                    command: "the greeting",
                    detail: "expected +OK, got a continuation".into(),
                });
            }
        };
        Client::with_connection(conn, greeting, options)
    }

    /// Continues on a stream that just completed a TLS handshake after STLS: there is no new
    /// greeting, and the capabilities must be asked again (RFC 2595 section 4).
    pub fn resume_after_stls(
        stream: S,
        greeting: String,
        options: SessionOptions,
    ) -> Result<Client<S>, Pop3Error> {
        Client::with_connection(Connection::new(stream, options.limits), greeting, options)
    }

    fn with_connection(
        conn: Connection<S>,
        greeting: String,
        options: SessionOptions,
    ) -> Result<Client<S>, Pop3Error> {
        let mut client = Client {
            conn,
            greeting,
            capabilities: Capabilities::default(),
            capa_supported: false,
            options,
            server: (String::new(), 0),
        };
        (client.capabilities, client.capa_supported) = ask_capa(&mut client.conn)?;
        Ok(client)
    }

    /// Records host and port (sent inside OAUTHBEARER).
    pub fn set_server(&mut self, host: &str, port: u16) {
        self.server = (host.to_string(), port);
    }

    /// The text of the server's greeting, after `+OK`.
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Sends STLS and gives back the raw stream for the TLS handshake. Everything the server
    /// sent after its `+OK` is discarded, unread: plaintext injected before the handshake must
    /// never be taken as a response (CVE-2021-39272). Returns the stream and how many bytes
    /// were thrown away.
    pub fn stls(mut self) -> Result<(S, String, usize), Pop3Error> {
        if !self.capabilities.stls() {
            return Err(Pop3Error::StlsNotOffered);
        }
        self.conn.send(&Command::Stls.to_wire(), "STLS")?;
        expect_ok(&mut self.conn, "STLS")?;
        let (stream, discarded) = self.conn.into_inner();
        Ok((stream, self.greeting, discarded))
    }

    /// Logs in; on failure the client comes back so the caller can QUIT politely or retry.
    pub fn login(mut self, creds: &Credentials) -> Result<Session<S>, (Pop3Error, Box<Client<S>>)> {
        match self.authenticate(creds) {
            Ok(()) => {}
            Err(e) => return Err((e, Box::new(self))),
        }
        // Some servers (Gmail) announce TOP, UIDL or PIPELINING only after login.
        let (capabilities, capa_supported) = match ask_capa(&mut self.conn) {
            Ok(caps) => caps,
            Err(e) => return Err((e, Box::new(self))),
        };
        let capabilities = if capa_supported {
            capabilities
        } else {
            self.capabilities
        };
        Ok(Session {
            conn: self.conn,
            greeting: self.greeting,
            capabilities,
            options: self.options,
            poisoned: false,
        })
    }

    fn authenticate(&mut self, creds: &Credentials) -> Result<(), Pop3Error> {
        creds.validate()?;
        self.conn.add_secret(creds.secret.clone());
        let caps = &self.capabilities;
        let method = match creds.method {
            AuthMethod::Auto => {
                if caps.has_sasl("PLAIN") {
                    AuthMethod::Plain
                } else if caps.user() || !self.capa_supported {
                    AuthMethod::User
                } else if caps.has_sasl("LOGIN") {
                    AuthMethod::Login
                } else {
                    return Err(Pop3Error::Unsupported {
                        what: "any login method popbackup can use without being asked (USER, SASL PLAIN or LOGIN); \
                               set `auth` in the account's configuration"
                            .into(),
                    });
                }
            }
            explicit => explicit,
        };
        match method {
            AuthMethod::Auto | AuthMethod::User => self.user_pass(creds),
            AuthMethod::Apop => self.apop(creds),
            AuthMethod::Plain => self.sasl(&SaslExchange::plain(creds)),
            AuthMethod::Login => self.sasl(&SaslExchange::login(creds)),
            AuthMethod::Xoauth2 => self.sasl(&SaslExchange::xoauth2(creds)),
            AuthMethod::Oauthbearer => {
                let (host, port) = self.server.clone();
                self.sasl(&SaslExchange::oauthbearer(creds, &host, port))
            }
        }
    }

    fn user_pass(&mut self, creds: &Credentials) -> Result<(), Pop3Error> {
        self.conn
            .send(&Command::user(&creds.user)?.to_wire(), "USER")?;
        expect_ok(&mut self.conn, "USER")?;
        self.conn
            .send(&Command::pass(&creds.secret)?.to_wire(), "PASS")?;
        expect_ok(&mut self.conn, "PASS")?;
        Ok(())
    }

    fn apop(&mut self, creds: &Credentials) -> Result<(), Pop3Error> {
        let Some(stamp) = apop_timestamp(&self.greeting) else {
            return Err(Pop3Error::Unsupported {
                what: "APOP (its greeting has no timestamp)".into(),
            });
        };
        let digest = apop_digest(stamp, &creds.secret);
        let command = Command::Apop {
            user: creds.user.clone(),
            digest,
        };
        self.conn.send(&command.to_wire(), "APOP")?;
        expect_ok(&mut self.conn, "APOP")?;
        Ok(())
    }

    fn sasl(&mut self, exchange: &SaslExchange) -> Result<(), Pop3Error> {
        let mechanism = exchange.mechanism;
        if self.capa_supported && !self.capabilities.has_sasl(mechanism) {
            return Err(Pop3Error::Unsupported {
                what: format!("SASL {mechanism}"),
            });
        }
        let mut pending_initial = None;
        let command = if !exchange.has_initial() {
            Command::Auth {
                mechanism: mechanism.into(),
                initial: None,
            }
        } else if exchange.initial_fits_on_command_line() {
            Command::Auth {
                mechanism: mechanism.into(),
                initial: Some(exchange.initial.clone()),
            }
        } else {
            pending_initial = Some(exchange.initial.clone());
            Command::Auth {
                mechanism: mechanism.into(),
                initial: None,
            }
        };
        // The initial response and every answer carry the secret, base64-encoded.
        self.conn.add_secret(exchange.initial.clone());
        self.conn.send(&command.to_wire(), "AUTH")?;
        let mut round = 0;
        loop {
            let status = self.conn.read_status("AUTH")?;
            match status {
                Status::Ok(_) => return Ok(()),
                Status::Err { code, text } => {
                    return Err(Pop3Error::Server {
                        command: "AUTH",
                        code,
                        text,
                    });
                }
                Status::Continue(challenge) => {
                    if round >= MAX_SASL_ROUNDS {
                        // Cancel, then give up on this connection's login.
                        self.conn.send(b"*\r\n", "AUTH")?;
                        return Err(Pop3Error::Protocol {
                            command: "AUTH",
                            detail: format!(
                                "the server sent more than {MAX_SASL_ROUNDS} challenges"
                            ),
                        });
                    }
                    let answer = match pending_initial.take() {
                        Some(initial) => initial,
                        None => {
                            let answer = exchange.answer(round, &challenge);
                            round += 1;
                            answer
                        }
                    };
                    self.conn.add_secret(answer.clone());
                    self.conn
                        .send(&Command::AuthContinue(answer).to_wire(), "AUTH")?;
                }
            }
        }
    }

    /// Ends the session politely. Errors are ignored: there is nothing left to lose.
    pub fn quit(mut self) {
        let _ = self.conn.send(&Command::Quit.to_wire(), "QUIT");
        let _ = self.conn.read_status("QUIT");
    }
}

/// One request of a batch fetched with [`Session::fetch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetch {
    pub msg: u32,
    /// `None` for RETR (the whole message), `Some(n)` for `TOP msg n`.
    pub top_lines: Option<u32>,
    /// The size the server announced (LIST), used to bound the bytes in flight.
    pub size_hint: u64,
}

impl Fetch {
    pub fn retr(msg: u32, size_hint: u64) -> Fetch {
        Fetch {
            msg,
            top_lines: None,
            size_hint,
        }
    }

    pub fn top(msg: u32, lines: u32) -> Fetch {
        // Headers are typically a few KB; the window only needs an estimate.
        Fetch {
            msg,
            top_lines: Some(lines),
            size_hint: 4096,
        }
    }

    fn command(&self) -> Command {
        match self.top_lines {
            None => Command::Retr(self.msg),
            Some(lines) => Command::Top {
                msg: self.msg,
                lines,
            },
        }
    }
}

/// What the server answered to one [`Fetch`].
pub enum Reply<'b, 'c, S> {
    /// `+OK` and the body, to be read to its end (or not: the rest is drained).
    Body(&'b mut Body<'c, S>),
    /// `-ERR`: this message only (deleted meanwhile, or TOP refused); the session goes on.
    Refused(Pop3Error),
}

/// Why a batch fetch stopped.
#[derive(Debug, thiserror::Error)]
pub enum FetchError<E> {
    #[error(transparent)]
    Pop3(#[from] Pop3Error),
    /// The caller's sink failed; the session is closed as its responses are out of step.
    #[error("storing a message failed: {0}")]
    Sink(E),
}

/// UIDL's listing, or the server's `-ERR` to it (a server without UIDL).
pub type UidlAnswer = Result<Vec<UidlEntry>, Pop3Error>;

/// A logged-in connection in the TRANSACTION state.
pub struct Session<S> {
    conn: Connection<S>,
    greeting: String,
    capabilities: Capabilities,
    options: SessionOptions,
    /// Set when a failure left responses unread; every later call fails with `Poisoned`.
    poisoned: bool,
}

impl<S: Read + Write> Session<S> {
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// The capabilities as asked after login.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// True when batches are pipelined (announced by the server and allowed by the options).
    pub fn pipelining(&self) -> bool {
        self.options.pipelining && self.capabilities.pipelining()
    }

    fn check(&self) -> Result<(), Pop3Error> {
        if self.poisoned {
            Err(Pop3Error::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Sends one command and reads its status line; `-ERR` becomes an error.
    fn simple(&mut self, command: &Command) -> Result<String, Pop3Error> {
        self.check()?;
        let name = command.name();
        self.conn
            .send(&command.to_wire(), name)
            .inspect_err(|_| self.poisoned = true)?;
        let text = expect_ok(&mut self.conn, name).inspect_err(|e| {
            if !matches!(e, Pop3Error::Server { .. }) {
                self.poisoned = true;
            }
        })?;
        Ok(text)
    }

    /// Sends a command with a multi-line answer and reads the whole listing.
    fn listing(&mut self, command: &Command) -> Result<Vec<u8>, Pop3Error> {
        self.simple(command)?;
        self.conn
            .read_listing(command.name())
            .inspect_err(|_| self.poisoned = true)
    }

    pub fn stat(&mut self) -> Result<Stat, Pop3Error> {
        let text = self.simple(&Command::Stat)?;
        parse_stat(&text).map_err(|bad| {
            protocol(
                "STAT",
                format!("unreadable answer {}", self.conn.redact(&bad.line)),
            )
        })
    }

    /// LIST: every message's number and size.
    pub fn list(&mut self) -> Result<Vec<ListEntry>, Pop3Error> {
        let body = self.listing(&Command::List(None))?;
        self.parse_list(&body)
    }

    fn parse_list(&self, body: &[u8]) -> Result<Vec<ListEntry>, Pop3Error> {
        parse_list_listing(body).map_err(|bad| {
            protocol(
                "LIST",
                format!("unreadable line {}", self.conn.redact(&bad.line)),
            )
        })
    }

    pub fn list_one(&mut self, msg: u32) -> Result<ListEntry, Pop3Error> {
        let text = self.simple(&Command::List(Some(msg)))?;
        parse_list_line(text.as_bytes()).map_err(|bad| {
            protocol(
                "LIST",
                format!("unreadable answer {}", self.conn.redact(&bad.line)),
            )
        })
    }

    /// UIDL: every message's unique id; duplicates are kept in server order.
    pub fn uidl(&mut self) -> Result<Vec<UidlEntry>, Pop3Error> {
        let body = self.listing(&Command::Uidl(None))?;
        self.parse_uidl(&body)
    }

    fn parse_uidl(&self, body: &[u8]) -> Result<Vec<UidlEntry>, Pop3Error> {
        parse_uidl_listing(body).map_err(|bad| {
            protocol(
                "UIDL",
                format!("unreadable line {}", self.conn.redact(&bad.line)),
            )
        })
    }

    /// UIDL and LIST, sent together when the server pipelines (one round trip instead of
    /// two: the whole of a night with nothing new, after login, is this and QUIT). UIDL's
    /// `-ERR` (a server without UIDL) comes back as its own result; LIST's fails the call.
    pub fn uidl_and_list(&mut self) -> Result<(UidlAnswer, Vec<ListEntry>), Pop3Error> {
        if !self.pipelining() {
            let uidls = match self.uidl() {
                Err(e) if !matches!(e, Pop3Error::Server { .. }) => return Err(e),
                uidls => uidls,
            };
            return Ok((uidls, self.list()?));
        }
        self.check()?;
        let mut wire = Command::Uidl(None).to_wire();
        wire.extend_from_slice(&Command::List(None).to_wire());
        self.conn
            .send(&wire, "LIST")
            .inspect_err(|_| self.poisoned = true)?;
        let uidls = match expect_ok(&mut self.conn, "UIDL") {
            Ok(_) => {
                let body = self
                    .conn
                    .read_listing("UIDL")
                    .inspect_err(|_| self.poisoned = true)?;
                self.parse_uidl(&body)
            }
            Err(e @ Pop3Error::Server { .. }) => Err(e),
            Err(e) => {
                self.poisoned = true;
                return Err(e);
            }
        };
        expect_ok(&mut self.conn, "LIST").inspect_err(|e| {
            if !matches!(e, Pop3Error::Server { .. }) {
                self.poisoned = true;
            }
        })?;
        let body = self
            .conn
            .read_listing("LIST")
            .inspect_err(|_| self.poisoned = true)?;
        Ok((uidls, self.parse_list(&body)?))
    }

    pub fn uidl_one(&mut self, msg: u32) -> Result<UidlEntry, Pop3Error> {
        let text = self.simple(&Command::Uidl(Some(msg)))?;
        parse_uidl_line(text.as_bytes()).map_err(|bad| {
            protocol(
                "UIDL",
                format!("unreadable answer {}", self.conn.redact(&bad.line)),
            )
        })
    }

    pub fn noop(&mut self) -> Result<(), Pop3Error> {
        self.simple(&Command::Noop).map(|_| ())
    }

    /// RETR one message, streamed into `sink`. Returns the number of bytes delivered.
    pub fn retr_to(
        &mut self,
        msg: u32,
        sink: &mut dyn Write,
    ) -> Result<u64, FetchError<std::io::Error>> {
        self.fetch_one_to(Fetch::retr(msg, 0), sink)
    }

    /// `TOP msg lines`, streamed into `sink`. Returns the number of bytes delivered.
    pub fn top_to(
        &mut self,
        msg: u32,
        lines: u32,
        sink: &mut dyn Write,
    ) -> Result<u64, FetchError<std::io::Error>> {
        self.fetch_one_to(Fetch::top(msg, lines), sink)
    }

    fn fetch_one_to(
        &mut self,
        fetch: Fetch,
        sink: &mut dyn Write,
    ) -> Result<u64, FetchError<std::io::Error>> {
        let mut delivered = 0;
        let mut refused = None;
        self.fetch_serial_or_pipelined(&[fetch], false, |_, reply| {
            match reply {
                Reply::Body(body) => delivered = std::io::copy(body, sink)?,
                Reply::Refused(e) => refused = Some(e),
            }
            Ok(())
        })?;
        match refused {
            Some(e) => Err(FetchError::Pop3(e)),
            None => Ok(delivered),
        }
    }

    /// Fetches a batch of messages (RETR or TOP), pipelined when the server allows it, and hands
    /// each reply to `on_reply` in request order. A `-ERR` for one message is passed on as
    /// [`Reply::Refused`] and the batch goes on; a transport failure or a sink error ends it.
    pub fn fetch<F, E>(&mut self, requests: &[Fetch], on_reply: F) -> Result<(), FetchError<E>>
    where
        F: FnMut(&Fetch, Reply<'_, '_, S>) -> Result<(), E>,
    {
        self.fetch_serial_or_pipelined(requests, true, on_reply)
    }

    fn fetch_serial_or_pipelined<F, E>(
        &mut self,
        requests: &[Fetch],
        allow_pipelining: bool,
        mut on_reply: F,
    ) -> Result<(), FetchError<E>>
    where
        F: FnMut(&Fetch, Reply<'_, '_, S>) -> Result<(), E>,
    {
        self.check()?;
        let window = if allow_pipelining && self.pipelining() {
            self.options.window
        } else {
            PipelineWindow::SERIAL
        };
        let max_commands = window.commands.max(1);
        let mut next = 0;
        let mut in_flight: VecDeque<&Fetch> = VecDeque::new();
        let mut bytes_in_flight: u64 = 0;
        let mut wire = Vec::with_capacity(1024);
        loop {
            // Fill the window once it is half empty: always at least one command, then while
            // both bounds allow. Refilling in batches sends many commands in one TLS record
            // and one write, which saves both ends a wake-up per message.
            let low = in_flight.len() <= max_commands / 2 && bytes_in_flight <= window.bytes / 2;
            while low
                && next < requests.len()
                && (in_flight.is_empty()
                    || (in_flight.len() < max_commands
                        && bytes_in_flight.saturating_add(requests[next].size_hint)
                            <= window.bytes))
            {
                let request = &requests[next];
                request.command().write_to(&mut wire);
                bytes_in_flight = bytes_in_flight.saturating_add(request.size_hint);
                in_flight.push_back(request);
                next += 1;
            }
            if !wire.is_empty() {
                // Name the batch by its last command: what a failed send was carrying.
                let name = in_flight.back().map_or("RETR", |r| r.command().name());
                self.conn
                    .send(&wire, name)
                    .inspect_err(|_| self.poisoned = true)?;
                wire.clear();
            }
            let Some(request) = in_flight.pop_front() else {
                return Ok(());
            };
            bytes_in_flight = bytes_in_flight.saturating_sub(request.size_hint);
            self.answer_one(request, &mut on_reply)?;
        }
    }

    /// Reads the answer to one fetched command and hands it to the caller.
    fn answer_one<F, E>(&mut self, request: &Fetch, on_reply: &mut F) -> Result<(), FetchError<E>>
    where
        F: FnMut(&Fetch, Reply<'_, '_, S>) -> Result<(), E>,
    {
        let name = request.command().name();
        let status = self
            .conn
            .read_status(name)
            .inspect_err(|_| self.poisoned = true)?;
        match status {
            Status::Ok(_) => {
                let limit = match request.top_lines {
                    None => self.options.limits.max_message_bytes,
                    Some(_) => self.options.limits.max_listing_bytes,
                };
                let mut body = self.conn.body(name, limit);
                let outcome = on_reply(request, Reply::Body(&mut body));
                // The sink may stop early; the rest must still be read to stay in step.
                let drained = if body.has_failed() {
                    Ok(())
                } else {
                    body.drain()
                };
                if let Some(failure) = body.take_failure() {
                    self.poisoned = true;
                    return Err(FetchError::Pop3(failure));
                }
                if let Err(e) = drained {
                    self.poisoned = true;
                    return Err(FetchError::Pop3(e));
                }
                outcome.map_err(|e| {
                    self.poisoned = true;
                    FetchError::Sink(e)
                })
            }
            Status::Err { code, text } => {
                let refusal = Pop3Error::Server {
                    command: name,
                    code,
                    text,
                };
                on_reply(request, Reply::Refused(refusal)).map_err(|e| {
                    self.poisoned = true;
                    FetchError::Sink(e)
                })
            }
            Status::Continue(_) => {
                self.poisoned = true;
                Err(FetchError::Pop3(protocol(
                    name,
                    "unexpected continuation line".into(),
                )))
            }
        }
    }

    /// Gives the stream back without QUIT (tests, or a connection already known to be broken).
    pub fn into_inner(self) -> S {
        self.conn.into_inner().0
    }

    /// Marks message `msg` for deletion. Nothing is deleted until a successful [`Session::quit`];
    /// a connection that drops first deletes nothing.
    pub fn dele(&mut self, msg: u32) -> Result<(), Pop3Error> {
        self.simple(&Command::Dele(msg)).map(|_| ())
    }

    /// Ends the session with QUIT: the server's commit point. Without DELE it commits nothing
    /// and only releases the server's mailbox lock; after DELE, an error here means the
    /// deletions may not have happened.
    pub fn quit(mut self) -> Result<(), Pop3Error> {
        if self.poisoned {
            return Ok(());
        }
        self.conn.send(&Command::Quit.to_wire(), "QUIT")?;
        expect_ok(&mut self.conn, "QUIT").map(|_| ())
    }
}

/// Asks CAPA. A server without CAPA (`-ERR`) is answered with empty capabilities.
fn ask_capa<S: Read + Write>(conn: &mut Connection<S>) -> Result<(Capabilities, bool), Pop3Error> {
    conn.send(&Command::Capa.to_wire(), "CAPA")?;
    match conn.read_status("CAPA")? {
        Status::Ok(_) => {
            let body = conn.read_listing("CAPA")?;
            Ok((Capabilities::parse(&body), true))
        }
        Status::Err { .. } => Ok((Capabilities::default(), false)),
        Status::Continue(_) => Err(protocol("CAPA", "unexpected continuation line".into())),
    }
}

/// Reads a status line that must be `+OK`; returns its text.
fn expect_ok<S: Read + Write>(
    conn: &mut Connection<S>,
    command: &'static str,
) -> Result<String, Pop3Error> {
    match conn.read_status(command)? {
        Status::Ok(text) => Ok(text),
        Status::Err { code, text } => Err(Pop3Error::Server {
            command,
            code,
            text,
        }),
        Status::Continue(data) => Err(protocol(
            command,
            format!("unexpected continuation {}", excerpt(data.as_bytes())),
        )),
    }
}

fn protocol(command: &'static str, detail: String) -> Pop3Error {
    Pop3Error::Protocol { command, detail }
}
