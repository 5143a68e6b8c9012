//! The local face (PROTOCOL.md §4): a member's own systems ask their gateway, which asks the
//! federation on their behalf. Only subsystems of this gateway's member that its
//! configuration lists may use it.

use std::sync::Arc;

use contracts::envelope::{LocalQuery, MAX_REQUEST_BYTES};
use contracts::{ContractRef, MemberId, Problem, ProblemCode};
use http::HeaderMap;
use hyper::body::Incoming;

use crate::consumer::ask;
use crate::fanout::fan_out;
use crate::gateway::Gateway;
use crate::http::{Reply, json, problem, read_body, require_media_type};

/// Handles `POST /v1/query/{id}/{version}`.
pub async fn handle(
    gw: Arc<Gateway>,
    peer: Option<&MemberId>,
    path: ContractRef,
    headers: &HeaderMap,
    body: Incoming,
) -> Reply {
    match run(gw, peer, path, headers, body).await {
        Ok(reply) => reply,
        Err(p) => problem(&p),
    }
}

async fn run(
    gw: Arc<Gateway>,
    peer: Option<&MemberId>,
    path: ContractRef,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Reply, Problem> {
    let subsystem = match peer {
        Some(id) if gw.subsystems.contains(id) => id.clone(),
        other => {
            return Err(Problem::new(
                ProblemCode::Forbidden,
                format!(
                    "the local face serves the configured subsystems of {}; the client certificate names {}",
                    gw.member,
                    other
                        .map(MemberId::to_string)
                        .unwrap_or_else(|| "no Simpul identity".into())
                ),
            ));
        }
    };
    let bytes = read_body(headers, body, MAX_REQUEST_BYTES).await?;
    require_media_type(headers, "application/json")?;
    let local: LocalQuery = serde_json::from_slice(&bytes).map_err(|e| {
        Problem::new(
            ProblemCode::Malformed,
            format!("the body is not {{\"purpose\",\"query\"}}: {e}"),
        )
    })?;
    if let Some(fc) = gw.federated.get(&path).cloned() {
        if local.purpose != fc.purpose {
            return Err(Problem::new(
                ProblemCode::Forbidden,
                format!(
                    "{path} is asked for `{}` only, not for `{}`",
                    fc.purpose, local.purpose
                ),
            ));
        }
        let answer = fan_out(gw.clone(), subsystem, &fc, local.query).await?;
        return Ok(json(&answer));
    }
    let answer = ask(
        &gw,
        &subsystem,
        &path,
        &local.purpose,
        local.query,
        gw.query_deadline,
    )
    .await?;
    Ok(json(&answer))
}
