//! Protecting a table: primary suppression, complementary suppression proposed line by line,
//! then every suppressed figure proved protected by an integer witness — a move among the
//! suppressed figures, or a solution of the line equations by linear programming — and more
//! suppressed where no witness exists, until every one has its witness.
//!
//! A *move* is the hypercube of Repsilber's method, generalised to totals: for a figure `f`,
//! a set `A` of the dimensions it fixes, an alternative value `q_d` for each of them and a
//! value `e_d` for each dimension it totals over, the cells whose coordinates are `f_d` or
//! `q_d` on `A` and `f_d`/`e_d` elsewhere, taken `+δ` where an even number of coordinates are
//! alternatives and `-δ` where odd. Every line through these cells meets two of them of
//! opposite signs, so the only figures that change are its *members* — the figures at the
//! levels that fix all of `A` which contain one of the cells — and if they are all
//! suppressed, the moved table agrees with everything published. `+δ` is possible up to the
//! least odd member, `-δ` up to the least even one: integers both, so a move is an exact
//! witness.

use super::audit::{Direction, Extreme, Known, Model};
use super::lattice::Lattice;
use super::{CountTable, DisclosureRules, PublishedTable, Suppression, publish};

/// The most candidate moves examined per choice of varied dimensions in one search: beyond
/// it, the cheapest found is taken (the search is over about as many candidates as the table
/// has cells, so this only binds on tables far larger than a statistics answer).
const SEARCH_BUDGET: usize = 20_000;

/// The most suppressed figures in one independent part of a table that linear programming
/// is tried on: microlp takes about 0.7 s a program on a part of 2,300 (measured on the
/// benchmark's table), too much for an answer's time budget, so a part that large is
/// protected by moves alone, at the cost of more suppression.
const LP_LIMIT: usize = 300;

/// `table` as published under `rules`: its sensitive figures suppressed, enough others
/// suppressed that the guarantee of the module documentation holds, and the rest rounded if
/// the rules round. The same table and rules always give the same answer.
pub fn protect(table: &CountTable, rules: &DisclosureRules) -> PublishedTable {
    let mut protection = Protection::new(&table.lattice, &table.values, rules.min_cell());
    protection.suppress_primary();
    protection.close_lines();
    protection.prove_all();
    publish(table, &protection.reason, rules)
}

/// The suppressions of one table being protected.
pub(crate) struct Protection<'a> {
    lattice: &'a Lattice,
    values: &'a [u64],
    min_cell: u64,
    /// Why each figure is suppressed, if it is.
    pub(crate) reason: Vec<Option<Suppression>>,
    /// Whether each suppressed figure has its witness.
    proved: Vec<bool>,
    /// How many suppressed figures each line has, by line id (kept while closing lines).
    line_counts: Vec<u32>,
}

/// A move's members, each with the parity of its alternatives.
struct Cube {
    members: Vec<(usize, bool)>,
}

impl<'a> Protection<'a> {
    pub(crate) fn new(lattice: &'a Lattice, values: &'a [u64], min_cell: u64) -> Self {
        Protection {
            lattice,
            values,
            min_cell,
            reason: vec![None; lattice.len()],
            proved: vec![false; lattice.len()],
            line_counts: Vec::new(),
        }
    }

    /// Suppresses every sensitive figure: a count in `1..min_cell`.
    pub(crate) fn suppress_primary(&mut self) {
        for (f, &v) in self.values.iter().enumerate() {
            if v >= 1 && v < self.min_cell {
                self.reason[f] = Some(Suppression::Primary);
            }
        }
    }

    /// The greedy proposal: while a line has exactly one suppressed figure (which its other
    /// figures would give away), or a published total whose suppressed parts cannot reach
    /// `min_cell` together (which would show a primary part is small), suppress a nonzero
    /// published part of it — the one that leaves the fewest other lines with a single
    /// suppression, then the smallest — and the total itself only if there is none.
    pub(crate) fn close_lines(&mut self) {
        let lattice = self.lattice;
        self.line_counts = vec![0; lattice.len() * lattice.dims()];
        for f in 0..lattice.len() {
            if self.reason[f].is_some() {
                for line in lattice.lines_of(f) {
                    self.line_counts[lattice.line_id(line)] += 1;
                }
            }
        }
        let mut queued = vec![true; lattice.len() * lattice.dims()];
        let mut queue: std::collections::VecDeque<(usize, usize)> = lattice.lines().collect();
        while let Some(line) = queue.pop_front() {
            queued[lattice.line_id(line)] = false;
            let Some(g) = self.line_needs(line) else {
                continue;
            };
            self.reason[g] = Some(Suppression::Complementary);
            for other in lattice.lines_of(g) {
                let id = lattice.line_id(other);
                self.line_counts[id] += 1;
                if !queued[id] {
                    queued[id] = true;
                    queue.push_back(other);
                }
            }
        }
    }

