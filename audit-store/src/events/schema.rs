//! The event store's tables, made when a store is opened (the same words serve SQLite and
//! PostgreSQL), and the check that a PostgreSQL connection commits durably.

use sqlx::database::HasStatementCache;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Db, Dialect, EventStoreError, RowsAffected};

/// Serialises the schema set-up of replicas starting together on one PostgreSQL database:
/// `CREATE … IF NOT EXISTS` is not atomic there. Not the audit tables' lock, so neither
/// set-up waits for the other.
const SCHEMA_LOCK: &str = "SELECT pg_advisory_xact_lock(7421946320)";

/// The tables and indexes. `BIGINT` is SQLite's `INTEGER` affinity; `BOOLEAN` is stored as
/// 0 or 1 there.
const DDL: [&str; 15] = [
    "CREATE TABLE IF NOT EXISTS simpul_event_state (
        member TEXT PRIMARY KEY,
        outbox_seq BIGINT NOT NULL,
        inbox_seq BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS simpul_event_outbox (
        member TEXT NOT NULL, seq BIGINT NOT NULL, id TEXT NOT NULL, contract TEXT NOT NULL,
        version TEXT NOT NULL, subject TEXT NOT NULL, emitted_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL, jws TEXT NOT NULL, source BIGINT,
        PRIMARY KEY (member, seq))",
    "CREATE UNIQUE INDEX IF NOT EXISTS simpul_event_outbox_id
        ON simpul_event_outbox (member, id)",
    "CREATE UNIQUE INDEX IF NOT EXISTS simpul_event_outbox_source
        ON simpul_event_outbox (member, contract, source) WHERE source IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS simpul_event_outbox_contract
        ON simpul_event_outbox (member, contract, seq)",
    // The poller's resume point outlives the events it was read from (purged once expired
    // and delivered): without it a restart would read those change-table rows again.
    "CREATE TABLE IF NOT EXISTS simpul_event_sources (
        member TEXT NOT NULL, contract TEXT NOT NULL, last_source BIGINT NOT NULL,
        PRIMARY KEY (member, contract))",
    // `lease_until_ms` 0 is a free lease.
    "CREATE TABLE IF NOT EXISTS simpul_event_cursors (
        member TEXT NOT NULL, subscriber TEXT NOT NULL, contract TEXT NOT NULL,
        version TEXT NOT NULL, purpose TEXT NOT NULL, active BOOLEAN NOT NULL,
        delivered_seq BIGINT NOT NULL, attempts BIGINT NOT NULL,
        next_attempt_ms BIGINT NOT NULL, last_error TEXT, last_delivered_id TEXT,
        last_delivered_ms BIGINT, lease_owner TEXT, lease_until_ms BIGINT NOT NULL,
        PRIMARY KEY (member, subscriber, contract))",
    "CREATE TABLE IF NOT EXISTS simpul_event_notices (
        member TEXT NOT NULL, subscriber TEXT NOT NULL, contract TEXT NOT NULL,
        event_id TEXT NOT NULL, hash TEXT NOT NULL, seq BIGINT NOT NULL,
        PRIMARY KEY (member, subscriber, contract, event_id))",
    "CREATE TABLE IF NOT EXISTS simpul_event_inbox (
        member TEXT NOT NULL, seq BIGINT NOT NULL, provider TEXT NOT NULL,
        contract TEXT NOT NULL, version TEXT NOT NULL, event_id TEXT NOT NULL,
        subject TEXT NOT NULL, emitted_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL,
        jws TEXT NOT NULL, delivery_id TEXT NOT NULL, received_ms BIGINT NOT NULL,
        PRIMARY KEY (member, seq))",
    "CREATE UNIQUE INDEX IF NOT EXISTS simpul_event_inbox_event
        ON simpul_event_inbox (member, provider, event_id)",
    "CREATE INDEX IF NOT EXISTS simpul_event_inbox_received
        ON simpul_event_inbox (member, received_ms)",
    "CREATE TABLE IF NOT EXISTS simpul_event_expired (
        member TEXT NOT NULL, provider TEXT NOT NULL, contract TEXT NOT NULL,
        event_id TEXT NOT NULL, hash TEXT NOT NULL, noticed_ms BIGINT NOT NULL,
        PRIMARY KEY (member, provider, event_id))",
    "CREATE INDEX IF NOT EXISTS simpul_event_expired_noticed
        ON simpul_event_expired (member, noticed_ms)",
    "CREATE TABLE IF NOT EXISTS simpul_event_hooks (
        member TEXT NOT NULL, name TEXT NOT NULL, delivered_seq BIGINT NOT NULL,
        attempts BIGINT NOT NULL, next_attempt_ms BIGINT NOT NULL, last_error TEXT,
        last_delivered_ms BIGINT,
        PRIMARY KEY (member, name))",
    "INSERT INTO simpul_event_state (member, outbox_seq, inbox_seq) VALUES ($1, 0, 0)
        ON CONFLICT (member) DO NOTHING",
];

impl<DB> Db<DB>
where
    DB: Database + HasStatementCache,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB> + Default,
    DB::QueryResult: RowsAffected,
    for<'q> i64: Encode<'q, DB> + Type<DB> + Decode<'q, DB>,
    for<'q> String: Encode<'q, DB> + Type<DB> + Decode<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> bool: Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// Creates the tables if missing and the member's state row, in one transaction (under
    /// [`SCHEMA_LOCK`] on PostgreSQL).
    pub(super) async fn create(&self) -> Result<(), EventStoreError> {
        let op = "creating the tables";
        let mut conn = self.pool.acquire().await.map_err(self.err(op))?;
        let mut tx = self.begin(&mut conn, op).await?;
        if self.dialect == Dialect::Postgres {
            sqlx::query::<DB>(SCHEMA_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(self.err(op))?;
        }
        for ddl in DDL {
            let q = sqlx::query::<DB>(ddl);
            let q = if ddl.contains("$1") {
                q.bind(self.member.as_str())
            } else {
                q
            };
            q.execute(&mut *tx).await.map_err(self.err(op))?;
        }
        tx.commit().await.map_err(self.err(op))
    }

    /// Refuses a PostgreSQL connection whose `synchronous_commit` is off: COMMIT would return
    /// before the WAL is flushed, and an event acknowledged could be lost.
    pub(super) async fn check_durable_commits(&self) -> Result<(), EventStoreError> {
        let op = "reading synchronous_commit";
        let row = sqlx::query::<DB>("SHOW synchronous_commit")
            .fetch_one(&self.pool)
            .await
            .map_err(self.err(op))?;
        let setting: String = row.try_get(0).map_err(self.err(op))?;
        if setting == "off" {
            return Err(EventStoreError::Config {
                store: self.label.clone(),
                reason: "synchronous_commit is off for this connection, so events would not be \
                         durable when committed: set it to on (or stronger) for this database \
                         or role"
                    .into(),
            });
        }
        Ok(())
    }
}
