//! Where an account's password (or OAuth token) comes from, and fetching it.
//!
//! A secret is never written in the configuration itself and never passed on a command line:
//! it is read from a file only the user can read, from an environment variable, or from the
//! first line printed by a command (`pass`, `secret-tool`, an OAuth token helper). The command
//! runs without a shell unless it uses shell syntax, with stdin closed and a time limit, and its
//! error output is quoted in the error so the user sees why it failed.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::ConfigError;
use crate::pop3::Secret;

/// How long a `password_command` may take (a GPG agent may need a moment; cron must not hang).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Characters that make a `password_command` need `sh -c`.
const SHELL_SYNTAX: &[char] = &[
    '|', '&', ';', '<', '>', '(', ')', '$', '`', '*', '?', '[', '~', '{', '}', '\n', '#',
];

/// One of the three ways to give a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A command whose first line of output is the secret.
    Command(String),
    /// A file whose first line is the secret; must not be readable by others.
    File(PathBuf),
    /// An environment variable holding the secret.
    Env(String),
}

impl SecretSource {
    /// The key name in an account's table.
    pub fn key(&self) -> &'static str {
        match self {
            SecretSource::Command(_) => "password_command",
            SecretSource::File(_) => "password_file",
            SecretSource::Env(_) => "password_env",
        }
    }

    /// The key name for a secret called `base` (`password`, `secret_access_key`).
    pub fn key_for(&self, base: &str) -> String {
        let how = match self {
            SecretSource::Command(_) => "command",
            SecretSource::File(_) => "file",
            SecretSource::Env(_) => "env",
        };
        format!("{base}_{how}")
    }

    /// Fetches the secret. `defined_at` (`FILE:LINE`) and `key` (`accounts.work.password_file`)
    /// locate it in errors; a command runs without the environment variables `hidden_env`;
    /// `warn` receives warnings (a password file readable by its group).
    pub fn resolve(
        &self,
        defined_at: &str,
        key: &str,
        hidden_env: &[String],
        warn: &mut dyn FnMut(String),
    ) -> Result<Secret, ConfigError> {
        let fail = |message: String| ConfigError::Secret {
            defined_at: defined_at.to_string(),
            key: key.to_string(),
            message,
        };
        match self {
            SecretSource::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
                Ok(_) => Err(fail(format!("the environment variable {var} is empty"))),
                Err(_) => Err(fail(format!(
                    "the environment variable {var} is not set (or not valid UTF-8); export it \
                     in the environment popbackup runs in (for cron, in the crontab or a wrapper)"
                ))),
            },
            SecretSource::File(path) => read_file(path, warn).map_err(fail),
            SecretSource::Command(command) => run_command(command, hidden_env).map_err(fail),
        }
    }
}

/// The one secret source a table gives for the secret `base`: `{base}_command`,
/// `{base}_file` or `{base}_env`, of which exactly one must be there. `key` makes the full
/// key name for messages (`accounts.work.password_file`); `missing` says what to add when
/// none is.
pub(super) fn parse_source(
    origin: &super::value::Origin<'_>,
    table_offset: usize,
    key: &dyn Fn(&str) -> String,
    base: &str,
    [command, file, env]: [Option<&toml::Spanned<toml::Value>>; 3],
    base_dir: &Path,
    missing: &str,
) -> Result<SecretSource, ConfigError> {
    let mut sources = Vec::new();
    if let Some(v) = command {
        let k = key(&format!("{base}_command"));
        sources.push((v.span().start, SecretSource::Command(origin.string(v, &k)?)));
    }
    if let Some(v) = file {
        let path = origin.string(v, &key(&format!("{base}_file")))?;
        sources.push((
            v.span().start,
            SecretSource::File(super::expand_path(&path, base_dir)),
        ));
    }
    if let Some(v) = env {
        let k = key(&format!("{base}_env"));
        let var = origin.string(v, &k)?;
        if var.is_empty() || var.contains('=') || var.contains('\0') {
            return Err(origin.invalid(
                Some(v.span().start),
                &k,
                "must be the name of an environment variable, not its value".into(),
            ));
        }
        sources.push((v.span().start, SecretSource::Env(var)));
    }
    sources.sort_by_key(|(offset, _)| *offset);
    match sources.len() {
        1 => Ok(sources.remove(0).1),
        0 => Err(origin.invalid(
            Some(table_offset),
            &key(&format!("{base}_command")),
            missing.into(),
        )),
        _ => {
            let names: Vec<String> = sources.iter().map(|(_, s)| s.key_for(base)).collect();
            Err(origin.invalid(
                Some(sources[1].0),
                &key(&sources[1].1.key_for(base)),
                format!(
                    "give exactly one secret source, not {}",
                    names.join(" and ")
                ),
            ))
        }
    }
}

fn first_line(bytes: Vec<u8>) -> Result<Secret, String> {
    let text = String::from_utf8(bytes).map_err(|_| "the secret is not valid UTF-8".to_string())?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err("the first line is empty".into());
    }
    Ok(Secret::new(line))
}

