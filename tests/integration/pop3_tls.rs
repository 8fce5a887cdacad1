//! Trust: a wrong host name, an untrusted CA and a pin mismatch are refused before any
//! credential is sent; STLS that the server does not offer is an error, never a downgrade; and
//! plaintext injected before the STLS handshake is never read as a response.

use std::time::Duration;

use popbackup::pop3::{
    self, AuthMethod, Credentials, Fingerprint, Pop3Error, Secret, ServerOptions, TlsMode,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::support::dovecot::Dovecot;
use crate::support::fake_server::{FakeServer, Step, expect, greeting_and_capa, multiline, send};

fn bob() -> Credentials {
    Credentials::new("bob", Secret::new("secret"), AuthMethod::User)
}

fn fake_options(port: u16, host: &str, tls: TlsMode) -> ServerOptions {
    let mut options = ServerOptions::new(host, tls);
    options.port = port;
    options.connect_timeout = Duration::from_secs(5);
    options.io_timeout = Duration::from_secs(5);
    options
}

/// A fake implicit-TLS server for `localhost` that would accept bob if he got that far.
fn implicit_tls_server(pki: &crate::support::fake_server::TestPki) -> FakeServer {
    let mut script = vec![Step::StartTls];
    script.extend(greeting_and_capa(&["USER"]));
    script.extend([
        expect("USER bob"),
        send("+OK"),
        expect("PASS secret"),
        send("+OK"),
    ]);
    script.extend([expect("CAPA"), Step::Send(multiline("+OK", &["UIDL"]))]);
    FakeServer::start_with_tls(script, Some(pki.server_config.clone()))
}

fn write_temp(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

fn assert_refused_without_credentials(err: Pop3Error, server: FakeServer) {
    assert!(matches!(err, Pop3Error::Certificate { .. }), "{err:?}");
    let t = server.finish();
    assert!(t.received.is_empty(), "the client sent {:?}", t.received);
}

#[test]
fn fake_tls_accepts_the_right_ca_and_name() {
    let pki = crate::support::fake_server::TestPki::new(&["localhost"]);
    let ca = write_temp(&pki.ca_pem);
    let server = implicit_tls_server(&pki);
    let mut options = fake_options(server.port, "localhost", TlsMode::Implicit);
    options.ca_file = Some(ca.path().to_path_buf());
    pop3::open_session(&options, &bob()).unwrap();
    server.finish_ok();
}

#[test]
fn fake_tls_wrong_host_name_is_refused_before_credentials() {
    let pki = crate::support::fake_server::TestPki::new(&["mail.example.org"]);
    let ca = write_temp(&pki.ca_pem);
    let server = implicit_tls_server(&pki);
    let mut options = fake_options(server.port, "localhost", TlsMode::Implicit);
    options.ca_file = Some(ca.path().to_path_buf());
    let err = pop3::open_session(&options, &bob()).err().unwrap();
    assert!(
        err.to_string().contains("not valid for this host name"),
        "{err}"
    );
    assert_refused_without_credentials(err, server);
}

#[test]
fn fake_tls_untrusted_ca_is_refused_before_credentials() {
    let pki = crate::support::fake_server::TestPki::new(&["localhost"]);
    let server = implicit_tls_server(&pki);
    // No CA file: the platform's roots do not know this throwaway CA.
    let options = fake_options(server.port, "localhost", TlsMode::Implicit);
    let err = pop3::open_session(&options, &bob()).err().unwrap();
    assert!(
        err.to_string().contains("unknown certificate authority"),
        "{err}"
    );
    assert_refused_without_credentials(err, server);
}

#[test]
fn fake_tls_pin_mismatch_is_refused_before_credentials() {
    let pki = crate::support::fake_server::TestPki::new(&["localhost"]);
    let server = implicit_tls_server(&pki);
    let mut options = fake_options(server.port, "localhost", TlsMode::Implicit);
    options.fingerprints = vec![Fingerprint([7u8; 32])];
    let err = pop3::open_session(&options, &bob()).err().unwrap();
    assert!(err.to_string().contains("matches no pin"), "{err}");
    assert_refused_without_credentials(err, server);
}

#[test]
fn starttls_not_offered_fails_without_sending_credentials() {
    let mut script = greeting_and_capa(&["USER", "UIDL"]);
    script.extend([Step::ReadLine, Step::ReadLine]);
    let server = FakeServer::start(script);
    let options = fake_options(server.port, "localhost", TlsMode::Starttls);
    let err = pop3::open_session(&options, &bob()).err().unwrap();
    assert!(matches!(err, Pop3Error::StlsNotOffered), "{err:?}");
    let t = server.finish();
    assert_eq!(
        t.received,
        vec!["CAPA".to_string()],
        "only CAPA may have been sent"
    );
}

#[test]
fn plaintext_injected_before_the_stls_handshake_is_discarded() {
    let pki = crate::support::fake_server::TestPki::new(&["localhost"]);
    let ca = write_temp(&pki.ca_pem);
    let mut script = greeting_and_capa(&["STLS", "USER"]);
    script.extend([
        expect("STLS"),
        // A man in the middle appends a fake answer to the CAPA the client will send next.
        Step::Send(b"+OK begin TLS\r\n-ERR injected\r\n+OK\r\nINJECTED\r\n.\r\n".to_vec()),
        Step::StartTls,
        expect("CAPA"),
        Step::Send(multiline("+OK", &["USER", "UIDL"])),
        expect("USER bob"),
        send("+OK"),
        expect("PASS secret"),
        send("+OK"),
        expect("CAPA"),
        Step::Send(multiline("+OK", &["UIDL", "TOP"])),
    ]);
    let server = FakeServer::start_with_tls(script, Some(pki.server_config.clone()));
    let mut options = fake_options(server.port, "localhost", TlsMode::Starttls);
    options.ca_file = Some(ca.path().to_path_buf());
    let session = pop3::open_session(&options, &bob()).unwrap();
    assert!(!session.capabilities().has("INJECTED"));
    assert!(session.capabilities().top());
    server.finish_ok();
}

// ---- The same promises against the real Dovecot ----

fn dovecot_refusal(options: &ServerOptions, dovecot: &Dovecot) -> Pop3Error {
    pop3::open_session(options, &dovecot.credentials("u15", AuthMethod::Auto))
        .err()
        .expect("must be refused")
}

#[test]
fn dovecot_tls_and_stls_work_with_the_harness_ca() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    for tls in [TlsMode::Implicit, TlsMode::Starttls] {
        let session = pop3::open_session(
            &dovecot.options(tls),
            &dovecot.credentials("u16", AuthMethod::Auto),
        )
        .unwrap();
        assert!(session.capabilities().uidl());
        session.quit().unwrap();
    }
}

#[test]
fn dovecot_wrong_host_name_is_refused() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    for tls in [TlsMode::Implicit, TlsMode::Starttls] {
        let mut options = dovecot.options(tls);
        options.host = "127.0.0.2".into(); // Dovecot listens there; the certificate does not say so
        let err = dovecot_refusal(&options, &dovecot);
        assert!(
            matches!(&err, Pop3Error::Certificate { reason, .. } if reason.contains("host name")),
            "{err:?}"
        );
    }
}

