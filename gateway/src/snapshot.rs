//! The gateway's trust snapshot: everything derived from the manifest, the CRLs and the
//! gateway's own keys — the manifest, the federation's CAs and CRLs, the TLS server
//! configurations of the federation listener and of the member's own listeners, a
//! [`PeerClient`] per member, the signing key, the provider's rate limiter — in one
//! immutable value behind one pointer ([`Current`]). A refresh ([`crate::refresh`]) builds
//! a whole new snapshot and swaps the pointer; nothing in a snapshot ever changes.
//!
//! An exchange loads the snapshot once, at its start, and uses only that one until it ends,
//! so an exchange in flight finishes under the manifest (and keys) it started with; a
//! listener takes the TLS configuration of the snapshot current when it accepts a
//! connection. What must outlive a swap — the replay window, the admission limits, the
//! cache, the breakers, the witness, the audit log — lives on the [`crate::gateway::Gateway`]
//! beside the pointer, never in it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use contracts::envelope::MAX_ANSWER_BYTES;
use contracts::manifest::Rate;
use contracts::{Contract, ContractRef, Manifest, MemberId, SigningKey, VerifyingKey};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::assemble::StartError;
use crate::client::PeerClient;
use crate::config::{Config, MemberAnchor, StateStore};
use crate::metrics::Labels;
use crate::tls::{self, ClientAuth, FederationTrust};
use limits::rate::{LocalLimits, RateLimits};

pub use contracts::envelope::MANIFEST_SERIAL_HEADER;

/// Everything one exchange needs of the manifest, the CRLs and the gateway's own keys.
pub(crate) struct Snapshot {
    /// The manifest.
    pub(crate) manifest: Manifest,
    /// The key this gateway signs requests, answers (and, through the audit log, tree
    /// heads) with: one the manifest lists under this member.
    pub(crate) signing: Arc<SigningKey>,
    /// The manifest's CAs and the CRLs.
    pub(crate) trust: FederationTrust,
    /// The federation listener's TLS configuration.
    pub(crate) tls: Arc<ServerConfig>,
    /// The local and admin listeners' TLS configuration (the member's own anchor), when
    /// either is configured.
    pub(crate) member_tls: Option<Arc<ServerConfig>>,
    /// A client per member of the manifest.
    pub(crate) peers: HashMap<MemberId, PeerClient>,
    /// The provider's rate limiter, at the manifest's rates. A new snapshot whose manifest
    /// sets the same rates keeps the limiter, and with it what it has counted.
    pub(crate) rates: Arc<RateLimits>,
    rate_table: Vec<(ContractRef, Rate)>,
    /// This gateway's TLS certificate chain and key.
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: Arc<PrivateKeyDer<'static>>,
}

impl Snapshot {
    /// The held manifest's serial.
    pub(crate) fn serial(&self) -> u64 {
        self.manifest.doc().serial
    }

    /// Whether the held manifest has expired at `now` (Unix seconds): every exchange is
    /// then refused with 503 `manifest-expired` until a current one is adopted.
    pub(crate) fn expired(&self, now: i64) -> bool {
        self.manifest.doc().expires_at <= now
    }

    /// The refusal of an exchange while the held manifest has expired.
    pub(crate) fn expired_problem(&self) -> contracts::Problem {
        let doc = self.manifest.doc();
        contracts::Problem::new(
            contracts::ProblemCode::ManifestExpired,
            format!(
                "this gateway's manifest (serial {}) expired at {} (Unix time): no exchange \
                 until the authority's next manifest is adopted",
                doc.serial, doc.expires_at
            ),
        )
    }
}

/// The pointer to the current snapshot.
pub(crate) struct Current(RwLock<Arc<Snapshot>>);

impl Current {
    pub(crate) fn new(snapshot: Snapshot) -> Self {
        Current(RwLock::new(Arc::new(snapshot)))
    }

