//! The configuration file (TOML): where it lives, the repository path, and the sample that
//! `popbackup init` writes. Account parsing and secret resolution come with `snapshot`.

use std::path::{Path, PathBuf};

/// Errors reading the configuration; they name the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error(
        "no repository given: pass --repo PATH, or set `repository = \"...\"` in {}",
        path.display()
    )]
    NoRepository { path: PathBuf },
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

/// The `repository` key of the configuration file, if the file exists and sets it.
pub fn repository_from_file(path: &Path) -> Result<Option<PathBuf>, ConfigError> {
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
    let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
        path: path.into(),
        message: e.to_string(),
    })?;
    match table.get("repository") {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(PathBuf::from(s))),
        Some(_) => Err(ConfigError::Invalid {
            path: path.into(),
            message: "`repository` must be a string (a path)".into(),
        }),
    }
}

/// The repository to use: `--repo` wins over the configuration's `repository`.
pub fn resolve_repository(
    cli_repo: Option<&Path>,
    config_path: &Path,
) -> Result<PathBuf, ConfigError> {
    if let Some(repo) = cli_repo {
        return Ok(repo.to_path_buf());
    }
    repository_from_file(config_path)?.ok_or_else(|| ConfigError::NoRepository {
        path: config_path.into(),
    })
}

/// The commented configuration `popbackup init` writes when there is none.
pub fn sample(repository: &Path) -> String {
    let repo = repository
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        r#"# popbackup configuration. Key names are an interface: keep them as they are.
# Documentation: README.md. Never put a password in this file.

repository = "{repo}"

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
"#
    )
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn sample_names_the_repository_and_parses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, sample(Path::new("/var/backups/mail \"x\""))).unwrap();
        assert_eq!(
            repository_from_file(&path).unwrap(),
            Some(PathBuf::from("/var/backups/mail \"x\""))
        );
        assert_eq!(
            resolve_repository(Some(Path::new("/r")), &path).unwrap(),
            PathBuf::from("/r")
        );
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "repository = 5\n").unwrap();
        let err = repository_from_file(&path).unwrap_err();
        assert!(err.to_string().contains("config.toml"), "{err}");
        std::fs::write(&path, "repository = \n").unwrap();
        assert!(
            repository_from_file(&path)
                .unwrap_err()
                .to_string()
                .contains("config.toml")
        );
        let missing = dir.path().join("none.toml");
        assert!(matches!(
            resolve_repository(None, &missing).unwrap_err(),
            ConfigError::NoRepository { .. }
        ));
    }
}