    /// The figure line `(parent, d)` needs suppressed, if it needs one.
    fn line_needs(&self, (parent, d): (usize, usize)) -> Option<usize> {
        let lattice = self.lattice;
        let count = self.line_counts[lattice.line_id((parent, d))];
        if count == 0 {
            return None;
        }
        let parent_suppressed = self.reason[parent].is_some();
        let mut suppressed_sum = 0u64;
        let mut primary_part = false;
        for c in lattice.children(parent, d) {
            if let Some(why) = self.reason[c] {
                suppressed_sum = suppressed_sum.saturating_add(self.values[c]);
                primary_part |= why == Suppression::Primary;
            }
        }
        let needs =
            count == 1 || (!parent_suppressed && primary_part && suppressed_sum < self.min_cell);
        if !needs {
            return None;
        }
        // The lines, other than this one, that a suppression of `c` would leave with one.
        let new_singles = |c: usize| {
            lattice
                .lines_of(c)
                .filter(|&other| other != (parent, d))
                .filter(|&other| self.line_counts[lattice.line_id(other)] == 0)
                .count()
        };
        let published = |&c: &usize| self.reason[c].is_none();
        lattice
            .children(parent, d)
            .filter(published)
            .filter(|&c| self.values[c] > 0)
            .min_by_key(|&c| (new_singles(c), self.values[c], c))
            .or((!parent_suppressed).then_some(parent))
            .or_else(|| lattice.children(parent, d).find(published))
    }

    /// Finds a witness for every suppressed figure, suppressing more where there is none,
    /// until all have one. Each round proves every figure it finds exposed (by a move of its
    /// own, whose members are then suppressed), and suppression only ever widens what is
    /// possible, so a proof stays true and the rounds end.
    pub(crate) fn prove_all(&mut self) {
        loop {
            let pending: Vec<usize> = self.pending();
            if pending.is_empty() {
                return;
            }
            // Moves among the figures already suppressed cost nothing to check.
            for &f in &pending {
                if !self.proved[f]
                    && let Some(cube) = self.search(f, true)
                {
                    self.prove_members(&cube);
                }
            }
            let pending = self.pending();
            if pending.is_empty() {
                return;
            }
            let exposed = self.prove_by_lp(&pending);
            if exposed.is_empty() {
                return;
            }
            for f in exposed {
                if self.proved[f] {
                    continue;
                }
                // The moves made for the figures before may have made one for this one.
                if let Some(cube) = self.search(f, true) {
                    self.prove_members(&cube);
                    if self.proved[f] {
                        continue;
                    }
                }
                let cube = self.search(f, false).unwrap_or_else(|| self.chain(f));
                self.make(&cube);
                // A cheapest move is chosen because it proves `f`; should it not, the chain
                // does, so each round proves every figure it found exposed.
                if !self.proved[f] {
                    self.make(&self.chain(f));
                }
            }
        }
    }

    /// Suppresses the members of `cube` not yet suppressed (complementary), and marks
    /// proved those its moves protect.
    fn make(&mut self, cube: &Cube) {
        for &(g, _) in &cube.members {
            if self.reason[g].is_none() {
                self.reason[g] = Some(Suppression::Complementary);
            }
        }
        self.prove_members(cube);
    }

    /// The suppressed figures without a witness yet.
    fn pending(&self) -> Vec<usize> {
        (0..self.lattice.len())
            .filter(|&f| self.reason[f].is_some() && !self.proved[f])
            .collect()
    }

    /// Whether figure `f` is protected by a table where it can reach `hi` (`None`: any
    /// height) and one where it can reach `lo`.
    fn protected_by(&self, f: usize, hi: Option<u64>, lo: u64) -> bool {
        let v = self.values[f];
        if self.reason[f].is_none() {
            return false;
        }
        // A reader cannot tell a primary figure from a complementary one (the answer does not
        // say), so every suppressed figure under `min_cell` — a primary one, or a zero
        // suppressed as a complement — needs a table where it reaches `min_cell`.
        if v < self.min_cell {
            hi.is_none_or(|hi| hi >= self.min_cell.max(v + 1))
        } else {
            hi.is_none_or(|hi| hi > v) || lo < v
        }
    }

    /// How far a move's `+δ` (bounded by its least odd member, `None`: unbounded) and `-δ`
    /// (its least even member) can go.
    fn reach(&self, members: &[(usize, bool)]) -> (Option<u64>, u64) {
        let mut up: Option<u64> = None;
        let mut down = u64::MAX;
        for &(g, odd) in members {
            let v = self.values[g];
            if odd {
                up = Some(up.map_or(v, |u| u.min(v)));
            } else {
                down = down.min(v);
            }
        }
        (up, down)
    }

