//! The provider's side of an exchange (PROTOCOL.md §3): a signed request from a peer
//! gateway, checked in the protocol's order, answered through the contract's adapter, signed.
//!
//! Each rule is one module that takes only what it checks and returns a typed
//! [`refusal::Refusal`]; the order is the functions `authenticate` (rows 1–12) and `run`
//! (from row 13), and [`refusal`] is the one place a refusal becomes a problem document.
//! [`handle`] first checks the peer's admission limit; a refusal before the signature
//! verified is counted into its minute's aggregate ([`crate::refusals`]); from then on the
//! exchange's trail records it before anything leaves.

mod authorize;
mod cache_lookup;
mod call_adapter;
mod check_answer;
mod check_audience;
mod check_freshness;
mod check_manifest;
mod check_path;
mod check_replay;
mod limit_rate;
mod read_envelope;
pub(crate) mod refusal;
mod require_identity;
mod sign_answer;
mod validate_query;
mod verify_signature;
mod witness_head;

#[cfg(test)]
mod fixtures;

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use contracts::envelope::MAX_REQUEST_BYTES;
use contracts::psi::wire::PSI_MEDIA_TYPE;
use contracts::trace::{self, TraceContext};
use contracts::{Contract, ContractRef, MemberId, Problem, ProblemCode};
use http::HeaderMap;
use hyper::body::Incoming;
use tracing::Instrument;

use self::refusal::Refusal;
use crate::escaped::Escaped;
use crate::fault::{Check, off, unless_off};
use crate::gateway::Gateway;
use crate::http::{Reply, jose, problem};
use crate::metrics::count;
use crate::overlap::body::Lists;
use crate::refusals::Unauthenticated;
use crate::snapshot::Snapshot;
use crate::trail::Trail;
use audit::Role;

/// Handles `POST /v1/exchange/{id}/{version}` from the peer named by `peer`'s certificate,
/// connected from `remote`. Every answer, a refusal included, carries this gateway's newest
/// signed tree head (PROTOCOL.md §5.4) and the serial of its manifest (§2.3). The exchange
/// runs under the trust snapshot current when it began, to its end.
pub async fn handle(
    gw: &Gateway,
    peer: Option<&MemberId>,
    remote: IpAddr,
    path: ContractRef,
    headers: &HeaderMap,
    body: Incoming,
) -> Reply {
    let snap = gw.snapshot();
    // A gateway that states a newer manifest than the one held here: fetched aside.
    if let (Some(peer), Some(serial)) = (
        peer.filter(|p| !p.is_subsystem()),
        crate::refresh::stated_serial(headers),
    ) {
        gw.hint(peer, serial, snap.serial());
    }
    let mut reply = respond(gw, &snap, peer, remote, path, headers, body).await;
    if let Some(head) = gw.audit.newest_head_jws()
        && let Ok(value) = http::HeaderValue::from_str(&head)
    {
        reply.headers_mut().insert(crate::http::TREE_HEAD, value);
    }
    reply.headers_mut().insert(
        crate::http::MANIFEST_SERIAL,
        http::HeaderValue::from(snap.serial()),
    );
    reply
}

