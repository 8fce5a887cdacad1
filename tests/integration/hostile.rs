//! Hostile and broken servers against the whole snapshot engine (issue 9): whatever a server
//! sends, the run ends with a clear failure or a clear warning, never a hang or a panic, and a
//! failed run leaves the repository exactly as it was.
//!
//! The protocol layer's own caps (endless message, endless listing, overlong lines with small
//! limits) and STLS injection are tested in `pop3_fake.rs` and `pop3_tls.rs`; these tests use
//! the limits a real run uses.

use popbackup::cli::exit::for_kind;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use popbackup::config::{Account, SecretSource};
use popbackup::pop3::{AuthMethod, PipelineWindow, TlsMode};
use popbackup::repo::{MessageHash, RepoWriter, Repository};
use popbackup::snapshot::{AccountReport, Outcome, Silent, SnapshotOptions, snapshot_account};

use crate::support::fake_server::{
    FakeServer, Step, expect, greeting_and_capa, multiline, send, user_pass_login,
};

pub(crate) fn account(port: u16) -> Account {
    Account {
        name: "hostile".into(),
        defined_at: "test".into(),
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::None,
        user: "bob".into(),
        secret: SecretSource::Command("echo secret".into()),
        auth: AuthMethod::Auto,
        ca_file: None,
        fingerprints: Vec::new(),
        allow_insecure: true,
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(1),
        greeting_timeout: Duration::from_secs(1),
        pipelining: true,
        pipeline_window: PipelineWindow::default(),
        compression_level: None,
        delete_after_days: None,
        hidden_env: Vec::new(),
    }
}

pub(crate) fn run(writer: &Mutex<RepoWriter>, script: Vec<Step>) -> (AccountReport, FakeServer) {
    let server = FakeServer::start(script);
    let options = SnapshotOptions {
        parallel_accounts: 1,
        compression_level: None,
        checkpoint_size: 1,
        checkpoint_interval: Duration::from_secs(3600),
        dry_run: false,
        interrupt: Default::default(),
    };
    let report = snapshot_account(writer, &account(server.port), &options, &Silent);
    (report, server)
}

fn repo() -> (tempfile::TempDir, PathBuf, Mutex<RepoWriter>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let repo = Repository::init(&path).unwrap();
    (dir, path.clone(), Mutex::new(repo.lock("test").unwrap()))
}

