//! `simpul audit reconcile A B`: two members' exports compared exchange by exchange.
//!
//! Each exchange between the two members leaves a consumer record in one log and a
//! provider record in the other, with the same `exchange_id` and `request_hash`
//! (PROTOCOL.md §5). Records are paired by exchange id and direction (who asked whom), the
//! consumer's with the provider's; the report lists every exchange one side has and the
//! other lacks, and every pair that disagrees on `request_hash` or `outcome`.
//!
//! Not expected on the other side, so never listed as missing: records of exchanges with
//! a third member or with itself, records without an exchange id (refusals before one was
//! read), and records without a `request_hash` (no request was ever sent or received).
//!
//! Reconcile trusts the exports: run `simpul audit verify` on each first. Memory grows with
//! the records of the two members' shared exchanges inside the window (`--from`/`--to`).

use std::collections::HashMap;
use std::io::BufRead;

use contracts::MemberId;
use serde::Serialize;

use crate::export::{EXPORT_FORMATS, ExportLine, read_line};
use crate::record::{AuditRecord, Role};

/// Records this far outside the window are still read for pairing, so an exchange whose
/// two records straddle a window edge (clock skew, latency) is not reported as missing.
pub const WINDOW_MARGIN_MS: i64 = 10 * 60 * 1000;

/// Why two exports could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// An export could not be read or is not an export.
    #[error("export {which}, line {line}: {reason}")]
    Read {
        /// `A` or `B`.
        which: char,
        /// 1-based line (0: the file as a whole).
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// Both exports are of the same member's log.
    #[error("both exports are of {0}'s log: reconcile compares two members' logs")]
    SameLog(String),
}

/// A pair of records of one exchange that disagree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Disagreement {
    /// The exchange.
    pub exchange_id: String,
    /// The fields that differ: `request_hash`, `outcome`.
    pub fields: Vec<String>,
    /// A's record.
    pub a: AuditRecord,
    /// B's record.
    pub b: AuditRecord,
}

/// What comparing two exports found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// A's member.
    pub a_log: String,
    /// B's member.
    pub b_log: String,
    /// Window start (unix ms, inclusive), if any.
    pub from_ms: Option<i64>,
    /// Window end (unix ms, exclusive), if any.
    pub to_ms: Option<i64>,
    /// Exchanges whose two records agree.
    pub matched: u64,
    /// Exchanges only A has a record of.
    pub only_in_a: Vec<AuditRecord>,
    /// Exchanges only B has a record of.
    pub only_in_b: Vec<AuditRecord>,
    /// Exchanges whose records disagree.
    pub disagreements: Vec<Disagreement>,
}

impl ReconcileReport {
    /// True when the two logs agree on every shared exchange in the window.
    pub fn is_clean(&self) -> bool {
        self.only_in_a.is_empty() && self.only_in_b.is_empty() && self.disagreements.is_empty()
    }
}

/// The member an id belongs to (a subsystem's member), or the text as it is.
fn member_of(id: &str) -> String {
    MemberId::parse(id).map_or_else(|_| id.to_owned(), |m| m.member().to_string())
}

/// Who asked whom: `true` when the first log's member was the consumer.
type Key = (String, bool);

/// One export's records of exchanges with `other`, keyed by exchange and direction.
struct Side {
    log: String,
    records: HashMap<Key, Vec<AuditRecord>>,
}

fn read_header(which: char, reader: &mut impl BufRead) -> Result<String, ReconcileError> {
    let mut buf = Vec::new();
    let mut line = 0;
    loop {
        let err = |line, reason: String| ReconcileError::Read {
            which,
            line,
            reason,
        };
        if !read_line(reader, &mut buf).map_err(|r| err(line + 1, r))? {
            return Err(err(0, "the export is empty".into()));
        }
        line += 1;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        return match contracts::json::from_slice::<ExportLine>(&buf) {
            Ok(ExportLine::Header(h)) if EXPORT_FORMATS.contains(&h.format.as_str()) => Ok(h.log),
            Ok(ExportLine::Header(h)) => Err(err(line, format!("format `{}`", h.format))),
            Ok(_) => Err(err(
                line,
                "the export does not start with its header".into(),
            )),
            Err(e) => Err(err(line, format!("not an export line: {e}"))),
        };
    }
}

