//! Encrypted repositories (`init --encrypt`): every command on local disk and in a bucket,
//! nothing of the mail to be found in any file, a flipped byte in any file named by verify
//! and never restored, a wrong or missing password refused with nothing changed, and the
//! key commands.
//!
//! Dovecot users: u54 (local) and u55 (bucket) for the round trip, u56 and u57 for the scan
//! (encrypted and its plain control), u58 for the flipped bytes, u59 for the passwords.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use popbackup::repo::MessageHash;
use serde_json::Value;

use crate::restore::python_maildir_count;
use crate::snapshot::{REPO_PASSWORD, Setup, stderr};
use crate::support::dovecot::{Dovecot, dovecot_retr_bytes};
use crate::support::store::on_every_backend;
use crate::support::{corpus_messages, large_message};

/// The configuration line that makes [`Setup`] create an encrypted repository.
const ENCRYPTED: &str = "repository_password_env = \"REPO_PW\"\n";

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run(command: &mut Command, code: i32) -> Output {
    let out = command.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{command:?}\nstdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    out
}

/// Every file under `dir` and its bytes, by path relative to `dir`.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let bytes = std::fs::read(e.path()).unwrap();
            (e.path().strip_prefix(dir).unwrap().to_path_buf(), bytes)
        })
        .collect()
}

/// The first `count` corpus messages, named for a mailbox.
fn corpus_mail(corpus: &[(String, Vec<u8>)], count: usize) -> Vec<(String, &[u8])> {
    corpus[..count.min(corpus.len())]
        .iter()
        .enumerate()
        .map(|(i, (_, b))| (format!("{i:05}"), b.as_slice()))
        .collect()
}

