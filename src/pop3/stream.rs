//! Getting a [`Client`] on the wire: TCP with timeouts, implicit TLS (RFC 8314) or STLS
//! (RFC 2595), and the server's identity checked before a single credential is sent.
//!
//! Trust, in order of precedence:
//! 1. `tls_fingerprints`: the server's end-entity certificate must have one of these SHA-256
//!    fingerprints; chain and name are not checked (the pin is the identity — the way to trust a
//!    self-signed server).
//! 2. `ca_file`: the chain must lead to a certificate in this PEM file, and the name must match.
//! 3. Otherwise the platform's trust store (rustls-platform-verifier), falling back to the
//!    Mozilla roots bundled in webpki-roots when the platform has none.
//!
//! TLS 1.2 is the minimum; STLS is never opportunistic.

use std::io::{self, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
    StreamOwned,
};
use sha2::{Digest as _, Sha256};

use super::client::{Client, SessionOptions};
use super::error::Pop3Error;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (port 995).
    Implicit,
    /// Plain TCP, then STLS; refused if the server does not offer it.
    Starttls,
    /// No TLS at all; allowed only with `danger_allow_plaintext`.
    None,
}

impl TlsMode {
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::Implicit => 995,
            TlsMode::Starttls | TlsMode::None => 110,
        }
    }
}

/// A SHA-256 certificate fingerprint pin.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Parses `sha256:AB:CD:...`, `AB:CD:...` or plain hex, in either case.
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        let t = text.trim();
        let t = match t.get(..7) {
            Some(prefix) if prefix.eq_ignore_ascii_case("sha256:") => &t[7..],
            _ => t,
        };
        let hex: String = t.chars().filter(|c| *c != ':').collect();
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "{text:?} is not a SHA-256 fingerprint (expected 32 hex bytes, like sha256:AB:CD:...)"
            ));
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(Fingerprint(out))
    }

    /// The fingerprint of a DER certificate.
    pub fn of_certificate(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sha256:")?;
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub ca_file: Option<PathBuf>,
    pub fingerprints: Vec<Fingerprint>,
    /// Required for [`TlsMode::None`]: the caller has decided plaintext is acceptable.
    pub danger_allow_plaintext: bool,
    pub connect_timeout: Duration,
    /// Longest wait for any read or write on the connection.
    pub io_timeout: Duration,
    /// Longest wait for the server's greeting (or, with implicit TLS, for the handshake).
    /// Kept apart from `io_timeout`: a server that says nothing at first is usually one that
    /// waits for a TLS handshake, and a night's run should say so in seconds, not minutes.
    pub greeting_timeout: Duration,
    pub session: SessionOptions,
}

impl ServerOptions {
    pub fn new(host: impl Into<String>, tls: TlsMode) -> ServerOptions {
        ServerOptions {
            host: host.into(),
            port: tls.default_port(),
            tls,
            ca_file: None,
            fingerprints: Vec::new(),
            danger_allow_plaintext: false,
            connect_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(120),
            greeting_timeout: Duration::from_secs(30),
            session: SessionOptions::default(),
        }
    }
}

/// A plain or TLS-protected TCP stream.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, BufferedTcp>>),
}

/// The TCP stream under TLS, read through a buffer. rustls asks its socket for at most 4 KiB
/// at a time, and a full TLS record is a little more, so a record often took two or three
/// `recvfrom` calls (17,055 for a full snapshot of 77 MB of small mail); from the buffer, one
/// call brings in whatever the kernel holds, up to 64 KiB (1,821 calls).
pub struct BufferedTcp(BufReader<TcpStream>);

/// What [`BufferedTcp`] reads ahead.
const TLS_READ_BUFFER: usize = 64 * 1024;

impl BufferedTcp {
    fn new(tcp: TcpStream) -> BufferedTcp {
        BufferedTcp(BufReader::with_capacity(TLS_READ_BUFFER, tcp))
    }
}

impl Read for BufferedTcp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for BufferedTcp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.get_mut().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.get_mut().flush()
    }
}

