//! The group work of a run: the key, hashing identifiers to ristretto255, blinding them, and
//! re-blinding the other side's points into digests — spread over the machine's cores.

use std::convert::Infallible;
use std::fmt;
use std::num::NonZero;
use std::thread;

use aws_lc_rs::digest::{SHA256, SHA512, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use zeroize::Zeroize;

use super::{DIGEST_LEN, Digest, Limits, POINT_LEN, Point, PsiError};

/// The domain tag of [`hash_to_group`].
const HASH_DOMAIN: &[u8] = b"simpul-psi-v1\0";

/// The domain tag of a [`Digest`].
const DIGEST_DOMAIN: &[u8] = b"simpul-psi-v1 match\0";

/// Points per batch within a thread: one field inversion is shared by a batch's encodings,
/// and the batch's points stay in cache.
const BATCH: usize = 256;

/// A side's secret exponent for one run. Drawn afresh for every run and dropped with it:
/// it cannot be cloned or printed, and its value is zeroed when it is dropped.
pub struct BlindingKey {
    /// Half the key, α/2: every blinding ends in `double_and_compress_batch`, which encodes
    /// `2·(α/2)·P = α·P` in a batch (see [`encode_doubled`]).
    half: Scalar,
}

impl BlindingKey {
    /// Draws a key: 64 bytes from the system's random source, reduced modulo the group's
    /// order (a bias below 2⁻²⁵⁹).
    ///
    /// # Errors
    /// [`PsiError::Randomness`] when the system's random source fails; [`PsiError::ZeroKey`]
    /// should it give zero.
    pub fn generate() -> Result<BlindingKey, PsiError> {
        let mut wide = [0u8; 64];
        let drawn = SystemRandom::new().fill(&mut wide);
        let key = drawn
            .map_err(|_| PsiError::Randomness)
            .and_then(|()| Self::from_wide(&wide));
        wide.zeroize();
        key
    }

    /// The key `wide` reduced modulo the group's order, refusing zero.
    fn from_wide(wide: &[u8; 64]) -> Result<BlindingKey, PsiError> {
        let mut scalar = Scalar::from_bytes_mod_order_wide(wide);
        let key = if scalar == Scalar::ZERO {
            Err(PsiError::ZeroKey)
        } else {
            Ok(BlindingKey {
                half: scalar * Scalar::from(2u8).invert(),
            })
        };
        scalar.zeroize();
        key
    }

    /// `point` raised to half the key, in constant time (the key is secret).
    #[expect(
        clippy::op_ref,
        reason = "by reference, so the secret scalar is not copied about by value"
    )]
    fn raise(&self, point: &RistrettoPoint) -> RistrettoPoint {
        point * &self.half
    }
}

impl Drop for BlindingKey {
    fn drop(&mut self) {
        self.half.zeroize();
    }
}

impl fmt::Debug for BlindingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindingKey(..)")
    }
}

/// `H(identifier)` under `context`: `RistrettoPoint::from_uniform_bytes` of
/// `SHA-512("simpul-psi-v1\0" || len(context) as u64 big-endian || context || identifier)`.
/// The context (e.g. the run's exchange id and contract) makes one run's points useless in
/// another; identifiers are bytes the caller has normalised (a NIK's 16 ASCII digits).
pub fn hash_to_group(context: &[u8], identifier: &[u8]) -> RistrettoPoint {
    HashInput::new(context).hash(identifier)
}

/// The hash's input, its prefix written once per thread.
struct HashInput {
    buf: Vec<u8>,
    prefix: usize,
}

impl HashInput {
    fn new(context: &[u8]) -> Self {
        let mut buf = Vec::with_capacity(HASH_DOMAIN.len() + 8 + context.len() + 64);
        buf.extend_from_slice(HASH_DOMAIN);
        buf.extend_from_slice(&(context.len() as u64).to_be_bytes());
        buf.extend_from_slice(context);
        let prefix = buf.len();
        HashInput { buf, prefix }
    }

    fn hash(&mut self, identifier: &[u8]) -> RistrettoPoint {
        self.buf.truncate(self.prefix);
        self.buf.extend_from_slice(identifier);
        let wide = digest(&SHA512, &self.buf);
        let mut uniform = [0u8; 64];
        uniform.copy_from_slice(wide.as_ref());
        RistrettoPoint::from_uniform_bytes(&uniform)
    }
}

