//! What this gateway witnessed of its partners' logs (PROTOCOL.md §5.4): the newest tree
//! head it holds from each member, and the evidence of every fork it caught.

use sqlx::database::HasStatementCache;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Backend, Store, to_i64};
use crate::AuditError;
use audit::SignedTreeHead;

/// The tables, per dialect (the types are the same words in both).
pub(super) const DDL: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS simpul_audit_witness (
        log TEXT NOT NULL, member TEXT NOT NULL, tree_size BIGINT NOT NULL,
        signed_at BIGINT NOT NULL, root_hash TEXT NOT NULL, jws TEXT NOT NULL,
        received_at BIGINT NOT NULL,
        PRIMARY KEY (log, member))",
    "CREATE TABLE IF NOT EXISTS simpul_audit_forks (
        log TEXT NOT NULL, member TEXT NOT NULL, detected_at BIGINT NOT NULL,
        reason TEXT NOT NULL, held TEXT NOT NULL, offered TEXT NOT NULL,
        PRIMARY KEY (log, member, detected_at, offered))",
];

/// The newest head held from one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witnessed {
    /// The member whose log it is.
    pub member: String,
    /// Its head, as it signed it.
    pub head: SignedTreeHead,
    /// When this gateway received it, Unix milliseconds.
    pub received_at: i64,
}

/// The evidence of a fork: two heads the member signed that no single append-only log can
/// have both produced.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Fork {
    /// The member whose log forked or shrank.
    pub member: String,
    /// When it was caught, Unix milliseconds.
    pub detected_at: i64,
    /// Why the two heads cannot both be true.
    pub reason: String,
    /// The head held before, its compact JWS.
    pub held: String,
    /// The head offered that contradicts it, its compact JWS.
    pub offered: String,
}

impl Store {
    pub(crate) async fn witnessed(&self) -> Result<Vec<Witnessed>, AuditError> {
        dispatch!(self, b => b.witnessed().await)
    }

    pub(crate) async fn keep_witnessed(&self, w: &Witnessed) -> Result<(), AuditError> {
        dispatch!(self, b => b.keep_witnessed(w).await)
    }

    pub(crate) async fn forks(&self) -> Result<Vec<Fork>, AuditError> {
        dispatch!(self, b => b.forks().await)
    }

    pub(crate) async fn record_fork(&self, fork: &Fork) -> Result<(), AuditError> {
        dispatch!(self, b => b.record_fork(fork).await)
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
    async fn witnessed(&self) -> Result<Vec<Witnessed>, AuditError> {
        let rows = sqlx::query::<DB>(
            "SELECT member, tree_size, signed_at, root_hash, jws, received_at
             FROM simpul_audit_witness WHERE log = $1 ORDER BY member",
        )
        .bind(self.log.clone())
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("reading witnessed heads"))?;
        let e = self.err("reading witnessed heads");
        rows.iter()
            .map(|row| {
                let member: String = row.try_get(0).map_err(&e)?;
                let size: i64 = row.try_get(1).map_err(&e)?;
                Ok(Witnessed {
                    head: SignedTreeHead {
                        member: member.clone(),
                        log: audit::EXCHANGE_LOG.to_owned(),
                        tree_size: u64::try_from(size).map_err(|_| {
                            self.corrupt(None, "a witnessed head has a negative size")
                        })?,
                        timestamp: row.try_get(2).map_err(&e)?,
                        root_hash: row.try_get(3).map_err(&e)?,
                        jws: row.try_get(4).map_err(&e)?,
                    },
                    member,
                    received_at: row.try_get(5).map_err(&e)?,
                })
            })
            .collect()
    }

    async fn keep_witnessed(&self, w: &Witnessed) -> Result<(), AuditError> {
        sqlx::query::<DB>(
            "INSERT INTO simpul_audit_witness
                (log, member, tree_size, signed_at, root_hash, jws, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (log, member) DO UPDATE SET tree_size = excluded.tree_size,
                signed_at = excluded.signed_at, root_hash = excluded.root_hash,
                jws = excluded.jws, received_at = excluded.received_at",
        )
        .bind(self.log.clone())
        .bind(w.member.clone())
        .bind(to_i64(w.head.tree_size))
        .bind(w.head.timestamp)
        .bind(w.head.root_hash.clone())
        .bind(w.head.jws.clone())
        .bind(w.received_at)
        .execute(&self.pool)
        .await
        .map_err(self.err("keeping a witnessed head"))?;
        Ok(())
    }

    async fn forks(&self) -> Result<Vec<Fork>, AuditError> {
        let rows = sqlx::query::<DB>(
            "SELECT member, detected_at, reason, held, offered FROM simpul_audit_forks
             WHERE log = $1 ORDER BY detected_at",
        )
        .bind(self.log.clone())
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("reading forks"))?;
        let e = self.err("reading forks");
        rows.iter()
            .map(|row| {
                Ok(Fork {
                    member: row.try_get(0).map_err(&e)?,
                    detected_at: row.try_get(1).map_err(&e)?,
                    reason: row.try_get(2).map_err(&e)?,
                    held: row.try_get(3).map_err(&e)?,
                    offered: row.try_get(4).map_err(&e)?,
                })
            })
            .collect()
    }

    async fn record_fork(&self, fork: &Fork) -> Result<(), AuditError> {
        sqlx::query::<DB>(
            "INSERT INTO simpul_audit_forks (log, member, detected_at, reason, held, offered)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(self.log.clone())
        .bind(fork.member.clone())
        .bind(fork.detected_at)
        .bind(fork.reason.clone())
        .bind(fork.held.clone())
        .bind(fork.offered.clone())
        .execute(&self.pool)
        .await
        .map_err(self.err("recording a fork"))?;
        Ok(())
    }
}
