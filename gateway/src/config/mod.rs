//! `config.toml`: the federation, its members, what each provides and how. Read in two
//! steps: [`raw`] mirrors the file as written, then [`resolve`] validates it once into the
//! typed values below: paths resolved against the file's directory, the gateway URL and the
//! rates with their defaults filled in, durations as durations, and one adapter built per
//! provided contract. A gateway that starts is a gateway that is configured right; a bad
//! file is refused with its path, the field at fault and the kind of rejection.

mod grants;
mod raw;
mod resolve;
mod signing;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use adapters::{Adapter, AdapterSpec};
use contracts::manifest::{Consumer, Rate};
use contracts::{Contract, ContractRef, MemberId, StaffId};
use serde::Deserialize;

pub use grants::check_subsystem_grants;

use crate::layout::PkiLayout;

/// A configuration file that cannot be used, with the file and the field at fault.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{path}: {field}: {reason}")]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// The field, as a TOML path (`members[1].listen`).
    pub field: String,
    /// What is wrong and, where it helps, what to do.
    pub reason: String,
    /// What kind of rejection it is.
    pub kind: Rejection,
}

/// The kinds of rejection a configuration meets; the error's `reason` says it for a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The file cannot be read.
    Unreadable,
    /// Not TOML, or not the shape of the file: a syntax error, an unknown field, a value
    /// of the wrong type.
    Syntax,
    /// The contract catalog cannot be read.
    Catalog,
    /// An id that must name a member (three parts), or a subsystem code that does not
    /// make a valid id.
    NotAMemberId,
    /// Something that must be given is not.
    Missing,
    /// The same member, contract, federated id or part name twice.
    Duplicate,
    /// A listen address another listener already has.
    AddressInUse,
    /// A gateway URL that is not `https://`.
    NotHttps,
    /// A number out of its range.
    OutOfRange,
    /// A contract that is not in the catalog.
    NotInCatalog,
    /// A contract whose document names another provider.
    WrongProvider,
    /// A consumer that is not a configured member.
    UnknownMember,
    /// A purpose the contract does not allow.
    UnknownPurpose,
    /// A backend binding the adapter refuses, or none, or two.
    Binding,
    /// A subsystem granted a contract or purpose its member is not granted (by the
    /// manifest, or by a provider in the same file).
    NotGranted,
    /// A pinned certificate fingerprint that is not `sha256:` and 64 hex digits.
    NotAFingerprint,
    /// A secret written into the file (a token PIN) instead of read from a file or the
    /// environment.
    InlineSecret,
    /// Two fields that exclude each other, both given.
    Conflict,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from (`<embedded>` for the built-in demo).
    pub source: String,
    /// The directory relative paths are resolved against.
    pub base_dir: PathBuf,
    /// `[federation]`.
    pub federation: Federation,
    /// `[data]`: the demo's synthetic data, kept as written; the demo reads and checks it
    /// (a running gateway never looks at it).
    pub data: Option<toml::Table>,
    /// `[[members]]`.
    pub members: Vec<Member>,
    /// The contract catalog, by id and version, read from `federation.catalog`.
    pub catalog: BTreeMap<ContractRef, Contract>,
}

/// `[federation]`, with its paths resolved.
#[derive(Clone, Debug)]
pub struct Federation {
    /// Federation instance, e.g. `ID`.
    pub id: String,
    /// The federation authority's id (a member id); its key signs the manifest.
    pub authority: MemberId,
    /// The PKI's files (`simpul pki init` writes them under `federation.certs`).
    pub pki: PkiLayout,
    /// The signed manifest file.
    pub manifest: PathBuf,
    /// The pinned public key of the authority (a JWK file): `federation.authority_key`, or
    /// the PKI's.
    pub authority_key: PathBuf,
    /// The certificate revocation lists of the manifest's CAs (PEM, one `X509 CRL` block per
    /// CA): `federation.crl`, or the PKI's (`<certs>/federation-crl.pem`). Loaded at start-up
    /// into the federation listener's client verifier and every peer client's server
    /// verifier.
    pub crl: PathBuf,
    /// Days a newly signed manifest is valid.
    pub manifest_validity_days: u32,
    /// The contract catalog directory the catalog was read from.
    pub catalog: PathBuf,
    /// Host names and addresses gateway certificates are issued for.
    pub hosts: Vec<String>,
    /// Where the authority publishes the signed manifest (`https://`), fetched on every
    /// refresh instead of re-reading [`Federation::manifest`]; `None`: the file is re-read.
    pub manifest_url: Option<String>,
    /// Where the authority publishes the CRLs (`https://`, the PEM file's bytes), fetched on
    /// every refresh instead of re-reading [`Federation::crl`]; `None`: the file is re-read.
    pub crl_url: Option<String>,
    /// How often a running gateway re-reads (or fetches) the manifest, the CRLs and its own
    /// keys (`federation.refresh_s`, default 300 s); SIGHUP does it at once.
    pub refresh: std::time::Duration,
    /// How long before the held manifest expires the gateway starts warning
    /// (`federation.expiry_warning_days`, default 7).
    pub expiry_warning: std::time::Duration,
}

