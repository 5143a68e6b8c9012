//! Delivering this member's events (PROTOCOL.md §2.8): each subscriber the manifest grants an
//! event contract has a cursor in the outbox; whenever one has events after it, they are
//! sent in the order they were emitted, up to [`MAX_EVENTS_PER_DELIVERY`] in one signed
//! exchange to the subscriber's gateway, with notices of those that expired. The cursor
//! moves only past what the subscriber's signed receipt acknowledges; a failure is retried
//! with back-off, and one cursor is worked by one gateway at a time (a lease, for replicas).

use std::sync::Arc;
use std::time::Duration;

use audit::Role;
use audit_store::events::{Due, Subscription};
use audit_store::now_ms;
use contracts::envelope::{MAX_REQUEST_BYTES, MAX_VALIDITY_S};
use contracts::events::{
    Delivery, Expired, MAX_EVENTS_PER_DELIVERY, MAX_NOTICES_PER_DELIVERY, Receipt,
};
use contracts::{ContractRef, ExchangeRequest, MemberId, Problem, ProblemCode};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use super::backoff;
use crate::consumer::{Recipient, send};
use crate::gateway::Gateway;
use crate::metrics::count;
use crate::snapshot::Snapshot;
use crate::trail::Trail;

/// How long a cursor is held by the gateway working it: longer than one delivery may take.
const LEASE_MS: i64 = 30_000;

/// How long one delivery may take.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(10);

/// How long a delivery's request stays valid.
const DELIVERY_VALIDITY_S: i64 = 60;

/// The most bytes of signed events in one delivery: its envelope stays under the protocol's
/// 64 KiB request limit.
const MAX_DELIVERY_EVENT_BYTES: usize = MAX_REQUEST_BYTES / 4 * 3 - 4096;

