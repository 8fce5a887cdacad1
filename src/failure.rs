//! What kind of failure an error is, as every library layer says it: the CLI alone turns a
//! kind into an exit code (`cli::exit`), so that no layer below it knows about sysexits or
//! about another layer's error classes.

use serde::Serialize;

/// The kind of a failure, as a cron job or a script would react to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureKind {
    /// The command was asked for something it cannot do: an unknown snapshot, account or
    /// message, a refused request.
    Usage,
    /// Damaged data: a corrupt repository file, unreadable input.
    Data,
    /// The server could not be reached, or misbehaved.
    Unavailable,
    /// A local read or write failed.
    Io,
    /// Worth retrying later without changing anything: a busy server, a timeout, a held lock.
    Temporary,
    /// Credentials, the server's identity, or a file's permissions were refused.
    Auth,
    /// The configuration is wrong.
    Config,
    /// A failure of popbackup itself (a worker that stopped).
    Internal,
}