/// `[[members]]`: one member and its gateway, with every default filled in.
#[derive(Clone, Debug)]
pub struct Member {
    /// Member id (three parts).
    pub id: MemberId,
    /// Human name.
    pub name: String,
    /// Where its gateway listens.
    pub listen: SocketAddr,
    /// Its gateway's `https://` URL in the manifest (`https://localhost:<port>` unless set).
    pub gateway: String,
    /// The local listener its own systems call, if any.
    pub local: Option<LocalConfig>,
    /// Its subsystems, each with what it may ask and at what rate.
    pub subsystems: Vec<Subsystem>,
    /// Deadline for a local query to a single contract.
    pub query_deadline: Duration,
    /// Demo only: the synthetic dataset `simpul up` seeds, and where. Kept as written; the
    /// demo reads and checks it (a running gateway never looks at it).
    pub seed: Option<toml::Table>,
    /// Exchange ids remembered per consumer within the replay window (about 48 bytes each);
    /// at the bound that consumer's new exchanges are refused with 503 until ids age out.
    pub replay_capacity: usize,
    /// Where rate-limit state lives.
    pub rates: StateStore,
    /// Where the replay window lives.
    pub replay: StateStore,
    /// How many connections the member listener holds open at once; the admin listener
    /// has its own total, [`AdminConfig::max_connections`], and the same per-address bound.
    pub connections: ConnectionBounds,
    /// Requests the exchange face admits per peer identity and per peer address, before
    /// their bodies are read.
    pub admission: AdmissionLimits,
    /// Response cache.
    pub cache: CacheConfig,
    /// Circuit breaker towards each provider.
    pub breaker: BreakerConfig,
    /// The admin listener, if any.
    pub admin: Option<AdminConfig>,
    /// The audit log (a SQLite file `data/audit-<member>.db` unless set).
    pub audit: audit_store::AuditConfig,
    /// Contracts it provides.
    pub provides: Vec<Provision>,
    /// Federated contracts it defines.
    pub federated: Vec<FederatedContract>,
    /// Its own lists, which its overlap runs send blinded (PROTOCOL.md §4.4).
    pub lists: Vec<OwnList>,
    /// The event contracts it emits (PROTOCOL.md §2.8).
    pub events: Vec<EventSource>,
    /// Where it hands the events it receives to its own systems.
    pub webhooks: Vec<Webhook>,
    /// Where its signing key lives: `<certs>/<member>/signing.key` unless `signing.pkcs11`
    /// names a PKCS#11 token.
    pub signing: crate::hsm::SigningConfig,
}

/// Where a limit's state lives: the rate limits' (`limits.rate_backend`) and the replay
/// window's (`limits.replay_backend`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateStore {
    /// In this process.
    Local,
    /// In Redis, shared by every replica of the member.
    Redis {
        /// `limits.redis_url`; `env:VAR` is read from the environment when the gateway
        /// starts (it is a secret of the running host, not of the file).
        url: String,
        /// Prefix of the keys (one Redis may serve several federations).
        prefix: String,
    },
}

/// How many connections one listener holds open at once (`limits.max_connections` and
/// `limits.max_connections_per_address`), and how many of them may be in a TLS handshake
/// past its ClientHello (`limits.max_handshakes`); each at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionBounds {
    /// In all.
    pub max: usize,
    /// From one peer address (an IPv6 peer counts by its /64 prefix).
    pub per_address: usize,
    /// TLS handshakes in flight past the ClientHello, in all.
    pub handshakes: usize,
}

/// The exchange face's admission limit (`limits.admission_per_peer` and
/// `limits.admission_per_address`): a GCRA each, `per_second` sustained and `burst` at once,
/// every value at least 1.
#[derive(Clone, Debug, PartialEq)]
pub struct AdmissionLimits {
    /// Per identity named by a client certificate (one quota for every certificate that
    /// names none).
    pub per_peer: Rate,
    /// Per peer address (an IPv6 peer counts by its /64 prefix).
    pub per_address: Rate,
}

/// `[members.cache]`: the provider's response cache.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Most entries held.
    pub max_entries: u64,
    /// Most bytes of results held.
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 100_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// `[members.breaker]`: the consumer's circuit breaker per provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open it.
    pub failures: u32,
    /// How long it stays open before one probe.
    pub cooldown: Duration,
}

