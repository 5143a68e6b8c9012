//! The consumer's side of an exchange (PROTOCOL.md §4): build and sign the request as this
//! gateway's member, send it to the provider's gateway over mutual TLS, and accept the answer
//! only if it is signed by the provider's key from the manifest and bound to this request.

use std::future::Future;
use std::pin::Pin;

use audit::record::OverlapFigures;
use bytes::Bytes;
use contracts::psi::wire::PSI_MEDIA_TYPE;
use tokio::time::Instant;

use contracts::canonical::sha256_b64url;
use contracts::envelope::{
    ANSWER_TYP, Evidence, JOSE_MEDIA_TYPE, LocalAnswer, MAX_VALIDITY_S, REQUEST_TYP,
};
use contracts::trace::{self, TraceContext};
use contracts::{
    ContractRef, ExchangeAnswer, ExchangeRequest, MemberId, ParsedJws, Problem, ProblemCode,
};
use http::{Method, StatusCode};
use serde_json::Value;

use super::Caller;
use crate::client::CallError;
use crate::escaped::Escaped;
use crate::gateway::Gateway;
use crate::refresh::stated_serial;
use crate::snapshot::{MANIFEST_SERIAL_HEADER, Snapshot};
use crate::trail::Trail;
use crate::witness::{TREE_HEAD_HEADER, WitnessError};
use audit::Role;
use limits::breaker::Admission;
use limits::rate::RateDecision;

/// How long a request this gateway signs stays valid.
const REQUEST_VALIDITY_S: i64 = 60;

/// A query checked against its contract's request schema, once, before any exchange is
/// asked with it.
#[derive(Clone, Debug)]
pub struct CheckedQuery(Value);

impl CheckedQuery {
    /// Checks `query` against the request schema of `contract` in this gateway's catalog. A
    /// contract without a document passes: [`ask`] refuses it as unknown, with its record.
    ///
    /// # Errors
    /// A 400 `invalid-query` problem naming what is wrong (never the values).
    pub fn check(gw: &Gateway, contract: &ContractRef, query: Value) -> Result<Self, Problem> {
        if let Some(doc) = gw.catalog.get(contract) {
            doc.check_request(&query, "/query")
                .map_err(Problem::invalid_query)?;
        }
        Ok(CheckedQuery(query))
    }
}

/// Asks `contract` on behalf of `caller` for `purpose`, answering by `deadline`, under the
/// trust snapshot `snap` (loaded once when the local query began); `lookup` is the id of
/// the federated lookup it is a part of. Whatever the outcome, it is on this
/// gateway's audit log before the caller hears of it — and if the caller stops waiting, the
/// exchange is recorded as cancelled.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn ask(
    gw: &Gateway,
    snap: &Snapshot,
    caller: &Caller,
    contract: &ContractRef,
    purpose: &str,
    query: CheckedQuery,
    deadline: Instant,
    lookup: Option<&str>,
) -> Result<LocalAnswer, Problem> {
    let id = contracts::ExchangeId::new().to_string();
    ask_as(
        gw, snap, caller, contract, purpose, query, deadline, lookup, &id, None, None,
    )
    .await
}

/// The lists an overlap run sends after its request (PROTOCOL.md §2.7), and what the run
/// makes of the lists after the answer — before the exchange is recorded, so that an answer
/// whose lists fail is recorded as failed.
pub(crate) struct Outgoing {
    /// The frames of the consumer's groups.
    pub(crate) lists: Vec<u8>,
    /// The most bytes the answer may have.
    pub(crate) max_answer: usize,
    /// From the verified answer's `result` and the bytes after its LF, the result the
    /// caller is given and the run's figures for its record, or why the lists are refused.
    pub(crate) receive: Box<dyn FnOnce(Value, Bytes) -> Receiving + Send>,
}

/// What [`Outgoing::receive`] returns.
pub(crate) type Receiving =
    Pin<Box<dyn Future<Output = Result<(Value, OverlapFigures), String>> + Send>>;

