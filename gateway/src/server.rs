//! The listener: TLS with a required client certificate, the identity read from it once per
//! connection, HTTP/1.1 with bounded headers and timeouts, and the routes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use contracts::envelope::JOSE_MEDIA_TYPE;
use contracts::{ContractRef, MemberId, Problem, ProblemCode};
use http::{Method, Request};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::gateway::Gateway;
use crate::http::{Reply, json, json_bytes, problem};

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most headers a request may carry.
pub const MAX_HEADERS: usize = 64;
/// How long in-flight exchanges get to finish at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `gw` on `listener` until `shutdown` turns true, then lets open connections finish
/// (up to [`DRAIN_TIMEOUT`]).
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let acceptor = TlsAcceptor::from(gw.tls.clone());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tracing::info!(member = %gw.member, listen = %gw.listen, "gateway listening");
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let gw = gw.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let peer: Option<MemberId> = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(crate::tls::identity);
            let peer = Arc::new(peer);
            let service = service_fn(move |req| {
                let (gw, peer) = (gw.clone(), peer.clone());
                async move { Ok::<_, Infallible>(route(gw, peer.as_ref().as_ref(), req).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_headers(MAX_HEADERS)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!(member = %gw.member, "connections still open after the drain timeout"),
    }
    tracing::info!(member = %gw.member, "gateway stopped");
}

fn contract_path(rest: &[&str]) -> Option<ContractRef> {
    match rest {
        [id, version] if !id.is_empty() && !version.is_empty() => {
            Some(ContractRef::new(*id, *version))
        }
        _ => None,
    }
}

async fn route(gw: Arc<Gateway>, peer: Option<&MemberId>, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let segments: Vec<&str> = parts
        .uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .collect();
    let not_found = || {
        problem(&Problem::new(
            ProblemCode::NotFound,
            format!("no resource at {}", parts.uri.path()),
        ))
    };
    let wrong_method = |allowed: &'static str| {
        let mut r = problem(&Problem::new(
            ProblemCode::MethodNotAllowed,
            format!(
                "{} {} is not served; use {allowed}",
                parts.method,
                parts.uri.path()
            ),
        ));
        r.headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static(allowed));
        r
    };
    match segments.as_slice() {
        ["v1", "exchange", rest @ ..] => {
            match (parts.method == Method::POST, contract_path(rest)) {
                (true, Some(r)) => {
                    crate::exchange::handle(&gw, peer, r, &parts.headers, body).await
                }
                (false, Some(_)) => wrong_method("POST"),
                _ => not_found(),
            }
        }
        ["v1", "query", rest @ ..] => match (parts.method == Method::POST, contract_path(rest)) {
            (true, Some(r)) => {
                crate::local::handle(gw.clone(), peer, r, &parts.headers, body).await
            }
            (false, Some(_)) => wrong_method("POST"),
            _ => not_found(),
        },
        ["v1", "manifest"] if parts.method == Method::GET => {
            let mut r = crate::http::jose(gw.manifest.jws().to_owned());
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(JOSE_MEDIA_TYPE),
            );
            r
        }
        ["v1", "contracts"] if parts.method == Method::GET => {
            let list: Vec<_> = gw
                .provided
                .keys()
                .filter_map(|r| gw.catalog.get(r))
                .map(|c| json!({"id": c.doc().id, "version": c.doc().version, "title": c.doc().title, "digest": c.digest()}))
                .collect();
            json(&json!({ "provider": gw.member, "contracts": list }))
        }
        ["v1", "contracts", id, version] if parts.method == Method::GET => {
            let r = ContractRef::new(*id, *version);
            match gw.catalog.get(&r).filter(|_| gw.provided.contains_key(&r)) {
                // The RFC 8785 form: its SHA-256 is the digest the manifest pins.
                Some(c) => match contracts::canonical::canonical_json(c.doc()) {
                    Ok(bytes) => json_bytes(bytes),
                    Err(e) => problem(&Problem::new(ProblemCode::Internal, e.to_string())),
                },
                None => problem(&Problem::new(
                    ProblemCode::UnknownContract,
                    format!("{r} is not provided here"),
                )),
            }
        }
        ["v1", "manifest"] | ["v1", "contracts"] | ["v1", "contracts", _, _] => wrong_method("GET"),
        _ => not_found(),
    }
}
