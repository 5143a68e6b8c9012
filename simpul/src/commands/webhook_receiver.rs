//! `simpul demo webhook`: a member system's side of change notifications for the demo, a
//! plain HTTP/1.1 server that checks each webhook's Standard Webhooks signature and prints
//! it on one line.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gateway::webhook::{
    WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP, WebhookError, WebhookSecret,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::serve::StopSignal;
use crate::error::CliError;

#[derive(clap::Args)]
pub struct Args {
    /// Where to listen, plain HTTP: the member system's side, inside the ministry.
    #[arg(long, default_value = "127.0.0.1:7680")]
    listen: SocketAddr,
    /// The webhook secret file (`whsec_…`) the subscriber's gateway signs with; made (mode
    /// 0600) if missing.
    #[arg(long, value_name = "FILE")]
    secret_file: PathBuf,
    /// Append each webhook's line to FILE instead of printing it.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// How far a webhook's timestamp may be from this machine's clock.
const TOLERANCE_S: i64 = 300;
/// The largest body taken.
const MAX_BODY: usize = 1 << 20;
/// The most headers a request may have.
const MAX_HEADERS: usize = 64;
/// How long a client has to send a request's headers, then its body.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections held at once; more are closed as they arrive.
const MAX_CONNECTIONS: usize = 64;
/// Webhook ids remembered to mark repeats; the oldest is forgotten beyond this.
const IDS_KEPT: usize = 100_000;

pub async fn run(args: Args) -> Result<ExitCode, CliError> {
    let mut stop = StopSignal::install()?;
    let secret = WebhookSecret::load_or_create(&args.secret_file).map_err(|e| match e {
        WebhookError::Secret { path, reason } => CliError::File { path, reason },
        other => CliError::Usage(format!("--secret-file: {other}")),
    })?;
    let (out, shown): (Box<dyn Write + Send>, String) = match &args.out {
        Some(path) => (
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| CliError::File {
                        path: path.clone(),
                        reason: format!(
                            "cannot open to append webhooks (--out): {e}; name a writable file"
                        ),
                    })?,
            ),
            format!("appended to {}", path.display()),
        ),
        None => (Box::new(std::io::stdout()), "printed".to_owned()),
    };
    let listener = TcpListener::bind(args.listen).await.map_err(|e| {
        CliError::Usage(format!(
            "--listen {}: cannot listen: {e}; name a free port or an address of this machine",
            args.listen
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Process(format!("the receiver's address: {e}")))?;
    eprintln!(
        "receiving webhooks on http://{addr}/ signed with the secret in {}; each verified one is {shown}; Ctrl-C stops",
        args.secret_file.display()
    );
    serve(listener, Receiver::new(secret, out), stop.received()).await;
    Ok(ExitCode::SUCCESS)
}

/// Serves webhooks on `listener` until `stop` completes.
async fn serve(listener: TcpListener, receiver: Receiver, stop: impl Future<Output = ()>) {
    let receiver = Arc::new(receiver);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(stop);
    loop {
        let (stream, remote) = tokio::select! {
            () = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "the webhook receiver cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let receiver = receiver.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let receiver = receiver.clone();
                async move { Ok::<_, Infallible>(receiver.answer(request, remote).await) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_headers(MAX_HEADERS)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(%remote, error = %e, "webhook connection ended");
            }
            drop(slot);
        });
    }
}

/// What a webhook is checked with and where its line goes.
struct Receiver {
    secret: WebhookSecret,
    log: Mutex<Log>,
}

/// The output, and the ids seen in this run.
struct Log {
    out: Box<dyn Write + Send>,
    seen: HashSet<String>,
    order: VecDeque<String>,
}

/// Why a request is not taken; its `Display` is the one-line reason answered.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("only POST is taken, not {0}")]
    Method(Method),
    #[error("the body is larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("the body did not arrive within {} s", BODY_TIMEOUT.as_secs())]
    SlowBody,
    #[error("the body cannot be read: {0}")]
    Unreadable(String),
    #[error("the {0} header is missing or not text")]
    Header(&'static str),
    #[error("the {WEBHOOK_TIMESTAMP} header is not an integer")]
    Timestamp,
    #[error("{0}")]
    Unverified(WebhookError),
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the webhook cannot be recorded: {0}")]
    Unrecorded(std::io::Error),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::SlowBody => StatusCode::REQUEST_TIMEOUT,
            Refusal::Unreadable(_) | Refusal::NotJson(_) => StatusCode::BAD_REQUEST,
            Refusal::Header(_) | Refusal::Timestamp | Refusal::Unverified(_) => {
                StatusCode::UNAUTHORIZED
            }
            Refusal::Unrecorded(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl Receiver {
    fn new(secret: WebhookSecret, out: Box<dyn Write + Send>) -> Receiver {
        Receiver {
            secret,
            log: Mutex::new(Log {
                out,
                seen: HashSet::new(),
                order: VecDeque::new(),
            }),
        }
    }

    /// 204 for a webhook verified and recorded, else the refusal's status and reason.
    async fn answer(
        &self,
        request: Request<Incoming>,
        remote: SocketAddr,
    ) -> Response<Full<Bytes>> {
        match self.take(request).await {
            Ok(()) => {
                let mut answer = Response::new(Full::default());
                *answer.status_mut() = StatusCode::NO_CONTENT;
                answer
            }
            Err(refusal) => {
                tracing::warn!(%remote, "webhook refused: {refusal}");
                let mut answer = Response::new(Full::new(Bytes::from(format!("{refusal}\n"))));
                *answer.status_mut() = refusal.status();
                answer.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                answer
            }
        }
    }

    /// Reads, verifies and records one webhook.
    async fn take(&self, request: Request<Incoming>) -> Result<(), Refusal> {
        let (parts, body) = request.into_parts();
        if parts.method != Method::POST {
            return Err(Refusal::Method(parts.method));
        }
        let body = read_body(body).await?;
        let id = header_text(&parts.headers, WEBHOOK_ID)?;
        let timestamp = header_text(&parts.headers, WEBHOOK_TIMESTAMP)?
            .parse::<i64>()
            .map_err(|_| Refusal::Timestamp)?;
        let signature = header_text(&parts.headers, WEBHOOK_SIGNATURE)?;
        self.secret
            .verify(id, timestamp, signature, &body, unix_now(), TOLERANCE_S)
            .map_err(Refusal::Unverified)?;
        let json = compact_json(&body)?;
        self.record(id, &json)
    }

    /// Writes the webhook's line, marking an id seen before in this run as a repeat: a
    /// redelivery is shown, not hidden.
    fn record(&self, id: &str, json: &str) -> Result<(), Refusal> {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let repeat = log.seen.contains(id);
        let line = if repeat {
            format!("{id} (repeat) {json}\n")
        } else {
            format!("{id} {json}\n")
        };
        log.out
            .write_all(line.as_bytes())
            .and_then(|()| log.out.flush())
            .map_err(Refusal::Unrecorded)?;
        if !repeat {
            if log.order.len() >= IDS_KEPT
                && let Some(oldest) = log.order.pop_front()
            {
                log.seen.remove(&oldest);
            }
            log.seen.insert(id.to_owned());
            log.order.push_back(id.to_owned());
        }
        Ok(())
    }
}

/// The whole body, at most [`MAX_BODY`] bytes, within [`BODY_TIMEOUT`].
async fn read_body(body: Incoming) -> Result<Bytes, Refusal> {
    // A content-length over the bound is refused before a byte of the body is read.
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Err(Refusal::TooLarge);
    }
    let collected = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect())
        .await
        .map_err(|_| Refusal::SlowBody)?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Refusal::TooLarge),
        Err(e) => Err(Refusal::Unreadable(e.to_string())),
    }
}

