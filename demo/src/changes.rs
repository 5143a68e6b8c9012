//! The demo's change generator: SISKOP2MI at work. Every few seconds it ends a placement or
//! starts one in BP2MI's database, as BP2MI's own system would, and writes the change's row
//! of `placement_changes`, BP2MI's change table, in the same transaction. BP2MI's gateway
//! reads that table (`[members.events.sql]`, docs/EVENTS.md), signs a `placement.changed`
//! event for each new row and delivers it to Kemlu: the generator never calls the gateway.

use std::path::PathBuf;
use std::time::Duration;

use gateway::config::Config;
use sqlx::{ConnectOptions, Connection, Row};
use tokio::sync::watch;

use crate::DemoPlan;

/// The event contract the generator's changes are emitted as.
const CONTRACT: &str = "placement.changed";

/// What the generator needs: the database it changes.
pub struct Changes {
    database: PathBuf,
}

/// Why there is no generator for this configuration.
#[derive(Debug, thiserror::Error)]
pub enum ChangesError {
    /// No member emits `placement.changed` from a change table, or its data is not what the
    /// demo has.
    #[error("no change generator: {0}")]
    Unavailable(String),
}

impl Changes {
    /// The generator of the member that emits `placement.changed` in `config` from a change
    /// table, on the SQLite database the demo seeded for it (which has the table).
    ///
    /// # Errors
    /// [`ChangesError::Unavailable`], saying what is missing.
    pub fn for_config(config: &Config, plan: &DemoPlan) -> Result<Changes, ChangesError> {
        let unavailable = |why: String| ChangesError::Unavailable(why);
        let (member, source) = config
            .members
            .iter()
            .find_map(|m| {
                m.events
                    .iter()
                    .find(|e| e.contract.id == CONTRACT)
                    .map(|e| (m, e))
            })
            .ok_or_else(|| unavailable(format!("no member emits {CONTRACT}")))?;
        if source.table.is_none() {
            return Err(unavailable(format!(
                "{} reads no change table for {CONTRACT} (no [members.events.sql])",
                member.id
            )));
        }
        let target = plan
            .target(&member.id)
            .filter(|t| t.server.is_none())
            .ok_or_else(|| {
                unavailable(format!("{}'s placements are not an SQLite file", member.id))
            })?;
        Ok(Changes {
            database: target.database.clone(),
        })
    }

    /// Until `shutdown`: every `every`, one placement ends or starts, with its row of the
    /// change table. A step that fails is logged and the next one tried.
    pub async fn run(self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            n += 1;
            let change = if n % 2 == 1 { "ended" } else { "started" };
            match self.step(change).await {
                Ok((placement, row)) => tracing::info!(
                    placement,
                    change,
                    row,
                    "SISKOP2MI recorded a placement change and its row of placement_changes"
                ),
                Err(e) => tracing::warn!(error = %e, "the demo's change generator skipped a step"),
            }
        }
    }

    /// One change and its row of the change table, in one transaction: the table holds a row
    /// exactly when the change was made. The placement's number and the row's.
    async fn step(&self, change: &str) -> Result<(String, i64), String> {
        let at = |e: sqlx::Error| format!("{}: {e}", self.database.display());
        let mut db = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&self.database)
            .busy_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(at)?;
        let mut tx = db.begin().await.map_err(at)?;
        let row = if change == "ended" {
            sqlx::query(
                "UPDATE placements SET status = 'completed', end_date = date('now')
                  WHERE id = (SELECT id FROM placements WHERE status = 'active' ORDER BY random() LIMIT 1)
              RETURNING id, date('now')",
            )
        } else {
            sqlx::query(
                "INSERT INTO placements (nik, country, agency, occupation, status, start_date)
                 SELECT nik, country, agency, occupation, 'active', date('now')
                   FROM placements WHERE status = 'completed' ORDER BY random() LIMIT 1
              RETURNING id, date('now')",
            )
        }
        .fetch_one(&mut *tx)
        .await
        .map_err(at)?;
        let placement: i64 = row.try_get(0).map_err(at)?;
        let on: String = row.try_get(1).map_err(at)?;
        let source: i64 = sqlx::query_scalar(
            "INSERT INTO placement_changes (placement, kind, changed_on) VALUES (?, ?, ?)
             RETURNING id",
        )
        .bind(placement.to_string())
        .bind(change)
        .bind(&on)
        .fetch_one(&mut *tx)
        .await
        .map_err(at)?;
        tx.commit().await.map_err(at)?;
        let _ = db.close().await;
        Ok((placement.to_string(), source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A placements database as the demo seeds it, with two placements (one active) and the
    /// empty change table.
    async fn seeded(dir: &std::path::Path) -> PathBuf {
        let path = dir.join("bp2mi.db");
        let mut db = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        for sql in [
            crate::population::PLACEMENTS_SCHEMA,
            crate::population::PLACEMENT_CHANGES_SCHEMA,
            "INSERT INTO placements VALUES \
             (1, '3171011701900001', 'MY', 'PT A', 'Caregiver', 'active', '2023-03-01', NULL), \
             (2, '3171015701900002', 'HK', 'PT B', 'Caregiver', 'completed', '2015-05-05', '2017-05-05')",
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut db)
                .await
                .unwrap();
        }
        db.close().await.unwrap();
        path
    }

    #[tokio::test]
    async fn each_change_writes_its_row_of_the_change_table_in_the_same_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let database = seeded(dir.path()).await;
        let changes = Changes {
            database: database.clone(),
        };
        assert_eq!(changes.step("ended").await.unwrap(), ("1".to_owned(), 1));
        assert_eq!(changes.step("started").await.unwrap(), ("3".to_owned(), 2));
        let mut db = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&database)
            .connect()
            .await
            .unwrap();
        let rows: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT id, placement, kind FROM placement_changes ORDER BY id")
                .fetch_all(&mut db)
                .await
                .unwrap();
        let row =
            |id: i64, placement: &str, kind: &str| (id, placement.to_owned(), kind.to_owned());
        assert_eq!(rows, [row(1, "1", "ended"), row(2, "3", "started")]);

        // No active placement left to end: the step fails and leaves no row behind.
        sqlx::query("UPDATE placements SET status = 'completed'")
            .execute(&mut db)
            .await
            .unwrap();
        assert!(changes.step("ended").await.is_err());
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM placement_changes")
            .fetch_one(&mut db)
            .await
            .unwrap();
        assert_eq!(n, 2);
    }
}
