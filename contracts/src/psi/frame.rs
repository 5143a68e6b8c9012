//! Point and digest lists on the wire: fixed-size records cut into frames of bounded size,
//! each carrying its place and a running SHA-256, so a receiver checks order and
//! completeness holding one frame at a time.
//!
//! A frame is a 62-byte header and its records, integers big-endian:
//!
//! | bytes | field |
//! | --- | --- |
//! | 0–3 | `SPSI` |
//! | 4 | version, 1 |
//! | 5 | kind: 1 points (32-byte records), 2 digests (12-byte records) |
//! | 6–9 | list: the group's number for A's groups and B's answers, 0 for B's set |
//! | 10–13 | index of this frame, from 0 |
//! | 14–17 | frames in the list (at least 1; an empty list is one frame of no records) |
//! | 18–25 | records in the list |
//! | 26–29 | records in this frame |
//! | 30–61 | running digest: `SHA-256("simpul-psi-v1 frame\0" ‖ previous ‖ bytes 0–29 ‖ records)`, the previous of frame 0 being 32 zero bytes |
//!
//! The last frame's running digest is the digest of the whole list, which a signed envelope
//! can carry to bind the frames to it.

use aws_lc_rs::digest::{Context, SHA256};

use super::{DIGEST_LEN, Limits, POINT_LEN, PsiError};

/// The length of a frame's header.
pub const HEADER_LEN: usize = 62;

/// The frame size a sender uses unless it has a reason not to: 1 MiB.
pub const DEFAULT_FRAME_BYTES: usize = 1 << 20;

const MAGIC: &[u8; 4] = b"SPSI";
const VERSION: u8 = 1;
const RUNNING_DOMAIN: &[u8] = b"simpul-psi-v1 frame\0";
/// The header's bytes that the running digest covers (all but the digest).
const COVERED: usize = 30;

/// What a list holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// Encoded points ([`super::Point`]): A's groups, B's set.
    Points,
    /// Digests ([`super::Digest`]): B's answers.
    Digests,
}

impl ListKind {
    /// The length of one record.
    pub fn record_len(self) -> usize {
        match self {
            ListKind::Points => POINT_LEN,
            ListKind::Digests => DIGEST_LEN,
        }
    }

    fn byte(self) -> u8 {
        match self {
            ListKind::Points => 1,
            ListKind::Digests => 2,
        }
    }
}

/// Cuts the list `records` (whole records of `kind`, concatenated) into frames of at most
/// `max_frame_bytes` bytes ([`DEFAULT_FRAME_BYTES`] unless there is a reason), made one at a
/// time as they are taken.
///
/// # Errors
/// [`PsiError::RecordLength`] when `records` is not whole records;
/// [`PsiError::FrameTooSmall`] when a frame could not hold a header and one record.
pub fn frames(
    kind: ListKind,
    list: u32,
    records: &[u8],
    max_frame_bytes: usize,
) -> Result<Frames<'_>, PsiError> {
    let record_len = kind.record_len();
    if !records.len().is_multiple_of(record_len) {
        return Err(PsiError::RecordLength {
            bytes: records.len(),
            record_len,
        });
    }
    let per_frame =
        (max_frame_bytes.saturating_sub(HEADER_LEN) / record_len).min(u32::MAX as usize);
    if per_frame == 0 {
        return Err(PsiError::FrameTooSmall { max_frame_bytes });
    }
    let total = records.len() / record_len;
    let frames =
        u32::try_from(total.div_ceil(per_frame).max(1)).map_err(|_| PsiError::TooLarge {
            list,
            size: total as u64,
            max: per_frame.saturating_mul(u32::MAX as usize),
        })?;
    Ok(Frames {
        kind,
        list,
        records,
        per_frame,
        index: 0,
        frames,
        running: [0; 32],
    })
}

