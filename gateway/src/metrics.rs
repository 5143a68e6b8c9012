//! Counters, gauges and histograms in the Prometheus text format, served on the admin
//! listener. Every series carries `member` and `instance` (the gateway's listen address), so
//! replicas — and several gateways in one process, as `simpul up` runs them — never mix.
//! [`SERIES`] is the one list of what the gateway exports: each family's type, its labels
//! besides those two and its `# HELP` text; OPERATIONS.md §3.8 lists the same (a test holds
//! the two together, and the spine's scrape test holds the list against a running gateway).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use audit::Role;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// What kind of series a family is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only grows.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets ([`LATENCY_BUCKETS`]), with their sum and count.
    Histogram,
}

impl Kind {
    /// The name of the kind in the text format's `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One family of series the gateway exports.
#[derive(Clone, Copy, Debug)]
pub struct Series {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its labels besides `member` and `instance`.
    pub labels: &'static [&'static str],
    /// Its `# HELP` text.
    pub help: &'static str,
}

const fn series(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Series {
    Series {
        name,
        kind,
        labels,
        help,
    }
}

use Kind::{Counter, Gauge, Histogram};

/// Every family the gateway exports.
pub const SERIES: &[Series] = &[
    series(
        "simpul_exchanges_total",
        Counter,
        &["contract", "peer", "role", "outcome"],
        "Exchanges recorded in the audit log, by contract, the other side, this gateway's role and outcome (ok or the problem code).",
    ),
    series(
        "simpul_exchange_duration_seconds",
        Histogram,
        &["contract", "role"],
        "Time from an exchange's start on this gateway to its record, by contract and role.",
    ),
    series(
        "simpul_refused_before_authentication_total",
        Counter,
        &["outcome"],
        "Requests to the exchange face refused before their signature verified, by problem code (counted into aggregate audit records).",
    ),
    series(
        "simpul_audit_append_seconds",
        Histogram,
        &[],
        "Time for an exchange's audit record to become durable.",
    ),
    series(
        "simpul_audit_append_failures_total",
        Counter,
        &[],
        "Audit records that could not be made durable: their exchanges failed closed with 503.",
    ),
    series(
        "simpul_tls_handshakes_total",
        Counter,
        &["listener", "result"],
        "TLS handshakes on a listener by result: completed, failed or timed-out.",
    ),
    series(
        "simpul_rate_admitted_total",
        Counter,
        &["contract"],
        "Exchanges within their consumer's rate.",
    ),
    series(
        "simpul_rate_limited_total",
        Counter,
        &["contract", "consumer"],
        "Exchanges refused with 429 over their consumer's rate.",
    ),
    series(
        "simpul_rate_backend_errors_total",
        Counter,
        &[],
        "Shared rate-limit store (Redis) unreachable: the local limiter was used.",
    ),
    series(
        "simpul_replay_backend_errors_total",
        Counter,
        &[],
        "Shared replay window (Redis) unreachable: the exchange was refused with 503.",
    ),
    series(
        "simpul_cache_hits_total",
        Counter,
        &["contract"],
        "Answers served from the response cache.",
    ),
    series(
        "simpul_cache_misses_total",
        Counter,
        &["contract"],
        "Cache lookups that went on to the backend.",
    ),
    series(
        "simpul_cache_evictions_total",
        Counter,
        &[],
        "Cached answers evicted for space.",
    ),
    series(
        "simpul_adapter_calls_total",
        Counter,
        &["contract"],
        "Calls to the backend through the contract's adapter.",
    ),
    series(
        "simpul_bulkhead_rejected_total",
        Counter,
        &["contract"],
        "Exchanges refused with 503 by a full bulkhead.",
    ),
    series(
        "simpul_breaker_state",
        Gauge,
        &["provider"],
        "Circuit breaker towards a provider: 0 closed, 1 open, 2 half-open.",
    ),
    series(
        "simpul_breaker_fail_fast_total",
        Counter,
        &["provider"],
        "Local exchanges refused at once by an open breaker.",
    ),
    series(
        "simpul_audit_tampered",
        Gauge,
        &[],
        "1 once the audit store was found rewritten or cut back behind the gateway.",
    ),
    series(
        "simpul_witness_forked",
        Gauge,
        &["peer"],
        "1 once this gateway caught the peer's audit log forked or cut back.",
    ),
    series(
        "simpul_witness_tree_size",
        Gauge,
        &["peer"],
        "Size of the peer's newest tree head held, proven consistent with the one before.",
    ),
    series(
        "simpul_connections_open",
        Gauge,
        &["listener"],
        "Connections the listener holds open, those in the TLS handshake included.",
    ),
    series(
        "simpul_connections_refused_total",
        Counter,
        &["listener", "limit"],
        "Connections closed at once over a connection or handshake bound.",
    ),
    series(
        "simpul_accept_errors_total",
        Counter,
        &["listener"],
        "Accepts that failed (out of file descriptors, say).",
    ),
    series(
        "simpul_admission_refused_total",
        Counter,
        &["limit"],
        "Requests refused with 429 before their body was read, over an admission limit.",
    ),
    series(
        "simpul_preauth_refusals_dropped_total",
        Counter,
        &[],
        "Refusals before authentication beyond every bound of the aggregate counts: counted here only.",
    ),
    series(
        "simpul_audit_store_bytes",
        Gauge,
        &[],
        "Bytes the audit store takes on disk.",
    ),
    series(
        "simpul_audit_records",
        Gauge,
        &[],
        "Records in this member's audit log (its committed tree size).",
    ),
    series(
        "simpul_audit_tables_behind",
        Gauge,
        &[],
        "Records durable in the SQLite store's journal that its tables do not hold yet.",
    ),
    series(
        "simpul_audit_size_alarm",
        Gauge,
        &[],
        "1 while the audit store is over audit.size_alarm_bytes.",
    ),
    series(
        "simpul_audit_size_alarm_bytes",
        Gauge,
        &[],
        "The configured audit.size_alarm_bytes (0: none).",
    ),
    series(
        "simpul_audit_size_errors_total",
        Counter,
        &[],
        "Measurements of the audit store's size that failed.",
    ),
    series(
        "simpul_events_emitted_total",
        Counter,
        &["contract"],
        "Events emitted, through the local face or from a change table, and kept in the outbox, by event contract.",
    ),
    series(
        "simpul_events_source_errors_total",
        Counter,
        &["contract"],
        "Rounds of reading an event contract's change table that stopped at an error (logged), by event contract.",
    ),
    series(
        "simpul_events_delivered_total",
        Counter,
        &["contract", "subscriber"],
        "Events a subscriber's signed receipt acknowledged, by event contract and subscriber.",
    ),
    series(
        "simpul_events_delivery_failures_total",
        Counter,
        &["contract", "subscriber"],
        "Deliveries to a subscriber that failed and will be retried, by event contract and subscriber.",
    ),
    series(
        "simpul_events_backlog",
        Gauge,
        &["contract", "subscriber"],
        "Events emitted that a subscriber has not acknowledged yet, by event contract and subscriber.",
    ),
    series(
        "simpul_events_lag_seconds",
        Gauge,
        &["contract", "subscriber"],
        "Age of the oldest event a subscriber has not acknowledged yet (0 when none), by event contract and subscriber.",
    ),
    series(
        "simpul_events_received_total",
        Counter,
        &["contract", "provider", "status"],
        "Events received in deliveries, by event contract, provider and status (accepted or duplicate).",
    ),
    series(
        "simpul_webhook_posted_total",
        Counter,
        &["webhook"],
        "Events a member system's webhook took (answered 2xx), by webhook.",
    ),
    series(
        "simpul_webhook_failures_total",
        Counter,
        &["webhook"],
        "Posts to a webhook that failed and will be retried, by webhook.",
    ),
    series(
        "simpul_webhook_backlog",
        Gauge,
        &["webhook"],
        "Events in the inbox after the webhook's position, by webhook.",
    ),
    series(
        "simpul_manifest_serial",
        Gauge,
        &[],
        "Serial of the federation manifest held.",
    ),
    series(
        "simpul_manifest_expires_seconds",
        Gauge,
        &[],
        "Seconds until the held manifest expires (0 or less: every exchange refused).",
    ),
    series(
        "simpul_certificate_expires_seconds",
        Gauge,
        &[],
        "Seconds until this gateway's own certificate expires.",
    ),
    series(
        "simpul_manifest_refused_total",
        Counter,
        &["reason"],
        "Manifests a refresh or a peer offered that the gateway refused, by reason.",
    ),
    series(
        "simpul_refresh_errors_total",
        Counter,
        &["part"],
        "Parts of a refresh that failed and kept what was held.",
    ),
];

/// The buckets of every histogram, in seconds: 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the process's Prometheus recorder (once), with the buckets and help text of
/// [`SERIES`]; `None` if another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new();
            for s in SERIES.iter().filter(|s| s.kind == Histogram) {
                builder = match builder
                    .set_buckets_for_metric(Matcher::Full(s.name.to_owned()), LATENCY_BUCKETS)
                {
                    Ok(b) => b,
                    // Only for an empty list of buckets, which LATENCY_BUCKETS is not.
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics recorder not installed");
                        return None;
                    }
                };
            }
            match builder.install_recorder() {
                Ok(handle) => {
                    for s in SERIES {
                        match s.kind {
                            Counter => metrics::describe_counter!(s.name, s.help),
                            Gauge => metrics::describe_gauge!(s.name, s.help),
                            Histogram => metrics::describe_histogram!(s.name, s.help),
                        }
                    }
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// The current metrics in the Prometheus text format.
pub(crate) fn render() -> String {
    install().map(|h| h.render()).unwrap_or_default()
}

/// The labels every series of one gateway carries: shared, so that a series' key takes
/// them on every count without copying them.
#[derive(Clone, Debug)]
pub(crate) struct Labels {
    /// The member.
    pub member: metrics::SharedString,
    /// Its listen address.
    pub instance: metrics::SharedString,
    /// The series exchanges have been counted in, kept for the next.
    held: Arc<HeldSeries>,
}

impl Labels {
    pub(crate) fn new(member: &str, instance: &str) -> Labels {
        Labels {
            member: Arc::<str>::from(member).into(),
            instance: Arc::<str>::from(instance).into(),
            held: Arc::default(),
        }
    }
}

/// The most exchange series one gateway keeps handles of: contracts × peers × outcomes of
/// a federation stay far below it; beyond it an exchange is counted through a key built
/// for it, as it would be without this.
const MAX_HELD_SERIES: usize = 4_096;

/// The handles of the series exchanges are counted in, each registered when an exchange
/// first needs it and kept, so that the next exchange of the same contract, peer, role and
/// outcome counts without building a key (a `Vec` of labels and the recorder's lookup by
/// it). Registered on first use rather than at start-up: the recorder is installed by then.
#[derive(Default)]
struct HeldSeries {
    state: std::hash::RandomState,
    exchanges: Mutex<HeldExchanges>,
    append: OnceLock<(metrics::Histogram, metrics::Counter)>,
}

impl std::fmt::Debug for HeldSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldSeries").finish_non_exhaustive()
    }
}

