//! Standard Webhooks (standardwebhooks.com) for change notifications: the shared secret, the
//! `v1` HMAC-SHA256 signature and its check, and the delivery of one webhook to a member system.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::{constant_time, hmac};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::client::WebPkiServerVerifier;
use rustls::{ClientConfig, RootCertStore};

use crate::client::error_chain;

/// The header naming the webhook: the same on every redelivery, so a receiver can drop
/// repeats.
pub const WEBHOOK_ID: &str = "webhook-id";
/// The header holding when this attempt was signed, in unix seconds.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// The header holding the space-separated signatures (`v1,<base64>`).
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// The prefix of a secret written as text.
const SECRET_PREFIX: &str = "whsec_";
/// The version tag of an HMAC-SHA256 signature.
const V1: &str = "v1";
/// The bounds the specification sets on a secret's length, in bytes.
const SECRET_MIN: usize = 24;
const SECRET_MAX: usize = 64;
/// The length of a secret [`WebhookSecret::generate`] makes.
const SECRET_GENERATED: usize = 32;
/// The most of a receiver's answer read: it only says whether the webhook was taken.
const MAX_ANSWER: usize = 64 << 10;
/// The most of a refusal's answer kept in [`WebhookError::Status`].
const ANSWER_SHOWN: usize = 200;

/// Why a secret cannot be used, a webhook cannot be delivered or a received one is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The text is not a `whsec_` secret of 24 to 64 bytes.
    #[error("webhook secret: {reason}")]
    InvalidSecret {
        /// What is wrong with it.
        reason: String,
    },
    /// The secret file cannot be read, made, or holds no usable secret.
    #[error("{}: {reason}", path.display())]
    Secret {
        /// The file.
        path: PathBuf,
        /// What is wrong with it, and what to do.
        reason: String,
    },
    /// The URL cannot be sent to: not http or https, or https without trusted roots.
    #[error("{url}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The webhook id cannot be sent: it would be ambiguous in the signed content.
    #[error("webhook id `{id}`: {reason}")]
    Id {
        /// The id.
        id: String,
        /// Why.
        reason: &'static str,
    },
    /// The connection or the TLS handshake failed, or the connection broke.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
    /// The receiver did not answer within the time given.
    #[error("no answer from {url} within {ms} ms")]
    Timeout {
        /// Where.
        url: String,
        /// The time given.
        ms: u64,
    },
    /// The receiver answered, but not with 2xx: the webhook was not taken.
    #[error("{url} answered {status}{}", if answer.is_empty() { String::new() } else { format!(": {answer}") })]
    Status {
        /// Where.
        url: String,
        /// The answer's status.
        status: StatusCode,
        /// The start of the answer's first line (the receiver's reason), if any.
        answer: String,
    },
    /// `webhook-signature` holds no `v1,` signature.
    #[error("webhook-signature holds no v1 signature")]
    NoSignature,
    /// No `v1,` signature in `webhook-signature` is the body's under this secret.
    #[error("no v1 signature in webhook-signature matches ({count} tried)")]
    BadSignature {
        /// How many `v1,` signatures were tried.
        count: usize,
    },
    /// The signature is right but `webhook-timestamp` is too far from now: a replay, or a
    /// clock off.
    #[error("webhook-timestamp {timestamp} is more than {tolerance_s} s from now ({now})")]
    OutsideTolerance {
        /// The timestamp received.
        timestamp: i64,
        /// The receiver's time.
        now: i64,
        /// The tolerance.
        tolerance_s: i64,
    },
}

/// A webhook secret: 24–64 random bytes; written and read as `whsec_<base64>`.
#[derive(Clone)]
pub struct WebhookSecret {
    bytes: Vec<u8>,
    key: hmac::Key,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookSecret({} bytes)", self.bytes.len())
    }
}

