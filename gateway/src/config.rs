//! `config.toml`: the federation, its members, what each provides and how, parsed into
//! validated types at start-up. A gateway that starts is a gateway that is configured right;
//! a bad file is refused with its path and the field at fault.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use adapters::{Adapter, AdapterSpec, HttpSpec, SqlSpec};
use contracts::manifest::{Consumer, Rate};
use contracts::{Contract, ContractRef, MemberId};
use serde::Deserialize;

/// Where in the text a parse error is: its line, and that line's text.
fn locate(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return "(file)".into();
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    let shown: String = line.chars().take(60).collect();
    format!("line {line_no} (`{shown}`)")
}

/// A configuration file that cannot be used, with the file and the field at fault.
#[derive(Debug, thiserror::Error)]
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
}

/// `[federation]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// Federation instance, e.g. `ID`.
    pub id: String,
    /// The federation authority's id; its key signs the manifest.
    pub authority: MemberId,
    /// The directory of the PKI (`simpul pki init` writes it).
    #[serde(default = "default_certs")]
    pub certs: PathBuf,
    /// The signed manifest file.
    #[serde(default = "default_manifest")]
    pub manifest: PathBuf,
    /// The pinned public key of the authority (a JWK file); defaults to the PKI's.
    #[serde(default)]
    pub authority_key: Option<PathBuf>,
    /// Days a newly signed manifest is valid.
    #[serde(default = "default_validity")]
    pub manifest_validity_days: u32,
    /// The contract catalog directory.
    #[serde(default = "default_catalog")]
    pub catalog: PathBuf,
    /// Host names and addresses gateway certificates are issued for.
    #[serde(default = "default_hosts")]
    pub hosts: Vec<String>,
}

fn default_certs() -> PathBuf {
    "certs".into()
}
fn default_manifest() -> PathBuf {
    "data/manifest.jws".into()
}
fn default_validity() -> u32 {
    30
}
fn default_catalog() -> PathBuf {
    "contracts/catalog".into()
}
fn default_hosts() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}
fn default_deadline_ms() -> u64 {
    3_000
}
fn default_concurrency() -> usize {
    32
}
fn default_queue_ms() -> u64 {
    100
}

/// `[members.limits]`: the replay window and rate limits of a member's gateway.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Exchange ids remembered per consumer within the replay window (about 48 bytes each);
    /// at the bound that consumer's new exchanges are refused with 503 until ids age out.
    pub replay_capacity: usize,
    /// `local` (governor, per process) or `redis` (shared by replicas).
    pub rate_backend: RateBackend,
    /// The Redis URL when `rate_backend = "redis"`; `env:VAR` reads it from the environment.
    pub redis_url: Option<String>,
    /// Prefix of the rate keys in Redis (one Redis may serve several federations).
    pub redis_prefix: String,
    /// The rate of a provided contract whose `rate` is not set.
    pub default_rate: Rate,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            replay_capacity: 200_000,
            rate_backend: RateBackend::Local,
            redis_url: None,
            redis_prefix: "simpul".into(),
            default_rate: Rate {
                per_second: 50,
                burst: 100,
            },
        }
    }
}

/// Where rate-limit state lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateBackend {
    /// In this process.
    Local,
    /// In Redis, shared by every replica of the member.
    Redis,
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
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures that open it.
    pub failures: u32,
    /// How long it stays open before one probe, in milliseconds.
    pub cooldown_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            cooldown_ms: 10_000,
        }
    }
}

/// `[members.admin]`: the admin listener (metrics, cache purge), mutual TLS with its own
/// allow-list.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where it listens.
    pub listen: SocketAddr,
    /// Identities (from client certificates of the federation CA) allowed its operations:
    /// metrics and cache purges.
    pub clients: Vec<MemberId>,
    /// Identities allowed to read the audit log: tree heads, proofs, records, evidence.
    #[serde(default)]
    pub auditors: Vec<MemberId>,
}

