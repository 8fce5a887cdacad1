//! The configuration file (TOML): the repository path, the accounts and how their secrets are
//! fetched, and the sample that `popbackup init` writes.
//!
//! [`Config::load`] validates everything it can without touching the network or the
//! repository; every mistake is reported as `FILE:LINE: KEY: what is wrong; what to do`.
//! Secrets are fetched only when an account is about to be used ([`Account::credentials`]).
//! Relative paths are relative to the configuration file's directory; `~/` means `$HOME`.

mod account;
mod s3;
mod secret;
mod value;
use crate::repo::{RepoLocation, RepoPassword};
pub use s3::{RepoSpec, S3Settings};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use zeroize::Zeroizing;

pub use account::{Account, COMPRESSION_LEVELS};
pub use secret::{SecretSource, command_argv};
pub use value::{parse_duration, parse_size};

use value::Origin;

/// Accounts backed up at the same time, by default (one connection each).
pub const DEFAULT_PARALLEL_ACCOUNTS: usize = 4;
/// A long first run commits a checkpoint after this many downloaded bytes...
pub const DEFAULT_CHECKPOINT_SIZE: u64 = 32 << 20;
/// ...or after this long, whichever comes first.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(30);

/// Errors in the configuration. Each names the file, the line and the key where it can, and
/// says what to do; all of them make popbackup exit with 78.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}{}: {key}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        key: String,
        message: String,
    },
    #[error(
        "no repository given: pass --repo PATH, or set `repository = \"...\"` in {}",
        path.display()
    )]
    NoRepository { path: PathBuf },
    #[error(
        "{url} is on an object store, but no [s3] table in {} says how to reach it: add one \
         (endpoint, region, access_key_id, secret_access_key_file), or set AWS_ACCESS_KEY_ID \
         and AWS_SECRET_ACCESS_KEY",
        path.display()
    )]
    NoS3Settings { path: PathBuf, url: String },
    #[error(
        "no configuration at {}: run `popbackup init --repo PATH` to create a sample, or pass \
         --config FILE",
        path.display()
    )]
    Missing { path: PathBuf },
    #[error("{}: no accounts configured; add an [accounts.NAME] table (see the comments in the file)", path.display())]
    NoAccounts { path: PathBuf },
    #[error("{}: no account named {name:?}; configured: {}", path.display(), if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    UnknownAccount {
        path: PathBuf,
        name: String,
        known: Vec<String>,
    },
    #[error("{defined_at}: {key}: {message}")]
    Secret {
        defined_at: String,
        key: String,
        message: String,
    },
}

/// A validated configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub repository: Option<RepoSpec>,
    /// How to reach the object store, for a repository in a bucket.
    pub s3: Option<S3Settings>,
    /// Sorted by name.
    pub accounts: Vec<Account>,
    /// `[imports.NAME]`: local mail folders `popbackup import` takes in, sorted by name.
    pub imports: Vec<ImportConfig>,
    /// How many accounts are backed up at the same time.
    pub parallel_accounts: usize,
    /// zstd level for new messages; the repository's own level when unset.
    pub compression_level: Option<i32>,
    pub checkpoint_size: u64,
    pub checkpoint_interval: Duration,
    /// Read each new pack back before publishing it (restic's "verify before commit").
    pub verify_before_commit: bool,
    /// Where an encrypted repository's password comes from
    /// (`repository_password_command`, `_file` or `_env`).
    pub repository_password: Option<RepositoryPassword>,
    /// Things worth telling the user that do not stop the run (a config others can read).
    pub warnings: Vec<String>,
}

/// Where the repository password comes from, by the rules of account passwords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryPassword {
    /// `FILE:LINE` of its key, for errors.
    pub defined_at: String,
    pub source: SecretSource,
    /// Environment variables a password command does not see (other secrets').
    pub hidden_env: Vec<String>,
}

impl RepositoryPassword {
    /// Fetches the password; `warn` receives warnings (a password file others can read).
    pub fn fetch(&self, warn: &mut dyn FnMut(String)) -> Result<Zeroizing<Vec<u8>>, String> {
        let key = self.source.key_for("repository_password");
        self.source
            .resolve(&self.defined_at, &key, &self.hidden_env, warn)
            .map(|secret| Zeroizing::new(secret.expose().as_bytes().to_vec()))
            .map_err(|e| e.to_string())
    }
}

