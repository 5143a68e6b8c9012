//! Answers: a valid query gets a signed answer the consumer can check on its own — signed by
//! the provider's key in the manifest, of the right `typ`, bound to this very request, its
//! result valid against the contract the manifest pins.
//!
//! Every configured query of every configured contract is asked twice (the second answer may
//! come from a cache, and must be bound to its own request all the same); the exchanges are
//! made once and judged by each case.

use contracts::canonical::{b64url_decode, sha256_b64url};
use contracts::envelope::{
    ANSWER_TYP, JOSE_MEDIA_TYPE, MANIFEST_SERIAL_HEADER, TREE_HEAD_HEADER, TREE_HEAD_TYP,
};
use contracts::{Algorithm, Contract, ExchangeAnswer, ExchangeRequest, ParsedJws};
use serde_json::Value;

use super::{CaseFailure, CaseResult, Context, failed};
use crate::client::Reply;

/// One valid exchange the answer cases judge.
pub(crate) struct Sample {
    label: String,
    request: ExchangeRequest,
    request_jws: String,
    reply: Result<Reply, String>,
}

async fn samples(cx: &Context) -> &[Sample] {
    cx.answers
        .get_or_init(|| async {
            let mut out = Vec::new();
            for c in &cx.config.contracts {
                for (i, query) in c.queries.iter().enumerate() {
                    for round in ["first", "again"] {
                        let mut request = cx.request(c);
                        request.query = query.clone();
                        let label = format!("{} query {} ({round})", c.reference, i + 1);
                        let (request_jws, reply) = match cx.send(&request).await {
                            Ok((jws, reply)) => (jws, Ok(reply)),
                            Err(e) => (String::new(), Err(e.to_string())),
                        };
                        out.push(Sample {
                            label,
                            request,
                            request_jws,
                            reply,
                        });
                    }
                }
            }
            out
        })
        .await
}

/// Judges every sample with `check`, which returns a short observation.
async fn judge(
    cx: &Context,
    check: impl Fn(&Sample, &Reply) -> Result<String, String>,
) -> CaseResult {
    let samples = samples(cx).await;
    let mut seen = Vec::new();
    for s in samples {
        let reply = s
            .reply
            .as_ref()
            .map_err(|e| failed(format!("{}: no answer: {e}", s.label)))?;
        if reply.status.as_u16() != 200 {
            return Err(failed(format!(
                "{}: answered {}: {}",
                s.label,
                reply.summary(),
                reply.body_excerpt()
            )));
        }
        seen.push(check(s, reply).map_err(|e| failed(format!("{}: {e}", s.label)))?);
    }
    seen.dedup();
    Ok(format!("{} answers: {}", samples.len(), seen.join("; ")))
}

fn text(reply: &Reply) -> Result<&str, String> {
    std::str::from_utf8(&reply.body).map_err(|_| "the answer body is not UTF-8".to_owned())
}

/// The answer JWS parsed with its `typ` checked.
fn parsed(reply: &Reply) -> Result<ParsedJws<'_>, String> {
    ParsedJws::parse(text(reply)?.trim(), ANSWER_TYP).map_err(|e| e.to_string())
}

pub(super) async fn answered(cx: &Context) -> CaseResult {
    judge(cx, |_, reply| {
        if reply.media_type() != JOSE_MEDIA_TYPE {
            return Err(format!("Content-Type is `{}`", reply.media_type()));
        }
        let parts: Vec<&str> = text(reply)?.trim().split('.').collect();
        let decodes = parts.len() == 3
            && parts.iter().all(|p| b64url_decode(p).is_some())
            && parts
                .first()
                .and_then(|h| b64url_decode(h))
                .is_some_and(|h| serde_json::from_slice::<Value>(&h).is_ok());
        if decodes {
            Ok(format!("200 {JOSE_MEDIA_TYPE} compact JWS"))
        } else {
            Err("the body is not a compact JWS".into())
        }
    })
    .await
}

pub(super) async fn signed_by_provider(cx: &Context) -> CaseResult {
    judge(cx, |_, reply| provider_signature(cx, &parsed(reply)?)).await
}

/// Checks that `jws` is signed by a key the manifest gives the target, inside the key's
/// window at the answer's `iat`.
fn provider_signature(cx: &Context, jws: &ParsedJws<'_>) -> Result<String, String> {
    let target = &cx.config.target.member;
    let kid = jws.header.kid.clone().unwrap_or_default();
    let (owner, key) = cx
        .config
        .manifest
        .key(&kid)
        .ok_or_else(|| format!("kid `{kid}` names no key in the manifest"))?;
    if owner != target {
        return Err(format!("kid `{kid}` is a key of {owner}, not of {target}"));
    }
    key.verify(jws)
        .map_err(|e| format!("the signature does not verify with {kid}: {e}"))?;
    // Signed inside the key's window (PROTOCOL.md §1.5): the answer's `iat`.
    if let Some(iat) = contracts::envelope::signed_at(&jws.payload) {
        cx.config
            .manifest
            .key_at(&kid, iat)
            .map_err(|e| format!("the answer's iat is outside its key's window: {e}"))?;
    }
    let alg = match jws.alg {
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
    };
    Ok(format!("{alg} by {kid}"))
}

