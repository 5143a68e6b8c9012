//! The local face (PROTOCOL.md §4): a member's own systems ask their gateway, which asks the
//! federation on their behalf. Only subsystems of this gateway's member that its
//! configuration lists may use it, each only for what it is granted and at its own rate.

use std::sync::Arc;

use contracts::envelope::{LocalQuery, MAX_REQUEST_BYTES};
use contracts::trace::{self, TraceContext};
use contracts::{Contract, ContractRef, Identity, MemberId, Problem, ProblemCode};
use http::HeaderMap;
use hyper::body::Incoming;

use super::fanout::{check_parts, fan_out};
use super::{Caller, CheckedQuery, ask};
use crate::gateway::Gateway;
use crate::http::{Reply, json, problem, read_body, require_media_type};
use crate::snapshot::Snapshot;
use crate::trail::Trail;
use audit::Role;
use tokio::time::Instant;

/// The caller of the local face, as its certificate names it: a configured subsystem of
/// this gateway's member, or why not.
pub(crate) fn caller(gw: &Gateway, peer: Option<&Identity>) -> Result<MemberId, Problem> {
    match peer {
        Some(Identity::Subsystem(id)) if gw.consumer.grants.contains(id) => Ok(id.clone()),
        Some(Identity::Staff(staff)) => Err(Problem::new(
            ProblemCode::IdentityKind,
            format!(
                "{staff} is an {}: operators and auditors are served on the admin listener only",
                staff.role().as_str()
            ),
        )),
        Some(Identity::Member(id)) => Err(Problem::new(
            ProblemCode::IdentityKind,
            format!(
                "{id} is a member's gateway: gateways call the federation listener; the local \
                 face serves {}'s own subsystems",
                gw.member
            ),
        )),
        other => Err(Problem::new(
            ProblemCode::Forbidden,
            format!(
                "the local face serves the configured subsystems of {}; the client certificate names {}",
                gw.member,
                other
                    .map(Identity::to_string)
                    .unwrap_or_else(|| "no single Simpul identity".into())
            ),
        )),
    }
}

