//! The development PKI's certificate revocation lists (`simpul pki revoke`, `simpul pki crl`):
//! one X.509 v2 CRL per CA, signed by that CA — the federation CA's at
//! `<certs>/federation-crl.pem`, each member CA's at `<certs>/<member>/member-crl.pem`. The
//! CRL on disk is the CA's record of what it revoked: revoking reads it, adds the serial and
//! signs the next one (CRL number one higher).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use contracts::MemberId;
use gateway::layout::PkiLayout;
use rcgen::{
    CertificateRevocationListParams, Issuer, KeyIdMethod, KeyPair, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};

use crate::pki::{Holder, PkiError, load_issuer, load_member_issuer};

/// Days from a CRL's `thisUpdate` to its `nextUpdate`. Gateways do not enforce `nextUpdate`
/// today (they use the CRL loaded at start-up); `simpul pki crl` re-signs before then.
pub const CRL_VALIDITY_DAYS: u64 = 30;

/// A CA of the development PKI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ca {
    /// The federation CA: gateway certificates.
    Federation,
    /// A member's CA: its subsystems', operators' and auditors' certificates.
    Member(MemberId),
}

impl Ca {
    /// Its CRL file.
    pub fn crl(&self, layout: &PkiLayout) -> PathBuf {
        match self {
            Ca::Federation => layout.federation_crl(),
            Ca::Member(m) => layout.member_crl(m),
        }
    }

    /// Its certificate file.
    pub fn cert(&self, layout: &PkiLayout) -> PathBuf {
        match self {
            Ca::Federation => layout.ca_cert(),
            Ca::Member(m) => layout.member_ca_cert(m),
        }
    }

    fn issuer(&self, layout: &PkiLayout) -> Result<Issuer<'static, KeyPair>, PkiError> {
        match self {
            Ca::Federation => load_issuer(layout),
            Ca::Member(m) => load_member_issuer(layout, m),
        }
    }
}

/// Why a certificate is revoked (RFC 5280 §5.3.1), as `simpul pki revoke --reason` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// No reason given.
    Unspecified,
    /// Its private key is, or may be, known to someone else.
    KeyCompromise,
    /// Its holder changed (a system moved to another member, say).
    AffiliationChanged,
    /// Replaced by a renewed certificate.
    Superseded,
    /// Its holder no longer operates.
    CessationOfOperation,
}

impl From<Reason> for RevocationReason {
    fn from(r: Reason) -> Self {
        match r {
            Reason::Unspecified => RevocationReason::Unspecified,
            Reason::KeyCompromise => RevocationReason::KeyCompromise,
            Reason::AffiliationChanged => RevocationReason::AffiliationChanged,
            Reason::Superseded => RevocationReason::Superseded,
            Reason::CessationOfOperation => RevocationReason::CessationOfOperation,
        }
    }
}

/// What [`revoke`] did.
#[derive(Clone, Debug)]
pub struct Revoked {
    /// The certificate's serial, in hex.
    pub serial: String,
    /// The CRL written (or that already listed it).
    pub crl: PathBuf,
    /// True when the CRL already listed the serial (nothing was written).
    pub already: bool,
}

/// An empty CRL (number 1) signed by `issuer`, as PEM; `path` names it in errors.
pub(crate) fn empty_crl(issuer: &Issuer<'_, KeyPair>, path: &Path) -> Result<String, PkiError> {
    sign(issuer, 1, Vec::new(), path)
}

/// Revokes `holder`'s current certificate: checks that its CA issued it, adds its serial to
/// that CA's CRL (now, with `reason`) and signs the next CRL. Revoking a serial the CRL
/// already lists changes nothing.
///
/// # Errors
/// The certificate is missing or was not issued by the holder's CA; the CA or its CRL cannot
/// be read, or the CRL is not signed by the CA.
pub fn revoke(layout: &PkiLayout, holder: &Holder, reason: Reason) -> Result<Revoked, PkiError> {
    revoke_file(layout, &holder.cert(layout), &holder.ca(), reason)
}

