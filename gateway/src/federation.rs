//! The federation authority's work and the demo's preparation: building and signing the
//! manifest from the configuration, and making whatever `simpul up` finds missing.

use std::path::{Path, PathBuf};

use contracts::manifest::{ManifestContract, ManifestDoc, ManifestMember};
use contracts::{Algorithm, Manifest, MemberId, SigningKey};

use crate::config::Config;
use crate::gateway::{StartError, load_authority_key};
use crate::pki::{self, PkiError};

/// Why the federation could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The PKI could not be made.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The manifest could not be made or read.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The synthetic data could not be written.
    #[error(transparent)]
    Seed(#[from] crate::seed::SeedError),
    /// Signing failed.
    #[error("manifest: {0}")]
    Manifest(#[from] contracts::ManifestError),
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> PrepareError {
    PrepareError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// The manifest document the configuration describes, with the members' public keys and
/// CA certificate read from the PKI directory.
pub fn build_manifest_doc(
    config: &Config,
    serial: u64,
    now: i64,
) -> Result<ManifestDoc, PrepareError> {
    let layout = config.pki_layout();
    let ca =
        std::fs::read_to_string(layout.ca_cert()).map_err(|e| file_err(&layout.ca_cert(), e))?;
    let mut members = Vec::new();
    for m in &config.members {
        let path = layout.signing_jwk(&m.id);
        let text = std::fs::read_to_string(&path).map_err(|e| file_err(&path, e))?;
        let jwk: serde_json::Value = serde_json::from_str(&text).map_err(|e| file_err(&path, e))?;
        members.push(ManifestMember {
            id: m.id.clone(),
            name: m.name.clone(),
            gateway: m.gateway_url(),
            keys: vec![jwk],
        });
    }
    let mut contracts = Vec::new();
    for m in &config.members {
        for p in &m.provides {
            // Config::parse has checked the contract is in the catalog.
            let digest = config
                .catalog
                .get(&p.reference())
                .map(|c| c.digest().to_owned())
                .unwrap_or_default();
            contracts.push(ManifestContract {
                id: p.contract.clone(),
                version: p.version.clone(),
                provider: m.id.clone(),
                digest,
                consumers: p.consumers.clone(),
                rate: p.rate(m),
            });
        }
    }
    Ok(ManifestDoc {
        v: 1,
        federation: config.federation.id.clone(),
        serial,
        issued_at: now,
        expires_at: now + i64::from(config.federation.manifest_validity_days) * 86_400,
        ca: vec![ca],
        members,
        contracts,
    })
}

/// Reads the manifest currently on disk, if it verifies.
fn current_manifest(config: &Config) -> Option<Manifest> {
    let key = load_authority_key(&config.authority_key_path()).ok()?;
    let text = std::fs::read_to_string(config.manifest_path()).ok()?;
    Manifest::verify(&text, &key, contracts::unix_now()).ok()
}

/// Signs a new manifest from the configuration with the authority key, one serial above the
/// one on disk, and writes it. Returns the manifest.
pub fn sign_manifest(config: &Config, out: Option<&Path>) -> Result<Manifest, PrepareError> {
    let layout = config.pki_layout();
    let key_path = layout.authority_key();
    let pem = std::fs::read(&key_path).map_err(|e| file_err(&key_path, e))?;
    let authority =
        SigningKey::from_pem(Algorithm::ES256, config.federation.authority.as_str(), &pem)
            .map_err(|e| file_err(&key_path, e))?;
    let serial = current_manifest(config)
        .map(|m| m.doc().serial + 1)
        .unwrap_or(1);
    let now = contracts::unix_now();
    let doc = build_manifest_doc(config, serial, now)?;
    let jws = Manifest::sign(&doc, &authority)?;
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| config.manifest_path());
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    }
    std::fs::write(&out, format!("{jws}\n")).map_err(|e| file_err(&out, e))?;
    Ok(Manifest::verify(
        &jws,
        &authority
            .verifying_key()
            .map_err(|e| file_err(&key_path, e))?,
        now,
    )?)
}

/// True when the manifest on disk verifies and says what the configuration says (ignoring
/// serial and dates).
fn manifest_is_current(config: &Config) -> bool {
    let Some(held) = current_manifest(config) else {
        return false;
    };
    let Ok(mut wanted) = build_manifest_doc(config, held.doc().serial, held.doc().issued_at) else {
        return false;
    };
    wanted.expires_at = held.doc().expires_at;
    // A manifest close to expiry is renewed.
    let fresh = held.doc().expires_at - contracts::unix_now() > 86_400;
    fresh && &wanted == held.doc()
}

/// What `simpul up` did to get ready.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Lines for the operator.
    pub notes: Vec<String>,
}