impl Transport {
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

/// Connects, secures the connection as configured, reads the greeting and asks CAPA.
/// Nothing but CAPA and STLS is sent before the server's identity has been verified.
pub fn connect(options: &ServerOptions) -> Result<Client<Transport>, Pop3Error> {
    if options.tls == TlsMode::None && !options.danger_allow_plaintext {
        return Err(Pop3Error::TlsConfig(
            "plaintext POP3 sends the password unprotected; set `allow_insecure = true` if that is really wanted".into(),
        ));
    }
    // Build the TLS configuration first: a bad CA file is reported before any connection.
    let tls = match options.tls {
        TlsMode::None => None,
        _ => Some(tls_config(options)?),
    };
    let tls = tls.map(|(config, seen)| TlsSetup { config, seen });
    let tcp = connect_tcp(options)?;
    let mut client = match (options.tls, tls) {
        (TlsMode::Implicit, Some(tls)) => {
            set_read_timeout(&tcp, options.greeting_timeout)?;
            let stream = handshake(tcp, &tls, options)?;
            set_read_timeout(stream.get_ref().0.get_ref(), options.io_timeout)?;
            Client::greet(Transport::Tls(Box::new(stream)), options.session)?
        }
        (TlsMode::Starttls, Some(tls)) => {
            wait_for_greeting(&tcp, options)?;
            let plain = Client::greet(Transport::Plain(tcp), options.session)?;
            let (transport, greeting, _discarded) = plain.stls()?;
            let Transport::Plain(tcp) = transport else {
                return Err(Pop3Error::TlsConfig(
                    "STLS on a connection that is already TLS".into(),
                ));
            };
            let stream = handshake(tcp, &tls, options)?;
            Client::resume_after_stls(Transport::Tls(Box::new(stream)), greeting, options.session)?
        }
        _ => {
            wait_for_greeting(&tcp, options)?;
            Client::greet(Transport::Plain(tcp), options.session)?
        }
    };
    client.set_server(&options.host, options.port);
    Ok(client)
}

/// How long a plain connection waits for the greeting before it asks, on a second
/// connection, whether the port is waiting for a TLS handshake instead.
const TLS_PROBE_AFTER: Duration = Duration::from_secs(3);

/// Waits until the server has sent something on a plain connection (its greeting), without
/// reading it. A server silent for [`TLS_PROBE_AFTER`] is probed on a second connection: if
/// it answers a TLS ClientHello, the account's `tls` is wrong, which is said at once.
/// Otherwise the wait goes on, up to the greeting timeout.
fn wait_for_greeting(tcp: &TcpStream, options: &ServerOptions) -> Result<(), Pop3Error> {
    let during = "waiting for the server's greeting";
    let first = TLS_PROBE_AFTER.min(options.greeting_timeout);
    let waited = |timeout: Duration| -> Result<bool, Pop3Error> {
        set_read_timeout(tcp, timeout)?;
        match tcp.peek(&mut [0u8; 1]) {
            Ok(0) => Err(Pop3Error::Closed {
                during: during.into(),
            }),
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(Pop3Error::io(during, e)),
        }
    };
    let mut greeted = waited(first)?;
    if !greeted {
        if speaks_tls(options) {
            return Err(Pop3Error::TlsModeMismatch {
                host: options.host.clone(),
                port: options.port,
                found: "implicit TLS (it waits for a TLS handshake and sends no greeting)",
                configured: tls_name(options.tls),
                suggested: "implicit",
            });
        }
        let rest = options.greeting_timeout.saturating_sub(first);
        greeted = !rest.is_zero() && waited(rest)?;
    }
    if !greeted {
        return Err(Pop3Error::Timeout {
            during: format!(
                "waiting for the server's greeting (nothing within {} s)",
                options.greeting_timeout.as_secs()
            ),
        });
    }
    set_read_timeout(tcp, options.io_timeout)
}

/// Whether the server answers a TLS ClientHello on a new connection with a TLS record
/// (a handshake or an alert) within [`TLS_PROBE_AFTER`].
fn speaks_tls(options: &ServerOptions) -> bool {
    let probe = || -> Option<bool> {
        let mut tcp = connect_tcp(options).ok()?;
        tcp.set_read_timeout(Some(TLS_PROBE_AFTER)).ok()?;
        let (config, _) = tls_config(options).ok()?;
        let name = ServerName::try_from(options.host.clone()).ok()?;
        let mut conn = ClientConnection::new(config, name).ok()?;
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).ok()?;
        tcp.write_all(&hello).ok()?;
        let mut head = [0u8; 2];
        tcp.read_exact(&mut head).ok()?;
        // A TLS record: content type handshake (22) or alert (21), then major version 3.
        Some(matches!(head, [0x16 | 0x15, 0x03]))
    };
    probe().unwrap_or(false)
}

fn tls_name(mode: TlsMode) -> &'static str {
    match mode {
        TlsMode::Implicit => "implicit",
        TlsMode::Starttls => "starttls",
        TlsMode::None => "none",
    }
}

fn set_read_timeout(tcp: &TcpStream, timeout: Duration) -> Result<(), Pop3Error> {
    // A zero timeout would mean "block forever" to the OS.
    let timeout = timeout.max(Duration::from_millis(1));
    tcp.set_read_timeout(Some(timeout))
        .map_err(|e| Pop3Error::io("setting up the connection", e))
}

