//! Every exchange is written to the gateway's audit log, on both sides, before any answer
//! leaves: provider answers and refusals, consumer exchanges and local-face refusals. When
//! the record cannot be made durable the exchange fails closed with 503 and its answer is
//! never released.

use contracts::canonical::sha256_b64url;
use contracts::{ContractRef, Problem, ProblemCode};
use serde_json::Value;

use crate::gateway::Gateway;
use audit::{NewRecord, Role, StoredEvidence};

/// What one side saw of one exchange.
pub(crate) struct Seen<'a> {
    /// The exchange id; empty when a refusal came before one was read.
    pub exchange_id: &'a str,
    /// Provider or consumer.
    pub role: Role,
    /// The consumer member, when known.
    pub consumer: &'a str,
    /// The provider member, when known.
    pub provider: &'a str,
    /// The contract asked.
    pub contract: &'a ContractRef,
    /// The purpose, when read.
    pub purpose: &'a str,
    /// The request JWS exactly as sent or received, when there was one.
    pub request_jws: Option<&'a str>,
    /// The query, when read: its personal identifiers become the record's `subject`.
    pub query: Option<&'a Value>,
    /// The answer JWS, when there was one.
    pub response_jws: Option<&'a str>,
    /// `ok` or the problem code.
    pub outcome: &'a str,
    /// Time spent, in microseconds.
    pub latency_us: u64,
}

/// The outcome string of a result: `ok` or the problem's code.
pub(crate) fn outcome_of(problem: Option<&Problem>) -> &str {
    match problem {
        None => "ok",
        Some(p) => p.code().map(ProblemCode::code).unwrap_or("unknown"),
    }
}

/// Writes the record (and the envelopes as evidence) and waits until it is durable.
pub(crate) async fn record(gw: &Gateway, seen: Seen<'_>) -> Result<(), Problem> {
    // The values at the contract's personal-data pointers, never the values themselves,
    // go into the record: only their keyed hash.
    let personal: Vec<Value> = match (seen.query, gw.catalog.get(seen.contract)) {
        (Some(query), Some(contract)) => contract
            .doc()
            .personal_data
            .iter()
            .filter_map(|pointer| pointer_into_query(query, pointer).cloned())
            .collect(),
        // A query to an unknown contract: all of it is treated as personal.
        (Some(query), None) => vec![query.clone()],
        (None, _) => Vec::new(),
    };
    let record = NewRecord {
        exchange_id: seen.exchange_id.to_owned(),
        role: seen.role,
        consumer: seen.consumer.to_owned(),
        provider: seen.provider.to_owned(),
        contract: seen.contract.id.clone(),
        version: seen.contract.version.clone(),
        purpose: seen.purpose.to_owned(),
        request_hash: seen.request_jws.map(|j| sha256_b64url(j.as_bytes())),
        response_hash: seen.response_jws.map(|j| sha256_b64url(j.as_bytes())),
        outcome: seen.outcome.to_owned(),
        latency_us: seen.latency_us,
        subject: gw.audit.subject(&personal),
    };
    let evidence = seen.request_jws.map(|request| StoredEvidence {
        exchange_id: seen.exchange_id.to_owned(),
        request: request.to_owned(),
        response: seen.response_jws.map(str::to_owned),
    });
    gw.audit.append(record, evidence).await.map(|_| ()).map_err(|e| {
        tracing::error!(error = %e, exchange_id = seen.exchange_id, "audit record not durable: the exchange fails closed");
        let mut p = Problem::new(
            ProblemCode::ProviderUnavailable,
            "the audit log cannot be written: no answer is released without its record",
        );
        p.retry_after = Some(1);
        p.with_exchange_id(Some(seen.exchange_id).filter(|id| !id.is_empty()))
    })
}

/// `personal_data` pointers name fields of the query (`/nik`).
fn pointer_into_query<'v>(query: &'v Value, pointer: &str) -> Option<&'v Value> {
    query.pointer(pointer)
}
