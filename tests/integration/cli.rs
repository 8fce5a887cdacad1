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
    // `ls --json --manifest` streams the records; it is the manifest as the library reads
    // it, also for a list of several records files.
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
        let out = popbackup(&["ls", id.as_str(), "--json", "--manifest"], dir.path());
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

/// A repository holding one message in one committed snapshot, made through the library.
fn repository_with_one_message(repo: &std::path::Path) -> (MessageHash, Vec<u8>) {
    let message = b"From: a@example.org\r\nSubject: home\r\n\r\nbody\r\n".to_vec();
    Repository::init(repo).unwrap();
    let mut writer = Repository::open(repo).unwrap().lock("test").unwrap();
    let stored = writer.store_bytes(&message).unwrap();
    let mut manifest =
        crate::repo::manifest_for(writer.repo(), "work", &[(stored.hash(), stored.raw_len())]);
    manifest.complete = true;
    writer.commit(&manifest).unwrap();
    (stored.hash(), message)
}

#[test]
fn a_tilde_in_restore_and_repo_paths_means_home() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let cwd = dir.path().join("cwd");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&cwd).unwrap();
    repository_with_one_message(&home.join("archive"));
    for (repo_arg, to) in [
        ("--repo=~/archive", "maildir:~/Maildir-restored"),
        ("--repo=$HOME/archive", "mbox:$HOME/restored.mbox"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_popbackup"))
            .args(["restore", repo_arg, "--to", to])
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", dir.path())
            .current_dir(&cwd)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{to}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        std::fs::read_dir(home.join("Maildir-restored/new"))
            .unwrap()
            .count(),
        1
    );
    assert!(home.join("restored.mbox").is_file());
    let left: Vec<_> = std::fs::read_dir(&cwd).unwrap().collect();
    assert!(
        left.is_empty(),
        "files made in the current directory: {left:?}"
    );
    // `~user` is not guessed at.
    let out = Command::new(env!("CARGO_BIN_EXE_popbackup"))
        .args([
            "restore",
            "--repo",
            "/nonexistent",
            "--to",
            "maildir:~bob/x",
        ])
        .env("HOME", &home)
        .current_dir(&cwd)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("~user"));
}

#[test]
fn the_test_server_script_never_touches_a_system_service() {
    // Fake service managers that record being called: `dovecot.sh install` must not stop (or
    // start) a system Dovecot, which on a user's machine is their real mail server.
    let dir = tempfile::tempdir().unwrap();
    let called = dir.path().join("called");
    for tool in ["systemctl", "service", "invoke-rc.d"] {
        let path = dir.path().join(tool);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho {tool} \"$@\" >> {}\n", called.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dovecot.sh"))
        .arg("install")
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(&called).unwrap_or_default();
    assert!(calls.is_empty(), "dovecot.sh called: {calls}");
}

#[test]
fn every_usage_mistake_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("r");
    Repository::init(&repo).unwrap();
    let repo = repo.to_str().unwrap();
    for args in [
        vec!["--no-such-flag"],
        vec!["no-such-command"],
        vec!["restore", "--repo", repo],
        vec!["restore", "--repo", repo, "--to", "mh:/x"],
        vec!["forget", "--repo", repo],
        vec!["prune", "--repo", repo, "--max-unused", "150"],
        vec!["verify", "--repo", repo, "--read-data-subset", "0/3"],
    ] {
        let out = popbackup(&args, dir.path());
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // --help and --version are not mistakes.
    for args in [["--help"], ["--version"]] {
        let out = popbackup(&args, dir.path());
        assert_eq!(out.status.code(), Some(0), "{args:?}");
    }
}

#[test]
fn cat_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("r");
    let (hash, _) = repository_with_one_message(&repo);
    // A reader that closes at once, as `head -c0` does: the write fails with EPIPE.
    let mut child = Command::new(env!("CARGO_BIN_EXE_popbackup"))
        .args(["cat", "--repo", repo.to_str().unwrap(), &hash.to_string()])
        .env("XDG_CONFIG_HOME", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn a_restore_that_matches_nothing_says_so_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("r");
    repository_with_one_message(&repo);
    for to in ["maildir", "mbox"] {
        let target = dir.path().join(format!("out-{to}"));
        let out = popbackup(
            &[
                "restore",
                "--repo",
                repo.to_str().unwrap(),
                "--subject",
                "no such subject",
                "--to",
                &format!("{to}:{}", target.display()),
            ],
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("no archived message matches"), "{text}");
        assert!(!target.exists(), "{to}: created {}", target.display());
    }
}

#[test]
fn shell_completions_and_the_manual_page_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    let bash = popbackup(&["completions", "bash"], dir.path());
    assert_eq!(bash.status.code(), Some(0));
    let script = String::from_utf8_lossy(&bash.stdout);
    for command in ["snapshot", "restore", "verify", "prune", "completions"] {
        assert!(script.contains(command), "bash completion lacks {command}");
    }
    // The script is valid bash.
    let file = dir.path().join("popbackup.bash");
    std::fs::write(&file, &bash.stdout).unwrap();
    let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    for shell in ["zsh", "fish"] {
        let out = popbackup(&["completions", shell], dir.path());
        assert_eq!(out.status.code(), Some(0));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("snapshot"),
            "{shell}"
        );
    }
    let out = popbackup(&["completions", "tcsh"], dir.path());
    assert_eq!(out.status.code(), Some(64));

    let man = popbackup(&["man"], dir.path());
    assert_eq!(man.status.code(), Some(0));
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(page.contains(".TH popbackup 1"), "{page}");
    for command in [
        "snapshot",
        "inventory",
        "restore",
        "verify",
        "forget",
        "prune",
    ] {
        assert!(page.contains(command), "the manual lacks {command}");
    }
}

