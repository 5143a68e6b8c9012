//! Revocation over real TLS: a gateway certificate the federation CA revoked is refused at the
//! handshake as a client (by the federation listener) and as a server (by a consumer); a
//! subsystem certificate its member's CA revoked is refused at the member's local listener;
//! unrevoked certificates keep working; no listener resumes a TLS session.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use demo::crl::{self, Reason};
use demo::pki::Holder;
use gateway::gateway::Gateway;
use gateway::tls::FederationTrust;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// A GET of `/v1/manifest` on `to`'s federation listener presenting `cert_of`'s gateway
/// certificate.
async fn manifest_as(f: &Federation, cert_of: &str, to: &str) -> Result<(), String> {
    f.as_gateway(cert_of, to)
        .call(
            http::Method::GET,
            &format!("{}/v1/manifest", f.url(to)),
            "application/json",
            Bytes::new(),
            Duration::from_secs(10),
        )
        .await
        .map_err(|e| {
            assert!(is_refused(&e), "{e:?}");
            e.to_string()
        })
        .map(|reply| assert_ok(&reply))
}

#[tokio::test]
async fn a_revoked_gateway_certificate_is_refused_as_a_client_and_as_a_server() {
    let mut f = Federation::start().await;
    manifest_as(&f, BP2MI, DUKCAPIL).await.unwrap();

    let revoked = crl::revoke(
        &f.layout(),
        &Holder::Gateway(id(BP2MI)),
        Reason::KeyCompromise,
    )
    .unwrap();
    assert!(!revoked.already);
    assert_eq!(revoked.crl, f.layout().federation_crl());
    // Revoking it again changes nothing.
    let again = crl::revoke(
        &f.layout(),
        &Holder::Gateway(id(BP2MI)),
        Reason::Unspecified,
    )
    .unwrap();
    assert!(again.already && again.serial == revoked.serial);

    // The CRL is loaded at start-up: Dukcapil and Kemlu restart and load it.
    for m in [DUKCAPIL, KEMLU] {
        f.stop(m).await;
        f.restart(m).await;
    }
    // As a client: BP2MI's certificate never reaches Dukcapil's HTTP.
    let refused = manifest_as(&f, BP2MI, DUKCAPIL).await.unwrap_err();
    assert!(refused.to_lowercase().contains("revoked"), "{refused}");
    // An unrevoked gateway still gets in.
    manifest_as(&f, KEMLU, DUKCAPIL).await.unwrap();

    // As a server: BP2MI still serves with its revoked certificate (it has not restarted);
    // Kemlu, asked for a placement by its own system, refuses BP2MI's certificate.
    let nik = f.population.sample_in_all_four();
    let reply = f
        .local_query(
            PEDULI,
            KEMLU,
            "employment.placement",
            citizen_protection(nik),
        )
        .await;
    assert_problem(&reply, 503, "provider-unavailable");
    // Dukcapil, unrevoked, still answers Kemlu.
    assert_ok(
        &f.local_query(PEDULI, KEMLU, "citizenship.status", citizen_protection(nik))
            .await,
    );
    // A client that loaded the new CRL refuses BP2MI directly too.
    let trust = FederationTrust::load(&f.manifest.doc().ca, &f.config.federation.crl).unwrap();
    let l = f.layout();
    let client = gateway::client::PeerClient::from_files(
        &trust,
        &l.gateway_cert(&id(KEMLU)),
        &l.gateway_key(&id(KEMLU)),
        id(BP2MI),
        1 << 20,
    )
    .unwrap();
    let err = client
        .call(
            http::Method::GET,
            &format!("{}/v1/manifest", f.url(BP2MI)),
            "application/json",
            Bytes::new(),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert!(is_refused(&err), "{err:?}");
    assert!(err.to_string().to_lowercase().contains("revoked"), "{err}");

    // BP2MI's gateway itself refuses to start with a revoked certificate.
    let Err(err) = Gateway::from_config(&f.config, &id(BP2MI)).await else {
        panic!("a revoked gateway must not start");
    };
    let err = err.to_string();
    assert!(
        err.contains("gateway.pem") && err.contains("Revoked"),
        "{err}"
    );

    // Renewed with a new key, its new certificate (a new serial) is accepted again.
    demo::pki::renew(
        &f.layout(),
        &Holder::Gateway(id(BP2MI)),
        &f.config.federation.hosts,
        true,
    )
    .unwrap();
    manifest_as(&f, BP2MI, DUKCAPIL).await.unwrap();
    // Stopped first: one gateway per SQLite audit store.
    f.stop(BP2MI).await;
    Gateway::from_config(&f.config, &id(BP2MI)).await.unwrap();
}

#[tokio::test]
async fn a_revoked_subsystem_certificate_is_refused_at_its_members_local_listener() {
    let mut f = Federation::start().await;
    assert_ok(&f.ask_citizenship_reply().await);

    let revoked = crl::revoke(
        &f.layout(),
        &Holder::Subsystem(id(PEDULI)),
        Reason::KeyCompromise,
    )
    .unwrap();
    assert_eq!(revoked.crl, f.layout().member_crl(&id(KEMLU)));
    f.stop(KEMLU).await;
    f.restart(KEMLU).await;

    let nik = f.population.sample_in_all_four();
    let err = f
        .try_local_query(PEDULI, KEMLU, "citizenship.status", citizen_protection(nik))
        .await
        .unwrap_err();
    assert!(is_refused(&err), "{err:?}");
    // Another certificate of the same member CA still gets in (the operator's, on the admin
    // listener, which loads the same CRL).
    assert!(f.metrics(KEMLU).await.contains("simpul_"));
    // The federation CA's CRL does not revoke what a member CA issued, nor the reverse: the
    // revoked subsystem's member gateway is unaffected.
    manifest_as(&f, KEMLU, DUKCAPIL).await.unwrap();

    // Renewed (same key, new serial), the subsystem is accepted again without a restart.
    demo::pki::renew(&f.layout(), &Holder::Subsystem(id(PEDULI)), &[], false).unwrap();
    assert_ok(&f.ask_citizenship_reply().await);
}

#[tokio::test]
async fn a_revoked_operator_certificate_is_refused_at_the_admin_listener() {
    let mut f = Federation::start().await;
    let ops = contracts::StaffId::parse(&format!("operator:{KEMLU}:OPS")).unwrap();
    crl::revoke(&f.layout(), &Holder::Staff(ops), Reason::Superseded).unwrap();
    f.stop(KEMLU).await;
    f.restart(KEMLU).await;
    let err = f
        .try_admin_call(
            KEMLU,
            &format!("operator:{KEMLU}:OPS"),
            http::Method::GET,
            "/metrics",
            Bytes::new(),
        )
        .await
        .unwrap_err();
    assert!(is_refused(&err), "{err:?}");
    // The auditor, unrevoked, still reads the log.
    assert_ok(&f.audit_get(KEMLU, "/audit/records?from=0&to=1").await);
}

/// Connects to `addr` with `config` (which would resume a session if the server let it),
/// sends one request and reads the whole answer (any HTTP status: the handshake is what
/// counts); returns the kind of handshake it was.
async fn connect(
    config: &Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
) -> rustls::HandshakeKind {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET /v1/manifest HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tls.read_to_end(&mut buf).await;
    assert!(
        buf.starts_with(b"HTTP/1.1 "),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    tls.get_ref().1.handshake_kind().unwrap()
}

/// A client presenting the certificate in `cert`/`key` that keeps sessions and offers them
/// (rustls' default): whether a session is resumed is up to the server.
fn resuming_client(
    f: &Federation,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<rustls::ClientConfig> {
    client_with(f, cert, key, version, gateway::tls::provider())
}

/// [`resuming_client`] with the cipher suites of `provider`.
fn client_with(
    f: &Federation,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    version: &'static rustls::SupportedProtocolVersion,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Arc<rustls::ClientConfig> {
    let roots = f.roots();
    let (chain, key) = tls_identity(&cert, &key);
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap(),
    )
}

#[tokio::test]
async fn no_listener_resumes_a_tls_session() {
    let f = Federation::start().await;
    let l = f.layout();
    let dukcapil = f.config.member(&id(DUKCAPIL)).unwrap();
    let ops = contracts::StaffId::parse(&format!("operator:{DUKCAPIL}:OPS")).unwrap();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let kemlu = resuming_client(
            &f,
            l.gateway_cert(&id(KEMLU)),
            l.gateway_key(&id(KEMLU)),
            version,
        );
        // The control: a server with rustls' defaults resumes this client's sessions.
        let control = control_server(&f).await;
        assert_eq!(connect(&kemlu, control).await, rustls::HandshakeKind::Full);
        assert_eq!(
            connect(&kemlu, control).await,
            rustls::HandshakeKind::Resumed,
            "{version:?}: the control server did not resume, so the test proves nothing"
        );
        // The gateway's listeners never do: federation (a peer gateway), local (a
        // subsystem), admin (an operator).
        let siak = resuming_client(
            &f,
            l.client_cert(&id(SIAK)),
            l.client_key(&id(SIAK)),
            version,
        );
        let operator = resuming_client(&f, l.staff_cert(&ops), l.staff_key(&ops), version);
        let admin = dukcapil.admin.as_ref().unwrap().listen;
        let local = dukcapil.local.as_ref().unwrap().listen;
        for (client, addr) in [
            (&kemlu, dukcapil.listen),
            (&siak, local),
            (&operator, admin),
        ] {
            for _ in 0..3 {
                assert_eq!(
                    connect(client, addr).await,
                    rustls::HandshakeKind::Full,
                    "{version:?} {addr}"
                );
            }
        }
    }
}

/// Connects to `addr` with `config`, completes the handshake and returns the suite chosen.
async fn suite_chosen(
    config: &Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
) -> rustls::SupportedCipherSuite {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.negotiated_cipher_suite().unwrap()
}

#[tokio::test]
async fn every_listener_chooses_the_cipher_suite_by_its_own_order_not_the_clients() {
    let f = Federation::start().await;
    let l = f.layout();
    let dukcapil = f.config.member(&id(DUKCAPIL)).unwrap();
    let ops = contracts::StaffId::parse(&format!("operator:{DUKCAPIL}:OPS")).unwrap();
    let control = control_server(&f).await;
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        // The client offers the server's least preferred suite first (of those the
        // gateways' ECDSA certificates can use).
        let base = gateway::tls::provider();
        let mut suites: Vec<_> = base
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| s.version() == version)
            .filter(|s| {
                version == &rustls::version::TLS13 || format!("{:?}", s.suite()).contains("ECDSA")
            })
            .collect();
        let preferred = suites[0];
        suites.reverse();
        let reversed = Arc::new(rustls::crypto::CryptoProvider {
            cipher_suites: suites.clone(),
            ..(*base).clone()
        });
        let client = |cert, key| client_with(&f, cert, key, version, reversed.clone());
        let kemlu = client(l.gateway_cert(&id(KEMLU)), l.gateway_key(&id(KEMLU)));
        // The control: a server with rustls' defaults takes the client's first choice.
        assert_eq!(
            suite_chosen(&kemlu, control).await.suite(),
            suites[0].suite(),
            "{version:?}: the control server followed its own order, so the test proves nothing"
        );
        assert_ne!(suites[0].suite(), preferred.suite());
        let siak = client(l.client_cert(&id(SIAK)), l.client_key(&id(SIAK)));
        let operator = client(l.staff_cert(&ops), l.staff_key(&ops));
        for (client, addr) in [
            (&kemlu, dukcapil.listen),
            (&siak, dukcapil.local.as_ref().unwrap().listen),
            (&operator, dukcapil.admin.as_ref().unwrap().listen),
        ] {
            assert_eq!(
                suite_chosen(client, addr).await.suite(),
                preferred.suite(),
                "{version:?} {addr}"
            );
        }
    }
}

/// A TLS server with rustls' default session handling and Dukcapil's certificate, answering
/// every connection with an empty 200.
async fn control_server(f: &Federation) -> std::net::SocketAddr {
    let (chain, key) = f.gateway_identity(DUKCAPIL);
    let config = rustls::ServerConfig::builder_with_provider(gateway::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}