/// The SHA-256 of the wire form of each message a restore wrote into `maildir`'s `new/`.
fn restored_hashes(maildir: &Path) -> Vec<MessageHash> {
    std::fs::read_dir(maildir.join("new"))
        .map(|d| d.map(|e| e.unwrap().path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .iter()
        .map(|file| MessageHash::of(&popbackup::mail::lf_to_crlf(&std::fs::read(file).unwrap())))
        .collect()
}

/// What Dovecot sends of `mail`, by SHA-256.
fn wire_forms(mail: &[(String, &[u8])]) -> HashMap<MessageHash, Vec<u8>> {
    mail.iter()
        .map(|(_, b)| {
            let wire = dovecot_retr_bytes(b);
            (MessageHash::of(&wire), wire)
        })
        .collect()
}

on_every_backend! {
    /// init, two snapshots of the whole corpus and a 20 MB message, inventory, ls, cat,
    /// restore (byte for byte, read by Python's mailbox), verify, forget and prune, and every
    /// key command, on an encrypted repository.
    fn an_encrypted_repository_goes_through_every_command(at: &TestRepo) {
        let Some(dovecot) = Dovecot::get() else {
            return;
        };
        let Some(corpus) = corpus_messages() else {
            return;
        };
        let user = if at.path().is_some() { "u54" } else { "u55" };
        // A large message streams into its pack: the sealing writer's path.
        let big = large_message(20 << 20);
        let mut mail = corpus_mail(&corpus, corpus.len());
        mail.push(("big".into(), &big));
        dovecot.fill_maildir(user, mail.iter().map(|(n, b)| (n.clone(), *b)));
        let setup = Setup::on(&dovecot, &[("work", user)], ENCRYPTED, at);
        let expected = wire_forms(&mail);

        let first = setup.json(&["snapshot"], 0);
        assert_eq!(first["accounts"][0]["downloaded"], mail.len(), "{first}");
        let second = setup.json(&["snapshot"], 0);
        assert_eq!(second["accounts"][0]["downloaded"], 0, "{second}");
        let inventory = setup.json(&["inventory", "work"], 0);
        assert_eq!(inventory["new"], serde_json::json!([]), "{inventory}");
        assert_eq!(inventory["already_archived"], mail.len(), "{inventory}");

        // What the key shows: the headers, and each message by its SHA-256 (or a prefix).
        let listed = stdout(&run(&mut setup.command(&["ls", "--json"]), 0));
        assert!(listed.contains("a large attachment"), "{listed}");
        let big_hash = MessageHash::of(&dovecot_retr_bytes(&big));
        let cat = run(&mut setup.command(&["cat", &big_hash.to_hex()[..12]]), 0);
        assert!(cat.stdout == dovecot_retr_bytes(&big), "cat gives the message back");

        // Restore: byte for byte what Dovecot sent, and a Maildir Python reads.
        let maildir = setup.dir.path().join("restored");
        let to = format!("maildir:{}", maildir.display());
        let restored = setup.json(&["restore", "--to", &to], 0);
        assert_eq!(restored["written"], expected.len(), "{restored}");
        let seen = restored_hashes(&maildir);
        assert!(seen.iter().all(|h| expected.contains_key(h)));
        assert_eq!(seen.len(), expected.len());
        assert_eq!(python_maildir_count(&maildir), expected.len());

        let report = setup.json(&["verify"], 0);
        assert_eq!(report["clean"], true, "{report}");
        assert_eq!(report["messages"], expected.len(), "{report}");
        assert_eq!(report["messages_read"], expected.len(), "{report}");
        assert_eq!(report["notes"], serde_json::json!([]), "{report}");

        // forget and prune: the rest still verifies and restores.
        setup.json(&["forget", "--keep-last", "1"], 0);
        setup.json(&["prune"], 0);
        let report = setup.json(&["verify"], 0);
        assert_eq!(report["clean"], true, "{report}");
        assert_eq!(report["snapshots"], 1);

        // A wrong password: exit 77, and no snapshot (nor a lock) is left.
        let wrong = run(setup.command(&["snapshot"]).env("REPO_PW", "wrong"), 77);
        assert!(
            stderr(&wrong).contains("the repository password does not open any key in keys/"),
            "{}",
            stderr(&wrong)
        );
        let snapshots = setup.json(&["snapshots"], 0);
        assert_eq!(snapshots.as_array().unwrap().len(), 1, "{snapshots}");

        // Keys: add one, change it, remove the first; the last one stays.
        let keys = |password: &str| -> Vec<Value> {
            let out = run(setup.command(&["key", "list", "--json"]).env("REPO_PW", password), 0);
            serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().unwrap().clone()
        };
        let original = keys(REPO_PASSWORD);
        assert_eq!(original.len(), 1);
        assert_eq!(original[0]["current"], true);
        let original = original[0]["id"].as_str().unwrap().to_string();
        run(
            setup
                .command(&["key", "add", "--new-password-env", "NEW_PW", "--kdf-memory", "1MiB"])
                .env("NEW_PW", "a second password"),
            0,
        );
        assert_eq!(keys("a second password").len(), 2);
        run(
            setup
                .command(&[
                    "key", "passwd", "--new-password-env", "NEXT_PW", "--kdf-memory", "1MiB",
                    "--kdf-iterations", "1",
                ])
                .env("REPO_PW", "a second password")
                .env("NEXT_PW", "a third password"),
            0,
        );
        run(setup.command(&["snapshots"]).env("REPO_PW", "a second password"), 77);
        let now = keys("a third password");
        assert_eq!(now.len(), 2, "{now:?}");
        run(
            setup
                .command(&["key", "remove", &original[..10]])
                .env("REPO_PW", "a third password"),
            0,
        );
        run(&mut setup.command(&["snapshots"]), 77);
        let last = keys("a third password");
        assert_eq!(last.len(), 1);
        let refused = run(
            setup
                .command(&["key", "remove", last[0]["id"].as_str().unwrap()])
                .env("REPO_PW", "a third password"),
            64,
        );
        assert!(stderr(&refused).contains("last key"), "{}", stderr(&refused));
        let out = run(
            setup.command(&["verify", "--json"]).env("REPO_PW", "a third password"),
            0,
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["clean"], true, "{report}");
    }
}

/// Ways a value can appear in a file: as it is, in hex, and in base64 at each of the three
/// alignments (the middle of the encoding, which does not depend on the bytes around it).
fn forms(value: &[u8]) -> Vec<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = vec![
        value.to_vec(),
        popbackup::repo::id::to_hex(value).into_bytes(),
        popbackup::repo::id::to_hex(value)
            .to_uppercase()
            .into_bytes(),
    ];
    for shift in 0..3 {
        let mut shifted = vec![0u8; shift];
        shifted.extend_from_slice(value);
        let encoded = b64.encode(&shifted);
        let start = if shift == 0 { 0 } else { 4 };
        let end = encoded.len().saturating_sub(4);
        if end > start + 8 {
            out.push(encoded.as_bytes()[start..end].to_vec());
        }
    }
    out
}

/// The file's bytes, and when it is zstd (a metadata file, the frames of a plain pack) what
/// it decompresses to as well: a scan that only read compressed bytes would find little even
/// in a plain repository.
fn readable_forms(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![bytes.to_vec()];
    if let Ok(decoded) = zstd::stream::decode_all(bytes) {
        out.push(decoded);
    }
    // A pack: its frames entry, frame by frame as far as they decode without a dictionary.
    if bytes.len() > 1024 && &bytes[257..262] == b"ustar" {
        let mut at = 512;
        while at < bytes.len() {
            let Ok(size) = zstd::zstd_safe::find_frame_compressed_size(&bytes[at..]) else {
                break;
            };
            if let Ok(decoded) = zstd::stream::decode_all(&bytes[at..at + size]) {
                out.push(decoded);
            }
            at += size;
        }
    }
    out
}

/// Which of `needles` occur in any form anywhere under `dir`.
fn found(dir: &Path, needles: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut hits = Vec::new();
    let files: Vec<Vec<Vec<u8>>> = contents(dir).values().map(|b| readable_forms(b)).collect();
    for (what, needle) in needles {
        let hit = forms(needle).iter().any(|form| {
            files
                .iter()
                .flatten()
                .any(|bytes| bytes.windows(form.len()).any(|w| w == form.as_slice()))
        });
        if hit {
            hits.push(what.clone());
        }
    }
    hits
}

/// A header's value (its first line), if it is long enough not to occur by chance.
fn header(message: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let head = text.split("\r\n\r\n").next()?;
    let prefix = format!("{}:", name.to_ascii_lowercase());
    let line = head
        .split("\r\n")
        .find(|l| l.to_ascii_lowercase().starts_with(&prefix))?;
    let value = line[prefix.len()..].trim();
    (value.len() >= 12).then(|| value.to_string())
}

/// No Subject, From, Message-ID, UIDL or SHA-256 of the archived mail is in any file of an
/// encrypted repository, in any form; the same scan finds them in a plain repository of the
/// same mail (so it can fail).
#[test]
fn nothing_of_the_mail_is_found_in_an_encrypted_repository() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let Some(corpus) = corpus_messages() else {
        return;
    };
    let mail = corpus_mail(&corpus, 120);
    let mut repos = Vec::new();
    for (user, extra) in [("u56", ENCRYPTED), ("u57", "")] {
        dovecot.fill_maildir(user, mail.iter().map(|(n, b)| (n.clone(), *b)));
        let setup = Setup::new(&dovecot, &[("work", user)], extra);
        setup.json(&["snapshot"], 0);
        setup.json(&["verify"], 0);
        repos.push(setup);
    }
    let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
    for (hash, wire) in wire_forms(&mail) {
        needles.push((format!("sha256 {hash}"), hash.0.to_vec()));
        for name in ["Subject", "From", "Message-ID"] {
            if let Some(value) = header(&wire, name) {
                needles.push((format!("{name} {value}"), value.into_bytes()));
            }
        }
    }
    let listed = repos[0].json(&["ls"], 0);
    let records = listed[0]["messages"].as_array().unwrap();
    assert_eq!(records.len(), mail.len(), "{listed}");
    for record in records {
        let uidl = record["uidl"].as_str().unwrap();
        needles.push((format!("UIDL {uidl}"), uidl.as_bytes().to_vec()));
    }
    assert!(needles.len() > 400, "{} needles", needles.len());

    let encrypted = found(&repos[0].repo, &needles);
    assert!(
        encrypted.is_empty(),
        "found in the encrypted repository: {encrypted:?}"
    );
    let plain = found(&repos[1].repo, &needles);
    for kind in ["sha256", "Subject", "From", "Message-ID", "UIDL"] {
        assert!(
            plain.iter().any(|w| w.starts_with(kind)),
            "the scan finds no {kind} even in a plain repository: {plain:?}"
        );
    }
}

