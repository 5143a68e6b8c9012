//! `GET /console/state`: what the command centre shows, as JSON — the gateway's own
//! Prometheus series (cumulative: the page computes rates between polls), its cache, its
//! audit log's newest signed head checked against its own key in the manifest, what it
//! witnessed of its partners' logs, and the federation its manifest describes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::Viewer;
use super::series::{Sample, of_gateway, quantile};
use crate::gateway::Gateway;

/// How long the state waits for each read of the audit store.
const STORE_DEADLINE: Duration = Duration::from_secs(2);

/// The quantiles shown of each histogram.
const QUANTILES: [(&str, f64); 3] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)];

/// The whole state, as the page reads it.
pub(crate) async fn state(gw: &Gateway, viewer: &Viewer) -> Value {
    let samples = of_gateway(
        &crate::metrics::render(),
        &gw.labels.member,
        &gw.labels.instance,
    );
    let rows = |name: &str, labels: &[&str]| rows(&samples, name, labels);
    let value = |name: &str| {
        samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum::<f64>()
    };
    json!({
        "member": gw.member.as_str(),
        "instance": &*gw.labels.instance,
        "now_ms": audit_store::now_ms(),
        "viewer": {"identity": viewer.identity, "operator": viewer.operator, "auditor": viewer.auditor},
        "exchanges": rows("simpul_exchanges_total", &["contract", "peer", "role", "outcome"]),
        "latency": histograms(&samples, "simpul_exchange_duration_seconds", &["contract", "role"]),
        "refused_before_authentication": rows("simpul_refused_before_authentication_total", &["outcome"]),
        "cache": {
            "entries": gw.provider.cache.entry_count(),
            "bytes": gw.provider.cache.weighted_size(),
            "hits": rows("simpul_cache_hits_total", &["contract"]),
            "misses": rows("simpul_cache_misses_total", &["contract"]),
            "evictions": value("simpul_cache_evictions_total"),
        },
        "limits": {
            "rate_admitted": rows("simpul_rate_admitted_total", &["contract"]),
            "rate_limited": rows("simpul_rate_limited_total", &["contract", "consumer"]),
            "bulkhead_rejected": rows("simpul_bulkhead_rejected_total", &["contract"]),
            "admission_refused": rows("simpul_admission_refused_total", &["limit"]),
        },
        "breakers": breakers(&samples),
        "connections": rows("simpul_connections_open", &["listener"]),
        "handshakes": rows("simpul_tls_handshakes_total", &["listener", "result"]),
        "audit": audit(gw, &samples).await,
        "witness": witness(gw).await,
        "events": events(gw).await,
        "federation": federation(gw),
    })
}

/// One object per sample of `name`: the `labels` asked and its `value`.
fn rows(samples: &[Sample], name: &str, labels: &[&str]) -> Vec<Value> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| {
            let mut row: Map<String, Value> = labels
                .iter()
                .map(|l| ((*l).to_owned(), Value::from(s.label(l))))
                .collect();
            row.insert("value".into(), number(s.value));
            Value::Object(row)
        })
        .collect()
}

/// A whole number as an integer, anything else as it is.
fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        Value::from(v as i64)
    } else {
        serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
    }
}

/// Each histogram of family `name` by `labels`: its cumulative buckets (`le` in seconds,
/// `+Inf` as `null`), count, sum and quantiles in seconds.
fn histograms(samples: &[Sample], name: &str, labels: &[&str]) -> Vec<Value> {
    let bucket = format!("{name}_bucket");
    let key =
        |s: &Sample| -> Vec<String> { labels.iter().map(|l| s.label(l).to_owned()).collect() };
    let mut by: BTreeMap<Vec<String>, Vec<(f64, f64)>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == bucket) {
        let le = match s.label("le") {
            "+Inf" => f64::INFINITY,
            le => match le.parse() {
                Ok(le) => le,
                Err(_) => continue,
            },
        };
        by.entry(key(s)).or_default().push((le, s.value));
    }
    let total = |suffix: &str, k: &[String]| {
        let n = format!("{name}_{suffix}");
        samples
            .iter()
            .find(|s| s.name == n && key(s) == k)
            .map_or(0.0, |s| s.value)
    };
    by.into_iter()
        .map(|(k, mut buckets)| {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut row: Map<String, Value> = labels
                .iter()
                .zip(&k)
                .map(|(l, v)| ((*l).to_owned(), Value::from(v.as_str())))
                .collect();
            for (label, q) in QUANTILES {
                row.insert(
                    label.into(),
                    quantile(q, &buckets).map_or(Value::Null, number),
                );
            }
            row.insert("count".into(), number(total("count", &k)));
            row.insert("sum".into(), number(total("sum", &k)));
            row.insert(
                "buckets".into(),
                buckets
                    .iter()
                    .map(|&(le, c)| {
                        json!([
                            if le.is_finite() {
                                number(le)
                            } else {
                                Value::Null
                            },
                            number(c)
                        ])
                    })
                    .collect(),
            );
            Value::Object(row)
        })
        .collect()
}

/// The breaker towards each provider, from its gauge, with its fail-fast count.
fn breakers(samples: &[Sample]) -> Vec<Value> {
    samples
        .iter()
        .filter(|s| s.name == "simpul_breaker_state")
        .map(|s| {
            let provider = s.label("provider");
            let fail_fast = samples
                .iter()
                .find(|f| {
                    f.name == "simpul_breaker_fail_fast_total" && f.label("provider") == provider
                })
                .map_or(0.0, |f| f.value);
            let state = match s.value as i64 {
                0 => "closed",
                1 => "open",
                _ => "half-open",
            };
            json!({"provider": provider, "state": state, "fail_fast": number(fail_fast)})
        })
        .collect()
}

