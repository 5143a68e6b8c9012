//! The load generator: N keep-alive mutual-TLS connections asking one contract as fast as the
//! gateway answers, for a fixed time; exchanges per second and latency percentiles.
//!
//! The tester's own signing must not cap the figure, so every envelope is signed before the
//! clock starts. How many are needed is measured, not guessed: a one-second warm-up (half
//! to warm the gateway, half measured) gives the gateway's rate, and twice that rate for the
//! whole duration is signed on every core. A worker that still runs dry stops early and the report says so
//! (`exhausted`), rather than quietly signing inside the measurement. Envelopes are valid
//! for 60 s from signing (the protocol's clock skew bound), which is why runs are capped at
//! [`MAX_DURATION`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contracts::envelope::{JOSE_MEDIA_TYPE, REQUEST_TYP};
use contracts::{ExchangeRequest, SigningKey};
use hyper::Method;
use serde::Serialize;
use serde_json::Value;

use crate::client::{self, ClientError, Connection, full};
use crate::config::RunConfig;

/// The longest run: envelopes signed before it must still be within the ±60 s window at its
/// end.
pub const MAX_DURATION: Duration = Duration::from_secs(40);
/// The most envelopes signed ahead (about 700 bytes each).
pub const MAX_ENVELOPES: usize = 600_000;
/// How long the warm-up that measures the rate runs.
const WARM_UP: Duration = Duration::from_secs(1);
/// Envelopes signed per envelope the warm-up rate predicts: the measured run, on warm
/// connections, can still be faster than the warm-up.
const HEADROOM: f64 = 2.0;

/// Why a load run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// An option or the configuration does not allow the run.
    #[error("{0}")]
    Options(String),
    /// A query file could not be read.
    #[error("{path}: {reason}")]
    Queries {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The target could not be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Signing failed.
    #[error("signing: {0}")]
    Signing(String),
}

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Parallel keep-alive connections, one request in flight on each.
    pub connections: usize,
    /// How long the measured run lasts.
    pub duration: Duration,
    /// The contract id (default: the configuration's first contract).
    pub contract: Option<String>,
    /// A file of queries, one JSON object per line (default: the configured queries).
    pub queries: Option<std::path::PathBuf>,
    /// How many envelopes to sign (default: measured).
    pub envelopes: Option<usize>,
}

/// Latency percentiles, in microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Slowest.
    pub max_us: u64,
    /// Mean.
    pub mean_us: u64,
}

/// The figures of one run.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    /// Gateway URL.
    pub target: String,
    /// `id/version`.
    pub contract: String,
    /// Connections.
    pub connections: usize,
    /// The requested duration, seconds.
    pub duration_s: f64,
    /// The measured time, seconds (until the last in-flight request ended).
    pub elapsed_s: f64,
    /// Envelopes signed before the clock started.
    pub envelopes: usize,
    /// Seconds spent signing them (not measured time).
    pub signing_s: f64,
    /// Distinct queries cycled through.
    pub queries: usize,
    /// Exchanges completed (any HTTP status).
    pub exchanges: u64,
    /// Answered 200.
    pub ok: u64,
    /// Count by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no HTTP answer.
    pub errors: u64,
    /// Exchanges per second.
    pub exchanges_per_s: f64,
    /// 200 answers per second.
    pub ok_per_s: f64,
    /// Latency from sending to the last byte of the answer.
    pub latency: Latency,
    /// True when a worker ran out of envelopes before the duration ended.
    pub exhausted: bool,
}

/// Reads one JSON query per line (blank lines and `#` comments skipped).
pub fn read_queries(path: &Path) -> Result<Vec<Value>, LoadError> {
    let err = |reason: String| LoadError::Queries {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(serde_json::from_str(line).map_err(|e| err(format!("line {}: {e}", n + 1)))?);
    }
    if out.is_empty() {
        return Err(err("no queries".into()));
    }
    Ok(out)
}

