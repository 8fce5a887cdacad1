// The properties the fuzz targets check, shared with the test that replays their corpora and
// every input that once failed (`tests/integration/fuzz_regressions.rs`), so CI runs exactly
// what the fuzzer ran. Each function takes arbitrary bytes and panics only when a property
// fails; errors returned by the code under test are expected outcomes, not failures.
//
// Included with `include!`, so it names everything by full path and defines no module.

/// The password the fuzzed client logs in with: it must never appear in an error's text.
pub const FUZZ_PASSWORD: &str = "fuzz-Pa55word";

/// Arbitrary server bytes through the whole client: greeting, CAPA, login, STAT, UIDL, LIST,
/// pipelined RETR and TOP, NOOP, QUIT. The first byte picks the read chunking, the login
/// method and pipelining; the rest is what the "server" sends, then end of stream.
pub fn pop3_session(data: &[u8]) {
    use popbackup::pop3::{AuthMethod, Client, Credentials, Fetch, Reply, Secret, SessionOptions};
    use std::io::Read as _;

    let Some((&knobs, server)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(knobs & 0x07) * 3 + 1;
    let method = match (knobs >> 3) & 0x07 {
        0 => AuthMethod::Auto,
        1 => AuthMethod::User,
        2 => AuthMethod::Apop,
        3 => AuthMethod::Plain,
        4 => AuthMethod::Login,
        5 => AuthMethod::Xoauth2,
        6 => AuthMethod::Oauthbearer,
        _ => AuthMethod::Auto,
    };
    let mut options = SessionOptions {
        pipelining: knobs & 0x40 != 0,
        ..SessionOptions::default()
    };
    // Small caps, so that inputs of a few kB reach them.
    options.limits.max_status_line = 512;
    options.limits.max_listing_line = 256;
    options.limits.max_listing_bytes = 16 * 1024;
    options.limits.max_message_bytes = 8 * 1024;
    let stream = ScriptedServer {
        input: server,
        chunk,
        sent: Vec::new(),
    };
    let no_secret = |text: String| {
        assert!(
            !text.contains(FUZZ_PASSWORD),
            "the password leaked into an error: {text}"
        );
    };
    // Before login the client has not been given the password, so it cannot leak it.
    let Ok(client) = Client::greet(stream, options) else {
        return;
    };
    let creds = Credentials::new("fuzz", Secret::new(FUZZ_PASSWORD), method);
    let mut session = match client.login(&creds) {
        Ok(s) => s,
        Err((e, client)) => {
            no_secret(format!("{e} {e:?}"));
            client.quit();
            return;
        }
    };
    let mut errors = Vec::new();
    match session.stat() {
        Ok(_) => {}
        Err(e) => errors.push(format!("{e} {e:?}")),
    }
    let uidl = session.uidl();
    let list = session.list();
    let mut requests = Vec::new();
    match (&uidl, &list) {
        (Ok(u), Ok(l)) => {
            for entry in l.iter().take(16) {
                requests.push(Fetch::retr(entry.msg, entry.size));
            }
            if let Some(first) = u.first() {
                requests.push(Fetch::top(first.msg, 0));
            }
        }
        (Err(e), _) | (_, Err(e)) => errors.push(format!("{e} {e:?}")),
    }
    let mut delivered = 0u64;
    let fetched = session.fetch(&requests, |_, reply| -> std::io::Result<()> {
        if let Reply::Body(body) = reply {
            let mut buf = Vec::new();
            body.read_to_end(&mut buf)?;
            assert!(buf.len() as u64 <= 8 * 1024, "a body passed its cap");
            delivered += buf.len() as u64;
        }
        Ok(())
    });
    if let Err(e) = fetched {
        errors.push(format!("{e} {e:?}"));
    }
    if let Err(e) = session.noop() {
        errors.push(format!("{e} {e:?}"));
    }
    errors.into_iter().for_each(no_secret);
    let _ = delivered;
    let _ = session.quit();
}

/// The in-memory server: replays `input` in chunks of `chunk` bytes, then end of stream, and
/// checks what the client sends.
struct ScriptedServer<'a> {
    input: &'a [u8],
    chunk: usize,
    sent: Vec<u8>,
}

