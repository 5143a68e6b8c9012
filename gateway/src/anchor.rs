//! The member's own trust anchor: the TLS server configuration of the listeners its own
//! people and systems call — the local face and the admin listener — which accepts a client
//! certificate only if it chains to the member's CA (`local.member_ca`) or is pinned by its
//! fingerprint (`local.pinned`), and that the member CA's CRL (`local.member_crl`) does not
//! revoke. The federation CA is never an anchor here: a certificate another member's CA (or
//! the federation) issued is refused in the handshake.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};
use rustls::{SignatureScheme, version};

use crate::config::MemberAnchor;
use crate::tls::{self, TlsError};

/// A client certificate verifier for the member's anchor: the member CA through WebPKI with
/// its CRL, or an end-entity certificate whose SHA-256 is pinned (and that is within its
/// validity; a pinned certificate is revoked by removing its pin).
#[derive(Debug)]
struct MemberAnchorVerifier {
    webpki: Option<Arc<dyn ClientCertVerifier>>,
    pinned: Vec<[u8; 32]>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for MemberAnchorVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.as_ref().map_or(&[], |w| w.root_hint_subjects())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let fingerprint = contracts::canonical::sha256(end_entity.as_ref());
        if self.pinned.contains(&fingerprint) {
            let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
            return if contracts::member::certificate_valid_at(end_entity.as_ref(), now) {
                Ok(ClientCertVerified::assertion())
            } else {
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::Expired,
                ))
            };
        }
        match &self.webpki {
            Some(w) => w.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The server configuration of the member's own listeners: the gateway's certificate
/// (`chain`, `key`), and client certificates from `anchor` only.
///
/// # Errors
/// The member CA file cannot be read or holds no usable CA certificate; its CRL file cannot
/// be read or lacks a CRL signed by the member CA; the configuration cannot be built.
pub(crate) fn server_config(
    anchor: &MemberAnchor,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider: Arc<CryptoProvider> = tls::provider();
    let webpki = match &anchor.member_ca {
        Some(path) => Some(member_ca_verifier(
            path,
            anchor.member_crl.as_deref(),
            provider.clone(),
        )?),
        None => None,
    };
    let verifier = MemberAnchorVerifier {
        webpki,
        pinned: anchor.pinned.clone(),
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tls::harden(&mut config);
    Ok(Arc::new(config))
}

/// The member CA's WebPKI verifier, with the CA's CRL (`crl`; the configuration always names
/// one with a member CA). A certificate whose status the CRL cannot tell is refused.
fn member_ca_verifier(
    path: &Path,
    crl: Option<&Path>,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let cas = tls::load_certs(path)?;
    let crls = match crl {
        Some(crl) => crate::revocation::load_crls(crl, &cas)?,
        None => Vec::new(),
    };
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca).map_err(|e| TlsError::File {
            path: path.display().to_string(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .with_crls(crls)
        .build()
        .map_err(|e| TlsError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

    /// A CA and its issuer.
    fn ca() -> (CertificateDer<'static>, Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let cert = params.self_signed(&key).unwrap();
        (cert.der().clone(), Issuer::new(params, key))
    }

    /// A client certificate naming `uri`, from `issuer`.
    fn leaf(issuer: &Issuer<'_, KeyPair>, uri: &str) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.signed_by(&key, issuer).unwrap().der().clone()
    }

    fn verifier(
        member_ca: Option<&CertificateDer<'static>>,
        pinned: Vec<[u8; 32]>,
    ) -> MemberAnchorVerifier {
        let provider = tls::provider();
        let webpki = member_ca.map(|ca| {
            let mut roots = RootCertStore::empty();
            roots.add(ca.clone()).unwrap();
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap()
        });
        MemberAnchorVerifier {
            webpki,
            pinned,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    #[test]
    fn only_the_member_ca_or_a_pinned_certificate_is_accepted() {
        let (member_ca, member) = ca();
        let (_, federation) = ca();
        let now = UnixTime::now();
        let ours = leaf(&member, "urn:simpul:ID:GOV:KEMLU:APP");
        let theirs = leaf(&federation, "urn:simpul:ID:GOV:KEMLU:APP");
        let by_ca = verifier(Some(&member_ca), Vec::new());
        assert!(by_ca.verify_client_cert(&ours, &[], now).is_ok());
        assert!(by_ca.verify_client_cert(&theirs, &[], now).is_err());
        // Pinned only: that one certificate, and no other from any CA.
        let pinned = verifier(None, vec![contracts::canonical::sha256(theirs.as_ref())]);
        assert!(pinned.verify_client_cert(&theirs, &[], now).is_ok());
        assert!(pinned.verify_client_cert(&ours, &[], now).is_err());
        // Both: either passes.
        let both = verifier(
            Some(&member_ca),
            vec![contracts::canonical::sha256(theirs.as_ref())],
        );
        assert!(both.verify_client_cert(&ours, &[], now).is_ok());
        assert!(both.verify_client_cert(&theirs, &[], now).is_ok());
        // A pinned certificate past its validity is refused.
        let later = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            now.as_secs() + 2200 * 366 * 86_400,
        ));
        assert!(pinned.verify_client_cert(&theirs, &[], later).is_err());
    }
}
