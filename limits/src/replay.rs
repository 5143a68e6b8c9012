//! An exchange id is accepted once within the freshness window.
//!
//! A request is acceptable while `iat` is within ±60 s of the provider's clock, so one id can
//! be presented for at most 120 s; ids are remembered at least that long. They are kept per
//! consumer (ids are only recorded after the signature verified, so the consumer is known),
//! in time buckets that are dropped whole as they age out.
//!
//! The memory is bounded: each consumer may have at most `capacity` ids in the window. At the
//! bound the window fails closed: that consumer's new exchanges are refused (503 with
//! `Retry-After` until its oldest bucket ages out) rather than forgetting ids early, which
//! would let a replay through. A flood from one consumer never affects another's window.
//! Hence not moka: a cache evicts under pressure, and an evicted id is a replay let in.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use contracts::MemberId;

/// Width of one bucket.
const BUCKET: Duration = Duration::from_secs(10);

/// Why an id was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplayRefusal {
    /// Seen before within the window.
    Replay,
    /// The consumer's window holds `capacity` ids; try again after the given time.
    Full {
        /// Until the oldest bucket ages out.
        retry_after: Duration,
        /// The ids the consumer holds in the window.
        held: usize,
    },
    /// The shared window (Redis) could not be asked: refused, never let through (fail
    /// closed), since an id another replica saw would otherwise pass.
    Unavailable(String),
}

/// The replay window a gateway uses.
pub enum Replay {
    /// In this process.
    Local(ReplayWindow),
    /// Shared by the member's replicas through Redis.
    Redis(Box<crate::replay_redis::RedisReplay>),
}

impl Replay {
    /// Records `id` from `consumer`, or refuses it. `now` (Unix time) is the local window's
    /// clock; the shared window uses the Redis server's, one clock for every replica.
    pub async fn check(
        &self,
        consumer: &MemberId,
        id: u128,
        now: Duration,
    ) -> Result<(), ReplayRefusal> {
        match self {
            Replay::Local(w) => w.check(consumer, id, now),
            Replay::Redis(shared) => shared.check(consumer, id).await,
        }
    }
}

struct Buckets {
    /// (bucket number, ids), oldest first.
    buckets: VecDeque<(u64, HashSet<u128>)>,
    len: usize,
}

/// The replay window of one provider gateway.
pub struct ReplayWindow {
    window: Duration,
    capacity: usize,
    consumers: Mutex<HashMap<MemberId, Buckets>>,
}

impl ReplayWindow {
    /// A window remembering ids for at least `window`, at most `capacity` per consumer.
    pub fn new(window: Duration, capacity: usize) -> Self {
        ReplayWindow {
            window,
            capacity,
            consumers: Mutex::new(HashMap::new()),
        }
    }

    /// Records `id` from `consumer` at `now` (time since any fixed origin), or refuses it.
    pub fn check(&self, consumer: &MemberId, id: u128, now: Duration) -> Result<(), ReplayRefusal> {
        let bucket_no = now.as_secs() / BUCKET.as_secs();
        // Keep one bucket more than the window spans, so an id recorded late in a bucket
        // still lives the whole window.
        let keep = self.window.as_secs().div_ceil(BUCKET.as_secs()) + 1;
        let mut consumers = self.consumers.lock().unwrap_or_else(|p| p.into_inner());
        // Looked up by reference first: the id is cloned once per consumer, not per exchange.
        if !consumers.contains_key(consumer) {
            consumers.insert(
                consumer.clone(),
                Buckets {
                    buckets: VecDeque::new(),
                    len: 0,
                },
            );
        }
        let Some(entry) = consumers.get_mut(consumer) else {
            return Err(ReplayRefusal::Replay);
        };
        while let Some((no, ids)) = entry.buckets.front() {
            if no + keep > bucket_no {
                break;
            }
            entry.len -= ids.len();
            entry.buckets.pop_front();
        }
        if entry.buckets.iter().any(|(_, ids)| ids.contains(&id)) {
            return Err(ReplayRefusal::Replay);
        }
        if entry.len >= self.capacity {
            let oldest = entry
                .buckets
                .front()
                .map(|(no, _)| *no)
                .unwrap_or(bucket_no);
            let frees_at = Duration::from_secs((oldest + keep) * BUCKET.as_secs());
            return Err(ReplayRefusal::Full {
                retry_after: frees_at.saturating_sub(now).max(Duration::from_secs(1)),
                held: entry.len,
            });
        }
        match entry.buckets.back_mut() {
            Some((no, ids)) if *no == bucket_no => {
                ids.insert(id);
            }
            _ => entry.buckets.push_back((bucket_no, HashSet::from([id]))),
        }
        entry.len += 1;
        Ok(())
    }

