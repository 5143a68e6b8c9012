//! The HTTP adapter: answers a contract from a ministry's existing REST API.
//!
//! One request per question: a URL template filled from the query (each value
//! percent-encoded), configured headers (secrets read from the environment), and a mapping of
//! JSON pointers from the API's answer to the contract's. Idempotent GETs are retried with
//! backoff inside the deadline; POSTs never are, since the API may have acted on the first.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use contracts::trace::{self, TraceContext};
use http::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::{
    Adapter, AdapterConfigError, AdapterError, AnswerFuture, CheckFuture, ENV_PREFIX, resolve_env,
};

/// Everything but RFC 3986's unreserved characters is encoded, so a value can never add a
/// path segment (`/`), a query (`?`, `&`, `=`) or a fragment (`#`) to the URL.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The first retry waits this long; each next one twice as long.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// The HTTP method of the upstream request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpMethod {
    /// The query's fields go into the URL; may be retried.
    #[default]
    #[serde(rename = "GET")]
    Get,
    /// The query is sent as the JSON body; never retried.
    #[serde(rename = "POST")]
    Post,
}

fn default_timeout_ms() -> u64 {
    2_000
}

fn default_max_answer_bytes() -> usize {
    1 << 20
}

/// A contract bound to a REST API (the `http` table of a binding in `config.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// `http://` or `https://` URL; `{name}` in its path or query string is replaced by the
    /// query's top-level field `name`, percent-encoded. The host cannot be templated.
    pub url: String,
    /// `GET` (default) or `POST` (the query as a JSON body).
    #[serde(default)]
    pub method: HttpMethod,
    /// Extra request headers. A value `env:NAME` is read from the environment variable
    /// `NAME` at start-up (bearer tokens, API keys).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Answer field ← JSON pointer into the API's answer (`placed = "/data/placed"`). A
    /// pointer to JSON null leaves the field out; a pointer to nothing is a backend error.
    pub answer: BTreeMap<String, String>,
    /// Constant fields added to the answer when the API answers 2xx.
    #[serde(default)]
    pub found: Map<String, Value>,
    /// The whole answer when the API answers 404. Without it, a 404 is a backend error.
    #[serde(default)]
    pub not_found: Option<Value>,
    /// Deadline for one answer, retries included, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// GET only: how many times to retry after a connection failure, a 5xx or a 429,
    /// waiting 50 ms, 100 ms, 200 ms… in between, never past the deadline.
    #[serde(default)]
    pub retries: u32,
    /// A PEM file of extra CA certificates for an `https://` API (relative to the
    /// configuration's directory), trusted beside the web PKI roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// The largest answer read from the API, in bytes.
    #[serde(default = "default_max_answer_bytes")]
    pub max_answer_bytes: usize,
}

/// One piece of a URL template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Field(String),
}

/// An [`HttpSpec`] ready to answer: template parsed, headers resolved, client built.
#[derive(Debug)]
pub struct HttpAdapter {
    spec: HttpSpec,
    template: Vec<Piece>,
    headers: HeaderMap,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// The client's connector, for [`Adapter::check`]: a connection without a request.
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://host[:port]/` of the URL: where every request goes.
    origin: Uri,
}

/// Why one attempt failed, and whether another may help.
struct Failure {
    error: AdapterError,
    retryable: bool,
}

impl Failure {
    fn unavailable(reason: String) -> Self {
        Self {
            error: AdapterError::Unavailable(reason),
            retryable: true,
        }
    }
    fn failed(reason: String) -> Self {
        Self {
            error: AdapterError::Failed(reason),
            retryable: false,
        }
    }
}

/// `scheme://host[:port]/` of a URL template [`parse_template`] accepted (the scheme and the
/// host are never templated).
fn origin(pieces: &[Piece]) -> Result<Uri, AdapterConfigError> {
    let sample: String = pieces
        .iter()
        .map(|p| match p {
            Piece::Literal(s) => s.as_str(),
            Piece::Field(_) => "x",
        })
        .collect();
    let bad =
        |e: &dyn std::fmt::Display| AdapterConfigError::new("url", format!("not a valid URL: {e}"));
    let parts = sample.parse::<Uri>().map_err(|e| bad(&e))?.into_parts();
    let mut builder = Uri::builder().path_and_query("/");
    if let Some(scheme) = parts.scheme {
        builder = builder.scheme(scheme);
    }
    if let Some(authority) = parts.authority {
        builder = builder.authority(authority);
    }
    builder.build().map_err(|e| bad(&e))
}