/// The frames of one list, from [`frames`].
pub struct Frames<'a> {
    kind: ListKind,
    list: u32,
    records: &'a [u8],
    per_frame: usize,
    index: u32,
    frames: u32,
    running: [u8; 32],
}

impl Frames<'_> {
    /// The number of frames of the list.
    pub fn frame_count(&self) -> u32 {
        self.frames
    }

    /// The running digest of the frames made so far; once all are made, the list's digest
    /// (what [`ListReader::finish`] gives its receiver).
    pub fn running(&self) -> [u8; 32] {
        self.running
    }
}

impl Iterator for Frames<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.index == self.frames {
            return None;
        }
        let record_len = self.kind.record_len();
        let start = self.index as usize * self.per_frame * record_len;
        let end = (start + self.per_frame * record_len).min(self.records.len());
        let records = &self.records[start..end];
        let total = (self.records.len() / record_len) as u64;
        let mut frame = Vec::with_capacity(HEADER_LEN + records.len());
        frame.extend_from_slice(MAGIC);
        frame.push(VERSION);
        frame.push(self.kind.byte());
        frame.extend_from_slice(&self.list.to_be_bytes());
        frame.extend_from_slice(&self.index.to_be_bytes());
        frame.extend_from_slice(&self.frames.to_be_bytes());
        frame.extend_from_slice(&total.to_be_bytes());
        // At most `per_frame` records, which fits a u32.
        frame.extend_from_slice(&((records.len() / record_len) as u32).to_be_bytes());
        self.running = running(&self.running, &frame, records);
        frame.extend_from_slice(&self.running);
        frame.extend_from_slice(records);
        self.index += 1;
        Some(frame)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.frames - self.index) as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Frames<'_> {}

/// The whole length of the frame whose header is `header`, from its kind and record count;
/// `None` when it is not a header of this protocol's version or names no known kind (the
/// receiver refuses the frame as [`PsiError::NotAFrame`]).
pub fn frame_len(header: &[u8; HEADER_LEN]) -> Option<usize> {
    if &header[..4] != MAGIC || header[4] != VERSION {
        return None;
    }
    let kind = [ListKind::Points, ListKind::Digests]
        .into_iter()
        .find(|k| k.byte() == header[5])?;
    let count = u32::from_be_bytes([header[26], header[27], header[28], header[29]]);
    (count as usize)
        .checked_mul(kind.record_len())?
        .checked_add(HEADER_LEN)
}

/// The running digest after a frame with header bytes `covered` and `records`.
fn running(previous: &[u8; 32], covered: &[u8], records: &[u8]) -> [u8; 32] {
    let mut hash = Context::new(&SHA256);
    hash.update(RUNNING_DOMAIN);
    hash.update(previous);
    hash.update(covered);
    hash.update(records);
    let mut out = [0u8; 32];
    out.copy_from_slice(hash.finish().as_ref());
    out
}

/// Reads one list's frames in order, checking each against the frames before it, with no
/// more than the frame at hand in memory. After an error the list is refused: drop the
/// reader.
pub struct ListReader {
    kind: ListKind,
    list: u32,
    max_records: usize,
    /// The frame expected next.
    next: u32,
    /// Frames in the list, as the first frame said (0 before it).
    frames: u32,
    /// Records in the list, as the first frame said.
    total: u64,
    received: u64,
    running: [u8; 32],
}

impl ListReader {
    /// A reader for list `list` of `kind`, refusing a list announced above
    /// [`Limits::max_set`].
    pub fn new(kind: ListKind, list: u32, limits: &Limits) -> Self {
        ListReader {
            kind,
            list,
            max_records: limits.max_set,
            next: 0,
            frames: 0,
            total: 0,
            received: 0,
            running: [0; 32],
        }
    }

