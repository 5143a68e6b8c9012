//! Writing a log's export (the format is [`audit::export`]) from its store, a page of records
//! and tree heads at a time.

use std::collections::VecDeque;
use std::io::Write;

use audit::export::{EXPORT_FORMAT, ExportHeader, ExportLine, ExportedManifest, ExportedRecord};
use audit::merkle::encode_hash;
use audit::tree_head::SignedTreeHead;
use contracts::MemberId;

use crate::store::Store;
use crate::{AuditError, now_ms};

/// Records read per query while exporting.
const CHUNK: u64 = 1_000;

fn write_line(out: &mut impl Write, line: &ExportLine) -> Result<(), AuditError> {
    audit::export::write_line(out, line)?;
    Ok(())
}

/// Signed tree heads in size order, read a page at a time.
struct HeadFeed<'a> {
    store: &'a Store,
    max_size: u64,
    page: VecDeque<SignedTreeHead>,
    cursor: Option<(u64, i64)>,
    exhausted: bool,
}

impl HeadFeed<'_> {
    /// Writes every head of size at most `size` not written yet.
    async fn write_upto(&mut self, size: u64, out: &mut impl Write) -> Result<(), AuditError> {
        loop {
            if self.page.is_empty() && !self.exhausted {
                let page = self
                    .store
                    .tree_heads(self.cursor, self.max_size, CHUNK as u32)
                    .await?;
                self.exhausted = (page.len() as u64) < CHUNK;
                if let Some(last) = page.last() {
                    self.cursor = Some((last.tree_size, last.timestamp));
                }
                self.page.extend(page);
            }
            match self.page.front() {
                Some(h) if h.tree_size <= size => {
                    if let Some(h) = self.page.pop_front() {
                        write_line(out, &ExportLine::TreeHead(h))?;
                    }
                }
                _ => return Ok(()),
            }
        }
    }
}

/// Writes `log`'s export from `store` (see the module doc), as of its committed size now,
/// with `manifests` (compact JWSs) right after the header.
pub(crate) async fn write_export(
    store: &Store,
    log: &MemberId,
    manifests: &[String],
    out: &mut (dyn Write + Send),
) -> Result<(), AuditError> {
    let (size, _) = store.state().await?;
    let mut out = std::io::BufWriter::new(out);
    write_line(
        &mut out,
        &ExportLine::Header(ExportHeader {
            format: EXPORT_FORMAT.to_owned(),
            log: log.to_string(),
            exported_at: now_ms(),
            tree_size: size,
        }),
    )?;
    for jws in manifests {
        write_line(
            &mut out,
            &ExportLine::Manifest(ExportedManifest {
                jws: jws.trim().to_owned(),
            }),
        )?;
    }
    let mut heads = HeadFeed {
        store,
        max_size: size,
        page: VecDeque::new(),
        cursor: None,
        exhausted: false,
    };
    heads.write_upto(0, &mut out).await?;
    let mut from = 0;
    while from < size {
        let to = (from + CHUNK).min(size);
        for (record, leaf) in store.records(from, to).await? {
            let seq = record.seq;
            write_line(
                &mut out,
                &ExportLine::Record(ExportedRecord {
                    record,
                    leaf_hash: leaf.as_ref().map(encode_hash),
                }),
            )?;
            // `<=`: a head whose last record is missing from the store still goes out
            // (the verifier then names the gap).
            heads.write_upto(seq + 1, &mut out).await?;
        }
        from = to;
    }
    heads.write_upto(size, &mut out).await?;
    out.flush()?;
    Ok(())
}