/// Handles `POST /v1/query/{id}/{version}` on the local listener.
pub async fn handle(
    gw: Arc<Gateway>,
    peer: Option<&Identity>,
    path: ContractRef,
    headers: &HeaderMap,
    body: Incoming,
) -> Reply {
    // The trail of a refusal before any exchange began, under an id of its own; an exchange
    // that begins keeps its own trail (`ask`), and this one is then not recorded.
    let id = contracts::ExchangeId::new().to_string();
    // As on the provider: a path that names no contract known here is not copied into the
    // permanent record.
    let recorded_as = if gw.catalog.contains_key(&path) || gw.consumer.federated.contains_key(&path)
    {
        path.clone()
    } else {
        ContractRef::new("", "")
    };
    let mut trail = Trail::new(&gw.audit, &gw.labels, Role::Consumer, &recorded_as);
    trail.set_exchange_id(&id);
    trail.set_consumer(&gw.member);
    // The authenticated subsystem, a value from here on: every trail of this query (this
    // one, and each `ask`'s) can name it.
    let subsystem = caller(&gw, peer);
    // Loaded once: every exchange this query makes runs under it.
    let snap = gw.snapshot();
    match run(
        gw.clone(),
        snap,
        subsystem,
        path.clone(),
        headers,
        body,
        &mut trail,
    )
    .await
    {
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
    snap: Arc<Snapshot>,
    subsystem: Result<MemberId, Problem>,
    path: ContractRef,
    headers: &HeaderMap,
    body: Incoming,
    trail: &mut Trail,
) -> Result<Reply, Problem> {
    // Before the body is read: a caller that may not use the local face sends nothing.
    let subsystem = subsystem?;
    trail.set_subsystem(&subsystem);
    let user = end_user(headers)?;
    if let Some(user) = &user {
        trail.set_user(user);
    }
    let trace = TraceContext::from_headers(
        headers.get(trace::TRACEPARENT).map(|v| v.as_bytes()),
        headers.get(trace::TRACESTATE).map(|v| v.as_bytes()),
    );
    let caller = Caller {
        subsystem,
        user,
        trace,
    };
    // A contract may take larger bodies than the protocol's default (PROTOCOL.md §3.5).
    let contract = gw.catalog.get(&path);
    let limit = contract.map_or(MAX_REQUEST_BYTES, Contract::max_request_bytes);
    let bytes = read_body(headers, body, limit).await?;
    require_media_type(headers, "application/json")?;
    let local: LocalQuery = contracts::json::from_slice(&bytes).map_err(|e| {
        Problem::new(
            ProblemCode::Malformed,
            format!("the body is not {{\"purpose\",\"query\"}}: {e}"),
        )
    })?;
    trail.set_purpose(&local.purpose);
    trail.set_query(&local.query, contract);
    // The subsystem's own grant, then its own rate: authorise before spending quota, so a
    // refused question costs the caller nothing, and a flood spends only its own quota.
    gw.consumer
        .grants
        .authorize(&caller.subsystem, &path, &local.purpose)
        .map_err(|e| Problem::new(ProblemCode::NotGranted, e.to_string()))?;
    // A batch spends one unit per item of the subsystem's own rate, as at the provider.
    let cost = contract.map_or(1, |c| c.item_count(&local.query));
    gw.consumer
        .grants
        .admit(&caller.subsystem, cost)
        .map_err(|e| {
            let mut p = Problem::new(ProblemCode::SubsystemRateLimited, e.to_string());
            p.retry_after = Some(limits::rate::RateDecision::retry_after_s(e.wait));
            p
        })?;
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
        let answer = fan_out(gw.clone(), snap, caller, &fc, parts).await;
        return Ok(json(&answer));
    }
    // An overlap run's local question names one of this gateway's lists (PROTOCOL.md §4.4).
    if let Some(terms) = contract.and_then(Contract::overlap) {
        let prepared = crate::overlap::consumer::prepare(&gw, &path, terms, local.query).await?;
        trail.dismiss();
        return match crate::overlap::consumer::run(
            &gw,
            &snap,
            &caller,
            &path,
            &local.purpose,
            prepared,
        )
        .await
        {
            Ok(answer) => Ok(json(&answer)),
            Err(p) => Ok(problem(&p)),
        };
    }
    let query = CheckedQuery::check(&gw, &path, local.query)?;
    trail.dismiss();
    // `ask` records its own outcome, refusals included.
    match ask(
        &gw,
        &snap,
        &caller,
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

/// The header in which a member system names the end user it asks for (PROTOCOL.md §4.2).
pub const USER_HEADER: &str = "simpul-user-id";

/// The longest end-user id a member system may name.
pub const MAX_USER_ID: usize = 256;

/// The end user named in [`USER_HEADER`], if any: one header, 1 to [`MAX_USER_ID`] visible
/// ASCII characters. It is recorded only as a keyed hash.
fn end_user(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let mut values = headers.get_all(USER_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let malformed = |why: &str| {
        Err(Problem::new(
            ProblemCode::Malformed,
            format!("{USER_HEADER}: {why}"),
        ))
    };
    if values.next().is_some() {
        return malformed("given more than once");
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_USER_ID {
        return malformed(&format!("1 to {MAX_USER_ID} characters"));
    }
    if !bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return malformed("visible ASCII characters only");
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(USER_HEADER, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn an_end_user_is_one_short_visible_header() {
        assert_eq!(end_user(&HeaderMap::new()).unwrap(), None);
        assert_eq!(
            end_user(&with(&[b"officer 1234@kemlu"]))
                .unwrap()
                .as_deref(),
            Some("officer 1234@kemlu")
        );
        let long = vec![b'a'; MAX_USER_ID + 1];
        for bad in [
            with(&[b"a", b"b"]),
            with(&[b""]),
            with(&[&long]),
            with(&[b"tab\there"]),
            with(&[b"caf\xc3\xa9"]),
        ] {
            let p = end_user(&bad).unwrap_err();
            assert_eq!(p.code(), Some(ProblemCode::Malformed), "{}", p.detail);
        }
    }
}