/// [`ask`] as the exchange `id`, with an overlap run's `outgoing` lists, its record holding
/// an overlap run's or report's `figures` (a run's replaced by what it counted).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn ask_as(
    gw: &Gateway,
    snap: &Snapshot,
    caller: &Caller,
    contract: &ContractRef,
    purpose: &str,
    query: CheckedQuery,
    deadline: Instant,
    lookup: Option<&str>,
    id: &str,
    outgoing: Option<Outgoing>,
    figures: Option<OverlapFigures>,
) -> Result<LocalAnswer, Problem> {
    let id = id.to_owned();
    // A contract neither the catalog nor the manifest knows is a path's text: not copied
    // into the permanent record.
    let known = gw.catalog.contains_key(contract) || snap.manifest.contract(contract).is_some();
    let recorded_as = if known {
        contract.clone()
    } else {
        ContractRef::new("", "")
    };
    let mut trail = Trail::new(&gw.audit, &gw.labels, Role::Consumer, &recorded_as);
    trail.set_exchange_id(&id);
    trail.set_consumer(&gw.member);
    trail.set_subsystem(&caller.subsystem);
    if let Some(user) = &caller.user {
        trail.set_user(user);
    }
    trail.set_purpose(purpose);
    trail.set_query(&query.0, gw.catalog.get(contract));
    if let Some(lookup) = lookup {
        trail.set_lookup_id(lookup);
    }
    if let Some(figures) = figures {
        trail.set_overlap(figures);
    }
    let result = exchange(
        gw, snap, caller, contract, purpose, query.0, deadline, &id, &mut trail, outgoing,
    )
    .await
    .map_err(|p| p.with_exchange_id(Some(&id)));
    trail.record(result.as_ref().err()).await?;
    result
}

#[allow(clippy::too_many_arguments)]
async fn exchange(
    gw: &Gateway,
    snap: &Snapshot,
    caller: &Caller,
    contract: &ContractRef,
    purpose: &str,
    query: Value,
    deadline: Instant,
    id: &str,
    trail: &mut Trail,
    outgoing: Option<Outgoing>,
) -> Result<LocalAnswer, Problem> {
    // No exchange under an expired manifest (fail closed until a current one is adopted).
    if snap.expired(contracts::unix_now()) {
        return Err(snap.expired_problem());
    }
    let listed = snap.manifest.contract(contract).ok_or_else(|| {
        Problem::new(
            ProblemCode::UnknownContract,
            format!("{contract} is not in the manifest"),
        )
    })?;
    // Refused here rather than by the provider: the answer would be the same, one trip later.
    snap.manifest
        .authorize(listed, &gw.member, purpose)
        .map_err(|e| Problem::new(ProblemCode::Forbidden, e.to_string()))?;
    let doc = gw.catalog.get(contract).ok_or_else(|| {
        Problem::new(
            ProblemCode::UnknownContract,
            format!("no document for {contract} in the catalog"),
        )
    })?;
    let provider = listed.provider.clone();
    trail.set_provider(&provider);
    let client = snap
        .peers
        .get(&provider)
        .ok_or_else(|| Problem::new(ProblemCode::Internal, format!("no client for {provider}")))?;

    let now = contracts::unix_now();
    let request = ExchangeRequest {
        v: 1,
        id: id.to_owned(),
        iss: gw.member.clone(),
        sub: Some(caller.subsystem.clone()),
        aud: provider.clone(),
        contract: contract.id.clone(),
        version: contract.version.clone(),
        purpose: purpose.to_owned(),
        iat: now,
        exp: now + REQUEST_VALIDITY_S.min(MAX_VALIDITY_S),
        query,
    };
    let check_result = |result: &Value| {
        doc.check_response(result, "/result")
            .map_err(|errors| format!("answer result violates the response schema: {errors:?}"))
    };
    let to = Recipient {
        member: &provider,
        client,
        trace: caller.trace.as_ref(),
        max_request: doc.max_request_bytes(),
        check_result: &check_result,
    };
    let (result, evidence) = send(gw, snap, request, to, deadline, trail, outgoing).await?;
    Ok(LocalAnswer {
        exchange_id: id.to_owned(),
        provider,
        result,
        evidence,
    })
}

