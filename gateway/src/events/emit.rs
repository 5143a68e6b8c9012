//! Emitting (PROTOCOL.md §4.5): `POST /v1/events/{id}/{version}` on the local face. A
//! subsystem named among the event contract's `emitters` sends the event's `data`; the
//! gateway checks it against the contract, signs the event once, keeps it in the outbox
//! (durable before the answer) and records it; the sender then delivers it to every
//! subscriber. [`sign_and_keep`] and [`record_emitted`] are the part the change-table
//! poller (`events/changes.rs`) shares.

use std::sync::Arc;

use audit::Role;
use audit_store::events::{Emitted, NewEvent};
use contracts::events::{EVENT_TYP, Event, MAX_EVENT_BYTES};
use contracts::{ContractRef, Identity, MemberId, Problem, ProblemCode};
use http::{HeaderMap, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::gateway::Gateway;
use crate::http::{Reply, problem, read_body, require_media_type};
use crate::metrics::count;
use crate::trail::Trail;

/// The most bytes of an emitted event's body.
const MAX_EMIT_BYTES: usize = 16 * 1024;

/// What a member system sends to emit an event.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Emit {
    /// The change, valid against the contract's request schema.
    data: Value,
    /// The member system's own number for the change (a row of its change table), at most
    /// once per contract: a change sent again is answered with the event it made the first
    /// time, not emitted twice.
    #[serde(default)]
    source: Option<i64>,
}

/// The answer: the event's id and its place in the outbox.
#[derive(Serialize)]
struct Emitted202 {
    event_id: String,
    seq: i64,
    /// The change had been emitted before (the same `source`): nothing new was emitted.
    repeated: bool,
}

/// Handles `POST /v1/events/{id}/{version}` on the local listener.
pub async fn handle(
    gw: Arc<Gateway>,
    peer: Option<&Identity>,
    path: ContractRef,
    headers: &HeaderMap,
    body: Incoming,
) -> Reply {
    let id = contracts::ExchangeId::new().to_string();
    let recorded_as = if gw.events.sources.contains_key(&path) {
        path.clone()
    } else {
        ContractRef::new("", "")
    };
    let mut trail = Trail::new(&gw.audit, &gw.labels, Role::Provider, &recorded_as);
    trail.set_exchange_id(&id);
    trail.set_consumer(&gw.member);
    trail.set_provider(&gw.member);
    let emit = match admit(&gw, peer, &path, headers, body, &mut trail).await {
        Ok(emit) => emit,
        Err(p) => return refused(p, &id, trail).await,
    };
    // Once the body is in, the emission runs to its end in a task of its own: a caller that
    // hangs up while its event waits for the outbox's group commit must not leave an event
    // that is kept and delivered but recorded as cancelled.
    let task = tokio::spawn(async move {
        let outcome = sign_and_keep(&gw, &path, emit.data, emit.source, &id, &mut trail).await;
        match outcome {
            Ok(Emitted::Existing { seq, id }) => {
                // Nothing new was emitted: the first emission has its record.
                trail.dismiss();
                crate::http::json(&Emitted202 {
                    event_id: id,
                    seq,
                    repeated: true,
                })
            }
            Ok(Emitted::New { seq }) => match record_emitted(&gw, &path, trail).await {
                Ok(()) => {
                    let mut reply = crate::http::json(&Emitted202 {
                        event_id: id,
                        seq,
                        repeated: false,
                    });
                    *reply.status_mut() = StatusCode::ACCEPTED;
                    reply
                }
                Err(not_durable) => problem(&not_durable),
            },
            Err(p) => refused(p, &id, trail).await,
        }
    });
    task.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "an emission's task stopped");
        problem(&Problem::new(
            ProblemCode::Internal,
            "the emission stopped before it was answered",
        ))
    })
}

/// Records a refused emission and answers its problem.
async fn refused(p: Problem, id: &str, trail: Trail) -> Reply {
    let p = p.with_exchange_id(Some(id));
    match trail.record(Some(&p)).await {
        Ok(()) => problem(&p),
        Err(not_durable) => problem(&not_durable),
    }
}

