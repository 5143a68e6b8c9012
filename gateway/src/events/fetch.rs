//! Fetching received events (PROTOCOL.md §4.5): `GET /v1/events/{id}/{version}?after=N` on the
//! local face, for a subsystem granted the event contract. It reads the inbox after the
//! position the member system keeps, in the order received; the events were verified and
//! recorded when they arrived, so reading them records nothing new.

use std::sync::Arc;

use contracts::{ContractRef, Identity, Problem, ProblemCode};
use serde_json::{Value, json};

use crate::gateway::Gateway;
use crate::http::{Reply, json_bytes, problem};

/// The most events one fetch returns.
const MAX_LIMIT: u32 = 500;

/// Handles `GET /v1/events/{id}/{version}?after=N&limit=M` on the local listener.
pub async fn handle(
    gw: Arc<Gateway>,
    peer: Option<&Identity>,
    path: ContractRef,
    query: Option<&str>,
) -> Reply {
    match fetch(&gw, peer, &path, query).await {
        Ok(body) => json_bytes(body),
        Err(p) => problem(&p),
    }
}

async fn fetch(
    gw: &Gateway,
    peer: Option<&Identity>,
    path: &ContractRef,
    query: Option<&str>,
) -> Result<Vec<u8>, Problem> {
    let subsystem = crate::consumer::caller(gw, peer)?;
    if gw.catalog.get(path).and_then(|c| c.event()).is_none() {
        return Err(Problem::new(
            ProblemCode::UnknownContract,
            format!("{path} is not an event contract of the catalog"),
        ));
    }
    if !gw.consumer.grants.granted(&subsystem, path) {
        return Err(Problem::new(
            ProblemCode::NotGranted,
            format!("{subsystem} is not granted {path}"),
        ));
    }
    let (after, limit) = parameters(query)?;
    let events = gw
        .events
        .store
        .inbox(None, Some(&path.id), after, limit)
        .await
        .map_err(|e| {
            tracing::warn!(member = %gw.member, error = %e, "the inbox cannot be read");
            let mut p = Problem::new(
                ProblemCode::ProviderUnavailable,
                "the inbox cannot be read now",
            );
            p.retry_after = Some(1);
            p
        })?;
    let next = events.last().map_or(after, |e| e.seq);
    let events: Vec<Value> = events
        .iter()
        .filter(|e| e.version == path.version)
        .map(|e| {
            let mut v: Value =
                serde_json::from_slice(&super::hooks::body(e)).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("seq".into(), json!(e.seq));
            }
            v
        })
        .collect();
    serde_json::to_vec(&json!({ "events": events, "next": next }))
        .map_err(|e| Problem::new(ProblemCode::Internal, format!("cannot encode: {e}")))
}

/// `after` (default 0) and `limit` (default and at most [`MAX_LIMIT`]) from the query string.
fn parameters(query: Option<&str>) -> Result<(i64, u32), Problem> {
    let (mut after, mut limit) = (0i64, MAX_LIMIT);
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = || {
            Problem::new(
                ProblemCode::Malformed,
                format!(
                    "`{k}` must be a whole number: after=<seq, from 0>, limit=<1 to {MAX_LIMIT}>"
                ),
            )
        };
        match k {
            "after" => after = v.parse().ok().filter(|n| *n >= 0).ok_or_else(bad)?,
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(bad)?;
            }
            _ => {
                return Err(Problem::new(
                    ProblemCode::Malformed,
                    format!("unknown parameter `{k}`: after and limit are known"),
                ));
            }
        }
    }
    Ok((after, limit))
}
