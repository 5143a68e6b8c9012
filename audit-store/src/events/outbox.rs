//! The emitting side: events in seq order, and per subscriber a delivery cursor that is
//! leased to one replica at a time, retried, and moved past events that expired undelivered
//! (each becoming a notice the subscriber is sent).

use contracts::canonical::sha256_b64url;
use sqlx::database::HasStatementCache;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{
    CursorState, Db, Dialect, Due, Emitted, EventStoreError, NewEvent, Notice, OutEvent,
    RowsAffected, Subscription,
};

/// Expired events read per statement by `expire`.
const EXPIRE_CHUNK: i64 = 500;

/// The active cursors of member `$1` with work, whose next attempt is due and whose lease is
/// free or expired at `$4` (`k` is the cursor).
macro_rules! due_cursors {
    () => {
        "k.member = $1 AND k.active AND k.next_attempt_ms <= $4 AND k.lease_until_ms <= $4
         AND (EXISTS (SELECT 1 FROM simpul_event_outbox AS e
                      WHERE e.member = k.member AND e.contract = k.contract
                        AND e.seq > k.delivered_seq)
              OR EXISTS (SELECT 1 FROM simpul_event_notices AS n
                         WHERE n.member = k.member AND n.subscriber = k.subscriber
                           AND n.contract = k.contract))"
    };
}

