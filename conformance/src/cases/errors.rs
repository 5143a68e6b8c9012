//! Errors: every refusal is an RFC 9457 problem document a program can act on — its `type`
//! from the protocol's list, a `status` equal to the HTTP one, a `title` and a `detail`, and
//! the `exchange_id` once the gateway has read one.

use contracts::ProblemCode;
use contracts::envelope::JOSE_MEDIA_TYPE;
use hyper::Method;
use serde_json::Value;

use super::{CaseResult, Context, expect_problem, failed, problem_shape};
use crate::client::{self, full};

pub(super) async fn problem_fields(cx: &Context) -> CaseResult {
    // One refusal from each stage: before the envelope is read, at the signature, at the
    // manifest's grants.
    let path = &cx.primary().reference;
    let mut seen = Vec::new();
    let malformed = cx
        .post(cx.tester_tls(), path, Some(JOSE_MEDIA_TYPE), full("x"))
        .await?;
    seen.push(judge("a malformed body", &malformed)?);
    let mut request = cx.request(cx.primary());
    request.iat -= 3600;
    request.exp = request.iat + 60;
    let (_, stale) = cx.send(&request).await?;
    seen.push(judge("a stale request", &stale)?);
    let mut request = cx.request(cx.primary());
    request.contract = "conformance.no-such-contract".into();
    let (_, unknown) = cx.send(&request).await?;
    seen.push(judge("an unknown contract", &unknown)?);
    Ok(seen.join("; "))
}

/// Checks one refusal's problem document; its code must be one the protocol defines.
fn judge(label: &str, reply: &client::Reply) -> Result<String, super::CaseFailure> {
    if reply.status.is_success() {
        return Err(failed(format!("{label} was answered {}", reply.summary())));
    }
    let problem: Value = serde_json::from_slice(&reply.body)
        .map_err(|e| failed(format!("{label}: the problem is not JSON: {e}")))?;
    problem_shape(reply, &problem).map_err(|e| failed(format!("{label}: {e}")))?;
    // PROTOCOL.md §3.5: no answer may be kept by a cache on the way.
    let cache = reply
        .headers
        .get(hyper::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !cache
        .split(',')
        .any(|d| d.trim().eq_ignore_ascii_case("no-store"))
    {
        return Err(failed(format!(
            "{label}: Cache-Control is `{cache}`, not no-store"
        )));
    }
    let type_uri = problem.get("type").and_then(Value::as_str).unwrap_or("");
    let code = ProblemCode::from_type_uri(type_uri).ok_or_else(|| {
        failed(format!(
            "{label}: `{type_uri}` is not a protocol problem type"
        ))
    })?;
    if code.status() != reply.status.as_u16() {
        return Err(failed(format!(
            "{label}: {type_uri} is carried by HTTP {}, the protocol says {}",
            reply.status.as_u16(),
            code.status()
        )));
    }
    Ok(format!("{label}: HTTP {} {}", code.status(), code.code()))
}

pub(super) async fn exchange_id(cx: &Context) -> CaseResult {
    let mut seen = Vec::new();
    let mut stale = cx.request(cx.primary());
    stale.iat -= 3600;
    stale.exp = stale.iat + 60;
    let mut wrong_aud = cx.request(cx.primary());
    if let Some(other) = cx
        .config
        .manifest
        .doc()
        .members
        .iter()
        .find(|m| m.id != cx.config.target.member)
    {
        wrong_aud.aud = other.id.clone();
    }
    for (label, request, code) in [
        ("stale", stale, ProblemCode::Stale),
        ("wrong aud", wrong_aud, ProblemCode::WrongAudience),
    ] {
        let (_, reply) = cx.send(&request).await?;
        let (problem, _) =
            expect_problem(&reply, code).map_err(|e| failed(format!("{label}: {e}")))?;
        match problem.get("exchange_id").and_then(Value::as_str) {
            Some(id) if id == request.id => seen.push(format!("{label}: exchange_id {id}")),
            other => {
                return Err(failed(format!(
                    "{label}: exchange_id is {other:?}, the request's is {}",
                    request.id
                )));
            }
        }
    }
    Ok(seen.join("; "))
}

pub(super) async fn unknown_resource(cx: &Context) -> CaseResult {
    let nowhere = cx.get("/v1/conformance-no-such-resource").await?;
    let (_, a) = expect_problem(&nowhere, ProblemCode::NotFound)
        .map_err(|e| failed(format!("GET of an unknown path: {e}")))?;
    let r = &cx.primary().reference;
    let mut conn = client::connect(&cx.config.target.endpoint, cx.tester_tls()).await?;
    let get = conn
        .send(
            Method::GET,
            &format!("/v1/exchange/{}/{}", r.id, r.version),
            None,
            full(Vec::new()),
        )
        .await?;
    let (_, b) = expect_problem(&get, ProblemCode::MethodNotAllowed)
        .map_err(|e| failed(format!("GET of the exchange endpoint: {e}")))?;
    Ok(format!("unknown path: {a}; GET exchange: {b}"))
}

pub(super) async fn consistency_route(cx: &Context) -> CaseResult {
    // Every log holds the empty tree: the proof from 0 to 0 is empty.
    let empty = cx.get("/v1/audit/consistency?first=0&second=0").await?;
    if empty.status.as_u16() != 200 {
        return Err(failed(format!(
            "first=0&second=0: {}: {}",
            empty.summary(),
            empty.body_excerpt()
        )));
    }
    let proof: Value = serde_json::from_slice(&empty.body)
        .map_err(|e| failed(format!("first=0&second=0: not JSON: {e}")))?;
    if proof["first"] != 0 || proof["second"] != 0 || proof["path"] != Value::Array(Vec::new()) {
        return Err(failed(format!(
            "first=0&second=0: expected {{first: 0, second: 0, path: []}}, got {proof}"
        )));
    }
    let beyond = cx
        .get(&format!(
            "/v1/audit/consistency?first=0&second={}",
            u64::MAX >> 2
        ))
        .await?;
    let (_, line) = expect_problem(&beyond, ProblemCode::Malformed)
        .map_err(|e| failed(format!("a size beyond the log: {e}")))?;
    Ok(format!("0 to 0: an empty proof; beyond the log: {line}"))
}

/// PROTOCOL.md §4.1: a member's own systems call a listener of their own; the federation
/// listener refuses the local face to every caller, a federation member included.
pub(super) async fn local_face_elsewhere(cx: &Context) -> CaseResult {
    let c = cx.primary();
    let body = serde_json::json!({
        "purpose": c.purpose,
        "query": c.queries.first().cloned().unwrap_or(Value::Null),
    });
    let mut conn = client::connect(&cx.config.target.endpoint, cx.tester_tls()).await?;
    let reply = conn
        .send(
            Method::POST,
            &format!("/v1/query/{}/{}", c.reference.id, c.reference.version),
            Some("application/json"),
            full(body.to_string()),
        )
        .await?;
    let (_, seen) = expect_problem(&reply, ProblemCode::WrongListener)
        .map_err(|e| failed(format!("POST /v1/query on the federation listener: {e}")))?;
    Ok(format!("POST /v1/query: {seen}"))
}