pub(super) async fn typ(cx: &Context) -> CaseResult {
    judge(cx, |_, reply| {
        parsed(reply)?;
        Ok(format!("typ {ANSWER_TYP}"))
    })
    .await
}

pub(super) async fn bound(cx: &Context) -> CaseResult {
    judge(cx, |s, reply| {
        binding(cx, &s.request, &s.request_jws, &answer_of(&parsed(reply)?)?)
    })
    .await
}

/// The exchange answer a JWS carries.
fn answer_of(jws: &ParsedJws<'_>) -> Result<ExchangeAnswer, String> {
    serde_json::from_slice(&jws.payload)
        .map_err(|e| format!("the payload is not an exchange answer: {e}"))
}

/// Checks that `answer` is bound to `request`, sent as `request_jws`.
fn binding(
    cx: &Context,
    r: &ExchangeRequest,
    request_jws: &str,
    answer: &ExchangeAnswer,
) -> Result<String, String> {
    let target = &cx.config.target.member;
    let mut wrong = Vec::new();
    if answer.v != 1 {
        wrong.push(format!("v is {}", answer.v));
    }
    if answer.id != r.id {
        wrong.push(format!("id is {}, the request's {}", answer.id, r.id));
    }
    if &answer.iss != target {
        wrong.push(format!("iss is {}", answer.iss));
    }
    if answer.aud != r.iss {
        wrong.push(format!("aud is {}, the consumer is {}", answer.aud, r.iss));
    }
    if answer.contract != r.contract || answer.version != r.version {
        wrong.push(format!(
            "contract is {}/{}",
            answer.contract, answer.version
        ));
    }
    let hash = sha256_b64url(request_jws.as_bytes());
    if answer.request_hash != hash {
        wrong.push(format!(
            "request_hash is {}, the request's is {hash}",
            answer.request_hash
        ));
    }
    if wrong.is_empty() {
        Ok("id, iss, aud, contract, version, request_hash bound".into())
    } else {
        Err(wrong.join("; "))
    }
}