/// Leases the due cursors to `$2` until `$3`. SQLite has one writer at a time, so one
/// UPDATE is atomic; the cursor is aliased `k` by a subquery on its key.
const DUE_SQLITE: &str = concat!(
    "UPDATE simpul_event_cursors SET lease_owner = $2, lease_until_ms = $3
     WHERE member = $1 AND (subscriber, contract) IN (
         SELECT k.subscriber, k.contract FROM simpul_event_cursors AS k WHERE ",
    due_cursors!(),
    ")
     RETURNING subscriber, contract, version, purpose, delivered_seq, attempts"
);

/// Leases the due cursors to `$2` until `$3`. Replicas calling at once: each locks the
/// cursors it picks and skips those another has locked; one that picks a cursor just leased
/// and committed by another rechecks it (READ COMMITTED) and finds the lease taken.
const DUE_POSTGRES: &str = concat!(
    "UPDATE simpul_event_cursors AS c SET lease_owner = $2, lease_until_ms = $3
     FROM (SELECT k.subscriber, k.contract FROM simpul_event_cursors AS k WHERE ",
    due_cursors!(),
    " FOR UPDATE OF k SKIP LOCKED) AS d
     WHERE c.member = $1 AND c.subscriber = d.subscriber AND c.contract = d.contract
     RETURNING c.subscriber, c.contract, c.version, c.purpose, c.delivered_seq, c.attempts"
);

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
    pub(super) async fn emit_batch(
        &self,
        events: &[NewEvent],
    ) -> Result<Vec<Emitted>, EventStoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let op = "emitting events";
        let mut conn = self.pool.acquire().await.map_err(self.err(op))?;
        let mut tx = self.begin(&mut conn, op).await?;
        let (mut last_seq, _) = self.lock_state(&mut tx, op).await?;
        let first_free = last_seq + 1;
        let mut out = Vec::with_capacity(events.len());
        for ev in events {
            // Rows written earlier in this transaction are seen: a second event of one
            // source, or of one id, in a batch is the first one's.
            if let Some(existing) = self.stored_as(&mut tx, ev).await? {
                out.push(existing);
                continue;
            }
            last_seq += 1;
            self.store_event(&mut tx, ev, last_seq).await?;
            out.push(Emitted::New { seq: last_seq });
        }
        if last_seq >= first_free {
            sqlx::query::<DB>("UPDATE simpul_event_state SET outbox_seq = $2 WHERE member = $1")
                .bind(self.member.as_str())
                .bind(last_seq)
                .execute(&mut *tx)
                .await
                .map_err(self.err("advancing the outbox seq"))?;
        }
        tx.commit().await.map_err(self.err("committing events"))?;
        Ok(out)
    }

    /// The event stored already in `ev`'s place, if any: one of the same contract and
    /// source, or else one of the same id.
    async fn stored_as(
        &self,
        tx: &mut sqlx::Transaction<'_, DB>,
        ev: &NewEvent,
    ) -> Result<Option<Emitted>, EventStoreError> {
        if let Some(source) = ev.source {
            let op = "looking for an event of the same source";
            let row = sqlx::query::<DB>(
                "SELECT seq, id FROM simpul_event_outbox
                 WHERE member = $1 AND contract = $2 AND source = $3",
            )
            .bind(self.member.as_str())
            .bind(ev.contract.as_str())
            .bind(source)
            .fetch_optional(&mut **tx)
            .await
            .map_err(self.err(op))?;
            if let Some(row) = row {
                let mut c = self.cols(&row, op);
                return Ok(Some(Emitted::Existing {
                    seq: c.next()?,
                    id: c.next()?,
                }));
            }
        }
        let op = "looking for an event of the same id";
        let row =
            sqlx::query::<DB>("SELECT seq FROM simpul_event_outbox WHERE member = $1 AND id = $2")
                .bind(self.member.as_str())
                .bind(ev.id.as_str())
                .fetch_optional(&mut **tx)
                .await
                .map_err(self.err(op))?;
        row.map(|row| {
            Ok(Emitted::Existing {
                seq: self.cols(&row, op).next()?,
                id: ev.id.clone(),
            })
        })
        .transpose()
    }

    /// Writes `ev` with `seq`, and its source as the contract's last when it is higher.
    async fn store_event(
        &self,
        tx: &mut sqlx::Transaction<'_, DB>,
        ev: &NewEvent,
        seq: i64,
    ) -> Result<(), EventStoreError> {
        sqlx::query::<DB>(
            "INSERT INTO simpul_event_outbox (member, seq, id, contract, version, subject,
                 emitted_ms, expires_ms, jws, source)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(self.member.as_str())
        .bind(seq)
        .bind(ev.id.as_str())
        .bind(ev.contract.as_str())
        .bind(ev.version.as_str())
        .bind(ev.subject.as_str())
        .bind(ev.emitted_ms)
        .bind(ev.expires_ms)
        .bind(ev.jws.as_str())
        .bind(ev.source)
        .execute(&mut **tx)
        .await
        .map_err(self.err("storing an event"))?;
        if let Some(source) = ev.source {
            sqlx::query::<DB>(
                "INSERT INTO simpul_event_sources (member, contract, last_source)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (member, contract) DO UPDATE SET last_source =
                     CASE WHEN excluded.last_source > simpul_event_sources.last_source
                          THEN excluded.last_source ELSE simpul_event_sources.last_source END",
            )
            .bind(self.member.as_str())
            .bind(ev.contract.as_str())
            .bind(source)
            .execute(&mut **tx)
            .await
            .map_err(self.err("keeping the last source"))?;
        }
        Ok(())
    }

    pub(super) async fn last_source(&self, contract: &str) -> Result<Option<i64>, EventStoreError> {
        let op = "reading the last source";
        let row = sqlx::query::<DB>(
            "SELECT last_source FROM simpul_event_sources WHERE member = $1 AND contract = $2",
        )
        .bind(self.member.as_str())
        .bind(contract)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.err(op))?;
        row.map(|r| r.try_get::<i64, _>(0).map_err(self.err(op)))
            .transpose()
    }

    pub(super) async fn subscribe(&self, subs: &[Subscription]) -> Result<(), EventStoreError> {
        let op = "subscribing";
        let mut conn = self.pool.acquire().await.map_err(self.err(op))?;
        let mut tx = self.begin(&mut conn, op).await?;
        // Under the state row's lock, no event is being emitted: a new cursor's position is
        // exactly the last event stored, and every event after it is delivered.
        let (last_seq, _) = self.lock_state(&mut tx, op).await?;
        sqlx::query::<DB>(
            "UPDATE simpul_event_cursors SET active = FALSE WHERE member = $1 AND active",
        )
        .bind(self.member.as_str())
        .execute(&mut *tx)
        .await
        .map_err(self.err("deactivating cursors"))?;
        for s in subs {
            sqlx::query::<DB>(
                "INSERT INTO simpul_event_cursors (member, subscriber, contract, version, purpose,
                     active, delivered_seq, attempts, next_attempt_ms, lease_until_ms)
                 VALUES ($1, $2, $3, $4, $5, TRUE, $6, 0, 0, 0)
                 ON CONFLICT (member, subscriber, contract) DO UPDATE SET
                     version = excluded.version, purpose = excluded.purpose, active = TRUE",
            )
            .bind(self.member.as_str())
            .bind(s.subscriber.as_str())
            .bind(s.contract.as_str())
            .bind(s.version.as_str())
            .bind(s.purpose.as_str())
            .bind(last_seq)
            .execute(&mut *tx)
            .await
            .map_err(self.err("creating or updating a cursor"))?;
        }
        tx.commit()
            .await
            .map_err(self.err("committing the subscriptions"))
    }

    pub(super) async fn due(
        &self,
        now_ms: i64,
        lease_ms: i64,
        owner: &str,
    ) -> Result<Vec<Due>, EventStoreError> {
        let op = "leasing the due cursors";
        let sql = match self.dialect {
            Dialect::Sqlite => DUE_SQLITE,
            Dialect::Postgres => DUE_POSTGRES,
        };
        let rows = sqlx::query::<DB>(sql)
            .bind(self.member.as_str())
            .bind(owner)
            .bind(now_ms.saturating_add(lease_ms))
            .bind(now_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err(op))?;
        self.read_all(&rows, op, |c| {
            Ok(Due {
                subscriber: c.next()?,
                contract: c.next()?,
                version: c.next()?,
                purpose: c.next()?,
                delivered_seq: c.next()?,
                attempts: self.unsigned("a cursor's attempts", c.next()?)?,
            })
        })
    }

    pub(super) async fn pending(
        &self,
        contract: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<OutEvent>, EventStoreError> {
        let op = "reading pending events";
        let rows = sqlx::query::<DB>(
            "SELECT seq, id, subject, jws, emitted_ms, expires_ms FROM simpul_event_outbox
             WHERE member = $1 AND contract = $2 AND seq > $3 ORDER BY seq LIMIT $4",
        )
        .bind(self.member.as_str())
        .bind(contract)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(self.err(op))?;
        self.read_all(&rows, op, |c| {
            Ok(OutEvent {
                seq: c.next()?,
                id: c.next()?,
                subject: c.next()?,
                jws: c.next()?,
                emitted_ms: c.next()?,
                expires_ms: c.next()?,
            })
        })
    }

    /// The cursor's position, its row locked until `tx` ends (on SQLite, the file is).
    async fn lock_cursor(
        &self,
        tx: &mut sqlx::Transaction<'_, DB>,
        subscriber: &str,
        contract: &str,
    ) -> Result<i64, EventStoreError> {
        let op = "locking a cursor";
        let sql = for_update!(
            self.dialect,
            "SELECT delivered_seq FROM simpul_event_cursors
             WHERE member = $1 AND subscriber = $2 AND contract = $3"
        );
        let row = sqlx::query::<DB>(sql)
            .bind(self.member.as_str())
            .bind(subscriber)
            .bind(contract)
            .fetch_optional(&mut **tx)
            .await
            .map_err(self.err(op))?
            .ok_or_else(|| self.unknown_cursor(subscriber, contract))?;
        row.try_get(0).map_err(self.err(op))
    }

    pub(super) async fn expire(
        &self,
        subscriber: &str,
        contract: &str,
        now_ms: i64,
    ) -> Result<Vec<Notice>, EventStoreError> {
        let op = "expiring events";
        let mut conn = self.pool.acquire().await.map_err(self.err(op))?;
        let mut tx = self.begin(&mut conn, op).await?;
        let position = self.lock_cursor(&mut tx, subscriber, contract).await?;
        // Every event between the position and the first one still live has expired.
        let row = sqlx::query::<DB>(
            "SELECT MIN(seq) FROM simpul_event_outbox
             WHERE member = $1 AND contract = $2 AND seq > $3 AND expires_ms > $4",
        )
        .bind(self.member.as_str())
        .bind(contract)
        .bind(position)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(self.err("finding the first live event"))?;
        let live: Option<i64> = row.try_get(0).map_err(self.err(op))?;
        let bound = live.unwrap_or(i64::MAX);
        let mut fresh = Vec::new();
        let mut passed = position;
        loop {
            let rows = sqlx::query::<DB>(
                "SELECT seq, id, jws FROM simpul_event_outbox
                 WHERE member = $1 AND contract = $2 AND seq > $3 AND seq < $4
                 ORDER BY seq LIMIT $5",
            )
            .bind(self.member.as_str())
            .bind(contract)
            .bind(passed)
            .bind(bound)
            .bind(EXPIRE_CHUNK)
            .fetch_all(&mut *tx)
            .await
            .map_err(self.err("reading expired events"))?;
            let n = rows.len();
            for row in rows {
                let seq: i64 = row.try_get(0).map_err(self.err(op))?;
                let event_id: String = row.try_get(1).map_err(self.err(op))?;
                let jws: String = row.try_get(2).map_err(self.err(op))?;
                let hash = sha256_b64url(jws.as_bytes());
                let added = sqlx::query::<DB>(
                    "INSERT INTO simpul_event_notices
                         (member, subscriber, contract, event_id, hash, seq)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (member, subscriber, contract, event_id) DO NOTHING",
                )
                .bind(self.member.as_str())
                .bind(subscriber)
                .bind(contract)
                .bind(event_id.as_str())
                .bind(hash.as_str())
                .bind(seq)
                .execute(&mut *tx)
                .await
                .map_err(self.err("keeping a notice"))?
                .rows_affected();
                if added > 0 {
                    fresh.push(Notice {
                        event_id,
                        hash,
                        seq,
                    });
                }
                passed = seq;
            }
            if i64::try_from(n).unwrap_or(i64::MAX) < EXPIRE_CHUNK {
                break;
            }
        }
        if passed > position {
            sqlx::query::<DB>(
                "UPDATE simpul_event_cursors SET delivered_seq = $4
                 WHERE member = $1 AND subscriber = $2 AND contract = $3",
            )
            .bind(self.member.as_str())
            .bind(subscriber)
            .bind(contract)
            .bind(passed)
            .execute(&mut *tx)
            .await
            .map_err(self.err("moving a cursor past expired events"))?;
        }
        tx.commit()
            .await
            .map_err(self.err("committing expired events"))?;
        Ok(fresh)
    }

    pub(super) async fn notices(
        &self,
        subscriber: &str,
        contract: &str,
    ) -> Result<Vec<Notice>, EventStoreError> {
        let op = "reading notices";
        let rows = sqlx::query::<DB>(
            "SELECT event_id, hash, seq FROM simpul_event_notices
             WHERE member = $1 AND subscriber = $2 AND contract = $3 ORDER BY seq",
        )
        .bind(self.member.as_str())
        .bind(subscriber)
        .bind(contract)
        .fetch_all(&self.pool)
        .await
        .map_err(self.err(op))?;
        self.read_all(&rows, op, |c| {
            Ok(Notice {
                event_id: c.next()?,
                hash: c.next()?,
                seq: c.next()?,
            })
        })
    }

    pub(super) async fn delivered(
        &self,
        subscriber: &str,
        contract: &str,
        through_seq: i64,
        sent_notices: &[String],
        last_id: Option<&str>,
        now_ms: i64,
    ) -> Result<(), EventStoreError> {
        let op = "recording a delivery";
        let mut conn = self.pool.acquire().await.map_err(self.err(op))?;
        let mut tx = self.begin(&mut conn, op).await?;
        let updated = sqlx::query::<DB>(
            "UPDATE simpul_event_cursors SET
                 delivered_seq = CASE WHEN delivered_seq < $4 THEN $4 ELSE delivered_seq END,
                 attempts = 0, last_error = NULL, next_attempt_ms = $5,
                 lease_owner = NULL, lease_until_ms = 0,
                 last_delivered_id = COALESCE($6, last_delivered_id),
                 last_delivered_ms = CASE WHEN $6 IS NULL THEN last_delivered_ms ELSE $5 END
             WHERE member = $1 AND subscriber = $2 AND contract = $3",
        )
        .bind(self.member.as_str())
        .bind(subscriber)
        .bind(contract)
        .bind(through_seq)
        .bind(now_ms)
        .bind(last_id)
        .execute(&mut *tx)
        .await
        .map_err(self.err(op))?
        .rows_affected();
        if updated == 0 {
            return Err(self.unknown_cursor(subscriber, contract));
        }
        for event_id in sent_notices {
            sqlx::query::<DB>(
                "DELETE FROM simpul_event_notices
                 WHERE member = $1 AND subscriber = $2 AND contract = $3 AND event_id = $4",
            )
            .bind(self.member.as_str())
            .bind(subscriber)
            .bind(contract)
            .bind(event_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(self.err("removing a sent notice"))?;
        }
        tx.commit().await.map_err(self.err("committing a delivery"))
    }

    pub(super) async fn release_leases(&self) -> Result<u64, EventStoreError> {
        Ok(sqlx::query::<DB>(
            "UPDATE simpul_event_cursors SET lease_owner = NULL, lease_until_ms = 0
             WHERE member = $1 AND lease_owner IS NOT NULL",
        )
        .bind(self.member.as_str())
        .execute(&self.pool)
        .await
        .map_err(self.err("releasing the leases"))?
        .rows_affected())
    }

    pub(super) async fn failed(
        &self,
        subscriber: &str,
        contract: &str,
        error: &str,
        next_attempt_ms: i64,
    ) -> Result<(), EventStoreError> {
        let updated = sqlx::query::<DB>(
            "UPDATE simpul_event_cursors SET attempts = attempts + 1, last_error = $4,
                 next_attempt_ms = $5, lease_owner = NULL, lease_until_ms = 0
             WHERE member = $1 AND subscriber = $2 AND contract = $3",
        )
        .bind(self.member.as_str())
        .bind(subscriber)
        .bind(contract)
        .bind(error)
        .bind(next_attempt_ms)
        .execute(&self.pool)
        .await
        .map_err(self.err("recording a failed delivery"))?
        .rows_affected();
        if updated == 0 {
            return Err(self.unknown_cursor(subscriber, contract));
        }
        Ok(())
    }

    pub(super) async fn cursors(&self) -> Result<Vec<CursorState>, EventStoreError> {
        let op = "reading the cursors";
        let rows = sqlx::query::<DB>(
            "SELECT c.subscriber, c.contract, c.version, c.purpose, c.active, c.delivered_seq,
                 c.attempts, c.next_attempt_ms, c.last_error, c.last_delivered_id,
                 c.last_delivered_ms,
                 (SELECT COUNT(*) FROM simpul_event_outbox AS e
                  WHERE e.member = c.member AND e.contract = c.contract
                    AND e.seq > c.delivered_seq),
                 (SELECT MIN(e.emitted_ms) FROM simpul_event_outbox AS e
                  WHERE e.member = c.member AND e.contract = c.contract
                    AND e.seq > c.delivered_seq),
                 (SELECT COUNT(*) FROM simpul_event_notices AS n
                  WHERE n.member = c.member AND n.subscriber = c.subscriber
                    AND n.contract = c.contract)
             FROM simpul_event_cursors AS c WHERE c.member = $1",
        )
        .bind(self.member.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(self.err(op))?;
        self.read_all(&rows, op, |c| {
            Ok(CursorState {
                subscriber: c.next()?,
                contract: c.next()?,
                version: c.next()?,
                purpose: c.next()?,
                active: c.next()?,
                delivered_seq: c.next()?,
                attempts: self.unsigned("a cursor's attempts", c.next()?)?,
                next_attempt_ms: c.next()?,
                last_error: c.next()?,
                last_delivered_id: c.next()?,
                last_delivered_ms: c.next()?,
                backlog: self.unsigned("a cursor's backlog", c.next()?)?,
                oldest_pending_ms: c.next()?,
                notices: self.unsigned("a cursor's notices", c.next()?)?,
            })
        })
    }

    pub(super) async fn purge(&self, now_ms: i64) -> Result<u64, EventStoreError> {
        let gone = sqlx::query::<DB>(
            "DELETE FROM simpul_event_outbox
             WHERE member = $1 AND expires_ms <= $2
               AND NOT EXISTS (SELECT 1 FROM simpul_event_cursors AS c
                               WHERE c.member = simpul_event_outbox.member
                                 AND c.contract = simpul_event_outbox.contract
                                 AND c.delivered_seq < simpul_event_outbox.seq)",
        )
        .bind(self.member.as_str())
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(self.err("purging events"))?
        .rows_affected();
        Ok(gone)
    }

    pub(super) async fn outbox_size(&self) -> Result<(i64, u64), EventStoreError> {
        let op = "reading the outbox's size";
        let row = sqlx::query::<DB>(
            "SELECT MAX(seq), COUNT(*) FROM simpul_event_outbox WHERE member = $1",
        )
        .bind(self.member.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(self.err(op))?;
        let newest: Option<i64> = row.try_get(0).map_err(self.err(op))?;
        let count: i64 = row.try_get(1).map_err(self.err(op))?;
        Ok((
            newest.unwrap_or(0),
            self.unsigned("the outbox's count", count)?,
        ))
    }
}
