//! The report of `simpul counts`, from the signed tables alone: each list's count (exact
//! where it is published, the range the published figures allow where it is suppressed or
//! rounded), and what follows for the size of their union.

use std::collections::BTreeSet;

use contracts::disclosure::{AuditError, Figure, PublishedTable, feasible_ranges, unrounded_range};
use serde::Serialize;

/// What is known of one count: between `lo` and `hi` (`None`: nothing published bounds it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Range {
    /// The least it can be.
    pub lo: u64,
    /// The most it can be.
    pub hi: Option<u64>,
}

impl Range {
    /// Exactly `n`.
    pub fn exact(n: u64) -> Range {
        Range { lo: n, hi: Some(n) }
    }

    /// As a person reads it: `1234`, `3–19`, or `≥ 40`.
    pub fn text(&self) -> String {
        match self.hi {
            Some(hi) if hi == self.lo => self.lo.to_string(),
            Some(hi) => format!("{}–{hi}", self.lo),
            None => format!("≥ {}", self.lo),
        }
    }
}

/// One row of the report: one value of the breakdown (`None`: all of them), each list's
/// count, and their union's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The value (`AE`), or `None` for the row of totals.
    pub value: Option<String>,
    /// Each list's count, in the order of the lists.
    pub lists: Vec<Range>,
    /// The number of people on at least one list, as far as the counts alone say: at least
    /// the largest list (everyone on it is in the union), at most their sum (when no one is
    /// on two of them).
    pub union: Range,
}

/// What the published figures say of each figure of `table`: exact, unrounded, or the
/// suppressed figure's feasible range, by the figure's position.
fn ranges(table: &PublishedTable) -> Result<Vec<Range>, AuditError> {
    let mut suppressed = feasible_ranges(table)?.into_iter();
    let mut out = Vec::with_capacity(table.figures.len());
    for figure in &table.figures {
        out.push(match figure.figure {
            Figure::Count(v) => match table.round_to {
                Some(base) => {
                    let (lo, hi) = unrounded_range(v, base);
                    Range { lo, hi: Some(hi) }
                }
                None => Range::exact(v),
            },
            Figure::Suppressed => {
                // `feasible_ranges` lists the suppressed figures in the table's order.
                let r = suppressed.next().ok_or_else(|| {
                    AuditError::Solver("a suppressed figure without a range".into())
                })?;
                Range { lo: r.lo, hi: r.hi }
            }
        });
    }
    Ok(out)
}

/// The rows of the report from each list's table. Each table has one dimension, `by` — its
/// values are the rows, a value missing from a list's table a count of 0 there — or, with
/// `by` `None`, any one dimension, of which only the grand total is used. The last row is
/// the totals.
///
/// # Errors
///
/// [`AuditError`]: a table that is not a table of one dimension, or whose figures contradict
/// each other.
pub fn rows(tables: &[PublishedTable], by: bool) -> Result<Vec<Row>, AuditError> {
    let mut known = Vec::with_capacity(tables.len());
    for table in tables {
        if table.dimensions.len() != 1 {
            return Err(AuditError::Dimensions(table.dimensions.len()));
        }
        known.push(ranges(table)?);
    }
    let values: BTreeSet<&String> = if by {
        tables
            .iter()
            .flat_map(|t| t.dimensions[0].values.iter())
            .collect()
    } else {
        BTreeSet::new()
    };
    let row = |value: Option<&String>| {
        let lists: Vec<Range> = tables
            .iter()
            .zip(&known)
            .map(|(table, known)| {
                table
                    .figures
                    .iter()
                    .position(|f| f.key.first().map(Option::as_ref) == Some(value))
                    .map_or(Range::exact(0), |i| known[i])
            })
            .collect();
        let union = Range {
            lo: lists.iter().map(|r| r.lo).max().unwrap_or(0),
            hi: lists
                .iter()
                .try_fold(0u64, |sum, r| r.hi.and_then(|hi| sum.checked_add(hi))),
        };
        Row {
            value: value.cloned(),
            lists,
            union,
        }
    };
    let mut out: Vec<Row> = values.into_iter().map(|v| row(Some(v))).collect();
    out.push(row(None));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::disclosure::{CountTable, DisclosureRules, protect};

    fn table(rows: &[(&str, u64)]) -> PublishedTable {
        let t =
            CountTable::new(["country"], rows.iter().map(|(c, n)| ([*c], *n)), 100_000).unwrap();
        protect(&t, &DisclosureRules::default())
    }

    #[test]
    fn the_union_is_at_least_the_largest_list_and_at_most_their_sum() {
        let a = table(&[("MY", 120), ("HK", 300)]);
        let b = table(&[("MY", 200), ("SA", 50)]);
        let rows = rows(&[a, b], true).unwrap();
        let values: Vec<Option<&str>> = rows.iter().map(|r| r.value.as_deref()).collect();
        assert_eq!(values, [Some("HK"), Some("MY"), Some("SA"), None]);
        // Hong Kong is on the first list only: the second counts 0 there.
        assert_eq!(rows[0].lists, [Range::exact(300), Range::exact(0)]);
        assert_eq!(rows[0].union, Range::exact(300));
        assert_eq!(
            rows[1].union,
            Range {
                lo: 200,
                hi: Some(320)
            }
        );
        assert_eq!(rows[3].lists, [Range::exact(420), Range::exact(250)]);
        assert_eq!(
            rows[3].union,
            Range {
                lo: 420,
                hi: Some(670)
            }
        );
    }

    #[test]
    fn a_suppressed_count_is_the_range_the_published_figures_allow() {
        // Brunei's 4 is suppressed, and Malaysia's 120 with it; the total is published.
        let a = table(&[("MY", 120), ("BN", 4), ("HK", 300)]);
        assert!(a.figure(&[Some("BN")]).unwrap().is_suppressed());
        let rows = rows(&[a], true).unwrap();
        let bn = &rows[0];
        assert_eq!(bn.value.as_deref(), Some("BN"));
        // BN + MY = 124: BN is anywhere from 0 to 124, as far as a reader can tell.
        assert_eq!(
            bn.lists[0],
            Range {
                lo: 0,
                hi: Some(124)
            }
        );
        assert_eq!(bn.lists[0].text(), "0–124");
        assert_eq!(rows[3].lists[0], Range::exact(424));
    }

    #[test]
    fn without_a_breakdown_the_report_is_the_totals() {
        let rows = rows(&[table(&[("MY", 120)]), table(&[("HK", 30)])], false).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].value, None);
        assert_eq!(
            rows[0].union,
            Range {
                lo: 120,
                hi: Some(150)
            }
        );
    }
}