/// Blinds `identifiers` under `key` for the run `context`: `H(id)^key` for each distinct
/// identifier (duplicates are removed first, so they count once), as encoded points in
/// ascending order — the order says nothing of the input's. B sends its own set this way;
/// A's groups go through [`super::Query::blind`], which calls this for each.
pub fn blind<I: AsRef<[u8]> + Sync>(
    key: &BlindingKey,
    context: &[u8],
    identifiers: &[I],
) -> Vec<Point> {
    let mut ids: Vec<&[u8]> = identifiers.iter().map(AsRef::as_ref).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut out = vec![[0u8; POINT_LEN]; ids.len()];
    let Ok(()) = in_parallel(&ids, &mut out, |_, ids, out| {
        let mut input = HashInput::new(context);
        let mut batch = Vec::with_capacity(BATCH);
        for (ids, out) in ids.chunks(BATCH).zip(out.chunks_mut(BATCH)) {
            batch.clear();
            batch.extend(ids.iter().map(|id| key.raise(&input.hash(id))));
            encode_doubled(&batch, out, |p| *p);
        }
        Ok::<(), Infallible>(())
    });
    out.sort_unstable();
    // Two identifiers hashing to one point would take 2¹²⁶ tries; this keeps the list
    // strictly ascending, as its receiver demands, whatever happens.
    out.dedup();
    out
}

/// Re-blinds one point list of the other side as it arrives, frame by frame: checks each
/// point (canonical, not the identity, above the one before it), raises it to this side's
/// key and keeps the [`Digest`] of the result. B uses one for each of A's groups, A one for
/// B's set. After an error the list is refused: drop the reblinder.
pub struct Reblinder<'k> {
    key: &'k BlindingKey,
    list: u32,
    limits: Limits,
    last: Option<Point>,
    digests: Vec<Digest>,
}

impl<'k> Reblinder<'k> {
    /// A reblinder for list `list` (for errors), under `key`, held to `limits`.
    pub fn new(key: &'k BlindingKey, list: u32, limits: &Limits) -> Self {
        Reblinder {
            key,
            list,
            limits: *limits,
            last: None,
            digests: Vec::new(),
        }
    }

    /// Re-blinds the next points of the list: `records`, whole 32-byte points in the list's
    /// order (e.g. one frame's, from [`super::ListReader::read`]).
    ///
    /// # Errors
    /// [`PsiError::RecordLength`], [`PsiError::NotAscending`], [`PsiError::TooLarge`],
    /// [`PsiError::NotCanonical`], [`PsiError::Identity`].
    pub fn push(&mut self, records: &[u8]) -> Result<(), PsiError> {
        let (points, rest) = records.as_chunks::<POINT_LEN>();
        if !rest.is_empty() {
            return Err(PsiError::RecordLength {
                bytes: records.len(),
                record_len: POINT_LEN,
            });
        }
        let start = self.digests.len();
        let size = start + points.len();
        if size > self.limits.max_set {
            return Err(PsiError::TooLarge {
                list: self.list,
                size: size as u64,
                max: self.limits.max_set,
            });
        }
        // Strictly ascending, across pushes too: A cannot pass one point off as many.
        let mut last = self.last;
        for (i, point) in points.iter().enumerate() {
            if last.is_some_and(|l| l >= *point) {
                return Err(PsiError::NotAscending {
                    list: self.list,
                    index: (start + i) as u64,
                });
            }
            last = Some(*point);
        }
        self.digests.resize(size, [0; DIGEST_LEN]);
        let (key, list) = (self.key, self.list);
        in_parallel(points, &mut self.digests[start..], |offset, points, out| {
            let mut batch = Vec::with_capacity(BATCH);
            for (b, (points, out)) in points.chunks(BATCH).zip(out.chunks_mut(BATCH)).enumerate() {
                batch.clear();
                for (i, point) in points.iter().enumerate() {
                    let index = (start + offset + b * BATCH + i) as u64;
                    batch.push(key.raise(&decode(point, list, index)?));
                }
                encode_doubled(&batch, out, match_digest);
            }
            Ok(())
        })?;
        self.last = last;
        Ok(())
    }

    /// The list's digests, sorted (the shuffle: their order says nothing of the points').
    ///
    /// # Errors
    /// [`PsiError::Empty`], [`PsiError::TooSmall`].
    pub fn finish(mut self) -> Result<Vec<Digest>, PsiError> {
        self.limits.check_size(self.list, self.digests.len())?;
        self.digests.sort_unstable();
        Ok(self.digests)
    }
}

