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

use contracts::{ContractRef, ExchangeRequest, MemberId, Problem};
use http::HeaderMap;
use hyper::body::Incoming;
use tracing::Instrument;

use crate::fault::{Check, unless_off};
use crate::gateway::Gateway;
use crate::http::{Reply, jose, problem};
use crate::record::{Seen, outcome_of, record};
use audit::Role;

/// What the pipeline read before it answered or refused: the audit record is made of it.
struct Read {
    text: Option<String>,
    request: Option<ExchangeRequest>,
}

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
    let started = Instant::now();
    let mut read = Read {
        text: None,
        request: None,
    };
    let outcome = run(gw, peer, &path, headers, body, &span, &mut read)
        .instrument(span.clone())
        .await;
    let latency_us = started.elapsed().as_micros() as u64;
    // The record is durable before the answer leaves; if it cannot be, nothing leaves.
    let request = read.request.as_ref();
    let seen = Seen {
        exchange_id: request.map_or("", |r| r.id.as_str()),
        role: Role::Provider,
        consumer: request.map_or_else(|| peer.map_or("", MemberId::as_str), |r| r.iss.as_str()),
        provider: gw.member.as_str(),
        contract: &path,
        purpose: request.map_or("", |r| r.purpose.as_str()),
        request_jws: read.text.as_deref(),
        query: request.map(|r| &r.query),
        response_jws: outcome.as_ref().ok().map(String::as_str),
        outcome: outcome_of(outcome.as_ref().err()),
        latency_us,
    };
    let outcome = match record(gw, seen).instrument(span.clone()).await {
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
    read: &mut Read,
) -> Result<String, Problem> {
    let text = read
        .text
        .insert(read_envelope::read_envelope(headers, body).await?);
    let (request, signer) = verify_signature::verify_signature(gw, text)?;
    let request = &*read.request.insert(request);
    let text = read.text.as_deref().unwrap_or_default();
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
    sign_answer::sign_answer(gw, request, text, &result).map_err(with_id)
}
