//! Certificates: the gateway's own (dates, the identity it names, accepted by the
//! manifest's CAs and CRLs as every peer checks it), the member CA of the local and admin
//! listeners and its CRL, and those subsystem, operator and auditor certificates that are
//! on this machine (dates, issued by the member CA). A certificate expiring within
//! [`CERTIFICATE_WARNING_DAYS`] is warned about; one expired, not yet valid or issued by
//! another CA fails.

use std::path::Path;

use contracts::{Identity as Holder, Manifest};
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{
    CERTIFICATE_WARNING_DAYS, Check, Context, Finding, Identity, Verdict, days, trust_from,
};
use crate::tls::{self, FederationTrust};

/// The federation's CAs (the manifest's) with their CRLs (`federation.crl`), as peers and
/// the federation listener check certificates; the CRL's finding.
pub(super) fn trust(
    cx: &Context<'_>,
    manifest: Option<&Manifest>,
    out: &mut Vec<Finding>,
) -> Option<FederationTrust> {
    let crl = &cx.config.federation.crl;
    let loaded = match manifest {
        Some(m) => trust_from(&m.doc().ca, crl),
        // No manifest to take the CAs from: the CA file of the PKI, if there is one.
        None => FederationTrust::from_files(&cx.config.federation.pki.ca_cert(), crl)
            .map_err(|e| e.to_string()),
    };
    match loaded {
        Ok(t) => {
            out.push(Finding::new(
                Check::Crl,
                crl.display(),
                Verdict::Ok,
                "signed by the federation CA".into(),
            ));
            Some(t)
        }
        Err(e) => {
            out.push(Finding::new(
                Check::Crl,
                crl.display(),
                Verdict::Fail,
                format!(
                    "{e}: the gateway does not start without a CRL of each CA (get the \
                     authority's, or `simpul pki crl` in the demo)"
                ),
            ));
            None
        }
    }
}

/// The gateway's certificate, the member CA and the client certificates on this machine;
/// this gateway's TLS identity, when its files can be read.
pub(super) fn check(
    cx: &Context<'_>,
    trust: Option<&FederationTrust>,
    out: &mut Vec<Finding>,
) -> Option<Identity> {
    let layout = &cx.config.federation.pki;
    let member = &cx.member.id;
    let renew = format!(
        "renew it (`simpul pki renew --member {member}`, or a new request to the authority, \
         OPERATIONS.md §7.7), then SIGHUP the gateway"
    );
    let cert_path = layout.gateway_cert(member);
    let identity = match tls::load_certs(&cert_path) {
        Ok(chain) => {
            out.push(gateway_certificate(cx, &cert_path, &chain, trust, &renew));
            tls::load_key(&layout.gateway_key(member))
                .ok()
                .map(|key| Identity { chain, key })
        }
        Err(e) => {
            out.push(Finding::new(
                Check::Certificate,
                cert_path.display(),
                Verdict::Fail,
                format!("{e}: the gateway does not start without its certificate"),
            ));
            None
        }
    };

    // The member's own CA, which the local and admin listeners trust.
    let anchor = cx.member.local.as_ref().map(|l| &l.anchor);
    let Some(ca_path) = anchor.and_then(|a| a.member_ca.as_ref()) else {
        return identity;
    };
    let ca = match tls::load_certs(ca_path) {
        Ok(certs) => certs,
        Err(e) => {
            out.push(Finding::new(
                Check::Certificate,
                ca_path.display(),
                Verdict::Fail,
                format!("{e}: the local and admin listeners need the member CA"),
            ));
            return identity;
        }
    };
    out.push(dated(
        cx,
        ca_path,
        &ca[0],
        "the member CA",
        "make a new member CA and issue its subsystems', operators' and auditors' \
         certificates again (OPERATIONS.md §3.10)",
    ));
    if let Some(crl) = anchor.and_then(|a| a.member_crl.as_ref()) {
        out.push(match crate::revocation::load_crls(crl, &ca) {
            Ok(_) => Finding::new(
                Check::Crl,
                crl.display(),
                Verdict::Ok,
                "signed by the member CA".into(),
            ),
            Err(e) => Finding::new(
                Check::Crl,
                crl.display(),
                Verdict::Fail,
                format!("{e}: the local and admin listeners do not start without it"),
            ),
        });
    }
    // Client certificates are not the gateway's to hold: those on this machine are checked.
    let mut clients: Vec<(std::path::PathBuf, String)> = Vec::new();
    for s in &cx.member.subsystems {
        clients.push((layout.client_cert(&s.id), format!("--subsystem {}", s.id)));
    }
    if let Some(admin) = &cx.member.admin {
        for staff in admin.operators.iter().chain(&admin.auditors) {
            clients.push((layout.staff_cert(staff), format!("--staff {staff}")));
        }
    }
    for (path, who) in clients {
        let Ok(chain) = tls::load_certs(&path) else {
            continue;
        };
        out.push(client_certificate(cx, &path, &chain[0], &ca[0], &who));
    }
    identity
}

