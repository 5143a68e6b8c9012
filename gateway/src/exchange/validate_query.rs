//! The query is valid against the contract's request schema (400 `invalid-query`, naming
//! the violations but never the values); a statistics question, also one the contract's
//! list of dimensions allows, read once here.

use contracts::statistics::StatisticsQuery;
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

/// The statistics question of a statistics contract's query (`None` for any other
/// contract): every dimension named or filtered on is one of the contract's, named once —
/// what the request schema should say, checked whatever it says.
pub(super) fn read_statistics(
    contract: &Contract,
    request: &ExchangeRequest,
) -> Result<Option<StatisticsQuery>, Refusal> {
    let Some(stats) = contract.statistics() else {
        return Ok(None);
    };
    StatisticsQuery::parse(&request.query, stats)
        .map(Some)
        .map_err(Refusal::from)
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

#[cfg(test)]
mod statistics_tests {
    use super::super::fixtures::*;
    use super::*;
    use contracts::ContractDoc;
    use serde_json::json;

    /// A statistics contract whose request schema lets any object through: row 31a still
    /// holds the question to the contract's dimensions.
    fn loose() -> Contract {
        let doc: ContractDoc = serde_json::from_value(json!({
            "id": "placement.counts", "version": "1", "provider": BP2MI,
            "title": "t", "description": "d",
            "request": {"type": "object"}, "response": {"type": "object"},
            "purposes": ["statistics"], "cache": null, "personal_data": [],
            "statistics": {"dimensions": ["country", "sex"]}
        }))
        .unwrap();
        Contract::new(doc).unwrap()
    }

    fn pointer(query: serde_json::Value) -> String {
        match read_statistics(&loose(), &request_with(json!({"query": query}))) {
            Err(Refusal::InvalidQuery(errors)) => errors[0].pointer.clone(),
            other => panic!("expected invalid-query, got {other:?}"),
        }
    }

    #[test]
    fn a_statistics_question_names_only_the_contracts_dimensions_whatever_the_schema_allows() {
        let ok =
            request_with(json!({"query": {"dimensions": ["sex"], "filters": {"country": ["MY"]}}}));
        let question = read_statistics(&loose(), &ok).unwrap().unwrap();
        assert_eq!(question.dimensions, ["sex"]);
        assert_eq!(
            pointer(json!({"dimensions": ["religion"]})),
            "/query/dimensions/0"
        );
        assert_eq!(
            pointer(json!({"dimensions": ["sex"], "filters": {"name": ["x"]}})),
            "/query/filters/name"
        );
        assert_eq!(pointer(json!({"nik": "3171011701900001"})), "/query/nik");
        // Any other contract has no statistics question.
        assert!(read_statistics(&contract(), &request()).unwrap().is_none());
    }
}
