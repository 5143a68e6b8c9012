//! The development PKI: one federation CA, the federation authority's JWS signing key, and
//! for each member a gateway TLS certificate and an ES256 signing key (from the federation),
//! and a member CA of its own that issues the client certificates of its subsystems,
//! operators and auditors (see `docs/PROTOCOL.md` §1, §4.1); each CA's empty CRL (revoking
//! is `crate::crl`); renewing one certificate.
//!
//! Everything lives under one directory (a deployment's `certs/`), laid out by [`PkiLayout`].
//! Private keys are created with mode 0600, certificates, CRLs and public JWKs with 0644.
//! Nothing is ever overwritten unless the caller passes `force`, but by [`renew`] (and
//! `crate::crl`, the CRL).

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use contracts::jws::{Algorithm, SigningKey};
use contracts::{MemberId, StaffId};
use gateway::layout::PkiLayout;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

/// The common name of the federation CA.
pub const CA_COMMON_NAME: &str = "Simpul federation CA";

/// The common name of a member's own CA: `<member id>` and this.
pub const MEMBER_CA_SUFFIX: &str = "member CA";

/// How long the CA certificate is valid, in days (five years).
pub const CA_VALIDITY_DAYS: u64 = 5 * 365 + 1;

/// How long gateway and client certificates are valid, in days: 90, renewed with
/// `simpul pki renew`.
pub const LEAF_VALIDITY_DAYS: u64 = 90;

/// How far back certificates are dated, to tolerate clock skew between hosts.
const BACKDATE: Duration = Duration::from_secs(60 * 60);

/// The SAN hosts of gateway certificates when a plan names none.
pub const DEFAULT_HOSTS: [&str; 2] = ["localhost", "127.0.0.1"];

const PRIVATE_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

/// What to issue.
#[derive(Clone, Debug)]
pub struct PkiPlan {
    /// The federation authority's id (e.g. `ID:GOV:SIMPUL`); its signing key's kid is
    /// `<authority>#<thumbprint>`.
    pub authority: MemberId,
    /// Each member with its subsystems.
    pub members: Vec<(MemberId, Vec<MemberId>)>,
    /// The operators and auditors of every member (each issued by its member's CA).
    pub staff: Vec<StaffId>,
    /// SAN DNS names / IP addresses for gateway certificates; [`DEFAULT_HOSTS`] by default.
    pub hosts: Vec<String>,
}

impl PkiPlan {
    /// A plan for `authority` with no members yet and the default hosts.
    pub fn new(authority: MemberId) -> Self {
        Self {
            authority,
            members: Vec::new(),
            staff: Vec::new(),
            hosts: DEFAULT_HOSTS.iter().map(|h| (*h).to_owned()).collect(),
        }
    }

    /// Adds a member with its subsystems.
    pub fn with_member(mut self, member: MemberId, subsystems: Vec<MemberId>) -> Self {
        self.members.push((member, subsystems));
        self
    }

    /// Checks that members are three-part ids, subsystems are four-part ids of their member,
    /// there are no duplicates, and every host is a DNS name or an IP address.
    pub fn validate(&self) -> Result<(), PkiError> {
        let invalid = |what: &dyn std::fmt::Display, reason: &str| PkiError::InvalidPlan {
            what: what.to_string(),
            reason: reason.to_owned(),
        };
        if self.authority.is_subsystem() {
            return Err(invalid(
                &self.authority,
                "the authority must be a member id (INSTANCE:CLASS:CODE)",
            ));
        }
        let mut ids = HashSet::new();
        let mut stems = HashSet::new();
        for (member, subsystems) in &self.members {
            if member.is_subsystem() {
                return Err(invalid(
                    member,
                    "a member must be a three-part id (INSTANCE:CLASS:CODE)",
                ));
            }
            if !ids.insert(member.clone()) {
                return Err(invalid(member, "member listed twice"));
            }
            if !stems.insert(member.file_stem()) {
                return Err(invalid(
                    member,
                    "its directory name collides with another member's",
                ));
            }
            for sub in subsystems {
                if !sub.is_subsystem() {
                    return Err(invalid(
                        sub,
                        "a subsystem must be a four-part id (INSTANCE:CLASS:CODE:SUBSYSTEM)",
                    ));
                }
                if sub.member() != *member {
                    return Err(invalid(sub, &format!("is not a subsystem of {member}")));
                }
                if !ids.insert(sub.clone()) {
                    return Err(invalid(sub, "subsystem listed twice"));
                }
            }
        }
        let mut staff = HashSet::new();
        for s in &self.staff {
            if !self.members.iter().any(|(m, _)| m == s.member()) {
                return Err(invalid(s, "is not of a member of the plan"));
            }
            if !staff.insert(s.clone()) {
                return Err(invalid(s, "listed twice"));
            }
        }
        if self.hosts.is_empty() {
            return Err(invalid(
                &"hosts",
                "gateway certificates need at least one host",
            ));
        }
        let mut hosts = HashSet::new();
        for host in &self.hosts {
            host_san(host).map_err(|reason| invalid(host, &reason))?;
            if !hosts.insert(host.to_ascii_lowercase()) {
                return Err(invalid(host, "host listed twice"));
            }
        }
        Ok(())
    }

    /// Every file `init` writes for this plan, in writing order.
    pub fn files(&self, layout: &PkiLayout) -> Vec<PathBuf> {
        let mut out = vec![
            layout.ca_cert(),
            layout.ca_key(),
            layout.federation_crl(),
            layout.authority_key(),
            layout.authority_jwk(),
        ];
        for (member, subsystems) in &self.members {
            out.push(layout.gateway_cert(member));
            out.push(layout.gateway_key(member));
            out.push(layout.signing_key(member));
            out.push(layout.signing_jwk(member));
            out.push(layout.member_ca_cert(member));
            out.push(layout.member_ca_key(member));
            out.push(layout.member_crl(member));
            for sub in subsystems {
                out.push(layout.client_cert(sub));
                out.push(layout.client_key(sub));
            }
            for s in self.staff_of(member) {
                out.push(layout.staff_cert(s));
                out.push(layout.staff_key(s));
            }
        }
        out
    }

    /// The operators and auditors of `member`.
    fn staff_of<'a>(&'a self, member: &'a MemberId) -> impl Iterator<Item = &'a StaffId> + 'a {
        self.staff.iter().filter(move |s| s.member() == member)
    }
}

/// What `init` wrote.
#[derive(Clone, Debug)]
pub struct PkiReport {
    /// Every file written, in order.
    pub written: Vec<PathBuf>,
}

