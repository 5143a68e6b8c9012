//! What a published table reveals: the range of values each suppressed figure can take among
//! the tables that agree with everything published, by linear programming (`microlp`) over the
//! table's line equations.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;

use super::lattice::Lattice;
use super::{Figure, MAX_DIMENSIONS, PublishedTable, unrounded_range};

/// How far from an integer an LP value may be and still count as that integer.
const EPSILON: f64 = 1e-6;

/// Why a published table could not be audited.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// No dimension, or more than [`MAX_DIMENSIONS`].
    #[error("a published table has 1 to {MAX_DIMENSIONS} dimensions, this one {0}")]
    Dimensions(usize),
    /// A dimension without values or with a value twice.
    #[error("dimension `{0}` has no values or a value twice")]
    Values(String),
    /// Not one figure per cell and marginal total.
    #[error("{found} figures where the dimensions make {expected}")]
    FigureCount {
        /// Cells and totals of the dimensions.
        expected: usize,
        /// Figures in the table.
        found: usize,
    },
    /// A figure out of the fixed order, or with a key that is not the table's.
    #[error("figure {0} is not where the table's order puts it")]
    Order(usize),
    /// The published figures contradict each other: no table of nonnegative counts has them.
    #[error("no table of nonnegative counts agrees with the published figures")]
    Inconsistent,
    /// The LP solver failed.
    #[error("the LP solver failed: {0}")]
    Solver(String),
}

/// The values a suppressed figure can take, given only the published table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FeasibleRange {
    /// The figure's key (`None`: total over that dimension).
    pub key: Vec<Option<String>>,
    /// The least value it can take.
    pub lo: u64,
    /// The greatest, `None` if nothing published bounds it.
    pub hi: Option<u64>,
}

impl FeasibleRange {
    /// Whether the range meets the guarantee of the module documentation for a table
    /// protected at `min_cell`: not a single value, and reaching `min_cell` (a reader does not
    /// know which suppressed figures are the small ones, so none may be shown to be small).
    pub fn protected(&self, min_cell: u64) -> bool {
        self.hi.is_none_or(|hi| hi > self.lo && hi >= min_cell)
    }
}

/// Every suppressed figure's range of values among the tables of nonnegative counts that
/// agree with `published` — its published counts exactly or, if rounded, to within the
/// rounding — in the table's order. The ranges are those of the linear relaxation, rounded
/// inward to integers: exact for tables of 1 or 2 dimensions, possibly wider than the integer
/// range for more.
///
/// # Errors
///
/// [`AuditError`]: the table is malformed, its figures contradict each other, or the solver
/// failed.
pub fn feasible_ranges(published: &PublishedTable) -> Result<Vec<FeasibleRange>, AuditError> {
    ranges(published, |_| Known::Unknown)
}

/// [`feasible_ranges`] for a reader who also knows which suppressed figures are primary
/// (`primary(f)` for figure `f`), each from 1 to `min_cell` − 1: what the answer would give
/// away if it said so (the module documentation, and the test that measures it).
#[cfg(test)]
pub(crate) fn ranges_knowing_primary(
    published: &PublishedTable,
    primary: impl Fn(usize) -> bool,
) -> Result<Vec<FeasibleRange>, AuditError> {
    let small = published.min_cell.saturating_sub(1);
    ranges(published, |f| {
        if primary(f) {
            Known::Between(1, small)
        } else {
            Known::Unknown
        }
    })
}

