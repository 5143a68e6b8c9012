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
pub fn render() -> String {
    install().map(|h| h.render()).unwrap_or_default()
}

/// The labels every series of one gateway carries.
#[derive(Clone, Debug)]
pub struct Labels {
    /// The member.
    pub member: String,
    /// Its listen address.
    pub instance: String,
}

macro_rules! count {
    ($labels:expr, $name:literal $(, $k:literal => $v:expr)*) => {
        ::metrics::counter!($name, "member" => $labels.member.clone(), "instance" => $labels.instance.clone() $(, $k => $v)*).increment(1)
    };
}
pub(crate) use count;
