//! Acceptance: a large first run killed with SIGKILL at random moments, then run again, ends
//! with every message archived exactly once, and a run never downloads again what an earlier
//! run had committed: what is downloaded twice is only what was uncommitted at a kill.
//!
//! The binary talks to Dovecot through a small TCP proxy in this test. The proxy records every
//! `RETR n` the client sends, per connection (each run makes one; message numbers are stable
//! while the mailbox does not change), and slows the server's replies so that a 5 MB mailbox
//! takes a couple of seconds — long enough to be killed in the middle, several times. The
//! property does not depend on timing: on a loaded machine a run may commit nothing before
//! its kill, and then the next one simply downloads the same messages again.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use popbackup::pop3::TlsMode;
use popbackup::repo::{MessageHash, Repository};

use crate::snapshot::{Setup, counter, stderr};
use crate::support::corpus_messages;
use crate::support::dovecot::{Dovecot, dovecot_retr_bytes};
use crate::support::store::{TestRepo, on_every_backend};

/// Forwards connections to `target`, recording RETR commands and throttling replies. Each run
/// gets a proxy of its own, so that what it retrieved is known exactly, however late a killed
/// run's connection is seen.
pub struct CountingProxy {
    port: u16,
    /// The messages retrieved, in order.
    retr: Arc<Mutex<Vec<u32>>>,
}

impl CountingProxy {
    pub fn start(target: u16, chunk: usize, pause: Duration) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let retr = Arc::new(Mutex::new(Vec::new()));
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
                                    counts.lock().unwrap().push(msg);
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

/// The corpus in a Dovecot mailbox, reached through a fresh throttled proxy for each run.
pub struct SlowMailbox {
    pub setup: Setup,
    /// The configuration, its port still the server's.
    text: String,
    server_port: u16,
}

impl SlowMailbox {
    /// `top`: keys for the top of the configuration; `account`: for the account's table.
    pub fn new(
        dovecot: &Dovecot,
        corpus: &[(String, Vec<u8>)],
        user: &str,
        top: &str,
        account: &str,
        at: &TestRepo,
    ) -> Self {
        dovecot.fill_maildir(
            user,
            corpus
                .iter()
                .enumerate()
                .map(|(i, (_, bytes))| (format!("{i:05}"), bytes.as_slice())),
        );
        let setup = Setup::on_with_tls(dovecot, &[("big", user)], top, TlsMode::None, at);
        let text = std::fs::read_to_string(&setup.config).unwrap() + account + "\n";
        SlowMailbox {
            setup,
            text,
            server_port: dovecot.port(TlsMode::None),
        }
    }

