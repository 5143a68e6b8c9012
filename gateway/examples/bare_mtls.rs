//! A bare hyper + rustls mutual-TLS server with the gateway's own TLS settings
//! (`gateway::tls::federation_server_config`: a client certificate from a federation CA that
//! its CRL does not revoke, TLS 1.3 and 1.2, the server's suite order, no resumption), which
//! answers every POST with one fixed JSON body: what TLS and HTTP alone cost one core,
//! measured beside the gateway by `bench/run.sh`. No signature, no schema, no audit.
//!
//! ```sh
//! cargo run --release -p simpul-gateway --example bare_mtls -- LISTEN CERT KEY CA CRL
//! ```
//!
//! LISTEN is `host:port`; CERT and KEY the server's PEM chain and key; CA the PEM
//! certificates client certificates must chain to; CRL their revocation lists (PEM).

use std::convert::Infallible;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use gateway::tls::{FederationTrust, federation_server_config, load_certs};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The answer to every POST: the size of the demo's citizenship answer's data.
const ANSWER: &str = r#"{"registered":true,"citizenship":"WNI","deceased":false}"#;
/// The largest request body read, as the gateway's.
const MAX_REQUEST_BYTES: usize = contracts::envelope::MAX_REQUEST_BYTES;
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = status;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        r
    };
    if request.method() != Method::POST {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, "{}"));
    }
    // Read the whole request, as a server that looks at it must.
    match Limited::new(request.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(_) => Ok(reply(StatusCode::OK, ANSWER)),
        Err(_) => Ok(reply(StatusCode::PAYLOAD_TOO_LARGE, "{}")),
    }
}

async fn serve(listen: &str, cert: &Path, key: &Path, ca: &Path, crl: &Path) -> Result<(), String> {
    let trust = FederationTrust::from_files(ca, crl).map_err(|e| e.to_string())?;
    let chain = load_certs(cert).map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let config = federation_server_config(&trust, chain, key).map_err(|e| e.to_string())?;
    let acceptor = TlsAcceptor::from(config);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .keep_alive(true);
            let _ = builder
                .serve_connection(TokioIo::new(tls), hyper::service::service_fn(answer))
                .await;
        });
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, cert, key, ca, crl] = args.as_slice() else {
        eprintln!("bare_mtls: usage: bare_mtls LISTEN CERT KEY CA CRL");
        return ExitCode::from(2);
    };
    gateway::tls::install_crypto_provider();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bare_mtls: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(serve(
        listen,
        Path::new(cert),
        Path::new(key),
        Path::new(ca),
        Path::new(crl),
    ));
    if let Err(e) = served {
        eprintln!("bare_mtls: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