    /// The current snapshot: held by the caller for as long as it needs it.
    pub(crate) fn load(&self) -> Arc<Snapshot> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Makes `snapshot` the current one; holders of the previous one keep it.
    pub(crate) fn store(&self, snapshot: Arc<Snapshot>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = snapshot;
    }
}

/// Where a gateway's snapshot comes from, fixed at start-up from the configuration.
pub(crate) struct Sources {
    pub(crate) member: MemberId,
    pub(crate) federation: String,
    /// The manifest file, and the URL it is fetched from instead, if configured.
    pub(crate) manifest: PathBuf,
    pub(crate) manifest_url: Option<String>,
    /// The CRL file, and the URL it is fetched from instead, if configured.
    pub(crate) crl: PathBuf,
    pub(crate) crl_url: Option<String>,
    /// The pinned authority key.
    pub(crate) authority: VerifyingKey,
    /// `<manifest>.<member>.serial`: the held serial beside the manifest.
    pub(crate) serial_file: PathBuf,
    /// Where the signing key lives: its file, or a PKCS#11 token.
    pub(crate) signing: crate::hsm::SigningConfig,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) anchor: Option<MemberAnchor>,
    pub(crate) client_auth: ClientAuth,
    /// The contracts this gateway is configured to provide.
    pub(crate) provides: Vec<ContractRef>,
    pub(crate) rate_store: StateStore,
    /// The configuration file's name, for messages.
    pub(crate) config_source: String,
    pub(crate) refresh: Duration,
    pub(crate) expiry_warning: Duration,
}

impl Sources {
    pub(crate) fn new(
        config: &Config,
        member: &MemberId,
        client_auth: ClientAuth,
    ) -> Result<Self, StartError> {
        let mc = config
            .member(member)
            .ok_or_else(|| StartError::UnknownMember(member.clone()))?;
        let f = &config.federation;
        let layout = &f.pki;
        Ok(Sources {
            member: member.clone(),
            federation: f.id.clone(),
            manifest: f.manifest.clone(),
            manifest_url: f.manifest_url.clone(),
            crl: f.crl.clone(),
            crl_url: f.crl_url.clone(),
            authority: crate::assemble::load_authority_key(&f.authority_key)?,
            serial_file: serial_file(&f.manifest, member),
            signing: mc.signing.clone(),
            cert: layout.gateway_cert(member),
            key: layout.gateway_key(member),
            anchor: mc.local.as_ref().map(|l| l.anchor.clone()),
            client_auth,
            provides: (mc.provides.iter().map(|p| p.contract.clone()))
                .chain(mc.events.iter().map(|e| e.contract.clone()))
                .collect(),
            rate_store: mc.rates.clone(),
            config_source: config.source.clone(),
            refresh: f.refresh,
            expiry_warning: f.expiry_warning,
        })
    }
}

/// `<manifest>.<member>.serial`.
pub(crate) fn serial_file(manifest: &Path, member: &MemberId) -> PathBuf {
    manifest.with_extension(format!("{}.serial", member.file_stem()))
}

/// Reads the held serial file: `None` when there is none. A file that does not read as a
/// serial is refused, never taken as 0.
pub(crate) fn read_serial_file(path: &Path) -> Result<Option<u64>, StartError> {
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StartError::File {
            path: path.to_owned(),
            reason: format!("cannot read the held manifest serial: {e}"),
        }),
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| StartError::File {
                path: path.to_owned(),
                reason: "not a manifest serial: restore it (or remove it: the serial the audit \
                         store holds stays the bar)"
                    .into(),
            }),
    }
}

/// Writes the held serial file, aside and renamed, so a crash leaves the old serial or the
/// new one.
pub(crate) fn write_serial_file(path: &Path, serial: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("serial.tmp");
    std::fs::write(&tmp, serial.to_string()).and_then(|()| std::fs::rename(&tmp, path))
}

