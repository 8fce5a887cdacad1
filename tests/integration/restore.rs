//! `popbackup restore`: byte-exact round trips checked by real readers (Dovecot serving the
//! restored Maildir, Python's `mailbox` parsing the mbox), filters, `--snapshot`, dry runs,
//! restoring twice, and destinations that cannot be written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use popbackup::repo::{MessageHash, Repository, SnapshotId};
use serde_json::Value;

use crate::snapshot::{Setup, stderr};
use crate::support::dovecot::{Dovecot, dovecot_retr_bytes};
use crate::support::store::on_every_backend;
use crate::support::{corpus_messages, manifest, record};

/// A CR before every LF that has none: the inverse of restore's default conversion.
fn crlf(bytes: &[u8]) -> Vec<u8> {
    popbackup::mail::lf_to_crlf(bytes)
}

/// Every message of an mbox as Python's `mailbox` reads it, mboxrd-unquoted: (SHA-256 of the
/// message with a CR put before every LF that has none, subject).
fn python_mbox(path: &Path) -> Vec<(String, String)> {
    let script = r#"
import hashlib, mailbox, re, sys
box = mailbox.mbox(sys.argv[1], create=False)
for key in box.iterkeys():
    raw = box.get_bytes(key)
    msg = box.get_message(key)
    raw = re.sub(rb'(?m)^>(>*From )', rb'\1', raw)
    wire = re.sub(rb'(?<!\r)\n', b'\r\n', raw)
    subject = str(msg.get('Subject', '')).replace('\n', ' ')
    print(hashlib.sha256(wire).hexdigest(), subject)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .expect("python3 is installed by scripts/test.sh");
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (h, s) = l.split_once(' ').unwrap_or((l, ""));
            (h.to_string(), s.to_string())
        })
        .collect()
}

