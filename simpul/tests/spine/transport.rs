//! Mutual TLS: no certificate, or one from another CA, never reaches HTTP; the consumer
//! checks the provider's certificate names the provider.

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
