//! Downloads a whole mailbox with popbackup's POP3 client and discards or counts the bytes:
//! the "raw pipelined RETR loop" that benchmarks use as the floor, and a quick way to see the
//! client work against a server.
//!
//! With `--compress DICT` it also compresses every message into a frame of its own, as a
//! snapshot does (the repository's level, the zstd dictionary file `DICT` for messages up to
//! the size that gets one, `none` for no dictionary; one compressing thread per core behind a
//! short queue), and throws the frames away: the least an archiver that keeps one frame per
//! message has to do beside downloading. `--check` adds the snapshot's frame check (each frame
//! decompressed and compared with its message). The bench measures both beside the floor.
//!
//! With `--uidl-only` it logs in, lists the UIDLs and quits: the floor of a night with nothing
//! new.
//!
//! Usage: POP3_PASSWORD=... cargo run --release --example pop3_fetch -- \
//!            HOST PORT implicit|starttls USER [CA_FILE] [--serial] [--uidl-only]
//!            [--compress DICT|none [--check]]
//! The password comes from the environment, never from the command line.

use std::io::Read;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::Context as _;
use popbackup::pop3::{
    self, AuthMethod, Credentials, Fetch, Reply, Secret, ServerOptions, TlsMode,
};
use popbackup::repo::{DICTIONARY_MAX_MESSAGE, DictHash, FrameCompressor, FramePlan, format};
use sha2::{Digest as _, Sha256};

const USAGE: &str = "usage: POP3_PASSWORD=... pop3_fetch HOST PORT implicit|starttls USER \
                     [CA_FILE] [--serial] [--uidl-only] [--compress DICT|none [--check]]";

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let serial = take_flag(&mut args, "--serial");
    let check = take_flag(&mut args, "--check");
    let uidl_only = take_flag(&mut args, "--uidl-only");
    let dictionary = match args.iter().position(|a| a == "--compress") {
        Some(i) if i + 1 < args.len() => {
            let path = args.remove(i + 1);
            args.remove(i);
            Some(match path.as_str() {
                "none" => Vec::new(),
                _ => std::fs::read(&path)
                    .with_context(|| format!("reading the dictionary {path}"))?,
            })
        }
        Some(_) => anyhow::bail!("--compress needs a zstd dictionary file\n{USAGE}"),
        None => None,
    };
    let [host, port, tls, user, rest @ ..] = args.as_slice() else {
        anyhow::bail!(USAGE);
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
    if uidl_only {
        let mut session = pop3::open_session(&options, &creds)?;
        let uidls = session.uidl()?;
        session.quit()?;
        println!(
            "{} UIDLs in {:.3} s",
            uidls.len(),
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let ((messages, bytes), compressed) = match dictionary {
        None => (fetch_and_discard(&options, &creds)?, None),
        Some(dictionary) => {
            let (counts, frames) = fetch_and_compress(&options, &creds, &dictionary, check)?;
            (counts, Some(frames))
        }
    };
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{messages} messages, {bytes} bytes in {secs:.2} s ({:.1} MB/s, pipelining {}){}",
        bytes as f64 / secs / 1e6,
        if serial { "off" } else { "on" },
        match compressed {
            Some(frames) => format!(", {frames} bytes of frames"),
            None => String::new(),
        }
    );
    Ok(())
}

/// Logs in, retrieves every message with pipelined RETRs, handing each body to `on_body`
/// as a reader, and quits.
fn retrieve_all(
    options: &ServerOptions,
    creds: &Credentials,
    mut on_body: impl FnMut(&mut dyn Read) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut session = pop3::open_session(options, creds)?;
    let list = session.list()?;
    let requests: Vec<Fetch> = list.iter().map(|e| Fetch::retr(e.msg, e.size)).collect();
    session.fetch(&requests, |_, reply| -> std::io::Result<()> {
        match reply {
            Reply::Body(body) => on_body(body),
            Reply::Refused(_) => Ok(()),
        }
    })?;
    session.quit()?;
    Ok(())
}

/// The floor: every message read and thrown away (hashed when `POP3_FETCH_HASH` is set).
fn fetch_and_discard(options: &ServerOptions, creds: &Credentials) -> anyhow::Result<(u64, u64)> {
    let hash = std::env::var_os("POP3_FETCH_HASH").is_some();
    let (mut messages, mut bytes) = (0u64, 0u64);
    let mut digest = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    retrieve_all(options, creds, |body| {
        messages += 1;
        loop {
            let n = body.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            bytes += n as u64;
            if hash {
                digest.update(&buf[..n]);
            }
        }
    })?;
    Ok((messages, bytes))
}

/// Every message read whole and handed to compressing threads, which make its frame and
/// throw it away. Returns the message count and bytes, and the frames' total size.
fn fetch_and_compress(
    options: &ServerOptions,
    creds: &Credentials,
    dictionary: &[u8],
    check: bool,
) -> anyhow::Result<((u64, u64), u64)> {
    let dict = (!dictionary.is_empty()).then(|| DictHash::of(dictionary));
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        let (send, receive) = mpsc::sync_channel::<Vec<u8>>(16);
        let receive = std::sync::Arc::new(std::sync::Mutex::new(receive));
        let threads: Vec<_> = (0..workers)
            .map(|_| {
                let receive = receive.clone();
                scope.spawn(move || -> anyhow::Result<u64> {
                    let mut compressor = FrameCompressor::new(check);
                    let mut total = 0;
                    loop {
                        let next = match receive.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => anyhow::bail!("another compressing thread failed"),
                        };
                        let Ok(message) = next else {
                            return Ok(total);
                        };
                        let plan = FramePlan {
                            level: format::DEFAULT_LEVEL,
                            dict: dict.filter(|_| message.len() <= DICTIONARY_MAX_MESSAGE),
                        };
                        let frame =
                            compressor.compress(&message, plan, |_| Some(dictionary.to_vec()))?;
                        total += frame.bytes.len() as u64;
                    }
                })
            })
            .collect();
        let (mut messages, mut bytes) = (0u64, 0u64);
        let retrieved = retrieve_all(options, creds, |body| {
            let mut message = Vec::new();
            body.read_to_end(&mut message)?;
            messages += 1;
            bytes += message.len() as u64;
            send.send(message).map_err(std::io::Error::other)
        });
        drop(send);
        let mut frames = 0;
        for thread in threads {
            frames += thread
                .join()
                .map_err(|_| anyhow::anyhow!("a compressing thread panicked"))??;
        }
        retrieved?;
        Ok(((messages, bytes), frames))
    })
}

fn take_flag(args: &mut Vec<String>, flag: &str) -> bool {
    let before = args.len();
    args.retain(|a| a != flag);
    args.len() != before
}
