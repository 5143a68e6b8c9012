//! The load generator: N keep-alive mutual-TLS connections asking one contract, for a fixed
//! time; exchanges per second and latency percentiles. Two ways to drive:
//!
//! **Closed loop** (the default): each connection sends its next exchange as soon as the last
//! is answered, so the figure is the gateway's rate. The tester's own signing must not cap
//! it, so every envelope is signed before the clock starts. How many are needed is measured,
//! not guessed: a one-second warm-up (half to warm the gateway, half measured) gives the
//! gateway's rate, and twice that rate for the whole duration is signed on every core. A
//! worker that still runs dry stops early and the report says so (`exhausted`), rather than
//! quietly signing inside the measurement. Envelopes are valid for 60 s from signing (the
//! protocol's clock skew bound), which is why these runs are capped at [`MAX_DURATION`].
//!
//! **Open loop** (`--rate`): exchanges are due at fixed times ([`Schedule`]), whatever the
//! gateway does, and each latency is measured from when its exchange was *due*, not from when
//! it could be sent: a gateway that stalls is charged for every exchange that waited behind
//! the stall (no coordinated omission). A signer thread signs envelopes during the run into a
//! bounded channel about a second ahead of the senders, so every envelope is fresh and a run
//! may last hours (a soak). The report says when the generator fell behind its schedule.
//!
//! **Plain** (`--plain URL`): instead of signed envelopes, one fixed JSON body is POSTed to
//! a server that speaks no Simpul (a bare mTLS server, a reverse proxy), over the same
//! client, connections and timing, and any 2xx counts as answered: the side-by-side
//! benchmark (`bench/run.sh`) drives every target with this one generator.
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contracts::envelope::{JOSE_MEDIA_TYPE, REQUEST_TYP};
use contracts::{ExchangeRequest, SigningKey};
use hyper::Method;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Mutex, mpsc};

use crate::client::{self, ClientError, Connection, full};
use crate::config::RunConfig;
use crate::usage::{Process, ServerUsage, UsageError};

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
/// The highest `--rate`.
pub const MAX_RATE: f64 = 1_000_000.0;
/// How far ahead of the senders the open loop's signer may run, in time at the offered rate:
/// the bound on an envelope's age when it is sent on schedule.
const SIGNED_AHEAD: Duration = Duration::from_secs(1);
/// An open-loop exchange sent later than this after it was due counts as sent late (the
/// connection was still waiting for its last answer, or the generator was short of CPU).
pub const LATE: Duration = Duration::from_millis(10);
/// An open-loop exchange still unsent this long after the run's end is not sent at all, and
/// counted as unsent.
const END_GRACE: Duration = Duration::from_secs(1);

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
    /// The server process's figures could not be read.
    #[error("process figures: {0}")]
    Usage(#[from] UsageError),
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
    /// How many envelopes to sign ahead in a closed-loop run (default: measured).
    pub envelopes: Option<usize>,
    /// Open loop at this many exchanges per second over all connections (default: closed
    /// loop).
    pub rate: Option<f64>,
    /// The server process, whose CPU time and peak memory the report gives.
    pub server_pid: Option<u32>,
    /// With `rate`: report the latency of each window of this length as it closes.
    pub progress: Option<Duration>,
    /// POST the contract's first query as plain JSON to this `https://host:port/path`
    /// instead of signed envelopes to the gateway (default: signed envelopes).
    pub plain: Option<String>,
    /// With `plain`: the client certificate to present instead of the tester's (a member
    /// system's, for a gateway's local face).
    pub identity: Option<client::TlsIdentity>,
    /// Open a new connection for every exchange, without resuming a TLS session: each
    /// exchange pays a full mutual-TLS handshake, and its latency includes it.
    pub handshake_each: bool,
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

impl Latency {
    /// The figures of `sorted` latencies (µs, ascending).
    fn of_sorted(sorted: &[u32]) -> Self {
        let mean = if sorted.is_empty() {
            0
        } else {
            sorted.iter().map(|&l| u64::from(l)).sum::<u64>() / sorted.len() as u64
        };
        Latency {
            p50_us: percentile(sorted, 50.0),
            p90_us: percentile(sorted, 90.0),
            p99_us: percentile(sorted, 99.0),
            max_us: sorted.last().map(|&l| u64::from(l)).unwrap_or(0),
            mean_us: mean,
        }
    }
}

/// The figures of one run.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    /// Gateway URL.
    pub target: String,
    /// `id/version`, or `plain JSON` with `--plain`.
    pub contract: String,
    /// True with `--plain`: a fixed JSON body was POSTed, and `ok` counts any 2xx.
    pub plain: bool,
    /// True with `--handshake-each`: every exchange opened its own connection.
    pub handshake_each: bool,
    /// Connections.
    pub connections: usize,
    /// The requested duration, seconds.
    pub duration_s: f64,
    /// The measured time, seconds (until the last in-flight request ended).
    pub elapsed_s: f64,
    /// Envelopes signed: before the clock started, or with `--rate` during the run.
    pub envelopes: usize,
    /// Seconds spent signing them before the clock started (0 with `--rate`).
    pub signing_s: f64,
    /// Distinct queries cycled through.
    pub queries: usize,
    /// Exchanges completed (any HTTP status).
    pub exchanges: u64,
    /// Answered 200 (with `--plain`, any 2xx).
    pub ok: u64,
    /// Count by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no HTTP answer.
    pub errors: u64,
    /// Exchanges per second.
    pub exchanges_per_s: f64,
    /// CPU seconds the generator itself (all its threads) used during the measured run:
    /// near `elapsed_s` times the cores it may use, the generator was the limit.
    pub generator_cpu_s: f64,
    /// `ok` answers per second.
    pub ok_per_s: f64,
    /// Latency to the last byte of the answer: from sending it, or with `--rate` from when it
    /// was due.
    pub latency: Latency,
    /// True when a worker ran out of envelopes before the duration ended.
    pub exhausted: bool,
    /// With `--rate`: how well the schedule was kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pacing: Option<Pacing>,
    /// With `--server-pid`: what the run cost the server process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerUsage>,
    /// With `--progress`: the latency of each window of the run, in order (the last may be
    /// shorter).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
}

