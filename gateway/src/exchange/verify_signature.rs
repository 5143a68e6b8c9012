//! `alg` is ES256 or EdDSA, `typ` is `simpul-request+jws`, `kid` names a key of a manifest
//! member, the signature verifies with that key, and the payload's `iat` is inside the
//! key's window (row 12a); only then is the payload read.

use contracts::envelope::REQUEST_TYP;
use contracts::json::JsonError;
use contracts::{ExchangeId, ExchangeRequest, JwsError, Manifest, MemberId, ParsedJws};

use super::refusal::Refusal;

/// The payload bytes, verified, and the member whose key signed them.
pub(super) fn verify_signature(
    manifest: &Manifest,
    text: &str,
) -> Result<(Vec<u8>, MemberId), Refusal> {
    let parsed = ParsedJws::parse(text, REQUEST_TYP).map_err(|e| match e {
        JwsError::Malformed(_) => Refusal::MalformedJws(e.to_string()),
        _ => Refusal::BadSignature(e.to_string()),
    })?;
    let kid = parsed.header.kid.as_deref().unwrap_or_default();
    let (signer, key) = manifest.key(kid).ok_or_else(|| Refusal::UnknownKey {
        kid: kid.to_owned(),
    })?;
    key.verify(&parsed)
        .map_err(|e| Refusal::BadSignature(e.to_string()))?;
    // Only a key with a window costs a reading of `iat` here; a payload without an integer
    // `iat` is no request, which row 13 refuses.
    if manifest.key_window(kid).is_some_and(|w| !w.is_open())
        && let Some(iat) = contracts::envelope::signed_at(&parsed.payload)
    {
        manifest
            .key_at(kid, iat)
            .map_err(|e| Refusal::BadSignature(e.to_string()))?;
    }
    Ok((parsed.payload, signer.clone()))
}

/// The payload, unverified: only for a `faults` build with the signature check switched
/// off, where the rule list calls it instead of [`verify_signature`].
pub(super) fn unverified_payload(text: &str) -> Result<Vec<u8>, Refusal> {
    text.split('.')
        .nth(1)
        .and_then(contracts::canonical::b64url_decode)
        .ok_or_else(|| Refusal::MalformedJws("not a compact JWS".into()))
}

/// Reads the exchange request out of a payload as strict JSON (rows 13–13b: no member name
/// twice, I-JSON numbers): version 1, its id spelled the one way the protocol allows (the
/// replay window and both sides' logs compare ids as given).
pub(super) fn read_request(payload: &[u8]) -> Result<(ExchangeRequest, ExchangeId), Refusal> {
    let request: ExchangeRequest = contracts::json::from_slice(payload).map_err(|e| match e {
        JsonError::DuplicateName(_) | JsonError::Number(_) => Refusal::NotStrictJson(e),
        _ => Refusal::NotARequest(e.to_string()),
    })?;
    checked_request(request)
}

/// [`read_request`] as serde_json reads JSON, the last of repeated names winning and big
/// numbers rounded: only for a `faults` build with the strict reading switched off.
pub(super) fn read_request_leniently(
    payload: &[u8],
) -> Result<(ExchangeRequest, ExchangeId), Refusal> {
    checked_request(
        serde_json::from_slice(payload).map_err(|e| Refusal::NotARequest(e.to_string()))?,
    )
}

