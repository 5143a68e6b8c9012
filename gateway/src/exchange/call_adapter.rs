//! The adapter answers, within the contract's concurrency cap (bulkhead) and its deadline: a
//! question about one person (or a batch) as the adapter's JSON, a statistics question as
//! the table the contract's disclosure rules make of the binding's aggregate.

use adapters::AdapterError;
use contracts::ExchangeRequest;
use contracts::statistics::{self, Statistics, StatisticsQuery};
use contracts::trace::TraceContext;
use serde_json::Value;

use super::refusal::Refusal;
use crate::fault::{self, Check};
use crate::gateway::Provided;

pub(super) async fn call_adapter(
    provided: &Provided,
    request: &ExchangeRequest,
    trace: Option<&TraceContext>,
) -> Result<Value, Refusal> {
    let _slot = enter(provided).await?;
    provided
        .adapter
        .answer_traced(&request.query, trace)
        .await
        .map_err(adapter_failed)
}

/// The answer to a statistics question: the binding's aggregate, then the table `question`
/// asks for, protected by the contract's rules before anything signs it — both within one
/// slot of the bulkhead, the protection (CPU, up to about a second for the largest tables)
/// on a blocking thread. The aggregate's own faults (a dimension the binding lacks) stay in
/// the provider's log.
pub(super) async fn call_table(
    provided: &Provided,
    stats: &Statistics,
    question: &StatisticsQuery,
) -> Result<Value, Refusal> {
    let _slot = enter(provided).await?;
    let aggregate = provided.adapter.table().await.map_err(adapter_failed)?;
    let (question, rules) = (question.clone(), stats.rules());
    // A faults build with `disclosure` off makes the table under min_cell 1, which suppresses
    // nothing, and states the contract's min_cell all the same: the table a provider that
    // skipped the rules would sign.
    let applied = if fault::off(Check::Disclosure) {
        rules.with_min_cell(1)
    } else {
        rules
    };
    let protected =
        tokio::task::spawn_blocking(move || statistics::answer(&question, &aggregate, &applied))
            .await
            .map_err(|e| {
                Refusal::CannotSign(format!("the table's protection did not finish: {e}"))
            })?;
    let mut table = protected.map_err(Refusal::from)?;
    // The rule the table states is the contract's, whatever was applied.
    table.min_cell = rules.min_cell();
    serde_json::to_value(&table).map_err(|e| Refusal::CannotSign(e.to_string()))
}

/// A slot of the contract's bulkhead, counted as an adapter call; refused when none frees up
/// within the queue's wait.
async fn enter(provided: &Provided) -> Result<tokio::sync::OwnedSemaphorePermit, Refusal> {
    let Ok(slot) = provided.bulkhead.enter().await else {
        provided.counters.bulkhead_rejected.increment(1);
        return Err(Refusal::AtCapacity {
            contract: (*provided.reference).clone(),
        });
    };
    provided.counters.adapter_calls.increment(1);
    Ok(slot)
}

fn adapter_failed(e: AdapterError) -> Refusal {
    tracing::warn!(error = %e, "adapter failed");
    match e {
        AdapterError::Timeout(_) => Refusal::AdapterTimeout(e.to_string()),
        AdapterError::Unavailable(_) => Refusal::BackendUnavailable,
        AdapterError::Failed(_) => Refusal::BackendFailed,
    }
}