/// A contract a member provides: who may ask it, at what rate, and the adapter that answers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provision {
    /// Contract id.
    pub contract: String,
    /// Version.
    pub version: String,
    /// Consumers and their purposes (written into the manifest).
    pub consumers: Vec<Consumer>,
    /// Per-consumer rate (written into the manifest); defaults to the member's
    /// `limits.default_rate`.
    #[serde(default)]
    pub rate: Option<Rate>,
    /// Exchanges the adapter answers at once; more wait (bulkhead).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How long an exchange may wait for an adapter slot before 503, in milliseconds.
    #[serde(default = "default_queue_ms")]
    pub queue_ms: u64,
    /// A SQL binding: SQLite, PostgreSQL or MySQL/MariaDB (one backend table per provision).
    #[serde(default)]
    pub sql: Option<SqlSpec>,
    /// A REST API binding (one backend table per provision).
    #[serde(default)]
    pub http: Option<HttpSpec>,
}

impl Provision {
    /// The one backend this provision is bound to: exactly one of `sql` and `http`.
    pub fn adapter_spec(&self) -> Result<AdapterSpec, (String, String)> {
        match (&self.sql, &self.http) {
            (Some(sql), None) => Ok(AdapterSpec::Sql(sql.clone())),
            (None, Some(http)) => Ok(AdapterSpec::Http(http.clone())),
            (Some(_), Some(_)) => Err((
                "http".into(),
                "bind the contract to one backend: a `sql` or an `http` table, not both".into(),
            )),
            (None, None) => Err((
                "sql".into(),
                "bind the contract to a backend: add a `sql` or an `http` table".into(),
            )),
        }
    }

    /// Id and version.
    pub fn reference(&self) -> ContractRef {
        ContractRef::new(&self.contract, &self.version)
    }

    /// The rate for each consumer: its own, or the member's default.
    pub fn rate(&self, member: &MemberConfig) -> Rate {
        self.rate
            .clone()
            .unwrap_or_else(|| member.limits.default_rate.clone())
    }
}

/// One part of a federated contract.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// Name of the part in the answer.
    pub name: String,
    /// Contract id.
    pub contract: String,
    /// Version.
    pub version: String,
}

/// A federated contract, defined locally at one gateway: one query fanned out to several
/// contracts in parallel under one deadline.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederatedContract {
    /// Its id on the local face.
    pub id: String,
    /// Version.
    pub version: String,
    /// What it is for.
    #[serde(default)]
    pub title: String,
    /// The purpose every part is asked for.
    pub purpose: String,
    /// One deadline for all parts, in milliseconds.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// The parts.
    pub parts: Vec<Part>,
}

impl FederatedContract {
    /// Id and version.
    pub fn reference(&self) -> ContractRef {
        ContractRef::new(&self.id, &self.version)
    }
}

/// `[[members]]`: one member and its gateway.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// Member id (three parts).
    pub id: MemberId,
    /// Human name.
    pub name: String,
    /// Where its gateway listens.
    pub listen: SocketAddr,
    /// Its gateway's URL in the manifest; defaults to `https://localhost:<port>`.
    #[serde(default)]
    pub gateway: Option<String>,
    /// Codes of its subsystems (`PEDULI-WNI` for `ID:GOV:KEMLU:PEDULI-WNI`).
    #[serde(default)]
    pub subsystems: Vec<String>,
    /// Deadline for a local query to a single contract, in milliseconds.
    #[serde(default = "default_deadline_ms")]
    pub query_deadline_ms: u64,
    /// Demo only: the synthetic dataset `simpul up` seeds, and where. Kept as written; the
    /// demo reads and checks it (a running gateway never looks at it).
    #[serde(default)]
    pub seed: Option<toml::Table>,
    /// Replay window and rate limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Response cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Circuit breaker towards providers.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// The admin listener, if any.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// The audit log; by default a SQLite file `data/audit-<member>.db`.
    #[serde(default)]
    pub audit: Option<audit_store::AuditConfig>,
    /// Contracts it provides.
    #[serde(default)]
    pub provides: Vec<Provision>,
    /// Federated contracts it defines.
    #[serde(default)]
    pub federated: Vec<FederatedContract>,
}

impl MemberConfig {
    /// The gateway URL published in the manifest.
    pub fn gateway_url(&self) -> String {
        self.gateway
            .clone()
            .unwrap_or_else(|| format!("https://localhost:{}", self.listen.port()))
    }

    /// The audit log's configuration, with the defaults when none is set.
    pub fn audit_config(&self) -> audit_store::AuditConfig {
        self.audit
            .clone()
            .unwrap_or_else(|| audit_store::AuditConfig::for_member(&self.id))
    }

