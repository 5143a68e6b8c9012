//! The manifest, the CRLs and a gateway's own keys at run time, over real TLS: a new
//! manifest adopted at a reload without a restart, an exchange in flight finishing under
//! the manifest and key it began with; the manifest and CRL fetched from the authority's
//! URLs; a newer one spread by a peer through
//! `Simpul-Manifest-Serial` and `GET /v1/manifest`; a rolled-back one refused, whether a
//! peer offers it or the serial file was deleted; an expired one failing closed with 503
//! `manifest-expired`; a CRL updated at run time; the provider's signing key and TLS
//! certificate rotated under continuous load from three consumers without one failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use contracts::envelope::JOSE_MEDIA_TYPE;
use contracts::manifest::ManifestDoc;
use contracts::{Algorithm, Manifest, ParsedJws, SigningKey};
use demo::crl::{self, Reason};
use demo::pki::Holder;
use gateway::assemble::StartError;
use gateway::authority::build_manifest_doc;
use gateway::gateway::Gateway;
use serde_json::Value;

use crate::common::*;

/// The federation's `n`th manifest: the one it started with is the first. (The authority's
/// serials are its signing times, so the tests count from the first.)
fn s(f: &Federation, n: u64) -> u64 {
    f.manifest.doc().serial + n - 1
}

/// The configuration's `n`th manifest (see [`s`]), issued now.
fn doc(f: &Federation, n: u64) -> ManifestDoc {
    build_manifest_doc(&f.config, s(f, n), contracts::unix_now()).unwrap()
}

/// Signs `doc` with the authority's key and writes it where the gateways read it.
fn publish(f: &Federation, doc: &ManifestDoc) -> String {
    let jws = Manifest::sign(doc, &f.authority()).unwrap();
    std::fs::write(&f.config.federation.manifest, &jws).unwrap();
    jws
}

/// Which of the federation's manifests (see [`s`]) `member`'s gateway holds.
fn serial_of(f: &Federation, member: &str) -> u64 {
    (f.gateway(member).manifest().doc().serial + 1).saturating_sub(f.manifest.doc().serial)
}

/// Waits (bounded) until `member`'s gateway holds manifest `serial`.
async fn until_serial(f: &Federation, member: &str, serial: u64) {
    for _ in 0..200 {
        if serial_of(f, member) == serial {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{member} holds serial {}, not {serial}",
        serial_of(f, member)
    );
}

/// A GET of `/v1/manifest` on `to`'s federation listener presenting `cert_of`'s certificate.
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
async fn a_new_manifest_takes_effect_at_a_reload_without_a_restart() {
    let f = Arc::new(Federation::start().await);
    assert_ok(&f.send_signed(KEMLU, &f.citizenship_request()).await);

    // Serial 2: Kemlu is no longer a consumer of citizenship.status.
    let mut next = doc(&f, 2);
    next.contracts
        .iter_mut()
        .find(|c| c.id == "citizenship.status")
        .unwrap()
        .consumers
        .retain(|c| c.member.as_str() != KEMLU);
    publish(&f, &next);
    // Nothing changes before the reload.
    assert_eq!(serial_of(&f, DUKCAPIL), 1);
    assert_ok(&f.send_signed(KEMLU, &f.citizenship_request()).await);

    // Exchanges in flight while the manifest is swapped each finish under the manifest
    // they started with: answered (serial 1) or refused as not granted (serial 2), never
    // anything else.
    let mut inflight = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let f = f.clone();
        inflight.spawn(async move { f.send_signed(KEMLU, &f.citizenship_request()).await });
    }
    let done = f.gateway(DUKCAPIL).reload().await;
    assert!(done.adopted && done.serial == s(&f, 2), "{done:?}");
    assert!(done.problems.is_empty(), "{done:?}");
    while let Some(reply) = inflight.join_next().await {
        let reply = reply.unwrap();
        if reply.status != 200 {
            assert_problem(&reply, 403, "forbidden");
        }
    }
    // From now on, refused; the serial is held beside the manifest.
    let reply = f.send_signed(KEMLU, &f.citizenship_request()).await;
    assert_problem(&reply, 403, "forbidden");
    assert_eq!(
        reply
            .headers
            .get("simpul-manifest-serial")
            .and_then(|v| v.to_str().ok()),
        Some(s(&f, 2).to_string().as_str())
    );
    let serial_file = std::fs::read_to_string(
        f.config
            .federation
            .manifest
            .with_extension("ID_GOV_DUKCAPIL.serial"),
    )
    .unwrap();
    assert_eq!(serial_file.trim(), s(&f, 2).to_string());
    // The same manifest again changes nothing.
    let again = f.gateway(DUKCAPIL).reload().await;
    assert!(!again.adopted && again.serial == s(&f, 2) && again.problems.is_empty());
    assert!(
        f.metrics(DUKCAPIL)
            .await
            .lines()
            .any(|l| l.starts_with("simpul_manifest_serial{")
                && l.contains("ID:GOV:DUKCAPIL")
                && l.ends_with(&format!(" {}", s(&f, 2)))),
        "no simpul_manifest_serial 2"
    );
}

