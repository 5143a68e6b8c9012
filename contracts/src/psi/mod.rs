//! Overlap counts without sharing lists (issue #16): two members learn how many identifiers
//! are on both their lists — overall, or per group of the asking side's own dimension — and
//! nothing about which, by elliptic-curve Diffie–Hellman private set intersection
//! cardinality (PSI-CA) over ristretto255.
//!
//! # The protocol
//!
//! A asks, B answers; both know the run's `context` (bytes the caller gives, e.g. the exchange
//! id and the contract), and `H` is [`hash_to_group`] under that context.
//!
//! 1. Each side draws a [`BlindingKey`] for this run only: α for A, β for B.
//! 2. A sorts its identifiers into groups by a label of its own (a country; one group `""`
//!    for no breakdown), de-duplicates each group and blinds it, `H(a)^α`, sorted
//!    ([`Query::blind`]). A sends group *i* as point list *i* ([`frames`]); the labels stay
//!    with A.
//! 3. B re-blinds each group, `(H(a)^α)^β`, keeps only the [`Digest`] of each point and sorts
//!    them ([`Reblinder`]): the sort is the shuffle, so A cannot tell which of its
//!    identifiers an answer belongs to. B also blinds its own identifiers, `H(b)^β`,
//!    de-duplicated and sorted ([`blind`]), and sends them as full points, since A must
//!    multiply them.
//! 4. A re-blinds B's points, `(H(b)^β)^α`, with a [`Reblinder`] of its own, and counts for
//!    each group how many of B's answer digests are among those ([`Query::overlap`]).
//!
//! Duplicate identifiers within one side's list (or one group) count once: they are removed
//! before blinding. An identifier that A puts in two groups counts in each.
//!
//! # What each side learns
//!
//! - A learns each group's overlap count and the number of distinct identifiers B blinded;
//!   B's points are pseudorandom to anyone without β (decisional Diffie–Hellman), and B's
//!   sorted answers cannot be linked back to A's inputs.
//! - B learns how many groups A has and how many distinct identifiers each holds — not the
//!   labels (they never leave A) and not the counts (A does not send them back).
//! - Points of one run are useless in another: the context is in the hash and both keys are
//!   drawn afresh.
//!
//! The guarantee is against a partner that follows the protocol and looks at what it
//! receives (semi-honest). A partner that deviates can make the other's result wrong (B can
//! drop or invent answers), as any partner can answer wrongly in the federation. The minimum
//! list size ([`Limits::min_set`]) stops a casual membership test — an overlap "count" of a
//! list of one — but not a determined one: A can pad a group with made-up identifiers, or
//! send one identifier blinded under many exponents, and B cannot tell. What stands against
//! that is who may ask for overlaps at all (the grant) and the audit log of every run.
//!
//! # The digest length
//!
//! B answers with [`DIGEST_LEN`] = 12 bytes (96 bits) of a domain-tagged SHA-256 of each
//! doubly-blinded point instead of the 32-byte point. A count goes wrong only if a digest of
//! one of A's points equals a digest of a *different* point of B's; with up to 10⁷ points on
//! each side the expected number of such pairs is at most 10⁷·10⁷ / 2⁹⁶ ≈ 1.3·10⁻¹⁵ per run,
//! so a million runs of the largest size still have a chance below 10⁻⁹ of one count off by
//! one. Neither side knows the other's key, so neither can steer a collision; and each
//! digest is of a point that its receiver computes itself, so truncating it hides nothing.
//! Sixteen bytes would add 4 MB per million answers for no practical gain; eight
//! (10¹⁴ / 2⁶⁴ ≈ 5·10⁻⁶ per run) would be too close.
//!
//! # Cost
//!
//! Every multiplication by a key is constant-time (the key is secret). Each side does one
//! hash to the group and one multiplication per identifier of its own, and one
//! decompression and one multiplication per point it receives; compressions are batched
//! (each key is kept halved, and `RistrettoPoint::double_and_compress_batch` encodes the
//! double of a batch with one field inversion between them, instead of an inverse square
//! root per point). The work is spread over `std::thread::available_parallelism()` threads
//! in chunks. On the wire: 32 bytes per identifier of A's, 12 back per identifier of A's
//! and 32 per identifier of B's, plus [`HEADER_LEN`] bytes per frame.

