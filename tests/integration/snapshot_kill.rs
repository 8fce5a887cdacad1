//! Acceptance: a large first run killed with SIGKILL at random moments, then run again, ends
//! with every message archived exactly once, and no message downloaded more than twice.
//!
//! The binary talks to Dovecot through a small TCP proxy in this test. The proxy counts every
//! `RETR n` the client sends (per message number, which Dovecot keeps stable while the mailbox
//! does not change), and slows the server's replies so that a 5 MB mailbox takes a couple of
//! seconds — long enough to be killed in the middle, several times.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use popbackup::pop3::TlsMode;
use popbackup::repo::{MessageHash, Repository, layout, pack};

use crate::snapshot::{Setup, counter, stderr};
use crate::support::corpus_messages;
use crate::support::dovecot::{Dovecot, dovecot_retr_bytes};

/// Forwards connections to `target`, counting RETR commands and throttling replies.
struct CountingProxy {
    port: u16,
    retr: Arc<Mutex<HashMap<u32, u32>>>,
}

impl CountingProxy {
    fn start(target: u16, chunk: usize, pause: Duration) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let retr = Arc::new(Mutex::new(HashMap::new()));
        let counts = retr.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let counts = counts.clone();
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                // Client -> server: forward, and count RETR lines.
                std::thread::spawn(move || {
                    let (mut from, mut to) = (client, server);
                    let mut line = Vec::new();
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        for &b in &buf[..n] {
                            line.push(b);
                            if b == b'\n' {
                                let text = String::from_utf8_lossy(&line);
                                if let Some(n) = text.trim_end().strip_prefix("RETR ") {
                                    let msg: u32 = n.parse().unwrap();
                                    *counts.lock().unwrap().entry(msg).or_default() += 1;
                                }
                                line.clear();
                            }
                        }
                    }
                    let _ = to.shutdown(Shutdown::Both);
                    let _ = from.shutdown(Shutdown::Both);
                });
                // Server -> client, slowly.
                std::thread::spawn(move || {
                    let (mut from, mut to) = (s2, c2);
                    let mut buf = vec![0u8; chunk];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        std::thread::sleep(pause);
                    }
                    let _ = to.shutdown(Shutdown::Both);
                    let _ = from.shutdown(Shutdown::Both);
                });
            }
        });
        CountingProxy { port, retr }
    }
}

#[test]
fn sigkill_during_a_first_run_then_resume() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let Some(corpus) = corpus_messages() else {
        return;
    };
    let user = "u27";
    dovecot.fill_maildir(
        user,
        corpus
            .iter()
            .enumerate()
            .map(|(i, (_, bytes))| (format!("{i:05}"), bytes.as_slice())),
    );
    let proxy = CountingProxy::start(
        dovecot.port(TlsMode::None),
        8 * 1024,
        Duration::from_millis(10),
    );
    let setup = Setup::with_tls(
        &dovecot,
        &[("big", user)],
        "checkpoint_size = \"128 KiB\"",
        TlsMode::None,
    );
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let text = text.replace(
        &format!("port = {}", dovecot.port(TlsMode::None)),
        &format!("port = {}", proxy.port),
    );
    // Bound what is in flight when a kill comes (the default window is 8 MiB, more than this
    // whole mailbox): whatever was requested but not checkpointed is at most 256 KiB of RETRs
    // plus one checkpoint's worth, which the next run passes well within its time.
    let text = text + "pipeline_window_bytes = \"256 KiB\"\n";
    std::fs::write(&setup.config, text).unwrap();

    // Deterministic "random" kill times between 0.9 and 1.7 s: at 0.8 MB/s through the proxy
    // each run gets well past its first checkpoint (even with a slow start on a loaded
    // machine), so no message is caught un-checkpointed by two kills in a row.
    let mut seed: u64 = 0x5eed_cafe;
    let mut kills = 0;
    for _ in 0..8 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(900 + (seed >> 33) % 800);
        let mut child = setup.command(&["snapshot", "-q"]).spawn().unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    assert!(
        kills >= 3,
        "only {kills} kills: the run is too fast to test resuming"
    );
    let out = setup.run(&["snapshot", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Every message is in the final snapshot and stored exactly once.
    let mut expected: HashMap<MessageHash, usize> = HashMap::new();
    for (_, bytes) in &corpus {
        *expected
            .entry(MessageHash::of(&dovecot_retr_bytes(bytes)))
            .or_default() += 1;
    }
    let repo = Repository::open(&setup.repo).unwrap();
    let manifest = repo
        .manifest(&repo.find_snapshot("latest").unwrap())
        .unwrap();
    assert!(manifest.complete);
    let mut listed: HashMap<MessageHash, usize> = HashMap::new();
    for record in &manifest.messages {
        *listed.entry(record.sha256.unwrap()).or_default() += 1;
    }
    assert_eq!(listed, expected);
    let mut copies: HashMap<MessageHash, usize> = HashMap::new();
    let packs = repo.layout().dir(layout::PACKS);
    for entry in std::fs::read_dir(&packs).unwrap() {
        for e in pack::scan_pack(&entry.unwrap().path()).unwrap() {
            *copies.entry(e.hash).or_default() += 1;
        }
    }
    assert_eq!(copies.len(), expected.len(), "no stray or missing message");
    assert!(
        copies.values().all(|n| *n == 1),
        "a message was stored twice"
    );
    for hash in expected.keys() {
        repo.read_message(hash).unwrap();
    }
    assert!(repo.checkpoints().unwrap().is_empty());

    // No message was asked for more than twice, and nothing was deleted.
    let retr = proxy.retr.lock().unwrap();
    assert_eq!(retr.len(), corpus.len(), "every message was retrieved");
    let twice = retr.values().filter(|n| **n == 2).count();
    eprintln!(
        "{kills} kills; {twice} of {} messages were retrieved twice",
        corpus.len()
    );
    let worst = retr.iter().max_by_key(|(_, n)| **n).unwrap();
    assert!(
        *worst.1 <= 2,
        "message {} was retrieved {} times",
        worst.0,
        worst.1
    );
    for line in dovecot.logouts(user) {
        assert_eq!(counter(&line, "del"), 0, "{line}");
    }
}
