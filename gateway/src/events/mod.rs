//! Change notifications (PROTOCOL.md §2.8): the events this member emits — signed once
//! through the local face ([`emit`]) or from the rows of a change table ([`changes`]), kept
//! in the outbox of the event store and delivered to every subscriber the manifest grants,
//! in order, by signed exchanges ([`deliver`]) — and the events it receives: checked, kept
//! once in the inbox ([`receive`]), handed to its own systems by webhook ([`hooks`]) or
//! fetched by them ([`fetch`]).

pub(crate) mod changes;
pub(crate) mod deliver;
pub(crate) mod emit;
pub(crate) mod fetch;
pub(crate) mod hooks;
pub(crate) mod receive;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use audit::Role;
use audit_store::events::EventStore;
use audit_store::now_ms;
use contracts::{ContractRef, MemberId, Problem, ProblemCode};
use tokio::sync::{Notify, watch};

use crate::config::{EventSource, Webhook};
use crate::gateway::Gateway;
use crate::trail::Trail;

/// The events side of a running gateway.
pub(crate) struct Events {
    /// The outbox and the inbox, in the audit store's engine.
    pub(crate) store: EventStore,
    /// The event contracts this member emits, by reference.
    pub(crate) sources: HashMap<ContractRef, EventSource>,
    /// Where received events go.
    pub(crate) webhooks: Vec<Webhook>,
    /// Woken when an event was emitted: the sender looks for work at once.
    pub(crate) emitted: Notify,
    /// Woken when events were received: the webhooks look for work at once.
    pub(crate) received: Notify,
    /// This process's name on the delivery leases it takes (replicas share PostgreSQL).
    pub(crate) owner: String,
    /// The member's own CA (`local.member_ca`): what an `https://` webhook is verified against.
    pub(crate) member_ca: Option<std::path::PathBuf>,
}

impl Events {
    /// The events side of `member`'s gateway over `store`.
    pub(crate) fn new(
        store: EventStore,
        sources: &[EventSource],
        webhooks: &[Webhook],
        member_ca: Option<std::path::PathBuf>,
    ) -> Self {
        Events {
            store,
            sources: sources
                .iter()
                .map(|s| (s.contract.clone(), s.clone()))
                .collect(),
            webhooks: webhooks.to_vec(),
            emitted: Notify::new(),
            received: Notify::new(),
            owner: format!("{}-{}", std::process::id(), contracts::ExchangeId::new()),
            member_ca,
        }
    }
}

/// The wait before the next try after `attempts` failed ones: 1 s doubling to `cap`.
pub(crate) fn backoff(attempts: u32, cap: Duration) -> Duration {
    Duration::from_secs(1u64 << attempts.min(16)).min(cap)
}

/// The longest wait between two tries of a delivery.
pub(crate) const DELIVERY_BACKOFF: Duration = Duration::from_secs(300);

/// The longest wait between two posts to a webhook that did not take an event: a member
/// system that comes back gets its events within a minute.
pub(crate) const WEBHOOK_BACKOFF: Duration = Duration::from_secs(60);

/// Runs, until `shutdown`, the reading of each change table, the delivery of this member's
/// events to their subscribers, each webhook, and the purge of what no one is owed any more.
pub(crate) async fn run(gw: Arc<Gateway>, shutdown: watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    if !gw.events.sources.is_empty() {
        tasks.spawn(deliver::run(gw.clone(), shutdown.clone()));
    }
    for source in gw.events.sources.values() {
        if let Some(table) = &source.table {
            tasks.spawn(changes::run(
                gw.clone(),
                source.contract.clone(),
                table.adapter.clone(),
                shutdown.clone(),
            ));
        }
    }
    for i in 0..gw.events.webhooks.len() {
        tasks.spawn(hooks::run(gw.clone(), i, shutdown.clone()));
    }
    tasks.spawn(purge(gw.clone(), shutdown));
    while tasks.join_next().await.is_some() {}
}

/// Once an hour: events past their retention that every subscriber has passed leave the
/// outbox, and received ones past it that every webhook has passed leave the inbox.
async fn purge(gw: Arc<Gateway>, mut shutdown: watch::Receiver<bool>) {
    let hooks: Vec<String> = gw.events.webhooks.iter().map(|w| w.name.clone()).collect();
    loop {
        let now = now_ms();
        match gw.events.store.purge(now).await {
            Ok(n) if n > 0 => {
                tracing::info!(member = %gw.member, events = n, "expired events left the outbox")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(member = %gw.member, error = %e, "the outbox cannot be purged")
            }
        }
        match gw.events.store.purge_inbox(now, &hooks).await {
            Ok(n) if n > 0 => {
                tracing::info!(member = %gw.member, events = n, "expired events left the inbox")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(member = %gw.member, error = %e, "the inbox cannot be purged"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The record of an event that expired before it was delivered (outcome `event-expired`),
/// on either side: the emitter's, which asks, and the subscriber's, which answers, each naming
/// the event by its id and hash, so that the two reconcile.
pub(crate) async fn record_expiry(
    gw: &Gateway,
    role: Role,
    (emitter, subscriber): (&MemberId, &MemberId),
    contract: &ContractRef,
    purpose: &str,
    (event_id, hash): (&str, &str),
) -> Result<(), Problem> {
    let mut trail = Trail::new(&gw.audit, &gw.labels, role, contract);
    trail.set_exchange_id(event_id);
    trail.set_consumer(emitter);
    trail.set_provider(subscriber);
    trail.set_purpose(purpose);
    trail.set_request_hash(hash);
    let expired = Problem::new(
        ProblemCode::EventExpired,
        format!("event {event_id} expired before it was delivered to {subscriber}"),
    );
    trail.record(Some(&expired)).await
}