mod blind;
mod frame;
mod overlap;
pub mod wire;

pub use blind::{BlindingKey, Reblinder, blind, hash_to_group};
pub use frame::{DEFAULT_FRAME_BYTES, Frames, HEADER_LEN, ListKind, ListReader, frame_len, frames};
pub use overlap::{GroupOverlap, Overlap, Query, count};

/// Length of a point on the wire: a ristretto255 point's canonical compressed encoding.
pub const POINT_LEN: usize = 32;

/// A ristretto255 point in its 32-byte canonical encoding, as it travels.
pub type Point = [u8; POINT_LEN];

/// Length of a [`Digest`]; the module documentation gives the reasoning.
pub const DIGEST_LEN: usize = 12;

/// What B sends back for each of A's doubly-blinded points: the first [`DIGEST_LEN`] bytes of
/// `SHA-256("simpul-psi-v1 match\0" || point)`.
pub type Digest = [u8; DIGEST_LEN];

/// The bounds a side holds the other's lists to. The secure default needs no call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The fewest distinct identifiers in each of A's groups and in B's set: 1,000 by
    /// default, the guard against a casual membership test (see the module documentation
    /// for what it cannot stop).
    pub min_set: usize,
    /// The most points or digests in one list: 10,000,000 by default, the size the digest
    /// length is reasoned for (and 320 MB of points).
    pub max_set: usize,
    /// The most groups in one query: 256 by default.
    pub max_groups: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            min_set: 1_000,
            max_set: 10_000_000,
            max_groups: 256,
        }
    }
}

impl Limits {
    /// Checks the number of groups in a query: at least one, at most [`Limits::max_groups`].
    ///
    /// # Errors
    /// [`PsiError::NoGroups`], [`PsiError::TooManyGroups`].
    pub fn check_groups(&self, groups: usize) -> Result<(), PsiError> {
        if groups == 0 {
            return Err(PsiError::NoGroups);
        }
        if groups > self.max_groups {
            return Err(PsiError::TooManyGroups {
                groups,
                max: self.max_groups,
            });
        }
        Ok(())
    }

    /// Checks the size of list `list` once it is complete: not empty, at least
    /// [`Limits::min_set`], at most [`Limits::max_set`].
    fn check_size(&self, list: u32, size: usize) -> Result<(), PsiError> {
        if size == 0 {
            Err(PsiError::Empty { list })
        } else if size < self.min_set {
            Err(PsiError::TooSmall {
                list,
                size,
                min: self.min_set,
            })
        } else if size > self.max_set {
            Err(PsiError::TooLarge {
                list,
                size: size as u64,
                max: self.max_set,
            })
        } else {
            Ok(())
        }
    }
}