/// The exchange series held, by the hash of their labels.
#[derive(Default)]
struct HeldExchanges {
    by_hash: HashMap<u64, Vec<ExchangeSeries>>,
    count: usize,
}

/// The two series of one contract, peer, role and outcome.
struct ExchangeSeries {
    contract: ContractLabel,
    peer: String,
    role: Role,
    outcome: &'static str,
    duration: metrics::Histogram,
    count: metrics::Counter,
}

/// An exchange's contract as its series name it: id and version, or neither.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ContractLabel<S = String> {
    pub id: S,
    pub version: S,
}

/// The counters of one provided contract, registered once at start-up so that counting on
/// the exchange path allocates nothing.
#[derive(Clone, Debug)]
pub(crate) struct ContractCounters {
    /// Exchanges admitted by the rate limiter.
    pub rate_admitted: metrics::Counter,
    /// Answers served from the cache.
    pub cache_hits: metrics::Counter,
    /// Cache lookups that went on to the adapter.
    pub cache_misses: metrics::Counter,
    /// Calls to the adapter.
    pub adapter_calls: metrics::Counter,
    /// Exchanges refused by the bulkhead.
    pub bulkhead_rejected: metrics::Counter,
}

impl ContractCounters {
    /// Registers the counters of `contract` (the recorder must be installed first).
    pub fn new(labels: &Labels, contract: &contracts::ContractRef) -> Self {
        let c = |name: &'static str| metrics::counter!(name, "member" => labels.member.clone(), "instance" => labels.instance.clone(), "contract" => contract.to_string());
        ContractCounters {
            rate_admitted: c("simpul_rate_admitted_total"),
            cache_hits: c("simpul_cache_hits_total"),
            cache_misses: c("simpul_cache_misses_total"),
            adapter_calls: c("simpul_adapter_calls_total"),
            bulkhead_rejected: c("simpul_bulkhead_rejected_total"),
        }
    }
}

