//! The adapter's answer is valid against the contract's response schema and holds only I-JSON
//! numbers: a provider never signs an answer its own contract does not allow, or one a
//! consumer would refuse, and never caches one.

use contracts::Contract;
use serde_json::Value;

use super::refusal::Refusal;

pub(super) fn check_answer(contract: &Contract, result: &Value) -> Result<(), Refusal> {
    contracts::json::check_numbers(result).map_err(|e| {
        tracing::warn!(error = %e, "adapter answer holds a number outside I-JSON");
        Refusal::AnswerNotIJson
    })?;
    contract
        .check_response(result, "/result")
        .map_err(|errors| {
            tracing::warn!(?errors, "adapter answer violates the response schema");
            Refusal::AnswerViolatesSchema
        })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn an_answer_outside_the_response_schema_is_never_signed() {
        let good = json!({"registered": true, "citizenship": "WNI", "deceased": false});
        assert!(check_answer(&contract(), &good).is_ok());
        assert!(matches!(
            check_answer(&contract(), &json!({"registered": "maybe"})),
            Err(Refusal::AnswerViolatesSchema)
        ));
    }

    #[test]
    fn an_answer_with_a_number_beyond_2_pow_53_is_never_signed() {
        let big = json!({"registered": true, "citizenship": "WNI", "deceased": false, "n": 9007199254740992_u64});
        assert!(matches!(
            check_answer(&contract(), &big),
            Err(Refusal::AnswerNotIJson)
        ));
    }
}
