//! The admin listener: Prometheus metrics and cache purges, over mutual TLS, for the
//! identities its own allow-list names (no exchange ever goes through it).

use std::convert::Infallible;
use std::sync::Arc;

use contracts::envelope::MAX_REQUEST_BYTES;
use contracts::{MemberId, Problem, ProblemCode};
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
        },
        labels: &gw.labels,
    };
    let service_for = {
        let (gw, admin) = (gw.clone(), Arc::new(admin.clone()));
        move |peer: Option<MemberId>, _remote| {
            let operator = peer.as_ref().is_some_and(|p| admin.clients.contains(p));
            let auditor = peer.as_ref().is_some_and(|p| admin.auditors.contains(p));
            let evidence = peer
                .as_ref()
                .is_some_and(|p| admin.evidence_auditors.contains(p));
            let gw = gw.clone();
            service_fn(move |req| {
                let (gw, peer) = (gw.clone(), peer.clone());
                let access = Access {
                    operator,
                    auditor,
                    evidence,
                };
                async move { Ok::<_, Infallible>(route(&gw, peer, access, req).await) }
            })
        }
    };
    listener::serve(listening, listener, gw.tls.clone(), shutdown, service_for).await;
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
    peer: Option<MemberId>,
    access: Access,
    req: Request<Incoming>,
) -> Reply {
    let Access {
        operator,
        auditor,
        evidence,
    } = access;
    // The audit log has its own allow-list: reading it is not operating the gateway.
    let is_audit = req.uri().path().starts_with("/audit/");
    if !(if is_audit { auditor } else { operator }) {
        return problem(&Problem::new(
            ProblemCode::Forbidden,
            format!(
                "{} is not on this gateway's {} allow-list",
                peer.map(|p| p.to_string())
                    .unwrap_or_else(|| "a certificate without a Simpul identity".into()),
                if is_audit { "auditor" } else { "operator" }
            ),
        ));
    }
    if is_audit {
        return crate::audit_api::route(gw, req, evidence).await;
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
            let Ok(purge) = serde_json::from_slice::<PurgeRequest>(&bytes) else {
                return problem(&Problem::new(
                    ProblemCode::Malformed,
                    "body must be {\"contract\", \"version\"?}",
                ));
            };
            match gw
                .provider
                .cache
                .purge(&purge.contract, purge.version.as_deref())
            {
                Ok(()) => {
                    tracing::info!(member = %gw.member, contract = %purge.contract, version = ?purge.version, "cache purged");
                    json(&json!({"purged": purge.contract, "version": purge.version}))
                }
                Err(e) => problem(&Problem::new(ProblemCode::Internal, e)),
            }
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
