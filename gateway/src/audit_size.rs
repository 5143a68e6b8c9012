//! The audit store's size and growth as metrics, with an alarm: measured once a minute and
//! at every metrics scrape (a few queries, never on the exchange path), the store's bytes
//! on disk (`simpul_audit_store_bytes`), the log's records (`simpul_audit_records`) and
//! those an SQLite store's tables do not hold yet (`simpul_audit_tables_behind`);
//! above `audit.size_alarm_bytes`, `simpul_audit_size_alarm` is 1 and a warning is logged
//! (at most once per [`WARN_INTERVAL`]). Growth is the rate of these gauges
//! (OPERATIONS.md §4).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use audit_store::AuditLog;

use crate::listener::Throttle;
use crate::metrics::Labels;

/// The least time between two warnings that the store is over its alarm threshold.
const WARN_INTERVAL: Duration = Duration::from_secs(600);

/// What a measurement found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Measured {
    /// The store's bytes on disk.
    pub bytes: u64,
    /// Whether they are over the alarm threshold.
    pub alarm: bool,
}

/// The audit store's size gauges and alarm of one gateway.
pub(crate) struct AuditSize {
    alarm_bytes: Option<u64>,
    bytes: metrics::Gauge,
    records: metrics::Gauge,
    behind: metrics::Gauge,
    alarm: metrics::Gauge,
    errors: metrics::Counter,
    warnings: Mutex<Throttle>,
}

impl AuditSize {
    /// Registers the series (the recorder must be installed first); `alarm_bytes` is
    /// `audit.size_alarm_bytes`.
    pub(crate) fn new(labels: &Labels, alarm_bytes: Option<u64>) -> Self {
        let g = |name: &'static str| metrics::gauge!(name, "member" => labels.member.clone(), "instance" => labels.instance.clone());
        let alarm = g("simpul_audit_size_alarm");
        alarm.set(0.0);
        let threshold = g("simpul_audit_size_alarm_bytes");
        threshold.set(alarm_bytes.map_or(0.0, |b| b as f64));
        AuditSize {
            alarm_bytes,
            bytes: g("simpul_audit_store_bytes"),
            records: g("simpul_audit_records"),
            behind: g("simpul_audit_tables_behind"),
            alarm,
            errors: metrics::counter!("simpul_audit_size_errors_total", "member" => labels.member.clone(), "instance" => labels.instance.clone()),
            warnings: Mutex::new(Throttle::new(WARN_INTERVAL)),
        }
    }

    /// Measures `log`'s store and sets the gauges; warns when over the threshold. `None`
    /// when the store could not be measured (counted, logged; the gauges keep their last
    /// values).
    pub(crate) async fn measure(&self, log: &AuditLog) -> Option<Measured> {
        self.behind.set(log.tables_behind() as f64);
        let bytes = match log.store_size().await {
            Ok(b) => b,
            Err(e) => {
                self.errors.increment(1);
                tracing::warn!(error = %e, "the audit store's size could not be measured");
                return None;
            }
        };
        self.bytes.set(bytes as f64);
        self.records.set(log.tree_size() as f64);
        let alarm = self.alarm_bytes.is_some_and(|max| bytes > max);
        self.alarm.set(if alarm { 1.0 } else { 0.0 });
        if alarm {
            let logged = self
                .warnings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .event(Instant::now());
            if logged.is_some() {
                tracing::warn!(
                    store_bytes = bytes,
                    size_alarm_bytes = self.alarm_bytes,
                    "the audit store is over its size alarm (audit.size_alarm_bytes): make room before the disk fills, or every exchange will fail closed"
                );
            }
        }
        Some(Measured { bytes, alarm })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use audit::{NewRecord, Role};
    use audit_store::AuditConfig;
    use contracts::{Algorithm, MemberId, SigningKey};

    use super::*;

    fn labels() -> Labels {
        Labels::new("ID:GOV:DUKCAPIL", "test")
    }

    async fn log(dir: &std::path::Path) -> AuditLog {
        let m = MemberId::parse("ID:GOV:DUKCAPIL").unwrap();
        let key = SigningKey::generate(Algorithm::ES256, m.as_str()).unwrap();
        AuditLog::open(&AuditConfig::for_member(&m), dir, &m, Arc::new(key))
            .await
            .unwrap()
    }

    fn record(n: u64) -> NewRecord {
        NewRecord {
            exchange_id: format!("id-{n}"),
            role: Role::Provider,
            consumer: "ID:GOV:KEMLU".into(),
            provider: "ID:GOV:DUKCAPIL".into(),
            contract: "citizenship.status".into(),
            version: "1".into(),
            purpose: "citizen-protection".into(),
            request_hash: None,
            response_hash: None,
            outcome: "ok".into(),
            latency_us: 1,
            subject: None,
            lookup_id: None,
            peer: None,
            subsystem: None,
            user: None,
            aggregate: None,
            subjects: None,
            overlap: None,
        }
    }

    #[tokio::test]
    async fn a_store_over_its_threshold_raises_the_alarm() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path()).await;
        let unarmed = AuditSize::new(&labels(), None).measure(&log).await.unwrap();
        assert!(unarmed.bytes > 0 && !unarmed.alarm);
        let roomy = AuditSize::new(&labels(), Some(1 << 40));
        assert!(!roomy.measure(&log).await.unwrap().alarm);
        let tight = AuditSize::new(&labels(), Some(unarmed.bytes + 1));
        assert!(!tight.measure(&log).await.unwrap().alarm);
        for n in 0..300 {
            log.append(record(n), None).await.unwrap();
        }
        let after = tight.measure(&log).await.unwrap();
        assert!(after.bytes > unarmed.bytes + 1, "{unarmed:?} -> {after:?}");
        assert!(after.alarm);
    }
}