/// How an open-loop run kept its schedule.
#[derive(Clone, Debug, Serialize)]
pub struct Pacing {
    /// The offered rate, exchanges per second over all connections.
    pub rate_per_s: f64,
    /// Exchanges due within the duration.
    pub scheduled: u64,
    /// Of them, sent (the others are unsent, or found their connection closed and could not
    /// reconnect: counted in `errors`).
    pub sent: u64,
    /// Still unsent a second after the duration ended: the generator fell that far behind.
    pub unsent: u64,
    /// Sent more than [`LATE`] after they were due (the connection was still waiting for an
    /// earlier answer, or the generator lacked CPU or envelopes).
    pub late: u64,
    /// The latest send, microseconds after its exchange was due.
    pub max_send_lag_us: u64,
    /// Times a sender found no signed envelope waiting (the signer could not keep up).
    pub signer_dry: u64,
}

impl Pacing {
    /// True when the generator did not keep its schedule: an exchange went unsent, or over 1%
    /// were sent late.
    pub fn fell_behind(&self) -> bool {
        self.unsent > 0 || self.late * 100 > self.sent
    }
}

/// When each exchange of an open-loop run is due: exchange `k`, counted over all connections,
/// `k / rate` seconds after the start; connection `c` of `n` sends exchanges `c`, `c + n`,
/// `c + 2n`, … so the connections interleave evenly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    rate: f64,
    connections: usize,
}

impl Schedule {
    /// A schedule of `rate` exchanges per second over `connections`.
    pub fn new(rate: f64, connections: usize) -> Result<Self, LoadError> {
        if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE) {
            return Err(LoadError::Options(format!(
                "--rate must be above 0 and at most {MAX_RATE} exchanges/s"
            )));
        }
        if connections == 0 {
            return Err(LoadError::Options(
                "--connections must be at least 1".into(),
            ));
        }
        Ok(Schedule { rate, connections })
    }

    /// When exchange `k` is due, after the start.
    pub fn due(&self, k: u64) -> Duration {
        // From k, not by adding intervals up: no drift over a long run.
        Duration::from_nanos((k as f64 * 1e9 / self.rate).round() as u64)
    }

    /// The number (`k`) of connection `connection`'s `nth` exchange.
    pub fn exchange(&self, connection: usize, nth: u64) -> u64 {
        connection as u64 + nth * self.connections as u64
    }

    /// How many exchanges are due before `duration` has passed: those with `k / rate <
    /// duration`.
    pub fn due_within(&self, duration: Duration) -> u64 {
        (duration.as_secs_f64() * self.rate).ceil() as u64
    }

    /// How many of them connection `connection` sends.
    pub fn due_on(&self, connection: usize, duration: Duration) -> u64 {
        let total = self.due_within(duration);
        let c = connection as u64;
        if c >= total {
            0
        } else {
            (total - c).div_ceil(self.connections as u64)
        }
    }
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

/// Signs `count` requests from `template`, cycling through `queries` from query `first` on,
/// on every core.
fn sign_envelopes(
    key: &SigningKey,
    template: &ExchangeRequest,
    queries: &[Value],
    first: usize,
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
                        let query = &queries[(first + i) % queries.len()];
                        out.push(sign_one(key, template, query, now)?);
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

/// Signs one request from `template` with a new id, issued at `now`.
fn sign_one(
    key: &SigningKey,
    template: &ExchangeRequest,
    query: &Value,
    now: i64,
) -> Result<String, LoadError> {
    let mut request = template.clone();
    request.id = uuid::Uuid::new_v4().to_string();
    request.iat = now;
    request.exp = now + contracts::envelope::MAX_VALIDITY_S;
    request.query = query.clone();
    let payload = serde_json::to_vec(&request).map_err(|e| LoadError::Signing(e.to_string()))?;
    key.sign(REQUEST_TYP, &payload)
        .map_err(|e| LoadError::Signing(e.to_string()))
}

/// Signs envelopes, each at the time it is signed, into `out` until the senders drop their
/// end; runs on a thread of its own. Returns how many it signed.
fn sign_on_the_fly(
    key: SigningKey,
    template: ExchangeRequest,
    queries: Vec<Value>,
    out: mpsc::Sender<String>,
) -> Result<usize, LoadError> {
    for (n, query) in queries.iter().cycle().enumerate() {
        let jws = sign_one(&key, &template, query, contracts::unix_now())?;
        if out.blocking_send(jws).is_err() {
            return Ok(n);
        }
    }
    Ok(0)
}

/// What each exchange of a run sends.
enum Payload {
    /// Envelopes of the contract, signed by the tester, each with its own id.
    Signed(Box<Signer>),
    /// One JSON body, the same every time (`--plain`).
    Plain(String),
}

/// What signs a run's envelopes: the tester's key, the request each envelope copies, and the
/// queries they cycle through.
struct Signer {
    key: SigningKey,
    template: ExchangeRequest,
    queries: Vec<Value>,
}

impl Payload {
    /// `count` bodies made before the clock starts, from query `first` on: a run's warm-up
    /// and its measurement each take queries the other did not, so that distinct queries
    /// stay distinct (a cache-miss run stays one).
    fn ahead(&self, first: usize, count: usize) -> Result<Vec<String>, LoadError> {
        match self {
            Payload::Signed(s) => sign_envelopes(&s.key, &s.template, &s.queries, first, count),
            Payload::Plain(body) => Ok(vec![body.clone(); count]),
        }
    }

    /// Fills `out` until the senders drop their end; runs on a thread of its own. Returns
    /// how many bodies it made.
    fn feed(self, out: mpsc::Sender<String>) -> Result<usize, LoadError> {
        match self {
            Payload::Signed(s) => {
                let Signer {
                    key,
                    template,
                    queries,
                } = *s;
                sign_on_the_fly(key, template, queries, out)
            }
            Payload::Plain(body) => {
                let mut n = 0;
                while out.blocking_send(body.clone()).is_ok() {
                    n += 1;
                }
                Ok(n)
            }
        }
    }
}

/// Whether an answer with `status` counts as answered: an exchange is answered with 200; a
/// `plain` POST with any 2xx (whichever its server chose).
fn answered(plain: bool, status: u16) -> bool {
    if plain {
        (200..300).contains(&status)
    } else {
        status == 200
    }
}

/// Where a run's requests go, and how.
struct Route {
    endpoint: client::Endpoint,
    path: String,
    media_type: &'static str,
    /// A new connection, so a full handshake, for every exchange.
    handshake_each: bool,
}

/// `https://host:port/path` split into where to connect and the path to POST to.
fn plain_route(url: &str) -> Result<(client::Endpoint, String), LoadError> {
    let bad = |reason: String| LoadError::Options(format!("--plain {url}: {reason}"));
    let uri: hyper::Uri = url.parse().map_err(|e| bad(format!("not a URL: {e}")))?;
    let authority = uri.authority().ok_or_else(|| bad("has no host".into()))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad("must be an https:// URL".into()));
    }
    let endpoint = client::Endpoint::parse(&format!("https://{authority}")).map_err(bad)?;
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    Ok((endpoint, path.to_owned()))
}

