//! The run configuration: one TOML file naming the target gateway, the tester's identity and
//! keys, the manifest, and the contracts and sample queries to use — and, when the target
//! subscribes to an event contract the tester provides, that contract and an event's data.
//!
//! Everything is read and checked against the manifest when the file is loaded — keys are in
//! the manifest, certificates name their member, purposes are (or for the refusal cases, are
//! not) granted — so a run never starts half-configured, and a mistake is reported with the
//! file and the field rather than as a puzzling failed case.

use std::path::{Path, PathBuf};
use std::time::Duration;

use contracts::{Algorithm, Contract, ContractRef, Manifest, MemberId, SigningKey, VerifyingKey};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;
use serde_json::Value;

use crate::client::{Endpoint, TlsIdentity};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML does not parse or has the wrong shape (the message names line and field).
    #[error("{}: {message}", path.display())]
    Syntax {
        /// The configuration file.
        path: PathBuf,
        /// What the TOML reader said.
        message: String,
    },
    /// A field's value cannot be used.
    #[error("{}: `{field}`: {reason}", path.display())]
    Field {
        /// The configuration file.
        path: PathBuf,
        /// The field, e.g. `tester.signing_key`.
        field: String,
        /// What is wrong and what to do.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    base_dir: Option<PathBuf>,
    target: RawTarget,
    tester: RawParty,
    second: Option<RawParty>,
    manifest: RawManifest,
    unknown_ca: Option<RawIdentity>,
    revoked: Option<RawIdentity>,
    #[serde(default)]
    contracts: Vec<RawContract>,
    #[serde(default)]
    forbidden: Vec<RawForbidden>,
    #[serde(default)]
    events: Vec<RawEvent>,
    limits: Option<RawLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    member: MemberId,
    url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParty {
    member: MemberId,
    certificate: PathBuf,
    key: PathBuf,
    signing_key: PathBuf,
    #[serde(default = "default_algorithm")]
    algorithm: Algorithm,
}

fn default_algorithm() -> Algorithm {
    Algorithm::ES256
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    file: PathBuf,
    authority_key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    certificate: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContract {
    id: String,
    version: String,
    purpose: String,
    queries: Vec<Value>,
    invalid_query: Option<Value>,
    invalid_pointer: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForbidden {
    contract: String,
    version: String,
    purpose: String,
    #[serde(default, rename = "as")]
    by: Who,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    id: String,
    version: String,
    document: Option<PathBuf>,
    data: Value,
    invalid_data: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_requests: Option<u64>,
    max_seconds: Option<u64>,
    connections: Option<usize>,
}

/// Which of the tester's identities sends a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Who {
    /// The tester's own member.
    #[default]
    Tester,
    /// The second member.
    Second,
}

/// A member the tester holds the certificate and signing key of.
#[derive(Debug)]
pub struct Party {
    /// The member id.
    pub member: MemberId,
    /// Its TLS certificate and key.
    pub tls: TlsIdentity,
    /// Its JWS signing key; its kid is in the manifest.
    pub signing: SigningKey,
}

/// The gateway under test.
#[derive(Clone, Debug)]
pub struct Target {
    /// The member it claims to be.
    pub member: MemberId,
    /// Its URL, as the configuration (or else the manifest) gives it.
    pub url: String,
    /// Host and port.
    pub endpoint: Endpoint,
}

/// A schema-invalid query and the JSON pointer its refusal must name.
#[derive(Clone, Debug)]
pub struct InvalidQuery {
    /// The query.
    pub query: Value,
    /// The pointer, e.g. `/query/nik`.
    pub pointer: String,
}

/// A contract the target provides, with a purpose the tester is granted and queries to ask.
#[derive(Clone, Debug)]
pub struct ContractUnderTest {
    /// Id and version.
    pub reference: ContractRef,
    /// A purpose the manifest grants the tester.
    pub purpose: String,
    /// Valid queries.
    pub queries: Vec<Value>,
    /// A schema-invalid query, if configured.
    pub invalid: Option<InvalidQuery>,
}

/// A contract, purpose and sender the manifest does not grant.
#[derive(Clone, Debug)]
pub struct Forbidden {
    /// Id and version.
    pub reference: ContractRef,
    /// The purpose asked for.
    pub purpose: String,
    /// Who asks.
    pub by: Who,
}

/// An event contract the tester provides and the manifest grants the target (PROTOCOL.md
/// §2.8): the tester delivers its events as the provider's gateway would, the target
/// answers as their subscriber.
#[derive(Clone, Debug)]
pub struct EventContract {
    /// Its document, the one the manifest pins.
    pub contract: Contract,
    /// The purpose a delivery names: the first the manifest grants the target.
    pub purpose: String,
    /// An event's data the contract's request schema accepts.
    pub data: Value,
    /// An event's data the schema refuses.
    pub invalid_data: Value,
}

/// Bounds of the rate-limit case.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The most requests sent trying to exceed the rate.
    pub max_requests: u64,
    /// The longest time spent trying.
    pub max_duration: Duration,
    /// Parallel connections used.
    pub connections: usize,
}

/// A validated configuration with every file read.
#[derive(Debug)]
pub struct RunConfig {
    /// The configuration file.
    pub source: PathBuf,
    /// The manifest, verified against the pinned authority key.
    pub manifest: Manifest,
    /// The pinned authority key.
    pub authority: VerifyingKey,
    /// The manifest's CA certificates.
    pub cas: Vec<CertificateDer<'static>>,
    /// The gateway under test.
    pub target: Target,
    /// The tester's member.
    pub tester: Party,
    /// A second member, for the cases that need someone else's key or certificate.
    pub second: Option<Party>,
    /// A certificate from a CA the manifest does not list, if configured (else one is made
    /// at run time).
    pub unknown_ca: Option<TlsIdentity>,
    /// A certificate from a CA of the manifest that the CA has revoked (its serial is on the
    /// CRL the target loaded), if configured; TLS-08 is skipped without it.
    pub revoked: Option<TlsIdentity>,
    /// Contracts to exercise; the first is used by the envelope cases.
    pub contracts: Vec<ContractUnderTest>,
    /// Requests the manifest does not grant.
    pub forbidden: Vec<Forbidden>,
    /// Event contracts the tester provides and the target subscribes to.
    pub events: Vec<EventContract>,
    /// Bounds of the rate-limit case.
    pub limits: Limits,
}

struct Loader<'a> {
    path: &'a Path,
    base: PathBuf,
}