/// The repository password the configuration gives, fetched only when an encrypted repository
/// needs it: from `config` when it is read already, else from the file at `config_path`,
/// read then (a plain repository opened with `--repo` needs no configuration at all).
pub fn repository_password(
    config_path: &Path,
    config: Option<&Config>,
    warn: impl Fn(String) + Send + Sync + 'static,
) -> RepoPassword {
    let path = config_path.to_path_buf();
    let known = config.map(|c| c.repository_password.clone());
    RepoPassword::from_fn(move || {
        let password = match &known {
            Some(known) => known.clone(),
            None => Config::load_optional(&path)
                .map_err(|e| e.to_string())?
                .and_then(|c| c.repository_password),
        };
        password.map(|p| p.fetch(&mut |w| warn(w))).transpose()
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    repository: Option<Spanned<toml::Value>>,
    parallel_accounts: Option<Spanned<toml::Value>>,
    compression_level: Option<Spanned<toml::Value>>,
    checkpoint_size: Option<Spanned<toml::Value>>,
    checkpoint_interval: Option<Spanned<toml::Value>>,
    verify_before_commit: Option<Spanned<toml::Value>>,
    repository_password_command: Option<Spanned<toml::Value>>,
    repository_password_file: Option<Spanned<toml::Value>>,
    repository_password_env: Option<Spanned<toml::Value>>,
    s3: Option<Spanned<s3::RawS3>>,
    #[serde(default)]
    accounts: account::RawAccounts,
    #[serde(default)]
    imports: std::collections::BTreeMap<String, Spanned<RawImport>>,
}

/// One `[imports.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportConfig {
    /// The name; the account its snapshots get.
    pub name: String,
    /// `maildir:` and an absolute path.
    pub source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImport {
    path: Option<Spanned<toml::Value>>,
}

impl Config {
    /// Reads and validates the configuration file; a missing file is an error.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_optional(path)?.ok_or_else(|| ConfigError::Missing { path: path.into() })
    }

    /// Like [`Config::load`], but a missing file is `None`.
    pub fn load_optional(path: &Path) -> Result<Option<Config>, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.into(),
                    source,
                });
            }
        };
        let mut config = Config::parse(path, &text)?;
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).map_or(0, |m| m.permissions().mode());
        let exposure = if mode & 0o002 != 0 {
            Some(
                "can be changed by every user on this machine, who could send your password \
                 to a server of theirs",
            )
        } else if mode & 0o004 != 0 {
            Some(
                "can be read by every user on this machine; it shows your servers, user names \
                 and where the passwords come from",
            )
        } else {
            None
        };
        if let Some(exposure) = exposure {
            config.warnings.push(format!(
                "{} {exposure}; run `chmod 600 {}`",
                path.display(),
                path.display()
            ));
        }
        Ok(Some(config))
    }

    /// Validates configuration text; `path` is used for messages and relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let origin = Origin { path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.into(),
            line: e.span().map(|s| origin.line(s.start)).unwrap_or(1),
            message: e.message().trim().to_string(),
        })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let repository = match &raw.repository {
            Some(v) => Some(
                RepoSpec::parse(&origin.string(v, "repository")?, Some(base_dir))
                    .map_err(|e| origin.invalid(Some(v.span().start), "repository", e))?,
            ),
            None => None,
        };
        let s3 = match &raw.s3 {
            Some(table) => Some(
                table
                    .get_ref()
                    .validate(table.span().start, &origin, base_dir)?,
            ),
            None => None,
        };
        let parallel_accounts = match &raw.parallel_accounts {
            Some(v) => origin.integer(v, "parallel_accounts", 1..=64)? as usize,
            None => DEFAULT_PARALLEL_ACCOUNTS,
        };
        let compression_level = match &raw.compression_level {
            Some(v) => Some(origin.integer(v, "compression_level", COMPRESSION_LEVELS)? as i32),
            None => None,
        };
        let checkpoint_size = match &raw.checkpoint_size {
            Some(v) => origin.size(v, "checkpoint_size")?,
            None => DEFAULT_CHECKPOINT_SIZE,
        };
        let checkpoint_interval = match &raw.checkpoint_interval {
            Some(v) => origin.duration(v, "checkpoint_interval")?,
            None => DEFAULT_CHECKPOINT_INTERVAL,
        };
        let verify_before_commit = match &raw.verify_before_commit {
            Some(v) => origin.boolean(v, "verify_before_commit")?,
            None => true,
        };
        let password_keys = [
            raw.repository_password_command.as_ref(),
            raw.repository_password_file.as_ref(),
            raw.repository_password_env.as_ref(),
        ];
        let repository_password = match password_keys.iter().flatten().next() {
            Some(first) => {
                let offset = first.span().start;
                Some(RepositoryPassword {
                    defined_at: format!("{}:{}", path.display(), origin.line(offset)),
                    source: secret::parse_source(
                        &origin,
                        offset,
                        &|k| k.to_string(),
                        "repository_password",
                        password_keys,
                        base_dir,
                        "no repository password source",
                    )?,
                    hidden_env: Vec::new(),
                })
            }
            None => None,
        };
        let mut accounts = Vec::new();
        for (name, table) in raw.accounts {
            let offset = table.span().start;
            accounts.push(
                table
                    .into_inner()
                    .validate(&name, offset, &origin, base_dir)?,
            );
        }
        let mut imports = Vec::new();
        for (name, table) in &raw.imports {
            let key = format!("imports.{name}.path");
            let Some(value) = &table.get_ref().path else {
                return Err(origin.invalid(
                    Some(table.span().start),
                    &key,
                    "is missing; add path = \"maildir:~/Mail/inbox\"".into(),
                ));
            };
            let text = origin.string(value, &key)?;
            let source = match text.split_once(':') {
                Some((kind @ ("maildir" | "mbox" | "mboxo"), path)) if !path.is_empty() => {
                    format!("{kind}:{}", expand_path(path, base_dir).display())
                }
                _ => {
                    return Err(origin.invalid(
                        Some(value.span().start),
                        &key,
                        format!(
                            "`{text}`: write \"maildir:PATH\", \"mbox:PATH\" or \"mboxo:PATH\""
                        ),
                    ));
                }
            };
            imports.push(ImportConfig {
                name: name.clone(),
                source,
            });
        }
        // A password command never sees another secret's variable.
        let password_vars: Vec<String> = accounts
            .iter()
            .map(|a| &a.secret)
            .chain(repository_password.as_ref().map(|p| &p.source))
            .filter_map(|secret| match secret {
                SecretSource::Env(var) => Some(var.clone()),
                _ => None,
            })
            .collect();
        for account in &mut accounts {
            account.hidden_env = password_vars.clone();
        }
        let mut repository_password = repository_password;
        if let Some(password) = &mut repository_password {
            password.hidden_env = password_vars;
        }
        Ok(Config {
            path: path.into(),
            repository,
            s3,
            accounts,
            imports,
            parallel_accounts,
            compression_level,
            checkpoint_size,
            checkpoint_interval,
            verify_before_commit,
            repository_password,
            warnings: Vec::new(),
        })
    }

    /// The accounts named (all of them when `names` is empty), in configuration order.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Account>, ConfigError> {
        if self.accounts.is_empty() {
            return Err(ConfigError::NoAccounts {
                path: self.path.clone(),
            });
        }
        if names.is_empty() {
            return Ok(self.accounts.iter().collect());
        }
        let by_name: BTreeMap<&str, &Account> =
            self.accounts.iter().map(|a| (a.name.as_str(), a)).collect();
        let mut out: Vec<&Account> = Vec::new();
        for name in names {
            let account =
                by_name
                    .get(name.as_str())
                    .ok_or_else(|| ConfigError::UnknownAccount {
                        path: self.path.clone(),
                        name: name.clone(),
                        known: by_name.keys().map(|k| k.to_string()).collect(),
                    })?;
            if !out.iter().any(|a| a.name == account.name) {
                out.push(account);
            }
        }
        Ok(out)
    }
}