#[tokio::test]
async fn a_peer_holding_a_newer_manifest_spreads_it() {
    let f = Federation::start().await;
    publish(&f, &doc(&f, 2));
    assert!(f.gateway(DUKCAPIL).reload().await.adopted);
    assert_eq!(serial_of(&f, KEMLU), 1);
    // Kemlu asks Dukcapil: the answer states serial 2; Kemlu fetches Dukcapil's manifest
    // aside and adopts it.
    assert_ok(&f.ask_citizenship_reply().await);
    until_serial(&f, KEMLU, 2).await;
    // And a provider learns it from a consumer's request: Kemlu (now at 2) asks BP2MI.
    assert_eq!(serial_of(&f, BP2MI), 1);
    let nik = f.population.sample_in_all_four();
    f.local_query(
        PEDULI,
        KEMLU,
        "employment.placement",
        citizen_protection(nik),
    )
    .await;
    until_serial(&f, BP2MI, 2).await;
}

#[tokio::test]
async fn a_rolled_back_manifest_offered_by_a_peer_is_refused_and_the_held_one_kept() {
    let f = Federation::start().await;
    let old = std::fs::read_to_string(&f.config.federation.manifest).unwrap();
    publish(&f, &doc(&f, 3));
    assert!(f.gateway(DUKCAPIL).reload().await.adopted);
    // Kemlu still holds serial 1 and serves it; its request states a newer serial than
    // Dukcapil holds, so Dukcapil fetches Kemlu's manifest — an older one.
    let request = f.citizenship_request();
    let reply = f
        .as_gateway(KEMLU, DUKCAPIL)
        .call_with(
            http::Method::POST,
            &format!("{}/v1/exchange/citizenship.status/1", f.url(DUKCAPIL)),
            JOSE_MEDIA_TYPE,
            &[("simpul-manifest-serial", &s(&f, 4).to_string())],
            f.sign(KEMLU, &request).into(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_ok(&reply);
    let mut refused = 0.0;
    for _ in 0..200 {
        refused = f
            .counter(
                DUKCAPIL,
                "simpul_manifest_refused_total",
                &["reason=\"rollback\""],
            )
            .await;
        if refused >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused >= 1.0, "no rollback counted");
    assert_eq!(serial_of(&f, DUKCAPIL), 3);
    // Offered directly, the same.
    let offered = f.gateway(DUKCAPIL).offer_manifest(&old).await;
    assert!(
        !offered.adopted && offered.serial == s(&f, 3),
        "{offered:?}"
    );
    assert!(offered.problems[0].contains("rollback"), "{offered:?}");
    // Still answering under serial 3.
    assert_ok(&f.send_signed(KEMLU, &f.citizenship_request()).await);
}

#[tokio::test]
async fn a_deleted_serial_file_never_lets_an_older_manifest_in() {
    let mut f = Federation::start().await;
    let old = std::fs::read_to_string(&f.config.federation.manifest).unwrap();
    publish(&f, &doc(&f, 2));
    assert!(f.gateway(DUKCAPIL).reload().await.adopted);
    let serial_file = f
        .config
        .federation
        .manifest
        .with_extension("ID_GOV_DUKCAPIL.serial");
    std::fs::remove_file(&serial_file).unwrap();
    std::fs::write(&f.config.federation.manifest, &old).unwrap();

    // At a reload: refused as a rollback, the held one kept.
    let done = f.gateway(DUKCAPIL).reload().await;
    assert!(!done.adopted && done.serial == s(&f, 2), "{done:?}");
    assert!(done.problems[0].contains("rollback"), "{done:?}");

    // At start-up: the audit store's serial is the bar.
    f.stop(DUKCAPIL).await;
    std::fs::remove_file(&serial_file).ok();
    let err = Gateway::from_config(&f.config, &id(DUKCAPIL))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            StartError::Manifest {
                source: contracts::ManifestError::Rollback { offered, held },
                ..
            } if *offered == s(&f, 1) && *held == s(&f, 2)
        ),
        "{err}"
    );
    // A serial file that is not a serial is refused, naming it.
    std::fs::write(&serial_file, "two\n").unwrap();
    let err = Gateway::from_config(&f.config, &id(DUKCAPIL))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ID_GOV_DUKCAPIL.serial") && err.contains("not a manifest serial"),
        "{err}"
    );
    // With the newer manifest back, it starts, and both places hold 2 again.
    std::fs::remove_file(&serial_file).unwrap();
    publish(&f, &doc(&f, 2));
    f.restart(DUKCAPIL).await;
    assert_eq!(serial_of(&f, DUKCAPIL), 2);
    assert_eq!(
        std::fs::read_to_string(&serial_file).unwrap().trim(),
        s(&f, 2).to_string()
    );
}