/// A received point, refused unless it is a canonical encoding of a point other than the
/// identity. The identity's one canonical encoding is 32 zero bytes.
fn decode(bytes: &Point, list: u32, index: u64) -> Result<RistrettoPoint, PsiError> {
    if bytes == &[0u8; POINT_LEN] {
        return Err(PsiError::Identity { list, index });
    }
    CompressedRistretto(*bytes)
        .decompress()
        .ok_or(PsiError::NotCanonical { list, index })
}

/// Writes `encode` of the encoding of `2·P` for each `P` of `batch` into `out`. Each blinding
/// multiplies by half the key, so this is the encoding of the point blinded by the whole key;
/// doubling first lets the batch share one field inversion instead of each point taking an
/// inverse square root (the Ristretto paper's double-and-encode).
fn encode_doubled<T>(batch: &[RistrettoPoint], out: &mut [T], encode: impl Fn(&Point) -> T) {
    for (slot, encoded) in out
        .iter_mut()
        .zip(RistrettoPoint::double_and_compress_batch(batch))
    {
        *slot = encode(encoded.as_bytes());
    }
}

/// The [`Digest`] of a doubly-blinded point.
fn match_digest(point: &Point) -> Digest {
    let mut input = [0u8; DIGEST_DOMAIN.len() + POINT_LEN];
    input[..DIGEST_DOMAIN.len()].copy_from_slice(DIGEST_DOMAIN);
    input[DIGEST_DOMAIN.len()..].copy_from_slice(point);
    let full = digest(&SHA256, &input);
    let mut out = [0u8; DIGEST_LEN];
    out.copy_from_slice(&full.as_ref()[..DIGEST_LEN]);
    out
}

/// Runs `work(offset, input part, output part)` over one contiguous part of `input` and of
/// `out` (as long as each other) per core, in scoped threads; the first error in input order
/// wins.
fn in_parallel<I: Sync, O: Send, E: Send>(
    input: &[I],
    out: &mut [O],
    work: impl Fn(usize, &[I], &mut [O]) -> Result<(), E> + Sync,
) -> Result<(), E> {
    debug_assert_eq!(input.len(), out.len());
    let threads = thread::available_parallelism().map_or(1, NonZero::get);
    // A thread is worth starting for a few batches' work, not for less.
    let per_thread = input.len().div_ceil(threads).max(2 * BATCH);
    if input.len() <= per_thread {
        return work(0, input, out);
    }
    let work = &work;
    thread::scope(|scope| {
        let parts: Vec<_> = input
            .chunks(per_thread)
            .zip(out.chunks_mut(per_thread))
            .enumerate()
            .map(|(i, (input, out))| scope.spawn(move || work(i * per_thread, input, out)))
            .collect();
        let mut result = Ok(());
        for part in parts {
            let done = part
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            if result.is_ok() {
                result = done;
            }
        }
        result
    })
}

#[cfg(test)]
mod tests {
    use curve25519_dalek::traits::Identity;

    use super::*;

    fn key() -> BlindingKey {
        BlindingKey::generate().unwrap()
    }

    #[test]
    fn the_hash_is_the_documented_construction() {
        let (context, id) = (b"exchange 42".as_slice(), b"3171011701900001".as_slice());
        let mut input = b"simpul-psi-v1\0".to_vec();
        input.extend_from_slice(&11u64.to_be_bytes());
        input.extend_from_slice(context);
        input.extend_from_slice(id);
        let wide = digest(&SHA512, &input);
        let want = RistrettoPoint::from_uniform_bytes(wide.as_ref().try_into().unwrap());
        assert_eq!(hash_to_group(context, id), want);
        // The context is length-prefixed: moving a byte from it to the identifier changes
        // the point.
        assert_ne!(
            hash_to_group(b"exchange 4", b"23171011701900001"),
            want,
            "context and identifier must not run together"
        );
        assert_ne!(hash_to_group(b"exchange 43", id), want);
    }

    #[test]
    fn blinding_raises_to_the_whole_key() {
        let key = key();
        let alpha = key.half + key.half;
        let ids = ["3171011701900001", "3171011701900002", "3171011701900003"];
        let mut want: Vec<Point> = ids
            .iter()
            .map(|id| {
                (hash_to_group(b"ctx", id.as_bytes()) * alpha)
                    .compress()
                    .to_bytes()
            })
            .collect();
        want.sort_unstable();
        assert_eq!(blind(&key, b"ctx", &ids), want);
        // Re-blinding gives the digest of the point raised to the key, wherever the batches
        // and threads cut: 1,000 points cross several batches and both threads.
        let many: Vec<String> = (0..1_000).map(|n| format!("{n:016}")).collect();
        let other = BlindingKey::generate().unwrap();
        let points = blind(&other, b"ctx", &many);
        let mut reblinder = Reblinder::new(&key, 0, &Limits::default());
        reblinder.push(points.as_flattened()).unwrap();
        let mut want: Vec<Digest> = points
            .iter()
            .map(|p| {
                let point = CompressedRistretto(*p).decompress().unwrap();
                match_digest(&(point * alpha).compress().to_bytes())
            })
            .collect();
        want.sort_unstable();
        assert_eq!(reblinder.finish().unwrap(), want);
    }