    /// Checks the next frame and gives its records (whole records, in the list's order).
    ///
    /// # Errors
    /// [`PsiError::FrameSize`], [`PsiError::NotAFrame`], [`PsiError::WrongList`],
    /// [`PsiError::AfterLast`], [`PsiError::OutOfOrder`], [`PsiError::TooLarge`],
    /// [`PsiError::Inconsistent`], [`PsiError::RunningDigest`].
    pub fn read<'f>(&mut self, frame: &'f [u8]) -> Result<&'f [u8], PsiError> {
        let (list, index) = (self.list, self.next);
        let size = |expected: usize| PsiError::FrameSize {
            list,
            index,
            expected,
            found: frame.len(),
        };
        let Some((header, records)) = frame.split_first_chunk::<HEADER_LEN>() else {
            return Err(size(HEADER_LEN));
        };
        let u32_at = |at: usize| {
            u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        if &header[..4] != MAGIC || header[4] != VERSION {
            return Err(PsiError::NotAFrame { list, index });
        }
        let (found_kind, found_list) = (header[5], u32_at(6));
        if found_kind != self.kind.byte() || found_list != list {
            return Err(PsiError::WrongList {
                kind: self.kind,
                list,
                found_kind,
                found_list,
            });
        }
        let (found_index, frames, count) = (u32_at(10), u32_at(14), u32_at(26));
        let mut total = [0u8; 8];
        total.copy_from_slice(&header[18..26]);
        let total = u64::from_be_bytes(total);
        if self.frames != 0 && index == self.frames {
            return Err(PsiError::AfterLast {
                list,
                frames: self.frames,
            });
        }
        if found_index != index {
            return Err(PsiError::OutOfOrder {
                list,
                expected: index,
                found: found_index,
            });
        }
        let inconsistent = |reason| PsiError::Inconsistent {
            list,
            index,
            reason,
        };
        if index == 0 {
            if total > self.max_records as u64 {
                return Err(PsiError::TooLarge {
                    list,
                    size: total,
                    max: self.max_records,
                });
            }
            if frames == 0 || u64::from(frames) > total.max(1) {
                return Err(inconsistent("the frame count does not fit the list's size"));
            }
        } else if frames != self.frames || total != self.total {
            return Err(inconsistent(
                "the list's size or frame count differs from frame 0's",
            ));
        }
        let expected = (count as usize)
            .checked_mul(self.kind.record_len())
            .and_then(|n| n.checked_add(HEADER_LEN))
            .ok_or_else(|| inconsistent("an impossible record count"))?;
        if frame.len() != expected {
            return Err(size(expected));
        }
        let received = self.received + u64::from(count);
        if count == 0 && total != 0 {
            return Err(inconsistent("a frame without records"));
        }
        if received > total || (index + 1 == frames && received != total) {
            return Err(inconsistent(
                "the frames' records do not add up to the list's size",
            ));
        }
        let after = running(&self.running, &header[..COVERED], records);
        if after[..] != header[COVERED..] {
            return Err(PsiError::RunningDigest { list, index });
        }
        self.running = after;
        self.frames = frames;
        self.total = total;
        self.received = received;
        self.next = index + 1;
        Ok(records)
    }

    /// Whether every frame of the list has been read (the first frame says how many).
    pub fn is_complete(&self) -> bool {
        self.frames != 0 && self.next == self.frames
    }

    /// The list's frames and records as its first frame announced them; `None` before it.
    pub fn announced(&self) -> Option<(u32, u64)> {
        (self.frames != 0).then_some((self.frames, self.total))
    }

    /// The list's digest (the last frame's running digest), once every frame is read.
    ///
    /// # Errors
    /// [`PsiError::Incomplete`] before that.
    pub fn finish(self) -> Result<[u8; 32], PsiError> {
        if self.frames == 0 || self.next < self.frames {
            return Err(PsiError::Incomplete {
                list: self.list,
                received: self.next,
                frames: self.frames,
            });
        }
        Ok(self.running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` distinct records of `kind`.
    fn records(kind: ListKind, n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                let mut r = vec![0u8; kind.record_len()];
                r[..8].copy_from_slice(&(i as u64 * 2_654_435_761).to_be_bytes());
                r
            })
            .collect()
    }

    fn cut(kind: ListKind, list: u32, records: &[u8], max: usize) -> Vec<Vec<u8>> {
        frames(kind, list, records, max).unwrap().collect()
    }

    #[test]
    fn the_chunker_round_trips() {
        let limits = Limits::default();
        for kind in [ListKind::Points, ListKind::Digests] {
            let len = kind.record_len();
            for n in [0, 1, 2, 99, 100, 101, 5_000] {
                let list = records(kind, n);
                for max in [
                    HEADER_LEN + len,
                    HEADER_LEN + 100 * len,
                    4_096,
                    DEFAULT_FRAME_BYTES,
                ] {
                    let mut made = frames(kind, 3, &list, max).unwrap();
                    let per_frame = (max - HEADER_LEN) / len;
                    let count = n.div_ceil(per_frame).max(1);
                    assert_eq!(made.frame_count() as usize, count, "{kind:?} {n} in {max}");
                    assert_eq!(made.len(), count);
                    let all: Vec<Vec<u8>> = made.by_ref().collect();
                    let mut reader = ListReader::new(kind, 3, &limits);
                    let mut back = Vec::new();
                    for frame in &all {
                        assert!(frame.len() <= max);
                        back.extend_from_slice(reader.read(frame).unwrap());
                    }
                    assert_eq!(back, list);
                    assert_eq!(reader.finish().unwrap(), made.running());
                }
            }
        }
        // A frame holds as many records as fit, so 1 MiB carries 32,766 points.
        let list = records(ListKind::Points, 40_000);
        let all = cut(ListKind::Points, 0, &list, DEFAULT_FRAME_BYTES);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].len(), HEADER_LEN + 32_766 * 32);
        assert_eq!(all[1].len(), HEADER_LEN + (40_000 - 32_766) * 32);
    }

    #[test]
    fn the_chunker_refuses_part_records_and_frames_too_small() {
        assert_eq!(
            frames(ListKind::Digests, 0, &[0; 13], 4_096).err(),
            Some(PsiError::RecordLength {
                bytes: 13,
                record_len: 12
            })
        );
        assert_eq!(
            frames(ListKind::Points, 0, &[0; 32], HEADER_LEN + 31).err(),
            Some(PsiError::FrameTooSmall {
                max_frame_bytes: HEADER_LEN + 31
            })
        );
    }

    /// The frames of a 250-point list, 100 to a frame.
    fn three_frames() -> Vec<Vec<u8>> {
        cut(
            ListKind::Points,
            0,
            &records(ListKind::Points, 250),
            HEADER_LEN + 100 * 32,
        )
    }

    /// Reads `frames` into a fresh reader for list 0 of points, up to the first error.
    fn read_all(frames: &[Vec<u8>]) -> Result<[u8; 32], PsiError> {
        let mut reader = ListReader::new(ListKind::Points, 0, &Limits::default());
        for frame in frames {
            reader.read(frame)?;
        }
        reader.finish()
    }

    #[test]
    fn a_truncated_frame_is_refused() {
        let mut frames = three_frames();
        frames[1].pop();
        assert_eq!(
            read_all(&frames),
            Err(PsiError::FrameSize {
                list: 0,
                index: 1,
                expected: HEADER_LEN + 100 * 32,
                found: HEADER_LEN + 100 * 32 - 1
            })
        );
        let mut frames = three_frames();
        frames[0].truncate(HEADER_LEN - 1);
        assert_eq!(
            read_all(&frames),
            Err(PsiError::FrameSize {
                list: 0,
                index: 0,
                expected: HEADER_LEN,
                found: HEADER_LEN - 1
            })
        );
        // Bytes after the records are refused too.
        let mut frames = three_frames();
        frames[2].push(0);
        assert_eq!(
            read_all(&frames),
            Err(PsiError::FrameSize {
                list: 0,
                index: 2,
                expected: HEADER_LEN + 50 * 32,
                found: HEADER_LEN + 50 * 32 + 1
            })
        );
    }

    #[test]
    fn frames_out_of_order_missing_or_after_the_last_are_refused() {
        let frames = three_frames();
        for (order, want) in [
            (
                vec![1, 0, 2],
                PsiError::OutOfOrder {
                    list: 0,
                    expected: 0,
                    found: 1,
                },
            ),
            (
                vec![0, 2, 1],
                PsiError::OutOfOrder {
                    list: 0,
                    expected: 1,
                    found: 2,
                },
            ),
            (
                vec![0, 0],
                PsiError::OutOfOrder {
                    list: 0,
                    expected: 1,
                    found: 0,
                },
            ),
            (vec![0, 1, 2, 2], PsiError::AfterLast { list: 0, frames: 3 }),
            (
                vec![0, 1],
                PsiError::Incomplete {
                    list: 0,
                    received: 2,
                    frames: 3,
                },
            ),
            (
                vec![],
                PsiError::Incomplete {
                    list: 0,
                    received: 0,
                    frames: 0,
                },
            ),
        ] {
            let picked: Vec<Vec<u8>> = order.iter().map(|&i| frames[i].clone()).collect();
            assert_eq!(read_all(&picked), Err(want), "{order:?}");
        }
        assert!(read_all(&frames).is_ok());
    }

    #[test]
    fn a_wrong_running_digest_is_refused() {
        // A record altered, the digest itself altered.
        for at in [HEADER_LEN + 5, COVERED + 3] {
            let mut frames = three_frames();
            frames[1][at] ^= 1;
            assert_eq!(
                read_all(&frames),
                Err(PsiError::RunningDigest { list: 0, index: 1 }),
                "byte {at}"
            );
        }
        // A frame spliced in from another list of the same number, shape and place.
        let other = cut(
            ListKind::Points,
            0,
            &records(ListKind::Points, 251)[32..],
            HEADER_LEN + 100 * 32,
        );
        let mut frames = three_frames();
        frames[1] = other[1].clone();
        assert_eq!(
            read_all(&frames),
            Err(PsiError::RunningDigest { list: 0, index: 1 })
        );
    }

    #[test]
    fn frames_of_another_list_kind_or_protocol_are_refused() {
        let digests = cut(ListKind::Digests, 0, &records(ListKind::Digests, 10), 4_096);
        assert_eq!(
            read_all(&digests),
            Err(PsiError::WrongList {
                kind: ListKind::Points,
                list: 0,
                found_kind: 2,
                found_list: 0
            })
        );
        let list_1 = cut(ListKind::Points, 1, &records(ListKind::Points, 10), 4_096);
        assert_eq!(
            read_all(&list_1),
            Err(PsiError::WrongList {
                kind: ListKind::Points,
                list: 0,
                found_kind: 1,
                found_list: 1
            })
        );
        for at in [0, 4] {
            let mut frames = three_frames();
            frames[0][at] ^= 0x40;
            assert_eq!(
                read_all(&frames),
                Err(PsiError::NotAFrame { list: 0, index: 0 })
            );
        }
    }

    #[test]
    fn counts_that_disagree_are_refused() {
        // Frame 1 announcing another frame count than frame 0.
        let mut frames = three_frames();
        frames[1][17] = 4;
        assert!(matches!(
            read_all(&frames),
            Err(PsiError::Inconsistent {
                list: 0,
                index: 1,
                ..
            })
        ));
        // A list announced above the limit.
        let mut reader = ListReader::new(
            ListKind::Points,
            0,
            &Limits {
                max_set: 249,
                ..Limits::default()
            },
        );
        assert_eq!(
            reader.read(&three_frames()[0]),
            Err(PsiError::TooLarge {
                list: 0,
                size: 250,
                max: 249
            })
        );
    }
}