/// The gateway's own key material, as read from its files.
pub(crate) struct OwnKeys {
    pub(crate) signing: Arc<SigningKey>,
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

/// Reads the signing key where the configuration places it: its file (refusing one its
/// group or others can reach), or the key pair in a PKCS#11 token.
pub(crate) fn read_signing_key(src: &Sources) -> Result<SigningKey, StartError> {
    crate::hsm::member_signing_key(&src.signing, &src.member).map(|(key, _)| key)
}

/// Reads the gateway's TLS certificate chain and key, and checks the certificate names
/// this member.
pub(crate) fn read_tls_identity(
    src: &Sources,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), StartError> {
    let chain = tls::load_certs(&src.cert)?;
    crate::assemble::read_private(&src.key)?;
    let key = tls::load_key(&src.key)?;
    let named = chain.first().and_then(tls::identity);
    if named.as_ref() != Some(&src.member) {
        return Err(StartError::Inconsistent(format!(
            "{}: the certificate names {}, not {}",
            src.cert.display(),
            named.map_or_else(
                || "no single Simpul identity".to_owned(),
                |id| id.to_string()
            ),
            src.member
        )));
    }
    Ok((chain, key))
}

/// Builds a snapshot from a verified manifest, the CRLs checked against its CAs and the
/// gateway's own keys, checking that they fit together and fit the configuration: the
/// manifest is this federation's, lists this member with `signing` among its keys, pins the
/// catalog's digests and lists every contract configured here as this member's; the TLS
/// certificate is not refused by the CAs and CRLs. `prior`'s rate limiter is kept when the
/// rates are the same.
pub(crate) fn build(
    src: &Sources,
    catalog: &BTreeMap<ContractRef, Contract>,
    labels: &Labels,
    manifest: Manifest,
    trust: FederationTrust,
    own: OwnKeys,
    prior: Option<&Snapshot>,
) -> Result<Snapshot, StartError> {
    check_fit(src, catalog, &manifest, own.signing.kid())?;
    let member = &src.member;
    refuse_a_revoked_self(&trust, &own.chain, &src.cert, &src.crl)?;
    let tls = tls::server_config(
        &trust,
        own.chain.clone(),
        own.key.clone_key(),
        src.client_auth,
    )?;
    // The member's own listeners trust the member's anchor, never the federation CA.
    let member_tls = match &src.anchor {
        Some(anchor) => Some(crate::anchor::server_config(
            anchor,
            own.chain.clone(),
            own.key.clone_key(),
        )?),
        None => None,
    };
    let mut peers = HashMap::new();
    for m in &manifest.doc().members {
        let client = PeerClient::new(
            &trust,
            own.chain.clone(),
            own.key.clone_key(),
            m.id.clone(),
            MAX_ANSWER_BYTES,
        )?;
        peers.insert(m.id.clone(), client);
    }
    let rate_table: Vec<(ContractRef, Rate)> = manifest
        .provided_by(member)
        .map(|c| (ContractRef::new(&c.id, &c.version), c.rate.clone()))
        .collect();
    let rates = match prior {
        Some(p) if p.rate_table == rate_table => p.rates.clone(),
        _ => Arc::new(rate_limits(src, labels, &rate_table)?),
    };
    Ok(Snapshot {
        manifest,
        signing: own.signing,
        trust,
        tls,
        member_tls,
        peers,
        rates,
        rate_table,
        chain: own.chain,
        key: Arc::new(own.key),
    })
}

/// Checks that a verified manifest fits this gateway: it is this federation's, lists this
/// member with the key `signing_kid` among its keys and inside its window now, pins the
/// catalog's digests, and lists every contract configured here as this member's. What
/// [`build`] checks of a manifest, for `simpul doctor` too.
pub(crate) fn check_fit(
    src: &Sources,
    catalog: &BTreeMap<ContractRef, Contract>,
    manifest: &Manifest,
    signing_kid: &str,
) -> Result<(), StartError> {
    let member = &src.member;
    let serial = manifest.doc().serial;
    if manifest.doc().federation != src.federation {
        return Err(StartError::Inconsistent(format!(
            "the manifest (serial {serial}) is federation `{}`'s, this gateway is in `{}`",
            manifest.doc().federation,
            src.federation
        )));
    }
    if manifest.member(member).is_none() {
        return Err(StartError::Inconsistent(format!(
            "{member} is not in the manifest (serial {serial}): sign a new one with `simpul manifest sign`"
        )));
    }
    // Listed under this member, and inside its validity window now.
    match manifest.key_at(signing_kid, contracts::unix_now()) {
        Ok((owner, _)) if owner == member => {}
        Ok(_) => {
            return Err(StartError::Inconsistent(format!(
                "the signing key {} ({}) is not among {member}'s keys in the manifest (serial {serial}): sign a new manifest",
                signing_kid, src.signing
            )));
        }
        Err(refused) => {
            return Err(StartError::Inconsistent(format!(
                "the signing key {} ({}) is not among {member}'s keys in the manifest (serial {serial}), or may not sign now ({refused}): sign a new manifest",
                signing_kid, src.signing
            )));
        }
    }
    // Every contract the manifest pins must match the catalog's document exactly.
    for c in &manifest.doc().contracts {
        let r = ContractRef::new(&c.id, &c.version);
        if let Some(doc) = catalog.get(&r)
            && doc.digest() != c.digest
        {
            return Err(StartError::Inconsistent(format!(
                "contract {r}: the catalog's document has digest {}, the manifest (serial {serial}) pins {}: \
                 the document changed without a new manifest",
                doc.digest(),
                c.digest
            )));
        }
    }
    for r in &src.provides {
        match manifest.contract(r) {
            Some(c) if &c.provider == member => {}
            _ => {
                return Err(StartError::Inconsistent(format!(
                    "{member} is configured to provide {r} but the manifest (serial {serial}) does not list it as {member}'s"
                )));
            }
        }
    }
    Ok(())
}

fn rate_limits(
    src: &Sources,
    labels: &Labels,
    rates: &[(ContractRef, Rate)],
) -> Result<RateLimits, StartError> {
    Ok(match &src.rate_store {
        StateStore::Local => RateLimits::Local(LocalLimits::new(rates)),
        StateStore::Redis { url, prefix } => {
            let url = redis_url(url, &src.config_source)?;
            let backend_errors = metrics::counter!("simpul_rate_backend_errors_total", "member" => labels.member.clone(), "instance" => labels.instance.clone());
            RateLimits::redis(&url, prefix, &src.member, rates, backend_errors).map_err(|e| {
                StartError::Inconsistent(format!("{}: limits.{e}", src.config_source))
            })?
        }
    })
}

/// `limits.redis_url` as configured, or read from the environment variable `env:VAR` names;
/// `source` is the configuration file, for the message.
pub(crate) fn redis_url(url: &str, source: &impl std::fmt::Display) -> Result<String, StartError> {
    match url.strip_prefix("env:") {
        Some(var) => std::env::var(var).map_err(|_| {
            StartError::Inconsistent(format!(
                "{source}: limits.redis_url: environment variable {var} is not set"
            ))
        }),
        None => Ok(url.to_owned()),
    }
}

/// A gateway whose own certificate its CRLs revoke (or that has expired, or that no manifest
/// CA issued) would be refused by every peer: it stops at start-up instead (and keeps its
/// previous certificate at a refresh), saying so.
fn refuse_a_revoked_self(
    trust: &FederationTrust,
    chain: &[CertificateDer<'static>],
    cert_path: &Path,
    crl_path: &Path,
) -> Result<(), StartError> {
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return Ok(());
    };
    if let Err(e) = tls::check_client_certificate(trust, end_entity, intermediates) {
        return Err(StartError::Inconsistent(format!(
            "{}: this gateway's certificate is refused by the federation's CAs and CRLs ({}): {e}; \
             a revoked or expired certificate needs a new one (`simpul pki renew --member`)",
            cert_path.display(),
            crl_path.display()
        )));
    }
    Ok(())
}
