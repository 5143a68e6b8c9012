//! Counters and gauges in the Prometheus text format, served on the admin listener. Every
//! series carries `member` and `instance` (the gateway's listen address), so replicas — and
//! several gateways in one process, as `simpul up` runs them — never mix.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's Prometheus recorder (once); `None` if another recorder was
/// installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        })
        .as_ref()
}

/// The current metrics in the Prometheus text format.
pub(crate) fn render() -> String {
    install().map(|h| h.render()).unwrap_or_default()
}

/// The labels every series of one gateway carries.
#[derive(Clone, Debug)]
pub(crate) struct Labels {
    /// The member.
    pub member: String,
    /// Its listen address.
    pub instance: String,
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
}

impl ListenerCounters {
    /// Registers the series of the listener `what` (the recorder must be installed first).
    pub fn new(labels: &Labels, what: &'static str) -> Self {
        let refused = |limit: &'static str| metrics::counter!("simpul_connections_refused_total", "member" => labels.member.clone(), "instance" => labels.instance.clone(), "listener" => what, "limit" => limit);
        ListenerCounters {
            open: metrics::gauge!("simpul_connections_open", "member" => labels.member.clone(), "instance" => labels.instance.clone(), "listener" => what),
            refused_full: refused("max_connections"),
            refused_address: refused("max_connections_per_address"),
            refused_handshakes: refused("max_handshakes"),
            accept_errors: metrics::counter!("simpul_accept_errors_total", "member" => labels.member.clone(), "instance" => labels.instance.clone(), "listener" => what),
        }
    }
}

macro_rules! count {
    ($labels:expr, $name:literal $(, $k:literal => $v:expr)*) => {
        ::metrics::counter!($name, "member" => $labels.member.clone(), "instance" => $labels.instance.clone() $(, $k => $v)*).increment(1)
    };
}
pub(crate) use count;