impl WebhookSecret {
    fn from_bytes(bytes: Vec<u8>) -> WebhookSecret {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &bytes);
        WebhookSecret { bytes, key }
    }

    /// A new secret of 32 random bytes.
    ///
    /// # Panics
    /// Never in practice: AWS-LC's `RAND_bytes` returns success or aborts the process.
    #[must_use]
    pub fn generate() -> WebhookSecret {
        let mut bytes = vec![0u8; SECRET_GENERATED];
        #[allow(clippy::expect_used)]
        aws_lc_rs::rand::fill(&mut bytes).expect("AWS-LC's RAND_bytes always returns success");
        WebhookSecret::from_bytes(bytes)
    }

    /// Reads `whsec_<base64>`, around which whitespace (a file's newline) is ignored.
    ///
    /// # Errors
    /// [`WebhookError::InvalidSecret`] without the `whsec_` prefix, with bad base64, or with
    /// fewer than 24 or more than 64 bytes.
    pub fn parse(text: &str) -> Result<WebhookSecret, WebhookError> {
        let invalid = |reason: String| WebhookError::InvalidSecret { reason };
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(|| invalid(format!("does not start with `{SECRET_PREFIX}`")))?;
        let bytes = STANDARD.decode(encoded).map_err(|e| {
            invalid(format!(
                "the part after `{SECRET_PREFIX}` is not base64: {e}"
            ))
        })?;
        if !(SECRET_MIN..=SECRET_MAX).contains(&bytes.len()) {
            return Err(invalid(format!(
                "holds {} bytes; {SECRET_MIN} to {SECRET_MAX} are needed",
                bytes.len()
            )));
        }
        Ok(WebhookSecret::from_bytes(bytes))
    }

    /// The secret as `whsec_<base64>`, as [`WebhookSecret::parse`] reads it.
    #[must_use]
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.bytes))
    }

    /// Reads the secret file, creating it (mode 0600, parent dirs) with a generated secret if
    /// missing, as the audit store does its HMAC secret; refuses a file readable by group or
    /// others.
    ///
    /// # Errors
    /// [`WebhookError::Secret`] naming the file: accessible to others, unreadable, not a
    /// secret, or not creatable.
    pub fn load_or_create(path: &Path) -> Result<WebhookSecret, WebhookError> {
        let err = |reason: String| WebhookError::Secret {
            path: path.to_owned(),
            reason,
        };
        contracts::keyfile::check_private(path).map_err(err)?;
        match std::fs::read_to_string(path) {
            Ok(text) => {
                return WebhookSecret::parse(&text).map_err(|e| match e {
                    WebhookError::InvalidSecret { reason } => err(format!(
                        "{reason}: it must hold one `whsec_<base64>` line (delete it to have a new one made)"
                    )),
                    other => other,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(format!("cannot read: {e}"))),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(format!("cannot create its directory: {e}")))?;
        }
        let secret = WebhookSecret::generate();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(path) {
            Ok(mut file) => {
                use std::io::Write;
                file.write_all(format!("{}\n", secret.to_text()).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| err(format!("cannot write: {e}")))?;
                Ok(secret)
            }
            // Another process made it between the read and now: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
                WebhookSecret::parse(&text).map_err(|e| err(e.to_string()))
            }
            Err(e) => Err(err(format!("cannot create: {e}"))),
        }
    }

    /// The HMAC-SHA256 tag of `{id}.{timestamp}.{body}`.
    fn tag(&self, id: &str, timestamp: i64, body: &[u8]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(id.as_bytes());
        context.update(b".");
        context.update(timestamp.to_string().as_bytes());
        context.update(b".");
        context.update(body);
        context.sign()
    }

    /// `v1,<base64 of HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`
    #[must_use]
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!(
            "{V1},{}",
            STANDARD.encode(self.tag(id, timestamp, body).as_ref())
        )
    }

    /// Checks the headers of a received webhook: `webhook-signature` holds at least one `v1,`
    /// signature that matches (compared in constant time), and the timestamp is within
    /// `tolerance_s` of `now` (unix seconds).
    ///
    /// # Errors
    /// [`WebhookError::NoSignature`], [`WebhookError::BadSignature`], or, for an authentic
    /// webhook, [`WebhookError::OutsideTolerance`].
    pub fn verify(
        &self,
        id: &str,
        timestamp: i64,
        signature_header: &str,
        body: &[u8],
        now: i64,
        tolerance_s: i64,
    ) -> Result<(), WebhookError> {
        // Signature before time: a forgery is called a forgery, and "outside tolerance" then
        // only ever means an authentic webhook that is old (a replay) or a clock that is off.
        let tag = self.tag(id, timestamp, body);
        let mut count = 0;
        let mut matched = false;
        for signature in signature_header
            .split(' ')
            .filter_map(|s| s.split_once(','))
            .filter(|(version, _)| *version == V1)
            .map(|(_, signature)| signature)
        {
            count += 1;
            // Every candidate is compared, so the time taken does not say which one matched.
            let decoded = STANDARD.decode(signature).unwrap_or_default();
            matched |= constant_time::verify_slices_are_equal(&decoded, tag.as_ref()).is_ok();
        }
        if count == 0 {
            return Err(WebhookError::NoSignature);
        }
        if !matched {
            return Err(WebhookError::BadSignature { count });
        }
        let tolerance = u64::try_from(tolerance_s).unwrap_or(0);
        if now.abs_diff(timestamp) > tolerance {
            return Err(WebhookError::OutsideTolerance {
                timestamp,
                now,
                tolerance_s,
            });
        }
        Ok(())
    }
}