/// The local face's own checks of an emission (its emitter, its body): what a member system
/// sent to emit an event of `path`.
async fn admit(
    gw: &Gateway,
    peer: Option<&Identity>,
    path: &ContractRef,
    headers: &HeaderMap,
    body: Incoming,
    trail: &mut Trail,
) -> Result<Emit, Problem> {
    let subsystem: MemberId = crate::consumer::caller(gw, peer)?;
    trail.set_subsystem(&subsystem);
    let source = gw.events.sources.get(path).ok_or_else(|| {
        Problem::new(
            ProblemCode::UnknownContract,
            format!("{path} is not an event contract {} emits", gw.member),
        )
    })?;
    if !source.emitters.contains(&subsystem) {
        return Err(Problem::new(
            ProblemCode::NotGranted,
            format!("{subsystem} is not among the emitters of {path}"),
        ));
    }
    let bytes = read_body(headers, body, MAX_EMIT_BYTES).await?;
    require_media_type(headers, "application/json")?;
    contracts::json::from_slice(&bytes).map_err(|e| {
        Problem::new(
            ProblemCode::Malformed,
            format!("the body is not {{\"data\", \"source\"}}: {e}"),
        )
    })
}

/// Emits `data` as the event `id` of `path`, an event contract this member emits: checks it
/// against the contract's request schema, signs the event once and keeps it in the outbox,
/// durable when this returns, filling `trail` (subject, request) as it goes;
/// [`Emitted::Existing`] when an event of the same `source` was emitted before, and nothing
/// new was. The caller records the trail: [`record_emitted`] for a new event.
pub(crate) async fn sign_and_keep(
    gw: &Gateway,
    path: &ContractRef,
    data: Value,
    source: Option<i64>,
    id: &str,
    trail: &mut Trail,
) -> Result<Emitted, Problem> {
    let contract = gw
        .catalog
        .get(path)
        .ok_or_else(|| Problem::new(ProblemCode::Internal, format!("{path} has no document")))?;
    let terms = contract.event().ok_or_else(|| {
        Problem::new(
            ProblemCode::Internal,
            format!("{path} is not an event contract"),
        )
    })?;
    trail.set_query(&data, Some(contract));
    contract
        .check_request(&data, "/data")
        .map_err(Problem::invalid_query)?;
    let snap = gw.snapshot();
    let now = contracts::unix_now();
    if snap.expired(now) {
        return Err(snap.expired_problem());
    }
    let event = Event {
        v: 1,
        id: id.to_owned(),
        iss: gw.member.clone(),
        contract: path.id.clone(),
        version: path.version.clone(),
        iat: now,
        exp: now + terms.retention_s(),
        data,
    };
    let subject = event.subject(terms).unwrap_or_default().to_owned();
    let payload = serde_json::to_vec(&event)
        .map_err(|e| Problem::new(ProblemCode::Internal, format!("cannot encode: {e}")))?;
    let jws = snap
        .signing
        .sign(EVENT_TYP, &payload)
        .map_err(|e| Problem::new(ProblemCode::Internal, format!("cannot sign: {e}")))?;
    if jws.len() > MAX_EVENT_BYTES {
        return Err(Problem::new(
            ProblemCode::PayloadTooLarge,
            format!(
                "the signed event would be {} bytes, over the {MAX_EVENT_BYTES} an event may have",
                jws.len()
            ),
        ));
    }
    trail.set_request(&jws);
    gw.events
        .store
        .emit(&NewEvent {
            id: id.to_owned(),
            contract: path.id.clone(),
            version: path.version.clone(),
            subject,
            emitted_ms: now.saturating_mul(1000),
            expires_ms: event.exp.saturating_mul(1000),
            jws,
            source,
        })
        .await
        .map_err(|e| {
            tracing::error!(member = %gw.member, exchange_id = id, error = %e, "the outbox cannot keep an event");
            let mut p = Problem::new(
                ProblemCode::ProviderUnavailable,
                "the event cannot be kept now; send it again",
            );
            p.retry_after = Some(1);
            p
        })
}

/// Records the emission of a new event (its trail, durable before anyone is told of the
/// event), counts it and wakes the sender.
pub(crate) async fn record_emitted(
    gw: &Gateway,
    path: &ContractRef,
    trail: Trail,
) -> Result<(), Problem> {
    trail.record(None).await?;
    count!(gw.labels, "simpul_events_emitted_total", "contract" => path.to_string());
    gw.events.emitted.notify_one();
    Ok(())
}
