//! TLS: a client certificate from a federation CA is required, nothing older than TLS 1.2 is
//! spoken, TLS 1.2 only with ECDHE and AEAD, and the server is the member the manifest says.

use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::ClientConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::{CaseFailure, CaseResult, Context, failed};
use crate::client::{self, ClientError, TlsIdentity, full};
use crate::hello::{self, HelloAnswer, client_hello, is_ecdhe_aead, suite_name};

/// How long a raw hello waits for the server's first record.
const PROBE_WAIT: Duration = Duration::from_secs(5);

/// Connects with `tls` and asks for the manifest: `Ok` is an HTTP answer, `Err` a refusal
/// (in the handshake, or — with TLS 1.3, where the client finishes first — on the first read).
async fn attempt(cx: &Context, tls: Arc<ClientConfig>) -> Result<client::Reply, ClientError> {
    let mut conn = client::connect(&cx.config.target.endpoint, tls).await?;
    conn.send(Method::GET, "/v1/manifest", None, full(Vec::new()))
        .await
}

/// Passes when the connection was refused by TLS, fails on an HTTP answer; a connection that
/// could not even be opened proves nothing and fails too.
fn expect_tls_refusal(outcome: Result<client::Reply, ClientError>, what: &str) -> CaseResult {
    match outcome {
        Ok(reply) => Err(failed(format!(
            "{what} was answered {} instead of refused",
            reply.summary()
        ))),
        Err(e @ (ClientError::Handshake { .. } | ClientError::Http(_))) => {
            Ok(format!("refused: {e}"))
        }
        Err(e) => Err(CaseFailure::Client(e)),
    }
}

pub(super) async fn no_client_certificate(cx: &Context) -> CaseResult {
    let tls = client::tls_config(&cx.config.cas, None, super::VERSIONS)?;
    expect_tls_refusal(
        attempt(cx, tls).await,
        "a connection without a client certificate",
    )
}

pub(super) async fn unknown_ca(cx: &Context) -> CaseResult {
    let identity = match &cx.config.unknown_ca {
        Some(id) => id.clone(),
        None => stray_identity(&cx.config.tester.member).map_err(failed)?,
    };
    let tls = client::tls_config(&cx.config.cas, Some(&identity), super::VERSIONS)?;
    expect_tls_refusal(
        attempt(cx, tls).await,
        "a certificate naming the tester from a CA outside the manifest",
    )
}

pub(super) async fn revoked(cx: &Context) -> CaseResult {
    let Some(identity) = &cx.config.revoked else {
        return Err(CaseFailure::Skipped(
            "needs a certificate from a CA of the manifest that its CA has revoked ([revoked])"
                .into(),
        ));
    };
    let tls = client::tls_config(&cx.config.cas, Some(identity), super::VERSIONS)?;
    expect_tls_refusal(
        attempt(cx, tls).await,
        "a certificate from a CA of the manifest that its CA has revoked",
    )
}

/// A client certificate naming `member` (SAN URI, clientAuth), issued by a CA made on the
/// spot that no manifest lists: everything right except the issuer.
fn stray_identity(member: &contracts::MemberId) -> Result<TlsIdentity, String> {
    let err = |e: rcgen::Error| format!("cannot make the stray certificate: {e}");
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Simpul conformance stray CA");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut leaf = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, member.as_str());
    leaf.distinguished_name = dn;
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.subject_alt_names = vec![SanType::URI(member.san_uri().try_into().map_err(err)?)];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = leaf.signed_by(&key, &issuer).map_err(err)?;
    Ok(TlsIdentity {
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    })
}

/// Sends a hand-written ClientHello and reads the first answer.
async fn probe(cx: &Context, version: u16, suites: &[u16]) -> Result<HelloAnswer, CaseFailure> {
    let endpoint = &cx.config.target.endpoint;
    let hello = client_hello(version, suites, Some(&endpoint.host));
    hello::probe(&endpoint.socket_addr(), &hello, PROBE_WAIT)
        .await
        .map_err(|e| failed(format!("cannot connect to {}: {e}", endpoint.socket_addr())))
}

/// Suites a server of the TLS 1.0/1.1 era would pick from.
const LEGACY_SUITES: &[u16] = &[0xC02B, 0xC02F, 0xC009, 0xC013, 0x002F, 0x0035];

pub(super) async fn legacy_versions(cx: &Context) -> CaseResult {
    let mut seen = Vec::new();
    for (name, version) in [
        ("TLS 1.1", hello::TLS_1_1),
        ("TLS 1.0", hello::TLS_1_0),
        ("SSL 3.0", hello::SSL_3_0),
    ] {
        let answer = probe(cx, version, LEGACY_SUITES).await?;
        if !answer.is_refusal() {
            return Err(failed(format!(
                "a {name} ClientHello was answered: {}",
                answer.describe()
            )));
        }
        seen.push(format!("{name}: {}", answer.describe()));
    }
    Ok(seen.join("; "))
}

/// Whether the server completes a TLS 1.2 handshake with rustls (which offers only ECDHE
/// AEAD suites), and the suite it chose.
async fn rustls_tls12(cx: &Context) -> Result<Result<u16, ClientError>, CaseFailure> {
    let tls = client::tls_config(
        &cx.config.cas,
        Some(&cx.config.tester.tls),
        &[&rustls::version::TLS12],
    )?;
    Ok(client::connect(&cx.config.target.endpoint, tls)
        .await
        .map(|c| c.suite.map(u16::from).unwrap_or(0)))
}