/// `cp -a` of a repository, to damage a copy.
fn copy_of(repo: &Path, into: &Path) -> PathBuf {
    let copy = into.join(format!("copy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&copy);
    let status = Command::new("cp")
        .arg("-a")
        .arg(repo)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    copy
}

/// The one file in `dir` (relative to the repository) whose name ends with `suffix`.
fn first_file(repo: &Path, dir: &str, suffix: &str) -> PathBuf {
    let mut names: Vec<PathBuf> = std::fs::read_dir(repo.join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no {dir}/*{suffix}");
    names
        .swap_remove(0)
        .strip_prefix(repo)
        .unwrap()
        .to_path_buf()
}

/// Where the data of tar entry `name` is in `pack`: offset and length.
fn tar_entry(pack: &[u8], name: &str) -> (u64, u64) {
    let mut archive = tar::Archive::new(pack);
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy() == name {
            return (entry.raw_file_position(), entry.size());
        }
    }
    panic!("no {name} in the pack");
}

/// One flipped byte in each kind of file of an encrypted repository (a frame, a pack's
/// table, an index file, a manifest, a records file, the dictionary, `verified.json`, a key
/// file, `config.json`'s sealed settings): `verify` exits 65 and names it, and a restore
/// never writes a message that is not byte for byte the one archived.
#[test]
fn a_flipped_byte_in_any_file_is_named_and_never_restored() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let Some(corpus) = corpus_messages() else {
        return;
    };
    let user = "u58";
    // Enough small mail for a dictionary.
    let mail = corpus_mail(&corpus, 360);
    dovecot.fill_maildir(user, mail.iter().map(|(n, b)| (n.clone(), *b)));
    let setup = Setup::new(&dovecot, &[("work", user)], ENCRYPTED);
    setup.json(&["snapshot"], 0);
    setup.json(&["verify"], 0);
    let expected = wire_forms(&mail);
    let repo = setup.repo.clone();

    let pack = first_file(&repo, "packs", ".tar");
    let pack_bytes = std::fs::read(repo.join(&pack)).unwrap();
    let (frames, _) = tar_entry(&pack_bytes, "messages.zst");
    let (table, table_len) = tar_entry(&pack_bytes, "messages.json.zst");
    let config = std::fs::read_to_string(repo.join("config.json")).unwrap();
    let sealed_at = config.find("\"sealed\"").unwrap() + 40;
    let targets: Vec<(&str, PathBuf, usize)> = vec![
        ("a frame", pack.clone(), frames as usize + 40),
        (
            "a pack's table",
            pack.clone(),
            (table + table_len / 2) as usize,
        ),
        ("an index file", first_file(&repo, "index", ".json.zst"), 30),
        (
            "a manifest",
            first_file(&repo, "snapshots", ".json.zst"),
            30,
        ),
        (
            "a records file",
            first_file(&repo, "records", ".json.zst"),
            30,
        ),
        (
            "the dictionary",
            first_file(&repo, "dicts", ".zdict.zst"),
            30,
        ),
        ("verified.json", "verified.json".into(), 30),
        ("a key file", first_file(&repo, "keys", ".json"), 60),
        ("config.json", "config.json".into(), sealed_at),
    ];
    for (what, file, offset) in targets {
        let copy = copy_of(&repo, setup.dir.path());
        let path = copy.join(&file);
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(offset < bytes.len(), "{what}: {offset} of {}", bytes.len());
        // A base64 or JSON character stays one (config.json, key file); a binary byte flips.
        bytes[offset] = match bytes[offset] {
            b'A'..=b'Y' | b'a'..=b'y' | b'0'..=b'8' => bytes[offset] + 1,
            b'Z' | b'z' | b'9' => bytes[offset] - 1,
            other => other ^ 0x01,
        };
        std::fs::write(&path, &bytes).unwrap();
        let repo_arg = copy.to_str().unwrap();
        let out = setup.run(&["--repo", repo_arg, "verify", "--json"]);
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(65), "{what}: {said}");
        let stem = file.file_name().unwrap().to_string_lossy();
        let stem = stem.split('.').next().unwrap();
        assert!(said.contains(stem), "{what}: {stem} is not named: {said}");

        // Whatever restore writes is exactly what was archived.
        let maildir = copy.with_extension("restored");
        let to = format!("maildir:{}", maildir.display());
        let out = setup.run(&["--repo", repo_arg, "restore", "--to", &to]);
        let written = restored_hashes(&maildir);
        for hash in &written {
            assert!(expected.contains_key(hash), "{what}: {hash}");
        }
        if what == "a frame" {
            assert_ne!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
            assert!(written.len() < expected.len(), "{what}");
        }
        std::fs::remove_dir_all(&copy).unwrap();
        let _ = std::fs::remove_dir_all(&maildir);
    }
}

/// A wrong password, a missing one and one that cannot be fetched: each command refuses
/// with its own exit code and says what to do, and no file of the repository changes. A
/// plain repository never runs the password command.
#[test]
fn a_wrong_or_missing_password_changes_nothing() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let Some(corpus) = corpus_messages() else {
        return;
    };
    let user = "u59";
    let mail = corpus_mail(&corpus, 40);
    dovecot.fill_maildir(user, mail.iter().map(|(n, b)| (n.clone(), *b)));
    let setup = Setup::new(&dovecot, &[("work", user)], ENCRYPTED);
    setup.json(&["snapshot"], 0);
    let before = contents(&setup.repo);
    let to = format!("maildir:{}", setup.dir.path().join("out").display());
    let commands: [&[&str]; 7] = [
        &["snapshot"],
        &["verify"],
        &["restore", "--to", &to],
        &["forget", "--keep-last", "1"],
        &["prune"],
        &["import", "mbox:/dev/null"],
        &["key", "add", "--new-password-env", "NEW_PW"],
    ];
    for args in commands {
        let out = run(
            setup
                .command(args)
                .env("REPO_PW", "wrong")
                .env("NEW_PW", "x"),
            77,
        );
        assert!(
            stderr(&out).contains("does not open any key in keys/"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("wrong"), "the password was shown");
        let out = run(setup.command(args).env_remove("REPO_PW"), 78);
        assert!(
            stderr(&out).contains("REPO_PW"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(!setup.dir.path().join("out").exists());
    // A configuration without a password names the keys to add.
    let bare = setup.dir.path().join("bare.toml");
    std::fs::write(&bare, format!("repository = {:?}\n", setup.repo)).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_popbackup"));
    command.arg("--config").arg(&bare).arg("snapshots");
    let out = run(&mut command, 78);
    assert!(
        stderr(&out).contains("is an encrypted repository")
            && stderr(&out).contains("repository_password_file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        contents(&setup.repo),
        before,
        "a refused command changed the repository"
    );
    let out = setup.json(&["verify"], 0);
    assert_eq!(out["clean"], true, "{out}");

    // A plain repository: the password command is not run.
    let marker = setup.dir.path().join("ran");
    let plain = tempfile::tempdir().unwrap();
    popbackup::repo::Repository::init(plain.path()).unwrap();
    let config = plain.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "repository = {:?}\nrepository_password_command = \"touch {}\"\n",
            plain.path(),
            marker.display()
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_popbackup"));
    command
        .arg("--config")
        .arg(&config)
        .args(["verify", "--json"]);
    run(&mut command, 0);
    assert!(
        !marker.exists(),
        "the password command ran for a plain repository"
    );
}
