//! Handing received events to the member's own systems (PROTOCOL.md §4.5): each configured
//! webhook takes the inbox's events of its contracts one at a time, in the order they were
//! received, each posted once it verified and was recorded, signed in the Standard Webhooks
//! style with the event's id as `webhook-id` (the member system's idempotency key). The
//! webhook's position moves past an event only once the member system answered 2xx; until
//! then it is posted again with back-off. An event the gateway already held is never in the
//! inbox twice, so the member system sees each event once unless an answer was lost.

use std::sync::Arc;
use std::time::Duration;

use audit_store::events::InboxEvent;
use audit_store::now_ms;
use contracts::ParsedJws;
use contracts::events::{EVENT_TYP, Event};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::backoff;
use crate::gateway::Gateway;
use crate::metrics::count;
use crate::webhook::{WebhookClient, WebhookSecret};

/// Events read from the inbox at a time.
const BATCH: u32 = 32;

/// Posts the inbox's events to the `index`th webhook until `shutdown`.
pub(crate) async fn run(gw: Arc<Gateway>, index: usize, mut shutdown: watch::Receiver<bool>) {
    let Some(hook) = gw.events.webhooks.get(index) else {
        return;
    };
    let secret = match WebhookSecret::load_or_create(&hook.secret_file) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(member = %gw.member, webhook = %hook.name, error = %e, "the webhook's secret cannot be read: no event is posted to it");
            return;
        }
    };
    let client = WebhookClient::new(roots(&gw));
    let names = [hook.name.clone()];
    loop {
        let wait = match post_due(&gw, index, &client, &secret, &names).await {
            Ok(true) => Duration::ZERO,
            Ok(false) => Duration::from_secs(1),
            Err(wait) => wait,
        };
        if *shutdown.borrow() {
            return;
        }
        if !wait.is_zero() {
            tokio::select! {
                () = gw.events.received.notified() => {}
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// The member's own CA, which an `https://` webhook's certificate must chain to.
fn roots(gw: &Gateway) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = gw.events.member_ca.as_deref() {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        if let Ok(certs) = CertificateDer::pem_file_iter(ca) {
            for cert in certs.flatten() {
                let _ = roots.add(cert);
            }
        }
    }
    roots
}

/// Posts what is due to the webhook, in order: `Ok(true)` when a whole batch went (more may
/// be waiting), `Ok(false)` when the inbox has nothing more for it, `Err(wait)` after a
/// failure or while a back-off runs.
async fn post_due(
    gw: &Gateway,
    index: usize,
    client: &WebhookClient,
    secret: &WebhookSecret,
    names: &[String],
) -> Result<bool, Duration> {
    let hook = &gw.events.webhooks[index];
    let store = &gw.events.store;
    let trouble = |e: &dyn std::fmt::Display| {
        tracing::warn!(member = %gw.member, webhook = %hook.name, error = %e, "the inbox cannot be read");
        Duration::from_secs(5)
    };
    let state = store
        .hooks(names)
        .await
        .map_err(|e| trouble(&e))?
        .into_iter()
        .next()
        .ok_or_else(|| Duration::from_secs(5))?;
    let now = now_ms();
    if state.next_attempt_ms > now {
        return Err(Duration::from_millis(
            u64::try_from(state.next_attempt_ms - now).unwrap_or(0),
        ));
    }
    let batch = store
        .inbox(None, None, state.delivered_seq, BATCH)
        .await
        .map_err(|e| trouble(&e))?;
    if let Ok(last) = store.inbox_seq_before(i64::MAX).await {
        metrics::gauge!("simpul_webhook_backlog", "member" => gw.labels.member.clone(), "instance" => gw.labels.instance.clone(), "webhook" => hook.name.clone())
            .set((last - state.delivered_seq).max(0) as f64);
    }
    let full = batch.len() == BATCH as usize;
    for ev in batch {
        let taken = hook
            .contracts
            .iter()
            .any(|c| c.id == ev.contract && c.version == ev.version);
        if taken {
            let body = body(&ev);
            let url = &hook.url;
            match crate::webhook::send(
                client,
                url,
                secret,
                &ev.event_id,
                now_ms() / 1000,
                body.into(),
                hook.timeout,
            )
            .await
            {
                Ok(()) => {
                    count!(gw.labels, "simpul_webhook_posted_total", "webhook" => hook.name.clone());
                    tracing::debug!(member = %gw.member, webhook = %hook.name, event = %ev.event_id, "posted");
                }
                Err(e) => {
                    count!(gw.labels, "simpul_webhook_failures_total", "webhook" => hook.name.clone());
                    let wait = backoff(state.attempts, super::WEBHOOK_BACKOFF);
                    let next = now_ms() + i64::try_from(wait.as_millis()).unwrap_or(0);
                    tracing::info!(member = %gw.member, webhook = %hook.name, event = %ev.event_id, attempts = state.attempts + 1, error = %e, "the webhook did not take an event; posted again later");
                    if let Err(e) = store.hook_failed(&hook.name, &e.to_string(), next).await {
                        return Err(trouble(&e));
                    }
                    return Err(wait);
                }
            }
        }
        store
            .hook_delivered(&hook.name, ev.seq, now_ms())
            .await
            .map_err(|e| trouble(&e))?;
    }
    Ok(full)
}

/// What a webhook receives: the event as its provider signed it, and its parts read out.
pub(crate) fn body(ev: &InboxEvent) -> Vec<u8> {
    let data = ParsedJws::parse(&ev.jws, EVENT_TYP)
        .ok()
        .and_then(|p| contracts::json::from_slice::<Event>(&p.payload).ok())
        .map_or(Value::Null, |e| e.data);
    let value = json!({
        "type": ev.contract,
        "version": ev.version,
        "id": ev.event_id,
        "provider": ev.provider,
        "emitted_at": contracts::utc(ev.emitted_ms / 1000),
        "received_at": contracts::utc(ev.received_ms / 1000),
        "data": data,
        "jws": ev.jws,
    });
    serde_json::to_vec(&value).unwrap_or_default()
}
