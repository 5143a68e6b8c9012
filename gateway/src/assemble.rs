//! Assembling one member's gateway from its validated configuration, checked once at
//! start-up: its manifest verified against the pinned authority key (and against rollback),
//! its keys, certificates and the CRLs of their CAs loaded, its contracts' digests matched
//! against the manifest, its adapters taken from the configuration, its limits built.
//! Nothing here is checked again per request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use contracts::envelope::MAX_ANSWER_BYTES;
use contracts::manifest::Rate;
use contracts::{
    Algorithm, ContractRef, Manifest, ManifestError, MemberId, SigningKey, VerifyingKey,
};

use crate::client::PeerClient;
use crate::config::{Config, ConfigError, Member, RateStore};
use crate::fault::{self, Check};
use crate::metrics::{ContractCounters, Labels};
use crate::tls::{self, ClientAuth, TlsError};
use audit_store::AuditLog;
use limits::breaker::Breaker;
use limits::bulkhead::Bulkhead;
use limits::cache::ResponseCache;
use limits::rate::{LocalLimits, RateLimits};
use limits::replay::ReplayWindow;

use crate::admission::Admission;
use crate::audit_size::AuditSize;
use crate::gateway::{ConsumerState, Gateway, Provided, ProviderBreaker, ProviderState};
use crate::refusals::PreAuthRefusals;
use crate::witness::Witness;

/// How long an exchange id is remembered: a request is acceptable while `iat` is within the
/// clock skew of now, on either side, so one id can be presented for twice the skew.
pub(crate) const REPLAY_WINDOW: Duration =
    Duration::from_secs(2 * contracts::envelope::CLOCK_SKEW_S as u64);

/// Why a gateway refused to start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The member is not in the configuration.
    #[error("{0} is not a member in the configuration")]
    UnknownMember(MemberId),
    /// A file could not be read.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The manifest was refused.
    #[error("{path}: {source}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// Why.
        source: ManifestError,
    },
    /// The manifest and the local configuration disagree.
    #[error("{0}")]
    Inconsistent(String),
    /// TLS material could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The configuration asks for something the manifest does not allow.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The HMAC secret of `subject` used to be kept beside the audit store; it is now kept
/// with the member's keys. A gateway that finds the old file and not the new one stops
/// rather than make a new secret, under which no earlier subject would match.
fn refuse_a_moved_secret(mc: &Member, base_dir: &Path) -> Result<(), StartError> {
    let (Some(now), Some(before)) = (
        mc.audit.secret_file.as_ref().map(|p| base_dir.join(p)),
        mc.audit.secret_beside_store(&mc.id, base_dir),
    ) else {
        return Ok(());
    };
    if now != before && before.is_file() && !now.exists() {
        return Err(StartError::Inconsistent(format!(
            "the audit subject secret is now kept with the member's keys: move {} to {} \
             (or set audit.secret_file to where it is)",
            before.display(),
            now.display()
        )));
    }
    Ok(())
}