/// Revokes the certificate in the file `cert_path`, which `ca` must have issued: as
/// [`revoke`].
fn revoke_file(
    layout: &PkiLayout,
    cert_path: &Path,
    ca: &Ca,
    reason: Reason,
) -> Result<Revoked, PkiError> {
    let cert_path = cert_path.to_owned();
    let ca_der = read_cert(&ca.cert(layout))?;
    let der = read_cert(&cert_path)?;
    let refused = |reason: String| PkiError::Refused {
        path: cert_path.clone(),
        reason,
    };
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| refused(format!("not an X.509 certificate: {e}")))?;
    let (_, ca_cert) =
        x509_parser::parse_x509_certificate(&ca_der).map_err(|e| PkiError::BadCa {
            path: ca.cert(layout),
            reason: format!("not an X.509 certificate: {e}"),
        })?;
    if cert.issuer().as_raw() != ca_cert.subject().as_raw()
        || cert.verify_signature(Some(ca_cert.public_key())).is_err()
    {
        return Err(refused(format!(
            "was not issued by {} (`{}`): its CA has no say over it",
            ca.cert(layout).display(),
            ca_cert.subject()
        )));
    }
    let serial = cert.serial.to_bytes_be();
    let serial_hex: String = serial.iter().map(|b| format!("{b:02x}")).collect();
    let crl_path = ca.crl(layout);
    let (number, mut entries) = read_crl(&crl_path, &ca_cert)?;
    if entries.iter().any(|e| e.serial_number.as_ref() == serial) {
        return Ok(Revoked {
            serial: serial_hex,
            crl: crl_path,
            already: true,
        });
    }
    entries.push(RevokedCertParams {
        serial_number: SerialNumber::from_slice(&serial),
        revocation_time: rcgen::date_time_ymd(1970, 1, 1) + since_epoch(),
        reason_code: Some(reason.into()),
        invalidity_date: None,
    });
    let issuer = ca.issuer(layout)?;
    let pem = sign(&issuer, number + 1, entries, &crl_path)?;
    write_public(&crl_path, &pem)?;
    tracing::info!(serial = %serial_hex, crl = %crl_path.display(), "certificate revoked");
    Ok(Revoked {
        serial: serial_hex,
        crl: crl_path,
        already: false,
    })
}

/// The revoked specimen of `member`'s gateway: its certificate file, beside its key
/// (`revoked-specimen.key`), in the member's directory of the PKI.
pub fn revoked_specimen(layout: &PkiLayout, member: &MemberId) -> PathBuf {
    layout.member_dir(member).join("revoked-specimen.pem")
}

/// Makes, where it is missing, a revoked specimen for `member`: a gateway certificate naming
/// it (and `hosts`) from the federation CA, with a key of its own, that the federation CA's
/// CRL lists (reason superseded) — everything a gateway checks is right but the CRL, so
/// presenting it shows whether a gateway consults the CRL (`simpul-conformance` TLS-08).
/// The key is written last, so an interrupted run leaves no specimen that was not revoked.
/// Returns whether it wrote one.
///
/// # Errors
/// The federation CA or its CRL cannot be read; a host is not a DNS name or an address; a
/// file cannot be written.
pub fn ensure_revoked_specimen(
    layout: &PkiLayout,
    member: &MemberId,
    hosts: &[String],
) -> Result<bool, PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let cert_path = revoked_specimen(layout, member);
    let key_path = cert_path.with_extension("key");
    if cert_path.is_file() && key_path.is_file() {
        return Ok(false);
    }
    let issuer = load_issuer(layout)?;
    let (cert, key) = crate::pki::issue_leaf(
        &issuer,
        &member.san_uri(),
        member.as_str(),
        hosts,
        crate::pki::LeafKind::Gateway,
        &cert_path,
    )?;
    write_public(&cert_path, &cert)?;
    revoke_file(layout, &cert_path, &Ca::Federation, Reason::Superseded)?;
    let io = |source| PkiError::Io {
        path: key_path.clone(),
        source,
    };
    let tmp = key_path.with_extension("key.tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(key.as_bytes()).map_err(io)?;
    fs::rename(&tmp, &key_path).map_err(io)?;
    Ok(true)
}