impl std::io::Read for ScriptedServer<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl std::io::Write for ScriptedServer<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sent.extend_from_slice(buf);
        // Every complete line the client sends is a command of ours (or a SASL response),
        // never DELE, and never carries a bare CR or LF that a server could take for two.
        while let Some(end) = self.sent.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = self.sent.drain(..end + 2).collect();
            let line = &line[..line.len() - 2];
            assert!(
                !line.contains(&b'\r') && !line.contains(&b'\n') && !line.contains(&0),
                "the client sent a line with CR, LF or NUL inside: {line:?}"
            );
            let verb: Vec<u8> = line
                .iter()
                .take_while(|b| **b != b' ')
                .map(u8::to_ascii_uppercase)
                .collect();
            assert_ne!(verb, b"DELE", "the client sent DELE");
            let known: &[&[u8]] = &[
                b"CAPA", b"USER", b"PASS", b"APOP", b"AUTH", b"STLS", b"STAT", b"LIST", b"UIDL",
                b"TOP", b"RETR", b"NOOP", b"QUIT", b"*", b"",
            ];
            let sasl = line
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b));
            assert!(
                known.contains(&verb.as_slice()) || sasl,
                "the client sent an unexpected line: {:?}",
                String::from_utf8_lossy(line)
            );
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The listing and status parsers, and the dot-stuffing decoder: no panic on any input, and
/// un-stuffing undoes stuffing in any chunking.
pub fn pop3_listings(data: &[u8]) {
    use popbackup::pop3::dotstuff::{Unstuffer, stuff};
    use popbackup::pop3::response;

    let caps = popbackup::pop3::Capabilities::parse(data);
    let _ = (caps.pipelining(), caps.stls(), caps.top(), caps.uidl(), caps.user());
    let _ = (caps.sasl(), caps.expire(), caps.login_delay(), caps.implementation());
    if let Ok(entries) = response::parse_uidl_listing(data) {
        for e in entries {
            assert!(!e.uidl.as_str().is_empty(), "an empty UIDL was accepted");
        }
    }
    let _ = response::parse_list_listing(data);
    for line in data.split(|b| *b == b'\n') {
        let _ = response::parse_status(line);
        let _ = response::parse_uidl_line(line);
        let _ = response::parse_list_line(line);
        let text = String::from_utf8_lossy(line);
        let _ = response::parse_stat(&text);
        let _ = response::apop_timestamp(&text);
    }

    // Un-stuffing arbitrary bytes: never more out than in, and the same in every chunking.
    let whole = unstuff(data, data.len().max(1));
    let small = unstuff(data, 3);
    assert_eq!(whole, small, "un-stuffing depends on the chunking");
    assert!(whole.0.len() <= data.len());

    // Stuffing then un-stuffing gives the body back (with a final CRLF added when missing).
    let wire = stuff(data);
    let (back, done, consumed) = unstuff(&wire, 7);
    assert!(done, "the stuffed body's terminator was not found");
    assert_eq!(consumed, wire.len(), "bytes left after the terminator");
    let mut expected = data.to_vec();
    if !expected.is_empty() && expected.last() != Some(&b'\n') {
        expected.extend_from_slice(b"\r\n");
    }
    assert_eq!(back, expected, "un-stuffing did not undo stuffing");

    fn unstuff(input: &[u8], chunk: usize) -> (Vec<u8>, bool, usize) {
        let mut decoder = Unstuffer::new();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64];
        let mut consumed = 0;
        for piece in input.chunks(chunk) {
            let mut rest = piece;
            while !rest.is_empty() && !decoder.is_done() {
                let step = decoder.step(rest, &mut buf);
                out.extend_from_slice(&buf[..step.produced]);
                consumed += step.consumed;
                rest = &rest[step.consumed..];
                if step.consumed == 0 && step.produced == 0 && !step.done {
                    panic!("the decoder made no progress");
                }
            }
        }
        (out, decoder.is_done(), consumed)
    }
}