/// The ranges of the suppressed figures, each suppressed figure `f` known as `suppressed(f)`
/// says.
fn ranges(
    published: &PublishedTable,
    suppressed: impl Fn(usize) -> Known,
) -> Result<Vec<FeasibleRange>, AuditError> {
    let lattice = structure(published)?;
    let base = published.round_to.filter(|b| b.get() > 1);
    let model = Model::build(&lattice, |f| match published.figures[f].figure {
        Figure::Suppressed => suppressed(f),
        Figure::Count(v) => match base {
            Some(base) => {
                let (lo, hi) = unrounded_range(v, base);
                Known::Between(lo, hi)
            }
            None => Known::Exact(v),
        },
    })?;
    // The suppressed figures' variables, by component, in figure order.
    let mut by_component: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (f, figure) in published.figures.iter().enumerate() {
        if figure.figure.is_suppressed() {
            let var = model.var_of[f];
            by_component
                .entry(model.component(var))
                .or_default()
                .push(var);
        }
    }
    let mut hi = vec![None; model.figure_of.len()];
    let mut lo = vec![0; model.figure_of.len()];
    let mut seen = Seen::new(&model);
    for targets in by_component.values() {
        let maxima = model.extremes(targets, Direction::Max, &mut seen)?;
        for (&var, max) in targets.iter().zip(maxima) {
            hi[var] = max.map(floor);
        }
        let minima = model.extremes(targets, Direction::Min, &mut seen)?;
        for (&var, min) in targets.iter().zip(minima) {
            // Bounded below by zero: only a solver fault has no minimum.
            lo[var] = ceil(min.ok_or_else(|| AuditError::Solver("unbounded minimum".into()))?);
        }
    }
    let ranges = published
        .figures
        .iter()
        .enumerate()
        .filter_map(|(f, figure)| {
            if !figure.figure.is_suppressed() {
                return None;
            }
            let var = model.var_of[f];
            Some(FeasibleRange {
                key: figure.key.clone(),
                lo: lo[var],
                hi: hi[var],
            })
        })
        .collect();
    Ok(ranges)
}

/// The lattice of `published`, once its dimensions and the order of its figures are checked.
pub(super) fn structure(published: &PublishedTable) -> Result<Lattice, AuditError> {
    let n = published.dimensions.len();
    if n == 0 || n > MAX_DIMENSIONS {
        return Err(AuditError::Dimensions(n));
    }
    for dim in &published.dimensions {
        let mut values: Vec<&String> = dim.values.iter().collect();
        values.sort();
        values.dedup();
        if values.is_empty() || values.len() != dim.values.len() {
            return Err(AuditError::Values(dim.name.clone()));
        }
    }
    let sizes: Vec<usize> = published
        .dimensions
        .iter()
        .map(|d| d.values.len())
        .collect();
    let found = published.figures.len();
    let lattice = Lattice::new(&sizes)
        .filter(|l| l.len() == found)
        .ok_or_else(|| AuditError::FigureCount {
            expected: sizes
                .iter()
                .fold(1usize, |acc, k| acc.saturating_mul(k.saturating_add(1))),
            found,
        })?;
    for (f, figure) in published.figures.iter().enumerate() {
        let in_place = figure.key.len() == n
            && figure.key.iter().enumerate().all(|(d, value)| {
                value.as_ref() == published.dimensions[d].values.get(lattice.digit(f, d))
            });
        if !in_place {
            return Err(AuditError::Order(f));
        }
    }
    Ok(lattice)
}

/// An LP value as the least integer it allows.
pub(super) fn ceil(value: f64) -> u64 {
    (value - EPSILON * value.abs().max(1.0)).ceil().max(0.0) as u64
}

/// An LP value as the greatest integer it allows.
pub(super) fn floor(value: f64) -> u64 {
    (value + EPSILON * value.abs().max(1.0)).floor().max(0.0) as u64
}

/// What is known of a figure.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Known {
    /// Published exactly.
    Exact(u64),
    /// Published rounded: somewhere in this range.
    Between(u64, u64),
    /// Suppressed.
    Unknown,
}

/// Which way to optimise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Min,
    Max,
}

/// An optimum of one variable.
#[derive(Debug)]
pub(crate) enum Extreme {
    /// No bound in that direction.
    Unbounded,
    /// The optimum and a solution reaching it, as `(variable, value)` over the variable's
    /// component.
    Optimum {
        value: f64,
        point: Vec<(usize, f64)>,
    },
}

/// A solution over one component, as `(variable, value)`.
type Point = Vec<(usize, f64)>;

/// One line equation with the known figures moved to the right: the sum of `terms` is `rhs`.
#[derive(Debug)]
struct Row {
    terms: Vec<(usize, f64)>,
    rhs: f64,
}

/// The linear system of a table's line equations over its figures that are not known exactly,
/// split into independent components (variables that share no equation).
#[derive(Debug)]
pub(crate) struct Model {
    /// The variable of each figure (`usize::MAX` for a figure known exactly).
    pub(crate) var_of: Vec<usize>,
    /// The figure of each variable.
    pub(crate) figure_of: Vec<usize>,
    /// Each variable's bounds.
    bounds: Vec<(f64, f64)>,
    rows: Vec<Row>,
    /// Each variable's component.
    component_of: Vec<usize>,
    /// Each component's variables and rows.
    components: Vec<(Vec<usize>, Vec<usize>)>,
}