fn connect_tcp(options: &ServerOptions) -> Result<TcpStream, Pop3Error> {
    let addrs = (options.host.as_str(), options.port)
        .to_socket_addrs()
        .map_err(|source| Pop3Error::Resolve {
            host: options.host.clone(),
            source,
        })?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, options.connect_timeout) {
            Ok(tcp) => {
                let during = || format!("setting up the connection to {addr}");
                tcp.set_read_timeout(Some(options.io_timeout))
                    .map_err(|e| Pop3Error::io(during(), e))?;
                tcp.set_write_timeout(Some(options.io_timeout))
                    .map_err(|e| Pop3Error::io(during(), e))?;
                // Commands are small and latency-bound: do not let Nagle hold them back.
                tcp.set_nodelay(true)
                    .map_err(|e| Pop3Error::io(during(), e))?;
                log::info!(
                    "connected to {} ({addr}), tls = {}",
                    options.host,
                    tls_name(options.tls)
                );
                return Ok(tcp);
            }
            Err(e) => last = Some((addr, e)),
        }
    }
    let (addr, source) = match last {
        Some((addr, e)) => (addr.to_string(), e),
        None => (
            format!("{}:{}", options.host, options.port),
            io::Error::new(io::ErrorKind::NotFound, "the name resolved to no address"),
        ),
    };
    Err(Pop3Error::Connect { addr, source })
}

/// Runs the TLS handshake to completion so that certificate errors surface here, before the
/// POP3 layer sends anything. A server that answers the ClientHello with a plain-text POP3
/// greeting is named as such.
fn handshake(
    tcp: TcpStream,
    tls: &TlsSetup,
    options: &ServerOptions,
) -> Result<StreamOwned<ClientConnection, BufferedTcp>, Pop3Error> {
    let host = options.host.as_str();
    let mut tcp = BufferedTcp::new(tcp);
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| Pop3Error::TlsConfig(format!("{host:?} is not a valid host name for TLS")))?;
    let mut conn =
        ClientConnection::new(tls.config.clone(), name).map_err(|source| Pop3Error::Tls {
            host: host.into(),
            source,
        })?;
    let mut recording = FirstBytes {
        inner: &mut tcp,
        seen: Vec::new(),
    };
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut recording) {
            let first = &recording.seen;
            if first.starts_with(b"+OK") || first.starts_with(b"-ERR") {
                return Err(Pop3Error::TlsModeMismatch {
                    host: host.to_string(),
                    port: options.port,
                    found: "plain POP3 (it sent a greeting where a TLS handshake was expected)",
                    configured: tls_name(options.tls),
                    suggested: "starttls",
                });
            }
            return Err(handshake_error(host, e, tls.seen.get()));
        }
    }
    if log::log_enabled!(log::Level::Info) {
        log::info!(
            "{host}:{}: {}, {}, server certificate {}",
            options.port,
            conn.protocol_version()
                .map_or_else(|| "TLS".into(), |v| format!("{v:?}")),
            conn.negotiated_cipher_suite()
                .map_or_else(String::new, |s| format!("{:?}", s.suite())),
            conn.peer_certificates()
                .and_then(|certs| certs.first())
                .map(|c| Fingerprint::of_certificate(c.as_ref()).to_string())
                .unwrap_or_else(|| "(none)".into())
        );
    }
    Ok(StreamOwned::new(conn, tcp))
}

/// A connection's TLS configuration, and the certificate its server showed.
struct TlsSetup {
    config: Arc<ClientConfig>,
    seen: SeenCertificate,
}

/// Passes a stream through, keeping the first bytes read: what a server sent instead of a
/// TLS handshake.
struct FirstBytes<'a> {
    inner: &'a mut BufferedTcp,
    seen: Vec<u8>,
}

impl Read for FirstBytes<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let room = 8usize.saturating_sub(self.seen.len()).min(n);
        self.seen.extend_from_slice(&buf[..room]);
        Ok(n)
    }
}

impl Write for FirstBytes<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn handshake_error(host: &str, err: io::Error, seen: Option<Fingerprint>) -> Pop3Error {
    let tls = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned();
    match tls {
        Some(rustls::Error::InvalidCertificate(reason)) => Pop3Error::Certificate {
            host: host.to_string(),
            reason: match seen {
                // The form `tls_fingerprints` takes: a user who has checked it out of band
                // can pin it.
                Some(fingerprint) => format!(
                    "{}; the certificate it showed has the fingerprint {fingerprint}",
                    super::error::describe_certificate_error(&reason)
                ),
                None => super::error::describe_certificate_error(&reason),
            },
        },
        Some(source) => Pop3Error::Tls {
            host: host.to_string(),
            source,
        },
        None => Pop3Error::io(format!("in the TLS handshake with {host}"), err),
    }
}

