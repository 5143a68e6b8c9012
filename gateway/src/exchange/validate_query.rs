//! `query` is valid against the contract's request schema; each violation is reported with
//! its JSON pointer from the payload (`/query/nik`).

use contracts::{Contract, ExchangeRequest, Problem};

pub(super) fn validate_query(
    contract: &Contract,
    request: &ExchangeRequest,
) -> Result<(), Problem> {
    contract
        .check_request(&request.query, "/query")
        .map_err(Problem::invalid_query)
}
