//! Limits: a consumer asking faster than the manifest's rate for a contract is told to slow
//! down with 429 and a `Retry-After` it can act on — and is answered again once it has
//! waited that long. Optional until every gateway enforces rates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use contracts::envelope::{JOSE_MEDIA_TYPE, REQUEST_TYP};
use contracts::{ExchangeRequest, ProblemCode, SigningKey};
use hyper::Method;
use tokio::sync::Mutex;

use super::{CaseResult, Context, expect_problem, failed};
use crate::client::{self, Reply, full};

/// The longest `Retry-After` the case waits out.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// What the workers share.
struct Shared {
    stop: AtomicBool,
    sent: AtomicU64,
    admitted: AtomicU64,
    limited: Mutex<Option<Reply>>,
    other: Mutex<Option<String>>,
}

pub(super) async fn rate_limited(cx: &Context) -> CaseResult {
    let primary = cx.primary().clone();
    let rate = cx
        .config
        .manifest
        .contract(&primary.reference)
        .map(|c| c.rate.clone())
        .ok_or_else(|| failed("the primary contract is not in the manifest"))?;
    let limits = cx.config.limits.clone();
    let tester = &cx.config.tester;
    // Each worker task owns its key: the tasks outlive no borrow.
    let key = Arc::new(tester.signing.clone());
    let template = cx.request(&primary);
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        sent: AtomicU64::new(0),
        admitted: AtomicU64::new(0),
        limited: Mutex::new(None),
        other: Mutex::new(None),
    });
    let started = Instant::now();
    let path = format!(
        "/v1/exchange/{}/{}",
        primary.reference.id, primary.reference.version
    );
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..limits.connections {
        let (shared, key, template, path, limits) = (
            shared.clone(),
            key.clone(),
            template.clone(),
            path.clone(),
            limits.clone(),
        );
        let endpoint = cx.config.target.endpoint.clone();
        let tls = cx.tester_tls();
        tasks.spawn(async move {
            let mut conn = None;
            while !shared.stop.load(Ordering::Relaxed)
                && started.elapsed() < limits.max_duration
                && shared.sent.fetch_add(1, Ordering::Relaxed) < limits.max_requests
            {
                let mut c = match conn.take() {
                    Some(c) => c,
                    None => match client::connect(&endpoint, tls.clone()).await {
                        Ok(c) => c,
                        Err(e) => {
                            *shared.other.lock().await = Some(e.to_string());
                            shared.stop.store(true, Ordering::Relaxed);
                            return;
                        }
                    },
                };
                let body = match sign_fresh(&key, &template) {
                    Ok(jws) => jws,
                    Err(e) => {
                        *shared.other.lock().await = Some(e);
                        shared.stop.store(true, Ordering::Relaxed);
                        return;
                    }
                };
                match c
                    .send(Method::POST, &path, Some(JOSE_MEDIA_TYPE), full(body))
                    .await
                {
                    Ok(reply) if reply.status.as_u16() == 200 => {
                        shared.admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(reply) if reply.status.as_u16() == 429 => {
                        shared.stop.store(true, Ordering::Relaxed);
                        let mut first = shared.limited.lock().await;
                        if first.is_none() {
                            *first = Some(reply);
                        }
                    }
                    Ok(reply) => {
                        shared.stop.store(true, Ordering::Relaxed);
                        *shared.other.lock().await =
                            Some(format!("{}: {}", reply.summary(), reply.body_excerpt()));
                    }
                    // A broken connection: the next round reconnects.
                    Err(_) => continue,
                }
                if !c.is_closed() {
                    conn = Some(c);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let admitted = shared.admitted.load(Ordering::Relaxed);
    let allowed =
        u64::from(rate.burst) + (u64::from(rate.per_second) as f64 * elapsed.as_secs_f64()) as u64;
    let Some(reply) = shared.limited.lock().await.take() else {
        if let Some(other) = shared.other.lock().await.take() {
            return Err(failed(format!(
                "stopped by an unexpected answer before any 429: {other}"
            )));
        }
        return Err(failed(format!(
            "no 429 after {admitted} admitted exchanges in {:.1} s; the manifest allows burst {} + {}/s, at most {allowed} in that time",
            elapsed.as_secs_f64(),
            rate.burst,
            rate.per_second
        )));
    };
    let (_, line) = expect_problem(&reply, ProblemCode::RateLimited)?;
    if admitted < u64::from(rate.burst) / 2 {
        return Err(failed(format!(
            "limited after only {admitted} exchanges; the manifest grants a burst of {}",
            rate.burst
        )));
    }
    let retry_after = reply
        .headers
        .get(hyper::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| failed("the 429 carries no Retry-After header"))?;
    let wait = retry_after
        .trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| {
            failed(format!(
                "Retry-After `{retry_after}` is not a number of seconds"
            ))
        })?;
    if wait > MAX_WAIT {
        return Err(failed(format!(
            "Retry-After of {} s is longer than a consumer can reasonably wait ({} s)",
            wait.as_secs(),
            MAX_WAIT.as_secs()
        )));
    }
    // Usable means: wait as told, and be answered.
    tokio::time::sleep(wait + Duration::from_millis(250)).await;
    let (_, after) = cx.send(&cx.request(&primary)).await?;
    if after.status.as_u16() != 200 {
        return Err(failed(format!(
            "after waiting Retry-After ({} s) the next request was answered {}",
            wait.as_secs(),
            after.summary()
        )));
    }
    Ok(format!(
        "{line} after {admitted} admitted in {:.1} s (burst {} + {}/s); Retry-After {} s, then answered 200",
        elapsed.as_secs_f64(),
        rate.burst,
        rate.per_second,
        wait.as_secs()
    ))
}

/// `template` with a fresh exchange id and times, signed.
fn sign_fresh(key: &SigningKey, template: &ExchangeRequest) -> Result<String, String> {
    let mut request = template.clone();
    let now = contracts::unix_now();
    request.id = uuid::Uuid::new_v4().to_string();
    request.iat = now;
    request.exp = now + 60;
    let payload = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    key.sign(REQUEST_TYP, &payload).map_err(|e| e.to_string())
}
