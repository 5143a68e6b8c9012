//! The replay window shared by a member's replicas: one sorted set per consumer in Redis,
//! exchange ids scored by the time they were first seen, on the Redis server's clock.
//!
//! One Lua script drops what has aged out, looks the id up, checks the consumer's bound and
//! records the id, atomically: two replicas presented the same id at once admit it once.
//! Ids are remembered for [`SHARED_WINDOW`]: the freshness window (an id can be presented
//! for at most 120 s) and 30 s for the replicas' clocks to differ from the Redis server's.
//! Since Redis keeps them, ids survive the restart of a replica (of Redis too, where it
//! persists its data: OPERATIONS.md says so). When Redis cannot be asked the exchange is
//! refused (fail closed): an id another replica recorded would otherwise pass.

use std::time::Duration;

use contracts::MemberId;

use crate::rate::RedisConfigError;
use crate::replay::ReplayRefusal;

/// How long an id is remembered, on the Redis server's clock: the 120 s an id can be
/// presented for, and 30 s for replica clocks that differ from the server's.
pub const SHARED_WINDOW: Duration = Duration::from_secs(150);

/// KEYS[1]: the consumer's set. ARGV: window in ms, capacity, id.
/// Returns {1, 0, held} when recorded, {0, 0, held} when seen before, {2, wait_ms, held} at
/// the bound.
const REPLAY_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  return {0, 0, redis.call('ZCARD', KEYS[1])}
end
local held = redis.call('ZCARD', KEYS[1])
if held >= cap then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {2, tonumber(oldest[2]) + window - now, held}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window + 1000)
return {1, 0, held + 1}
"#;

/// The shared replay window of one member.
pub struct RedisReplay {
    pool: deadpool_redis::Pool,
    script: redis::Script,
    prefix: String,
    capacity: usize,
    backend_errors: metrics::Counter,
}

impl RedisReplay {
    /// A window in Redis at `url`, keyed under `prefix` and `member` (its replicas share it,
    /// other members do not), holding at most `capacity` ids per consumer; `backend_errors`
    /// counts the checks refused because Redis could not be asked.
    ///
    /// # Errors
    /// The URL cannot be used.
    pub fn new(
        url: &str,
        prefix: &str,
        member: &MemberId,
        capacity: usize,
        backend_errors: metrics::Counter,
    ) -> Result<Self, RedisConfigError> {
        Ok(RedisReplay {
            pool: crate::rate::redis_pool(url)?,
            script: redis::Script::new(REPLAY_LUA),
            prefix: format!("{prefix}:replay:{member}"),
            capacity,
            backend_errors,
        })
    }

