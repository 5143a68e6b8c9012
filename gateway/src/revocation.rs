//! Certificate revocation lists: reading a CRL file (PEM, one `X509 CRL` block per CA) and
//! checking, once at start-up, that it holds a CRL issued and signed by every CA it is
//! loaded for. The verifiers then refuse a certificate whose serial a CRL lists, and any
//! certificate whose issuer has no CRL (unknown status is a refusal), so a CRL file that
//! lacks a CA would silently refuse every certificate of that CA: it is refused here instead.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};

use crate::tls::TlsError;

/// Reads every CRL in the PEM file at `path` and checks that, for each of `cas`, one of them
/// names the CA as its issuer and verifies under the CA's key.
///
/// # Errors
/// The file cannot be read, holds no CRL or one that does not parse, or lacks a CRL signed by
/// one of `cas` (the error names that CA's subject and the command that writes the CRL).
pub fn load_crls(
    path: &Path,
    cas: &[CertificateDer<'_>],
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let file_err = |reason: String| TlsError::File {
        path: path.display().to_string(),
        reason,
    };
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            file_err(format!(
                "cannot read the certificate revocation list: {e} \
                 (`simpul pki crl` writes one for every CA of the PKI)"
            ))
        })?;
    if crls.is_empty() {
        return Err(file_err(
            "no certificate revocation list in file (`simpul pki crl` writes one)".into(),
        ));
    }
    let mut parsed = Vec::with_capacity(crls.len());
    for (i, crl) in crls.iter().enumerate() {
        let (_, c) = x509_parser::parse_x509_crl(crl.as_ref())
            .map_err(|e| file_err(format!("CRL #{}: not an X.509 CRL: {e}", i + 1)))?;
        parsed.push(c);
    }
    for ca in cas {
        let (_, ca) = x509_parser::parse_x509_certificate(ca.as_ref())
            .map_err(|e| file_err(format!("a CA certificate does not parse: {e}")))?;
        let covered = parsed.iter().any(|crl| {
            crl.issuer().as_raw() == ca.subject().as_raw()
                && crl.verify_signature(ca.public_key()).is_ok()
        });
        if !covered {
            return Err(file_err(format!(
                "no certificate revocation list signed by the CA `{}`: every certificate it \
                 issued would be refused; write its CRL (`simpul pki crl`) or restore the file",
                ca.subject()
            )));
        }
    }
    Ok(crls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, IsCa, Issuer,
        KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber,
    };

    fn ca(name: &str) -> (CertificateDer<'static>, Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        (cert.der().clone(), Issuer::new(params, key))
    }

    fn crl_pem(issuer: &Issuer<'_, KeyPair>) -> String {
        let now = rcgen::date_time_ymd(2026, 1, 1);
        CertificateRevocationListParams {
            this_update: now,
            next_update: rcgen::date_time_ymd(2027, 1, 1),
            crl_number: SerialNumber::from(1),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(issuer)
        .unwrap()
        .pem()
        .unwrap()
    }

    #[test]
    fn a_crl_file_must_hold_a_crl_signed_by_every_ca_it_is_loaded_for() {
        let dir = tempfile::tempdir().unwrap();
        let (ca_a, issuer_a) = ca("A");
        let (ca_b, issuer_b) = ca("B");
        // An impostor: the same name as A, another key.
        let (_, impostor) = ca("A");
        let path = dir.path().join("crl.pem");

        std::fs::write(&path, crl_pem(&issuer_a)).unwrap();
        assert_eq!(
            load_crls(&path, std::slice::from_ref(&ca_a)).unwrap().len(),
            1
        );
        let err = load_crls(&path, &[ca_a.clone(), ca_b.clone()]).unwrap_err();
        assert!(err.to_string().contains("CN=B"), "{err}");

        std::fs::write(&path, crl_pem(&issuer_a) + &crl_pem(&issuer_b)).unwrap();
        assert_eq!(load_crls(&path, &[ca_a.clone(), ca_b]).unwrap().len(), 2);

        std::fs::write(&path, crl_pem(&impostor)).unwrap();
        let err = load_crls(&path, std::slice::from_ref(&ca_a)).unwrap_err();
        assert!(
            err.to_string()
                .contains("no certificate revocation list signed by"),
            "{err}"
        );

        std::fs::write(&path, "").unwrap();
        let err = load_crls(&path, std::slice::from_ref(&ca_a)).unwrap_err();
        assert!(
            err.to_string()
                .contains("no certificate revocation list in file"),
            "{err}"
        );

        let missing = dir.path().join("missing.pem");
        let err = load_crls(&missing, &[ca_a]).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        assert!(err.to_string().contains("simpul pki crl"), "{err}");
    }
}
