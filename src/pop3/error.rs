//! Errors of the POP3 layer.
//!
//! Policy: every failure says what went wrong and during which step, but never carries a secret
//! or a user-supplied argument that might hold one (commands are named, not echoed). What the
//! server said is kept apart from transport failures so that the caller can decide between
//! "retry next run" ([`Pop3Error::is_temporary`]), "fix your credentials" and "fix your config".
//! A server reply is never folded into an `io::Error`.

use std::fmt;
use std::io;

/// A bracketed response code from RFC 2449 section 8 / RFC 3206.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespCode {
    /// `[IN-USE]`: another session holds the mailbox lock.
    InUse,
    /// `[LOGIN-DELAY]`: logged in too soon after the previous session.
    LoginDelay,
    /// `[SYS/TEMP]`: a temporary server-side problem.
    SysTemp,
    /// `[SYS/PERM]`: a permanent server-side problem.
    SysPerm,
    /// `[AUTH]`: the credentials were rejected.
    Auth,
    /// Any other code, upper-cased, without brackets.
    Other(String),
}

impl RespCode {
    /// Parses the inside of `[...]`; matching is case-insensitive as servers vary.
    pub fn parse(code: &str) -> RespCode {
        let upper = code.trim().to_ascii_uppercase();
        // Hierarchical codes (RFC 2449 section 8) may carry sub-levels; compare the known prefix.
        match upper.as_str() {
            "IN-USE" => RespCode::InUse,
            "LOGIN-DELAY" => RespCode::LoginDelay,
            "SYS/TEMP" => RespCode::SysTemp,
            "SYS/PERM" => RespCode::SysPerm,
            "AUTH" => RespCode::Auth,
            _ => RespCode::Other(upper),
        }
    }

    /// Codes after which the same run may succeed later without anybody changing anything.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            RespCode::InUse | RespCode::LoginDelay | RespCode::SysTemp
        )
    }
}

impl fmt::Display for RespCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespCode::InUse => f.write_str("IN-USE"),
            RespCode::LoginDelay => f.write_str("LOGIN-DELAY"),
            RespCode::SysTemp => f.write_str("SYS/TEMP"),
            RespCode::SysPerm => f.write_str("SYS/PERM"),
            RespCode::Auth => f.write_str("AUTH"),
            RespCode::Other(s) => f.write_str(s),
        }
    }
}

/// How a caller should react to an error: the CLI maps this to a sysexits code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try again next run (busy mailbox, timeout, dropped connection): exit 75.
    Temporary,
    /// The server could not be reached at all: exit 69.
    Unavailable,
    /// Credentials or the server's identity were refused: exit 77.
    Auth,
    /// Our own configuration or input is wrong: exit 78.
    Config,
    /// The server misbehaved or refused permanently: exit 69.
    Protocol,
}

/// Everything that can go wrong while talking POP3.
#[derive(Debug, thiserror::Error)]
pub enum Pop3Error {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot resolve host name {host:?}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("timed out {during} (no data from the server within the configured timeout)")]
    Timeout { during: String },
    #[error("connection closed by the server {during}")]
    Closed { during: String },
    #[error("I/O error {during}: {source}")]
    Io {
        during: String,
        #[source]
        source: io::Error,
    },
    #[error("TLS with {host} failed: {source}")]
    Tls {
        host: String,
        #[source]
        source: rustls::Error,
    },
    #[error(
        "the server's TLS certificate is not trusted for {host}: {reason}; \
         check `host`, `ca_file` or `tls_fingerprints` in the account's configuration"
    )]
    Certificate { host: String, reason: String },
    #[error("invalid TLS setting: {0}")]
    TlsConfig(String),
    #[error(
        "the server does not offer STLS, but the account requires `tls = \"starttls\"`; \
         nothing was sent (use `tls = \"implicit\"` if the server listens on port 995)"
    )]
    StlsNotOffered,
    /// The port speaks the other kind of POP3 than the account's `tls` says: a server that
    /// waits for a TLS handshake where a greeting was expected, or greets in plain text where
    /// a TLS handshake was expected.
    #[error(
        "{host}:{port} speaks {found}, but the account has `tls = \"{configured}\"`; set \
         `tls = \"{suggested}\"` (or use the port for {configured})"
    )]
    TlsModeMismatch {
        host: String,
        port: u16,
        /// What the port speaks: `implicit TLS` or `plain POP3`.
        found: &'static str,
        configured: &'static str,
        suggested: &'static str,
    },
    #[error("{}", server_message(command, code.as_ref(), text))]
    Server {
        /// The command's name only (`PASS`, `RETR`): arguments may hold secrets.
        command: &'static str,
        code: Option<RespCode>,
        text: String,
    },
    #[error("protocol error after {command}: {detail}")]
    Protocol {
        command: &'static str,
        detail: String,
    },
    #[error("the server sent a line longer than {limit} bytes after {command}")]
    LineTooLong { command: &'static str, limit: usize },
    #[error("the server's response to {command} exceeded the limit of {limit} bytes")]
    ResponseTooLarge { command: &'static str, limit: u64 },
    #[error("{what} must not contain CR, LF or NUL")]
    InvalidArgument { what: &'static str },
    #[error("the server does not support {what}")]
    Unsupported { what: String },
    #[error(
        "the session cannot be used after an earlier error broke the command/response sequence"
    )]
    Poisoned,
}

