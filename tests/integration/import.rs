//! `popbackup import maildir:PATH`: the corpus as a mail client's Maildir, imported, restored
//! (read by Python's `mailbox`), imported again without reading; and the Maildir the test
//! Dovecot serves, imported after a snapshot of the same mailbox, adding only what Dovecot
//! changes on the wire.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use popbackup::mail::lf_to_crlf;
use popbackup::repo::MessageHash;

use crate::restore::{json, popbackup};
use crate::snapshot::{Setup, stderr};
use crate::support::dovecot::{Dovecot, dovecot_retr_bytes};
use crate::support::store::on_every_backend;
use crate::support::{corpus_messages, field_by_uidl};

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
    // Every file listed once: the unchanged ones reused, the touched one read.
    let listed =
        |repo: &Path| field_by_uidl(&json(repo, &["ls", "latest", "--manifest"], 0), "flags");
    assert_eq!(listed(&repo).len(), corpus.len());
    // A file whose flags changed (renamed, as a client marks mail answered) is not read
    // again; its record takes the new flags.
    std::fs::rename(
        maildir.join("cur").join("00000.host:2,S"),
        maildir.join("cur").join("00000.host:2,RS"),
    )
    .unwrap();
    let fourth = json(&repo, &["import", &source], 0);
    assert_eq!(fourth["read"], 0, "{fourth}");
    let now = listed(&repo);
    assert_eq!(now.len(), corpus.len());
    assert_eq!(now["00000.host"], "RS");
    let snapshots = json(&repo, &["snapshots"], 0);
    assert_eq!(snapshots.as_array().unwrap().len(), 4);
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
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
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

/// The corpus mboxes, each with what its own bytes say it holds: the messages of a file split
/// by hand, `From ` body lines no writer quoted, `Content-Length` headers, a byte-order mark,
/// CRLF line ends.
fn corpus_mboxes() -> Option<Vec<(&'static str, PathBuf, usize)>> {
    let root = std::env::var_os("POPBACKUP_CORPUS").filter(|v| !v.is_empty());
    corpus_messages()?;
    let root = PathBuf::from(root?).join("mbox");
    Some(
        [
            // (name, file, messages: its `From ` lines that start one)
            ("cl", "mimekit-content-length.mbox", 29),
            ("issue1189", "mimekit-issue1189.mbox", 4),
            ("simple", "mimekit-simple.mbox", 3),
            // Four `From ` lines, two of them the body's "From Russia with love".
            ("unmunged", "mimekit-unmunged.mbox", 2),
            ("crlf", "sisimai-mbox-0.mbox", 37),
            ("one", "sisimai-mbox-1.mbox", 1),
            ("rlug", "mime4j-rlug/mbox.rlug", 5),
        ]
        .into_iter()
        .map(|(name, file, n)| (name, root.join(file), n))
        .collect(),
    )
}

