//! Two NIKs worth asking about, read from the databases the demo's members answer from —
//! not recomputed from `[data]`: a database seeded under another seed, or edited by hand,
//! still yields people it holds.

use sqlx::{ConnectOptions, Connection, PgConnection, Row, SqliteConnection};

use super::config::Dataset;
use super::sqlite::SeedError;
use crate::plan::{DemoPlan, SeedTarget};

/// Candidates looked at, per question; the demo's data has thousands of each.
const CANDIDATES: i64 = 500;

/// What `simpul up` suggests asking.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// A living citizen registered at Dukcapil, placed by BP2MI, insured at BPJS
    /// Ketenagakerjaan and reported to Kemlu: every part of the profile has something.
    pub in_all_four: Option<String>,
    /// A living citizen registered at Dukcapil and in no other member's data.
    pub dukcapil_only: Option<String>,
}

/// One seeded database, opened for reading.
enum Db {
    File(SqliteConnection),
    Server(PgConnection, String),
}

impl Db {
    async fn open(target: &SeedTarget) -> Result<Option<Db>, sqlx::Error> {
        match &target.server {
            None => {
                if !target.database.exists() {
                    return Ok(None);
                }
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&target.database)
                    .read_only(true);
                Ok(Some(Db::File(options.connect().await?)))
            }
            Some(server) if server.url.starts_with("postgres") => Ok(Some(Db::Server(
                PgConnection::connect(&server.url).await?,
                server.schema.clone(),
            ))),
            // The demo's `up` seeds SQLite files or PostgreSQL only.
            Some(_) => Ok(None),
        }
    }

    fn table(&self, dataset: Dataset) -> String {
        match self {
            Db::File(_) => dataset.table().to_owned(),
            Db::Server(_, schema) => format!("{schema}.{}", dataset.table()),
        }
    }

    /// The first [`CANDIDATES`] NIKs of `dataset` whose rows pass `filter` (SQL over the
    /// table's own columns).
    async fn niks(&mut self, dataset: Dataset, filter: &str) -> Result<Vec<String>, sqlx::Error> {
        // Safe to assert: the table and filter are constants of this module, the schema a
        // checked identifier (`member_schema`).
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT nik FROM {} WHERE {filter} ORDER BY nik LIMIT {CANDIDATES}",
            self.table(dataset)
        ));
        match self {
            Db::File(c) => sqlx::query(sql)
                .fetch_all(c)
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect(),
            Db::Server(c, _) => sqlx::query(sql)
                .fetch_all(c)
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect(),
        }
    }

    /// Whether `dataset` has a row of `nik` that passes `filter`.
    async fn holds(
        &mut self,
        dataset: Dataset,
        nik: &str,
        filter: &str,
    ) -> Result<bool, sqlx::Error> {
        let table = self.table(dataset);
        // Safe to assert: as above; the NIK is bound.
        Ok(match self {
            Db::File(c) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT 1 FROM {table} WHERE nik = ? AND {filter} LIMIT 1"
            )))
            .bind(nik)
            .fetch_optional(c)
            .await?
            .is_some(),
            Db::Server(c, _) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT 1 FROM {table} WHERE nik = $1 AND {filter} LIMIT 1"
            )))
            .bind(nik)
            .fetch_optional(c)
            .await?
            .is_some(),
        })
    }
}

/// A resident who is alive and a citizen.
const LIVING_CITIZEN: &str = "NOT deceased AND citizenship = 'WNI'";
/// Any row.
const ANY: &str = "1 = 1";

