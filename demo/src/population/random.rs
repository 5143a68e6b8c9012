//! Deterministic randomness: SplitMix64, the one source of every draw, so a seed means the same people everywhere.

use super::*;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, statistically fine for synthetic data.
///
/// Written here instead of using the `rand` crate on purpose: `rand`'s generators and
/// distributions may change between versions, and the demo data must be identical for a seed
/// on every machine and every future version. Only integer arithmetic and exact IEEE
/// operations (multiplying by a power of two, comparing) are used, never `powf`, `ln` and
/// the like whose last bits vary between platforms' maths libraries.
#[derive(Clone, Debug)]
pub(super) struct SplitMix64 {
    pub(super) state: u64,
}

pub(super) const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function (a strong 64-bit mixer).
pub(super) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Independent streams, one per generation stage, so that changing how one dataset is drawn
/// does not reshuffle the others.
pub(super) mod stream {
    pub const PICK: u64 = 1;
    pub const RESIDENTS: u64 = 2;
    pub const PLACEMENTS: u64 = 3;
    pub const INSURANCE: u64 = 4;
    pub const REPORTS: u64 = 5;
    pub const SELF_REPORTS: u64 = 6;
}

impl SplitMix64 {
    /// A stream derived from the seed. Both go through the mixer: SplitMix64 states only ever
    /// advance by the golden gamma, so seeding streams with `seed + k` would give shifted
    /// copies of one sequence.
    pub(super) fn stream(seed: u64, stream: u64) -> Self {
        Self {
            state: mix64(seed ^ mix64(stream.wrapping_mul(GOLDEN_GAMMA))),
        }
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in `0..n` (`n > 0`) by multiply-shift; the bias is below 2^-40 for our `n`.
    pub(super) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    pub(super) fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub(super) fn between(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo <= hi);
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// Uniform in [0, 1) with 53 bits: exact on every IEEE platform.
    pub(super) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub(super) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    /// Picks by integer weights (zero weights are never picked; the total must be positive).
    pub(super) fn weighted<T: Copy>(&mut self, items: &[(T, u32)]) -> T {
        let total: u64 = items.iter().map(|&(_, w)| u64::from(w)).sum();
        let mut roll = self.below(total);
        for &(item, weight) in items {
            if roll < u64::from(weight) {
                return item;
            }
            roll -= u64::from(weight);
        }
        unreachable!("roll is below the total weight")
    }

    pub(super) fn day_between(&mut self, lo: Day, hi: Day) -> Day {
        Day(self.between(i64::from(lo.0), i64::from(hi.0)) as i32)
    }
}

/// The rounded count a share gives of a pool (shares are validated to be in 0..=1).
pub(super) fn share_of(share: f64, pool: usize) -> usize {
    ((share * pool as f64).round() as usize).min(pool)
}
