//! Credentials and the login exchanges: USER/PASS, APOP (RFC 1939), and SASL (RFC 5034) with
//! PLAIN, LOGIN, XOAUTH2 and OAUTHBEARER (RFC 7628).
//!
//! The builders here are pure; the exchange itself runs in `client.rs` through
//! [`SaslExchange`]. A [`Secret`] is wiped on drop and never shows up in `Debug` output; the
//! server's error text is scrubbed of the secret before it can reach an error message, in case a
//! server echoes what it was sent.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest as _, Md5};
use zeroize::Zeroize;

use super::command::{MAX_COMMAND_LINE, check_arg};
use super::error::Pop3Error;

/// A password or OAuth token. `Debug` prints nothing of it and the memory is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself; call only where it goes on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces every occurrence of the secret in `text` (a server's reply) with `<redacted>`.
    pub fn scrub(&self, text: &str) -> String {
        if self.0.len() < 3 {
            return text.to_string();
        }
        text.replace(&self.0, "<redacted>")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// SASL PLAIN if offered, else USER/PASS, else SASL LOGIN. Never APOP (MD5, weak).
    #[default]
    Auto,
    User,
    Apop,
    Plain,
    Login,
    Xoauth2,
    Oauthbearer,
}

impl AuthMethod {
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::Auto => "auto",
            AuthMethod::User => "user",
            AuthMethod::Apop => "apop",
            AuthMethod::Plain => "plain",
            AuthMethod::Login => "login",
            AuthMethod::Xoauth2 => "xoauth2",
            AuthMethod::Oauthbearer => "oauthbearer",
        }
    }
}

/// Who logs in, and with what.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: String,
    /// A password, or an OAuth access token for XOAUTH2/OAUTHBEARER.
    pub secret: Secret,
    pub method: AuthMethod,
}

impl Credentials {
    pub fn new(user: impl Into<String>, secret: Secret, method: AuthMethod) -> Credentials {
        Credentials {
            user: user.into(),
            secret,
            method,
        }
    }

    /// Rejects a user name or secret that would break the command line.
    pub fn validate(&self) -> Result<(), Pop3Error> {
        check_arg(&self.user, "the user name")?;
        check_arg(self.secret.expose(), "the password or token")
    }
}

