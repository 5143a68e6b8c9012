//! `alg` is ES256 or EdDSA, `typ` is `simpul-request+jws`, `kid` names a key of a manifest
//! member, and the signature verifies with that key; only then is the payload read.

use contracts::envelope::REQUEST_TYP;
use contracts::{ExchangeRequest, JwsError, MemberId, ParsedJws, Problem, ProblemCode};

use crate::fault::{Check, off};
use crate::gateway::Gateway;

/// The payload bytes and the member whose key signed them.
fn signed_payload(gw: &Gateway, text: &str) -> Result<(Vec<u8>, Option<MemberId>), Problem> {
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
    Ok((parsed.payload, Some(signer.clone())))
}

/// With the signature check switched off (faults builds only): the payload, unverified.
fn unverified_payload(text: &str) -> Option<(Vec<u8>, Option<MemberId>)> {
    let payload = text.split('.').nth(1)?;
    Some((contracts::canonical::b64url_decode(payload)?, None))
}

pub(super) fn verify_signature(
    gw: &Gateway,
    text: &str,
) -> Result<(ExchangeRequest, MemberId), Problem> {
    let (payload, signer) = match signed_payload(gw, text) {
        Ok(signed) => signed,
        Err(p) if p.code() == Some(ProblemCode::BadSignature) && off(Check::Signature) => {
            unverified_payload(text).ok_or(p)?
        }
        Err(p) => return Err(p),
    };
    let request: ExchangeRequest = serde_json::from_slice(&payload).map_err(|e| {
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
    // One spelling per id: the replay window and both sides' logs compare ids as given.
    let canonical = uuid::Uuid::parse_str(&request.id).map(|u| u.hyphenated().to_string());
    if canonical.as_deref() != Ok(request.id.as_str()) {
        return Err(Problem::new(
            ProblemCode::Malformed,
            "the exchange id is not a UUID in lower-case hyphenated form",
        ));
    }
    let signer = signer.unwrap_or_else(|| request.iss.clone());
    Ok((request, signer))
}