/// Why the PKI could not be created or extended.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A target file exists and `force` was not given.
    #[error("refusing to overwrite {} (use --force)", path.display())]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// The plan is inconsistent.
    #[error("invalid PKI plan: `{what}` {reason}")]
    InvalidPlan {
        /// The offending id or host.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA certificate or key is missing.
    #[error("no CA at {} (run `simpul pki init` first)", path.display())]
    MissingCa {
        /// The missing file.
        path: PathBuf,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Making or reading a certificate or its key failed.
    #[error("{}: certificate: {source}", path.display())]
    Cert {
        /// The certificate or key file involved.
        path: PathBuf,
        /// The rcgen error.
        #[source]
        source: rcgen::Error,
    },
    /// Making or reading a JWS signing key failed.
    #[error("{}: signing key: {source}", path.display())]
    Key {
        /// The key file involved.
        path: PathBuf,
        /// The JWS error.
        #[source]
        source: contracts::JwsError,
    },
    /// A certificate or a CRL cannot be renewed, revoked or re-signed as asked.
    #[error("{}: {reason}", path.display())]
    Refused {
        /// The certificate or CRL file.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// The CA certificate is unreadable or does not belong to the CA key.
    #[error("{}: {reason}", path.display())]
    BadCa {
        /// The CA certificate.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// One file to write.
pub(crate) struct Output {
    path: PathBuf,
    bytes: Vec<u8>,
    mode: u32,
    /// Written over an existing file: a certificate re-issued because its issuer is new.
    replace: bool,
}

impl Output {
    pub(crate) fn private(path: PathBuf, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            path,
            bytes: bytes.into(),
            mode: PRIVATE_MODE,
            replace: false,
        }
    }

    pub(crate) fn public(path: PathBuf, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            path,
            bytes: bytes.into(),
            mode: PUBLIC_MODE,
            replace: false,
        }
    }

    pub(crate) fn replacing(mut self, replace: bool) -> Self {
        self.replace = replace;
        self
    }
}

/// Creates the CA (ECDSA P-256, CN "Simpul federation CA", basic constraints CA, key usage
/// keyCertSign+cRLSign, 5 years), the authority signing key, and for each member: a gateway
/// TLS certificate (ECDSA P-256; CN = member id; SAN URI `urn:simpul:<member id>` plus each
/// host as SAN DNS or SAN IP; EKU serverAuth and clientAuth, because a gateway is also the
/// client of its peers; 90 days), an ES256 signing key with its JWK, a member CA of its own
/// (CN "<member id> member CA", 5 years), and from that member CA a client certificate for
/// each subsystem (SAN URI `urn:simpul:<subsystem id>` only, CN = subsystem id, EKU
/// clientAuth only) and for each operator and auditor (SAN URI `urn:simpul:<staff id>`);
/// and an empty CRL signed by each CA (the federation CA's and every member CA's).
///
/// Private keys are created with mode 0600, certificates, CRLs and JWKs with 0644. Without `force`,
/// if any target file already exists nothing is written and [`PkiError::Exists`] is returned.
/// The plan is validated first ([`PkiPlan::validate`]). Everything is generated in memory
/// before the first file is written.
pub fn init(layout: &PkiLayout, plan: &PkiPlan, force: bool) -> Result<PkiReport, PkiError> {
    plan.validate()?;
    if !force {
        refuse_existing(&plan.files(layout))?;
    }

    let mut outputs = Vec::new();

    let ca_key = new_key_pair(&layout.ca_key())?;
    let mut ca = ca_params();
    set_validity(&mut ca, CA_VALIDITY_DAYS);
    ca.serial_number = Some(random_serial());
    let ca_cert = ca.self_signed(&ca_key).map_err(|source| PkiError::Cert {
        path: layout.ca_cert(),
        source,
    })?;
    outputs.push(Output::public(layout.ca_cert(), ca_cert.pem()));
    outputs.push(Output::private(layout.ca_key(), ca_key.serialize_pem()));
    let issuer = Issuer::new(ca, ca_key);
    outputs.push(Output::public(
        layout.federation_crl(),
        crate::crl::empty_crl(&issuer, &layout.federation_crl())?,
    ));

    push_signing_key(
        &mut outputs,
        &plan.authority,
        layout.authority_key(),
        layout.authority_jwk(),
    )?;

    outputs.extend(member_outputs(&issuer, layout, plan, |_, _| Ok(true))?);

    let written = write_outputs(&outputs, force)?;
    tracing::info!(
        root = %layout.root.display(),
        files = written.len(),
        "development PKI written"
    );
    Ok(PkiReport { written })
}

/// Issues whatever the plan needs that is missing, from the existing CA: a member or
/// subsystem added to the configuration gets its files, and nothing that exists is touched.
/// Without a CA at all (and no other file) it is [`init`]. A pair of which only one file
/// exists (a certificate without its key) is refused, naming the missing file.
pub fn complete(layout: &PkiLayout, plan: &PkiPlan) -> Result<PkiReport, PkiError> {
    plan.validate()?;
    let exists = |p: &Path| p.symlink_metadata().is_ok();
    if !exists(&layout.ca_cert()) && !exists(&layout.ca_key()) {
        if plan.files(layout).iter().any(|p| exists(p)) {
            // Keys and certificates without the CA that issued them: not something to guess at.
            return Err(PkiError::MissingCa {
                path: layout.ca_cert(),
            });
        }
        return init(layout, plan, false);
    }
    // Which of a pair is missing: none (skip), both (issue), or one (refuse).
    let missing = |a: &Path, b: &Path| -> Result<bool, PkiError> {
        match (exists(a), exists(b)) {
            (true, true) => Ok(false),
            (false, false) => Ok(true),
            (true, false) => Err(PkiError::Exists { path: a.to_owned() }),
            (false, true) => Err(PkiError::Exists { path: b.to_owned() }),
        }
    };
    let issuer = load_issuer(layout)?;
    let mut outputs = Vec::new();
    // A PKI made before CRLs existed gets an empty one.
    if !exists(&layout.federation_crl()) {
        outputs.push(Output::public(
            layout.federation_crl(),
            crate::crl::empty_crl(&issuer, &layout.federation_crl())?,
        ));
    }
    if missing(&layout.authority_key(), &layout.authority_jwk())? {
        push_signing_key(
            &mut outputs,
            &plan.authority,
            layout.authority_key(),
            layout.authority_jwk(),
        )?;
    }
    outputs.extend(member_outputs(&issuer, layout, plan, missing)?);
    let written = write_outputs(&outputs, false)?;
    if !written.is_empty() {
        tracing::info!(root = %layout.root.display(), files = written.len(), "development PKI completed");
    }
    Ok(PkiReport { written })
}

/// The files of every member, subsystem, operator and auditor pair for which
/// `wanted(first, second)` says yes: gateway certificate and key, signing key and JWK,
/// member CA, client certificates and keys. A member CA made here re-issues every client
/// certificate of its member, replacing any that exist (they were issued by another CA).
fn member_outputs(
    issuer: &Issuer<'_, KeyPair>,
    layout: &PkiLayout,
    plan: &PkiPlan,
    mut wanted: impl FnMut(&Path, &Path) -> Result<bool, PkiError>,
) -> Result<Vec<Output>, PkiError> {
    let mut outputs = Vec::new();
    for (member, subsystems) in &plan.members {
        if wanted(&layout.gateway_cert(member), &layout.gateway_key(member))? {
            let (cert, key) = issue_leaf(
                issuer,
                &member.san_uri(),
                member.as_str(),
                &plan.hosts,
                LeafKind::Gateway,
                &layout.gateway_cert(member),
            )?;
            outputs.push(Output::public(layout.gateway_cert(member), cert));
            outputs.push(Output::private(layout.gateway_key(member), key));
        }
        if wanted(&layout.signing_key(member), &layout.signing_jwk(member))? {
            push_signing_key(
                &mut outputs,
                member,
                layout.signing_key(member),
                layout.signing_jwk(member),
            )?;
        }
        let fresh_ca = wanted(
            &layout.member_ca_cert(member),
            &layout.member_ca_key(member),
        )?;
        let member_issuer = if fresh_ca {
            let (issuer, cert, key) = new_member_ca(member, &layout.member_ca_cert(member))?;
            outputs.push(Output::public(layout.member_ca_cert(member), cert));
            outputs.push(Output::private(layout.member_ca_key(member), key));
            issuer
        } else {
            load_member_issuer(layout, member)?
        };
        // A new member CA starts with an empty CRL (one of an earlier CA is replaced); an
        // existing one without a CRL (a PKI made before CRLs) gets one.
        let crl_path = layout.member_crl(member);
        if fresh_ca || crl_path.symlink_metadata().is_err() {
            let crl = crate::crl::empty_crl(&member_issuer, &crl_path)?;
            outputs.push(Output::public(crl_path, crl).replacing(fresh_ca));
        }
        let clients = subsystems
            .iter()
            .map(|s| {
                (
                    s.san_uri(),
                    s.to_string(),
                    layout.client_cert(s),
                    layout.client_key(s),
                )
            })
            .chain(plan.staff_of(member).map(|s| {
                (
                    s.san_uri(),
                    s.to_string(),
                    layout.staff_cert(s),
                    layout.staff_key(s),
                )
            }));
        for (uri, name, cert_path, key_path) in clients {
            if fresh_ca || wanted(&cert_path, &key_path)? {
                let (cert, key) = issue_leaf(
                    &member_issuer,
                    &uri,
                    &name,
                    &[],
                    LeafKind::Client,
                    &cert_path,
                )?;
                outputs.push(Output::public(cert_path, cert).replacing(fresh_ca));
                outputs.push(Output::private(key_path, key).replacing(fresh_ca));
            }
        }
    }
    Ok(outputs)
}

/// A new member CA for `member`: its issuer, certificate PEM and key PEM.
fn new_member_ca(
    member: &MemberId,
    cert_path: &Path,
) -> Result<(Issuer<'static, KeyPair>, String, String), PkiError> {
    let key = new_key_pair(cert_path)?;
    let mut params = member_ca_params(member);
    set_validity(&mut params, CA_VALIDITY_DAYS);
    params.serial_number = Some(random_serial());
    let cert = params.self_signed(&key).map_err(|source| PkiError::Cert {
        path: cert_path.to_owned(),
        source,
    })?;
    let key_pem = key.serialize_pem();
    Ok((
        Issuer::new(member_ca_params(member), key),
        cert.pem(),
        key_pem,
    ))
}

/// A member CA's parameters, without validity or serial (see [`ca_params`]).
fn member_ca_params(member: &MemberId) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{member} {MEMBER_CA_SUFFIX}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// Loads `member`'s CA from its files.
pub(crate) fn load_member_issuer(
    layout: &PkiLayout,
    member: &MemberId,
) -> Result<Issuer<'static, KeyPair>, PkiError> {
    load_issuer_from(
        &layout.member_ca_cert(member),
        &layout.member_ca_key(member),
        &format!("{member} {MEMBER_CA_SUFFIX}"),
        member_ca_params(member),
    )
}

/// True when the CA, the authority key and every member's and subsystem's files exist.
pub fn is_complete(layout: &PkiLayout, plan: &PkiPlan) -> bool {
    plan.files(layout).iter().all(|p| p.is_file())
}

/// Issues one more client certificate for `id` under `layout` — used by tests and to add a
/// subsystem later. A subsystem's comes from its member's CA and is written to
/// [`PkiLayout::client_cert`] and [`PkiLayout::client_key`]; a three-part member id's from
/// the federation CA, to `<root>/<stem>/client.pem` and `client.key`. The certificate names
/// `id` as its CN and only SAN (`urn:simpul:<id>`) and allows clientAuth only. Refuses to
/// overwrite without `force`.
///
/// Returns the certificate and key paths.
pub fn issue_client(
    layout: &PkiLayout,
    id: &MemberId,
    force: bool,
) -> Result<(PathBuf, PathBuf), PkiError> {
    let cert_path = layout.client_cert(id);
    let key_path = layout.client_key(id);
    if !force {
        refuse_existing(&[cert_path.clone(), key_path.clone()])?;
    }
    let issuer = if id.is_subsystem() {
        load_member_issuer(layout, &id.member())?
    } else {
        load_issuer(layout)?
    };
    let (cert, key) = issue_leaf(
        &issuer,
        &id.san_uri(),
        id.as_str(),
        &[],
        LeafKind::Client,
        &cert_path,
    )?;
    write_outputs(
        &[
            Output::public(cert_path.clone(), cert),
            Output::private(key_path.clone(), key),
        ],
        force,
    )?;
    tracing::info!(id = %id, cert = %cert_path.display(), "client certificate issued");
    Ok((cert_path, key_path))
}

/// Whose certificate to renew or revoke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// A member's gateway certificate, issued by the federation CA.
    Gateway(MemberId),
    /// A subsystem's client certificate, issued by its member's CA.
    Subsystem(MemberId),
    /// An operator's or auditor's client certificate, issued by its member's CA.
    Staff(StaffId),
}

