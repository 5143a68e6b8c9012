//! The admin listener: Prometheus metrics and cache purges for the member's operators, the
//! audit log for its auditors, over mutual TLS against the member's own trust anchor (no
//! exchange ever goes through it). Operators and auditors are their own kind of identity
//! (`operator:<member>:<name>`, `auditor:<member>:<name>`): a subsystem's or a gateway's
//! certificate is refused here with 403 `identity-kind`. `GET /healthz` and `GET /readyz`,
//! which say nothing but whether the gateway runs and can answer, are served to any
//! certificate the listener's handshake accepted, so that a load balancer's or a
//! supervisor's probe needs no operator identity. The command centre (`/console/`,
//! [`crate::console`]) is served to operators and auditors both.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use contracts::envelope::MAX_REQUEST_BYTES;
use contracts::{Identity, Problem, ProblemCode};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{AdminConfig, ConnectionBounds};
use crate::gateway::Gateway;
use crate::http::{Reply, json, problem, read_body};
use crate::listener::{self, Listening};

/// `POST /admin/cache/purge` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PurgeRequest {
    /// Contract id.
    pub contract: String,
    /// Version; every version when absent.
    #[serde(default)]
    pub version: Option<String>,
}

/// Serves the admin face of `gw` on `listener` until `shutdown` turns true.
pub async fn serve(
    gw: Arc<Gateway>,
    listener: TcpListener,
    admin: AdminConfig,
    shutdown: watch::Receiver<bool>,
) {
    crate::metrics::install();
    let listening = Listening {
        what: "admin",
        member: &gw.member,
        listen: admin.listen,
        bounds: ConnectionBounds {
            max: admin.max_connections,
            per_address: gw.connections.per_address,
            handshakes: gw.connections.handshakes,
        },
        labels: &gw.labels,
    };
    if gw.snapshot().member_tls.is_none() {
        tracing::error!(member = %gw.member, "the admin listener has no member trust anchor; not serving it");
        return;
    }
    let tls = {
        let gw = gw.clone();
        move || gw.snapshot().member_tls.clone()
    };
    let service_for = {
        let (gw, admin) = (gw.clone(), Arc::new(admin.clone()));
        move |peer: Option<Identity>, _remote| {
            // A staff id names its member, so a list of this member's ids admits no other
            // member's operator or auditor.
            let staff = |list: &[contracts::StaffId]| matches!(&peer, Some(Identity::Staff(s)) if list.contains(s));
            let operator = staff(&admin.operators);
            let auditor = staff(&admin.auditors);
            let evidence = staff(&admin.evidence_auditors);
            let gw = gw.clone();
            service_fn(move |req| {
                let (gw, peer) = (gw.clone(), peer.clone());
                let access = Access {
                    operator,
                    auditor,
                    evidence,
                };
                // Boxed, as the exchange face's (server.rs).
                Box::pin(async move { Ok::<_, Infallible>(route(&gw, peer, access, req).await) })
            })
        }
    };
    listener::serve(listening, listener, tls, shutdown, service_for).await;
}

/// How long `GET /readyz` waits for the audit store to answer.
const READY_STORE_DEADLINE: Duration = Duration::from_secs(2);

/// `GET /readyz`: 200 when the gateway can answer exchanges now — its manifest has not
/// expired, its audit log was not found tampered with, the store answers within
/// [`READY_STORE_DEADLINE`], and an SQLite store's tables are not so far behind its journal
/// that appends wait — else 503 `not-ready` naming every check that failed.
async fn ready(gw: &Gateway) -> Reply {
    let mut failed = Vec::new();
    let manifest = gw.snapshot().manifest.doc().expires_at;
    if manifest <= contracts::unix_now() {
        failed.push(format!(
            "manifest: expired at {}: every exchange is refused",
            contracts::utc(manifest)
        ));
    }
    if let Some(why) = gw.audit.tampered() {
        failed.push(format!("audit: the store was found tampered with: {why}"));
    }
    match tokio::time::timeout(READY_STORE_DEADLINE, gw.audit.store_size()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => failed.push(format!("audit: the store cannot be read: {e}")),
        Err(_) => failed.push(format!(
            "audit: the store did not answer within {} s",
            READY_STORE_DEADLINE.as_secs()
        )),
    }
    let behind = gw.audit.tables_behind();
    if behind > audit_store::JOURNAL_KEEP_UP {
        failed.push(format!(
            "audit: the tables are {behind} records behind the journal: appends wait for them"
        ));
    }
    if failed.is_empty() {
        json(&json!({"ready": true, "member": gw.member.as_str()}))
    } else {
        problem(&Problem::new(
            ProblemCode::NotReady,
            format!("not ready: {}", failed.join("; ")),
        ))
    }
}

