//! The disclosure rules of statistics answers (issue #16): a table of counts is published with
//! its small figures suppressed, enough further figures suppressed that none can be recovered
//! from the rest, and optionally rounded; and anyone holding only the published table can
//! recompute what it reveals.
//!
//! # What is published
//!
//! A [`CountTable`] has named dimensions, each with the values seen in the data (sorted); its
//! cells are every combination of one value per dimension, a combination absent from the data
//! being a count of zero. The published table holds every cell and **every marginal total**:
//! the sum over any subset of the dimensions (for 2 dimensions the row totals, the column
//! totals and the grand total; for 3 also the three 2-way tables). All margins, not only the
//! ones with one dimension removed, because a consumer asking for country × sector × sex wants
//! the country totals too; if they were left out the consumer would add up 2-way figures and
//! meet every suppression twice. The auditor models exactly this: every published figure is an
//! equation over the cells.
//!
//! # The rules ([`DisclosureRules`])
//!
//! - A figure (cell or total) whose count is in `1..min_cell` is *sensitive* and suppressed
//!   (*primary* suppression). Zero is not sensitive: it identifies no one, zeros are common
//!   (most countries send no workers to most sectors), and suppressing them would hide much
//!   and protect nothing. (That a whole total sits in one cell — every worker from X is in
//!   sector A — is group disclosure, which a threshold rule does not address.)
//! - Further figures are suppressed (*complementary* suppression) until the guarantee below
//!   holds.
//! - With a rounding base, every published figure is rounded to the nearest multiple of it,
//!   halves up (base 5: 12 → 10, 13 → 15, 2 → 0), each figure from its own true value, so the
//!   published totals no longer add up exactly. Suppression is decided on the true values;
//!   rounding only widens what a reader can infer, so the guarantee survives it.
//!
//! # The guarantee
//!
//! For every suppressed figure with true value `v`, among the tables of nonnegative integer
//! counts that agree with every published figure (the true table is one):
//! - there is one where the figure is not `v` — no suppressed figure can be recovered;
//! - there is one where it is at least `min_cell` — the published figures do not reveal
//!   that it is small.
//!
//! The second holds for every suppressed figure, not only the primary ones, because the
//! published table does not say which are primary: every suppressed figure is marked alike.
//! Saying it would undo the guarantee. A reader told that a figure is primary knows it is
//! from 1 to `min_cell` − 1, and those bounds, added to the published equations, pin some
//! figures to one value: on 300 generated tables protected as here, 38 of 3,421 suppressed
//! figures, in 6 tables (`tests::telling_which_figures_are_primary_would_recover_some`).
//!
//! [`protect`] establishes this with integer witnesses (explicit tables), so it holds exactly,
//! in any number of dimensions. [`feasible_ranges`] recomputes each suppressed figure's range
//! from the published table alone by linear programming; the relaxation's range, rounded
//! inward to integers, is exactly the integer range for 1- and 2-dimensional tables (their
//! equations are totally unimodular) and may be wider for 3 or more. The check a reader can
//! make, [`FeasibleRange::protected`], is the guarantee stated on that range.
//!
//! # How
//!
//! [`protect`] suppresses the sensitive figures, then proposes complementary ones line by
//! line (greedy: a line with a single suppression gets its smallest nonzero published part
//! suppressed too), then proves each suppressed figure protected by a witness: a *move*
//! (a hypercube of cells, with the totals it touches, moved `±δ` among suppressed figures
//! only), or, in an independent part of the table small enough, the integer solution of a
//! linear program. A figure with no witness gets the cheapest move that protects it (its
//! members suppressed), and the proof goes round again until every figure has one. The
//! greedy proposal alone is not enough in 2 or 3 dimensions; the tests show it leaking.
//!
//! Cost (the benchmark, `benches/disclosure.rs`, on this 2-core machine): protecting 200
//! countries × 10 sectors × 2 sexes (4,000 cells, 6,633 figures, 1,830 of them sensitive)
//! takes 0.4 to 0.55 s. Its suppressed figures form one part of 2,300, too large for a
//! linear program within that time, so there the witnesses are moves only and the
//! suppression is heavier than a program would make it (803 complementary figures, against
//! 480 when programs over the whole part were tried, at 8 s). Auditing takes a linear
//! program per suppressed figure, less where a solution already reached a figure's bound:
//! 1.2 to 2 s for the 341 of 80 countries, 26 s for the 902 of 120, 12 minutes for the
//! 2,633 of all 200 (which it finds all protected) — an auditor's tool, not a per-answer
//! step.
//!
//! Not addressed here: differencing between two answers with different filters (the
//! population minimum, [`check_population`], limits it), and rounding's own protection.

