//! A fresh answer from the response cache, when the contract allows caching: after every
//! check, so a cached answer never reaches a consumer that could not have asked.

use std::sync::Arc;

use contracts::ExchangeRequest;
use limits::cache::ResponseCache;
use serde_json::Value;

use crate::gateway::Provided;

/// The cache key of this query (`None` when the contract allows no caching), and a held
/// answer for it.
pub(super) fn cache_lookup(
    cache: &ResponseCache,
    provided: &Provided,
    request: &ExchangeRequest,
) -> (Option<[u8; 32]>, Option<Arc<Value>>) {
    let Some(key) = provided
        .cache_ttl
        .and_then(|_| ResponseCache::key(&provided.reference, &request.query))
    else {
        return (None, None);
    };
    let hit = cache.get(&key);
    match &hit {
        Some(_) => provided.counters.cache_hits.increment(1),
        None => provided.counters.cache_misses.increment(1),
    }
    (Some(key), hit)
}