/// `[members.admin]`: the admin listener (metrics, cache purge, the audit log), mutual TLS
/// against the member's own trust anchor ([`LocalConfig::anchor`]), for its operators and
/// auditors only.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// Where it listens.
    pub listen: SocketAddr,
    /// Operators (`operators = ["OPS"]` → `operator:<member>:OPS`): metrics and cache purges.
    pub operators: Vec<StaffId>,
    /// Auditors (`auditor:<member>:<name>`): tree heads, proofs, records and hashes.
    pub auditors: Vec<StaffId>,
    /// Those of `auditors` who may also read the evidence: the signed envelopes, which hold
    /// the queries' personal data. Each is on `auditors`.
    pub evidence_auditors: Vec<StaffId>,
    /// How many connections it holds open at once (at least 1); the per-address bound is
    /// the member listener's.
    pub max_connections: usize,
}

/// `[members.local]`: the listener the member's own systems call (the local face), apart
/// from the federation's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalConfig {
    /// Where it listens: an internal address.
    pub listen: SocketAddr,
    /// The only client certificates it (and the admin listener) accepts.
    pub anchor: MemberAnchor,
}

impl LocalConfig {
    /// The URL the member's systems call: `https://localhost:<port>` (the gateway's own
    /// certificate, which it presents here too, names the federation's hosts).
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.listen.port())
    }
}

/// A trust anchor the member controls: its own CA, certificates pinned by fingerprint, or
/// both. Never the federation CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAnchor {
    /// `member_ca`: a PEM file of the member's CA certificates, resolved against the file's
    /// directory.
    pub member_ca: Option<PathBuf>,
    /// `member_crl`: the member CA's certificate revocation list (PEM), loaded with the
    /// member CA; by default `member-crl.pem` beside `member_ca`. `None` without a member CA.
    pub member_crl: Option<PathBuf>,
    /// `pinned`: SHA-256 fingerprints of the DER of end-entity certificates accepted as they
    /// are.
    pub pinned: Vec<[u8; 32]>,
}

/// One of the member's information systems and what it may ask through the local face.
#[derive(Clone, Debug, PartialEq)]
pub struct Subsystem {
    /// Its full id (`ID:GOV:KEMLU:PEDULI-WNI`).
    pub id: MemberId,
    /// Its own rate on the local face, over every contract it asks: its `rate`, or the
    /// member's `limits.default_rate`.
    pub rate: Rate,
    /// The contracts (catalog or federated) and purposes it may ask; nothing else.
    pub grants: Vec<SubsystemGrant>,
}

/// One contract a subsystem may ask, for the purposes listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubsystemGrant {
    /// A catalog contract, or a federated contract this member defines.
    pub contract: ContractRef,
    /// The purposes.
    pub purposes: Vec<String>,
}

/// A contract a member provides: who may ask it, at what rate, and the adapter that answers.
#[derive(Clone, Debug)]
pub struct Provision {
    /// The contract, a catalog document this member provides.
    pub contract: ContractRef,
    /// Consumers and their purposes (written into the manifest).
    pub consumers: Vec<Consumer>,
    /// Per-consumer rate (written into the manifest): its own, or the member's
    /// `limits.default_rate`.
    pub rate: Rate,
    /// Exchanges the adapter answers at once; more wait (bulkhead).
    pub concurrency: usize,
    /// How long an exchange may wait for an adapter slot before 503.
    pub queue: Duration,
    /// The backend it is bound to, as configured.
    pub spec: AdapterSpec,
    /// The adapter built from `spec`, once, when the configuration was validated.
    pub adapter: Arc<dyn Adapter>,
    /// Why `adapter` could not be built when only an `env:` variable of the binding is not
    /// set: a secret of the machine that serves this member, which the configuration is
    /// read without (a command about another member, or about this member's PKI, needs
    /// none). `adapter` then answers nothing, and `Gateway::from_config` refuses to start
    /// this member with this error.
    pub unresolved: Option<Arc<ConfigError>>,
}

/// An event contract a member emits (`[[members.events]]`, PROTOCOL.md §2.8): an event
/// contract of the catalog that names it the provider.
#[derive(Clone, Debug)]
pub struct EventSource {
    /// The contract.
    pub contract: ContractRef,
    /// The members it is delivered to, each for its purposes (written into the manifest as
    /// the contract's consumers: the grant is the subscription).
    pub subscribers: Vec<Consumer>,
    /// The member's subsystems that may emit it through the local face.
    pub emitters: Vec<MemberId>,
    /// The manifest's rate for each subscriber: the member's `limits.default_rate`.
    pub rate: Rate,
    /// The change table the gateway reads and emits from (`sql`, with `rows = "changes"`),
    /// when there is one.
    pub table: Option<ChangeTable>,
}

