//! A ministry joining with keys it keeps: `simpul pki request` makes the member's gateway TLS
//! key and its signing key on the ministry's machine and writes a request for the authority;
//! `simpul pki issue` (the authority) checks the request, issues the gateway certificate from
//! the federation CA, and records the public signing key for the next manifest. The private
//! keys never leave the ministry's directory (or its PKCS#11 token).
//!
//! The request (`request.json`) is one JSON object:
//!
//! - `v`: 1;
//! - `member`: the member id;
//! - `csr`: a PKCS#10 certificate signing request (PEM) for the gateway's TLS key (ECDSA
//!   P-256), subject `CN=<member>`, SAN URI `urn:simpul:<member>` and each host as SAN DNS or
//!   SAN IP — the names `simpul pki init` gives a gateway certificate; its self-signature
//!   proves the TLS key;
//! - `signing_jwk`: the public ES256 signing key (kid `<member>#<thumbprint>`);
//! - `proof`: a compact JWS (`typ` [`PROOF_TYP`]) signed by that signing key over
//!   `{"member": …, "csr_sha256": <base64url SHA-256 of the CSR's DER>}`: it proves the
//!   signing key and binds it to the CSR.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use contracts::MemberId;
use contracts::canonical::sha256_b64url;
use contracts::jws::{Algorithm, ParsedJws, SigningKey, VerifyingKey, jwk_thumbprint};
use gateway::layout::PkiLayout;
use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, SanType};
use rustls::pki_types::CertificateSigningRequestDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::pki::{self, LeafKind, Output, PkiError};

/// The file name of a request in the directory `request` writes.
pub const REQUEST_FILE: &str = "request.json";

/// The `typ` of the proof that the requester holds the signing key.
pub const PROOF_TYP: &str = "simpul-key-request+jws";

/// The request a ministry sends to the authority (see the module documentation).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// Version, 1.
    pub v: u32,
    /// The member the request is for.
    pub member: MemberId,
    /// The PKCS#10 CSR of the gateway's TLS key, PEM.
    pub csr: String,
    /// The public signing key.
    pub signing_jwk: Value,
    /// The signing key's proof over the member and the CSR.
    pub proof: String,
}

/// What the proof signs.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Proof {
    member: MemberId,
    csr_sha256: String,
}

