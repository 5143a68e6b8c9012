//! One member's running gateway: the state the request path touches, split by side —
//! [`ProviderState`] for answering, [`ConsumerState`] for asking — beside the audit log and
//! the pointer to the current trust snapshot (the manifest, the CRLs, its own keys and what
//! is built from them: [`crate::snapshot`]). Building it is [`crate::assemble`]; replacing
//! the snapshot at run time is [`crate::refresh`].

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use adapters::Adapter;
use contracts::{Contract, ContractRef, Manifest, MemberId};

use crate::admission::Admission;
use crate::audit_size::AuditSize;
use crate::config::{AdminConfig, BreakerConfig, ConnectionBounds, FederatedContract};
use crate::consumer::grants::SubsystemGrants;
use crate::metrics::{ContractCounters, Labels};
use crate::refusals::PreAuthRefusals;
use audit_store::AuditLog;
use limits::breaker::Breaker;
use limits::bulkhead::Bulkhead;
use limits::cache::ResponseCache;
use limits::replay::Replay;

/// A contract this gateway provides, with what answers it and what guards it.
pub(crate) struct Provided {
    /// The adapter.
    pub adapter: Arc<dyn Adapter>,
    /// Its concurrency cap.
    pub bulkhead: Bulkhead,
    /// How long answers may be cached; `None` when the contract allows no caching.
    pub cache_ttl: Option<Duration>,
    /// Id and version, shared by cache entries.
    pub reference: Arc<ContractRef>,
    /// Its counters.
    pub counters: ContractCounters,
}

/// The consumer's circuit breaker towards one provider, with its series registered once so
/// that asking allocates no metric labels.
pub(crate) struct ProviderBreaker {
    pub(crate) breaker: Breaker,
    pub(crate) state: metrics::Gauge,
    pub(crate) fail_fast: metrics::Counter,
}

/// One member's running gateway.
pub struct Gateway {
    /// The member this gateway speaks for.
    pub member: MemberId,
    /// Where it listens.
    pub listen: SocketAddr,
    /// The current trust snapshot: load it once per exchange ([`Gateway::snapshot`]).
    pub(crate) snapshot: crate::snapshot::Current,
    /// Where the next snapshot is read from.
    pub(crate) sources: crate::snapshot::Sources,
    /// Refreshing: one at a time, its series, the hints of newer manifests from peers.
    pub(crate) refresh: crate::refresh::Refresh,
    pub(crate) catalog: Arc<BTreeMap<ContractRef, Contract>>,
    pub(crate) labels: Arc<Labels>,
    /// The audit log both sides record to.
    pub(crate) audit: AuditLog,
    /// What it witnessed of its partners' logs.
    pub(crate) witness: crate::witness::Witness,
    /// Its store's size gauges and alarm.
    pub(crate) audit_size: AuditSize,
    /// The admin listener's address and allow-list, if configured.
    pub admin: Option<AdminConfig>,
    /// Where the local listener (the member's own systems) listens, if configured.
    pub local_listen: Option<std::net::SocketAddr>,
    /// The connections the member listener holds open at once.
    pub(crate) connections: ConnectionBounds,
    /// What only answering touches.
    pub(crate) provider: ProviderState,
    /// What only asking touches.
    pub(crate) consumer: ConsumerState,
    /// Change notifications: the outbox and its sender, the inbox and its webhooks.
    pub(crate) events: crate::events::Events,
}

/// The provider side's run-time state: the contracts it answers and the limits in front of
/// them. The pipeline's rules each take the part they need.
pub(crate) struct ProviderState {
    pub(crate) provided: HashMap<ContractRef, Provided>,
    pub(crate) replay: Replay,
    pub(crate) cache: ResponseCache,
    /// Requests admitted per peer identity and address, before their bodies are read.
    pub(crate) admission: Admission,
    /// Refusals before authentication, counted until their minute closes.
    pub(crate) refusals: PreAuthRefusals,
    /// Held by the overlap run being answered, until it is recorded.
    pub(crate) overlap_run: Arc<tokio::sync::Mutex<()>>,
}

/// The consumer side's run-time state: who may use the local face and what each may ask,
/// the federated contracts it defines, and a breaker per provider (the clients are in the
/// snapshot).
pub(crate) struct ConsumerState {
    pub(crate) breakers: Breakers,
    pub(crate) federated: HashMap<ContractRef, FederatedContract>,
    pub(crate) grants: SubsystemGrants,
    pub(crate) query_deadline: Duration,
    /// The member's own lists, by name, which its overlap runs send blinded.
    pub(crate) lists: HashMap<String, Arc<dyn Adapter>>,
}

/// A breaker per provider, kept across snapshots: a member that a new manifest adds gets
/// one when the manifest is adopted; a member it drops keeps its own (unused) one.
pub(crate) struct Breakers {
    config: BreakerConfig,
    labels: Labels,
    by_provider: RwLock<HashMap<MemberId, Arc<ProviderBreaker>>>,
}

impl Breakers {
    pub(crate) fn new(config: BreakerConfig, labels: &Labels) -> Self {
        Breakers {
            config,
            labels: labels.clone(),
            by_provider: RwLock::new(HashMap::new()),
        }
    }

    /// Adds a breaker for every member of `manifest` that has none yet.
    pub(crate) fn add_members(&self, manifest: &Manifest) {
        let mut map = self
            .by_provider
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for m in &manifest.doc().members {
            if map.contains_key(&m.id) {
                continue;
            }
            let labels = [
                ("member", self.labels.member.clone()),
                ("instance", self.labels.instance.clone()),
                ("provider", m.id.to_string().into()),
            ];
            map.insert(
                m.id.clone(),
                Arc::new(ProviderBreaker {
                    breaker: Breaker::new(self.config.failures, self.config.cooldown),
                    state: metrics::gauge!("simpul_breaker_state", &labels),
                    fail_fast: metrics::counter!("simpul_breaker_fail_fast_total", &labels),
                }),
            );
        }
    }

    /// The breaker towards `provider`, if it has one.
    pub(crate) fn get(&self, provider: &MemberId) -> Option<Arc<ProviderBreaker>> {
        self.by_provider
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(provider)
            .cloned()
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gateway({} at {})", self.member, self.listen)
    }
}

impl Gateway {
    /// The manifest this gateway holds now.
    pub fn manifest(&self) -> Manifest {
        self.snapshot.load().manifest.clone()
    }

    /// The current trust snapshot. An exchange loads it once, at its start, and uses that
    /// one to its end.
    pub(crate) fn snapshot(&self) -> Arc<crate::snapshot::Snapshot> {
        self.snapshot.load()
    }

    /// The key id this gateway signs with now.
    pub fn signing_kid(&self) -> String {
        self.snapshot.load().signing.kid().to_owned()
    }

    /// The most connections its listeners hold open at once: the member listener's bound,
    /// the local listener's (the same bound), and the admin listener's, if it has them.
    pub fn max_open_connections(&self) -> u64 {
        crate::descriptors::listener_connections(
            self.connections.max,
            self.local_listen.is_some(),
            self.admin.as_ref().map(|a| a.max_connections),
        )
    }
}
