//! The snapshot engine against a scripted fake server, for what Dovecot will not do: no UIDL,
//! EXPIRE 0, a busy mailbox, a message deleted during the run, and a connection dropped in the
//! middle of a first run (which must resume from its checkpoint, downloading only the rest).

use popbackup::cli::exit::for_kind;
use std::sync::Mutex;
use std::time::Duration;

use popbackup::config::Account;
use popbackup::repo::{MessageHash, RepoWriter, Repository};
use popbackup::snapshot::{AccountReport, Outcome, Silent, SnapshotOptions, snapshot_account};

use crate::hostile::retr_reply;
use crate::support::fake_server::{
    FakeServer, Step, expect, greeting_and_capa, multiline, send, user_pass_login,
};

fn account(port: u16) -> Account {
    Account {
        name: "fake".into(),
        timeout: Duration::from_secs(5),
        ..crate::hostile::account(port)
    }
}

fn options() -> SnapshotOptions {
    SnapshotOptions {
        parallel_accounts: 1,
        compression_level: None,
        // A checkpoint after every message.
        checkpoint_size: 1,
        checkpoint_interval: Duration::from_secs(3600),
        dry_run: false,
        interrupt: Default::default(),
    }
}

fn run(writer: &Mutex<RepoWriter>, script: Vec<Step>) -> (AccountReport, FakeServer) {
    let server = FakeServer::start(script);
    let report = snapshot_account(writer, &account(server.port), &options(), &Silent);
    (report, server)
}

fn message(i: usize) -> Vec<u8> {
    format!("Subject: message {i}\r\nFrom: f{i}@example.org\r\n\r\nbody {i}\r\n").into_bytes()
}

fn login(caps: &[&str]) -> Vec<Step> {
    let mut steps = greeting_and_capa(&[&["USER"], caps].concat());
    steps.extend(user_pass_login(caps));
    steps
}

fn listing(uidls: &[&str], sizes: &[usize]) -> Vec<Step> {
    let uidl_lines: Vec<String> = uidls
        .iter()
        .enumerate()
        .map(|(i, u)| format!("{} {u}", i + 1))
        .collect();
    let list_lines: Vec<String> = sizes
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{} {s}", i + 1))
        .collect();
    vec![
        expect("UIDL"),
        Step::Send(multiline("+OK", &refs(&uidl_lines))),
        expect("LIST"),
        Step::Send(multiline("+OK", &refs(&list_lines))),
    ]
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn repo() -> (tempfile::TempDir, Mutex<RepoWriter>) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(dir.path().join("r")).unwrap();
    (dir, Mutex::new(repo.lock("test").unwrap()))
}