mod audit;
mod lattice;
mod protect;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};

pub use audit::{AuditError, FeasibleRange, feasible_ranges};
pub use protect::protect;

use lattice::Lattice;

/// The threshold below which a nonzero count is sensitive, unless the contract sets another.
pub const DEFAULT_MIN_CELL: u64 = 10;

/// The smallest population a query's filters may select, unless the contract sets another.
pub const DEFAULT_MIN_POPULATION: u64 = 100;

/// The most cells a table may have, unless the contract sets another.
pub const DEFAULT_MAX_CELLS: usize = 100_000;

/// The most dimensions a table may have: its figures number the product of `values + 1`, and
/// a contract's list of dimensions is short.
pub const MAX_DIMENSIONS: usize = 8;

/// A contract's disclosure rules. The defaults are the secure ones; each `with_` call names a
/// change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisclosureRules {
    min_cell: u64,
    round_to: Option<NonZeroU64>,
    min_population: u64,
    max_cells: usize,
}

impl Default for DisclosureRules {
    fn default() -> Self {
        DisclosureRules {
            min_cell: DEFAULT_MIN_CELL,
            round_to: None,
            min_population: DEFAULT_MIN_POPULATION,
            max_cells: DEFAULT_MAX_CELLS,
        }
    }
}

impl DisclosureRules {
    /// Counts in `1..min_cell` are sensitive (0 or 1: none is).
    pub fn with_min_cell(mut self, min_cell: u64) -> Self {
        self.min_cell = min_cell;
        self
    }

    /// Published figures are rounded to the nearest multiple of `base`, halves up.
    pub fn with_round_to(mut self, base: NonZeroU64) -> Self {
        self.round_to = Some(base);
        self
    }

    /// A query whose filters select fewer than `min_population` is refused.
    pub fn with_min_population(mut self, min_population: u64) -> Self {
        self.min_population = min_population;
        self
    }

    /// A table of more than `max_cells` cells is refused.
    pub fn with_max_cells(mut self, max_cells: usize) -> Self {
        self.max_cells = max_cells;
        self
    }

    /// The threshold below which a nonzero count is sensitive.
    pub fn min_cell(&self) -> u64 {
        self.min_cell
    }

    /// The rounding base, if figures are rounded.
    pub fn round_to(&self) -> Option<NonZeroU64> {
        self.round_to
    }

    /// The smallest population a query may select.
    pub fn min_population(&self) -> u64 {
        self.min_population
    }

    /// The most cells a table may have.
    pub fn max_cells(&self) -> usize {
        self.max_cells
    }
}

/// A query whose filters select too few people to answer: refused before any table is made.
/// It carries the minimum only — the population itself is what must not be told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the population the filters select is below the contract's minimum of {minimum}")]
pub struct PopulationTooSmall {
    /// The contract's minimum population.
    pub minimum: u64,
}

impl PopulationTooSmall {
    /// The stable code of this refusal.
    pub const CODE: &'static str = "population-too-small";
}

/// Refuses a query whose filters select a `population` (the filtered table's grand total)
/// below the rules' minimum.
///
/// # Errors
///
/// [`PopulationTooSmall`] when `population < rules.min_population()`.
pub fn check_population(
    population: u64,
    rules: &DisclosureRules,
) -> Result<(), PopulationTooSmall> {
    if population < rules.min_population {
        return Err(PopulationTooSmall {
            minimum: rules.min_population,
        });
    }
    Ok(())
}

/// One dimension of a table: its name and its values, sorted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dimension {
    /// The name, from the contract's list (`destination`, `sector`, `sex`, …).
    pub name: String,
    /// The values seen, sorted.
    pub values: Vec<String>,
}

