//! The local listener's routes: the local face (`POST /v1/query/{id}/{version}`,
//! PROTOCOL.md §4; and `/v1/events/{id}/{version}`, §4.5: events emitted and fetched) for the member's own systems, on an internal address of its own, over
//! mutual TLS against the member's own trust anchor ([`crate::anchor`]). Nothing of the
//! federation is served here: the exchange face is refused with 404 `wrong-listener`.

use std::convert::Infallible;
use std::sync::Arc;

use contracts::{Identity, Problem, ProblemCode};
use http::{Method, Request};
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::gateway::Gateway;
use crate::http::{Reply, problem};
use crate::listener::{self, Listening};
use crate::server::contract_path;

/// Serves `gw`'s local listener on `listener` until `shutdown` turns true. Does nothing for
/// a gateway configured without one.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, shutdown: watch::Receiver<bool>) {
    let (Some(listen), Some(_)) = (gw.local_listen, gw.snapshot().member_tls.clone()) else {
        return;
    };
    let tls = {
        let gw = gw.clone();
        move || gw.snapshot().member_tls.clone()
    };
    let listening = Listening {
        what: "local",
        member: &gw.member,
        listen,
        bounds: gw.connections,
        labels: &gw.labels,
    };
    let service_for = {
        let gw = gw.clone();
        move |peer: Option<Identity>, _remote| {
            let (gw, peer) = (gw.clone(), Arc::new(peer));
            service_fn(move |req| {
                let (gw, peer) = (gw.clone(), peer.clone());
                // Boxed, as the exchange face's (server.rs): no per-connection slot the size
                // of a local query's future.
                Box::pin(async move {
                    Ok::<_, Infallible>(route(gw, peer.as_ref().as_ref(), req).await)
                })
            })
        }
    };
    listener::serve(listening, listener, tls, shutdown, service_for).await;
    crate::server::settle(&gw).await;
}

async fn route(gw: Arc<Gateway>, peer: Option<&Identity>, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let segments: Vec<&str> = parts
        .uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .collect();
    match segments.as_slice() {
        ["v1", "query", rest @ ..] => match (parts.method == Method::POST, contract_path(rest)) {
            (true, Some(r)) => {
                crate::consumer::local::handle(gw, peer, r, &parts.headers, body).await
            }
            (false, Some(_)) => {
                let mut r = problem(&Problem::new(
                    ProblemCode::MethodNotAllowed,
                    format!(
                        "{} {} is not served; use POST",
                        parts.method,
                        parts.uri.path()
                    ),
                ));
                r.headers_mut()
                    .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
                r
            }
            _ => not_found(parts.uri.path()),
        },
        ["v1", "events", rest @ ..] => match (&parts.method, contract_path(rest)) {
            (&Method::POST, Some(r)) => {
                crate::events::emit::handle(gw, peer, r, &parts.headers, body).await
            }
            (&Method::GET, Some(r)) => {
                crate::events::fetch::handle(gw, peer, r, parts.uri.query()).await
            }
            (_, Some(_)) => {
                let mut r = problem(&Problem::new(
                    ProblemCode::MethodNotAllowed,
                    format!(
                        "{} {} is not served; use POST to emit an event, GET to fetch received ones",
                        parts.method,
                        parts.uri.path()
                    ),
                ));
                r.headers_mut().insert(
                    http::header::ALLOW,
                    http::HeaderValue::from_static("GET, POST"),
                );
                r
            }
            _ => not_found(parts.uri.path()),
        },
        ["v1", "exchange", ..] => problem(&Problem::new(
            ProblemCode::WrongListener,
            "the exchange face is served on the gateway's federation listener, not on the local one",
        )),
        _ => not_found(parts.uri.path()),
    }
}

fn not_found(path: &str) -> Reply {
    problem(&Problem::new(
        ProblemCode::NotFound,
        format!("no resource at {path}"),
    ))
}