impl Holder {
    /// The certificate file.
    pub fn cert(&self, layout: &PkiLayout) -> PathBuf {
        match self {
            Holder::Gateway(m) => layout.gateway_cert(m),
            Holder::Subsystem(s) => layout.client_cert(s),
            Holder::Staff(s) => layout.staff_cert(s),
        }
    }

    /// The private key file.
    pub fn key(&self, layout: &PkiLayout) -> PathBuf {
        match self {
            Holder::Gateway(m) => layout.gateway_key(m),
            Holder::Subsystem(s) => layout.client_key(s),
            Holder::Staff(s) => layout.staff_key(s),
        }
    }

    /// The CA that issues its certificate: the federation's for a gateway, else its member's.
    pub fn ca(&self) -> crate::crl::Ca {
        match self {
            Holder::Gateway(_) => crate::crl::Ca::Federation,
            Holder::Subsystem(s) => crate::crl::Ca::Member(s.member()),
            Holder::Staff(s) => crate::crl::Ca::Member(s.member().clone()),
        }
    }
}

/// Re-issues `holder`'s certificate from its CA for [`LEAF_VALIDITY_DAYS`], with a new serial
/// and the same names, keeping its private key — or, with `new_key`, a new one (after a
/// key compromise). A gateway certificate names `hosts` besides its SAN URI. The old
/// certificate is replaced and stays valid until it expires unless it is revoked first
/// (`simpul pki revoke`). Returns the files written.
///
/// # Errors
/// The holder's certificate or key is missing (nothing to renew) or unreadable; its CA
/// cannot be loaded; a host is not a DNS name or an IP address.
pub fn renew(
    layout: &PkiLayout,
    holder: &Holder,
    hosts: &[String],
    new_key: bool,
) -> Result<PkiReport, PkiError> {
    let cert_path = holder.cert(layout);
    let key_path = holder.key(layout);
    for p in [&cert_path, &key_path] {
        if p.symlink_metadata().is_err() {
            return Err(PkiError::Refused {
                path: p.clone(),
                reason: "does not exist: nothing to renew (`simpul pki init` issues it)".into(),
            });
        }
    }
    let (issuer, uri, name, hosts, kind) = match holder {
        Holder::Gateway(m) => (
            load_issuer(layout)?,
            m.san_uri(),
            m.to_string(),
            hosts,
            LeafKind::Gateway,
        ),
        Holder::Subsystem(s) => (
            load_member_issuer(layout, &s.member())?,
            s.san_uri(),
            s.to_string(),
            &[][..],
            LeafKind::Client,
        ),
        Holder::Staff(s) => (
            load_member_issuer(layout, s.member())?,
            s.san_uri(),
            s.to_string(),
            &[][..],
            LeafKind::Client,
        ),
    };
    let key = if new_key {
        new_key_pair(&key_path)?
    } else {
        let pem = fs::read_to_string(&key_path).map_err(|source| PkiError::Io {
            path: key_path.clone(),
            source,
        })?;
        KeyPair::from_pem(&pem).map_err(|source| PkiError::Cert {
            path: key_path.clone(),
            source,
        })?
    };
    let (cert, key_pem) = issue_leaf_for(&issuer, key, &uri, &name, hosts, kind, &cert_path)?;
    let mut outputs = vec![Output::public(cert_path, cert).replacing(true)];
    if new_key {
        outputs.push(Output::private(key_path, key_pem).replacing(true));
    }
    let written = write_outputs(&outputs, false)?;
    tracing::info!(holder = ?holder, new_key, "certificate renewed");
    Ok(PkiReport { written })
}

