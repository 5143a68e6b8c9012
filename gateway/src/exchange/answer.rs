//! The adapter answers within its deadline, and the answer is valid against the contract's
//! response schema; a provider never signs an answer its own contract does not allow.

use std::sync::Arc;

use adapters::{Adapter, AdapterError};
use contracts::{Contract, ExchangeRequest, Problem, ProblemCode};
use serde_json::Value;

pub(super) async fn answer(
    adapter: &Arc<dyn Adapter>,
    contract: &Contract,
    request: &ExchangeRequest,
) -> Result<Value, Problem> {
    let result = adapter.answer(&request.query).await.map_err(|e| {
        tracing::warn!(error = %e, "adapter failed");
        match e {
            AdapterError::Timeout(_) => Problem::new(ProblemCode::ProviderTimeout, e.to_string()),
            // The backend's own message stays in the provider's log: it may name tables,
            // files or hosts that are nobody else's business.
            AdapterError::Unavailable(_) => Problem::new(
                ProblemCode::ProviderUnavailable,
                "the provider's backend is unavailable",
            ),
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
    Ok(result)
}
