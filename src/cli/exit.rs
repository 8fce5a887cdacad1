//! Exit codes (sysexits.h), part of the interface that cron jobs and scripts depend on.

/// Success, also when there was no new mail.
pub const OK: u8 = 0;
/// Some account failed while others may have succeeded.
pub const SOME_FAILED: u8 = 1;
/// Wrong usage: bad arguments, an unknown snapshot or account, a refused request.
pub const USAGE: u8 = 64;
/// Bad data: a damaged repository or unreadable input.
pub const DATA_ERR: u8 = 65;
/// The server could not be reached or misbehaved.
pub const UNAVAILABLE: u8 = 69;
/// A local I/O error.
pub const IO_ERR: u8 = 74;
/// Temporary failure: server busy, login delay, timeout, repository locked. Retry next run.
pub const TEMP_FAIL: u8 = 75;
/// Authentication refused or the server's identity could not be verified.
pub const NO_PERM: u8 = 77;
/// Configuration error.
pub const CONFIG: u8 = 78;

use crate::failure::FailureKind;

/// The exit code for a failure of the given kind: the one place kinds become sysexits.
pub fn for_kind(kind: FailureKind) -> u8 {
    match kind {
        FailureKind::Usage => USAGE,
        FailureKind::Data => DATA_ERR,
        FailureKind::Unavailable => UNAVAILABLE,
        FailureKind::Io => IO_ERR,
        FailureKind::Temporary => TEMP_FAIL,
        FailureKind::Auth => NO_PERM,
        FailureKind::Config => CONFIG,
        FailureKind::Internal => SOME_FAILED,
    }
}