/// The repository's file readers: config.json, manifests, index files, pack tables (inside a
/// tar), verified.json and the lock file's holder. The first byte picks the reader. Whatever
/// parses must survive writing out and reading back, and the fast account probe must agree
/// with the full manifest parse.
pub fn repo_files(data: &[u8]) {
    use popbackup::repo;
    use std::path::Path;

    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let path = Path::new("fuzz/file.json");
    match which % 6 {
        0 => {
            if let Ok(config) = repo::parse_config(path, bytes) {
                let again = serde_json::to_vec(&config).expect("a config serializes");
                let back = repo::parse_config(path, &again).expect("a written config reads back");
                assert_eq!(back, config);
            }
        }
        1 => {
            let account = repo::manifest_account(bytes);
            if let Ok(manifest) = repo::parse_manifest(path, bytes) {
                assert_eq!(
                    account.as_deref(),
                    Ok(manifest.account.as_str()),
                    "the account probe disagrees with the manifest"
                );
                let again = serde_json::to_vec(&manifest).expect("a manifest serializes");
                let back = repo::parse_manifest(path, &again).expect("a manifest reads back");
                assert_eq!(back, manifest);
                let _ = manifest.summary();
            }
            // The bytes as a records file (named by their own hash, so that the content is
            // what gets parsed): the slim location parse verify uses agrees with the full one.
            let id = repo::RecordsId::of(bytes);
            let full = repo::parse_records::<repo::MessageRecord>(path, &id, bytes.to_vec());
            let slim = repo::parse_records::<repo::RecordLocation>(path, &id, bytes.to_vec());
            if let Ok(records) = full {
                let slim = slim.expect("records that parse whole parse as locations");
                let hashes: Vec<_> = records.iter().map(|r| r.sha256).collect();
                let slim_hashes: Vec<_> = slim.iter().map(|r| r.sha256).collect();
                assert_eq!(hashes, slim_hashes);
            }
        }
        2 => {
            if let Ok(file) = repo::index::parse_index_file(path, bytes) {
                let again = serde_json::to_vec(&file).expect("an index serializes");
                repo::index::parse_index_file(path, &again).expect("an index reads back");
            }
        }
        3 => {
            // A tar built around the bytes, as a pack's table, and the bytes as a whole pack.
            let _ = repo::pack::read_layout_from(std::io::Cursor::new(bytes));
            let mut builder = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            let _ = builder.append_data(&mut header, "messages.json", bytes);
            if let Ok(tarred) = builder.into_inner() {
                let _ = repo::pack::read_layout_from(std::io::Cursor::new(tarred));
            }
            // The bytes as a zstd dictionary whose header is spliced onto recent mail: its
            // tables are read to an end inside it, or it is refused.
            if let Some(header) = repo::dictionary::header_len(bytes) {
                assert!(header >= 8 + 1 + 12 && header <= bytes.len());
                let spliced =
                    repo::dictionary::with_content(bytes, b"recent mail content", 1 << 20)
                        .expect("a dictionary whose header reads takes content");
                assert_eq!(&spliced[..header], &bytes[..header]);
            }
        }
        4 => {
            if let Ok(state) = serde_json::from_slice::<repo::VerifiedState>(bytes) {
                let again = serde_json::to_vec(&state).expect("a state serializes");
                let back: repo::VerifiedState =
                    serde_json::from_slice(&again).expect("a state reads back");
                assert_eq!(back, state);
            }
        }
        _ => {
            let _ = serde_json::from_slice::<repo::LockInfo>(bytes);
        }
    }
}

/// The configuration reader: any text gives a configuration or an error naming the file.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("fuzz.toml");
    match popbackup::config::Config::parse(path, text) {
        Ok(config) => {
            for account in &config.accounts {
                assert!(!account.name.is_empty(), "an account without a name");
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("fuzz.toml") || message.contains("accounts."),
                "an error that does not say where: {message}"
            );
        }
    }
}

/// A message (wire bytes) through the restore formats and back: the mbox entry splits back into
/// exactly one message whose content is the LF form, and the Maildir (LF) form converts back to
/// the wire bytes whenever the conversion says it is reversible.
pub fn restore_roundtrip(data: &[u8]) {
    use popbackup::mail::{CrlfToLf, lf_to_crlf};
    use popbackup::restore::mbox;
    use std::io::Write as _;

    // The LF form, as the Maildir writer stores it, written in two pieces.
    let split = data.first().map(|b| usize::from(*b)).unwrap_or(0) % (data.len() + 1);
    let mut lf = CrlfToLf::new(Vec::new());
    lf.write_all(&data[..split]).expect("memory");
    lf.write_all(&data[split..]).expect("memory");
    let reversible = lf.reversible();
    let on_disk = lf.finish().expect("memory");
    if reversible {
        assert_eq!(lf_to_crlf(&on_disk), data, "LF -> CRLF did not give the wire bytes");
    }

    // Two entries in one mbox: the message and a plain one after it.
    let time = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("a valid time");
    let mut file = mbox::format_entry(b"", "fuzz@example.org", time, data);
    file.extend_from_slice(&mbox::format_entry(b"", "MAILER-DAEMON", time, b"Subject: next\r\n\r\nx\r\n"));
    let messages = mbox::read_messages(std::io::Cursor::new(&file)).expect("memory");
    let mut expected = on_disk.clone();
    if expected.last() != Some(&b'\n') {
        expected.push(b'\n');
    }
    assert_eq!(messages.len(), 2, "the mbox does not split into the two messages");
    assert_eq!(messages[0], expected, "the mbox did not give the message back");
    assert_eq!(messages[1], b"Subject: next\n\nx\n");
}