/// The messages of a restored Maildir, by file name order (the names start with the time of
/// each message's snapshot and its position).
fn maildir_messages(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = ["new", "cur"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(dir.join(sub)).into_iter().flatten())
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

on_every_backend! {
    /// Every corpus mbox imported, restored into an mbox (read by Python's `mailbox`) and a
    /// Maildir, checked against what the file itself says; imported again without reading.
    fn each_corpus_mbox_is_imported_and_restored(at: &TestRepo) {
        let Some(mboxes) = corpus_mboxes() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str], code: i32| -> serde_json::Value {
            let mut all = args.to_vec();
            all.push("--json");
            let out = at.command(&all).output().unwrap();
            assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
            serde_json::from_slice(&out.stdout).unwrap()
        };
        run(&["init"], 0);
        for (name, path, count) in &mboxes {
            let source = format!("mbox:{}", path.display());
            let report = run(&["import", &source, "--account", name], 0);
            assert_eq!(report["files"], *count, "{name}: {report}");
            assert_eq!(report["read"], *count, "{name}");
            let original = std::fs::read(path).unwrap();

            // An mbox: Python's mailbox finds every message, and each `From ` line is the one
            // the message had.
            let mbox = dir.path().join(format!("{name}.mbox"));
            let report = run(
                &["restore", "--account", name, "--to", &format!("mbox:{}", mbox.display())],
                0,
            );
            assert_eq!(report["written"].as_u64().unwrap() + report["present"].as_u64().unwrap_or(0), *count as u64, "{name}: {report}");
            assert_eq!(python_mbox_count(&mbox), *count, "{name}");
            let from_lines = |bytes: &[u8]| -> Vec<String> {
                String::from_utf8_lossy(bytes)
                    .lines()
                    .filter(|l| l.starts_with("From ") && l.len() > 5)
                    .map(|l| l.trim_end_matches('\r').to_string())
                    .collect()
            };
            let restored = std::fs::read(&mbox).unwrap();
            for line in from_lines(&restored) {
                assert!(from_lines(&original).contains(&line), "{name}: {line:?}");
            }

            // A Maildir, with the archived bytes (--crlf): each message as the file holds it.
            let maildir = dir.path().join(format!("{name}-maildir"));
            let to = format!("maildir:{}", maildir.display());
            run(&["restore", "--account", name, "--crlf", "--to", &to], 0);
            let messages = maildir_messages(&maildir);
            assert_eq!(messages.len(), *count, "{name}");
            let wire_of_original = popbackup::mail::lf_to_crlf(&original);
            for message in &messages {
                let at = wire_of_original
                    .windows(message.len().min(200))
                    .position(|w| *w == message[..message.len().min(200)]);
                assert!(at.is_some(), "{name}: a message that is not in the file");
            }
            match *name {
                // mime4j's own split of the file, less the blank line that separates messages.
                "rlug" => {
                    for (i, message) in messages.iter().enumerate() {
                        let expected =
                            std::fs::read(path.with_file_name(format!("mbox.rlug-{i}"))).unwrap();
                        let expected = &expected[..expected.len() - 1];
                        assert_eq!(*message, lf_to_crlf(expected), "rlug message {i}");
                    }
                    // Written back as it was: the same From lines, the same blank lines.
                    assert_eq!(restored, original, "rlug restored into an mbox");
                }
                "unmunged" => {
                    for message in &messages {
                        let text = String::from_utf8_lossy(message);
                        assert!(text.contains("\r\nFrom Russia with love\r\n"), "{text}");
                    }
                }
                // A body as long as its Content-Length says, wherever that fits.
                "cl" => {
                    let counted = messages
                        .iter()
                        .filter(|m| {
                            let text = String::from_utf8_lossy(m);
                            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                                return false;
                            };
                            head.lines()
                                .find_map(|l| l.strip_prefix("Content-Length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .is_some_and(|n| n == body.replace("\r\n", "\n").len())
                        })
                        .count();
                    assert!(counted >= 25, "{counted} messages of the length they say");
                }
                // CRLF mbox: the messages keep their CRLF line ends, unchanged.
                "crlf" => {
                    for message in &messages {
                        assert!(
                            original.windows(message.len()).any(|w| w == message.as_slice()),
                            "a CRLF message that is not byte for byte in the file"
                        );
                    }
                }
                _ => {}
            }

            // Again: the file is unchanged, so nothing is read.
            let again = run(&["import", &source, "--account", name], 0);
            assert_eq!(again["read"], 0, "{name}: {again}");
            assert_eq!(again["unchanged"], *count, "{name}");
        }
        let verify = run(&["verify"], 0);
        assert_eq!(verify["clean"], true, "{verify}");
    }
}

fn python_mbox_count(path: &Path) -> usize {
    let out = Command::new("python3")
        .args([
            "-c",
            "import mailbox,sys; print(len(mailbox.mbox(sys.argv[1], create=False)))",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A truncated mbox: the messages before the cut are stored, the one cut is named, and the
/// import exits 65; so again on the next run, while what is stored stays.
#[test]
fn a_truncated_mbox_is_named_and_the_rest_stored() {
    let Some(mboxes) = corpus_mboxes() else {
        return;
    };
    let (_, crlf_mbox, count) = &mboxes[4];
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read(crlf_mbox).unwrap();
    let cut = dir.path().join("cut.mbox");
    std::fs::write(&cut, &original[..original.len() - 100]).unwrap();
    let repo = dir.path().join("repo");
    assert_eq!(popbackup(&repo, &["init"]).status.code(), Some(0));
    let source = format!("mbox:{}", cut.display());
    for _ in 0..2 {
        let out = popbackup(&repo, &["import", &source]);
        assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
        let text = stderr(&out);
        assert!(
            text.contains(&cut.display().to_string()) && text.contains("truncated"),
            "{text}"
        );
        assert!(
            text.contains("1 message(s) or file(s) could not be read"),
            "{text}"
        );
    }
    let manifest = json(&repo, &["ls", "latest", "--manifest"], 0);
    assert_eq!(
        manifest["messages"].as_array().map(Vec::len),
        Some(count - 1),
        "{manifest}"
    );

    // A Content-Length the file ends before, at a line end, is named too.
    let counted = dir.path().join("counted.mbox");
    std::fs::write(
        &counted,
        "From a Mon Jan  1 10:00:00 2001\nSubject: one\n\nfine\n\n\
         From b Mon Jan  1 10:00:01 2001\nSubject: two\nContent-Length: 500\n\nshort\n",
    )
    .unwrap();
    let out = popbackup(&repo, &["import", &format!("mbox:{}", counted.display())]);
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Content-Length: 500"),
        "{}",
        stderr(&out)
    );

    // Not an mbox at all: a usage error that says so.
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "Subject: hello\n\nnot an mbox\n").unwrap();
    let out = popbackup(&repo, &["import", &format!("mbox:{}", text.display())]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("not an mbox"), "{}", stderr(&out));
}

/// `popbackup ARGS` as an unprivileged user when the tests run as root (whom no file mode
/// keeps out), so that a file of mode 000 really cannot be read.
fn popbackup_unprivileged(home: &Path, args: &[&str]) -> std::process::Output {
    use std::os::unix::fs::MetadataExt as _;
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    let mut command = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_popbackup"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_popbackup"))
    };
    command
        .arg("--repo")
        .arg(home.join("repo"))
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .output()
        .unwrap()
}

