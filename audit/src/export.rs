//! The export: a log as JSON lines, what `simpul audit export` writes and `audit verify`
//! and `audit reconcile` read.
//!
//! ```text
//! {"type":"header","format":"simpul-audit-export/3","log":"ID:GOV:X","exported_at":…,"tree_size":N}
//! {"type":"manifest","jws":"…"}                              manifests listing the member's keys, if any
//! {"type":"tree_head","tree_size":0,…}                       heads of size 0, if any
//! {"type":"record","record":{"seq":0,…},"leaf_hash":"…"}
//! {"type":"tree_head","tree_size":1,"root_hash":"…","timestamp":…,"jws":"…"}
//! …                                                          each head right after the record that completes it
//! ```
//!
//! A manifest line carries a federation manifest as the authority signed it: the member's
//! keys with their windows, the key history a verifier given only the authority's key
//! checks the heads with ([`crate::verify::Trust::Authority`]). Format 3 added them; a
//! format 2 export is read as a format 3 export without manifests.
//!
//! `leaf_hash` is the hash the store holds for that seq. It is a hint, not trusted: the
//! verifier recomputes every leaf from its record and uses the stored hash only to name
//! an altered record exactly (see [`crate::verify`]).

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::record::AuditRecord;
use crate::tree_head::SignedTreeHead;

/// `format` of an export's header, as written.
pub const EXPORT_FORMAT: &str = "simpul-audit-export/3";

/// The formats a reader accepts: 3, and 2 (the same without manifest lines).
pub const EXPORT_FORMATS: [&str; 2] = [EXPORT_FORMAT, "simpul-audit-export/2"];

/// Longest export line a reader accepts. A record is well under 2 KiB, but for the record of
/// a batch exchange, whose item subjects take about 46 bytes each: about 46 KB for 1,000,
/// 460 KB for [`crate::record::MAX_SUBJECTS`], which the log refuses to exceed.
pub const MAX_LINE: usize = 1 << 20;

/// One line of an export.
// A reader or writer holds one line at a time; boxing the record would only add an
// allocation per line.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    /// The first line.
    Header(ExportHeader),
    /// A federation manifest, right after the header (format 3).
    Manifest(ExportedManifest),
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

/// A manifest line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedManifest {
    /// The manifest's compact JWS, as the authority signed it.
    pub jws: String,
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

/// Writes one line of an export: the JSON of `line` and a newline.
///
/// # Errors
/// When `out` fails.
pub fn write_line(out: &mut impl Write, line: &ExportLine) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")
}

/// Reads one line of at most [`MAX_LINE`] bytes into `buf` (without its newline), so a
/// reader's memory stays bounded whatever it is given; `false` at the end of the input.
pub fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> Result<bool, String> {
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
