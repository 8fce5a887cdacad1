//! popbackup: verifiable, deduplicated, compressed backups of POP3 mailboxes.
//!
//! The library is split by concern; see `../shared/STYLE.md` and `docs/` for the design:
//! - [`pop3`]: the POP3 client (TLS, STLS, SASL, pipelining, streaming bodies).
//! - [`cli`]: argument types, output and exit codes; the only module that prints.
//! - [`failure`]: what kind of failure an error is (the CLI maps kinds to exit codes).

pub mod cli;
pub mod config;
pub mod durable;
pub mod failure;
pub mod import;
pub mod mail;
pub mod pop3;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod serve;
pub mod snapshot;
mod tls;
pub mod verify;

pub use pop3::{Credentials, Pop3Error, Secret, ServerOptions, Session, TlsMode};
