//! Limits: a consumer asking faster than the manifest's rate for a contract is told to slow
//! down with 429 and a `Retry-After` it can act on — and is answered again once it has
//! waited that long. Optional until every gateway enforces rates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use contracts::envelope::{JOSE_MEDIA_TYPE, REQUEST_TYP};
use contracts::manifest::Rate;
use contracts::{ContractRef, ExchangeRequest, ProblemCode, SigningKey};
use hyper::Method;
use tokio::sync::Mutex;

use super::{CaseFailure, CaseResult, Context, expect_problem, failed};
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

/// What a flood of one request, signed afresh each time, observed.
struct Flood {
    admitted: u64,
    elapsed: Duration,
    limited: Option<Reply>,
    other: Option<String>,
}

/// Sends `template`, with a fresh exchange id and times each time, over the configured
/// connections, until the first 429, an unexpected answer, or the configured bounds.
async fn flood(cx: &Context, template: &ExchangeRequest) -> Flood {
    let limits = cx.config.limits.clone();
    // Each worker task owns its key: the tasks outlive no borrow.
    let key = Arc::new(cx.config.tester.signing.clone());
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        sent: AtomicU64::new(0),
        admitted: AtomicU64::new(0),
        limited: Mutex::new(None),
        other: Mutex::new(None),
    });
    let started = Instant::now();
    let path = format!("/v1/exchange/{}/{}", template.contract, template.version);
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
    Flood {
        admitted: shared.admitted.load(Ordering::Relaxed),
        elapsed,
        limited: shared.limited.lock().await.take(),
        other: shared.other.lock().await.take(),
    }
}

impl Flood {
    /// The first 429, or the failure of a flood that met none; `what` names what was sent.
    fn limited(&mut self, what: &str, allowed: &str) -> Result<Reply, CaseFailure> {
        if let Some(reply) = self.limited.take() {
            return Ok(reply);
        }
        if let Some(other) = self.other.take() {
            return Err(failed(format!(
                "stopped by an unexpected answer before any 429: {other}"
            )));
        }
        Err(failed(format!(
            "no 429 after {} admitted {what} in {:.1} s; {allowed}",
            self.admitted,
            self.elapsed.as_secs_f64(),
        )))
    }
}

/// Checks that the 429 `reply` carries a `Retry-After` a consumer can act on: waited out,
/// `template` (signed afresh) is answered. Returns the number of seconds.
async fn retry_after_usable(
    cx: &Context,
    reply: &Reply,
    template: &ExchangeRequest,
) -> Result<u64, CaseFailure> {
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
    let mut again = template.clone();
    again.id = uuid::Uuid::new_v4().to_string();
    again.iat = contracts::unix_now();
    again.exp = again.iat + 60;
    let (_, after) = cx.send(&again).await?;
    if after.status.as_u16() != 200 {
        return Err(failed(format!(
            "after waiting Retry-After ({} s) the next request was answered {}",
            wait.as_secs(),
            after.summary()
        )));
    }
    Ok(wait.as_secs())
}

/// The manifest's rate for `reference`.
fn rate_of(cx: &Context, reference: &ContractRef) -> Result<Rate, CaseFailure> {
    cx.config
        .manifest
        .contract(reference)
        .map(|c| c.rate.clone())
        .ok_or_else(|| failed(format!("{reference} is not in the manifest")))
}

pub(super) async fn rate_limited(cx: &Context) -> CaseResult {
    let primary = cx.primary();
    let rate = rate_of(cx, &primary.reference)?;
    let template = cx.request(primary);
    let mut flood = flood(cx, &template).await;
    let allowed = u64::from(rate.burst)
        + (u64::from(rate.per_second) as f64 * flood.elapsed.as_secs_f64()) as u64;
    let reply = flood.limited(
        "exchanges",
        &format!(
            "the manifest allows burst {} + {}/s, at most {allowed} in that time",
            rate.burst, rate.per_second
        ),
    )?;
    let (_, line) = expect_problem(&reply, ProblemCode::RateLimited)?;
    if flood.admitted < u64::from(rate.burst) / 2 {
        return Err(failed(format!(
            "limited after only {} exchanges; the manifest grants a burst of {}",
            flood.admitted, rate.burst
        )));
    }
    let wait = retry_after_usable(cx, &reply, &template).await?;
    Ok(format!(
        "{line} after {} admitted in {:.1} s (burst {} + {}/s); Retry-After {wait} s, then answered 200",
        flood.admitted,
        flood.elapsed.as_secs_f64(),
        rate.burst,
        rate.per_second,
    ))
}

/// PROTOCOL.md §2.5 and §3.7: an exchange of n items spends n units. Batches of as many
/// items as fit are sent until the first 429; the items admitted must stay within what the
/// manifest's rate allows in that time (give or take one batch per connection, in flight
/// when the time was read), where counting exchanges would admit about n times as many.
pub(super) async fn items_counted(cx: &Context) -> CaseResult {
    let batches = super::batch::batch_contracts(cx).await?;
    let Some(b) = batches.first() else {
        return Ok("not applicable: the target provides no batch contract".into());
    };
    let rate = rate_of(cx, &b.contract.reference)?;
    let n = b.fitting(cx)?;
    if n < 2 {
        return Err(CaseFailure::Skipped(format!(
            "{}: two copies of the first configured item do not fit the body limit",
            b.contract.reference
        )));
    }
    let (template, _) = b.signed(cx, n)?;
    let mut flood = flood(cx, &template).await;
    let items = flood.admitted * n as u64;
    let allowed = u64::from(rate.burst)
        + (u64::from(rate.per_second) as f64 * flood.elapsed.as_secs_f64()) as u64;
    let slack = (cx.config.limits.connections * n) as u64;
    let answered_per_second = items as f64 / flood.elapsed.as_secs_f64().max(0.001);
    if flood.limited.is_none()
        && flood.other.is_none()
        && answered_per_second < f64::from(rate.per_second)
    {
        return Err(CaseFailure::Skipped(format!(
            "{}: the target answered {answered_per_second:.0} items/s, fewer than the {} a second \
             its rate grants, so the rate could not be exceeded: run LIM-02 against a manifest \
             with a lower rate for the contract",
            b.contract.reference, rate.per_second
        )));
    }
    let reply = flood.limited(
        &format!("batches of {n} items"),
        &format!(
            "{items} items: the manifest allows burst {} + {}/s items, at most {allowed} in that time",
            rate.burst, rate.per_second
        ),
    )?;
    let (_, line) = expect_problem(&reply, ProblemCode::RateLimited)?;
    if items > allowed + slack {
        return Err(failed(format!(
            "{} batches of {n} items ({items} items) admitted in {:.1} s, where the manifest              allows burst {} + {}/s items, at most {allowed}: the rate counts exchanges, not items",
            flood.admitted,
            flood.elapsed.as_secs_f64(),
            rate.burst,
            rate.per_second
        )));
    }
    let wait = retry_after_usable(cx, &reply, &template).await?;
    Ok(format!(
        "{}: {line} after {} batches of {n} items ({items} items) in {:.1} s (burst {} + {}/s          items); Retry-After {wait} s, then answered 200",
        b.contract.reference,
        flood.admitted,
        flood.elapsed.as_secs_f64(),
        rate.burst,
        rate.per_second
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
