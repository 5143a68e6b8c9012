//! The HTTPS client a gateway uses to reach a peer gateway (and the `simpul query` CLI uses
//! to reach its own): mutual TLS, the server's identity checked, bounded answers.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use contracts::MemberId;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::tls::{FederationTrust, TlsError, client_config, load_certs, load_key};

/// Why a call to a peer failed before an HTTP answer could be read.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The deadline passed.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// The connection or TLS handshake failed, or the connection broke.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
    /// The answer was larger than allowed.
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    /// The request could not be built (a bad URL).
    #[error("bad request: {0}")]
    Request(String),
}

/// An answer: status, headers and the whole (bounded) body.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// A pooled mutual-TLS client for one peer identity.
#[derive(Clone, Debug)]
pub struct PeerClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    max_answer: usize,
}

impl PeerClient {
    /// A client presenting `chain`/`key` that only talks to a server naming `expected`, with
    /// a certificate from `trust`'s CAs that its CRLs do not revoke.
    pub fn new(
        trust: &FederationTrust,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        expected: MemberId,
        max_answer: usize,
    ) -> Result<Self, TlsError> {
        let tls = client_config(trust, chain, key, expected)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(PeerClient { client, max_answer })
    }

    /// A client from PEM files on disk.
    pub fn from_files(
        trust: &FederationTrust,
        cert: &Path,
        key: &Path,
        expected: MemberId,
        max_answer: usize,
    ) -> Result<Self, TlsError> {
        Self::new(
            trust,
            load_certs(cert)?,
            load_key(key)?,
            expected,
            max_answer,
        )
    }

    /// Sends `body` with `content_type` to `url` and reads the answer, all within `deadline`.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        content_type: &str,
        body: Bytes,
        deadline: Duration,
    ) -> Result<Reply, CallError> {
        self.call_with(method, url, content_type, &[], body, deadline)
            .await
    }

    /// [`PeerClient::call`] with further request headers.
    pub async fn call_with(
        &self,
        method: Method,
        url: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        deadline: Duration,
    ) -> Result<Reply, CallError> {
        self.call_bounded(
            method,
            url,
            content_type,
            headers,
            body,
            deadline,
            self.max_answer,
        )
        .await
    }

    /// [`PeerClient::call_with`] taking an answer of at most `max_answer` bytes instead of
    /// the client's own bound: an overlap run's answer carries lists whose size the run
    /// bounds.
    #[allow(clippy::too_many_arguments)]
    pub async fn call_bounded(
        &self,
        method: Method,
        url: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        deadline: Duration,
        max_answer: usize,
    ) -> Result<Reply, CallError> {
        let ms = deadline.as_millis() as u64;
        let mut request = Request::builder()
            .method(method)
            .uri(url)
            .header(http::header::CONTENT_TYPE, content_type);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| CallError::Request(e.to_string()))?;
        let work = async {
            let response =
                self.client
                    .request(request)
                    .await
                    .map_err(|e| CallError::Unreachable {
                        url: url.to_owned(),
                        reason: error_chain(&e),
                    })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, max_answer)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        CallError::TooLarge(max_answer)
                    } else {
                        CallError::Unreachable {
                            url: url.to_owned(),
                            reason: e.to_string(),
                        }
                    }
                })?
                .to_bytes();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(deadline, work)
            .await
            .unwrap_or(Err(CallError::Timeout(ms)))
    }
}

/// An error and its sources on one line: hyper's own message says little ("client error").
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