/// The HTTP client webhooks are delivered with: built once, its connections pooled; https
/// only to a server whose certificate the given roots vouch for.
#[derive(Clone, Debug)]
pub struct WebhookClient {
    http: Client<HttpConnector, Full<Bytes>>,
    /// The https client, or why https is refused.
    https: Result<Client<HttpsConnector<HttpConnector>, Full<Bytes>>, String>,
}

impl WebhookClient {
    /// A client that verifies an https receiver's certificate against `roots`; with no
    /// roots, it refuses https URLs (plain http still goes).
    #[must_use]
    pub fn new(roots: RootCertStore) -> WebhookClient {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let https = tls_config(roots).map(|tls| {
            let mut tcp = http.clone();
            tcp.enforce_http(false);
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_only()
                .enable_http1()
                .wrap_connector(tcp);
            pooled().build(connector)
        });
        WebhookClient {
            http: pooled().build(http),
            https,
        }
    }
}

/// A client builder keeping idle connections for a minute.
fn pooled() -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder.pool_idle_timeout(Duration::from_secs(60));
    builder
}

/// TLS 1.2 or 1.3 with the gateway's crypto provider, the server checked against `roots`,
/// no client certificate.
fn tls_config(roots: RootCertStore) -> Result<ClientConfig, String> {
    if roots.is_empty() {
        return Err("https is refused: no trusted root certificates were given".into());
    }
    let provider = crate::tls::provider();
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("https is refused: the trusted roots cannot be used: {e}"))?;
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("https is refused: {e}"))?
        .with_webpki_verifier(verifier)
        .with_no_client_auth())
}

