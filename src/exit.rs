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

use crate::pop3::ErrorClass;

/// The exit code for a POP3 failure of the given class.
pub fn for_pop3(class: ErrorClass) -> u8 {
    match class {
        ErrorClass::Temporary => TEMP_FAIL,
        ErrorClass::Unavailable | ErrorClass::Protocol => UNAVAILABLE,
        ErrorClass::Auth => NO_PERM,
        ErrorClass::Config => CONFIG,
    }
}