#[allow(clippy::too_many_arguments)]
async fn respond(
    gw: &Gateway,
    snap: &Snapshot,
    peer: Option<&MemberId>,
    remote: IpAddr,
    path: ContractRef,
    headers: &HeaderMap,
    body: Incoming,
) -> Reply {
    let span = tracing::info_span!("exchange", member = %gw.member, exchange_id = tracing::field::Empty, trace_id = tracing::field::Empty);
    let started = Instant::now();
    // A path that names no contract of the catalog is not copied into the permanent record:
    // the refusal is recorded against an empty contract reference.
    let known = gw.catalog.get(&path);
    let recorded_as = if known.is_some() {
        path.clone()
    } else {
        ContractRef::new("", "")
    };
    // Before the pipeline: a peer over its admission limit costs no body read and no
    // signature check.
    let unauthenticated = Unauthenticated::new(&gw.provider.refusals, peer, &recorded_as);
    if let Err(over) = gw.provider.admission.admit(peer, remote) {
        count!(gw.labels, "simpul_admission_refused_total", "limit" => over.limit());
        let p = Refusal::OverAdmission(over).into_problem(None);
        return refused_unauthenticated(gw, unauthenticated, &path, &p, 0, started, &span);
    }
    // Row 0: no exchange under an expired manifest (fail closed until a current one is
    // adopted).
    if let Err(r) = check_manifest::check_manifest(&snap.manifest, contracts::unix_now()) {
        let p = r.into_problem(None);
        return refused_unauthenticated(gw, unauthenticated, &path, &p, 0, started, &span);
    }
    // A contract may take larger bodies than the protocol's default (PROTOCOL.md §3.5); the
    // path names it before a byte of the body is read.
    let body_limit = known.map_or(MAX_REQUEST_BYTES, Contract::max_request_bytes);
    // An overlap run's lists follow its envelope (PROTOCOL.md §2.7): only the envelope is
    // read before the signature is checked.
    let psi = known.and_then(Contract::overlap).is_some()
        && crate::http::require_media_type(headers, PSI_MEDIA_TYPE).is_ok();
    let envelope = match authenticate(snap, headers, body, body_limit, psi)
        .instrument(span.clone())
        .await
    {
        Ok(envelope) => envelope,
        Err((refusal, body_bytes)) => {
            let p = refusal.into_problem(None);
            return refused_unauthenticated(
                gw,
                unauthenticated,
                &path,
                &p,
                body_bytes,
                started,
                &span,
            );
        }
    };
    unauthenticated.authenticated();
    let mut trail = Trail::new(&gw.audit, &gw.labels, Role::Provider, &recorded_as);
    trail.set_started(started);
    trail.set_provider(&gw.member);
    // Who asked, as TLS authenticated them: the record names it whatever the request claims.
    if let Some(peer) = peer {
        trail.set_consumer(peer);
        trail.set_peer(peer);
    }
    // Kept as evidence only once it is also a request (below).
    trail.keep_request(envelope.text);
    let outcome = run(
        gw,
        snap,
        peer,
        &path,
        headers,
        envelope.payload,
        envelope.signer,
        envelope.lists,
        &span,
        &mut trail,
    )
    .instrument(span.clone())
    .await;
    let latency_us = started.elapsed().as_micros() as u64;
    if let Ok(signed) = &outcome {
        trail.set_response(&signed.jws);
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
        Ok(Signed { jws, lists: None }) => {
            tracing::info!(contract = %path, latency_us, outcome = "ok", "answered");
            jose(jws)
        }
        Ok(Signed {
            jws,
            lists: Some((lists, _run_slot)),
        }) => {
            tracing::info!(contract = %path, latency_us, outcome = "ok", bytes = lists.len(), "answered with lists");
            crate::http::with_lists(&jws, lists)
        }
        Err(p) => {
            tracing::info!(contract = %path, latency_us, outcome = %p.type_uri, detail = %Escaped(&p.detail), "refused");
            problem(&p)
        }
    }
}

/// Answers a refusal made before the request was authenticated: counted into its minute's
/// aggregate record (PROTOCOL.md §5.1), not recorded on its own, and logged at most once a
/// second (every one at debug level).
fn refused_unauthenticated(
    gw: &Gateway,
    unauthenticated: Unauthenticated<'_>,
    path: &ContractRef,
    p: &Problem,
    body_bytes: u64,
    started: Instant,
    span: &tracing::Span,
) -> Reply {
    let outcome = p.code().map_or("internal", ProblemCode::code);
    count!(gw.labels, "simpul_refused_before_authentication_total", "outcome" => outcome);
    let logged = unauthenticated.refused(outcome, body_bytes);
    let latency_us = started.elapsed().as_micros() as u64;
    let _enter = span.enter();
    match logged {
        Some(suppressed) => {
            tracing::info!(contract = %path, latency_us, outcome = %p.type_uri, detail = %Escaped(&p.detail), suppressed, "refused before authentication (counted, recorded with its minute)");
        }
        None => {
            tracing::debug!(contract = %path, latency_us, outcome = %p.type_uri, detail = %Escaped(&p.detail), "refused before authentication");
        }
    }
    problem(p)
}

/// A signed answer, and for an overlap run the lists that follow it with the run's slot.
struct Signed {
    jws: String,
    lists: Option<(Vec<u8>, crate::overlap::provider::RunHold)>,
}

/// A request whose envelope has been read and whose signature verified.
struct Envelope {
    /// An overlap run's lists, still to be read.
    lists: Option<Lists<Incoming>>,
    /// The body as received.
    text: String,
    /// Its payload.
    payload: Vec<u8>,
    /// The member whose key signed; `None` only in a `faults` build with the signature
    /// check switched off.
    signer: Option<MemberId>,
}