/// Why a request could not be made, or was refused by the authority. Each refusal names the
/// request file.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Making keys, reading the CA, writing files.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The request is not the JSON object described above.
    #[error("{}: not a join request: {reason}", path.display())]
    Malformed {
        /// The request file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The CSR's self-signature does not verify.
    #[error("{}: the CSR's signature does not verify: it was altered or not made with its key", path.display())]
    CsrSignature {
        /// The request file.
        path: PathBuf,
    },
    /// The member is not in the authority's configuration.
    #[error("{}: {member} is not a member in {config}: add it to the configuration first", path.display())]
    UnknownMember {
        /// The request file.
        path: PathBuf,
        /// The requested member.
        member: MemberId,
        /// The configuration file.
        config: String,
    },
    /// A request for the federation authority's own id, or for a subsystem.
    #[error("{}: {member}: {reason}", path.display())]
    NotAGateway {
        /// The request file.
        path: PathBuf,
        /// The requested id.
        member: MemberId,
        /// Why it gets no gateway certificate.
        reason: &'static str,
    },
    /// The CSR names something other than the member and its hosts.
    #[error("{}: the CSR names {name}, which a certificate for {member} may not: {reason}", path.display())]
    ExtraName {
        /// The request file.
        path: PathBuf,
        /// The requested member.
        member: MemberId,
        /// The offending name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The TLS key is not ECDSA P-256, or the CSR asks for what the authority does not issue.
    #[error("{}: the CSR: {reason}", path.display())]
    Csr {
        /// The request file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The signing key is not an ES256 public key of the member, or its proof does not verify.
    #[error("{}: the signing key: {reason}", path.display())]
    SigningKey {
        /// The request file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// What `request` wrote.
#[derive(Debug)]
pub struct Requested {
    /// The request to send to the authority.
    pub request: PathBuf,
    /// Every file written, in order.
    pub written: Vec<PathBuf>,
    /// The signing key's id.
    pub kid: String,
}

/// Makes `member`'s gateway TLS key (ECDSA P-256) in `out/gateway.key` and, unless `signing`
/// is given (a key held in a PKCS#11 token), its ES256 signing key in `out/signing.key` —
/// both 0600 — with the public JWK in `out/signing.jwk`, and the request for the authority
/// in `out/request.json` ([`REQUEST_FILE`]). The CSR names `member` and `hosts`. Nothing is
/// overwritten: an existing file is refused before anything is written.
pub fn request(
    member: &MemberId,
    hosts: &[String],
    out: &Path,
    signing: Option<SigningKey>,
) -> Result<Requested, RequestError> {
    let invalid = |what: &str, reason: String| PkiError::InvalidPlan {
        what: what.to_owned(),
        reason,
    };
    if member.is_subsystem() {
        return Err(invalid(
            member.as_str(),
            "is a subsystem: a gateway belongs to a member (INSTANCE:CLASS:CODE)".into(),
        )
        .into());
    }
    if hosts.is_empty() {
        return Err(invalid(
            "hosts",
            "a gateway certificate needs at least one host".into(),
        )
        .into());
    }
    let key_path = out.join("gateway.key");
    let signing_path = out.join("signing.key");
    let jwk_path = out.join("signing.jwk");
    let request_path = out.join(REQUEST_FILE);
    let mut targets = vec![key_path.clone(), jwk_path.clone(), request_path.clone()];
    if signing.is_none() {
        targets.push(signing_path.clone());
    }
    if let Some(path) = targets.iter().find(|p| p.symlink_metadata().is_ok()) {
        return Err(PkiError::Exists { path: path.clone() }.into());
    }

    let tls_key = pki::new_key_pair(&key_path)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, member.as_str());
    params.distinguished_name = dn;
    let cert_err = |source| PkiError::Cert {
        path: request_path.clone(),
        source,
    };
    params.subject_alt_names = vec![SanType::URI(member.san_uri().try_into().map_err(cert_err)?)];
    for host in hosts {
        params
            .subject_alt_names
            .push(pki::host_san(host).map_err(|reason| invalid(host, reason))?);
    }
    let csr = params.serialize_request(&tls_key).map_err(cert_err)?;
    let csr_pem = csr.pem().map_err(cert_err)?;

    let mut outputs = Vec::new();
    let key_err = |source| PkiError::Key {
        path: signing_path.clone(),
        source,
    };
    let signing = match signing {
        Some(key) => key,
        None => {
            let key = SigningKey::generate(Algorithm::ES256, member.as_str()).map_err(key_err)?;
            outputs.push(Output::private(
                signing_path.clone(),
                key.private_pem().map_err(key_err)?,
            ));
            key
        }
    };
    let proof = Proof {
        member: member.clone(),
        csr_sha256: sha256_b64url(csr.der()),
    };
    let proof = serde_json::to_vec(&proof)
        .map_err(|e| io_error(&request_path, e))
        .and_then(|p| signing.sign(PROOF_TYP, &p).map_err(key_err))?;
    let request = JoinRequest {
        v: 1,
        member: member.clone(),
        csr: csr_pem,
        signing_jwk: signing.public_jwk().clone(),
        proof,
    };
    outputs.push(Output::private(key_path, tls_key.serialize_pem()));
    outputs.push(Output::public(
        jwk_path.clone(),
        pretty(signing.public_jwk(), &jwk_path)?,
    ));
    outputs.push(Output::public(
        request_path.clone(),
        pretty(&request, &request_path)?,
    ));
    let written = pki::write_outputs(&outputs, false)?;
    tracing::info!(member = %member, request = %request_path.display(), "join request written");
    Ok(Requested {
        request: request_path,
        written,
        kid: signing.kid().to_owned(),
    })
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> PkiError {
    PkiError::Io {
        path: path.to_owned(),
        source: io::Error::other(e.to_string()),
    }
}

fn pretty(value: &impl Serialize, path: &Path) -> Result<String, PkiError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| io_error(path, e))?;
    text.push('\n');
    Ok(text)
}

/// Who may be issued a gateway certificate: the authority's view of the federation.
#[derive(Clone, Debug)]
pub struct IssuePolicy {
    /// The federation authority (never issued a gateway certificate this way).
    pub authority: MemberId,
    /// The configured members, each with the hosts its gateway certificate may name (the
    /// federation's hosts and the host of its gateway URL).
    pub members: std::collections::BTreeMap<MemberId, Vec<String>>,
    /// The configuration file, for messages.
    pub config: String,
}

impl IssuePolicy {
    /// The policy of a configuration.
    pub fn of(config: &gateway::config::Config) -> Self {
        let members = config
            .members
            .iter()
            .map(|m| {
                let mut hosts = config.federation.hosts.clone();
                if let Some(host) = url_host(&m.gateway)
                    && !hosts.iter().any(|h| h.eq_ignore_ascii_case(&host))
                {
                    hosts.push(host);
                }
                (m.id.clone(), hosts)
            })
            .collect();
        IssuePolicy {
            authority: config.federation.authority.clone(),
            members,
            config: config.source.clone(),
        }
    }
}

/// The host of an `https://host[:port]` URL (an IPv6 address without its brackets).
fn url_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().map(str::to_owned);
    }
    authority
        .split(':')
        .next()
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
}

