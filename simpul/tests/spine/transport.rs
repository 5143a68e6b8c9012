//! Mutual TLS: no certificate, or one from another CA, never reaches HTTP; the consumer
//! checks the provider's certificate names the provider. HTTP: the statuses the HTTP layer
//! answers with itself (PROTOCOL.md §3.5), HTTP/2 refused at ALPN, HTTP/1.0 served.

use std::sync::Arc;
use std::time::Duration;

use contracts::envelope::JOSE_MEDIA_TYPE;
use demo::pki::PkiPlan;
use gateway::client::PeerClient;
use gateway::layout::PkiLayout;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

#[tokio::test]
async fn no_client_certificate_is_refused_in_the_handshake() {
    let f = Federation::start().await;
    let provider = gateway::tls::provider();
    let mut roots = rustls::RootCertStore::empty();
    for ca in &f.trust.cas {
        roots.add(ca.clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let addr = f.config.member(&id(DUKCAPIL)).unwrap().listen;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // With TLS 1.3 the client may believe the handshake finished; the server's refusal
    // arrives as an alert on the first read. Either way, no HTTP answer comes back.
    let outcome = async {
        let mut tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        tls.write_all(b"GET /v1/manifest HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    match tokio::time::timeout(Duration::from_secs(10), outcome)
        .await
        .unwrap()
    {
        Err(e) => assert!(
            e.to_string().to_lowercase().contains("certificate"),
            "refused for another reason: {e}"
        ),
        Ok(bytes) => assert!(
            bytes.is_empty(),
            "got an HTTP answer without a client certificate: {}",
            String::from_utf8_lossy(&bytes)
        ),
    }
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused_in_the_handshake() {
    let f = Federation::start().await;
    let other = tempfile::tempdir().unwrap();
    let layout = PkiLayout::new(other.path());
    let plan = PkiPlan {
        authority: id("ID:GOV:SIMPUL"),
        members: vec![(id(KEMLU), vec![id(PEDULI)])],
        staff: vec![],
        hosts: vec!["localhost".into(), "127.0.0.1".into()],
    };
    demo::pki::init(&layout, &plan, false).unwrap();
    // A certificate that names Kemlu, from a CA the manifest does not list.
    let client = PeerClient::from_files(
        &f.trust,
        &layout.gateway_cert(&id(KEMLU)),
        &layout.gateway_key(&id(KEMLU)),
        id(DUKCAPIL),
        1 << 20,
    )
    .unwrap();
    let request = f.citizenship_request();
    let url = format!("{}/v1/exchange/citizenship.status/1", f.url(DUKCAPIL));
    let err = client
        .call(
            http::Method::POST,
            &url,
            JOSE_MEDIA_TYPE,
            f.sign(KEMLU, &request).into(),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert!(is_refused(&err), "{err:?}");
}

#[tokio::test]
async fn consumer_refuses_a_server_that_is_not_the_expected_member() {
    let f = Federation::start().await;
    // Expect BP2MI but connect to Dukcapil's address: a valid certificate of the wrong member.
    let client = f.as_gateway(KEMLU, BP2MI);
    let url = format!("{}/v1/manifest", f.url(DUKCAPIL));
    let err = client
        .call(
            http::Method::GET,
            &url,
            "application/json",
            bytes::Bytes::new(),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert!(is_refused(&err), "{err:?}");
}

/// Kemlu's gateway as a TLS client of Dukcapil's federation listener, offering `alpn`.
fn kemlu_tls(f: &Federation, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let roots = f.roots();
    let (chain, key) = f.gateway_identity(KEMLU);
    let mut config = rustls::ClientConfig::builder_with_provider(gateway::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Sends `bytes` over TLS to Dukcapil's federation listener and reads until the server
/// closes (bounded): everything the server answered.
async fn raw(f: &Federation, bytes: &[u8]) -> Vec<u8> {
    let addr = f.config.member(&id(DUKCAPIL)).unwrap().listen;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(kemlu_tls(f, &[b"http/1.1"]))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), tls.read_to_end(&mut buf)).await;
    buf
}

/// The status line and whether the body is empty (`content-length: 0`).
fn status_of(answer: &[u8]) -> (String, bool) {
    let text = String::from_utf8_lossy(answer);
    let line = text.lines().next().unwrap_or_default().to_owned();
    (line, text.to_lowercase().contains("content-length: 0\r\n"))
}

#[tokio::test]
async fn the_http_layer_refuses_with_the_statuses_the_protocol_lists() {
    let f = Federation::start().await;
    // Over 64 headers: 431, empty.
    let headers: String = (0..70).map(|i| format!("x-h{i}: y\r\n")).collect();
    let answer = raw(
        &f,
        format!("GET /v1/manifest HTTP/1.1\r\nhost: localhost\r\n{headers}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(
        status_of(&answer),
        ("HTTP/1.1 431 Request Header Fields Too Large".into(), true)
    );
    // A request target over 65,534 bytes: 414, empty.
    let long = "a".repeat(70_000);
    let answer = raw(
        &f,
        format!("GET /{long} HTTP/1.1\r\nhost: localhost\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(
        status_of(&answer),
        ("HTTP/1.1 414 URI Too Long".into(), true)
    );
    // Another version in the request line, and no request line at all: 400, empty.
    for line in [
        "GET /v1/manifest HTTP/3.0\r\nhost: localhost\r\n\r\n",
        "GARBAGE\r\n\r\n",
    ] {
        let answer = raw(&f, line.as_bytes()).await;
        assert_eq!(
            status_of(&answer),
            ("HTTP/1.1 400 Bad Request".into(), true),
            "{line:?}"
        );
    }
    // The HTTP/2 preface without ALPN: closed, no answer.
    let answer = raw(&f, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    // HTTP/1.0: served, answered as HTTP/1.0, and the connection closed after it.
    let answer = raw(&f, b"GET /v1/manifest HTTP/1.0\r\nhost: localhost\r\n\r\n").await;
    assert_eq!(status_of(&answer).0, "HTTP/1.0 200 OK");
}

#[tokio::test]
async fn a_client_offering_only_h2_is_refused_at_alpn() {
    let f = Federation::start().await;
    let addr = f.config.member(&id(DUKCAPIL)).unwrap().listen;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let outcome = async {
        let mut tls = tokio_rustls::TlsConnector::from(kemlu_tls(&f, &[b"h2"]))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        tls.write_all(b"GET /v1/manifest HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let err = tokio::time::timeout(Duration::from_secs(10), outcome)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        err.to_string().contains("NoApplicationProtocol"),
        "refused for another reason: {err}"
    );
}
