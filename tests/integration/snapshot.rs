//! `popbackup snapshot` and `inventory` end to end: the binary against the test Dovecot.
//!
//! What the server did is read from Dovecot's own logout lines (`retr=N/...`, `del=0/...`), so
//! "downloads exactly the new messages" and "never deletes" are checked on the server's side,
//! not only by our own counters.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use popbackup::pop3::TlsMode;
use popbackup::repo::{MessageHash, RepoLocation, Repository};
use serde_json::Value;

use crate::support::corpus_messages;
use crate::support::dovecot::{Dovecot, dovecot_retr_bytes};
use crate::support::store::on_every_backend;

/// A temporary configuration and repository for some Dovecot users.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// The repository's directory (for a local one).
    pub repo: PathBuf,
    pub location: RepoLocation,
    users: Vec<String>,
}

impl Setup {
    /// One `[accounts.NAME]` per `(name, user)`, over implicit TLS, plus `extra` top-level keys.
    pub fn new(dovecot: &Dovecot, accounts: &[(&str, &str)], extra: &str) -> Setup {
        Setup::with_tls(dovecot, accounts, extra, TlsMode::Implicit)
    }

    pub fn with_tls(
        dovecot: &Dovecot,
        accounts: &[(&str, &str)],
        extra: &str,
        tls: TlsMode,
    ) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("archive");
        let header = format!("repository = {:?}\n", repo.to_str().unwrap());
        let location = RepoLocation::Local(repo.clone());
        Setup::build(dovecot, accounts, extra, tls, dir, header, location)
    }

    /// Like [`Setup::new`], with the repository `at` (on disk or in a bucket).
    pub fn on(
        dovecot: &Dovecot,
        accounts: &[(&str, &str)],
        extra: &str,
        at: &crate::support::store::TestRepo,
    ) -> Setup {
        Setup::on_with_tls(dovecot, accounts, extra, TlsMode::Implicit, at)
    }

    pub fn on_with_tls(
        dovecot: &Dovecot,
        accounts: &[(&str, &str)],
        extra: &str,
        tls: TlsMode,
        at: &crate::support::store::TestRepo,
    ) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        Setup::build(
            dovecot,
            accounts,
            extra,
            tls,
            dir,
            at.config.clone(),
            at.location.clone(),
        )
    }

    fn build(
        dovecot: &Dovecot,
        accounts: &[(&str, &str)],
        extra: &str,
        tls: TlsMode,
        dir: tempfile::TempDir,
        header: String,
        location: RepoLocation,
    ) -> Setup {
        let repo = location
            .local_path()
            .map(Into::into)
            .unwrap_or_else(|| dir.path().join("not-on-disk"));
        let config = dir.path().join("config.toml");
        // [s3] is a table: the top-level keys go before it.
        let (top, tables) = match header.split_once("[s3]") {
            Some((top, s3)) => (top.to_string(), format!("[s3]{s3}")),
            None => (header, String::new()),
        };
        let mut text = format!("{top}{extra}\n{tables}\n");
        for (name, user) in accounts {
            let tls_name = match tls {
                TlsMode::Implicit => "implicit",
                TlsMode::Starttls => "starttls",
                TlsMode::None => "none",
            };
            text += &format!(
                "\n[accounts.{name}]\nhost = \"localhost\"\nport = {}\ntls = \"{tls_name}\"\n\
                 user = \"{user}\"\npassword_env = \"PW_{}\"\ntimeout = 20\n{}",
                dovecot.port(tls),
                user.to_uppercase(),
                if tls == TlsMode::None {
                    "allow_insecure = true\n".to_string()
                } else {
                    format!("ca_file = {:?}\n", dovecot.ca_file().to_str().unwrap())
                }
            );
        }
        std::fs::write(&config, text).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        let setup = Setup {
            dir,
            config,
            repo,
            location,
            users: accounts.iter().map(|(_, u)| u.to_string()).collect(),
        };
        // An encrypted repository's password is in REPO_PW (see `command`), its key made
        // quick to derive: the tests are about the repository, not Argon2id.
        let init: &[&str] = if extra.contains("repository_password") {
            &[
                "init",
                "--encrypt",
                "--kdf-memory",
                "1MiB",
                "--kdf-iterations",
                "1",
            ]
        } else {
            &["init"]
        };
        let out = setup.run(init);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        setup
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_popbackup"));
        command
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("XDG_CONFIG_HOME", self.dir.path())
            .env("REPO_PW", REPO_PASSWORD);
        for user in &self.users {
            command.env(format!("PW_{}", user.to_uppercase()), format!("pw-{user}"));
        }
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs with `--json` and returns the parsed summary, asserting the exit code.
    pub fn json(&self, args: &[&str], code: i32) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        assert_eq!(
            out.status.code(),
            Some(code),
            "popbackup {args:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }
}

/// The password of a [`Setup`]'s encrypted repository: `repository_password_env = "REPO_PW"`.
pub const REPO_PASSWORD: &str = "correct horse battery staple";

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The first number after `key=` in a Dovecot logout line.
pub fn counter(line: &str, key: &str) -> u64 {
    let at = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("{key} in {line}"));
    line[at + key.len() + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn account<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["account"] == name)
        .unwrap_or_else(|| panic!("no account {name} in {summary}"))
}