/// Makes the dev PKI, the manifest and the demo data where they are missing or out of date.
pub async fn prepare(config: &Config) -> Result<Prepared, PrepareError> {
    let mut done = Prepared::default();
    let layout = config.pki_layout();
    let plan = config.pki_plan();
    if !pki::is_complete(&layout, &plan) {
        let report = pki::complete(&layout, &plan)?;
        done.notes.push(format!(
            "wrote {1} missing file(s) of the dev PKI in {0}",
            layout.root.display(),
            report.written.len()
        ));
    }
    if !manifest_is_current(config) {
        let m = sign_manifest(config, None)?;
        done.notes.push(format!(
            "signed manifest serial {} into {}",
            m.doc().serial,
            config.manifest_path().display()
        ));
    }
    let mut population = None;
    for m in &config.members {
        let Some(target) = &m.seed else { continue };
        if let Some(server) = &target.server {
            // The population is generated only when some table is missing; the check is
            // one cheap query per member.
            if crate::seed::server_has_dataset(server, target.dataset).await? {
                continue;
            }
            let pop = population.get_or_insert_with(|| crate::seed::generate(&config.data));
            if let Some(rows) =
                crate::seed::write_dataset_server(pop, target.dataset, server).await?
            {
                done.notes.push(format!(
                    "seeded {}.{} with {rows} rows",
                    server.schema,
                    target.dataset.table()
                ));
            }
            continue;
        }
        let path = config.resolve(&target.database);
        if path.exists() {
            continue;
        }
        let pop = population.get_or_insert_with(|| crate::seed::generate(&config.data));
        let rows = crate::seed::write_dataset(pop, target.dataset, &path).await?;
        done.notes
            .push(format!("seeded {} with {rows} rows", path.display()));
    }
    Ok(done)
}

/// The schema a member's demo data lives in on a database server: the last part of its id,
/// lower-cased (`ID:GOV:KEMLU` → `kemlu`).
pub fn member_schema(id: &MemberId) -> String {
    id.as_str()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Points the demo federation at a database server (`simpul up --backend postgres`) instead
/// of its SQLite files: each member's synthetic data is seeded into its own schema of `url`
/// (`kemlu.reports`, `dukcapil.residents`, …) and each of its SQL bindings that reads a
/// SQLite file reads that schema instead, through the binding's `schema` (PostgreSQL's
/// `search_path`). The statements stay exactly as written in the configuration.
pub fn use_database_server(config: &mut Config, url: &str) -> Result<(), PrepareError> {
    let base_dir = config.base_dir.clone();
    for m in &mut config.members {
        let schema = member_schema(&m.id);
        if let Some(seed) = &mut m.seed {
            seed.server = Some(crate::seed::ServerTarget {
                url: url.to_owned(),
                schema: schema.clone(),
            });
        }
        for p in &mut m.provides {
            let Some(sql) = &mut p.sql else { continue };
            let is_sqlite_file =
                !sql.database.contains("://") && !sql.database.starts_with(adapters::ENV_PREFIX);
            if !is_sqlite_file {
                continue;
            }
            sql.database = url.to_owned();
            sql.schema = Some(schema.clone());
            let spec = adapters::AdapterSpec::Sql(sql.clone());
            adapters::build(&spec, &base_dir).map_err(|e| PrepareError::File {
                path: PathBuf::from(&config.source),
                reason: format!("{} {}: {e}", m.id, p.contract),
            })?;
        }
    }
    Ok(())
}

/// Ids of the subsystem to show in the demo's curl command: the first subsystem of the
/// first member that defines a federated contract.
pub fn demo_caller(config: &Config) -> Option<(MemberId, MemberId)> {
    config
        .members
        .iter()
        .find(|m| !m.federated.is_empty())
        .and_then(|m| {
            m.subsystem_ids()
                .into_iter()
                .next()
                .map(|s| (m.id.clone(), s))
        })
}