    /// Marks proved the suppressed members of `cube` (all suppressed) that its moves protect.
    fn prove_members(&mut self, cube: &Cube) {
        let (up, down) = self.reach(&cube.members);
        for &(g, odd) in &cube.members {
            let v = self.values[g];
            let (hi, lo) = if odd {
                (Some(v.saturating_add(down)), v - up.unwrap_or(0).min(v))
            } else {
                (up.map(|u| v.saturating_add(u)), v - down.min(v))
            };
            if self.protected_by(g, hi, lo) {
                self.proved[g] = true;
            }
        }
    }

    /// The cheapest move that protects `f` (the cost of a member already suppressed is
    /// nothing, of another its count plus one, times one more than the dimensions it totals
    /// over, so cells go before totals); with `free_only`, the first among suppressed figures
    /// only. Cheapest first, then the one that varies more dimensions (fewer coarse totals),
    /// then the first in figure order.
    fn search(&self, f: usize, free_only: bool) -> Option<Cube> {
        let lattice = self.lattice;
        let n = lattice.dims();
        let fixed: Vec<usize> = (0..n).filter(|&d| !lattice.is_total(f, d)).collect();
        let digits: Vec<usize> = (0..n).map(|d| lattice.digit(f, d)).collect();
        let mut best: Option<((u64, usize), Cube)> = None;
        // Buffers reused by every candidate.
        let mut coords = digits.clone();
        let mut members = Vec::with_capacity(1 << n);
        let mut key = vec![0usize; n];
        for subset in 0..(1usize << fixed.len()) {
            let varied: Vec<usize> = (0..fixed.len())
                .filter(|i| subset >> i & 1 == 1)
                .map(|i| fixed[i])
                .collect();
            if varied.iter().any(|&d| lattice.size(d) < 2) {
                continue;
            }
            // The choices: an alternative for each varied dimension, a value for each total.
            // Among suppressed figures only, `f` with any one choice made is a member, so
            // only choices that make a suppressed figure need trying.
            let choices: Vec<(usize, Vec<usize>)> = varied
                .iter()
                .copied()
                .chain((0..n).filter(|&d| lattice.is_total(f, d)))
                .map(|d| {
                    let values = (0..lattice.size(d))
                        .filter(|&v| v != digits[d])
                        .filter(|&v| {
                            !free_only || self.reason[lattice.with_digit(f, d, v)].is_some()
                        })
                        .collect();
                    (d, values)
                })
                .collect();
            if choices.iter().any(|(_, values)| values.is_empty()) {
                continue;
            }
            coords.copy_from_slice(&digits);
            let mut odometer = vec![0usize; choices.len()];
            for _ in 0..SEARCH_BUDGET {
                for ((d, values), &o) in choices.iter().zip(&odometer) {
                    coords[*d] = values[o];
                }
                let bound = best.as_ref().map_or(u64::MAX, |((cost, _), _)| *cost);
                let found = self.candidate(
                    f,
                    (&varied, &digits, &coords),
                    free_only,
                    bound,
                    (&mut members, &mut key),
                );
                if let Some(cost) = found {
                    let rank = (cost, n - varied.len());
                    if best.as_ref().is_none_or(|(k, _)| rank < *k) {
                        let cube = Cube {
                            members: members.clone(),
                        };
                        if free_only {
                            return Some(cube);
                        }
                        best = Some((rank, cube));
                    }
                }
                // Next choice; done when the odometer wraps.
                let mut i = 0;
                while i < choices.len() {
                    odometer[i] += 1;
                    if odometer[i] < choices[i].1.len() {
                        break;
                    }
                    odometer[i] = 0;
                    i += 1;
                }
                if i == choices.len() {
                    break;
                }
            }
        }
        best.map(|(_, cube)| cube)
    }