fn checked_request(request: ExchangeRequest) -> Result<(ExchangeRequest, ExchangeId), Refusal> {
    if request.v != 1 {
        return Err(Refusal::UnsupportedVersion(request.v));
    }
    let id = ExchangeId::parse(&request.id).map_err(|_| Refusal::NonCanonicalId)?;
    Ok((request, id))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    fn signed(key: &SigningKey, payload: &serde_json::Value) -> String {
        key.sign(REQUEST_TYP, &serde_json::to_vec(payload).unwrap())
            .unwrap()
    }

    use contracts::SigningKey;

    #[test]
    fn a_request_signed_by_a_manifest_key_verifies_and_names_its_signer() {
        let kemlu = key(KEMLU);
        let text = signed(&kemlu, &serde_json::to_value(request()).unwrap());
        let (payload, signer) = verify_signature(&manifest(&[&kemlu]), &text).unwrap();
        assert_eq!(signer, id(KEMLU));
        assert_eq!(read_request(&payload).unwrap().0, request());
    }

    #[test]
    fn a_key_the_manifest_does_not_list_is_refused() {
        let stranger = key(KEMLU);
        let text = signed(&stranger, &serde_json::to_value(request()).unwrap());
        let listed = key(KEMLU);
        assert!(matches!(
            verify_signature(&manifest(&[&listed]), &text),
            Err(Refusal::UnknownKey { .. })
        ));
    }

    #[test]
    fn a_key_outside_its_window_at_the_requests_iat_is_refused() {
        let kemlu = key(KEMLU);
        let mut m = manifest(&[&kemlu]).doc().clone();
        m.v = 2;
        let iat = request().iat;
        for (window, ok) in [
            ((None, Some(iat)), false),
            ((Some(iat + 1), None), false),
            ((Some(iat), Some(iat + 1)), true),
        ] {
            let mut doc = m.clone();
            contracts::KeyWindow {
                not_before: window.0,
                not_after: window.1,
            }
            .set_in(
                &mut doc
                    .members
                    .iter_mut()
                    .find(|x| x.id == id(KEMLU))
                    .unwrap()
                    .keys[0],
            );
            let text = signed(&kemlu, &serde_json::to_value(request()).unwrap());
            match verify_signature(&resigned(&doc), &text) {
                Ok(_) => assert!(ok, "{window:?}"),
                Err(Refusal::BadSignature(why)) => {
                    assert!(!ok, "{window:?}");
                    assert!(
                        why.contains(&format!("not at {}", contracts::utc(iat))),
                        "{why}"
                    );
                }
                Err(other) => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let kemlu = key(KEMLU);
        let text = signed(&kemlu, &serde_json::to_value(request()).unwrap());
        let other = signed(&kemlu, &serde_json::json!({"tampered": true}));
        let mut parts: Vec<&str> = text.split('.').collect();
        parts[1] = other.split('.').nth(1).unwrap();
        assert!(matches!(
            verify_signature(&manifest(&[&kemlu]), &parts.join(".")),
            Err(Refusal::BadSignature(_))
        ));
    }

    #[test]
    fn a_body_that_is_no_jws_is_malformed() {
        assert!(matches!(
            verify_signature(&manifest(&[]), "not a jws"),
            Err(Refusal::MalformedJws(_))
        ));
    }

    #[test]
    fn a_payload_must_be_a_version_1_request_with_a_canonical_id() {
        let bytes = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
        let mut v = serde_json::to_value(request()).unwrap();
        v["v"] = 2.into();
        assert!(matches!(
            read_request(&bytes(v)),
            Err(Refusal::UnsupportedVersion(2))
        ));
        let mut v = serde_json::to_value(request()).unwrap();
        v["id"] = "7B0E5B4E-3F0A-4C55-9D43-2F7C1B1A0E01".into();
        assert!(matches!(
            read_request(&bytes(v)),
            Err(Refusal::NonCanonicalId)
        ));
        assert!(matches!(read_request(b"[1]"), Err(Refusal::NotARequest(_))));
    }

    #[test]
    fn a_payload_naming_a_member_twice_or_with_a_big_number_is_not_a_request() {
        let text = serde_json::to_string(&request()).unwrap();
        let twice = text.replacen('{', r#"{"aud": "ID:GOV:BP2MI", "#, 1);
        match read_request(twice.as_bytes()) {
            Err(Refusal::NotStrictJson(JsonError::DuplicateName(name))) => assert_eq!(name, "aud"),
            other => panic!("{other:?}"),
        }
        // Inside the query too, where serde would otherwise keep the last value.
        let nested = text.replacen(r#""nik":"#, r#""nik":"5111371406750199","nik":"#, 1);
        assert!(matches!(
            read_request(nested.as_bytes()),
            Err(Refusal::NotStrictJson(JsonError::DuplicateName(_)))
        ));
        assert!(read_request_leniently(nested.as_bytes()).is_ok());
        let mut big = serde_json::to_value(request()).unwrap();
        big["query"] = serde_json::json!({"nik": "3171010101900001", "n": 1});
        let big = serde_json::to_string(&big)
            .unwrap()
            .replace(r#""n":1"#, r#""n":9007199254740993"#);
        match read_request(big.as_bytes()) {
            Err(Refusal::NotStrictJson(JsonError::Number(n))) => assert_eq!(n, "9007199254740993"),
            other => panic!("{other:?}"),
        }
    }
}