/// What `issue` wrote.
#[derive(Debug)]
pub struct Issued {
    /// The member.
    pub member: MemberId,
    /// The signing key's id, recorded for the next manifest.
    pub kid: String,
    /// Every file written, in order.
    pub written: Vec<PathBuf>,
}

/// Checks the request at `request_path` and issues its certificate: the CSR's self-signature
/// verifies; the member is configured, is not the authority and not a subsystem; the CSR
/// names exactly `CN=<member>`, the SAN URI `urn:simpul:<member>` and hosts the policy
/// allows, nothing else; the TLS key is ECDSA P-256; the signing key is an ES256 public JWK
/// whose kid is `<member>#<thumbprint>`, and its proof over the member and the CSR verifies.
/// Then the gateway certificate is issued from the federation CA with the extensions and
/// lifetime `simpul pki init` gives, written to `out/gateway.pem` with the CA certificate in
/// `out/ca.pem` for the ministry to install; the certificate and the public signing key are
/// recorded in the authority's PKI (`<member>/gateway.pem`, so that `simpul pki revoke` finds
/// it, and `<member>/signing.jwk`, which `simpul manifest sign` lists), replacing what was
/// there. Nothing is written when any check fails, or when `out/gateway.pem` or
/// `out/ca.pem` exists.
pub fn issue(
    layout: &PkiLayout,
    policy: &IssuePolicy,
    request_path: &Path,
    out: &Path,
) -> Result<Issued, RequestError> {
    let path = request_path.to_owned();
    let bytes = std::fs::read(request_path).map_err(|source| PkiError::Io {
        path: path.clone(),
        source,
    })?;
    let malformed = |reason: String| RequestError::Malformed {
        path: path.clone(),
        reason,
    };
    let request: JoinRequest =
        contracts::json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
    if request.v != 1 {
        return Err(malformed(format!("version {} (1 is known)", request.v)));
    }
    let member = request.member.clone();

    // The CSR's own signature before anything it says is believed.
    let der = CertificateSigningRequestDer::from_pem_slice(request.csr.as_bytes())
        .map_err(|e| malformed(format!("`csr` is not a PEM certificate request: {e}")))?;
    let csr = {
        use x509_parser::prelude::FromDer;
        x509_parser::certification_request::X509CertificationRequest::from_der(&der)
            .map_err(|e| malformed(format!("`csr` is not a PKCS#10 request: {e}")))?
            .1
    };
    if csr.verify_signature().is_err() {
        return Err(RequestError::CsrSignature { path });
    }

    if member.is_subsystem() {
        return Err(RequestError::NotAGateway {
            path,
            member,
            reason: "is a subsystem: its certificate comes from its member's own CA",
        });
    }
    if member == policy.authority {
        return Err(RequestError::NotAGateway {
            path,
            member,
            reason: "is the federation authority, which has no gateway certificate to request",
        });
    }
    let Some(allowed) = policy.members.get(&member) else {
        return Err(RequestError::UnknownMember {
            path,
            member,
            config: policy.config.clone(),
        });
    };

    let csr_err = |reason: String| RequestError::Csr {
        path: path.clone(),
        reason,
    };
    let spki = &csr.certification_request_info.subject_pki;
    let p256 = spki.algorithm.algorithm == x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        && spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|oid| oid == x509_parser::oid_registry::OID_EC_P256);
    if !p256 || spki.subject_public_key.data.len() != 65 {
        return Err(csr_err(
            "the TLS key is not ECDSA P-256 (make the request with `simpul pki request`)".into(),
        ));
    }
    let params = rcgen::CertificateSigningRequestParams::from_der(&der).map_err(|e| {
        csr_err(format!(
            "asks for an extension the authority does not issue ({e})"
        ))
    })?;
    if params.public_key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Err(csr_err(
            "is not signed with ECDSA P-256 and SHA-256 (make it with `simpul pki request`)".into(),
        ));
    }
    let extra = |name: String, reason: &str| RequestError::ExtraName {
        path: path.clone(),
        member: member.clone(),
        name,
        reason: reason.to_owned(),
    };

    // The subject: exactly CN=<member>.
    let mut subject = params.params.distinguished_name.iter();
    match (subject.next(), subject.next()) {
        (Some((DnType::CommonName, value)), None) if dn_text(value) == Some(member.as_str()) => {}
        (None, _) => {
            return Err(extra(
                "no subject".into(),
                "the subject must be CN=<member>",
            ));
        }
        _ => {
            return Err(extra(
                format!("the subject {:?}", params.params.distinguished_name),
                "the subject must be CN=<member> and nothing else",
            ));
        }
    }
    // The names: the member's URI once, and allowed hosts.
    let mut uri_seen = false;
    let mut hosts = Vec::new();
    for san in &params.params.subject_alt_names {
        match san {
            SanType::URI(uri) if uri.as_str() == member.san_uri() && !uri_seen => uri_seen = true,
            SanType::URI(uri) => {
                return Err(extra(
                    format!("the URI {}", uri.as_str()),
                    "a gateway certificate names one identity, its member's",
                ));
            }
            SanType::DnsName(name) => {
                let name = name.as_str().to_ascii_lowercase();
                if !allowed.iter().any(|h| h.eq_ignore_ascii_case(&name)) {
                    return Err(extra(
                        format!("the host {name}"),
                        &format!("not a host of the federation ({})", allowed.join(", ")),
                    ));
                }
                hosts.push(name);
            }
            SanType::IpAddress(ip) => {
                if !allowed
                    .iter()
                    .any(|h| h.parse::<IpAddr>().is_ok_and(|a| a == *ip))
                {
                    return Err(extra(
                        format!("the address {ip}"),
                        &format!("not a host of the federation ({})", allowed.join(", ")),
                    ));
                }
                hosts.push(ip.to_string());
            }
            other => {
                return Err(extra(
                    format!("{other:?}"),
                    "only the member's URI and its hosts are named",
                ));
            }
        }
    }
    if !uri_seen {
        return Err(extra(
            "no SAN URI".into(),
            &format!("the CSR must name {}", member.san_uri()),
        ));
    }
    if hosts.is_empty() {
        return Err(csr_err(
            "names no host: a gateway certificate needs at least one (DNS name or IP address)"
                .into(),
        ));
    }

    // The signing key and its proof.
    let key_err = |reason: String| RequestError::SigningKey {
        path: path.clone(),
        reason,
    };
    let jwk = VerifyingKey::from_jwk(&request.signing_jwk).map_err(|e| key_err(e.to_string()))?;
    if request.signing_jwk.get("alg").and_then(Value::as_str) != Some(Algorithm::ES256.as_str())
        || request.signing_jwk.get("crv").and_then(Value::as_str) != Some("P-256")
    {
        return Err(key_err("not an ES256 (EC P-256) key".into()));
    }
    let thumb = jwk_thumbprint(&request.signing_jwk).map_err(|e| key_err(e.to_string()))?;
    let kid = format!("{member}#{thumb}");
    if jwk.kid() != kid {
        return Err(key_err(format!(
            "its kid is `{}`, expected `{kid}` (the member and the key's thumbprint)",
            jwk.kid()
        )));
    }
    let proof = ParsedJws::parse(&request.proof, PROOF_TYP)
        .map_err(|e| key_err(format!("the proof: {e}")))?;
    if proof.header.kid.as_deref() != Some(kid.as_str()) {
        return Err(key_err("the proof is not signed by this key".into()));
    }
    jwk.verify(&proof)
        .map_err(|e| key_err(format!("the proof: {e}")))?;
    let claimed: Proof = contracts::json::from_slice(&proof.payload)
        .map_err(|e| key_err(format!("the proof's payload: {e}")))?;
    let want = Proof {
        member: member.clone(),
        csr_sha256: sha256_b64url(&der),
    };
    if claimed != want {
        return Err(key_err(
            "the proof is over another member or another CSR".into(),
        ));
    }

    // Everything checked: issue, into files that are not there yet.
    let cert_path = out.join("gateway.pem");
    if let Some(path) = [cert_path.clone(), out.join("ca.pem")]
        .into_iter()
        .find(|p| p.symlink_metadata().is_ok())
    {
        return Err(PkiError::Exists { path }.into());
    }
    let issuer = pki::load_issuer(layout)?;
    let cert = pki::sign_leaf(
        &issuer,
        &params.public_key,
        &member.san_uri(),
        member.as_str(),
        &hosts,
        LeafKind::Gateway,
        &cert_path,
    )?;
    let ca = std::fs::read(layout.ca_cert()).map_err(|source| PkiError::Io {
        path: layout.ca_cert(),
        source,
    })?;
    // Recorded as the tools write a JWK: the key's members, its kid, alg and use.
    let mut recorded = serde_json::Map::new();
    for m in ["kty", "crv", "x", "y"] {
        if let Some(v) = request.signing_jwk.get(m) {
            recorded.insert(m.to_owned(), v.clone());
        }
    }
    recorded.insert("kid".into(), Value::String(kid.clone()));
    recorded.insert(
        "alg".into(),
        Value::String(Algorithm::ES256.as_str().into()),
    );
    recorded.insert("use".into(), Value::String("sig".into()));
    let jwk_text = pretty(&Value::Object(recorded), &layout.signing_jwk(&member))?;
    let outputs = vec![
        Output::public(cert_path, cert.clone()),
        Output::public(out.join("ca.pem"), ca),
        Output::public(layout.gateway_cert(&member), cert).replacing(true),
        Output::public(layout.signing_jwk(&member), jwk_text).replacing(true),
    ];
    let written = pki::write_outputs(&outputs, false)?;
    tracing::info!(member = %member, kid = %kid, "gateway certificate issued from a join request");
    Ok(Issued {
        member,
        kid,
        written,
    })
}

