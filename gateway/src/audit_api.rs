//! The auditor's face of the admin listener: signed tree heads, inclusion and consistency
//! proofs, records and evidence, for the identities on the gateway's `auditors` list; the
//! evidence (the signed envelopes, with personal data) only for `evidence_auditors`.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /audit/tree-head` | the latest signed tree head (one is signed if none exists yet) |
//! | `POST /audit/tree-head` | a tree head signed now |
//! | `GET /audit/inclusion?exchange_id=ID[&tree_size=N]` | an inclusion proof for each record of the exchange |
//! | `GET /audit/consistency?first=A&second=B` | a consistency proof between two tree sizes |
//! | `GET /audit/records?from=A&to=B` | records `A..B` (at most 10,000) |
//! | `POST /audit/subject` `{"nik": "…"}` | every record about one person, each with an inclusion proof, and the head they are against |
//! | `GET /audit/evidence?exchange_id=ID` | the signed envelopes kept for the exchange (`evidence_auditors` only) |

use contracts::{Problem, ProblemCode};
use http::{Method, Request};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::gateway::Gateway;
use crate::http::{Reply, json, problem};
use audit::SignedTreeHead;
use audit_store::AuditError;

fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn number(query: &str, name: &str) -> Result<Option<u64>, Problem> {
    param(query, name)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                Problem::new(
                    ProblemCode::Malformed,
                    format!("`{name}` must be a whole number"),
                )
            })
        })
        .transpose()
}

fn head_json(h: &SignedTreeHead) -> Value {
    json!({"member": h.member, "log": h.log, "tree_size": h.tree_size, "root_hash": h.root_hash, "timestamp": h.timestamp, "jws": h.jws})
}

/// `GET …/consistency?first=A&second=B`, on the auditor's face and on the federation
/// listener (PROTOCOL.md §5.3, §5.4): the consistency proof between two sizes of this log.
/// Sizes outside the log are 400 `malformed`: a partner witnessing this log reads that as
/// this gateway being unable to prove a head it signed.
pub(crate) async fn consistency(gw: &Gateway, query: &str) -> Result<Value, Problem> {
    let (Some(first), Some(second)) = (number(query, "first")?, number(query, "second")?) else {
        return Err(Problem::new(
            ProblemCode::Malformed,
            "`first` and `second` are required",
        ));
    };
    if first > second {
        return Err(Problem::new(
            ProblemCode::Malformed,
            "`first` may not be larger than `second`",
        ));
    }
    let proof = gw
        .audit
        .consistency_proof(first, second)
        .await
        .map_err(|e| match e {
            AuditError::OutOfRange(why) => Problem::new(ProblemCode::Malformed, why),
            other => unavailable(other),
        })?;
    Ok(json!({"first": proof.first, "second": proof.second, "path": proof.path}))
}

/// A failure of the log itself: the store is down or was tampered with.
fn unavailable(e: AuditError) -> Problem {
    tracing::warn!(error = %e, "audit query failed");
    let mut p = Problem::new(ProblemCode::ProviderUnavailable, format!("audit log: {e}"));
    p.retry_after = Some(1);
    p
}

/// `POST /audit/subject`: the NIK travels in the body (never in a URL, which ends up in
/// logs), is only hashed with the log's secret, and is not echoed.
async fn subject(gw: &Gateway, req: Request<Incoming>) -> Result<Value, Problem> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Asked {
        nik: String,
    }
    let (parts, body) = req.into_parts();
    let bytes = crate::http::read_body(&parts.headers, body, 1024).await?;
    let asked: Asked = contracts::json::from_slice(&bytes).map_err(|e| {
        Problem::new(
            ProblemCode::Malformed,
            format!("body must be {{\"nik\": \"<16 digits>\"}}: {e}"),
        )
    })?;
    if asked.nik.len() != 16 || !asked.nik.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::new(
            ProblemCode::Malformed,
            "`nik` must be 16 digits",
        ));
    }
    let (head, proofs) = gw
        .audit
        .subject_history(&[Value::String(asked.nik)])
        .await
        .map_err(failed)?;
    Ok(json!({
        "tree_head": head.as_ref().map(head_json),
        "proofs": proofs.iter().map(|p| json!({
            "seq": p.seq, "tree_size": p.tree_size, "leaf_hash": p.leaf_hash, "path": p.path, "record": p.record,
        })).collect::<Vec<_>>(),
    }))
}

fn failed(e: AuditError) -> Problem {
    tracing::warn!(error = %e, "audit query failed");
    Problem::new(ProblemCode::Internal, format!("audit log: {e}"))
}

/// Answers one auditor request.
pub async fn route(gw: &Gateway, req: Request<Incoming>, may_read_evidence: bool) -> Reply {
    match answer(gw, req, may_read_evidence).await {
        Ok(v) => json(&v),
        Err(p) => problem(&p),
    }
}

async fn answer(
    gw: &Gateway,
    req: Request<Incoming>,
    may_read_evidence: bool,
) -> Result<Value, Problem> {
    let query = req.uri().query().unwrap_or("").to_owned();
    if req.method() == Method::POST && req.uri().path() == "/audit/subject" {
        return subject(gw, req).await;
    }
    let log = &gw.audit;
    match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/audit/tree-head") => {
            let head = match log.latest_tree_head().await.map_err(failed)? {
                Some(h) => h,
                None => log.sign_tree_head().await.map_err(failed)?,
            };
            Ok(head_json(&head))
        }
        (Method::POST, "/audit/tree-head") => {
            Ok(head_json(&log.sign_tree_head().await.map_err(failed)?))
        }
        (Method::GET, "/audit/inclusion") => {
            let id = param(&query, "exchange_id")
                .ok_or_else(|| Problem::new(ProblemCode::Malformed, "`exchange_id` is required"))?;
            let proofs = log
                .inclusion_proof(id, number(&query, "tree_size")?)
                .await
                .map_err(failed)?;
            if proofs.is_empty() {
                return Err(Problem::new(
                    ProblemCode::NotFound,
                    format!("no record of exchange {id}"),
                ));
            }
            Ok(json!({
                "proofs": proofs.iter().map(|p| json!({
                    "seq": p.seq, "tree_size": p.tree_size, "leaf_hash": p.leaf_hash, "path": p.path, "record": p.record,
                })).collect::<Vec<_>>()
            }))
        }
        (Method::GET, "/audit/consistency") => consistency(gw, &query).await,
        (Method::GET, "/audit/records") => {
            let from = number(&query, "from")?.unwrap_or(0);
            let to = number(&query, "to")?.unwrap_or(from + 1000);
            Ok(json!({"records": log.records(from, to).await.map_err(failed)?}))
        }
        (Method::GET, "/audit/evidence") if !may_read_evidence => Err(Problem::new(
            ProblemCode::Forbidden,
            "evidence (the signed envelopes, with the queries' personal data) is granted to \
             admin.evidence_auditors only; records, proofs and hashes are not",
        )),
        (Method::GET, "/audit/evidence") => {
            let id = param(&query, "exchange_id")
                .ok_or_else(|| Problem::new(ProblemCode::Malformed, "`exchange_id` is required"))?;
            let evidence = log.evidence(id).await.map_err(failed)?;
            if evidence.is_empty() {
                return Err(Problem::new(
                    ProblemCode::NotFound,
                    format!("no evidence kept for exchange {id}"),
                ));
            }
            Ok(json!({"evidence": evidence}))
        }
        (_, path) => Err(Problem::new(
            ProblemCode::NotFound,
            format!("no audit resource at {path}"),
        )),
    }
}
