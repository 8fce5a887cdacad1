//! A scripted POP3 server on loopback, for the faults a real server will not produce.
//!
//! A script is a list of [`Step`]s run in order against one connection. Every line the client
//! sends is recorded in the transcript, so tests can assert what was (and was not) sent — for
//! instance that no password left the client before TLS was verified.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// One thing the fake server does.
#[derive(Clone)]
pub enum Step {
    /// Send these bytes as they are.
    Send(Vec<u8>),
    /// Read one line; it must equal this (without CRLF), or the script fails.
    Expect(String),
    /// Read one line whatever it is.
    ReadLine,
    /// Fail the script if the client sends anything within this time (checks serial mode).
    ExpectSilence(Duration),
    /// Send these bytes again and again until the client hangs up or `max` bytes were sent.
    SendForever { chunk: Vec<u8>, max: u64 },
    /// Do nothing for this long, keeping the connection open.
    Stall(Duration),
    /// Run the TLS handshake as a server (after STLS, or at once for implicit TLS).
    StartTls,
    /// Close the connection.
    Close,
}

/// Shorthand: send a line with CRLF.
pub fn send(line: &str) -> Step {
    Step::Send(format!("{line}\r\n").into_bytes())
}

/// Shorthand: expect a line.
pub fn expect(line: &str) -> Step {
    Step::Expect(line.to_string())
}

/// Greeting, then CAPA answered with these capability lines.
pub fn greeting_and_capa(caps: &[&str]) -> Vec<Step> {
    let mut steps = vec![
        send("+OK fake POP3 server ready <1.2@fake>"),
        expect("CAPA"),
    ];
    steps.push(Step::Send(multiline("+OK capabilities follow", caps)));
    steps
}

