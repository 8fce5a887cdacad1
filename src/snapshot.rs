//! The snapshot engine: the only module that uses both the POP3 client and the repository.
//!
//! [`inventory`] lists a mailbox and compares it with what the repository holds;
//! [`engine`] downloads what is new and commits a manifest of the whole inventory, for any
//! number of accounts in parallel. Neither prints: progress goes to an [`Observer`] and results
//! come back as [`AccountReport`]s for the CLI to show.
//!
//! Error policy: an account's run fails with a [`SnapshotError`] that keeps the layer it came
//! from (configuration, POP3, repository), so the exit code can be chosen from the cause; the
//! failure is recorded in the account's report and the other accounts go on.

pub mod engine;
mod interrupt;
pub mod inventory;
mod run_list;
mod starting_point;
mod storer;
mod writer;

pub use engine::{
    AccountReport, Observer, Outcome, Silent, SnapshotOptions, SnapshotRun, run_snapshot,
    snapshot_account,
};
pub use interrupt::Interrupt;
pub use inventory::{
    Inventory, InventoryEntry, InventoryReport, Listing, NewMessage, ServerMessage,
    VanishedMessage, fetch_headers, inspect, take_listing,
};
pub use writer::WriterSource;

use crate::config::ConfigError;
use crate::failure::FailureKind;
use crate::pop3::Pop3Error;
use crate::repo::RepoError;

/// Why an account's snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Pop3(#[from] Pop3Error),
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// SIGINT or SIGTERM: the run stopped after a checkpoint of what it had downloaded.
    #[error("interrupted by signal {signal}; what was downloaded is kept, run again to resume")]
    Interrupted { signal: i32 },
    /// The server refused the credentials: which account, user and host, and where the
    /// secret came from, so that the user knows what to check (never the secret itself).
    #[error(
        "the login as {user:?} at {host} was refused ({source}); check `user` and the secret \
         that `{secret_key}` gives in [accounts.{account}]"
    )]
    LoginRefused {
        account: String,
        user: String,
        host: String,
        secret_key: &'static str,
        #[source]
        source: Box<Pop3Error>,
    },
}

impl SnapshotError {
    /// Worth retrying next run without changing anything.
    pub fn is_temporary(&self) -> bool {
        self.kind() == FailureKind::Temporary
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> FailureKind {
        match self {
            SnapshotError::Config(_) => FailureKind::Config,
            SnapshotError::Interrupted { .. } => FailureKind::Temporary,
            SnapshotError::Pop3(e) => e.kind(),
            SnapshotError::LoginRefused { source, .. } => source.kind(),
            SnapshotError::Repo(e) => e.kind(),
        }
    }
}
