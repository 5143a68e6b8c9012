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
use crate::record::{Seen, outcome_of, record};
use audit::Role;

/// Handles `POST /v1/query/{id}/{version}`.
pub async fn handle(
    gw: Arc<Gateway>,
    peer: Option<&MemberId>,
    path: ContractRef,
    headers: &HeaderMap,
    body: Incoming,
) -> Reply {
    let started = std::time::Instant::now();
    let mut read = None;
    match run(gw.clone(), peer, path.clone(), headers, body, &mut read).await {
        Ok(reply) => reply,
        // Refused before any exchange began: recorded here, under an id of its own.
        Err(p) => {
            let id = uuid::Uuid::new_v4().to_string();
            let p = p.with_exchange_id(Some(&id));
            let seen = Seen {
                exchange_id: &id,
                role: Role::Consumer,
                consumer: gw.member.as_str(),
                provider: "",
                contract: &path,
                purpose: read
                    .as_ref()
                    .map_or("", |q: &LocalQuery| q.purpose.as_str()),
                request_jws: None,
                query: read.as_ref().map(|q| &q.query),
                response_jws: None,
                outcome: outcome_of(Some(&p)),
                latency_us: started.elapsed().as_micros() as u64,
            };
            match record(&gw, seen).await {
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
    read: &mut Option<LocalQuery>,
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
    let local = read.insert(local);
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
        let answer = fan_out(gw.clone(), subsystem, &fc, local.query.clone()).await?;
        return Ok(json(&answer));
    }
    // `ask` records its own outcome, refusals included.
    match ask(
        &gw,
        &subsystem,
        &path,
        &local.purpose,
        local.query.clone(),
        gw.query_deadline,
    )
    .await
    {
        Ok(answer) => Ok(json(&answer)),
        Err(p) => Ok(problem(&p)),
    }
}