/// Why a run of the protocol, or one of its lists, was refused. `list` is the list's number
/// (the group's, for A's groups and B's answers; 0 for B's set) and `index` a record's or a
/// frame's place in it, from 0.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PsiError {
    /// The system's random source failed: no key can be drawn.
    #[error("the system's random source failed: no blinding key can be drawn")]
    Randomness,
    /// The key drawn was zero (a chance of 2⁻²⁵²: it would blind every point to one).
    #[error("the blinding key is zero")]
    ZeroKey,
    /// A point that is not a canonical ristretto255 encoding.
    #[error("list {list}: point {index} is not a canonical ristretto255 encoding")]
    NotCanonical {
        /// The list.
        list: u32,
        /// The point.
        index: u64,
    },
    /// The identity point, which no identifier hashes to and every key leaves alone.
    #[error("list {list}: point {index} is the identity")]
    Identity {
        /// The list.
        list: u32,
        /// The point.
        index: u64,
    },
    /// A point not above the one before it: a point list is sorted and holds no duplicates.
    #[error(
        "list {list}: point {index} is not above the point before it (unsorted or a duplicate)"
    )]
    NotAscending {
        /// The list.
        list: u32,
        /// The point.
        index: u64,
    },
    /// Bytes that are not a whole number of records.
    #[error("{bytes} bytes are not a whole number of {record_len}-byte records")]
    RecordLength {
        /// The bytes given.
        bytes: usize,
        /// The record's length.
        record_len: usize,
    },
    /// A query with no group.
    #[error("a query needs at least one group")]
    NoGroups,
    /// A query with more groups than [`Limits::max_groups`].
    #[error("{groups} groups, at most {max} allowed")]
    TooManyGroups {
        /// The groups found.
        groups: usize,
        /// The limit.
        max: usize,
    },
    /// An empty list.
    #[error("list {list} is empty")]
    Empty {
        /// The list.
        list: u32,
    },
    /// A list below [`Limits::min_set`].
    #[error("list {list} holds {size} distinct identifiers, at least {min} are required")]
    TooSmall {
        /// The list.
        list: u32,
        /// Its size.
        size: usize,
        /// The limit.
        min: usize,
    },
    /// A list above [`Limits::max_set`] (as announced by its frames, or as it grows).
    #[error("list {list} holds {size} records, at most {max} allowed")]
    TooLarge {
        /// The list.
        list: u32,
        /// Its size.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// Answers for a different number of groups than the query has.
    #[error("answers for {found} groups, the query has {expected}")]
    AnswerCount {
        /// The answer lists given.
        found: usize,
        /// The query's groups.
        expected: usize,
    },
    /// A group's answer with a different number of digests than the group has points.
    #[error("the answer for group {group} holds {found} digests for {expected} points")]
    AnswerSize {
        /// The group.
        group: u32,
        /// The digests given.
        found: usize,
        /// The group's points.
        expected: usize,
    },
    /// A frame size that cannot hold a header and one record.
    #[error("frames of at most {max_frame_bytes} bytes cannot hold a header and a record")]
    FrameTooSmall {
        /// The size asked for.
        max_frame_bytes: usize,
    },
    /// A frame whose length is not what its header says (cut short, or with bytes after its
    /// records), or that is shorter than a header.
    #[error("list {list}: frame {index} is {found} bytes, it should be {expected}")]
    FrameSize {
        /// The list expected.
        list: u32,
        /// The frame expected.
        index: u32,
        /// The bytes it should have.
        expected: usize,
        /// The bytes it has.
        found: usize,
    },
    /// Not a frame of this protocol (magic) or of another version of it.
    #[error("list {list}: frame {index} is not a PSI frame of version 1")]
    NotAFrame {
        /// The list expected.
        list: u32,
        /// The frame expected.
        index: u32,
    },
    /// A frame of another list, or of another kind of list.
    #[error(
        "a frame of list {found_list} ({found_kind}) where list {list} ({kind:?}) was expected"
    )]
    WrongList {
        /// The kind expected.
        kind: ListKind,
        /// The list expected.
        list: u32,
        /// The kind byte found.
        found_kind: u8,
        /// The list found.
        found_list: u32,
    },
    /// A frame out of its place.
    #[error("list {list}: frame {found} where frame {expected} was expected")]
    OutOfOrder {
        /// The list.
        list: u32,
        /// The frame expected next.
        expected: u32,
        /// The frame received.
        found: u32,
    },
    /// A frame after the list's last.
    #[error("list {list}: a frame after its last ({frames} frames)")]
    AfterLast {
        /// The list.
        list: u32,
        /// Its frames.
        frames: u32,
    },
    /// A frame whose counts disagree with the frames before it.
    #[error("list {list}: frame {index}: {reason}")]
    Inconsistent {
        /// The list.
        list: u32,
        /// The frame.
        index: u32,
        /// What disagrees.
        reason: &'static str,
    },
    /// A frame whose running SHA-256 is not that of the frames so far: one was lost,
    /// reordered, altered or spliced in from another list.
    #[error("list {list}: frame {index}: the running digest does not match the frames so far")]
    RunningDigest {
        /// The list.
        list: u32,
        /// The frame.
        index: u32,
    },
    /// A body whose envelope did not end with an LF within
    /// [`wire::MAX_ENVELOPE_BYTES`], or that ended before it.
    #[error(
        "the body does not start with an envelope of at most {} bytes and an LF",
        wire::MAX_ENVELOPE_BYTES
    )]
    Envelope,
    /// A frame longer than a receiver takes.
    #[error("a frame of {bytes} bytes, at most {max} taken")]
    FrameTooLong {
        /// Its length, as its header says.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Bytes after the last list, or a body that ended inside a frame.
    #[error("{bytes} bytes that are no frame of an announced list")]
    Trailing {
        /// The bytes.
        bytes: usize,
    },
    /// A list that is not what its envelope announced.
    #[error("list {list}: {reason}")]
    Announced {
        /// The list.
        list: u32,
        /// What differs.
        reason: String,
    },
    /// A list whose frames stopped before its last.
    #[error("list {list}: {received} of its {frames} frames received")]
    Incomplete {
        /// The list.
        list: u32,
        /// Frames received.
        received: u32,
        /// Frames announced (0 when none came).
        frames: u32,
    },
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::*;

    /// A NIK-shaped identifier (16 ASCII digits) for number `n`.
    fn nik(n: u64) -> String {
        format!("{:016}", 3_171_000_000_000_000 + n)
    }

    /// Small frames, so every list crosses several.
    const FRAME: usize = 4_096;

    /// Sends `list` through the chunker and back, as the other side reads it.
    fn send(kind: ListKind, list: u32, records: &[u8], limits: &Limits) -> Vec<u8> {
        let frames: Vec<Vec<u8>> = frames(kind, list, records, FRAME).unwrap().collect();
        let mut reader = ListReader::new(kind, list, limits);
        let mut out = Vec::new();
        for frame in &frames {
            out.extend_from_slice(reader.read(frame).unwrap());
        }
        reader.finish().unwrap();
        out
    }

    /// The whole protocol in-process, A's rows (label, identifier) against B's identifiers,
    /// every list through frames. `b_context` and `a_final_key` let a test break the run.
    fn run_with(
        context: &[u8],
        b_context: &[u8],
        a_rows: &[(String, String)],
        b_ids: &[String],
        swap_a_key: bool,
    ) -> Result<Overlap, PsiError> {
        let limits = Limits::default();
        let alpha = BlindingKey::generate()?;
        let beta = BlindingKey::generate()?;
        // A: blind its groups, send them.
        let query = Query::blind(&alpha, context, a_rows.iter().cloned(), &limits)?;
        limits.check_groups(query.lists().len())?;
        // B: re-blind each group frame by frame, answer with sorted digests.
        let mut answers = Vec::new();
        for (i, points) in query.lists().iter().enumerate() {
            let list = u32::try_from(i).unwrap();
            let received = send(ListKind::Points, list, points.as_flattened(), &limits);
            let mut reblinder = Reblinder::new(&beta, list, &limits);
            for chunk in received.chunks(10 * POINT_LEN) {
                reblinder.push(chunk)?;
            }
            let digests = reblinder.finish()?;
            let back = send(ListKind::Digests, list, digests.as_flattened(), &limits);
            let (back, rest) = back.as_chunks::<DIGEST_LEN>();
            assert!(rest.is_empty());
            answers.push(back.to_vec());
        }
        // B: its own set.
        let theirs = blind(&beta, b_context, b_ids);
        let received = send(ListKind::Points, 0, theirs.as_flattened(), &limits);
        // A: re-blind B's set and count.
        let other;
        let alpha = if swap_a_key {
            other = BlindingKey::generate()?;
            &other
        } else {
            &alpha
        };
        let mut reblinder = Reblinder::new(alpha, 0, &limits);
        reblinder.push(&received)?;
        let theirs = reblinder.finish()?;
        query.overlap(&answers, &theirs)
    }

    fn run(a_rows: &[(String, String)], b_ids: &[String]) -> Overlap {
        run_with(b"run-1", b"run-1", a_rows, b_ids, false).unwrap()
    }

    fn ungrouped(ids: impl IntoIterator<Item = u64>) -> Vec<(String, String)> {
        ids.into_iter().map(|n| (String::new(), nik(n))).collect()
    }

    #[test]
    fn the_count_is_the_true_intersection_size() {
        // (size of A, size of B, overlap)
        for (a, b, both) in [
            (1_000, 1_000, 0),
            (1_000, 1_000, 1),
            (1_000, 1_000, 1_000),
            (2_000, 1_200, 777),
            (1_000, 3_000, 999),
        ] {
            let a_ids = ungrouped(0..a);
            // B's numbers start where the overlap with A's begins.
            let b_ids: Vec<String> = (a - both..a - both + b).map(nik).collect();
            let overlap = run(&a_ids, &b_ids);
            assert_eq!(overlap.total(), both as usize, "{a} x {b}");
            assert_eq!(overlap.theirs, b as usize);
            assert_eq!(
                overlap.groups,
                vec![GroupOverlap {
                    label: String::new(),
                    size: a as usize,
                    overlap: both as usize
                }]
            );
        }
    }

    #[test]
    fn each_groups_count_is_its_true_overlap() {
        let countries = ["ID", "MY", "SA"];
        // 4,400 of A's, labelled unevenly (1,600, 1,600 and 1,200); B holds every third of
        // 0..4,500 and a few outside.
        let a_rows: Vec<(String, String)> = (0..4_400u64)
            .map(|n| {
                let c = countries[((n * 7) % 11 % 3) as usize];
                (c.to_owned(), nik(n))
            })
            .collect();
        let b_ids: Vec<String> = (0..4_500u64)
            .filter(|n| n % 3 == 0)
            .chain(10_000..10_100)
            .map(nik)
            .collect();
        let in_b: HashSet<&String> = b_ids.iter().collect();
        let mut truth: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for (c, id) in &a_rows {
            let t = truth.entry(c).or_default();
            t.0 += 1;
            t.1 += usize::from(in_b.contains(id));
        }
        let overlap = run(&a_rows, &b_ids);
        let got: BTreeMap<&str, (usize, usize)> = overlap
            .groups
            .iter()
            .map(|g| (g.label.as_str(), (g.size, g.overlap)))
            .collect();
        assert_eq!(got, truth);
        assert_eq!(
            got.values().map(|t| t.0).collect::<Vec<_>>(),
            [1_600, 1_600, 1_200]
        );
        assert_eq!(overlap.total(), 1_467);
        assert_eq!(overlap.theirs, 1_600);
    }

    #[test]
    fn duplicates_count_once() {
        // Each of A's 1,000 identifiers three times; B's 1,500 twice, 400 of them shared.
        let a_rows: Vec<(String, String)> = (0..3_000u64)
            .map(|n| (String::new(), nik(n % 1_000)))
            .collect();
        let b_ids: Vec<String> = (0..3_000u64).map(|n| nik(600 + n % 1_500)).collect();
        let overlap = run(&a_rows, &b_ids);
        assert_eq!(overlap.groups[0].size, 1_000);
        assert_eq!(overlap.theirs, 1_500);
        assert_eq!(overlap.total(), 400);
    }

    #[test]
    fn another_runs_context_or_key_matches_nothing() {
        let a_ids = ungrouped(0..1_000);
        let b_ids: Vec<String> = (0..1_000).map(nik).collect();
        assert_eq!(run(&a_ids, &b_ids).total(), 1_000);
        let other_context = run_with(b"run-1", b"run-2", &a_ids, &b_ids, false).unwrap();
        assert_eq!(other_context.total(), 0);
        let other_key = run_with(b"run-1", b"run-1", &a_ids, &b_ids, true).unwrap();
        assert_eq!(other_key.total(), 0);
    }

    #[test]
    fn a_set_below_the_minimum_is_refused() {
        let key = BlindingKey::generate().unwrap();
        let limits = Limits::default();
        // 999 distinct, even if written 1,998 times.
        let rows = ungrouped((0..1_998).map(|n| n % 999));
        assert_eq!(
            Query::blind(&key, b"ctx", rows, &limits).err(),
            Some(PsiError::TooSmall {
                list: 0,
                size: 999,
                min: 1_000
            })
        );
        // A group of A's below it, though the whole set is large.
        let mut rows = ungrouped(0..2_000);
        rows.push(("MY".into(), nik(5)));
        assert_eq!(
            Query::blind(&key, b"ctx", rows, &limits).err(),
            Some(PsiError::TooSmall {
                list: 1,
                size: 1,
                min: 1_000
            })
        );
        // B's set, as A receives it.
        let theirs = blind(&key, b"ctx", &(0..999).map(nik).collect::<Vec<_>>());
        let other = BlindingKey::generate().unwrap();
        let mut reblinder = Reblinder::new(&other, 0, &limits);
        reblinder.push(theirs.as_flattened()).unwrap();
        assert_eq!(
            reblinder.finish().err(),
            Some(PsiError::TooSmall {
                list: 0,
                size: 999,
                min: 1_000
            })
        );
        // An explicitly lower minimum lets the same list through.
        let lower = Limits {
            min_set: 10,
            ..Limits::default()
        };
        let mut reblinder = Reblinder::new(&other, 0, &lower);
        reblinder.push(theirs.as_flattened()).unwrap();
        assert_eq!(reblinder.finish().unwrap().len(), 999);
    }

    #[test]
    fn no_groups_too_many_groups_and_an_empty_list_are_refused() {
        let key = BlindingKey::generate().unwrap();
        let limits = Limits {
            min_set: 1,
            max_groups: 3,
            ..Limits::default()
        };
        let none: Vec<(String, String)> = Vec::new();
        assert_eq!(
            Query::blind(&key, b"ctx", none, &limits).err(),
            Some(PsiError::NoGroups)
        );
        let four = (0..4u64).map(|n| (n.to_string(), nik(n)));
        assert_eq!(
            Query::blind(&key, b"ctx", four, &limits).err(),
            Some(PsiError::TooManyGroups { groups: 4, max: 3 })
        );
        assert_eq!(
            Limits::default().check_groups(257),
            Err(PsiError::TooManyGroups {
                groups: 257,
                max: 256
            })
        );
        let empty = Reblinder::new(&key, 2, &limits);
        assert_eq!(empty.finish().err(), Some(PsiError::Empty { list: 2 }));
    }

    #[test]
    fn answers_that_do_not_fit_the_query_are_refused() {
        let alpha = BlindingKey::generate().unwrap();
        let query = Query::blind(&alpha, b"ctx", ungrouped(0..1_000), &Limits::default()).unwrap();
        assert_eq!(
            query.overlap(&[], &[]).err(),
            Some(PsiError::AnswerCount {
                found: 0,
                expected: 1
            })
        );
        assert_eq!(
            query.overlap(&[vec![[0; DIGEST_LEN]; 999]], &[]).err(),
            Some(PsiError::AnswerSize {
                group: 0,
                found: 999,
                expected: 1_000
            })
        );
    }
}