impl Model {
    /// The system of `lattice`'s lines given what is known of each figure.
    ///
    /// # Errors
    ///
    /// [`AuditError::Inconsistent`] if a line of known figures does not add up.
    pub(crate) fn build(
        lattice: &Lattice,
        known: impl Fn(usize) -> Known,
    ) -> Result<Model, AuditError> {
        let mut var_of = vec![usize::MAX; lattice.len()];
        let mut figure_of = Vec::new();
        let mut bounds = Vec::new();
        let mut exact = vec![0u64; lattice.len()];
        for (f, slot) in var_of.iter_mut().enumerate() {
            let range = match known(f) {
                Known::Exact(v) => {
                    exact[f] = v;
                    continue;
                }
                Known::Between(lo, hi) => (lo as f64, hi as f64),
                Known::Unknown => (0.0, f64::INFINITY),
            };
            *slot = figure_of.len();
            figure_of.push(f);
            bounds.push(range);
        }
        let mut rows = Vec::new();
        let mut sets = UnionFind::new(figure_of.len());
        for (parent, d) in lattice.lines() {
            // children - parent = 0, the known ones moved to the right.
            let mut terms = Vec::new();
            let mut rhs: i128 = 0;
            for (f, sign) in lattice
                .children(parent, d)
                .map(|c| (c, 1i128))
                .chain([(parent, -1)])
            {
                match var_of[f] {
                    usize::MAX => rhs -= sign * i128::from(exact[f]),
                    var => terms.push((var, sign as f64)),
                }
            }
            if terms.is_empty() {
                if rhs != 0 {
                    return Err(AuditError::Inconsistent);
                }
                continue;
            }
            for pair in terms.windows(2) {
                sets.union(pair[0].0, pair[1].0);
            }
            rows.push(Row {
                terms,
                rhs: rhs as f64,
            });
        }
        let mut component_of = vec![usize::MAX; figure_of.len()];
        let mut components: Vec<(Vec<usize>, Vec<usize>)> = Vec::new();
        let mut root_component = vec![usize::MAX; figure_of.len()];
        for (var, slot) in component_of.iter_mut().enumerate() {
            let root = sets.find(var);
            if root_component[root] == usize::MAX {
                root_component[root] = components.len();
                components.push((Vec::new(), Vec::new()));
            }
            *slot = root_component[root];
            components[*slot].0.push(var);
        }
        for (r, row) in rows.iter().enumerate() {
            components[component_of[row.terms[0].0]].1.push(r);
        }
        Ok(Model {
            var_of,
            figure_of,
            bounds,
            rows,
            component_of,
            components,
        })
    }

    /// The least or greatest value of variable `target` over its component's equations.
    ///
    /// # Errors
    ///
    /// [`AuditError::Inconsistent`] if the equations have no solution,
    /// [`AuditError::Solver`] if the solver fails (or panics).
    pub(crate) fn extreme(
        &self,
        target: usize,
        direction: Direction,
    ) -> Result<Extreme, AuditError> {
        self.extreme_sum(&[target], direction)
    }

    /// The number of variables in variable `var`'s component.
    pub(crate) fn component_size(&self, var: usize) -> usize {
        self.components[self.component_of[var]].0.len()
    }

    /// The component of variable `var`, as a number.
    pub(crate) fn component(&self, var: usize) -> usize {
        self.component_of[var]
    }

    /// Adds the equations `rows` to `problem`, over the variables `local` maps to its own.
    fn add_equations(
        &self,
        problem: &mut microlp::Problem,
        rows: &[usize],
        local: &std::collections::HashMap<usize, microlp::Variable>,
    ) {
        for &r in rows {
            let row = &self.rows[r];
            let terms: Vec<(microlp::Variable, f64)> = row
                .terms
                .iter()
                .filter_map(|(var, coeff)| local.get(var).map(|h| (*h, *coeff)))
                .collect();
            problem.add_constraint(terms, microlp::ComparisonOp::Eq, row.rhs);
        }
    }

