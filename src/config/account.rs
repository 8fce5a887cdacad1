//! One `[accounts.NAME]` table, validated.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::secret::SecretSource;
use super::value::Origin;
use super::{ConfigError, expand_path};
use crate::pop3::{
    AuthMethod, Credentials, Fingerprint, PipelineWindow, ServerOptions, SessionOptions, TlsMode,
};

/// An account to back up.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    /// The table name (`[accounts.work]` → `work`); snapshots are filed under it.
    pub name: String,
    /// `FILE:LINE` of the account's table, for errors found after loading (secrets).
    pub defined_at: String,
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub user: String,
    pub secret: SecretSource,
    pub auth: AuthMethod,
    pub ca_file: Option<PathBuf>,
    pub fingerprints: Vec<Fingerprint>,
    /// Allows `tls = "none"`: the password then crosses the network in clear text.
    pub allow_insecure: bool,
    pub connect_timeout: Duration,
    /// Longest wait for the server during the session.
    pub timeout: Duration,
    /// Longest wait for the greeting (or the TLS handshake).
    pub greeting_timeout: Duration,
    pub pipelining: bool,
    pub pipeline_window: PipelineWindow,
    /// zstd level for this account's new messages; the repository's level when unset.
    pub compression_level: Option<i32>,
    /// Delete messages on the server once they are this many days old and safely archived
    /// (see `retention::dele`); never when unset.
    pub delete_after_days: Option<u32>,
    /// Environment variables that hold some account's password (`password_env`): a
    /// `password_command` does not inherit them.
    pub hidden_env: Vec<String>,
}

impl Account {
    /// The connection options for the POP3 client.
    pub fn server_options(&self) -> ServerOptions {
        let mut options = ServerOptions::new(self.host.clone(), self.tls);
        options.port = self.port;
        options.ca_file = self.ca_file.clone();
        options.fingerprints = self.fingerprints.clone();
        options.danger_allow_plaintext = self.allow_insecure;
        options.connect_timeout = self.connect_timeout;
        options.io_timeout = self.timeout;
        options.greeting_timeout = self.greeting_timeout;
        options.session = SessionOptions {
            window: self.pipeline_window,
            pipelining: self.pipelining,
            ..SessionOptions::default()
        };
        options
    }

    /// Fetches the secret and builds the login credentials.
    pub fn credentials(&self, warn: &mut dyn FnMut(String)) -> Result<Credentials, ConfigError> {
        let secret = self.secret.resolve(
            &self.defined_at,
            &format!("accounts.{}.{}", self.name, self.secret.key()),
            &self.hidden_env,
            warn,
        )?;
        Ok(Credentials::new(self.user.clone(), secret, self.auth))
    }
}

/// The raw table: every value spanned, so errors can name their line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccount {
    host: Option<Spanned<toml::Value>>,
    port: Option<Spanned<toml::Value>>,
    tls: Option<Spanned<toml::Value>>,
    user: Option<Spanned<toml::Value>>,
    password_command: Option<Spanned<toml::Value>>,
    password_file: Option<Spanned<toml::Value>>,
    password_env: Option<Spanned<toml::Value>>,
    auth: Option<Spanned<toml::Value>>,
    ca_file: Option<Spanned<toml::Value>>,
    tls_fingerprints: Option<Spanned<toml::Value>>,
    allow_insecure: Option<Spanned<toml::Value>>,
    connect_timeout: Option<Spanned<toml::Value>>,
    timeout: Option<Spanned<toml::Value>>,
    greeting_timeout: Option<Spanned<toml::Value>>,
    pipelining: Option<Spanned<toml::Value>>,
    pipeline_window: Option<Spanned<toml::Value>>,
    pipeline_window_bytes: Option<Spanned<toml::Value>>,
    compression_level: Option<Spanned<toml::Value>>,
    delete_after_days: Option<Spanned<toml::Value>>,
}

const TLS_MODES: &[(&str, TlsMode)] = &[
    ("implicit", TlsMode::Implicit),
    ("starttls", TlsMode::Starttls),
    ("none", TlsMode::None),
];

const AUTH_METHODS: &[(&str, AuthMethod)] = &[
    ("auto", AuthMethod::Auto),
    ("user", AuthMethod::User),
    ("apop", AuthMethod::Apop),
    ("plain", AuthMethod::Plain),
    ("login", AuthMethod::Login),
    ("xoauth2", AuthMethod::Xoauth2),
    ("oauthbearer", AuthMethod::Oauthbearer),
];

/// zstd levels popbackup accepts (negative "fast" levels are not worth their size here).
pub const COMPRESSION_LEVELS: std::ops::RangeInclusive<i64> = 1..=22;

