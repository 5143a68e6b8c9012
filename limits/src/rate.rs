//! Per-consumer rate limits: each consumer has its own quota on each contract, at the rate
//! the manifest sets for that contract, so one consumer flooding a contract spends only its
//! own quota.
//!
//! Locally the quota is a governor GCRA keyed by consumer. Replicas of one member behind a
//! load balancer share one quota through Redis instead: the same GCRA, done atomically in
//! one Lua script against Redis's clock. If Redis cannot be reached the replica falls back to
//! its local limiter (and counts it) rather than refusing every exchange.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use contracts::manifest::Rate;
use contracts::{ContractRef, MemberId};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// The verdict for one exchange.
#[derive(Debug, PartialEq, Eq)]
pub enum RateDecision {
    /// Within quota.
    Admit,
    /// Over quota; the limiter's own wait until one more would be admitted.
    Limit {
        /// How long to wait.
        wait: Duration,
    },
}

impl RateDecision {
    /// `Retry-After` in whole seconds, never 0.
    pub fn retry_after_s(wait: Duration) -> u64 {
        (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
    }
}

fn quota(rate: &Rate) -> Quota {
    let per_second = NonZeroU32::new(rate.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(rate.burst).unwrap_or(per_second);
    Quota::per_second(per_second).allow_burst(burst)
}

/// The local limiter: one keyed GCRA per contract, with its burst.
pub struct LocalLimits {
    limiters: HashMap<ContractRef, (DefaultKeyedRateLimiter<MemberId>, NonZeroU32)>,
    clock: DefaultClock,
}

impl LocalLimits {
    /// Limiters for each contract at its rate.
    pub fn new(rates: &[(ContractRef, Rate)]) -> Self {
        LocalLimits {
            limiters: rates
                .iter()
                .map(|(r, rate)| {
                    let quota = quota(rate);
                    (r.clone(), (RateLimiter::keyed(quota), quota.burst_size()))
                })
                .collect(),
            clock: DefaultClock::default(),
        }
    }

    /// Spends `cost` units of `consumer`'s quota on `contract` (one per exchange, or one per
    /// item of a batch), at most the burst: a batch larger than the burst costs the burst.
    pub fn check(&self, contract: &ContractRef, consumer: &MemberId, cost: u32) -> RateDecision {
        let Some((limiter, burst)) = self.limiters.get(contract) else {
            return RateDecision::Admit;
        };
        let cost = NonZeroU32::new(cost).unwrap_or(NonZeroU32::MIN).min(*burst);
        match limiter.check_key_n(consumer, cost) {
            Ok(Ok(())) => RateDecision::Admit,
            Ok(Err(not_until)) => RateDecision::Limit {
                wait: not_until.wait_time_from(self.clock.now()),
            },
            // Not reached: the cost is clamped to the burst above.
            Err(_) => RateDecision::Limit {
                wait: Duration::from_secs(1),
            },
        }
    }
}

/// GCRA in one atomic step. KEYS[1] the consumer's key for the contract; ARGV[1] the emission
/// interval, ARGV[2] the burst and ARGV[3] the cost (at most the burst). Times in microseconds from Redis's own clock, so every
/// replica agrees. Returns {1, 0} when admitted, {0, wait} when not.
const GCRA_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * tonumber(ARGV[3])
if new_tat - now > tau then
  return {0, new_tat - now - tau}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
"#;

/// The shared limiter: GCRA in Redis, with a local fallback.
pub struct RedisLimits {
    pool: deadpool_redis::Pool,
    script: redis::Script,
    prefix: String,
    rates: HashMap<ContractRef, Rate>,
    fallback: LocalLimits,
    member: MemberId,
    backend_errors: metrics::Counter,
}

/// The rate limiter a gateway uses.
pub enum RateLimits {
    /// In this process.
    Local(LocalLimits),
    /// Shared by replicas through Redis.
    Redis(Box<RedisLimits>),
}

/// A Redis URL that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("redis_url: {0}")]
pub struct RedisConfigError(String);

impl RateLimits {
    /// Limits kept in Redis at `url`, keyed under `prefix` (the member, so replicas of one
    /// member share them and other members do not); `backend_errors` counts the checks
    /// that fell back to the local limiter because Redis could not be reached.
    pub fn redis(
        url: &str,
        prefix: &str,
        member: &MemberId,
        rates: &[(ContractRef, Rate)],
        backend_errors: metrics::Counter,
    ) -> Result<Self, RedisConfigError> {
        Ok(RateLimits::Redis(Box::new(RedisLimits {
            pool: redis_pool(url)?,
            script: redis::Script::new(GCRA_LUA),
            prefix: format!("{prefix}:rate:{member}"),
            rates: rates.iter().cloned().collect(),
            fallback: LocalLimits::new(rates),
            member: member.clone(),
            backend_errors,
        })))
    }

    /// Spends `cost` units of `consumer`'s quota on `contract`: one per exchange, or one per
    /// item of a batch contract (PROTOCOL.md §3.7), at most the burst.
    pub async fn check(
        &self,
        contract: &ContractRef,
        consumer: &MemberId,
        cost: u32,
    ) -> RateDecision {
        match self {
            RateLimits::Local(local) => local.check(contract, consumer, cost),
            RateLimits::Redis(shared) => shared.check(contract, consumer, cost).await,
        }
    }
}

/// A pool of connections to the Redis at `url`, bounded in size and in every wait: a
/// Redis that does not answer costs a check at most a second, never a hang.
pub(crate) fn redis_pool(url: &str) -> Result<deadpool_redis::Pool, RedisConfigError> {
    deadpool_redis::Config::from_url(url)
        .builder()
        .map_err(|e| RedisConfigError(e.to_string()))?
        .max_size(16)
        .wait_timeout(Some(Duration::from_millis(200)))
        .create_timeout(Some(Duration::from_millis(500)))
        .recycle_timeout(Some(Duration::from_millis(200)))
        .runtime(deadpool_redis::Runtime::Tokio1)
        .build()
        .map_err(|e| RedisConfigError(e.to_string()))
}

impl RedisLimits {
    async fn check(&self, contract: &ContractRef, consumer: &MemberId, cost: u32) -> RateDecision {
        let Some(rate) = self.rates.get(contract) else {
            return RateDecision::Admit;
        };
        let burst = rate.burst.max(1);
        let cost = cost.clamp(1, burst);
        let interval_us = 1_000_000 / u64::from(rate.per_second.max(1));
        let key = format!("{}:{contract}:{consumer}", self.prefix);
        let outcome: Result<(i64, i64), String> = async {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            let mut invocation = self.script.key(&key);
            invocation.arg(interval_us).arg(burst).arg(cost);
            tokio::time::timeout(
                Duration::from_millis(500),
                invocation.invoke_async(&mut conn),
            )
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())
        }
        .await;
        match outcome {
            Ok((1, _)) => RateDecision::Admit,
            Ok((_, wait_us)) => RateDecision::Limit {
                wait: Duration::from_micros(wait_us.max(0) as u64),
            },
            Err(e) => {
                tracing::warn!(member = %self.member, error = %e, "Redis rate limiter unreachable: using the local limiter");
                self.backend_errors.increment(1);
                self.fallback.check(contract, consumer, cost)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> MemberId {
        MemberId::parse(s).unwrap()
    }

    #[test]
    fn each_consumer_has_its_own_quota() {
        let c = ContractRef::new("citizenship.status", "1");
        let rate = Rate {
            per_second: 1,
            burst: 3,
        };
        let limits = LocalLimits::new(&[(c.clone(), rate)]);
        let (a, b) = (m("ID:GOV:A"), m("ID:GOV:B"));
        for _ in 0..3 {
            assert_eq!(limits.check(&c, &a, 1), RateDecision::Admit);
        }
        let RateDecision::Limit { wait } = limits.check(&c, &a, 1) else {
            panic!("the fourth at once must be limited");
        };
        assert!(
            wait > Duration::from_millis(500) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // B's quota is untouched by A's flood.
        for _ in 0..3 {
            assert_eq!(limits.check(&c, &b, 1), RateDecision::Admit);
        }
    }

    #[test]
    fn a_batch_spends_one_unit_per_item_and_at_most_the_burst() {
        let c = ContractRef::new("identity.verify", "1");
        let rate = Rate {
            per_second: 100,
            burst: 1_000,
        };
        let limits = LocalLimits::new(&[(c.clone(), rate)]);
        let a = m("ID:GOV:A");
        assert_eq!(limits.check(&c, &a, 600), RateDecision::Admit);
        // 400 left: 500 more items must wait for 100 of them, a second at 100/s.
        let RateDecision::Limit { wait } = limits.check(&c, &a, 500) else {
            panic!("600 + 500 items at once are over a burst of 1,000");
        };
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_millis(1_000),
            "{wait:?}"
        );
        assert_eq!(limits.check(&c, &a, 400), RateDecision::Admit);
        // A batch larger than the burst costs the burst: admitted once the bucket is full.
        let b = m("ID:GOV:B");
        assert_eq!(limits.check(&c, &b, 5_000), RateDecision::Admit);
        assert!(matches!(
            limits.check(&c, &b, 1),
            RateDecision::Limit { .. }
        ));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(RateDecision::retry_after_s(Duration::from_millis(1)), 1);
        assert_eq!(RateDecision::retry_after_s(Duration::from_millis(1000)), 1);
        assert_eq!(RateDecision::retry_after_s(Duration::from_millis(1001)), 2);
        assert_eq!(RateDecision::retry_after_s(Duration::ZERO), 1);
    }
}
