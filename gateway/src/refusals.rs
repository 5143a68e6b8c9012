//! Refusals made before a request was authenticated (PROTOCOL.md §5.1), counted rather than
//! recorded one by one: every refusal of one peer (the member its TLS certificate names),
//! contract reference and outcome within one minute becomes ONE audit record with a count,
//! appended once the minute has closed (and at shutdown). Whoever holds a federation
//! certificate can make a provider refuse as often as it likes; what that costs the audit
//! store is one record per peer, contract, outcome and minute, not one per request.
//!
//! The counts of the minute not yet appended live only in this process: a gateway killed
//! (`kill -9`, power loss) loses at most them. The refused requester has its answer before
//! its refusal is durable — acceptable only because nothing was answered and nothing of the
//! request was authenticated. The map is bounded ([`MAX_KEYS`]); beyond it, refusals are
//! counted under no consumer and no contract, and beyond [`MAX_OVERFLOW_KEYS`] more, only
//! in a metric.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use audit::{Aggregate, NewRecord, Role};
use audit_store::AuditLog;
use contracts::{ContractRef, MemberId};
use tokio::sync::watch;

use crate::listener::Throttle;
use crate::trail::CANCELLED;

/// The length of one aggregation window.
pub(crate) const MINUTE_MS: i64 = 60_000;
/// The most (minute, consumer, contract, outcome) counts held before refusals are counted
/// under no consumer and no contract.
pub(crate) const MAX_KEYS: usize = 4_096;
/// The most counts under no consumer and no contract held on top of [`MAX_KEYS`]; beyond
/// them a refusal is only counted in `simpul_preauth_refusals_dropped_total`.
pub(crate) const MAX_OVERFLOW_KEYS: usize = 256;
/// How long after a minute closes its counts are appended: a refusal decided in the last
/// instant of a minute is counted before its minute is taken.
const FLUSH_DELAY: Duration = Duration::from_secs(1);
/// The least time between two log lines about refusals before authentication.
const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// What one count is of. Ordered by minute first, so the closed minutes are a prefix.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    minute: i64,
    consumer: String,
    contract: String,
    version: String,
    outcome: &'static str,
}

/// How many refusals, with how many body bytes read in full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    count: u64,
    body_bytes: u64,
}

struct State {
    tallies: BTreeMap<Key, Tally>,
    log_lines: Throttle,
}

/// The counts of one provider's refusals before authentication, not yet appended.
pub(crate) struct PreAuthRefusals {
    provider: MemberId,
    state: Mutex<State>,
    dropped: metrics::Counter,
}