/// The text of header `name`.
fn header_text<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, Refusal> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or(Refusal::Header(name))
}

/// The JSON `body` on one line, as it arrived but for the whitespace between tokens.
fn compact_json(body: &[u8]) -> Result<String, Refusal> {
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map_err(|e| Refusal::NotJson(e.to_string()))?;
    let mut out = Vec::with_capacity(body.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in body {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            in_string = b == b'"';
            out.push(b);
        }
    }
    // Valid JSON is UTF-8, and only ASCII whitespace outside strings was taken out.
    String::from_utf8(out).map_err(|e| Refusal::NotJson(e.to_string()))
}

/// This machine's clock in unix seconds.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use gateway::webhook::{WebhookClient, send};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// A receiver on a free port, its URL and its output.
    async fn receiver(secret: WebhookSecret) -> (http::Uri, Shared) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let out = Shared::default();
        tokio::spawn(serve(
            listener,
            Receiver::new(secret, Box::new(out.clone())),
            std::future::pending(),
        ));
        (
            format!("http://127.0.0.1:{port}/member/hooks")
                .parse()
                .unwrap(),
            out,
        )
    }

    /// A raw HTTP/1.1 request's answer: its status line and body.
    async fn raw(url: &http::Uri, request: &str) -> (String, String) {
        let host = url.authority().unwrap().as_str();
        let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let status = answer.lines().next().unwrap().to_owned();
        let body = answer.split("\r\n\r\n").nth(1).unwrap().to_owned();
        (status, body)
    }

    const EVENT: &str = r#"{"event": {"type": "placement.changed", "note": "a b\n\"c\""},
  "jws": "eyJ.x.y", "provider": "ID:GOV:BP2MI"}"#;
    const COMPACT: &str = r#"{"event":{"type":"placement.changed","note":"a b\n\"c\""},"jws":"eyJ.x.y","provider":"ID:GOV:BP2MI"}"#;

    async fn deliver(
        url: &http::Uri,
        secret: &WebhookSecret,
        id: &str,
    ) -> Result<(), gateway::webhook::WebhookError> {
        send(
            &WebhookClient::new(rustls::RootCertStore::empty()),
            url,
            secret,
            id,
            unix_now(),
            Bytes::from(EVENT),
            Duration::from_secs(5),
        )
        .await
    }

    #[tokio::test]
    async fn a_signed_webhook_is_printed_with_its_id_and_a_redelivery_is_marked_a_repeat() {
        let secret = WebhookSecret::generate();
        let (url, out) = receiver(secret.clone()).await;
        deliver(&url, &secret, "evt_1").await.unwrap();
        deliver(&url, &secret, "evt_2").await.unwrap();
        deliver(&url, &secret, "evt_1").await.unwrap();
        assert_eq!(
            out.lines(),
            [
                format!("evt_1 {COMPACT}"),
                format!("evt_2 {COMPACT}"),
                format!("evt_1 (repeat) {COMPACT}"),
            ]
        );
    }

    #[tokio::test]
    async fn a_webhook_signed_with_another_secret_gets_401_and_is_not_printed() {
        let (url, out) = receiver(WebhookSecret::generate()).await;
        let e = deliver(&url, &WebhookSecret::generate(), "evt_1")
            .await
            .unwrap_err();
        assert!(
            matches!(&e, WebhookError::Status { status, answer, .. } if *status == StatusCode::UNAUTHORIZED && answer == "no v1 signature in webhook-signature matches (1 tried)"),
            "{e}"
        );
        assert!(out.lines().is_empty());
    }

    #[tokio::test]
    async fn a_stale_webhook_gets_401_naming_the_tolerance() {
        let secret = WebhookSecret::generate();
        let (url, _) = receiver(secret.clone()).await;
        let then = unix_now() - 301;
        let body = "{}";
        let request = format!(
            "POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n{WEBHOOK_ID}: evt_1\r\n{WEBHOOK_TIMESTAMP}: {then}\r\n{WEBHOOK_SIGNATURE}: {}\r\n\r\n{body}",
            body.len(),
            secret.sign("evt_1", then, body.as_bytes())
        );
        let (status, reason) = raw(&url, &request).await;
        assert!(status.contains("401"), "{status}");
        assert!(reason.contains("more than 300 s from now"), "{reason}");
    }

    #[tokio::test]
    async fn a_request_without_the_headers_gets_401_naming_the_header() {
        let (url, _) = receiver(WebhookSecret::generate()).await;
        let (status, reason) = raw(
            &url,
            "POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}",
        )
        .await;
        assert!(status.contains("401"), "{status}");
        assert_eq!(reason, "the webhook-id header is missing or not text\n");
    }

    #[tokio::test]
    async fn a_get_gets_405_and_a_body_over_1_mib_gets_413() {
        let (url, _) = receiver(WebhookSecret::generate()).await;
        let (status, _) = raw(
            &url,
            "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(status.contains("405"), "{status}");
        let request = format!(
            "POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        let (status, _) = raw(&url, &request).await;
        assert!(status.contains("413"), "{status}");
    }

    #[tokio::test]
    async fn too_many_headers_are_refused() {
        let (url, _) = receiver(WebhookSecret::generate()).await;
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: y\r\n")).collect();
        let request = format!("POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{many}\r\n");
        let (status, _) = raw(&url, &request).await;
        assert!(status.contains("431"), "{status}");
    }

    #[test]
    fn a_verified_body_that_is_not_json_is_refused() {
        assert!(matches!(
            compact_json(b"{\"a\": 1"),
            Err(Refusal::NotJson(_))
        ));
        assert_eq!(compact_json(b" [1, \"x y\" ]\n").unwrap(), r#"[1,"x y"]"#);
    }
}