    /// Ids currently remembered for `consumer`.
    pub fn len(&self, consumer: &MemberId) -> usize {
        let consumers = self.consumers.lock().unwrap_or_else(|p| p.into_inner());
        consumers.get(consumer).map(|b| b.len).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> MemberId {
        MemberId::parse(s).unwrap()
    }
    const T0: Duration = Duration::from_secs(1_000_000);

    #[test]
    fn an_id_is_accepted_once_within_the_window() {
        let w = ReplayWindow::new(Duration::from_secs(120), 100);
        let a = m("ID:GOV:A");
        assert_eq!(w.check(&a, 1, T0), Ok(()));
        assert_eq!(
            w.check(&a, 1, T0 + Duration::from_secs(119)),
            Err(ReplayRefusal::Replay)
        );
        // Another consumer's id space is its own.
        assert_eq!(w.check(&m("ID:GOV:B"), 1, T0), Ok(()));
    }

    #[test]
    fn ids_are_remembered_for_the_whole_window_and_then_forgotten() {
        let w = ReplayWindow::new(Duration::from_secs(120), 100);
        let a = m("ID:GOV:A");
        // Recorded at the very end of a bucket.
        let late = T0 + Duration::from_secs(9);
        w.check(&a, 7, late).unwrap();
        assert_eq!(
            w.check(&a, 7, late + Duration::from_secs(120)),
            Err(ReplayRefusal::Replay)
        );
        assert_eq!(w.check(&a, 7, late + Duration::from_secs(141)), Ok(()));
    }

    #[test]
    fn a_flood_fails_closed_at_the_bound_and_never_grows_past_it() {
        let w = ReplayWindow::new(Duration::from_secs(120), 1000);
        let flooder = m("ID:GOV:FLOOD");
        for id in 0..1000u128 {
            w.check(&flooder, id, T0).unwrap();
        }
        for id in 1000..5000u128 {
            assert!(matches!(
                w.check(&flooder, id, T0),
                Err(ReplayRefusal::Full { .. })
            ));
        }
        assert_eq!(w.len(&flooder), 1000);
        // A known id is still reported as a replay, not as "full".
        assert_eq!(w.check(&flooder, 5, T0), Err(ReplayRefusal::Replay));
        // Another consumer is unaffected.
        assert_eq!(w.check(&m("ID:GOV:OTHER"), 1, T0), Ok(()));
        // Once the window has passed, the flooder is admitted again.
        assert_eq!(
            w.check(&flooder, 9999, T0 + Duration::from_secs(140)),
            Ok(())
        );
        assert_eq!(w.len(&flooder), 1);
    }

    #[test]
    fn full_window_says_when_to_retry() {
        let w = ReplayWindow::new(Duration::from_secs(120), 1);
        let a = m("ID:GOV:A");
        w.check(&a, 1, T0).unwrap();
        let Err(ReplayRefusal::Full { retry_after, .. }) = w.check(&a, 2, T0) else {
            panic!("expected full");
        };
        assert!(
            retry_after > Duration::from_secs(100) && retry_after <= Duration::from_secs(140),
            "{retry_after:?}"
        );
    }
}
