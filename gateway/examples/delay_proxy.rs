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
//! was read (tokio's timer: rounded up to the next millisecond), in order; a side that
//! closes is closed on the other once what it sent has been written.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

const USAGE: &str =
    "usage: delay_proxy DELAY_US LISTEN=UPSTREAM... (e.g. 1000 127.0.0.1:9442=127.0.0.1:8442)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let delay = Duration::from_micros(args.next().ok_or(USAGE)?.parse()?);
    let mut proxies = Vec::new();
    for pair in args {
        let (listen, upstream) = pair.split_once('=').ok_or(USAGE)?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| format!("{listen}: {e}"))?;
        proxies.push(tokio::spawn(serve(listener, upstream.to_owned(), delay)));
    }
    if proxies.is_empty() {
        return Err(USAGE.into());
    }
    for proxy in proxies {
        proxy.await?;
    }
    Ok(())
}

async fn serve(listener: TcpListener, upstream: String, delay: Duration) {
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
                pipe(client_read, server_write, delay),
                pipe(server_read, client_write, delay)
            );
        });
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
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
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
