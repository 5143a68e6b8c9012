//! The figures of a table: every cell and every marginal total, numbered in one mixed-radix
//! order, and the lines (a total and the figures it is the sum of along one dimension) that tie
//! them together.

/// The numbering of a table's figures. A figure is one digit per dimension: a value's index
/// (`0..k`), or `k` for "all values" (the figure totals over that dimension). The last
/// dimension varies fastest, and each dimension's total comes after its values.
#[derive(Clone, Debug)]
pub(crate) struct Lattice {
    /// Values per dimension (`k`).
    sizes: Vec<usize>,
    /// The place value of each dimension's digit (radix `k + 1`).
    strides: Vec<usize>,
    /// The number of figures, the product of `k + 1`.
    len: usize,
}

impl Lattice {
    /// The lattice of a table with `sizes[d]` values in dimension `d`, or `None` if its figures
    /// cannot be counted in a `usize`.
    pub(crate) fn new(sizes: &[usize]) -> Option<Lattice> {
        let mut strides = vec![0; sizes.len()];
        let mut len = 1usize;
        for d in (0..sizes.len()).rev() {
            strides[d] = len;
            len = len.checked_mul(sizes[d].checked_add(1)?)?;
        }
        Some(Lattice {
            sizes: sizes.to_vec(),
            strides,
            len,
        })
    }

    /// The number of dimensions.
    pub(crate) fn dims(&self) -> usize {
        self.sizes.len()
    }

    /// The number of values of dimension `d`.
    pub(crate) fn size(&self, d: usize) -> usize {
        self.sizes[d]
    }

    /// The number of figures.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Figure `f`'s digit in dimension `d`: a value's index, or `size(d)` for the total.
    pub(crate) fn digit(&self, f: usize, d: usize) -> usize {
        (f / self.strides[d]) % (self.sizes[d] + 1)
    }

    /// Whether figure `f` totals over dimension `d`.
    pub(crate) fn is_total(&self, f: usize, d: usize) -> bool {
        self.digit(f, d) == self.sizes[d]
    }

    /// Figure `f` with its digit in dimension `d` replaced by `digit`.
    pub(crate) fn with_digit(&self, f: usize, d: usize, digit: usize) -> usize {
        f - self.digit(f, d) * self.strides[d] + digit * self.strides[d]
    }

    /// The figure of the given digits.
    pub(crate) fn figure(&self, digits: &[usize]) -> usize {
        digits.iter().zip(&self.strides).map(|(g, s)| g * s).sum()
    }

    /// Whether figure `f` is a cell (totals over no dimension).
    pub(crate) fn is_cell(&self, f: usize) -> bool {
        (0..self.dims()).all(|d| !self.is_total(f, d))
    }

    /// How many dimensions figure `f` totals over (0 for a cell).
    pub(crate) fn totals_over(&self, f: usize) -> usize {
        (0..self.dims()).filter(|&d| self.is_total(f, d)).count()
    }

    /// The cells, in figure order.
    pub(crate) fn cells(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len).filter(|&f| self.is_cell(f))
    }

    /// The members of line `(parent, d)`: the figures `parent` is the sum of along dimension
    /// `d` (whose digit in `parent` is the total).
    pub(crate) fn children(&self, parent: usize, d: usize) -> impl Iterator<Item = usize> + '_ {
        let base = parent - self.sizes[d] * self.strides[d];
        (0..self.sizes[d]).map(move |i| base + i * self.strides[d])
    }

    /// The lines figure `f` belongs to, as `(parent, d)`: as the parent along each dimension it
    /// totals over, as a child along each it does not.
    pub(crate) fn lines_of(&self, f: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.dims()).map(move |d| {
            if self.is_total(f, d) {
                (f, d)
            } else {
                (self.with_digit(f, d, self.sizes[d]), d)
            }
        })
    }

    /// Every line, as `(parent, d)`, in figure order.
    pub(crate) fn lines(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.len).flat_map(move |f| {
            (0..self.dims())
                .filter(move |&d| self.is_total(f, d))
                .map(move |d| (f, d))
        })
    }

    /// A line's number, for flags kept per line: `parent * dims + d`.
    pub(crate) fn line_id(&self, (parent, d): (usize, usize)) -> usize {
        parent * self.dims() + d
    }
}
