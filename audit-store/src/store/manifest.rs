//! The highest manifest serial this member's gateway has adopted, kept with its audit log so
//! that losing the serial file beside the manifest never lowers the bar a manifest must
//! clear (PROTOCOL.md §2.3): a gateway refuses any manifest older than the highest serial
//! held in either place.

use sqlx::database::HasStatementCache;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Backend, Store, to_i64};
use crate::AuditError;

/// The table (the types are the same words in both dialects).
pub(super) const DDL: [&str; 1] = ["CREATE TABLE IF NOT EXISTS simpul_audit_manifest (
        log TEXT NOT NULL PRIMARY KEY, serial BIGINT NOT NULL, adopted_at BIGINT NOT NULL)"];

impl Store {
    pub(crate) async fn held_manifest_serial(&self) -> Result<Option<u64>, AuditError> {
        dispatch!(self, b => b.held_manifest_serial().await)
    }

    pub(crate) async fn hold_manifest_serial(
        &self,
        serial: u64,
        adopted_at: i64,
    ) -> Result<(), AuditError> {
        dispatch!(self, b => b.hold_manifest_serial(serial, adopted_at).await)
    }
}

impl<DB> Backend<DB>
where
    DB: Database + HasStatementCache,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB> + Default,
    for<'q> i64: Encode<'q, DB> + Type<DB> + Decode<'q, DB>,
    for<'q> String: Encode<'q, DB> + Type<DB> + Decode<'q, DB>,
    for<'q> Option<String>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Type<DB> + Decode<'q, DB>,
    for<'q> Option<Vec<u8>>: Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    async fn held_manifest_serial(&self) -> Result<Option<u64>, AuditError> {
        let row = sqlx::query::<DB>("SELECT serial FROM simpul_audit_manifest WHERE log = $1")
            .bind(self.log.clone())
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err("reading the held manifest serial"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let serial: i64 = row
            .try_get(0)
            .map_err(self.err("reading the held manifest serial"))?;
        u64::try_from(serial)
            .map(Some)
            .map_err(|_| self.corrupt(None, "the held manifest serial is negative"))
    }

    /// Raises the held serial to `serial`; never lowers it.
    async fn hold_manifest_serial(&self, serial: u64, adopted_at: i64) -> Result<(), AuditError> {
        sqlx::query::<DB>(
            "INSERT INTO simpul_audit_manifest (log, serial, adopted_at) VALUES ($1, $2, $3)
             ON CONFLICT (log) DO UPDATE SET
                adopted_at = CASE WHEN excluded.serial > simpul_audit_manifest.serial
                    THEN excluded.adopted_at ELSE simpul_audit_manifest.adopted_at END,
                serial = CASE WHEN excluded.serial > simpul_audit_manifest.serial
                    THEN excluded.serial ELSE simpul_audit_manifest.serial END",
        )
        .bind(self.log.clone())
        .bind(to_i64(serial))
        .bind(adopted_at)
        .execute(&self.pool)
        .await
        .map_err(self.err("keeping the held manifest serial"))?;
        Ok(())
    }
}