fn server_message(command: &str, code: Option<&RespCode>, text: &str) -> String {
    match code {
        Some(code) => format!("server refused {command}: [{code}] {text}"),
        None => format!("server refused {command}: {text}"),
    }
}

impl Pop3Error {
    /// What the caller should do about it.
    pub fn class(&self) -> ErrorClass {
        match self {
            Pop3Error::Connect { .. } | Pop3Error::Resolve { .. } => ErrorClass::Unavailable,
            Pop3Error::Timeout { .. } | Pop3Error::Closed { .. } | Pop3Error::Io { .. } => {
                ErrorClass::Temporary
            }
            Pop3Error::Tls { .. } | Pop3Error::Certificate { .. } | Pop3Error::StlsNotOffered => {
                ErrorClass::Auth
            }
            Pop3Error::TlsConfig(_)
            | Pop3Error::InvalidArgument { .. }
            | Pop3Error::TlsModeMismatch { .. } => ErrorClass::Config,
            Pop3Error::Server { code, command, .. } => match code {
                Some(c) if c.is_temporary() => ErrorClass::Temporary,
                Some(RespCode::Auth) => ErrorClass::Auth,
                Some(_) => ErrorClass::Protocol,
                // Without RESP-CODES a refused login is the best guess for PASS/AUTH/APOP.
                None if matches!(*command, "PASS" | "AUTH" | "APOP" | "USER") => ErrorClass::Auth,
                None => ErrorClass::Protocol,
            },
            Pop3Error::Protocol { .. }
            | Pop3Error::LineTooLong { .. }
            | Pop3Error::ResponseTooLarge { .. }
            | Pop3Error::Unsupported { .. }
            | Pop3Error::Poisoned => ErrorClass::Protocol,
        }
    }

    /// What kind of failure this is, for the layers above.
    pub fn kind(&self) -> crate::failure::FailureKind {
        use crate::failure::FailureKind;
        match self.class() {
            ErrorClass::Temporary => FailureKind::Temporary,
            ErrorClass::Unavailable | ErrorClass::Protocol => FailureKind::Unavailable,
            ErrorClass::Auth => FailureKind::Auth,
            ErrorClass::Config => FailureKind::Config,
        }
    }

    /// True when retrying on the next run may succeed without any change (exit 75).
    pub fn is_temporary(&self) -> bool {
        self.class() == ErrorClass::Temporary
    }

    /// The server's response code, if the error is a `-ERR [CODE]`.
    pub fn resp_code(&self) -> Option<&RespCode> {
        match self {
            Pop3Error::Server { code, .. } => code.as_ref(),
            _ => None,
        }
    }

    /// Classifies an I/O error raised while `during` something.
    pub(crate) fn io(during: impl Into<String>, source: io::Error) -> Pop3Error {
        let during = during.into();
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Pop3Error::Timeout { during },
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Pop3Error::Closed { during },
            _ => match tls_error(&source) {
                Some(tls) => certificate_or_tls(&during, tls),
                None => Pop3Error::Io { during, source },
            },
        }
    }
}

fn tls_error(err: &io::Error) -> Option<rustls::Error> {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned()
}

fn certificate_or_tls(during: &str, err: rustls::Error) -> Pop3Error {
    let host = during.to_string();
    match err {
        rustls::Error::InvalidCertificate(reason) => Pop3Error::Certificate {
            host,
            reason: describe_certificate_error(&reason),
        },
        other => Pop3Error::Tls {
            host,
            source: other,
        },
    }
}

pub(crate) fn describe_certificate_error(err: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match err {
        C::UnknownIssuer => "it is signed by an unknown certificate authority".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "it is not valid for this host name".into()
        }
        C::Expired | C::ExpiredContext { .. } => "it has expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet".into(),
        C::Revoked => "it has been revoked".into(),
        C::ApplicationVerificationFailure => "its SHA-256 fingerprint matches no pin".into(),
        C::BadSignature => "its signature does not verify: it was not issued by the \
                            certificate authority it names, or it was altered"
            .into(),
        C::BadEncoding => "it is malformed".into(),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "it is not meant for a server (its extended key usage does not allow it)".into()
        }
        C::UnsupportedSignatureAlgorithmContext { .. }
        | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "it is signed with an algorithm that is not accepted".into()
        }
        C::UnknownRevocationStatus => "its revocation status is unknown".into(),
        C::Other(other) => match other.0.downcast_ref::<webpki::Error>() {
            Some(webpki::Error::CaUsedAsEndEntity) => {
                "it is a CA certificate (CA:TRUE), not a server certificate; if it is the \
                 server's own self-signed certificate, name that certificate in `ca_file` or \
                 pin it in `tls_fingerprints`"
                    .into()
            }
            Some(webpki::Error::EndEntityUsedAsCa) => {
                "its chain uses a server certificate as a certificate authority".into()
            }
            Some(webpki::Error::PathLenConstraintViolated) => {
                "its chain is longer than a certificate authority in it allows".into()
            }
            Some(webpki::Error::NameConstraintViolation) => {
                "a certificate authority in its chain may not issue for this name".into()
            }
            _ => format!("it was refused ({other})"),
        },
        other => format!("it was refused ({other:?})"),
    }
}
