//! The listen addresses and the open-file limit. Beside a running gateway (the usual case)
//! its addresses are in use: the federation listener is asked `GET /v1/manifest` with this
//! gateway's own certificate to tell it from another process, and the admin listener
//! `/healthz` and `/readyz` with the member's first operator's certificate, when it is on
//! this machine. A free address is one the gateway can bind when it starts.

use std::net::{SocketAddr, TcpListener};

use bytes::Bytes;
use contracts::envelope::MAX_ANSWER_BYTES;
use http::{Method, StatusCode};

use super::{CALL_TIMEOUT, Check, Context, Finding, Identity, Verdict};
use crate::client::PeerClient;
use crate::descriptors::{self, Bound, OpenFileLimit};
use crate::tls::FederationTrust;

/// Whether an address could be bound.
enum Bind {
    Free,
    InUse,
    Refused(std::io::Error),
}

fn try_bind(addr: SocketAddr) -> Bind {
    match TcpListener::bind(addr) {
        Ok(_) => Bind::Free,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Bind::InUse,
        Err(e) => Bind::Refused(e),
    }
}

/// `https://localhost:<port>` for a listener on a loopback or unspecified address (the names
/// a gateway certificate carries), else `https://<address>`.
fn url_of(addr: SocketAddr) -> String {
    if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        format!("https://localhost:{}", addr.port())
    } else {
        format!("https://{addr}")
    }
}

