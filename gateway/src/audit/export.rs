//! The export: a log as JSON lines, what `simpul audit export` writes and `audit verify`
//! and `audit reconcile` read.
//!
//! ```text
//! {"type":"header","format":"simpul-audit-export/1","log":"ID:GOV:X","exported_at":…,"tree_size":N}
//! {"type":"tree_head","tree_size":0,…}                       heads of size 0, if any
//! {"type":"record","record":{"seq":0,…},"leaf_hash":"…"}
//! {"type":"tree_head","tree_size":1,"root_hash":"…","timestamp":…,"jws":"…"}
//! …                                                          each head right after the record that completes it
//! ```
//!
//! `leaf_hash` is the hash the store holds for that seq. It is a hint, not trusted: the
//! verifier recomputes every leaf from its record and uses the stored hash only to name
//! an altered record exactly (see [`super::verify`]).

use std::collections::VecDeque;
use std::io::{BufRead, Write};

use contracts::MemberId;
use serde::{Deserialize, Serialize};

use super::merkle::encode_hash;
use super::record::AuditRecord;
use super::store::Store;
use super::tree_head::SignedTreeHead;
use super::{AuditError, now_ms};

/// `format` of an export's header.
pub const EXPORT_FORMAT: &str = "simpul-audit-export/1";

/// Longest export line a reader accepts (a record is well under 2 KiB).
pub const MAX_LINE: usize = 1 << 20;

/// Records read per query while exporting.
const CHUNK: u64 = 1_000;

/// One line of an export.
// A reader or writer holds one line at a time; boxing the record would only add an
// allocation per line.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    /// The first line.
    Header(ExportHeader),
    /// A record, in seq order.
    Record(ExportedRecord),
    /// A signed tree head, right after the record that completes its tree.
    TreeHead(SignedTreeHead),
}

/// The first line of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    /// [`EXPORT_FORMAT`].
    pub format: String,
    /// The member whose log it is.
    pub log: String,
    /// Unix milliseconds when it was written.
    pub exported_at: i64,
    /// The committed tree size the export was taken at.
    pub tree_size: u64,
}

/// A record line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedRecord {
    /// The record.
    pub record: AuditRecord,
    /// base64url leaf hash the store holds for this seq, if it holds one.
    #[serde(default)]
    pub leaf_hash: Option<String>,
}

fn write_line(out: &mut impl Write, line: &ExportLine) -> Result<(), AuditError> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")?;
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

/// Writes `log`'s export from `store` (see the module doc), as of its committed size now.
pub(crate) async fn write_export(
    store: &Store,
    log: &MemberId,
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

/// Reads one line of at most [`MAX_LINE`] bytes into `buf` (without its newline), so a
/// reader's memory stays bounded whatever it is given; `false` at the end of the input.
pub(crate) fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> Result<bool, String> {
    buf.clear();
    let n = std::io::Read::take(&mut *reader, MAX_LINE as u64 + 1)
        .read_until(b'\n', buf)
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() > MAX_LINE {
        return Err(format!("a line is longer than {MAX_LINE} bytes"));
    }
    Ok(true)
}
