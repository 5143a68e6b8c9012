//! Envelope: every refusal row of PROTOCOL.md §3 up to the replay window, each answered with
//! its exact status and problem `type`. Each case changes one thing in an otherwise valid
//! request, so the only reason to refuse it is the rule under test.

use contracts::canonical::b64url;
use contracts::envelope::{
    ANSWER_TYP, JOSE_MEDIA_TYPE, REQUEST_TYP, TREE_HEAD_HEADER, TREE_HEAD_TYP,
};
use contracts::{Algorithm, ContractRef, ExchangeRequest, ProblemCode, SigningKey};
use hyper::body::Bytes;
use serde_json::{Value, json};

use super::{CaseFailure, CaseResult, Context, expect_problem, failed};
use crate::client::{chunked, full};

/// The primary contract's path.
fn path(cx: &Context) -> ContractRef {
    cx.primary().reference.clone()
}

/// Sends `jws` as the tester and expects the refusal `code`.
async fn refused(cx: &Context, jws: String, code: ProblemCode) -> CaseResult {
    let reply = cx.post_jws(&path(cx), jws).await?;
    Ok(expect_problem(&reply, code)?.1)
}

/// A JWS with the given header and payload and a signature of raw bytes.
fn assemble(header: &Value, payload: &[u8], signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(payload),
        b64url(signature)
    )
}

fn payload_of(request: &ExchangeRequest) -> Result<Vec<u8>, CaseFailure> {
    serde_json::to_vec(request).map_err(|e| failed(format!("cannot encode the request: {e}")))
}

/// Runs each `(label, jws)` and expects `code` for all; the observation of each is kept.
async fn all_refused(
    cx: &Context,
    variants: Vec<(String, String)>,
    code: ProblemCode,
) -> CaseResult {
    let mut seen = Vec::new();
    for (label, jws) in variants {
        let reply = cx.post_jws(&path(cx), jws).await?;
        let (_, line) =
            expect_problem(&reply, code).map_err(|e| failed(format!("{label}: {e}")))?;
        seen.push(format!("{label}: {line}"));
    }
    Ok(seen.join("; "))
}

pub(super) async fn body_too_large(cx: &Context) -> CaseResult {
    // The protocol's 64 KiB holds where a contract does not raise it (PROTOCOL.md §3.1): the
    // first configured contract whose served document keeps it.
    let max = contracts::envelope::MAX_REQUEST_BYTES;
    for c in &cx.config.contracts {
        let document = super::contract::fetch_contract(cx, &c.reference).await?;
        if document.max_request_bytes() <= max {
            let line = oversize_refused(cx, &c.reference, cx.request(c), max).await?;
            return Ok(format!("{}: {line}", c.reference));
        }
    }
    Err(CaseFailure::Skipped(format!(
        "every configured contract raises the body limit past {max} bytes: configure one that keeps it"
    )))
}

/// Sends `request` (a genuine, correctly signed request, valid but for its size) padded so
/// that its body exceeds `limit` bytes, once with `Content-Length` and once chunked (where
/// the server must count, not trust), and expects 413 `payload-too-large` for both.
pub(super) async fn oversize_refused(
    cx: &Context,
    path: &ContractRef,
    mut request: ExchangeRequest,
    limit: usize,
) -> CaseResult {
    // The padding alone is longer than the limit; base64url makes the body longer still.
    let padding = Value::String("x".repeat(limit + 2 * 1024));
    if let Value::Object(q) = &mut request.query {
        q.insert("padding".into(), padding);
    } else {
        request.query = json!({ "padding": padding });
    }
    let jws = cx.sign(&cx.config.tester, &request)?;
    let declared = cx
        .post(
            cx.tester_tls(),
            path,
            Some(JOSE_MEDIA_TYPE),
            full(jws.clone()),
        )
        .await?;
    let (_, with_length) = expect_problem(&declared, ProblemCode::PayloadTooLarge)
        .map_err(|e| failed(format!("with Content-Length: {e}")))?;
    let bytes = Bytes::from(jws);
    let parts = bytes.chunks(8 * 1024).map(Bytes::copy_from_slice).collect();
    let streamed = cx
        .post(cx.tester_tls(), path, Some(JOSE_MEDIA_TYPE), chunked(parts))
        .await?;
    let (_, with_chunks) = expect_problem(&streamed, ProblemCode::PayloadTooLarge)
        .map_err(|e| failed(format!("chunked: {e}")))?;
    Ok(format!(
        "{} bytes with Content-Length: {with_length}; chunked: {with_chunks}",
        bytes.len()
    ))
}