/// The series of one listener, labelled `listener` (`gateway`, `local` or `admin`) besides `member`
/// and `instance`, registered once when it starts.
#[derive(Clone, Debug)]
pub(crate) struct ListenerCounters {
    /// Connections it holds open.
    pub open: metrics::Gauge,
    /// Connections closed at once because the listener held `max_connections`.
    pub refused_full: metrics::Counter,
    /// Connections closed at once because their peer address held
    /// `max_connections_per_address`.
    pub refused_address: metrics::Counter,
    /// Connections closed after their ClientHello because the listener had
    /// `max_handshakes` TLS handshakes in flight.
    pub refused_handshakes: metrics::Counter,
    /// Accepts that failed (out of file descriptors, say).
    pub accept_errors: metrics::Counter,
    /// TLS handshakes completed.
    pub handshakes_completed: metrics::Counter,
    /// TLS handshakes that failed: refused by either side, or closed over `max_handshakes`.
    pub handshakes_failed: metrics::Counter,
    /// TLS handshakes that did not finish within the handshake deadline.
    pub handshakes_timed_out: metrics::Counter,
}

impl ListenerCounters {
    /// Registers the series of the listener `what` (the recorder must be installed first).
    pub fn new(labels: &Labels, what: &'static str) -> Self {
        let refused = |limit: &'static str| metrics::counter!("simpul_connections_refused_total", "member" => labels.member.clone(), "instance" => labels.instance.clone(), "listener" => what, "limit" => limit);
        let handshakes = |result: &'static str| metrics::counter!("simpul_tls_handshakes_total", "member" => labels.member.clone(), "instance" => labels.instance.clone(), "listener" => what, "result" => result);
        ListenerCounters {
            open: metrics::gauge!("simpul_connections_open", "member" => labels.member.clone(), "instance" => labels.instance.clone(), "listener" => what),
            refused_full: refused("max_connections"),
            refused_address: refused("max_connections_per_address"),
            refused_handshakes: refused("max_handshakes"),
            accept_errors: metrics::counter!("simpul_accept_errors_total", "member" => labels.member.clone(), "instance" => labels.instance.clone(), "listener" => what),
            handshakes_completed: handshakes("completed"),
            handshakes_failed: handshakes("failed"),
            handshakes_timed_out: handshakes("timed-out"),
        }
    }
}