/// Why a table of counts was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// A table needs at least one dimension.
    #[error("a table needs at least one dimension")]
    NoDimensions,
    /// More dimensions than [`MAX_DIMENSIONS`].
    #[error("{dimensions} dimensions, the most is {limit}")]
    TooManyDimensions {
        /// Dimensions given.
        dimensions: usize,
        /// [`MAX_DIMENSIONS`].
        limit: usize,
    },
    /// A dimension named twice.
    #[error("dimension `{0}` is named twice")]
    DuplicateDimension(String),
    /// A row whose key has not one value per dimension.
    #[error("row {row} has {found} values, the table has {expected} dimensions")]
    WrongArity {
        /// The row's position in the input.
        row: usize,
        /// The number of dimensions.
        expected: usize,
        /// The number of values in the row's key.
        found: usize,
    },
    /// Two rows with the same key: the counts come aggregated, one row per cell.
    #[error("the cell {key:?} appears twice")]
    DuplicateCell {
        /// The key.
        key: Vec<String>,
    },
    /// More cells (the product of the values per dimension) than the rules allow.
    #[error("the table has {cells} cells, the most is {limit}")]
    TooManyCells {
        /// The number of cells, saturated at `u64::MAX`.
        cells: u64,
        /// The rules' limit.
        limit: usize,
    },
    /// A total that does not fit in 64 bits.
    #[error("the counts add up past 2^64")]
    CountOverflow,
}

/// A table of counts over named dimensions, checked and with every marginal total computed.
#[derive(Clone, Debug)]
pub struct CountTable {
    dimensions: Vec<Dimension>,
    lattice: Lattice,
    /// Every figure's count, in lattice order.
    values: Vec<u64>,
}

impl CountTable {
    /// The table of `rows` (a key of one value per dimension, in the order of `dimensions`,
    /// and its count) over `dimensions`. The values of each dimension are those seen in the
    /// rows; a combination of them with no row counts zero.
    ///
    /// # Errors
    ///
    /// [`TableError`]: no dimension or too many, a dimension named twice, a key of the wrong
    /// length, a key twice, more cells than `max_cells`, or totals past `u64`.
    pub fn new<N, R, K, V>(
        dimensions: N,
        rows: R,
        max_cells: usize,
    ) -> Result<CountTable, TableError>
    where
        N: IntoIterator,
        N::Item: Into<String>,
        R: IntoIterator<Item = (K, u64)>,
        K: IntoIterator<Item = V>,
        V: Into<String>,
    {
        let names: Vec<String> = dimensions.into_iter().map(Into::into).collect();
        if names.is_empty() {
            return Err(TableError::NoDimensions);
        }
        if names.len() > MAX_DIMENSIONS {
            return Err(TableError::TooManyDimensions {
                dimensions: names.len(),
                limit: MAX_DIMENSIONS,
            });
        }
        let mut seen = BTreeSet::new();
        for name in &names {
            if !seen.insert(name.as_str()) {
                return Err(TableError::DuplicateDimension(name.clone()));
            }
        }
        let n = names.len();
        let mut keyed = Vec::new();
        let mut values: Vec<BTreeSet<String>> = vec![BTreeSet::new(); n];
        for (row, (key, count)) in rows.into_iter().enumerate() {
            let key: Vec<String> = key.into_iter().map(Into::into).collect();
            if key.len() != n {
                return Err(TableError::WrongArity {
                    row,
                    expected: n,
                    found: key.len(),
                });
            }
            for (d, v) in key.iter().enumerate() {
                values[d].insert(v.clone());
            }
            keyed.push((key, count));
        }
        let cells = values
            .iter()
            .fold(1u64, |acc, v| acc.saturating_mul(v.len() as u64));
        if cells > max_cells as u64 {
            return Err(TableError::TooManyCells {
                cells,
                limit: max_cells,
            });
        }
        let dimensions: Vec<Dimension> = names
            .into_iter()
            .zip(values)
            .map(|(name, values)| Dimension {
                name,
                values: values.into_iter().collect(),
            })
            .collect();
        // With at most `max_cells` cells and MAX_DIMENSIONS dimensions the figures fit.
        let sizes: Vec<usize> = dimensions.iter().map(|d| d.values.len()).collect();
        let lattice = Lattice::new(&sizes).ok_or(TableError::TooManyCells {
            cells,
            limit: max_cells,
        })?;
        let index: Vec<BTreeMap<&str, usize>> = dimensions
            .iter()
            .map(|d| {
                d.values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (v.as_str(), i))
                    .collect()
            })
            .collect();
        let mut figures = vec![0u64; lattice.len()];
        let mut filled = vec![false; lattice.len()];
        let mut digits = vec![0usize; n];
        for (key, count) in &keyed {
            for (d, v) in key.iter().enumerate() {
                // Every value of every key was collected above.
                digits[d] = index[d].get(v.as_str()).copied().unwrap_or_default();
            }
            let cell = lattice.figure(&digits);
            if std::mem::replace(&mut filled[cell], true) {
                return Err(TableError::DuplicateCell { key: key.clone() });
            }
            figures[cell] = *count;
        }
        let values = marginals(&lattice, figures).ok_or(TableError::CountOverflow)?;
        Ok(CountTable {
            dimensions,
            lattice,
            values,
        })
    }

    /// The dimensions and their values.
    pub fn dimensions(&self) -> &[Dimension] {
        &self.dimensions
    }

    /// The number of cells.
    pub fn cell_count(&self) -> usize {
        self.lattice.cells().count()
    }

    /// The grand total: the population the table counts.
    pub fn population(&self) -> u64 {
        self.values[self.lattice.len() - 1]
    }

    /// The count of the figure `key` names (`None` in a place: the total over that dimension),
    /// or `None` if a value is not one of the table's.
    pub fn count(&self, key: &[Option<&str>]) -> Option<u64> {
        if key.len() != self.dimensions.len() {
            return None;
        }
        let mut digits = Vec::with_capacity(key.len());
        for (dim, value) in self.dimensions.iter().zip(key) {
            digits.push(match value {
                None => dim.values.len(),
                Some(v) => dim.values.iter().position(|x| x == v)?,
            });
        }
        Some(self.values[self.lattice.figure(&digits)])
    }

    /// Figure `f`'s key, `None` where it totals over a dimension.
    fn key(&self, f: usize) -> Vec<Option<String>> {
        key_of(&self.lattice, &self.dimensions, f)
    }
}

