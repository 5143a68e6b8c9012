//! One group commit as its writer assigns it — the seqs, the records, the tree nodes they
//! complete, the sealed evidence, the tree before and after — and the bytes a journal frame
//! carries of it. The SQL commit and the journal build it with the same [`Batch::assign`].

use audit::merkle::{Frontier, Hash, NodeRef, leaf_hash};
use audit::{AuditRecord, NewRecord, StoredEvidence};

use super::journal::FrameAt;

/// The rows one group commit adds to a log.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Batch {
    /// When it was committed (Unix ms): every record's `ts`, and its evidence's.
    pub(crate) ts: i64,
    /// The tree it extends.
    pub(crate) size_before: u64,
    pub(crate) root_before: Hash,
    /// Its records, seqs `size_before..size`.
    pub(crate) records: Vec<AuditRecord>,
    /// Every tree node the records complete, leaves included, by in-order id.
    pub(crate) nodes: Vec<(u64, Hash)>,
    /// Sealed evidence, by seq.
    pub(crate) evidence: Vec<(u64, StoredEvidence)>,
    /// The tree after it.
    pub(crate) size: u64,
    pub(crate) root: Hash,
    /// Where its journal frame is, once written to a journal: the tables then keep its
    /// evidence there, not in rows of their own.
    pub(crate) at: Option<FrameAt>,
}

impl Batch {
    /// Gives `appends` the next seqs of `frontier` in order, stamped `now_ms`, and pushes
    /// their leaves onto it. `Err((seq, why))` if a record cannot be serialised; `frontier`
    /// is then part-way, so callers pass a copy they drop on error.
    pub(crate) fn assign(
        appends: Vec<(NewRecord, Option<StoredEvidence>)>,
        frontier: &mut Frontier,
        now_ms: i64,
    ) -> Result<Batch, (u64, String)> {
        let (size_before, root_before) = (frontier.size(), frontier.root());
        let mut records = Vec::with_capacity(appends.len());
        let mut nodes: Vec<(u64, Hash)> = Vec::with_capacity(appends.len() * 2 + 64);
        let mut evidence = Vec::new();
        for (new, ev) in appends {
            let seq = frontier.size();
            let mut record = new.into_record(seq, now_ms);
            // Stored as a signed 64-bit integer: clamped before hashing, so what is stored
            // is what was hashed.
            record.latency_us = record.latency_us.min(i64::MAX as u64);
            let leaf = leaf_hash(&record).map_err(|e| (seq, e.to_string()))?;
            frontier.push(leaf, |n: NodeRef, h: &Hash| nodes.push((n.id(), *h)));
            if let Some(ev) = ev {
                evidence.push((seq, ev));
            }
            records.push(record);
        }
        Ok(Batch {
            ts: now_ms,
            size_before,
            root_before,
            records,
            nodes,
            evidence,
            size: frontier.size(),
            root: frontier.root(),
            at: None,
        })
    }

    /// Its bytes in a journal frame: the tree before and after and the time as fixed-width
    /// integers and hashes, then the records as a JSON array, the nodes as (id, hash) pairs,
    /// and the evidence as a JSON array of `[seq, evidence]`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        out.extend_from_slice(&self.ts.to_le_bytes());
        out.extend_from_slice(&self.size_before.to_le_bytes());
        out.extend_from_slice(&self.root_before);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.root);
        put_json(out, &self.records)?;
        out.extend_from_slice(&len_u32(self.nodes.len()).to_le_bytes());
        for (id, hash) in &self.nodes {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(hash);
        }
        put_json(out, &self.evidence)
    }

    /// The batch [`Batch::encode`] wrote; `Err` says what does not parse. A frame's checksum
    /// has been checked before, so an error here is a writer's bug or a forged frame.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Batch, String> {
        let mut r = Reader(bytes);
        let ts = i64::from_le_bytes(r.array()?);
        let size_before = u64::from_le_bytes(r.array()?);
        let root_before = r.array()?;
        let size = u64::from_le_bytes(r.array()?);
        let root = r.array()?;
        let records: Vec<AuditRecord> = r.json("records")?;
        let count = u32::from_le_bytes(r.array()?) as usize;
        let mut nodes = Vec::with_capacity(count.min(bytes.len() / 40));
        for _ in 0..count {
            nodes.push((u64::from_le_bytes(r.array()?), r.array()?));
        }
        let evidence: Vec<(u64, StoredEvidence)> = r.json("evidence")?;
        if !r.0.is_empty() {
            return Err(format!("{} bytes after the evidence", r.0.len()));
        }
        if size_before.checked_add(records.len() as u64) != Some(size) {
            return Err(format!(
                "{} records do not take the tree from size {size_before} to {size}",
                records.len()
            ));
        }
        Ok(Batch {
            ts,
            size_before,
            root_before,
            records,
            nodes,
            evidence,
            size,
            root,
            at: None,
        })
    }

    /// The evidence of the batch [`Batch::encode`] wrote, by seq, read without the rest:
    /// the records and nodes are skipped over, not parsed.
    pub(crate) fn decode_evidence(bytes: &[u8]) -> Result<Vec<(u64, StoredEvidence)>, String> {
        let mut r = Reader(bytes);
        r.take(8 + 8 + 32 + 8 + 32)?;
        let records = u32::from_le_bytes(r.array()?) as usize;
        r.take(records)?;
        let count = u32::from_le_bytes(r.array()?) as usize;
        r.take(count.checked_mul(40).ok_or("too many nodes")?)?;
        let evidence = r.json("evidence")?;
        if !r.0.is_empty() {
            return Err(format!("{} bytes after the evidence", r.0.len()));
        }
        Ok(evidence)
    }
}