/// Counts one recorded exchange: its contract (`id/version`; empty for a path that names no
/// contract of the catalog), the other side (empty when it is not known yet), this
/// gateway's role, its outcome, and how long it took to its record.
pub(crate) fn exchange(
    labels: &Labels,
    contract: ContractLabel<&str>,
    peer: &str,
    role: Role,
    outcome: &'static str,
    took: Duration,
) {
    let held = &labels.held;
    let hash = held
        .state
        .hash_one((contract, peer, role.as_str(), outcome));
    let mut exchanges = held
        .exchanges
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let found = exchanges.by_hash.get(&hash).and_then(|bucket| {
        bucket.iter().find(|s| {
            s.contract.id == contract.id
                && s.contract.version == contract.version
                && s.peer == peer
                && s.role == role
                && s.outcome == outcome
        })
    });
    if let Some(series) = found {
        series.record(took);
        return;
    }
    let series = register_exchange(labels, contract, peer, role, outcome);
    series.record(took);
    if exchanges.count < MAX_HELD_SERIES {
        exchanges.by_hash.entry(hash).or_default().push(series);
        exchanges.count += 1;
    }
}

impl ExchangeSeries {
    fn record(&self, took: Duration) {
        self.duration.record(took.as_secs_f64());
        self.count.increment(1);
    }
}

fn register_exchange(
    labels: &Labels,
    contract: ContractLabel<&str>,
    peer: &str,
    role: Role,
    outcome: &'static str,
) -> ExchangeSeries {
    let name = if contract.id.is_empty() {
        String::new()
    } else {
        format!("{}/{}", contract.id, contract.version)
    };
    let role_label = role.as_str();
    ExchangeSeries {
        duration: metrics::histogram!("simpul_exchange_duration_seconds", "member" => labels.member.clone(), "instance" => labels.instance.clone(), "contract" => name.clone(), "role" => role_label),
        count: metrics::counter!("simpul_exchanges_total", "member" => labels.member.clone(), "instance" => labels.instance.clone(), "contract" => name, "peer" => peer.to_owned(), "role" => role_label, "outcome" => outcome),
        contract: ContractLabel {
            id: contract.id.to_owned(),
            version: contract.version.to_owned(),
        },
        peer: peer.to_owned(),
        role,
        outcome,
    }
}

/// Counts one append of an exchange's record: how long it took to be durable, or that it
/// could not be made durable.
pub(crate) fn append(labels: &Labels, took: Duration, durable: bool) {
    let (seconds, failures) = labels.held.append.get_or_init(|| {
        (
            metrics::histogram!("simpul_audit_append_seconds", "member" => labels.member.clone(), "instance" => labels.instance.clone()),
            metrics::counter!("simpul_audit_append_failures_total", "member" => labels.member.clone(), "instance" => labels.instance.clone()),
        )
    });
    if durable {
        seconds.record(took.as_secs_f64());
    } else {
        failures.increment(1);
    }
}