fn dn_text(value: &DnValue) -> Option<&str> {
    match value {
        DnValue::Utf8String(s) => Some(s.as_str()),
        DnValue::PrintableString(s) => Some(s.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use rcgen::KeyPair;
    use rustls::RootCertStore;
    use rustls::pki_types::{CertificateDer, UnixTime};
    use rustls::server::WebPkiClientVerifier;
    use x509_parser::extensions::GeneralName;

    use crate::pki::PkiPlan;

    fn id(s: &str) -> MemberId {
        MemberId::parse(s).unwrap()
    }

    const HOSTS: [&str; 2] = ["localhost", "127.0.0.1"];

    fn hosts() -> Vec<String> {
        HOSTS.iter().map(|h| (*h).to_owned()).collect()
    }

    /// A federation CA with Dukcapil and Kemlu, and the authority's policy for it.
    fn authority(dir: &Path) -> (PkiLayout, IssuePolicy) {
        let layout = PkiLayout::new(dir.join("certs"));
        let plan = PkiPlan::new(id("ID:GOV:SIMPUL"))
            .with_member(id("ID:GOV:DUKCAPIL"), vec![])
            .with_member(id("ID:GOV:KEMLU"), vec![]);
        pki::init(&layout, &plan, false).unwrap();
        let members: BTreeMap<MemberId, Vec<String>> = [
            (id("ID:GOV:DUKCAPIL"), hosts()),
            (id("ID:GOV:KEMLU"), hosts()),
        ]
        .into_iter()
        .collect();
        let policy = IssuePolicy {
            authority: id("ID:GOV:SIMPUL"),
            members,
            config: "test.toml".into(),
        };
        (layout, policy)
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Standard base64 with padding, for PEM.
    fn base64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn csr_pem(der: &[u8]) -> String {
        format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64(der)
        )
    }

    /// A request for `member` with a CSR of `params` made with `tls_key` (its DER changed by
    /// `tamper`), signed off by `signing`, written to `dir/<name>`.
    fn forge(
        dir: &Path,
        name: &str,
        member: &str,
        params: &CertificateParams,
        tls_key: &KeyPair,
        signing: &SigningKey,
        tamper: impl FnOnce(&mut Vec<u8>),
    ) -> PathBuf {
        let mut der = params.serialize_request(tls_key).unwrap().der().to_vec();
        tamper(&mut der);
        let proof = serde_json::to_vec(&Proof {
            member: id(member),
            csr_sha256: sha256_b64url(&der),
        })
        .unwrap();
        let request = JoinRequest {
            v: 1,
            member: id(member),
            csr: csr_pem(&der),
            signing_jwk: signing.public_jwk().clone(),
            proof: signing.sign(PROOF_TYP, &proof).unwrap(),
        };
        let path = dir.join(name);
        std::fs::write(&path, serde_json::to_vec(&request).unwrap()).unwrap();
        path
    }

    /// The CSR parameters `request` uses for `member`, with `extra` SANs.
    fn params(member: &str, extra: Vec<SanType>) -> CertificateParams {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, member);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![
            SanType::URI(id(member).san_uri().try_into().unwrap()),
            SanType::DnsName("localhost".try_into().unwrap()),
        ];
        params.subject_alt_names.extend(extra);
        params
    }

    #[test]
    fn a_request_is_issued_with_the_names_extensions_and_lifetime_of_pki_init() {
        let dir = tempfile::tempdir().unwrap();
        let (layout, policy) = authority(dir.path());
        let dukcapil = id("ID:GOV:DUKCAPIL");
        let ministry = dir.path().join("ministry");
        let done = request(&dukcapil, &hosts(), &ministry, None).unwrap();
        assert_eq!(mode(&ministry.join("gateway.key")), 0o600);
        assert_eq!(mode(&ministry.join("signing.key")), 0o600);
        assert_eq!(mode(&done.request), 0o644);
        // The private keys are not in the request.
        let text = std::fs::read_to_string(&done.request).unwrap();
        assert!(
            !text.contains("PRIVATE") && !text.contains("\"d\""),
            "{text}"
        );
        // Nothing is overwritten.
        assert!(matches!(
            request(&dukcapil, &hosts(), &ministry, None),
            Err(RequestError::Pki(PkiError::Exists { .. }))
        ));

        let out = dir.path().join("issued");
        let issued = issue(&layout, &policy, &done.request, &out).unwrap();
        assert_eq!(issued.kid, done.kid);
        let pem = std::fs::read(out.join("gateway.pem")).unwrap();
        assert_eq!(std::fs::read(layout.gateway_cert(&dukcapil)).unwrap(), pem);
        assert_eq!(
            std::fs::read(out.join("ca.pem")).unwrap(),
            std::fs::read(layout.ca_cert()).unwrap()
        );
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        // Its key is the ministry's.
        let key =
            KeyPair::from_pem(&std::fs::read_to_string(ministry.join("gateway.key")).unwrap())
                .unwrap();
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
        // The names, the extensions and the lifetime `pki init` gives.
        let mut names = Vec::new();
        for ext in cert.extensions() {
            if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) =
                ext.parsed_extension()
            {
                for n in &san.general_names {
                    names.push(match n {
                        GeneralName::URI(u) => format!("uri:{u}"),
                        GeneralName::DNSName(d) => format!("dns:{d}"),
                        GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
                        other => format!("{other:?}"),
                    });
                }
            }
        }
        assert_eq!(
            names,
            vec![
                "uri:urn:simpul:ID:GOV:DUKCAPIL".to_owned(),
                "dns:localhost".to_owned(),
                "ip:[127, 0, 0, 1]".to_owned()
            ]
        );
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        assert!(!cert.is_ca());
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
            / 86_400;
        assert_eq!(days, pki::LEAF_VALIDITY_DAYS as i64);
        // It chains to the federation CA.
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(layout.ca_cert()).unwrap())
            .unwrap();
        WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()
        .unwrap()
        .verify_client_cert(&der, &[], UnixTime::now())
        .unwrap();
        // Issued once into a directory: a second time is refused, naming the file.
        assert!(matches!(
            issue(&layout, &policy, &done.request, &out),
            Err(RequestError::Pki(PkiError::Exists { path })) if path == out.join("gateway.pem")
        ));
        // The public signing key is recorded for the next manifest, without a private part.
        let jwk: Value =
            serde_json::from_slice(&std::fs::read(layout.signing_jwk(&dukcapil)).unwrap()).unwrap();
        assert_eq!(jwk["kid"], done.kid.as_str());
        assert!(jwk.get("d").is_none());
        let key = SigningKey::from_pem(
            Algorithm::ES256,
            dukcapil.as_str(),
            &std::fs::read(ministry.join("signing.key")).unwrap(),
        )
        .unwrap();
        assert_eq!(key.public_jwk(), &jwk);
    }

    /// Checks that `issue` refuses `request` with `check`, writing nothing.
    #[track_caller]
    fn assert_refused(
        layout: &PkiLayout,
        policy: &IssuePolicy,
        request: &Path,
        check: impl FnOnce(&RequestError) -> bool,
    ) {
        let jwk_before = std::fs::read(layout.signing_jwk(&id("ID:GOV:DUKCAPIL"))).unwrap();
        let out = request.with_extension("out");
        let e = issue(layout, policy, request, &out).unwrap_err();
        assert!(check(&e), "{e:?}");
        assert!(
            e.to_string().contains(&request.display().to_string()),
            "{e}"
        );
        assert!(!out.exists(), "{e}: wrote {}", out.display());
        assert_eq!(
            std::fs::read(layout.signing_jwk(&id("ID:GOV:DUKCAPIL"))).unwrap(),
            jwk_before
        );
    }

    #[test]
    fn a_csr_whose_signature_does_not_verify_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (layout, policy) = authority(dir.path());
        let tls = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let signing = SigningKey::generate(Algorithm::ES256, "ID:GOV:DUKCAPIL").unwrap();
        // The last byte of the signature changed: still a well-formed request.
        let request = forge(
            dir.path(),
            "bad-sig.json",
            "ID:GOV:DUKCAPIL",
            &params("ID:GOV:DUKCAPIL", vec![]),
            &tls,
            &signing,
            |der| {
                let last = der.len() - 1;
                der[last] ^= 0x01;
            },
        );
        assert_refused(&layout, &policy, &request, |e| {
            matches!(e, RequestError::CsrSignature { .. })
        });
        // A CSR whose subject was changed after signing.
        let request = forge(
            dir.path(),
            "swapped.json",
            "ID:GOV:DUKCAPIL",
            &params("ID:GOV:DUKCAPIL", vec![]),
            &tls,
            &signing,
            |der| {
                let at = der.windows(7).position(|w| w == b"DUKCAPI").unwrap();
                der[at..at + 7].copy_from_slice(b"KEMLUXX");
            },
        );
        assert_refused(&layout, &policy, &request, |e| {
            matches!(e, RequestError::CsrSignature { .. })
        });
    }

    #[test]
    fn a_csr_naming_more_than_its_member_and_hosts_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (layout, policy) = authority(dir.path());
        let tls = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let signing = SigningKey::generate(Algorithm::ES256, "ID:GOV:DUKCAPIL").unwrap();
        let uri = |s: &str| SanType::URI(s.try_into().unwrap());
        let cases = [
            (
                "kemlu-uri",
                vec![uri("urn:simpul:ID:GOV:KEMLU")],
                "urn:simpul:ID:GOV:KEMLU",
            ),
            (
                "sub-uri",
                vec![uri("urn:simpul:ID:GOV:DUKCAPIL:SIAK")],
                "SIAK",
            ),
            (
                "host",
                vec![SanType::DnsName("gw.kemlu.example".try_into().unwrap())],
                "gw.kemlu.example",
            ),
            (
                "address",
                vec![SanType::IpAddress("10.1.2.3".parse().unwrap())],
                "10.1.2.3",
            ),
            (
                "mail",
                vec![SanType::Rfc822Name("x@example.org".try_into().unwrap())],
                "x@example.org",
            ),
        ];
        for (name, extra, named) in cases {
            let request = forge(
                dir.path(),
                &format!("{name}.json"),
                "ID:GOV:DUKCAPIL",
                &params("ID:GOV:DUKCAPIL", extra),
                &tls,
                &signing,
                |_| {},
            );
            assert_refused(
                &layout,
                &policy,
                &request,
                |e| matches!(e, RequestError::ExtraName { name, .. } if name.contains(named)),
            );
        }
        // A subject of two attributes.
        let mut two = params("ID:GOV:DUKCAPIL", vec![]);
        two.distinguished_name
            .push(DnType::OrganizationName, "Kemlu");
        let request = forge(
            dir.path(),
            "dn.json",
            "ID:GOV:DUKCAPIL",
            &two,
            &tls,
            &signing,
            |_| {},
        );
        assert_refused(&layout, &policy, &request, |e| {
            matches!(e, RequestError::ExtraName { .. })
        });
        // No host at all.
        let mut bare = params("ID:GOV:DUKCAPIL", vec![]);
        bare.subject_alt_names.truncate(1);
        let request = forge(
            dir.path(),
            "bare.json",
            "ID:GOV:DUKCAPIL",
            &bare,
            &tls,
            &signing,
            |_| {},
        );
        assert_refused(&layout, &policy, &request, |e| {
            matches!(e, RequestError::Csr { .. })
        });
    }

    #[test]
    fn a_tls_key_that_is_not_p256_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (layout, policy) = authority(dir.path());
        let tls = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let signing = SigningKey::generate(Algorithm::ES256, "ID:GOV:DUKCAPIL").unwrap();
        let request = forge(
            dir.path(),
            "p384.json",
            "ID:GOV:DUKCAPIL",
            &params("ID:GOV:DUKCAPIL", vec![]),
            &tls,
            &signing,
            |_| {},
        );
        assert_refused(
            &layout,
            &policy,
            &request,
            |e| matches!(e, RequestError::Csr { reason, .. } if reason.contains("P-256")),
        );
    }

    #[test]
    fn requests_for_no_configured_gateway_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (layout, policy) = authority(dir.path());
        let tls = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        for (member, check) in [
            (
                "ID:GOV:SIMPUL",
                (|e: &RequestError| matches!(e, RequestError::NotAGateway { .. }))
                    as fn(&RequestError) -> bool,
            ),
            ("ID:GOV:DUKCAPIL:SIAK", |e| {
                matches!(e, RequestError::NotAGateway { .. })
            }),
            ("ID:GOV:NOBODY", |e| {
                matches!(e, RequestError::UnknownMember { .. })
            }),
        ] {
            let signing = SigningKey::generate(Algorithm::ES256, member).unwrap();
            let request = forge(
                dir.path(),
                &format!("{}.json", member.replace(':', "_")),
                member,
                &params(member, vec![]),
                &tls,
                &signing,
                |_| {},
            );
            assert_refused(&layout, &policy, &request, check);
        }
    }

    #[test]
    fn a_signing_key_that_is_not_the_members_or_unproven_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (layout, policy) = authority(dir.path());
        let tls = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let p = params("ID:GOV:DUKCAPIL", vec![]);
        // Another member's kid.
        let kemlu = SigningKey::generate(Algorithm::ES256, "ID:GOV:KEMLU").unwrap();
        let request = forge(
            dir.path(),
            "kid.json",
            "ID:GOV:DUKCAPIL",
            &p,
            &tls,
            &kemlu,
            |_| {},
        );
        assert_refused(
            &layout,
            &policy,
            &request,
            |e| matches!(e, RequestError::SigningKey { reason, .. } if reason.contains("kid")),
        );
        // An EdDSA key.
        let ed = SigningKey::generate(Algorithm::EdDSA, "ID:GOV:DUKCAPIL").unwrap();
        let request = forge(
            dir.path(),
            "ed.json",
            "ID:GOV:DUKCAPIL",
            &p,
            &tls,
            &ed,
            |_| {},
        );
        assert_refused(
            &layout,
            &policy,
            &request,
            |e| matches!(e, RequestError::SigningKey { reason, .. } if reason.contains("ES256")),
        );
        // The JWK of one key, the proof of another.
        let key = SigningKey::generate(Algorithm::ES256, "ID:GOV:DUKCAPIL").unwrap();
        let other = SigningKey::generate(Algorithm::ES256, "ID:GOV:DUKCAPIL").unwrap();
        let request = forge(
            dir.path(),
            "proof.json",
            "ID:GOV:DUKCAPIL",
            &p,
            &tls,
            &key,
            |_| {},
        );
        let mut v: Value = serde_json::from_slice(&std::fs::read(&request).unwrap()).unwrap();
        v["signing_jwk"] = other.public_jwk().clone();
        std::fs::write(&request, serde_json::to_vec(&v).unwrap()).unwrap();
        assert_refused(&layout, &policy, &request, |e| {
            matches!(e, RequestError::SigningKey { .. })
        });
        // A proof over another CSR, under the right key.
        let first = forge(
            dir.path(),
            "a.json",
            "ID:GOV:DUKCAPIL",
            &p,
            &tls,
            &key,
            |_| {},
        );
        let tls2 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let second = forge(
            dir.path(),
            "b.json",
            "ID:GOV:DUKCAPIL",
            &p,
            &tls2,
            &key,
            |_| {},
        );
        let mut v: Value = serde_json::from_slice(&std::fs::read(&first).unwrap()).unwrap();
        let w: Value = serde_json::from_slice(&std::fs::read(&second).unwrap()).unwrap();
        v["proof"] = w["proof"].clone();
        std::fs::write(&first, serde_json::to_vec(&v).unwrap()).unwrap();
        assert_refused(
            &layout,
            &policy,
            &first,
            |e| matches!(e, RequestError::SigningKey { reason, .. } if reason.contains("another")),
        );
        // A member name given twice in the request.
        let text = std::fs::read_to_string(&second).unwrap();
        let twice = text.replacen("{", "{\"v\":1,", 1);
        let path = dir.path().join("twice.json");
        std::fs::write(&path, twice).unwrap();
        assert_refused(&layout, &policy, &path, |e| {
            matches!(e, RequestError::Malformed { .. })
        });
    }
}
