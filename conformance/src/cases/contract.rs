//! Contracts: the manifest and contract documents the gateway serves are the ones the
//! federation signed, and a request for a contract that is unknown, not granted, or asked
//! with a query its schema refuses is turned away with the right problem.

use std::collections::BTreeSet;

use contracts::canonical::{canonical_json, sha256_b64url};
use contracts::{Contract, ContractRef, Manifest, ProblemCode};
use serde_json::Value;

use super::{CaseFailure, CaseResult, Context, error_pointers, expect_problem, failed};

pub(super) async fn manifest_served(cx: &Context) -> CaseResult {
    let reply = cx.get("/v1/manifest").await?;
    if reply.status.as_u16() != 200 {
        return Err(failed(format!(
            "GET /v1/manifest answered {}",
            reply.summary()
        )));
    }
    if reply.media_type() != contracts::envelope::JOSE_MEDIA_TYPE {
        return Err(failed(format!(
            "GET /v1/manifest is `{}`, not {}",
            reply.media_type(),
            contracts::envelope::JOSE_MEDIA_TYPE
        )));
    }
    let text = String::from_utf8_lossy(&reply.body);
    let served = Manifest::verify(&text, &cx.config.authority, contracts::unix_now())
        .map_err(|e| failed(format!("the served manifest was refused: {e}")))?;
    let held = cx.config.manifest.doc().serial;
    if served.doc().serial < held {
        return Err(failed(format!(
            "the gateway serves serial {}, older than the tester's {held}",
            served.doc().serial
        )));
    }
    Ok(format!(
        "serial {} signed by {}",
        served.doc().serial,
        cx.config.authority.kid()
    ))
}

/// The contracts the manifest says the target provides.
pub(super) fn provided(cx: &Context) -> BTreeSet<ContractRef> {
    cx.config
        .manifest
        .provided_by(&cx.config.target.member)
        .map(|c| ContractRef::new(&c.id, &c.version))
        .collect()
}