    /// The least or greatest sum of the variables `targets` (of one component, not empty)
    /// over their component's equations.
    ///
    /// # Errors
    ///
    /// As [`Model::extreme`].
    pub(crate) fn extreme_sum(
        &self,
        targets: &[usize],
        direction: Direction,
    ) -> Result<Extreme, AuditError> {
        let Some(&first) = targets.first() else {
            return Err(AuditError::Solver("nothing to optimise".into()));
        };
        let (vars, rows) = &self.components[self.component_of[first]];
        let mut local = std::collections::HashMap::with_capacity(vars.len());
        let mut problem = microlp::Problem::new(match direction {
            Direction::Min => microlp::OptimizationDirection::Minimize,
            Direction::Max => microlp::OptimizationDirection::Maximize,
        });
        let mut handles = Vec::with_capacity(vars.len());
        for &var in vars {
            let coeff = if targets.contains(&var) { 1.0 } else { 0.0 };
            let handle = problem.add_var(coeff, self.bounds[var]);
            local.insert(var, handle);
            handles.push(handle);
        }
        self.add_equations(&mut problem, rows, &local);
        // The solver is young and documents that it may panic on hard problems: a panic is
        // a failure to audit, not a crash of the gateway.
        let solved = catch_unwind(AssertUnwindSafe(|| problem.solve()))
            .map_err(|_| AuditError::Solver("the solver panicked".into()))?;
        match solved.map(microlp::SolveOutcome::into_solution) {
            // No time limit is set, so every outcome is a solution.
            Ok(Err(_)) => Err(AuditError::Solver("the solve was interrupted".into())),
            Ok(Ok(solution)) => {
                let point = vars
                    .iter()
                    .zip(&handles)
                    .map(|(&var, &h)| (var, solution[h]))
                    .collect();
                Ok(Extreme::Optimum {
                    value: solution.objective(),
                    point,
                })
            }
            Err(microlp::Error::Unbounded) => Ok(Extreme::Unbounded),
            Err(microlp::Error::Infeasible) => Err(AuditError::Inconsistent),
            Err(e) => Err(AuditError::Solver(e.to_string())),
        }
    }

    /// The greatest (or least) value of each of `targets` (variables of one component), one
    /// after another on one simplex basis; `None` where nothing bounds it. A target whose
    /// bound a solution already reached (`seen`) needs no program; every solution is noted
    /// there. A fresh program per target costs its whole simplex again (0.7 s
    /// for a part of 2,300 figures); here one extra variable `z` is the objective, tied to
    /// every target `t` by `z = x_t + s_t` with `s_t` in `[-BIG, BIG]`, and to one target
    /// at a time by fixing its `s_t` at 0, so a change of target costs a few pivots. Exact
    /// while the counts are far below `BIG`. Falls back to a program per target if the
    /// incremental solve fails.
    ///
    /// # Errors
    ///
    /// As [`Model::extreme`].
    pub(crate) fn extremes(
        &self,
        targets: &[usize],
        direction: Direction,
        seen: &mut Seen,
    ) -> Result<Vec<Option<f64>>, AuditError> {
        let Some(&first) = targets.first() else {
            return Ok(Vec::new());
        };
        let incremental = catch_unwind(AssertUnwindSafe(|| {
            let mut trial = seen.clone();
            self.extremes_on_one_basis(first, targets, direction, &mut trial)
                .map(|values| (values, trial))
        }));
        if let Ok(Ok((values, trial))) = incremental {
            *seen = trial;
            return Ok(values);
        }
        targets
            .iter()
            .map(|&var| {
                if let Some(value) = seen.settled(var, direction) {
                    return Ok(Some(value));
                }
                match self.extreme(var, direction)? {
                    Extreme::Unbounded => Ok(None),
                    Extreme::Optimum { value, point } => {
                        seen.note(&point);
                        Ok(Some(value))
                    }
                }
            })
            .collect()
    }

