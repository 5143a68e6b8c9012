//! The one accept loop every listener runs (the member listener, the local listener and the
//! admin listener):
//! a bound on the connections held open, in all and per peer address (over it a connection
//! is closed as soon as it is accepted); TLS with the server configuration of the gateway's
//! trust snapshot current when the connection is accepted (a connection keeps the one it
//! began with), the handshake bounded by [`HANDSHAKE_TIMEOUT`] and, past its ClientHello,
//! by the handshakes in flight (over the bound the connection is closed); the peer's identity read from its certificate
//! once per connection; HTTP/1.1 with bounded headers and timeouts; back-off when accepting
//! fails (descriptors run out, say), with at most one warning line per [`WARN_INTERVAL`];
//! and at shutdown a drain of the open connections bounded by [`DRAIN_TIMEOUT`].

mod limit;
mod throttle;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contracts::{Identity, MemberId};
use http::Request;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::LazyConfigAcceptor;

use crate::config::ConnectionBounds;
use crate::http::Reply;
use crate::metrics::{Labels, ListenerCounters};
pub(crate) use limit::AddressKey;
use limit::{ConnectionLimit, Refused};
pub(crate) use throttle::Throttle;

/// How long a client has to finish the TLS handshake: shorter than [`HEADER_TIMEOUT`], so
/// that a socket which never completes one is the first to lose its place.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to send a request's headers, and how long a kept-alive connection
/// may wait idle for its next request.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most headers a request may carry.
pub const MAX_HEADERS: usize = 64;
/// How long in-flight exchanges get to finish at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The first and the longest pause after a failed accept.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));
/// The least time between two warning lines of one kind (failed accepts, connections
/// refused over the bound) from one listener.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// What a listener is, for its log lines and its series, and how many connections it holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Listening<'a> {
    /// `gateway`, `local` or `admin`.
    pub what: &'static str,
    /// The member it serves.
    pub member: &'a MemberId,
    /// Its address.
    pub listen: SocketAddr,
    /// The connections it holds open at once.
    pub bounds: ConnectionBounds,
    /// The gateway's metric labels.
    pub labels: &'a Labels,
}

/// Accepts connections on `listener` until `shutdown` turns true, each with the TLS
/// configuration `tls` gives when it is accepted, serving each with the service `service_for` makes for its peer's identity of any kind (`None`: a certificate
/// without a Simpul identity, or with several, or none where the configuration allows that)
/// and address; then drains.
pub(crate) async fn serve<T, F, S>(
    listening: Listening<'_>,
    listener: TcpListener,
    tls: T,
    mut shutdown: watch::Receiver<bool>,
    service_for: F,
) where
    T: Fn() -> Option<Arc<ServerConfig>>,
    F: Fn(Option<Identity>, SocketAddr) -> S + Clone + Send + 'static,
    S: Service<Request<Incoming>, Response = Reply, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    let Listening {
        what,
        member,
        listen,
        bounds,
        labels,
    } = listening;
    let counters = ListenerCounters::new(labels, what);
    let limit = ConnectionLimit::new(bounds, counters.open.clone());
    // A handshake past its ClientHello costs this side work (the gateway's key signs, the
    // client's chain is checked against the CAs and CRLs); a socket still silent costs none.
    let handshakes = Arc::new(Semaphore::new(bounds.handshakes));
    let mut accept_warnings = Throttle::new(WARN_INTERVAL);
    let mut refusal_warnings = Throttle::new(WARN_INTERVAL);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Every connection's task, so that those still open when the drain ends are cut while
    // the runtime still runs: their exchanges' trails then record them as cancelled.
    let mut connections = tokio::task::JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF.0;
    tracing::info!(%member, %listen, what, max_connections = bounds.max, max_connections_per_address = bounds.per_address, "listening");
    loop {
        while connections.try_join_next().is_some() {}
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff = ACCEPT_BACKOFF.0;
                    a
                }
                Err(e) => {
                    counters.accept_errors.increment(1);
                    if let Some(suppressed) = accept_warnings.event(Instant::now()) {
                        tracing::warn!(%member, %listen, what, error = %e, pause_ms = backoff.as_millis() as u64, suppressed, "accept failed");
                    }
                    // Out of descriptors, say: wait for connections to close rather than spin.
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => break,
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        // Over the bound a connection is accepted and closed at once, not left unaccepted:
        // in the kernel's backlog it would look connected to its client, which would wait
        // for an answer until a slot freed, and every client behind it would wait too.
        // Closed, its client knows at once. This does not spin: each pass answers one
        // connection a peer opened.
        let slot = match limit.admit(remote.ip()) {
            Ok(slot) => slot,
            Err(refused) => {
                match refused {
                    Refused::Full { .. } => counters.refused_full.increment(1),
                    Refused::AddressFull { .. } => counters.refused_address.increment(1),
                }
                if let Some(suppressed) = refusal_warnings.event(Instant::now()) {
                    tracing::warn!(%member, %listen, what, %remote, reason = %refused, suppressed, "connection refused");
                }
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        // The snapshot's configuration now: new certificates and CRLs apply from the next
        // connection on.
        let Some(config) = tls() else {
            drop(tcp);
            continue;
        };
        let watcher = graceful.watcher();
        let handshakes = handshakes.clone();
        let refused_handshakes = counters.refused_handshakes.clone();
        let handshake_counters = (
            counters.handshakes_completed.clone(),
            counters.handshakes_failed.clone(),
            counters.handshakes_timed_out.clone(),
        );
        let handshake = async move {
            let (completed, failed, timed_out) = handshake_counters;
            let tls = async {
                let start =
                    LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
                // Over the bound the connection is closed, as over a connection bound: its
                // client learns it at once rather than after the deadline.
                let Ok(_permit) = handshakes.try_acquire_owned() else {
                    refused_handshakes.increment(1);
                    return Err(std::io::Error::other(
                        "the listener holds max_handshakes TLS handshakes in flight",
                    ));
                };
                start.into_stream(config).await
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls).await {
                Ok(Ok(tls)) => {
                    completed.increment(1);
                    Some(tls)
                }
                Ok(Err(e)) => {
                    failed.increment(1);
                    tracing::debug!(%remote, what, error = %e, "TLS handshake refused");
                    None
                }
                Err(_) => {
                    timed_out.increment(1);
                    tracing::debug!(%remote, what, "TLS handshake timed out");
                    None
                }
            }
        };
        let service_for = service_for.clone();
        connections.spawn(async move {
            // Held until the connection ends, whichever way it ends.
            let _slot = slot;
            let Some(tls) = handshake.await else {
                return;
            };
            let peer: Option<Identity> = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| contracts::member::certificate_any_identity(c.as_ref()));
            let service = service_for(peer, remote);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_headers(MAX_HEADERS)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%remote, what, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!(%member, what, open = connections.len(), "connections still open after the drain timeout: cut, their exchanges recorded as cancelled"),
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    tracing::info!(%member, %listen, what, "stopped");
}
