//! The binary end to end: init, snapshots, ls, cat, usage mistakes and configuration errors.

use std::process::{Command, Output};

use popbackup::repo::{MessageHash, Repository};

fn popbackup(args: &[&str], config_home: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_popbackup"))
        .args(args)
        .env("XDG_CONFIG_HOME", config_home)
        .output()
        .unwrap()
}

#[test]
fn init_then_browse_a_repository() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("archive");
    let repo_arg = repo.to_str().unwrap();
    let out = popbackup(&["init", "--repo", repo_arg], dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = dir.path().join("popbackup/config.toml");
    let sample = std::fs::read_to_string(&config).unwrap();
    assert!(sample.contains(&format!("repository = \"{repo_arg}\"")));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A second init refuses to touch the existing repository.
    let again = popbackup(&["init"], dir.path());
    assert_eq!(
        again.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // Store a message through the library and commit a snapshot, then read it back via the CLI.
    let message = b"From: a@example.org\r\nSubject: cli\r\n\r\nbytes \0 \xff\r\n";
    let mut writer = Repository::open(&repo).unwrap().lock("test").unwrap();
    let stored = writer.store_bytes(message).unwrap();
    let manifest =
        crate::repo::manifest_for(writer.repo(), "work", &[(stored.hash(), stored.raw_len())]);
    writer.commit(&manifest).unwrap();
    drop(writer);

    // The configuration written by init names the repository: no --repo needed.
    let list = popbackup(&["snapshots"], dir.path());
    assert_eq!(
        list.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(String::from_utf8_lossy(&list.stdout).contains(manifest.id.as_str()));
    let json = popbackup(&["snapshots", "--json"], dir.path());
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed[0]["account"], "work");
    let ls = popbackup(&["ls", &manifest.id.as_str()[..10]], dir.path());
    assert!(String::from_utf8_lossy(&ls.stdout).contains(&MessageHash::of(message).to_hex()[..16]));
    // `ls --json` streams the records; it is the manifest as the library reads it, also for
    // a list of several records files.
    let mut writer = Repository::open(&repo).unwrap().lock("test").unwrap();
    let many: Vec<_> = (0..700)
        .map(|i| {
            let stored = writer
                .store_bytes(format!("Subject: {i}\r\n\r\nbody {i}\r\n").as_bytes())
                .unwrap();
            (stored.hash(), stored.raw_len())
        })
        .collect();
    let longer = crate::repo::manifest_for(writer.repo(), "work", &many);
    writer.commit(&longer).unwrap();
    drop(writer);
    let read = Repository::open(&repo).unwrap();
    for id in [&manifest.id, &longer.id] {
        let head = read.manifest_head(id).unwrap();
        let out = popbackup(&["ls", id.as_str(), "--json"], dir.path());
        assert_eq!(out.status.code(), Some(0));
        let streamed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let whole = serde_json::to_value(read.manifest(id).unwrap()).unwrap();
        assert_eq!(streamed, whole);
        assert_eq!(
            whole["messages"].as_array().map(Vec::len),
            Some(if *id == manifest.id { 1 } else { 700 })
        );
        if *id == longer.id {
            assert!(head.records.unwrap().0.len() > 1, "several records files");
        }
    }
    let cat = popbackup(
        &["cat", &MessageHash::of(message).to_hex()[..12]],
        dir.path(),
    );
    assert_eq!(cat.status.code(), Some(0));
    assert_eq!(cat.stdout, message);
    let missing = popbackup(&["cat", "0000"], dir.path());
    assert_ne!(missing.status.code(), Some(0));
}

#[test]
fn every_command_is_listed_and_mistakes_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    // forget without a rule would remove everything: refused.
    let repo = dir.path().join("r");
    Repository::init(&repo).unwrap();
    let out = popbackup(&["forget", "--repo", repo.to_str().unwrap()], dir.path());
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--keep-"));
    // Without a configuration, snapshot says how to make one.
    let out = popbackup(&["snapshot"], dir.path());
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("popbackup init"));
    let help = popbackup(&["--help"], dir.path());
    let text = String::from_utf8_lossy(&help.stdout);
    for command in [
        "init",
        "snapshot",
        "inventory",
        "snapshots",
        "ls",
        "cat",
        "restore",
        "verify",
        "forget",
        "prune",
    ] {
        assert!(text.contains(command), "--help lacks {command}");
    }
}

#[test]
fn configuration_mistakes_exit_78_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("archive");
    let config = dir.path().join("config.toml");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_popbackup"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("XDG_CONFIG_HOME", dir.path())
            .env_remove("POPBACKUP_TEST_UNSET")
            .output()
            .unwrap()
    };
    let header = format!("repository = {:?}\n", repo.to_str().unwrap());
    std::fs::write(&config, &header).unwrap();
    assert_eq!(run(&["init"]).status.code(), Some(0));

    let account = "[accounts.work]\nhost = \"127.0.0.1\"\nport = 9\nuser = \"u\"\n";
    let cases = [
        (
            format!("{account}password_env = \"X\"\ntimeout = \"soon\"\n"),
            "config.toml:7: accounts.work.timeout: expected seconds",
        ),
        (
            format!("{account}password_env = \"X\"\nsmtp = true\n"),
            "config.toml:7: unknown field `smtp`",
        ),
        (
            account.to_string(),
            "config.toml:2: accounts.work.password_command: no secret source",
        ),
        (
            format!("{account}password_env = \"POPBACKUP_TEST_UNSET\"\n"),
            "config.toml:2: accounts.work.password_env: the environment variable \
             POPBACKUP_TEST_UNSET is not set",
        ),
    ];
    for (body, expected) in cases {
        std::fs::write(&config, format!("{header}{body}")).unwrap();
        let out = run(&["snapshot"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{body}\n{err}");
        assert!(err.contains(expected), "expected {expected:?} in\n{err}");
    }

    // A password file every user can read is refused before any connection is made.
    let password = dir.path().join("pw");
    std::fs::write(&password, "s3cret-pw\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(
        &config,
        format!(
            "{header}{account}password_file = {:?}\n",
            password.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = run(&["snapshot", "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    assert!(!err.contains("s3cret") && !String::from_utf8_lossy(&out.stdout).contains("s3cret"));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["accounts"][0]["outcome"], "failed");
    assert_eq!(summary["accounts"][0]["exit_code"], 78);
    // Nothing reached the repository.
    assert!(
        Repository::open(&repo)
            .unwrap()
            .snapshots()
            .unwrap()
            .is_empty()
    );
}
