//! The middle of an exchange: the parts between "this request is authentic" and "the
//! adapter answers" — replay window, rate limits, response cache, bulkheads — and the
//! consumer's circuit breaker. Each is small, bounded, and tested on its own.

pub mod breaker;
pub mod bulkhead;
pub mod cache;
pub mod rate;
pub mod replay;