impl Loader<'_> {
    fn field(&self, field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Field {
            path: self.path.to_owned(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn read(&self, field: &str, file: &Path) -> Result<Vec<u8>, ConfigError> {
        let full = self.base.join(file);
        std::fs::read(&full).map_err(|e| self.field(field, format!("{}: {e}", full.display())))
    }

    fn identity(&self, at: &str, cert: &Path, key: &Path) -> Result<TlsIdentity, ConfigError> {
        let cert_pem = self.read(&format!("{at}.certificate"), cert)?;
        let key_pem = self.read(&format!("{at}.key"), key)?;
        TlsIdentity::from_pem(&cert_pem, &key_pem).map_err(|e| self.field(at, e))
    }

    /// The `[revoked]` identity: it must chain to a CA of the manifest and be within its
    /// validity, so that its revocation is the only reason left for the target to refuse it
    /// (a certificate from elsewhere would only repeat TLS-02).
    fn revoked(
        &self,
        cert: &Path,
        key: &Path,
        cas: &[CertificateDer<'static>],
    ) -> Result<TlsIdentity, ConfigError> {
        let identity = self.identity("revoked", cert, key)?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in cas {
            roots
                .add(ca.clone())
                .map_err(|e| self.field("manifest.file", format!("a CA certificate: {e}")))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            crate::client::provider(),
        )
        .build()
        .map_err(|e| self.field("manifest.file", format!("the manifest's CAs: {e}")))?;
        let (end_entity, intermediates) = identity
            .chain
            .split_first()
            .ok_or_else(|| self.field("revoked.certificate", "no certificate in the PEM"))?;
        verifier
            .verify_client_cert(end_entity, intermediates, rustls::pki_types::UnixTime::now())
            .map_err(|e| {
                self.field(
                    "revoked.certificate",
                    format!(
                        "is not a valid certificate from a CA of the manifest ({e}): TLS-08 needs one \
                         the target would accept but for its revocation"
                    ),
                )
            })?;
        Ok(identity)
    }

    /// An `[[events]]` entry: an event contract of the tester's, granted to the target, its
    /// document the one the manifest pins (the file given, or the catalog compiled into the
    /// suite), `data` valid against its request schema and `invalid_data` not.
    fn event(
        &self,
        at: &str,
        raw: &RawEvent,
        manifest: &Manifest,
        tester: &MemberId,
        target: &MemberId,
    ) -> Result<EventContract, ConfigError> {
        let reference = ContractRef::new(&raw.id, &raw.version);
        let listed = manifest
            .contract(&reference)
            .ok_or_else(|| self.field(at, format!("{reference} is not in the manifest")))?;
        if &listed.provider != tester {
            return Err(self.field(
                at,
                format!(
                    "{reference} is provided by {}: the Events cases deliver its events as its \
                     provider, so tester.member must be {}",
                    listed.provider, listed.provider
                ),
            ));
        }
        let purpose = manifest
            .grant(listed, target)
            .and_then(|p| p.first().cloned())
            .ok_or_else(|| {
                self.field(
                    at,
                    format!(
                        "the manifest does not grant {target} {reference}: it is not a subscriber"
                    ),
                )
            })?;
        let contract = match &raw.document {
            Some(file) => {
                let field = format!("{at}.document");
                Contract::from_json(&self.read(&field, file)?)
                    .map_err(|e| self.field(&field, e.to_string()))?
            }
            None => contracts::embedded_catalog()
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.reference() == reference && c.digest() == listed.digest)
                .ok_or_else(|| {
                    self.field(
                        format!("{at}.document"),
                        format!(
                            "give the file of {reference}: the manifest's is not among the \
                             documents compiled into the suite"
                        ),
                    )
                })?,
        };
        if contract.reference() != reference || contract.digest() != listed.digest {
            return Err(self.field(
                format!("{at}.document"),
                format!(
                    "is {} hashing to {}, not the {reference} the manifest pins ({})",
                    contract.reference(),
                    contract.digest(),
                    listed.digest
                ),
            ));
        }
        if contract.event().is_none() {
            return Err(self.field(at, format!("{reference} is not an event contract")));
        }
        if let Err(errors) = contract.check_request(&raw.data, "/data") {
            let said: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {}", e.pointer, e.message))
                .collect();
            return Err(self.field(
                format!("{at}.data"),
                format!(
                    "the contract's request schema refuses it: {}",
                    said.join("; ")
                ),
            ));
        }
        if contract.check_request(&raw.invalid_data, "/data").is_ok() {
            return Err(self.field(
                format!("{at}.invalid_data"),
                "the contract's request schema accepts it: give data it refuses",
            ));
        }
        Ok(EventContract {
            contract,
            purpose,
            data: raw.data.clone(),
            invalid_data: raw.invalid_data.clone(),
        })
    }

    fn party(&self, at: &str, raw: &RawParty, manifest: &Manifest) -> Result<Party, ConfigError> {
        if manifest.member(&raw.member).is_none() {
            return Err(self.field(
                format!("{at}.member"),
                format!("{} is not a member in the manifest", raw.member),
            ));
        }
        let tls = self.identity(at, &raw.certificate, &raw.key)?;
        let names = tls.identities();
        if !names.contains(&raw.member) {
            return Err(self.field(
                format!("{at}.certificate"),
                format!(
                    "the certificate names {names:?}, not {} (SAN URI {})",
                    raw.member,
                    raw.member.san_uri()
                ),
            ));
        }
        let field = format!("{at}.signing_key");
        let pem = self.read(&field, &raw.signing_key)?;
        let signing = SigningKey::from_pem(raw.algorithm, raw.member.as_str(), &pem)
            .map_err(|e| self.field(&field, e.to_string()))?;
        match manifest.key(signing.kid()) {
            Some((owner, _)) if owner == &raw.member => {}
            _ => {
                return Err(self.field(
                    field,
                    format!(
                        "its kid {} is not among {}'s keys in the manifest",
                        signing.kid(),
                        raw.member
                    ),
                ));
            }
        }
        Ok(Party {
            member: raw.member.clone(),
            tls,
            signing,
        })
    }
}

impl RunConfig {
    /// Reads and validates a configuration file. Relative paths in it resolve against
    /// `base_dir`, itself relative to the file's directory (default: that directory).
    pub fn load(path: &Path) -> Result<RunConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Validates configuration text that was read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<RunConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let base = match &raw.base_dir {
            Some(b) => dir.join(b),
            None => dir.to_owned(),
        };
        let l = Loader { path, base };

        let jwk: Value =
            serde_json::from_slice(&l.read("manifest.authority_key", &raw.manifest.authority_key)?)
                .map_err(|e| l.field("manifest.authority_key", format!("not a JWK: {e}")))?;
        let authority = VerifyingKey::from_jwk(&jwk)
            .map_err(|e| l.field("manifest.authority_key", e.to_string()))?;
        let manifest_bytes = l.read("manifest.file", &raw.manifest.file)?;
        let manifest_text =
            String::from_utf8(manifest_bytes).map_err(|_| l.field("manifest.file", "not UTF-8"))?;
        let manifest = Manifest::verify(&manifest_text, &authority, contracts::unix_now())
            .map_err(|e| l.field("manifest.file", e.to_string()))?;
        let mut cas = Vec::new();
        for pem in &manifest.doc().ca {
            for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                cas.push(c.map_err(|e| l.field("manifest.file", format!("CA certificate: {e}")))?);
            }
        }

        let listed = manifest.member(&raw.target.member).ok_or_else(|| {
            l.field(
                "target.member",
                format!("{} is not a member in the manifest", raw.target.member),
            )
        })?;
        let url = raw
            .target
            .url
            .clone()
            .unwrap_or_else(|| listed.gateway.clone());
        let endpoint = Endpoint::parse(&url).map_err(|e| l.field("target.url", e))?;
        let target = Target {
            member: raw.target.member.clone(),
            url: url.trim_end_matches('/').to_owned(),
            endpoint,
        };

        let tester = l.party("tester", &raw.tester, &manifest)?;
        let second = match &raw.second {
            Some(s) => {
                let p = l.party("second", s, &manifest)?;
                if p.member == tester.member {
                    return Err(l.field("second.member", "must differ from tester.member"));
                }
                Some(p)
            }
            None => None,
        };
        let unknown_ca = match &raw.unknown_ca {
            Some(u) => Some(l.identity("unknown_ca", &u.certificate, &u.key)?),
            None => None,
        };
        let revoked = match &raw.revoked {
            Some(r) => Some(l.revoked(&r.certificate, &r.key, &cas)?),
            None => None,
        };

        if raw.contracts.is_empty() {
            return Err(l.field(
                "contracts",
                "list at least one contract the target provides ([[contracts]])",
            ));
        }
        let mut contracts = Vec::new();
        for (i, c) in raw.contracts.iter().enumerate() {
            let at = format!("contracts[{i}]");
            let reference = ContractRef::new(&c.id, &c.version);
            let listed = manifest
                .contract(&reference)
                .filter(|m| m.provider == target.member)
                .ok_or_else(|| {
                    l.field(
                        &at,
                        format!(
                            "{reference} is not a contract of {} in the manifest",
                            target.member
                        ),
                    )
                })?;
            let granted = manifest.grant(listed, &tester.member).unwrap_or_default();
            if !granted.contains(&c.purpose) {
                return Err(l.field(
                    format!("{at}.purpose"),
                    format!(
                        "the manifest does not grant {} `{}` on {reference} (granted: {})",
                        tester.member,
                        c.purpose,
                        granted.join(", ")
                    ),
                ));
            }
            if c.queries.is_empty() {
                return Err(l.field(format!("{at}.queries"), "give at least one valid query"));
            }
            let invalid = match (&c.invalid_query, &c.invalid_pointer) {
                (Some(query), Some(pointer)) => Some(InvalidQuery {
                    query: query.clone(),
                    pointer: pointer.clone(),
                }),
                (None, None) => None,
                _ => {
                    return Err(l.field(
                        format!("{at}.invalid_query"),
                        "invalid_query and invalid_pointer go together",
                    ));
                }
            };
            contracts.push(ContractUnderTest {
                reference,
                purpose: c.purpose.clone(),
                queries: c.queries.clone(),
                invalid,
            });
        }

        let mut forbidden = Vec::new();
        for (i, f) in raw.forbidden.iter().enumerate() {
            let at = format!("forbidden[{i}]");
            let reference = ContractRef::new(&f.contract, &f.version);
            let listed = manifest
                .contract(&reference)
                .filter(|m| m.provider == target.member)
                .ok_or_else(|| {
                    l.field(
                        &at,
                        format!(
                            "{reference} is not a contract of {} in the manifest",
                            target.member
                        ),
                    )
                })?;
            let who = match f.by {
                Who::Tester => &tester.member,
                Who::Second => {
                    &second
                        .as_ref()
                        .ok_or_else(|| {
                            l.field(format!("{at}.as"), "no [second] member is configured")
                        })?
                        .member
                }
            };
            if manifest
                .grant(listed, who)
                .is_some_and(|p| p.contains(&f.purpose))
            {
                return Err(l.field(
                    &at,
                    format!(
                        "the manifest grants {who} `{}` on {reference}: choose a combination it does not",
                        f.purpose
                    ),
                ));
            }
            forbidden.push(Forbidden {
                reference,
                purpose: f.purpose.clone(),
                by: f.by,
            });
        }

        let mut events = Vec::new();
        for (i, e) in raw.events.iter().enumerate() {
            events.push(l.event(
                &format!("events[{i}]"),
                e,
                &manifest,
                &tester.member,
                &target.member,
            )?);
        }

        let limits = raw.limits.as_ref();
        let limits = Limits {
            max_requests: limits.and_then(|l| l.max_requests).unwrap_or(20_000),
            max_duration: Duration::from_secs(limits.and_then(|l| l.max_seconds).unwrap_or(20)),
            connections: limits.and_then(|l| l.connections).unwrap_or(8).max(1),
        };

        Ok(RunConfig {
            source: path.to_owned(),
            manifest,
            authority,
            cas,
            target,
            tester,
            second,
            unknown_ca,
            revoked,
            contracts,
            forbidden,
            events,
            limits,
        })
    }

    /// The party that plays `who`.
    pub fn party(&self, who: Who) -> Option<&Party> {
        match who {
            Who::Tester => Some(&self.tester),
            Who::Second => self.second.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: ConfigError) -> String {
        match e {
            ConfigError::Field { field, .. } => field,
            other => panic!("expected a field error, got {other}"),
        }
    }

    const MINIMAL: &str = r#"
        [target]
        member = "ID:GOV:DUKCAPIL"
        [tester]
        member = "ID:GOV:KEMLU"
        certificate = "c.pem"
        key = "c.key"
        signing_key = "s.key"
        [manifest]
        file = "manifest.jws"
        authority_key = "authority.jwk"
    "#;

    #[test]
    fn unknown_fields_and_bad_ids_are_syntax_errors_naming_the_file() {
        let path = Path::new("/nowhere/run.toml");
        let e = RunConfig::parse(&format!("{MINIMAL}\nsurprise = 1\n"), path).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
        assert!(e.to_string().starts_with("/nowhere/run.toml: "), "{e}");
        let bad_id = MINIMAL.replace("ID:GOV:KEMLU", "KEMLU");
        let e = RunConfig::parse(&bad_id, path).unwrap_err();
        assert!(e.to_string().contains("not a member id"), "{e}");
    }

    #[test]
    fn missing_files_name_their_field_and_resolve_against_base_dir() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        let e = RunConfig::parse(MINIMAL, &path).unwrap_err();
        assert_eq!(field_of(e), "manifest.authority_key");
        std::fs::write(dir.path().join("authority.jwk"), "{}").unwrap();
        let e = RunConfig::parse(MINIMAL, &path).unwrap_err();
        assert!(e.to_string().contains("authority_key"), "{e}");
        // base_dir moves where files are looked for.
        let moved = format!("base_dir = \"elsewhere\"\n{MINIMAL}");
        let e = RunConfig::parse(&moved, &path).unwrap_err();
        assert!(e.to_string().contains("elsewhere"), "{e}");
    }
}
