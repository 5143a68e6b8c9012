//! The answer is signed by the provider's member key and bound to the exact request bytes.

use contracts::canonical::sha256_b64url;
use contracts::envelope::ANSWER_TYP;
use contracts::envelope::AnswerPayload;
use contracts::{ExchangeRequest, MemberId, SigningKey};
use serde_json::Value;

use super::refusal::Refusal;

pub(super) fn sign_answer(
    key: &SigningKey,
    me: &MemberId,
    request: &ExchangeRequest,
    request_jws: &str,
    result: &Value,
    now: i64,
) -> Result<String, Refusal> {
    let request_hash = sha256_b64url(request_jws.as_bytes());
    let answer = AnswerPayload {
        v: 1,
        id: &request.id,
        iss: me,
        aud: &request.iss,
        contract: &request.contract,
        version: &request.version,
        request_hash: &request_hash,
        iat: now,
        result,
    };
    let payload = serde_json::to_vec(&answer)
        .map_err(|e| Refusal::CannotSign(format!("cannot encode the answer: {e}")))?;
    key.sign(ANSWER_TYP, &payload)
        .map_err(|e| Refusal::CannotSign(format!("cannot sign the answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use contracts::{ExchangeAnswer, ParsedJws};
    use serde_json::json;

    #[test]
    fn the_answer_is_signed_for_the_consumer_and_bound_to_the_request_bytes() {
        let dukcapil = key(DUKCAPIL);
        let result = json!({"registered": true});
        let jws = sign_answer(
            &dukcapil,
            &id(DUKCAPIL),
            &request(),
            "req.jws",
            &result,
            NOW,
        )
        .unwrap();
        let parsed = ParsedJws::parse(&jws, ANSWER_TYP).unwrap();
        dukcapil.verifying_key().unwrap().verify(&parsed).unwrap();
        let answer: ExchangeAnswer = serde_json::from_slice(&parsed.payload).unwrap();
        assert_eq!(answer.request_hash, sha256_b64url(b"req.jws"));
        assert_eq!((answer.iss, answer.aud), (id(DUKCAPIL), id(KEMLU)));
        assert_eq!((answer.id, answer.iat), (request().id, NOW));
        assert_eq!(answer.result, result);
    }
}
