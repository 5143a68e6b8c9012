//! One member's running gateway: the state the request path touches, split by side —
//! [`ProviderState`] for answering, [`ConsumerState`] for asking — beside the audit log, the
//! signing key and the manifest. Building it is [`crate::assemble`].

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use adapters::Adapter;
use contracts::{Contract, ContractRef, Manifest, MemberId, SigningKey};
use rustls::ServerConfig;

use crate::admission::Admission;
use crate::audit_size::AuditSize;
use crate::client::PeerClient;
use crate::config::{AdminConfig, ConnectionBounds, FederatedContract};
use crate::consumer::grants::SubsystemGrants;
use crate::metrics::{ContractCounters, Labels};
use crate::refusals::PreAuthRefusals;
use audit_store::AuditLog;
use limits::breaker::Breaker;
use limits::bulkhead::Bulkhead;
use limits::cache::ResponseCache;
use limits::rate::RateLimits;
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
    pub(crate) manifest: Manifest,
    pub(crate) signing: SigningKey,
    pub(crate) catalog: Arc<BTreeMap<ContractRef, Contract>>,
    pub(crate) labels: Labels,
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
    /// The TLS configuration of the local and admin listeners: client certificates from the
    /// member's own anchor only. Present whenever either listener is configured.
    pub(crate) member_tls: Option<Arc<ServerConfig>>,
    /// The connections the member listener holds open at once.
    pub(crate) connections: ConnectionBounds,
    pub(crate) tls: Arc<ServerConfig>,
    /// What only answering touches.
    pub(crate) provider: ProviderState,
    /// What only asking touches.
    pub(crate) consumer: ConsumerState,
}

/// The provider side's run-time state: the contracts it answers and the limits in front of
/// them. The pipeline's rules each take the part they need.
pub(crate) struct ProviderState {
    pub(crate) provided: HashMap<ContractRef, Provided>,
    pub(crate) replay: Replay,
    pub(crate) rates: RateLimits,
    pub(crate) cache: ResponseCache,
    /// Requests admitted per peer identity and address, before their bodies are read.
    pub(crate) admission: Admission,
    /// Refusals before authentication, counted until their minute closes.
    pub(crate) refusals: PreAuthRefusals,
}

/// The consumer side's run-time state: who may use the local face and what each may ask,
/// the federated contracts it defines, and a client and a breaker per provider.
pub(crate) struct ConsumerState {
    pub(crate) breakers: HashMap<MemberId, ProviderBreaker>,
    pub(crate) federated: HashMap<ContractRef, FederatedContract>,
    pub(crate) grants: SubsystemGrants,
    pub(crate) peers: HashMap<MemberId, PeerClient>,
    pub(crate) query_deadline: Duration,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gateway({} at {})", self.member, self.listen)
    }
}

impl Gateway {
    /// The manifest this gateway holds.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The most connections its listeners hold open at once: the member listener's bound,
    /// the local listener's (the same bound), and the admin listener's, if it has them.
    pub fn max_open_connections(&self) -> u64 {
        let admin = self.admin.as_ref().map_or(0, |a| a.max_connections);
        let local = self.local_listen.map_or(0, |_| self.connections.max);
        (self.connections.max as u64)
            .saturating_add(local as u64)
            .saturating_add(admin as u64)
    }
}
