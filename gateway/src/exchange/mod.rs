//! The provider's side of an exchange (PROTOCOL.md §3): a signed request from a peer
//! gateway, checked in the protocol's order, answered through the contract's adapter, signed.
//!
//! Each step is one module with one rule; the order is the function [`handle`]. The first
//! failing step answers, with its problem code.

mod answer;
mod authorize;
mod check_audience;
mod check_freshness;
mod check_replay;
mod limit_rate;
mod read_envelope;
mod require_identity;
mod sign_answer;
mod validate_query;
mod verify_signature;

use std::time::Instant;

use contracts::{ContractRef, MemberId, Problem};
use http::HeaderMap;
use hyper::body::Incoming;
use tracing::Instrument;

use crate::fault::{Check, unless_off};
use crate::gateway::Gateway;
use crate::http::{Reply, jose, problem};
use crate::trail::Trail;
use audit::Role;

/// Handles `POST /v1/exchange/{id}/{version}` from the peer named by `peer`'s certificate.
pub async fn handle(
    gw: &Gateway,
    peer: Option<&MemberId>,
    path: ContractRef,
    headers: &HeaderMap,
    body: Incoming,
) -> Reply {
    let span =
        tracing::info_span!("exchange", member = %gw.member, exchange_id = tracing::field::Empty);
    let mut trail = Trail::new(&gw.audit, Role::Provider, &path);
    trail.set_provider(&gw.member);
    if let Some(peer) = peer {
        trail.set_consumer(peer);
    }
    let started = Instant::now();
    let outcome = run(gw, peer, &path, headers, body, &span, &mut trail)
        .instrument(span.clone())
        .await;
    let latency_us = started.elapsed().as_micros() as u64;
    if let Ok(jws) = &outcome {
        trail.set_response(jws);
    }
    // The record is durable before the answer leaves; if it cannot be, nothing leaves.
    let outcome = match trail
        .record(outcome.as_ref().err())
        .instrument(span.clone())
        .await
    {
        Ok(()) => outcome,
        Err(p) => Err(p),
    };
    let _enter = span.enter();
    match outcome {
        Ok(jws) => {
            tracing::info!(contract = %path, latency_us, outcome = "ok", "answered");
            jose(jws)
        }
        Err(p) => {
            tracing::info!(contract = %path, latency_us, outcome = %p.type_uri, detail = %p.detail, "refused");
            problem(&p)
        }
    }
}

async fn run(
    gw: &Gateway,
    peer: Option<&MemberId>,
    path: &ContractRef,
    headers: &HeaderMap,
    body: Incoming,
    span: &tracing::Span,
    trail: &mut Trail,
) -> Result<String, Problem> {
    let text = read_envelope::read_envelope(headers, body).await?;
    trail.set_request(&text);
    let (request, signer) = verify_signature::verify_signature(gw, &text)?;
    // Only a verified request names its exchange, consumer and purpose in the record.
    trail.set_exchange_id(&request.id);
    trail.set_consumer(&request.iss);
    trail.set_purpose(&request.purpose);
    trail.set_query(&request.query, gw.catalog.get(path));
    let request = &request;
    span.record("exchange_id", request.id.as_str());
    let id = Some(request.id.as_str());
    let with_id = |p: Problem| p.with_exchange_id(id);
    unless_off(
        Check::Identity,
        require_identity::require_identity(peer, &signer, request),
    )
    .map_err(with_id)?;
    unless_off(Check::Audience, check_audience::check_audience(gw, request)).map_err(with_id)?;
    unless_off(Check::PathMatch, check_audience::check_path(path, request)).map_err(with_id)?;
    unless_off(
        Check::Freshness,
        check_freshness::check_freshness(request, contracts::unix_now()),
    )
    .map_err(with_id)?;
    unless_off(Check::Replay, check_replay::check_replay(gw, request)).map_err(with_id)?;
    let (contract, provided) = authorize::authorize(gw, request).map_err(with_id)?;
    unless_off(
        Check::RateLimit,
        limit_rate::limit_rate(gw, provided, request).await,
    )
    .map_err(with_id)?;
    unless_off(
        Check::QuerySchema,
        validate_query::validate_query(contract, request),
    )
    .map_err(with_id)?;
    let result = answer::answer(gw, provided, contract, request)
        .await
        .map_err(with_id)?;
    sign_answer::sign_answer(gw, request, &text, &result).map_err(with_id)
}
