//! Retention: `forget` policies through the binary (in a DST time zone), `prune` (and a prune
//! killed at random moments), and server-side deletion against Dovecot, which must happen only
//! when every condition holds.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use popbackup::pop3::{self, AuthMethod, TlsMode};
use popbackup::repo::{MessageHash, Repository, SnapshotId};
use popbackup::verify::{DataCheck, VerifyOptions, verify};
use serde_json::Value;

use crate::snapshot::{Setup, counter, stderr};
use crate::support::dovecot::Dovecot;
use crate::support::store::on_every_backend;
use crate::support::{manifest, record};

fn popbackup(repo: &Path, args: &[&str], tz: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_popbackup"))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env("TZ", tz)
        .env("XDG_CONFIG_HOME", repo.parent().unwrap())
        .output()
        .unwrap()
}

/// Commits one snapshot per time for `account`, each holding `messages`.
fn snapshots_at(
    repo: impl Into<popbackup::repo::RepoLocation>,
    account: &str,
    times: &[&str],
    messages: &[Vec<u8>],
) -> Vec<SnapshotId> {
    let mut writer = Repository::open(repo).unwrap().lock("test").unwrap();
    let hashes: Vec<MessageHash> = messages
        .iter()
        .map(|m| writer.store_bytes(m).unwrap().hash())
        .collect();
    let mut ids = Vec::new();
    for t in times {
        let time = chrono::DateTime::parse_from_rfc3339(t).unwrap().to_utc();
        let manifest = manifest(
            account,
            time,
            hashes
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    record(
                        i as u32 + 1,
                        format!("u{i}"),
                        *h,
                        messages[i].len() as u64,
                        Default::default(),
                    )
                })
                .collect(),
        );
        writer.commit(&manifest).unwrap();
        ids.push(manifest.id);
    }
    ids
}

