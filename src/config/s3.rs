//! Where the repository is (`repository = "PATH"` or `"s3://BUCKET/prefix"`), and the `[s3]`
//! table: how to reach and sign in to the object store.
//!
//! The secret key follows the rules of account passwords (`secret_access_key_command`,
//! `_file` or `_env`; never in the file, argv, output or logs). Without an `[s3]` table the
//! usual AWS environment variables are used: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION` (or `AWS_DEFAULT_REGION`) and `AWS_ENDPOINT_URL`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::secret::SecretSource;
use super::value::Origin;
use super::{ConfigError, expand_path};
use crate::repo::location::DEFAULT_REGION;
use crate::repo::{RepoLocation, S3Location, S3Secret, S3Url};

/// What `repository` or `--repo` names, before the store's settings are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoSpec {
    Local(PathBuf),
    S3(S3Url),
}

impl RepoSpec {
    /// `s3://...`, or a path (`~` expanded; relative to `base_dir` when given).
    pub fn parse(text: &str, base_dir: Option<&Path>) -> Result<RepoSpec, String> {
        if let Some(url) = S3Url::parse(text) {
            return url.map(RepoSpec::S3);
        }
        if text.contains("://") {
            return Err(format!(
                "`{text}`: only local paths and s3://BUCKET/prefix URLs are repositories"
            ));
        }
        Ok(RepoSpec::Local(match base_dir {
            Some(base) => expand_path(text, base),
            None => super::expand_home(text)?,
        }))
    }

    /// For clap: `--repo PATH` or `--repo s3://BUCKET/prefix`.
    pub fn from_arg(text: &str) -> Result<RepoSpec, String> {
        RepoSpec::parse(text, None)
    }
}

impl std::fmt::Display for RepoSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RepoSpec::Local(path) => write!(f, "{}", path.display()),
            RepoSpec::S3(url) => write!(f, "{url}"),
        }
    }
}

/// The validated `[s3]` table.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `FILE:LINE` of the table, for errors found when the secret is fetched.
    pub defined_at: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret: SecretSource,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawS3 {
    endpoint: Option<Spanned<toml::Value>>,
    region: Option<Spanned<toml::Value>>,
    access_key_id: Option<Spanned<toml::Value>>,
    secret_access_key_command: Option<Spanned<toml::Value>>,
    secret_access_key_file: Option<Spanned<toml::Value>>,
    secret_access_key_env: Option<Spanned<toml::Value>>,
}

impl RawS3 {
    pub(super) fn validate(
        &self,
        table_offset: usize,
        origin: &Origin<'_>,
        base_dir: &Path,
    ) -> Result<S3Settings, ConfigError> {
        let key = |k: &str| format!("s3.{k}");
        let endpoint = match &self.endpoint {
            Some(v) => {
                let text = origin.string(v, "s3.endpoint")?;
                if !(text.starts_with("http://") || text.starts_with("https://")) {
                    return Err(origin.invalid(
                        Some(v.span().start),
                        "s3.endpoint",
                        format!(
                            "`{text}` is not a URL; write \"https://HOST[:PORT]\" (or http:// \
                             for a store on this machine)"
                        ),
                    ));
                }
                Some(text.trim_end_matches('/').to_string())
            }
            None => None,
        };
        let region = match &self.region {
            Some(v) => origin.string(v, "s3.region")?,
            None => DEFAULT_REGION.to_string(),
        };
        let access_key_id = match &self.access_key_id {
            Some(v) => origin.string(v, "s3.access_key_id")?,
            None => {
                return Err(origin.invalid(
                    Some(table_offset),
                    "s3.access_key_id",
                    "is missing; add the key id the store gave you (access_key_id = \"GK...\")"
                        .into(),
                ));
            }
        };
        let secret = super::secret::parse_source(
            origin,
            table_offset,
            &key,
            "secret_access_key",
            [
                self.secret_access_key_command.as_ref(),
                self.secret_access_key_file.as_ref(),
                self.secret_access_key_env.as_ref(),
            ],
            base_dir,
            "no secret key: add one of secret_access_key_file = \"/path/only/you/can/read\", \
             secret_access_key_command = \"pass show s3/backup\" or secret_access_key_env = \
             \"VAR\" (never the key itself)",
        )?;
        Ok(S3Settings {
            defined_at: format!("{}:{}", origin.path.display(), origin.line(table_offset)),
            endpoint,
            region,
            access_key_id,
            secret,
        })
    }
}

impl S3Settings {
    /// The repository `url` on the store these settings reach; fetches the secret key.
    pub fn location(
        &self,
        url: &S3Url,
        warn: &mut dyn FnMut(String),
    ) -> Result<S3Location, ConfigError> {
        let key = format!("s3.{}", self.secret.key_for("secret_access_key"));
        let secret = self.secret.resolve(&self.defined_at, &key, &[], warn)?;
        Ok(S3Location {
            bucket: url.bucket.clone(),
            prefix: url.prefix.clone(),
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: S3Secret::new(secret.expose()),
        })
    }
}

/// The repository `url` with the settings from the AWS environment variables, for a
/// configuration without an `[s3]` table.
fn from_environment(url: &S3Url, config_path: &Path) -> Result<S3Location, ConfigError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(access_key_id), Some(secret)) =
        (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
    else {
        return Err(ConfigError::NoS3Settings {
            path: config_path.into(),
            url: url.to_string(),
        });
    };
    Ok(S3Location {
        bucket: url.bucket.clone(),
        prefix: url.prefix.clone(),
        endpoint: var("AWS_ENDPOINT_URL").map(|e| e.trim_end_matches('/').to_string()),
        region: var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| DEFAULT_REGION.to_string()),
        access_key_id,
        secret_access_key: S3Secret::new(secret),
    })
}

/// Where `spec` is, with the `[s3]` settings of `config` (or the environment's) for a bucket.
pub fn locate(
    spec: &RepoSpec,
    s3: Option<&S3Settings>,
    config_path: &Path,
    warn: &mut dyn FnMut(String),
) -> Result<RepoLocation, ConfigError> {
    match spec {
        RepoSpec::Local(path) => Ok(RepoLocation::Local(path.clone())),
        RepoSpec::S3(url) => Ok(RepoLocation::S3(match s3 {
            Some(settings) => settings.location(url, warn)?,
            None => from_environment(url, config_path)?,
        })),
    }
}