/// The APOP digest: lower-case hex MD5 of the greeting's timestamp and the secret.
pub fn apop_digest(timestamp: &str, secret: &Secret) -> String {
    let mut md5 = Md5::new();
    md5.update(timestamp.as_bytes());
    md5.update(secret.expose().as_bytes());
    md5.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What a SASL mechanism sends: its initial response, and how it answers challenges.
#[derive(Debug, Clone)]
pub struct SaslExchange {
    pub mechanism: &'static str,
    /// Base64 initial response.
    pub initial: Secret,
    kind: SaslKind,
    username_b64: String,
    password_b64: Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SaslKind {
    Plain,
    Login,
    Xoauth2,
    Oauthbearer,
}

impl SaslExchange {
    /// PLAIN (RFC 4616): empty authorization id, user, password.
    pub fn plain(creds: &Credentials) -> SaslExchange {
        let mut raw = Vec::new();
        raw.push(0);
        raw.extend_from_slice(creds.user.as_bytes());
        raw.push(0);
        raw.extend_from_slice(creds.secret.expose().as_bytes());
        let initial = Secret::new(BASE64.encode(&raw));
        raw.zeroize();
        SaslExchange::new("PLAIN", initial, SaslKind::Plain, creds)
    }

    /// LOGIN: no initial response; answers the user name and password prompts in turn.
    pub fn login(creds: &Credentials) -> SaslExchange {
        SaslExchange::new("LOGIN", Secret::new(String::new()), SaslKind::Login, creds)
    }

    /// XOAUTH2 (Google, Microsoft): `user=U^Aauth=Bearer T^A^A`.
    pub fn xoauth2(creds: &Credentials) -> SaslExchange {
        let mut raw = format!(
            "user={}\x01auth=Bearer {}\x01\x01",
            creds.user,
            creds.secret.expose()
        );
        let initial = Secret::new(BASE64.encode(raw.as_bytes()));
        raw.zeroize();
        SaslExchange::new("XOAUTH2", initial, SaslKind::Xoauth2, creds)
    }

    /// OAUTHBEARER (RFC 7628): a GS2 header naming the user, then host, port and token.
    pub fn oauthbearer(creds: &Credentials, host: &str, port: u16) -> SaslExchange {
        // RFC 5801 section 4: ',' and '=' in the authzid are escaped.
        let user = creds.user.replace('=', "=3D").replace(',', "=2C");
        let mut raw = format!(
            "n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {}\x01\x01",
            creds.secret.expose()
        );
        let initial = Secret::new(BASE64.encode(raw.as_bytes()));
        raw.zeroize();
        SaslExchange::new("OAUTHBEARER", initial, SaslKind::Oauthbearer, creds)
    }

    fn new(
        mechanism: &'static str,
        initial: Secret,
        kind: SaslKind,
        creds: &Credentials,
    ) -> SaslExchange {
        SaslExchange {
            mechanism,
            initial,
            kind,
            username_b64: BASE64.encode(creds.user.as_bytes()),
            password_b64: Secret::new(BASE64.encode(creds.secret.expose().as_bytes())),
        }
    }

    /// True when the mechanism has an initial response to send.
    pub fn has_initial(&self) -> bool {
        !self.initial.expose().is_empty()
    }

    /// RFC 5034 section 4: the initial response goes on the AUTH line only while the line stays
    /// within 255 octets; otherwise it is sent after an empty `+ ` challenge.
    pub fn initial_fits_on_command_line(&self) -> bool {
        let line = "AUTH ".len() + self.mechanism.len() + 1 + self.initial.expose().len() + 2;
        line <= MAX_COMMAND_LINE
    }

    /// The answer to the `round`-th challenge after the initial response (0-based), given its
    /// base64 payload. `*` cancels the exchange (RFC 5034 section 4).
    pub fn answer(&self, round: usize, challenge: &str) -> Secret {
        match self.kind {
            SaslKind::Login => {
                let prompt = BASE64
                    .decode(challenge)
                    .map(|p| String::from_utf8_lossy(&p).to_ascii_lowercase())
                    .unwrap_or_default();
                // Servers send "Username:"/"Password:" prompts; a few send none at all, so fall
                // back to the order of the rounds.
                if prompt.starts_with("user") || (round == 0 && !prompt.starts_with("pass")) {
                    Secret::new(self.username_b64.clone())
                } else {
                    self.password_b64.clone()
                }
            }
            // After a failed bearer token the server sends an error challenge; the client must
            // answer (empty for XOAUTH2, %x01 for OAUTHBEARER) to receive the final -ERR.
            SaslKind::Xoauth2 => Secret::new(String::new()),
            SaslKind::Oauthbearer => Secret::new(BASE64.encode([1u8])),
            SaslKind::Plain => Secret::new("*".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(user: &str, secret: &str) -> Credentials {
        Credentials::new(user, Secret::new(secret), AuthMethod::Auto)
    }

    #[test]
    fn apop_matches_rfc1939_example() {
        let digest = apop_digest(
            "<1896.697170952@dbc.mtview.ca.us>",
            &Secret::new("tanstaaf"),
        );
        assert_eq!(digest, "c4c9334bac560ecc979e58001b3e22fb");
    }

    #[test]
    fn plain_initial_response() {
        let ex = SaslExchange::plain(&creds("tim", "tanstaaftanstaaf"));
        assert_eq!(ex.initial.expose(), "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
        assert!(ex.initial_fits_on_command_line());
    }

    #[test]
    fn xoauth2_matches_google_example() {
        let ex = SaslExchange::xoauth2(&creds(
            "someuser@example.com",
            "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
        ));
        assert_eq!(
            ex.initial.expose(),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
    }

    #[test]
    fn long_tokens_move_to_a_continuation() {
        let token = "x".repeat(300);
        let ex = SaslExchange::xoauth2(&creds("user@example.com", &token));
        assert!(!ex.initial_fits_on_command_line());
        let ex = SaslExchange::oauthbearer(&creds("a,b=c", "tok"), "pop.example.org", 995);
        let raw = BASE64.decode(ex.initial.expose()).unwrap();
        assert_eq!(
            raw,
            b"n,a=a=2Cb=3Dc,\x01host=pop.example.org\x01port=995\x01auth=Bearer tok\x01\x01"
        );
        assert_eq!(ex.answer(0, "eyJzdGF0dXMiOiI0MDEifQ==").expose(), "AQ==");
    }

    #[test]
    fn login_answers_prompts() {
        let ex = SaslExchange::login(&creds("bob", "pw"));
        assert!(!ex.has_initial());
        assert_eq!(ex.answer(0, "VXNlcm5hbWU6").expose(), BASE64.encode("bob"));
        assert_eq!(ex.answer(1, "UGFzc3dvcmQ6").expose(), BASE64.encode("pw"));
        assert_eq!(ex.answer(0, "").expose(), BASE64.encode("bob"));
        assert_eq!(ex.answer(1, "").expose(), BASE64.encode("pw"));
    }

    #[test]
    fn secrets_stay_hidden() {
        let c = creds("bob", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(
            !format!("{:?}", SaslExchange::plain(&c))
                .contains(&SaslExchange::plain(&c).initial.expose().to_string())
        );
        assert_eq!(
            c.secret.scrub("-ERR bad pass hunter2"),
            "-ERR bad pass <redacted>"
        );
        assert!(creds("bob\r\n", "x").validate().is_err());
        assert!(creds("bob", "x\ny").validate().is_err());
    }
}
