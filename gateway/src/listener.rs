//! The one accept loop both listeners run (the member listener and the admin listener):
//! TLS with the gateway's server configuration, the peer's identity read from its
//! certificate once per connection, HTTP/1.1 with bounded headers and timeouts, back-off when
//! accepting fails (descriptors run out, say), and at shutdown a drain of the open
//! connections bounded by [`DRAIN_TIMEOUT`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use contracts::MemberId;
use http::Request;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::http::Reply;

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most headers a request may carry.
pub const MAX_HEADERS: usize = 64;
/// How long in-flight exchanges get to finish at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The first and the longest pause after a failed accept.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// What a listener is, for its log lines.
#[derive(Clone, Copy, Debug)]
pub struct Listening<'a> {
    /// `gateway` or `admin`.
    pub what: &'static str,
    /// The member it serves.
    pub member: &'a MemberId,
    /// Its address.
    pub listen: SocketAddr,
}

/// Accepts connections on `listener` until `shutdown` turns true, serving each with the
/// service `service_for` makes for its peer's identity (`None`: a certificate without a
/// Simpul identity, or none where the configuration allows that); then drains.
pub async fn serve<F, S>(
    listening: Listening<'_>,
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    mut shutdown: watch::Receiver<bool>,
    service_for: F,
) where
    F: Fn(Option<MemberId>) -> S + Clone + Send + 'static,
    S: Service<Request<Incoming>, Response = Reply, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    let Listening {
        what,
        member,
        listen,
    } = listening;
    let acceptor = TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut backoff = ACCEPT_BACKOFF.0;
    tracing::info!(%member, %listen, what, "listening");
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff = ACCEPT_BACKOFF.0;
                    a
                }
                Err(e) => {
                    // Out of descriptors, say: wait for connections to close rather than spin.
                    tracing::warn!(%member, %listen, what, error = %e, pause_ms = backoff.as_millis() as u64, "accept failed");
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
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        let handshake = async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => Some(tls),
                Ok(Err(e)) => {
                    tracing::debug!(%remote, what, error = %e, "TLS handshake refused");
                    None
                }
                Err(_) => {
                    tracing::debug!(%remote, what, "TLS handshake timed out");
                    None
                }
            }
        };
        let service_for = service_for.clone();
        tokio::spawn(async move {
            let Some(tls) = handshake.await else {
                return;
            };
            let peer: Option<MemberId> = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(crate::tls::identity);
            let service = service_for(peer);
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
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!(%member, what, "connections still open after the drain timeout"),
    }
    tracing::info!(%member, %listen, what, "stopped");
}
