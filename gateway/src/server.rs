//! The member listener's routes: the exchange face for peer gateways, the manifest, the
//! contract list and the consistency proofs partners witnessing this log ask for. The local
//! face is not here: it has a listener of its own ([`crate::local_server`]), and its routes
//! are refused here with 404 `wrong-listener`. Accepting, TLS and the peer's identity are
//! [`crate::listener`]'s. Beside the listener, once a minute, the counts of refusals before
//! authentication are appended ([`crate::refusals`]), and the rest once the listener has
//! drained.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use contracts::envelope::JOSE_MEDIA_TYPE;
use contracts::{ContractRef, Identity, MemberId, Problem, ProblemCode};
use http::{Method, Request};
use hyper::body::Incoming;
use hyper::service::service_fn;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::fault::{self, Check};
use crate::gateway::Gateway;
use crate::http::{Reply, json, json_bytes, problem};
use crate::listener::{self, Listening};

/// Serves `gw`'s member listener until `shutdown` turns true, then lets open connections
/// finish (up to [`crate::listener::DRAIN_TIMEOUT`]).
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, shutdown: watch::Receiver<bool>) {
    let listening = Listening {
        what: "gateway",
        member: &gw.member,
        listen: gw.listen,
        bounds: gw.connections,
        labels: &gw.labels,
    };
    let service_for = {
        let gw = gw.clone();
        move |identity: Option<Identity>, remote: SocketAddr| {
            // The exchange face knows gateways and subsystems; an operator's or auditor's
            // certificate names neither here.
            let peer: Option<MemberId> = identity
                .as_ref()
                .and_then(Identity::member_or_subsystem)
                .cloned();
            let (gw, peer, identity) = (gw.clone(), Arc::new(peer), Arc::new(identity));
            service_fn(move |req| {
                let (gw, peer, identity) = (gw.clone(), peer.clone(), identity.clone());
                // Boxed: hyper keeps a slot the size of this future for every open
                // connection, and an exchange's future is kilobytes; boxed, each connection
                // holds a pointer and the exchange's state exists only while it runs (about
                // 20 MiB less resident with 1,000 connections open, docs/BENCHMARKS.md).
                Box::pin(async move {
                    Ok::<_, Infallible>(
                        route(
                            gw,
                            peer.as_ref().as_ref(),
                            identity.as_ref().as_ref(),
                            remote.ip(),
                            req,
                        )
                        .await,
                    )
                })
            })
        }
    };
    let minutes = tokio::spawn({
        let (gw, shutdown) = (gw.clone(), shutdown.clone());
        async move { each_minute(&gw, shutdown).await }
    });
    let refresher = tokio::spawn(gw.clone().refresh_until(shutdown.clone()));
    // Change notifications: delivering this member's events, posting the ones it received.
    let events = tokio::spawn(crate::events::run(gw.clone(), shutdown.clone()));
    let tls = {
        let gw = gw.clone();
        move || Some(gw.snapshot().tls.clone())
    };
    listener::serve(listening, listener, tls, shutdown, service_for).await;
    let _ = minutes.await;
    let _ = refresher.await;
    let _ = events.await;
    // Drained: no refusal is counted after this, and what was counted is appended now.
    let appended = gw.provider.refusals.flush(&gw.audit, None).await;
    tracing::debug!(member = %gw.member, appended, "refusals before authentication appended at shutdown");
    settle(&gw).await;
}

/// How long a stopping listener waits for the records of the exchanges it cut.
pub(crate) const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits (bounded) until the records of exchanges cut at the end of the drain are appended.
pub(crate) async fn settle(gw: &Gateway) {
    if !gw.audit.settle(SETTLE_TIMEOUT).await {
        tracing::error!(member = %gw.member, "records of exchanges cut at shutdown were still being appended when the gateway stopped");
    }
}