fn parse_template(url: &str) -> Result<Vec<Piece>, AdapterConfigError> {
    let bad = |reason: &str| AdapterConfigError::new("url", reason);
    let mut pieces = Vec::new();
    let mut rest = url;
    while let Some(open) = rest.find('{') {
        if rest[..open].contains('}') {
            return Err(bad("unmatched `}`"));
        }
        if open > 0 {
            pieces.push(Piece::Literal(rest[..open].to_owned()));
        }
        let close = rest[open..]
            .find('}')
            .map(|p| open + p)
            .ok_or_else(|| bad("unterminated `{`"))?;
        let name = &rest[open + 1..close];
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(bad("`{…}` must name a query field (letters, digits, `_`)"));
        }
        pieces.push(Piece::Field(name.to_owned()));
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err(bad("unmatched `}`"));
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest.to_owned()));
    }
    // The scheme and host are fixed: a query must not choose where its question goes.
    let Some(Piece::Literal(first)) = pieces.first() else {
        return Err(bad("must start with http:// or https://"));
    };
    let Some((scheme, after)) = first.split_once("://") else {
        return Err(bad("must start with http:// or https://"));
    };
    if scheme != "http" && scheme != "https" {
        return Err(bad("must start with http:// or https://"));
    }
    if pieces.len() > 1 && !after.contains('/') {
        return Err(bad(
            "placeholders may only stand in the path or query, after the host's `/`",
        ));
    }
    // Check the URL parses with every placeholder filled.
    let sample: String = pieces
        .iter()
        .map(|p| match p {
            Piece::Literal(s) => s.as_str(),
            Piece::Field(_) => "x",
        })
        .collect();
    let uri: Uri = sample
        .parse()
        .map_err(|e| AdapterConfigError::new("url", format!("not a valid URL: {e}")))?;
    if uri.host().is_none() {
        return Err(bad("needs a host"));
    }
    Ok(pieces)
}

fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, AdapterConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let bad = |e: &dyn std::fmt::Display| {
            AdapterConfigError::new("ca_file", format!("{}: {e}", path.display()))
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(&e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(&e))?;
        if certs.is_empty() {
            return Err(bad(&"holds no PEM certificate"));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(&e))?;
        }
    }
    // The process-wide provider of the gateway, named explicitly so the adapter works (and
    // never picks another) wherever it is built.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AdapterConfigError::new("ca_file", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl HttpAdapter {
    /// Checks the spec and builds the client. The API is reached on first use. A URL
    /// template that lets a query choose the host, an `env:` variable that is not set, a
    /// bad header, a pointer that is not a JSON pointer, retries on POST or an unreadable
    /// `ca_file` are refused here.
    pub fn new(spec: HttpSpec, base_dir: &Path) -> Result<Self, AdapterConfigError> {
        let template = parse_template(&spec.url)?;
        let origin = origin(&template)?;
        if spec.answer.is_empty() {
            return Err(AdapterConfigError::new(
                "answer",
                "map at least one answer field to a JSON pointer",
            ));
        }
        if let Some((field, _)) = spec
            .answer
            .iter()
            .find(|(_, p)| !p.is_empty() && !p.starts_with('/'))
        {
            return Err(AdapterConfigError::new(
                format!("answer.{field}"),
                "must be a JSON pointer: empty or starting with `/`",
            ));
        }
        if let Some(nf) = &spec.not_found
            && !nf.is_object()
        {
            return Err(AdapterConfigError::new(
                "not_found",
                "must be a table (a JSON object)",
            ));
        }
        if spec.retries > 0 && spec.method == HttpMethod::Post {
            return Err(AdapterConfigError::new(
                "retries",
                "only for GET: a POST is not idempotent",
            ));
        }
        if spec.timeout_ms == 0 || spec.max_answer_bytes == 0 {
            return Err(AdapterConfigError::new(
                "timeout_ms/max_answer_bytes",
                "must be at least 1",
            ));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &spec.headers {
            let field = format!("headers.{name}");
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| AdapterConfigError::new(&field, e.to_string()))?;
            let secret = value.starts_with(ENV_PREFIX);
            let mut v = HeaderValue::from_str(&resolve_env(value, &field)?).map_err(|_| {
                AdapterConfigError::new(&field, "not a valid header value (control characters?)")
            })?;
            // Kept out of Debug output and marked so HTTP/2 compression never indexes it.
            v.set_sensitive(secret);
            headers.insert(header, v);
        }
        let ca = spec.ca_file.as_ref().map(|f| base_dir.join(f));
        let tls = tls_config(ca.as_deref())?;
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_millis(spec.timeout_ms)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https.clone());
        Ok(HttpAdapter {
            spec,
            template,
            headers,
            client,
            connector: https,
            origin,
        })
    }

    /// The URL for `query`: each placeholder replaced by its field, percent-encoded.
    fn url(&self, query: &Value) -> Result<Uri, AdapterError> {
        let mut url = String::with_capacity(self.spec.url.len() + 32);
        for piece in &self.template {
            match piece {
                Piece::Literal(s) => url.push_str(s),
                Piece::Field(name) => {
                    let text = match query.get(name) {
                        Some(Value::String(s)) => s.clone(),
                        Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
                        _ => {
                            return Err(AdapterError::Failed(format!(
                                "the URL needs query field `{name}` as a string, number or boolean"
                            )));
                        }
                    };
                    url.extend(utf8_percent_encode(&text, COMPONENT));
                }
            }
        }
        url.parse()
            .map_err(|e| AdapterError::Failed(format!("the filled URL is invalid: {e}")))
    }

    fn request(
        &self,
        uri: &Uri,
        body: &Bytes,
        trace: Option<&TraceContext>,
    ) -> Result<Request<Full<Bytes>>, AdapterError> {
        let (method, content) = match self.spec.method {
            HttpMethod::Get => (Method::GET, Bytes::new()),
            HttpMethod::Post => (Method::POST, body.clone()),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(uri.clone())
            .header(ACCEPT, "application/json");
        if self.spec.method == HttpMethod::Post {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let mut req = req
            .body(Full::new(content))
            .map_err(|e| AdapterError::Failed(format!("cannot build the request: {e}")))?;
        req.headers_mut()
            .extend(self.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        // As the gateway hands it on: its parent is the gateway's span of the exchange.
        if let Some(t) = trace {
            let parent = HeaderValue::from_str(&t.traceparent());
            let state = t.tracestate().map(HeaderValue::from_str);
            if let Ok(parent) = parent {
                req.headers_mut().insert(trace::TRACEPARENT, parent);
                if let Some(Ok(state)) = state {
                    req.headers_mut().insert(trace::TRACESTATE, state);
                }
            }
        }
        Ok(req)
    }

    async fn attempt(&self, req: Request<Full<Bytes>>) -> Result<Value, Failure> {
        let response = self
            .client
            .request(req)
            .await
            .map_err(|e| Failure::unavailable(format!("upstream request failed: {e}")))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return match &self.spec.not_found {
                Some(nf) => Ok(nf.clone()),
                None => Err(Failure::failed(
                    "upstream answered 404 and the binding has no not_found".into(),
                )),
            };
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure::unavailable(format!("upstream answered {status}")));
        }
        if !status.is_success() {
            return Err(Failure::failed(format!("upstream answered {status}")));
        }
        let body = Limited::new(response.into_body(), self.spec.max_answer_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    Failure::failed(format!(
                        "upstream answer is larger than {} bytes",
                        self.spec.max_answer_bytes
                    ))
                } else {
                    Failure::unavailable(format!("upstream answer cut short: {e}"))
                }
            })?
            .to_bytes();
        // A member named twice would make the value taken depend on the parser.
        let doc = contracts::json::value_without_repeated_names(&body).map_err(|e| {
            Failure::failed(format!(
                "upstream answer is not JSON we can read unambiguously: {e}"
            ))
        })?;
        self.map(&doc).map_err(|error| Failure {
            error,
            retryable: false,
        })
    }

    /// The contract's answer from the API's: `found`, then each pointer's value.
    fn map(&self, doc: &Value) -> Result<Value, AdapterError> {
        let mut answer = self.spec.found.clone();
        for (field, pointer) in &self.spec.answer {
            match doc.pointer(pointer) {
                None => {
                    return Err(AdapterError::Failed(format!(
                        "upstream answer has nothing at `{pointer}` (for `{field}`)"
                    )));
                }
                Some(Value::Null) => {}
                Some(v) => {
                    answer.insert(field.clone(), v.clone());
                }
            }
        }
        Ok(Value::Object(answer))
    }

    async fn run(
        &self,
        query: &Value,
        trace: Option<&TraceContext>,
        deadline: Instant,
    ) -> Result<Value, AdapterError> {
        let uri = self.url(query)?;
        let body = match self.spec.method {
            HttpMethod::Get => Bytes::new(),
            HttpMethod::Post => serde_json::to_vec(query)
                .map(Bytes::from)
                .map_err(|e| AdapterError::Failed(format!("cannot encode the query: {e}")))?,
        };
        let mut backoff = FIRST_BACKOFF;
        let mut retries_left = match self.spec.method {
            HttpMethod::Get => self.spec.retries,
            HttpMethod::Post => 0,
        };
        loop {
            match self.attempt(self.request(&uri, &body, trace)?).await {
                Ok(answer) => return Ok(answer),
                Err(f) if f.retryable && retries_left > 0 => {
                    // A retry that could not finish before the deadline only turns a clear
                    // "unavailable" into a vague timeout.
                    if Instant::now() + backoff >= deadline {
                        return Err(f.error);
                    }
                    tracing::debug!(error = %f.error, ?backoff, "retrying upstream");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    retries_left -= 1;
                }
                Err(f) => return Err(f.error),
            }
        }
    }
}