/// The corpus as Dovecot will serve it: file name in the Maildir → bytes.
fn corpus_files(corpus: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    corpus
        .iter()
        .enumerate()
        .map(|(i, (name, bytes))| {
            (
                format!("{i:05}.{}", name.replace(['/', ':'], "_")),
                bytes.clone(),
            )
        })
        .collect()
}

on_every_backend! {
    fn corpus_snapshot_is_exact_incremental_and_never_deletes(at: &TestRepo) {
        let Some(dovecot) = Dovecot::get() else {
            return;
        };
        let Some(corpus) = corpus_messages() else {
            return;
        };
        // Dovecot allows one session per mailbox: each backend's run has its own.
        let user = if at.path().is_some() { "u21" } else { "u41" };
        let files = corpus_files(&corpus);
        dovecot.fill_maildir(user, files.iter().map(|(n, b)| (n.clone(), b.as_slice())));
        let setup = Setup::on(&dovecot, &[("corpus", user)], "", at);
        let logouts_before = dovecot.logouts(user).len();

        // First run: everything is downloaded, and the archive gives back exactly what Dovecot sent.
        let first = setup.json(&["snapshot"], 0);
        let report = account(&first, "corpus");
        assert_eq!(report["outcome"], "ok", "{report}");
        assert_eq!(report["messages_on_server"], files.len());
        assert_eq!(report["downloaded"], files.len());
        let mut expected: HashMap<MessageHash, usize> = HashMap::new();
        for (_, bytes) in &files {
            *expected
                .entry(MessageHash::of(&dovecot_retr_bytes(bytes)))
                .or_default() += 1;
        }
        assert_eq!(report["new_messages"], expected.len());
        assert_eq!(report["duplicates"], files.len() - expected.len());

        let repo = Repository::open(&setup.location).unwrap();
        let id = repo.find_snapshot("latest").unwrap();
        let manifest = repo.manifest(&id).unwrap();
        assert_eq!(report["snapshot"], id.as_str());
        let mut archived: HashMap<MessageHash, usize> = HashMap::new();
        for record in &manifest.messages {
            *archived.entry(record.sha256.unwrap()).or_default() += 1;
            assert!(record.uidl.is_some() && record.pack.is_some());
        }
        assert_eq!(archived, expected, "the manifest lists exactly the corpus");
        let by_hash: HashMap<MessageHash, &[u8]> = files
            .iter()
            .map(|(_, b)| (MessageHash::of(&dovecot_retr_bytes(b)), b.as_slice()))
            .collect();
        for hash in expected.keys() {
            let bytes = repo.read_message(hash).unwrap();
            assert_eq!(bytes, dovecot_retr_bytes(by_hash[hash]), "message {hash}");
        }
        // And through the binary's `cat`, for a sample (one process per message is slow).
        for record in manifest.messages.iter().step_by(97) {
            let hash = record.sha256.unwrap();
            let out = setup.run(&["cat", &hash.to_hex()[..20]]);
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            assert_eq!(out.stdout, dovecot_retr_bytes(by_hash[&hash]));
            assert_eq!(record.size, Some(out.stdout.len() as u64));
        }
        let lines = dovecot.wait_logouts(user, logouts_before + 1);
        let last = lines.last().unwrap();
        assert_eq!(counter(last, "retr"), files.len() as u64, "{last}");
        assert_eq!(counter(last, "del"), 0, "{last}");

        // Ten new messages: exactly those ten are retrieved, by the server's count.
        let added: Vec<(String, Vec<u8>)> = (0..10)
            .map(|i| {
                (
                    format!("added-{i}"),
                    format!(
                        "From: New <new{i}@example.org>\nSubject: added {i}\nDate: Thu, 26 Nov 2026 \
                         10:0{i}:00 +0000\nMessage-ID: <added{i}@example.org>\n\nbody {i}\n.dot\n"
                    )
                    .into_bytes(),
                )
            })
            .collect();
        for (name, bytes) in &added {
            dovecot.deliver(user, name, bytes);
        }
        let inventory = setup.json(&["inventory", "corpus"], 0);
        assert_eq!(
            inventory["new"].as_array().unwrap().len(),
            10,
            "{inventory}"
        );
        assert_eq!(inventory["already_archived"], files.len());
        let subjects: Vec<&str> = inventory["new"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["subject"].as_str().unwrap())
            .collect();
        assert!(subjects.contains(&"added 7"), "{subjects:?}");
        // The human listing has a header row and sizes for people.
        let human = setup.run(&["inventory", "corpus"]);
        let text = String::from_utf8_lossy(&human.stdout);
        let header = text
            .lines()
            .find(|l| l.contains("SUBJECT"))
            .unwrap_or_default();
        assert!(header.contains("MSG") && header.contains("SIZE"), "{text}");
        assert!(text.contains("added 7") && text.contains(" B "), "{text}");
        let lines = dovecot.wait_logouts(user, logouts_before + 3);
        let last = lines.last().unwrap();
        assert_eq!(
            counter(last, "retr"),
            0,
            "inventory downloads no body: {last}"
        );
        assert_eq!(
            counter(last, "top"),
            10,
            "inventory TOPs only the new: {last}"
        );

        let second = setup.json(&["snapshot"], 0);
        let report = account(&second, "corpus");
        assert_eq!(report["downloaded"], 10, "{report}");
        assert_eq!(report["new_messages"], 10);
        assert_eq!(report["messages_on_server"], files.len() + 10);
        let lines = dovecot.wait_logouts(user, logouts_before + 3);
        let last = lines.last().unwrap();
        assert_eq!(counter(last, "retr"), 10, "{last}");
        assert_eq!(counter(last, "del"), 0, "{last}");
        let repo = Repository::open(&setup.location).unwrap();
        let manifest = repo
            .manifest(&repo.find_snapshot("latest").unwrap())
            .unwrap();
        let record = manifest
            .messages
            .iter()
            .find(|r| r.subject.as_deref() == Some("added 3"))
            .expect("the new message is in the manifest with its headers");
        assert_eq!(record.message_id.as_deref(), Some("<added3@example.org>"));
        assert_eq!(
            repo.read_message(&record.sha256.unwrap()).unwrap(),
            dovecot_retr_bytes(&added[3].1)
        );

        // Nothing new: nothing is downloaded, and the run is still a snapshot.
        let third = setup.json(&["snapshot"], 0);
        let report = account(&third, "corpus");
        assert_eq!(report["downloaded"], 0, "{report}");
        assert_eq!(report["already_archived"], files.len() + 10);
        assert!(report["snapshot"].is_string());
        let lines = dovecot.wait_logouts(user, logouts_before + 4);
        let last = lines.last().unwrap();
        assert_eq!(counter(last, "retr"), 0, "{last}");
        for line in &lines[logouts_before..] {
            assert_eq!(counter(line, "del"), 0, "never a deletion: {line}");
        }
        // It saw the listing the second archived (same UIDLs and sizes from a new Dovecot
        // session), so its manifest names the second's records file, and reads back the same.
        let repo = Repository::open(&setup.location).unwrap();
        let ids = repo.snapshots().unwrap();
        let (second_id, third_id) = (&ids[ids.len() - 2], &ids[ids.len() - 1]);
        assert_eq!(report["snapshot"], third_id.as_str());
        let (second_head, third_head) = (
            repo.manifest_head(second_id).unwrap(),
            repo.manifest_head(third_id).unwrap(),
        );
        assert!(second_head.listing.is_some());
        assert_eq!(third_head.listing, second_head.listing);
        assert_eq!(third_head.records, second_head.records);
        assert_eq!(
            repo.manifest(third_id).unwrap().messages,
            repo.manifest(second_id).unwrap().messages
        );
        // The second snapshot's list is the first's plus ten records at its end: it names the
        // first's records files for every run but the last, and the repository holds each run once.
        assert_eq!(ids.len(), 3);
        let first_list = repo.manifest_head(&ids[0]).unwrap().records.unwrap().0;
        let second_list = second_head.records.clone().unwrap().0;
        assert!(first_list.len() > 1, "1,259 records make several runs");
        let shared = second_list
            .iter()
            .filter(|r| first_list.contains(r))
            .count();
        assert!(
            shared + 1 >= first_list.len(),
            "ten new messages change only the last run: {shared} of {} shared",
            first_list.len()
        );
        assert_eq!(
            repo.records_files().unwrap().len(),
            first_list.len() + second_list.len() - shared
        );

        // A message removed on the server stays archived and is reported as vanished.
        dovecot.remove(user, "added-5");
        let inventory = setup.json(&["inventory", "corpus", "--no-headers"], 0);
        let vanished = inventory["vanished"].as_array().unwrap();
        assert_eq!(vanished.len(), 1, "{inventory}");
        assert_eq!(vanished[0]["subject"], "added 5");
        let fourth = setup.json(&["snapshot"], 0);
        assert_eq!(account(&fourth, "corpus")["vanished"], 1);
        let gone = vanished[0]["sha256"].as_str().unwrap();
        let out = setup.run(&["cat", gone]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(out.stdout, dovecot_retr_bytes(&added[5].1));
        let human = setup.run(&["snapshots"]);
        assert_eq!(
            String::from_utf8_lossy(&human.stdout).lines().count(),
            5,
            "a header and four snapshots"
        );
    }
}

#[test]
fn accounts_run_in_parallel_and_one_failure_spares_the_others() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let shared =
        b"From: a@example.org\r\nSubject: in both mailboxes\r\n\r\nsame bytes\r\n".to_vec();
    dovecot.fill_maildir(
        "u22",
        [
            ("one".to_string(), &b"Subject: one\r\n\r\n1\r\n"[..]),
            ("shared".to_string(), &shared[..]),
        ],
    );
    dovecot.fill_maildir("u23", [("shared".to_string(), &shared[..])]);
    let setup = Setup::new(
        &dovecot,
        &[("first", "u22"), ("second", "u23"), ("broken", "u24")],
        "parallel_accounts = 3",
    );
    // The third account's password is wrong: it fails with 77, the others succeed, exit 1.
    let mut command = setup.command(&["snapshot", "--json"]);
    command.env("PW_U24", "not-the-password");
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["exit_code"], 1);
    let broken = account(&summary, "broken");
    assert_eq!(broken["outcome"], "failed");
    assert_eq!(broken["exit_code"], 77);
    assert!(
        !stderr(&out).contains("not-the-password"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("broken"), "{}", stderr(&out));
    let first = account(&summary, "first");
    let second = account(&summary, "second");
    assert_eq!(first["outcome"], "ok");
    assert_eq!(second["outcome"], "ok");
    // The message both mailboxes hold is stored once.
    assert_eq!(
        first["new_messages"].as_u64().unwrap() + second["new_messages"].as_u64().unwrap(),
        2,
        "{summary}"
    );
    assert_eq!(
        first["duplicates"].as_u64().unwrap() + second["duplicates"].as_u64().unwrap(),
        1
    );
    let repo = Repository::open(&setup.repo).unwrap();
    assert_eq!(repo.index().len(), 2);
    assert_eq!(repo.snapshots().unwrap().len(), 2);

    // Only the failing account, selected by name: its own exit code.
    let mut command = setup.command(&["snapshot", "broken", "-q"]);
    command.env("PW_U24", "not-the-password");
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(out.stdout.is_empty());

    // -q is silent on success; without it, one line per account.
    let out = setup.run(&["snapshot", "first", "second", "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        stderr(&out)
    );
    let out = setup.run(&["snapshot", "first"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("first: 2 messages on the server, nothing new"),
        "{text}"
    );

    // An unknown account is a configuration error.
    let out = setup.run(&["snapshot", "nosuch"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("first, second"), "{}", stderr(&out));
}

#[test]
fn a_locked_repository_is_a_temporary_failure() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    dovecot.fill_maildir("u25", [("m".to_string(), &b"Subject: m\r\n\r\nm\r\n"[..])]);
    let setup = Setup::new(&dovecot, &[("locked", "u25")], "");
    let holder = Repository::open(&setup.repo)
        .unwrap()
        .lock("test holder")
        .unwrap();
    let out = setup.run(&["snapshot"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("test holder"), "{}", stderr(&out));
    drop(holder);
    let summary = setup.json(&["snapshot"], 0);
    assert_eq!(account(&summary, "locked")["new_messages"], 1);
}

#[test]
fn starttls_accounts_and_a_missing_repository() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    dovecot.fill_maildir(
        "u26",
        [("m".to_string(), &b"Subject: stls\r\n\r\nx\r\n"[..])],
    );
    let setup = Setup::with_tls(&dovecot, &[("stls", "u26")], "", TlsMode::Starttls);
    let summary = setup.json(&["snapshot"], 0);
    assert_eq!(account(&summary, "stls")["new_messages"], 1);
    let repo = Repository::open(&setup.repo).unwrap();
    let manifest = repo
        .manifest(&repo.find_snapshot("latest").unwrap())
        .unwrap();
    assert_eq!(manifest.server.tls, "starttls");
    assert!(manifest.server.capabilities.iter().any(|c| c == "UIDL"));

    let out = setup.run(&["snapshot", "--repo", "/nonexistent/archive"]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("popbackup init"), "{}", stderr(&out));
}

/// `tls = "starttls"` pointed at the implicit-TLS port, and `tls = "implicit"` at the plain
/// one: each is named as a configuration error (78) within seconds, saying which `tls` to set,
/// instead of a two-minute wait that ends as "temporary, retry next run".
#[test]
fn a_tls_mode_that_does_not_match_the_port_is_named_within_seconds() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    for (configured, port_of, suggested) in [
        (TlsMode::Starttls, TlsMode::Implicit, "tls = \"implicit\""),
        (TlsMode::Implicit, TlsMode::Starttls, "tls = \"starttls\""),
    ] {
        let setup = Setup::with_tls(&dovecot, &[("work", "u30")], "", configured);
        let text = std::fs::read_to_string(&setup.config).unwrap().replace(
            &format!("port = {}", dovecot.port(configured)),
            &format!("port = {}", dovecot.port(port_of)),
        );
        std::fs::write(&setup.config, text).unwrap();
        let started = std::time::Instant::now();
        let out = setup.run(&["snapshot"]);
        let took = started.elapsed();
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(78), "{configured:?}: {text}");
        assert!(
            text.contains(suggested) && text.contains(&dovecot.port(port_of).to_string()),
            "{configured:?}: {text}"
        );
        // The probe waits 3 s for a greeting; the rest is the TLS exchange (a loaded machine
        // may be slow, hence the margin, which is still far below the 2-minute timeout).
        assert!(took < std::time::Duration::from_secs(20), "{took:?}");
    }
}