/// Figure `f`'s key in a table of `dimensions`.
fn key_of(lattice: &Lattice, dimensions: &[Dimension], f: usize) -> Vec<Option<String>> {
    dimensions
        .iter()
        .enumerate()
        .map(|(d, dim)| dim.values.get(lattice.digit(f, d)).cloned())
        .collect()
}

/// Every figure's count from the cells' (`figures` holds the cells, zero elsewhere): a total
/// is summed along the last dimension it totals over, from figures that total over earlier
/// dimensions only, which are summed before it. `None` on overflow.
fn marginals(lattice: &Lattice, mut figures: Vec<u64>) -> Option<Vec<u64>> {
    let n = lattice.dims();
    for d in 0..n {
        for f in 0..lattice.len() {
            if lattice.is_total(f, d) && (d + 1..n).all(|e| !lattice.is_total(f, e)) {
                let mut sum = 0u64;
                for child in lattice.children(f, d) {
                    sum = sum.checked_add(figures[child])?;
                }
                figures[f] = sum;
            }
        }
    }
    Some(figures)
}

/// `value` rounded to the nearest multiple of `base`, halves up.
pub fn round_to_base(value: u64, base: NonZeroU64) -> u64 {
    let b = base.get();
    let (q, r) = (value / b, value % b);
    // Up when the remainder is at least half the base: r >= ceil(b / 2).
    if r >= b - b / 2 {
        q.saturating_add(1).saturating_mul(b)
    } else {
        q * b
    }
}

/// The true values a figure published as `rounded` (rounded to `base`, halves up) may have:
/// `rounded - floor(b/2) ..= rounded + ceil(b/2) - 1`, at least 0.
pub fn unrounded_range(rounded: u64, base: NonZeroU64) -> (u64, u64) {
    let b = base.get();
    let half = b / 2;
    (
        rounded.saturating_sub(half),
        rounded.saturating_add(b - half - 1),
    )
}

