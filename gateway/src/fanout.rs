//! Federated contracts: one local query fanned out to several contracts in parallel under
//! one deadline. Each part reports its result or its problem; a failed part never hides the
//! others.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use contracts::envelope::Evidence;
use contracts::{ContractRef, MemberId, Problem, ProblemCode};
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::config::FederatedContract;
use crate::consumer::ask;
use crate::gateway::Gateway;

/// One part's outcome.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum PartOutcome {
    /// The provider answered and the answer verified.
    Ok {
        /// The provider.
        provider: MemberId,
        /// The part's own exchange id.
        exchange_id: String,
        /// The verified result.
        result: Value,
        /// The signed envelopes.
        evidence: Evidence,
    },
    /// No verified answer.
    Error {
        /// Why.
        problem: Problem,
    },
}

/// A federated answer.
#[derive(Debug, Serialize)]
pub struct FederatedAnswer {
    /// The federated query's own id.
    pub exchange_id: String,
    /// Each part by name.
    pub parts: BTreeMap<String, PartOutcome>,
}

/// Checks the query against every part's request schema, then asks all parts at once.
pub async fn fan_out(
    gw: Arc<Gateway>,
    subsystem: MemberId,
    fc: &FederatedContract,
    query: Value,
) -> Result<FederatedAnswer, Problem> {
    for part in &fc.parts {
        let r = ContractRef::new(&part.contract, &part.version);
        if let Some(c) = gw.catalog.get(&r) {
            c.check_request(&query, "/query").map_err(|errors| {
                let mut p = Problem::invalid_query(errors);
                p.detail = format!("part `{}`: {}", part.name, p.detail);
                p
            })?;
        }
    }
    let exchange_id = uuid::Uuid::new_v4().to_string();
    let deadline = Duration::from_millis(fc.deadline_ms);
    let mut tasks = JoinSet::new();
    for part in fc.parts.clone() {
        let (gw, subsystem, query, purpose) = (
            gw.clone(),
            subsystem.clone(),
            query.clone(),
            fc.purpose.clone(),
        );
        tasks.spawn(async move {
            let r = ContractRef::new(&part.contract, &part.version);
            let outcome = match tokio::time::timeout(
                deadline,
                ask(&gw, &subsystem, &r, &purpose, query, deadline),
            )
            .await
            {
                Ok(Ok(a)) => PartOutcome::Ok {
                    provider: a.provider,
                    exchange_id: a.exchange_id,
                    result: a.result,
                    evidence: a.evidence,
                },
                Ok(Err(problem)) => PartOutcome::Error { problem },
                Err(_) => PartOutcome::Error {
                    problem: Problem::new(
                        ProblemCode::ProviderTimeout,
                        format!("no answer within {} ms", deadline.as_millis()),
                    ),
                },
            };
            (part.name, outcome)
        });
    }
    let mut parts = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((name, outcome)) => {
                parts.insert(name, outcome);
            }
            Err(e) => tracing::error!(error = %e, "a fan-out part panicked"),
        }
    }
    for part in &fc.parts {
        parts
            .entry(part.name.clone())
            .or_insert_with(|| PartOutcome::Error {
                problem: Problem::new(ProblemCode::Internal, "the part failed inside this gateway"),
            });
    }
    tracing::info!(exchange_id = %exchange_id, contract = %fc.reference(), "federated query answered");
    Ok(FederatedAnswer { exchange_id, parts })
}