/// Reads the records of `log` that concern exchanges with `other` within the window
/// (widened by [`WINDOW_MARGIN_MS`]). `first_is_self` orients the key: `true` when this
/// log is the first (A).
fn read_side(
    which: char,
    reader: &mut impl BufRead,
    log: &str,
    other: &str,
    window: (i64, i64),
    first_is_self: bool,
) -> Result<Side, ReconcileError> {
    let mut side = Side {
        log: log.to_owned(),
        records: HashMap::new(),
    };
    let mut buf = Vec::new();
    // The header was line 1.
    let mut line = 1;
    while read_line(reader, &mut buf).map_err(|reason| ReconcileError::Read {
        which,
        line: line + 1,
        reason,
    })? {
        line += 1;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed: ExportLine =
            contracts::json::from_slice(&buf).map_err(|e| ReconcileError::Read {
                which,
                line,
                reason: format!("not an export line: {e}"),
            })?;
        let ExportLine::Record(r) = parsed else {
            continue;
        };
        let r = r.record;
        if r.exchange_id.is_empty() || r.ts < window.0 || r.ts >= window.1 {
            continue;
        }
        let self_asked = match r.role {
            Role::Consumer if member_of(&r.provider) == other => true,
            Role::Provider if member_of(&r.consumer) == other => false,
            _ => continue,
        };
        // Oriented as A's view: did A ask?
        let a_asked = self_asked == first_is_self;
        side.records
            .entry((r.exchange_id.clone(), a_asked))
            .or_default()
            .push(r);
    }
    Ok(side)
}

fn in_window(r: &AuditRecord, from: Option<i64>, to: Option<i64>) -> bool {
    from.is_none_or(|f| r.ts >= f) && to.is_none_or(|t| r.ts < t)
}

/// Compares export `a` with export `b` (two members' logs) over the window
/// `[from_ms, to_ms)` of each record's own `ts` (see the module doc).
pub fn reconcile(
    mut a: impl BufRead,
    mut b: impl BufRead,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
) -> Result<ReconcileReport, ReconcileError> {
    let a_log = read_header('A', &mut a)?;
    let b_log = read_header('B', &mut b)?;
    if a_log == b_log {
        return Err(ReconcileError::SameLog(a_log));
    }
    let wide = (
        from_ms.map_or(i64::MIN, |f| f.saturating_sub(WINDOW_MARGIN_MS)),
        to_ms.map_or(i64::MAX, |t| t.saturating_add(WINDOW_MARGIN_MS)),
    );
    let side_a = read_side('A', &mut a, &a_log, &b_log, wide, true)?;
    let mut side_b = read_side('B', &mut b, &b_log, &a_log, wide, false)?;

    let mut report = ReconcileReport {
        a_log: side_a.log.clone(),
        b_log: side_b.log.clone(),
        from_ms,
        to_ms,
        matched: 0,
        only_in_a: Vec::new(),
        only_in_b: Vec::new(),
        disagreements: Vec::new(),
    };
    let shown = |r: &AuditRecord| in_window(r, from_ms, to_ms);
    let expected_elsewhere = |r: &AuditRecord| r.request_hash.is_some();
    for (key, mut mine) in side_a.records {
        let mut theirs = side_b.records.remove(&key).unwrap_or_default();
        // A provider can hold several records of one id (a replayed request is refused
        // and recorded too): pair equal records first, then equal requests, then the rest.
        let mut pairs = Vec::new();
        for pass in 0..3 {
            let mut i = 0;
            while i < mine.len() {
                let found = theirs.iter().position(|t| match pass {
                    0 => t.request_hash == mine[i].request_hash && t.outcome == mine[i].outcome,
                    1 => t.request_hash == mine[i].request_hash,
                    _ => true,
                });
                match found {
                    Some(j) => pairs.push((mine.remove(i), theirs.remove(j))),
                    None => i += 1,
                }
            }
        }
        for (x, y) in pairs {
            let mut fields = Vec::new();
            if x.request_hash != y.request_hash {
                fields.push("request_hash".to_owned());
            }
            if x.outcome != y.outcome {
                fields.push("outcome".to_owned());
            }
            if fields.is_empty() {
                if shown(&x) || shown(&y) {
                    report.matched += 1;
                }
            } else if shown(&x) || shown(&y) {
                report.disagreements.push(Disagreement {
                    exchange_id: key.0.clone(),
                    fields,
                    a: x,
                    b: y,
                });
            }
        }
        report.only_in_a.extend(
            mine.into_iter()
                .filter(|r| shown(r) && expected_elsewhere(r)),
        );
        report.only_in_b.extend(
            theirs
                .into_iter()
                .filter(|r| shown(r) && expected_elsewhere(r)),
        );
    }
    for (_, theirs) in side_b.records.drain() {
        report.only_in_b.extend(
            theirs
                .into_iter()
                .filter(|r| shown(r) && expected_elsewhere(r)),
        );
    }
    report.only_in_a.sort_by_key(|r| r.seq);
    report.only_in_b.sort_by_key(|r| r.seq);
    report.disagreements.sort_by_key(|d| d.a.seq);
    Ok(report)
}