/// Reads a [`Sample`] from the seeded databases of `plan`; a question the databases cannot
/// answer (a dataset not seeded, nobody who fits) is `None`.
///
/// # Errors
/// A database that exists cannot be read.
pub async fn read_sample(plan: &DemoPlan) -> Result<Sample, SeedError> {
    let mut dbs = Vec::new();
    for dataset in [
        Dataset::Residents,
        Dataset::Placements,
        Dataset::Participants,
        Dataset::Reports,
    ] {
        let Some(target) = plan.targets.iter().find(|t| t.dataset == dataset) else {
            return Ok(Sample::default());
        };
        let err = |source| SeedError::Server {
            table: format!("{} of {}", dataset.table(), target.member),
            source,
        };
        match Db::open(target).await.map_err(err)? {
            Some(db) => dbs.push((dataset, db, target.member.to_string())),
            None => return Ok(Sample::default()),
        }
    }
    let [
        (_, residents, r),
        (_, placements, p),
        (_, participants, i),
        (_, reports, k),
    ] = &mut dbs[..]
    else {
        return Ok(Sample::default());
    };
    let failed = |member: &str, dataset: Dataset| {
        let table = format!("{} of {member}", dataset.table());
        move |source| SeedError::Server { table, source }
    };
    // Insured is the narrowest of the three others: start there.
    let mut in_all_four = None;
    for nik in participants
        .niks(Dataset::Participants, ANY)
        .await
        .map_err(failed(i, Dataset::Participants))?
    {
        if residents
            .holds(Dataset::Residents, &nik, LIVING_CITIZEN)
            .await
            .map_err(failed(r, Dataset::Residents))?
            && placements
                .holds(Dataset::Placements, &nik, ANY)
                .await
                .map_err(failed(p, Dataset::Placements))?
            && reports
                .holds(Dataset::Reports, &nik, ANY)
                .await
                .map_err(failed(k, Dataset::Reports))?
        {
            in_all_four = Some(nik);
            break;
        }
    }
    let mut dukcapil_only = None;
    for nik in residents
        .niks(Dataset::Residents, LIVING_CITIZEN)
        .await
        .map_err(failed(r, Dataset::Residents))?
    {
        let elsewhere = placements
            .holds(Dataset::Placements, &nik, ANY)
            .await
            .map_err(failed(p, Dataset::Placements))?
            || participants
                .holds(Dataset::Participants, &nik, ANY)
                .await
                .map_err(failed(i, Dataset::Participants))?
            || reports
                .holds(Dataset::Reports, &nik, ANY)
                .await
                .map_err(failed(k, Dataset::Reports))?;
        if !elsewhere {
            dukcapil_only = Some(nik);
            break;
        }
    }
    Ok(Sample {
        in_all_four,
        dukcapil_only,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Population, SeedConfig, generate, write_dataset};
    use super::*;
    use contracts::MemberId;

    /// The demo's four targets, in `dir`.
    fn plan(dir: &std::path::Path, seed: u64) -> DemoPlan {
        let members = [
            "ID:GOV:DUKCAPIL",
            "ID:GOV:BP2MI",
            "ID:GOV:BPJSTK",
            "ID:GOV:KEMLU",
        ];
        DemoPlan {
            data: SeedConfig {
                seed,
                people: 2_000,
                ..SeedConfig::default()
            },
            targets: Dataset::ALL
                .into_iter()
                .zip(members)
                .map(|(dataset, m)| SeedTarget {
                    member: MemberId::parse(m).unwrap(),
                    dataset,
                    database: dir.join(format!("{}.db", dataset.table())),
                    server: None,
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn the_sample_is_read_from_the_databases_not_from_the_configured_seed() {
        let dir = tempfile::tempdir().unwrap();
        // Seeded under one seed, then the configuration says another.
        let seeded = plan(dir.path(), 7);
        let pop = generate(&seeded.data);
        let reread = plan(dir.path(), 8);
        assert_eq!(
            read_sample(&reread).await.unwrap(),
            Sample::default(),
            "nothing seeded yet"
        );
        for t in &seeded.targets {
            write_dataset(&pop, t.dataset, &t.database).await.unwrap();
        }
        let other = generate(&reread.data);
        let sample = read_sample(&reread).await.unwrap();
        let all_four = sample.in_all_four.expect("someone in all four");
        let only = sample.dukcapil_only.expect("someone only at Dukcapil");
        let resident = |p: &Population, nik: &str| p.residents.iter().position(|r| r.nik == nik);
        let person = resident(&pop, &all_four).expect("a resident of the seeded data");
        assert!(pop.placements.iter().any(|p| p.person == person));
        assert!(pop.participants.iter().any(|p| p.person == person));
        assert!(pop.reports.iter().any(|r| r.nik == all_four));
        let r = &pop.residents[person];
        assert!(!r.deceased && !r.wna);
        let person = resident(&pop, &only).expect("a resident of the seeded data");
        assert!(!pop.placements.iter().any(|p| p.person == person));
        assert!(!pop.participants.iter().any(|p| p.person == person));
        assert!(!pop.reports.iter().any(|r| r.nik == only));
        // Not the configured seed's people.
        assert!(resident(&other, &all_four).is_none() || other.sample_in_all_four() != all_four);
    }
}
