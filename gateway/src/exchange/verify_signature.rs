//! `alg` is ES256 or EdDSA, `typ` is `simpul-request+jws`, `kid` names a key of a manifest
//! member, and the signature verifies with that key; only then is the payload read.

use contracts::envelope::REQUEST_TYP;
use contracts::{ExchangeRequest, JwsError, MemberId, ParsedJws, Problem, ProblemCode};

use crate::gateway::Gateway;

pub(super) fn verify_signature(
    gw: &Gateway,
    text: &str,
) -> Result<(ExchangeRequest, MemberId), Problem> {
    let parsed = ParsedJws::parse(text, REQUEST_TYP).map_err(|e| match e {
        JwsError::Malformed(_) => Problem::new(ProblemCode::Malformed, e.to_string()),
        _ => Problem::new(ProblemCode::BadSignature, e.to_string()),
    })?;
    let kid = parsed.header.kid.as_deref().unwrap_or_default();
    let (signer, key) = gw.manifest.key(kid).ok_or_else(|| {
        Problem::new(
            ProblemCode::BadSignature,
            format!("kid `{kid}` names no key of a manifest member"),
        )
    })?;
    key.verify(&parsed)
        .map_err(|e| Problem::new(ProblemCode::BadSignature, e.to_string()))?;
    let request: ExchangeRequest = serde_json::from_slice(&parsed.payload).map_err(|e| {
        Problem::new(
            ProblemCode::Malformed,
            format!("the payload is not an exchange request: {e}"),
        )
    })?;
    if request.v != 1 {
        return Err(Problem::new(
            ProblemCode::Malformed,
            format!("payload version {} is not supported (1)", request.v),
        ));
    }
    if uuid::Uuid::parse_str(&request.id).is_err() {
        return Err(Problem::new(
            ProblemCode::Malformed,
            "the exchange id is not a UUID",
        ));
    }
    Ok((request, signer.clone()))
}