    /// [`Model::extremes`] on one basis.
    fn extremes_on_one_basis(
        &self,
        first: usize,
        targets: &[usize],
        direction: Direction,
        seen: &mut Seen,
    ) -> Result<Vec<Option<f64>>, microlp::Error> {
        /// Far beyond any count, far within f64's exact integers.
        const BIG: f64 = 1e9;
        let (vars, rows) = &self.components[self.component_of[first]];
        let mut problem = microlp::Problem::new(match direction {
            Direction::Min => microlp::OptimizationDirection::Minimize,
            Direction::Max => microlp::OptimizationDirection::Maximize,
        });
        let mut local = std::collections::HashMap::with_capacity(vars.len());
        let mut handles = Vec::with_capacity(vars.len());
        for &var in vars {
            let handle = problem.add_var(0.0, self.bounds[var]);
            local.insert(var, handle);
            handles.push(handle);
        }
        let z = problem.add_var(1.0, (-2.0 * BIG, 2.0 * BIG));
        self.add_equations(&mut problem, rows, &local);
        let mut slacks = Vec::with_capacity(targets.len());
        for var in targets {
            let x = *local
                .get(var)
                .ok_or_else(|| microlp::Error::InternalError("target outside its part".into()))?;
            let s = problem.add_var(0.0, (-BIG, BIG));
            problem.add_constraint(
                [(z, 1.0), (x, -1.0), (s, -1.0)],
                microlp::ComparisonOp::Eq,
                0.0,
            );
            slacks.push(s);
        }
        let interrupted = || microlp::Error::InternalError("interrupted".into());
        let point = |solution: &microlp::Solution| -> Point {
            vars.iter()
                .zip(&handles)
                .map(|(&var, &h)| (var, solution[h]))
                .collect()
        };
        let mut solution = problem
            .solve()?
            .into_solution()
            .map_err(|_| interrupted())?;
        seen.note(&point(&solution));
        let mut found = Vec::with_capacity(targets.len());
        for (&var, &s) in targets.iter().zip(&slacks) {
            if let Some(value) = seen.settled(var, direction) {
                found.push(Some(value));
                continue;
            }
            solution = solution
                .fix_var(s, 0.0)?
                .into_solution()
                .map_err(|_| interrupted())?;
            let value = solution.objective();
            seen.note(&point(&solution));
            found.push((value.abs() < BIG / 2.0).then_some(value));
            solution = solution
                .unfix_var(s)?
                .0
                .into_solution()
                .map_err(|_| interrupted())?;
        }
        Ok(found)
    }
}

/// What the solutions found so far show: for each variable the greatest and least value
/// seen, and the bounds its own equations give it (its bounds; below, for a part of a
/// published total, the total less the least of its other parts). A value seen at such a
/// bound is the variable's extreme, with no program of its own.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    upper: Vec<f64>,
    lower: Vec<f64>,
    highest: Vec<f64>,
    lowest: Vec<f64>,
}

impl Seen {
    /// Nothing seen yet, and the bounds of `model`'s variables.
    pub(crate) fn new(model: &Model) -> Seen {
        let mut upper: Vec<f64> = model.bounds.iter().map(|b| b.1).collect();
        let lower: Vec<f64> = model.bounds.iter().map(|b| b.0).collect();
        for row in &model.rows {
            // Only a published total's row: all parts, each at least its lower bound.
            if row.terms.iter().all(|&(_, c)| c == 1.0) {
                let least: f64 = row.terms.iter().map(|&(v, _)| lower[v]).sum();
                for &(v, _) in &row.terms {
                    upper[v] = upper[v].min(row.rhs - (least - lower[v]));
                }
            }
        }
        let n = model.figure_of.len();
        Seen {
            upper,
            lower,
            highest: vec![f64::NEG_INFINITY; n],
            lowest: vec![f64::INFINITY; n],
        }
    }

    /// Notes a solution.
    pub(crate) fn note(&mut self, point: &[(usize, f64)]) {
        for &(v, x) in point {
            self.highest[v] = self.highest[v].max(x);
            self.lowest[v] = self.lowest[v].min(x);
        }
    }

    /// Variable `var`'s extreme in `direction`, if a solution reached its bound.
    pub(crate) fn settled(&self, var: usize, direction: Direction) -> Option<f64> {
        // Before any solution `a` is infinite, and near nothing.
        let near = |a: f64, b: f64| a.is_finite() && (a - b).abs() <= EPSILON * b.abs().max(1.0);
        match direction {
            Direction::Max => {
                let bound = self.upper[var];
                (bound.is_finite() && near(self.highest[var], bound)).then_some(bound)
            }
            Direction::Min => {
                let bound = self.lower[var];
                near(self.lowest[var], bound).then_some(bound)
            }
        }
    }
}

/// Disjoint sets of variables, for the components.
struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n).collect(),
        }
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            // The smaller root wins, so the components do not depend on the order of unions.
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            self.parent[hi] = lo;
        }
    }
}
