//! The repository in a bucket: every command against the test Garage (a real S3-compatible
//! store, `scripts/garage.sh`), with the mail from the test Dovecot; two writers on one
//! bucket; and the failures a user meets first (a store that cannot be reached, a refused
//! key, a bucket that is not there), each named with what to do.
//!
//! Garage users: u45-u48. The corpus round trips on a bucket are in `snapshot`, `restore`,
//! `repo` and `snapshot_kill` (through `on_every_backend!`).

use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Output};

use popbackup::repo::{MessageHash, Repository};
use serde_json::Value;

use crate::snapshot::{Setup, counter, stderr};
use crate::snapshot_kill::SlowMailbox;
use crate::support::dovecot::{Dovecot, dovecot_retr_bytes};
use crate::support::store::{Garage, TestRepo};
use crate::support::{corpus_messages, large_message};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_command_works_on_a_bucket_and_the_secret_key_is_never_shown() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let Some(corpus) = corpus_messages() else {
        return;
    };
    let Some(at) = TestRepo::s3("every-command") else {
        return;
    };
    let garage = Garage::get().unwrap();
    let secret = garage.secret();
    let user = "u45";
    let big = large_message(20 << 20);
    let mut mail: Vec<(String, &[u8])> = corpus[..200]
        .iter()
        .enumerate()
        .map(|(i, (_, b))| (format!("{i:05}"), b.as_slice()))
        .collect();
    mail.push(("big".into(), &big));
    dovecot.fill_maildir(user, mail.iter().map(|(n, b)| (n.clone(), *b)));
    let setup = Setup::on(&dovecot, &[("work", user)], "", &at);
    let mut outputs: Vec<Output> = Vec::new();
    let mut run = |args: &[&str], code: i32| -> Output {
        let out = setup.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "popbackup {args:?}\nstdout: {}\nstderr: {}",
            stdout(&out),
            stderr(&out)
        );
        outputs.push(out.clone());
        out
    };

    // A first night downloads everything, the second nothing (Dovecot's own count).
    let first: Value = serde_json::from_slice(&run(&["snapshot", "--json"], 0).stdout).unwrap();
    assert_eq!(first["accounts"][0]["downloaded"], mail.len(), "{first}");
    let expected: HashMap<MessageHash, Vec<u8>> = mail
        .iter()
        .map(|(_, b)| {
            let wire = dovecot_retr_bytes(b);
            (MessageHash::of(&wire), wire)
        })
        .collect();
    let second: Value =
        serde_json::from_slice(&run(&["snapshot", "-vv", "--json"], 0).stdout).unwrap();
    assert_eq!(second["accounts"][0]["downloaded"], 0, "{second}");
    let last = dovecot.logouts(user).pop().unwrap();
    assert_eq!(counter(&last, "retr"), 0, "{last}");

    // Browsing.
    run(&["inventory", "work"], 0);
    let snapshots: Value =
        serde_json::from_slice(&run(&["snapshots", "--json"], 0).stdout).unwrap();
    assert_eq!(snapshots.as_array().unwrap().len(), 2, "{snapshots}");
    let listed = stdout(&run(&["ls", "--json"], 0));
    assert!(listed.contains("a large attachment"), "{listed}");
    let big_hash = MessageHash::of(&dovecot_retr_bytes(&big));
    let cat = run(&["cat", &big_hash.to_hex()], 0);
    assert!(
        cat.stdout == dovecot_retr_bytes(&big),
        "cat gives the message back"
    );

    // The large message's pack was uploaded in parts, and reads back whole.
    let repo = Repository::open(&setup.location).unwrap();
    let largest = repo
        .pack_ids()
        .unwrap()
        .iter()
        .map(|id| repo.pack_size(id).unwrap())
        .max()
        .unwrap();
    assert!(
        largest > 8 << 20,
        "a pack of {largest} bytes needs a multipart upload"
    );
    assert_eq!(repo.index().len(), expected.len());

    // verify, in full and in parts that together read every pack once.
    let report: Value = serde_json::from_slice(&run(&["verify", "--json"], 0).stdout).unwrap();
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(
        report["notes"],
        serde_json::json!([]),
        "no stray objects: {report}"
    );
    let all: BTreeSet<String> = report["packs_read"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    let mut parts = BTreeSet::new();
    for part in ["1/2", "2/2"] {
        let r: Value = serde_json::from_slice(
            &run(&["verify", "--read-data-subset", part, "--json"], 0).stdout,
        )
        .unwrap();
        parts.extend(
            r["packs_read"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string()),
        );
    }
    assert_eq!(parts, all);

    // restore, read by Python's mailbox, byte for byte what Dovecot sent.
    let maildir = setup.dir.path().join("restored");
    let to = format!("maildir:{}", maildir.display());
    let restored: Value =
        serde_json::from_slice(&run(&["restore", "--to", &to, "--json"], 0).stdout).unwrap();
    assert_eq!(restored["written"], expected.len(), "{restored}");
    let mut seen = 0;
    for entry in std::fs::read_dir(maildir.join("new")).unwrap() {
        let wire = popbackup::mail::lf_to_crlf(&std::fs::read(entry.unwrap().path()).unwrap());
        assert!(expected.contains_key(&MessageHash::of(&wire)));
        seen += 1;
    }
    assert_eq!(seen, expected.len());
    let python = Command::new("python3")
        .args([
            "-c",
            "import mailbox,sys; print(len(mailbox.Maildir(sys.argv[1], create=False)))",
        ])
        .arg(&maildir)
        .output()
        .unwrap();
    assert_eq!(stdout(&python).trim(), expected.len().to_string());

    // forget and prune; the rest still verifies and restores.
    run(&["forget", "--keep-last", "1"], 0);
    run(&["prune"], 0);
    let report: Value = serde_json::from_slice(&run(&["verify", "--json"], 0).stdout).unwrap();
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["snapshots"], 1);

    for out in &outputs {
        for text in [stdout(out), stderr(out)] {
            assert!(!text.contains(&secret), "the secret key was shown: {text}");
        }
    }
    assert!(
        outputs.iter().any(|o| stderr(o).contains("logged in")),
        "-vv said something"
    );
}