    /// The move varying `varied` from `digits` to `coords` (and fixing `coords` where `f`
    /// totals), with its cost, if it protects `f` (and, with `free_only`, has no member
    /// published) and costs no more than `bound`.
    fn candidate(
        &self,
        f: usize,
        (varied, digits, coords): (&[usize], &[usize], &[usize]),
        free_only: bool,
        bound: u64,
        (members, key): (&mut Vec<(usize, bool)>, &mut [usize]),
    ) -> Option<u64> {
        let lattice = self.lattice;
        let n = lattice.dims();
        let varied_mask = varied.iter().fold(0usize, |m, &d| m | 1 << d);
        members.clear();
        let mut cost = 0u64;
        // The finest levels first: in a search among suppressed figures, a published cell
        // rules a candidate out soonest.
        for level in (0..(1usize << n)).rev() {
            if level & varied_mask != varied_mask {
                continue;
            }
            for corner in 0..(1usize << varied.len()) {
                for d in 0..n {
                    key[d] = if level >> d & 1 == 0 {
                        lattice.size(d)
                    } else {
                        coords[d]
                    };
                }
                for (i, &d) in varied.iter().enumerate() {
                    if corner >> i & 1 == 0 {
                        key[d] = digits[d];
                    }
                }
                let g = lattice.figure(key);
                if self.reason[g].is_none() {
                    if free_only {
                        return None;
                    }
                    let weight = 1 + lattice.totals_over(g) as u64;
                    cost = cost
                        .saturating_add(self.values[g].saturating_add(1).saturating_mul(weight));
                    // Dearer than the best found: it cannot win.
                    if cost > bound {
                        return None;
                    }
                }
                members.push((g, corner.count_ones() % 2 == 1));
            }
        }
        let (up, down) = self.reach(members);
        let v = self.values[f];
        let hi = up.map(|u| v.saturating_add(u));
        let lo = v - down.min(v);
        // `f` is judged as the primary or complementary figure it is or will be.
        let judged = match self.reason[f] {
            Some(_) => self.protected_by(f, hi, lo),
            None => hi.is_none_or(|hi| hi > v) || lo < v,
        };
        judged.then_some(cost)
    }

    /// The move that always exists: one cell under `f` (the first value of each dimension
    /// `f` totals over) and every figure containing it, all raised together without bound.
    fn chain(&self, f: usize) -> Cube {
        let lattice = self.lattice;
        let n = lattice.dims();
        let members = (0..(1usize << n))
            .map(|level| {
                let key: Vec<usize> = (0..n)
                    .map(|d| {
                        if level >> d & 1 == 0 {
                            lattice.size(d)
                        } else if lattice.is_total(f, d) {
                            0
                        } else {
                            lattice.digit(f, d)
                        }
                    })
                    .collect();
                (lattice.figure(&key), false)
            })
            .collect();
        Cube { members }
    }

    /// Proves what linear programming can among `pending`, over the equations of the
    /// suppressed figures (the published ones at their values): the greatest (or, for a
    /// complementary figure, the least) value a figure can take comes with a table, by the
    /// simplex method, and if that table is in integers it witnesses every figure it
    /// protects. First the greatest sum of a component's pending figures, a table where many
    /// are high at once, while that proves more; then each figure alone. A component of more
    /// than [`LP_LIMIT`] figures is left to moves: its programs would cost more than the
    /// answer's time budget. Returns the figures left exposed.
    fn prove_by_lp(&mut self, pending: &[usize]) -> Vec<usize> {
        let model = match Model::build(self.lattice, |f| match self.reason[f] {
            Some(_) => Known::Unknown,
            None => Known::Exact(self.values[f]),
        }) {
            Ok(model) => model,
            Err(_) => return pending.to_vec(),
        };
        let mut by_component: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for &f in pending {
            let var = model.var_of[f];
            if model.component_size(var) <= LP_LIMIT {
                by_component
                    .entry(model.component(var))
                    .or_default()
                    .push(var);
            }
        }
        for vars in by_component.values() {
            loop {
                let open: Vec<usize> = vars
                    .iter()
                    .copied()
                    .filter(|&var| !self.proved[model.figure_of[var]])
                    .collect();
                if open.len() < 2 {
                    break;
                }
                let Ok(Extreme::Optimum { point, .. }) = model.extreme_sum(&open, Direction::Max)
                else {
                    break;
                };
                self.prove_by_point(&model, &point);
                if open.iter().all(|&var| !self.proved[model.figure_of[var]]) {
                    break;
                }
            }
            for &var in vars {
                let f = model.figure_of[var];
                let mut directions = vec![Direction::Max];
                if self.values[f] >= self.min_cell {
                    directions.push(Direction::Min);
                }
                for direction in directions {
                    if self.proved[f] {
                        break;
                    }
                    match model.extreme(var, direction) {
                        // Integer data with a recession direction: integer tables as far as
                        // wanted.
                        Ok(Extreme::Unbounded) => self.proved[f] = true,
                        Ok(Extreme::Optimum { point, .. }) => self.prove_by_point(&model, &point),
                        // A solver failure proves nothing; a move will.
                        Err(_) => {}
                    }
                }
            }
        }
        pending
            .iter()
            .copied()
            .filter(|&f| !self.proved[f])
            .collect()
    }

    /// Marks proved the figures an LP solution protects, if it is in integers.
    fn prove_by_point(&mut self, model: &Model, point: &[(usize, f64)]) {
        let integral = point
            .iter()
            .all(|&(_, x)| (x - x.round()).abs() <= 1e-6 * x.abs().max(1.0));
        if !integral {
            return;
        }
        for &(var, x) in point {
            let g = model.figure_of[var];
            let x = x.round().max(0.0) as u64;
            if !self.proved[g] && self.protected_by(g, Some(x), x) {
                self.proved[g] = true;
            }
        }
    }
}
