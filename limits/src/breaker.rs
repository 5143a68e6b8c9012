//! The consumer's circuit breaker, one per provider: after `threshold` consecutive failures
//! (connection errors, timeouts, 5xx answers) it opens and exchanges to that provider fail
//! fast for the cool-down; then one probe goes through, and its outcome closes or reopens it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { since: Instant },
}

/// What the breaker lets through now.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead.
    Go,
    /// Go ahead: this exchange is the probe after a cool-down.
    Probe,
    /// Fail fast; the provider may be tried again after this long.
    FailFast {
        /// Time left in the cool-down.
        retry_after: Duration,
    },
}

/// The breaker of one provider.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures, for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// Whether an exchange may go to the provider now.
    pub fn admit(&self) -> Admission {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Admission {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *state {
            State::Closed { .. } => Admission::Go,
            State::Open { until } if now < until => Admission::FailFast {
                retry_after: until - now,
            },
            // A probe that never reported (its caller gave up) does not hold the door forever.
            State::HalfOpen { since } if now < since + self.cooldown => Admission::FailFast {
                retry_after: since + self.cooldown - now,
            },
            State::Open { .. } | State::HalfOpen { .. } => {
                *state = State::HalfOpen { since: now };
                Admission::Probe
            }
        }
    }

    /// Records the outcome of an exchange that was let through.
    pub fn record(&self, ok: bool) {
        self.record_at(ok, Instant::now());
    }

    fn record_at(&self, ok: bool, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *state = match (*state, ok) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            (_, false) => State::Open {
                until: now + self.cooldown,
            },
        };
    }

    /// 0 closed, 1 open, 2 half-open: the gauge the metrics show.
    pub fn state_code(&self) -> u8 {
        match *self.state.lock().unwrap_or_else(|p| p.into_inner()) {
            State::Closed { .. } => 0,
            State::Open { .. } => 1,
            State::HalfOpen { .. } => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_then_probes_once() {
        let b = Breaker::new(3, Duration::from_secs(10));
        let t = Instant::now();
        for _ in 0..2 {
            assert_eq!(b.admit_at(t), Admission::Go);
            b.record_at(false, t);
        }
        b.record_at(true, t); // a success resets the count
        for _ in 0..3 {
            assert_eq!(b.admit_at(t), Admission::Go);
            b.record_at(false, t);
        }
        assert!(matches!(
            b.admit_at(t + Duration::from_secs(1)),
            Admission::FailFast { .. }
        ));
        let after = t + Duration::from_secs(11);
        assert_eq!(b.admit_at(after), Admission::Probe);
        // Only one probe at a time.
        assert!(matches!(b.admit_at(after), Admission::FailFast { .. }));
        b.record_at(false, after);
        assert!(matches!(
            b.admit_at(after + Duration::from_secs(1)),
            Admission::FailFast { .. }
        ));
        let later = after + Duration::from_secs(11);
        assert_eq!(b.admit_at(later), Admission::Probe);
        b.record_at(true, later);
        assert_eq!(b.admit_at(later), Admission::Go);
        assert_eq!(b.state_code(), 0);
    }

    #[test]
    fn a_lost_probe_does_not_hold_the_breaker_half_open() {
        let b = Breaker::new(1, Duration::from_secs(5));
        let t = Instant::now();
        b.record_at(false, t);
        assert_eq!(b.admit_at(t + Duration::from_secs(6)), Admission::Probe);
        // The probe's caller went away without recording.
        assert_eq!(b.admit_at(t + Duration::from_secs(12)), Admission::Probe);
    }
}
