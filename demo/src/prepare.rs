//! The demo's preparation: making whatever `simpul up` finds missing — the dev PKI, the
//! signed manifest, each member's synthetic data — and pointing the demo at a database
//! server instead of its SQLite files.

use std::path::PathBuf;

use contracts::MemberId;
use gateway::authority::{self, AuthorityError};
use gateway::config::{Config, ConfigError};

use crate::pki::{self, PkiError, PkiPlan};
use crate::plan::DemoPlan;
use crate::population::{self, Population, SeedError};

/// Why the demo could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The demo sections of the configuration are wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The PKI could not be made.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The manifest could not be made.
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    /// The synthetic data could not be written.
    #[error(transparent)]
    Seed(#[from] SeedError),
    /// A binding could not be pointed at the database server.
    #[error("{path}: {reason}")]
    Binding {
        /// The configuration file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// What `simpul pki init` issues for a configuration: the authority, and each member with
/// its subsystems.
pub fn pki_plan(config: &Config) -> PkiPlan {
    PkiPlan {
        authority: config.federation.authority.clone(),
        members: config
            .members
            .iter()
            .map(|m| (m.id.clone(), m.subsystem_ids()))
            .collect(),
        hosts: config.federation.hosts.clone(),
    }
}

/// What `simpul up` did to get ready.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Lines for the operator.
    pub notes: Vec<String>,
}

/// Makes the dev PKI, the manifest and the demo data where they are missing or out of date.
///
/// `population` is the one `demo.population()` gives; the caller generates it once and uses
/// it for its examples too.
pub async fn prepare(
    config: &Config,
    demo: &DemoPlan,
    population: &Population,
) -> Result<Prepared, PrepareError> {
    let mut done = Prepared::default();
    let layout = config.pki_layout();
    let plan = pki_plan(config);
    if !pki::is_complete(&layout, &plan) {
        let report = pki::complete(&layout, &plan)?;
        done.notes.push(format!(
            "wrote {1} missing file(s) of the dev PKI in {0}",
            layout.root.display(),
            report.written.len()
        ));
    }
    if !authority::manifest_is_current(config) {
        let m = authority::sign_manifest(config, None)?;
        done.notes.push(format!(
            "signed manifest serial {} into {}",
            m.doc().serial,
            config.manifest_path().display()
        ));
    }
    for target in &demo.targets {
        if let Some(server) = &target.server {
            // One cheap query per member.
            if population::server_has_dataset(server, target.dataset).await? {
                continue;
            }
            if let Some(rows) =
                population::write_dataset_server(population, target.dataset, server).await?
            {
                done.notes.push(format!(
                    "seeded {}.{} with {rows} rows",
                    server.schema,
                    target.dataset.table()
                ));
            }
            continue;
        }
        let path = target.database.clone();
        if path.exists() {
            continue;
        }
        let rows = population::write_dataset(population, target.dataset, &path).await?;
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
pub fn use_database_server(
    config: &mut Config,
    demo: &mut DemoPlan,
    url: &str,
) -> Result<(), PrepareError> {
    for target in &mut demo.targets {
        target.server = Some(population::ServerTarget {
            url: url.to_owned(),
            schema: member_schema(&target.member),
        });
    }
    let base_dir = config.base_dir.clone();
    for m in &mut config.members {
        let schema = member_schema(&m.id);
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
            adapters::build(&spec, &base_dir).map_err(|e| PrepareError::Binding {
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