/// The change table of an event contract (`[members.events.sql]`): an outbox the member's
/// system writes in the same transaction as each change, which the gateway reads after the
/// last row it emitted and emits row by row (docs/ADAPTERS.md).
#[derive(Clone, Debug)]
pub struct ChangeTable {
    /// The binding, as configured.
    pub spec: adapters::SqlSpec,
    /// The adapter built from `spec`, once, when the configuration was validated.
    pub adapter: Arc<dyn Adapter>,
    /// Why `adapter` could not be built when only an `env:` variable of the binding is not
    /// set, as [`Provision::unresolved`]: `Gateway::from_config` refuses to start this
    /// member with this error.
    pub unresolved: Option<Arc<ConfigError>>,
}

impl ChangeTable {
    /// Reads the change table through `spec` instead (the demo on a database server);
    /// relative paths in it resolve against `base_dir`.
    ///
    /// # Errors
    /// The adapter's refusal of `spec`, with the field at fault; the binding is unchanged.
    pub fn rebind(
        &mut self,
        spec: adapters::SqlSpec,
        base_dir: &Path,
    ) -> Result<(), adapters::AdapterConfigError> {
        self.adapter = adapters::build(&AdapterSpec::Sql(spec.clone()), base_dir)?;
        self.spec = spec;
        self.unresolved = None;
        Ok(())
    }
}

/// A webhook of the member's own systems (`[[members.webhooks]]`): the events of `contracts`
/// this gateway receives are posted to `url` one at a time, in the order received, signed
/// with the secret in `secret_file` (Standard Webhooks).
#[derive(Clone, Debug)]
pub struct Webhook {
    /// Its name: `[a-z0-9_-]`, 1 to 64 characters; where its position is kept.
    pub name: String,
    /// `http://` or `https://` (verified against the member's own CA).
    pub url: http::Uri,
    /// The `whsec_` secret, created (mode 0600) if missing.
    pub secret_file: PathBuf,
    /// The event contracts whose events it takes.
    pub contracts: Vec<ContractRef>,
    /// How long one post may take.
    pub timeout: Duration,
}

/// One of a member's own lists: an SQL binding with `rows = "list"` that its overlap runs
/// read, blind and send (docs/COUNTS.md).
#[derive(Clone, Debug)]
pub struct OwnList {
    /// The name a member system asks it by.
    pub name: String,
    /// The adapter that reads it.
    pub adapter: Arc<dyn Adapter>,
}

/// A federated contract, defined locally at one gateway: one query fanned out to several
/// contracts in parallel under one deadline.
#[derive(Clone, Debug)]
pub struct FederatedContract {
    /// Its id and version on the local face (no catalog contract has them).
    pub reference: ContractRef,
    /// What it is for.
    pub title: String,
    /// The purpose every part is asked for.
    pub purpose: String,
    /// One deadline for all parts.
    pub deadline: Duration,
    /// The parts: each a name in the answer and a catalog contract.
    pub parts: Vec<(String, ContractRef)>,
}

impl Provision {
    /// Binds the contract to `spec` instead (the demo on a database server); relative
    /// paths in it resolve against `base_dir`.
    ///
    /// # Errors
    /// The adapter's refusal of `spec`, with the field at fault; the binding is unchanged.
    pub fn rebind(
        &mut self,
        spec: AdapterSpec,
        base_dir: &Path,
    ) -> Result<(), adapters::AdapterConfigError> {
        self.adapter = adapters::build(&spec, base_dir)?;
        self.spec = spec;
        self.unresolved = None;
        Ok(())
    }
}

impl Config {
    /// Reads and validates a configuration file; relative paths resolve against its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            kind: Rejection::Unreadable,
            path: path.display().to_string(),
            field: "(file)".into(),
            reason: format!("cannot read: {e}"),
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Self::parse(&text, &path.display().to_string(), base)
    }

    /// Parses and validates configuration text from `source`, resolving paths against `base_dir`.
    pub fn parse(text: &str, source: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        Self::parse_with_fallback_catalog(text, source, base_dir, None)
    }

    /// [`Config::parse`], with `fallback` as the catalog when the configured catalog
    /// directory does not exist (the demo run outside a checkout, with the documents it
    /// embeds).
    pub fn parse_with_fallback_catalog(
        text: &str,
        source: &str,
        base_dir: &Path,
        fallback: Option<Vec<Contract>>,
    ) -> Result<Config, ConfigError> {
        resolve::resolve(text, source, base_dir, fallback)
    }

    /// A path from the configuration, resolved against its directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        self.base_dir.join(p)
    }

    /// A member's configuration.
    pub fn member(&self, id: &MemberId) -> Option<&Member> {
        self.members.iter().find(|m| &m.id == id)
    }

    /// What `member` provides of `contract`, if it does.
    pub fn provision(&self, member: &MemberId, contract: &ContractRef) -> Option<&Provision> {
        self.member(member)?
            .provides
            .iter()
            .find(|p| &p.contract == contract)
    }
}
