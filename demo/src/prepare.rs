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
/// its subsystems, operators and auditors.
pub fn pki_plan(config: &Config) -> PkiPlan {
    PkiPlan {
        authority: config.federation.authority.clone(),
        members: config
            .members
            .iter()
            .map(|m| {
                (
                    m.id.clone(),
                    m.subsystems.iter().map(|s| s.id.clone()).collect(),
                )
            })
            .collect(),
        staff: config
            .members
            .iter()
            .filter_map(|m| m.admin.as_ref())
            .flat_map(|a| a.operators.iter().chain(&a.auditors).cloned())
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
    let layout = &config.federation.pki;
    let plan = pki_plan(config);
    if !pki::is_complete(layout, &plan) {
        let report = pki::complete(layout, &plan)?;
        done.notes.push(format!(
            "wrote {1} missing file(s) of the dev PKI in {0}",
            layout.root.display(),
            report.written.len()
        ));
    }
    // A revoked specimen of each member's gateway certificate, for trying revocation.
    let mut specimens = 0;
    for m in &config.members {
        if crate::crl::ensure_revoked_specimen(layout, &m.id, &config.federation.hosts)? {
            specimens += 1;
        }
    }
    if specimens > 0 {
        done.notes.push(format!(
            "issued and revoked {specimens} specimen certificate(s) (revoked-specimen.pem)"
        ));
    }
    if !authority::manifest_is_current(config) {
        let m = authority::sign_manifest(config, None)?;
        done.notes.push(format!(
            "signed manifest serial {} into {}",
            m.doc().serial,
            config.federation.manifest.display()
        ));
    }
    for target in &demo.targets {
        if let Some(server) = &target.server {
            // One cheap query per member.
            if !population::server_has_dataset(server, target.dataset).await?
                && let Some(rows) =
                    population::write_dataset_server(population, target.dataset, server).await?
            {
                done.notes.push(format!(
                    "seeded {}.{} with {rows} rows",
                    server.schema,
                    target.dataset.table()
                ));
            }
            if target.dataset == population::Dataset::Placements
                && population::ensure_change_table_server(server).await?
            {
                done.notes.push(format!(
                    "made {}.placement_changes, BP2MI's change table (empty)",
                    server.schema
                ));
            }
            continue;
        }
        let path = target.database.clone();
        if !path.exists() {
            let rows = population::write_dataset(population, target.dataset, &path).await?;
            done.notes
                .push(format!("seeded {} with {rows} rows", path.display()));
        }
        // A database seeded before the demo had a change table gets one.
        if target.dataset == population::Dataset::Placements
            && population::ensure_change_table(&path).await?
        {
            done.notes.push(format!(
                "added placement_changes, BP2MI's change table, to {}",
                path.display()
            ));
        }
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
/// (`kemlu.reports`, `dukcapil.residents`, …, and BP2MI's change table
/// `bp2mi.placement_changes`, empty) and each of its SQL bindings that reads a SQLite file —
/// those of provided contracts, and the change tables of its events — reads that schema
/// instead, through the binding's `schema` (PostgreSQL's `search_path`). The statements stay
/// exactly as written in the configuration.
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
            let adapters::AdapterSpec::Sql(sql) = &p.spec else {
                continue;
            };
            if !is_sqlite_file(sql) {
                continue;
            }
            let mut sql = sql.clone();
            sql.database = url.to_owned();
            sql.schema = Some(schema.clone());
            p.rebind(adapters::AdapterSpec::Sql(sql), &base_dir)
                .map_err(|e| PrepareError::Binding {
                    path: PathBuf::from(&config.source),
                    reason: format!("{} {}: {e}", m.id, p.contract),
                })?;
        }
        for e in &mut m.events {
            let Some(table) = &mut e.table else {
                continue;
            };
            if !is_sqlite_file(&table.spec) {
                continue;
            }
            let mut sql = table.spec.clone();
            sql.database = url.to_owned();
            sql.schema = Some(schema.clone());
            table
                .rebind(sql, &base_dir)
                .map_err(|err| PrepareError::Binding {
                    path: PathBuf::from(&config.source),
                    reason: format!("{} {} (members.events): {err}", m.id, e.contract),
                })?;
        }
    }
    Ok(())
}

/// Whether a binding reads a SQLite file: neither a server URL nor one from the environment.
fn is_sqlite_file(sql: &adapters::SqlSpec) -> bool {
    !sql.database.contains("://") && !sql.database.starts_with(adapters::ENV_PREFIX)
}

