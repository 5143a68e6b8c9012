//! An SQLite store's evidence kept in its journal's segments: the segments the tables list,
//! reading one record's evidence back from the frame its row points to, and the segments
//! the retention deletes.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};

use sqlx::Row;

use super::journal::{self, FrameError};
use super::{Backend, Batch, to_i64};
use crate::AuditError;
use audit::StoredEvidence;

/// Records of one exchange id whose evidence is read, at most (as for proofs).
const EVIDENCE_MAX: i64 = 64;

/// A record's evidence as the tables say where it is.
enum Kept {
    /// In the evidence table (a store's records from before the journal kept evidence).
    Row(StoredEvidence),
    /// In the frame at `offset` of journal segment `segment`; `gone` once the retention
    /// deleted it, `listed` if the segments table has it at all.
    Frame {
        segment: u64,
        offset: u64,
        listed: bool,
        gone: bool,
    },
    /// Nowhere: the record has none.
    None,
}

fn from_i64(v: i64) -> Option<u64> {
    u64::try_from(v).ok()
}

impl Backend<sqlx::Sqlite> {
    fn segments_err(&self, op: &'static str) -> impl Fn(sqlx::Error) -> AuditError + '_ {
        move |source| AuditError::Store {
            store: self.label.clone(),
            op,
            source,
        }
    }

    /// The journal segments that keep evidence not yet deleted, each with the end of its
    /// last frame that carries evidence.
    pub(super) async fn kept_segments(&self) -> Result<HashMap<u64, u64>, AuditError> {
        let err = self.segments_err("reading the journal segments that keep evidence");
        let rows = sqlx::query(
            "SELECT segment, end_offset FROM simpul_audit_segments
             WHERE log = $1 AND deleted_at IS NULL",
        )
        .bind(self.log.clone())
        .fetch_all(&self.pool)
        .await
        .map_err(&err)?;
        let mut out = HashMap::with_capacity(rows.len());
        for row in rows {
            let segment: i64 = row.try_get(0).map_err(&err)?;
            let end: i64 = row.try_get(1).map_err(&err)?;
            match (from_i64(segment), from_i64(end)) {
                (Some(segment), Some(end)) => out.insert(segment, end),
                _ => {
                    return Err(self.corrupt(
                        None,
                        format!("simpul_audit_segments lists segment {segment} ending at {end}"),
                    ));
                }
            };
        }
        Ok(out)
    }

    /// The segments not yet deleted whose records are all older than `before_ms`, with how
    /// many records' evidence each holds.
    pub(super) async fn expired_segments(
        &self,
        before_ms: i64,
    ) -> Result<Vec<(u64, u64)>, AuditError> {
        let err = self.segments_err("reading the journal segments past the retention");
        let rows = sqlx::query(
            "SELECT segment, evidence FROM simpul_audit_segments
             WHERE log = $1 AND deleted_at IS NULL AND newest_ts < $2 ORDER BY segment",
        )
        .bind(self.log.clone())
        .bind(before_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(&err)?;
        rows.iter()
            .map(|row| {
                let segment: i64 = row.try_get(0).map_err(&err)?;
                let evidence: i64 = row.try_get(1).map_err(&err)?;
                Ok((
                    from_i64(segment).unwrap_or(0),
                    from_i64(evidence).unwrap_or(0),
                ))
            })
            .collect()
    }

    /// Marks `segments` deleted at `now_ms`, before their files go: a segment whose file is
    /// missing while the table still lists it was deleted outside the gateway.
    pub(super) async fn mark_segments_deleted(
        &self,
        segments: &[u64],
        now_ms: i64,
    ) -> Result<(), AuditError> {
        let err = self.segments_err("marking journal segments deleted");
        let mut conn = self.write_conn().await?;
        let mut tx = self.begin_write(&mut conn.conn).await?;
        for segment in segments {
            sqlx::query(
                "UPDATE simpul_audit_segments SET deleted_at = $1 WHERE log = $2 AND segment = $3",
            )
            .bind(now_ms)
            .bind(self.log.clone())
            .bind(to_i64(*segment))
            .execute(&mut *tx)
            .await
            .map_err(&err)?;
        }
        tx.commit().await.map_err(&err)?;
        conn.committed();
        Ok(())
    }

    /// Whether the segments table has `segment` marked deleted.
    async fn segment_deleted(&self, segment: u64) -> Result<bool, AuditError> {
        let row = sqlx::query(
            "SELECT deleted_at IS NOT NULL FROM simpul_audit_segments
             WHERE log = $1 AND segment = $2",
        )
        .bind(self.log.clone())
        .bind(to_i64(segment))
        .fetch_optional(&self.pool)
        .await
        .map_err(self.segments_err("reading a journal segment's state"))?;
        Ok(match row {
            Some(row) => row
                .try_get::<bool, _>(0)
                .map_err(self.segments_err("reading a journal segment's state"))?,
            None => false,
        })
    }

    /// The evidence kept for `exchange_id` (still sealed): from the journal frames its
    /// records point to in `dir`, or from the evidence table for records written before.
    /// Evidence whose segment the retention deleted is gone; a frame that is missing or
    /// does not read back whole, or does not hold the record's evidence, is refused with
    /// the segment, the offset and the exchange named.
    pub(super) async fn evidence_kept(
        &self,
        exchange_id: &str,
        dir: &Path,
    ) -> Result<Vec<StoredEvidence>, AuditError> {
        let err = self.segments_err("reading evidence");
        let rows = sqlx::query(
            "SELECT r.seq, r.evidence_segment, r.evidence_offset,
                    s.segment IS NOT NULL, s.deleted_at IS NOT NULL,
                    e.exchange_id, e.request, e.response
             FROM simpul_audit_records r
             LEFT JOIN simpul_audit_evidence e ON e.log = r.log AND e.seq = r.seq
             LEFT JOIN simpul_audit_segments s ON s.log = r.log AND s.segment = r.evidence_segment
             WHERE r.log = $1 AND r.exchange_id = $2 ORDER BY r.seq LIMIT $3",
        )
        .bind(self.log.clone())
        .bind(exchange_id.to_owned())
        .bind(EVIDENCE_MAX)
        .fetch_all(&self.pool)
        .await
        .map_err(&err)?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.try_get(0).map_err(&err)?;
            let segment: Option<i64> = row.try_get(1).map_err(&err)?;
            let offset: Option<i64> = row.try_get(2).map_err(&err)?;
            let listed: bool = row.try_get(3).map_err(&err)?;
            let gone: bool = row.try_get(4).map_err(&err)?;
            let in_table: Option<String> = row.try_get(5).map_err(&err)?;
            let seq = from_i64(seq).ok_or_else(|| self.corrupt(None, "a negative seq"))?;
            let kept = match (in_table, segment, offset) {
                (Some(id), _, _) => Kept::Row(StoredEvidence {
                    exchange_id: id,
                    request: row.try_get(6).map_err(&err)?,
                    response: row.try_get(7).map_err(&err)?,
                }),
                (None, Some(segment), Some(offset)) => Kept::Frame {
                    segment: from_i64(segment).ok_or_else(|| {
                        self.corrupt(Some(seq), format!("evidence in segment {segment}"))
                    })?,
                    offset: from_i64(offset).ok_or_else(|| {
                        self.corrupt(Some(seq), format!("evidence at offset {offset}"))
                    })?,
                    listed,
                    gone,
                },
                _ => Kept::None,
            };
            found.push((seq, kept));
        }
        // Records of one exchange (a lookup's parts) are mostly in one frame: read it once.
        let mut frames: HashMap<(u64, u64), Vec<(u64, StoredEvidence)>> = HashMap::new();
        let mut out = Vec::with_capacity(found.len());
        for (seq, kept) in found {
            let (segment, offset) = match kept {
                Kept::Row(ev) => {
                    out.push(ev);
                    continue;
                }
                Kept::None | Kept::Frame { gone: true, .. } => continue,
                Kept::Frame {
                    segment,
                    offset,
                    listed,
                    gone: false,
                } => {
                    if !listed {
                        return Err(self.corrupt(
                            Some(seq),
                            format!(
                                "the evidence of exchange {exchange_id} is in journal segment \
                                 {}, offset {offset}, which simpul_audit_segments does not list \
                                 (the table was edited outside the gateway)",
                                journal::segment_path(dir, segment).display()
                            ),
                        ));
                    }
                    (segment, offset)
                }
            };
            let evidence = match frames.entry((segment, offset)) {
                Entry::Occupied(read) => read.into_mut(),
                Entry::Vacant(slot) => match self.read_evidence(dir, segment, offset).await {
                    Ok(evidence) => slot.insert(evidence),
                    // Deleted by the retention since the query above: gone.
                    Err(FrameError::Missing { .. }) if self.segment_deleted(segment).await? => {
                        continue;
                    }
                    Err(e) => {
                        return Err(self.corrupt(
                            Some(seq),
                            format!(
                                "the evidence of exchange {exchange_id} at offset {offset} of \
                                 its journal segment cannot be read: {e}"
                            ),
                        ));
                    }
                },
            };
            let ev = evidence
                .iter()
                .find(|(s, _)| *s == seq)
                .map(|(_, ev)| ev.clone());
            match ev {
                Some(ev) if ev.exchange_id == exchange_id => out.push(ev),
                other => {
                    return Err(self.corrupt(
                        Some(seq),
                        format!(
                            "the frame at offset {offset} of journal segment {} {}",
                            journal::segment_path(dir, segment).display(),
                            match other {
                                Some(ev) => format!(
                                    "holds evidence of exchange {} where the record is of \
                                     exchange {exchange_id}",
                                    ev.exchange_id
                                ),
                                None => format!(
                                    "holds no evidence of seq {seq} (exchange {exchange_id})"
                                ),
                            }
                        ),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The evidence in the frame at `offset` of segment `segment`, read on a blocking thread
    /// and decoded; a frame whose body does not decode is [`FrameError::Damaged`].
    async fn read_evidence(
        &self,
        dir: &Path,
        segment: u64,
        offset: u64,
    ) -> Result<Vec<(u64, StoredEvidence)>, FrameError> {
        let dir: PathBuf = dir.to_owned();
        let path = journal::segment_path(&dir, segment);
        let read = tokio::task::spawn_blocking(move || {
            let body = journal::read_frame(&dir, segment, offset)?;
            Batch::decode_evidence(&body).map_err(|reason| {
                tracing::error!(segment = %journal::segment_path(&dir, segment).display(), offset, reason = %reason, "an audit journal frame whose checksum holds does not decode");
                FrameError::Damaged {
                    path: journal::segment_path(&dir, segment),
                    offset,
                    reason: "the frame's evidence does not decode",
                }
            })
        })
        .await;
        match read {
            Ok(result) => result,
            Err(e) => Err(FrameError::Io {
                path,
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::batch::sample_record;
    use super::super::{Access, Store, StoreTarget};
    use audit::merkle::Frontier;
    use audit::{NewRecord, StoredEvidence};

    fn appended(n: u64) -> (NewRecord, Option<StoredEvidence>) {
        let record = sample_record(n);
        let evidence = StoredEvidence {
            exchange_id: record.exchange_id.clone(),
            request: format!("sealed request {n}"),
            response: None,
        };
        (record, Some(evidence))
    }

    /// A log idle since its last exchange: the retention closes the segment being written
    /// and deletes it with its evidence; the records stay, and the next append begins a
    /// new segment whose evidence is found.
    #[tokio::test]
    async fn the_retention_closes_an_idle_segment_and_deletes_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.db");
        let target = StoreTarget::Sqlite(db.clone());
        let store = Store::open(&target, "ID:GOV:KEMLU", Access::Append)
            .await
            .unwrap();
        let mut frontier = Frontier::default();
        let batch = (0..3).map(appended).collect();
        store.commit(batch, &mut frontier, 1_000).await.unwrap();
        let id = |n: u64| format!("00000000-0000-4000-8000-{n:012}");
        assert_eq!(store.evidence(&id(1)).await.unwrap().len(), 1);
        // Nothing older than the cutoff: nothing goes.
        assert_eq!(store.delete_evidence_before(500).await.unwrap(), 0);
        assert_eq!(store.evidence(&id(1)).await.unwrap().len(), 1);
        let journal = super::super::journal_dir(&db, "ID:GOV:KEMLU");
        let first = super::journal::segment_path(&journal, 0);
        assert!(first.exists());
        assert_eq!(store.delete_evidence_before(2_000).await.unwrap(), 3);
        assert!(!first.exists());
        assert!(store.evidence(&id(1)).await.unwrap().is_empty());
        assert_eq!(store.records(0, 3).await.unwrap().len(), 3);
        store
            .commit(vec![appended(3)], &mut frontier, 3_000)
            .await
            .unwrap();
        assert_eq!(store.evidence(&id(3)).await.unwrap().len(), 1);
        assert!(super::journal::segment_path(&journal, 3).exists());
        assert_eq!(store.delete_evidence_before(2_000).await.unwrap(), 0);
    }
}
