//! The middle of an exchange, as small parts that know nothing of the gateway: the parts
//! between "this request is authentic" and "the adapter answers" — replay window (local, or
//! shared by replicas through Redis), rate
//! limits, response cache, bulkheads — and the consumer's circuit breaker. Each is bounded,
//! tested on its own with time handed in, and measured by `cargo bench -p simpul-limits`;
//! counters are handed in by the caller, which owns the metric names.

pub mod breaker;
pub mod bulkhead;
pub mod cache;
pub mod rate;
pub mod replay;
pub mod replay_redis;