/// Checks that `answer`'s result is valid against `contract`'s response schema.
fn result_against(contract: &Contract, answer: &ExchangeAnswer) -> Result<String, String> {
    contract
        .check_response(&answer.result, "/result")
        .map_err(|errors| {
            errors
                .iter()
                .map(|e| format!("{}: {}", e.pointer, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
    Ok(format!(
        "result valid against {}/{}",
        contract.doc().id,
        contract.doc().version
    ))
}

/// Judges one answer as the answer cases judge each sample, but for its result: 200 with a
/// compact JWS of the answer `typ`, signed by the target, bound to `request` (sent as
/// `request_jws`). Returns the answer so judged, and a line saying so.
pub(super) fn judge_signed(
    cx: &Context,
    request: &ExchangeRequest,
    request_jws: &str,
    reply: &Reply,
) -> Result<(ExchangeAnswer, String), String> {
    if reply.status.as_u16() != 200 {
        return Err(format!(
            "answered {}: {}",
            reply.summary(),
            reply.body_excerpt()
        ));
    }
    if reply.media_type() != JOSE_MEDIA_TYPE {
        return Err(format!("Content-Type is `{}`", reply.media_type()));
    }
    let jws = parsed(reply)?;
    let signed = provider_signature(cx, &jws)?;
    let answer = answer_of(&jws)?;
    binding(cx, request, request_jws, &answer)?;
    Ok((answer, format!("answered 200, signed {signed}, bound")))
}

/// Judges one answer as the answer cases judge each sample: [`judge_signed`], and its result
/// valid against `contract`.
pub(super) fn judge_answer(
    cx: &Context,
    contract: &Contract,
    request: &ExchangeRequest,
    request_jws: &str,
    reply: &Reply,
) -> Result<(ExchangeAnswer, String), String> {
    let (answer, line) = judge_signed(cx, request, request_jws, reply)?;
    result_against(contract, &answer)?;
    Ok((answer, format!("{line}, result valid")))
}

pub(super) async fn result_valid(cx: &Context) -> CaseResult {
    let mut contracts = Vec::new();
    for c in &cx.config.contracts {
        let doc = super::contract::fetch_contract(cx, &c.reference)
            .await
            .map_err(|e| match e {
                CaseFailure::Failed(why) => {
                    failed(format!("no verified contract document to judge by: {why}"))
                }
                other => other,
            })?;
        contracts.push(doc);
    }
    judge(cx, |s, reply| {
        let answer = answer_of(&parsed(reply)?)?;
        let contract = contracts
            .iter()
            .find(|c| c.doc().id == s.request.contract && c.doc().version == s.request.version)
            .ok_or_else(|| "no contract document".to_owned())?;
        result_against(contract, &answer)
    })
    .await
}

pub(super) async fn tree_head(cx: &Context) -> CaseResult {
    let target = &cx.config.target.member;
    judge(cx, |_, reply| {
        let mut values = reply.headers.get_all(TREE_HEAD_HEADER).iter();
        let value = values
            .next()
            .ok_or_else(|| format!("no {TREE_HEAD_HEADER} header"))?;
        if values.next().is_some() {
            return Err(format!("{TREE_HEAD_HEADER} given more than once"));
        }
        let text = value
            .to_str()
            .map_err(|_| format!("{TREE_HEAD_HEADER} is not visible ASCII"))?;
        let jws = ParsedJws::parse(text, TREE_HEAD_TYP)
            .map_err(|e| format!("{TREE_HEAD_HEADER} is not a tree head: {e}"))?;
        let kid = jws.header.kid.clone().unwrap_or_default();
        let (owner, key) = cx
            .config
            .manifest
            .key(&kid)
            .ok_or_else(|| format!("the head's kid `{kid}` names no key in the manifest"))?;
        if owner != target {
            return Err(format!("the head is signed by {owner}, not by {target}"));
        }
        key.verify(&jws)
            .map_err(|e| format!("the head's signature does not verify with {kid}: {e}"))?;
        let payload: Value = serde_json::from_slice(&jws.payload)
            .map_err(|e| format!("the head's payload is not JSON: {e}"))?;
        let fields: Vec<&str> = payload
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        if fields != ["log", "member", "root_hash", "timestamp", "tree_size"] {
            return Err(format!("the head's payload has the fields {fields:?}"));
        }
        if let Some(ms) = payload["timestamp"].as_i64() {
            cx.config
                .manifest
                .key_at(&kid, ms.div_euclid(1000))
                .map_err(|e| format!("the head's timestamp is outside its key's window: {e}"))?;
        }
        if payload["member"] != target.as_str() || payload["log"] != "exchanges" {
            return Err(format!(
                "the head names log {} of {}, not log \"exchanges\" of {target}",
                payload["log"], payload["member"]
            ));
        }
        let root = payload["root_hash"].as_str().and_then(b64url_decode);
        match (payload["tree_size"].as_u64(), root) {
            (Some(size), Some(root)) if root.len() == 32 => {
                Ok(format!("a head of {target}'s log of size {size}"))
            }
            _ => Err("the head's tree_size or root_hash is not a size and a SHA-256".into()),
        }
    })
    .await
}

/// The one `Simpul-Manifest-Serial` of `reply`: 1–20 decimal digits.
fn manifest_serial(reply: &Reply) -> Result<u64, String> {
    let mut values = reply.headers.get_all(MANIFEST_SERIAL_HEADER).iter();
    let value = values
        .next()
        .ok_or_else(|| format!("no {MANIFEST_SERIAL_HEADER} header"))?;
    if values.next().is_some() {
        return Err(format!("{MANIFEST_SERIAL_HEADER} given more than once"));
    }
    let text = value.to_str().unwrap_or_default();
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{MANIFEST_SERIAL_HEADER} `{text}` is not 1–20 decimal digits"
        ));
    }
    text.parse()
        .map_err(|_| format!("{MANIFEST_SERIAL_HEADER} `{text}` is not a serial"))
}

pub(super) async fn manifest_serial_stated(cx: &Context) -> CaseResult {
    // What the target serves, and the serial its manifest names.
    let served = cx.get("/v1/manifest").await?;
    let stated = manifest_serial(&served).map_err(|e| failed(format!("GET /v1/manifest: {e}")))?;
    let jws = ParsedJws::parse(
        text(&served).map_err(failed)?,
        contracts::manifest::MANIFEST_TYP,
    )
    .map_err(|e| failed(format!("GET /v1/manifest: not a manifest JWS: {e}")))?;
    let payload: Value = serde_json::from_slice(&jws.payload)
        .map_err(|e| failed(format!("GET /v1/manifest: payload: {e}")))?;
    let serial = payload["serial"].as_u64().unwrap_or_default();
    if stated != serial {
        return Err(failed(format!(
            "GET /v1/manifest states serial {stated} but serves the manifest of serial {serial}"
        )));
    }
    judge(cx, |_, reply| {
        let answered = manifest_serial(reply)?;
        if answered == serial {
            Ok(format!("serial {serial}, as GET /v1/manifest serves"))
        } else {
            Err(format!(
                "the answer states serial {answered}, GET /v1/manifest serves serial {serial}"
            ))
        }
    })
    .await
}