/// `~/x` → `$HOME/x`; a relative path → relative to `base_dir` (the configuration's directory).
fn expand_path(text: &str, base_dir: &Path) -> PathBuf {
    let path = expand_home(text).unwrap_or_else(|_| PathBuf::from(text));
    if path.is_relative() {
        base_dir.join(path)
    } else {
        path
    }
}

/// Expands a leading `~`, `$HOME` or `${HOME}` in a path the user typed where no shell
/// expands it (`--to maildir:~/Mail`, `--repo=~/archive`, the configuration): without this
/// `~/Mail` would be a folder named `~` in the current directory. `~user` is refused rather
/// than guessed at.
pub fn expand_home(text: &str) -> Result<PathBuf, String> {
    let home = || {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| format!("{text:?} starts with ~ or $HOME, but HOME is not set"))
    };
    for prefix in ["~", "$HOME", "${HOME}"] {
        let Some(rest) = text.strip_prefix(prefix) else {
            continue;
        };
        if rest.is_empty() {
            return home();
        }
        if let Some(rest) = rest.strip_prefix('/') {
            return Ok(home()?.join(rest));
        }
        if prefix == "~" {
            return Err(format!(
                "{text:?}: ~user paths are not expanded; give the full path"
            ));
        }
    }
    Ok(PathBuf::from(text))
}