/// Any bytes as an mbox to import: no panic; the messages found tile the file from the first
/// `From ` line to its end, each no larger than its span. And a message (wire bytes) that
/// restore writes into an mbox is read back by import as restore's own reader reads it, so a
/// restored mbox imported again adds nothing (a Content-Length header excepted: one that
/// happens to fit the quoted body is trusted, as mutt trusts it).
pub fn mbox_import(data: &[u8]) {
    use popbackup::import::{Quoting, read_mbox};
    use popbackup::restore::mbox;

    for quoting in [Quoting::Rd, Quoting::O] {
        if let Ok(messages) = read_mbox(data, quoting) {
            let mut at = messages.first().map_or(data.len() as u64, |m| m.offset);
            for m in &messages {
                assert_eq!(m.offset, at, "the messages do not tile the file");
                assert!(m.span > 0, "an empty message");
                if let Some(bytes) = &m.bytes {
                    assert!(bytes.len() as u64 <= m.span, "a message larger than its span");
                }
                at += m.span;
            }
            assert_eq!(at, data.len() as u64, "the messages do not reach the end of the file");
        }
    }

    let time = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("a valid time");
    let mut file = mbox::format_entry(b"", "fuzz@example.org", time, data);
    file.extend_from_slice(&mbox::format_entry(b"", "MAILER-DAEMON", time, b"Subject: next\r\n\r\nx\r\n"));
    let restored = mbox::read_messages(std::io::Cursor::new(&file)).expect("memory");
    let imported = read_mbox(&file, Quoting::Rd).expect("restore writes an mbox");
    let counted = data.windows(15).any(|w| w.eq_ignore_ascii_case(b"content-length:"));
    if !counted {
        let imported: Vec<Vec<u8>> = imported.into_iter().map(|m| m.bytes.expect("whole")).collect();
        assert_eq!(imported, restored, "import reads restore's mbox differently");
    }
}

/// Any bytes as a key file and as a sealed object (`repo::crypto`): a key file is parsed or
/// refused (and one with small costs tried with a password), never a panic or an unbounded
/// allocation; bytes nobody sealed never open; what is sealed opens to itself, and with one
/// byte changed, or its length misstated, does not; sealed as it is written, in pieces, it is
/// the same format. The first byte, when odd, pads the input
/// past a segment so that multi-segment objects are sealed too.
pub fn sealed_objects(data: &[u8]) {
    use popbackup::repo::crypto::{KeyFile, MasterKey, SEGMENT};
    use std::io::Read as _;

    if let Ok(file) = KeyFile::parse("fuzz", data)
        && file.kdf.params.memory_kib <= 64
        && file.kdf.params.iterations <= 2
    {
        let _ = file.unwrap(FUZZ_PASSWORD.as_bytes());
    }
    let key = MasterKey::generate().expect("random bytes");
    assert!(key.open("fuzz", data).is_err(), "bytes nobody sealed opened");

    let mut plain = data.to_vec();
    if data.first().is_some_and(|b| b & 1 == 1) {
        plain.resize(SEGMENT + data.len(), 0x5a);
    }
    let sealed = key.seal("fuzz", &plain).expect("sealing");
    assert_eq!(key.open("fuzz", &sealed).expect("own seal opens"), plain);
    // Sealed as it is written, in pieces the input decides: the same format.
    let piece = 1 + usize::from(data.get(1).copied().unwrap_or(0)) * 97;
    let mut sealer = key.sealer("fuzz", Vec::new()).expect("random bytes");
    for part in plain.chunks(piece) {
        std::io::Write::write_all(&mut sealer, part).expect("sealing into memory");
    }
    let streamed = sealer.finish().expect("sealing into memory");
    assert_eq!(streamed.len(), sealed.len());
    assert_eq!(key.open("fuzz", &streamed).expect("streamed seal opens"), plain);
    assert!(key.open("fuzz2", &sealed).is_err(), "opened under another name");
    let at = data.iter().map(|b| usize::from(*b)).sum::<usize>() % sealed.len();
    let mut changed = sealed.clone();
    changed[at] ^= 0x80;
    assert!(key.open("fuzz", &changed).is_err(), "a changed byte at {at} opened");
    for claimed in [sealed.len() as u64 - 1, sealed.len() as u64 + 1, u64::MAX] {
        let mut out = Vec::new();
        let opened = key
            .opener("fuzz", sealed.as_slice(), claimed)
            .read_to_end(&mut out);
        assert!(opened.is_err(), "opened with a length of {claimed}");
    }
}