#[test]
fn a_dropped_first_run_resumes_from_its_checkpoint() {
    let (_dir, writer) = repo();
    let msgs: Vec<Vec<u8>> = (1..=3).map(message).collect();
    let sizes: Vec<usize> = msgs.iter().map(Vec::len).collect();
    let uidls = ["u1", "u2", "u3"];
    let mut script = login(&["UIDL"]);
    script.extend(listing(&uidls, &sizes));
    script.extend([expect("RETR 1"), retr_reply(&msgs[0])]);
    script.extend([expect("RETR 2"), retr_reply(&msgs[1])]);
    script.extend([
        expect("RETR 3"),
        Step::Send(b"+OK\r\nSubject: message 3\r\n\r\nbo".to_vec()),
        Step::Close,
    ]);
    let (report, server) = run(&writer, script);
    server.finish_ok();
    assert_eq!(report.outcome, Outcome::Temporary, "{report:?}");
    assert_eq!(report.failure.map(for_kind), Some(75));
    assert_eq!(report.downloaded, 2);
    assert!(report.snapshot.is_none());
    {
        let w = writer.lock().unwrap();
        assert!(
            w.repo().snapshots().unwrap().is_empty(),
            "nothing committed"
        );
        let checkpoints = w.repo().checkpoints().unwrap();
        assert_eq!(checkpoints.len(), 1);
        assert_eq!(checkpoints[0].messages.len(), 2);
    }

    // The next run downloads only message 3 and commits the whole inventory.
    let mut script = login(&["UIDL"]);
    script.extend(listing(&uidls, &sizes));
    script.extend([
        expect("RETR 3"),
        retr_reply(&msgs[2]),
        expect("QUIT"),
        send("+OK"),
    ]);
    let (report, server) = run(&writer, script);
    let transcript = server.finish_ok();
    assert_eq!(report.outcome, Outcome::Ok, "{report:?}");
    assert_eq!((report.downloaded, report.already_archived), (1, 2));
    assert!(!transcript.received_any("RETR 1") && !transcript.received_any("RETR 2"));
    let w = writer.lock().unwrap();
    assert!(
        w.repo().checkpoints().unwrap().is_empty(),
        "checkpoint removed"
    );
    let id = report.snapshot.unwrap();
    let manifest = w.repo().manifest(&id).unwrap();
    let hashes: Vec<MessageHash> = manifest
        .messages
        .iter()
        .map(|m| m.sha256.unwrap())
        .collect();
    let expected: Vec<MessageHash> = msgs.iter().map(|m| MessageHash::of(m)).collect();
    assert_eq!(hashes, expected);
    assert_eq!(manifest.messages[0].subject.as_deref(), Some("message 1"));
}

#[test]
fn without_uidl_messages_are_fingerprinted_and_expire_0_warns() {
    let (_dir, writer) = repo();
    let msgs: Vec<Vec<u8>> = (1..=2).map(message).collect();
    let headers = |i: usize| {
        let mut wire = b"+OK\r\n".to_vec();
        let m = &msgs[i];
        let end = popbackup::mail::header_end(m).unwrap();
        wire.extend_from_slice(&m[..end]);
        wire.extend_from_slice(b".\r\n");
        Step::Send(wire)
    };
    let session = |retr: bool| {
        let mut s = login(&["EXPIRE 0", "TOP"]);
        s.extend([
            expect("UIDL"),
            send("-ERR unknown command"),
            expect("LIST"),
            Step::Send(multiline(
                "+OK",
                &[
                    &format!("1 {}", msgs[0].len()),
                    &format!("2 {}", msgs[1].len()),
                ],
            )),
            expect("TOP 1 0"),
            headers(0),
            expect("TOP 2 0"),
            headers(1),
        ]);
        if retr {
            s.extend([expect("RETR 1"), retr_reply(&msgs[0])]);
            s.extend([expect("RETR 2"), retr_reply(&msgs[1])]);
        }
        s.extend([expect("QUIT"), send("+OK")]);
        s
    };
    let (report, server) = run(&writer, session(true));
    server.finish_ok();
    assert_eq!(report.outcome, Outcome::Ok, "{report:?}");
    assert_eq!(report.downloaded, 2);
    let warnings = report.warnings.join("\n");
    assert!(warnings.contains("does not support UIDL"), "{warnings}");
    assert!(warnings.contains("EXPIRE 0"), "{warnings}");
    {
        let w = writer.lock().unwrap();
        let manifest = w
            .repo()
            .manifest(report.snapshot.as_ref().unwrap())
            .unwrap();
        assert!(manifest.messages.iter().all(|m| m.uidl.is_none()));
        assert!(manifest.messages.iter().all(|m| {
            m.fingerprint
                .as_deref()
                .is_some_and(|f| f.starts_with("sha256:"))
        }));
    }
    // Recognised by their fingerprints on the next run: no RETR.
    let (report, server) = run(&writer, session(false));
    server.finish_ok();
    assert_eq!(report.outcome, Outcome::Ok, "{report:?}");
    assert_eq!((report.downloaded, report.already_archived), (0, 2));

    // Deletion is never allowed without UIDL, whatever delete_after_days says: no DELE is
    // sent (the script would fail on it) and the run says why.
    let server = FakeServer::start(session(false));
    let mut deleting = account(server.port);
    deleting.delete_after_days = Some(0);
    let report = snapshot_account(&writer, &deleting, &options(), &Silent);
    let transcript = server.finish_ok();
    assert_eq!(report.outcome, Outcome::Ok, "{report:?}");
    assert!(!transcript.received_any("DELE"));
    assert_eq!(report.deleted, 0);
    assert!(
        report.warnings.join("\n").contains("no UIDL"),
        "{:?}",
        report.warnings
    );
}