/// Single suites a TLS 1.2 server must refuse: ECDHE without AEAD, AEAD without ECDHE.
const WEAK_SUITES: &[u16] = &[0xC023, 0xC027, 0xC013, 0x009C, 0x009E, 0x002F];
/// The ECDHE AEAD suites a control hello offers.
const GOOD_SUITES: &[u16] = &[0xC02B, 0xC02F, 0xCCA9, 0xCCA8, 0xC02C, 0xC030];

pub(super) async fn weak_suites(cx: &Context) -> CaseResult {
    // The control: the same hand-written hello with good suites must get a ServerHello, or
    // the refusals below would prove nothing about the suites.
    let control = probe(cx, hello::TLS_1_2, GOOD_SUITES).await?;
    if control.is_refusal() {
        return match rustls_tls12(cx).await? {
            Err(_) => Ok(format!(
                "the server does not speak TLS 1.2 at all ({}); TLS 1.3 only is allowed",
                control.describe()
            )),
            Ok(suite) => Err(failed(format!(
                "the control hello with ECDHE AEAD suites was refused ({}) although rustls \
                 negotiates TLS 1.2 ({}): the probe cannot judge this server",
                control.describe(),
                suite_name(suite)
            ))),
        };
    }
    let mut seen = Vec::new();
    for &suite in WEAK_SUITES {
        let answer = probe(cx, hello::TLS_1_2, &[suite]).await?;
        if !answer.is_refusal() {
            return Err(failed(format!(
                "a TLS 1.2 hello offering only {} was answered: {}",
                suite_name(suite),
                answer.describe()
            )));
        }
        seen.push(format!("{}: {}", suite_name(suite), answer.describe()));
    }
    Ok(format!(
        "control accepted ({}); refused {}",
        control.describe(),
        seen.join("; ")
    ))
}

pub(super) async fn tls12_suite(cx: &Context) -> CaseResult {
    // Weak suites first: a server that honours the client's order and allows them picks one.
    let mut offer: Vec<u16> = WEAK_SUITES.to_vec();
    offer.extend_from_slice(GOOD_SUITES);
    let raw = probe(cx, hello::TLS_1_2, &offer).await?;
    let rustls = rustls_tls12(cx).await?;
    match (&raw, rustls) {
        (HelloAnswer::ServerHello { suite, .. }, _) if !is_ecdhe_aead(*suite) => {
            Err(failed(format!(
                "offered weak suites first, the server chose {}",
                suite_name(*suite)
            )))
        }
        (HelloAnswer::ServerHello { suite, .. }, Ok(negotiated)) => {
            if is_ecdhe_aead(negotiated) {
                Ok(format!(
                    "chose {} over the weak suites offered first; rustls negotiated {}",
                    suite_name(*suite),
                    suite_name(negotiated)
                ))
            } else {
                Err(failed(format!(
                    "rustls TLS 1.2 negotiated {}",
                    suite_name(negotiated)
                )))
            }
        }
        (HelloAnswer::ServerHello { suite, .. }, Err(e)) => Err(failed(format!(
            "the server chose {} for a raw hello but a rustls TLS 1.2 handshake with the tester's certificate failed: {e}",
            suite_name(*suite)
        ))),
        (answer, Err(_)) if answer.is_refusal() => Ok(format!(
            "the server does not speak TLS 1.2 ({}); TLS 1.3 only is allowed",
            answer.describe()
        )),
        (answer, _) => Err(failed(format!(
            "unexpected answer to a TLS 1.2 hello: {}",
            answer.describe()
        ))),
    }
}

pub(super) async fn tls13(cx: &Context) -> CaseResult {
    let tls = client::tls_config(
        &cx.config.cas,
        Some(&cx.config.tester.tls),
        &[&rustls::version::TLS13],
    )?;
    let mut conn = client::connect(&cx.config.target.endpoint, tls).await?;
    let suite = conn.suite.map(u16::from).unwrap_or(0);
    let reply = conn
        .send(Method::GET, "/v1/manifest", None, full(Vec::new()))
        .await?;
    match conn.version {
        Some(rustls::ProtocolVersion::TLSv1_3) => Ok(format!(
            "TLS 1.3 with suite 0x{suite:04X}, answered {}",
            reply.summary()
        )),
        other => Err(failed(format!("negotiated {other:?}, not TLS 1.3"))),
    }
}

pub(super) async fn server_identity(cx: &Context) -> CaseResult {
    let target = &cx.config.target;
    let listed = cx
        .config
        .manifest
        .member(&target.member)
        .map(|m| m.gateway.trim_end_matches('/').to_owned())
        .unwrap_or_default();
    if listed != target.url {
        return Err(failed(format!(
            "the manifest lists {} at {listed}, the suite was pointed at {}",
            target.member, target.url
        )));
    }
    // The handshake itself checks the chain against the manifest's CAs and the host name.
    let conn = client::connect(&target.endpoint, cx.tester_tls()).await?;
    let names = conn
        .peer_certificates
        .first()
        .map(client::identities)
        .unwrap_or_default();
    match names.as_slice() {
        [one] if one == &target.member => Ok(format!(
            "chain verifies to a manifest CA for {}; SAN URI {}",
            target.endpoint.host,
            one.san_uri()
        )),
        _ => Err(failed(format!(
            "the server certificate names {names:?}; it must name exactly {}",
            target.member.san_uri()
        ))),
    }
}
