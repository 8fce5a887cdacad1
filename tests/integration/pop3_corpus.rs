//! Acceptance: every message of the corpus, served by Dovecot, arrives through our client
//! exactly as Dovecot sends it — over implicit TLS and STLS, pipelined and serial.
//!
//! The reference is what Dovecot's RETR sends for a stored file (`dovecot_retr_bytes`, as
//! measured in `notes/real-servers.md`). Messages are matched as a multiset of SHA-256 digests,
//! so the check does not depend on the order in which Dovecot numbers the files.

use std::collections::HashMap;

use popbackup::pop3::{self, AuthMethod, Fetch, Reply, TlsMode};
use sha2::{Digest as _, Sha256};

use crate::support::corpus_messages;
use crate::support::dovecot::{Dovecot, dovecot_retr_bytes};

fn round_trip(user: &str, tls: TlsMode, pipelining: bool) {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let Some(corpus) = corpus_messages() else {
        return;
    };
    assert_eq!(corpus.len(), 1259, "the corpus has 1,259 messages");
    dovecot.fill_maildir(
        user,
        corpus.iter().enumerate().map(|(i, (name, bytes))| {
            (
                format!("{i:05}.{}", name.replace(['/', ':'], "_")),
                bytes.as_slice(),
            )
        }),
    );
    // Expected bytes by digest, with the corpus files that produce them (duplicates exist).
    let mut expected: HashMap<[u8; 32], Vec<&str>> = HashMap::new();
    let mut expected_total = 0u64;
    for (name, bytes) in &corpus {
        let wire = dovecot_retr_bytes(bytes);
        expected_total += wire.len() as u64;
        let digest: [u8; 32] = Sha256::digest(&wire).into();
        expected.entry(digest).or_default().push(name);
    }

    let mut options = dovecot.options(tls);
    options.session.pipelining = pipelining;
    let mut session =
        pop3::open_session(&options, &dovecot.credentials(user, AuthMethod::Auto)).unwrap();
    assert_eq!(session.pipelining(), pipelining);
    let list = session.list().unwrap();
    assert_eq!(list.len(), corpus.len());
    let requests: Vec<Fetch> = list.iter().map(|e| Fetch::retr(e.msg, e.size)).collect();
    let mut unexpected = Vec::new();
    let mut total = 0u64;
    session
        .fetch(&requests, |req, reply| -> std::io::Result<()> {
            let Reply::Body(body) = reply else {
                panic!("RETR {} refused", req.msg)
            };
            let mut bytes = Vec::new();
            std::io::copy(body, &mut bytes)?;
            total += bytes.len() as u64;
            let digest: [u8; 32] = Sha256::digest(&bytes).into();
            match expected.get_mut(&digest).and_then(|names| names.pop()) {
                Some(_) => {}
                None => unexpected.push((req.msg, bytes.len())),
            }
            Ok(())
        })
        .unwrap();
    session.quit().unwrap();
    let missing: Vec<&str> = expected.values().flatten().copied().collect();
    assert!(
        unexpected.is_empty() && missing.is_empty(),
        "{} messages differ from what Dovecot sends (msg, len): {:?}; corpus files not delivered exactly: {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)],
        &missing[..missing.len().min(10)]
    );
    assert_eq!(total, expected_total);
}

#[test]
fn corpus_over_implicit_tls_pipelined() {
    round_trip("u01", TlsMode::Implicit, true);
}

#[test]
fn corpus_over_implicit_tls_serial() {
    round_trip("u02", TlsMode::Implicit, false);
}

#[test]
fn corpus_over_stls_pipelined() {
    round_trip("u03", TlsMode::Starttls, true);
}

#[test]
fn corpus_over_stls_serial() {
    round_trip("u04", TlsMode::Starttls, false);
}