/// A `+OK` status line followed by the given lines and the terminator.
pub fn multiline(status: &str, lines: &[&str]) -> Vec<u8> {
    let mut out = format!("{status}\r\n").into_bytes();
    for line in lines {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// USER/PASS login for `bob`/`secret`, then CAPA after login with these capabilities.
pub fn user_pass_login(caps_after: &[&str]) -> Vec<Step> {
    vec![
        expect("USER bob"),
        send("+OK"),
        expect("PASS secret"),
        send("+OK logged in"),
        expect("CAPA"),
        Step::Send(multiline("+OK", caps_after)),
    ]
}

/// What happened on the server side.
#[derive(Debug, Default, Clone)]
pub struct Transcript {
    /// Every line the client sent, in order, without CRLF.
    pub received: Vec<String>,
    /// Why the script stopped early, if it did.
    pub failure: Option<String>,
}

impl Transcript {
    pub fn received_any(&self, prefix: &str) -> bool {
        self.received.iter().any(|l| l.starts_with(prefix))
    }
}

/// A running fake server; `finish` waits for the script and returns the transcript.
pub struct FakeServer {
    pub port: u16,
    transcript: Arc<Mutex<Transcript>>,
    handle: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Starts a plain-TCP fake server that runs `script` on the first connection.
    pub fn start(script: Vec<Step>) -> FakeServer {
        FakeServer::start_with_tls(script, None)
    }

    /// Starts a fake server whose `StartTls` steps use this identity.
    pub fn start_with_tls(script: Vec<Step>, tls: Option<Arc<ServerConfig>>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let transcript = Arc::new(Mutex::new(Transcript::default()));
        let shared = transcript.clone();
        let handle = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut conn = FakeConn {
                stream: Stream::Plain(tcp),
                buf: Vec::new(),
            };
            let result = run_script(&mut conn, &script, &shared, tls);
            if let Err(e) = result {
                shared.lock().unwrap().failure.get_or_insert(e);
            }
        });
        FakeServer {
            port,
            transcript,
            handle: Some(handle),
        }
    }

    /// Waits for the script and asserts that it ran to its end as written.
    pub fn finish_ok(self) -> Transcript {
        let transcript = self.finish();
        assert!(
            transcript.failure.is_none(),
            "fake server script failed: {:?}",
            transcript.failure
        );
        transcript
    }

    /// Waits for the script to end and returns what the client sent.
    pub fn finish(mut self) -> Transcript {
        if let Some(h) = self.handle.take() {
            h.join().expect("fake server thread panicked");
        }
        self.transcript.lock().unwrap().clone()
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
    Gone,
}

struct FakeConn {
    stream: Stream,
    buf: Vec<u8>,
}

impl FakeConn {
    fn read_some(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 4096];
        let n = match &mut self.stream {
            Stream::Plain(s) => s.read(&mut chunk)?,
            Stream::Tls(s) => s.read(&mut chunk)?,
            Stream::Gone => 0,
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn read_line(&mut self) -> Result<String, String> {
        loop {
            if let Some(lf) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=lf).collect();
                let text = String::from_utf8_lossy(&line);
                return Ok(text.trim_end_matches(['\r', '\n']).to_string());
            }
            match self.read_some() {
                Ok(0) => return Err("client closed the connection".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("reading from the client: {e}")),
            }
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.stream {
            Stream::Plain(s) => s.write_all(bytes),
            Stream::Tls(s) => s.write_all(bytes).and_then(|_| s.flush()),
            Stream::Gone => Err(io::Error::other("closed")),
        }
    }

    fn set_read_timeout(&self, t: Duration) {
        let tcp = match &self.stream {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
            Stream::Gone => return,
        };
        tcp.set_read_timeout(Some(t)).unwrap();
    }
}

fn run_script(
    conn: &mut FakeConn,
    script: &[Step],
    transcript: &Mutex<Transcript>,
    tls: Option<Arc<ServerConfig>>,
) -> Result<(), String> {
    for step in script {
        match step {
            Step::Send(bytes) => conn.write_all(bytes).map_err(|e| format!("send: {e}"))?,
            Step::Expect(want) => {
                let got = conn.read_line()?;
                transcript.lock().unwrap().received.push(got.clone());
                if &got != want {
                    return Err(format!("expected {want:?}, got {got:?}"));
                }
            }
            Step::ReadLine => {
                let got = conn.read_line()?;
                transcript.lock().unwrap().received.push(got);
            }
            Step::ExpectSilence(wait) => {
                if !conn.buf.is_empty() {
                    return Err(format!(
                        "client sent {:?} before being answered",
                        String::from_utf8_lossy(&conn.buf)
                    ));
                }
                conn.set_read_timeout(*wait);
                let res = conn.read_some();
                conn.set_read_timeout(Duration::from_secs(20));
                match res {
                    Ok(0) => return Err("client closed the connection".into()),
                    Ok(_) => {
                        return Err(format!(
                            "client sent {:?} before being answered",
                            String::from_utf8_lossy(&conn.buf)
                        ));
                    }
                    Err(_) => {} // timed out: silence, as wanted
                }
            }
            Step::SendForever { chunk, max } => {
                let mut sent = 0u64;
                let deadline = Instant::now() + Duration::from_secs(60);
                while sent < *max && Instant::now() < deadline {
                    if conn.write_all(chunk).is_err() {
                        return Ok(()); // the client gave up, as it should
                    }
                    sent += chunk.len() as u64;
                }
                return Err(format!(
                    "client kept reading {sent} bytes of an endless response"
                ));
            }
            Step::Stall(d) => std::thread::sleep(*d),
            Step::StartTls => {
                let config = tls.clone().ok_or("StartTls step without a TLS identity")?;
                let Stream::Plain(tcp) = std::mem::replace(&mut conn.stream, Stream::Gone) else {
                    return Err("StartTls on a TLS stream".into());
                };
                // Plaintext pipelined after STLS by a client would be a bug; drop nothing here,
                // the TLS layer would reject it anyway.
                let mut tls_conn = ServerConnection::new(config).map_err(|e| e.to_string())?;
                let mut tcp = tcp;
                while tls_conn.is_handshaking() {
                    if let Err(e) = tls_conn.complete_io(&mut tcp) {
                        transcript.lock().unwrap().failure = Some(format!("handshake: {e}"));
                        return Ok(());
                    }
                }
                conn.stream = Stream::Tls(Box::new(StreamOwned::new(tls_conn, tcp)));
            }
            Step::Close => {
                conn.stream = Stream::Gone;
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A throwaway CA and a server certificate for `names`, generated in-process.
pub struct TestPki {
    pub ca_pem: String,
    pub server_config: Arc<ServerConfig>,
    pub server_cert_der: Vec<u8>,
    /// The server certificate and its key as PEM files take them (`serve --tls-cert/--tls-key`).
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

impl TestPki {
    pub fn new(names: &[&str]) -> TestPki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "fake test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let params = rcgen::CertificateParams::new(names).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        TestPki {
            ca_pem: ca_cert.pem(),
            server_config: server_config(cert.der(), &key),
            server_cert_der: cert.der().to_vec(),
            server_cert_pem: cert.pem(),
            server_key_pem: key.serialize_pem(),
        }
    }

    /// A server whose certificate is self-signed and marked `CA:TRUE`, as
    /// `openssl req -x509` makes by default; `ca_pem` is that certificate itself.
    pub fn self_signed_ca(names: &[&str]) -> TestPki {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "self-signed mail host");
        let cert = params.self_signed(&key).unwrap();
        TestPki {
            ca_pem: cert.pem(),
            server_config: server_config(cert.der(), &key),
            server_cert_der: cert.der().to_vec(),
            server_cert_pem: cert.pem(),
            server_key_pem: key.serialize_pem(),
        }
    }
}

/// A TLS server configuration presenting `cert` alone.
fn server_config(cert: &[u8], key: &rcgen::KeyPair) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    Arc::new(config)
}