/// Ids of the subsystem to show in the demo's curl command: the first subsystem of the
/// first member that defines a federated contract.
pub fn demo_caller(config: &Config) -> Option<(MemberId, MemberId)> {
    config
        .members
        .iter()
        .find(|m| !m.federated.is_empty())
        .and_then(|m| {
            let fc = m.federated.first()?;
            m.subsystems
                .iter()
                .find(|s| s.grants.iter().any(|g| g.contract == fc.reference))
                .map(|s| (m.id.clone(), s.id.clone()))
        })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::sync::Arc;

    use serde_json::json;
    use sqlx::ConnectOptions;

    use super::*;

    /// The demo on the real PostgreSQL (`SIMPUL_TEST_POSTGRES_URL`), in a database made for
    /// the test and dropped after: the bindings are rebuilt for the server, the data is
    /// seeded there, and the rebuilt adapter answers from it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_demo_on_a_database_server_seeds_it_and_answers_from_it() {
        let Ok(server) = std::env::var("SIMPUL_TEST_POSTGRES_URL") else {
            eprintln!("skipped: SIMPUL_TEST_POSTGRES_URL is not set");
            return;
        };
        let name = format!(
            "simpul_demo_test_{}",
            contracts::ExchangeId::new().as_u128()
        );
        let options = sqlx::postgres::PgConnectOptions::from_str(&server).unwrap();
        let url = options.clone().database(&name).to_url_lossy().to_string();

        let dir = tempfile::tempdir().unwrap();
        let text = crate::EMBEDDED_CONFIG.replace("people = 100000", "people = 500");
        let catalog = contracts::embedded_catalog().unwrap();
        let mut config =
            Config::parse_with_fallback_catalog(&text, "test.toml", dir.path(), Some(catalog))
                .unwrap();
        let mut plan = DemoPlan::from_config(&config).unwrap();
        let dukcapil = MemberId::parse("ID:GOV:DUKCAPIL").unwrap();
        let citizenship = contracts::ContractRef::new("citizenship.status", "1");
        let on_file = config
            .provision(&dukcapil, &citizenship)
            .unwrap()
            .adapter
            .clone();

        let bp2mi = MemberId::parse("ID:GOV:BP2MI").unwrap();
        let change_table = |config: &Config| {
            let member = config.member(&bp2mi).unwrap();
            member.events[0].table.as_ref().unwrap().clone()
        };
        let table_on_file = change_table(&config);

        use_database_server(&mut config, &mut plan, &url).unwrap();
        let table_on_server = change_table(&config);
        assert!(
            !Arc::ptr_eq(&table_on_file.adapter, &table_on_server.adapter),
            "the change table's binding was rebuilt"
        );
        assert_eq!(table_on_server.spec.schema.as_deref(), Some("bp2mi"));
        let on_server = config
            .provision(&dukcapil, &citizenship)
            .unwrap()
            .adapter
            .clone();
        assert!(
            !Arc::ptr_eq(&on_file, &on_server),
            "the binding was rebuilt"
        );
        let target = plan.target(&dukcapil).unwrap();
        assert_eq!(target.server.as_ref().unwrap().schema, "dukcapil");

        let population = plan.population();
        let prepared = prepare(&config, &plan, &population).await.unwrap();
        assert!(
            prepared
                .notes
                .iter()
                .any(|n| n.contains("dukcapil.residents")),
            "{:?}",
            prepared.notes
        );
        assert!(
            prepared
                .notes
                .iter()
                .any(|n| n.contains("bp2mi.placement_changes")),
            "{:?}",
            prepared.notes
        );
        // BP2MI's change table is on the server, empty, and read there.
        let changes = table_on_server.adapter.changes(0, 100).await.unwrap();
        assert!(changes.is_empty(), "{changes:?}");
        let nik = population.sample_in_all_four();
        let answer = on_server.answer(&json!({ "nik": nik })).await.unwrap();
        assert_eq!(answer["registered"], true, "{answer}");
        // What `up` suggests asking is read back from the server's schemas.
        let sample = crate::population::read_sample(&plan).await.unwrap();
        for nik in [&sample.in_all_four, &sample.dukcapil_only] {
            let nik = nik.as_deref().expect("a sample from the server");
            let answer = on_server.answer(&json!({ "nik": nik })).await.unwrap();
            assert_eq!(answer["registered"], true, "{nik}: {answer}");
        }

        drop((on_server, config));
        let mut admin = options.database("postgres").connect().await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
    }
}
