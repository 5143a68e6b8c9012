//! Assembling one member's gateway from its validated configuration at start-up: its
//! manifest verified against the pinned authority key (and against rollback, the bar being
//! the highest serial held in the serial file and in the audit store), its keys,
//! certificates and the CRLs of their CAs loaded into its first trust snapshot
//! ([`crate::snapshot`]), its adapters taken from the configuration, its limits built.
//! Nothing here is checked again per request; a refresh ([`crate::refresh`]) builds the
//! next snapshot the same way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use contracts::{ContractRef, Manifest, ManifestError, MemberId, VerifyingKey};

use crate::config::{Config, ConfigError, Member, StateStore};
use crate::fault::{self, Check};
use crate::metrics::{ContractCounters, Labels};
use crate::refresh::Refresh;
use crate::snapshot::{OwnKeys, Sources};
use crate::tls::{self, ClientAuth, TlsError};
use audit_store::AuditLog;
use limits::bulkhead::Bulkhead;
use limits::cache::ResponseCache;
use limits::replay::{Replay, ReplayWindow};
use limits::replay_redis::RedisReplay;

use crate::admission::Admission;
use crate::audit_size::AuditSize;
use crate::gateway::{Breakers, ConsumerState, Gateway, Provided, ProviderState};
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
    /// The signing key in a PKCS#11 token cannot be used (module, token, PIN, key).
    #[error("signing key: {0}")]
    Hsm(crate::hsm::HsmError),
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