/// Rows 1–12 of PROTOCOL.md §3.3: the body is read, is a JWS and is signed by a key of the
/// manifest. What these refuse is counted, not recorded (so it is apart from [`run`]): on
/// refusal, the refusal and the body bytes read in full.
async fn authenticate(
    snap: &Snapshot,
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    psi: bool,
) -> Result<Envelope, (Refusal, u64)> {
    let body_limit = if off(Check::BodyLimit) {
        usize::MAX
    } else {
        limit
    };
    let (body, lists) = if psi {
        let (envelope, lists) = crate::overlap::body::read_envelope(body)
            .await
            .map_err(|(p, read)| (Refusal::Body(p), read))?;
        (envelope, Some(lists))
    } else {
        let body = read_envelope::read_envelope(headers, body, body_limit)
            .await
            .map_err(|r| (r, 0))?;
        (body, None)
    };
    let read = body.len() as u64;
    if !psi {
        unless_off(Check::MediaType, read_envelope::check_media_type(headers))
            .map_err(|r| (r, read))?;
    }
    let text = read_envelope::into_text(body).map_err(|r| (r, read))?;
    let (payload, signer) = match verify_signature::verify_signature(&snap.manifest, &text) {
        Ok(signed) => (signed.0, Some(signed.1)),
        Err(Refusal::BadSignature(_) | Refusal::UnknownKey { .. }) if off(Check::Signature) => (
            verify_signature::unverified_payload(&text).map_err(|r| (r, read))?,
            None,
        ),
        Err(r) => return Err((r, read)),
    };
    Ok(Envelope {
        lists,
        text,
        payload,
        signer,
    })
}