/// What a client of the admin listener may do, from its certificate's identity.
#[derive(Clone, Copy)]
struct Access {
    /// On `clients`: metrics, cache purges.
    operator: bool,
    /// On `auditors`: the audit log's heads, proofs, records.
    auditor: bool,
    /// On `evidence_auditors`: the kept envelopes too.
    evidence: bool,
}

async fn route(
    gw: &Gateway,
    peer: Option<Identity>,
    access: Access,
    req: Request<Incoming>,
) -> Reply {
    let Access {
        operator,
        auditor,
        evidence,
    } = access;
    if req.method() == Method::GET {
        match req.uri().path() {
            "/healthz" => return json(&json!({"status": "ok", "member": gw.member.as_str()})),
            "/readyz" => return ready(gw).await,
            _ => {}
        }
    }
    if let Some(Identity::Subsystem(id) | Identity::Member(id)) = &peer {
        return problem(&Problem::new(
            ProblemCode::IdentityKind,
            format!(
                "{id} is a {}: the admin listener serves the member's operators and auditors only",
                if id.is_subsystem() {
                    "subsystem"
                } else {
                    "member's gateway"
                }
            ),
        ));
    }
    // The audit log has its own allow-list: reading it is not operating the gateway. The
    // command centre is for both lists: its search goes to the auditor face on its own.
    let path = req.uri().path();
    let is_audit = path.starts_with("/audit/");
    let is_console = path == "/console" || path.starts_with("/console/");
    let (allowed, list) = if is_console {
        (operator || auditor, "operator or auditor")
    } else if is_audit {
        (auditor, "auditor")
    } else {
        (operator, "operator")
    };
    if !allowed {
        return problem(&Problem::new(
            ProblemCode::Forbidden,
            format!(
                "{} is not on this gateway's {list} allow-list",
                peer.map(|p| p.to_string())
                    .unwrap_or_else(|| "a certificate without a single Simpul identity".into()),
            ),
        ));
    }
    if is_audit {
        return crate::audit_api::route(gw, req, evidence).await;
    }
    if is_console {
        let viewer = crate::console::Viewer {
            identity: peer.map(|p| p.to_string()).unwrap_or_default(),
            operator,
            auditor,
        };
        return crate::console::route(gw, viewer, req).await;
    }
    let (parts, body) = req.into_parts();
    match (parts.method.clone(), parts.uri.path()) {
        (Method::GET, "/metrics") => {
            // Read at scrape time: the audit log marks itself, the gateway labels it.
            let tampered = gw.audit.tampered().is_some();
            metrics::gauge!("simpul_audit_tampered", "member" => gw.labels.member.clone(), "instance" => gw.labels.instance.clone())
                .set(if tampered { 1.0 } else { 0.0 });
            gw.audit_size.measure(&gw.audit).await;
            let mut r = Response::new(Full::new(crate::metrics::render().into()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (Method::POST, "/admin/cache/purge") => {
            let bytes = match read_body(&parts.headers, body, MAX_REQUEST_BYTES).await {
                Ok(b) => b,
                Err(p) => return problem(&p),
            };
            let Ok(purge) = contracts::json::from_slice::<PurgeRequest>(&bytes) else {
                return problem(&Problem::new(
                    ProblemCode::Malformed,
                    "body must be {\"contract\", \"version\"?}",
                ));
            };
            // A purge of what this gateway does not provide is a mistake to hear of, not
            // an empty success.
            let known = gw.provider.provided.keys().any(|c| {
                c.id == purge.contract && purge.version.as_ref().is_none_or(|v| &c.version == v)
            });
            if !known {
                let asked = match &purge.version {
                    Some(v) => format!("{}/{v}", purge.contract),
                    None => purge.contract.clone(),
                };
                let mut provided: Vec<String> = gw
                    .provider
                    .provided
                    .keys()
                    .map(ToString::to_string)
                    .collect();
                provided.sort();
                return problem(&Problem::new(
                    ProblemCode::UnknownContract,
                    format!(
                        "{} provides no contract {asked} (it provides: {})",
                        gw.member,
                        if provided.is_empty() {
                            "none".to_owned()
                        } else {
                            provided.join(", ")
                        }
                    ),
                ));
            }
            let dropped = gw
                .provider
                .cache
                .purge(&purge.contract, purge.version.as_deref());
            tracing::info!(member = %gw.member, contract = %purge.contract, version = ?purge.version, dropped, "cache purged");
            json(&json!({"purged": purge.contract, "version": purge.version, "entries": dropped}))
        }
        _ => {
            let mut r = problem(&Problem::new(
                ProblemCode::NotFound,
                format!("no admin resource at {}", parts.uri.path()),
            ));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}