/// Reads a private key file, refusing one its group or others can reach.
pub(crate) fn read_private(path: &Path) -> Result<Vec<u8>, StartError> {
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
    let jwk = contracts::json::value_from_slice(&bytes).map_err(|e| StartError::File {
        path: path.to_owned(),
        reason: format!("not a JWK: {e}"),
    })?;
    VerifyingKey::from_jwk(&jwk).map_err(|e| StartError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Reads the manifest file and verifies it against the pinned key: signature, expiry,
/// consistency. Its serial is checked against the held one once the audit store is open.
pub(crate) fn read_manifest_file(src: &Sources) -> Result<Manifest, StartError> {
    let path = &src.manifest;
    let text = String::from_utf8(read(path)?).map_err(|_| StartError::File {
        path: path.clone(),
        reason: "not UTF-8".into(),
    })?;
    Manifest::verify(&text, &src.authority, contracts::unix_now()).map_err(|source| {
        StartError::Manifest {
            path: path.clone(),
            source,
        }
    })
}

/// The bar a manifest's serial must clear: the highest serial held in the serial file and
/// in the audit store. A missing file never lowers it; an unreadable one is refused.
pub(crate) async fn held_serial(src: &Sources, audit: &AuditLog) -> Result<u64, StartError> {
    let file = crate::snapshot::read_serial_file(&src.serial_file)?;
    let store = audit.held_manifest_serial().await.map_err(|e| {
        StartError::Inconsistent(format!("audit log: reading the held manifest serial: {e}"))
    })?;
    if file.is_none()
        && let Some(kept) = store
    {
        tracing::warn!(member = %src.member, file = %src.serial_file.display(), held = kept, "the held manifest serial file is missing: the audit store's serial is the bar");
    }
    Ok(file.unwrap_or(0).max(store.unwrap_or(0)))
}

/// Records `serial` as held, in the serial file and in the audit store. An error when
/// neither place could keep it.
pub(crate) async fn hold_serial(
    src: &Sources,
    audit: &AuditLog,
    serial: u64,
) -> Result<(), String> {
    let file = crate::snapshot::write_serial_file(&src.serial_file, serial).map_err(|e| {
        format!(
            "{}: cannot record the manifest serial: {e}",
            src.serial_file.display()
        )
    });
    let store = audit
        .hold_manifest_serial(serial, audit_store::now_ms())
        .await
        .map_err(|e| format!("audit log: cannot record the manifest serial: {e}"));
    match (file, store) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => {
            tracing::error!(member = %src.member, serial, error = %e, "the held manifest serial is kept in one place only");
            Ok(())
        }
        (Err(a), Err(b)) => Err(format!("{a}; {b}")),
    }
}

impl Gateway {
    /// Assembles `member`'s gateway from the configuration and the manifest it names.
    pub async fn from_config(config: &Config, member: &MemberId) -> Result<Gateway, StartError> {
        let mc = config
            .member(member)
            .ok_or_else(|| StartError::UnknownMember(member.clone()))?;
        let client_auth = if fault::off(Check::ClientCertificate) {
            ClientAuth::AllowUnauthenticated
        } else {
            ClientAuth::Required
        };
        let src = Sources::new(config, member, client_auth)?;
        let manifest = read_manifest_file(&src)?;
        // Counters are registered below, so the recorder must be in place first.
        crate::metrics::install();
        let labels = Labels::new(&member.to_string(), &mc.listen.to_string());

        // The manifest's CAs and their CRLs: a revoked gateway is refused on the federation
        // listener and as a provider.
        let trust = tls::FederationTrust::load(&manifest.doc().ca, &src.crl)?;
        let signing = crate::snapshot::read_signing_key(&src)?;
        let (chain, key) = crate::snapshot::read_tls_identity(&src)?;
        let catalog = Arc::new(config.catalog.clone());
        let snapshot = crate::snapshot::build(
            &src,
            &catalog,
            &labels,
            manifest,
            trust,
            OwnKeys {
                signing: Arc::new(signing),
                chain,
                key,
            },
            None,
        )?;
        let manifest = &snapshot.manifest;
        // A subsystem may ask only what its member may ask: checked here, and again (as a
        // warning) whenever a new manifest is adopted.
        crate::config::check_subsystem_grants(config, member, |r, purpose| {
            Some(
                manifest
                    .contract(r)
                    .is_some_and(|c| manifest.authorize(c, member, purpose).is_ok()),
            )
        })?;

        // A binding's `env:` secret is needed by the machine that serves it, and only there.
        let unset = mc
            .provides
            .iter()
            .find_map(|p| p.unresolved.as_ref())
            .or_else(|| {
                mc.events
                    .iter()
                    .find_map(|e| e.table.as_ref()?.unresolved.as_ref())
            });
        if let Some(unset) = unset {
            return Err(StartError::Config(ConfigError::clone(unset)));
        }
        let mut provided: HashMap<ContractRef, Provided> = HashMap::new();
        for p in &mc.provides {
            let r = p.contract.clone();
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
        tracing::debug!(member = %member, serial = manifest.doc().serial, "gateway assembled");

        let breakers = Breakers::new(mc.breaker, &labels);
        breakers.add_members(manifest);
        refuse_a_moved_secret(mc, &config.base_dir)?;
        let audit = AuditLog::open(
            &mc.audit,
            &config.base_dir,
            member,
            snapshot.signing.clone(),
        )
        .await
        .map_err(|e| StartError::Inconsistent(format!("audit log: {e}")))?;
        // The outbox and the inbox of change notifications, in the audit store's engine.
        let event_store =
            audit_store::events::EventStore::open(&mc.audit, &config.base_dir, member)
                .await
                .map_err(|e| StartError::Inconsistent(format!("event store: {e}")))?;
        let events = crate::events::Events::new(
            event_store,
            &mc.events,
            &mc.webhooks,
            mc.local.as_ref().and_then(|l| l.anchor.member_ca.clone()),
        );
        // No rollback: the bar is the highest serial held in the file and in the store.
        let held = held_serial(&src, &audit).await?;
        manifest
            .check_not_older_than(held)
            .map_err(|source| StartError::Manifest {
                path: src.manifest.clone(),
                source,
            })?;
        // Both places hold it from now on (the store never lowers what it holds).
        hold_serial(&src, &audit, manifest.doc().serial)
            .await
            .map_err(StartError::Inconsistent)?;
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
            manifest,
            mc.audit.refuse_forked_partners,
            &labels,
        )
        .await
        .map_err(|e| StartError::Inconsistent(format!("audit log: {e}")))?;
        let provider = ProviderState {
            provided,
            replay: match &mc.replay {
                StateStore::Local => {
                    Replay::Local(ReplayWindow::new(REPLAY_WINDOW, mc.replay_capacity))
                }
                StateStore::Redis { url, prefix } => {
                    let backend_errors = metrics::counter!("simpul_replay_backend_errors_total", "member" => labels.member.clone(), "instance" => labels.instance.clone());
                    Replay::Redis(Box::new(
                        RedisReplay::new(
                            &crate::snapshot::redis_url(url, &config.source)?,
                            prefix,
                            member,
                            mc.replay_capacity,
                            backend_errors,
                        )
                        .map_err(|e| {
                            StartError::Inconsistent(format!("{}: limits.{e}", config.source))
                        })?,
                    ))
                }
            },
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
            overlap_run: Arc::default(),
        };
        let consumer = ConsumerState {
            breakers,
            federated: mc
                .federated
                .iter()
                .map(|f| (f.reference.clone(), f.clone()))
                .collect(),
            grants: crate::consumer::grants::SubsystemGrants::new(&mc.subsystems),
            query_deadline: mc.query_deadline,
            lists: mc
                .lists
                .iter()
                .map(|l| (l.name.clone(), l.adapter.clone()))
                .collect(),
        };
        let refresh = Refresh::new(&labels);
        refresh.publish(&snapshot, &src);
        Ok(Gateway {
            audit_size: AuditSize::new(&labels, mc.audit.size_alarm_bytes),
            audit,
            witness,
            labels: Arc::new(labels),
            admin: mc.admin.clone(),
            local_listen: mc.local.as_ref().map(|l| l.listen),
            connections: mc.connections,
            member: member.clone(),
            listen: mc.listen,
            catalog,
            snapshot: crate::snapshot::Current::new(snapshot),
            sources: src,
            refresh,
            provider,
            consumer,
            events,
        })
    }
}
