//! A TCP relay that behaves like a slow link: every byte arrives `DELAY_MS` later than it was
//! sent, in each direction, and no faster than `RATE_MBIT` megabits per second. The bench
//! puts it between the clients and Dovecot where `tc qdisc ... netem` is not available (this
//! machine's kernel has no `sch_netem`): what it shows is what round trips and pipelining cost
//! on a link with latency.
//!
//! Each direction is a queue of chunks stamped with when the link delivers them: a chunk of n
//! bytes read at time t enters the link when the link is free (not before t), occupies it for
//! n / rate, and comes out `DELAY_MS` after that. The queue is bounded, so a sender faster than
//! the link is held back by TCP as it would be by the link itself. Unlike netem, the two
//! loopback legs' own TCP windows start fully open (no slow start over the delayed path).
//!
//! When a connection ends it prints to stderr how many round trips it took: how many times the
//! client sent after hearing from the server since it last sent (its first send counts as one),
//! which is what the link's delay multiplies.
//!
//! Usage: cargo run --release --example delay_link -- LISTEN_PORT TARGET_HOST:PORT DELAY_MS RATE_MBIT
//! It prints `listening on 127.0.0.1:PORT` once it accepts connections and serves until killed.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

const USAGE: &str = "usage: delay_link LISTEN_PORT TARGET_HOST:PORT DELAY_MS RATE_MBIT";

/// Chunks in flight per direction: with 64 KiB chunks, 4 MiB, well above a 200 mbit link's
/// bandwidth-delay product at tens of milliseconds.
const QUEUE: usize = 64;
const CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy)]
struct Link {
    delay: Duration,
    /// Bytes per second.
    rate: f64,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, target, delay, rate] = args.as_slice() else {
        anyhow::bail!(USAGE);
    };
    let link = Link {
        delay: Duration::from_millis(delay.parse().context(USAGE)?),
        rate: rate.parse::<f64>().context(USAGE)? * 1e6 / 8.0,
    };
    anyhow::ensure!(link.rate > 0.0, "RATE_MBIT must be above 0\n{USAGE}");
    let listener = TcpListener::bind(("127.0.0.1", listen.parse::<u16>().context(USAGE)?))
        .with_context(|| format!("listening on port {listen}"))?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    for client in listener.incoming() {
        let client = client.context("accepting a connection")?;
        let target = target.clone();
        std::thread::spawn(move || {
            if let Err(e) = relay(client, &target, link) {
                eprintln!("delay_link: {e:#}");
            }
        });
    }
    Ok(())
}

/// Relays one connection through the link in both directions until both sides close.
fn relay(client: TcpStream, target: &str, link: Link) -> anyhow::Result<()> {
    let server = TcpStream::connect(target).with_context(|| format!("connecting to {target}"))?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let turns = Arc::new(Turns {
        answered: AtomicBool::new(true),
        count: AtomicU64::new(0),
    });
    let up = direction(
        client.try_clone()?,
        server.try_clone()?,
        link,
        Side::Client,
        turns.clone(),
    );
    let down = direction(server, client, link, Side::Server, turns.clone());
    for half in [up, down] {
        for thread in half {
            let _ = thread.join();
        }
    }
    eprintln!(
        "delay_link: {} round trips",
        turns.count.load(Ordering::SeqCst)
    );
    Ok(())
}

/// Who sends in a direction.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Client,
    Server,
}

/// The client's turns: `answered` is set when the server's bytes reach the client and
/// cleared when the client next sends.
struct Turns {
    answered: AtomicBool,
    count: AtomicU64,
}

/// The two threads of one direction: one reads and stamps chunks, the other delivers each
/// at its time. End of stream is passed on as a shutdown of the writing side.
fn direction(
    mut from: TcpStream,
    mut to: TcpStream,
    link: Link,
    sender: Side,
    turns: Arc<Turns>,
) -> [std::thread::JoinHandle<()>; 2] {
    let delivered = turns.clone();
    let (send, receive) = mpsc::sync_channel::<(Instant, Vec<u8>)>(QUEUE);
    let reader = std::thread::spawn(move || {
        let mut free = Instant::now();
        loop {
            let mut chunk = vec![0u8; CHUNK];
            let n = match from.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            chunk.truncate(n);
            if sender == Side::Client && turns.answered.swap(false, Ordering::SeqCst) {
                turns.count.fetch_add(1, Ordering::SeqCst);
            }
            free = free.max(Instant::now()) + Duration::from_secs_f64(n as f64 / link.rate);
            if send.send((free + link.delay, chunk)).is_err() {
                break;
            }
        }
    });
    let writer = std::thread::spawn(move || {
        for (due, chunk) in receive {
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if to.write_all(&chunk).is_err() {
                return;
            }
            if sender == Side::Server {
                delivered.answered.store(true, Ordering::SeqCst);
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    [reader, writer]
}