/// The gateway's certificate: its dates, that it names this member, and that the
/// manifest's CAs and CRLs accept it.
fn gateway_certificate(
    cx: &Context<'_>,
    path: &Path,
    chain: &[CertificateDer<'static>],
    trust: Option<&FederationTrust>,
    renew: &str,
) -> Finding {
    let member = &cx.member.id;
    let dates = dated(cx, path, &chain[0], "this gateway's certificate", renew);
    if dates.verdict == Verdict::Fail {
        return dates;
    }
    let fail =
        |message: String| Finding::new(Check::Certificate, path.display(), Verdict::Fail, message);
    let named = tls::identity(&chain[0]);
    if named.as_ref() != Some(member) {
        return fail(format!(
            "names {}, not {member}: put {member}'s gateway certificate here",
            named.map_or_else(
                || "no single Simpul identity".to_owned(),
                |id| id.to_string()
            )
        ));
    }
    let Some(trust) = trust else {
        return Finding::new(
            Check::Certificate,
            path.display(),
            Verdict::Warn,
            format!(
                "{}; not checked against the federation's CAs (no manifest or CRL to take them from)",
                dates.message
            ),
        );
    };
    if let Err(e) = tls::check_client_certificate(trust, &chain[0], &chain[1..]) {
        return fail(format!(
            "refused by the manifest's CAs and CRLs ({e}): every peer refuses it in the \
             handshake; it needs a certificate issued by the federation CA and not revoked \
             (`simpul pki renew --member {member}`, or a new request to the authority)"
        ));
    }
    Finding::new(
        Check::Certificate,
        path.display(),
        dates.verdict,
        format!(
            "{}; names {member}; issued by the federation CA, not revoked",
            dates.message
        ),
    )
}

/// A subsystem's, operator's or auditor's certificate: its dates, issued by the member CA.
fn client_certificate(
    cx: &Context<'_>,
    path: &Path,
    cert: &CertificateDer<'_>,
    ca: &CertificateDer<'_>,
    who: &str,
) -> Finding {
    let renew = format!("renew it (`simpul pki renew {who}`)");
    let dates = dated(cx, path, cert, "this client certificate", &renew);
    if dates.verdict == Verdict::Fail {
        return dates;
    }
    let issued = match (
        X509Certificate::from_der(cert.as_ref()),
        X509Certificate::from_der(ca.as_ref()),
    ) {
        (Ok((_, c)), Ok((_, ca))) => c.verify_signature(Some(ca.public_key())).is_ok(),
        _ => false,
    };
    if !issued {
        return Finding::new(
            Check::Certificate,
            path.display(),
            Verdict::Fail,
            format!(
                "not issued by the member CA: the local and admin listeners refuse it; {renew}"
            ),
        );
    }
    let holder = contracts::member::certificate_any_identity(cert.as_ref())
        .map(|h: Holder| h.to_string())
        .unwrap_or_default();
    Finding::new(
        Check::Certificate,
        path.display(),
        dates.verdict,
        format!("{}; names {holder}; issued by the member CA", dates.message),
    )
}

/// A certificate's dates at `cx.now`: fails when it is not yet valid or has expired, warns
/// within [`CERTIFICATE_WARNING_DAYS`] of its end; `what` names it, `renew` says what to do.
fn dated(
    cx: &Context<'_>,
    path: &Path,
    cert: &CertificateDer<'_>,
    what: &str,
    renew: &str,
) -> Finding {
    let finding =
        |verdict, message| Finding::new(Check::Certificate, path.display(), verdict, message);
    let Ok((_, parsed)) = X509Certificate::from_der(cert.as_ref()) else {
        return finding(
            Verdict::Fail,
            format!("{what} does not parse as X.509: {renew}"),
        );
    };
    let (not_before, not_after) = (
        parsed.validity().not_before.timestamp(),
        parsed.validity().not_after.timestamp(),
    );
    let left = not_after.saturating_sub(cx.now);
    if cx.now < not_before {
        finding(
            Verdict::Fail,
            format!(
                "not valid before {}: check this machine's clock, or {renew}",
                contracts::utc(not_before)
            ),
        )
    } else if left <= 0 {
        finding(
            Verdict::Fail,
            format!("expired at {}: {renew}", contracts::utc(not_after)),
        )
    } else if days(left) < CERTIFICATE_WARNING_DAYS {
        finding(
            Verdict::Warn,
            format!(
                "expires at {}, in {} days: {renew} before then",
                contracts::utc(not_after),
                days(left)
            ),
        )
    } else {
        finding(
            Verdict::Ok,
            format!(
                "valid until {} ({} days)",
                contracts::utc(not_after),
                days(left)
            ),
        )
    }
}