pub(super) async fn not_a_jws(cx: &Context) -> CaseResult {
    let variants = ["", "not a jws", "a.b", "e30.e30.e30.e30", "!!!.e30.sig"]
        .into_iter()
        .map(|b| (format!("{b:?}"), b.to_owned()))
        .collect();
    all_refused(cx, variants, ProblemCode::Malformed).await
}

pub(super) async fn wrong_media_type(cx: &Context) -> CaseResult {
    let mut seen = Vec::new();
    for content_type in [Some("application/json"), Some("text/plain"), None] {
        let request = cx.request(cx.primary());
        let jws = cx.sign(&cx.config.tester, &request)?;
        let reply = cx
            .post(cx.tester_tls(), &path(cx), content_type, full(jws))
            .await?;
        let label = content_type.unwrap_or("no Content-Type");
        let (_, line) = expect_problem(&reply, ProblemCode::UnsupportedMediaType)
            .map_err(|e| failed(format!("{label}: {e}")))?;
        seen.push(format!("{label}: {line}"));
    }
    Ok(seen.join("; "))
}

pub(super) async fn alg_none(cx: &Context) -> CaseResult {
    let request = cx.request(cx.primary());
    let header = json!({"alg": "none", "kid": cx.config.tester.signing.kid(), "typ": REQUEST_TYP});
    let jws = assemble(&header, &payload_of(&request)?, b"");
    refused(cx, jws, ProblemCode::BadSignature).await
}

pub(super) async fn alg_hmac(cx: &Context) -> CaseResult {
    // The classic key-confusion attack: an HMAC keyed with the sender's public key, which
    // anyone can read from the manifest.
    let secret = cx.config.tester.signing.public_jwk().to_string();
    let mut variants = Vec::new();
    for (alg, hmac) in [
        ("HS256", aws_lc_rs::hmac::HMAC_SHA256),
        ("HS384", aws_lc_rs::hmac::HMAC_SHA384),
        ("HS512", aws_lc_rs::hmac::HMAC_SHA512),
    ] {
        let request = cx.request(cx.primary());
        let header = json!({"alg": alg, "kid": cx.config.tester.signing.kid(), "typ": REQUEST_TYP});
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(&payload_of(&request)?)
        );
        let key = aws_lc_rs::hmac::Key::new(hmac, secret.as_bytes());
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        variants.push((alg.to_owned(), format!("{input}.{}", b64url(tag.as_ref()))));
    }
    all_refused(cx, variants, ProblemCode::BadSignature).await
}

pub(super) async fn wrong_typ(cx: &Context) -> CaseResult {
    let request = cx.request(cx.primary());
    let payload = payload_of(&request)?;
    let signing = &cx.config.tester.signing;
    let as_answer = signing
        .sign(ANSWER_TYP, &payload)
        .map_err(|e| failed(e.to_string()))?;
    let as_jwt = signing
        .sign("JWT", &payload)
        .map_err(|e| failed(e.to_string()))?;
    all_refused(
        cx,
        vec![
            (format!("typ {ANSWER_TYP}"), as_answer),
            ("typ JWT".to_owned(), as_jwt),
        ],
        ProblemCode::BadSignature,
    )
    .await
}

pub(super) async fn unknown_kid(cx: &Context) -> CaseResult {
    // A key of the right member and algorithm that the manifest has never heard of.
    let stranger = SigningKey::generate(Algorithm::ES256, cx.config.tester.member.as_str())
        .map_err(|e| failed(e.to_string()))?;
    let request = cx.request(cx.primary());
    let jws = stranger
        .sign(REQUEST_TYP, &payload_of(&request)?)
        .map_err(|e| failed(e.to_string()))?;
    refused(cx, jws, ProblemCode::BadSignature).await
}