/// The audit log: its newest signed head and whether it verifies with this member's key in
/// the manifest, its size, how far its tables are behind, whether it was found tampered.
async fn audit(gw: &Gateway, samples: &[Sample]) -> Value {
    let gauge = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name)
            .map(|s| number(s.value))
    };
    let head = match tokio::time::timeout(STORE_DEADLINE, gw.audit.latest_tree_head()).await {
        Ok(Ok(Some(head))) => {
            let manifest = gw.snapshot().manifest.clone();
            let verified = crate::witness::verified(&manifest, &gw.member, &head.jws);
            json!({
                "tree_size": head.tree_size,
                "root_hash": head.root_hash,
                "timestamp_ms": head.timestamp,
                "verified": verified.is_ok(),
                "verify_error": verified.err().map(|e| e.to_string()),
            })
        }
        Ok(Ok(None)) => Value::Null,
        Ok(Err(e)) => json!({"error": format!("the store cannot be read: {e}")}),
        Err(_) => {
            json!({"error": format!("the store did not answer within {} s", STORE_DEADLINE.as_secs())})
        }
    };
    json!({
        "tree_head": head,
        "records": gw.audit.tree_size(),
        "tables_behind": gw.audit.tables_behind(),
        "tampered": gw.audit.tampered(),
        "store_bytes": gauge("simpul_audit_store_bytes"),
        "append_failures": gauge("simpul_audit_append_failures_total"),
        "append": histograms(samples, "simpul_audit_append_seconds", &[]),
    })
}

/// The newest head held from each partner, and the forks caught, as the store keeps them.
async fn witness(gw: &Gateway) -> Value {
    let held = tokio::time::timeout(STORE_DEADLINE, gw.audit.witnessed()).await;
    let forks = tokio::time::timeout(STORE_DEADLINE, gw.audit.forks()).await;
    let (Ok(Ok(held)), Ok(Ok(forks))) = (held, forks) else {
        return json!({"error": "the witness state cannot be read from the audit store now"});
    };
    let mut partners: BTreeMap<String, Value> = BTreeMap::new();
    for w in held {
        partners.insert(
            w.member.clone(),
            json!({"member": w.member, "tree_size": w.head.tree_size, "timestamp_ms": w.head.timestamp, "received_at_ms": w.received_at, "forked": false}),
        );
    }
    for f in forks {
        let entry = partners
            .entry(f.member.clone())
            .or_insert_with(|| json!({"member": f.member}));
        entry["forked"] = Value::Bool(true);
        entry["fork_reason"] = Value::from(f.reason);
        entry["fork_detected_at_ms"] = Value::from(f.detected_at);
    }
    json!({"partners": partners.into_values().collect::<Vec<_>>()})
}

/// Change notifications (PROTOCOL.md §2.8): each subscription this gateway delivers, with
/// its backlog, lag and last acknowledged event, and each webhook it posts to.
async fn events(gw: &Gateway) -> Value {
    let store = &gw.events.store;
    let names: Vec<String> = gw.events.webhooks.iter().map(|w| w.name.clone()).collect();
    let read = async {
        Ok::<_, audit_store::events::EventStoreError>((
            store.cursors().await?,
            store.hooks(&names).await?,
            store.inbox_seq_before(i64::MAX).await?,
        ))
    };
    let Ok(Ok((cursors, hooks, last))) = tokio::time::timeout(STORE_DEADLINE, read).await else {
        return json!({"error": "the event store cannot be read now"});
    };
    let now = audit_store::now_ms();
    json!({
        "subscriptions": cursors.iter().filter(|c| c.active).map(|c| json!({
            "subscriber": c.subscriber,
            "contract": format!("{}/{}", c.contract, c.version),
            "backlog": c.backlog,
            "lag_ms": c.oldest_pending_ms.map_or(0, |t| (now - t).max(0)),
            "last_delivered": c.last_delivered_id,
            "last_delivered_at_ms": c.last_delivered_ms,
            "attempts": c.attempts,
            "last_error": c.last_error,
        })).collect::<Vec<_>>(),
        "webhooks": hooks.iter().map(|h| json!({
            "webhook": h.name,
            "backlog": (last - h.delivered_seq).max(0),
            "last_posted_at_ms": h.last_delivered_ms,
            "attempts": h.attempts,
            "last_error": h.last_error,
        })).collect::<Vec<_>>(),
    })
}

/// The manifest this gateway holds: its serial and dates, the members, and each contract
/// with its provider, consumers, purposes and rate.
fn federation(gw: &Gateway) -> Value {
    let snapshot = gw.snapshot();
    let doc = snapshot.manifest.doc();
    json!({
        "federation": doc.federation,
        "serial": doc.serial,
        "issued_at": doc.issued_at,
        "expires_at": doc.expires_at,
        "members": doc.members.iter().map(|m| json!({"id": m.id.as_str(), "name": m.name, "gateway": m.gateway})).collect::<Vec<_>>(),
        // The serial each peer last stated in an exchange with this gateway, and when.
        "heard": gw.refresh.heard_from().into_iter().map(|(m, serial, at_ms)| json!({"member": m.as_str(), "serial": serial, "at_ms": at_ms})).collect::<Vec<_>>(),
        "contracts": doc.contracts.iter().map(|c| json!({
            "contract": format!("{}/{}", c.id, c.version),
            "provider": c.provider.as_str(),
            "consumers": c.consumers.iter().map(|k| json!({"member": k.member.as_str(), "purposes": k.purposes})).collect::<Vec<_>>(),
            "rate": {"per_second": c.rate.per_second, "burst": c.rate.burst},
        })).collect::<Vec<_>>(),
    })
}
