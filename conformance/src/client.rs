//! A small HTTPS/1.1 client over mutual TLS, written for the suite rather than taken from the
//! gateway: each case needs to control exactly what is presented (no certificate, a
//! certificate from another CA, TLS 1.2 only, a chunked body) and to see what the server
//! negotiated, which a pooled client hides.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use contracts::MemberId;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Frame};
use hyper::client::conn::http1;
use hyper::{HeaderMap, Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How long a TCP connect plus TLS handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take, from sending to the last byte of the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer body read.
pub const MAX_ANSWER_BYTES: usize = contracts::envelope::MAX_ANSWER_BYTES;

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The socket error.
        source: io::Error,
    },
    /// The TLS handshake failed (this includes the server refusing our certificate).
    #[error("TLS handshake with {addr} failed: {source}")]
    Handshake {
        /// `host:port`.
        addr: String,
        /// The TLS error, as rustls reports it.
        source: io::Error,
    },
    /// A phase did not finish in time.
    #[error("{phase} took longer than {} s", limit.as_secs())]
    Timeout {
        /// What was being waited for.
        phase: &'static str,
        /// The bound.
        limit: Duration,
    },
    /// The connection broke or HTTP failed after the handshake (with TLS 1.3 a refused
    /// client certificate shows up here, on the first read).
    #[error("HTTP exchange failed: {0}")]
    Http(String),
    /// The answer was larger than [`MAX_ANSWER_BYTES`].
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    /// A URL, certificate or key could not be used.
    #[error("{0}")]
    Setup(String),
}

/// A certificate chain and its private key, presented as the client identity.
#[derive(Debug)]
pub struct TlsIdentity {
    /// End-entity certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        TlsIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsIdentity {
    /// Reads a PEM certificate chain and a PEM private key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, String> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("certificate: {e}"))?;
        if chain.is_empty() {
            return Err("no certificate in the PEM".into());
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("key: {e}"))?;
        Ok(TlsIdentity { chain, key })
    }

    /// The Simpul identities its end-entity certificate names.
    pub fn identities(&self) -> Vec<MemberId> {
        self.chain.first().map(identities).unwrap_or_default()
    }
}

/// The Simpul identities a certificate names: its `urn:simpul:` SAN URIs.
pub fn identities(cert: &CertificateDer<'_>) -> Vec<MemberId> {
    contracts::member::certificate_identities(cert.as_ref())
}

/// Where a gateway listens, read from its `https://host:port` URL.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Host name or address, without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `host:port` as the `Host` header carries it.
    pub authority: String,
    /// The name the server certificate must carry.
    pub server_name: ServerName<'static>,
}

