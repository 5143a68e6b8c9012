//! The serde layer: `config.toml` as written, field for field, with the defaults a missing
//! field takes. Nothing here is checked beyond its TOML type; [`super::resolve`] turns it
//! into the validated [`super::Config`].

use std::net::SocketAddr;
use std::path::PathBuf;

use adapters::{HttpSpec, SqlSpec};
use contracts::MemberId;
use contracts::manifest::{Consumer, Rate};
use serde::Deserialize;

use super::CacheConfig;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub federation: RawFederation,
    #[serde(default)]
    pub data: Option<toml::Table>,
    pub members: Vec<RawMember>,
}

/// `[federation]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFederation {
    pub id: String,
    pub authority: MemberId,
    #[serde(default = "default_certs")]
    pub certs: PathBuf,
    #[serde(default = "default_manifest")]
    pub manifest: PathBuf,
    #[serde(default)]
    pub authority_key: Option<PathBuf>,
    #[serde(default)]
    pub crl: Option<PathBuf>,
    #[serde(default = "default_validity")]
    pub manifest_validity_days: u32,
    #[serde(default = "default_catalog")]
    pub catalog: PathBuf,
    #[serde(default = "default_hosts")]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub manifest_url: Option<String>,
    #[serde(default)]
    pub crl_url: Option<String>,
    #[serde(default = "default_refresh_s")]
    pub refresh_s: u64,
    #[serde(default = "default_expiry_warning_days")]
    pub expiry_warning_days: u32,
}

fn default_refresh_s() -> u64 {
    300
}
fn default_expiry_warning_days() -> u32 {
    7
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

/// `[[members]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMember {
    pub id: MemberId,
    pub name: String,
    pub listen: SocketAddr,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub local: Option<RawLocal>,
    #[serde(default)]
    pub subsystems: Vec<RawSubsystem>,
    #[serde(default = "default_deadline_ms")]
    pub query_deadline_ms: u64,
    #[serde(default)]
    pub seed: Option<toml::Table>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub breaker: RawBreaker,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub audit: Option<audit_store::AuditConfig>,
    #[serde(default)]
    pub provides: Vec<RawProvision>,
    #[serde(default)]
    pub federated: Vec<RawFederated>,
    #[serde(default)]
    pub lists: Vec<RawList>,
    #[serde(default)]
    pub events: Vec<RawEvents>,
    #[serde(default)]
    pub webhooks: Vec<RawWebhook>,
    #[serde(default)]
    pub signing: Option<RawSigning>,
}

/// `[[members.events]]`: an event contract the member emits (PROTOCOL.md §2.8).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    pub contract: String,
    pub version: String,
    pub subscribers: Vec<Consumer>,
    #[serde(default)]
    pub emitters: Vec<String>,
    #[serde(default)]
    pub sql: Option<SqlSpec>,
}

/// `[[members.webhooks]]`: where the member's gateway hands the events it receives.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    pub name: String,
    pub url: String,
    pub secret_file: PathBuf,
    pub contracts: Vec<RawContractPin>,
    #[serde(default = "default_webhook_timeout_ms")]
    pub timeout_ms: u64,
}

/// A contract named by id and version.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContractPin {
    pub contract: String,
    pub version: String,
}

fn default_webhook_timeout_ms() -> u64 {
    10_000
}

/// `[[members.lists]]`: one of the member's own lists, which its overlap runs send blinded.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawList {
    pub name: String,
    pub sql: SqlSpec,
}

/// `members.signing`: where the signing key lives (the key file when absent).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSigning {
    #[serde(default)]
    pub pkcs11: Option<RawPkcs11>,
}

/// `members.signing.pkcs11`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPkcs11 {
    pub module: PathBuf,
    pub token: String,
    pub key: String,
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    #[serde(default)]
    pub pin_env: Option<String>,
    /// Read only to refuse it: a PIN is never written into the configuration.
    #[serde(default)]
    pub pin: Option<toml::Value>,
}

/// `[members.limits]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLimits {
    pub replay_capacity: usize,
    pub rate_backend: RawStateBackend,
    pub replay_backend: RawStateBackend,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub default_rate: Rate,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub max_handshakes: usize,
    pub admission_per_peer: Rate,
    pub admission_per_address: Rate,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            replay_capacity: 200_000,
            rate_backend: RawStateBackend::Local,
            replay_backend: RawStateBackend::Local,
            redis_url: None,
            redis_prefix: "simpul".into(),
            default_rate: Rate {
                per_second: 50,
                burst: 100,
            },
            max_connections: 4096,
            max_connections_per_address: 256,
            max_handshakes: 256,
            admission_per_peer: Rate {
                per_second: 10_000,
                burst: 20_000,
            },
            admission_per_address: Rate {
                per_second: 20_000,
                burst: 40_000,
            },
        }
    }
}

/// `limits.rate_backend` and `limits.replay_backend`.
#[derive(Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawStateBackend {
    Local,
    Redis,
}

/// `[members.breaker]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawBreaker {
    pub failures: u32,
    pub cooldown_ms: u64,
}

impl Default for RawBreaker {
    fn default() -> Self {
        RawBreaker {
            failures: 5,
            cooldown_ms: 10_000,
        }
    }
}

/// `[[members.provides]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvision {
    pub contract: String,
    pub version: String,
    pub consumers: Vec<Consumer>,
    #[serde(default)]
    pub rate: Option<Rate>,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default = "default_queue_ms")]
    pub queue_ms: u64,
    #[serde(default)]
    pub sql: Option<SqlSpec>,
    #[serde(default)]
    pub http: Option<HttpSpec>,
}

/// `[[members.federated]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFederated {
    pub id: String,
    pub version: String,
    #[serde(default)]
    pub title: String,
    pub purpose: String,
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    pub parts: Vec<RawPart>,
}

/// One of `parts`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPart {
    pub name: String,
    pub contract: String,
    pub version: String,
}

/// `[members.local]`: the listener of the member's own systems and the anchor it trusts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLocal {
    pub listen: SocketAddr,
    #[serde(default)]
    pub member_ca: Option<PathBuf>,
    #[serde(default)]
    pub member_crl: Option<PathBuf>,
    #[serde(default)]
    pub pinned: Vec<String>,
}

/// `[[members.subsystems]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubsystem {
    pub name: String,
    #[serde(default)]
    pub rate: Option<Rate>,
    #[serde(default)]
    pub grants: Vec<RawGrant>,
}

/// One of a subsystem's `grants`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGrant {
    pub contract: String,
    pub version: String,
    pub purposes: Vec<String>,
}

/// `[members.admin]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub listen: SocketAddr,
    #[serde(default)]
    pub operators: Vec<String>,
    #[serde(default)]
    pub auditors: Vec<String>,
    #[serde(default)]
    pub evidence_auditors: Vec<String>,
    #[serde(default = "default_admin_max_connections")]
    pub max_connections: usize,
}

fn default_admin_max_connections() -> usize {
    64
}