#[test]
fn a_busy_mailbox_is_temporary_and_a_vanished_message_is_recorded() {
    let (_dir, writer) = repo();
    let script = vec![
        send("+OK ready"),
        expect("CAPA"),
        Step::Send(multiline("+OK", &["USER"])),
        expect("USER bob"),
        send("+OK"),
        expect("PASS secret"),
        send("-ERR [IN-USE] another session holds the mailbox"),
        expect("QUIT"),
        send("+OK"),
    ];
    let (report, server) = run(&writer, script);
    server.finish();
    assert_eq!(report.outcome, Outcome::Temporary, "{report:?}");
    assert_eq!(report.failure.map(for_kind), Some(75));
    assert!(report.message.unwrap().contains("IN-USE"));

    // RETR refused for a message listed a moment before: recorded without content, run ok.
    let msgs: Vec<Vec<u8>> = (1..=2).map(message).collect();
    let mut script = login(&["UIDL"]);
    script.extend(listing(&["a", "b"], &[msgs[0].len(), msgs[1].len()]));
    script.extend([
        expect("RETR 1"),
        send("-ERR no such message"),
        expect("RETR 2"),
        retr_reply(&msgs[1]),
        expect("QUIT"),
        send("+OK"),
    ]);
    let (report, server) = run(&writer, script);
    server.finish_ok();
    assert_eq!(report.outcome, Outcome::Ok, "{report:?}");
    assert_eq!((report.refused, report.downloaded), (1, 1));
    let w = writer.lock().unwrap();
    let manifest = w
        .repo()
        .manifest(report.snapshot.as_ref().unwrap())
        .unwrap();
    assert_eq!(manifest.messages.len(), 2);
    assert_eq!(manifest.messages[0].sha256, None);
    assert_eq!(manifest.messages[1].sha256, Some(MessageHash::of(&msgs[1])));
}

