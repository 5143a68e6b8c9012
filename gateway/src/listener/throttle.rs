//! At most one warning line per interval for a kind of event that can come thousands of
//! times a second (failed accepts, refused connections); the line says how many were not
//! logged since the last one. The metrics count every event.

use std::time::{Duration, Instant};

/// When the next line of one kind of event may be written.
#[derive(Debug)]
pub(crate) struct Throttle {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// Lets one line through per `interval`.
    pub fn new(interval: Duration) -> Self {
        Throttle {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// An event happened at `now`: `Some(n)` if a line is to be written, `n` being the
    /// events not logged since the previous line; `None` if this one is not logged.
    pub fn event(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_is_logged_then_one_per_interval_with_the_count_left_out() {
        let mut t = Throttle::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(t.event(at(0)), Some(0));
        for ms in 1..=999 {
            assert_eq!(t.event(at(ms)), None);
        }
        assert_eq!(t.event(at(9_999)), None);
        assert_eq!(t.event(at(10_000)), Some(1_000));
        assert_eq!(t.event(at(10_001)), None);
        assert_eq!(t.event(at(60_000)), Some(1));
    }

    #[test]
    fn a_quiet_spell_logs_the_next_event_at_once() {
        let mut t = Throttle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(t.event(start), Some(0));
        assert_eq!(t.event(start + Duration::from_secs(3600)), Some(0));
    }
}