/// A gateway whose own certificate its CRLs revoke (or that has expired, or that no manifest
/// CA issued) would be refused by every peer: it stops at start-up instead, saying so.
fn refuse_a_revoked_self(
    trust: &tls::FederationTrust,
    chain: &[rustls::pki_types::CertificateDer<'static>],
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

/// Reads a private key file, refusing one its group or others can reach.
fn read_private(path: &Path) -> Result<Vec<u8>, StartError> {
    contracts::keyfile::check_private(path).map_err(|reason| StartError::File {
        path: path.to_owned(),
        reason,
    })?;
    read(path)
}

fn read(path: &Path) -> Result<Vec<u8>, StartError> {
    std::fs::read(path).map_err(|e| StartError::File {
        path: path.to_owned(),
        reason: format!("cannot read: {e}"),
    })
}

/// Reads the pinned authority key (a public JWK file).
pub fn load_authority_key(path: &Path) -> Result<VerifyingKey, StartError> {
    let bytes = read(path)?;
    let jwk: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| StartError::File {
        path: path.to_owned(),
        reason: format!("not a JWK: {e}"),
    })?;
    VerifyingKey::from_jwk(&jwk).map_err(|e| StartError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Reads and verifies the manifest file against the pinned key, refusing one older than the
/// serial this member last accepted (kept in `<manifest>.<member>.serial`), and records its
/// serial.
pub(crate) fn load_manifest(config: &Config, member: &MemberId) -> Result<Manifest, StartError> {
    let path = config.federation.manifest.clone();
    let authority = load_authority_key(&config.federation.authority_key)?;
    let text = String::from_utf8(read(&path)?).map_err(|_| StartError::File {
        path: path.clone(),
        reason: "not UTF-8".into(),
    })?;
    let manifest =
        Manifest::verify(&text, &authority, contracts::unix_now()).map_err(|source| {
            StartError::Manifest {
                path: path.clone(),
                source,
            }
        })?;
    let serial_file = path.with_extension(format!("{}.serial", member.file_stem()));
    // No file: nothing held yet. A file that does not read as a serial is refused, never
    // taken as 0, which would silently switch rollback protection off.
    let held = match std::fs::read_to_string(&serial_file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            return Err(StartError::File {
                path: serial_file,
                reason: format!("cannot read the held manifest serial: {e}"),
            });
        }
        Ok(text) => text.trim().parse::<u64>().map_err(|_| StartError::File {
            path: serial_file.clone(),
            reason: "not a manifest serial: restore it, or remove it to accept any serial".into(),
        })?,
    };
    manifest
        .check_not_older_than(held)
        .map_err(|source| StartError::Manifest {
            path: path.clone(),
            source,
        })?;
    if manifest.doc().serial > held {
        // Written aside and renamed, so a crash leaves the old serial or the new one.
        let tmp = serial_file.with_extension("serial.tmp");
        std::fs::write(&tmp, manifest.doc().serial.to_string())
            .and_then(|()| std::fs::rename(&tmp, &serial_file))
            .map_err(|e| StartError::File {
                path: serial_file,
                reason: format!("cannot record the manifest serial: {e}"),
            })?;
    }
    Ok(manifest)
}

impl Gateway {
    /// Assembles `member`'s gateway from the configuration and the manifest it names.
    pub async fn from_config(config: &Config, member: &MemberId) -> Result<Gateway, StartError> {
        if config.member(member).is_none() {
            return Err(StartError::UnknownMember(member.clone()));
        }
        let manifest = load_manifest(config, member)?;
        Self::with_manifest(config, member, manifest).await
    }

    /// Assembles `member`'s gateway with an already verified manifest.
    pub async fn with_manifest(
        config: &Config,
        member: &MemberId,
        manifest: Manifest,
    ) -> Result<Gateway, StartError> {
        let mc = config
            .member(member)
            .ok_or_else(|| StartError::UnknownMember(member.clone()))?;
        let layout = &config.federation.pki;
        let listed = manifest.member(member).ok_or_else(|| {
            StartError::Inconsistent(format!(
                "{member} is not in the manifest (serial {}): sign a new one with `simpul manifest sign`",
                manifest.doc().serial
            ))
        })?;

        let key_path = layout.signing_key(member);
        let signing =
            SigningKey::from_pem(Algorithm::ES256, member.as_str(), &read_private(&key_path)?)
                .map_err(|e| StartError::File {
                    path: key_path.clone(),
                    reason: e.to_string(),
                })?;
        if let Err(refused) = manifest.key_at(signing.kid(), contracts::unix_now()) {
            return Err(StartError::Inconsistent(format!(
                "the signing key {} ({}) is not among {member}'s keys in the manifest, or may not sign now ({refused}): sign a new manifest",
                signing.kid(),
                key_path.display()
            )));
        }

        // Every contract the manifest pins must match the catalog's document exactly.
        for c in &manifest.doc().contracts {
            let r = ContractRef::new(&c.id, &c.version);
            if let Some(doc) = config.catalog.get(&r)
                && doc.digest() != c.digest
            {
                return Err(StartError::Inconsistent(format!(
                    "contract {r}: the catalog's document has digest {}, the manifest pins {}: \
                     the document changed without a new manifest",
                    doc.digest(),
                    c.digest
                )));
            }
        }

        // Counters are registered once below, so the recorder must be in place first.
        crate::metrics::install();
        let labels = Labels {
            member: member.to_string(),
            instance: mc.listen.to_string(),
        };
        let mut provided: HashMap<ContractRef, Provided> = HashMap::new();
        for p in &mc.provides {
            let r = p.contract.clone();
            match manifest.contract(&r) {
                Some(c) if &c.provider == member => {}
                _ => {
                    return Err(StartError::Inconsistent(format!(
                        "{member} is configured to provide {r} but the manifest does not list it as {member}'s"
                    )));
                }
            }
            let cache_ttl = config
                .catalog
                .get(&r)
                .and_then(|c| c.doc().cache.as_ref())
                .map(|c| Duration::from_secs(c.ttl_s))
                .filter(|ttl| !ttl.is_zero());
            provided.insert(
                r.clone(),
                Provided {
                    // Built once, when the configuration was validated.
                    adapter: p.adapter.clone(),
                    bulkhead: Bulkhead::new(p.concurrency, p.queue),
                    cache_ttl,
                    counters: ContractCounters::new(&labels, &r),
                    reference: Arc::new(r),
                },
            );
        }

        // The manifest's CAs and their CRLs, read once: a revoked gateway is refused on the
        // federation listener and as a provider.
        let trust = tls::FederationTrust::load(&manifest.doc().ca, &config.federation.crl)?;
        let chain = tls::load_certs(&layout.gateway_cert(member))?;
        read_private(&layout.gateway_key(member))?;
        let key = tls::load_key(&layout.gateway_key(member))?;
        let chain_identity = chain.first().and_then(tls::identity);
        if chain_identity.as_ref() != Some(member) {
            return Err(StartError::Inconsistent(format!(
                "{}: the certificate names {}, not {member}",
                layout.gateway_cert(member).display(),
                chain_identity.map_or_else(
                    || "no single Simpul identity".to_owned(),
                    |id| id.to_string()
                )
            )));
        }
        let client_auth = if fault::off(Check::ClientCertificate) {
            ClientAuth::AllowUnauthenticated
        } else {
            ClientAuth::Required
        };
        refuse_a_revoked_self(
            &trust,
            &chain,
            &layout.gateway_cert(member),
            &config.federation.crl,
        )?;
        let tls = tls::server_config(&trust, chain.clone(), key.clone_key(), client_auth)?;
        // The member's own listeners trust the member's anchor, never the federation CA.
        let member_tls = match &mc.local {
            Some(local) => Some(crate::anchor::server_config(
                &local.anchor,
                chain.clone(),
                key.clone_key(),
            )?),
            None => None,
        };
        // A subsystem may ask only what its member may ask: checked once, here.
        crate::config::check_subsystem_grants(config, member, |r, purpose| {
            Some(
                manifest
                    .contract(r)
                    .is_some_and(|c| manifest.authorize(c, member, purpose).is_ok()),
            )
        })?;

        let mut peers = HashMap::new();
        for m in &manifest.doc().members {
            let client = PeerClient::new(
                &trust,
                chain.clone(),
                key.clone_key(),
                m.id.clone(),
                MAX_ANSWER_BYTES,
            )?;
            peers.insert(m.id.clone(), client);
        }
        tracing::debug!(member = %member, gateway = %listed.gateway, "gateway assembled");

        let rates: Vec<(ContractRef, Rate)> = manifest
            .provided_by(member)
            .map(|c| (ContractRef::new(&c.id, &c.version), c.rate.clone()))
            .collect();
        let rates = match &mc.rates {
            RateStore::Local => RateLimits::Local(LocalLimits::new(&rates)),
            RateStore::Redis { url, prefix } => {
                let url = match url.strip_prefix("env:") {
                    Some(var) => std::env::var(var).map_err(|_| {
                        StartError::Inconsistent(format!(
                            "{}: limits.redis_url: environment variable {var} is not set",
                            config.source
                        ))
                    })?,
                    None => url.to_owned(),
                };
                let backend_errors = metrics::counter!("simpul_rate_backend_errors_total", "member" => labels.member.clone(), "instance" => labels.instance.clone());
                RateLimits::redis(&url, prefix, member, &rates, backend_errors).map_err(|e| {
                    StartError::Inconsistent(format!("{}: limits.{e}", config.source))
                })?
            }
        };

        let breakers = manifest
            .doc()
            .members
            .iter()
            .map(|m| {
                let labels = |name: &'static str| {
                    (
                        name,
                        [
                            ("member", labels.member.clone()),
                            ("instance", labels.instance.clone()),
                            ("provider", m.id.to_string()),
                        ],
                    )
                };
                let (state, state_labels) = labels("simpul_breaker_state");
                let (fail_fast, fail_fast_labels) = labels("simpul_breaker_fail_fast_total");
                (
                    m.id.clone(),
                    ProviderBreaker {
                        breaker: Breaker::new(mc.breaker.failures, mc.breaker.cooldown),
                        state: metrics::gauge!(state, &state_labels),
                        fail_fast: metrics::counter!(fail_fast, &fail_fast_labels),
                    },
                )
            })
            .collect();
        let audit_key =
            SigningKey::from_pem(Algorithm::ES256, member.as_str(), signing.private_pem())
                .map_err(|e| StartError::File {
                    path: key_path.clone(),
                    reason: e.to_string(),
                })?;
        refuse_a_moved_secret(mc, &config.base_dir)?;
        let audit = AuditLog::open(&mc.audit, &config.base_dir, member, Arc::new(audit_key))
            .await
            .map_err(|e| StartError::Inconsistent(format!("audit log: {e}")))?;
        // Every exchange carries a signed head of this log (PROTOCOL.md §5.4): one from the
        // first exchange on.
        if audit.newest_head_jws().is_none() {
            audit
                .sign_tree_head()
                .await
                .map_err(|e| StartError::Inconsistent(format!("audit log: {e}")))?;
        }
        let witness = Witness::open(
            audit.clone(),
            &manifest,
            mc.audit.refuse_forked_partners,
            &labels,
        )
        .await
        .map_err(|e| StartError::Inconsistent(format!("audit log: {e}")))?;
        let provider = ProviderState {
            provided,
            replay: ReplayWindow::new(REPLAY_WINDOW, mc.replay_capacity),
            rates,
            cache: ResponseCache::new(
                mc.cache.max_entries,
                mc.cache.max_bytes,
                metrics::counter!("simpul_cache_evictions_total", "member" => labels.member.clone(), "instance" => labels.instance.clone()),
            ),
            admission: Admission::new(&mc.admission),
            refusals: PreAuthRefusals::new(
                member,
                metrics::counter!("simpul_preauth_refusals_dropped_total", "member" => labels.member.clone(), "instance" => labels.instance.clone()),
            ),
        };
        let consumer = ConsumerState {
            breakers,
            federated: mc
                .federated
                .iter()
                .map(|f| (f.reference.clone(), f.clone()))
                .collect(),
            grants: crate::consumer::grants::SubsystemGrants::new(&mc.subsystems),
            peers,
            query_deadline: mc.query_deadline,
        };
        Ok(Gateway {
            audit_size: AuditSize::new(&labels, mc.audit.size_alarm_bytes),
            audit,
            witness,
            labels,
            admin: mc.admin.clone(),
            local_listen: mc.local.as_ref().map(|l| l.listen),
            member_tls,
            connections: mc.connections,
            member: member.clone(),
            listen: mc.listen,
            manifest,
            signing,
            catalog: Arc::new(config.catalog.clone()),
            tls,
            provider,
            consumer,
        })
    }
}