pub(super) async fn tampered_payload(cx: &Context) -> CaseResult {
    let request = cx.request(cx.primary());
    let jws = cx.sign(&cx.config.tester, &request)?;
    let mut changed = request.clone();
    changed.exp = request.exp - 1;
    let parts: Vec<&str> = jws.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts.first().copied().unwrap_or_default(),
        b64url(&payload_of(&changed)?),
        parts.get(2).copied().unwrap_or_default()
    );
    refused(cx, forged, ProblemCode::BadSignature).await
}

pub(super) async fn foreign_signature_own_kid(cx: &Context) -> CaseResult {
    let (second, _) = cx.second()?;
    let request = cx.request(cx.primary());
    let by_second = cx.sign(second, &request)?;
    // The second member's (valid) signature, relabelled with the tester's kid.
    let header = json!({"alg": second.signing.alg().as_str(), "kid": cx.config.tester.signing.kid(), "typ": REQUEST_TYP});
    let parts: Vec<&str> = by_second.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        parts.get(1).copied().unwrap_or_default(),
        parts.get(2).copied().unwrap_or_default()
    );
    refused(cx, forged, ProblemCode::BadSignature).await
}

pub(super) async fn foreign_key(cx: &Context) -> CaseResult {
    // iss and the certificate say the tester; the signature is the second member's own,
    // valid under its own kid.
    let (second, _) = cx.second()?;
    let request = cx.request(cx.primary());
    let jws = cx.sign(second, &request)?;
    refused(cx, jws, ProblemCode::IdentityMismatch).await
}

pub(super) async fn iss_certificate_mismatch(cx: &Context) -> CaseResult {
    let (second, second_tls) = cx.second()?;
    let primary = cx.primary();
    // A purpose the second member is granted, so that nothing but the identity is wrong.
    let purpose = cx
        .config
        .manifest
        .contract(&primary.reference)
        .and_then(|c| cx.config.manifest.grant(c, &second.member))
        .and_then(|p| p.first().cloned())
        .unwrap_or_else(|| primary.purpose.clone());
    let theirs = cx.request_from(&second.member, primary, &purpose);
    let jws = cx.sign(second, &theirs)?;
    let reply = cx
        .post(cx.tester_tls(), &path(cx), Some(JOSE_MEDIA_TYPE), full(jws))
        .await?;
    let (_, a) = expect_problem(&reply, ProblemCode::IdentityMismatch).map_err(|e| {
        failed(format!(
            "the second member's request over the tester's certificate: {e}"
        ))
    })?;
    let ours = cx.request(primary);
    let jws = cx.sign(&cx.config.tester, &ours)?;
    let reply = cx
        .post(second_tls, &path(cx), Some(JOSE_MEDIA_TYPE), full(jws))
        .await?;
    let (_, b) = expect_problem(&reply, ProblemCode::IdentityMismatch).map_err(|e| {
        failed(format!(
            "the tester's request over the second member's certificate: {e}"
        ))
    })?;
    Ok(format!(
        "their request, our certificate: {a}; ours, theirs: {b}"
    ))
}

pub(super) async fn wrong_audience(cx: &Context) -> CaseResult {
    let target = &cx.config.target.member;
    let other = cx
        .config
        .manifest
        .doc()
        .members
        .iter()
        .map(|m| &m.id)
        .find(|m| *m != target)
        .cloned()
        .ok_or_else(|| CaseFailure::Skipped("the manifest lists no other member".into()))?;
    let mut request = cx.request(cx.primary());
    request.aud = other;
    let jws = cx.sign(&cx.config.tester, &request)?;
    refused(cx, jws, ProblemCode::WrongAudience).await
}

pub(super) async fn path_mismatch(cx: &Context) -> CaseResult {
    let primary = &cx.primary().reference;
    // Another contract from the manifest for the path (one the target provides, if any, so
    // a router cannot answer 404 first), and the right id with another version.
    let manifest = &cx.config.manifest;
    let other = manifest
        .provided_by(&cx.config.target.member)
        .chain(manifest.doc().contracts.iter())
        .map(|c| ContractRef::new(&c.id, &c.version))
        .find(|r| r.id != primary.id)
        .unwrap_or_else(|| ContractRef::new("conformance.other", "1"));
    let other_version = ContractRef::new(&primary.id, format!("{}9", primary.version));
    let mut seen = Vec::new();
    for wrong in [other, other_version] {
        let request = cx.request(cx.primary());
        let jws = cx.sign(&cx.config.tester, &request)?;
        let reply = cx.post_jws(&wrong, jws).await?;
        let (_, line) = expect_problem(&reply, ProblemCode::Malformed)
            .map_err(|e| failed(format!("path {wrong}: {e}")))?;
        seen.push(format!("path {wrong}: {line}"));
    }
    Ok(seen.join("; "))
}

