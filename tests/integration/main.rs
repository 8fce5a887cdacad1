//! popbackup's integration tests: one test binary (fast to link), grouped by subject.
// Tests build fixtures directly; the durable-write rule is for the product code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod support;

mod cli;
mod encryption;
mod fuzz_regressions;
mod heal;
mod hostile;
mod import;
mod local_faults;
mod pop3_corpus;
mod pop3_dovecot;
mod pop3_fake;
mod pop3_mock;
mod pop3_tls;
mod repo;
mod restore;
mod retention;
mod s3;
mod secrets;
mod serve;
mod snapshot;
mod snapshot_fake;
mod snapshot_kill;
mod verify;