#[test]
fn browsing_has_headers_filters_and_user_fields() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("r");
    let (hash, message) = repository_with_one_message(&repo);
    // A second account with its own snapshot.
    let mut writer = Repository::open(&repo).unwrap().lock("test").unwrap();
    let other = writer
        .store_bytes(b"From: b@example.org\r\nSubject: other\r\n\r\nx\r\n")
        .unwrap();
    let mut manifest =
        crate::repo::manifest_for(writer.repo(), "home", &[(other.hash(), other.raw_len())]);
    manifest.complete = true;
    writer.commit(&manifest).unwrap();
    drop(writer);
    let r = repo.to_str().unwrap();

    let out = popbackup(&["snapshots", "--repo", r], dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("MESSAGES"),
        "{text}"
    );
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        text.contains(&format!("{} B", message.len())),
        "human sizes: {text}"
    );
    // Times for people are local, with their offset; JSON keeps UTC.
    let berlin = Command::new(env!("CARGO_BIN_EXE_popbackup"))
        .args(["snapshots", "--repo", r])
        .env("TZ", "Europe/Berlin")
        .env("XDG_CONFIG_HOME", dir.path())
        .output()
        .unwrap();
    let local = String::from_utf8_lossy(&berlin.stdout);
    assert!(
        local.contains(" +01:00") || local.contains(" +02:00"),
        "{local}"
    );
    let json = popbackup(&["snapshots", "--repo", r, "--json"], dir.path());
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let time = parsed[0]["time"].as_str().unwrap();
    assert!(time.ends_with('Z') || time.ends_with("+00:00"), "{time}");
    let out = popbackup(&["snapshots", "--repo", r, "--account", "home"], dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("home") && !text.contains("work"), "{text}");

    // `ls` without a snapshot: the latest of each account.
    let out = popbackup(&["ls", "--repo", r], dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&hash.to_hex()[..16]), "{text}");
    assert!(text.contains(&other.hash().to_hex()[..16]), "{text}");
    assert!(text.contains("HASH"), "{text}");
    let out = popbackup(
        &["ls", "--repo", r, "--account", "work", "--json"],
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["account"], "work");
    let listed = &json[0]["messages"][0];
    assert_eq!(listed["sha256"], hash.to_hex());
    assert_eq!(listed["size"], message.len());
    assert!(
        listed.get("pack").is_none() && listed.get("offset").is_none(),
        "{listed}"
    );
    let out = popbackup(&["ls", "--repo", r, "--account", "nobody"], dir.path());
    assert_eq!(out.status.code(), Some(64));
}

/// The examples run the binary where the README's install command puts it, and systemd
/// accepts the units.
#[test]
fn the_examples_use_the_installed_binary_and_the_units_verify() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    assert!(read("README.md").contains("cargo install --locked --path ."));
    let cron = read("examples/crontab");
    let line = cron
        .lines()
        .find(|l| l.contains("snapshot") && !l.starts_with('#'))
        .unwrap();
    assert!(
        line.contains("$HOME/.cargo/bin/popbackup snapshot -q"),
        "{line}"
    );
    let service = read("examples/popbackup.service");
    assert!(
        service.contains("ExecStart=%h/.cargo/bin/popbackup snapshot -q"),
        "{service}"
    );
    let Ok(analyze) = which("systemd-analyze") else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but systemd-analyze is missing (scripts/test.sh installs systemd)");
        }
        eprintln!("SKIPPED: no systemd-analyze");
        return;
    };
    // A home with the binary installed where the units expect it, and a runtime directory
    // for the user manager that `--user` needs.
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("home/.cargo/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_popbackup"), bin.join("popbackup")).unwrap();
    let runtime = dir.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = Command::new(analyze)
        .args(["verify", "--user"])
        .arg(root.join("examples/popbackup.service"))
        .arg(root.join("examples/popbackup.timer"))
        .env("HOME", dir.path().join("home"))
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
}

fn which(tool: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .ok_or(())
}