/// A held lock keeps a second writer out with exit 75 naming the holder; two snapshots
/// started at the same moment never both write; the repository stays clean.
#[test]
fn two_writers_on_one_bucket_never_both_write() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let Some(at) = TestRepo::s3("two-writers") else {
        return;
    };
    let user = "u46";
    let mail: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| {
            (
                format!("m{i}"),
                format!("Subject: {i}\n\nbody {i}\n").into_bytes(),
            )
        })
        .collect();
    dovecot.fill_maildir(user, mail.iter().map(|(n, b)| (n.clone(), b.as_slice())));
    let setup = Setup::on(&dovecot, &[("work", user)], "", &at);

    let held = Repository::open(&setup.location)
        .unwrap()
        .lock("test")
        .unwrap();
    let out = setup.run(&["snapshot"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains(&format!("pid {}", std::process::id())) && said.contains("locks/"),
        "{said}"
    );
    drop(held);

    let children: Vec<_> = (0..2)
        .map(|_| setup.command(&["snapshot", "-q"]).spawn().unwrap())
        .collect();
    let codes: Vec<i32> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap())
        .collect();
    assert!(
        codes.iter().all(|c| *c == 0 || *c == 75) && codes.contains(&0),
        "{codes:?}"
    );
    let repo = Repository::open(&setup.location).unwrap();
    let snapshots = repo.snapshots().unwrap();
    assert_eq!(snapshots.len(), codes.iter().filter(|c| **c == 0).count());
    assert_eq!(repo.index().len(), 20);
    let report: Value = setup.json(&["verify"], 0);
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["notes"], serde_json::json!([]), "{report}");
    // Nobody holds the lock now.
    Repository::open(&setup.location)
        .unwrap()
        .lock("test")
        .unwrap();
}

/// What a user meets first on a bucket, each named with what to do and the right exit code;
/// nothing is written anywhere.
#[test]
fn unreachable_refused_and_missing_buckets_are_named() {
    let Some(garage) = Garage::get() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = Garage::fresh_prefix("failures");
    let good = garage.config(&prefix);
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let endpoint = &garage.endpoints()[0];
    let cases = [
        (
            "unreachable",
            good.replace(
                endpoint.as_str(),
                &format!("http://127.0.0.1:{closed_port}"),
            ),
            69,
            vec![
                format!("127.0.0.1:{closed_port}"),
                "cannot reach".to_string(),
                "endpoint".to_string(),
            ],
        ),
        (
            "refused",
            good.replace(
                &format!(
                    "secret_access_key_file = \"{}\"",
                    garage.secret_file().display()
                ),
                "secret_access_key_env = \"WRONG_S3_SECRET\"",
            ),
            77,
            vec![
                garage.key_id().to_string(),
                "access_key_id".to_string(),
                garage.bucket().to_string(),
            ],
        ),
        (
            "no-bucket",
            good.replace(
                &format!("s3://{}/", garage.bucket()),
                "s3://no-such-bucket-here/",
            ),
            78,
            vec![
                "no-such-bucket-here".to_string(),
                "does not exist".to_string(),
            ],
        ),
    ];
    for (name, config, code, words) in cases {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        for args in [&["init"][..], &["snapshots"][..]] {
            let out = Command::new(env!("CARGO_BIN_EXE_popbackup"))
                .arg("--config")
                .arg(&path)
                .args(args)
                .env("WRONG_S3_SECRET", "not-the-secret")
                .env("XDG_CACHE_HOME", dir.path())
                .output()
                .unwrap();
            let said = stderr(&out);
            assert_eq!(out.status.code(), Some(code), "{name} {args:?}: {said}");
            for word in &words {
                assert!(said.contains(word.as_str()), "{name}: {word:?} in {said}");
            }
            assert!(!said.contains("not-the-secret") && !said.contains(&garage.secret()));
            assert_eq!(said.lines().count(), 1, "one line: {said}");
        }
    }
    // Nothing was created under the prefix.
    let err = Repository::open(garage.location(&prefix)).unwrap_err();
    assert!(
        err.to_string().contains("not a popbackup repository"),
        "{err}"
    );
}

