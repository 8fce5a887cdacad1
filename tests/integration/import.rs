//! `popbackup import maildir:PATH`: the corpus as a mail client's Maildir, imported, restored
//! (read by Python's `mailbox`), imported again without reading; and the Maildir the test
//! Dovecot serves, imported after a snapshot of the same mailbox, adding only what Dovecot
//! changes on the wire.

use std::collections::{HashMap, HashSet};
use std::process::Command;

use popbackup::mail::lf_to_crlf;
use popbackup::repo::MessageHash;

use crate::restore::{json, popbackup};
use crate::snapshot::{Setup, stderr};
use crate::support::corpus_messages;
use crate::support::dovecot::{Dovecot, dovecot_retr_bytes};

#[test]
fn a_maildir_is_imported_restored_and_imported_again_without_reading() {
    let Some(corpus) = corpus_messages() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("inbox");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    // A third in cur/ as read (or read and replied to), the rest new.
    let mut flags_of: HashMap<MessageHash, String> = HashMap::new();
    for (i, (_, bytes)) in corpus.iter().enumerate() {
        let hash = MessageHash::of(&lf_to_crlf(bytes));
        let path = match i % 3 {
            0 => {
                let flags = if i % 2 == 0 { "S" } else { "RS" };
                flags_of.entry(hash).or_insert_with(|| flags.to_string());
                maildir.join("cur").join(format!("{i:05}.host:2,{flags}"))
            }
            _ => maildir.join("new").join(format!("{i:05}.host")),
        };
        std::fs::write(path, bytes).unwrap();
    }
    let repo = dir.path().join("repo");
    let out = popbackup(&repo, &["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let source = format!("maildir:{}", maildir.display());
    let first = json(&repo, &["import", &source], 0);
    let unique: HashSet<MessageHash> = corpus
        .iter()
        .map(|(_, b)| MessageHash::of(&lf_to_crlf(b)))
        .collect();
    assert_eq!(first["files"], corpus.len(), "{first}");
    assert_eq!(first["read"], corpus.len());
    assert_eq!(first["new_messages"], unique.len());
    assert_eq!(first["account"], "inbox");

    // Restored: every message once, the wire form of one of the files; a file that had LF
    // line ends only comes back byte for byte; flags come back in cur/.
    let restored = dir.path().join("restored");
    let report = json(
        &repo,
        &[
            "restore",
            "--to",
            &format!("maildir:{}", restored.display()),
        ],
        0,
    );
    assert_eq!(report["written"], unique.len(), "{report}");
    let originals: HashMap<MessageHash, Vec<&Vec<u8>>> =
        corpus.iter().fold(HashMap::new(), |mut m, (_, b)| {
            m.entry(MessageHash::of(&lf_to_crlf(b)))
                .or_default()
                .push(b);
            m
        });
    let mut in_cur = 0;
    for sub in ["new", "cur"] {
        for entry in std::fs::read_dir(restored.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let hash = MessageHash::of(&lf_to_crlf(&bytes));
            let files = originals
                .get(&hash)
                .unwrap_or_else(|| panic!("{} is none of the files", path.display()));
            if files.iter().all(|f| !f.contains(&b'\r')) {
                assert!(files.iter().any(|f| **f == bytes), "{}", path.display());
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            match flags_of.get(&hash) {
                Some(flags) if sub == "cur" => {
                    assert!(name.ends_with(&format!(":2,{flags}")), "{name}");
                    in_cur += 1;
                }
                Some(_) => {}
                None => assert_eq!(sub, "new", "{name}"),
            }
        }
    }
    assert!(in_cur > 300, "{in_cur} restored with their flags");
    let python = Command::new("python3")
        .args([
            "-c",
            "import mailbox,sys; print(len(mailbox.Maildir(sys.argv[1], create=False)))",
        ])
        .arg(&restored)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&python.stdout).trim(),
        unique.len().to_string()
    );

    // Again: nothing is read. A file touched since is read again, alone.
    let second = json(&repo, &["import", &source], 0);
    assert_eq!(second["read"], 0, "{second}");
    assert_eq!(second["unchanged"], corpus.len());
    assert_eq!(second["new_messages"], 0);
    let touched = maildir.join("new").join("00001.host");
    let file = std::fs::File::options()
        .append(true)
        .open(&touched)
        .unwrap();
    file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(file);
    let third = json(&repo, &["import", &source], 0);
    assert_eq!(third["read"], 1, "{third}");
    let snapshots = json(&repo, &["snapshots"], 0);
    assert_eq!(snapshots.as_array().unwrap().len(), 3);
    let verify = json(&repo, &["verify"], 0);
    assert_eq!(verify["clean"], true);

    // Not a Maildir: a usage error that says so, and nothing written.
    let out = popbackup(
        &repo,
        &[
            "import",
            &format!("maildir:{}", dir.path().join("none").display()),
        ],
    );
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not a Maildir"),
        "{}",
        stderr(&out)
    );
    let out = popbackup(&repo, &["import", "mbox:/x"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
}

/// The Maildir Dovecot serves, imported after a snapshot of the same mailbox: the only new
/// messages are the files Dovecot sends differently from their bytes (it ends a message that
/// has no final newline with one).
#[test]
fn importing_the_maildir_a_snapshot_came_from_adds_only_what_the_server_changed() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let Some(corpus) = corpus_messages() else {
        return;
    };
    let user = "u50";
    let files: Vec<(String, &[u8])> = corpus[..300]
        .iter()
        .enumerate()
        .map(|(i, (_, b))| (format!("{i:05}"), b.as_slice()))
        .collect();
    dovecot.fill_maildir(user, files.iter().map(|(n, b)| (n.clone(), *b)));
    let setup = Setup::new(&dovecot, &[("server", user)], "");
    setup.json(&["snapshot"], 0);
    let served: HashSet<MessageHash> = files
        .iter()
        .map(|(_, b)| MessageHash::of(&dovecot_retr_bytes(b)))
        .collect();
    let imported: HashSet<MessageHash> = files
        .iter()
        .map(|(_, b)| MessageHash::of(&lf_to_crlf(b)))
        .collect();
    let expected_new = imported.difference(&served).count();
    let source = format!("maildir:{}", dovecot.maildir(user).display());
    let report = setup.json(&["import", &source, "--account", "client"], 0);
    assert_eq!(report["files"], files.len(), "{report}");
    assert_eq!(report["new_messages"], expected_new, "{report}");
    assert!(expected_new < files.len() / 10, "{expected_new}");
}

/// `[imports.NAME]` tables: `popbackup import` takes in every one (cron runs it next to
/// `snapshot`), `popbackup import NAME` one of them; a name that is neither is a usage error.
#[test]
fn configured_imports_run_by_name_or_all_together() {
    let dir = tempfile::tempdir().unwrap();
    for (folder, n) in [("inbox", 3), ("archive", 2)] {
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.path().join(folder).join(sub)).unwrap();
        }
        for i in 0..n {
            std::fs::write(
                dir.path()
                    .join(folder)
                    .join("new")
                    .join(format!("{folder}{i}")),
                format!("Subject: {folder} {i}\n\nbody\n"),
            )
            .unwrap();
        }
    }
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{}\"\n[imports.home]\npath = \"maildir:inbox\"\n\
             [imports.old]\npath = \"maildir:{}\"\n",
            dir.path().join("repo").display(),
            dir.path().join("archive").display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_popbackup"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    assert_eq!(run(&["init"]).status.code(), Some(0));
    let out = run(&["import", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let accounts: Vec<(&str, u64)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["account"].as_str().unwrap(),
                r["new_messages"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(accounts, [("home", 3), ("old", 2)]);
    let out = run(&["import", "home", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let one: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (one["account"].as_str(), one["read"].as_u64()),
        (Some("home"), Some(0))
    );
    let out = run(&["import", "nothere"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("[imports.nothere]"),
        "{}",
        stderr(&out)
    );
}