/// Dovecot adds a CRLF to a stored file that lacks a final line end and does not count it in
/// LIST: that is harmless, and `snapshot -q` stays silent for cron.
#[test]
fn quiet_is_silent_for_files_without_a_final_newline() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let files: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| {
            (
                format!("m{i}"),
                format!("From: a@example.org\nSubject: no final newline {i}\n\nbody {i}")
                    .into_bytes(),
            )
        })
        .collect();
    dovecot.fill_maildir("u35", files.iter().map(|(n, b)| (n.clone(), b.as_slice())));
    let setup = Setup::new(&dovecot, &[("work", "u35")], "");
    let out = setup.run(&["snapshot", "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert!(out.stdout.is_empty());
    let repo = Repository::open(&setup.repo).unwrap();
    for (_, bytes) in &files {
        let wire = dovecot_retr_bytes(bytes);
        assert_eq!(repo.read_message(&MessageHash::of(&wire)).unwrap(), wire);
    }
}

/// A wrong password names the account, user and host and says what to check — and never
/// shows the password.
#[test]
fn a_wrong_password_says_which_login_to_check() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let setup = Setup::new(&dovecot, &[("work", "u36")], "");
    let out = setup
        .command(&["snapshot"])
        .env("PW_U36", "not-the-password")
        .output()
        .unwrap();
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(77), "{text}");
    for part in ["work", "\"u36\"", "localhost", "`user`", "password_env"] {
        assert!(text.contains(part), "{part} missing: {text}");
    }
    assert!(!text.contains("not-the-password"), "{text}");
}