/// `$XDG_CONFIG_HOME/popbackup/config.toml`, or `~/.config/popbackup/config.toml`.
pub fn default_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("popbackup").join("config.toml")
}

/// The repository to use: `--repo` wins over the configuration's `repository`. With a
/// `--repo` path the configuration is not read at all; with a `--repo s3://...` only its
/// `[s3]` table is used (or, without one, the AWS environment variables).
pub fn resolve_repository(
    cli_repo: Option<&RepoSpec>,
    config_path: &Path,
    warn: &mut dyn FnMut(String),
) -> Result<RepoLocation, ConfigError> {
    let config = match cli_repo {
        Some(RepoSpec::Local(path)) => return Ok(RepoLocation::Local(path.clone())),
        Some(RepoSpec::S3(_)) | None => Config::load_optional(config_path)?,
    };
    locate_repository(cli_repo, config.as_ref(), config_path, warn)
}

/// Like [`resolve_repository`], with the configuration already read.
pub fn locate_repository(
    cli_repo: Option<&RepoSpec>,
    config: Option<&Config>,
    config_path: &Path,
    warn: &mut dyn FnMut(String),
) -> Result<RepoLocation, ConfigError> {
    let spec = cli_repo
        .or_else(|| config.and_then(|c| c.repository.as_ref()))
        .ok_or_else(|| ConfigError::NoRepository {
            path: config_path.into(),
        })?;
    s3::locate(spec, config.and_then(|c| c.s3.as_ref()), config_path, warn)
}

/// The commented configuration `popbackup init` writes when there is none.
pub fn sample(repository: &RepoSpec) -> String {
    let repo = repository
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        r#"# popbackup configuration. Key names are an interface: keep them as they are.
# Documentation: README.md and examples/config.toml. Never put a password in this file.

repository = "{repo}"
# parallel_accounts = 4          # accounts backed up at the same time, one connection each
# compression_level = 3          # zstd level for new messages (1-22)
# checkpoint_size = "32 MiB"     # a long first run commits progress this often...
# checkpoint_interval = "30s"    # ...or this often, whichever comes first
# verify_before_commit = true    # read each new pack back before committing it
# repository_password_command = "pass show backup/popbackup"   # for `popbackup init --encrypt`

# For repository = "s3://BUCKET/prefix": the object store (see README, "The repository in a
# bucket"). Without this table the AWS_* environment variables are used.
# [s3]
# endpoint = "https://s3.example.org"      # omit for AWS itself
# region = "us-east-1"
# access_key_id = "AKIA..."
# secret_access_key_file = "~/.config/popbackup/s3-secret"  # or _command, or _env; never the key

# One table per account; `popbackup snapshot` backs up all of them, or those named.
# [accounts.work]
# host = "pop.example.org"
# port = 995                               # default: 995 for implicit TLS, 110 otherwise
# tls = "implicit"                         # implicit | starttls | none (none needs allow_insecure = true)
# user = "alice@example.org"
# password_command = "pass show mail/work" # or password_file = "/path", or password_env = "VAR"
# auth = "auto"                            # auto | user | apop | plain | login | xoauth2 | oauthbearer
# ca_file = "/etc/ssl/my-ca.pem"           # trust only this CA for this account
# tls_fingerprints = ["sha256:AB:CD:..."]  # or pin the server's certificate
# connect_timeout = "30s"
# timeout = "2m"                           # longest wait for the server during a session
# greeting_timeout = "30s"                 # longest wait for the greeting or the TLS handshake
# pipelining = true                        # when the server announces PIPELINING
# pipeline_window = 64                     # commands in flight
# pipeline_window_bytes = "8 MiB"          # announced message bytes in flight
# delete_after_days = 90                   # free server space: see README (off by default)
"#
    )
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/popbackup/config.toml"), text)
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    const GOOD: &str = r#"
repository = "/var/backups/mail"
parallel_accounts = 2
checkpoint_size = "1 MiB"