pub(super) async fn not_a_request(cx: &Context) -> CaseResult {
    let mut variants = Vec::new();
    // (what is wrong, the field, its new value or None to remove it)
    for (label, field, value) in [
        ("an unknown field", "admin", Some(json!(true))),
        ("v 2", "v", Some(json!(2))),
        ("an id that is not a UUID", "id", Some(json!("not-a-uuid"))),
        ("no iat", "iat", None),
    ] {
        let request = cx.request(cx.primary());
        let mut payload = serde_json::to_value(&request)
            .map_err(|e| failed(format!("cannot encode the request: {e}")))?;
        if let Value::Object(map) = &mut payload {
            match value {
                Some(v) => map.insert(field.to_owned(), v),
                None => map.remove(field),
            };
        }
        variants.push((label.to_owned(), cx.sign(&cx.config.tester, &payload)?));
    }
    all_refused(cx, variants, ProblemCode::Malformed).await
}

/// A request with `iat` and `exp` moved relative to now, expected to be refused as stale.
async fn stale(cx: &Context, iat: i64, exp: i64) -> CaseResult {
    let mut request = cx.request(cx.primary());
    let now = contracts::unix_now();
    request.iat = now + iat;
    request.exp = now + exp;
    let jws = cx.sign(&cx.config.tester, &request)?;
    refused(cx, jws, ProblemCode::Stale).await
}

pub(super) async fn iat_too_old(cx: &Context) -> CaseResult {
    stale(cx, -120, 60).await
}

pub(super) async fn iat_in_future(cx: &Context) -> CaseResult {
    stale(cx, 120, 180).await
}

pub(super) async fn expired(cx: &Context) -> CaseResult {
    stale(cx, -30, -1).await
}

pub(super) async fn validity_too_long(cx: &Context) -> CaseResult {
    stale(cx, 0, 301).await
}

pub(super) async fn replay(cx: &Context) -> CaseResult {
    let primary = cx.primary();
    let request = cx.request(primary);
    let (jws, first) = cx.send(&request).await?;
    if first.status.as_u16() != 200 {
        return Err(failed(format!(
            "the first sending of a valid request was not answered 200 but {}: {}",
            first.summary(),
            first.body_excerpt()
        )));
    }
    // The very same bytes again.
    let again = cx.post_jws(&primary.reference, jws).await?;
    let (_, same) = expect_problem(&again, ProblemCode::Replay)
        .map_err(|e| failed(format!("the same JWS sent twice: {e}")))?;
    // The same exchange id, freshly signed with a later iat: still the same exchange.
    let mut resigned = request.clone();
    resigned.iat += 1;
    resigned.exp += 1;
    let jws = cx.sign(&cx.config.tester, &resigned)?;
    let reply = cx.post_jws(&primary.reference, jws).await?;
    let (_, fresh) = expect_problem(&reply, ProblemCode::Replay)
        .map_err(|e| failed(format!("the same id signed anew: {e}")))?;
    Ok(format!("same bytes: {same}; same id re-signed: {fresh}"))
}

pub(super) async fn bad_tree_head(cx: &Context) -> CaseResult {
    // Signed with the tester's own key, but naming the target's log: the origin is wrong.
    let head = json!({
        "log": "exchanges",
        "member": cx.config.target.member,
        "root_hash": b64url(&[0u8; 32]),
        "timestamp": 0,
        "tree_size": 0,
    });
    let bytes = contracts::canonical::canonical_json(&head)
        .map_err(|e| failed(format!("cannot encode a tree head: {e}")))?;
    let foreign = cx
        .config
        .tester
        .signing
        .sign(TREE_HEAD_TYP, &bytes)
        .map_err(|e| failed(format!("cannot sign a tree head: {e}")))?;
    let mut seen = Vec::new();
    for (label, value) in [
        ("a head naming another member's log", foreign.as_str()),
        ("text that is no JWS", "not-a-tree-head"),
    ] {
        let request = cx.request(cx.primary());
        let jws = cx.sign(&cx.config.tester, &request)?;
        let reply = cx
            .post_jws_with(&path(cx), &[(TREE_HEAD_HEADER, value)], jws)
            .await?;
        let (_, line) = expect_problem(&reply, ProblemCode::BadTreeHead)
            .map_err(|e| failed(format!("{label}: {e}")))?;
        seen.push(format!("{label}: {line}"));
    }
    Ok(seen.join("; "))
}