    /// Full ids of its subsystems.
    pub fn subsystem_ids(&self) -> Vec<MemberId> {
        self.subsystems
            .iter()
            .filter_map(|s| self.id.subsystem(s).ok())
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    federation: FederationConfig,
    #[serde(default)]
    data: Option<toml::Table>,
    members: Vec<MemberConfig>,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from (`<embedded>` for the built-in demo).
    pub source: String,
    /// The directory relative paths are resolved against.
    pub base_dir: PathBuf,
    /// `[federation]`.
    pub federation: FederationConfig,
    /// `[data]`: the demo's synthetic data, kept as written; the demo reads and checks it
    /// (a running gateway never looks at it).
    pub data: Option<toml::Table>,
    /// `[[members]]`.
    pub members: Vec<MemberConfig>,
    /// The contract catalog, by id and version.
    pub catalog: BTreeMap<ContractRef, Contract>,
    /// Each provided contract's adapter, by provider and contract: built once, when the
    /// configuration is validated, and used by the gateway that provides it.
    bindings: HashMap<(MemberId, ContractRef), Arc<dyn Adapter>>,
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
        let err = |kind: Rejection, field: String, reason: String| ConfigError {
            path: source.to_owned(),
            field,
            reason,
            kind,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            err(
                Rejection::Syntax,
                locate(text, e.span()),
                e.message().trim().to_owned(),
            )
        })?;
        let base_dir = base_dir.to_path_buf();
        let catalog_dir = base_dir.join(&raw.federation.catalog);
        let documents = match fallback {
            Some(documents) if !catalog_dir.is_dir() => documents,
            _ => contracts::load_catalog(&catalog_dir).map_err(|e| {
                err(
                    Rejection::Catalog,
                    "federation.catalog".into(),
                    e.to_string(),
                )
            })?,
        };
        let catalog: BTreeMap<ContractRef, Contract> =
            documents.into_iter().map(|c| (c.reference(), c)).collect();
        if raw.federation.authority.is_subsystem() {
            return Err(err(
                Rejection::NotAMemberId,
                "federation.authority".into(),
                "must be a member id (three parts)".into(),
            ));
        }
        if raw.members.is_empty() {
            return Err(err(
                Rejection::Missing,
                "members".into(),
                "at least one member is required".into(),
            ));
        }
        let mut ids = HashSet::new();
        let mut listens = HashSet::new();
        for (i, m) in raw.members.iter().enumerate() {
            let at = format!("members[{i}]");
            if m.id.is_subsystem() {
                return Err(err(
                    Rejection::NotAMemberId,
                    format!("{at}.id"),
                    "must be a member id (three parts), not a subsystem".into(),
                ));
            }
            if !ids.insert(m.id.clone()) {
                return Err(err(
                    Rejection::Duplicate,
                    format!("{at}.id"),
                    format!("{} is configured twice", m.id),
                ));
            }
            if !listens.insert(m.listen) {
                return Err(err(
                    Rejection::AddressInUse,
                    format!("{at}.listen"),
                    format!("{} is used by another member", m.listen),
                ));
            }
            if !m.gateway_url().starts_with("https://") {
                return Err(err(
                    Rejection::NotHttps,
                    format!("{at}.gateway"),
                    "must be an https:// URL".into(),
                ));
            }
            if m.limits.rate_backend == RateBackend::Redis && m.limits.redis_url.is_none() {
                return Err(err(
                    Rejection::Missing,
                    format!("{at}.limits.redis_url"),
                    "required with rate_backend = \"redis\"".into(),
                ));
            }
            if m.limits.replay_capacity == 0 || m.cache.max_entries == 0 || m.breaker.failures == 0
            {
                return Err(err(
                    Rejection::OutOfRange,
                    format!("{at}.limits"),
                    "replay_capacity, cache.max_entries and breaker.failures must be at least 1"
                        .into(),
                ));
            }
            if let Some(audit) = &m.audit {
                audit.check().map_err(|(field, reason)| {
                    err(Rejection::OutOfRange, format!("{at}.audit.{field}"), reason)
                })?;
            }
            if let Some(admin) = &m.admin
                && !listens.insert(admin.listen)
            {
                return Err(err(
                    Rejection::AddressInUse,
                    format!("{at}.admin.listen"),
                    format!("{} is used by another listener", admin.listen),
                ));
            }
            for (j, s) in m.subsystems.iter().enumerate() {
                m.id.subsystem(s).map_err(|e| {
                    err(
                        Rejection::NotAMemberId,
                        format!("{at}.subsystems[{j}]"),
                        e.to_string(),
                    )
                })?;
            }
        }
        let mut bindings = HashMap::new();
        for (i, m) in raw.members.iter().enumerate() {
            let at = format!("members[{i}]");
            let mut provided = HashSet::new();
            for (j, p) in m.provides.iter().enumerate() {
                let at = format!("{at}.provides[{j}]");
                let Some(contract) = catalog.get(&p.reference()) else {
                    return Err(err(
                        Rejection::NotInCatalog,
                        format!("{at}.contract"),
                        format!(
                            "{} is not in the catalog {}",
                            p.reference(),
                            catalog_dir.display()
                        ),
                    ));
                };
                if contract.doc().provider != m.id {
                    return Err(err(
                        Rejection::WrongProvider,
                        format!("{at}.contract"),
                        format!(
                            "{} is provided by {} according to its document",
                            p.reference(),
                            contract.doc().provider
                        ),
                    ));
                }
                if !provided.insert(p.reference()) {
                    return Err(err(
                        Rejection::Duplicate,
                        format!("{at}.contract"),
                        "provided twice".into(),
                    ));
                }
                for (k, c) in p.consumers.iter().enumerate() {
                    if !ids.contains(&c.member) {
                        return Err(err(
                            Rejection::UnknownMember,
                            format!("{at}.consumers[{k}].member"),
                            format!("{} is not a configured member", c.member),
                        ));
                    }
                    if let Some(bad) = c
                        .purposes
                        .iter()
                        .find(|x| !contract.doc().purposes.contains(x))
                    {
                        return Err(err(
                            Rejection::UnknownPurpose,
                            format!("{at}.consumers[{k}].purposes"),
                            format!(
                                "`{bad}` is not a purpose of {} ({})",
                                p.reference(),
                                contract.doc().purposes.join(", ")
                            ),
                        ));
                    }
                }
                if p.rate(m).per_second == 0 || p.rate(m).burst == 0 {
                    return Err(err(
                        Rejection::OutOfRange,
                        format!("{at}.rate"),
                        "per_second and burst must be at least 1".into(),
                    ));
                }
                if p.concurrency == 0 || p.queue_ms == 0 {
                    return Err(err(
                        Rejection::OutOfRange,
                        format!("{at}.concurrency"),
                        "concurrency and queue_ms must be at least 1".into(),
                    ));
                }
                let spec = p.adapter_spec().map_err(|(field, reason)| {
                    err(Rejection::Binding, format!("{at}.{field}"), reason)
                })?;
                let adapter = adapters::build(&spec, &base_dir)
                    .map_err(|e| err(Rejection::Binding, format!("{at}.{}", e.field), e.reason))?;
                bindings.insert((m.id.clone(), p.reference()), adapter);
            }
            for (j, f) in m.federated.iter().enumerate() {
                let at = format!("{at}.federated[{j}]");
                if catalog.contains_key(&f.reference()) {
                    return Err(err(
                        Rejection::Duplicate,
                        format!("{at}.id"),
                        "a catalog contract already has this id and version".into(),
                    ));
                }
                if f.parts.is_empty() {
                    return Err(err(
                        Rejection::Missing,
                        format!("{at}.parts"),
                        "at least one part is required".into(),
                    ));
                }
                if f.deadline_ms == 0 {
                    return Err(err(
                        Rejection::OutOfRange,
                        format!("{at}.deadline_ms"),
                        "must be at least 1".into(),
                    ));
                }
                let mut names = HashSet::new();
                for (k, part) in f.parts.iter().enumerate() {
                    let r = ContractRef::new(&part.contract, &part.version);
                    if !catalog.contains_key(&r) {
                        return Err(err(
                            Rejection::NotInCatalog,
                            format!("{at}.parts[{k}].contract"),
                            format!("{r} is not in the catalog"),
                        ));
                    }
                    if !names.insert(&part.name) {
                        return Err(err(
                            Rejection::Duplicate,
                            format!("{at}.parts[{k}].name"),
                            "used twice".into(),
                        ));
                    }
                }
            }
        }
        Ok(Config {
            source: source.to_owned(),
            base_dir,
            federation: raw.federation,
            data: raw.data,
            members: raw.members,
            catalog,
            bindings,
        })
    }

    /// The adapter bound to `contract` at `member`.
    pub fn binding(&self, member: &MemberId, contract: &ContractRef) -> Option<Arc<dyn Adapter>> {
        self.bindings
            .get(&(member.clone(), contract.clone()))
            .cloned()
    }

    /// Binds `member`'s `contract` to `spec` instead (the demo on a database server).
    ///
    /// # Errors
    /// The adapter's refusal of `spec`, with the field at fault.
    pub fn rebind(
        &mut self,
        member: &MemberId,
        contract: &ContractRef,
        spec: &AdapterSpec,
    ) -> Result<(), adapters::AdapterConfigError> {
        let adapter = adapters::build(spec, &self.base_dir)?;
        self.bindings
            .insert((member.clone(), contract.clone()), adapter);
        Ok(())
    }

    /// A path from the configuration, resolved against its directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        self.base_dir.join(p)
    }

    /// A member's configuration.
    pub fn member(&self, id: &MemberId) -> Option<&MemberConfig> {
        self.members.iter().find(|m| &m.id == id)
    }

    /// The PKI layout under `federation.certs`.
    pub fn pki_layout(&self) -> crate::layout::PkiLayout {
        crate::layout::PkiLayout::new(self.resolve(&self.federation.certs))
    }

    /// The pinned authority key file.
    pub fn authority_key_path(&self) -> PathBuf {
        match &self.federation.authority_key {
            Some(p) => self.resolve(p),
            None => self.pki_layout().authority_jwk(),
        }
    }

    /// The manifest file.
    pub fn manifest_path(&self) -> PathBuf {
        self.resolve(&self.federation.manifest)
    }
}

