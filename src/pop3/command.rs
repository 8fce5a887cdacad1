//! The wire form of POP3 commands.
//!
//! A [`Command`] renders to exactly the bytes sent, CRLF included, and can only be built from
//! arguments that contain no CR, LF or NUL: a user name such as `"bob\r\nDELE 1"` would
//! otherwise inject a command (rust-imap's `validate_str_noquote` guards the same door).

use std::fmt;

use super::auth::Secret;
use super::error::Pop3Error;

/// RFC 2449 section 4: a command line is at most 255 octets including CRLF.
pub const MAX_COMMAND_LINE: usize = 255;

/// One POP3 command. Secrets are rendered only by [`Command::to_wire`], never by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    Capa,
    Stls,
    User(String),
    Pass(Secret),
    Apop {
        user: String,
        digest: String,
    },
    /// `AUTH MECH [initial-response]`; the response is already base64 (or `=`).
    Auth {
        mechanism: String,
        initial: Option<Secret>,
    },
    /// A line sent in answer to a `+ ` continuation during AUTH (base64, or `*` to cancel).
    AuthContinue(Secret),
    Stat,
    List(Option<u32>),
    Uidl(Option<u32>),
    Top {
        msg: u32,
        lines: u32,
    },
    Retr(u32),
    /// Marks a message for deletion at QUIT. Sent only by the retention rules
    /// (`Session::dele`), never while reading.
    Dele(u32),
    Noop,
    Quit,
}

impl Command {
    /// `USER name`, rejecting characters that would end the line early.
    pub fn user(name: &str) -> Result<Command, Pop3Error> {
        check_arg(name, "the user name")?;
        Ok(Command::User(name.to_string()))
    }

    /// `PASS secret`.
    pub fn pass(secret: &Secret) -> Result<Command, Pop3Error> {
        check_arg(secret.expose(), "the password")?;
        Ok(Command::Pass(secret.clone()))
    }

    /// The command's name, safe to show in errors and logs (no arguments).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Apop { .. } => "APOP",
            Command::Auth { .. } | Command::AuthContinue(_) => "AUTH",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Uidl(_) => "UIDL",
            Command::Top { .. } => "TOP",
            Command::Retr(_) => "RETR",
            Command::Dele(_) => "DELE",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
        }
    }

    /// True for commands whose successful answer is a multi-line response.
    pub fn is_multiline(&self) -> bool {
        matches!(
            self,
            Command::Capa
                | Command::List(None)
                | Command::Uidl(None)
                | Command::Top { .. }
                | Command::Retr(_)
        )
    }

    /// The exact bytes to send, CRLF included.
    pub fn to_wire(&self) -> Vec<u8> {
        let line = match self {
            Command::Capa => "CAPA".to_string(),
            Command::Stls => "STLS".to_string(),
            Command::User(u) => format!("USER {u}"),
            Command::Pass(p) => format!("PASS {}", p.expose()),
            Command::Apop { user, digest } => format!("APOP {user} {digest}"),
            Command::Auth {
                mechanism,
                initial: None,
            } => format!("AUTH {mechanism}"),
            Command::Auth {
                mechanism,
                initial: Some(ir),
            } => {
                format!("AUTH {mechanism} {}", ir.expose())
            }
            Command::AuthContinue(s) => s.expose().to_string(),
            Command::Stat => "STAT".to_string(),
            Command::List(None) => "LIST".to_string(),
            Command::List(Some(n)) => format!("LIST {n}"),
            Command::Uidl(None) => "UIDL".to_string(),
            Command::Uidl(Some(n)) => format!("UIDL {n}"),
            Command::Top { msg, lines } => format!("TOP {msg} {lines}"),
            Command::Retr(n) => format!("RETR {n}"),
            Command::Dele(n) => format!("DELE {n}"),
            Command::Noop => "NOOP".to_string(),
            Command::Quit => "QUIT".to_string(),
        };
        let mut wire = line.into_bytes();
        wire.extend_from_slice(b"\r\n");
        wire
    }

    /// Appends the wire form to `buf` without an intermediate allocation for the hot commands.
    pub fn write_to(&self, buf: &mut Vec<u8>) {
        use std::io::Write as _;
        // Writing into a Vec cannot fail.
        let _ = match self {
            Command::Retr(n) => write!(buf, "RETR {n}\r\n"),
            Command::Top { msg, lines } => write!(buf, "TOP {msg} {lines}\r\n"),
            other => {
                buf.extend_from_slice(&other.to_wire());
                Ok(())
            }
        };
    }
}

/// Debug shows what is safe to log: never a password or SASL response.
impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::User(u) => write!(f, "USER {u}"),
            Command::Pass(_) => f.write_str("PASS <redacted>"),
            Command::Apop { user, .. } => write!(f, "APOP {user} <redacted>"),
            Command::Auth { mechanism, initial } => match initial {
                Some(_) => write!(f, "AUTH {mechanism} <redacted>"),
                None => write!(f, "AUTH {mechanism}"),
            },
            Command::AuthContinue(_) => f.write_str("<redacted SASL response>"),
            other => {
                let wire = other.to_wire();
                f.write_str(String::from_utf8_lossy(&wire).trim_end())
            }
        }
    }
}

/// Rejects an argument that would break out of its command line.
pub(crate) fn check_arg(value: &str, what: &'static str) -> Result<(), Pop3Error> {
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(Pop3Error::InvalidArgument { what });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms_are_exact() {
        assert_eq!(Command::Capa.to_wire(), b"CAPA\r\n");
        assert_eq!(Command::Retr(7).to_wire(), b"RETR 7\r\n");
        assert_eq!(Command::Top { msg: 3, lines: 0 }.to_wire(), b"TOP 3 0\r\n");
        assert_eq!(Command::Uidl(None).to_wire(), b"UIDL\r\n");
        assert_eq!(Command::List(Some(12)).to_wire(), b"LIST 12\r\n");
        assert_eq!(Command::user("bob").unwrap().to_wire(), b"USER bob\r\n");
        let pass = Command::pass(&Secret::new("s3 cret")).unwrap();
        assert_eq!(pass.to_wire(), b"PASS s3 cret\r\n");
        let mut buf = Vec::new();
        Command::Retr(42).write_to(&mut buf);
        Command::Top { msg: 1, lines: 0 }.write_to(&mut buf);
        Command::Noop.write_to(&mut buf);
        assert_eq!(buf, b"RETR 42\r\nTOP 1 0\r\nNOOP\r\n");
    }

    #[test]
    fn injection_is_refused_without_echoing_the_value() {
        let err = Command::user("bob\r\nDELE 1").unwrap_err();
        assert!(matches!(err, Pop3Error::InvalidArgument { .. }));
        assert!(!err.to_string().contains("DELE"));
        let err = Command::pass(&Secret::new("hunter2\nDELE 1")).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        assert!(Command::user("nul\0byte").is_err());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let pass = Command::pass(&Secret::new("hunter2")).unwrap();
        assert_eq!(format!("{pass:?}"), "PASS <redacted>");
        let auth = Command::Auth {
            mechanism: "PLAIN".into(),
            initial: Some(Secret::new("AGJvYgBodW50ZXIy")),
        };
        assert!(!format!("{auth:?}").contains("AGJvYg"));
        assert_eq!(format!("{:?}", Command::Retr(5)), "RETR 5");
    }
}
