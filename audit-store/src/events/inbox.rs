//! The subscribing side: events received, once each, in inbox seq order; expiry notices of
//! events that never arrived; and per local subscription a webhook cursor that can be rewound
//! for a redelivery.

use sqlx::database::HasStatementCache;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, QueryBuilder, Row, Type,
};

use super::{Db, EventStoreError, HookState, InboxEvent, Incoming, Received, RowsAffected};

/// How long an expiry notice received is kept.
const NOTICE_KEEP_MS: i64 = 30 * 86_400_000;

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
    pub(super) async fn receive(
        &self,
        events: &[Incoming],
    ) -> Result<Vec<Received>, EventStoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let op = "receiving events";
        let mut conn = self.pool.acquire().await.map_err(self.err(op))?;
        let mut tx = self.begin(&mut conn, op).await?;
        let (_, mut last_seq) = self.lock_state(&mut tx, op).await?;
        let first_free = last_seq + 1;
        let mut out = Vec::with_capacity(events.len());
        for ev in events {
            // Rows written earlier in this transaction are seen: a second copy of an event in
            // one delivery is a duplicate of the first.
            let row = sqlx::query::<DB>(
                "SELECT seq FROM simpul_event_inbox
                 WHERE member = $1 AND provider = $2 AND event_id = $3",
            )
            .bind(self.member.as_str())
            .bind(ev.provider.as_str())
            .bind(ev.event_id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(self.err("looking for an event received before"))?;
            if let Some(row) = row {
                out.push(Received::Duplicate {
                    seq: row.try_get(0).map_err(self.err(op))?,
                });
                continue;
            }
            last_seq += 1;
            sqlx::query::<DB>(
                "INSERT INTO simpul_event_inbox (member, seq, provider, contract, version,
                     event_id, subject, emitted_ms, expires_ms, jws, delivery_id, received_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(self.member.as_str())
            .bind(last_seq)
            .bind(ev.provider.as_str())
            .bind(ev.contract.as_str())
            .bind(ev.version.as_str())
            .bind(ev.event_id.as_str())
            .bind(ev.subject.as_str())
            .bind(ev.emitted_ms)
            .bind(ev.expires_ms)
            .bind(ev.jws.as_str())
            .bind(ev.delivery_id.as_str())
            .bind(ev.received_ms)
            .execute(&mut *tx)
            .await
            .map_err(self.err("storing a received event"))?;
            out.push(Received::New { seq: last_seq });
        }
        if last_seq >= first_free {
            sqlx::query::<DB>("UPDATE simpul_event_state SET inbox_seq = $2 WHERE member = $1")
                .bind(self.member.as_str())
                .bind(last_seq)
                .execute(&mut *tx)
                .await
                .map_err(self.err("advancing the inbox seq"))?;
        }
        tx.commit()
            .await
            .map_err(self.err("committing received events"))?;
        Ok(out)
    }

    pub(super) async fn notice_expired(
        &self,
        provider: &str,
        contract: &str,
        event_id: &str,
        hash: &str,
        now_ms: i64,
    ) -> Result<bool, EventStoreError> {
        let op = "keeping an expiry notice";
        let mut conn = self.pool.acquire().await.map_err(self.err(op))?;
        let mut tx = self.begin(&mut conn, op).await?;
        // The lock `receive` takes: the event cannot arrive between the check and the insert.
        self.lock_state(&mut tx, op).await?;
        let added = sqlx::query::<DB>(
            "INSERT INTO simpul_event_expired
                 (member, provider, contract, event_id, hash, noticed_ms)
             SELECT $1, $2, $3, $4, $5, $6
             WHERE NOT EXISTS (SELECT 1 FROM simpul_event_inbox
                               WHERE member = $1 AND provider = $2 AND event_id = $4)
             ON CONFLICT (member, provider, event_id) DO NOTHING",
        )
        .bind(self.member.as_str())
        .bind(provider)
        .bind(contract)
        .bind(event_id)
        .bind(hash)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(self.err(op))?
        .rows_affected();
        tx.commit()
            .await
            .map_err(self.err("committing an expiry notice"))?;
        Ok(added > 0)
    }

    pub(super) async fn inbox(
        &self,
        provider: Option<&str>,
        contract: Option<&str>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<InboxEvent>, EventStoreError> {
        let op = "reading the inbox";
        let mut q = QueryBuilder::<DB>::new(
            "SELECT seq, provider, contract, version, event_id, subject, emitted_ms, expires_ms, \
             received_ms, jws FROM simpul_event_inbox WHERE member = ",
        );
        q.push_bind(self.member.as_str());
        q.push(" AND seq > ").push_bind(after_seq);
        if let Some(provider) = provider {
            q.push(" AND provider = ").push_bind(provider);
        }
        if let Some(contract) = contract {
            q.push(" AND contract = ").push_bind(contract);
        }
        q.push(" ORDER BY seq LIMIT ").push_bind(i64::from(limit));
        let rows = q
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(self.err(op))?;
        self.read_all(&rows, op, |c| {
            Ok(InboxEvent {
                seq: c.next()?,
                provider: c.next()?,
                contract: c.next()?,
                version: c.next()?,
                event_id: c.next()?,
                subject: c.next()?,
                emitted_ms: c.next()?,
                expires_ms: c.next()?,
                received_ms: c.next()?,
                jws: c.next()?,
            })
        })
    }

    /// The oldest seq in the inbox (the next to be given when it is empty) and the last seq
    /// given, read inside `tx` under the state row's lock.
    async fn inbox_bounds(
        &self,
        tx: &mut sqlx::Transaction<'_, DB>,
        op: &'static str,
    ) -> Result<(i64, i64), EventStoreError> {
        let (_, last_seq) = self.lock_state(tx, op).await?;
        let row = sqlx::query::<DB>("SELECT MIN(seq) FROM simpul_event_inbox WHERE member = $1")
            .bind(self.member.as_str())
            .fetch_one(&mut **tx)
            .await
            .map_err(self.err(op))?;
        let oldest: Option<i64> = row.try_get(0).map_err(self.err(op))?;
        Ok((oldest.unwrap_or(last_seq + 1), last_seq))
    }

    pub(super) async fn inbox_seq_before(&self, ts_ms: i64) -> Result<i64, EventStoreError> {
        let op = "finding where a redelivery starts";
        let mut conn = self.pool.acquire().await.map_err(self.err(op))?;
        let mut tx = self.begin(&mut conn, op).await?;
        let row = sqlx::query::<DB>(
            "SELECT MAX(seq) FROM simpul_event_inbox WHERE member = $1 AND received_ms < $2",
        )
        .bind(self.member.as_str())
        .bind(ts_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(self.err(op))?;
        let before: Option<i64> = row.try_get(0).map_err(self.err(op))?;
        let seq = match before {
            Some(seq) => seq,
            // Nothing stored was received before: everything stored is redelivered, from
            // the lowest position `rewind` takes (0 when nothing was purged).
            None => self.inbox_bounds(&mut tx, op).await?.0 - 1,
        };
        tx.commit().await.map_err(self.err(op))?;
        Ok(seq)
    }

    /// The state of one hook, read on `exec`.
    async fn hook<'c, E>(&self, exec: E, name: &str) -> Result<Option<HookState>, EventStoreError>
    where
        E: sqlx::Executor<'c, Database = DB>,
    {
        let op = "reading a webhook cursor";
        let row = sqlx::query::<DB>(
            "SELECT delivered_seq, attempts, next_attempt_ms, last_error, last_delivered_ms
             FROM simpul_event_hooks WHERE member = $1 AND name = $2",
        )
        .bind(self.member.as_str())
        .bind(name)
        .fetch_optional(exec)
        .await
        .map_err(self.err(op))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut c = self.cols(&row, op);
        Ok(Some(HookState {
            name: name.to_owned(),
            delivered_seq: c.next()?,
            attempts: self.unsigned("a webhook cursor's attempts", c.next()?)?,
            next_attempt_ms: c.next()?,
            last_error: c.next()?,
            last_delivered_ms: c.next()?,
        }))
    }

    pub(super) async fn hooks(&self, names: &[String]) -> Result<Vec<HookState>, EventStoreError> {
        let op = "creating webhook cursors";
        let mut conn = self.pool.acquire().await.map_err(self.err(op))?;
        let mut tx = self.begin(&mut conn, op).await?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            sqlx::query::<DB>(
                "INSERT INTO simpul_event_hooks
                     (member, name, delivered_seq, attempts, next_attempt_ms)
                 VALUES ($1, $2, 0, 0, 0)
                 ON CONFLICT (member, name) DO NOTHING",
            )
            .bind(self.member.as_str())
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .map_err(self.err(op))?;
            let state = self
                .hook(&mut *tx, name)
                .await?
                .ok_or_else(|| self.corrupt("a webhook cursor", format!("{name} vanished")))?;
            out.push(state);
        }
        tx.commit().await.map_err(self.err(op))?;
        Ok(out)
    }

    pub(super) async fn hook_delivered(
        &self,
        name: &str,
        through_seq: i64,
        now_ms: i64,
    ) -> Result<(), EventStoreError> {
        let updated = sqlx::query::<DB>(
            "UPDATE simpul_event_hooks SET
                 delivered_seq = CASE WHEN delivered_seq < $3 THEN $3 ELSE delivered_seq END,
                 attempts = 0, last_error = NULL, next_attempt_ms = $4, last_delivered_ms = $4
             WHERE member = $1 AND name = $2",
        )
        .bind(self.member.as_str())
        .bind(name)
        .bind(through_seq)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(self.err("recording a forward"))?
        .rows_affected();
        if updated == 0 {
            return Err(self.unknown_hook(name));
        }
        Ok(())
    }

    pub(super) async fn hook_failed(
        &self,
        name: &str,
        error: &str,
        next_attempt_ms: i64,
    ) -> Result<(), EventStoreError> {
        let updated = sqlx::query::<DB>(
            "UPDATE simpul_event_hooks SET attempts = attempts + 1, last_error = $3,
                 next_attempt_ms = $4
             WHERE member = $1 AND name = $2",
        )
        .bind(self.member.as_str())
        .bind(name)
        .bind(error)
        .bind(next_attempt_ms)
        .execute(&self.pool)
        .await
        .map_err(self.err("recording a failed forward"))?
        .rows_affected();
        if updated == 0 {
            return Err(self.unknown_hook(name));
        }
        Ok(())
    }

    pub(super) async fn rewind(&self, name: &str, to_seq: i64) -> Result<(), EventStoreError> {
        let op = "rewinding a webhook cursor";
        let mut conn = self.pool.acquire().await.map_err(self.err(op))?;
        let mut tx = self.begin(&mut conn, op).await?;
        // Under the state row's lock, which `purge_inbox` takes too: the check holds until
        // the new position is committed.
        let (oldest, newest) = self.inbox_bounds(&mut tx, op).await?;
        if to_seq < oldest - 1 {
            return Err(EventStoreError::RewindPurged {
                store: self.label.clone(),
                hook: name.to_owned(),
                to_seq,
                oldest,
            });
        }
        if to_seq > newest {
            return Err(EventStoreError::RewindAhead {
                store: self.label.clone(),
                hook: name.to_owned(),
                to_seq,
                newest,
            });
        }
        let updated = sqlx::query::<DB>(
            "UPDATE simpul_event_hooks SET delivered_seq = $3, attempts = 0, next_attempt_ms = 0
             WHERE member = $1 AND name = $2",
        )
        .bind(self.member.as_str())
        .bind(name)
        .bind(to_seq)
        .execute(&mut *tx)
        .await
        .map_err(self.err(op))?
        .rows_affected();
        if updated == 0 {
            return Err(self.unknown_hook(name));
        }
        tx.commit().await.map_err(self.err(op))
    }

    pub(super) async fn purge_inbox(
        &self,
        now_ms: i64,
        hooks: &[String],
    ) -> Result<u64, EventStoreError> {
        let op = "purging the inbox";
        let mut conn = self.pool.acquire().await.map_err(self.err(op))?;
        let mut tx = self.begin(&mut conn, op).await?;
        self.lock_state(&mut tx, op).await?;
        // The lowest position of the hooks named; one not made yet has delivered nothing.
        let mut passed = i64::MAX;
        for name in hooks {
            let position = self
                .hook(&mut *tx, name)
                .await?
                .map_or(0, |h| h.delivered_seq);
            passed = passed.min(position);
        }
        let gone = sqlx::query::<DB>(
            "DELETE FROM simpul_event_inbox WHERE member = $1 AND expires_ms <= $2 AND seq <= $3",
        )
        .bind(self.member.as_str())
        .bind(now_ms)
        .bind(passed)
        .execute(&mut *tx)
        .await
        .map_err(self.err(op))?
        .rows_affected();
        sqlx::query::<DB>("DELETE FROM simpul_event_expired WHERE member = $1 AND noticed_ms < $2")
            .bind(self.member.as_str())
            .bind(now_ms.saturating_sub(NOTICE_KEEP_MS))
            .execute(&mut *tx)
            .await
            .map_err(self.err("purging old expiry notices"))?;
        tx.commit().await.map_err(self.err(op))?;
        Ok(gone)
    }
}