impl Endpoint {
    /// Parses an `https://` URL with no path (a trailing `/` is allowed).
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err("must be an https:// URL".into());
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err("must have no path or query (https://host:port)".into());
        }
        let authority = uri
            .authority()
            .ok_or_else(|| "has no host".to_owned())?
            .as_str()
            .to_owned();
        let host = uri
            .host()
            .ok_or_else(|| "has no host".to_owned())?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| format!("`{host}` is not a valid server name: {e}"))?;
        Ok(Endpoint {
            host,
            port,
            authority,
            server_name,
        })
    }

    /// `host:port` for a socket connect.
    pub fn socket_addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The crypto provider every configuration here uses: aws-lc-rs.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client configuration that trusts `roots` (the manifest's CAs), checks the server's host
/// name, speaks `versions`, and presents `identity` if given.
pub fn tls_config(
    roots: &[CertificateDer<'static>],
    identity: Option<&TlsIdentity>,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<Arc<ClientConfig>, ClientError> {
    let mut store = RootCertStore::empty();
    for ca in roots {
        store
            .add(ca.clone())
            .map_err(|e| ClientError::Setup(format!("manifest CA certificate: {e}")))?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| ClientError::Setup(e.to_string()))?
        .with_root_certificates(store);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| ClientError::Setup(format!("client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A request body: sent whole with `Content-Length`, or in chunks without one.
pub type Body = BoxBody<Bytes, Infallible>;

/// A body sent with its length declared.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A body whose length is not declared: hyper sends it with chunked transfer encoding, so
/// the server can only enforce a size bound by counting.
pub fn chunked(parts: Vec<Bytes>) -> Body {
    Chunked(parts.into()).boxed()
}

struct Chunked(VecDeque<Bytes>);

impl hyper::body::Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

/// An HTTP answer with its whole body.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The media type without parameters, lower-cased; empty when absent.
    pub fn media_type(&self) -> String {
        self.headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default()
    }

    /// The body as text, cut for messages.
    pub fn body_excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let mut out: String = text.chars().take(200).collect();
        if text.chars().count() > 200 {
            out.push('…');
        }
        out
    }

    /// One line for reports: `HTTP 401 application/problem+json`.
    pub fn summary(&self) -> String {
        format!("HTTP {} {}", self.status.as_u16(), self.media_type())
    }
}

/// One open HTTP/1.1 connection over TLS, with what the handshake negotiated.
pub struct Connection {
    sender: http1::SendRequest<Body>,
    ended: Arc<std::sync::Mutex<Option<String>>>,
    authority: String,
    /// The TLS version negotiated.
    pub version: Option<rustls::ProtocolVersion>,
    /// The cipher suite negotiated.
    pub suite: Option<rustls::CipherSuite>,
    /// The server's certificate chain, end-entity first.
    pub peer_certificates: Vec<CertificateDer<'static>>,
}

/// Opens a TCP connection to `endpoint`, completes the TLS handshake with `config`, and
/// starts HTTP/1.1 on it, all within [`CONNECT_TIMEOUT`].
pub async fn connect(
    endpoint: &Endpoint,
    config: Arc<ClientConfig>,
) -> Result<Connection, ClientError> {
    let addr = endpoint.socket_addr();
    let work = async {
        let tcp = TcpStream::connect(&addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.clone(),
                source,
            })?;
        // Latency figures must not include Nagle's delay on small requests.
        let _ = tcp.set_nodelay(true);
        let tls = TlsConnector::from(config)
            .connect(endpoint.server_name.clone(), tcp)
            .await
            .map_err(|source| ClientError::Handshake {
                addr: addr.clone(),
                source,
            })?;
        let session = tls.get_ref().1;
        let version = session.protocol_version();
        let suite = session.negotiated_cipher_suite().map(|s| s.suite());
        let peer_certificates = session
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        let (sender, conn) = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ClientError::Http(error_chain(&e)))?;
        // The connection task ends when the server closes or the sender is dropped. Its
        // error is kept: it holds the TLS alert that says why a server hung up.
        let ended = Arc::new(std::sync::Mutex::new(None));
        let record = ended.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await
                && let Ok(mut slot) = record.lock()
            {
                *slot = Some(error_chain(&e));
            }
        });
        Ok(Connection {
            sender,
            ended,
            authority: endpoint.authority.clone(),
            version,
            suite,
            peer_certificates,
        })
    };
    tokio::time::timeout(CONNECT_TIMEOUT, work)
        .await
        .unwrap_or(Err(ClientError::Timeout {
            phase: "connect and TLS handshake",
            limit: CONNECT_TIMEOUT,
        }))
}

impl Connection {
    /// Sends one request and reads the whole answer within [`REQUEST_TIMEOUT`].
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Body,
    ) -> Result<Reply, ClientError> {
        self.send_with(method, path, content_type, &[], body).await
    }

    /// [`Connection::send`] with further request headers.
    pub async fn send_with(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<Reply, ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority);
        if let Some(ct) = content_type {
            request = request.header(hyper::header::CONTENT_TYPE, ct);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(body)
            .map_err(|e| ClientError::Setup(format!("request: {e}")))?;
        let work = async {
            if let Err(e) = self.sender.ready().await {
                return Err(self.broken(&e).await);
            }
            let response = match self.sender.send_request(request).await {
                Ok(r) => r,
                Err(e) => return Err(self.broken(&e).await),
            };
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        ClientError::TooLarge(MAX_ANSWER_BYTES)
                    } else {
                        ClientError::Http(error_chain(e.as_ref()))
                    }
                })?
                .to_bytes();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, work)
            .await
            .unwrap_or(Err(ClientError::Timeout {
                phase: "request",
                limit: REQUEST_TIMEOUT,
            }))
    }

    /// The error of a request on a broken connection, with the connection's own error
    /// (which the request only sees as "channel closed").
    async fn broken(&self, e: &hyper::Error) -> ClientError {
        let mut message = error_chain(e);
        // The connection task records its error as it ends, a moment after the channel
        // closes under the request.
        for _ in 0..10 {
            let cause = self.ended.lock().ok().and_then(|slot| slot.clone());
            if let Some(cause) = cause {
                message = format!("{message}: {cause}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        ClientError::Http(message)
    }

    /// True once the server has closed the connection or it broke.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// An error and its sources on one line: hyper's own message says little ("connection
/// error"), the TLS alert beneath it says why.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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

    #[test]
    fn endpoints_parse_from_gateway_urls() {
        let e = Endpoint::parse("https://localhost:7442").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("localhost", 7442));
        assert_eq!(e.authority, "localhost:7442");
        let e = Endpoint::parse("https://[::1]:8443/").unwrap();
        assert_eq!(e.host, "::1");
        assert_eq!(e.socket_addr(), "[::1]:8443");
        assert_eq!(Endpoint::parse("https://gw.example.id").unwrap().port, 443);
        for bad in [
            "http://localhost:7442",
            "https://localhost:7442/v1",
            "localhost",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