/// POSTs one webhook: `body` (JSON) to `url` (http:// or https://) with content-type
/// application/json and the three headers, within `timeout`. Ok only for a 2xx answer. For
/// https, the server certificate is verified against the client's roots. Reads at most
/// 64 KiB of the answer.
///
/// # Errors
/// [`WebhookError::Url`] for another scheme or https without roots, [`WebhookError::Id`]
/// for an id holding `.` or unfit for a header, [`WebhookError::Unreachable`],
/// [`WebhookError::Timeout`], or [`WebhookError::Status`] for an answer other than 2xx.
pub async fn send(
    client: &WebhookClient,
    url: &Uri,
    secret: &WebhookSecret,
    id: &str,
    timestamp: i64,
    body: Bytes,
    timeout: Duration,
) -> Result<(), WebhookError> {
    let shown = url.to_string();
    let bad_url = |reason: String| WebhookError::Url {
        url: shown.clone(),
        reason,
    };
    let https = match url.scheme_str() {
        Some("http") => None,
        Some("https") => Some(client.https.as_ref().map_err(|e| bad_url(e.clone()))?),
        _ => {
            return Err(bad_url(
                "only http:// and https:// URLs can be sent to".into(),
            ));
        }
    };
    // `{id}.{timestamp}.{body}` is only unambiguous when the id holds no `.`.
    if id.is_empty() || id.contains('.') {
        return Err(WebhookError::Id {
            id: id.to_owned(),
            reason: "must be non-empty and hold no `.`",
        });
    }
    let signature = secret.sign(id, timestamp, &body);
    let request = Request::builder()
        .method(Method::POST)
        .uri(url.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(WEBHOOK_ID, id)
        .header(WEBHOOK_TIMESTAMP, timestamp.to_string())
        .header(WEBHOOK_SIGNATURE, signature)
        .body(Full::new(body))
        .map_err(|_| WebhookError::Id {
            id: id.to_owned(),
            reason: "cannot be sent in a header",
        })?;
    let work = async {
        let answer = match https {
            Some(client) => client.request(request).await,
            None => client.http.request(request).await,
        }
        .map_err(|e| WebhookError::Unreachable {
            url: shown.clone(),
            reason: error_chain(&e),
        })?;
        let status = answer.status();
        let text = read_start(answer.into_body()).await;
        if status.is_success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&text);
        let first = text.lines().next().unwrap_or_default().trim();
        Err(WebhookError::Status {
            url: shown.clone(),
            status,
            answer: first.chars().take(ANSWER_SHOWN).collect(),
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(WebhookError::Timeout {
                url: shown.clone(),
                ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            })
        })
}

/// The first [`MAX_ANSWER`] bytes of an answer: the status says whether the webhook was
/// taken, so an answer cut short or broken off is not an error.
async fn read_start(mut body: hyper::body::Incoming) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < MAX_ANSWER {
        let Some(Ok(frame)) = body.frame().await else {
            break;
        };
        if let Ok(data) = frame.into_data() {
            let room = MAX_ANSWER - out.len();
            out.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use contracts::unix_now as now;
    use http::Response;
    use hyper::body::Incoming;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;

    /// The test vector of the Svix and Standard Webhooks libraries' tests (PHP, JavaScript,
    /// Python…): reproducing it is what says their verifiers take what we send.
    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TIMESTAMP: i64 = 1_614_265_330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn vector() -> WebhookSecret {
        WebhookSecret::parse(VECTOR_SECRET).unwrap()
    }

    #[test]
    fn the_svix_test_vector_is_reproduced() {
        assert_eq!(
            vector().sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY),
            VECTOR_SIGNATURE
        );
    }

    #[test]
    fn the_standard_webhooks_rust_library_test_vector_is_reproduced() {
        // libraries/rust/src/lib.rs, `test_sign`, in standard-webhooks/standard-webhooks.
        let secret = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            secret.sign(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1_649_367_553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn the_test_vector_verifies_at_its_own_time() {
        vector()
            .verify(
                VECTOR_ID,
                VECTOR_TIMESTAMP,
                VECTOR_SIGNATURE,
                VECTOR_BODY,
                VECTOR_TIMESTAMP,
                300,
            )
            .unwrap();
    }

    #[test]
    fn a_secret_is_written_as_it_is_read_and_trimmed() {
        let secret = WebhookSecret::generate();
        let text = secret.to_text();
        assert!(text.starts_with("whsec_"), "{text}");
        let again = WebhookSecret::parse(&format!("  {text}\n")).unwrap();
        assert_eq!(again.to_text(), text);
        assert_eq!(again.bytes.len(), 32);
        assert_eq!(vector().to_text(), VECTOR_SECRET);
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let secret = vector();
        let shown = format!("{secret:?}");
        assert_eq!(shown, "WebhookSecret(24 bytes)");
        assert!(!shown.contains("MfKQ"));
    }

    #[test]
    fn a_secret_without_the_prefix_is_refused() {
        let e = WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err();
        assert!(e.to_string().contains("whsec_"), "{e}");
    }

    #[test]
    fn a_secret_with_bad_base64_is_refused() {
        let e = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS!").unwrap_err();
        assert!(e.to_string().contains("not base64"), "{e}");
    }

    #[test]
    fn a_secret_shorter_than_24_or_longer_than_64_bytes_is_refused() {
        for (len, ok) in [(23, false), (24, true), (64, true), (65, false)] {
            let text = format!("whsec_{}", STANDARD.encode(vec![7u8; len]));
            let parsed = WebhookSecret::parse(&text);
            assert_eq!(parsed.is_ok(), ok, "{len} bytes: {parsed:?}");
            if let Err(e) = parsed {
                assert!(e.to_string().contains(&format!("holds {len} bytes")), "{e}");
            }
        }
    }

    #[test]
    fn one_matching_signature_among_several_verifies() {
        let header = format!(
            "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ= v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg== {VECTOR_SIGNATURE} v1,9DfC1c3eeOrXB6w/5dIDydLNQaEyww5KalE5jLBZucE="
        );
        vector()
            .verify(
                VECTOR_ID,
                VECTOR_TIMESTAMP,
                &header,
                VECTOR_BODY,
                VECTOR_TIMESTAMP,
                300,
            )
            .unwrap();
    }

    #[test]
    fn no_matching_signature_is_a_bad_signature_counting_the_v1_ones() {
        let header = "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ= v1,not-base64 v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let e = vector()
            .verify(
                VECTOR_ID,
                VECTOR_TIMESTAMP,
                header,
                VECTOR_BODY,
                VECTOR_TIMESTAMP,
                300,
            )
            .unwrap_err();
        assert!(matches!(e, WebhookError::BadSignature { count: 2 }), "{e}");
    }

    #[test]
    fn a_changed_body_id_or_timestamp_is_a_bad_signature() {
        let secret = vector();
        let check = |id: &str, timestamp: i64, body: &[u8]| {
            secret.verify(id, timestamp, VECTOR_SIGNATURE, body, VECTOR_TIMESTAMP, 300)
        };
        for e in [
            check(VECTOR_ID, VECTOR_TIMESTAMP, br#"{"test": 2432232315}"#),
            check("msg_other", VECTOR_TIMESTAMP, VECTOR_BODY),
            check(VECTOR_ID, VECTOR_TIMESTAMP + 1, VECTOR_BODY),
        ] {
            assert!(
                matches!(e, Err(WebhookError::BadSignature { count: 1 })),
                "{e:?}"
            );
        }
    }

    #[test]
    fn another_secret_is_a_bad_signature() {
        let e = WebhookSecret::generate()
            .verify(
                VECTOR_ID,
                VECTOR_TIMESTAMP,
                VECTOR_SIGNATURE,
                VECTOR_BODY,
                VECTOR_TIMESTAMP,
                300,
            )
            .unwrap_err();
        assert!(matches!(e, WebhookError::BadSignature { .. }), "{e}");
    }

    #[test]
    fn a_header_without_v1_signatures_is_no_signature() {
        for header in [
            "",
            "v1a,abc",
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ] {
            let e = vector()
                .verify(
                    VECTOR_ID,
                    VECTOR_TIMESTAMP,
                    header,
                    VECTOR_BODY,
                    VECTOR_TIMESTAMP,
                    300,
                )
                .unwrap_err();
            assert!(matches!(e, WebhookError::NoSignature), "{header:?}: {e}");
        }
    }

    #[test]
    fn a_timestamp_outside_the_tolerance_either_way_is_refused_and_its_edge_passes() {
        let check = |now: i64| {
            vector().verify(
                VECTOR_ID,
                VECTOR_TIMESTAMP,
                VECTOR_SIGNATURE,
                VECTOR_BODY,
                now,
                300,
            )
        };
        assert!(check(VECTOR_TIMESTAMP + 300).is_ok());
        assert!(check(VECTOR_TIMESTAMP - 300).is_ok());
        for now in [VECTOR_TIMESTAMP + 301, VECTOR_TIMESTAMP - 301] {
            let e = check(now).unwrap_err();
            assert!(
                matches!(e, WebhookError::OutsideTolerance { timestamp: VECTOR_TIMESTAMP, now: n, tolerance_s: 300 } if n == now),
                "{e}"
            );
        }
        // Extreme clocks do not overflow.
        assert!(matches!(
            check(i64::MIN),
            Err(WebhookError::OutsideTolerance { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn the_secret_file_is_created_0600_with_its_directories_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhooks/kemlu.secret");
        let made = WebhookSecret::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", made.to_text()));
        let read = WebhookSecret::load_or_create(&path).unwrap();
        assert_eq!(read.to_text(), made.to_text());
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhook.secret");
        WebhookSecret::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = WebhookSecret::load_or_create(&path).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, WebhookError::Secret { .. }), "{text}");
        assert!(text.contains("webhook.secret"), "{text}");
        assert!(text.contains("chmod 600"), "{text}");
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_holding_no_secret_is_refused_naming_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhook.secret");
        std::fs::write(&path, "hunter2\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = WebhookSecret::load_or_create(&path).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("webhook.secret"), "{text}");
        assert!(text.contains("whsec_"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    /// One request as a receiver saw it.
    struct Received {
        headers: http::HeaderMap,
        body: Bytes,
    }

    /// Serves `listener` with `status` as every answer (and a reason line for refusals),
    /// passing on each request received.
    fn receive(
        listener: TcpListener,
        status: StatusCode,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> mpsc::UnboundedReceiver<Received> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            tx.send(Received {
                                headers: parts.headers,
                                body,
                            })
                            .unwrap();
                            let reason = if status.is_success() {
                                ""
                            } else {
                                "something broke\nsecond line"
                            };
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from(reason)))
                                    .unwrap(),
                            )
                        }
                    });
                    match tls {
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else {
                                return;
                            };
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        None => {
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        rx
    }

    /// A listener on a free loopback port, and the port.
    async fn local() -> (TcpListener, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, port)
    }

    /// A receiver on a free loopback port answering `status`, over TLS from `tls` when
    /// given: the URL of `path` on it (`https://localhost:…` with TLS, else
    /// `http://127.0.0.1:…`), and what it receives.
    async fn receiver(
        status: StatusCode,
        tls: Option<tokio_rustls::TlsAcceptor>,
        path: &str,
    ) -> (Uri, mpsc::UnboundedReceiver<Received>) {
        let (listener, port) = local().await;
        let url = match tls {
            Some(_) => format!("https://localhost:{port}{path}"),
            None => format!("http://127.0.0.1:{port}{path}"),
        };
        (url.parse().unwrap(), receive(listener, status, tls))
    }

    /// The URL of `/` on `port` of the loopback, over HTTP.
    fn url_of(port: u16) -> Uri {
        format!("http://127.0.0.1:{port}/").parse().unwrap()
    }

    /// Sends [`BODY`] as `evt_1` to `url` now, with a fresh secret and no roots of trust,
    /// waiting `timeout` for the answer.
    async fn send_one(url: &Uri, timeout: Duration) -> Result<(), WebhookError> {
        send(
            &WebhookClient::new(RootCertStore::empty()),
            url,
            &WebhookSecret::generate(),
            "evt_1",
            now(),
            Bytes::from(BODY),
            timeout,
        )
        .await
    }

    const BODY: &str = r#"{"event":{"type":"placement.changed"},"provider":"ID:GOV:BP2MI"}"#;

    #[tokio::test]
    async fn a_sent_webhook_arrives_with_its_headers_and_verifies() {
        let (url, mut received) = receiver(StatusCode::NO_CONTENT, None, "/hooks/simpul").await;
        let secret = WebhookSecret::generate();
        let client = WebhookClient::new(RootCertStore::empty());
        let sent_at = now();
        send(
            &client,
            &url,
            &secret,
            "evt_1",
            sent_at,
            Bytes::from(BODY),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let got = received.recv().await.unwrap();
        let header = |name: &str| got.headers.get(name).unwrap().to_str().unwrap().to_owned();
        assert_eq!(header("content-type"), "application/json");
        assert_eq!(header(WEBHOOK_ID), "evt_1");
        assert_eq!(header(WEBHOOK_TIMESTAMP), sent_at.to_string());
        assert_eq!(got.body, BODY);
        secret
            .verify(
                &header(WEBHOOK_ID),
                header(WEBHOOK_TIMESTAMP).parse().unwrap(),
                &header(WEBHOOK_SIGNATURE),
                &got.body,
                now(),
                300,
            )
            .unwrap();
    }

    #[tokio::test]
    async fn a_500_is_an_error_with_the_answers_first_line() {
        let (url, _received) = receiver(StatusCode::INTERNAL_SERVER_ERROR, None, "/").await;
        let e = send_one(&url, Duration::from_secs(5)).await.unwrap_err();
        assert!(
            matches!(&e, WebhookError::Status { status, answer, .. } if *status == StatusCode::INTERNAL_SERVER_ERROR && answer == "something broke"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_receiver_that_does_not_answer_in_time_is_a_timeout() {
        let (listener, port) = local().await;
        // Accepted by the kernel, never answered.
        let e = send_one(&url_of(port), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(e, WebhookError::Timeout { ms: 200, .. }), "{e}");
        drop(listener);
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let (listener, port) = local().await;
        drop(listener);
        let e = send_one(&url_of(port), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, WebhookError::Unreachable { .. }), "{e}");
    }

    #[tokio::test]
    async fn https_without_roots_another_scheme_and_a_dotted_id_are_refused_before_sending() {
        let client = WebhookClient::new(RootCertStore::empty());
        let secret = WebhookSecret::generate();
        let attempt = |url: &'static str, id: &'static str| {
            let (client, secret) = (&client, &secret);
            async move {
                send(
                    client,
                    &url.parse().unwrap(),
                    secret,
                    id,
                    now(),
                    Bytes::from(BODY),
                    Duration::from_secs(1),
                )
                .await
                .unwrap_err()
            }
        };
        let e = attempt("https://127.0.0.1:9/", "evt_1").await;
        assert!(
            matches!(&e, WebhookError::Url { reason, .. } if reason.contains("no trusted root")),
            "{e}"
        );
        let e = attempt("ftp://127.0.0.1:9/", "evt_1").await;
        assert!(matches!(e, WebhookError::Url { .. }), "{e}");
        let e = attempt("http://127.0.0.1:9/", "evt.1").await;
        assert!(matches!(e, WebhookError::Id { .. }), "{e}");
    }

    /// A TLS acceptor for `localhost` with a certificate from a fresh CA, and that CA.
    fn tls_server() -> (tokio_rustls::TlsAcceptor, CertificateDer<'static>) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        (
            tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            ca_cert.der().clone(),
        )
    }

    #[tokio::test]
    async fn https_goes_to_a_server_the_roots_vouch_for_and_not_to_another() {
        let (acceptor, ca) = tls_server();
        let (url, mut received) = receiver(StatusCode::OK, Some(acceptor), "/hook").await;
        let secret = WebhookSecret::generate();
        let mut roots = RootCertStore::empty();
        roots.add(ca).unwrap();
        send(
            &WebhookClient::new(roots),
            &url,
            &secret,
            "evt_tls",
            now(),
            Bytes::from(BODY),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let got = received.recv().await.unwrap();
        assert_eq!(got.headers.get(WEBHOOK_ID).unwrap(), "evt_tls");

        let (_, other_ca) = tls_server();
        let mut other = RootCertStore::empty();
        other.add(other_ca).unwrap();
        let e = send(
            &WebhookClient::new(other),
            &url,
            &secret,
            "evt_tls",
            now(),
            Bytes::from(BODY),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, WebhookError::Unreachable { reason, .. } if reason.contains("certificate")),
            "{e}"
        );
    }
}