/// Signs `count` requests from `template`, cycling through `queries`, on every core.
fn sign_envelopes(
    key: &SigningKey,
    template: &ExchangeRequest,
    queries: &[Value],
    count: usize,
) -> Result<Vec<String>, LoadError> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(count.max(1));
    let per = count.div_ceil(threads);
    let now = contracts::unix_now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || -> Result<Vec<String>, LoadError> {
                    let mut out = Vec::with_capacity(per);
                    for i in (t * per)..((t + 1) * per).min(count) {
                        let mut request = template.clone();
                        request.id = uuid::Uuid::new_v4().to_string();
                        request.iat = now;
                        request.exp = now + contracts::envelope::MAX_VALIDITY_S;
                        request.query = queries[i % queries.len()].clone();
                        let payload = serde_json::to_vec(&request)
                            .map_err(|e| LoadError::Signing(e.to_string()))?;
                        out.push(
                            key.sign(REQUEST_TYP, &payload)
                                .map_err(|e| LoadError::Signing(e.to_string()))?,
                        );
                    }
                    Ok(out)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(count);
        for h in handles {
            let part = h
                .join()
                .map_err(|_| LoadError::Signing("a signing thread panicked".into()))??;
            all.extend(part);
        }
        Ok(all)
    })
}

/// One worker's tally.
#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    exhausted: bool,
}

/// Sends `envelopes` one after another on `conn` until `until`; reconnects if the server
/// closes the connection.
async fn worker(
    mut conn: Connection,
    endpoint: client::Endpoint,
    tls: Arc<rustls::ClientConfig>,
    path: Arc<str>,
    envelopes: Vec<String>,
    until: Instant,
) -> Tally {
    let mut tally = Tally {
        latencies: Vec::with_capacity(envelopes.len()),
        ..Tally::default()
    };
    let total = envelopes.len();
    for (i, jws) in envelopes.into_iter().enumerate() {
        if Instant::now() >= until {
            return tally;
        }
        if conn.is_closed() {
            match client::connect(&endpoint, tls.clone()).await {
                Ok(c) => conn = c,
                Err(_) => {
                    tally.errors += 1;
                    return tally;
                }
            }
        }
        let sent = Instant::now();
        match conn
            .send(Method::POST, &path, Some(JOSE_MEDIA_TYPE), full(jws))
            .await
        {
            Ok(reply) => {
                let us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                tally.latencies.push(us);
                *tally.statuses.entry(reply.status.as_u16()).or_default() += 1;
            }
            Err(_) => tally.errors += 1,
        }
        if i + 1 == total && Instant::now() < until {
            tally.exhausted = true;
        }
    }
    tally
}

/// Runs `envelopes` split over `conns` until `duration` has passed; returns the tallies and
/// the time taken.
async fn drive(
    conns: Vec<Connection>,
    config: &RunConfig,
    tls: &Arc<rustls::ClientConfig>,
    path: &Arc<str>,
    envelopes: Vec<String>,
    duration: Duration,
) -> (Vec<Tally>, Duration) {
    let n = conns.len().max(1);
    let mut queues: Vec<Vec<String>> = (0..n)
        .map(|_| Vec::with_capacity(envelopes.len() / n + 1))
        .collect();
    for (i, e) in envelopes.into_iter().enumerate() {
        queues[i % n].push(e);
    }
    let started = Instant::now();
    let until = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (conn, queue) in conns.into_iter().zip(queues) {
        tasks.spawn(worker(
            conn,
            config.target.endpoint.clone(),
            tls.clone(),
            path.clone(),
            queue,
            until,
        ));
    }
    let mut tallies = Vec::new();
    while let Some(t) = tasks.join_next().await {
        if let Ok(t) = t {
            tallies.push(t);
        }
    }
    (tallies, started.elapsed())
}