#[test]
fn dovecot_untrusted_ca_is_refused() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    for tls in [TlsMode::Implicit, TlsMode::Starttls] {
        let mut options = dovecot.options(tls);
        options.ca_file = None;
        let err = dovecot_refusal(&options, &dovecot);
        assert!(
            matches!(&err, Pop3Error::Certificate { reason, .. } if reason.contains("unknown")),
            "{err:?}"
        );
        options.ca_file = Some(dovecot.other_ca_file());
        let err = dovecot_refusal(&options, &dovecot);
        assert!(matches!(&err, Pop3Error::Certificate { .. }), "{err:?}");
    }
}

#[test]
fn dovecot_pins_decide_alone() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    let cert = CertificateDer::from_pem_file(dovecot.server_cert()).unwrap();
    let right = Fingerprint::of_certificate(cert.as_ref());
    let mut options = dovecot.options(TlsMode::Implicit);
    options.ca_file = None;
    options.fingerprints = vec![Fingerprint([0xAB; 32])];
    let err = dovecot_refusal(&options, &dovecot);
    assert!(
        matches!(&err, Pop3Error::Certificate { reason, .. } if reason.contains("pin")),
        "{err:?}"
    );
    // The right pin is enough, even under a name the certificate does not carry.
    options.fingerprints = vec![Fingerprint([0xAB; 32]), right];
    options.host = "127.0.0.2".into();
    let session =
        pop3::open_session(&options, &dovecot.credentials("u17", AuthMethod::Auto)).unwrap();
    session.quit().unwrap();
}