#[cfg(test)]
mod tests {
    //! One test per rejection: each changes one thing in a small valid configuration and
    //! checks the field named. None opens a socket or a database.

    use super::*;

    const BASE: &str = r#"
[federation]
id = "ID"
authority = "ID:GOV:SIMPUL"
catalog = "CATALOG"

[[members]]
id = "ID:GOV:KEMLU"
name = "Kemlu"
listen = "127.0.0.1:7441"
subsystems = ["PEDULI-WNI"]
admin = { listen = "127.0.0.1:7541", clients = [] }

  [[members.federated]]
  id = "person.profile"
  version = "1"
  purpose = "citizen-protection"
  parts = [
    { name = "citizenship", contract = "citizenship.status", version = "1" },
    { name = "insurance", contract = "insurance.status", version = "1" },
  ]

[[members]]
id = "ID:GOV:DUKCAPIL"
name = "Dukcapil"
listen = "127.0.0.1:7442"

  [[members.provides]]
  contract = "citizenship.status"
  version = "1"
  consumers = [{ member = "ID:GOV:KEMLU", purposes = ["citizen-protection"] }]
  [members.provides.sql]
  database = "data/dukcapil.db"
  statement = "SELECT citizenship, deceased FROM residents WHERE nik = :nik"
  columns = { citizenship = "text", deceased = "bool" }
  found = { registered = true }
  not_found = { registered = false, citizenship = "unknown", deceased = false }
"#;