impl RawAccount {
    pub(super) fn validate(
        self,
        name: &str,
        table_offset: usize,
        origin: &Origin<'_>,
        base_dir: &std::path::Path,
    ) -> Result<Account, ConfigError> {
        let key = |k: &str| format!("accounts.{name}.{k}");
        let required = |field: Option<Spanned<toml::Value>>, k: &str, hint: &str| {
            field.ok_or_else(|| {
                origin.invalid(Some(table_offset), &key(k), format!("is missing; {hint}"))
            })
        };
        if name.is_empty() || name.chars().any(|c| c.is_control() || c == '/') {
            return Err(origin.invalid(
                Some(table_offset),
                &key(""),
                "account names must be non-empty and contain no `/` or control characters".into(),
            ));
        }
        let host = origin.string(
            &required(self.host, "host", "add `host = \"pop.example.org\"`")?,
            &key("host"),
        )?;
        let user = origin.string(
            &required(self.user, "user", "add `user = \"you@example.org\"`")?,
            &key("user"),
        )?;
        let tls = match &self.tls {
            Some(v) => origin.choice(v, &key("tls"), TLS_MODES)?,
            None => TlsMode::Implicit,
        };
        let port = match &self.port {
            Some(v) => origin.integer(v, &key("port"), 1..=65535)? as u16,
            None => tls.default_port(),
        };
        let auth = match &self.auth {
            Some(v) => origin.choice(v, &key("auth"), AUTH_METHODS)?,
            None => AuthMethod::Auto,
        };
        let allow_insecure = match &self.allow_insecure {
            Some(v) => origin.boolean(v, &key("allow_insecure"))?,
            None => false,
        };
        if tls == TlsMode::None && !allow_insecure {
            let at = self.tls.as_ref().map(|v| v.span().start);
            return Err(origin.invalid(
                at,
                &key("tls"),
                "\"none\" would send the password in clear text; use \"implicit\" or \
                 \"starttls\", or add `allow_insecure = true` if this network is trusted"
                    .into(),
            ));
        }

        let secret = super::secret::parse_source(
            origin,
            table_offset,
            &key,
            "password",
            [
                self.password_command.as_ref(),
                self.password_file.as_ref(),
                self.password_env.as_ref(),
            ],
            base_dir,
            "no secret source: add one of password_command = \"pass show mail/NAME\", \
             password_file = \"/path/only/you/can/read\" or password_env = \"VAR\" \
             (never the password itself)",
        )?;

        let ca_file = match &self.ca_file {
            Some(v) => Some(expand_path(&origin.string(v, &key("ca_file"))?, base_dir)),
            None => None,
        };
        let mut fingerprints = Vec::new();
        if let Some(v) = &self.tls_fingerprints {
            for text in origin.strings(v, &key("tls_fingerprints"))? {
                fingerprints.push(Fingerprint::parse(&text).map_err(|e| {
                    origin.invalid(Some(v.span().start), &key("tls_fingerprints"), e)
                })?);
            }
        }
        if tls == TlsMode::None && (ca_file.is_some() || !fingerprints.is_empty()) {
            return Err(origin.invalid(
                Some(table_offset),
                &key("tls"),
                "ca_file and tls_fingerprints need TLS, but tls = \"none\"".into(),
            ));
        }
        let defaults = ServerOptions::new(&host, tls);
        let connect_timeout = match &self.connect_timeout {
            Some(v) => origin.duration(v, &key("connect_timeout"))?,
            None => defaults.connect_timeout,
        };
        let timeout = match &self.timeout {
            Some(v) => origin.duration(v, &key("timeout"))?,
            None => defaults.io_timeout,
        };
        let greeting_timeout = match &self.greeting_timeout {
            Some(v) => origin.duration(v, &key("greeting_timeout"))?,
            None => defaults.greeting_timeout,
        };
        let pipelining = match &self.pipelining {
            Some(v) => origin.boolean(v, &key("pipelining"))?,
            None => true,
        };
        let mut pipeline_window = PipelineWindow::default();
        if let Some(v) = &self.pipeline_window {
            pipeline_window.commands =
                origin.integer(v, &key("pipeline_window"), 1..=1024)? as usize;
        }
        if let Some(v) = &self.pipeline_window_bytes {
            pipeline_window.bytes = origin.size(v, &key("pipeline_window_bytes"))?;
        }
        let compression_level = match &self.compression_level {
            Some(v) => {
                Some(origin.integer(v, &key("compression_level"), COMPRESSION_LEVELS)? as i32)
            }
            None => None,
        };
        let delete_after_days = match &self.delete_after_days {
            Some(v) => Some(origin.integer(v, &key("delete_after_days"), 0..=36_500)? as u32),
            None => None,
        };
        Ok(Account {
            name: name.to_string(),
            defined_at: format!("{}:{}", origin.path.display(), origin.line(table_offset)),
            host,
            port,
            tls,
            user,
            secret,
            auth,
            ca_file,
            fingerprints,
            allow_insecure,
            connect_timeout,
            timeout,
            greeting_timeout,
            pipelining,
            pipeline_window,
            compression_level,
            delete_after_days,
            hidden_env: Vec::new(),
        })
    }
}

/// The `accounts` table: names to raw tables.
pub(super) type RawAccounts = BTreeMap<String, Spanned<RawAccount>>;