/// Every file of the repository but the lock, with its content.
pub(crate) fn contents(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file() && e.file_name() != "lock")
        .map(|e| {
            let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

pub(crate) fn login() -> Vec<Step> {
    let mut steps = greeting_and_capa(&["USER", "UIDL", "PIPELINING"]);
    steps.extend(user_pass_login(&["USER", "UIDL", "PIPELINING"]));
    steps
}

pub(crate) fn listing(uidls: &[&str], sizes: &[usize]) -> Vec<Step> {
    let uidl: Vec<String> = uidls
        .iter()
        .enumerate()
        .map(|(i, u)| format!("{} {u}", i + 1))
        .collect();
    let list: Vec<String> = sizes
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{} {s}", i + 1))
        .collect();
    let refs = |v: &[String]| v.iter().map(String::clone).collect::<Vec<_>>();
    let (uidl, list) = (refs(&uidl), refs(&list));
    vec![
        expect("UIDL"),
        Step::Send(multiline(
            "+OK",
            &uidl.iter().map(String::as_str).collect::<Vec<_>>(),
        )),
        expect("LIST"),
        Step::Send(multiline(
            "+OK",
            &list.iter().map(String::as_str).collect::<Vec<_>>(),
        )),
    ]
}

pub(crate) fn retr_reply(body: &[u8]) -> Step {
    let mut wire = b"+OK message follows\r\n".to_vec();
    wire.extend_from_slice(&popbackup::pop3::dotstuff::stuff(body));
    Step::Send(wire)
}

fn message(tag: &str, body_len: usize) -> Vec<u8> {
    let mut m = format!("Subject: {tag}\r\nMessage-ID: <{tag}@example.org>\r\n\r\n").into_bytes();
    m.extend(std::iter::repeat_n(b'x', body_len));
    m.extend_from_slice(b"\r\n");
    m
}

/// A failed run: a clear outcome, an exit code, and the repository as it was.
fn assert_failed_cleanly(
    report: &AccountReport,
    outcome: Outcome,
    exit: u8,
    says: &str,
    path: &Path,
    before: &BTreeMap<PathBuf, Vec<u8>>,
) {
    assert_eq!(report.outcome, outcome, "{report:?}");
    assert_eq!(report.failure.map(for_kind), Some(exit), "{report:?}");
    let message = report.message.clone().unwrap_or_default();
    assert!(message.contains(says), "{message:?} should say {says:?}");
    assert!(report.snapshot.is_none());
    assert_eq!(&contents(path), before, "the repository changed");
}

#[test]
fn a_server_stalling_mid_message_times_out_and_leaves_the_repository_untouched() {
    let (_dir, path, writer) = repo();
    let before = contents(&path);
    let msg = message("stalled", 2000);
    let mut script = login();
    script.extend(listing(&["s1"], &[msg.len()]));
    script.extend([
        expect("RETR 1"),
        Step::Send([b"+OK\r\n".as_slice(), &msg[..1000]].concat()),
        Step::Stall(Duration::from_secs(4)),
    ]);
    let started = Instant::now();
    let (report, server) = run(&writer, script);
    let took = started.elapsed();
    server.finish();
    // A one-second I/O timeout: the run must not wait for the server's four.
    assert!(
        took < Duration::from_secs(4),
        "the timeout did not fire ({took:?})"
    );
    assert_failed_cleanly(&report, Outcome::Temporary, 75, "timed out", &path, &before);
}

#[test]
fn an_endless_status_line_is_refused_and_the_repository_untouched() {
    let (_dir, path, writer) = repo();
    let before = contents(&path);
    let script = vec![Step::SendForever {
        chunk: vec![b'+'; 64 * 1024],
        max: 64 * 1024 * 1024,
    }];
    let (report, server) = run(&writer, script);
    let transcript = server.finish();
    assert_failed_cleanly(&report, Outcome::Failed, 69, "longer than", &path, &before);
    assert!(
        transcript.received.is_empty(),
        "nothing is sent to such a server"
    );
}

#[test]
fn an_endless_listing_line_is_refused_and_the_repository_untouched() {
    let (_dir, path, writer) = repo();
    let before = contents(&path);
    let mut script = login();
    script.extend([
        expect("UIDL"),
        send("+OK"),
        Step::SendForever {
            chunk: b"1 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec(),
            max: 64 * 1024 * 1024,
        },
    ]);
    let (report, server) = run(&writer, script);
    server.finish();
    assert_failed_cleanly(&report, Outcome::Failed, 69, "longer than", &path, &before);
}

#[test]
fn an_endless_message_fails_the_run_after_keeping_what_came_before() {
    // The second message never ends (no terminator, the connection closes after 8 MiB):
    // the first is kept in a checkpoint, the partial one nowhere.
    let (_dir, path, writer) = repo();
    let first = message("whole", 100);
    let mut script = login();
    script.extend(listing(&["w1", "e2"], &[first.len(), 1000]));
    script.extend([
        expect("RETR 1"),
        expect("RETR 2"),
        retr_reply(&first),
        send("+OK"),
        Step::SendForever {
            chunk: b"endless line of a message that never ends\r\n".to_vec(),
            max: 8 * 1024 * 1024,
        },
        Step::Close,
    ]);
    let (report, server) = run(&writer, script);
    server.finish();
    assert_eq!(report.outcome, Outcome::Temporary, "{report:?}");
    assert_eq!(report.downloaded, 1);
    assert!(report.snapshot.is_none());
    let repo = Repository::open(&path).unwrap();
    let checkpoints = repo.checkpoints().unwrap();
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(checkpoints[0].messages.len(), 1);
    assert_eq!(repo.index().len(), 1, "only the whole message is stored");
    assert_eq!(repo.read_message(&MessageHash::of(&first)).unwrap(), first);
    assert_verifies_clean(&repo);
}

#[test]
fn lying_list_sizes_are_stored_as_received_with_a_warning() {
    let (_dir, _path, writer) = repo();
    let small = message("claims-big", 10);
    let big = message("claims-small", 5000);
    let lies = [100_000usize, 10];
    let script = |retr: bool| {
        let mut s = login();
        s.extend(listing(&["l1", "l2"], &lies));
        if retr {
            s.extend([
                expect("RETR 1"),
                expect("RETR 2"),
                retr_reply(&small),
                retr_reply(&big),
            ]);
        }
        s.extend([expect("QUIT"), send("+OK")]);
        s
    };
    let (report, server) = run(&writer, script(true));
    server.finish_ok();
    assert_eq!(report.outcome, Outcome::Ok, "{report:?}");
    let warning = report
        .warnings
        .iter()
        .find(|w| w.contains("LIST announced"))
        .unwrap();
    assert!(warning.starts_with("2 message(s)"), "{warning}");
    assert!(
        warning.contains(&format!("message 2: LIST 10, received {}", big.len())),
        "{warning}"
    );
    let w = writer.lock().unwrap();
    let manifest = w
        .repo()
        .manifest(report.snapshot.as_ref().unwrap())
        .unwrap();
    let sizes: Vec<(u64, Option<u64>)> = manifest
        .messages
        .iter()
        .map(|r| (r.list_size, r.size))
        .collect();
    assert_eq!(
        sizes,
        [
            (100_000, Some(small.len() as u64)),
            (10, Some(big.len() as u64))
        ]
    );
    assert_eq!(w.repo().read_message(&MessageHash::of(&big)).unwrap(), big);
    drop(w);
    // The same lies next time: recognised, nothing downloaded, no warning.
    let (report, server) = run(&writer, script(false));
    server.finish_ok();
    assert_eq!(
        (report.downloaded, report.already_archived),
        (0, 2),
        "{report:?}"
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn different_content_under_the_same_uidl_keeps_both_with_a_warning() {
    let (_dir, _path, writer) = repo();
    let first = message("version-1", 100);
    let second = message("version-2", 300);
    let session = |body: &[u8]| {
        let mut s = login();
        s.extend(listing(&["same-uidl"], &[body.len()]));
        s.extend([
            expect("RETR 1"),
            retr_reply(body),
            expect("QUIT"),
            send("+OK"),
        ]);
        s
    };
    let (one, server) = run(&writer, session(&first));
    server.finish_ok();
    assert!(one.warnings.is_empty(), "{:?}", one.warnings);
    let (two, server) = run(&writer, session(&second));
    server.finish_ok();
    assert_eq!(two.outcome, Outcome::Ok, "{two:?}");
    let warning = two
        .warnings
        .iter()
        .find(|w| w.contains("UIDL of an archived"))
        .unwrap();
    assert!(warning.contains("same-uidl"), "{warning}");
    assert!(warning.contains("both versions are kept"), "{warning}");
    let w = writer.lock().unwrap();
    let repo = w.repo();
    assert_eq!(repo.read_message(&MessageHash::of(&first)).unwrap(), first);
    assert_eq!(
        repo.read_message(&MessageHash::of(&second)).unwrap(),
        second
    );
    let old = repo.manifest(one.snapshot.as_ref().unwrap()).unwrap();
    let new = repo.manifest(two.snapshot.as_ref().unwrap()).unwrap();
    assert_eq!(old.messages[0].sha256, Some(MessageHash::of(&first)));
    assert_eq!(new.messages[0].sha256, Some(MessageHash::of(&second)));
}

/// A full verify (every frame decompressed and re-hashed) finds nothing wrong.
pub(crate) fn assert_verifies_clean(repo: &Repository) {
    let verify = popbackup::verify::verify(
        repo,
        popbackup::verify::VerifyOptions {
            data: popbackup::verify::DataCheck::Full,
            threads: 1,
        },
    )
    .unwrap();
    assert!(verify.clean, "{verify:?}");
}