/// A run that sees exactly the listing the latest snapshot archived downloads nothing and
/// commits a manifest naming the same records file; a new message takes the full path again,
/// and a snapshot missing a message (RETR refused) never offers the shortcut.
#[test]
fn an_unchanged_mailbox_shares_the_latest_snapshots_records() {
    let (dir, writer) = repo();
    let msgs: Vec<Vec<u8>> = (1..=3).map(message).collect();
    let sizes: Vec<usize> = msgs.iter().map(Vec::len).collect();
    let uidls = ["u1", "u2", "u3"];
    let session = |n: usize, retr: &[usize]| {
        let mut s = login(&["UIDL", "PIPELINING"]);
        s.extend(listing(&uidls[..n], &sizes[..n]));
        for &i in retr {
            s.extend([expect(&format!("RETR {i}")), retr_reply(&msgs[i - 1])]);
        }
        s.extend([expect("QUIT"), send("+OK")]);
        s
    };
    let records_files = || {
        std::fs::read_dir(dir.path().join("r/records"))
            .unwrap()
            .count()
    };
    let head =
        |id: &popbackup::repo::SnapshotId| writer.lock().unwrap().repo().manifest_head(id).unwrap();

    let (one, server) = run(&writer, session(2, &[1, 2]));
    server.finish_ok();
    assert_eq!((one.outcome, one.downloaded), (Outcome::Ok, 2), "{one:?}");
    let one_head = head(one.snapshot.as_ref().unwrap());
    assert!(one_head.listing.is_some() && one_head.records.is_some());

    let files_before = records_files();
    let (two, server) = run(&writer, session(2, &[]));
    let transcript = server.finish_ok();
    assert_eq!(two.outcome, Outcome::Ok, "{two:?}");
    assert_eq!(
        (two.downloaded, two.already_archived, two.messages_on_server),
        (0, 2, 2)
    );
    assert!(!transcript.received_any("RETR") && !transcript.received_any("TOP"));
    let two_id = two.snapshot.clone().unwrap();
    let two_head = head(&two_id);
    assert_ne!(two_id, one_head.id);
    assert_eq!(two_head.records, one_head.records);
    assert_eq!(two_head.listing, one_head.listing);
    assert_eq!(
        records_files(),
        files_before,
        "no second copy of the same list"
    );
    let full = writer.lock().unwrap().repo().manifest(&two_id).unwrap();
    let hashes: Vec<MessageHash> = full.messages.iter().map(|m| m.sha256.unwrap()).collect();
    assert_eq!(
        hashes,
        [MessageHash::of(&msgs[0]), MessageHash::of(&msgs[1])]
    );

    // A third message: downloaded alone, a new list.
    let (three, server) = run(&writer, session(3, &[3]));
    server.finish_ok();
    assert_eq!(
        (three.outcome, three.downloaded),
        (Outcome::Ok, 1),
        "{three:?}"
    );
    let three_head = head(three.snapshot.as_ref().unwrap());
    assert_ne!(three_head.listing, one_head.listing);
    assert_ne!(three_head.records, one_head.records);
    assert_eq!(records_files(), files_before + 1, "one new list");

    // Message 2 refused (deleted meanwhile) under a new UIDL listing: the snapshot misses a
    // message, so it has no listing digest and the next run looks at every message again.
    let mut s = login(&["UIDL", "PIPELINING"]);
    s.extend(listing(
        &["u1", "u2", "u3", "u4"],
        &[sizes[0], sizes[1], sizes[2], 10],
    ));
    s.extend([expect("RETR 4"), send("-ERR no such message")]);
    s.extend([expect("QUIT"), send("+OK")]);
    let (four, server) = run(&writer, s);
    server.finish_ok();
    assert_eq!(four.outcome, Outcome::Ok, "{four:?}");
    assert_eq!(four.refused, 1);
    assert_eq!(head(four.snapshot.as_ref().unwrap()).listing, None);
}

/// A lost records file is never taken on trust by the shortcut: the run reads the latest
/// snapshot the full way and says what is wrong and what to do.
#[test]
fn a_lost_records_file_is_reported_not_shared() {
    let (dir, writer) = repo();
    let msgs: Vec<Vec<u8>> = (1..=2).map(message).collect();
    let sizes: Vec<usize> = msgs.iter().map(Vec::len).collect();
    let mut first = login(&["UIDL"]);
    first.extend(listing(&["u1", "u2"], &sizes));
    first.extend([expect("RETR 1"), retr_reply(&msgs[0])]);
    first.extend([expect("RETR 2"), retr_reply(&msgs[1])]);
    first.extend([expect("QUIT"), send("+OK")]);
    let (one, server) = run(&writer, first);
    server.finish_ok();
    assert_eq!(one.outcome, Outcome::Ok, "{one:?}");
    for entry in std::fs::read_dir(dir.path().join("r/records")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let mut again = login(&["UIDL"]);
    again.extend(listing(&["u1", "u2"], &sizes));
    let (two, server) = run(&writer, again);
    drop(server);
    assert_eq!(two.outcome, Outcome::Failed, "{two:?}");
    assert_eq!(two.failure.map(for_kind), Some(65));
    let message = two.message.unwrap_or_default();
    assert!(
        message.contains("are missing") && message.contains("forget the snapshot"),
        "{message}"
    );
    assert!(two.snapshot.is_none());
}