impl PreAuthRefusals {
    /// No counts yet; `dropped` counts the refusals beyond every bound.
    pub(crate) fn new(provider: &MemberId, dropped: metrics::Counter) -> Self {
        PreAuthRefusals {
            provider: provider.clone(),
            state: Mutex::new(State {
                tallies: BTreeMap::new(),
                log_lines: Throttle::new(LOG_INTERVAL),
            }),
            dropped,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each update is a few map operations: a panic cannot leave them half done.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one refusal at `now_ms` of a request from `consumer` (the TLS peer's identity,
    /// `None` for a certificate without a Simpul identity) to `contract` (already reduced to
    /// a catalog contract or `""`), with `outcome` and `body_bytes` read in full. `Some(n)`
    /// when this one is to be logged, `n` being those not logged since the last line.
    pub(crate) fn count(
        &self,
        now_ms: i64,
        consumer: Option<&MemberId>,
        contract: &ContractRef,
        outcome: &'static str,
        body_bytes: u64,
    ) -> Option<u64> {
        let key = Key {
            minute: now_ms - now_ms.rem_euclid(MINUTE_MS),
            consumer: consumer.map(|c| c.as_str().to_owned()).unwrap_or_default(),
            contract: contract.id.clone(),
            version: contract.version.clone(),
            outcome,
        };
        let tally = Tally {
            count: 1,
            body_bytes,
        };
        let mut state = self.lock();
        self.add(&mut state, key, tally);
        state.log_lines.event(std::time::Instant::now())
    }

    /// Adds `tally` to `key`'s count, within the bounds.
    fn add(&self, state: &mut State, key: Key, tally: Tally) {
        let key = if state.tallies.contains_key(&key) || state.tallies.len() < MAX_KEYS {
            key
        } else {
            Key {
                consumer: String::new(),
                contract: String::new(),
                version: String::new(),
                ..key
            }
        };
        if !state.tallies.contains_key(&key) && state.tallies.len() >= MAX_KEYS + MAX_OVERFLOW_KEYS
        {
            self.dropped.increment(tally.count);
            return;
        }
        let held = state.tallies.entry(key).or_default();
        held.count = held.count.saturating_add(tally.count);
        held.body_bytes = held.body_bytes.saturating_add(tally.body_bytes);
    }

    /// Takes the counts of the minutes closed at `now_ms` (every minute before its own), or
    /// of every minute when `now_ms` is `None` (shutdown).
    fn take(&self, now_ms: Option<i64>) -> Vec<(Key, Tally)> {
        let mut state = self.lock();
        let taken = match now_ms {
            None => std::mem::take(&mut state.tallies),
            Some(now) => {
                let open = Key {
                    minute: now - now.rem_euclid(MINUTE_MS),
                    consumer: String::new(),
                    contract: String::new(),
                    version: String::new(),
                    outcome: "",
                };
                let kept = state.tallies.split_off(&open);
                std::mem::replace(&mut state.tallies, kept)
            }
        };
        taken.into_iter().collect()
    }

    /// Puts back counts whose record could not be appended, for the next flush.
    fn restore(&self, counts: Vec<(Key, Tally)>) {
        let mut state = self.lock();
        for (key, tally) in counts {
            self.add(&mut state, key, tally);
        }
    }

    /// The record that stands for one count.
    fn record(&self, key: &Key, tally: Tally) -> NewRecord {
        NewRecord {
            exchange_id: String::new(),
            role: Role::Provider,
            consumer: key.consumer.clone(),
            provider: self.provider.as_str().to_owned(),
            contract: key.contract.clone(),
            version: key.version.clone(),
            purpose: String::new(),
            request_hash: None,
            response_hash: None,
            outcome: key.outcome.to_owned(),
            latency_us: 0,
            subject: None,
            lookup_id: None,
            // The identity TLS authenticated is the one counted under.
            peer: Some(key.consumer.clone()).filter(|c| !c.is_empty()),
            subsystem: None,
            user: None,
            aggregate: Some(Aggregate {
                minute: key.minute,
                count: tally.count,
                body_bytes: tally.body_bytes,
            }),
            subjects: None,
            overlap: None,
        }
    }

    /// Appends one record for each count of the minutes closed at `now_ms` (of every
    /// minute, when `None`), each waiting until it is durable; counts whose record cannot
    /// be appended are kept for the next flush. Returns the records appended.
    pub(crate) async fn flush(&self, log: &AuditLog, now_ms: Option<i64>) -> usize {
        let counts = self.take(now_ms);
        let mut appended = 0;
        let mut failed = Vec::new();
        for (key, tally) in counts {
            match log.append(self.record(&key, tally), None).await {
                Ok(_) => appended += 1,
                Err(e) => {
                    tracing::error!(member = %self.provider, consumer = %key.consumer, outcome = key.outcome, count = tally.count, error = %e, "the aggregate of refusals before authentication is not durable: kept for the next flush");
                    failed.push((key, tally));
                }
            }
        }
        self.restore(failed);
        appended
    }

    /// The counts held now (tests).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.lock().tallies.len()
    }
}

/// Appends the counts of each minute once it has closed, until `shutdown` turns true.
/// (The caller appends what is left once its listener has drained.)
pub(crate) async fn flush_each_minute(
    refusals: &PreAuthRefusals,
    log: &AuditLog,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let now = audit_store::now_ms();
        let next = MINUTE_MS - now.rem_euclid(MINUTE_MS);
        let wait = Duration::from_millis(u64::try_from(next).unwrap_or(0)) + FLUSH_DELAY;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        refusals.flush(log, Some(audit_store::now_ms())).await;
    }
}

/// A request not yet authenticated: if it is abandoned before it is settled (the peer
/// hung up mid-body, the gateway shut down), it is counted as `cancelled`.
pub(crate) struct Unauthenticated<'a> {
    refusals: &'a PreAuthRefusals,
    consumer: Option<&'a MemberId>,
    contract: &'a ContractRef,
    settled: bool,
}

