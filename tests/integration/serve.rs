//! `popbackup serve`: real clients (Python's poplib, mpop, fetchmail and popbackup's own
//! snapshot) download what it offers over TLS and STLS, byte for byte; hostile clients get
//! bounded memory and time while others are served.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use popbackup::repo::MessageHash;

use crate::restore::popbackup;
use crate::snapshot::{Setup, stderr};
use crate::support::dovecot::{Dovecot, dovecot_retr_bytes};
use crate::support::fake_server::TestPki;
use crate::support::store::on_every_backend;
use crate::support::{corpus_messages, field_by_uidl};

/// A running `popbackup serve`, stopped with SIGINT (and its clean exit checked) on drop.
struct Serving {
    child: Child,
    port: u16,
    /// What serve printed first: where it listens.
    first_line: String,
}

impl Serving {
    /// Starts `command` (a `popbackup ... serve ...`) and waits for the line naming its port.
    fn start(mut command: Command) -> Serving {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let Some(port) = first
            .split(|c: char| c.is_whitespace() || c == '"')
            .find_map(|w| w.rsplit_once(':').and_then(|(_, p)| p.parse().ok()))
        else {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("serve did not start: {first:?} {err}");
        };
        Serving {
            child,
            port,
            first_line: first,
        }
    }

    /// Peak memory so far (VmHWM), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Stops it as Ctrl-C does; it must exit 0 within seconds.
    fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                self.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                assert_eq!(status.code(), Some(0), "serve after Ctrl-C: {err}");
                return err;
            }
            assert!(Instant::now() < deadline, "serve did not stop after Ctrl-C");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every message Python's poplib downloads (its lines joined with CRLF again, as they came):
/// UIDL -> SHA-256 of the bytes.
fn poplib_download(port: u16, ca: &Path, stls: bool, password: &str) -> HashMap<String, String> {
    let script = r#"
import hashlib, poplib, ssl, sys
port, ca, stls, password = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "stls", sys.argv[4]
context = ssl.create_default_context(cafile=ca)
if stls:
    box = poplib.POP3("localhost", port, timeout=30)
    box.stls(context)
else:
    box = poplib.POP3_SSL("localhost", port, context=context, timeout=30)
box.user("restore")
box.pass_(password)
uidls = {int(n): u for n, u in (l.decode().split() for l in box.uidl()[1])}
for n, uidl in sorted(uidls.items()):
    lines = box.retr(n)[1]
    print(uidl, hashlib.sha256(b"".join(l + b"\r\n" for l in lines)).hexdigest())
box.quit()
"#;
    let out = Command::new("python3")
        .args(["-c", script, &port.to_string()])
        .arg(ca)
        .args([if stls { "stls" } else { "tls" }, password])
        .output()
        .unwrap();
    assert!(out.status.success(), "poplib: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (u, h) = l.split_once(' ').unwrap();
            (u.to_string(), h.to_string())
        })
        .collect()
}

/// A stored manifest's messages (`ls --json --manifest`): UIDL -> SHA-256.
fn uidls_and_hashes(manifest: &serde_json::Value) -> HashMap<String, String> {
    field_by_uidl(manifest, "sha256")
        .into_iter()
        .map(|(uidl, hash)| (uidl, hash.as_str().unwrap().to_string()))
        .collect()
}

/// What a client saw (UIDL -> SHA-256) is the archive as restore selects it: each message
/// once (the corpus has identical messages under two UIDLs), under a UIDL Dovecot gave it.
fn assert_pop_view(
    got: &HashMap<String, String>,
    archived: &HashMap<String, String>,
    served: &HashSet<String>,
) {
    assert_eq!(got.len(), served.len(), "one UIDL per message");
    assert_eq!(&got.values().cloned().collect::<HashSet<_>>(), served);
    for (uidl, hash) in got {
        assert_eq!(archived.get(uidl), Some(hash), "UIDL {uidl}");
    }
}

