//! The POP3 client (RFC 1939, 2449, 2595, 5034, 8314): blocking I/O over TCP and rustls.
//!
//! [`connect`] gives a [`Client`] (authorization state) over a verified connection;
//! [`Client::login`] gives a [`Session`] (transaction state) with STAT, LIST, UIDL, TOP, RETR,
//! NOOP and QUIT, and [`Session::fetch`] streams batches of messages, pipelined when the server
//! announces PIPELINING. Message bodies arrive exactly as sent, dot-stuffing undone. It knows
//! nothing of the repository or the file system, and never sends DELE.

pub mod auth;
pub mod client;
pub mod command;
pub mod connection;
pub mod dotstuff;
pub mod error;
pub mod response;
pub mod stream;

pub use auth::{AuthMethod, Credentials, Secret};
pub use client::{Client, Fetch, FetchError, PipelineWindow, Reply, Session, SessionOptions};
pub use connection::{Body, Limits};
pub use error::{ErrorClass, Pop3Error, RespCode};
pub use response::{Capabilities, ListEntry, Stat, Uidl, UidlEntry};
pub use stream::{Fingerprint, ServerOptions, TlsMode, Transport, connect};

/// Connects and logs in: the usual way to get a [`Session`].
pub fn open_session(
    options: &ServerOptions,
    creds: &Credentials,
) -> Result<Session<Transport>, Pop3Error> {
    let client = connect(options)?;
    client.login(creds).map_err(|(err, client)| {
        client.quit();
        err
    })
}