/// The rule list from row 13 on: each rule takes only what it checks, in the order of
/// PROTOCOL.md §3.3; the first refusal answers. A `faults` build may switch one check off
/// here (or in [`authenticate`]), and only there.
#[allow(clippy::too_many_arguments)]
async fn run(
    gw: &Gateway,
    snap: &Snapshot,
    peer: Option<&MemberId>,
    path: &ContractRef,
    headers: &HeaderMap,
    payload: Vec<u8>,
    signer: Option<MemberId>,
    lists: Option<Lists<Incoming>>,
    span: &tracing::Span,
    trail: &mut Trail,
) -> Result<Signed, Problem> {
    let refused = |r: Refusal| r.into_problem(None);
    let (request, exchange_id) = match verify_signature::read_request(&payload) {
        Err(Refusal::NotStrictJson(_)) if off(Check::StrictJson) => {
            verify_signature::read_request_leniently(&payload)
        }
        other => other,
    }
    .map_err(refused)?;
    if signer.is_some() {
        trail.authenticated();
    }
    let signer = signer.unwrap_or_else(|| request.iss.clone());
    // Only a verified request names its exchange and purpose in the record; its consumer
    // only once the identity check below found it to be the TLS peer.
    trail.set_exchange_id(&request.id);
    trail.set_purpose(&request.purpose);
    trail.set_query(&request.query, gw.catalog.get(path));
    span.record("exchange_id", request.id.as_str());
    // The consumer's trace context (outside the signature, PROTOCOL.md §3.8): named in the
    // logs and sent on to an HTTP backend, never recorded.
    let trace = TraceContext::from_headers(
        headers.get(trace::TRACEPARENT).map(|v| v.as_bytes()),
        headers.get(trace::TRACESTATE).map(|v| v.as_bytes()),
    );
    if let Some(t) = &trace {
        span.record("trace_id", t.trace_id());
    }
    // From here the exchange is a verified consumer's: its span joins the consumer's trace
    // (exported with the `otel` feature), and the context sent on to an HTTP backend names it.
    let answer =
        tracing::info_span!(parent: span, "answer", exchange_id = %request.id, contract = %path);
    let onward = trace.as_ref().map(|t| crate::tracectx::join(&answer, t));
    async {
        let id = Some(request.id.as_str());
        let refused = |r: Refusal| r.into_problem(id);
        let request = &request;

        unless_off(
            Check::Identity,
            require_identity::require_identity(peer, &signer, request),
        )
        .map_err(refused)?;
        trail.set_consumer(&request.iss);
        // Right after the identity: the head is the consumer's, and a member whose log forked
        // is refused before anything else is asked of this gateway.
        match witness_head::witness_head(
            &gw.witness,
            &snap.manifest,
            snap.peers.get(&request.iss),
            &request.iss,
            headers,
        )
        .await
        {
            Err(Refusal::Witness(crate::witness::WitnessError::BadHead(_))) if off(Check::TreeHead) => {
            }
            other => other.map_err(refused)?,
        }
        unless_off(
            Check::Audience,
            check_audience::check_audience(&gw.member, request),
        )
        .map_err(refused)?;
        unless_off(Check::PathMatch, check_path::check_path(path, request)).map_err(refused)?;
        unless_off(
            Check::Freshness,
            check_freshness::check_freshness(request, contracts::unix_now()),
        )
        .map_err(refused)?;
        // Replay after the signature: only verified ids take room in the window.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        unless_off(
            Check::Replay,
            check_replay::check_replay(&gw.provider.replay, request, exchange_id, now).await,
        )
        .map_err(refused)?;
        let mut asked = ContractRef::new(&request.contract, &request.version);
        // A delivery of an event contract (PROTOCOL.md §2.8) is the one exchange that runs
        // the other way: its provider asks, this gateway — a subscriber — answers with a
        // receipt. Everything above holds for it as for any exchange.
        if let Some(contract) = gw.catalog.get(&asked).filter(|c| c.event().is_some()) {
            // The sender emits the contract, and this member is granted it.
            unless_off(
                Check::Authorization,
                authorize::authorize_delivery(&snap.manifest, &gw.member, contract, request)
                    .map(drop),
            )
            .map_err(refused)?;
            let receipt = crate::events::receive::receive(gw, snap, contract, request)
                .await
                .map_err(refused)?;
            return sign_answer::sign_answer(
                &snap.signing,
                &gw.member,
                request,
                trail.request(),
                &receipt,
                contracts::unix_now(),
            )
            .map(|jws| Signed { jws, lists: None })
            .map_err(refused);
        }
        if off(Check::Contract) && !gw.provider.provided.contains_key(&asked) {
            // Faults builds only: answer an unknown contract with one that is provided here.
            if let Some(any) = gw.provider.provided.keys().next() {
                asked = any.clone();
            }
        }
        let found = authorize::find_contract(
            &snap.manifest,
            &gw.catalog,
            &gw.provider.provided,
            &gw.member,
            &asked,
        )
        .map_err(refused)?;
        unless_off(
            Check::Authorization,
            authorize::authorize(&snap.manifest, found.listed, request),
        )
        .map_err(refused)?;
        let provided = found.provided;
        // Rate after authorisation: a consumer that may not ask spends no quota. A batch
        // spends one unit per item (at most its `max_items`: a longer array is refused by
        // the schema next).
        let cost = found.contract.item_count(&request.query);
        match limit_rate::limit_rate(&snap.rates, &provided.reference, request, cost).await {
            Ok(()) => provided.counters.rate_admitted.increment(1),
            Err(r) if off(Check::RateLimit) => drop(r),
            Err(r) => {
                count!(gw.labels, "simpul_rate_limited_total", "contract" => provided.reference.to_string(), "consumer" => request.iss.to_string());
                return Err(refused(r));
            }
        }
        unless_off(
            Check::QuerySchema,
            validate_query::validate_query(found.contract, request),
        )
        .map_err(refused)?;
        // A statistics question is read after its schema: it names only the contract's
        // dimensions, whatever the schema allows.
        let statistics =
            validate_query::read_statistics(found.contract, request).map_err(refused)?;
        // An overlap contract answers a run with lists after the signed answer, and a report
        // from its own evidence; neither is cached.
        if let Some(terms) = found.contract.overlap() {
            let answered = crate::overlap::provider::answer(
                gw,
                provided,
                &provided.reference,
                terms,
                request,
                lists,
                trail,
            )
            .await
            .map_err(refused)?;
            check_answer::check_answer(found.contract, &answered.result).map_err(refused)?;
            let jws = sign_answer::sign_answer(
                &snap.signing,
                &gw.member,
                request,
                trail.request(),
                &answered.result,
                contracts::unix_now(),
            )
            .map_err(refused)?;
            return Ok(Signed {
                jws,
                lists: answered.lists,
            });
        }
        // The cache after every check: a cached answer never reaches a consumer that could
        // not have asked, and is signed afresh for this request.
        let (key, hit) = cache_lookup::cache_lookup(&gw.provider.cache, provided, request);
        let result = match hit {
            Some(result) => result,
            None => {
                let result = match (found.contract.statistics(), &statistics) {
                    // The disclosure rules are applied here, before the answer is checked,
                    // cached or signed: no path to a signature skips them.
                    (Some(stats), Some(question)) => {
                        call_adapter::call_table(provided, stats, question).await
                    }
                    _ => call_adapter::call_adapter(provided, request, onward.as_ref()).await,
                }
                .map_err(refused)?;
                check_answer::check_answer(found.contract, &result).map_err(refused)?;
                let result = std::sync::Arc::new(result);
                if let (Some(key), Some(ttl)) = (key, provided.cache_ttl) {
                    gw.provider
                        .cache
                        .insert(key, provided.reference.clone(), result.clone(), ttl);
                }
                result
            }
        };
        sign_answer::sign_answer(
            &snap.signing,
            &gw.member,
            request,
            trail.request(),
            &result,
            contracts::unix_now(),
        )
        .map(|jws| Signed { jws, lists: None })
        .map_err(refused)
    }
    .instrument(answer.clone())
    .await
}