    /// Points the configuration at a new proxy; returns what that proxy records.
    pub fn next_run(&self) -> Arc<Mutex<Vec<u32>>> {
        let proxy = CountingProxy::start(self.server_port, 8 * 1024, Duration::from_millis(10));
        let config = self.text.replace(
            &format!("port = {}", self.server_port),
            &format!("port = {}", proxy.port),
        );
        std::fs::write(&self.setup.config, config).unwrap();
        proxy.retr
    }
}

on_every_backend! {
    /// On an object store the killed run's lock object stays behind: the next run, on the same
    /// host, sees that its process is gone and takes over.
    fn sigkill_during_a_first_run_then_resume(at: &TestRepo) {
        let Some(dovecot) = Dovecot::get() else {
            return;
        };
        let Some(corpus) = corpus_messages() else {
            return;
        };
        // Bound what is in flight when a kill comes (the default window is 8 MiB, more than this
        // whole mailbox): whatever was requested but not checkpointed is at most 256 KiB of RETRs
        // plus one checkpoint's worth.
        let user = if at.path().is_some() { "u27" } else { "u44" };
        let slow = SlowMailbox::new(
            &dovecot,
            &corpus,
            user,
            "checkpoint_size = \"128 KiB\"",
            "pipeline_window_bytes = \"256 KiB\"",
            at,
        );
        let (setup, proxy_for_run) = (&slow.setup, || slow.next_run());
        let mut retr: Vec<Arc<Mutex<Vec<u32>>>> = Vec::new();

        // Deterministic "random" kill times between 0.9 and 1.7 s. After each kill, the message
        // numbers the repository holds committed (in checkpoints) are read: no later run may
        // retrieve them again.
        let committed_now = || -> HashSet<u32> {
            let repo = Repository::open(&setup.location).unwrap();
            let mut manifests = repo.checkpoints().unwrap();
            for id in repo.snapshots().unwrap() {
                manifests.push(repo.manifest(&id).unwrap());
            }
            manifests
                .iter()
                .flat_map(|m| &m.messages)
                .filter(|r| r.sha256.is_some_and(|h| repo.location(&h).is_some()))
                .map(|r| r.msg)
                .collect()
        };
        let mut seed: u64 = 0x5eed_cafe;
        let mut kills = 0;
        // What was committed when each run ended, by run.
        let mut committed_after: Vec<HashSet<u32>> = Vec::new();
        for _ in 0..8 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let delay = Duration::from_millis(900 + (seed >> 33) % 800);
            retr.push(proxy_for_run());
            let mut child = setup.command(&["snapshot", "-q"]).spawn().unwrap();
            std::thread::sleep(delay);
            if child.try_wait().unwrap().is_some() {
                committed_after.push(committed_now());
                break;
            }
            child.kill().unwrap();
            child.wait().unwrap();
            kills += 1;
            committed_after.push(committed_now());
        }
        assert!(
            kills >= 3,
            "only {kills} kills: the run is too fast to test resuming"
        );
        retr.push(proxy_for_run());
        let out = setup.run(&["snapshot", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

        // Every message is in the final snapshot and stored exactly once.
        let mut expected: HashMap<MessageHash, usize> = HashMap::new();
        for (_, bytes) in &corpus {
            *expected
                .entry(MessageHash::of(&dovecot_retr_bytes(bytes)))
                .or_default() += 1;
        }
        let repo = Repository::open(&setup.location).unwrap();
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
        for id in repo.pack_ids().unwrap() {
            for e in repo.pack_entries(&id).unwrap() {
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

        // Every message was retrieved; a run retrieved nothing that an earlier run had
        // committed, and no run retrieved a message twice.
        // Killed runs are dead; their proxies' threads have seen everything they sent once
        // their connections closed, which they have (the final run logged out after them).
        let retr: Vec<Vec<u32>> = retr.iter().map(|r| r.lock().unwrap().clone()).collect();
        let all: HashSet<u32> = retr.iter().flatten().copied().collect();
        assert_eq!(all.len(), corpus.len(), "every message was retrieved");
        for (run, asked) in retr.iter().enumerate() {
            let unique: HashSet<u32> = asked.iter().copied().collect();
            assert_eq!(
                unique.len(),
                asked.len(),
                "run {run} asked for a message twice"
            );
            if let Some(before) = run.checked_sub(1).map(|r| &committed_after[r]) {
                let again: Vec<&u32> = unique.intersection(before).collect();
                assert!(
                    again.is_empty(),
                    "run {run} retrieved {} message(s) committed before it started: {again:?}",
                    again.len()
                );
            }
            // Committed sets only grow: a kill never loses what was committed.
            if run > 0 && run < committed_after.len() {
                assert!(
                    committed_after[run - 1].is_subset(&committed_after[run]),
                    "run {run} lost what was committed before it"
                );
            }
        }
        let again = retr.iter().map(Vec::len).sum::<usize>() - corpus.len();
        eprintln!(
            "{kills} kills; {again} retrievals of {} messages were repeats of uncommitted ones",
            corpus.len()
        );
        for line in dovecot.logouts(user) {
            assert_eq!(counter(&line, "del"), 0, "{line}");
        }
    }
}

/// Ctrl-C (SIGINT) and systemd's stop (SIGTERM) during a long first run: the run commits a
/// checkpoint of what it downloaded, says how many messages it kept, and exits 130 or 143;
/// the next run resumes and retrieves none of the kept messages again.
#[test]
fn sigint_and_sigterm_checkpoint_and_exit_with_the_signal() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let Some(corpus) = corpus_messages() else {
        return;
    };
    let local = TestRepo::local();
    let slow = SlowMailbox::new(&dovecot, &corpus, "u38", "", "", &local);
    let setup = &slow.setup;
    let run_through_proxy = |args: &[&str]| {
        let retr = slow.next_run();
        (setup.command(args), retr)
    };
    let committed = || -> HashSet<u32> {
        let repo = Repository::open(&setup.repo).unwrap();
        repo.checkpoints()
            .unwrap()
            .iter()
            .flat_map(|c| &c.messages)
            .filter(|r| r.sha256.is_some())
            .map(|r| r.msg)
            .collect()
    };
    let mut kept_before = HashSet::new();
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let (mut command, retr) = run_through_proxy(&["snapshot", "-q"]);
        let child = command
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until it is downloading (the proxy has seen RETRs), then signal it.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while retr.lock().unwrap().len() < 20 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let out = child.wait_with_output().unwrap();
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "SIG{signal}: {text}");
        let kept = committed();
        let line = text
            .lines()
            .find(|l| l.contains("interrupted:"))
            .unwrap_or_else(|| panic!("SIG{signal}: {text}"));
        assert!(
            line.ends_with("messages kept; run again to resume"),
            "{line}"
        );
        let said: usize = line
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap();
        assert!(said > 0, "{line}");
        assert_eq!(kept.len(), kept_before.len() + said, "{line}");
        assert!(kept.is_superset(&kept_before));
        // Nothing kept by the run before was retrieved again.
        let asked: HashSet<u32> = retr.lock().unwrap().iter().copied().collect();
        assert!(
            asked.is_disjoint(&kept_before),
            "SIG{signal} run re-retrieved kept messages"
        );
        kept_before = kept;
    }
    let (mut command, retr) = run_through_proxy(&["snapshot"]);
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let asked: HashSet<u32> = retr.lock().unwrap().iter().copied().collect();
    assert!(asked.is_disjoint(&kept_before));
    assert_eq!(asked.len() + kept_before.len(), corpus.len());
}