fn kept_times(report: &Value) -> BTreeSet<String> {
    report["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| !d["reasons"].as_array().unwrap().is_empty())
        .map(|d| {
            let t = d["time"].as_str().unwrap();
            let t = chrono::DateTime::parse_from_rfc3339(t).unwrap().to_utc();
            t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        })
        .collect()
}

on_every_backend! {
    fn forget_keeps_exactly_the_policy_in_local_time(at: &TestRepo) {
        let repo = &at.location;
        Repository::init(repo).unwrap();
        // Around the spring-forward night in Berlin (2026-03-29, 02:00 CET -> 03:00 CEST).
        let times = [
            "2026-03-28T22:30:00Z", // 23:30 CET, Mar 28
            "2026-03-28T23:30:00Z", // 00:30 CET, Mar 29
            "2026-03-29T21:30:00Z", // 23:30 CEST, Mar 29
            "2026-03-29T22:30:00Z", // 00:30 CEST, Mar 30
            "2026-04-30T21:59:00Z", // 23:59 CEST, Apr 30 (month end)
            "2026-04-30T22:01:00Z", // 00:01 CEST, May 1
        ];
        snapshots_at(
            repo,
            "work",
            &times,
            &[b"Subject: a\r\n\r\na\r\n".to_vec()],
        );
        let forget = |args: &[&str], tz: &str| -> Value {
            let mut all = vec!["forget", "--json"];
            all.extend_from_slice(args);
            let out = at.command(&all).env("TZ", tz).output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            serde_json::from_slice(&out.stdout).unwrap()
        };
        let set = |ts: &[&str]| -> BTreeSet<String> { ts.iter().map(|t| t.to_string()).collect() };
        let daily = forget(&["--keep-daily", "4", "--dry-run"], "Europe/Berlin");
        assert_eq!(
            kept_times(&daily),
            set(&[times[2], times[3], times[4], times[5]]),
            "Berlin days: Mar 28, Mar 29 (two, the 23-hour day), Mar 30, Apr 30, May 1"
        );
        let daily_utc = forget(&["--keep-daily", "4", "--dry-run"], "UTC");
        assert_eq!(
            kept_times(&daily_utc),
            set(&[times[1], times[3], times[5]]),
            "UTC days: Mar 28 (two), Mar 29 (two), Apr 30 (two)"
        );
        let monthly = forget(&["--keep-monthly", "2", "--dry-run"], "Europe/Berlin");
        assert_eq!(
            kept_times(&monthly),
            set(&[times[4], times[5]]),
            "April and May in Berlin"
        );
        let monthly_utc = forget(&["--keep-monthly", "2", "--dry-run"], "UTC");
        assert_eq!(
            kept_times(&monthly_utc),
            set(&[times[3], times[5]]),
            "March and April in UTC"
        );
        let last = forget(
            &["--keep-last", "2", "--keep-within", "2d", "--dry-run"],
            "UTC",
        );
        assert_eq!(kept_times(&last), set(&[times[4], times[5]]));

        // The real thing removes the manifests and nothing else.
        let packs_before = Repository::open(repo).unwrap().pack_ids().unwrap();
        let report = forget(&["--keep-daily", "4"], "Europe/Berlin");
        assert_eq!(report["removed"], 2);
        let left = Repository::open(repo).unwrap();
        assert_eq!(left.snapshots().unwrap().len(), 4);
        assert_eq!(left.pack_ids().unwrap(), packs_before);
    }
}

/// A repository with 40 packs of 10 messages; snapshot `all` holds every message, snapshot
/// `some` every third one.
fn prunable(dir: &Path, per_pack: usize) -> (std::path::PathBuf, Vec<Vec<u8>>) {
    let repo = dir.join("archive");
    let messages = prunable_at(&repo, per_pack);
    (repo, messages)
}

/// [`prunable`] at any location.
fn prunable_at(at: impl Into<popbackup::repo::RepoLocation>, per_pack: usize) -> Vec<Vec<u8>> {
    let mut writer = Repository::init(at).unwrap().lock("test").unwrap();
    let messages: Vec<Vec<u8>> = (0..400)
        .map(|i| {
            format!(
                "Subject: message {i}\r\n\r\n{}\r\n",
                "body text ".repeat(50 + i % 17)
            )
            .into_bytes()
        })
        .collect();
    let mut hashes = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        hashes.push(writer.store_bytes(m).unwrap().hash());
        if i % per_pack == per_pack - 1 {
            writer.flush().unwrap();
        }
    }
    for (account, step, second) in [("all", 1, 0), ("some", 3, 1)] {
        let time = chrono::DateTime::from_timestamp(1_767_225_600 + second, 0).unwrap();
        let manifest = manifest(
            account,
            time,
            (0..messages.len())
                .step_by(step)
                .map(|i| {
                    record(
                        i as u32 + 1,
                        format!("u{i}"),
                        hashes[i],
                        messages[i].len() as u64,
                        Default::default(),
                    )
                })
                .collect(),
        );
        writer.commit(&manifest).unwrap();
    }
    drop(writer);
    messages
}

/// The repository verifies clean and every kept snapshot's messages read back.
fn assert_intact(repo_path: impl Into<popbackup::repo::RepoLocation>) -> usize {
    let repo = Repository::open(repo_path).unwrap();
    let report = verify(
        &repo,
        VerifyOptions {
            data: DataCheck::Full,
            threads: 2,
        },
    )
    .unwrap();
    assert!(report.clean, "{report:?}");
    let mut read = 0;
    for id in repo.snapshots().unwrap() {
        for r in repo.manifest(&id).unwrap().messages {
            repo.read_message(&r.sha256.unwrap()).unwrap();
            read += 1;
        }
    }
    read
}