[accounts.work]
host = "pop.example.org"
user = "alice@example.org"
password_command = "pass show mail/work"
tls_fingerprints = ["sha256:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF"]

[accounts.home]
host = "mail.example.net"
port = 1110
tls = "starttls"
user = "bob"
password_file = "secrets/home.pw"
auth = "APOP"
timeout = "5m"
pipeline_window = 8
"#;

    #[test]
    fn a_good_file() {
        let config = parse(GOOD).unwrap();
        assert_eq!(
            config.repository,
            Some(RepoSpec::Local(PathBuf::from("/var/backups/mail")))
        );
        assert_eq!(config.parallel_accounts, 2);
        assert_eq!(config.checkpoint_size, 1 << 20);
        assert_eq!(config.checkpoint_interval, DEFAULT_CHECKPOINT_INTERVAL);
        let names: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["home", "work"]);
        let home = &config.accounts[0];
        assert_eq!(
            (home.port, home.tls),
            (1110, crate::pop3::TlsMode::Starttls)
        );
        assert_eq!(home.auth, crate::pop3::AuthMethod::Apop);
        assert_eq!(
            home.secret,
            SecretSource::File(PathBuf::from("/etc/popbackup/secrets/home.pw"))
        );
        assert_eq!(home.timeout, Duration::from_secs(300));
        assert_eq!(home.server_options().session.window.commands, 8);
        let work = &config.accounts[1];
        assert_eq!(work.port, 995);
        assert_eq!(work.fingerprints.len(), 1);
        assert_eq!(work.secret.key(), "password_command");
        assert_eq!(
            config.select(&["work".into()]).unwrap()[0].host,
            "pop.example.org"
        );
        let err = config.select(&["play".into()]).unwrap_err().to_string();
        assert!(err.contains("home, work"), "{err}");
    }

    #[test]
    fn mistakes_name_file_line_and_key() {
        let cases: &[(&str, &str)] = &[
            (
                "[accounts.a]\nhost = \"h\"\nuser = \"u\"\npasword_env = \"X\"\n",
                "config.toml:4: unknown field `pasword_env`",
            ),
            (
                "[accounts.a]\nhost = \"h\"\nuser = \"u\"\npassword_env = \"X\"\nport = \"995\"\n",
                "config.toml:5: accounts.a.port: expected an integer from 1 to 65535",
            ),
            (
                "[accounts.a]\nhost = \"h\"\nuser = \"u\"\npassword_env = \"X\"\nport = 99999\n",
                "config.toml:5: accounts.a.port: 99999 is out of range",
            ),
            (
                "[accounts.a]\nhost = \"h\"\nuser = \"u\"\npassword_env = \"X\"\ntls = \"ssl\"\n",
                "config.toml:5: accounts.a.tls: \"ssl\" is not valid: expected one of \"implicit\"",
            ),
            (
                "[accounts.a]\nhost = \"h\"\nuser = \"u\"\npassword_env = \"X\"\ntls = \"none\"\n",
                "config.toml:5: accounts.a.tls: \"none\" would send the password in clear text",
            ),
            (
                "[accounts.a]\nhost = \"h\"\nuser = \"u\"\n",
                "accounts.a.password_command: no secret source",
            ),
            (
                "[accounts.a]\nhost = \"h\"\nuser = \"u\"\npassword_env = \"X\"\npassword_file = \"/p\"\n",
                "config.toml:5: accounts.a.password_file: give exactly one secret source",
            ),
            (
                "[accounts.a]\nuser = \"u\"\npassword_env = \"X\"\n",
                "accounts.a.host: is missing",
            ),
            (
                "[accounts.a]\nhost = \"h\"\nuser = \"u\"\npassword_env = \"X\"\ntimeout = \"soon\"\n",
                "config.toml:5: accounts.a.timeout: expected seconds",
            ),
            (
                "[accounts.a]\nhost = \"h\"\nuser = \"u\"\npassword_env = \"X\"\ntls_fingerprints = [\"AB:CD\"]\n",
                "config.toml:5: accounts.a.tls_fingerprints: \"AB:CD\" is not a SHA-256 fingerprint",
            ),
            (
                "repository = 5\n",
                "config.toml:1: repository: expected a string",
            ),
            (
                "parallel_accounts = 0\n",
                "config.toml:1: parallel_accounts: 0 is out of range",
            ),
            ("repository = \n", "config.toml:1:"),
        ];
        for (text, expected) in cases {
            let err = error(text);
            assert!(
                err.contains(expected),
                "config:\n{text}\nexpected {expected:?}\ngot {err:?}"
            );
        }
    }

    #[test]
    fn the_repository_password_has_one_source_that_other_commands_do_not_see() {
        let config = parse(
            "repository_password_env = \"REPO\"\n[accounts.a]\nhost = \"h\"\nuser = \"u\"\n\
             password_command = \"pass show a\"\n",
        )
        .unwrap();
        let password = config.repository_password.as_ref().unwrap();
        assert_eq!(password.source, SecretSource::Env("REPO".into()));
        assert_eq!(config.accounts[0].hidden_env, ["REPO"]);
        assert!(parse("").unwrap().repository_password.is_none());
        let err = parse("repository_password_env = \"A\"\nrepository_password_file = \"/p\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.toml:2: repository_password_file: give exactly one secret source"),
            "{err}"
        );
        let err = parse("repository_password_env = \"A=b\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not its value"), "{err}");
    }

    #[test]
    fn plaintext_with_explicit_consent() {
        let config = parse(
            "[accounts.lan]\nhost = \"10.0.0.2\"\nuser = \"u\"\npassword_env = \"X\"\n\
             tls = \"none\"\nallow_insecure = true\n",
        )
        .unwrap();
        let options = config.accounts[0].server_options();
        assert_eq!(options.port, 110);
        assert!(options.danger_allow_plaintext);
    }

    #[test]
    fn sample_names_the_repository_and_parses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let local = RepoSpec::Local(PathBuf::from("/var/backups/mail \"x\""));
        std::fs::write(&path, sample(&local)).unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.repository, Some(local));
        assert!(config.accounts.is_empty());
        assert!(matches!(
            config.select(&[]),
            Err(ConfigError::NoAccounts { .. })
        ));
        assert_eq!(
            resolve_repository(
                Some(&RepoSpec::Local(PathBuf::from("/r"))),
                &path,
                &mut |_| {}
            )
            .unwrap(),
            RepoLocation::Local(PathBuf::from("/r"))
        );
        let missing = dir.path().join("none.toml");
        assert!(matches!(
            resolve_repository(None, &missing, &mut |_| {}).unwrap_err(),
            ConfigError::NoRepository { .. }
        ));
        assert!(matches!(
            Config::load(&missing).unwrap_err(),
            ConfigError::Missing { .. }
        ));
    }

    #[test]
    fn the_examples_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config.toml");
        let config = Config::load(&path).unwrap();
        assert!(config.accounts.len() >= 2, "{config:?}");
    }

    #[test]
    fn a_bucket_repository_takes_its_settings_from_the_s3_table() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("s3-secret");
        std::fs::write(&secret, "s3cr3t-value\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "repository = \"s3://mail-backup/alice\"\n\
             [s3]\n\
             endpoint = \"http://127.0.0.1:3900/\"\n\
             region = \"garage\"\n\
             access_key_id = \"GK123\"\n\
             secret_access_key_file = \"s3-secret\"\n",
        )
        .unwrap();
        let location = resolve_repository(None, &path, &mut |_| {}).unwrap();
        let RepoLocation::S3(s3) = &location else {
            panic!("{location:?}")
        };
        assert_eq!(s3.bucket, "mail-backup");
        assert_eq!(s3.prefix, "alice");
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(s3.region, "garage");
        assert_eq!(s3.access_key_id, "GK123");
        assert_eq!(s3.secret_access_key.expose(), "s3cr3t-value");
        assert_eq!(location.to_string(), "s3://mail-backup/alice");
        // --repo names another bucket; the [s3] table still says how to reach the store.
        let other = RepoSpec::parse("s3://other-bucket", None).unwrap();
        let RepoLocation::S3(s3) = resolve_repository(Some(&other), &path, &mut |_| {}).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (s3.bucket.as_str(), s3.region.as_str()),
            ("other-bucket", "garage")
        );
    }

    #[test]
    fn mistakes_in_the_s3_table_are_named() {
        for (text, expected) in [
            (
                "[s3]\nsecret_access_key_env = \"K\"\n",
                "config.toml:1: s3.access_key_id: is missing",
            ),
            (
                "[s3]\naccess_key_id = \"GK\"\n",
                "config.toml:1: s3.secret_access_key_command: no secret key",
            ),
            (
                "[s3]\naccess_key_id = \"GK\"\nsecret_access_key_env = \"K\"\n\
                 secret_access_key_file = \"/f\"\n",
                "config.toml:4: s3.secret_access_key_file: give exactly one secret source, not \
                 secret_access_key_env and secret_access_key_file",
            ),
            (
                "[s3]\nendpoint = \"127.0.0.1:3900\"\n",
                "config.toml:2: s3.endpoint: `127.0.0.1:3900` is not a URL",
            ),
            ("[s3]\nsecret_access_key = \"x\"\n", "config.toml:"),
            (
                "repository = \"s3://Bad_Bucket\"\n",
                "config.toml:1: repository: `s3://Bad_Bucket`: `Bad_Bucket` is not a bucket name",
            ),
            (
                "repository = \"ftp://host/x\"\n",
                "config.toml:1: repository: `ftp://host/x`: only local paths and s3://",
            ),
        ] {
            let err = Config::parse(Path::new("config.toml"), text)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_bucket_without_settings_says_how_to_give_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "repository = \"s3://mail-backup\"\n").unwrap();
        let config = Config::load(&path).unwrap();
        // The AWS variables are the fallback; this test must not depend on the caller's.
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
            return;
        }
        let err = locate_repository(None, Some(&config), &path, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("s3://mail-backup")
                && err.contains("[s3]")
                && err.contains("AWS_ACCESS_KEY_ID"),
            "{err}"
        );
    }

    #[test]
    fn imports_name_local_folders() {
        let config = Config::parse(
            Path::new("/etc/popbackup/config.toml"),
            "[imports.inbox]\npath = \"maildir:Mail/inbox\"\n[imports.old]\npath = \"mbox:/srv/old\"\n",
        )
        .unwrap();
        assert_eq!(
            config.imports,
            [
                ImportConfig {
                    name: "inbox".into(),
                    source: "maildir:/etc/popbackup/Mail/inbox".into()
                },
                ImportConfig {
                    name: "old".into(),
                    source: "mbox:/srv/old".into()
                }
            ]
        );
        for (text, expected) in [
            ("[imports.a]\n", "config.toml:1: imports.a.path: is missing"),
            (
                "[imports.a]\npath = \"/x\"\n",
                "config.toml:2: imports.a.path: `/x`: write \"maildir:PATH\"",
            ),
            ("[imports.a]\nfolder = \"x\"\n", "config.toml:"),
        ] {
            let err = Config::parse(Path::new("config.toml"), text)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(expected), "{text:?}: {err}");
        }
    }
}