/// The member a signed request goes to, and how its answer's `result` is checked.
pub(crate) struct Recipient<'a> {
    /// The member that answers.
    pub(crate) member: &'a MemberId,
    /// The mutual-TLS client towards its gateway.
    pub(crate) client: &'a crate::client::PeerClient,
    /// The member system's trace context, continued from a span of this exchange's own.
    pub(crate) trace: Option<&'a TraceContext>,
    /// The most bytes the signed request may have (PROTOCOL.md §3.5).
    pub(crate) max_request: usize,
    /// The answer's `result` against what the contract allows.
    pub(crate) check_result: &'a (dyn Fn(&Value) -> Result<(), String> + Sync),
}

/// Signs `request`, sends it to `to` by `deadline` (an overlap run's `outgoing` lists after
/// it), and accepts the answer only if it verifies ([`verify_answer`]); the trail holds both
/// envelopes as they went and came. The verified `result` and the envelopes.
pub(crate) async fn send(
    gw: &Gateway,
    snap: &Snapshot,
    request: ExchangeRequest,
    to: Recipient<'_>,
    deadline: Instant,
    trail: &mut Trail,
    outgoing: Option<Outgoing>,
) -> Result<(Value, Evidence), Problem> {
    let (id, provider, client) = (request.id.as_str(), to.member, to.client);
    let contract = ContractRef::new(&request.contract, &request.version);
    let span = tracing::info_span!("ask", member = %gw.member, exchange_id = %id, contract = %contract, provider = %provider, trace_id = tracing::field::Empty);
    // The member system's trace goes on to the provider from a span of this exchange's own.
    let trace = to.trace.map(|t| crate::tracectx::join(&span, t));
    if let Some(t) = &trace {
        span.record("trace_id", t.trace_id());
    }
    // Entered only around each log line: a span guard must not be held across an await.
    let fail = |p: Problem| {
        let mut p = p.with_exchange_id(Some(id));
        p.provider = Some(provider.to_string());
        let _in_span = span.enter();
        tracing::info!(outcome = %p.type_uri, detail = %Escaped(&p.detail), "exchange failed");
        p
    };
    // Before signing: a request that will not be sent is not signed.
    // A provider that keeps failing is not asked again until its breaker lets a probe through.
    let breaker = gw.consumer.breakers.get(provider);
    if let Some(b) = &breaker
        && let Admission::FailFast { retry_after } = b.breaker.admit()
    {
        b.fail_fast.increment(1);
        let mut p = Problem::new(
            ProblemCode::ProviderUnavailable,
            format!(
                "{provider} keeps failing: its circuit is open, next try in {} ms",
                retry_after.as_millis()
            ),
        );
        p.retry_after = Some(RateDecision::retry_after_s(retry_after));
        return Err(fail(p));
    }
    // A provider whose log was caught forked is not asked (PROTOCOL.md §5.4).
    gw.witness
        .refuses(provider)
        .map_err(|e| fail(Problem::new(e.code(), e.to_string())))?;
    let payload = serde_json::to_vec(&request).map_err(|e| {
        fail(Problem::new(
            ProblemCode::Internal,
            format!("cannot encode the request: {e}"),
        ))
    })?;
    let jws = snap.signing.sign(REQUEST_TYP, &payload).map_err(|e| {
        fail(Problem::new(
            ProblemCode::Internal,
            format!("cannot sign: {e}"),
        ))
    })?;
    trail.set_request(&jws);
    // A request the provider would refuse for its size is not sent (PROTOCOL.md §3.5).
    if jws.len() > to.max_request {
        return Err(fail(Problem::new(
            ProblemCode::PayloadTooLarge,
            format!(
                "the signed request would be {} bytes, over the {} bytes {contract} takes: ask about fewer items at once",
                jws.len(),
                to.max_request
            ),
        )));
    }
    let peer = snap.manifest.member(provider).ok_or_else(|| {
        fail(Problem::new(
            ProblemCode::UnknownContract,
            format!("{provider} is not in the manifest"),
        ))
    })?;
    let url = format!(
        "{}/v1/exchange/{}/{}",
        peer.gateway.trim_end_matches('/'),
        contract.id,
        contract.version
    );
    // The request carries this gateway's newest signed tree head for the provider to witness.
    // And the serial of the manifest it holds (PROTOCOL.md §2.3).
    let head = gw.audit.newest_head_jws();
    let serial = snap.serial().to_string();
    let traceparent = trace.as_ref().map(TraceContext::traceparent);
    let headers: Vec<(&str, &str)> = head
        .as_deref()
        .map(|h| (TREE_HEAD_HEADER, h))
        .into_iter()
        .chain([(MANIFEST_SERIAL_HEADER, serial.as_str())])
        .chain(traceparent.as_deref().map(|t| (trace::TRACEPARENT, t)))
        .chain(
            trace
                .as_ref()
                .and_then(TraceContext::tracestate)
                .map(|t| (trace::TRACESTATE, t)),
        )
        .collect();
    // An overlap run's lists follow its envelope after an LF.
    let (content_type, body, max_answer, receive) = match outgoing {
        None => (JOSE_MEDIA_TYPE, Bytes::from(jws.clone()), None, None),
        Some(out) => {
            let mut body = Vec::with_capacity(jws.len() + 1 + out.lists.len());
            body.extend_from_slice(jws.as_bytes());
            body.push(b'\n');
            body.extend_from_slice(&out.lists);
            (
                PSI_MEDIA_TYPE,
                Bytes::from(body),
                Some(out.max_answer),
                Some(out.receive),
            )
        }
    };
    let reply = match max_answer {
        None => {
            client
                .call_with(
                    Method::POST,
                    &url,
                    content_type,
                    &headers,
                    body,
                    deadline.saturating_duration_since(Instant::now()),
                )
                .await
        }
        Some(max_answer) => {
            client
                .call_bounded(
                    Method::POST,
                    &url,
                    content_type,
                    &headers,
                    body,
                    deadline.saturating_duration_since(Instant::now()),
                    max_answer,
                )
                .await
        }
    };
    if let Some(b) = &breaker {
        let ok = reply.as_ref().is_ok_and(|r| !r.status.is_server_error());
        b.breaker.record(ok);
        b.state.set(f64::from(b.breaker.state_code()));
    }
    if reply.is_ok() {
        // The client talks only to a server whose certificate names the provider.
        trail.set_peer(provider);
    }
    let reply = reply.map_err(|e| {
        fail(match e {
            CallError::Timeout(_) => Problem::new(ProblemCode::ProviderTimeout, e.to_string()),
            CallError::Unreachable { .. } | CallError::Request(_) => {
                Problem::new(ProblemCode::ProviderUnavailable, e.to_string())
            }
            CallError::TooLarge(_) => Problem::new(ProblemCode::BadAnswer, e.to_string()),
        })
    })?;
    // A provider that holds a newer manifest: fetched aside.
    if let Some(stated) = stated_serial(&reply.headers) {
        gw.hint(provider, stated, snap.serial());
    }
    // The provider's head, on an answer and a refusal alike: witnessed before anything of
    // the reply is taken.
    let mut heads = reply.headers.get_all(TREE_HEAD_HEADER).iter();
    let (head, more) = (heads.next(), heads.next().is_some());
    if more {
        return Err(fail(Problem::new(
            ProblemCode::BadAnswer,
            format!("the answer carries {TREE_HEAD_HEADER} more than once"),
        )));
    }
    gw.witness
        .observe(&snap.manifest, Some(client), provider, head)
        .await
        .map_err(|e| {
            let code = match e {
                WitnessError::BadHead(_) => ProblemCode::BadAnswer,
                _ => e.code(),
            };
            fail(Problem::new(code, e.to_string()))
        })?;
    if reply.status != StatusCode::OK {
        // The provider's refusal is relayed as it said it, with its status.
        let relayed = contracts::json::from_slice::<Problem>(&reply.body)
            .ok()
            .filter(|p| p.code().is_some() && p.status == reply.status.as_u16());
        return Err(fail(relayed.unwrap_or_else(|| {
            Problem::new(
                ProblemCode::BadAnswer,
                format!(
                    "the provider answered {} without a problem document",
                    reply.status
                ),
            )
        })));
    }
    // An overlap run's answer: the signed answer before the first LF, its lists after.
    let (envelope, lists) = match &receive {
        None => (reply.body.clone(), Bytes::new()),
        Some(_) => {
            let Some(lf) = reply.body.iter().position(|&b| b == b'\n') else {
                return Err(fail(Problem::new(
                    ProblemCode::BadAnswer,
                    "the answer to an overlap run carries no lists after its envelope",
                )));
            };
            (reply.body.slice(..lf), reply.body.slice(lf + 1..))
        }
    };
    let text = std::str::from_utf8(&envelope).map_err(|_| {
        fail(Problem::new(
            ProblemCode::BadAnswer,
            "the answer is not UTF-8",
        ))
    })?;
    // Kept as evidence even when it fails verification: that is when it matters most.
    trail.set_response(text);
    let answer = verify_answer(snap, &request, &jws, text, to.check_result)
        .map_err(|detail| fail(Problem::new(ProblemCode::BadAnswer, detail)))?;
    let result = match receive {
        None => answer.result,
        Some(receive) => {
            let (result, figures) = receive(answer.result, lists)
                .await
                .map_err(|detail| fail(Problem::new(ProblemCode::BadAnswer, detail)))?;
            trail.set_overlap(figures);
            result
        }
    };
    span.in_scope(|| tracing::info!(outcome = "ok", "answered"));
    Ok((
        result,
        Evidence {
            request: jws,
            response: text.to_owned(),
        },
    ))
}