/// The CA's parameters, without validity or serial: the same in `init` and when the issuer is
/// rebuilt from the files, so the issuer DN and key identifier of new certificates match the
/// CA certificate's subject and subject key identifier.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// Loads the CA key and certificate, checks that they belong together, and rebuilds the
/// issuer.
pub(crate) fn load_issuer(layout: &PkiLayout) -> Result<Issuer<'static, KeyPair>, PkiError> {
    load_issuer_from(
        &layout.ca_cert(),
        &layout.ca_key(),
        CA_COMMON_NAME,
        ca_params(),
    )
}

/// Loads a CA from its certificate and key files, checks that they belong together and that
/// its subject is `CN=<common_name>`, and rebuilds its issuer with `params`.
fn load_issuer_from(
    cert_path: &Path,
    key_path: &Path,
    common_name: &str,
    params: CertificateParams,
) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let key_pem = read_ca_file(key_path)?;
    let cert_pem = read_ca_file(cert_path)?;
    let key = KeyPair::from_pem(&key_pem).map_err(|source| PkiError::Cert {
        path: key_path.to_owned(),
        source,
    })?;

    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let bad = |reason: String| PkiError::BadCa {
        path: cert_path.to_owned(),
        reason,
    };
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| bad(format!("not a PEM certificate: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| bad(format!("not an X.509 certificate: {e}")))?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(bad(format!(
            "the CA certificate does not match the key in {}",
            key_path.display()
        )));
    }
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok());
    if cn != Some(common_name) || cert.subject().iter().count() != 1 {
        return Err(bad(format!(
            "the CA certificate's subject is `{}`, expected `CN={common_name}`",
            cert.subject()
        )));
    }
    Ok(Issuer::new(params, key))
}

fn read_ca_file(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            PkiError::MissingCa {
                path: path.to_owned(),
            }
        } else {
            PkiError::Io {
                path: path.to_owned(),
                source,
            }
        }
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeafKind {
    /// A gateway: server and client of its peers.
    Gateway,
    /// A client system (or a member acting as one).
    Client,
}

/// Makes a P-256 key and a certificate naming `san_uri` (CN `common_name`) signed by
/// `issuer`; returns (cert PEM, key PEM).
pub(crate) fn issue_leaf(
    issuer: &Issuer<'_, KeyPair>,
    san_uri: &str,
    common_name: &str,
    hosts: &[String],
    kind: LeafKind,
    cert_path: &Path,
) -> Result<(String, String), PkiError> {
    let key = new_key_pair(cert_path)?;
    issue_leaf_for(issuer, key, san_uri, common_name, hosts, kind, cert_path)
}

/// [`issue_leaf`] for an existing `key`.
fn issue_leaf_for(
    issuer: &Issuer<'_, KeyPair>,
    key: KeyPair,
    san_uri: &str,
    common_name: &str,
    hosts: &[String],
    kind: LeafKind,
    cert_path: &Path,
) -> Result<(String, String), PkiError> {
    let cert = sign_leaf(issuer, &key, san_uri, common_name, hosts, kind, cert_path)?;
    Ok((cert, key.serialize_pem()))
}