impl Adapter for HttpAdapter {
    fn answer<'a>(&'a self, query: &'a Value) -> AnswerFuture<'a> {
        self.answer_traced(query, None)
    }

    fn answer_traced<'a>(
        &'a self,
        query: &'a Value,
        trace: Option<&'a TraceContext>,
    ) -> AnswerFuture<'a> {
        Box::pin(async move {
            let limit = Duration::from_millis(self.spec.timeout_ms);
            let deadline = Instant::now() + limit;
            match tokio::time::timeout_at(deadline, self.run(query, trace, deadline)).await {
                Ok(result) => result,
                Err(_) => Err(AdapterError::Timeout(self.spec.timeout_ms)),
            }
        })
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            use tower_service::Service;
            // The connector the requests use: the same resolver, connect timeout and TLS
            // roots; the connection is dropped with no request sent.
            let mut connector = self.connector.clone();
            let connect = async {
                std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
                connector.call(self.origin.clone()).await
            };
            let limit = Duration::from_millis(self.spec.timeout_ms);
            let reached = match tokio::time::timeout(limit, connect).await {
                Err(_) => return Err(AdapterError::Timeout(self.spec.timeout_ms)),
                Ok(Err(e)) => {
                    return Err(AdapterError::Unavailable(format!(
                        "cannot connect to {}: {}",
                        self.origin,
                        error_chain(e.as_ref())
                    )));
                }
                Ok(Ok(stream)) => stream,
            };
            let how = match reached {
                hyper_rustls::MaybeHttpsStream::Https(_) => "connected, TLS handshake done",
                hyper_rustls::MaybeHttpsStream::Http(_) => "connected (plain HTTP)",
            };
            Ok(Some(format!("API {}: {how}", self.origin)))
        })
    }
}

/// An error and its sources on one line (the connector's own message says little).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(url: &str) -> HttpSpec {
        serde_json::from_value(json!({
            "url": url,
            "answer": {"placed": "/data/placed"},
        }))
        .unwrap()
    }

    #[test]
    fn query_values_are_percent_encoded_into_the_template() {
        let a = HttpAdapter::new(
            spec("http://127.0.0.1:1/v1/people/{nik}?as={who}&n={n}"),
            Path::new("."),
        )
        .unwrap();
        let uri = a
            .url(&json!({"nik": "1/2?x=y#z&q", "who": "ümit o'neil", "n": 7}))
            .unwrap();
        assert_eq!(
            uri.to_string(),
            "http://127.0.0.1:1/v1/people/1%2F2%3Fx%3Dy%23z%26q?as=%C3%BCmit%20o%27neil&n=7"
        );
        assert!(matches!(
            a.url(&json!({"nik": {"a": 1}})),
            Err(AdapterError::Failed(_))
        ));
    }

    #[test]
    fn bad_bindings_name_their_field() {
        let dir = Path::new(".");
        for url in [
            "http://{host}/x",
            "ftp://example.org/{nik}",
            "http://example.org/{ni k}",
            "http://example.org/{nik",
            "example.org/{nik}",
        ] {
            assert_eq!(
                HttpAdapter::new(spec(url), dir).unwrap_err().field,
                "url",
                "{url}"
            );
        }
        let mut s = spec("http://example.org/{nik}");
        s.method = HttpMethod::Post;
        s.retries = 2;
        assert_eq!(HttpAdapter::new(s, dir).unwrap_err().field, "retries");
        let mut s = spec("http://example.org/{nik}");
        s.answer.insert("x".into(), "data/x".into());
        assert_eq!(HttpAdapter::new(s, dir).unwrap_err().field, "answer.x");
        let mut s = spec("http://example.org/{nik}");
        s.headers.insert(
            "authorization".into(),
            "env:SIMPUL_TEST_SURELY_UNSET_TOKEN".into(),
        );
        let e = HttpAdapter::new(s, dir).unwrap_err();
        assert_eq!(e.field, "headers.authorization");
        assert!(e.reason.contains("SIMPUL_TEST_SURELY_UNSET_TOKEN"));
        let mut s = spec("http://example.org/{nik}");
        s.ca_file = Some("no-such-ca.pem".into());
        assert_eq!(HttpAdapter::new(s, dir).unwrap_err().field, "ca_file");
    }

    #[test]
    fn pointers_map_the_answer_and_null_leaves_a_field_out() {
        let mut s = spec("http://example.org/{nik}");
        s.answer.insert("country".into(), "/data/country".into());
        s.found = json!({"source": "api"}).as_object().cloned().unwrap();
        let a = HttpAdapter::new(s, Path::new(".")).unwrap();
        assert_eq!(
            a.map(&json!({"data": {"placed": true, "country": null}}))
                .unwrap(),
            json!({"source": "api", "placed": true})
        );
        assert!(matches!(
            a.map(&json!({"data": {}})),
            Err(AdapterError::Failed(_))
        ));
    }
}