pub fn python_maildir_count(path: &Path) -> usize {
    let out = Command::new("python3")
        .args([
            "-c",
            "import mailbox,sys; print(len(mailbox.Maildir(sys.argv[1], create=False)))",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

on_every_backend! {
    fn corpus_round_trip_through_maildir_and_mbox_checked_by_dovecot_and_python(at: &TestRepo) {
        let Some(dovecot) = Dovecot::get() else {
            return;
        };
        let Some(corpus) = corpus_messages() else {
            return;
        };
        // One session per mailbox in Dovecot: each backend has its own users.
        let (user, reader) = if at.path().is_some() { ("u28", "u29") } else { ("u42", "u43") };
        dovecot.fill_maildir(
            user,
            corpus
                .iter()
                .enumerate()
                .map(|(i, (_, b))| (format!("{i:05}"), b.as_slice())),
        );
        let setup = Setup::on(&dovecot, &[("corpus", user)], "", at);
        setup.json(&["snapshot"], 0);
        let expected: HashMap<MessageHash, Vec<u8>> = corpus
            .iter()
            .map(|(_, b)| {
                let wire = dovecot_retr_bytes(b);
                (MessageHash::of(&wire), wire)
            })
            .collect();

        // Maildir: every file, CRs put back, is exactly what Dovecot sent.
        let maildir = setup.dir.path().join("restored");
        let to = format!("maildir:{}", maildir.display());
        let report = setup.json(&["restore", "--to", &to], 0);
        assert_eq!(report["written"], expected.len(), "{report}");
        assert_eq!(report["not_reversible"], 0);
        let files = files_in(&maildir.join("new"));
        assert_eq!(files.len(), expected.len());
        for file in &files {
            let bytes = std::fs::read(file).unwrap();
            // (A CRLF may remain where the wire form had a bare CR before its CRLF.)
            let wire = crlf(&bytes);
            let hash = MessageHash::of(&wire);
            assert!(
                expected.contains_key(&hash),
                "{} is not a corpus message",
                file.display()
            );
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.contains(&hash.to_hex()), "{name}");
        }
        assert_eq!(python_maildir_count(&maildir), expected.len());

        // A real reader: restore into another Dovecot user's Maildir and fetch it over POP3.
        dovecot.fill_maildir(reader, std::iter::empty::<(String, &[u8])>());
        let served = dovecot.maildir(reader);
        let out = setup.run(&["restore", "--to", &format!("maildir:{}", served.display())]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let chown = Command::new("chown")
            .args(["-R", "vmail:vmail"])
            .arg(&served)
            .status()
            .unwrap();
        assert!(chown.success());
        let served_hashes = dovecot.served_hashes(reader);
        assert_eq!(served_hashes.len(), expected.len());
        let not_expected: Vec<&MessageHash> = served_hashes
            .iter()
            .filter(|h| !expected.contains_key(h))
            .collect();
        assert!(
            not_expected.is_empty(),
            "Dovecot serves {} restored messages differently, e.g. {:?}",
            not_expected.len(),
            &not_expected[..not_expected.len().min(3)]
        );
        assert_eq!(served_hashes.len(), expected.len());

        // mbox: Python's mailbox splits it into the same messages, byte for byte once unquoted.
        let mbox = setup.dir.path().join("restored.mbox");
        let to = format!("mbox:{}", mbox.display());
        let report = setup.json(&["restore", "--to", &to], 0);
        assert_eq!(report["written"], expected.len(), "{report}");
        let parsed = python_mbox(&mbox);
        assert_eq!(parsed.len(), expected.len());
        let mut mismatched = Vec::new();
        for (hex, subject) in &parsed {
            let hash: MessageHash = hex.parse().unwrap();
            if !expected.contains_key(&hash) {
                mismatched.push(subject.clone());
            }
        }
        assert!(
            mismatched.is_empty(),
            "{} differ: {mismatched:?}",
            mismatched.len()
        );
        // Every From_ line has a sender and an asctime date.
        let text = std::fs::read(&mbox).unwrap();
        let froms = text
            .split(|b| *b == b'\n')
            .filter(|l| l.starts_with(b"From "))
            .count();
        assert_eq!(froms, expected.len());

        // Restoring again adds nothing to either.
        let again = setup.json(&["restore", "--to", &to], 0);
        assert_eq!(
            (again["written"].as_u64(), again["already_present"].as_u64()),
            (Some(0), Some(expected.len() as u64))
        );
        assert_eq!(std::fs::read(&mbox).unwrap(), text);
        let again = setup.json(
            &["restore", "--to", &format!("maildir:{}", maildir.display())],
            0,
        );
        assert_eq!(again["written"], 0);
        assert_eq!(files_in(&maildir.join("new")).len(), expected.len());
    }
}

/// A repository with three snapshots: work (A, B), then work (B, C, with a `From ` body line),
/// then home (D). Returns the repository path, the snapshot ids and the messages.
fn history(dir: &Path) -> (PathBuf, Vec<SnapshotId>, Vec<Vec<u8>>) {
    let path = dir.join("archive");
    let repo = Repository::init(&path).unwrap();
    let messages: Vec<Vec<u8>> = vec![
        b"Return-Path: <bounce@lists.example>\r\nFrom: Alice <alice@example.org>\r\nSubject: Hello\r\nDate: Mon, 5 Jan 2026 10:00:00 +0000\r\nMessage-ID: <a@x>\r\n\r\nhi\r\n".to_vec(),
        b"From: Bob <bob@example.org>\r\nSubject: Invoice 42\r\nDate: Sat, 31 Jan 2026 12:00:00 +0000\r\nMessage-ID: <b@x>\r\n\r\npay\r\n".to_vec(),
        b"From: Carol <carol@example.org>\r\nSubject: quoting\r\nDate: Sun, 1 Feb 2026 08:00:00 +0000\r\nMessage-ID: <c@x>\r\n\r\nFrom here on\r\n>From there\r\n\r\nFrom the start\r\n".to_vec(),
        b"Subject: no sender\r\nDate: Tue, 3 Mar 2026 00:00:00 +0000\r\n\r\nd\r\n".to_vec(),
    ];
    let mut writer = repo.lock("test").unwrap();
    let hashes: Vec<MessageHash> = messages
        .iter()
        .map(|m| writer.store_bytes(m).unwrap().hash())
        .collect();
    let summary = |i: usize| popbackup::mail::summarize(&messages[i]);
    let snapshot = |account: &str, which: &[usize], second: u32| {
        let time = chrono::DateTime::from_timestamp(1_767_225_600 + second as i64, 0).unwrap();
        manifest(
            account,
            time,
            which
                .iter()
                .enumerate()
                .map(|(n, &i)| {
                    record(
                        n as u32 + 1,
                        format!("uid-{i}"),
                        hashes[i],
                        messages[i].len() as u64,
                        summary(i),
                    )
                })
                .collect(),
        )
    };
    let manifests = [
        snapshot("work", &[0, 1], 0),
        snapshot("work", &[1, 2], 60),
        snapshot("home", &[3], 120),
    ];
    for m in &manifests {
        writer.commit(m).unwrap();
    }
    drop(writer);
    (
        path,
        manifests.iter().map(|m| m.id.clone()).collect(),
        messages,
    )
}

pub fn popbackup(repo: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_popbackup"))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env("XDG_CONFIG_HOME", repo.parent().unwrap())
        .output()
        .unwrap()
}

/// `popbackup --repo REPO ARGS --json`, its exit code checked, its output parsed.
pub fn json(repo: &Path, args: &[&str], code: i32) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = popbackup(repo, &all);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The messages (by index into `messages`) found in a restored Maildir's `new/` or `cur/`.
fn restored(dir: &Path, messages: &[Vec<u8>]) -> Vec<usize> {
    let mut found: Vec<usize> = ["new", "cur"]
        .iter()
        .flat_map(|sub| files_in(&dir.join(sub)))
        .map(|f| {
            let wire = crlf(&std::fs::read(&f).unwrap());
            messages
                .iter()
                .position(|m| *m == wire)
                .unwrap_or_else(|| panic!("{} is not one of the messages", f.display()))
        })
        .collect();
    found.sort();
    found
}

#[test]
fn selections_filters_and_dry_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, ids, messages) = history(dir.path());
    let target = |name: &str| dir.path().join(name);
    let to = |name: &str| format!("maildir:{}", target(name).display());

    // Default: the latest snapshot of each account.
    json(&repo, &["restore", "--to", &to("all")], 0);
    assert_eq!(restored(&target("all"), &messages), [1, 2, 3]);
    // An older snapshot; one account.
    json(
        &repo,
        &[
            "restore",
            "--to",
            &to("first"),
            "--snapshot",
            &ids[0].as_str()[..18],
        ],
        0,
    );
    assert_eq!(restored(&target("first"), &messages), [0, 1]);
    json(
        &repo,
        &["restore", "--to", &to("home"), "--account", "home"],
        0,
    );
    assert_eq!(restored(&target("home"), &messages), [3]);
    let cases: &[(&[&str], &[usize])] = &[
        (&["--subject", "INVOICE"], &[1]),
        (&["--from", "carol@"], &[2]),
        (&["--since", "2026-02-01"], &[2, 3]),
        (&["--until", "2026-01-31"], &[1]),
        (
            &["--since", "2026-01-31T11:00:00Z", "--until", "2026-02-01"],
            &[1, 2],
        ),
        (&["--uidl", "uid-3"], &[3]),
        (&["--message-id", "<c@x>"], &[2]),
        (&["--message-id", "b@x"], &[1]),
    ];
    for (i, (args, expected)) in cases.iter().enumerate() {
        let name = format!("case{i}");
        let mut all = vec!["restore", "--to"];
        let dest = to(&name);
        all.push(&dest);
        all.extend_from_slice(args);
        json(&repo, &all, 0);
        assert_eq!(restored(&target(&name), &messages), *expected, "{args:?}");
    }
    let hash = MessageHash::of(&messages[0]).to_hex();
    json(
        &repo,
        &[
            "restore",
            "--to",
            &to("byhash"),
            "--snapshot",
            ids[0].as_str(),
            "--hash",
            &hash[..12],
        ],
        0,
    );
    assert_eq!(restored(&target("byhash"), &messages), [0]);

    // A dry run lists and writes nothing.
    let dry = json(&repo, &["restore", "--to", &to("dry"), "--dry-run"], 0);
    assert_eq!(dry["would_write"].as_array().unwrap().len(), 3, "{dry}");
    assert!(!target("dry").exists());
    let out = popbackup(
        &repo,
        &[
            "restore",
            "--to",
            &to("dry"),
            "--dry-run",
            "--subject",
            "hello",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no archived message matches"));
    // ... and knows what a previous restore already wrote.
    let dry = json(&repo, &["restore", "--to", &to("all"), "--dry-run"], 0);
    assert_eq!(dry["already_present"], 3);

    // --seen delivers into cur/ with the S flag; --crlf keeps the wire bytes.
    json(
        &repo,
        &["restore", "--to", &to("seen"), "--seen", "--crlf"],
        0,
    );
    let cur = files_in(&target("seen").join("cur"));
    assert_eq!(cur.len(), 3);
    for f in &cur {
        assert!(f.to_string_lossy().ends_with(":2,S"));
        let bytes = std::fs::read(f).unwrap();
        assert!(messages.contains(&bytes), "--crlf keeps the archived bytes");
    }
    assert!(files_in(&target("seen").join("new")).is_empty());
    // A message a mail client has since moved to cur/ and flagged is still recognised.
    let again = json(&repo, &["restore", "--to", &to("seen")], 0);
    assert_eq!(
        (again["written"].as_u64(), again["already_present"].as_u64()),
        (Some(0), Some(3))
    );

    // Unknown account; a snapshot of another account.
    let out = popbackup(&repo, &["restore", "--to", &to("x"), "--account", "play"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("home, work"), "{}", stderr(&out));
    let out = popbackup(
        &repo,
        &[
            "restore",
            "--to",
            &to("x"),
            "--account",
            "home",
            "--snapshot",
            ids[0].as_str(),
        ],
    );
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let out = popbackup(&repo, &["restore", "--to", "/no/format"]);
    assert_eq!(
        out.status.code(),
        Some(64),
        "clap usage error: {}",
        stderr(&out)
    );
}

#[test]
fn mbox_quoting_senders_and_appending() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, ids, messages) = history(dir.path());
    let mbox = dir.path().join("mail").join("archive.mbox");
    // An existing mbox with a message of the user's own, not ending in a blank line.
    std::fs::create_dir_all(mbox.parent().unwrap()).unwrap();
    let own = b"From me@example.org Mon Jan  1 00:00:00 2024\nSubject: mine\n\nmy own\n".to_vec();
    std::fs::write(&mbox, &own).unwrap();
    let to = format!("mbox:{}", mbox.display());
    let report = json(
        &repo,
        &["restore", "--to", &to, "--snapshot", ids[0].as_str()],
        0,
    );
    assert_eq!(report["written"], 2);
    let report = json(&repo, &["restore", "--to", &to], 0);
    assert_eq!(
        (
            report["written"].as_u64(),
            report["already_present"].as_u64()
        ),
        (Some(2), Some(1))
    );
    let text = std::fs::read(&mbox).unwrap();
    assert!(text.starts_with(&own), "the user's message is untouched");
    let content = String::from_utf8_lossy(&text);
    assert!(
        content.contains("\nFrom bounce@lists.example Mon Jan  5 10:00:00 2026\n"),
        "{content}"
    );
    assert!(
        content.contains("\nFrom bob@example.org Sat Jan 31 12:00:00 2026\n"),
        "{content}"
    );
    assert!(
        content.contains("\nFrom MAILER-DAEMON Tue Mar  3 00:00:00 2026\n"),
        "{content}"
    );
    assert!(
        content.contains("\n>From here on\n>>From there\n\n>From the start\n"),
        "{content}"
    );
    assert!(
        !mbox.with_file_name("archive.mbox.lock").exists(),
        "the dot-lock is gone"
    );

    let parsed = python_mbox(&mbox);
    assert_eq!(parsed.len(), 5, "{parsed:?}");
    for m in &messages {
        let hex = MessageHash::of(m).to_hex();
        assert!(
            parsed.iter().any(|(h, _)| *h == hex),
            "message missing or altered"
        );
    }

    // Locked by another program: a temporary failure, nothing written.
    std::fs::write(mbox.with_file_name("archive.mbox.lock"), "4242\n").unwrap();
    let out = popbackup(&repo, &["restore", "--to", &to]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("archive.mbox.lock"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&mbox).unwrap(), text);

    // A destination named relative to the current directory, as people type it.
    for to in ["mbox:relative.mbox", "maildir:relative"] {
        let out = Command::new(env!("CARGO_BIN_EXE_popbackup"))
            .arg("--repo")
            .arg(&repo)
            .args(["restore", "--to", to])
            .current_dir(dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{to}: {}", stderr(&out));
    }
    // The latest snapshot: three messages.
    assert_eq!(python_mbox(&dir.path().join("relative.mbox")).len(), 3);
    assert_eq!(python_maildir_count(&dir.path().join("relative")), 3);
}

#[test]
fn unwritable_destinations_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, _, _) = history(dir.path());
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = popbackup(
        &repo,
        &[
            "restore",
            "--to",
            &format!("maildir:{}/sub", file.display()),
        ],
    );
    assert_eq!(out.status.code(), Some(74), "{}", stderr(&out));
    assert!(stderr(&out).contains("a-file/sub"), "{}", stderr(&out));
    let out = popbackup(
        &repo,
        &["restore", "--to", &format!("mbox:{}", dir.path().display())],
    );
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));

    // A full disk: a 64 KiB tmpfs and a message larger than that.
    let mount = dir.path().join("small");
    std::fs::create_dir(&mount).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: the disk-full case needs root to mount a small tmpfs");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let big_repo = dir.path().join("big");
    let repo_handle = Repository::init(&big_repo).unwrap();
    let mut writer = repo_handle.lock("test").unwrap();
    let small = b"Subject: small\r\n\r\nsmall\r\n".to_vec();
    let big: Vec<u8> = {
        let mut m = b"Subject: big\r\n\r\n".to_vec();
        for i in 0..4000 {
            m.extend_from_slice(
                format!("line {i} of a message too large for the disk\r\n").as_bytes(),
            );
        }
        m
    };
    let hashes: Vec<MessageHash> = [&small, &big]
        .iter()
        .map(|m| writer.store_bytes(m).unwrap().hash())
        .collect();
    let mut manifest = crate::repo::manifest_for(
        writer.repo(),
        "work",
        &[
            (hashes[0], small.len() as u64),
            (hashes[1], big.len() as u64),
        ],
    );
    manifest.messages[0].subject = Some("small".into());
    writer.commit(&manifest).unwrap();
    drop(writer);

    let mbox = mount.join("mbox");
    std::fs::write(
        &mbox,
        b"From a Mon Jan  1 00:00:00 2024\nSubject: before\n\nkeep\n\n",
    )
    .unwrap();
    let before = std::fs::read(&mbox).unwrap();
    let out = popbackup(
        &big_repo,
        &["restore", "--to", &format!("mbox:{}", mbox.display())],
    );
    assert_eq!(out.status.code(), Some(74), "{}", stderr(&out));
    assert!(stderr(&out).contains("No space left"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&mbox).unwrap(),
        before,
        "truncated back to where it was"
    );
    assert!(!mount.join("mbox.lock").exists());

    std::fs::remove_file(&mbox).unwrap();
    let maildir = mount.join("Maildir");
    let out = popbackup(
        &big_repo,
        &["restore", "--to", &format!("maildir:{}", maildir.display())],
    );
    assert_eq!(out.status.code(), Some(74), "{}", stderr(&out));
    assert!(
        files_in(&maildir.join("tmp")).is_empty(),
        "no partial file left in tmp/"
    );
    for f in files_in(&maildir.join("new")) {
        let wire = crlf(&std::fs::read(&f).unwrap());
        assert!(
            wire == small || wire == big,
            "only complete messages are published"
        );
    }
}
