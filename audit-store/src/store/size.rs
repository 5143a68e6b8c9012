//! How much room the store takes: for SQLite the database file (pages in use and free),
//! its write-ahead log and the journal in front of it; for PostgreSQL the `simpul_audit_*` tables with their indexes
//! and TOAST. Read on an interval or a metrics scrape, never on the append path.

use sqlx::Row;

use super::{Backend, Dialect, Engine, Journaled, Store};
use crate::AuditError;

/// The tables of a store, every log's.
const TABLES: [&str; 6] = [
    "simpul_audit_state",
    "simpul_audit_records",
    "simpul_audit_nodes",
    "simpul_audit_tree_heads",
    "simpul_audit_evidence",
    "simpul_audit_subjects",
];

impl Store {
    /// The bytes the store takes on its disk (every log it holds, evidence included).
    pub(crate) async fn size_bytes(&self) -> Result<u64, AuditError> {
        match &self.engine {
            Engine::Sqlite(b) => b.sqlite_size().await,
            Engine::Postgres(b) => b.postgres_size().await,
        }
    }
}

impl Backend<sqlx::Sqlite> {
    async fn sqlite_size(&self) -> Result<u64, AuditError> {
        debug_assert_eq!(self.dialect, Dialect::Sqlite);
        let e = |source| AuditError::Store {
            store: self.label.clone(),
            op: "measuring the store",
            source,
        };
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&self.pool)
            .await
            .map_err(e)?;
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&self.pool)
            .await
            .map_err(e)?;
        let file: String = sqlx::query("PRAGMA database_list")
            .fetch_all(&self.pool)
            .await
            .map_err(e)?
            .iter()
            .find(|row| row.try_get::<String, _>(1).is_ok_and(|name| name == "main"))
            .and_then(|row| row.try_get(2).ok())
            .unwrap_or_default();
        // The WAL holds what checkpoints have not yet moved into the file; it is disk used.
        let wal = match tokio::fs::metadata(format!("{file}-wal")).await {
            Ok(m) => m.len(),
            Err(_) => 0,
        };
        let main = u64::try_from(pages.saturating_mul(page_size)).unwrap_or(0);
        let journal = Journaled::bytes(std::path::Path::new(&file));
        Ok(main.saturating_add(wal).saturating_add(journal))
    }
}

impl Backend<sqlx::Postgres> {
    async fn postgres_size(&self) -> Result<u64, AuditError> {
        debug_assert_eq!(self.dialect, Dialect::Postgres);
        let mut total = 0u64;
        for table in TABLES {
            // `to_regclass` finds the table on the connection's search_path, as every
            // statement of the store does; NULL (size 0) if it is not there.
            let bytes: Option<i64> =
                sqlx::query_scalar("SELECT pg_total_relation_size(to_regclass($1))")
                    .bind(table)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|source| AuditError::Store {
                        store: self.label.clone(),
                        op: "measuring the store",
                        source,
                    })?;
            total = total.saturating_add(bytes.and_then(|b| u64::try_from(b).ok()).unwrap_or(0));
        }
        Ok(total)
    }
}