    /// Records `id` from `consumer`, or refuses it.
    pub async fn check(&self, consumer: &MemberId, id: u128) -> Result<(), ReplayRefusal> {
        let key = format!("{}:{consumer}", self.prefix);
        let outcome: Result<(i64, i64, i64), String> = async {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            let mut invocation = self.script.key(&key);
            invocation
                .arg(SHARED_WINDOW.as_millis() as u64)
                .arg(self.capacity)
                .arg(format!("{id:032x}"));
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
            Ok((1, _, _)) => Ok(()),
            Ok((0, _, _)) => Err(ReplayRefusal::Replay),
            Ok((_, wait_ms, held)) => Err(ReplayRefusal::Full {
                retry_after: Duration::from_millis(wait_ms.max(0) as u64)
                    .max(Duration::from_secs(1)),
                held: held.max(0) as usize,
            }),
            Err(e) => {
                self.backend_errors.increment(1);
                Err(ReplayRefusal::Unavailable(e))
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

    /// Two windows on one Redis are two replicas of one member.
    fn replicas(url: &str, capacity: usize) -> (RedisReplay, RedisReplay, String) {
        let prefix = format!("simpul-test-{}", uuid::Uuid::new_v4());
        let member = m("ID:GOV:DUKCAPIL");
        let make =
            || RedisReplay::new(url, &prefix, &member, capacity, metrics::Counter::noop()).unwrap();
        (make(), make(), prefix)
    }

    #[tokio::test]
    async fn an_id_one_replica_accepted_is_a_replay_at_the_other_and_after_a_restart() {
        let Ok(url) = std::env::var("SIMPUL_TEST_REDIS_URL") else {
            eprintln!("skipped: SIMPUL_TEST_REDIS_URL is not set (CI sets it; see .ci/run)");
            return;
        };
        let (a, b, prefix) = replicas(&url, 100);
        let kemlu = m("ID:GOV:KEMLU");
        assert_eq!(a.check(&kemlu, 7).await, Ok(()));
        assert_eq!(b.check(&kemlu, 7).await, Err(ReplayRefusal::Replay));
        assert_eq!(a.check(&kemlu, 7).await, Err(ReplayRefusal::Replay));
        // Another consumer's id space is its own.
        assert_eq!(b.check(&m("ID:GOV:BP2MI"), 7).await, Ok(()));
        // A replica started again (a new pool, nothing in memory) still knows the id.
        drop(a);
        let restarted = RedisReplay::new(
            &url,
            &prefix,
            &m("ID:GOV:DUKCAPIL"),
            100,
            metrics::Counter::noop(),
        )
        .unwrap();
        assert_eq!(restarted.check(&kemlu, 7).await, Err(ReplayRefusal::Replay));
        // Another member's window on the same Redis is apart.
        let other = RedisReplay::new(
            &url,
            &prefix,
            &m("ID:GOV:BP2MI"),
            100,
            metrics::Counter::noop(),
        )
        .unwrap();
        assert_eq!(other.check(&kemlu, 7).await, Ok(()));
    }

    #[tokio::test]
    async fn the_same_id_at_both_replicas_at_once_is_admitted_once() {
        let Ok(url) = std::env::var("SIMPUL_TEST_REDIS_URL") else {
            eprintln!("skipped: SIMPUL_TEST_REDIS_URL is not set (CI sets it; see .ci/run)");
            return;
        };
        let (a, b, _) = replicas(&url, 10_000);
        let kemlu = m("ID:GOV:KEMLU");
        for id in 0..200u128 {
            let (x, y) = tokio::join!(a.check(&kemlu, id), b.check(&kemlu, id));
            assert!(
                x.is_ok() != y.is_ok(),
                "id {id}: exactly one replica admits it: {x:?} {y:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_consumer_at_its_bound_is_refused_until_ids_age_out() {
        let Ok(url) = std::env::var("SIMPUL_TEST_REDIS_URL") else {
            eprintln!("skipped: SIMPUL_TEST_REDIS_URL is not set (CI sets it; see .ci/run)");
            return;
        };
        let (a, b, _) = replicas(&url, 3);
        let kemlu = m("ID:GOV:KEMLU");
        for id in 0..3 {
            a.check(&kemlu, id).await.unwrap();
        }
        let Err(ReplayRefusal::Full { retry_after, held }) = b.check(&kemlu, 3).await else {
            panic!("the fourth id must find the window full");
        };
        assert_eq!(held, 3);
        assert!(
            retry_after > Duration::from_secs(100) && retry_after <= SHARED_WINDOW,
            "{retry_after:?}"
        );
        // Another consumer is not affected.
        assert_eq!(b.check(&m("ID:GOV:BP2MI"), 3).await, Ok(()));
    }

    #[tokio::test]
    async fn redis_out_of_reach_refuses_and_counts() {
        // Nothing listens on port 9 of loopback (discard is not run): every check fails.
        let replay = RedisReplay::new(
            "redis://127.0.0.1:9",
            "simpul-test",
            &m("ID:GOV:DUKCAPIL"),
            10,
            metrics::Counter::noop(),
        )
        .unwrap();
        assert!(matches!(
            replay.check(&m("ID:GOV:KEMLU"), 1).await,
            Err(ReplayRefusal::Unavailable(_))
        ));
    }
}