/// Accepts an answer only if it is a `simpul-response+jws` signed by a key the manifest
/// lists for the provider, inside the key's window at the answer's `iat`, for this exchange
/// id, addressed to this member, for this contract, bound to the exact request bytes, and
/// whose `result` passes `check_result` (the response schema; a delivery's receipt form).
fn verify_answer(
    snap: &Snapshot,
    request: &ExchangeRequest,
    request_jws: &str,
    text: &str,
    check_result: &(dyn Fn(&Value) -> Result<(), String> + Sync),
) -> Result<ExchangeAnswer, String> {
    let parsed = ParsedJws::parse(text, ANSWER_TYP).map_err(|e| format!("answer JWS: {e}"))?;
    let kid = parsed.header.kid.as_deref().unwrap_or_default();
    let (owner, key) = snap
        .manifest
        .key(kid)
        .ok_or_else(|| format!("answer kid `{kid}` is not in the manifest"))?;
    if owner != &request.aud {
        return Err(format!(
            "answer signed by {owner}, the provider is {}",
            request.aud
        ));
    }
    key.verify(&parsed).map_err(|e| format!("answer: {e}"))?;
    let answer: ExchangeAnswer =
        contracts::json::from_slice(&parsed.payload).map_err(|e| format!("answer payload: {e}"))?;
    // Signed inside the key's window (PROTOCOL.md §1.5): its `iat`.
    snap.manifest
        .key_at(kid, answer.iat)
        .map_err(|e| format!("answer: {e}"))?;
    let expected_hash = sha256_b64url(request_jws.as_bytes());
    let checks = [
        (answer.v == 1, "v is not 1"),
        (answer.id == request.id, "id is not this exchange's"),
        (answer.iss == request.aud, "iss is not the provider"),
        (answer.aud == request.iss, "aud is not this member"),
        (
            answer.contract == request.contract && answer.version == request.version,
            "contract differs",
        ),
        (
            answer.request_hash == expected_hash,
            "request_hash does not match the request sent",
        ),
    ];
    if let Some((_, what)) = checks.iter().find(|(ok, _)| !ok) {
        return Err(format!("answer {what}"));
    }
    check_result(&answer.result)?;
    Ok(answer)
}
