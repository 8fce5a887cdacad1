//! `popbackup serve`: an archive given back to any mail client over POP3, read-only.
//!
//! The messages a restore would select become one maildrop that every connection sees: each
//! message's archived bytes, dot-stuffed on the wire, under the UIDL the original server gave
//! it (so a client that still remembers it skips what it has). DELE is accepted for the session,
//! as clients send it, and changes nothing: the greeting and CAPA `IMPLEMENTATION` say so.
//!
//! Each connection has a thread of its own, up to [`ServeOptions::max_connections`]; a
//! message goes out streamed from its frame (never whole in memory beyond the repository's
//! small-message buffer); a command line is at most [`session::MAX_LINE`] bytes; a connection
//! idle for [`ServeOptions::idle_timeout`] or open longer than
//! [`ServeOptions::session_timeout`] is closed. An interrupt stops accepting and ends every
//! session at its next command (or within a second while it waits).

mod session;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::failure::FailureKind;
use crate::pop3::Secret;
use crate::repo::{MessageHash, Repository};
use crate::restore::Item;
use crate::snapshot::Interrupt;

/// How clients reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeTls {
    /// No TLS: only on a loopback address, unless insecure serving is allowed.
    None,
    /// TLS from the first byte (port 995's way).
    Implicit,
    /// Plain text until the client says STLS; logging in needs it first.
    Stls,
}

pub struct ServeOptions {
    pub user: String,
    pub password: Secret,
    pub tls: ServeTls,
    /// Required unless `tls` is [`ServeTls::None`].
    pub tls_config: Option<Arc<rustls::ServerConfig>>,
    /// Logging in over plain text (no TLS, or before STLS) is allowed.
    pub allow_plain_login: bool,
    pub idle_timeout: Duration,
    pub session_timeout: Duration,
    pub max_connections: usize,
}

impl ServeOptions {
    /// Defaults: 10 minutes idle (RFC 1939's minimum), an hour in all, 16 connections.
    pub fn new(user: String, password: Secret) -> ServeOptions {
        ServeOptions {
            user,
            password,
            tls: ServeTls::None,
            tls_config: None,
            allow_plain_login: false,
            idle_timeout: Duration::from_secs(600),
            session_timeout: Duration::from_secs(3600),
            max_connections: 16,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "{0} is not a loopback address, and mail and the password would cross the network in \
         plain text: give --tls-cert and --tls-key, or --allow-insecure if the network is \
         yours"
    )]
    Insecure(SocketAddr),
    #[error("{0}")]
    Tls(String),
}

impl ServeError {
    pub fn kind(&self) -> FailureKind {
        match self {
            ServeError::Listen { .. } => FailureKind::Unavailable,
            ServeError::Insecure(_) | ServeError::Tls(_) => FailureKind::Usage,
        }
    }
}

/// One message as the server offers it.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    pub hash: MessageHash,
    pub uidl: String,
    /// The archived (wire) size: what LIST and STAT say.
    pub size: u64,
}

/// The messages every connection sees, numbered from 1 in this order.
#[derive(Debug, Default)]
pub struct Maildrop {
    messages: Vec<Served>,
}

impl Maildrop {
    /// The selected messages, under their original UIDLs. One that has none, or one no POP3
    /// client could take (RFC 1939: 1 to 70 characters from 0x21 to 0x7E), or one a message
    /// before it already has (two accounts, one UIDL), is offered under its SHA-256 instead,
    /// which is unique and stable.
    pub fn new(items: &[Item]) -> Maildrop {
        let mut taken = HashSet::new();
        let messages = items
            .iter()
            .map(|item| {
                let original = item
                    .uidl
                    .as_deref()
                    .filter(|u| (1..=70).contains(&u.len()))
                    .filter(|u| u.bytes().all(|b| (0x21..=0x7E).contains(&b)))
                    .filter(|u| taken.insert(u.to_string()));
                let uidl = match original {
                    Some(u) => u.to_string(),
                    None => {
                        let hex = item.hash.to_hex();
                        taken.insert(hex.clone());
                        hex
                    }
                };
                Served {
                    hash: item.hash,
                    uidl,
                    size: item.size,
                }
            })
            .collect();
        Maildrop { messages }
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn total_size(&self) -> u64 {
        self.messages.iter().map(|m| m.size).sum()
    }
}

/// A bound listener, ready to [`Server::run`].
pub struct Server {
    listener: TcpListener,
    options: Arc<ServeOptions>,
}

impl Server {
    /// Binds `addr`; refuses plain text on a non-loopback address unless allowed, and TLS
    /// without a certificate.
    pub fn bind(
        addr: SocketAddr,
        options: ServeOptions,
        allow_insecure: bool,
    ) -> Result<Server, ServeError> {
        if options.tls == ServeTls::None && !addr.ip().is_loopback() && !allow_insecure {
            return Err(ServeError::Insecure(addr));
        }
        if options.tls != ServeTls::None && options.tls_config.is_none() {
            return Err(ServeError::Tls(
                "TLS needs a certificate: give --tls-cert and --tls-key".into(),
            ));
        }
        let listener =
            TcpListener::bind(addr).map_err(|source| ServeError::Listen { addr, source })?;
        // Accepting polls, so that an interrupt is seen within a tenth of a second.
        listener
            .set_nonblocking(true)
            .map_err(|source| ServeError::Listen { addr, source })?;
        Ok(Server {
            listener,
            options: Arc::new(options),
        })
    }

    /// The address it listens on (the port the system chose for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `maildrop` until `stop` is set; `log` hears of each connection's end.
    pub fn run(
        &self,
        repo: Arc<Repository>,
        maildrop: Arc<Maildrop>,
        stop: &Interrupt,
        log: &(dyn Fn(&str) + Sync),
    ) {
        let active = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|scope| {
            while !stop.is_set() {
                let (stream, peer) = match self.listener.accept() {
                    Ok(accepted) => accepted,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    Err(e) => {
                        log(&format!("cannot accept a connection: {e}"));
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                let busy = active.fetch_add(1, Ordering::SeqCst) >= self.options.max_connections;
                let (repo, maildrop, options, active) = (
                    Arc::clone(&repo),
                    Arc::clone(&maildrop),
                    Arc::clone(&self.options),
                    Arc::clone(&active),
                );
                scope.spawn(move || {
                    let outcome =
                        session::serve_connection(stream, &repo, &maildrop, &options, stop, busy);
                    active.fetch_sub(1, Ordering::SeqCst);
                    log(&format!("{peer}: {outcome}"));
                });
            }
        });
    }
}