/// The certificate (PEM) of the public key `key` naming `san_uri` (CN `common_name`) and
/// `hosts`, signed by `issuer` for [`LEAF_VALIDITY_DAYS`]: what [`issue_leaf`] issues, and
/// `crate::request::issue` for a key it never sees.
pub(crate) fn sign_leaf(
    issuer: &Issuer<'_, KeyPair>,
    key: &impl rcgen::PublicKeyData,
    san_uri: &str,
    common_name: &str,
    hosts: &[String],
    kind: LeafKind,
    cert_path: &Path,
) -> Result<String, PkiError> {
    let cert_err = |source| PkiError::Cert {
        path: cert_path.to_owned(),
        source,
    };
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.serial_number = Some(random_serial());
    set_validity(&mut params, LEAF_VALIDITY_DAYS);
    params.subject_alt_names = vec![SanType::URI(
        san_uri.to_owned().try_into().map_err(cert_err)?,
    )];
    for host in hosts {
        let san = host_san(host).map_err(|reason| PkiError::InvalidPlan {
            what: host.clone(),
            reason,
        })?;
        params.subject_alt_names.push(san);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match kind {
        LeafKind::Gateway => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        LeafKind::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(key, issuer).map_err(cert_err)?;
    Ok(cert.pem())
}

/// A host as a SAN: an IP address, or else a DNS name.
pub(crate) fn host_san(host: &str) -> Result<SanType, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid_label = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let name = host.strip_prefix("*.").unwrap_or(host);
    if host.len() > 253 || !name.split('.').all(valid_label) {
        return Err("is neither an IP address nor a DNS name".to_owned());
    }
    host.to_owned()
        .try_into()
        .map(SanType::DnsName)
        .map_err(|e| format!("is not a DNS name: {e}"))
}

pub(crate) fn new_key_pair(path: &Path) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| PkiError::Cert {
        path: path.to_owned(),
        source,
    })
}

/// A random positive 16-byte serial number.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // Never expected; fall back to the clock so serials still differ.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = nanos.to_be_bytes();
    }
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

/// Valid from an hour ago (clock skew) for `days` days from now.
fn set_validity(params: &mut CertificateParams, days: u64) {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::from_secs(days * 24 * 60 * 60);
}

/// Makes an ES256 signing key for `id` and queues its private PEM and public JWK.
fn push_signing_key(
    outputs: &mut Vec<Output>,
    id: &MemberId,
    key_path: PathBuf,
    jwk_path: PathBuf,
) -> Result<(), PkiError> {
    let key =
        SigningKey::generate(Algorithm::ES256, id.as_str()).map_err(|source| PkiError::Key {
            path: key_path.clone(),
            source,
        })?;
    let mut jwk = serde_json::to_string_pretty(key.public_jwk()).map_err(|e| PkiError::Io {
        path: jwk_path.clone(),
        source: io::Error::other(e),
    })?;
    jwk.push('\n');
    let pem = key.private_pem().map_err(|source| PkiError::Key {
        path: key_path.clone(),
        source,
    })?;
    outputs.push(Output::private(key_path, pem));
    outputs.push(Output::public(jwk_path, jwk));
    Ok(())
}

fn refuse_existing(paths: &[PathBuf]) -> Result<(), PkiError> {
    match paths.iter().find(|p| p.symlink_metadata().is_ok()) {
        Some(path) => Err(PkiError::Exists { path: path.clone() }),
        None => Ok(()),
    }
}