#[tokio::test]
async fn a_manifest_that_expires_while_running_fails_closed() {
    let f = Federation::start().await;
    let now = contracts::unix_now();
    let mut short = doc(&f, 2);
    short.issued_at = now - 10;
    short.expires_at = now + 5;
    publish(&f, &short);
    for m in [KEMLU, DUKCAPIL] {
        let done = f.gateway(m).reload().await;
        assert!(done.adopted, "{m}: {done:?}");
    }
    assert_ok(&f.ask_citizenship_reply().await);
    // Waiting for the expiry is the point of this test.
    while contracts::unix_now() < short.expires_at {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The provider refuses every exchange.
    let reply = f.send_signed(KEMLU, &f.citizenship_request()).await;
    let p = assert_problem(&reply, 503, "manifest-expired");
    assert!(
        p.detail.contains(&format!("serial {}", s(&f, 2))),
        "{}",
        p.detail
    );
    // The consumer refuses to ask, on its local face.
    let reply = f.ask_citizenship_reply().await;
    assert_problem(&reply, 503, "manifest-expired");
    // A reload that finds nothing newer keeps refusing (the expired file is refused too).
    let done = f.gateway(DUKCAPIL).reload().await;
    assert!(!done.adopted && !done.problems.is_empty(), "{done:?}");
    assert_problem(
        &f.send_signed(KEMLU, &f.citizenship_request()).await,
        503,
        "manifest-expired",
    );
    let expires = f
        .counter(DUKCAPIL, "simpul_manifest_expires_seconds", &[])
        .await;
    assert!(expires <= 0.0, "{expires}");
    // A load balancer's probe takes the gateway out of service, and hears why.
    let ops = format!("operator:{DUKCAPIL}:OPS");
    let ready = f
        .admin_call(DUKCAPIL, &ops, http::Method::GET, "/readyz", Bytes::new())
        .await;
    let p = assert_problem(&ready, 503, "not-ready");
    assert!(
        p.detail.contains("manifest: expired at 20")
            && p.detail.ends_with("every exchange is refused"),
        "{}",
        p.detail
    );
    // Alive all the same.
    let alive = f
        .admin_call(DUKCAPIL, &ops, http::Method::GET, "/healthz", Bytes::new())
        .await;
    assert_ok(&alive);
    // A current manifest ends it.
    publish(&f, &doc(&f, 3));
    assert!(f.gateway(DUKCAPIL).reload().await.adopted);
    assert!(f.gateway(KEMLU).reload().await.adopted);
    assert_ok(
        &f.admin_call(DUKCAPIL, &ops, http::Method::GET, "/readyz", Bytes::new())
            .await,
    );
    assert_ok(&f.ask_citizenship_reply().await);
}

#[tokio::test]
async fn a_crl_updated_at_run_time_refuses_the_next_handshake() {
    let f = Federation::start().await;
    manifest_as(&f, BP2MI, DUKCAPIL).await.unwrap();
    assert_ok(&f.ask_citizenship_reply().await);

    // A member gateway revoked by the federation CA.
    crl::revoke(
        &f.layout(),
        &Holder::Gateway(id(BP2MI)),
        Reason::KeyCompromise,
    )
    .unwrap();
    // Not before a reload: the CRL is read at refreshes, not per handshake.
    manifest_as(&f, BP2MI, DUKCAPIL).await.unwrap();
    let done = f.gateway(DUKCAPIL).reload().await;
    assert!(!done.adopted && done.problems.is_empty(), "{done:?}");
    let refused = manifest_as(&f, BP2MI, DUKCAPIL).await.unwrap_err();
    assert!(refused.to_lowercase().contains("revoked"), "{refused}");
    manifest_as(&f, KEMLU, DUKCAPIL).await.unwrap();

    // A subsystem revoked by its member's CA, at the member's local listener.
    crl::revoke(
        &f.layout(),
        &Holder::Subsystem(id(PEDULI)),
        Reason::KeyCompromise,
    )
    .unwrap();
    assert_ok(&f.ask_citizenship_reply().await);
    assert!(f.gateway(KEMLU).reload().await.problems.is_empty());
    let nik = f.population.sample_in_all_four();
    let err = f
        .try_local_query(PEDULI, KEMLU, "citizenship.status", citizen_protection(nik))
        .await
        .unwrap_err();
    assert!(is_refused(&err), "{err:?}");
}

#[tokio::test]
async fn a_signing_key_the_manifest_does_not_list_is_not_used() {
    let f = Federation::start().await;
    let before = f.gateway(DUKCAPIL).signing_kid();
    let stray = SigningKey::generate(Algorithm::ES256, DUKCAPIL).unwrap();
    write_private(
        &f.layout().signing_key(&id(DUKCAPIL)),
        stray.private_pem().unwrap(),
    );
    let done = f.gateway(DUKCAPIL).reload().await;
    assert!(
        done.problems.iter().any(|p| p.contains("signing_key")
            && p.contains(stray.kid())
            && p.contains("not among")),
        "{done:?}"
    );
    assert_eq!(f.gateway(DUKCAPIL).signing_kid(), before);
    let reply = f.send_signed(KEMLU, &f.citizenship_request()).await;
    assert_eq!(answer_kid(&reply), before);
}

/// Writes a private key file readable by its owner only.
fn write_private(path: &std::path::Path, pem: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("next");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .unwrap();
    std::io::Write::write_all(&mut file, pem).unwrap();
    drop(file);
    std::fs::rename(&tmp, path).unwrap();
}

/// The `kid` of the answer JWS in a 200 exchange reply.
fn answer_kid(reply: &gateway::client::Reply) -> String {
    assert_ok(reply);
    let text = std::str::from_utf8(&reply.body).unwrap();
    ParsedJws::parse(text, contracts::envelope::ANSWER_TYP)
        .unwrap()
        .header
        .kid
        .unwrap()
}

/// One consumer's system asking Dukcapil through its own gateway until `stop`, counting
/// answers and keeping every failure, and the kid of its last answer.
#[derive(Default)]
struct Load {
    ok: AtomicU64,
    failures: std::sync::Mutex<Vec<String>>,
    last_kid: std::sync::Mutex<String>,
}

async fn ask_until(
    f: Arc<Federation>,
    subsystem: &'static str,
    member: &'static str,
    purpose: &'static str,
    stop: Arc<AtomicBool>,
    load: Arc<Load>,
) {
    let client = f.as_identity(subsystem, member);
    let url = format!("{}/v1/query/citizenship.status/1", f.local_url(member));
    while !stop.load(Ordering::SeqCst) {
        let nik = f.population.sample_in_all_four();
        let body = serde_json::json!({"purpose": purpose, "query": {"nik": nik}});
        let reply = client
            .call(
                http::Method::POST,
                &url,
                "application/json",
                serde_json::to_vec(&body).unwrap().into(),
                Duration::from_secs(10),
            )
            .await;
        match reply {
            Ok(r) if r.status == 200 => {
                let answer: Value = serde_json::from_slice(&r.body).unwrap();
                let response = answer["evidence"]["response"].as_str().unwrap();
                let kid = ParsedJws::parse(response, contracts::envelope::ANSWER_TYP)
                    .unwrap()
                    .header
                    .kid
                    .unwrap();
                *load.last_kid.lock().unwrap() = kid;
                load.ok.fetch_add(1, Ordering::SeqCst);
            }
            Ok(r) => load.failures.lock().unwrap().push(format!(
                "{subsystem}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )),
            Err(e) => load
                .failures
                .lock()
                .unwrap()
                .push(format!("{subsystem}: {e}")),
        }
    }
}

/// Waits (bounded) until every load has `n` more answers than `from`.
async fn until_answered(loads: &[Arc<Load>], from: &[u64], n: u64) {
    for _ in 0..1200 {
        if loads
            .iter()
            .zip(from)
            .all(|(l, f)| l.ok.load(Ordering::SeqCst) >= f + n)
        {
            return;
        }
        if loads.iter().any(|l| !l.failures.lock().unwrap().is_empty()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the consumers did not get {n} more answers each");
}

#[tokio::test]
async fn a_providers_signing_key_and_certificate_rotate_under_load_without_a_failed_exchange() {
    let fast = "rate = { per_second = 5000, burst = 10000 }";
    let f = Arc::new(
        Federation::start_with(Options {
            edits: vec![
                ("rate = { per_second = 20, burst = 40 }".into(), fast.into()),
                ("rate = { per_second = 20, burst = 40 }".into(), fast.into()),
            ],
            ..Options::default()
        })
        .await,
    );
    let old_kid = f.gateway(DUKCAPIL).signing_kid();
    let next = SigningKey::generate(Algorithm::ES256, DUKCAPIL).unwrap();
    // The authority publishes Dukcapil's next key beside the current one; every gateway
    // adopts it.
    let mut both = doc(&f, 2);
    both.members
        .iter_mut()
        .find(|m| m.id.as_str() == DUKCAPIL)
        .unwrap()
        .keys
        .push(next.public_jwk().clone());
    publish(&f, &both);
    for m in [KEMLU, DUKCAPIL, BP2MI, BPJSTK] {
        assert!(f.gateway(m).reload().await.adopted, "{m}");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<Arc<Load>> = (0..3).map(|_| Arc::new(Load::default())).collect();
    let mut tasks = Vec::new();
    for ((subsystem, member, purpose), load) in [
        (PEDULI, KEMLU, "citizen-protection"),
        (SISKOP2MI, BP2MI, "placement-verification"),
        ("ID:GOV:BPJSTK:SIPP", BPJSTK, "social-security"),
    ]
    .into_iter()
    .zip(&loads)
    {
        tasks.push(tokio::spawn(ask_until(
            f.clone(),
            subsystem,
            member,
            purpose,
            stop.clone(),
            load.clone(),
        )));
    }
    until_answered(&loads, &[0, 0, 0], 5).await;

    // The provider's new signing key and a new TLS certificate (a new key, the same CA),
    // swapped in while the three consumers keep asking.
    write_private(
        &f.layout().signing_key(&id(DUKCAPIL)),
        next.private_pem().unwrap(),
    );
    demo::pki::renew(
        &f.layout(),
        &Holder::Gateway(id(DUKCAPIL)),
        &f.config.federation.hosts,
        true,
    )
    .unwrap();
    let done = f.gateway(DUKCAPIL).reload().await;
    assert!(done.problems.is_empty(), "{done:?}");
    assert_eq!(f.gateway(DUKCAPIL).signing_kid(), next.kid());
    let counted: Vec<u64> = loads.iter().map(|l| l.ok.load(Ordering::SeqCst)).collect();
    until_answered(&loads, &counted, 10).await;

    // The old key retires: a manifest without it, adopted by every gateway under load.
    let mut retired = doc(&f, 3);
    retired
        .members
        .iter_mut()
        .find(|m| m.id.as_str() == DUKCAPIL)
        .unwrap()
        .keys = vec![next.public_jwk().clone()];
    publish(&f, &retired);
    for m in [DUKCAPIL, KEMLU, BP2MI, BPJSTK] {
        // (A consumer may have learnt it from Dukcapil's answers already.)
        let done = f.gateway(m).reload().await;
        assert!(
            done.serial == s(&f, 3) && done.problems.is_empty(),
            "{m}: {done:?}"
        );
    }
    let counted: Vec<u64> = loads.iter().map(|l| l.ok.load(Ordering::SeqCst)).collect();
    until_answered(&loads, &counted, 5).await;

    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    for load in &loads {
        let failures = load.failures.lock().unwrap();
        assert!(
            failures.is_empty(),
            "{} failed: {failures:#?}",
            failures.len()
        );
        assert_eq!(*load.last_kid.lock().unwrap(), next.kid());
    }
    assert_ne!(old_kid, next.kid());
    // A new connection gets the new certificate.
    assert_eq!(
        served_certificate(&f, DUKCAPIL).await,
        std::fs::read(f.layout().gateway_cert(&id(DUKCAPIL))).unwrap()
    );
}

/// The certificate (PEM) `member`'s federation listener presents to a new connection.
async fn served_certificate(f: &Federation, member: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let l = f.layout();
    let roots = f.roots();
    let (chain, key) = f.gateway_identity(KEMLU);
    let config = rustls::ClientConfig::builder_with_provider(gateway::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let addr = f.config.member(&id(member)).unwrap().listen;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let pem = std::fs::read(l.gateway_cert(&id(member))).unwrap();
    let on_disk = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .next()
        .unwrap()
        .unwrap();
    if served == on_disk { pem } else { Vec::new() }
}

/// The authority's publication point: a plain HTTPS server (no client certificate asked)
/// presenting `cert_of`'s gateway certificate, serving `files` by path, 404 otherwise.
async fn publish_over_https(
    listener: tokio::net::TcpListener,
    f: &Federation,
    cert_of: &str,
    files: Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (chain, key) = f.gateway_identity(cert_of);
    let config = rustls::ServerConfig::builder_with_provider(gateway::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, files) = (acceptor.clone(), files.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    if tls.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head);
                let path = text.split(' ').nth(1).unwrap_or("").to_owned();
                let body = files.lock().unwrap().get(&path).cloned();
                let answer = match body {
                    Some(body) => {
                        let mut a = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        a.extend(body);
                        a
                    }
                    None => {
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = tls.write_all(&answer).await;
                let _ = tls.shutdown().await;
            });
        }
    });
}

#[tokio::test]
async fn the_manifest_and_the_crl_are_fetched_from_the_authoritys_urls() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let f = Federation::start_with(Options {
        edits: vec![(
            "manifest_validity_days = 30".into(),
            format!(
                "manifest_validity_days = 30\nmanifest_url = \"https://localhost:{port}/manifest.jws\"\ncrl_url = \"https://localhost:{port}/crl.pem\""
            ),
        )],
        ..Options::default()
    })
    .await;
    let files = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    publish_over_https(listener, &f, BP2MI, files.clone()).await;
    let old = std::fs::read(&f.config.federation.manifest).unwrap();
    let crl_path = f.config.federation.crl.clone();
    let crl_before = std::fs::read(&crl_path).unwrap();

    // Nothing published yet: the refresh keeps what is held, saying why.
    let done = f.gateway(DUKCAPIL).reload().await;
    assert!(!done.adopted && done.serial == s(&f, 1), "{done:?}");
    assert!(
        done.problems
            .iter()
            .any(|p| p.contains("manifest.jws") && p.contains("404")),
        "{done:?}"
    );

    // The authority publishes serial 2 and a CRL revoking BP2MI's gateway; the local CRL
    // file stays as it was until the fetched one is adopted.
    let jws = Manifest::sign(&doc(&f, 2), &f.authority()).unwrap();
    crl::revoke(
        &f.layout(),
        &Holder::Gateway(id(BP2MI)),
        Reason::KeyCompromise,
    )
    .unwrap();
    let revoked_crl = std::fs::read(&crl_path).unwrap();
    std::fs::write(&crl_path, &crl_before).unwrap();
    {
        let mut files = files.lock().unwrap();
        files.insert("/manifest.jws".to_owned(), jws.clone().into_bytes());
        files.insert("/crl.pem".to_owned(), revoked_crl.clone());
    }
    let done = f.gateway(DUKCAPIL).reload().await;
    assert!(done.adopted && done.serial == s(&f, 2), "{done:?}");
    assert!(done.problems.is_empty(), "{done:?}");
    // Both are kept for the next start.
    assert_eq!(
        std::fs::read_to_string(&f.config.federation.manifest).unwrap(),
        jws
    );
    assert_eq!(std::fs::read(&crl_path).unwrap(), revoked_crl);
    let refused = manifest_as(&f, BP2MI, DUKCAPIL).await.unwrap_err();
    assert!(refused.to_lowercase().contains("revoked"), "{refused}");

    // An older manifest at the URL is refused as a rollback.
    files
        .lock()
        .unwrap()
        .insert("/manifest.jws".to_owned(), old);
    let done = f.gateway(DUKCAPIL).reload().await;
    assert!(!done.adopted && done.serial == s(&f, 2), "{done:?}");
    assert!(done.problems[0].contains("rollback"), "{done:?}");
}

/// A backend (an HTTP API for Dukcapil's citizenship.status) that tells when a request has
/// arrived and answers it only when released.
async fn held_backend() -> (
    u16,
    tokio::sync::mpsc::Receiver<()>,
    Arc<tokio::sync::Semaphore>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (arrived, arrivals) = tokio::sync::mpsc::channel(16);
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let gate = release.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let (arrived, gate) = (arrived.clone(), gate.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if tcp.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = arrived.send(()).await;
                let Ok(permit) = gate.acquire().await else {
                    return;
                };
                permit.forget();
                let body = br#"{"citizenship":"WNI","deceased":false}"#;
                let mut answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                answer.extend_from_slice(body);
                let _ = tcp.write_all(&answer).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    (port, arrivals, release)
}

#[tokio::test]
async fn an_exchange_in_flight_finishes_under_the_manifest_and_key_it_started_with() {
    let (port, mut arrivals, release) = held_backend().await;
    let sql = "  [members.provides.sql]\n  database = \"data/dukcapil.db\"\n  statement = \"SELECT citizenship, deceased FROM residents WHERE nik = :nik\"\n  columns = { citizenship = \"text\", deceased = \"bool\" }\n  found = { registered = true }\n  not_found = { registered = false, citizenship = \"unknown\", deceased = false }";
    let http = format!(
        "  [members.provides.http]\n  url = \"http://127.0.0.1:{port}/residents/{{nik}}\"\n  answer = {{ citizenship = \"/citizenship\", deceased = \"/deceased\" }}\n  found = {{ registered = true }}\n  timeout_ms = 60000"
    );
    let f = Arc::new(
        Federation::start_with(Options {
            edits: vec![(sql.into(), http)],
            ..Options::default()
        })
        .await,
    );
    let old_kid = f.gateway(DUKCAPIL).signing_kid();

    // An exchange that passed every check and waits on the backend.
    let asked = {
        let f = f.clone();
        tokio::spawn(async move { f.send_signed(KEMLU, &f.citizenship_request()).await })
    };
    arrivals.recv().await.unwrap();

    // Meanwhile: serial 2, in which Kemlu may no longer ask and Dukcapil signs with a new
    // key, adopted by Dukcapil.
    let next = SigningKey::generate(Algorithm::ES256, DUKCAPIL).unwrap();
    let mut changed = doc(&f, 2);
    changed
        .contracts
        .iter_mut()
        .find(|c| c.id == "citizenship.status")
        .unwrap()
        .consumers
        .retain(|c| c.member.as_str() != KEMLU);
    changed
        .members
        .iter_mut()
        .find(|m| m.id.as_str() == DUKCAPIL)
        .unwrap()
        .keys
        .push(next.public_jwk().clone());
    publish(&f, &changed);
    write_private(
        &f.layout().signing_key(&id(DUKCAPIL)),
        next.private_pem().unwrap(),
    );
    let done = f.gateway(DUKCAPIL).reload().await;
    assert!(done.adopted && done.problems.is_empty(), "{done:?}");
    assert_eq!(f.gateway(DUKCAPIL).signing_kid(), next.kid());

    // Released, the exchange finishes as it began: answered, signed with the old key.
    release.add_permits(1);
    let reply = asked.await.unwrap();
    assert_eq!(answer_kid(&reply), old_kid);
    // The next one runs under serial 2: refused before the backend is asked.
    let reply = f.send_signed(KEMLU, &f.citizenship_request()).await;
    assert_problem(&reply, 403, "forbidden");
    assert!(arrivals.try_recv().is_err());
}

#[tokio::test]
async fn the_gauge_of_the_own_certificate_follows_a_renewal() {
    let f = Federation::start().await;
    let days = |s: f64| s / 86_400.0;
    let left = f
        .counter(DUKCAPIL, "simpul_certificate_expires_seconds", &[])
        .await;
    // Issued at start-up for 90 days.
    assert!(
        days(left) > 89.9 && days(left) <= 90.0,
        "{} days left",
        days(left)
    );
    // A certificate issued a day ago for two days: a day left, and so, within the 7 days of
    // `expiry_warning_days`, the gateway warns at every refresh.
    let l = f.layout();
    let ca = rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(l.ca_cert()).unwrap(),
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(l.ca_key()).unwrap()).unwrap(),
    )
    .unwrap();
    let key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(l.gateway_key(&id(DUKCAPIL))).unwrap())
            .unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, DUKCAPIL);
    params.subject_alt_names.push(rcgen::SanType::URI(
        id(DUKCAPIL).san_uri().try_into().unwrap(),
    ));
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let now = rcgen::date_time_ymd(1970, 1, 1)
        + Duration::from_secs(contracts::unix_now().try_into().unwrap());
    params.not_before = now - Duration::from_secs(86_400);
    params.not_after = now + Duration::from_secs(86_400);
    let cert = params.signed_by(&key, &ca).unwrap();
    std::fs::write(l.gateway_cert(&id(DUKCAPIL)), cert.pem()).unwrap();
    let done = f.gateway(DUKCAPIL).reload().await;
    assert!(done.problems.is_empty(), "{done:?}");
    let left = f
        .counter(DUKCAPIL, "simpul_certificate_expires_seconds", &[])
        .await;
    assert!(
        days(left) > 0.9 && days(left) <= 1.0,
        "{} days left",
        days(left)
    );
}