/// The human summary says what happened: downloaded, stored, and identical copies kept once.
#[test]
fn the_summary_counts_identical_copies() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let same = b"From: a@example.org\nSubject: twice\n\nthe same bytes\n".to_vec();
    let other = b"From: b@example.org\nSubject: once\n\nother bytes\n".to_vec();
    dovecot.fill_maildir(
        "u37",
        [
            ("a".to_string(), same.as_slice()),
            ("b".to_string(), same.as_slice()),
            ("c".to_string(), other.as_slice()),
        ],
    );
    let setup = Setup::new(&dovecot, &[("work", "u37")], "");
    let out = setup.run(&["snapshot"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 downloaded"), "{text}");
    assert!(text.contains("2 stored"), "{text}");
    assert!(
        text.contains("1 identical to messages already archived"),
        "{text}"
    );
}

/// `-v` says what happens (connection, TLS, capabilities, phases with times); `-vv` adds the
/// POP3 dialogue; neither shows the password.
#[test]
fn verbose_shows_the_connection_and_the_dialogue_without_secrets() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    dovecot.fill_maildir("u39", [("a".to_string(), &b"Subject: v\n\nbody\n"[..])]);
    let setup = Setup::new(&dovecot, &[("work", "u39")], "");
    let out = setup.run(&["snapshot", "-v"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let info = stderr(&out);
    for part in [
        "connected to localhost",
        "tls = implicit",
        "TLSv1_",
        "server certificate sha256:",
        "work: capabilities:",
        "work: logged in as \"u39\"",
        "work: listed 1 messages",
        "work: downloaded 1 of 1 new messages",
        "work: committed snapshot",
    ] {
        assert!(info.contains(part), "-v lacks {part:?}: {info}");
    }
    assert!(!info.contains("> "), "-v shows the dialogue: {info}");
    let out = setup.run(&["snapshot", "-vv"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let debug = stderr(&out);
    for part in [
        "> CAPA",
        "> AUTH PLAIN (hidden)",
        "< +OK",
        "> UIDL",
        "> QUIT",
    ] {
        assert!(debug.contains(part), "-vv lacks {part:?}: {debug}");
    }
    assert!(
        !debug.contains("pw-u39"),
        "the password is in the log: {debug}"
    );
    // Quiet runs stay silent.
    let out = setup.run(&["snapshot", "-q"]);
    assert_eq!(stderr(&out), "");
}

/// A TCP relay that counts the client's turns: how many times the client sends after the
/// server did (or first). Each turn is a round trip the client waits for, TLS handshake
/// included, so on a link with latency a run costs about this many round-trip times.
struct TurnCounter {
    port: u16,
    turns: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TurnCounter {
    fn start(server_port: u16) -> TurnCounter {
        use std::io::{Read as _, Write as _};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let turns = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&turns);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let server = std::net::TcpStream::connect(("127.0.0.1", server_port)).unwrap();
                // Whether the last bytes relayed came from the server (the client's next
                // bytes then begin a turn).
                let server_spoke = Arc::new(AtomicBool::new(true));
                let relay = |mut from: std::net::TcpStream,
                             mut to: std::net::TcpStream,
                             from_client: bool,
                             server_spoke: Arc<AtomicBool>,
                             turns: Arc<AtomicUsize>| {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 65536];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if from_client {
                                if server_spoke.swap(false, Ordering::SeqCst) {
                                    turns.fetch_add(1, Ordering::SeqCst);
                                }
                            } else {
                                server_spoke.store(true, Ordering::SeqCst);
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    })
                };
                relay(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    true,
                    Arc::clone(&server_spoke),
                    Arc::clone(&counted),
                );
                relay(server, client, false, server_spoke, Arc::clone(&counted));
            }
        });
        TurnCounter { port, turns }
    }

    fn turns(&self) -> usize {
        self.turns.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A night with nothing new costs the fewest round trips POP3 allows a client that logs in
/// and asks for capabilities: TLS (ClientHello, then Finished), CAPA, AUTH PLAIN with its
/// initial response, CAPA again (servers announce more after login), UIDL and LIST together
/// (pipelined), QUIT. Without pipelining UIDL and LIST would be one more.
#[test]
fn a_night_with_nothing_new_takes_seven_round_trips() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let user = "u53";
    let messages: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| {
            (
                format!("{i:03}"),
                format!("Subject: m{i}\r\n\r\nbody {i}\r\n").into_bytes(),
            )
        })
        .collect();
    dovecot.fill_maildir(
        user,
        messages.iter().map(|(n, b)| (n.clone(), b.as_slice())),
    );
    let setup = Setup::new(&dovecot, &[("a", user)], "");
    setup.json(&["snapshot"], 0);
    let relay = TurnCounter::start(dovecot.port(TlsMode::Implicit));
    let config = std::fs::read_to_string(&setup.config).unwrap();
    let relayed = config.replace(
        &format!("port = {}\n", dovecot.port(TlsMode::Implicit)),
        &format!("port = {}\n", relay.port),
    );
    assert_ne!(relayed, config);
    std::fs::write(&setup.config, relayed).unwrap();
    let nothing_new = |relay: &TurnCounter, expected: usize| {
        let report = setup.json(&["snapshot"], 0);
        assert_eq!(report["accounts"][0]["downloaded"], 0, "{report}");
        // A turn is counted as the client's bytes arrive: QUIT's may still be on the way.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while relay.turns() < expected && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        relay.turns()
    };
    assert_eq!(nothing_new(&relay, 7), 7);

    // The same without pipelining: UIDL and LIST cost a round trip each.
    let relay = TurnCounter::start(dovecot.port(TlsMode::Implicit));
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("port = ") {
                format!("port = {}", relay.port)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&setup.config, format!("{text}\npipelining = false\n")).unwrap();
    assert_eq!(nothing_new(&relay, 8), 8);
}