pub(super) async fn contracts_listed(cx: &Context) -> CaseResult {
    let reply = cx.get("/v1/contracts").await?;
    if reply.status.as_u16() != 200 {
        return Err(failed(format!(
            "GET /v1/contracts answered {}",
            reply.summary()
        )));
    }
    let body: Value = serde_json::from_slice(&reply.body)
        .map_err(|e| failed(format!("GET /v1/contracts is not JSON: {e}")))?;
    let list = body
        .get("contracts")
        .or(Some(&body))
        .and_then(Value::as_array)
        .ok_or_else(|| failed("GET /v1/contracts has no `contracts` array"))?;
    let mut listed = BTreeSet::new();
    for entry in list {
        let (Some(id), Some(version)) = (
            entry.get("id").and_then(Value::as_str),
            entry.get("version").and_then(Value::as_str),
        ) else {
            return Err(failed(format!(
                "a listed contract lacks id or version: {entry}"
            )));
        };
        let r = ContractRef::new(id, version);
        // Where the listing carries digests, they must be the pinned ones.
        if let (Some(digest), Some(pinned)) = (
            entry.get("digest").and_then(Value::as_str),
            cx.config.manifest.contract(&r),
        ) && digest != pinned.digest
        {
            return Err(failed(format!(
                "{r} is listed with digest {digest}, the manifest pins {}",
                pinned.digest
            )));
        }
        listed.insert(r);
    }
    let want = provided(cx);
    if listed != want {
        let show = |s: &BTreeSet<ContractRef>| {
            s.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(failed(format!(
            "listed [{}], the manifest gives {} [{}]",
            show(&listed),
            cx.config.target.member,
            show(&want)
        )));
    }
    Ok(format!("{} contract(s), as in the manifest", listed.len()))
}

/// Fetches a contract document from the target and checks it against the manifest: it
/// parses, names the right id, version and provider, and its RFC 8785 form hashes to the
/// pinned digest. Only a document that passes is used to judge answers.
pub(super) async fn fetch_contract(cx: &Context, r: &ContractRef) -> Result<Contract, CaseFailure> {
    let path = format!("/v1/contracts/{}/{}", r.id, r.version);
    let reply = cx.get(&path).await?;
    if reply.status.as_u16() != 200 {
        return Err(failed(format!("GET {path} answered {}", reply.summary())));
    }
    let contract =
        Contract::from_json(&reply.body).map_err(|e| failed(format!("GET {path}: {e}")))?;
    let doc = contract.doc();
    if doc.id != r.id || doc.version != r.version || doc.provider != cx.config.target.member {
        return Err(failed(format!(
            "GET {path} served {}/{} of {}",
            doc.id, doc.version, doc.provider
        )));
    }
    let pinned = cx
        .config
        .manifest
        .contract(r)
        .map(|c| c.digest.clone())
        .unwrap_or_default();
    // The digest is over the JCS form. PROTOCOL.md §2.3 has the document served in exactly
    // that form, so the body bytes themselves must hash to it; the canonical form of what
    // was parsed tells a changed document from mere re-formatting in the message.
    let canonical = canonical_json(doc)
        .map(|bytes| sha256_b64url(&bytes))
        .map_err(|e| failed(format!("GET {path}: {e}")))?;
    if canonical != pinned {
        return Err(failed(format!(
            "GET {path} is another document: its JCS form hashes to {canonical}, the manifest pins {pinned}"
        )));
    }
    let served = sha256_b64url(&reply.body);
    if served != pinned {
        return Err(failed(format!(
            "GET {path} is the pinned document but not in its JCS form (body hashes to {served})"
        )));
    }
    Ok(contract)
}

pub(super) async fn documents_match_digests(cx: &Context) -> CaseResult {
    let mut seen = Vec::new();
    for r in provided(cx) {
        let c = fetch_contract(cx, &r).await?;
        seen.push(format!("{r} {}", c.digest()));
    }
    if seen.is_empty() {
        return Err(CaseFailure::Skipped(
            "the manifest lists no contract of the target".into(),
        ));
    }
    Ok(seen.join("; "))
}

pub(super) async fn unknown_contract(cx: &Context) -> CaseResult {
    let mut request = cx.request(cx.primary());
    request.contract = "conformance.no-such-contract".into();
    request.version = "1".into();
    let (_, reply) = cx.send(&request).await?;
    Ok(expect_problem(&reply, ProblemCode::UnknownContract)?.1)
}

pub(super) async fn other_providers_contract(cx: &Context) -> CaseResult {
    let target = &cx.config.target.member;
    let other = cx
        .config
        .manifest
        .doc()
        .contracts
        .iter()
        .find(|c| &c.provider != target)
        .ok_or_else(|| {
            CaseFailure::Skipped("the manifest lists no contract of another provider".into())
        })?;
    let mut request = cx.request(cx.primary());
    request.contract = other.id.clone();
    request.version = other.version.clone();
    let (_, reply) = cx.send(&request).await?;
    let (_, line) = expect_problem(&reply, ProblemCode::UnknownContract)?;
    Ok(format!(
        "{}/{} of {}: {line}",
        other.id, other.version, other.provider
    ))
}

pub(super) async fn not_granted(cx: &Context) -> CaseResult {
    if cx.config.forbidden.is_empty() {
        return Err(CaseFailure::Skipped(
            "needs a contract and purpose the manifest does not grant ([[forbidden]])".into(),
        ));
    }
    let mut seen = Vec::new();
    for f in &cx.config.forbidden {
        let party = cx
            .config
            .party(f.by)
            .ok_or_else(|| CaseFailure::Skipped("no [second] member is configured".into()))?;
        let under_test = cx
            .config
            .contracts
            .iter()
            .find(|c| c.reference == f.reference)
            .unwrap_or(cx.primary());
        let mut request = cx.request_from(&party.member, under_test, &f.purpose);
        request.contract = f.reference.id.clone();
        request.version = f.reference.version.clone();
        let jws = cx.sign(party, &request)?;
        let reply = cx
            .post(
                cx.tls_of(f.by)?,
                &f.reference,
                Some(contracts::envelope::JOSE_MEDIA_TYPE),
                crate::client::full(jws),
            )
            .await?;
        let label = format!(
            "{} asking {} for `{}`",
            party.member, f.reference, f.purpose
        );
        let (_, line) = expect_problem(&reply, ProblemCode::Forbidden)
            .map_err(|e| failed(format!("{label}: {e}")))?;
        seen.push(format!("{label}: {line}"));
    }
    Ok(seen.join("; "))
}

pub(super) async fn invalid_query(cx: &Context) -> CaseResult {
    let mut seen = Vec::new();
    for c in &cx.config.contracts {
        let Some(invalid) = &c.invalid else { continue };
        let mut request = cx.request(c);
        request.query = invalid.query.clone();
        let (_, reply) = cx.send(&request).await?;
        let (problem, line) = expect_problem(&reply, ProblemCode::InvalidQuery)
            .map_err(|e| failed(format!("{}: {e}", c.reference)))?;
        let pointers = error_pointers(&problem);
        if !pointers.contains(&invalid.pointer.as_str()) {
            return Err(failed(format!(
                "{}: the problem's errors point at {pointers:?}, not {}",
                c.reference, invalid.pointer
            )));
        }
        seen.push(format!(
            "{}: {line} (pointer {})",
            c.reference, invalid.pointer
        ));
    }
    if seen.is_empty() {
        return Err(CaseFailure::Skipped(
            "needs a schema-invalid query (invalid_query and invalid_pointer)".into(),
        ));
    }
    Ok(seen.join("; "))
}

/// PROTOCOL.md §2.4: a pattern matches the whole string, `$` only at its very end, so a NIK
/// followed by a newline (which `$` accepts in PCRE, Python and Perl) is invalid.
pub(super) async fn trailing_newline(cx: &Context) -> CaseResult {
    let mut seen = Vec::new();
    for c in &cx.config.contracts {
        let Some(query) = c.queries.first() else {
            continue;
        };
        let Some(nik) = query.get("nik").and_then(Value::as_str) else {
            continue;
        };
        for suffix in ["\n", "\r\n"] {
            let mut request = cx.request(c);
            request.query["nik"] = Value::String(format!("{nik}{suffix}"));
            let (_, reply) = cx.send(&request).await?;
            let label = format!("{}: a NIK followed by {suffix:?}", c.reference);
            let (problem, line) = expect_problem(&reply, ProblemCode::InvalidQuery)
                .map_err(|e| failed(format!("{label}: {e}")))?;
            if !error_pointers(&problem).contains(&"/query/nik") {
                return Err(failed(format!(
                    "{label}: the problem's errors do not point at /query/nik"
                )));
            }
            seen.push(format!("{label}: {line}"));
        }
    }
    if seen.is_empty() {
        return Err(CaseFailure::Skipped(
            "needs a contract whose query has a string `nik`".into(),
        ));
    }
    Ok(seen.join("; "))
}
