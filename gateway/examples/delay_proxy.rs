//! A TCP proxy that holds every byte it forwards for a fixed delay, in each direction:
//! bench/run.sh puts one in front of each provider of the federated lookup, to measure it
//! with added network delay on a kernel without `tc netem`. TLS passes through untouched
//! (the consumer's mTLS session is with the provider).
//!
//! ```sh
//! cargo run --release -p simpul-gateway --example delay_proxy -- DELAY_US LISTEN=UPSTREAM...
//! ```
//!
//! Every chunk read from one side is written to the other `DELAY_US` microseconds after it
//! was read, in order; a side that closes is closed on the other once what it sent has been
//! written. The holds are timed by a thread of their own with the kernel's high-resolution
//! timer ([`Clock`]): tokio's timer rounds every wake-up up to the next millisecond, which
//! made a hold of 1 ms one of 1–2 ms.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc::{self as std_mpsc, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

const USAGE: &str =
    "usage: delay_proxy DELAY_US LISTEN=UPSTREAM... (e.g. 1000 127.0.0.1:9442=127.0.0.1:8442)";

/// One hold, woken at `at`. Each pipe waits for one hold at a time, so holds of one instant
/// need no order among themselves.
struct Waiter {
    at: Instant,
    waker: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Waiter {}

impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiter {
    /// The earliest is the greatest: the top of a `BinaryHeap`.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        Reverse(self.at).cmp(&Reverse(other.at))
    }
}

/// Wakes each hold at its instant, from a thread that sleeps to the earliest one.
#[derive(Clone)]
struct Clock(std_mpsc::Sender<Waiter>);

impl Clock {
    fn start() -> Clock {
        let (tx, rx) = std_mpsc::channel::<Waiter>();
        std::thread::spawn(move || {
            let mut waiting = BinaryHeap::new();
            loop {
                let got = match waiting.peek().map(|w: &Waiter| w.at) {
                    None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
                };
                match got {
                    Ok(waiter) => waiting.push(waiter),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                let now = Instant::now();
                while waiting.peek().is_some_and(|w| w.at <= now) {
                    if let Some(w) = waiting.pop() {
                        let _ = w.waker.send(());
                    }
                }
            }
        });
        Clock(tx)
    }

    /// Returns at `at` (at once if it has passed).
    async fn until(&self, at: Instant) {
        if at <= Instant::now() {
            return;
        }
        let (waker, woken) = oneshot::channel();
        if self.0.send(Waiter { at, waker }).is_ok() {
            let _ = woken.await;
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let delay = Duration::from_micros(args.next().ok_or(USAGE)?.parse()?);
    let clock = Clock::start();
    let mut proxies = Vec::new();
    for pair in args {
        let (listen, upstream) = pair.split_once('=').ok_or(USAGE)?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| format!("{listen}: {e}"))?;
        proxies.push(tokio::spawn(serve(
            listener,
            upstream.to_owned(),
            delay,
            clock.clone(),
        )));
    }
    if proxies.is_empty() {
        return Err(USAGE.into());
    }
    for proxy in proxies {
        proxy.await?;
    }
    Ok(())
}

async fn serve(listener: TcpListener, upstream: String, delay: Duration, clock: Clock) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(e) => {
                eprintln!("delay_proxy: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let upstream = upstream.clone();
        let clock = clock.clone();
        tokio::spawn(async move {
            let server = match TcpStream::connect(&upstream).await {
                Ok(server) => server,
                Err(e) => {
                    eprintln!("delay_proxy: {upstream}: {e}");
                    return;
                }
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(
                pipe(client_read, server_write, delay, &clock),
                pipe(server_read, client_write, delay, &clock)
            );
        });
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration, clock: &Clock) {
    let (chunks, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            if chunks
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
            {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((at, bytes)) = due.recv().await {
            clock.until(at).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
