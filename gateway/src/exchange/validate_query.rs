//! `query` is valid against the contract's request schema; each violation is reported with
//! its JSON pointer from the payload (`/query/nik`).

use contracts::{Contract, ExchangeRequest, Problem, ProblemCode};

pub(super) fn validate_query(
    contract: &Contract,
    request: &ExchangeRequest,
) -> Result<(), Problem> {
    contract
        .check_request(&request.query, "/query")
        .map_err(|errors| {
            let detail = errors
                .iter()
                .map(|e| format!("{}: {}", e.pointer, e.message))
                .collect::<Vec<_>>()
                .join("; ");
            Problem::new(ProblemCode::InvalidQuery, detail).with_errors(errors)
        })
}
