//! `simpul doctor`: one member's deployment checked from its configuration, beside its
//! running gateway or before it first starts — certificates, key files, the manifest, each
//! binding's backend, the audit store, each peer and the clocks, the listen addresses, the
//! open-file limit — each check a [`Finding`] saying what is wrong and what to do. Nothing
//! here changes what a running gateway uses: files are only read, the audit store is opened
//! as `simpul audit export` opens it, backends are connected to but asked nothing.

mod audit;
mod bindings;
mod certificates;
mod keys;
mod listeners;
mod manifest;
mod peers;

use std::fmt;
use std::time::Duration;

use contracts::MemberId;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;

use crate::assemble::StartError;
use crate::config::Config;
use crate::snapshot::Sources;
use crate::tls::{ClientAuth, FederationTrust};

/// How long each call to a peer or to this gateway's own listeners may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// A certificate expiring within this many days is warned about.
pub const CERTIFICATE_WARNING_DAYS: i64 = 30;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nothing to do.
    Ok,
    /// Works now; act before it does not.
    Warn,
    /// Broken now (or the gateway would not start): the message says what to do.
    Fail,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        })
    }
}

/// What was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// A certificate: its dates, its identity, the CA that issued it.
    Certificate,
    /// A CRL the gateway loads.
    Crl,
    /// A private key or secret file: its mode and owner.
    Key,
    /// The manifest: signature, serial, expiry, and that it fits this member.
    Manifest,
    /// A provided contract's backend: reachable, statement prepared.
    Binding,
    /// The audit store: writable, its tree consistent with its heads.
    Audit,
    /// A peer gateway: reachable, its manifest serial, its clock.
    Peer,
    /// A listen address.
    Listen,
    /// The open-file limit against the listeners' connection bounds.
    OpenFiles,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Check::Certificate => "certificate",
            Check::Crl => "crl",
            Check::Key => "key",
            Check::Manifest => "manifest",
            Check::Binding => "binding",
            Check::Audit => "audit",
            Check::Peer => "peer",
            Check::Listen => "listen",
            Check::OpenFiles => "open-files",
        })
    }
}

/// One check's result: what was checked (a file, a contract, a peer, an address), how it
/// came out, and what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The kind of check.
    pub check: Check,
    /// What it was about: a file, a contract, a peer, an address.
    pub subject: String,
    /// How it came out.
    pub verdict: Verdict,
    /// What was found and, unless all is well, what to do.
    pub message: String,
}

impl Finding {
    fn new(check: Check, subject: impl fmt::Display, verdict: Verdict, message: String) -> Self {
        Finding {
            check,
            subject: subject.to_string(),
            verdict,
            message,
        }
    }
}

impl fmt::Display for Finding {
    /// `FAIL key         certs/ID_GOV_DUKCAPIL/gateway.key: <what is wrong and what to do>`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<4} {:<11} {}: {}",
            self.verdict, self.check, self.subject, self.message
        )
    }
}

/// Every finding of one member's deployment, in the order the checks ran.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The member checked.
    pub member: MemberId,
    /// What each check found.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The worst verdict of any finding (`Ok` for none).
    pub fn verdict(&self) -> Verdict {
        self.findings
            .iter()
            .map(|f| f.verdict)
            .max()
            .unwrap_or(Verdict::Ok)
    }
}

/// What the checks share: the configuration, the member, the time they judge against.
struct Context<'a> {
    config: &'a Config,
    member: &'a crate::config::Member,
    /// Unix seconds.
    now: i64,
}

/// This gateway's TLS identity, read from its files whatever their mode (the key check
/// reports a bad mode; the peer checks still run).
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// Checks `member`'s deployment as configured in `config`, at the time `now` (Unix
/// seconds): every finding, each check bounded in time ([`CALL_TIMEOUT`] for each network
/// call; the backends' own deadlines).
///
/// # Errors
/// Only [`StartError::UnknownMember`]: every problem of the deployment is a [`Finding`].
pub async fn examine(config: &Config, member: &MemberId, now: i64) -> Result<Report, StartError> {
    let mc = config
        .member(member)
        .ok_or_else(|| StartError::UnknownMember(member.clone()))?;
    let cx = Context {
        config,
        member: mc,
        now,
    };
    let mut findings = Vec::new();

    let sources = Sources::new(config, member, ClientAuth::Required);
    let signing = crate::hsm::member_signing_key(&mc.signing, member);
    let manifest = manifest::check(&cx, sources.as_ref(), signing.as_ref(), &mut findings);
    let trust = certificates::trust(&cx, manifest.as_ref(), &mut findings);
    let identity = certificates::check(&cx, trust.as_ref(), &mut findings);
    keys::check(&cx, &mut findings);

    // The slow checks (databases, the audit store's journal, peers) at once.
    let (bound, stored, peered, listened) = tokio::join!(
        bindings::check(&cx),
        audit::check(&cx, signing.ok().map(|(key, _)| key)),
        peers::check(&cx, manifest.as_ref(), trust.as_ref(), identity.as_ref()),
        listeners::check(&cx, trust.as_ref(), identity.as_ref()),
    );
    findings.extend(bound);
    let (audit_findings, held_in_store) = stored;
    findings.extend(audit_findings);
    if let (Some(m), Some(held)) = (&manifest, held_in_store) {
        manifest::check_store_serial(&cx, m, held, &mut findings);
    }
    findings.extend(peered);
    findings.extend(listened);
    findings.push(listeners::open_files(&cx));
    Ok(Report {
        member: member.clone(),
        findings,
    })
}

/// `FederationTrust` for a caller outside the gateway's trust snapshot.
fn trust_from(cas: &[String], crl: &std::path::Path) -> Result<FederationTrust, String> {
    FederationTrust::load(cas, crl).map_err(|e| e.to_string())
}

/// Whole days in `secs` (rounded down).
fn days(secs: i64) -> i64 {
    secs.div_euclid(86_400)
}