    #[test]
    fn blinding_commutes() {
        let (alpha, beta) = (key(), key());
        let ids: Vec<String> = (0..600).map(|n| format!("{n:016}")).collect();
        let limits = Limits {
            min_set: 1,
            ..Limits::default()
        };
        let twice = |first: &BlindingKey, second: &BlindingKey| {
            let mut reblinder = Reblinder::new(second, 0, &limits);
            reblinder
                .push(blind(first, b"ctx", &ids).as_flattened())
                .unwrap();
            reblinder.finish().unwrap()
        };
        assert_eq!(twice(&alpha, &beta), twice(&beta, &alpha));
    }

    #[test]
    fn a_zero_key_is_refused_and_a_key_never_prints() {
        assert_eq!(
            BlindingKey::from_wide(&[0; 64]).err(),
            Some(PsiError::ZeroKey)
        );
        // The group's order, as a 64-byte little-endian number, reduces to zero too.
        let mut order = [0u8; 64];
        order[..32].copy_from_slice(&[
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ]);
        assert_eq!(
            BlindingKey::from_wide(&order).err(),
            Some(PsiError::ZeroKey)
        );
        assert_eq!(format!("{:?}", key()), "BlindingKey(..)");
    }

    #[test]
    fn bad_points_are_refused_with_their_place() {
        let key = key();
        let limits = Limits::default();
        let good = blind(&key, b"ctx", &["a", "b", "c"]);
        let identity = RistrettoPoint::identity().compress().to_bytes();
        assert_eq!(identity, [0; 32]);
        let not_canonical = [0xff; 32];
        // Canonical encodings are below 2²⁵⁵ − 19 and even: 1 is odd.
        let mut odd = [0u8; 32];
        odd[0] = 1;
        for (points, want) in [
            (
                vec![identity, good[0]],
                PsiError::Identity { list: 7, index: 0 },
            ),
            (
                vec![good[0], not_canonical],
                PsiError::NotCanonical { list: 7, index: 1 },
            ),
            (
                vec![odd, good[0]],
                PsiError::NotCanonical { list: 7, index: 0 },
            ),
            (
                vec![good[1], good[0]],
                PsiError::NotAscending { list: 7, index: 1 },
            ),
            (
                vec![good[0], good[0]],
                PsiError::NotAscending { list: 7, index: 1 },
            ),
        ] {
            let mut reblinder = Reblinder::new(&key, 7, &limits);
            assert_eq!(reblinder.push(points.as_flattened()), Err(want));
        }
        // Order holds across pushes, and a place counts from the list's start.
        let mut reblinder = Reblinder::new(&key, 7, &limits);
        reblinder.push(good[1..].as_flattened()).unwrap();
        assert_eq!(
            reblinder.push(good[..1].as_flattened()),
            Err(PsiError::NotAscending { list: 7, index: 2 })
        );
        let mut reblinder = Reblinder::new(&key, 7, &limits);
        assert_eq!(
            reblinder.push(&[1u8; 33]),
            Err(PsiError::RecordLength {
                bytes: 33,
                record_len: 32
            })
        );
        // Too many points, found as they come.
        let small = Limits {
            max_set: 2,
            ..limits
        };
        let mut reblinder = Reblinder::new(&key, 7, &small);
        assert_eq!(
            reblinder.push(good.as_flattened()),
            Err(PsiError::TooLarge {
                list: 7,
                size: 3,
                max: 2
            })
        );
    }

    #[test]
    fn a_bad_point_deep_in_a_long_list_is_found_in_any_thread() {
        let key = key();
        let ids: Vec<String> = (0..2_000).map(|n| format!("{n:016}")).collect();
        let mut points = blind(&key, b"ctx", &ids);
        // Keep the list ascending: a non-canonical encoding above every other, at the end.
        points[1_999] = [0xff; 32];
        let mut reblinder = Reblinder::new(&key, 0, &Limits::default());
        assert_eq!(
            reblinder.push(points.as_flattened()),
            Err(PsiError::NotCanonical {
                list: 0,
                index: 1_999
            })
        );
    }
}
