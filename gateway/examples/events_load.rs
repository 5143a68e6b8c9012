//! The change-notification load of `bench/events.sh` (docs/BENCHMARKS.md, "Change
//! notifications"): a member system emits N events through its gateway's local face, as fast
//! as C connections allow or paced at R per second, and this reads the subscriber's inbox
//! until all N are there. It prints one Markdown row: events emitted per second, events
//! delivered per second end to end, and the lag of each event — from the emitter's 202 to
//! the subscriber's gateway holding it (its inbox row's `received_ms`) — at p50, p99 and max.
//!
//! ```text
//! cargo run --release -p simpul-gateway --example events_load -- CONFIG EVENTS [RATE] [CONCURRENCY]
//! ```
//!
//! CONFIG is a federation's `config.toml` whose emitting and subscribing gateways run; RATE 0
//! (the default) emits as fast as CONCURRENCY (default 8) connections allow.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_store::events::EventStore;
use audit_store::now_ms;
use contracts::Manifest;
use gateway::client::PeerClient;
use gateway::config::Config;
use http::Method;
use serde_json::json;

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: events_load CONFIG EVENTS [RATE] [CONCURRENCY]";
    let config_path = args.first().ok_or(usage)?;
    let n: usize = args.get(1).ok_or(usage)?.parse()?;
    let rate: f64 = args.get(2).map_or(Ok(0.0), |r| r.parse())?;
    let concurrency: usize = args.get(3).map_or(Ok(8), |c| c.parse())?;

    let config = Config::load(Path::new(config_path))?;
    let (member, source) = config
        .members
        .iter()
        .find_map(|m| {
            m.events
                .iter()
                .find(|e| !e.emitters.is_empty())
                .map(|e| (m, e))
        })
        .ok_or("no member emits an event contract with an emitter")?;
    let emitter = source.emitters[0].clone();
    let subscriber = source
        .subscribers
        .first()
        .ok_or("the event contract has no subscriber")?
        .member
        .clone();
    let sub_config = config
        .member(&subscriber)
        .ok_or("the subscriber is not in the configuration")?;
    let key = gateway::assemble::load_authority_key(&config.federation.authority_key)?;
    let manifest = Manifest::verify(
        &std::fs::read_to_string(&config.federation.manifest)?,
        &key,
        contracts::unix_now(),
    )?;
    let trust = gateway::tls::FederationTrust::load(&manifest.doc().ca, &config.federation.crl)?;
    let layout = &config.federation.pki;
    let client = Arc::new(PeerClient::from_files(
        &trust,
        &layout.client_cert(&emitter),
        &layout.client_key(&emitter),
        member.id.clone(),
        1 << 16,
    )?);
    let local = member
        .local
        .as_ref()
        .ok_or("the emitter has no local listener")?;
    let url = Arc::new(format!(
        "{}/v1/events/{}/{}",
        local.url(),
        source.contract.id,
        source.contract.version
    ));
    let inbox = EventStore::open(&sub_config.audit, &config.base_dir, &subscriber).await?;
    let mut after = inbox.inbox_seq_before(i64::MAX).await?;

    // Emit: event i leaves at start + i / RATE (or as soon as a connection is free).
    let started = Instant::now();
    let t0 = now_ms();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        tasks.spawn(async move {
            let mut answered: Vec<(String, i64)> = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, String>(answered);
                }
                if rate > 0.0 {
                    let at = started + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(at.into()).await;
                }
                let change = if i % 2 == 0 { "started" } else { "ended" };
                let body = json!({"data": {"placement": (900_000_000 + i).to_string(), "change": change, "on": "2026-12-06"}});
                let reply = client
                    .call(
                        Method::POST,
                        &url,
                        "application/json",
                        serde_json::to_vec(&body).map_err(|e| e.to_string())?.into(),
                        Duration::from_secs(30),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                if reply.status.as_u16() != 202 {
                    return Err(format!(
                        "emit answered {}: {}",
                        reply.status,
                        String::from_utf8_lossy(&reply.body)
                    ));
                }
                let v: serde_json::Value =
                    serde_json::from_slice(&reply.body).map_err(|e| e.to_string())?;
                let id = v["event_id"].as_str().unwrap_or_default().to_owned();
                answered.push((id, now_ms()));
            }
        });
    }
    let mut answered: HashMap<String, i64> = HashMap::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        answered.extend(done??);
    }
    let emit_s = started.elapsed().as_secs_f64();

    // Read the subscriber's inbox until every emitted event is there.
    let mut received: HashMap<String, i64> = HashMap::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(600);
    while received.len() < n && Instant::now() < deadline {
        let page = inbox
            .inbox(None, Some(&source.contract.id), after, 500)
            .await?;
        if page.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        for e in &page {
            if answered.contains_key(&e.event_id) {
                received.insert(e.event_id.clone(), e.received_ms);
            }
            after = e.seq;
        }
    }
    if received.len() < n {
        return Err(format!(
            "{} of {n} events reached the subscriber in 600 s",
            received.len()
        )
        .into());
    }
    let last = received.values().copied().max().unwrap_or(t0);
    let mut lags: Vec<i64> = received.iter().map(|(id, r)| r - answered[id]).collect();
    lags.sort_unstable();
    let rate_text = if rate > 0.0 {
        format!("{rate:.0}/s paced")
    } else {
        format!("as fast as {concurrency} connections")
    };
    println!(
        "| {n} | {rate_text} | {:.0} | {:.0} | {} | {} | {} |",
        n as f64 / emit_s,
        n as f64 / ((last - t0) as f64 / 1000.0),
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(0),
    );
    Ok(())
}
