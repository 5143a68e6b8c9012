//! The adapter answers, within the contract's concurrency cap (bulkhead) and its deadline.

use adapters::AdapterError;
use contracts::ExchangeRequest;
use contracts::trace::TraceContext;
use serde_json::Value;

use super::refusal::Refusal;
use crate::gateway::Provided;

pub(super) async fn call_adapter(
    provided: &Provided,
    request: &ExchangeRequest,
    trace: Option<&TraceContext>,
) -> Result<Value, Refusal> {
    let Ok(_slot) = provided.bulkhead.enter().await else {
        provided.counters.bulkhead_rejected.increment(1);
        return Err(Refusal::AtCapacity {
            contract: (*provided.reference).clone(),
        });
    };
    provided.counters.adapter_calls.increment(1);
    provided
        .adapter
        .answer_traced(&request.query, trace)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "adapter failed");
            match e {
                AdapterError::Timeout(_) => Refusal::AdapterTimeout(e.to_string()),
                AdapterError::Unavailable(_) => Refusal::BackendUnavailable,
                AdapterError::Failed(_) => Refusal::BackendFailed,
            }
        })
}
