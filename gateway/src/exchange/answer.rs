//! The answer: from the cache when the contract allows caching and a fresh one is held,
//! otherwise from the adapter — within its concurrency cap and deadline — and valid against
//! the contract's response schema; a provider never signs an answer its own contract does
//! not allow, and never caches one.

use std::sync::Arc;

use adapters::AdapterError;
use contracts::{Contract, ExchangeRequest, Problem, ProblemCode};
use serde_json::Value;

use crate::gateway::{Gateway, Provided};

use limits::cache::ResponseCache;

pub(super) async fn answer(
    gw: &Gateway,
    provided: &Provided,
    contract: &Contract,
    request: &ExchangeRequest,
) -> Result<Arc<Value>, Problem> {
    let key = provided
        .cache_ttl
        .and_then(|_| ResponseCache::key(&provided.reference, &request.query));
    if let Some(key) = &key {
        match gw.cache.get(key) {
            Some(hit) => {
                provided.counters.cache_hits.increment(1);
                return Ok(hit);
            }
            None => provided.counters.cache_misses.increment(1),
        }
    }
    let Ok(_slot) = provided.bulkhead.enter().await else {
        provided.counters.bulkhead_rejected.increment(1);
        let mut p = Problem::new(
            ProblemCode::ProviderUnavailable,
            format!("{} is at its concurrency limit", provided.reference),
        );
        p.retry_after = Some(1);
        return Err(p);
    };
    provided.counters.adapter_calls.increment(1);
    let result = provided.adapter.answer(&request.query).await.map_err(|e| {
        tracing::warn!(error = %e, "adapter failed");
        match e {
            AdapterError::Timeout(_) => Problem::new(ProblemCode::ProviderTimeout, e.to_string()),
            // The backend's own message stays in the provider's log: it may name tables,
            // files or hosts that are nobody else's business.
            AdapterError::Unavailable(_) => {
                let mut p = Problem::new(
                    ProblemCode::ProviderUnavailable,
                    "the provider's backend is unavailable",
                );
                p.retry_after = Some(1);
                p
            }
            AdapterError::Failed(_) => Problem::new(
                ProblemCode::ProviderError,
                "the provider's backend failed to answer",
            ),
        }
    })?;
    contract
        .check_response(&result, "/result")
        .map_err(|errors| {
            tracing::warn!(?errors, "adapter answer violates the response schema");
            Problem::new(
                ProblemCode::ProviderError,
                "the provider's answer does not match the contract's response schema",
            )
        })?;
    let result = Arc::new(result);
    if let (Some(key), Some(ttl)) = (key, provided.cache_ttl) {
        gw.cache
            .insert(key, provided.reference.clone(), result.clone(), ttl);
    }
    Ok(result)
}