/// `--repo s3://...` without a configuration file takes the AWS environment variables, as
/// the AWS tools do.
#[test]
fn a_bucket_named_on_the_command_line_uses_the_aws_environment() {
    let Some(garage) = Garage::get() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = Garage::fresh_prefix("from-env");
    let url = format!("s3://{}/{prefix}", garage.bucket());
    let popbackup = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_popbackup"))
            .args(["--repo", &url])
            .args(args)
            .env("XDG_CONFIG_HOME", dir.path())
            .env("XDG_CACHE_HOME", dir.path())
            .env("AWS_ACCESS_KEY_ID", garage.key_id())
            .env("AWS_SECRET_ACCESS_KEY", garage.secret())
            .env("AWS_ENDPOINT_URL", &garage.endpoints()[0])
            .env("AWS_REGION", "garage")
            .output()
            .unwrap()
    };
    let out = popbackup(&["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains(&url), "{}", stdout(&out));
    // The sample configuration names the bucket, and how to give its settings.
    let sample = std::fs::read_to_string(dir.path().join("popbackup/config.toml")).unwrap();
    assert!(
        sample.contains(&format!("repository = \"{url}\"")),
        "{sample}"
    );
    assert!(sample.contains("# [s3]"), "{sample}");
    let out = popbackup(&["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Without the variables (and with no [s3] table) it says what is missing.
    let out = Command::new(env!("CARGO_BIN_EXE_popbackup"))
        .args(["--repo", &url, "--config"])
        .arg(dir.path().join("none.toml"))
        .arg("snapshots")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("[s3]"), "{}", stderr(&out));
}

/// A 3-node Garage cluster (replication factor 3) loses a node in the middle of a large
/// snapshot: the snapshot completes (or fails as temporary, and the next run completes), a
/// restore through another node gives back every message byte for byte, and verify is clean.
#[test]
fn a_store_node_killed_mid_snapshot_loses_nothing() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let Some(corpus) = corpus_messages() else {
        return;
    };
    let Some(cluster) = Garage::cluster() else {
        return;
    };
    let at = TestRepo::in_bucket(&cluster, "node-lost");
    let user = "u47";
    let slow = SlowMailbox::new(
        &dovecot,
        &corpus,
        user,
        "checkpoint_size = \"128 KiB\"",
        "pipeline_window_bytes = \"256 KiB\"",
        &at,
    );
    let _ = slow.next_run();
    let mut child = slow.setup.command(&["snapshot", "-q"]).spawn().unwrap();
    // Some checkpoints are written before the node goes; the rest after.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let victim = cluster.node_pid(2);
    let killed = Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let first = child.wait().unwrap().code().unwrap();
    assert!(
        first == 0 || first == 75 || first == 69,
        "a lost node is at worst a temporary failure: {first}"
    );
    if first != 0 {
        let _ = slow.next_run();
        let out = slow.setup.run(&["snapshot"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }

    // Through node 2: every message, byte for byte.
    let via_other = cluster.location_via(1, &at.prefix);
    let repo = Repository::open(&via_other).unwrap();
    let manifest = repo
        .manifest(&repo.find_snapshot("latest").unwrap())
        .unwrap();
    assert!(manifest.complete);
    assert_eq!(manifest.messages.len(), corpus.len());
    for (_, bytes) in &corpus {
        let wire = dovecot_retr_bytes(bytes);
        let got = repo.read_message(&MessageHash::of(&wire)).unwrap();
        assert!(got == wire, "a message differs after the node was lost");
    }
    let report = popbackup::verify::verify(
        &repo,
        popbackup::verify::VerifyOptions {
            data: popbackup::verify::DataCheck::Full,
            threads: 0,
        },
    )
    .unwrap();
    assert!(report.clean, "{:?}", report.notes);
}
