//! A delivery received (PROTOCOL.md §2.8): after the rule list has checked it as any
//! exchange — signature, identity, audience, freshness, replay — and found this gateway a
//! subscriber of an event contract its sender emits, every event is checked, the new ones
//! are kept once in the inbox, the expiry notices are recorded, and the receipt is made.

use audit::Role;
use audit_store::events::{Incoming, Received};
use contracts::canonical::sha256_b64url;
use contracts::events::{
    self, CheckedEvent, Delivery, EVENT_TYP, Event, EventRefused, Expired, Receipt, Status,
};
use contracts::{Contract, ContractRef, ExchangeRequest, ParsedJws};
use serde::Deserialize;
use serde_json::Value;

use crate::exchange::refusal::Refusal;
use crate::fault::{Check, off};
use crate::gateway::Gateway;
use crate::metrics::count;
use crate::snapshot::Snapshot;
use audit_store::now_ms;

/// The receipt of `request`, a delivery of `contract` this gateway may take: every event
/// verifies, or the whole delivery is refused (400 `bad-event`); the new ones are durable in
/// the inbox before the receipt is made, and those already held are answered `duplicate`.
pub(crate) async fn receive(
    gw: &Gateway,
    snap: &Snapshot,
    contract: &Contract,
    request: &ExchangeRequest,
) -> Result<Value, Refusal> {
    // E4; a faults build may switch it off (with the query schema) and only here.
    let delivery = match read_delivery(&request.query) {
        Err(_) if off(Check::QuerySchema) => read_delivery_leniently(&request.query),
        other => other,
    }?;
    let now = now_ms();
    // E5, every event before any is kept; a faults build may switch it off, and only here.
    let checked = delivery
        .events
        .iter()
        .enumerate()
        .map(|(i, jws)| {
            match events::check_event(&snap.manifest, &request.iss, contract, i, jws, now / 1000) {
                Err(_) if off(Check::Event) => unchecked_event(i, jws),
                other => other,
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(Refusal::BadEvent)?;
    let terms = contract.event();
    let incoming: Vec<Incoming> = checked
        .iter()
        .map(|c| Incoming {
            provider: request.iss.to_string(),
            contract: request.contract.clone(),
            version: request.version.clone(),
            event_id: c.event.id.clone(),
            subject: terms
                .and_then(|t| c.event.subject(t))
                .unwrap_or_default()
                .to_owned(),
            emitted_ms: c.event.iat.saturating_mul(1000),
            expires_ms: c.event.exp.saturating_mul(1000),
            jws: c.jws.clone(),
            delivery_id: request.id.clone(),
            received_ms: now,
        })
        .collect();
    let store = &gw.events.store;
    let fail = |e: audit_store::events::EventStoreError| {
        tracing::error!(member = %gw.member, exchange_id = %request.id, error = %e, "the inbox cannot keep a delivery");
        Refusal::EventStoreUnavailable
    };
    let received = if incoming.is_empty() {
        Vec::new()
    } else {
        store.receive(&incoming).await.map_err(fail)?
    };
    let reference = ContractRef::new(&request.contract, &request.version);
    let mut expired = 0;
    for notice in &delivery.expired {
        let new = store
            .notice_expired(
                request.iss.as_str(),
                &request.contract,
                &notice.id,
                &notice.hash,
                now,
            )
            .await
            .map_err(fail)?;
        if new {
            super::record_expiry(
                gw,
                Role::Provider,
                (&request.iss, &gw.member),
                &reference,
                &request.purpose,
                (&notice.id, &notice.hash),
            )
            .await
            .map_err(|_| Refusal::EventStoreUnavailable)?;
            expired += 1;
        }
    }
    let lines = checked
        .iter()
        .zip(&received)
        .map(|(c, r)| events::Received {
            id: c.event.id.clone(),
            status: match r {
                Received::New { .. } => Status::Accepted,
                Received::Duplicate { .. } => Status::Duplicate,
            },
        })
        .collect();
    for r in &received {
        let status = match r {
            Received::New { .. } => "accepted",
            Received::Duplicate { .. } => "duplicate",
        };
        count!(gw.labels, "simpul_events_received_total", "contract" => reference.to_string(), "provider" => request.iss.to_string(), "status" => status);
    }
    if received.iter().any(|r| matches!(r, Received::New { .. })) {
        gw.events.received.notify_waiters();
    }
    let receipt = Receipt {
        events: lines,
        expired,
    };
    serde_json::to_value(receipt).map_err(|e| Refusal::CannotSign(e.to_string()))
}

/// The delivery a request's `query` is (E4): exactly `{events, expired}`, within bounds.
fn read_delivery(query: &Value) -> Result<Delivery, Refusal> {
    let delivery: Delivery =
        serde_json::from_value(query.clone()).map_err(|e| Refusal::BadDelivery(e.to_string()))?;
    events::check_delivery(&delivery).map_err(Refusal::BadDelivery)?;
    Ok(delivery)
}

/// The events and notices of a `query` read with E4 switched off (faults builds only):
/// other fields and the bounds ignored.
fn read_delivery_leniently(query: &Value) -> Result<Delivery, Refusal> {
    #[derive(Deserialize)]
    struct Lenient {
        #[serde(default)]
        events: Vec<String>,
        #[serde(default)]
        expired: Vec<Expired>,
    }
    let read: Lenient =
        serde_json::from_value(query.clone()).map_err(|e| Refusal::BadDelivery(e.to_string()))?;
    Ok(Delivery {
        events: read.events,
        expired: read.expired,
    })
}

/// The `index`th event read with E5 switched off (faults builds only): its payload taken as
/// it is, nothing of it checked but that it is a JWS of an event.
fn unchecked_event(index: usize, jws: &str) -> Result<CheckedEvent, EventRefused> {
    let malformed = |reason: String| EventRefused::Malformed { index, reason };
    let parsed = ParsedJws::parse(jws, EVENT_TYP).map_err(|e| malformed(e.to_string()))?;
    let event: Event =
        contracts::json::from_slice(&parsed.payload).map_err(|e| malformed(e.to_string()))?;
    Ok(CheckedEvent {
        jws: jws.to_owned(),
        hash: sha256_b64url(jws.as_bytes()),
        event,
    })
}