/// Signs `ca`'s CRL again with the next number and fresh dates, keeping what it lists (or an
/// empty one where there is none). Returns the file written.
///
/// # Errors
/// The CA cannot be loaded, or its CRL cannot be read or is not signed by it.
pub fn resign(layout: &PkiLayout, ca: &Ca) -> Result<PathBuf, PkiError> {
    let ca_path = ca.cert(layout);
    let ca_der = read_cert(&ca_path)?;
    let (_, ca_cert) =
        x509_parser::parse_x509_certificate(&ca_der).map_err(|e| PkiError::BadCa {
            path: ca_path.clone(),
            reason: format!("not an X.509 certificate: {e}"),
        })?;
    let crl_path = ca.crl(layout);
    let (number, entries) = read_crl(&crl_path, &ca_cert)?;
    let issuer = ca.issuer(layout)?;
    let pem = sign(&issuer, number + 1, entries, &crl_path)?;
    write_public(&crl_path, &pem)?;
    Ok(crl_path)
}

/// The number and entries of the CRL at `path` (0 and none when there is no file), after
/// checking that `ca` signed it.
fn read_crl(
    path: &Path,
    ca: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<(u64, Vec<RevokedCertParams>), PkiError> {
    let refused = |reason: String| PkiError::Refused {
        path: path.to_owned(),
        reason,
    };
    let der = match CertificateRevocationListDer::from_pem_file(path) {
        Ok(der) => der,
        Err(rustls::pki_types::pem::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((0, Vec::new()));
        }
        Err(e) => return Err(refused(format!("not a PEM CRL: {e}"))),
    };
    let (_, crl) = x509_parser::parse_x509_crl(der.as_ref())
        .map_err(|e| refused(format!("not an X.509 CRL: {e}")))?;
    if crl.issuer().as_raw() != ca.subject().as_raw()
        || crl.verify_signature(ca.public_key()).is_err()
    {
        return Err(refused(format!(
            "not signed by the CA `{}`: restore the CA's own CRL (it is the record of what it \
             revoked) or remove this file to start an empty one",
            ca.subject()
        )));
    }
    let number = match crl.crl_number() {
        None => 0,
        Some(n) => {
            let bytes = n.to_bytes_be();
            if bytes.len() > 8 {
                return Err(refused("CRL number over 64 bits".into()));
            }
            bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        }
    };
    let entries = crl
        .iter_revoked_certificates()
        .map(|r| RevokedCertParams {
            serial_number: SerialNumber::from_slice(&r.serial().to_bytes_be()),
            revocation_time: r.revocation_date.to_datetime(),
            reason_code: r.reason_code().map(|(_, code)| reason_from_code(code.0)),
            invalidity_date: None,
        })
        .collect();
    Ok((number, entries))
}

fn reason_from_code(code: u8) -> RevocationReason {
    match code {
        1 => RevocationReason::KeyCompromise,
        2 => RevocationReason::CaCompromise,
        3 => RevocationReason::AffiliationChanged,
        4 => RevocationReason::Superseded,
        5 => RevocationReason::CessationOfOperation,
        6 => RevocationReason::CertificateHold,
        8 => RevocationReason::RemoveFromCrl,
        9 => RevocationReason::PrivilegeWithdrawn,
        10 => RevocationReason::AaCompromise,
        _ => RevocationReason::Unspecified,
    }
}

fn sign(
    issuer: &Issuer<'_, KeyPair>,
    number: u64,
    revoked_certs: Vec<RevokedCertParams>,
    path: &Path,
) -> Result<String, PkiError> {
    let this_update = rcgen::date_time_ymd(1970, 1, 1) + since_epoch();
    let params = CertificateRevocationListParams {
        this_update,
        next_update: this_update + Duration::from_secs(CRL_VALIDITY_DAYS * 86_400),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let cert_err = |source| PkiError::Cert {
        path: path.to_owned(),
        source,
    };
    params
        .signed_by(issuer)
        .map_err(cert_err)?
        .pem()
        .map_err(cert_err)
}

/// Whole seconds since the Unix epoch: add to `rcgen::date_time_ymd(1970, 1, 1)`.
fn since_epoch() -> Duration {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(since.as_secs())
}

fn read_cert(path: &Path) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::from_pem_file(path).map_err(|e| PkiError::Refused {
        path: path.to_owned(),
        reason: format!("cannot read the certificate: {e}"),
    })
}

/// Writes `text` beside `path` and renames it over, so a reader sees the old CRL or the new
/// one (mode 0644).
fn write_public(path: &Path, text: &str) -> Result<(), PkiError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("pem.tmp");
    fs::write(&tmp, text).map_err(io)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{PkiPlan, init, renew};
    use std::sync::Arc;

    use rustls::RootCertStore;
    use rustls::pki_types::UnixTime;
    use rustls::server::WebPkiClientVerifier;
    use rustls::server::danger::ClientCertVerifier;

    fn id(s: &str) -> MemberId {
        MemberId::parse(s).unwrap()
    }

    fn plan() -> PkiPlan {
        PkiPlan::new(id("ID:GOV:SIMPUL"))
            .with_member(id("ID:GOV:DUKCAPIL"), vec![])
            .with_member(
                id("ID:GOV:KEMLU"),
                vec![id("ID:GOV:KEMLU:PEDULI-WNI"), id("ID:GOV:KEMLU:SIMKIM")],
            )
    }

    /// What the gateway builds for a CA and its CRL file.
    fn verifier(layout: &PkiLayout, ca: &Ca) -> Arc<dyn ClientCertVerifier> {
        let cas = vec![read_cert(&ca.cert(layout)).unwrap()];
        let crls = gateway::revocation::load_crls(&ca.crl(layout), &cas).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cas[0].clone()).unwrap();
        WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .with_crls(crls)
        .build()
        .unwrap()
    }

    fn check(layout: &PkiLayout, holder: &Holder) -> Result<(), rustls::Error> {
        verifier(layout, &holder.ca())
            .verify_client_cert(
                &read_cert(&holder.cert(layout)).unwrap(),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
    }

    #[test]
    fn the_revoked_specimen_chains_to_the_federation_ca_and_only_the_crl_refuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path());
        init(&layout, &plan(), false).unwrap();
        let kemlu = id("ID:GOV:KEMLU");
        assert!(ensure_revoked_specimen(&layout, &kemlu, &["localhost".into()]).unwrap());
        let specimen = read_cert(&revoked_specimen(&layout, &kemlu)).unwrap();
        let key = revoked_specimen(&layout, &kemlu).with_extension("key");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            verifier(&layout, &Ca::Federation)
                .verify_client_cert(&specimen, &[], UnixTime::now())
                .map(|_| ()),
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked
            ))
        );
        // Without the CRL the same certificate passes: the CRL is the only reason.
        let mut roots = RootCertStore::empty();
        roots
            .add(read_cert(&Ca::Federation.cert(&layout)).unwrap())
            .unwrap();
        WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()
        .unwrap()
        .verify_client_cert(&specimen, &[], UnixTime::now())
        .unwrap();
        // The member's own gateway certificate is untouched, and a second call writes nothing.
        check(&layout, &Holder::Gateway(kemlu.clone())).unwrap();
        assert!(!ensure_revoked_specimen(&layout, &kemlu, &[]).unwrap());
    }

    #[test]
    fn a_revoked_certificate_is_refused_by_the_verifier_of_its_ca_and_renewal_readmits_it() {
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path());
        init(&layout, &plan(), false).unwrap();
        let peduli = Holder::Subsystem(id("ID:GOV:KEMLU:PEDULI-WNI"));
        let simkim = Holder::Subsystem(id("ID:GOV:KEMLU:SIMKIM"));
        let gateway = Holder::Gateway(id("ID:GOV:KEMLU"));
        for h in [&peduli, &simkim, &gateway] {
            check(&layout, h).unwrap();
        }

        let revoked = revoke(&layout, &peduli, Reason::KeyCompromise).unwrap();
        assert!(!revoked.already);
        assert_eq!(revoked.crl, layout.member_crl(&id("ID:GOV:KEMLU")));
        assert_eq!(
            check(&layout, &peduli),
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked
            ))
        );
        check(&layout, &simkim).unwrap();
        check(&layout, &gateway).unwrap();
        assert!(
            revoke(&layout, &peduli, Reason::Unspecified)
                .unwrap()
                .already
        );

        // Re-signing keeps the entry (and its reason) under the next number.
        let before = CertificateRevocationListDer::from_pem_file(&revoked.crl).unwrap();
        resign(&layout, &Ca::Member(id("ID:GOV:KEMLU"))).unwrap();
        let after = CertificateRevocationListDer::from_pem_file(&revoked.crl).unwrap();
        let (_, before) = x509_parser::parse_x509_crl(before.as_ref()).unwrap();
        let (_, after) = x509_parser::parse_x509_crl(after.as_ref()).unwrap();
        assert_eq!(
            after.crl_number().unwrap().to_bytes_be(),
            vec![before.crl_number().unwrap().to_bytes_be()[0] + 1]
        );
        let listed: Vec<_> = after
            .iter_revoked_certificates()
            .map(|r| (r.serial().clone(), r.reason_code().map(|(_, c)| c.0)))
            .collect();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].1, Some(1));
        assert!(check(&layout, &peduli).is_err());

        // A renewed certificate has a new serial: accepted by the same CRL.
        renew(&layout, &peduli, &[], false).unwrap();
        check(&layout, &peduli).unwrap();
        assert_eq!(
            CertificateRevocationListDer::from_pem_file(&revoked.crl)
                .unwrap()
                .as_ref(),
            after.as_raw(),
            "renewing does not touch the CRL"
        );

        // A gateway certificate goes to the federation CA's CRL.
        let revoked = revoke(&layout, &gateway, Reason::Superseded).unwrap();
        assert_eq!(revoked.crl, layout.federation_crl());
        assert!(check(&layout, &gateway).is_err());
        renew(&layout, &gateway, &["localhost".into()], true).unwrap();
        check(&layout, &gateway).unwrap();
    }

    #[test]
    fn revoking_refuses_a_certificate_of_another_ca_and_a_crl_of_another_ca() {
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path());
        init(&layout, &plan(), false).unwrap();
        let peduli = Holder::Subsystem(id("ID:GOV:KEMLU:PEDULI-WNI"));
        // A certificate issued by the federation CA in the subsystem's place.
        fs::copy(
            layout.gateway_cert(&id("ID:GOV:KEMLU")),
            peduli.cert(&layout),
        )
        .unwrap();
        let err = revoke(&layout, &peduli, Reason::Unspecified).unwrap_err();
        assert!(err.to_string().contains("was not issued by"), "{err}");

        // A member CRL replaced by another member CA's.
        let simkim = Holder::Subsystem(id("ID:GOV:KEMLU:SIMKIM"));
        fs::copy(
            layout.member_crl(&id("ID:GOV:DUKCAPIL")),
            layout.member_crl(&id("ID:GOV:KEMLU")),
        )
        .unwrap();
        let err = revoke(&layout, &simkim, Reason::Unspecified).unwrap_err();
        assert!(err.to_string().contains("not signed by the CA"), "{err}");

        // Renewing what does not exist is refused, naming the file.
        fs::remove_file(simkim.key(&layout)).unwrap();
        let err = renew(&layout, &simkim, &[], false).unwrap_err();
        assert!(err.to_string().contains("nothing to renew"), "{err}");
    }
}