/// A Maildir with Maildir++ folders and a nested one: each folder an account of its own,
/// named after it; a file that cannot be read and a link to nothing are named, the rest
/// stored (exit 65). Restored into one Maildir++ tree, Python's `mailbox` sees the same
/// folders, and Dovecot serves the restored inbox.
#[test]
fn maildir_folders_are_imports_of_their_own_and_unreadable_files_are_named() {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let Some(corpus) = corpus_messages() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let root = home.join("Maildir");
    let folders = [
        ("", 0..40),
        (".Sent", 40..50),
        (".Lists.rust", 50..55),
        ("Archive/2019", 55..60),
    ];
    let mut unique: HashMap<&str, HashSet<MessageHash>> = HashMap::new();
    for (folder, range) in &folders {
        let at = root.join(folder);
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(at.join(sub)).unwrap();
        }
        for i in range.clone() {
            std::fs::write(at.join("new").join(format!("{i:05}.host")), &corpus[i].1).unwrap();
            unique
                .entry(folder)
                .or_default()
                .insert(MessageHash::of(&lf_to_crlf(&corpus[i].1)));
        }
    }
    // Everything belongs to the unprivileged user but one file nobody may read.
    let chown = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(home)
        .status()
        .unwrap();
    assert!(chown.success());
    let secret = root.join("new").join("secret.host");
    std::fs::write(&secret, "Subject: secret\n\nx\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    let gone = root.join("cur").join("gone.host:2,S");
    std::os::unix::fs::symlink(home.join("nowhere"), &gone).unwrap();

    let out = popbackup_unprivileged(home, &["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let source = format!("maildir:{}", root.display());
    let out = popbackup_unprivileged(home, &["import", &source, "--account", "inbox", "--json"]);
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    for named in [&secret, &gone] {
        assert!(
            stderr(&out).contains(&named.display().to_string()),
            "{}",
            stderr(&out)
        );
    }
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<(&str, u64, u64, usize)> = reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["account"].as_str().unwrap(),
                r["files"].as_u64().unwrap(),
                r["new_messages"].as_u64().unwrap(),
                r["unreadable"].as_array().unwrap().len(),
            )
        })
        .collect();
    let n = |folder: &str| unique[folder].len() as u64;
    // New to the archive: what no folder imported before held.
    let mut archived = HashSet::new();
    let mut new = |folder: &str| {
        unique[folder]
            .iter()
            .filter(|h| archived.insert(**h))
            .count() as u64
    };
    let expected = [
        ("inbox", 42, new(""), 2),
        ("inbox.Archive.2019", 5, new("Archive/2019"), 0),
        ("inbox.Lists.rust", 5, new(".Lists.rust"), 0),
        ("inbox.Sent", 10, new(".Sent"), 0),
    ];
    assert_eq!(got, expected);

    // One Maildir++ tree: the inbox at its top, each folder as `.NAME`.
    let tree = home.join("restored");
    for (account, folder) in [
        ("inbox", ""),
        ("inbox.Sent", ".Sent"),
        ("inbox.Lists.rust", ".Lists.rust"),
        ("inbox.Archive.2019", ".Archive.2019"),
    ] {
        let to = format!("maildir:{}", tree.join(folder).display());
        let out = popbackup_unprivileged(home, &["restore", "--account", account, "--to", &to]);
        assert_eq!(out.status.code(), Some(0), "{account}: {}", stderr(&out));
    }
    let script = "import mailbox,sys\nbox = mailbox.Maildir(sys.argv[1], create=False)\n\
                  print(len(box), *sorted(f'{f}={len(box.get_folder(f))}' for f in box.list_folders()))";
    let python = Command::new("python3")
        .args(["-c", script])
        .arg(&tree)
        .output()
        .unwrap();
    assert!(python.status.success(), "{}", stderr(&python));
    assert_eq!(
        String::from_utf8_lossy(&python.stdout).trim(),
        format!(
            "{} Archive.2019={} Lists.rust={} Sent={}",
            n(""),
            n("Archive/2019"),
            n(".Lists.rust"),
            n(".Sent")
        )
    );

    // Dovecot serves the restored inbox: every message, as it was imported.
    let user = "u48";
    dovecot.fill_maildir(user, std::iter::empty::<(String, &[u8])>());
    let served = dovecot.maildir(user);
    let out = popbackup(
        &home.join("repo"),
        &[
            "restore",
            "--account",
            "inbox",
            "--to",
            &format!("maildir:{}", served.display()),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let chown = Command::new("chown")
        .args(["-R", "vmail:vmail"])
        .arg(&served)
        .status()
        .unwrap();
    assert!(chown.success());
    let served = dovecot.served_hashes(user);
    assert_eq!(served.len() as u64, n(""));
    let fetched: HashSet<MessageHash> = served.into_iter().collect();
    let served_form: HashSet<MessageHash> = folders[0]
        .1
        .clone()
        .map(|i| MessageHash::of(&dovecot_retr_bytes(&corpus[i].1)))
        .collect();
    assert_eq!(fetched, served_form);
}
