//! The real Dovecot started by `scripts/test.sh` (through `scripts/dovecot.sh`).
//!
//! Tests find it through `POPBACKUP_DOVECOT_DIR` (the directory holding `harness.env`). When it
//! is missing a test is skipped with a message — except under `CI=true`, where a missing
//! Dovecot is a failure: tests that need a real server must never silently pass.
//!
//! Each test uses its own user (u01..u60) because Dovecot locks a mailbox per POP3 session
//! and tests run in parallel. Allocation: u01-u04 corpus round trips, u05-u14 client tests,
//! u15-u20 TLS tests, u21-u40 snapshot tests, u41-u50 object-storage and import tests,
//! u51-u52 serve tests, u53 the round-trip count, u54-u60 free.

use std::collections::HashMap;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::time::Duration;

use popbackup::pop3::{
    self, AuthMethod, Credentials, Fetch, Reply, Secret, ServerOptions, TlsMode,
};
use popbackup::repo::MessageHash;

pub struct Dovecot {
    vars: HashMap<String, String>,
}

impl Dovecot {
    /// The running test Dovecot, or `None` (skip) outside CI when there is none.
    pub fn get() -> Option<Dovecot> {
        let dir = std::env::var("POPBACKUP_DOVECOT_DIR")
            .ok()
            .filter(|d| !d.is_empty());
        let env_file = dir.as_ref().map(|d| Path::new(d).join("harness.env"));
        let text = env_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok());
        let Some(text) = text else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "CI=true but no test Dovecot is running (POPBACKUP_DOVECOT_DIR={dir:?}); \
                     run the tests through scripts/test.sh"
                );
            }
            eprintln!(
                "SKIPPED: no test Dovecot; run scripts/test.sh to include the real-server tests"
            );
            return None;
        };
        Some(Dovecot {
            vars: super::env_file(&text),
        })
    }

    fn var(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{key} missing in harness.env"))
    }

    pub fn ca_file(&self) -> PathBuf {
        PathBuf::from(self.var("POPBACKUP_DOVECOT_CA"))
    }

    pub fn other_ca_file(&self) -> PathBuf {
        PathBuf::from(self.var("POPBACKUP_DOVECOT_OTHER_CA"))
    }

    pub fn server_cert(&self) -> PathBuf {
        PathBuf::from(self.var("POPBACKUP_DOVECOT_CERT"))
    }

    /// The server certificate's private key, next to it.
    pub fn server_key(&self) -> PathBuf {
        self.server_cert().with_file_name("server.key")
    }

    pub fn port(&self, tls: TlsMode) -> u16 {
        let key = match tls {
            TlsMode::Implicit => "POPBACKUP_DOVECOT_TLS_PORT",
            TlsMode::Starttls | TlsMode::None => "POPBACKUP_DOVECOT_PLAIN_PORT",
        };
        self.var(key).parse().unwrap()
    }

    /// Options for `localhost` with the harness CA trusted, short timeouts.
    pub fn options(&self, tls: TlsMode) -> ServerOptions {
        let mut options = ServerOptions::new("localhost", tls);
        options.port = self.port(tls);
        options.ca_file = Some(self.ca_file());
        options.danger_allow_plaintext = tls == TlsMode::None;
        options.connect_timeout = Duration::from_secs(10);
        options.io_timeout = Duration::from_secs(30);
        options
    }

    pub fn credentials(&self, user: &str, method: AuthMethod) -> Credentials {
        Credentials::new(user, Secret::new(format!("pw-{user}")), method)
    }

    /// `user`'s Maildir.
    pub fn maildir(&self, user: &str) -> PathBuf {
        Path::new(self.var("POPBACKUP_DOVECOT_MAIL"))
            .join(user)
            .join("Maildir")
    }

    /// Delivers one more message into `user`'s Maildir (`new/`), owned by the mail user.
    pub fn deliver(&self, user: &str, name: &str, bytes: &[u8]) {
        let maildir = self.maildir(user);
        let owner = std::fs::metadata(&maildir).unwrap();
        use std::os::unix::fs::MetadataExt as _;
        let tmp = maildir.join("tmp").join(name);
        std::fs::write(&tmp, bytes).unwrap();
        chown(&tmp, Some(owner.uid()), Some(owner.gid())).unwrap();
        std::fs::rename(&tmp, maildir.join("new").join(name)).unwrap();
    }

    /// Removes the message delivered as `name` (in `new/`, or in `cur/` with flags appended).
    pub fn remove(&self, user: &str, name: &str) {
        let maildir = self.maildir(user);
        for sub in ["new", "cur"] {
            for entry in std::fs::read_dir(maildir.join(sub)).unwrap() {
                let entry = entry.unwrap();
                let file = entry.file_name().to_string_lossy().to_string();
                if file == name || file.starts_with(&format!("{name}:")) {
                    std::fs::remove_file(entry.path()).unwrap();
                    return;
                }
            }
        }
        panic!("{name} is not in {}", maildir.display());
    }

    /// Dovecot's logout lines for `user` (`Logged out top=T/B, retr=R/B, del=D/N, size=S`),
    /// oldest first.
    pub fn logouts(&self, user: &str) -> Vec<String> {
        let log = Path::new(self.var("POPBACKUP_DOVECOT_DIR")).join("log/dovecot.log");
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tag = format!("pop3({user})<");
        text.lines()
            .filter(|l| l.contains(&tag) && l.contains("Disconnected"))
            .map(str::to_string)
            .collect()
    }

    /// Waits until `user` has at least `count` logout lines (Dovecot logs a session's end a
    /// moment after the client has gone) and returns them.
    pub fn wait_logouts(&self, user: &str, count: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let lines = self.logouts(user);
            if lines.len() >= count || std::time::Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Empties `user`'s Maildir and delivers `messages` (file name, bytes) into `new/`, owned by
    /// the mail user as Dovecot requires.
    /// What Dovecot serves `user` now: the SHA-256 of every message RETR gives, in order.
    pub fn served_hashes(&self, user: &str) -> Vec<MessageHash> {
        let mut session = pop3::open_session(
            &self.options(TlsMode::Implicit),
            &self.credentials(user, AuthMethod::Auto),
        )
        .unwrap();
        let list = session.list().unwrap();
        let requests: Vec<Fetch> = list.iter().map(|e| Fetch::retr(e.msg, e.size)).collect();
        let mut hashes = Vec::new();
        session
            .fetch(&requests, |_, reply| -> std::io::Result<()> {
                let Reply::Body(body) = reply else {
                    panic!("RETR refused")
                };
                let mut bytes = Vec::new();
                std::io::copy(body, &mut bytes)?;
                hashes.push(MessageHash::of(&bytes));
                Ok(())
            })
            .unwrap();
        session.quit().unwrap();
        hashes
    }

    pub fn fill_maildir<'a>(
        &self,
        user: &str,
        messages: impl IntoIterator<Item = (String, &'a [u8])>,
    ) {
        let maildir = Path::new(self.var("POPBACKUP_DOVECOT_MAIL"))
            .join(user)
            .join("Maildir");
        let owner = std::fs::metadata(maildir.parent().unwrap()).unwrap();
        use std::os::unix::fs::MetadataExt as _;
        let (uid, gid) = (owner.uid(), owner.gid());
        if maildir.exists() {
            std::fs::remove_dir_all(&maildir).unwrap();
        }
        for sub in ["", "new", "cur", "tmp"] {
            let d = maildir.join(sub);
            std::fs::create_dir_all(&d).unwrap();
            chown(&d, Some(uid), Some(gid)).unwrap();
        }
        for (name, bytes) in messages {
            let path = maildir.join("new").join(&name);
            std::fs::write(&path, bytes).unwrap();
            chown(&path, Some(uid), Some(gid)).unwrap();
        }
    }
}

/// What Dovecot's RETR returns for a stored file (measured, `notes/real-servers.md`): every bare
/// LF becomes CRLF and a final CRLF is added where the file does not end with LF.
pub fn dovecot_retr_bytes(file: &[u8]) -> Vec<u8> {
    let mut out = popbackup::mail::lf_to_crlf(file);
    if !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}