#[test]
fn fake_tls_right_pin_is_accepted_whatever_the_name() {
    let pki = crate::support::fake_server::TestPki::new(&["mail.example.org"]);
    let server = implicit_tls_server(&pki);
    let mut options = fake_options(server.port, "localhost", TlsMode::Implicit);
    options.fingerprints = vec![Fingerprint::of_certificate(&pki.server_cert_der)];
    pop3::open_session(&options, &bob()).unwrap();
    server.finish_ok();
}

#[test]
fn a_self_signed_ca_certificate_named_in_ca_file_is_trusted_for_its_names() {
    let pki = crate::support::fake_server::TestPki::self_signed_ca(&["localhost"]);
    let ca = write_temp(&pki.ca_pem);
    let server = implicit_tls_server(&pki);
    let mut options = fake_options(server.port, "localhost", TlsMode::Implicit);
    options.ca_file = Some(ca.path().to_path_buf());
    let client = pop3::connect(&options).unwrap();
    let session = client.login(&bob()).map_err(|(e, _)| e).unwrap();
    drop(session);
    server.finish();

    // The same certificate under a name it does not carry is still refused.
    let server = implicit_tls_server(&pki);
    let mut options = fake_options(server.port, "127.0.0.1", TlsMode::Implicit);
    options.ca_file = Some(ca.path().to_path_buf());
    let err = pop3::connect(&options).err().unwrap();
    assert!(
        err.to_string().contains("not valid for this host name"),
        "{err}"
    );
    assert_refused_without_credentials(err, server);
}

#[test]
fn certificate_errors_are_in_words_with_the_fingerprint_to_pin() {
    // A self-signed CA:TRUE server certificate that the configuration does not name.
    let pki = crate::support::fake_server::TestPki::self_signed_ca(&["localhost"]);
    let other = crate::support::fake_server::TestPki::new(&["localhost"]);
    let ca = write_temp(&other.ca_pem);
    let server = implicit_tls_server(&pki);
    let mut options = fake_options(server.port, "localhost", TlsMode::Implicit);
    options.ca_file = Some(ca.path().to_path_buf());
    let err = pop3::connect(&options).err().unwrap();
    let text = err.to_string();
    let fingerprint = Fingerprint::of_certificate(&pki.server_cert_der).to_string();
    assert!(text.contains(&fingerprint), "{text}");
    // The printed form is one `tls_fingerprints` takes, and pinning it works.
    assert_eq!(
        Fingerprint::parse(&fingerprint).unwrap().to_string(),
        fingerprint
    );
    for internal in [
        "CaUsedAsEndEntity",
        "BadSignature",
        "UnknownIssuer",
        "Other(",
    ] {
        assert!(!text.contains(internal), "{text}");
    }
    assert_refused_without_credentials(err, server);
    let server = implicit_tls_server(&pki);
    let mut options = fake_options(server.port, "localhost", TlsMode::Implicit);
    options.fingerprints = vec![Fingerprint::parse(&fingerprint).unwrap()];
    pop3::connect(&options).unwrap();
    drop(server);
}