fn read_file(path: &Path, warn: &mut dyn FnMut(String)) -> Result<Secret, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o007 != 0 {
        return Err(format!(
            "{} can be read by every user on this machine (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        ));
    }
    if mode & 0o070 != 0 {
        warn(format!(
            "password file {} can be read by its group (mode {:o}); `chmod 600` it unless that \
             is intended",
            path.display(),
            mode & 0o777
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    first_line(bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The argv for `command`: split like a shell would for simple words and quotes, or
/// `sh -c COMMAND` when it uses pipes, variables or other shell syntax.
pub fn command_argv(command: &str) -> Result<Vec<String>, String> {
    let unquoted_syntax = {
        // Shell syntax only counts outside quotes; a simple scan is enough for the decision.
        let mut quote: Option<char> = None;
        let mut found = false;
        let mut escaped = false;
        for c in command.chars() {
            match (quote, c) {
                _ if escaped => escaped = false,
                (None, '\\') | (Some('"'), '\\') => escaped = true,
                (None, '\'' | '"') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, c) if SHELL_SYNTAX.contains(&c) => found = true,
                _ => {}
            }
        }
        found
    };
    if unquoted_syntax {
        return Ok(vec!["/bin/sh".into(), "-c".into(), command.into()]);
    }
    let words =
        shell_words::split(command).map_err(|e| format!("cannot split the command: {e}"))?;
    if words.is_empty() {
        return Err("the command is empty".into());
    }
    Ok(words)
}

fn run_command(command: &str, hidden_env: &[String]) -> Result<Secret, String> {
    let argv = command_argv(command)?;
    let mut child = Command::new(&argv[0]);
    for var in hidden_env {
        child.env_remove(var);
    }
    let mut child = child
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{}`: {e}", argv[0]))?;
    // Read both pipes on threads so a chatty command cannot block on a full pipe.
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.take(64 * 1024).read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.take(64 * 1024).read_to_end(&mut buf);
        }
        buf
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < COMMAND_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{command}` did not finish within {} s (is it waiting for a passphrase \
                     prompt? cron has no terminal)",
                    COMMAND_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot wait for `{command}`: {e}")),
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if !status.success() {
        let said = String::from_utf8_lossy(&stderr);
        let said = said.trim();
        let said: String = said.chars().take(300).collect();
        return Err(format!(
            "`{command}` failed ({status}){}",
            if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            }
        ));
    }
    first_line(stdout).map_err(|e| format!("`{command}` printed no usable secret: {e}"))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn simple_commands_run_without_a_shell() {
        assert_eq!(
            command_argv("pass show 'mail/my work'").unwrap(),
            ["pass", "show", "mail/my work"]
        );
        assert_eq!(
            command_argv("gpg -dq ~/.pw.gpg").unwrap(),
            ["/bin/sh", "-c", "gpg -dq ~/.pw.gpg"]
        );
        assert_eq!(
            command_argv("secret-tool lookup a b | head -1").unwrap()[0],
            "/bin/sh"
        );
        assert_eq!(command_argv("echo 'a|b'").unwrap(), ["echo", "a|b"]);
        assert!(command_argv("  ").is_err());
    }

    #[test]
    fn command_output_first_line_is_the_secret() {
        let s = SecretSource::Command("printf 'hunter2\\nignored\\n'".into());
        let secret = s
            .resolve(
                "c.toml:3",
                "accounts.work.password_command",
                &[],
                &mut |_| {},
            )
            .unwrap();
        assert_eq!(secret.expose(), "hunter2");

        let failing = SecretSource::Command("sh -c 'echo no such entry >&2; exit 3'".into());
        let err = failing
            .resolve(
                "c.toml:3",
                "accounts.work.password_command",
                &[],
                &mut |_| {},
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no such entry") && err.contains("work"),
            "{err}"
        );

        let empty = SecretSource::Command("true".into());
        assert!(
            empty
                .resolve(
                    "c.toml:3",
                    "accounts.work.password_command",
                    &[],
                    &mut |_| {}
                )
                .is_err()
        );
    }

    #[test]
    fn password_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let source = SecretSource::File(path.clone());
        let err = source
            .resolve("c.toml:3", "home", &[], &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let mut warnings = Vec::new();
        let secret = source
            .resolve("c.toml:3", "home", &[], &mut |w| warnings.push(w))
            .unwrap();
        assert_eq!(secret.expose(), "s3cret");
        assert_eq!(warnings.len(), 1);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut warnings = Vec::new();
        source
            .resolve("c.toml:3", "home", &[], &mut |w| warnings.push(w))
            .unwrap();
        assert!(warnings.is_empty());
    }

    #[test]
    fn environment_variables() {
        let source = SecretSource::Env("POPBACKUP_TEST_SURELY_UNSET_VAR".into());
        let err = source
            .resolve("c.toml:3", "a", &[], &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("not set"), "{err}");
        // PATH is always set in the test environment.
        let path = SecretSource::Env("PATH".into());
        assert!(
            !path
                .resolve("c.toml:3", "a", &[], &mut |_| {})
                .unwrap()
                .expose()
                .is_empty()
        );
    }
}