/// The request's JSON text with `query` written as `query_text`, signed by the tester: for
/// payloads a JSON serialiser would never write (a member name twice, a number no double
/// holds).
fn sign_with_query_text(
    cx: &Context,
    request: &ExchangeRequest,
    query_text: &str,
) -> Result<String, CaseFailure> {
    const MARK: &str = "\"conformance-query-placeholder\"";
    let mut placeholder = request.clone();
    placeholder.query = Value::String(MARK.trim_matches('"').to_owned());
    let text = String::from_utf8(payload_of(&placeholder)?)
        .map_err(|e| failed(format!("cannot encode the request: {e}")))?
        .replacen(MARK, query_text, 1);
    cx.config
        .tester
        .signing
        .sign(REQUEST_TYP, text.as_bytes())
        .map_err(|e| failed(format!("cannot sign the request: {e}")))
}

/// The query as JSON text with its first member written twice, with the same value (so a
/// reader that keeps either copy sees a valid query); a query that is not an object becomes
/// `{"q": <query>, "q": <query>}`.
fn query_with_a_repeated_member(query: &Value) -> String {
    let (name, value) = match query.as_object().and_then(|m| m.iter().next()) {
        Some((name, value)) => (name.clone(), value.clone()),
        None => ("q".to_owned(), query.clone()),
    };
    let first = format!("{}:{value}", Value::String(name));
    match query.as_object() {
        Some(members) if !members.is_empty() => {
            let text = query.to_string();
            format!("{{{first},{}", &text[1..])
        }
        _ => format!("{{{first},{first}}}"),
    }
}

pub(super) async fn repeated_member_name(cx: &Context) -> CaseResult {
    let request = cx.request(cx.primary());
    let in_query =
        sign_with_query_text(cx, &request, &query_with_a_repeated_member(&request.query))?;
    // In the payload itself: `aud` twice, the second naming the target.
    let mut other = cx.request(cx.primary());
    other.query = Value::Null;
    let in_payload = sign_with_query_text(
        cx,
        &other,
        &format!(
            "null,\"aud\":{}",
            Value::String(cx.config.target.member.to_string())
        ),
    )?;
    // In the protected header: `typ` twice. Row 7, before any key is used, so the signature
    // is not even looked at.
    let header_text = format!(
        r#"{{"alg":"ES256","kid":{},"typ":"{REQUEST_TYP}","typ":"{REQUEST_TYP}"}}"#,
        Value::String(cx.config.tester.signing.kid().to_owned())
    );
    let in_header = format!(
        "{}.{}.{}",
        b64url(header_text.as_bytes()),
        b64url(&payload_of(&cx.request(cx.primary()))?),
        b64url(&[0u8; 64])
    );
    let variants = vec![
        ("a query member named twice".to_owned(), in_query),
        ("`aud` named twice in the payload".to_owned(), in_payload),
        ("`typ` named twice in the header".to_owned(), in_header),
    ];
    all_refused(cx, variants, ProblemCode::Malformed).await
}

pub(super) async fn number_beyond_i_json(cx: &Context) -> CaseResult {
    let mut variants = Vec::new();
    for number in [
        "9007199254740992",
        "-9007199254740993",
        "12345678901234567890",
        "0.10000000000000001",
    ] {
        let request = cx.request(cx.primary());
        let query = match request.query.as_object() {
            Some(members) if !members.is_empty() => {
                let text = request.query.to_string();
                format!("{{\"n\":{number},{}", &text[1..])
            }
            _ => format!("[{number}]"),
        };
        variants.push((
            format!("the number {number} in the query"),
            sign_with_query_text(cx, &request, &query)?,
        ));
    }
    all_refused(cx, variants, ProblemCode::Malformed).await
}