fn percentile(sorted: &[u32], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    u64::from(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Runs the load: connect, warm up and measure, sign ahead, then the measured run.
pub async fn run(config: &RunConfig, options: &LoadOptions) -> Result<LoadReport, LoadError> {
    if options.connections == 0 {
        return Err(LoadError::Options(
            "--connections must be at least 1".into(),
        ));
    }
    if options.duration.is_zero() || options.duration > MAX_DURATION {
        return Err(LoadError::Options(format!(
            "--duration must be between 1 s and {} s: envelopes are signed before the clock \
             starts and a gateway accepts them for 60 s",
            MAX_DURATION.as_secs()
        )));
    }
    let contract = match &options.contract {
        Some(id) => config
            .contracts
            .iter()
            .find(|c| &c.reference.id == id || c.reference.to_string() == *id)
            .ok_or_else(|| {
                LoadError::Options(format!(
                    "--contract {id} is not among the configuration's [[contracts]]"
                ))
            })?,
        None => &config.contracts[0],
    };
    let queries = match &options.queries {
        Some(p) => read_queries(p)?,
        None => contract.queries.clone(),
    };
    let now = contracts::unix_now();
    let template = ExchangeRequest {
        v: 1,
        id: String::new(),
        iss: config.tester.member.clone(),
        sub: None,
        aud: config.target.member.clone(),
        contract: contract.reference.id.clone(),
        version: contract.reference.version.clone(),
        purpose: contract.purpose.clone(),
        iat: now,
        exp: now,
        query: Value::Null,
    };
    let key = &config.tester.signing;
    let tls = client::tls_config(
        &config.cas,
        Some(&config.tester.tls),
        &[&rustls::version::TLS13, &rustls::version::TLS12],
    )?;
    let path: Arc<str> = format!(
        "/v1/exchange/{}/{}",
        contract.reference.id, contract.reference.version
    )
    .into();
    let open = |n: usize| {
        let tls = tls.clone();
        async move {
            let mut conns = Vec::with_capacity(n);
            for _ in 0..n {
                conns.push(client::connect(&config.target.endpoint, tls.clone()).await?);
            }
            Ok::<_, ClientError>(conns)
        }
    };

    let count = match options.envelopes {
        Some(n) => n.clamp(options.connections, MAX_ENVELOPES),
        None => {
            // Warm-up in two rounds: the first warms the gateway (its caches, allocations,
            // page cache), the second is measured — a cold first round reads at about half
            // the real rate.
            let batch = (options.connections * 500).max(4000);
            let first = sign_envelopes(key, &template, &queries, batch)?;
            let conns = open(options.connections).await?;
            drive(conns, config, &tls, &path, first, WARM_UP / 2).await;
            let second = sign_envelopes(key, &template, &queries, batch)?;
            let conns = open(options.connections).await?;
            let (tallies, took) = drive(conns, config, &tls, &path, second, WARM_UP / 2).await;
            let done: usize = tallies.iter().map(|t| t.latencies.len()).sum();
            let rate = done as f64 / took.as_secs_f64().max(0.001);
            ((rate * options.duration.as_secs_f64() * HEADROOM) as usize
                + options.connections * 100)
                .min(MAX_ENVELOPES)
        }
    };
    let signing = Instant::now();
    let envelopes = sign_envelopes(key, &template, &queries, count)?;
    let signing_s = signing.elapsed();
    if signing_s + options.duration > Duration::from_secs(55) {
        return Err(LoadError::Options(format!(
            "signing {count} envelopes took {:.1} s; with a {} s run the first would be older \
             than the 60 s a gateway accepts: use a shorter --duration or fewer --envelopes",
            signing_s.as_secs_f64(),
            options.duration.as_secs()
        )));
    }
    let conns = open(options.connections).await?;
    let (tallies, elapsed) = drive(conns, config, &tls, &path, envelopes, options.duration).await;

    let mut latencies: Vec<u32> = Vec::new();
    let mut statuses = BTreeMap::new();
    let mut errors = 0;
    let mut exhausted = false;
    for t in tallies {
        latencies.extend(t.latencies);
        for (s, n) in t.statuses {
            *statuses.entry(s).or_insert(0) += n;
        }
        errors += t.errors;
        exhausted |= t.exhausted;
    }
    latencies.sort_unstable();
    let exchanges = latencies.len() as u64;
    let ok = statuses.get(&200).copied().unwrap_or(0);
    let secs = elapsed.as_secs_f64().max(0.001);
    let mean = if latencies.is_empty() {
        0
    } else {
        latencies.iter().map(|&l| u64::from(l)).sum::<u64>() / exchanges
    };
    Ok(LoadReport {
        target: config.target.url.clone(),
        contract: contract.reference.to_string(),
        connections: options.connections,
        duration_s: options.duration.as_secs_f64(),
        elapsed_s: secs,
        envelopes: count,
        signing_s: signing_s.as_secs_f64(),
        queries: queries.len(),
        exchanges,
        ok,
        statuses,
        errors,
        exchanges_per_s: exchanges as f64 / secs,
        ok_per_s: ok as f64 / secs,
        latency: Latency {
            p50_us: percentile(&latencies, 50.0),
            p90_us: percentile(&latencies, 90.0),
            p99_us: percentile(&latencies, 99.0),
            max_us: latencies.last().map(|&l| u64::from(l)).unwrap_or(0),
            mean_us: mean,
        },
        exhausted,
    })
}

impl LoadReport {
    /// The figures for a person.
    pub fn text(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        let statuses = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut out = format!(
            "{} on {}: {} connections, {:.1} s ({} envelopes signed ahead in {:.1} s, {} distinct queries)\n\
             exchanges  {} ({statuses}; {} without an answer)\n\
             rate       {:.0} exchanges/s ({:.0} answered 200/s)\n\
             latency    p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  mean {:.2} ms\n",
            self.contract,
            self.target,
            self.connections,
            self.elapsed_s,
            self.envelopes,
            self.signing_s,
            self.queries,
            self.exchanges,
            self.errors,
            self.exchanges_per_s,
            self.ok_per_s,
            ms(self.latency.p50_us),
            ms(self.latency.p90_us),
            ms(self.latency.p99_us),
            ms(self.latency.max_us),
            ms(self.latency.mean_us),
        );
        if self.exhausted {
            out.push_str(
                "warning: envelopes ran out before the end; the figure is a lower bound (use --envelopes)\n",
            );
        }
        if self.exchanges > 0 && self.ok * 100 < self.exchanges * 99 {
            out.push_str(
                "warning: over 1% of exchanges were refused (a 429 means the manifest's rate for this consumer caps the run)\n",
            );
        }
        out
    }
}

/// Parses `10s`, `500ms`, `2m` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 10s, 500ms, 1m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("`{text}`: unit must be ms, s or m")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{text}` is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 90.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn signed_ahead_envelopes_are_distinct_and_verify() {
        let key = SigningKey::generate(contracts::Algorithm::ES256, "ID:GOV:KEMLU").unwrap();
        let template: ExchangeRequest = serde_json::from_value(serde_json::json!({
            "v": 1, "id": "", "iss": "ID:GOV:KEMLU", "aud": "ID:GOV:DUKCAPIL",
            "contract": "c", "version": "1", "purpose": "p", "iat": 0, "exp": 0, "query": null
        }))
        .unwrap();
        let queries = vec![serde_json::json!({"n": 1}), serde_json::json!({"n": 2})];
        let envelopes = sign_envelopes(&key, &template, &queries, 101).unwrap();
        assert_eq!(envelopes.len(), 101);
        let verifier = key.verifying_key().unwrap();
        let mut ids = std::collections::HashSet::new();
        for e in &envelopes {
            let parsed = contracts::ParsedJws::parse(e, REQUEST_TYP).unwrap();
            verifier.verify(&parsed).unwrap();
            let r: ExchangeRequest = serde_json::from_slice(&parsed.payload).unwrap();
            assert!(ids.insert(r.id));
            assert_eq!(r.exp - r.iat, contracts::envelope::MAX_VALIDITY_S);
        }
    }
}
