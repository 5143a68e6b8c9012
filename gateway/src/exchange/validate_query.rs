//! The query is valid against the contract's request schema (400 `invalid-query`, naming
//! the violations but never the values).

use contracts::{Contract, ExchangeRequest};

use super::refusal::Refusal;

pub(super) fn validate_query(
    contract: &Contract,
    request: &ExchangeRequest,
) -> Result<(), Refusal> {
    contract
        .check_request(&request.query, "/query")
        .map_err(Refusal::InvalidQuery)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn a_query_outside_the_request_schema_is_refused_with_its_violations() {
        assert!(validate_query(&contract(), &request()).is_ok());
        let r = request_with(json!({"query": {"nik": "12"}}));
        match validate_query(&contract(), &r) {
            Err(Refusal::InvalidQuery(errors)) => {
                assert!(!errors.is_empty());
                // The violation names the field, never the value.
                assert!(errors.iter().all(|e| !e.message.contains("\"12\"")));
            }
            other => panic!("{other:?}"),
        }
    }
}