/// One worker's tally.
#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    exhausted: bool,
    /// Open loop only, as in [`Pacing`].
    sent: u64,
    unsent: u64,
    late: u64,
    max_send_lag_us: u64,
    signer_dry: u64,
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

/// Sends `envelopes` one after another on `conn` until `until`; reconnects if the server
/// closes the connection.
async fn worker(
    mut conn: Connection,
    route: Arc<Route>,
    tls: Arc<rustls::ClientConfig>,
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
        let sent = Instant::now();
        if route.handshake_each || conn.is_closed() {
            match client::connect(&route.endpoint, tls.clone()).await {
                Ok(c) => conn = c,
                // A refused handshake is that exchange's failure when each has its own.
                Err(_) if route.handshake_each => {
                    tally.errors += 1;
                    continue;
                }
                Err(_) => {
                    tally.errors += 1;
                    return tally;
                }
            }
        }
        match conn
            .send(Method::POST, &route.path, Some(route.media_type), full(jws))
            .await
        {
            Ok(reply) => {
                tally.latencies.push(micros(sent.elapsed()));
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
    route: &Arc<Route>,
    tls: &Arc<rustls::ClientConfig>,
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
        tasks.spawn(worker(conn, route.clone(), tls.clone(), queue, until));
    }
    let mut tallies = Vec::new();
    while let Some(t) = tasks.join_next().await {
        if let Ok(t) = t {
            tallies.push(t);
        }
    }
    (tallies, started.elapsed())
}

/// What every connection of an open-loop run shares.
struct Lane {
    route: Arc<Route>,
    tls: Arc<rustls::ClientConfig>,
    /// One queue of signed envelopes, so that a connection stuck behind a slow answer holds
    /// back no other.
    envelopes: Mutex<mpsc::Receiver<String>>,
    schedule: Schedule,
    start: Instant,
    duration: Duration,
    /// The latencies of the current progress window, when windows are reported.
    window: Option<std::sync::Mutex<Vec<u32>>>,
}

/// Sends connection `connection`'s exchanges of the schedule, each when it is due (or at once
/// if the last answer came after that), until the run's duration; reconnects if the server
/// closes the connection.
async fn paced_worker(
    mut conn: Connection,
    connection: usize,
    mut ticks: mpsc::UnboundedReceiver<()>,
    lane: Arc<Lane>,
) -> Tally {
    let schedule = lane.schedule;
    let due_here = schedule.due_on(connection, lane.duration);
    let give_up = lane.start + lane.duration + END_GRACE;
    let mut tally = Tally {
        latencies: Vec::with_capacity(usize::try_from(due_here).unwrap_or(0)),
        ..Tally::default()
    };
    for nth in 0..due_here {
        let due = lane.start + schedule.due(schedule.exchange(connection, nth));
        if Instant::now() >= give_up {
            tally.unsent += due_here - nth;
            break;
        }
        // The pacer's tick says the exchange is due (or that it was, while this connection
        // waited for its last answer).
        if ticks.recv().await.is_none() {
            tally.unsent += due_here - nth;
            break;
        }
        let jws = {
            let mut queue = lane.envelopes.lock().await;
            match queue.try_recv() {
                Ok(jws) => Some(jws),
                Err(mpsc::error::TryRecvError::Empty) => {
                    tally.signer_dry += 1;
                    queue.recv().await
                }
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            }
        };
        let Some(jws) = jws else {
            // The signer stopped (it failed; the run reports why).
            tally.exhausted = true;
            tally.unsent += due_here - nth;
            break;
        };
        if lane.route.handshake_each || conn.is_closed() {
            match client::connect(&lane.route.endpoint, lane.tls.clone()).await {
                Ok(c) => conn = c,
                Err(_) => {
                    tally.errors += 1;
                    continue;
                }
            }
        }
        let lag = Instant::now().saturating_duration_since(due);
        if lag > LATE {
            tally.late += 1;
        }
        tally.max_send_lag_us = tally.max_send_lag_us.max(u64::from(micros(lag)));
        tally.sent += 1;
        match conn
            .send(
                Method::POST,
                &lane.route.path,
                Some(lane.route.media_type),
                full(jws),
            )
            .await
        {
            Ok(reply) => {
                let latency = micros(due.elapsed());
                tally.latencies.push(latency);
                if let Some(window) = &lane.window
                    && let Ok(mut w) = window.lock()
                {
                    w.push(latency);
                }
                *tally.statuses.entry(reply.status.as_u16()).or_default() += 1;
            }
            Err(_) => tally.errors += 1,
        }
    }
    tally
}

/// How long before an exchange is due the pacer stops sleeping on tokio's timer and starts
/// watching the clock: the timer wakes up to about 2 ms late (it rounds every wake-up up to
/// the next millisecond, and the runtime may be busy when it fires).
const WATCH_AHEAD: Duration = Duration::from_millis(3);

/// Ticks each exchange of `schedule` to its connection when it is due, until `duration` or
/// until no connection listens any more.
///
/// tokio's timer alone charged up to 2 ms of the generator's own lag to every exchange's
/// latency, and woke all the exchanges due within one millisecond together, a burst the
/// schedule does not have. So one task keeps the time for all connections: the timer takes
/// it to `WATCH_AHEAD` of the next exchange, and it then yields to the runtime until the
/// clock says the exchange is due (every other task, the answers being read among them,
/// runs between two looks at the clock). Tried first and not kept: a thread of its own
/// sleeping to each exchange (its wake-ups cost the generator's one core more than the
/// exchanges did at tens of thousands a second), and each connection watching the clock for
/// itself (32 tasks yielding where one will do).
async fn pace(
    schedule: Schedule,
    start: Instant,
    duration: Duration,
    ticks: Vec<mpsc::UnboundedSender<()>>,
) {
    if ticks.is_empty() {
        return;
    }
    let n = ticks.len() as u64;
    for k in 0..schedule.due_within(duration) {
        until(start + schedule.due(k)).await;
        let tick = &ticks[(k % n) as usize];
        if tick.send(()).is_err() && ticks.iter().all(|t| t.is_closed()) {
            return;
        }
    }
}

/// Returns when `due` has come: tokio's timer to `WATCH_AHEAD` of it, then the clock.
async fn until(due: Instant) {
    if let Some(watch_from) = due.checked_sub(WATCH_AHEAD)
        && watch_from > Instant::now()
    {
        tokio::time::sleep_until(watch_from.into()).await;
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

/// The figures of one progress window of an open-loop run.
#[derive(Clone, Debug, Serialize)]
pub struct Window {
    /// The window's end, seconds after the start.
    pub end_s: f64,
    /// Exchanges answered within it.
    pub exchanges: u64,
    /// Their latency.
    pub latency: Latency,
}

impl Window {
    /// The window ending at `end` from `latencies` (in any order).
    fn of(end: Duration, mut latencies: Vec<u32>) -> Self {
        latencies.sort_unstable();
        Window {
            end_s: end.as_secs_f64(),
            exchanges: latencies.len() as u64,
            latency: Latency::of_sorted(&latencies),
        }
    }

    /// One line for a person.
    pub fn text(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "{:>8.1} s  {:>8} exchanges  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            self.end_s,
            self.exchanges,
            ms(self.latency.p50_us),
            ms(self.latency.p90_us),
            ms(self.latency.p99_us),
            ms(self.latency.max_us),
        )
    }
}

/// Every `every` from the lane's start, takes the window's latencies and reports them (on
/// standard error as they close, and in the returned list), until aborted.
async fn report_windows(lane: Arc<Lane>, every: Duration, out: Arc<std::sync::Mutex<Vec<Window>>>) {
    let Some(window) = &lane.window else { return };
    for n in 1u32.. {
        let end = every.saturating_mul(n);
        tokio::time::sleep_until((lane.start + end).into()).await;
        let taken = match window.lock() {
            Ok(mut w) => std::mem::take(&mut *w),
            Err(_) => return,
        };
        let w = Window::of(end, taken);
        eprintln!("{}", w.text());
        if let Ok(mut out) = out.lock() {
            out.push(w);
        }
    }
}

/// Runs `schedule` over `conns` for `duration`, with envelopes signed on the fly; returns the
/// tallies, the time taken, how many envelopes were signed and the progress windows.
async fn drive_paced(
    conns: Vec<Connection>,
    route: &Arc<Route>,
    tls: &Arc<rustls::ClientConfig>,
    payload: Payload,
    schedule: Schedule,
    (duration, progress): (Duration, Option<Duration>),
) -> Result<(Vec<Tally>, Duration, usize, Vec<Window>), LoadError> {
    let ahead = (schedule.rate * SIGNED_AHEAD.as_secs_f64()).ceil() as usize;
    let (tx, rx) = mpsc::channel(ahead.clamp(conns.len() * 2, 100_000));
    let signing = tokio::task::spawn_blocking(move || payload.feed(tx));
    let lane = Arc::new(Lane {
        route: route.clone(),
        tls: tls.clone(),
        envelopes: Mutex::new(rx),
        schedule,
        // Let the signer fill the queue before the first exchange is due.
        start: Instant::now() + Duration::from_millis(200),
        duration,
        window: progress.map(|_| std::sync::Mutex::new(Vec::new())),
    });
    let windows = Arc::new(std::sync::Mutex::new(Vec::new()));
    let reporter = progress
        .filter(|every| !every.is_zero())
        .map(|every| tokio::spawn(report_windows(lane.clone(), every, windows.clone())));
    let mut tasks = tokio::task::JoinSet::new();
    let mut ticks = Vec::with_capacity(conns.len());
    for (connection, conn) in conns.into_iter().enumerate() {
        let (tick, ticked) = mpsc::unbounded_channel();
        ticks.push(tick);
        tasks.spawn(paced_worker(conn, connection, ticked, lane.clone()));
    }
    let pacer = tokio::spawn(pace(schedule, lane.start, lane.duration, ticks));
    let mut tallies = Vec::new();
    while let Some(t) = tasks.join_next().await {
        if let Ok(t) = t {
            tallies.push(t);
        }
    }
    let elapsed = lane.start.elapsed();
    // Every worker has returned: the pacer has nothing left to tick.
    pacer.abort();
    let _ = pacer.await;
    if let Some(reporter) = reporter {
        reporter.abort();
        let _ = reporter.await;
    }
    // The last, partial window.
    let mut windows = windows.lock().map(|w| w.clone()).unwrap_or_default();
    if let Some(window) = &lane.window
        && let Ok(mut w) = window.lock()
        && !w.is_empty()
    {
        windows.push(Window::of(elapsed, std::mem::take(&mut *w)));
    }
    // The senders are gone: dropping the queue's last end stops the signer.
    drop(lane);
    let signed = signing
        .await
        .map_err(|_| LoadError::Signing("the signing thread panicked".into()))??;
    Ok((tallies, elapsed, signed, windows))
}

fn percentile(sorted: &[u32], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    u64::from(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Runs the load: connect, then either (closed loop) warm up and measure, sign ahead and run,
/// or (`--rate`) run the schedule with envelopes signed on the fly.
pub async fn run(config: &RunConfig, options: &LoadOptions) -> Result<LoadReport, LoadError> {
    if options.connections == 0 {
        return Err(LoadError::Options(
            "--connections must be at least 1".into(),
        ));
    }
    let schedule = options
        .rate
        .map(|rate| Schedule::new(rate, options.connections))
        .transpose()?;
    if options.duration.is_zero() {
        return Err(LoadError::Options("--duration must be above 0".into()));
    }
    if schedule.is_none() && options.duration > MAX_DURATION {
        return Err(LoadError::Options(format!(
            "--duration must be at most {} s: envelopes are signed before the clock starts \
             and a gateway accepts them for 60 s (with --rate they are signed during the run, \
             and any duration is allowed)",
            MAX_DURATION.as_secs()
        )));
    }
    let server = options.server_pid.map(Process::new).transpose()?;
    // This process too: whether the generator's own CPU was the limit.
    let me = Process::new(std::process::id())?;
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
    // A plain run sends one body.
    let queries_count = if options.plain.is_some() {
        1
    } else {
        queries.len()
    };
    let (route, target_url, what, payload) = match &options.plain {
        Some(url) => {
            let (endpoint, path) = plain_route(url)?;
            let body = serde_json::to_string(&queries[0])
                .map_err(|e| LoadError::Options(format!("--plain: the query: {e}")))?;
            let route = Route {
                endpoint,
                path,
                media_type: "application/json",
                handshake_each: options.handshake_each,
            };
            (
                route,
                url.clone(),
                "plain JSON".to_owned(),
                Payload::Plain(body),
            )
        }
        None => {
            let route = Route {
                endpoint: config.target.endpoint.clone(),
                path: format!(
                    "/v1/exchange/{}/{}",
                    contract.reference.id, contract.reference.version
                ),
                media_type: JOSE_MEDIA_TYPE,
                handshake_each: options.handshake_each,
            };
            let payload = Payload::Signed(Box::new(Signer {
                key: config.tester.signing.clone(),
                template,
                queries,
            }));
            let what = contract.reference.to_string();
            (route, config.target.url.clone(), what, payload)
        }
    };
    let route = Arc::new(route);
    let mut tls = client::tls_config(
        &config.cas,
        Some(options.identity.as_ref().unwrap_or(&config.tester.tls)),
        &[&rustls::version::TLS13, &rustls::version::TLS12],
    )?;
    if options.handshake_each {
        let mut fresh = (*tls).clone();
        fresh.resumption = rustls::client::Resumption::disabled();
        tls = Arc::new(fresh);
    }
    let open = |n: usize| {
        let tls = tls.clone();
        let route = route.clone();
        async move {
            let mut conns = Vec::with_capacity(n);
            for _ in 0..n {
                conns.push(client::connect(&route.endpoint, tls.clone()).await?);
            }
            Ok::<_, ClientError>(conns)
        }
    };

    let (tallies, elapsed, count, signing_s, cpu_before, windows) = match schedule {
        Some(schedule) => {
            let conns = open(options.connections).await?;
            let cpu_before = (
                server.as_ref().map(Process::cpu_time).transpose()?,
                me.cpu_time()?,
            );
            let (tallies, elapsed, signed, windows) = drive_paced(
                conns,
                &route,
                &tls,
                payload,
                schedule,
                (options.duration, options.progress),
            )
            .await?;
            (
                tallies,
                elapsed,
                signed,
                Duration::ZERO,
                cpu_before,
                windows,
            )
        }
        None => {
            // Queries the warm-up took: the measured run starts after them.
            let mut warmed_up = 0;
            let count = match options.envelopes {
                Some(n) => n.clamp(options.connections, MAX_ENVELOPES),
                None => {
                    // Warm-up in two rounds: the first warms the gateway (its caches,
                    // allocations, page cache), the second is measured — a cold first round
                    // reads at about half the real rate.
                    let batch = (options.connections * 500).max(4000);
                    let first = payload.ahead(0, batch)?;
                    let conns = open(options.connections).await?;
                    drive(conns, &route, &tls, first, WARM_UP / 2).await;
                    let second = payload.ahead(batch, batch)?;
                    let conns = open(options.connections).await?;
                    let (tallies, took) = drive(conns, &route, &tls, second, WARM_UP / 2).await;
                    warmed_up = 2 * batch;
                    let done: usize = tallies.iter().map(|t| t.latencies.len()).sum();
                    let rate = done as f64 / took.as_secs_f64().max(0.001);
                    ((rate * options.duration.as_secs_f64() * HEADROOM) as usize
                        + options.connections * 100)
                        .min(MAX_ENVELOPES)
                }
            };
            let signing = Instant::now();
            let envelopes = payload.ahead(warmed_up, count)?;
            let signing_s = signing.elapsed();
            if signing_s + options.duration > Duration::from_secs(55) {
                return Err(LoadError::Options(format!(
                    "signing {count} envelopes took {:.1} s; with a {} s run the first would be \
                     older than the 60 s a gateway accepts: use a shorter --duration or fewer \
                     --envelopes",
                    signing_s.as_secs_f64(),
                    options.duration.as_secs()
                )));
            }
            let conns = open(options.connections).await?;
            let cpu_before = (
                server.as_ref().map(Process::cpu_time).transpose()?,
                me.cpu_time()?,
            );
            let (tallies, elapsed) = drive(conns, &route, &tls, envelopes, options.duration).await;
            (tallies, elapsed, count, signing_s, cpu_before, Vec::new())
        }
    };

    let mut latencies: Vec<u32> = Vec::new();
    let mut statuses = BTreeMap::new();
    let mut errors = 0;
    let mut exhausted = false;
    let mut pacing = schedule.map(|s| Pacing {
        rate_per_s: s.rate,
        scheduled: s.due_within(options.duration),
        sent: 0,
        unsent: 0,
        late: 0,
        max_send_lag_us: 0,
        signer_dry: 0,
    });
    for t in tallies {
        if let Some(p) = &mut pacing {
            p.sent += t.sent;
            p.unsent += t.unsent;
            p.late += t.late;
            p.max_send_lag_us = p.max_send_lag_us.max(t.max_send_lag_us);
            p.signer_dry += t.signer_dry;
        }
        latencies.extend(t.latencies);
        for (s, n) in t.statuses {
            *statuses.entry(s).or_insert(0) += n;
        }
        errors += t.errors;
        exhausted |= t.exhausted;
    }
    latencies.sort_unstable();
    let exchanges = latencies.len() as u64;
    let (cpu_before, my_cpu_before) = cpu_before;
    let generator_cpu_s = me.elapsed(my_cpu_before, me.cpu_time()?).as_secs_f64();
    let server = match (&server, cpu_before) {
        (Some(process), Some(before)) => Some(process.usage(before, exchanges)?),
        _ => None,
    };
    let plain = options.plain.is_some();
    let ok = statuses
        .iter()
        .filter(|&(&s, _)| answered(plain, s))
        .map(|(_, n)| n)
        .sum();
    let secs = elapsed.as_secs_f64().max(0.001);
    Ok(LoadReport {
        target: target_url,
        contract: what,
        plain,
        handshake_each: options.handshake_each,
        connections: options.connections,
        duration_s: options.duration.as_secs_f64(),
        elapsed_s: secs,
        envelopes: count,
        signing_s: signing_s.as_secs_f64(),
        queries: queries_count,
        exchanges,
        ok,
        statuses,
        errors,
        exchanges_per_s: exchanges as f64 / secs,
        generator_cpu_s,
        ok_per_s: ok as f64 / secs,
        latency: Latency::of_sorted(&latencies),
        exhausted,
        pacing,
        server,
        windows,
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
        let how = match &self.pacing {
            Some(p) => format!(
                "paced at {:.0} exchanges/s ({} envelopes signed during the run",
                p.rate_per_s, self.envelopes
            ),
            None => format!(
                "closed loop ({} envelopes signed ahead in {:.1} s",
                self.envelopes, self.signing_s
            ),
        };
        let mut out = format!(
            "{} on {}: {} connections{}, {:.1} s, {how}, {} distinct queries)\n\
             exchanges  {} ({statuses}; {} without an answer)\n\
             rate       {:.0} exchanges/s ({:.0} answered {}/s); the generator used {:.1} CPU s\n\
             latency    p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  mean {:.2} ms{}\n",
            self.contract,
            self.target,
            self.connections,
            if self.handshake_each {
                " (a new one for each exchange)"
            } else {
                ""
            },
            self.elapsed_s,
            self.queries,
            self.exchanges,
            self.errors,
            self.exchanges_per_s,
            self.ok_per_s,
            if self.plain { "2xx" } else { "200" },
            self.generator_cpu_s,
            ms(self.latency.p50_us),
            ms(self.latency.p90_us),
            ms(self.latency.p99_us),
            ms(self.latency.max_us),
            ms(self.latency.mean_us),
            if self.pacing.is_some() {
                " (from when each was due)"
            } else {
                ""
            },
        );
        if let Some(p) = &self.pacing {
            out.push_str(&format!(
                "schedule   {} due, {} sent, {} unsent; {} sent over {} ms late (latest {:.2} ms); \
                 signer ran dry {} times\n",
                p.scheduled,
                p.sent,
                p.unsent,
                p.late,
                LATE.as_millis(),
                ms(p.max_send_lag_us),
                p.signer_dry,
            ));
        }
        if let Some(u) = &self.server {
            out.push_str(&format!(
                "server     pid {}: {:.1} CPU s, {:.0} µs CPU per exchange; peak RSS {:.1} MiB\n",
                u.pid,
                u.cpu_s,
                u.cpu_us_per_exchange,
                u.peak_rss_kib as f64 / 1024.0,
            ));
        }
        if self.exhausted {
            out.push_str(
                "warning: envelopes ran out before the end; the figure is a lower bound (use --envelopes)\n",
            );
        }
        if !self.windows.is_empty() {
            out.push_str("windows    (latency from when each exchange was due)\n");
            for w in &self.windows {
                out.push_str(&format!("  {}\n", w.text()));
            }
        }
        if self.pacing.as_ref().is_some_and(Pacing::fell_behind) {
            out.push_str(
                "warning: the generator fell behind its schedule (see above); the rate offered was lower than asked\n",
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
    fn exchanges_are_due_evenly_at_the_rate() {
        let s = Schedule::new(200.0, 4).unwrap();
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(1), Duration::from_millis(5));
        assert_eq!(s.due(200), Duration::from_secs(1));
        // An hour at 1,000/s: no drift from adding up intervals.
        let hour = Schedule::new(1000.0, 8).unwrap();
        assert_eq!(hour.due(3_600_000), Duration::from_secs(3600));
        assert_eq!(hour.due(3_599_999), Duration::from_micros(3_599_999_000));
    }

    #[test]
    fn connections_interleave_and_share_every_exchange_once() {
        let s = Schedule::new(100.0, 3).unwrap();
        // Connection 1 sends exchanges 1, 4, 7, …: 30 ms apart, 10 ms after connection 0's.
        assert_eq!(s.exchange(1, 0), 1);
        assert_eq!(s.exchange(1, 2), 7);
        assert_eq!(
            s.due(s.exchange(1, 1)) - s.due(s.exchange(1, 0)),
            Duration::from_millis(30)
        );
        let duration = Duration::from_millis(1005);
        // Due before 1.005 s: exchanges 0 ..= 100.
        assert_eq!(s.due_within(duration), 101);
        let mut seen = Vec::new();
        for c in 0..3 {
            for nth in 0..s.due_on(c, duration) {
                let k = s.exchange(c, nth);
                assert!(s.due(k) < duration);
                seen.push(k);
            }
            assert!(s.due(s.exchange(c, s.due_on(c, duration))) >= duration);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..101).collect::<Vec<u64>>());
    }

    #[test]
    fn an_exact_duration_excludes_the_exchange_due_at_its_end() {
        let s = Schedule::new(10.0, 4).unwrap();
        assert_eq!(s.due_within(Duration::from_secs(1)), 10);
        assert_eq!(
            (0..4)
                .map(|c| s.due_on(c, Duration::from_secs(1)))
                .collect::<Vec<_>>(),
            [3, 3, 2, 2]
        );
        // More connections than exchanges: the extra ones send nothing.
        let few = Schedule::new(2.0, 8).unwrap();
        assert_eq!(few.due_on(1, Duration::from_secs(1)), 1);
        assert_eq!(few.due_on(2, Duration::from_secs(1)), 0);
    }

    #[tokio::test]
    async fn the_pacer_ticks_each_connection_its_exchanges_never_before_they_are_due() {
        let s = Schedule::new(2000.0, 3).unwrap();
        let duration = Duration::from_millis(25);
        let start = Instant::now() + Duration::from_millis(5);
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..3).map(|_| mpsc::unbounded_channel::<()>()).unzip();
        let pacer = tokio::spawn(pace(s, start, duration, senders));
        let mut counting = tokio::task::JoinSet::new();
        for (c, mut rx) in receivers.into_iter().enumerate() {
            counting.spawn(async move {
                let mut nth = 0u64;
                while rx.recv().await.is_some() {
                    let due = start + s.due(s.exchange(c, nth));
                    assert!(
                        Instant::now() >= due,
                        "connection {c}'s exchange {nth} ticked early"
                    );
                    nth += 1;
                }
                (c, nth)
            });
        }
        pacer.await.unwrap();
        while let Some(done) = counting.join_next().await {
            let (c, ticked) = done.unwrap();
            assert_eq!(ticked, s.due_on(c, duration), "connection {c}");
        }
    }

    #[tokio::test]
    async fn the_pacer_stops_when_no_connection_listens() {
        // An hour's schedule: the pacer must not run it out once every worker has gone.
        let s = Schedule::new(1000.0, 2).unwrap();
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..2).map(|_| mpsc::unbounded_channel::<()>()).unzip();
        drop(receivers);
        // Exchanges 0 and 1 fall due within the first 2 ms; both sends fail.
        tokio::time::timeout(
            Duration::from_secs(60),
            pace(s, Instant::now(), Duration::from_secs(3600), senders),
        )
        .await
        .expect("the pacer ran on with no connection listening");
        // And none at all: nothing to tick, no division by zero.
        pace(s, Instant::now(), Duration::from_secs(3600), Vec::new()).await;
    }

    #[test]
    fn a_rate_must_be_positive_finite_and_bounded() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, MAX_RATE * 2.0] {
            assert!(Schedule::new(bad, 1).is_err(), "{bad}");
        }
        assert!(Schedule::new(0.5, 1).is_ok());
        assert!(Schedule::new(10.0, 0).is_err());
    }

    #[test]
    fn a_window_has_the_figures_of_its_latencies() {
        let w = Window::of(Duration::from_secs(60), (1..=100).rev().collect());
        assert_eq!(w.end_s, 60.0);
        assert_eq!(w.exchanges, 100);
        assert_eq!(
            (
                w.latency.p50_us,
                w.latency.p99_us,
                w.latency.max_us,
                w.latency.mean_us
            ),
            (50, 99, 100, 50)
        );
        let empty = Window::of(Duration::from_secs(120), Vec::new());
        assert_eq!((empty.exchanges, empty.latency.max_us), (0, 0));
    }

    #[test]
    fn falling_behind_is_an_unsent_exchange_or_over_one_percent_late() {
        let p = |sent, unsent, late| Pacing {
            rate_per_s: 1.0,
            scheduled: sent + unsent,
            sent,
            unsent,
            late,
            max_send_lag_us: 0,
            signer_dry: 0,
        };
        assert!(!p(1000, 0, 10).fell_behind());
        assert!(p(1000, 0, 11).fell_behind());
        assert!(p(1000, 1, 0).fell_behind());
    }

    fn signer() -> (SigningKey, ExchangeRequest, Vec<Value>) {
        let key = SigningKey::generate(contracts::Algorithm::ES256, "ID:GOV:KEMLU").unwrap();
        let template: ExchangeRequest = serde_json::from_value(serde_json::json!({
            "v": 1, "id": "", "iss": "ID:GOV:KEMLU", "aud": "ID:GOV:DUKCAPIL",
            "contract": "c", "version": "1", "purpose": "p", "iat": 0, "exp": 0, "query": null
        }))
        .unwrap();
        let queries = vec![serde_json::json!({"n": 1}), serde_json::json!({"n": 2})];
        (key, template, queries)
    }

    /// Verifies `jws` with `key` and returns its request.
    fn verified(key: &SigningKey, jws: &str) -> ExchangeRequest {
        let parsed = contracts::ParsedJws::parse(jws, REQUEST_TYP).unwrap();
        key.verifying_key().unwrap().verify(&parsed).unwrap();
        serde_json::from_slice(&parsed.payload).unwrap()
    }

    #[test]
    fn signed_ahead_envelopes_are_distinct_and_verify() {
        let (key, template, queries) = signer();
        let envelopes = sign_envelopes(&key, &template, &queries, 0, 101).unwrap();
        assert_eq!(envelopes.len(), 101);
        let mut ids = std::collections::HashSet::new();
        for e in &envelopes {
            let r = verified(&key, e);
            assert!(ids.insert(r.id));
            assert_eq!(r.exp - r.iat, contracts::envelope::MAX_VALIDITY_S);
        }
    }

    #[test]
    fn the_measured_run_takes_the_queries_after_the_warm_up() {
        let (key, template, _) = signer();
        let queries: Vec<Value> = (0..10).map(|n| serde_json::json!({ "n": n })).collect();
        let payload = Payload::Signed(Box::new(Signer {
            key: key.clone(),
            template,
            queries,
        }));
        let taken: Vec<Value> = payload
            .ahead(7, 5)
            .unwrap()
            .iter()
            .map(|e| verified(&key, e).query["n"].clone())
            .collect();
        assert_eq!(taken, [7, 8, 9, 0, 1]);
    }

    #[test]
    fn a_plain_run_sends_one_body_and_counts_any_2xx() {
        let payload = Payload::Plain(r#"{"nik":"3171011701900001"}"#.into());
        assert_eq!(
            payload.ahead(3, 2).unwrap(),
            [r#"{"nik":"3171011701900001"}"#; 2]
        );
        let (tx, mut rx) = mpsc::channel(2);
        let thread = std::thread::spawn(move || payload.feed(tx));
        for _ in 0..5 {
            assert_eq!(rx.blocking_recv().unwrap(), r#"{"nik":"3171011701900001"}"#);
        }
        drop(rx);
        assert!((5..=7).contains(&thread.join().unwrap().unwrap()));
        for (status, plain, signed) in [(200, true, true), (204, true, false), (302, false, false)]
        {
            assert_eq!(answered(true, status), plain, "{status}");
            assert_eq!(answered(false, status), signed, "{status}");
        }
    }

    #[test]
    fn a_plain_url_is_split_into_endpoint_and_path() {
        let (endpoint, path) = plain_route("https://localhost:9443/answer?x=1").unwrap();
        assert_eq!(endpoint.socket_addr(), "localhost:9443");
        assert_eq!(path, "/answer?x=1");
        let (_, root) = plain_route("https://127.0.0.1:9443").unwrap();
        assert_eq!(root, "/");
        for bad in [
            "http://localhost:9443/",
            "localhost:9443",
            "/answer",
            "not a url",
        ] {
            assert!(plain_route(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_signer_signs_fresh_envelopes_until_the_senders_leave() {
        let (key, template, queries) = signer();
        let (tx, mut rx) = mpsc::channel(4);
        let thread = {
            let key = key.clone();
            std::thread::spawn(move || sign_on_the_fly(key, template, queries, tx))
        };
        let mut ids = std::collections::HashSet::new();
        for n in 0..10 {
            let r = verified(&key, &rx.blocking_recv().unwrap());
            assert!(ids.insert(r.id));
            assert!(
                (r.iat - contracts::unix_now()).abs() <= 2,
                "signed when sent"
            );
            assert_eq!(r.query, serde_json::json!({ "n": n % 2 + 1 }));
        }
        drop(rx);
        let signed = thread.join().unwrap().unwrap();
        // The ten taken, and at most the queue's four more.
        assert!((10..=14).contains(&signed), "{signed}");
    }
}