impl<'a> Unauthenticated<'a> {
    /// A request from `consumer` to `contract` (a catalog contract, or `""`).
    pub(crate) fn new(
        refusals: &'a PreAuthRefusals,
        consumer: Option<&'a MemberId>,
        contract: &'a ContractRef,
    ) -> Self {
        Unauthenticated {
            refusals,
            consumer,
            contract,
            settled: false,
        }
    }

    /// It was refused with `outcome` after `body_bytes` were read in full: counted. `Some(n)`
    /// when it is to be logged (see [`PreAuthRefusals::count`]).
    pub(crate) fn refused(mut self, outcome: &'static str, body_bytes: u64) -> Option<u64> {
        self.settled = true;
        self.refusals.count(
            audit_store::now_ms(),
            self.consumer,
            self.contract,
            outcome,
            body_bytes,
        )
    }

    /// Its signature verified: from here on its trail records it.
    pub(crate) fn authenticated(mut self) {
        self.settled = true;
    }
}

impl Drop for Unauthenticated<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.refusals.count(
                audit_store::now_ms(),
                self.consumer,
                self.contract,
                CANCELLED,
                0,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use audit_store::AuditConfig;
    use contracts::{Algorithm, SigningKey};

    use super::*;

    const T0: i64 = 1_795_458_780_000; // a minute's start

    fn member(s: &str) -> MemberId {
        MemberId::parse(s).unwrap()
    }

    fn refusals() -> PreAuthRefusals {
        PreAuthRefusals::new(&member("ID:GOV:DUKCAPIL"), metrics::Counter::noop())
    }

    async fn log(dir: &std::path::Path) -> AuditLog {
        let m = member("ID:GOV:DUKCAPIL");
        let key = SigningKey::generate(Algorithm::ES256, m.as_str()).unwrap();
        AuditLog::open(&AuditConfig::for_member(&m), dir, &m, Arc::new(key))
            .await
            .unwrap()
    }

    fn citizenship() -> ContractRef {
        ContractRef::new("citizenship.status", "1")
    }

    #[tokio::test]
    async fn refusals_of_one_peer_contract_and_outcome_in_one_minute_are_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path()).await;
        let r = refusals();
        let kemlu = member("ID:GOV:KEMLU");
        for i in 0..500 {
            r.count(T0 + i * 100, Some(&kemlu), &citizenship(), "malformed", 10);
        }
        r.count(T0 + 7, Some(&kemlu), &citizenship(), "bad-signature", 600);
        r.count(T0 + 9, None, &ContractRef::new("", ""), "malformed", 0);
        assert_eq!(r.held(), 3);
        // Nothing is appended while its minute is open.
        assert_eq!(r.flush(&log, Some(T0 + 59_999)).await, 0);
        assert_eq!(log.tree_size(), 0);
        assert_eq!(r.flush(&log, Some(T0 + MINUTE_MS)).await, 3);
        assert_eq!(r.held(), 0);
        let records = log.records(0, 10).await.unwrap();
        let malformed = records
            .iter()
            .find(|x| x.outcome == "malformed" && x.consumer == "ID:GOV:KEMLU")
            .unwrap();
        assert_eq!(
            malformed.aggregate,
            Some(Aggregate {
                minute: T0,
                count: 500,
                body_bytes: 5_000
            })
        );
        assert_eq!(
            (
                malformed.exchange_id.as_str(),
                malformed.contract.as_str(),
                malformed.provider.as_str()
            ),
            ("", "citizenship.status", "ID:GOV:DUKCAPIL")
        );
        assert_eq!(malformed.request_hash, None);
        let anonymous = records.iter().find(|x| x.consumer.is_empty()).unwrap();
        assert_eq!(anonymous.aggregate.map(|a| a.count), Some(1));
    }

    #[tokio::test]
    async fn each_minute_is_appended_once_it_closes_and_the_rest_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path()).await;
        let r = refusals();
        let kemlu = member("ID:GOV:KEMLU");
        r.count(T0 + 59_999, Some(&kemlu), &citizenship(), "malformed", 0);
        r.count(T0 + 60_000, Some(&kemlu), &citizenship(), "malformed", 0);
        r.count(T0 + 61_000, Some(&kemlu), &citizenship(), "malformed", 0);
        assert_eq!(r.flush(&log, Some(T0 + 60_500)).await, 1);
        assert_eq!(r.held(), 1);
        assert_eq!(r.flush(&log, None).await, 1);
        let records = log.records(0, 10).await.unwrap();
        let counts: Vec<_> = records
            .iter()
            .map(|x| x.aggregate.map(|a| (a.minute, a.count)))
            .collect();
        assert_eq!(counts, [Some((T0, 1)), Some((T0 + MINUTE_MS, 2))]);
    }

    #[test]
    fn the_counts_are_bounded_and_beyond_the_bound_counted_under_no_consumer() {
        let r = refusals();
        for i in 0..MAX_KEYS + 10 {
            let peer = member(&format!("ID:GOV:M{i}"));
            r.count(T0, Some(&peer), &citizenship(), "malformed", 1);
        }
        assert_eq!(r.held(), MAX_KEYS + 1, "one more: the overflow count");
        let taken = r.take(None);
        let overflow = taken
            .iter()
            .find(|(k, _)| k.consumer.is_empty())
            .map(|(_, t)| t.count);
        assert_eq!(overflow, Some(10));
        let total: u64 = taken.iter().map(|(_, t)| t.count).sum();
        assert_eq!(total, (MAX_KEYS + 10) as u64, "nothing uncounted");
        // Overflow counts are bounded too: beyond them a refusal is only a metric.
        for minute in 0..(MAX_KEYS + MAX_OVERFLOW_KEYS) as i64 + 5 {
            let peer = member("ID:GOV:KEMLU");
            r.count(
                T0 + minute * MINUTE_MS,
                Some(&peer),
                &citizenship(),
                "malformed",
                0,
            );
        }
        assert_eq!(r.held(), MAX_KEYS + MAX_OVERFLOW_KEYS);
    }

    #[test]
    fn a_request_abandoned_before_it_was_settled_counts_as_cancelled() {
        let r = refusals();
        let kemlu = member("ID:GOV:KEMLU");
        let contract = citizenship();
        drop(Unauthenticated::new(&r, Some(&kemlu), &contract));
        Unauthenticated::new(&r, Some(&kemlu), &contract).authenticated();
        Unauthenticated::new(&r, Some(&kemlu), &contract).refused("malformed", 3);
        let taken = r.take(None);
        let outcomes: Vec<_> = taken.iter().map(|(k, t)| (k.outcome, t.count)).collect();
        assert_eq!(outcomes.len(), 2);
        assert!(outcomes.contains(&(CANCELLED, 1)));
        assert!(outcomes.contains(&("malformed", 1)));
    }

    #[test]
    fn log_lines_are_throttled() {
        let r = refusals();
        let kemlu = member("ID:GOV:KEMLU");
        assert_eq!(
            r.count(T0, Some(&kemlu), &citizenship(), "malformed", 0),
            Some(0)
        );
        assert_eq!(
            r.count(T0, Some(&kemlu), &citizenship(), "malformed", 0),
            None
        );
    }
}