/// Writes every output, creating each file with its mode. With `force` an existing file is
/// removed first, so that the new one gets its mode at creation; without it an existing file
/// is an error.
pub(crate) fn write_outputs(outputs: &[Output], force: bool) -> Result<Vec<PathBuf>, PkiError> {
    let mut written = Vec::with_capacity(outputs.len());
    for out in outputs {
        let io_err = |source| PkiError::Io {
            path: out.path.clone(),
            source,
        };
        if let Some(dir) = out.path.parent() {
            fs::create_dir_all(dir).map_err(|source| PkiError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        if force || out.replace {
            match fs::remove_file(&out.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(out.mode)
            .open(&out.path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    PkiError::Exists {
                        path: out.path.clone(),
                    }
                } else {
                    io_err(e)
                }
            })?;
        file.write_all(&out.bytes).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        written.push(out.path.clone());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use rustls::RootCertStore;
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
    use rustls::server::WebPkiClientVerifier;
    use rustls::server::danger::ClientCertVerifier;
    use x509_parser::extensions::GeneralName;

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

    fn cert_der(path: &Path) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(path).unwrap()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    fn roots(layout: &PkiLayout) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(cert_der(&layout.ca_cert())).unwrap();
        Arc::new(roots)
    }

    fn client_verifier(layout: &PkiLayout) -> Arc<dyn ClientCertVerifier> {
        WebPkiClientVerifier::builder_with_provider(roots(layout), provider())
            .build()
            .unwrap()
    }

    /// A verifier trusting `member`'s own CA only.
    fn member_verifier(layout: &PkiLayout, member: &str) -> Arc<dyn ClientCertVerifier> {
        let mut roots = RootCertStore::empty();
        roots
            .add(cert_der(&layout.member_ca_cert(&id(member))))
            .unwrap();
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap()
    }

    fn server_verifier(layout: &PkiLayout) -> Arc<WebPkiServerVerifier> {
        WebPkiServerVerifier::builder_with_provider(roots(layout), provider())
            .build()
            .unwrap()
    }

    fn sans(der: &CertificateDer<'_>) -> (Vec<String>, Vec<String>, Vec<Vec<u8>>) {
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        let (mut uris, mut dns, mut ips) = (vec![], vec![], vec![]);
        let san = cert.subject_alternative_name().unwrap().unwrap();
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => uris.push(u.to_string()),
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(ip) => ips.push(ip.to_vec()),
                other => panic!("unexpected SAN {other:?}"),
            }
        }
        (uris, dns, ips)
    }

    fn eku(der: &CertificateDer<'_>) -> (bool, bool) {
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        (eku.server_auth, eku.client_auth)
    }

    fn common_name(der: &CertificateDer<'_>) -> String {
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap();
        cn.as_str().unwrap().to_owned()
    }

    #[test]
    fn init_writes_every_file_with_the_right_modes() {
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path().join("certs"));
        let plan = plan();
        assert!(!is_complete(&layout, &plan));
        let report = init(&layout, &plan, false).unwrap();
        assert_eq!(report.written, plan.files(&layout));
        assert_eq!(report.written.len(), 5 + 2 * 7 + 2 * 2);
        assert!(is_complete(&layout, &plan));

        let kemlu = id("ID:GOV:KEMLU");
        let sub = id("ID:GOV:KEMLU:PEDULI-WNI");
        assert_eq!(layout.ca_cert(), dir.path().join("certs/ca.pem"));
        assert_eq!(
            layout.client_cert(&sub),
            dir.path()
                .join("certs/ID_GOV_KEMLU/ID_GOV_KEMLU_PEDULI-WNI.pem")
        );
        assert_eq!(
            layout.signing_jwk(&kemlu),
            dir.path().join("certs/ID_GOV_KEMLU/signing.jwk")
        );

        for key in [
            layout.ca_key(),
            layout.authority_key(),
            layout.gateway_key(&kemlu),
            layout.signing_key(&kemlu),
            layout.client_key(&sub),
        ] {
            assert_eq!(mode(&key), 0o600, "{}", key.display());
        }
        for public in [
            layout.ca_cert(),
            layout.authority_jwk(),
            layout.gateway_cert(&kemlu),
            layout.signing_jwk(&kemlu),
            layout.client_cert(&sub),
        ] {
            // The umask may only take bits away.
            assert_eq!(mode(&public) & !0o644, 0, "{}", public.display());
            assert_eq!(mode(&public) & 0o600, 0o600, "{}", public.display());
        }
    }

    #[test]
    fn second_init_refuses_without_force_and_overwrites_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path());
        let plan = plan();
        init(&layout, &plan, false).unwrap();
        let before: Vec<Vec<u8>> = plan
            .files(&layout)
            .iter()
            .map(|p| fs::read(p).unwrap())
            .collect();

        let err = init(&layout, &plan, false).unwrap_err();
        match &err {
            PkiError::Exists { path } => assert_eq!(path, &layout.ca_cert()),
            other => panic!("expected Exists, got {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!(
                "refusing to overwrite {} (use --force)",
                layout.ca_cert().display()
            )
        );
        let after: Vec<Vec<u8>> = plan
            .files(&layout)
            .iter()
            .map(|p| fs::read(p).unwrap())
            .collect();
        assert_eq!(before, after);

        // A single existing file also blocks everything.
        let other = tempfile::tempdir().unwrap();
        let other_layout = PkiLayout::new(other.path());
        let kemlu = id("ID:GOV:KEMLU");
        fs::create_dir_all(other_layout.member_dir(&kemlu)).unwrap();
        fs::write(other_layout.signing_jwk(&kemlu), b"{}").unwrap();
        assert!(matches!(
            init(&other_layout, &plan, false),
            Err(PkiError::Exists { path }) if path == other_layout.signing_jwk(&kemlu)
        ));
        assert!(!other_layout.ca_cert().exists());

        // With force everything is replaced, and keys keep mode 0600.
        fs::set_permissions(layout.ca_key(), fs::Permissions::from_mode(0o644)).unwrap();
        let report = init(&layout, &plan, true).unwrap();
        assert_eq!(report.written.len(), before.len());
        for (path, old) in plan.files(&layout).iter().zip(&before) {
            assert_ne!(&fs::read(path).unwrap(), old, "{}", path.display());
        }
        assert_eq!(mode(&layout.ca_key()), 0o600);
    }

    #[test]
    fn gateway_certificate_names_member_and_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path());
        init(&layout, &plan(), false).unwrap();
        let member = id("ID:GOV:DUKCAPIL");
        let der = cert_der(&layout.gateway_cert(&member));
        let (uris, dns, ips) = sans(&der);
        assert_eq!(uris, vec!["urn:simpul:ID:GOV:DUKCAPIL".to_owned()]);
        assert_eq!(dns, vec!["localhost".to_owned()]);
        assert_eq!(ips, vec![vec![127, 0, 0, 1]]);
        assert_eq!(eku(&der), (true, true));
        assert_eq!(common_name(&der), "ID:GOV:DUKCAPIL");

        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(!cert.is_ca());
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
            / 86_400;
        assert_eq!(days, 90);

        let ca = cert_der(&layout.ca_cert());
        let (_, ca) = x509_parser::parse_x509_certificate(&ca).unwrap();
        assert!(ca.is_ca());
        assert_eq!(ca.subject().to_string(), format!("CN={CA_COMMON_NAME}"));
        let ku = ca.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        assert_eq!(cert.issuer(), ca.subject());
    }

    #[test]
    fn subsystem_certificate_is_client_only() {
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path());
        init(&layout, &plan(), false).unwrap();
        let sub = id("ID:GOV:KEMLU:PEDULI-WNI");
        let der = cert_der(&layout.client_cert(&sub));
        let (uris, dns, ips) = sans(&der);
        assert_eq!(uris, vec!["urn:simpul:ID:GOV:KEMLU:PEDULI-WNI".to_owned()]);
        assert!(dns.is_empty() && ips.is_empty());
        assert_eq!(eku(&der), (false, true));
        assert_eq!(common_name(&der), "ID:GOV:KEMLU:PEDULI-WNI");
    }

    #[test]
    fn operator_and_auditor_certificates_come_from_the_member_ca() {
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path());
        let kemlu = id("ID:GOV:KEMLU");
        let mut plan = plan();
        let ops = StaffId::parse("operator:ID:GOV:KEMLU:OPS").unwrap();
        let audit = StaffId::parse("auditor:ID:GOV:KEMLU:AUDIT").unwrap();
        plan.staff = vec![ops.clone(), audit.clone()];
        init(&layout, &plan, false).unwrap();
        let der = cert_der(&layout.staff_cert(&ops));
        assert_eq!(
            layout.staff_cert(&ops),
            dir.path().join("ID_GOV_KEMLU/operator-OPS.pem")
        );
        assert_eq!(sans(&der).0, vec!["urn:simpul:operator:ID:GOV:KEMLU:OPS"]);
        assert_eq!(eku(&der), (false, true));
        assert_eq!(mode(&layout.staff_key(&audit)), 0o600);
        let now = UnixTime::now();
        member_verifier(&layout, kemlu.as_str())
            .verify_client_cert(&der, &[], now)
            .unwrap();
        assert!(
            client_verifier(&layout)
                .verify_client_cert(&der, &[], now)
                .is_err()
        );
        // A staff member of a member not in the plan is refused.
        let mut stray = plan.clone();
        stray
            .staff
            .push(StaffId::parse("operator:ID:GOV:NOBODY:OPS").unwrap());
        assert!(matches!(
            init(&PkiLayout::new(dir.path().join("x")), &stray, false),
            Err(PkiError::InvalidPlan { .. })
        ));
    }

    #[test]
    fn completing_a_pki_without_member_cas_reissues_the_client_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path());
        init(&layout, &plan(), false).unwrap();
        let sub = id("ID:GOV:KEMLU:PEDULI-WNI");
        let before = fs::read(layout.client_cert(&sub)).unwrap();
        // A PKI made before member CAs existed: none, and subsystems from the federation CA.
        fs::remove_file(layout.member_ca_cert(&id("ID:GOV:KEMLU"))).unwrap();
        fs::remove_file(layout.member_ca_key(&id("ID:GOV:KEMLU"))).unwrap();
        let report = complete(&layout, &plan()).unwrap();
        // The member CA, its new CRL (replacing the old CA's), two subsystems.
        assert_eq!(report.written.len(), 2 + 1 + 2 * 2);
        assert_ne!(fs::read(layout.client_cert(&sub)).unwrap(), before);
        member_verifier(&layout, "ID:GOV:KEMLU")
            .verify_client_cert(&cert_der(&layout.client_cert(&sub)), &[], UnixTime::now())
            .unwrap();
    }

    #[test]
    fn completing_a_pki_without_crls_writes_an_empty_crl_per_ca_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path());
        init(&layout, &plan(), false).unwrap();
        let gateway = fs::read(layout.gateway_cert(&id("ID:GOV:KEMLU"))).unwrap();
        // A PKI made before CRLs existed.
        let crls = [
            layout.federation_crl(),
            layout.member_crl(&id("ID:GOV:KEMLU")),
            layout.member_crl(&id("ID:GOV:DUKCAPIL")),
        ];
        for crl in &crls {
            fs::remove_file(crl).unwrap();
        }
        assert!(!is_complete(&layout, &plan()));
        let mut report = complete(&layout, &plan()).unwrap().written;
        report.sort();
        let mut want = crls.to_vec();
        want.sort();
        assert_eq!(report, want);
        assert_eq!(
            fs::read(layout.gateway_cert(&id("ID:GOV:KEMLU"))).unwrap(),
            gateway
        );
        for crl in &crls {
            assert_eq!(mode(crl), 0o644);
            let der = rustls::pki_types::CertificateRevocationListDer::from_pem_file(crl).unwrap();
            let (_, crl) = x509_parser::parse_x509_crl(der.as_ref()).unwrap();
            assert_eq!(crl.iter_revoked_certificates().count(), 0);
        }
    }

    #[test]
    fn signing_keys_and_jwks_agree() {
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path());
        let plan = plan();
        init(&layout, &plan, false).unwrap();
        let member = id("ID:GOV:KEMLU");
        let check = |key: PathBuf, jwk: PathBuf, who: &MemberId| {
            let jwk: serde_json::Value = serde_json::from_slice(&fs::read(jwk).unwrap()).unwrap();
            let kid = jwk["kid"].as_str().unwrap();
            assert!(kid.starts_with(&format!("{who}#")), "{kid}");
            assert!(jwk.get("d").is_none(), "private part in the public JWK");
            let key = SigningKey::from_pem(Algorithm::ES256, who.as_str(), &fs::read(key).unwrap())
                .unwrap();
            assert_eq!(key.kid(), kid);
            assert_eq!(key.public_jwk(), &jwk);
        };
        check(
            layout.signing_key(&member),
            layout.signing_jwk(&member),
            &member,
        );
        check(
            layout.authority_key(),
            layout.authority_jwk(),
            &plan.authority,
        );
    }

    #[test]
    fn webpki_accepts_the_chain_and_rejects_a_foreign_ca() {
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path());
        init(&layout, &plan(), false).unwrap();
        let now = UnixTime::now();
        let clients = client_verifier(&layout);
        let servers = server_verifier(&layout);

        let gateway = cert_der(&layout.gateway_cert(&id("ID:GOV:DUKCAPIL")));
        clients.verify_client_cert(&gateway, &[], now).unwrap();
        for host in ["localhost", "127.0.0.1"] {
            let name = ServerName::try_from(host).unwrap();
            servers
                .verify_server_cert(&gateway, &[], &name, &[], now)
                .unwrap();
        }
        let elsewhere = ServerName::try_from("example.org").unwrap();
        assert!(
            servers
                .verify_server_cert(&gateway, &[], &elsewhere, &[], now)
                .is_err()
        );

        // A subsystem's certificate chains to its member's CA, not to the federation's.
        let sub = cert_der(&layout.client_cert(&id("ID:GOV:KEMLU:PEDULI-WNI")));
        assert!(clients.verify_client_cert(&sub, &[], now).is_err());
        let kemlu = member_verifier(&layout, "ID:GOV:KEMLU");
        kemlu.verify_client_cert(&sub, &[], now).unwrap();
        assert!(
            member_verifier(&layout, "ID:GOV:DUKCAPIL")
                .verify_client_cert(&sub, &[], now)
                .is_err()
        );
        assert!(kemlu.verify_client_cert(&gateway, &[], now).is_err());
        // A client-only certificate is not a server certificate.
        let localhost = ServerName::try_from("localhost").unwrap();
        assert!(
            servers
                .verify_server_cert(&sub, &[], &localhost, &[], now)
                .is_err()
        );

        // A client certificate issued later from the CA rebuilt from the files.
        let later = id("ID:GOV:KEMLU:NEW-SYSTEM");
        let (cert_path, key_path) = issue_client(&layout, &later, false).unwrap();
        assert_eq!(cert_path, layout.client_cert(&later));
        assert_eq!(mode(&key_path), 0o600);
        let issued = cert_der(&cert_path);
        kemlu.verify_client_cert(&issued, &[], now).unwrap();
        assert_eq!(sans(&issued).0, vec![later.san_uri()]);
        assert_eq!(eku(&issued), (false, true));

        // Certificates of an independent PKI are refused by this CA, and the reverse.
        let other_dir = tempfile::tempdir().unwrap();
        let other = PkiLayout::new(other_dir.path());
        init(&other, &plan(), false).unwrap();
        let (foreign_path, _) = issue_client(&other, &id("ID:GOV:DUKCAPIL"), false).unwrap();
        let foreign = cert_der(&foreign_path);
        assert!(clients.verify_client_cert(&foreign, &[], now).is_err());
        let foreign_gateway = cert_der(&other.gateway_cert(&id("ID:GOV:DUKCAPIL")));
        assert!(
            clients
                .verify_client_cert(&foreign_gateway, &[], now)
                .is_err()
        );
        assert!(
            servers
                .verify_server_cert(&foreign_gateway, &[], &localhost, &[], now)
                .is_err()
        );
        assert!(
            member_verifier(&other, "ID:GOV:KEMLU")
                .verify_client_cert(&issued, &[], now)
                .is_err()
        );
    }

    #[test]
    fn issue_client_for_a_member_and_its_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path());
        let member = id("ID:GOV:DUKCAPIL");

        assert!(matches!(
            issue_client(&layout, &member, false),
            Err(PkiError::MissingCa { .. })
        ));

        init(&layout, &plan(), false).unwrap();
        let (cert, key) = issue_client(&layout, &member, false).unwrap();
        assert_eq!(cert, dir.path().join("ID_GOV_DUKCAPIL/client.pem"));
        assert_eq!(key, dir.path().join("ID_GOV_DUKCAPIL/client.key"));
        assert_eq!(
            sans(&cert_der(&cert)).0,
            vec!["urn:simpul:ID:GOV:DUKCAPIL".to_owned()]
        );
        let first = fs::read(&cert).unwrap();
        assert!(matches!(
            issue_client(&layout, &member, false),
            Err(PkiError::Exists { path }) if path == cert
        ));
        assert_eq!(fs::read(&cert).unwrap(), first);
        issue_client(&layout, &member, true).unwrap();
        assert_ne!(fs::read(&cert).unwrap(), first);

        // A CA certificate that does not belong to the CA key is refused.
        let other = tempfile::tempdir().unwrap();
        let other = PkiLayout::new(other.path());
        init(&other, &plan(), false).unwrap();
        fs::copy(other.ca_cert(), layout.ca_cert()).unwrap();
        assert!(matches!(
            issue_client(&layout, &member, true),
            Err(PkiError::BadCa { .. })
        ));
    }

    #[test]
    fn bad_plans_name_the_offending_id() {
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path());
        let cases = [
            (
                PkiPlan::new(id("ID:GOV:SIMPUL"))
                    .with_member(id("ID:GOV:KEMLU:PEDULI-WNI"), vec![]),
                "ID:GOV:KEMLU:PEDULI-WNI",
            ),
            (
                PkiPlan::new(id("ID:GOV:SIMPUL"))
                    .with_member(id("ID:GOV:KEMLU"), vec![id("ID:GOV:DUKCAPIL")]),
                "ID:GOV:DUKCAPIL",
            ),
            (
                PkiPlan::new(id("ID:GOV:SIMPUL"))
                    .with_member(id("ID:GOV:KEMLU"), vec![id("ID:GOV:DUKCAPIL:X")]),
                "ID:GOV:DUKCAPIL:X",
            ),
            (
                PkiPlan::new(id("ID:GOV:SIMPUL"))
                    .with_member(id("ID:GOV:KEMLU"), vec![])
                    .with_member(id("ID:GOV:KEMLU"), vec![]),
                "ID:GOV:KEMLU",
            ),
            (
                PkiPlan::new(id("ID:GOV:SIMPUL")).with_member(
                    id("ID:GOV:KEMLU"),
                    vec![id("ID:GOV:KEMLU:A"), id("ID:GOV:KEMLU:A")],
                ),
                "ID:GOV:KEMLU:A",
            ),
            (
                PkiPlan::new(id("ID:GOV:SIMPUL"))
                    .with_member(id("ID:GOV_X:Y"), vec![])
                    .with_member(id("ID_GOV:X:Y"), vec![]),
                "ID_GOV:X:Y",
            ),
            (PkiPlan::new(id("ID:GOV:SIMPUL:SUB")), "ID:GOV:SIMPUL:SUB"),
            (
                PkiPlan {
                    hosts: vec!["not a host".into()],
                    ..PkiPlan::new(id("ID:GOV:SIMPUL"))
                },
                "not a host",
            ),
        ];
        for (plan, offending) in cases {
            let err = init(&layout, &plan, false).unwrap_err();
            match &err {
                PkiError::InvalidPlan { what, .. } => assert_eq!(what, offending),
                other => panic!("expected InvalidPlan for {offending}, got {other:?}"),
            }
            assert!(err.to_string().contains(offending), "{err}");
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn complete_issues_only_what_a_grown_plan_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path());
        // Nothing yet: complete is init.
        let first = complete(&layout, &plan()).unwrap();
        assert_eq!(first.written.len(), plan().files(&layout).len());
        let ca_before = fs::read(layout.ca_cert()).unwrap();
        // A new subsystem and a new member: only their files are written.
        let grown = plan()
            .with_member(id("ID:GOV:NEW"), vec![id("ID:GOV:NEW:APP")])
            .with_member(id("ID:GOV:KEMLU2"), vec![]);
        let mut grown = grown;
        grown.members[1].1.push(id("ID:GOV:KEMLU:OPS"));
        let added = complete(&layout, &grown).unwrap();
        assert_eq!(added.written.len(), 2 + 7 + 2 + 7);
        assert_eq!(
            fs::read(layout.ca_cert()).unwrap(),
            ca_before,
            "the CA is untouched"
        );
        // The new subsystem's certificate chains to its member's CA.
        let verifier = member_verifier(&layout, "ID:GOV:KEMLU");
        let now = UnixTime::now();
        verifier
            .verify_client_cert(
                &cert_der(&layout.client_cert(&id("ID:GOV:KEMLU:OPS"))),
                &[],
                now,
            )
            .unwrap();
        // Complete again: nothing to do.
        assert!(complete(&layout, &grown).unwrap().written.is_empty());
        // Half a pair is refused, naming the file that is there.
        fs::remove_file(layout.client_key(&id("ID:GOV:NEW:APP"))).unwrap();
        assert!(
            matches!(complete(&layout, &grown), Err(PkiError::Exists { path }) if path == layout.client_cert(&id("ID:GOV:NEW:APP")))
        );
    }

    #[test]
    fn custom_hosts_become_sans() {
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path());
        let plan = PkiPlan {
            hosts: vec!["gw.kemlu.example".into(), "::1".into(), "10.0.0.7".into()],
            ..PkiPlan::new(id("ID:GOV:SIMPUL"))
        }
        .with_member(id("ID:GOV:KEMLU"), vec![]);
        init(&layout, &plan, false).unwrap();
        let der = cert_der(&layout.gateway_cert(&id("ID:GOV:KEMLU")));
        let (_, dns, ips) = sans(&der);
        assert_eq!(dns, vec!["gw.kemlu.example".to_owned()]);
        let mut v6 = vec![0u8; 16];
        v6[15] = 1;
        assert_eq!(ips, vec![v6, vec![10, 0, 0, 7]]);
        let name = ServerName::try_from("gw.kemlu.example").unwrap();
        server_verifier(&layout)
            .verify_server_cert(&der, &[], &name, &[], UnixTime::now())
            .unwrap();
    }
}
