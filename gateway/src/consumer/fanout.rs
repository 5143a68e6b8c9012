//! Federated contracts: one local query fanned out to several contracts in parallel under
//! one deadline. Each part reports its result or its problem; a failed part never hides the
//! others.

use std::collections::BTreeMap;
use std::sync::Arc;

use contracts::envelope::Evidence;
use contracts::{ContractRef, MemberId, Problem, ProblemCode};
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Caller, CheckedQuery, ask};
use crate::config::FederatedContract;
use crate::gateway::Gateway;
use crate::snapshot::Snapshot;

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

/// The query of a federated lookup, checked against every part's request schema.
pub struct CheckedParts(Vec<(String, ContractRef, CheckedQuery)>);

/// Checks `query` against the request schema of every part of `fc`.
///
/// # Errors
/// The first part's `invalid-query` problem, its detail prefixed with the part's name.
pub fn check_parts(
    gw: &Gateway,
    fc: &FederatedContract,
    query: &Value,
) -> Result<CheckedParts, Problem> {
    let mut checked = Vec::with_capacity(fc.parts.len());
    for (name, r) in &fc.parts {
        let query = CheckedQuery::check(gw, r, query.clone()).map_err(|mut p| {
            p.detail = format!("part `{name}`: {}", p.detail);
            p
        })?;
        checked.push((name.clone(), r.clone(), query));
    }
    Ok(CheckedParts(checked))
}

/// Asks all parts at once, each answering by one deadline (the lookup's) and under one
/// trust snapshot (the one loaded when the local query began).
pub(crate) async fn fan_out(
    gw: Arc<Gateway>,
    snap: Arc<Snapshot>,
    caller: Caller,
    fc: &FederatedContract,
    parts: CheckedParts,
) -> FederatedAnswer {
    let exchange_id = contracts::ExchangeId::new().to_string();
    // One instant for every part: each `ask` stops by it and records its own outcome, so a
    // late part is a recorded timeout, not a dropped exchange.
    let deadline = Instant::now() + fc.deadline;
    let mut tasks = JoinSet::new();
    for (name, r, query) in parts.0 {
        let (gw, snap, caller, purpose, lookup) = (
            gw.clone(),
            snap.clone(),
            caller.clone(),
            fc.purpose.clone(),
            exchange_id.clone(),
        );
        tasks.spawn(async move {
            let outcome = match ask(
                &gw,
                &snap,
                &caller,
                &r,
                &purpose,
                query,
                deadline,
                Some(&lookup),
            )
            .await
            {
                Ok(a) => PartOutcome::Ok {
                    provider: a.provider,
                    exchange_id: a.exchange_id,
                    result: a.result,
                    evidence: a.evidence,
                },
                Err(problem) => PartOutcome::Error { problem },
            };
            (name, outcome)
        });
    }
    let mut parts = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((name, outcome)) => {
                parts.insert(name, outcome);
            }
            Err(e) => {
                tracing::error!(exchange_id = %exchange_id, error = %e, "a fan-out part panicked")
            }
        }
    }
    for (name, _) in &fc.parts {
        parts
            .entry(name.clone())
            .or_insert_with(|| PartOutcome::Error {
                problem: Problem::new(ProblemCode::Internal, "the part failed inside this gateway"),
            });
    }
    tracing::info!(exchange_id = %exchange_id, contract = %fc.reference, "federated query answered");
    FederatedAnswer { exchange_id, parts }
}
