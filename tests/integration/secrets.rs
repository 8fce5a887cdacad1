//! Secrets never leak: a full run of every command, successful and failing, is searched for
//! the password — in stdout and stderr, in `--json`, and in every file of the repository and
//! of the restored mail.

use std::path::Path;

use crate::snapshot::Setup;
use crate::support::dovecot::Dovecot;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

#[test]
fn the_password_appears_in_no_output_and_no_file() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let user = "u33";
    let password = format!("pw-{user}");
    dovecot.fill_maildir(
        user,
        [(
            "m1".to_string(),
            &b"Subject: s1\r\nFrom: a@example.org\r\n\r\nbody one\r\n"[..],
        )],
    );
    let setup = Setup::new(&dovecot, &[("mail", user)], "");
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();
    let restored = setup.dir.path().join("restored");
    let to = format!("maildir:{}", restored.display());
    let mbox = format!("mbox:{}", setup.dir.path().join("restored.mbox").display());
    for args in [
        vec!["snapshot"],
        vec!["snapshot", "--json"],
        vec!["snapshot", "-v"],
        vec!["inventory", "mail", "--json"],
        vec!["inventory", "mail"],
        vec!["snapshots", "--json"],
        vec!["verify", "--json"],
        vec!["restore", "--to", &to, "--json"],
        vec!["restore", "--to", &mbox],
        vec!["ls", "latest", "--json"],
    ] {
        let out = setup.run(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push((format!("{args:?} stdout"), out.stdout));
        outputs.push((format!("{args:?} stderr"), out.stderr));
    }
    // A refused login: the (wrong) password must not be echoed either, nor the right one.
    let wrong = "not-the-right-pw-u33";
    let mut command = setup.command(&["snapshot", "--json"]);
    command.env("PW_U33", wrong);
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(77));
    for (name, bytes) in [
        ("refused stdout", &out.stdout),
        ("refused stderr", &out.stderr),
    ] {
        assert!(
            !contains(bytes, wrong.as_bytes()),
            "{name} holds the wrong password"
        );
        outputs.push((name.to_string(), bytes.clone()));
    }
    for (name, bytes) in &outputs {
        assert!(
            !contains(bytes, password.as_bytes()),
            "{name} holds the password: {}",
            String::from_utf8_lossy(bytes)
        );
    }
    // Nothing on disk either: repository (manifests, index, packs, lock, verified.json),
    // configuration, restored mail.
    let mut checked = 0;
    for file in files_under(setup.dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !contains(&bytes, password.as_bytes()),
            "{} holds the password",
            file.display()
        );
        checked += 1;
    }
    assert!(checked > 10, "only {checked} files were searched");
}

#[test]
fn a_password_command_does_not_inherit_another_accounts_password() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("archive");
    let config = dir.path().join("config.toml");
    let env_dump = dir.path().join("env-of-the-command");
    let password = "env-Pa55-of-account-a";
    std::fs::write(
        &config,
        format!(
            "repository = {repo:?}\n\
             [accounts.a]\nhost = \"127.0.0.1\"\nport = 9\nuser = \"a\"\n\
             password_env = \"POPBACKUP_TEST_PW_A\"\n\
             [accounts.b]\nhost = \"127.0.0.1\"\nport = 9\nuser = \"b\"\n\
             password_command = \"env > '{}'; echo pw-b\"\n",
            env_dump.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_popbackup"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("POPBACKUP_TEST_PW_A", password)
            .env("POPBACKUP_TEST_VISIBLE", "visible")
            .output()
            .unwrap()
    };
    assert_eq!(run(&["init", "-q"]).status.code(), Some(0));
    // A configuration every user can read is named in a warning (the file says where the
    // passwords come from); 0600 is quiet.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = String::from_utf8_lossy(&run(&["snapshot"]).stderr).into_owned();
    assert!(
        err.contains("can be read by every user") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = String::from_utf8_lossy(&run(&["snapshot"]).stderr).into_owned();
    assert!(!err.contains("every user"), "{err}");
    // Port 9 refuses the connections; the secrets are fetched before connecting.
    let out = run(&["snapshot", "-q"]);
    assert_eq!(
        out.status.code(),
        Some(69),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = std::fs::read_to_string(&env_dump).unwrap();
    assert!(
        env.contains("POPBACKUP_TEST_VISIBLE=visible"),
        "the command ran with an environment"
    );
    assert!(!env.contains("POPBACKUP_TEST_PW_A"), "{env}");
    assert!(!env.contains(password));
}
