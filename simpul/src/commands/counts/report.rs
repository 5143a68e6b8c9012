//! The report of `simpul counts`, from the signed answers alone: each list's count (exact
//! where it is published, the range the published figures allow where it is suppressed or
//! rounded), each overlap of the caller's own list with a provider's, and what follows for
//! the size of their unions.

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

/// What one overlap run measured: the caller's own list A against one provider's list B,
/// each as its distinct identifiers. Made by [`Pair::new`] only, so the overlap is never
/// larger than either list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Pair {
    /// |A|: the distinct identifiers of the caller's list the run sent.
    identifiers: u64,
    /// |B|: the distinct identifiers of the provider's list.
    theirs: u64,
    /// |A ∩ B|.
    overlap: u64,
}

/// An overlap larger than either list it is the overlap of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an overlap of {overlap} between lists of {identifiers} and {theirs}")]
pub struct ImpossibleOverlap {
    identifiers: u64,
    theirs: u64,
    overlap: u64,
}

impl Pair {
    /// The figures of one run, if they can be the sizes of two sets and their intersection.
    ///
    /// # Errors
    ///
    /// [`ImpossibleOverlap`]: an overlap larger than one of the lists.
    pub fn new(identifiers: u64, theirs: u64, overlap: u64) -> Result<Pair, ImpossibleOverlap> {
        if overlap > identifiers || overlap > theirs {
            return Err(ImpossibleOverlap {
                identifiers,
                theirs,
                overlap,
            });
        }
        Ok(Pair {
            identifiers,
            theirs,
            overlap,
        })
    }

    /// |A|.
    pub fn identifiers(&self) -> u64 {
        self.identifiers
    }

    /// |B|.
    pub fn theirs(&self) -> u64 {
        self.theirs
    }

    /// |A ∩ B|.
    pub fn overlap(&self) -> u64 {
        self.overlap
    }

    /// |A ∪ B| = |A| + |B| − |A ∩ B|, exactly.
    pub fn union(&self) -> u64 {
        self.identifiers + self.theirs_only()
    }

    /// |B \ A| = |B| − |A ∩ B|: the provider's people not on the caller's list.
    fn theirs_only(&self) -> u64 {
        self.theirs - self.overlap
    }
}

/// What the runs say of the number of people on the caller's list A or on any provider's
/// list B₁ … Bₖ, each run having measured one |A ∩ Bᵢ|. `None` without a run, or when the
/// runs sent lists of different sizes (the list changed between runs: they did not measure
/// the same A).
///
/// A ∪ B₁ ∪ … ∪ Bₖ is A and, apart from it, the union of the Bᵢ \ A, each of known size
/// |Bᵢ| − |A ∩ Bᵢ|. That union is at least its largest part and at most the sum of its
/// parts, so the union of all is:
/// - at least |A| + maxᵢ |Bᵢ \ A| = maxᵢ |A ∪ Bᵢ|, the largest union of two, reached when the
///   Bᵢ \ A are nested;
/// - at most |A| + Σᵢ |Bᵢ| − Σᵢ |A ∩ Bᵢ|, reached when the Bᵢ \ A are disjoint. It counts a
///   person on j providers' lists and not on A j times — twice for two — because no run
///   measures an overlap between two providers' lists; someone on A is counted once, in |A|,
///   whatever else they are on.
///
/// Sets of any such sizes can be nested or disjoint, so no narrower bounds follow from these
/// figures; with one run both are |A ∪ B₁|.
pub fn union_of_all(pairs: &[Pair]) -> Option<Range> {
    let first = pairs.first()?;
    if pairs.iter().any(|p| p.identifiers != first.identifiers) {
        return None;
    }
    let lo = pairs.iter().map(Pair::union).max()?;
    let hi = pairs
        .iter()
        .try_fold(first.identifiers, |sum, p| sum.checked_add(p.theirs_only()));
    Some(Range { lo, hi })
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

    fn pair(a: &BTreeSet<u32>, b: &BTreeSet<u32>) -> Pair {
        let n = |s: &BTreeSet<u32>| s.len() as u64;
        Pair::new(n(a), n(b), a.intersection(b).count() as u64).unwrap()
    }

    #[test]
    fn the_union_of_two_lists_is_exact() {
        let p = Pair::new(5913, 5153, 3087).unwrap();
        assert_eq!(p.union(), 7979);
        assert_eq!(union_of_all(&[p]), Some(Range::exact(7979)));
        assert!(Pair::new(100, 50, 51).is_err());
        assert!(Pair::new(50, 100, 51).is_err());
    }

    #[test]
    fn the_union_of_all_is_at_least_the_largest_union_of_two_and_at_most_what_counts_the_providers_overlaps_twice()
     {
        // The demo's figures: 5,913 self-reports, 5,153 placements (3,087 of them
        // self-reported), 3,933 memberships (2,352).
        let pairs = [
            Pair::new(5913, 5153, 3087).unwrap(),
            Pair::new(5913, 3933, 2352).unwrap(),
        ];
        assert_eq!(
            union_of_all(&pairs),
            Some(Range {
                lo: 7979,
                hi: Some(5913 + 5153 + 3933 - 3087 - 2352)
            })
        );
        // Runs of a list that changed in between measured two lists, not one.
        let changed = [pairs[0], Pair::new(5914, 3933, 2352).unwrap()];
        assert_eq!(union_of_all(&changed), None);
        assert_eq!(union_of_all(&[]), None);
    }

    #[test]
    fn the_bounds_hold_the_true_union_and_meet_it_when_the_providers_lists_do_not_overlap_off_the_callers()
     {
        // A small generator, so the sets are the same on every run.
        struct XorShift(u64);
        impl XorShift {
            fn below(&mut self, n: u32) -> u32 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 % u64::from(n)) as u32
            }
            fn set(&mut self, most: u32, universe: u32) -> BTreeSet<u32> {
                let n = self.below(most);
                (0..n).map(|_| self.below(universe)).collect()
            }
        }
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        for round in 0..200u32 {
            let universe = 20 + rng.below(200);
            let a = rng.set(60, universe);
            let bs: Vec<BTreeSet<u32>> =
                (0..1 + round % 4).map(|_| rng.set(80, universe)).collect();
            let pairs: Vec<Pair> = bs.iter().map(|b| pair(&a, b)).collect();
            let all: BTreeSet<u32> = bs.iter().flatten().chain(&a).copied().collect();
            let truth = all.len() as u64;
            let Range { lo, hi } = union_of_all(&pairs).unwrap();
            let hi = hi.unwrap();
            assert!(lo <= truth && truth <= hi, "{round}: {lo} ≤ {truth} ≤ {hi}");
            // What the upper bound counts more than once: people on two providers' lists
            // and not on A, once for each list more than one they are on.
            let surplus: u64 = all
                .iter()
                .filter(|x| !a.contains(x))
                .map(|x| bs.iter().filter(|b| b.contains(x)).count() as u64 - 1)
                .sum();
            assert_eq!(hi - truth, surplus, "{round}");
            let largest_pair = pairs.iter().map(Pair::union).max().unwrap();
            assert_eq!(lo, largest_pair, "{round}");
        }
    }
}
