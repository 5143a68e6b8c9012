//! `simpul console --member ID`: a member's command centre on an operator's workstation, as
//! `kubectl proxy` does it — a local proxy on 127.0.0.1 that forwards the page's GETs to the
//! gateway's admin listener over mutual TLS with a staff identity's certificate from the PKI
//! directory, so the browser needs no client certificate. A one-time token in the printed
//! URL buys one session cookie; every other request without it is refused.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use contracts::{MemberId, StaffId};
use gateway::client::PeerClient;
use gateway::config::Config;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::serve::StopSignal;
use crate::error::CliError;

#[derive(clap::Args)]
pub struct Args {
    /// The member whose command centre to open.
    #[arg(long)]
    member: MemberId,
    /// The staff identity to present, e.g. operator:ID:GOV:KEMLU:OPS or
    /// auditor:ID:GOV:KEMLU:AUDIT (default: the first of `admin.operators`, else of
    /// `admin.auditors`). Only an auditor can search the audit log.
    #[arg(long = "as")]
    as_staff: Option<StaffId>,
    /// The local port (default 0: any free one; the URL printed names it).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

/// How long the gateway has to answer one forwarded request.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest answer forwarded (a page of audit records with their proofs fits).
const MAX_ANSWER: usize = 8 << 20;
/// Connections the proxy holds at once; more are closed as they arrive.
const MAX_CONNECTIONS: usize = 64;
/// How long a client has to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The gateway's answer headers passed on to the browser.
const PASSED_ON: [header::HeaderName; 8] = [
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::CONTENT_SECURITY_POLICY,
    header::X_CONTENT_TYPE_OPTIONS,
    header::REFERRER_POLICY,
    header::X_FRAME_OPTIONS,
    header::ALLOW,
    header::RETRY_AFTER,
];

pub async fn run(config: &Config, args: Args) -> Result<ExitCode, CliError> {
    let mut stop = StopSignal::install()?;
    let Args {
        member,
        as_staff,
        port,
    } = args;
    let admin = super::admin_listener(config, &member)?;
    let identity = as_staff
        .or_else(|| admin.operators.first().cloned())
        .or_else(|| admin.auditors.first().cloned())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "{}: {member}'s admin.operators and admin.auditors are empty: add one, or pass --as operator:{member}:NAME",
                config.source
            ))
        })?;
    if !admin.operators.contains(&identity) && !admin.auditors.contains(&identity) {
        return Err(CliError::Usage(format!(
            "--as {identity}: not on {member}'s admin.operators or admin.auditors in {}",
            config.source
        )));
    }
    let client = super::staff_client(config, &member, &identity, MAX_ANSWER)?;
    let host = match admin.listen.ip() {
        ip if ip.is_loopback() || ip.is_unspecified() => "localhost".to_owned(),
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| CliError::Bind {
            member: member.to_string(),
            addr,
            what: " (console)",
            source,
        })?;
    let port = listener
        .local_addr()
        .map_err(|e| CliError::Process(format!("the console's address: {e}")))?
        .port();
    let token = random_hex()?;
    let proxy = Arc::new(Proxy {
        client,
        gateway: format!("https://{host}:{}", admin.listen.port()),
        port,
        cookie: format!("simpul_console_{port}"),
        token: Mutex::new(Some(token.clone())),
        session: Mutex::new(None),
    });
    println!("http://127.0.0.1:{port}/console/?token={token}");
    eprintln!(
        "{member}'s command centre as {identity}: open the URL above in a browser on this machine (its token works once); Ctrl-C stops"
    );
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            () = stop.received() => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "the console cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    continue;
                };
                let proxy = proxy.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let proxy = proxy.clone();
                        async move { Ok::<_, Infallible>(proxy.answer(req).await) }
                    });
                    let served = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "console connection ended");
                    }
                    drop(slot);
                });
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// 32 random bytes as 64 hex digits.
fn random_hex() -> Result<String, CliError> {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CliError::Process("no random bytes for the console's token".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Equal, in a time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

type Answer = Response<Full<Bytes>>;

/// A refusal of the proxy itself, as a problem document.
#[derive(Debug)]
enum Refusal {
    /// Host is not this proxy's own address (DNS rebinding).
    Host(String),
    /// Neither the session cookie nor the unused token.
    Unauthenticated(&'static str),
    /// A method the page does not use.
    Method(Method),
    /// A path the proxy does not forward.
    Path(String),
    /// The gateway cannot be reached.
    Gateway(String),
}

impl Refusal {
    fn answer(&self) -> Answer {
        let (status, code, detail) = match self {
            Refusal::Host(host) => (
                StatusCode::FORBIDDEN,
                "host-refused",
                format!("Host `{host}` is not this proxy's own address"),
            ),
            Refusal::Unauthenticated(why) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                (*why).to_owned(),
            ),
            Refusal::Method(m) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                format!("{m} is not forwarded: GET only"),
            ),
            Refusal::Path(p) => (
                StatusCode::NOT_FOUND,
                "not-found",
                format!("{p} is not forwarded: /console/, /audit/ and /healthz only"),
            ),
            Refusal::Gateway(why) => (
                StatusCode::BAD_GATEWAY,
                "gateway-unreachable",
                format!("the gateway's admin listener: {why}"),
            ),
        };
        let body = serde_json::json!({
            "type": format!("urn:simpul:console:{code}"),
            "title": status.canonical_reason().unwrap_or(""),
            "status": status.as_u16(),
            "detail": detail,
        });
        let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if matches!(self, Refusal::Method(_)) {
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
        }
        r
    }
}

struct Proxy {
    client: PeerClient,
    /// `https://host:port` of the admin listener.
    gateway: String,
    port: u16,
    /// The session cookie's name: cookies are not kept apart by port, so two consoles on
    /// one machine need two names.
    cookie: String,
    /// The one-time token, until it is used.
    token: Mutex<Option<String>>,
    /// The session the token bought.
    session: Mutex<Option<String>>,
}

impl Proxy {
    async fn answer(&self, req: Request<Incoming>) -> Answer {
        let mut answer = match self.check(&req).await {
            Ok(a) => a,
            Err(refusal) => refusal.answer(),
        };
        let h = answer.headers_mut();
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
        answer
    }

    async fn check(&self, req: &Request<Incoming>) -> Result<Answer, Refusal> {
        // First the Host: a page of another site that rebinds its name to 127.0.0.1 reaches
        // this port under its own name.
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let own = [
            format!("127.0.0.1:{}", self.port),
            format!("localhost:{}", self.port),
        ];
        if !own.iter().any(|o| o.eq_ignore_ascii_case(host)) {
            return Err(Refusal::Host(host.chars().take(100).collect()));
        }
        let path = req.uri().path();
        let query = req.uri().query().unwrap_or("");
        let token = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="));
        if !self.has_session(req.headers()) {
            let Some(offered) = token else {
                return Err(Refusal::Unauthenticated(
                    "no session: open the URL `simpul console` printed",
                ));
            };
            let session = self.redeem(offered)?;
            return Ok(self.to_clean_url(path, query, Some(&session)));
        }
        if token.is_some() {
            return Ok(self.to_clean_url(path, query, None));
        }
        if req.method() != Method::GET {
            return Err(Refusal::Method(req.method().clone()));
        }
        let forwarded = path == "/healthz"
            || path == "/console"
            || path.starts_with("/console/")
            || path.starts_with("/audit/");
        if !forwarded || path.split('/').any(|s| s == "..") || path.contains("//") {
            return Err(Refusal::Path(path.chars().take(200).collect()));
        }
        let url = match req.uri().query() {
            Some(q) => format!("{}{path}?{q}", self.gateway),
            None => format!("{}{path}", self.gateway),
        };
        let reply = self
            .client
            .call(
                Method::GET,
                &url,
                "application/json",
                Bytes::new(),
                FORWARD_TIMEOUT,
            )
            .await
            .map_err(|e| Refusal::Gateway(e.to_string()))?;
        let mut answer = Response::new(Full::new(reply.body));
        *answer.status_mut() = reply.status;
        for name in PASSED_ON {
            if let Some(v) = reply.headers.get(&name) {
                answer.headers_mut().insert(name, v.clone());
            }
        }
        // The gateway's own redirect (`/console` to `/console/`) stays on this origin.
        if let Some(location) = reply.headers.get(header::LOCATION)
            && location.as_bytes().starts_with(b"/")
        {
            answer
                .headers_mut()
                .insert(header::LOCATION, location.clone());
        }
        Ok(answer)
    }

    fn has_session(&self, headers: &HeaderMap) -> bool {
        let held = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(session) = held.as_deref() else {
            return false;
        };
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == self.cookie && same(value, session))
    }

    /// The session for the one-time token, which is gone from then on.
    fn redeem(&self, offered: &str) -> Result<String, Refusal> {
        let mut token = self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match token.as_deref() {
            Some(t) if same(t, offered) => {}
            Some(_) => return Err(Refusal::Unauthenticated("the token is wrong")),
            None => {
                return Err(Refusal::Unauthenticated(
                    "the token was used already: start `simpul console` again for a new one",
                ));
            }
        }
        let session = random_hex().map_err(|e| Refusal::Gateway(e.to_string()))?;
        *token = None;
        *self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(session.clone());
        Ok(session)
    }

    /// 303 to the same URL without its token, setting the session cookie if given.
    fn to_clean_url(&self, path: &str, query: &str, session: Option<&str>) -> Answer {
        let rest: Vec<&str> = query
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("token="))
            .collect();
        let location = if rest.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", rest.join("&"))
        };
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SEE_OTHER;
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        if let Some(session) = session
            && let Ok(v) = HeaderValue::from_str(&format!(
                "{}={session}; HttpOnly; SameSite=Strict; Path=/",
                self.cookie
            ))
        {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_digits_and_differ() {
        let (a, b) = (random_hex().unwrap(), random_hex().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn same_compares_whole_strings() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
    }
}