/// The rustls configuration for these options: TLS 1.2 and 1.3 only, with the verifier the
/// options ask for, and where the certificate the server shows will be noted.
fn tls_config(options: &ServerOptions) -> Result<(Arc<ClientConfig>, SeenCertificate), Pop3Error> {
    let provider = crate::tls::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Pop3Error::TlsConfig(e.to_string()))?;
    let mut ca_file = Vec::new();
    let verifier: Arc<dyn ServerCertVerifier> = if !options.fingerprints.is_empty() {
        Arc::new(PinnedVerifier {
            pins: options.fingerprints.clone(),
            provider,
        })
    } else if let Some(path) = &options.ca_file {
        let (roots, certs) = load_ca_file(path)?;
        ca_file = certs;
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| Pop3Error::TlsConfig(format!("CA file {}: {e}", path.display())))?
    } else {
        crate::tls::system_verifier(provider).map_err(|e| Pop3Error::TlsConfig(e.to_string()))?
    };
    let seen = SeenCertificate::default();
    let verifier = Arc::new(Verifier {
        inner: verifier,
        seen: seen.clone(),
        ca_file,
    });
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok((Arc::new(config), seen))
}

/// The fingerprint of the certificate a server showed, for the error that refuses it.
#[derive(Debug, Clone, Default)]
struct SeenCertificate(Arc<std::sync::Mutex<Option<Fingerprint>>>);

impl SeenCertificate {
    fn get(&self) -> Option<Fingerprint> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What every connection's TLS uses: notes the certificate the server showed (for the error
/// that refuses it), lets `inner` decide, and trusts a certificate of `ca_file` that is the
/// server's own. That last case is the self-signed certificate many small hosts use:
/// `openssl req -x509` marks it `CA:TRUE`, which WebPKI refuses as a server's own certificate;
/// naming it in `ca_file` is an explicit trust of exactly that certificate, as a pin is (its
/// host name is still checked).
#[derive(Debug)]
struct Verifier {
    inner: Arc<dyn ServerCertVerifier>,
    seen: SeenCertificate,
    /// The certificates of `ca_file`, which may be the server's own.
    ca_file: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.0.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Fingerprint::of_certificate(end_entity.as_ref()));
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let given = || {
            self.ca_file
                .iter()
                .any(|c| c.as_ref() == end_entity.as_ref())
        };
        match verdict {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)))
                if matches!(
                    other.0.downcast_ref::<webpki::Error>(),
                    Some(webpki::Error::CaUsedAsEndEntity)
                ) && given() =>
            {
                let refused = rustls::Error::InvalidCertificate;
                webpki::EndEntityCert::try_from(end_entity)
                    .map_err(|_| refused(rustls::CertificateError::BadEncoding))?
                    .verify_is_valid_for_subject_name(server_name)
                    .map_err(|_| refused(rustls::CertificateError::NotValidForName))?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn load_ca_file(path: &Path) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), Pop3Error> {
    let bad = |what: String| Pop3Error::TlsConfig(format!("CA file {}: {what}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    let mut roots = RootCertStore::empty();
    for cert in &certs {
        roots.add(cert.clone()).map_err(|e| bad(e.to_string()))?;
    }
    Ok((roots, certs))
}

/// Accepts exactly the certificates whose SHA-256 fingerprint is pinned. Handshake signatures
/// are still verified, so the server must hold the pinned certificate's private key.
#[derive(Debug)]
struct PinnedVerifier {
    pins: Vec<Fingerprint>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = Fingerprint::of_certificate(end_entity.as_ref());
        if self.pins.contains(&got) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_common_spellings() {
        let hex = "AB".repeat(32);
        let colons = vec!["ab"; 32].join(":");
        let a = Fingerprint::parse(&format!("sha256:{hex}")).unwrap();
        let b = Fingerprint::parse(&colons).unwrap();
        let c = Fingerprint::parse(&format!("SHA256:{}", colons.to_uppercase())).unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(a.0, [0xAB; 32]);
        assert!(a.to_string().starts_with("sha256:AB:AB:"));
        assert!(Fingerprint::parse("sha256:AB:CD").is_err());
        assert!(Fingerprint::parse(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn plaintext_needs_an_explicit_opt_in() {
        let options = ServerOptions::new("127.0.0.1", TlsMode::None);
        let err = connect(&options).err().unwrap();
        assert!(matches!(err, Pop3Error::TlsConfig(_)), "{err}");
    }

    #[test]
    fn a_missing_ca_file_is_reported_before_connecting() {
        let mut options = ServerOptions::new("127.0.0.1", TlsMode::Implicit);
        options.port = 1; // nothing listens there; the CA error must come first
        options.ca_file = Some("/nonexistent/ca.pem".into());
        let err = connect(&options).err().unwrap();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
