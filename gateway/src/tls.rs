//! TLS for the gateway: the server side that requires a client certificate from a federation
//! CA that no CRL revokes, the client side that checks the server (chain, CRL, host name) names
//! the member it expects, no session resumption on either side, and reading the Simpul
//! identity (`urn:simpul:<id>` SAN URI) out of a certificate.

use std::path::Path;
use std::sync::Arc;

use contracts::MemberId;
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// TLS material that could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The configuration could not be built.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// A certificate was refused by the verifier that checks it.
    #[error("{0}")]
    Refused(rustls::Error),
}

/// The crypto provider every TLS configuration here uses: aws-lc-rs, whose TLS 1.2 suites
/// are all ECDHE with AEAD.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Installs [`provider`] as the process's default (sqlx and rustls would otherwise each pick
/// one, and a second provider makes `ServerConfig::builder()` panic). Call once at start-up;
/// later calls keep the first.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Reads every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::File {
            path: path.display().to_string(),
            reason: "no certificate in file".into(),
        });
    }
    Ok(certs)
}

/// Reads a private key from a PEM file.
pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Reads certificates from PEM text (the manifest's `ca` entries).
pub fn certs_from_pem(pems: &[String]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut out = Vec::new();
    for pem in pems {
        for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            out.push(c.map_err(|e| TlsError::Config(format!("manifest CA certificate: {e}")))?);
        }
    }
    Ok(out)
}

/// What a federation certificate is checked against: the CAs of the manifest and their
/// certificate revocation lists (`federation.crl`), both read once at start-up. A refresh
/// (a new manifest or CRL at run time) builds a new one and, from it, new TLS
/// configurations; the ones built from this value never change.
#[derive(Clone, Debug)]
pub struct FederationTrust {
    /// The manifest's CA certificates.
    pub cas: Vec<CertificateDer<'static>>,
    /// One CRL per CA at least, each checked against its CA when loaded.
    pub crls: Vec<CertificateRevocationListDer<'static>>,
}

impl FederationTrust {
    /// The manifest's CAs (`ca`, PEM text) and the CRLs in the PEM file `crl`.
    ///
    /// # Errors
    /// A CA certificate does not parse; the CRL file cannot be read, or lacks a CRL signed
    /// by one of the CAs ([`crate::revocation::load_crls`]).
    pub fn load(ca: &[String], crl: &Path) -> Result<Self, TlsError> {
        let cas = certs_from_pem(ca)?;
        let crls = crate::revocation::load_crls(crl, &cas)?;
        Ok(Self { cas, crls })
    }

    /// The CA certificates in the PEM file `ca` and the CRLs in the PEM file `crl`.
    ///
    /// # Errors
    /// As [`FederationTrust::load`], and a CA file that cannot be read.
    pub fn from_files(ca: &Path, crl: &Path) -> Result<Self, TlsError> {
        let cas = load_certs(ca)?;
        let crls = crate::revocation::load_crls(crl, &cas)?;
        Ok(Self { cas, crls })
    }
}

fn roots(cas: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for ca in cas {
        store
            .add(ca.clone())
            .map_err(|e| TlsError::Config(format!("CA certificate: {e}")))?;
    }
    Ok(Arc::new(store))
}

/// Whether the server requires a client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    /// Every connection presents a certificate chaining to a federation CA: always, but in
    /// a `faults` build with that check switched off.
    Required,
    /// A connection without a certificate is accepted (and then has no identity). Only a
    /// `faults` build asks for this, to show the conformance suite catches it.
    AllowUnauthenticated,
}

/// A server configuration that requires (`client_auth`) a client certificate chaining to
/// one of the trusted CAs and not revoked by their CRLs; a certificate whose issuer has no
/// CRL is refused too (unknown revocation status is never allowed).
pub(crate) fn server_config(
    trust: &FederationTrust,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_auth: ClientAuth,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(roots(&trust.cas)?, provider.clone());
    builder = if crate::fault::off(crate::fault::Check::Revocation) {
        // A `faults` build with revocation switched off: no CRL is consulted.
        builder.allow_unknown_revocation_status()
    } else {
        builder.with_crls(trust.crls.iter().cloned())
    };
    if client_auth == ClientAuth::AllowUnauthenticated {
        builder = builder.allow_unauthenticated();
    }
    let verifier = builder
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    harden(&mut config);
    Ok(Arc::new(config))
}