/// An unfinished run's checkpoint names records files of its own: prune keeps them and the
/// messages they name, and removes the records files nothing names.
#[test]
fn prune_keeps_what_an_unfinished_runs_checkpoint_names() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, messages) = prunable(dir.path(), 10);
    let all = Repository::open(&repo).unwrap().snapshots().unwrap()[0].clone();
    {
        let mut writer = Repository::open(&repo).unwrap().lock("test").unwrap();
        let time = chrono::DateTime::from_timestamp(1_767_225_700, 0).unwrap();
        // Messages 1 and 2 are in no snapshot but "all", which goes.
        let run = manifest(
            "run",
            time,
            (0..6)
                .map(|i| {
                    let hash = MessageHash::of(&messages[i]);
                    record(i as u32 + 1, format!("u{i}"), hash, 0, Default::default())
                })
                .collect(),
        );
        writer.checkpoint(&run).unwrap();
    }
    std::fs::remove_file(repo.join("snapshots").join(format!("{all}.json.zst"))).unwrap();
    let out = popbackup(&repo, &["prune", "--json"], "UTC");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let after = Repository::open(&repo).unwrap();
    let checkpoints = after.checkpoints().unwrap();
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(checkpoints[0].messages.len(), 6);
    for (i, r) in checkpoints[0].messages.iter().enumerate() {
        assert_eq!(after.read_message(&r.sha256.unwrap()).unwrap(), messages[i]);
    }
    let mut named: BTreeSet<String> = BTreeSet::new();
    let snapshots = after.snapshots().unwrap();
    assert_eq!(snapshots.len(), 1);
    let heads = [
        after.manifest_head(&snapshots[0]).unwrap(),
        checkpoints[0].clone(),
    ];
    for head in heads {
        named.extend(head.records.unwrap().0.iter().map(|id| id.to_string()));
    }
    let files: BTreeSet<String> = after
        .records_files()
        .unwrap()
        .iter()
        .map(|id| id.to_string())
        .collect();
    assert_eq!(
        files, named,
        "what a snapshot or the checkpoint names, no more"
    );
    assert_intact(&repo);
}

on_every_backend! {
    fn prune_frees_what_no_snapshot_needs(at: &TestRepo) {
        let repo = &at.location;
        prunable_at(repo, 10);
        let run = |args: &[&str]| at.command(args).env("TZ", "UTC").output().unwrap();
        // Nothing to do while every message is referenced.
        let out = run(&["prune", "--dry-run", "--json"]);
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (plan["delete_packs"].as_u64(), plan["repack_packs"].as_u64()),
            (Some(0), Some(0))
        );
        let out = run(&["forget", "--keep-last", "1", "--account", "all"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        // Remove "all" entirely: only "some" (every third message) stays.
        let id = Repository::open(repo).unwrap().snapshots().unwrap()[0].clone();
        let mut writer = Repository::open(repo).unwrap().lock("test").unwrap();
        writer.remove_snapshot(&id).unwrap();
        drop(writer);
        let out = run(&["prune", "--dry-run", "--json"]);
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(plan["referenced"], 134);
        assert_eq!(plan["repack_packs"], 40, "{plan}");
        let before = Repository::open(repo).unwrap().pack_ids().unwrap().len();
        let out = run(&["prune", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let after = Repository::open(repo).unwrap();
        assert_eq!(
            after.index().len(),
            134,
            "only the referenced messages are left"
        );
        assert!(after.pack_ids().unwrap().len() < before);
        assert_eq!(assert_intact(repo), 134);
        assert_eq!(after.index_file_names().unwrap().len(), 1);
    }
}

#[test]
fn prune_killed_at_random_moments_never_damages_the_repository() {
    let mut seed: u64 = 0xfeed;
    let mut kills = 0;
    for round in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let (repo, _) = prunable(dir.path(), 2);
        let id = Repository::open(&repo).unwrap().snapshots().unwrap()[0].clone();
        std::fs::remove_file(repo.join("snapshots").join(format!("{id}.json.zst"))).unwrap();
        // How long a whole prune takes here, on a copy: the kill falls anywhere in that time.
        let copy = dir.path().join("copy");
        assert!(
            Command::new("cp")
                .arg("-a")
                .arg(&repo)
                .arg(&copy)
                .status()
                .unwrap()
                .success()
        );
        let started = std::time::Instant::now();
        assert_eq!(popbackup(&copy, &["prune"], "UTC").status.code(), Some(0));
        let full = started.elapsed().as_micros() as u64;
        // What an uninterrupted prune leaves (packs under the repack threshold keep their
        // unreferenced messages): the interrupted ones must end in the same place.
        let expected = Repository::open(&copy).unwrap().index().len();
        for _ in 0..2 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let delay = Duration::from_micros(full / 20 + (seed >> 33) % (full * 9 / 10).max(1));
            let mut child = Command::new(env!("CARGO_BIN_EXE_popbackup"))
                .args(["prune", "--repo"])
                .arg(&repo)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(delay);
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                kills += 1;
            }
            child.wait().unwrap();
            assert_eq!(
                assert_intact(&repo),
                134,
                "round {round}, after kill {kills}"
            );
        }
        let out = popbackup(&repo, &["prune"], "UTC");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(assert_intact(&repo), 134);
        assert_eq!(Repository::open(&repo).unwrap().index().len(), expected);
    }
    assert!(kills >= 4, "only {kills} kills landed during a prune");
}