pub(super) async fn check(
    cx: &Context<'_>,
    trust: Option<&FederationTrust>,
    identity: Option<&Identity>,
) -> Vec<Finding> {
    let member = &cx.member.id;
    let mut out = Vec::new();
    let listen = cx.member.listen;
    // Is the federation listener this member's running gateway?
    let running = match try_bind(listen) {
        Bind::Free => {
            out.push(Finding::new(
                Check::Listen,
                format!("{listen} (listen)"),
                Verdict::Ok,
                "free: the gateway can listen here (it is not running)".into(),
            ));
            false
        }
        Bind::Refused(e) => {
            out.push(refused(listen, "listen", &e));
            false
        }
        Bind::InUse => {
            let answered = match (trust, identity) {
                (Some(trust), Some(id)) => match PeerClient::new(
                    trust,
                    id.chain.clone(),
                    id.key.clone_key(),
                    member.clone(),
                    MAX_ANSWER_BYTES,
                ) {
                    Ok(client) => super::peers::hello(&client, &url_of(listen))
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
                _ => Err("this gateway's certificate, key or CAs cannot be read".into()),
            };
            match answered {
                Ok(hello) if hello.status == StatusCode::OK => {
                    out.push(Finding::new(
                        Check::Listen,
                        format!("{listen} (listen)"),
                        Verdict::Ok,
                        format!(
                            "in use by {member}'s running gateway (it answers as {member}{})",
                            hello
                                .serial
                                .map(|s| format!(", manifest serial {s}"))
                                .unwrap_or_default()
                        ),
                    ));
                    true
                }
                other => {
                    let why = match other {
                        Ok(hello) => format!("it answered {}", hello.status),
                        Err(e) => e,
                    };
                    out.push(Finding::new(
                        Check::Listen,
                        format!("{listen} (listen)"),
                        Verdict::Fail,
                        format!(
                            "in use, and not by a gateway answering as {member} ({why}): the \
                             gateway cannot start while another process holds it (`ss -ltnp` \
                             names it)"
                        ),
                    ));
                    false
                }
            }
        }
    };
    let mut others = Vec::new();
    if let Some(local) = &cx.member.local {
        others.push((local.listen, "local.listen"));
    }
    if let Some(admin) = &cx.member.admin {
        others.push((admin.listen, "admin.listen"));
    }
    for (addr, field) in others {
        let subject = format!("{addr} ({field})");
        match try_bind(addr) {
            Bind::Free => out.push(Finding::new(
                Check::Listen,
                subject,
                Verdict::Ok,
                if running {
                    "free, though the gateway runs: it is not listening here (started with \
                     another configuration?)"
                        .into()
                } else {
                    "free: the gateway can listen here".into()
                },
            )),
            Bind::Refused(e) => out.push(refused(addr, field, &e)),
            Bind::InUse if !running => out.push(Finding::new(
                Check::Listen,
                subject,
                Verdict::Fail,
                "in use while this member's gateway does not run: the gateway cannot start \
                 while another process holds it (`ss -ltnp` names it)"
                    .into(),
            )),
            Bind::InUse if field == "admin.listen" => {
                out.push(probe_admin(cx, addr, trust).await);
            }
            Bind::InUse => out.push(Finding::new(
                Check::Listen,
                subject,
                Verdict::Ok,
                "in use by the running gateway".into(),
            )),
        }
    }
    out
}

fn refused(addr: SocketAddr, field: &str, e: &std::io::Error) -> Finding {
    Finding::new(
        Check::Listen,
        format!("{addr} ({field})"),
        Verdict::Fail,
        format!(
            "cannot be bound ({e}): the gateway cannot start; choose an address of this \
             machine, and a port from 1024 unless the service may bind low ports"
        ),
    )
}

/// The running gateway's admin listener: `/healthz` and `/readyz` with the first
/// operator's certificate, if it is on this machine.
async fn probe_admin(
    cx: &Context<'_>,
    addr: SocketAddr,
    trust: Option<&FederationTrust>,
) -> Finding {
    let subject = format!("{addr} (admin.listen)");
    let operator = cx.member.admin.as_ref().and_then(|a| a.operators.first());
    let layout = &cx.config.federation.pki;
    let (Some(operator), Some(trust)) = (operator, trust) else {
        return Finding::new(
            Check::Listen,
            subject,
            Verdict::Ok,
            "in use by the running gateway (no operator to ask /readyz as)".into(),
        );
    };
    let (cert, key) = (layout.staff_cert(operator), layout.staff_key(operator));
    if !cert.is_file() || !key.is_file() {
        return Finding::new(
            Check::Listen,
            subject,
            Verdict::Ok,
            format!(
                "in use by the running gateway (no certificate of {operator} at {} to ask \
                 /readyz with)",
                cert.display()
            ),
        );
    }
    let client = match PeerClient::from_files(trust, &cert, &key, cx.member.id.clone(), 64 << 10) {
        Ok(c) => c,
        Err(e) => {
            return Finding::new(
                Check::Listen,
                subject,
                Verdict::Warn,
                format!(
                    "in use by the running gateway; {operator}'s certificate cannot be used to ask /readyz: {e}"
                ),
            );
        }
    };
    let base = url_of(addr);
    let get = |path: &'static str| {
        let url = format!("{base}{path}");
        let client = client.clone();
        async move {
            client
                .call(
                    Method::GET,
                    &url,
                    "application/json",
                    Bytes::new(),
                    CALL_TIMEOUT,
                )
                .await
        }
    };
    let (health, ready) = tokio::join!(get("/healthz"), get("/readyz"));
    let verdict_of = |r: &Result<crate::client::Reply, crate::client::CallError>| match r {
        Ok(reply) if reply.status == StatusCode::OK => None,
        Ok(reply) => Some(format!(
            "{} {}",
            reply.status,
            serde_json::from_slice::<serde_json::Value>(&reply.body)
                .ok()
                .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_owned))
                .unwrap_or_default()
        )),
        Err(e) => Some(e.to_string()),
    };
    match (verdict_of(&health), verdict_of(&ready)) {
        (None, None) => Finding::new(
            Check::Listen,
            subject,
            Verdict::Ok,
            format!(
                "in use by the running gateway: /healthz ok, /readyz ready (asked as {operator})"
            ),
        ),
        (h, r) => Finding::new(
            Check::Listen,
            subject,
            Verdict::Fail,
            format!(
                "the running gateway is not ready: {}",
                [
                    h.map(|h| format!("/healthz: {h}")),
                    r.map(|r| format!("/readyz: {r}"))
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ")
            ),
        ),
    }
}

/// The open-file limit against what the listeners may hold: the gateway raises its soft
/// limit to the hard one at start, so the hard limit is what must fit.
pub(super) fn open_files(cx: &Context<'_>) -> Finding {
    let m = cx.member;
    let connections = descriptors::listener_connections(
        m.connections.max,
        m.local.is_some(),
        m.admin.as_ref().map(|a| a.max_connections),
    );
    let limit = descriptors::open_file_limit();
    let raised = OpenFileLimit {
        soft: limit.hard,
        hard: limit.hard,
    };
    let subject = "RLIMIT_NOFILE (this process's)";
    match descriptors::check_budget(raised, connections) {
        Err(shortfall) => Finding::new(
            Check::OpenFiles,
            subject,
            Verdict::Fail,
            shortfall.to_string(),
        ),
        Ok(()) => Finding::new(
            Check::OpenFiles,
            subject,
            Verdict::Ok,
            format!(
                "hard limit {} (soft {}, raised to the hard one at start) fits the {connections} \
                 connections the listeners may hold and {} descriptors more; a service manager \
                 sets its own (`LimitNOFILE=`)",
                match raised.hard {
                    Bound::Finite(n) => n.to_string(),
                    Bound::Unlimited => "unlimited".into(),
                },
                limit.soft,
                descriptors::DESCRIPTOR_MARGIN
            ),
        ),
    }
}