fn password_file(dir: &Path, password: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("serve-password");
    std::fs::write(&path, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

on_every_backend! {
    /// A mailbox archived from Dovecot, served over TLS and STLS: poplib and mpop download
    /// every message byte for byte under Dovecot's UIDLs, fetchmail too, and popbackup's own
    /// snapshot of the served archive holds exactly the same messages.
    fn real_clients_download_everything_serve_offers(at: &TestRepo) {
        let Some(dovecot) = Dovecot::get() else {
            return;
        };
        let Some(corpus) = corpus_messages() else {
            return;
        };
        let user = if at.path().is_some() { "u51" } else { "u52" };
        let files: Vec<(String, &[u8])> = corpus[..200]
            .iter()
            .enumerate()
            .map(|(i, (_, b))| (format!("{i:05}"), b.as_slice()))
            .collect();
        dovecot.fill_maildir(user, files.iter().map(|(n, b)| (n.clone(), *b)));
        let setup = Setup::on(&dovecot, &[("server", user)], "", at);
        setup.json(&["snapshot"], 0);
        // What Dovecot sent: UIDL -> SHA-256, from the archive's own listing.
        let archived = uidls_and_hashes(&setup.json(&["ls", "latest", "--manifest"], 0));
        assert_eq!(archived.len(), files.len());
        let served: HashSet<String> = files
            .iter()
            .map(|(_, b)| MessageHash::of(&dovecot_retr_bytes(b)).to_hex())
            .collect();
        assert_eq!(archived.values().cloned().collect::<HashSet<_>>(), served);

        let password = "a long pass phrase";
        let secret = password_file(setup.dir.path(), password);
        let (cert, key) = (dovecot.server_cert(), dovecot.server_key());
        let start = |tls: &[&str]| {
            let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--password-file"];
            let secret = secret.to_str().unwrap();
            args.push(secret);
            args.extend_from_slice(&["--tls-cert", cert.to_str().unwrap()]);
            args.extend_from_slice(&["--tls-key", key.to_str().unwrap()]);
            args.extend_from_slice(tls);
            Serving::start(setup.command(&args))
        };

        // poplib over TLS, then over STLS.
        for tls in [&[][..], &["--stls"][..]] {
            let serving = start(tls);
            let got = poplib_download(serving.port, &dovecot.ca_file(), !tls.is_empty(), password);
            assert_pop_view(&got, &archived, &served);
            serving.stop();
        }

        // mpop over TLS and over STLS, into a Maildir: each file, CRs put back, is an archived
        // message; a second run finds nothing new by the UIDLs it kept.
        use std::os::unix::fs::PermissionsExt as _;
        for (name, tls) in [("tls", &[][..]), ("stls", &["--stls"][..])] {
            let serving = start(tls);
            let mpop_dir = setup.dir.path().join(format!("mpop-{name}"));
            for sub in ["new", "cur", "tmp"] {
                std::fs::create_dir_all(mpop_dir.join(sub)).unwrap();
            }
            let rc = setup.dir.path().join(format!("mpoprc-{name}"));
            std::fs::write(
                &rc,
                format!(
                    "account a\nhost localhost\nport {}\ntls on\ntls_starttls {}\n\
                     tls_trust_file {}\nuser restore\npasswordeval cat {}\nkeep on\n\
                     uidls_file {}\ndelivery maildir {}\nreceived_header off\n",
                    serving.port,
                    if tls.is_empty() { "off" } else { "on" },
                    dovecot.ca_file().display(),
                    secret.display(),
                    setup.dir.path().join(format!("mpop-uidls-{name}")).display(),
                    mpop_dir.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
            let mpop = || Command::new("mpop").arg("-q").arg("-C").arg(&rc).arg("a").output().unwrap();
            let out = mpop();
            assert!(out.status.success(), "mpop {name}: {}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
            let files: Vec<String> = std::fs::read_dir(mpop_dir.join("new"))
                .unwrap()
                .map(|e| {
                    let bytes = std::fs::read(e.unwrap().path()).unwrap();
                    MessageHash::of(&popbackup::mail::lf_to_crlf(&bytes)).to_hex()
                })
                .collect();
            let delivered: HashSet<String> = files.iter().cloned().collect();
            assert_eq!(files.len(), served.len(), "mpop {name} delivered every message once");
            assert_eq!(delivered, served, "mpop {name}'s files are the archived messages");
            let out = mpop();
            assert!(out.status.success(), "{}", stderr(&out));
            assert_eq!(std::fs::read_dir(mpop_dir.join("new")).unwrap().count(), served.len());
            serving.stop();
        }

        let serving = start(&[]);
        // fetchmail, into one BSMTP file: every message is there.
        let fetchmailrc = setup.dir.path().join("fetchmailrc");
        std::fs::write(
            &fetchmailrc,
            format!(
                "poll localhost service {} protocol pop3 uidl\n  user \"restore\" password \
                 \"{password}\" ssl sslcertfile \"{}\" sslcertck keep fetchall\n",
                serving.port,
                dovecot.ca_file().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fetchmailrc, std::fs::Permissions::from_mode(0o600)).unwrap();
        let bsmtp = setup.dir.path().join("bsmtp");
        let out = Command::new("fetchmail")
            .arg("-s")
            .arg("-f")
            .arg(&fetchmailrc)
            .arg("-i")
            .arg(setup.dir.path().join("fetchids"))
            .arg("--bsmtp")
            .arg(&bsmtp)
            .arg("--nosyslog")
            .env("HOME", setup.dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "fetchmail: {}", stderr(&out));
        let text = std::fs::read(&bsmtp).unwrap();
        // Each message is a MAIL FROM / RCPT TO / DATA transaction, its lines CRLF-ended.
        let messages = text
            .split(|b| *b == b'\n')
            .filter(|line| line.strip_suffix(b"\r").unwrap_or(line) == b"DATA")
            .count();
        assert_eq!(
            messages,
            served.len(),
            "fetchmail fetched every message: {}",
            String::from_utf8_lossy(&text[..text.len().min(600)])
        );

        // popbackup's own snapshot of the served archive: the same messages, the same UIDLs.
        let copy = setup.dir.path().join("copy");
        let config = setup.dir.path().join("copy.toml");
        std::fs::write(
            &config,
            format!(
                "repository = \"{}\"\n[accounts.served]\nhost = \"localhost\"\nport = {}\n\
                 tls = \"implicit\"\nca_file = \"{}\"\nuser = \"restore\"\n\
                 password_file = \"{}\"\n",
                copy.display(),
                serving.port,
                dovecot.ca_file().display(),
                secret.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        let ours = |args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_popbackup"))
                .arg("--config")
                .arg(&config)
                .args(args)
                .env("XDG_CONFIG_HOME", setup.dir.path())
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
            out.stdout
        };
        ours(&["init"]);
        ours(&["snapshot"]);
        let copied = uidls_and_hashes(
            &serde_json::from_slice(&ours(&["ls", "latest", "--json", "--manifest"])).unwrap(),
        );
        assert_pop_view(&copied, &archived, &served);
        let log = serving.stop();
        assert!(!log.contains(password), "the password is in serve's output");
    }
}

/// A client of `popbackup serve` speaking plain POP3 by hand, its replies read line by line.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // Generous: a busy machine must not fail the test; a hung server still does.
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line
    }

    fn send(&mut self, text: &str) {
        self.reader.get_mut().write_all(text.as_bytes()).unwrap();
    }

    fn command(&mut self, text: &str) -> String {
        self.send(&format!("{text}\r\n"));
        self.line()
    }

    fn login(port: u16, password: &str) -> Client {
        let mut client = Client::connect(port);
        let greeting = client.line();
        assert!(greeting.starts_with("+OK"), "{greeting}");
        assert!(client.command("USER restore").starts_with("+OK"));
        let reply = client.command(&format!("PASS {password}"));
        assert!(reply.starts_with("+OK"), "{reply}");
        client
    }

    /// A multi-line reply's data, dot-unstuffed, its line ends kept.
    fn multiline(&mut self) -> Vec<u8> {
        let mut data = Vec::new();
        loop {
            let mut line = Vec::new();
            self.reader.read_until(b'\n', &mut line).unwrap();
            assert!(line.ends_with(b"\r\n"), "a line of a reply ends with CRLF");
            if line == b".\r\n" {
                return data;
            }
            data.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
        }
    }

    /// Everything until the server closes the connection.
    fn rest(mut self) -> String {
        let mut rest = String::new();
        self.reader.read_to_string(&mut rest).unwrap();
        rest
    }
}

/// A Maildir of `small` small messages and one of about 20 MB whose lines begin with dots and
/// `From `, imported into a new local repository; returns the repository and the big
/// message's bytes.
fn repository_with_a_big_message(dir: &Path, small: usize) -> (std::path::PathBuf, Vec<u8>) {
    let maildir = dir.join("inbox");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    for i in 0..small {
        let text = format!(
            "From: a@example.org\r\nSubject: small {i}\r\nMessage-ID: <{i}@example.org>\r\n\r\n\
             body {i}\r\n.\r\n..two dots\r\n"
        );
        std::fs::write(maildir.join("new").join(format!("{i:03}.host")), text).unwrap();
    }
    let mut big = b"From: b@example.org\r\nSubject: big\r\n\r\n".to_vec();
    let mut n = 0u64;
    while big.len() < 20 << 20 {
        let line = match n % 5 {
            0 => format!(".{n:07} a line that begins with a dot, as the wire must stuff\r\n"),
            1 => format!("From {n:07} a line an mbox would quote\r\n"),
            2 => ".\r\n".to_string(),
            _ => format!("{n:07} {}\r\n", "x".repeat(66)),
        };
        big.extend_from_slice(line.as_bytes());
        n += 1;
    }
    std::fs::write(maildir.join("new").join("big.host"), &big).unwrap();
    let repo = dir.join("repo");
    let out = popbackup(&repo, &["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = popbackup(
        &repo,
        &["import", &format!("maildir:{}", maildir.display())],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    (repo, big)
}

fn serve_command(repo: &Path, password: &str, listen: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_popbackup"));
    command
        .arg("--repo")
        .arg(repo)
        .args(["serve", "--listen", listen, "--password-env", "SERVE_PW"])
        .args(extra)
        .env("SERVE_PW", password)
        .env("XDG_CONFIG_HOME", repo.parent().unwrap());
    command
}

/// Hostile and careless clients: a connection limit, an endless line, bare LFs, 10,000
/// pipelined commands, a client gone in the middle of a 20 MB message and one that stops
/// reading, wrong passwords, an idle client. Memory stays bounded, every other client is
/// served, and the 20 MB message still comes whole.
#[test]
fn hostile_clients_get_bounded_memory_and_time_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, big) = repository_with_a_big_message(dir.path(), 30);
    let password = "open sesame";
    let serving = Serving::start(serve_command(
        &repo,
        password,
        "127.0.0.1:0",
        &["--max-connections", "3", "--idle-timeout", "3"],
    ));
    let port = serving.port;

    // The limit first, while no other connection is open: the fourth is turned away.
    let held: Vec<Client> = (0..3).map(|_| Client::login(port, password)).collect();
    let mut refused = Client::connect(port);
    let reply = refused.line();
    assert!(reply.starts_with("-ERR [SYS/TEMP]"), "{reply}");
    assert_eq!(refused.rest(), "");
    drop(held);

    // Bare LFs work; the listing finds the big message.
    let mut sloppy = retry_connect(port);
    sloppy.send(&format!("USER restore\nPASS {password}\nSTAT\nLIST\n"));
    for _ in 0..4 {
        let reply = sloppy.line();
        assert!(reply.starts_with("+OK"), "{reply}");
    }
    let listing = String::from_utf8(sloppy.multiline()).unwrap();
    let (big_number, big_size) = listing
        .lines()
        .map(|l| {
            let (n, size) = l.split_once(' ').unwrap();
            (n.to_string(), size.parse::<usize>().unwrap())
        })
        .max_by_key(|(_, size)| *size)
        .unwrap();
    assert_eq!(big_size, big.len());
    assert_eq!(listing.lines().count(), 31);
    drop(sloppy);

    // A command line without end: refused with a reason, then closed.
    let mut endless = retry_connect(port);
    endless.send(&"A".repeat(100_000));
    endless
        .reader
        .get_ref()
        .shutdown(std::net::Shutdown::Write)
        .unwrap();
    assert_eq!(endless.line(), "-ERR command line too long; closing\r\n");
    assert_eq!(endless.rest(), "");

    // 10,000 commands in one go (written by a thread of their own, as the replies come back
    // while they are still being sent), every one answered in order.
    let mut pipelined = retry_connect_login(port, password);
    let mut writer = pipelined.reader.get_ref().try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut text = String::new();
        for i in 0..10_000 {
            text.push_str(if i % 2 == 0 { "LIST 1\r\n" } else { "NOOP\r\n" });
        }
        writer.write_all(text.as_bytes()).unwrap();
    });
    for i in 0..10_000 {
        let reply = pipelined.line();
        let want = if i % 2 == 0 { "+OK 1 " } else { "+OK\r\n" };
        assert!(reply.starts_with(want), "reply {i}: {reply}");
    }
    sender.join().unwrap();
    assert!(pipelined.command("QUIT").starts_with("+OK"));

    // One client leaves in the middle of the big message; one asks for it and stops reading.
    let mut gone = retry_connect_login(port, password);
    gone.send(&format!("RETR {big_number}\r\n"));
    let mut first = vec![0u8; 1 << 20];
    gone.reader.read_exact(&mut first).unwrap();
    drop(gone);
    let mut stalled = retry_connect_login(port, password);
    stalled.send(&format!("RETR {big_number}\r\n"));

    // Meanwhile another is served: a small message, then the big one whole.
    let mut served = retry_connect_login(port, password);
    assert!(served.command("RETR 1").starts_with("+OK"));
    let small = served.multiline();
    assert!(small.ends_with(b"\r\n.\r\n..two dots\r\n"), "{small:?}");
    let reply = served.command(&format!("RETR {big_number}"));
    assert_eq!(reply, format!("+OK {} octets\r\n", big.len()));
    let whole = served.multiline();
    assert!(whole == big, "the big message comes back byte for byte");
    let reply = served.command(&format!("TOP {big_number} 2"));
    assert!(reply.starts_with("+OK"));
    let top = served.multiline();
    assert_eq!(
        top,
        b"From: b@example.org\r\nSubject: big\r\n\r\n.0000000 a line that begins with a dot, \
          as the wire must stuff\r\nFrom 0000001 a line an mbox would quote\r\n"
    );
    assert!(served.command("QUIT").starts_with("+OK"));
    drop(stalled);

    let peak = serving.peak_rss_kib();
    assert!(peak < 64 * 1024, "serve's peak RSS {peak} KiB");

    // Wrong passwords: each refused, the third closes the connection.
    let mut guesser = retry_connect(port);
    for _ in 0..3 {
        assert!(guesser.command("USER restore").starts_with("+OK"));
        let reply = guesser.command("PASS guess");
        assert!(reply.starts_with("-ERR [AUTH]"), "{reply}");
    }
    assert_eq!(guesser.rest(), "");

    // An idle client is told and closed, not before its time.
    let mut idle = retry_connect_login(port, password);
    let since = Instant::now();
    let reply = idle.line();
    assert!(since.elapsed() >= Duration::from_secs(2), "closed too soon");
    assert_eq!(reply, "-ERR [SYS/TEMP] idle too long; closing\r\n");
    assert_eq!(idle.rest(), "");

    let log = serving.stop();
    assert!(!log.contains(password), "{log}");
    for why in [
        "over 512 bytes",
        "wrong passwords",
        "idle timeout",
        "too many connections",
    ] {
        assert!(log.contains(why), "the log names {why:?}: {log}");
    }
}

/// A connection past its greeting. Until the server has seen the clients before go (it may
/// still be closing them), a new one can be turned away by the connection limit; it is let in
/// within seconds.
fn retry_connect(port: u16) -> Client {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut client = Client::connect(port);
        let greeting = client.line();
        if greeting.starts_with("+OK") {
            return client;
        }
        assert!(
            greeting.starts_with("-ERR [SYS/TEMP]") && Instant::now() < deadline,
            "{greeting}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn retry_connect_login(port: u16, password: &str) -> Client {
    let mut client = retry_connect(port);
    assert!(client.command("USER restore").starts_with("+OK"));
    let reply = client.command(&format!("PASS {password}"));
    assert!(reply.starts_with("+OK"), "{reply}");
    client
}

/// With `--stls`, logging in needs TLS first, commands sent behind STLS before the handshake
/// (RFC 2595's injection) close the connection, and a client that does it right is served.
/// Plain text on an address other machines reach is refused at the start.
#[test]
fn stls_comes_before_the_password_and_cannot_be_injected() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, _) = repository_with_a_big_message(dir.path(), 3);
    let pki = TestPki::new(&["localhost"]);
    let (cert, key, ca) = (
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
        dir.path().join("ca.pem"),
    );
    std::fs::write(&cert, &pki.server_cert_pem).unwrap();
    std::fs::write(&key, &pki.server_key_pem).unwrap();
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let password = "open sesame";
    let tls = [
        "--stls",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let serving = Serving::start(serve_command(&repo, password, "127.0.0.1:0", &tls));

    let mut early = retry_connect(serving.port);
    let reply = early.command("USER restore");
    assert!(reply.starts_with("-ERR [PRIVACY]"), "{reply}");
    assert!(early.command("CAPA").starts_with("+OK"));
    let capabilities = String::from_utf8(early.multiline()).unwrap();
    assert!(capabilities.contains("STLS\r\n"), "{capabilities}");
    assert!(early.command("QUIT").starts_with("+OK"));

    let mut injector = retry_connect(serving.port);
    injector.send("STLS\r\nUSER restore\r\n");
    assert_eq!(
        injector.rest(),
        "",
        "no TLS begins behind injected commands"
    );

    // Done right, by Python's poplib: the whole mailbox, byte for byte.
    let got = poplib_download(serving.port, &ca, true, password);
    assert_eq!(got.len(), 4);
    let log = serving.stop();
    assert!(log.contains("commands sent after STLS"), "{log}");

    // Restore's filters choose what is served; with --json the first line says so as JSON.
    let mut command = serve_command(&repo, password, "127.0.0.1:0", &["--subject", "small 1"]);
    command.arg("--json");
    let serving = Serving::start(command);
    let started: serde_json::Value = serde_json::from_str(&serving.first_line).unwrap();
    assert_eq!(started["messages"], 1, "{started}");
    assert_eq!(started["listen"], format!("127.0.0.1:{}", serving.port));
    let mut client = retry_connect_login(serving.port, password);
    let reply = client.command("STAT");
    assert!(reply.starts_with("+OK 1 "), "{reply}");
    assert!(client.command("RETR 1").starts_with("+OK"));
    let message = String::from_utf8(client.multiline()).unwrap();
    assert!(message.contains("Subject: small 1\r\n"), "{message}");
    assert!(client.command("QUIT").starts_with("+OK"));
    serving.stop();

    // Plain text on 0.0.0.0 is a usage error that says what to do.
    let out = serve_command(&repo, password, "0.0.0.0:0", &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--allow-insecure"),
        "{}",
        stderr(&out)
    );
}

/// A client that keeps busy is still closed at the session timeout, told why.
#[test]
fn a_busy_client_is_closed_at_the_session_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, _) = repository_with_a_big_message(dir.path(), 2);
    let password = "open sesame";
    let serving = Serving::start(serve_command(
        &repo,
        password,
        "127.0.0.1:0",
        &["--session-timeout", "2"],
    ));
    let mut busy = retry_connect_login(serving.port, password);
    let since = Instant::now();
    let closed = loop {
        let reply = busy.command("NOOP");
        if reply != "+OK\r\n" {
            break reply;
        }
        assert!(since.elapsed() < Duration::from_secs(60), "never closed");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(since.elapsed() >= Duration::from_secs(1), "closed too soon");
    assert_eq!(closed, "-ERR [SYS/TEMP] session too long; closing\r\n");
    assert_eq!(busy.rest(), "");
    let log = serving.stop();
    assert!(log.contains("session timeout"), "{log}");
}