#[test]
fn prune_refuses_a_damaged_repository() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, _) = prunable(dir.path(), 10);
    let pack = std::fs::read_dir(repo.join("packs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let len = std::fs::metadata(&pack).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let out = popbackup(&repo, &["prune"], "UTC");
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("refuses"), "{}", stderr(&out));
    assert!(pack.exists(), "nothing was removed");
}

/// The number of messages in `user`'s mailbox, asked directly.
fn stat(dovecot: &Dovecot, user: &str) -> u32 {
    let mut session = pop3::open_session(
        &dovecot.options(TlsMode::Implicit),
        &dovecot.credentials(user, AuthMethod::Auto),
    )
    .unwrap();
    let stat = session.stat().unwrap();
    session.quit().unwrap();
    stat.count
}

fn fill(dovecot: &Dovecot, user: &str, n: usize) -> Vec<Vec<u8>> {
    let messages: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            format!("Subject: keep or not {i}\nFrom: x{i}@example.org\n\nbody {i}\n").into_bytes()
        })
        .collect();
    dovecot.fill_maildir(
        user,
        messages
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("m{i}"), m.as_slice())),
    );
    messages
}

fn with_delete(setup: &Setup, days: u32) {
    let text = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(&setup.config, format!("{text}delete_after_days = {days}\n")).unwrap();
}

#[test]
fn deletion_only_after_two_verified_snapshots_and_never_of_damaged_copies() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let user = "u31";
    fill(&dovecot, user, 5);
    let setup = Setup::new(&dovecot, &[("mail", user)], "");
    with_delete(&setup, 0);
    let deleted = |summary: &Value| summary["accounts"][0]["deleted"].as_u64().unwrap();

    // First snapshot: nothing verified yet, nothing deleted.
    assert_eq!(deleted(&setup.json(&["snapshot"], 0)), 0);
    setup.json(&["verify"], 0);
    // Second: only one verified snapshot holds the messages.
    assert_eq!(deleted(&setup.json(&["snapshot"], 0)), 0);
    setup.json(&["verify"], 0);
    assert_eq!(stat(&dovecot, user), 5);
    // A dry run says what would go and sends no DELE.
    let dry = setup.json(&["snapshot", "--dry-run"], 0);
    assert_eq!(
        dry["accounts"][0]["would_delete"].as_array().unwrap().len(),
        5,
        "{dry}"
    );
    assert_eq!(stat(&dovecot, user), 5);

    // Damage one archived copy: that message must stay on the server.
    let repo = Repository::open(&setup.repo).unwrap();
    let manifest = repo
        .manifest(&repo.find_snapshot("latest").unwrap())
        .unwrap();
    let victim = manifest.messages[2].sha256.unwrap();
    let loc = repo.location(&victim).unwrap();
    let pack = crate::support::files::pack(repo.storage().local_path().unwrap(), &loc.pack);
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[(loc.entry.offset + loc.entry.length / 2) as usize] ^= 0x20;
    std::fs::write(&pack, bytes).unwrap();

    let logouts = dovecot.logouts(user).len();
    let summary = setup.json(&["snapshot"], 0);
    assert_eq!(deleted(&summary), 4, "{summary}");
    let lines = dovecot.wait_logouts(user, logouts + 1);
    assert_eq!(
        counter(lines.last().unwrap(), "del"),
        4,
        "{}",
        lines.last().unwrap()
    );
    assert_eq!(
        stat(&dovecot, user),
        1,
        "the message whose copy is damaged stays"
    );
    let left = setup.json(&["inventory", "mail"], 0);
    assert_eq!(left["messages_on_server"], 1);
    assert_eq!(left["vanished"].as_array().unwrap().len(), 4);
}

