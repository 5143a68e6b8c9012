//! The local face (PROTOCOL.md §4): a member's own systems ask their gateway, which asks the
//! federation on their behalf. Only subsystems of this gateway's member that its
//! configuration lists may use it.

use std::sync::Arc;

use contracts::envelope::{LocalQuery, MAX_REQUEST_BYTES};
use contracts::{ContractRef, MemberId, Problem, ProblemCode};
use http::HeaderMap;
use hyper::body::Incoming;

use super::fanout::{check_parts, fan_out};
use super::{CheckedQuery, ask};
use crate::gateway::Gateway;
use crate::http::{Reply, json, problem, read_body, require_media_type};
use crate::trail::Trail;
use audit::Role;
use tokio::time::Instant;

/// Handles `POST /v1/query/{id}/{version}`.
pub async fn handle(
    gw: Arc<Gateway>,
    peer: Option<&MemberId>,
    path: ContractRef,
    headers: &HeaderMap,
    body: Incoming,
) -> Reply {
    // The trail of a refusal before any exchange began, under an id of its own; an exchange
    // that begins keeps its own trail (`ask`), and this one is then not recorded.
    let id = contracts::ExchangeId::new().to_string();
    let mut trail = Trail::new(&gw.audit, Role::Consumer, &path);
    trail.set_exchange_id(&id);
    trail.set_consumer(&gw.member);
    match run(gw.clone(), peer, path.clone(), headers, body, &mut trail).await {
        Ok(reply) => reply,
        Err(p) => {
            let p = p.with_exchange_id(Some(&id));
            match trail.record(Some(&p)).await {
                Ok(()) => problem(&p),
                Err(not_durable) => problem(&not_durable),
            }
        }
    }
}

async fn run(
    gw: Arc<Gateway>,
    peer: Option<&MemberId>,
    path: ContractRef,
    headers: &HeaderMap,
    body: Incoming,
    trail: &mut Trail,
) -> Result<Reply, Problem> {
    let subsystem = match peer {
        Some(id) if gw.consumer.subsystems.contains(id) => id.clone(),
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
    trail.set_purpose(&local.purpose);
    trail.set_query(&local.query, gw.catalog.get(&path));
    if let Some(fc) = gw.consumer.federated.get(&path).cloned() {
        if local.purpose != fc.purpose {
            return Err(Problem::new(
                ProblemCode::Forbidden,
                format!(
                    "{path} is asked for `{}` only, not for `{}`",
                    fc.purpose, local.purpose
                ),
            ));
        }
        let parts = check_parts(&gw, &fc, &local.query)?;
        trail.dismiss();
        let answer = fan_out(gw.clone(), subsystem, &fc, parts).await;
        return Ok(json(&answer));
    }
    let query = CheckedQuery::check(&gw, &path, local.query)?;
    trail.dismiss();
    // `ask` records its own outcome, refusals included.
    match ask(
        &gw,
        &subsystem,
        &path,
        &local.purpose,
        query,
        Instant::now() + gw.consumer.query_deadline,
        None,
    )
    .await
    {
        Ok(answer) => Ok(json(&answer)),
        Err(p) => Ok(problem(&p)),
    }
}
