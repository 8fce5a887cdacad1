//! Downloads a whole mailbox with popbackup's POP3 client and discards or counts the bytes:
//! the "raw pipelined RETR loop" that benchmarks use as the floor, and a quick way to see the
//! client work against a server.
//!
//! Usage: POP3_PASSWORD=... cargo run --release --example pop3_fetch -- \
//!            HOST PORT implicit|starttls USER [CA_FILE] [--serial]
//! The password comes from the environment, never from the command line.

use std::time::Instant;

use popbackup::pop3::{
    self, AuthMethod, Credentials, Fetch, Reply, Secret, ServerOptions, TlsMode,
};
use sha2::{Digest as _, Sha256};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let serial = args.iter().any(|a| a == "--serial");
    let args: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let [host, port, tls, user, rest @ ..] = args.as_slice() else {
        anyhow::bail!(
            "usage: POP3_PASSWORD=... pop3_fetch HOST PORT implicit|starttls USER [CA_FILE] [--serial]"
        );
    };
    let tls = match tls.as_str() {
        "implicit" => TlsMode::Implicit,
        "starttls" => TlsMode::Starttls,
        other => anyhow::bail!("unknown TLS mode {other:?}"),
    };
    let mut options = ServerOptions::new(host.as_str(), tls);
    options.port = port.parse()?;
    options.ca_file = rest.first().map(|p| p.into());
    options.session.pipelining = !serial;
    let password =
        std::env::var("POP3_PASSWORD").map_err(|_| anyhow::anyhow!("set POP3_PASSWORD"))?;
    let creds = Credentials::new(user.as_str(), Secret::new(password), AuthMethod::Auto);

    let started = Instant::now();
    let mut session = pop3::open_session(&options, &creds)?;
    let list = session.list()?;
    let requests: Vec<Fetch> = list.iter().map(|e| Fetch::retr(e.msg, e.size)).collect();
    let (mut messages, mut bytes) = (0u64, 0u64);
    let mut digest = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    session.fetch(&requests, |_, reply| -> std::io::Result<()> {
        if let Reply::Body(body) = reply {
            messages += 1;
            loop {
                let n = std::io::Read::read(body, &mut buf)?;
                if n == 0 {
                    break;
                }
                bytes += n as u64;
                if std::env::var_os("POP3_FETCH_HASH").is_some() {
                    digest.update(&buf[..n]);
                }
            }
        }
        Ok(())
    })?;
    session.quit()?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{messages} messages, {bytes} bytes in {secs:.2} s ({:.1} MB/s, pipelining {})",
        bytes as f64 / secs / 1e6,
        if serial { "off" } else { "on" }
    );
    Ok(())
}