/// Once a minute until `shutdown`: appends the counts of refusals before authentication of
/// the minute that closed, forgets admission quotas that are full again, and measures the
/// audit store (at once, then each minute).
async fn each_minute(gw: &Gateway, shutdown: watch::Receiver<bool>) {
    let forget = async {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            gw.audit_size.measure(&gw.audit).await;
            gw.provider.admission.forget_idle();
        }
    };
    // The flusher returns at shutdown, never in the middle of a flush.
    tokio::select! {
        () = crate::refusals::flush_each_minute(&gw.provider.refusals, &gw.audit, shutdown) => {}
        () = forget => {}
    }
}

pub(crate) fn contract_path(rest: &[&str]) -> Option<ContractRef> {
    match rest {
        [id, version] if !id.is_empty() && !version.is_empty() => {
            Some(ContractRef::new(*id, *version))
        }
        _ => None,
    }
}

async fn route(
    gw: Arc<Gateway>,
    peer: Option<&MemberId>,
    identity: Option<&Identity>,
    remote: IpAddr,
    req: Request<Incoming>,
) -> Reply {
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
                    crate::exchange::handle(&gw, peer, remote, r, &parts.headers, body).await
                }
                (false, Some(_)) => wrong_method("POST"),
                _ => not_found(),
            }
        }
        // A `faults` build with this check off serves the local face here, as gateways did
        // before it had a listener of its own.
        ["v1", "query", rest @ ..] if fault::off(Check::LocalFaceApart) => {
            match contract_path(rest) {
                Some(r) => {
                    crate::consumer::local::handle(gw.clone(), identity, r, &parts.headers, body)
                        .await
                }
                None => not_found(),
            }
        }
        // A partner witnessing this gateway's log asks how two of its heads connect
        // (PROTOCOL.md §5.4). Any federation member may: heads and proofs hold no records.
        ["v1", "audit", "consistency"] if parts.method == Method::GET => {
            let query = parts.uri.query().unwrap_or_default();
            match crate::audit_api::consistency(&gw, query).await {
                Ok(v) => json(&v),
                Err(p) => problem(&p),
            }
        }
        // Refused whatever the method or the certificate: no caller can use the local face
        // through the federation's listener (PROTOCOL.md §4.1).
        ["v1", "query", ..] => problem(&Problem::new(
            ProblemCode::WrongListener,
            "the local face is not served on the federation listener: a member's own systems \
             call their gateway's local listener",
        )),
        ["v1", "manifest"] if parts.method == Method::GET => {
            let snap = gw.snapshot();
            let mut r = crate::http::jose(snap.manifest.jws().to_owned());
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(JOSE_MEDIA_TYPE),
            );
            r.headers_mut().insert(
                crate::http::MANIFEST_SERIAL,
                http::HeaderValue::from(snap.serial()),
            );
            r
        }
        ["v1", "contracts"] if parts.method == Method::GET => {
            // In the order of their references, the same on every call and every replica.
            let mut provided: Vec<&ContractRef> = gw
                .provider
                .provided
                .keys()
                .chain(gw.events.sources.keys())
                .collect();
            provided.sort();
            provided.dedup();
            let list: Vec<_> = provided
                .into_iter()
                .filter_map(|r| gw.catalog.get(r))
                .map(|c| json!({"id": c.doc().id, "version": c.doc().version, "title": c.doc().title, "digest": c.digest()}))
                .collect();
            json(&json!({ "provider": gw.member, "contracts": list }))
        }
        ["v1", "contracts", id, version] if parts.method == Method::GET => {
            let r = ContractRef::new(*id, *version);
            // An event contract is provided by the member that emits it (PROTOCOL.md §2.8):
            // its document is served like any other.
            let provided =
                gw.provider.provided.contains_key(&r) || gw.events.sources.contains_key(&r);
            match gw.catalog.get(&r).filter(|_| provided) {
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
        ["v1", "manifest"]
        | ["v1", "contracts"]
        | ["v1", "contracts", _, _]
        | ["v1", "audit", "consistency"] => wrong_method("GET"),
        _ => not_found(),
    }
}