macro_rules! count {
    ($labels:expr, $name:literal $(, $k:literal => $v:expr)*) => {
        ::metrics::counter!($name, "member" => $labels.member.clone(), "instance" => $labels.instance.clone() $(, $k => $v)*).increment(1)
    };
}
pub(crate) use count;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// OPERATIONS.md's table of metrics: each name with its type and labels.
    fn documented() -> BTreeMap<String, (String, Vec<String>)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/OPERATIONS.md");
        let text = std::fs::read_to_string(path).unwrap();
        let ticked = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        };
        let mut out = BTreeMap::new();
        for line in text.lines().filter(|l| l.starts_with("| `simpul_")) {
            // `|` inside a cell is written `\|`; none of these columns holds one.
            let cells: Vec<&str> = line.split('|').skip(1).collect();
            for name in ticked(cells[0]) {
                out.insert(name, (cells[1].trim().to_owned(), ticked(cells[2])));
            }
        }
        out
    }

    #[test]
    fn operations_md_lists_every_series_with_its_type_and_labels_and_no_other() {
        let docs = documented();
        for s in SERIES {
            let (kind, labels) = docs
                .get(s.name)
                .unwrap_or_else(|| panic!("{} is not in OPERATIONS.md's table", s.name));
            assert_eq!(kind, s.kind.as_str(), "{}", s.name);
            assert_eq!(labels, &s.labels.to_vec(), "{}", s.name);
            assert!(!s.help.is_empty() && !s.help.contains('\n'), "{}", s.name);
        }
        for name in docs.keys() {
            assert!(
                SERIES.iter().any(|s| s.name == name),
                "OPERATIONS.md lists {name}, which the gateway does not export"
            );
        }
    }

    /// The value of the one series of `family` whose line carries every label of `with`.
    fn scraped(family: &str, with: &[&str]) -> Option<f64> {
        render()
            .lines()
            .filter(|l| l.starts_with(&format!("{family}{{")))
            .find(|l| with.iter().all(|w| l.contains(w)))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    #[test]
    fn exchanges_counted_through_held_series_land_in_the_series_a_key_names() {
        install();
        let labels = Labels::new("ID:GOV:HELD-SERIES", "127.0.0.1:1");
        let contract = ContractLabel {
            id: "citizenship.status",
            version: "1",
        };
        let took = Duration::from_millis(2);
        for _ in 0..3 {
            exchange(
                &labels,
                contract,
                "ID:GOV:KEMLU",
                Role::Provider,
                "ok",
                took,
            );
        }
        exchange(
            &labels,
            contract,
            "ID:GOV:KEMLU",
            Role::Provider,
            "rate-limited",
            took,
        );
        exchange(
            &labels,
            contract,
            "ID:GOV:BP2MI",
            Role::Provider,
            "ok",
            took,
        );
        let none = ContractLabel {
            id: "",
            version: "",
        };
        exchange(&labels, none, "", Role::Provider, "not-found", took);
        append(&labels, took, true);
        append(&labels, took, true);
        append(&labels, took, false);

        let member = r#"member="ID:GOV:HELD-SERIES""#;
        let count = |peer: &str, outcome: &str| {
            let (peer, outcome) = (
                format!(r#"peer="{peer}""#),
                format!(r#"outcome="{outcome}""#),
            );
            scraped("simpul_exchanges_total", &[member, &peer, &outcome])
        };
        assert_eq!(count("ID:GOV:KEMLU", "ok"), Some(3.0));
        assert_eq!(count("ID:GOV:KEMLU", "rate-limited"), Some(1.0));
        assert_eq!(count("ID:GOV:BP2MI", "ok"), Some(1.0));
        assert_eq!(
            scraped(
                "simpul_exchanges_total",
                &[member, r#"contract="""#, r#"outcome="not-found""#]
            ),
            Some(1.0)
        );
        assert_eq!(
            scraped(
                "simpul_exchange_duration_seconds_count",
                &[member, r#"contract="citizenship.status/1""#]
            ),
            Some(5.0)
        );
        assert_eq!(
            scraped("simpul_audit_append_seconds_count", &[member]),
            Some(2.0)
        );
        assert_eq!(
            scraped("simpul_audit_append_failures_total", &[member]),
            Some(1.0)
        );
    }
}