/// Why a figure was suppressed: the provider's own account, never published (a reader told
/// which figures are primary knows each is from 1 to `min_cell` − 1, and with that can
/// recover some of them; [`PublishedTable`] marks every suppressed figure alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Suppression {
    /// Its count is in `1..min_cell`.
    Primary,
    /// Suppressed so that the primary ones cannot be recovered from the rest.
    Complementary,
}

/// A published figure: its count, or suppressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "FigureWire", try_from = "FigureWire")]
pub enum Figure {
    /// The count (rounded, if the rules round).
    Count(u64),
    /// Suppressed: a count from 1 to `min_cell` − 1, or one suppressed so that those cannot
    /// be recovered. Which of the two is not said.
    Suppressed,
}

/// A figure as it travels: `{"count": n}` or `{"suppressed": true}`.
#[derive(Serialize, Deserialize)]
struct FigureWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    suppressed: Option<bool>,
}

impl From<Figure> for FigureWire {
    fn from(f: Figure) -> Self {
        match f {
            Figure::Count(v) => FigureWire {
                count: Some(v),
                suppressed: None,
            },
            Figure::Suppressed => FigureWire {
                count: None,
                suppressed: Some(true),
            },
        }
    }
}

impl TryFrom<FigureWire> for Figure {
    type Error = &'static str;

    fn try_from(w: FigureWire) -> Result<Self, Self::Error> {
        match (w.count, w.suppressed) {
            (Some(v), None) => Ok(Figure::Count(v)),
            (None, Some(true)) => Ok(Figure::Suppressed),
            _ => Err("a figure has either `count` or `\"suppressed\": true`"),
        }
    }
}

impl Figure {
    /// The published count, `None` when suppressed.
    pub fn value(&self) -> Option<u64> {
        match self {
            Figure::Count(v) => Some(*v),
            Figure::Suppressed => None,
        }
    }

    /// Whether it is suppressed.
    pub fn is_suppressed(&self) -> bool {
        matches!(self, Figure::Suppressed)
    }
}

/// One cell or total of a published table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedFigure {
    /// One entry per dimension: the value, or `None` where the figure totals over it.
    pub key: Vec<Option<String>>,
    /// Its count, or that it is suppressed.
    #[serde(flatten)]
    pub figure: Figure,
}

/// A table as the answer carries it: every cell and every marginal total, each with its count
/// or why it is suppressed, in a fixed order (the last dimension varying fastest, each
/// dimension's total after its values; the grand total last), and the rules it was made
/// under, which a reader's audit needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedTable {
    /// The dimensions and their values.
    pub dimensions: Vec<Dimension>,
    /// The threshold the table was protected for.
    pub min_cell: u64,
    /// The rounding base of the published counts, if they are rounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_to: Option<NonZeroU64>,
    /// Every figure.
    pub figures: Vec<PublishedFigure>,
}

impl PublishedTable {
    /// The figure `key` names, if the table has it.
    pub fn figure(&self, key: &[Option<&str>]) -> Option<Figure> {
        self.figures
            .iter()
            .find(|f| {
                f.key.len() == key.len() && f.key.iter().zip(key).all(|(a, b)| a.as_deref() == *b)
            })
            .map(|f| f.figure)
    }

    /// The keys of the figures suppressed.
    pub fn suppressed(&self) -> impl Iterator<Item = &[Option<String>]> {
        self.figures
            .iter()
            .filter(|f| f.figure.is_suppressed())
            .map(|f| f.key.as_slice())
    }
}

/// The published form of `table` with the figures `suppressed` marks suppressed.
fn publish(
    table: &CountTable,
    suppressed: &[Option<Suppression>],
    rules: &DisclosureRules,
) -> PublishedTable {
    let figures = (0..table.lattice.len())
        .map(|f| PublishedFigure {
            key: table.key(f),
            figure: match suppressed[f] {
                Some(_) => Figure::Suppressed,
                None => Figure::Count(match rules.round_to {
                    Some(base) => round_to_base(table.values[f], base),
                    None => table.values[f],
                }),
            },
        })
        .collect();
    PublishedTable {
        dimensions: table.dimensions.clone(),
        min_cell: rules.min_cell,
        round_to: rules.round_to,
        figures,
    }
}