/// Until `shutdown`: keeps the subscriptions the manifest grants, and delivers whatever is
/// due, at once when an event is emitted and otherwise each second.
pub(crate) async fn run(gw: Arc<Gateway>, mut shutdown: watch::Receiver<bool>) {
    // The store's only gateway: leases left by a process that was killed are its own.
    if !gw.events.store.is_shared() {
        match gw.events.store.release_leases().await {
            Ok(n) if n > 0 => {
                tracing::info!(member = %gw.member, cursors = n, "leases left by an earlier process released")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(member = %gw.member, error = %e, "leases cannot be released"),
        }
    }
    let mut subscribed: Option<u64> = None;
    loop {
        let snap = gw.snapshot();
        if subscribed != Some(snap.serial()) {
            match gw.events.store.subscribe(&subscriptions(&gw, &snap)).await {
                Ok(()) => subscribed = Some(snap.serial()),
                Err(e) => {
                    tracing::warn!(member = %gw.member, error = %e, "the subscriptions cannot be kept")
                }
            }
        }
        let busy = deliver_due(&gw, &snap).await;
        measure(&gw).await;
        if *shutdown.borrow() {
            return;
        }
        if !busy {
            tokio::select! {
                () = gw.events.emitted.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// The backlog and lag of every active subscription, as gauges.
async fn measure(gw: &Gateway) {
    let Ok(cursors) = gw.events.store.cursors().await else {
        return;
    };
    let now = now_ms();
    for c in cursors.iter().filter(|c| c.active) {
        let contract = format!("{}/{}", c.contract, c.version);
        let labels = |name: &'static str| metrics::gauge!(name, "member" => gw.labels.member.clone(), "instance" => gw.labels.instance.clone(), "contract" => contract.clone(), "subscriber" => c.subscriber.clone());
        labels("simpul_events_backlog").set(c.backlog as f64);
        let lag = c.oldest_pending_ms.map_or(0, |t| (now - t).max(0));
        labels("simpul_events_lag_seconds").set(lag as f64 / 1000.0);
    }
}

/// The subscriptions the manifest grants: for each event contract this member emits, each
/// member granted it, under the first purpose its grant names.
fn subscriptions(gw: &Gateway, snap: &Snapshot) -> Vec<Subscription> {
    let mut subs = Vec::new();
    for r in gw.events.sources.keys() {
        let Some(listed) = snap
            .manifest
            .contract(r)
            .filter(|c| c.provider == gw.member)
        else {
            continue;
        };
        for c in &listed.consumers {
            if let Some(purpose) = c.purposes.first() {
                subs.push(Subscription {
                    subscriber: c.member.to_string(),
                    contract: r.id.clone(),
                    version: r.version.clone(),
                    purpose: purpose.clone(),
                });
            }
        }
    }
    subs
}

/// Delivers to every cursor that is due, each on a task of its own; whether any of them
/// sent a full delivery (and so may have more at once).
async fn deliver_due(gw: &Arc<Gateway>, snap: &Arc<Snapshot>) -> bool {
    let due = match gw
        .events
        .store
        .due(now_ms(), LEASE_MS, &gw.events.owner)
        .await
    {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(member = %gw.member, error = %e, "the outbox cannot be read");
            return false;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for d in due {
        let (gw, snap) = (gw.clone(), snap.clone());
        tasks.spawn(async move { deliver(&gw, &snap, d).await });
    }
    let mut busy = false;
    while let Some(done) = tasks.join_next().await {
        busy |= done.unwrap_or(false);
    }
    busy
}

/// One delivery to the cursor `due`: its expired events noticed and recorded, then the next
/// events after it. Whether it was full.
async fn deliver(gw: &Gateway, snap: &Snapshot, due: Due) -> bool {
    let store = &gw.events.store;
    let (subscriber, contract) = (due.subscriber.as_str(), due.contract.as_str());
    let (attempts, version) = (due.attempts, due.version.as_str());
    let failed = |why: String| async move {
        let next = now_ms()
            + i64::try_from(backoff(attempts, super::DELIVERY_BACKOFF).as_millis()).unwrap_or(0);
        count!(gw.labels, "simpul_events_delivery_failures_total", "contract" => format!("{contract}/{version}"), "subscriber" => subscriber.to_owned());
        tracing::info!(member = %gw.member, subscriber, contract, attempts = attempts + 1, why, "delivery failed; retried later");
        if let Err(e) = store.failed(subscriber, contract, &why, next).await {
            tracing::warn!(member = %gw.member, error = %e, "a failed delivery cannot be noted");
        }
        false
    };
    let Ok(to) = MemberId::parse(subscriber) else {
        return failed(format!("`{subscriber}` is not a member id")).await;
    };
    let reference = ContractRef::new(&due.contract, &due.version);
    let now = now_ms();
    // Expired first: each is recorded here and noticed to the subscriber below.
    let newly = match store.expire(subscriber, contract, now).await {
        Ok(n) => n,
        Err(e) => return failed(format!("the outbox cannot be read: {e}")).await,
    };
    for n in &newly {
        if let Err(p) = super::record_expiry(
            gw,
            Role::Consumer,
            (&gw.member, &to),
            &reference,
            &due.purpose,
            (&n.event_id, &n.hash),
        )
        .await
        {
            tracing::error!(member = %gw.member, event = %n.event_id, detail = %p.detail, "an expired event cannot be recorded");
        }
    }
    let (notices, pending) = match (
        store.notices(subscriber, contract).await,
        store
            .pending(contract, due.delivered_seq, MAX_EVENTS_PER_DELIVERY as u32)
            .await,
    ) {
        (Ok(n), Ok(p)) => (n, p),
        (Err(e), _) | (_, Err(e)) => {
            return failed(format!("the outbox cannot be read: {e}")).await;
        }
    };
    // The events that fit, in order; at least one.
    let mut bytes = 0;
    let events: Vec<_> = pending
        .iter()
        .take_while(|e| {
            bytes += e.jws.len();
            bytes <= MAX_DELIVERY_EVENT_BYTES || bytes == e.jws.len()
        })
        .collect();
    let notices: Vec<_> = notices.into_iter().take(MAX_NOTICES_PER_DELIVERY).collect();
    if events.is_empty() && notices.is_empty() {
        // Nothing after all (another replica was first): the lease is given back.
        if let Err(e) = store
            .delivered(subscriber, contract, due.delivered_seq, &[], None, now)
            .await
        {
            tracing::warn!(member = %gw.member, error = %e, "a cursor cannot be released");
        }
        return false;
    }
    let delivery = Delivery {
        events: events.iter().map(|e| e.jws.clone()).collect(),
        expired: notices
            .iter()
            .map(|n| Expired {
                id: n.event_id.clone(),
                hash: n.hash.clone(),
            })
            .collect(),
    };
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let outcome = send_delivery(gw, snap, &to, &reference, &due.purpose, &delivery, &ids).await;
    match outcome {
        Ok(()) => {
            metrics::counter!("simpul_events_delivered_total", "member" => gw.labels.member.clone(), "instance" => gw.labels.instance.clone(), "contract" => reference.to_string(), "subscriber" => subscriber.to_owned())
                .increment(events.len() as u64);
            let through = events.last().map_or(due.delivered_seq, |e| e.seq);
            let sent: Vec<String> = notices.iter().map(|n| n.event_id.clone()).collect();
            let last = events.last().map(|e| e.id.as_str());
            if let Err(e) = store
                .delivered(subscriber, contract, through, &sent, last, now_ms())
                .await
            {
                // Delivered again later: the subscriber answers `duplicate`.
                tracing::warn!(member = %gw.member, error = %e, "a delivered cursor cannot be moved");
                return false;
            }
            events.len() == MAX_EVENTS_PER_DELIVERY || notices.len() == MAX_NOTICES_PER_DELIVERY
        }
        Err(p) => {
            failed(format!(
                "{}: {}",
                p.code().map_or("?", |c| c.code()),
                p.detail
            ))
            .await
        }
    }
}

/// One delivery exchange: signed as this member, sent to `to`'s gateway, its receipt
/// verified and checked to acknowledge exactly `ids` in order, recorded before it counts.
async fn send_delivery(
    gw: &Gateway,
    snap: &Snapshot,
    to: &MemberId,
    contract: &ContractRef,
    purpose: &str,
    delivery: &Delivery,
    ids: &[&str],
) -> Result<(), Problem> {
    let id = contracts::ExchangeId::new().to_string();
    let mut trail = Trail::new(&gw.audit, &gw.labels, Role::Consumer, contract);
    trail.set_exchange_id(&id);
    trail.set_consumer(&gw.member);
    trail.set_provider(to);
    trail.set_purpose(purpose);
    let result = async {
        if snap.expired(contracts::unix_now()) {
            return Err(snap.expired_problem());
        }
        let client = snap.peers.get(to).ok_or_else(|| {
            Problem::new(
                ProblemCode::ProviderUnavailable,
                format!("no client for {to}"),
            )
        })?;
        let query = serde_json::to_value(delivery).map_err(|e| {
            Problem::new(
                ProblemCode::Internal,
                format!("cannot encode the delivery: {e}"),
            )
        })?;
        let now = contracts::unix_now();
        let request = ExchangeRequest {
            v: 1,
            id: id.clone(),
            iss: gw.member.clone(),
            sub: None,
            aud: to.clone(),
            contract: contract.id.clone(),
            version: contract.version.clone(),
            purpose: purpose.to_owned(),
            iat: now,
            exp: now + DELIVERY_VALIDITY_S.min(MAX_VALIDITY_S),
            query,
        };
        let check_result = |result: &Value| check_receipt(result, ids);
        let to = Recipient {
            member: to,
            client,
            trace: None,
            max_request: MAX_REQUEST_BYTES,
            check_result: &check_result,
        };
        let deadline = Instant::now() + DELIVERY_DEADLINE;
        send(gw, snap, request, to, deadline, &mut trail, None)
            .await
            .map(drop)
    }
    .await;
    trail.record(result.as_ref().err()).await?;
    result
}

/// A receipt acknowledges exactly the events delivered, in their order.
fn check_receipt(result: &Value, ids: &[&str]) -> Result<(), String> {
    let receipt: Receipt = serde_json::from_value(result.clone())
        .map_err(|e| format!("the answer is not a receipt: {e}"))?;
    let acknowledged: Vec<&str> = receipt.events.iter().map(|r| r.id.as_str()).collect();
    if acknowledged != ids {
        return Err(format!(
            "the receipt acknowledges {} events, not the {} delivered in their order",
            acknowledged.len(),
            ids.len()
        ));
    }
    Ok(())
}