/// A length that fits a frame field: frames are far smaller than 4 GiB (a group commit is
/// at most `batch_max` appends of bounded envelopes).
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn put_json<T: serde::Serialize>(out: &mut Vec<u8>, value: &T) -> Result<(), serde_json::Error> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut *out, value)?;
    let n = len_u32(out.len() - at - 4);
    out[at..at + 4].copy_from_slice(&n.to_le_bytes());
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err(format!("{n} bytes wanted, {} left", self.0.len()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn json<T: serde::de::DeserializeOwned>(&mut self, what: &str) -> Result<T, String> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        serde_json::from_slice(self.take(n)?).map_err(|e| format!("{what}: {e}"))
    }
}

/// A record of exchange `n`, for the store's unit tests.
#[cfg(test)]
pub(crate) fn sample_record(n: u64) -> NewRecord {
    NewRecord {
        exchange_id: format!("00000000-0000-4000-8000-{n:012}"),
        role: audit::Role::Provider,
        consumer: "ID:GOV:KEMLU".into(),
        provider: "ID:GOV:DUKCAPIL".into(),
        contract: "citizenship.check".into(),
        version: "1".into(),
        purpose: "citizen-protection".into(),
        request_hash: Some("r".into()),
        response_hash: Some("a".into()),
        outcome: "ok".into(),
        latency_us: u64::MAX,
        subject: Some("s".into()),
        lookup_id: None,
        peer: None,
        subsystem: None,
        user: None,
        aggregate: None,
        subjects: None,
        overlap: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reads_back_as_it_was_written_and_extends_its_tree() {
        let mut f = Frontier::default();
        let first = Batch::assign(vec![(sample_record(0), None)], &mut f, 5).unwrap();
        let ev = StoredEvidence {
            exchange_id: "e".into(),
            request: "sealed-request".into(),
            response: None,
        };
        let appends = (1..4)
            .map(|n| (sample_record(n), (n == 2).then(|| ev.clone())))
            .collect();
        let batch = Batch::assign(appends, &mut f, 7).unwrap();
        assert_eq!((batch.size_before, batch.root_before), (1, first.root));
        assert_eq!((batch.size, batch.root), (4, f.root()));
        assert_eq!(batch.evidence, vec![(2, ev)]);
        assert_eq!(batch.records[0].latency_us, i64::MAX as u64);
        let mut bytes = Vec::new();
        batch.encode(&mut bytes).unwrap();
        assert_eq!(Batch::decode(&bytes).unwrap(), batch);
        assert_eq!(Batch::decode_evidence(&bytes).unwrap(), batch.evidence);
        // Cut anywhere, or with a byte more, it does not read.
        for cut in [0, 8, 88, bytes.len() - 1] {
            assert!(Batch::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        bytes.push(0);
        assert!(
            Batch::decode(&bytes)
                .unwrap_err()
                .contains("after the evidence")
        );
    }

    #[test]
    fn a_batch_records_item_subjects_travel_in_its_journal_frame() {
        let mut f = Frontier::default();
        let mut bulk = sample_record(0);
        bulk.contract = "identity.verify".into();
        bulk.subject = None;
        bulk.subjects = Some((0..1_000).rev().map(|n| format!("{n:0>43}")).collect());
        let batch = Batch::assign(vec![(bulk, None), (sample_record(1), None)], &mut f, 5).unwrap();
        let mut bytes = Vec::new();
        batch.encode(&mut bytes).unwrap();
        assert!(bytes.len() > 46_000, "{} bytes", bytes.len());
        let read = Batch::decode(&bytes).unwrap();
        assert_eq!(read, batch);
        let subjects = read.records[0].subjects.as_ref().unwrap();
        assert_eq!(subjects.len(), 1_000);
        assert!(subjects.windows(2).all(|w| w[0] < w[1]), "sorted");
        assert_eq!(read.records[1].subjects, None);
    }

    #[test]
    fn a_runs_overlap_figures_travel_in_its_journal_frame() {
        let mut f = Frontier::default();
        let mut run = sample_record(0);
        run.overlap = Some(audit::OverlapFigures {
            groups: vec![2474, 1079],
            theirs: Some(3933),
            overlaps: Some(vec![847, 491]),
        });
        let batch = Batch::assign(
            vec![(run.clone(), None), (sample_record(1), None)],
            &mut f,
            5,
        )
        .unwrap();
        let mut bytes = Vec::new();
        batch.encode(&mut bytes).unwrap();
        let read = Batch::decode(&bytes).unwrap();
        assert_eq!(read, batch);
        assert_eq!(read.records[0].overlap, run.overlap);
        assert_eq!(read.records[1].overlap, None);
    }
}