    fn text(edits: &[(&str, &str)]) -> String {
        let catalog = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts/catalog");
        let mut t = BASE.replace("CATALOG", &catalog.display().to_string());
        for (from, to) in edits {
            assert!(t.contains(from), "the base has no `{from}`");
            t = t.replacen(from, to, 1);
        }
        t
    }

    fn parse(edits: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::parse(&text(edits), "test.toml", Path::new("/nonexistent"))
    }

    #[test]
    fn the_base_is_valid() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.members.len(), 2);
        assert!(
            c.catalog
                .contains_key(&ContractRef::new("citizenship.status", "1"))
        );
    }

    macro_rules! refused {
        ($($name:ident: [$(($from:expr, $to:expr)),*] => $field:expr, $reason:expr, $kind:ident;)*) => {$(
            #[test]
            fn $name() {
                let e = parse(&[$(($from, $to)),*]).unwrap_err();
                assert_eq!(e.path, "test.toml");
                assert_eq!(e.kind, Rejection::$kind, "{e}");
                assert_eq!(e.field, $field, "{e}");
                assert!(e.reason.contains($reason), "{e}");
            }
        )*};
    }

    refused! {
        a_syntax_error_names_its_line:
            [("name = \"Kemlu\"", "name = Kemlu")] => "line 9 (`name = Kemlu`)", "quoted", Syntax;
        an_unknown_field_is_refused:
            [("name = \"Kemlu\"", "name = \"Kemlu\"\ncolour = \"red\"")] => "line 10 (`colour = \"red\"`)", "unknown field `colour`", Syntax;
        a_missing_catalog_directory_is_refused:
            [("contracts/catalog\"", "contracts/nowhere\"")] => "federation.catalog", "nowhere", Catalog;
        an_authority_that_is_a_subsystem_is_refused:
            [("ID:GOV:SIMPUL", "ID:GOV:SIMPUL:X")] => "federation.authority", "three parts", NotAMemberId;
        a_member_id_that_is_a_subsystem_is_refused:
            [("id = \"ID:GOV:KEMLU\"", "id = \"ID:GOV:KEMLU:X\"")] => "members[0].id", "not a subsystem", NotAMemberId;
        a_member_configured_twice_is_refused:
            [("id = \"ID:GOV:DUKCAPIL\"", "id = \"ID:GOV:KEMLU\"")] => "members[1].id", "twice", Duplicate;
        a_listen_address_used_twice_is_refused:
            [("127.0.0.1:7442", "127.0.0.1:7441")] => "members[1].listen", "another member", AddressInUse;
        a_gateway_url_that_is_not_https_is_refused:
            [("listen = \"127.0.0.1:7441\"", "listen = \"127.0.0.1:7441\"\ngateway = \"http://x\"")] => "members[0].gateway", "https", NotHttps;
        redis_limits_without_a_url_are_refused:
            [("subsystems = [\"PEDULI-WNI\"]", "subsystems = [\"PEDULI-WNI\"]\nlimits = { rate_backend = \"redis\" }")] => "members[0].limits.redis_url", "required", Missing;
        a_replay_window_of_zero_is_refused:
            [("subsystems = [\"PEDULI-WNI\"]", "subsystems = [\"PEDULI-WNI\"]\nlimits = { replay_capacity = 0 }")] => "members[0].limits", "at least 1", OutOfRange;
        an_audit_tree_head_interval_of_zero_is_refused:
            [("subsystems = [\"PEDULI-WNI\"]", "subsystems = [\"PEDULI-WNI\"]\naudit = { tree_head_interval_s = 0 }")] => "members[0].audit.tree_head_interval_s", "at least 1", OutOfRange;
        an_admin_listener_on_a_used_address_is_refused:
            [("127.0.0.1:7541", "127.0.0.1:7441")] => "members[0].admin.listen", "another listener", AddressInUse;
        a_malformed_subsystem_code_is_refused:
            [("[\"PEDULI-WNI\"]", "[\"peduli wni\"]")] => "members[0].subsystems[0]", "", NotAMemberId;
        a_provided_contract_not_in_the_catalog_is_refused:
            [("contract = \"citizenship.status\"\n  version = \"1\"", "contract = \"citizenship.status\"\n  version = \"9\"")] => "members[1].provides[0].contract", "not in the catalog", NotInCatalog;
        a_contract_whose_document_names_another_provider_is_refused:
            [("contract = \"citizenship.status\"\n  version = \"1\"", "contract = \"insurance.status\"\n  version = \"1\"")] => "members[1].provides[0].contract", "according to its document", WrongProvider;
        a_consumer_that_is_not_configured_is_refused:
            [("member = \"ID:GOV:KEMLU\", purposes", "member = \"ID:GOV:NOBODY\", purposes")] => "members[1].provides[0].consumers[0].member", "not a configured member", UnknownMember;
        a_purpose_the_contract_does_not_allow_is_refused:
            [("purposes = [\"citizen-protection\"] }]", "purposes = [\"marketing\"] }]")] => "members[1].provides[0].consumers[0].purposes", "`marketing`", UnknownPurpose;
        a_rate_of_zero_is_refused:
            [("consumers = [{ member = \"ID:GOV:KEMLU\", purposes = [\"citizen-protection\"] }]", "consumers = [{ member = \"ID:GOV:KEMLU\", purposes = [\"citizen-protection\"] }]\n  rate = { per_second = 0, burst = 1 }")] => "members[1].provides[0].rate", "at least 1", OutOfRange;
        a_concurrency_of_zero_is_refused:
            [("consumers = [{ member = \"ID:GOV:KEMLU\", purposes = [\"citizen-protection\"] }]", "consumers = [{ member = \"ID:GOV:KEMLU\", purposes = [\"citizen-protection\"] }]\n  concurrency = 0")] => "members[1].provides[0].concurrency", "at least 1", OutOfRange;
        an_unknown_binding_table_is_refused:
            [("[members.provides.sql]", "[members.provides.unused]")] => "line 32 (`[members.provides.unused]`)", "unknown field `unused`", Syntax;
        a_binding_the_adapter_refuses_names_its_field:
            [("statement = \"SELECT", "timeout_ms = 0\n  statement = \"SELECT")] => "members[1].provides[0].sql.timeout_ms/pool_size", "at least 1", Binding;
        a_federated_contract_with_a_catalog_contracts_id_is_refused:
            [("id = \"person.profile\"", "id = \"citizenship.status\"")] => "members[0].federated[0].id", "catalog contract", Duplicate;
        a_federated_contract_without_parts_is_refused:
            [("parts = [\n", "parts = [\n]\nunused = [\n")] => "line 20 (`unused = [`)", "unknown field `unused`", Syntax;
        a_federated_deadline_of_zero_is_refused:
            [("purpose = \"citizen-protection\"\n  parts", "purpose = \"citizen-protection\"\n  deadline_ms = 0\n  parts")] => "members[0].federated[0].deadline_ms", "at least 1", OutOfRange;
        a_part_not_in_the_catalog_is_refused:
            [("contract = \"insurance.status\", version = \"1\"", "contract = \"insurance.status\", version = \"7\"")] => "members[0].federated[0].parts[1].contract", "not in the catalog", NotInCatalog;
        a_part_name_used_twice_is_refused:
            [("name = \"insurance\"", "name = \"citizenship\"")] => "members[0].federated[0].parts[1].name", "used twice", Duplicate;
    }

    #[test]
    fn a_configuration_without_members_is_refused() {
        let t = text(&[]);
        let federation_only = &t[..t.find("[[members]]").unwrap()];
        let e = Config::parse(
            &format!("members = []\n{federation_only}"),
            "test.toml",
            Path::new("/nonexistent"),
        )
        .unwrap_err();
        assert_eq!((e.field.as_str(), e.kind), ("members", Rejection::Missing));
    }

    #[test]
    fn a_federated_contract_with_an_empty_part_list_is_refused() {
        let t = text(&[]);
        let start = t.find("  parts = [").unwrap();
        let end = t[start..].find("  ]\n").unwrap() + start + 4;
        let edited = format!("{}  parts = []\n{}", &t[..start], &t[end..]);
        let e = Config::parse(&edited, "test.toml", Path::new("/nonexistent")).unwrap_err();
        assert_eq!(e.field, "members[0].federated[0].parts");
        assert_eq!(e.kind, Rejection::Missing);
    }

    #[test]
    fn a_contract_bound_to_no_backend_is_refused() {
        let t = text(&[]);
        let unbound = &t[..t.find("  [members.provides.sql]").unwrap()];
        let e = Config::parse(unbound, "test.toml", Path::new("/nonexistent")).unwrap_err();
        assert_eq!(e.field, "members[1].provides[0].sql", "{e}");
        assert_eq!(e.kind, Rejection::Binding);
        assert!(e.reason.contains("bind the contract to a backend"), "{e}");
    }

    #[test]
    fn a_contract_bound_to_both_backends_is_refused() {
        let t = text(&[]);
        let e = Config::parse(
            &format!("{t}  [members.provides.http]\n  url = \"https://x\"\n  answer = {{}}\n"),
            "test.toml",
            Path::new("/nonexistent"),
        )
        .unwrap_err();
        assert_eq!(e.field, "members[1].provides[0].http", "{e}");
        assert_eq!(e.kind, Rejection::Binding);
        assert!(e.reason.contains("not both"), "{e}");
    }
}
