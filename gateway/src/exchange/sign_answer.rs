//! The answer is signed by the provider's member key and bound to the exact request bytes.

use contracts::canonical::sha256_b64url;
use contracts::envelope::ANSWER_TYP;
use contracts::{ExchangeAnswer, ExchangeRequest, Problem, ProblemCode};
use serde_json::Value;

use crate::gateway::Gateway;

pub(super) fn sign_answer(
    gw: &Gateway,
    request: &ExchangeRequest,
    request_jws: &str,
    result: &Value,
) -> Result<String, Problem> {
    let answer = ExchangeAnswer {
        v: 1,
        id: request.id.clone(),
        iss: gw.member.clone(),
        aud: request.iss.clone(),
        contract: request.contract.clone(),
        version: request.version.clone(),
        request_hash: sha256_b64url(request_jws.as_bytes()),
        iat: contracts::unix_now(),
        result: result.clone(),
    };
    let payload = serde_json::to_vec(&answer).map_err(|e| {
        Problem::new(
            ProblemCode::Internal,
            format!("cannot encode the answer: {e}"),
        )
    })?;
    gw.signing.sign(ANSWER_TYP, &payload).map_err(|e| {
        Problem::new(
            ProblemCode::Internal,
            format!("cannot sign the answer: {e}"),
        )
    })
}