/// The federation listener's server configuration, a client certificate always required:
/// [`server_config`] for code outside the gateway that must use the same TLS settings (the
/// bare mTLS server `bench/run.sh` measures beside the gateway).
///
/// # Errors
/// As [`server_config`]: a CA, CRL, certificate or key the configuration cannot use.
pub fn federation_server_config(
    trust: &FederationTrust,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config(trust, chain, key, ClientAuth::Required)
}

/// Checks `end_entity` as the federation listener checks a client certificate: chain to a
/// trusted CA, validity now, and not revoked.
///
/// # Errors
/// The verifier's refusal, or a verifier that cannot be built.
pub(crate) fn check_client_certificate(
    trust: &FederationTrust,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<(), TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&trust.cas)?, provider())
        .with_crls(trust.crls.iter().cloned())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    verifier
        .verify_client_cert(end_entity, intermediates, UnixTime::now())
        .map(|_| ())
        .map_err(TlsError::Refused)
}

/// What every listener's TLS configuration has beyond its verifier: the cipher suite chosen
/// by the server's order of preference, not the client's; and no session resumption — no
/// session cache (TLS 1.2 session ids, TLS 1.3 stateful tickets) and no tickets sent. A
/// resumed session would skip the client certificate verifier, and with it the CRL: every
/// connection is a full handshake.
pub(crate) fn harden(config: &mut ServerConfig) {
    config.ignore_client_order = true;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    // `ticketer` is rustls' default, which makes no tickets (TLS 1.2 stateless resumption).
}

/// A client configuration that presents `chain`/`key` and accepts only a server whose
/// certificate chains to a trusted CA, is not revoked by its CRLs, and names `expected` in
/// its SAN URI. It never resumes a session, so every connection checks the certificate.
pub(crate) fn client_config(
    trust: &FederationTrust,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    expected: MemberId,
) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        roots(&trust.cas)?,
        provider.clone(),
    )
    .with_crls(trust.crls.iter().cloned())
    .build()
    .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(ExpectMember { webpki, expected }))
        })?
        .with_client_auth_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.resumption = Resumption::disabled();
    Ok(config)
}

/// The one identity a certificate names; `None` when it names none or several.
pub fn identity(cert: &CertificateDer<'_>) -> Option<MemberId> {
    contracts::member::certificate_identity(cert.as_ref())
}

/// Checks the chain and host name as WebPKI does, then that the certificate names the
/// member this connection is meant to reach: a valid certificate of another member is not
/// good enough.
#[derive(Debug)]
struct ExpectMember {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    expected: MemberId,
}

impl ServerCertVerifier for ExpectMember {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ok = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        // Exactly one identity, the provider's: a certificate naming others besides is not
        // the provider's gateway certificate (PROTOCOL.md §1.2).
        if identity(end_entity).as_ref() == Some(&self.expected) {
            Ok(ok)
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, IsCa, KeyPair, SanType};

    /// A CA, and a server certificate it issues for `localhost` naming `uris`.
    fn issued(uris: &[&str]) -> (CertificateDer<'static>, CertificateDer<'static>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        for uri in uris {
            leaf.subject_alt_names
                .push(SanType::URI((*uri).to_owned().try_into().unwrap()));
        }
        let leaf_cert = leaf
            .signed_by(&KeyPair::generate().unwrap(), &issuer)
            .unwrap();
        (ca_cert.der().clone(), leaf_cert.der().clone())
    }

    fn verify(uris: &[&str], expected: &str) -> Result<ServerCertVerified, rustls::Error> {
        let (ca, leaf) = issued(uris);
        let mut roots = RootCertStore::empty();
        roots.add(ca).unwrap();
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        let verifier = ExpectMember {
            webpki,
            expected: MemberId::parse(expected).unwrap(),
        };
        verifier.verify_server_cert(
            &leaf,
            &[],
            &ServerName::try_from("localhost").unwrap(),
            &[],
            UnixTime::now(),
        )
    }

    #[test]
    fn a_provider_certificate_must_name_exactly_the_provider() {
        assert!(verify(&["urn:simpul:ID:GOV:DUKCAPIL"], "ID:GOV:DUKCAPIL").is_ok());
        for uris in [
            &["urn:simpul:ID:GOV:KEMLU"][..],
            &["urn:simpul:ID:GOV:DUKCAPIL", "urn:simpul:ID:GOV:KEMLU"][..],
            &[][..],
        ] {
            let refused = verify(uris, "ID:GOV:DUKCAPIL").unwrap_err();
            assert!(
                matches!(
                    refused,
                    rustls::Error::InvalidCertificate(
                        rustls::CertificateError::ApplicationVerificationFailure
                    )
                ),
                "{uris:?}: {refused}"
            );
        }
    }
}