#[test]
fn a_connection_cut_before_quit_deletes_nothing() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let user = "u32";
    fill(&dovecot, user, 3);
    let setup = Setup::with_tls(&dovecot, &[("mail", user)], "", TlsMode::None);
    with_delete(&setup, 0);
    for _ in 0..2 {
        setup.json(&["snapshot"], 0);
        setup.json(&["verify"], 0);
    }
    // A proxy that forwards everything but hangs up when the client says QUIT.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let target = dovecot.port(TlsMode::None);
    std::thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let server = TcpStream::connect(("127.0.0.1", target)).unwrap();
        let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let (mut s_read, mut c_write) = (server, client);
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut s_read, &mut c_write);
        });
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while c_read.read(&mut byte).unwrap_or(0) == 1 {
            line.push(byte[0]);
            if byte[0] == b'\n' {
                if line.starts_with(b"QUIT") {
                    let _ = s_write.shutdown(Shutdown::Both);
                    let _ = c_read.shutdown(Shutdown::Both);
                    return;
                }
                s_write.write_all(&line).unwrap();
                line.clear();
            }
        }
    });
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let text = text.replace(&format!("port = {target}"), &format!("port = {port}"));
    std::fs::write(&setup.config, text).unwrap();
    let summary = setup.json(&["snapshot"], 0);
    let account = &summary["accounts"][0];
    assert_eq!(account["deleted"], 0, "{summary}");
    assert!(
        account["warnings"].to_string().contains("QUIT failed"),
        "{summary}"
    );
    assert_eq!(
        stat(&dovecot, user),
        3,
        "without QUIT the server deleted nothing"
    );
    let _ = HashMap::<u8, u8>::new();
}

#[test]
fn a_prune_interrupted_after_writing_its_new_packs_is_finished_by_the_next() {
    // Regression: the next prune can write a pack identical to the one the interrupted prune
    // wrote (same frames, same name) while its plan drops the older copy; it deleted the pack
    // it had just written, losing every repacked message.
    use popbackup::repo::RepoWriter;
    use popbackup::retention::{plan_prune, prune::PackAction};
    use std::io::{Read as _, Seek as _, SeekFrom};
    let dir = tempfile::tempdir().unwrap();
    let (repo, _) = prunable(dir.path(), 10);
    let id = Repository::open(&repo).unwrap().snapshots().unwrap()[0].clone();
    std::fs::remove_file(repo.join("snapshots").join(format!("{id}.json.zst"))).unwrap();
    {
        // The first prune, killed in step 1: its new pack is written, the index file that
        // would cover it is not (the next open scans the pack, after the index files).
        let index_dir = repo.join("index");
        let before: BTreeSet<_> = std::fs::read_dir(&index_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let mut writer = RepoWriter::open(&repo, "test").unwrap();
        let plan = plan_prune(writer.repo(), 50.0).unwrap();
        for p in plan.packs.iter().filter(|p| p.action == PackAction::Repack) {
            let mut file = std::fs::File::open(crate::support::files::pack(
                writer.repo().storage().local_path().unwrap(),
                &p.pack,
            ))
            .unwrap();
            for e in &p.used {
                let mut frame = vec![0u8; e.length as usize];
                file.seek(SeekFrom::Start(e.offset)).unwrap();
                file.read_exact(&mut frame).unwrap();
                writer.copy_frame(e.hash, &frame, e.dict).unwrap();
            }
        }
        writer.flush_packs().unwrap();
        drop(writer);
        for entry in std::fs::read_dir(&index_dir).unwrap() {
            let entry = entry.unwrap();
            if !before.contains(&entry.file_name()) {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
    }
    assert_eq!(assert_intact(&repo), 134);
    let out = popbackup(&repo, &["prune"], "UTC");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(assert_intact(&repo), 134);
    assert_eq!(Repository::open(&repo).unwrap().index().len(), 134);
}
