//! An overlap run on the wire (PROTOCOL.md §2.7): the contract's terms, the signed query and
//! answer that announce the lists, and the body that carries the lists after the envelope —
//! cut by [`BodySplitter`] and checked against what the envelope announced by
//! [`ListsReceiver`].

use serde::{Deserialize, Serialize};

use super::frame::{HEADER_LEN, ListKind, ListReader, frame_len, frames};
use super::{Limits, PsiError};
use crate::canonical::{b64url, b64url_decode};
use crate::contract::ContractRef;

/// The media type of a body that carries lists after its envelope: the compact JWS, one LF
/// byte, then the frames.
pub const PSI_MEDIA_TYPE: &str = "application/simpul-psi";

/// The longest envelope before the LF: the protocol's request body limit.
pub const MAX_ENVELOPE_BYTES: usize = crate::envelope::MAX_REQUEST_BYTES;

/// The longest frame a receiver takes: 4 MiB (senders cut 1 MiB frames).
pub const MAX_FRAME_BYTES: usize = 4 << 20;

/// The fewest records a frame other than its list's last holds: a receiver bounds a list's
/// bytes by its records, and headers add at most 62 bytes per 1,024 records.
pub const MIN_FRAME_RECORDS: usize = 1_024;

/// The most runs a contract may allow a consumer per purpose per day.
pub const MAX_RUNS_PER_DAY: u32 = 1_000;

/// What makes a contract an overlap contract (PROTOCOL.md §2.7): what its lists hold and
/// the bounds of a run. Absent, not `null`, in any other contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlapTerms {
    /// What both lists hold, in the form both sides write it (e.g. `nik`: 16 digits).
    pub identifier: String,
    /// The fewest distinct identifiers in each of the consumer's groups and in the
    /// provider's list; default 1,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_set: Option<u64>,
    /// The most runs one consumer may make for one purpose in one UTC day; default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_per_day: Option<u32>,
    /// The most identifiers in one list, and in the consumer's groups together; default
    /// and at most 10,000,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_set: Option<u64>,
    /// The most groups in one run; default and at most 256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_groups: Option<u32>,
}

impl OverlapTerms {
    /// The run's bounds as [`Limits`].
    pub fn limits(&self) -> Limits {
        let default = Limits::default();
        let size = |v: Option<u64>, d: usize| v.and_then(|v| usize::try_from(v).ok()).unwrap_or(d);
        Limits {
            min_set: size(self.min_set, default.min_set),
            max_set: size(self.max_set, default.max_set),
            max_groups: self.max_groups.map_or(default.max_groups, |g| g as usize),
        }
    }

    /// The runs one consumer may make for one purpose in one UTC day.
    pub fn runs_per_day(&self) -> u32 {
        self.runs_per_day.unwrap_or(10)
    }
}

/// What is wrong with a contract's `overlap`.
pub(crate) fn check(terms: &OverlapTerms) -> Result<(), String> {
    let id = &terms.identifier;
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err("`identifier` must be 1 to 64 characters of [a-z0-9_]".into());
    }
    let default = Limits::default();
    let max_set = terms.max_set.unwrap_or(default.max_set as u64);
    if !(1..=default.max_set as u64).contains(&max_set) {
        return Err(format!("`max_set` must be from 1 to {}", default.max_set));
    }
    let min_set = terms.min_set.unwrap_or(default.min_set as u64);
    if min_set == 0 || min_set > max_set {
        return Err("`min_set` must be at least 1 and at most `max_set`".into());
    }
    if terms
        .max_groups
        .is_some_and(|g| g == 0 || g as usize > default.max_groups)
    {
        return Err(format!(
            "`max_groups` must be from 1 to {}",
            default.max_groups
        ));
    }
    if terms
        .runs_per_day
        .is_some_and(|r| r == 0 || r > MAX_RUNS_PER_DAY)
    {
        return Err(format!(
            "`runs_per_day` must be from 1 to {MAX_RUNS_PER_DAY}"
        ));
    }
    Ok(())
}

/// One list as its envelope announces it: its distinct records, its frames, and the last
/// frame's running digest (base64url), which binds the frames to the signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSummary {
    /// Records in the list.
    pub size: u64,
    /// Frames it is cut into.
    pub frames: u32,
    /// Its digest: the running SHA-256 of its last frame, base64url.
    pub digest: String,
}

/// The `query` of an overlap contract: a run, or the report of one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum OverlapQuery {
    /// The consumer's groups, whose frames follow the envelope.
    Run(RunQuery),
    /// What the consumer counted in an earlier run.
    Report(Report),
}

/// A run's question: the consumer's groups, in order; group *i* is point list *i*.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    /// The groups.
    pub groups: Vec<ListSummary>,
}

/// A run's `result`: the answers (digest list *i* for group *i*) and the provider's own
/// list (point list 0), whose frames follow the envelope in that order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunAnswer {
    /// The provider's list.
    pub theirs: ListSummary,
    /// One answer per group.
    pub answers: Vec<ListSummary>,
}

/// What the consumer counted, reported to the provider so that both logs hold it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The run's exchange id.
    pub run: String,
    /// The provider's list's size, as the run's answer announced it.
    pub theirs: u64,
    /// Per group, in the run's order: its size and its overlap.
    pub groups: Vec<GroupCount>,
}

/// One group's figures in a [`Report`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupCount {
    /// Distinct identifiers in the group.
    pub size: u64,
    /// How many of them are on the provider's list.
    pub overlap: u64,
}

/// A report's `result`: the run it recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportAnswer {
    /// The run's exchange id.
    pub recorded: String,
}

/// The context both sides hash identifiers under in the run `exchange_id` of `contract`:
/// points of one run mean nothing in another.
pub fn run_context(exchange_id: &str, contract: &ContractRef) -> Vec<u8> {
    format!(
        "simpul-psi-v1 run\0{exchange_id}\0{}\0{}",
        contract.id, contract.version
    )
    .into_bytes()
}

/// Cuts `lists` — each its kind, its number and its records — into frames of at most
/// `max_frame_bytes`, one after the other: the bytes that follow an envelope, and each
/// list's summary for the envelope to announce.
///
/// # Errors
/// As [`frames`].
pub fn frame_lists(
    lists: &[(ListKind, u32, &[u8])],
    max_frame_bytes: usize,
) -> Result<(Vec<u8>, Vec<ListSummary>), PsiError> {
    let total: usize = lists
        .iter()
        .map(|(_, _, records)| records.len() + HEADER_LEN)
        .sum();
    let mut body = Vec::with_capacity(total + total / (max_frame_bytes / 2).max(1) * HEADER_LEN);
    let mut summaries = Vec::with_capacity(lists.len());
    for &(kind, list, records) in lists {
        let mut framed = frames(kind, list, records, max_frame_bytes)?;
        let count = framed.frame_count();
        for frame in framed.by_ref() {
            body.extend_from_slice(&frame);
        }
        summaries.push(ListSummary {
            size: (records.len() / kind.record_len()) as u64,
            frames: count,
            digest: b64url(&framed.running()),
        });
    }
    Ok((body, summaries))
}

/// Cuts a body as it arrives into its envelope (the bytes before the first LF, at most
/// [`MAX_ENVELOPE_BYTES`]) and then whole frames, holding at most one frame and one read's
/// bytes.
#[derive(Debug, Default)]
pub struct BodySplitter {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out.
    at: usize,
    envelope_done: bool,
}

impl BodySplitter {
    /// A splitter at the start of a body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next bytes of the body.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.at > 0 {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The envelope, once its LF has arrived; `None` until then.
    ///
    /// # Errors
    /// [`PsiError::Envelope`] when more than [`MAX_ENVELOPE_BYTES`] arrive without an LF.
    pub fn envelope(&mut self) -> Result<Option<Vec<u8>>, PsiError> {
        if self.envelope_done {
            return Ok(None);
        }
        let pending = &self.buf[self.at..];
        match pending.iter().position(|&b| b == b'\n') {
            Some(lf) if lf <= MAX_ENVELOPE_BYTES => {
                let envelope = pending[..lf].to_vec();
                self.at += lf + 1;
                self.envelope_done = true;
                Ok(Some(envelope))
            }
            Some(_) => Err(PsiError::Envelope),
            None if pending.len() > MAX_ENVELOPE_BYTES => Err(PsiError::Envelope),
            None => Ok(None),
        }
    }

    /// The next whole frame, once it has arrived; `None` until then (or before the
    /// envelope).
    ///
    /// # Errors
    /// [`PsiError::NotAFrame`] for bytes that do not start a frame of this version;
    /// [`PsiError::FrameTooLong`] for a frame over [`MAX_FRAME_BYTES`].
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, PsiError> {
        if !self.envelope_done {
            return Ok(None);
        }
        let pending = &self.buf[self.at..];
        let Some(header) = pending.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = frame_len(header).ok_or(PsiError::NotAFrame {
            list: u32::from_be_bytes([header[6], header[7], header[8], header[9]]),
            index: u32::from_be_bytes([header[10], header[11], header[12], header[13]]),
        })?;
        if len > MAX_FRAME_BYTES {
            return Err(PsiError::FrameTooLong {
                bytes: len,
                max: MAX_FRAME_BYTES,
            });
        }
        if pending.len() < len {
            return Ok(None);
        }
        let frame = pending[..len].to_vec();
        self.at += len;
        Ok(Some(frame))
    }

    /// Checks that the body ended at a frame's end: nothing left over.
    ///
    /// # Errors
    /// [`PsiError::Envelope`] when the body ended before its envelope's LF;
    /// [`PsiError::Trailing`] when it ended inside a frame.
    pub fn finish(&self) -> Result<(), PsiError> {
        if !self.envelope_done {
            return Err(PsiError::Envelope);
        }
        let left = self.buf.len() - self.at;
        if left > 0 {
            return Err(PsiError::Trailing { bytes: left });
        }
        Ok(())
    }
}

/// The frames of `bytes`, a whole run of frames already in memory, in order, without
/// copying them; stops at the first error.
pub fn frames_in(bytes: &[u8]) -> impl Iterator<Item = Result<&[u8], PsiError>> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let Some(header) = rest.first_chunk::<HEADER_LEN>() else {
            let bytes = rest.len();
            rest = &[];
            return Some(Err(PsiError::Trailing { bytes }));
        };
        let Some(len) = frame_len(header).filter(|&len| len <= rest.len()) else {
            let err = match frame_len(header) {
                None => PsiError::NotAFrame {
                    list: u32::from_be_bytes([header[6], header[7], header[8], header[9]]),
                    index: u32::from_be_bytes([header[10], header[11], header[12], header[13]]),
                },
                Some(_) => PsiError::Trailing { bytes: rest.len() },
            };
            rest = &[];
            return Some(Err(err));
        };
        let (frame, after) = rest.split_at(len);
        rest = after;
        Some(Ok(frame))
    })
}

/// Receives the lists an envelope announced, in order, one frame at a time, and refuses a
/// list that is not what it announced: another size, frame count or digest.
pub struct ListsReceiver {
    expected: Vec<(ListKind, u32, ListSummary)>,
    /// The list being read: its place in `expected`.
    current: usize,
    reader: Option<ListReader>,
    limits: Limits,
}

impl ListsReceiver {
    /// A receiver of `expected` (each list's kind, number and summary), in that order, held
    /// to `limits`.
    pub fn new(expected: Vec<(ListKind, u32, ListSummary)>, limits: &Limits) -> Self {
        ListsReceiver {
            expected,
            current: 0,
            reader: None,
            limits: *limits,
        }
    }

    /// Checks the next frame and gives the place in the expected lists of the list it
    /// belongs to, and its records.
    ///
    /// # Errors
    /// [`PsiError::Trailing`] after the last list; what [`ListReader::read`] refuses; and
    /// [`PsiError::Announced`] when a list is not what the envelope announced.
    pub fn read<'f>(&mut self, frame: &'f [u8]) -> Result<(usize, &'f [u8]), PsiError> {
        let place = self.current;
        let Some((kind, list, summary)) = self.expected.get(place) else {
            return Err(PsiError::Trailing { bytes: frame.len() });
        };
        let (kind, list) = (*kind, *list);
        let reader = self
            .reader
            .get_or_insert_with(|| ListReader::new(kind, list, &self.limits));
        let first = reader.announced().is_none();
        let records = reader.read(frame)?;
        if !reader.is_complete() && records.len() < MIN_FRAME_RECORDS * kind.record_len() {
            return Err(PsiError::Announced {
                list,
                reason: format!(
                    "a frame other than the list's last holds fewer than {MIN_FRAME_RECORDS} records"
                ),
            });
        }
        if first {
            let (frames, size) = reader.announced().unwrap_or_default();
            if frames != summary.frames || size != summary.size {
                return Err(PsiError::Announced {
                    list,
                    reason: format!(
                        "its frames hold {size} records in {frames} frames, the envelope announces {} in {}",
                        summary.size, summary.frames
                    ),
                });
            }
        }
        if reader.is_complete() {
            let digest = self
                .reader
                .take()
                .map(ListReader::finish)
                .transpose()?
                .unwrap_or_default();
            if b64url_decode(&summary.digest).as_deref() != Some(&digest[..]) {
                return Err(PsiError::Announced {
                    list,
                    reason: "its digest is not the one the envelope announces".into(),
                });
            }
            self.current += 1;
        }
        Ok((place, records))
    }

    /// Checks that every announced list arrived whole.
    ///
    /// # Errors
    /// [`PsiError::Incomplete`] naming the first list that did not.
    pub fn finish(self) -> Result<(), PsiError> {
        match self.expected.get(self.current) {
            None => Ok(()),
            Some((_, list, summary)) => Err(PsiError::Incomplete {
                list: *list,
                received: self
                    .reader
                    .as_ref()
                    .and_then(ListReader::announced)
                    .map_or(0, |_| 1),
                frames: summary.frames,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::psi::{DIGEST_LEN, POINT_LEN};

    fn points(n: usize, seed: u8) -> Vec<u8> {
        (0..n * POINT_LEN).map(|i| (i as u8) ^ seed).collect()
    }

    /// A body of `lists` after an envelope, split in reads of `chunk` bytes.
    fn split(body: &[u8], chunk: usize) -> Result<(Vec<u8>, Vec<Vec<u8>>), PsiError> {
        let mut splitter = BodySplitter::new();
        let (mut envelope, mut frames) = (None, Vec::new());
        for piece in body.chunks(chunk) {
            splitter.push(piece);
            if envelope.is_none() {
                envelope = splitter.envelope()?;
            }
            while let Some(frame) = splitter.next_frame()? {
                frames.push(frame);
            }
        }
        splitter.finish()?;
        Ok((envelope.unwrap_or_default(), frames))
    }

    fn sample() -> (Vec<u8>, Vec<ListSummary>, Vec<u8>, Vec<u8>) {
        let (a, b) = (points(5_000, 1), vec![7u8; 40 * DIGEST_LEN]);
        let (framed, summaries) = frame_lists(
            &[(ListKind::Points, 0, &a), (ListKind::Digests, 1, &b)],
            HEADER_LEN + MIN_FRAME_RECORDS * POINT_LEN,
        )
        .unwrap();
        (framed, summaries, a, b)
    }

    fn receive(frames: &[Vec<u8>], summaries: &[ListSummary]) -> Result<Vec<Vec<u8>>, PsiError> {
        let limits = Limits {
            min_set: 1,
            ..Limits::default()
        };
        let mut receiver = ListsReceiver::new(
            vec![
                (ListKind::Points, 0, summaries[0].clone()),
                (ListKind::Digests, 1, summaries[1].clone()),
            ],
            &limits,
        );
        let mut out = vec![Vec::new(), Vec::new()];
        for frame in frames {
            let (place, records) = receiver.read(frame)?;
            out[place].extend_from_slice(records);
        }
        receiver.finish()?;
        Ok(out)
    }

    #[test]
    fn lists_after_an_envelope_arrive_whole_whatever_the_reads() {
        let (framed, summaries, a, b) = sample();
        assert_eq!(summaries[0].size, 5_000);
        assert_eq!(summaries[1].size, 40);
        assert!(summaries[0].frames > 1);
        let mut body = b"head.payload.sig\n".to_vec();
        body.extend_from_slice(&framed);
        for chunk in [1, 7, 1_000, 65_536, body.len()] {
            let (envelope, frames) = split(&body, chunk).unwrap();
            assert_eq!(envelope, b"head.payload.sig");
            assert_eq!(
                receive(&frames, &summaries).unwrap(),
                vec![a.clone(), b.clone()]
            );
        }
    }

    #[test]
    fn frames_in_memory_are_the_frames_the_splitter_cuts() {
        let (framed, ..) = sample();
        let (_, cut) = split(&[b"e\n".as_slice(), &framed].concat(), 4_096).unwrap();
        let walked: Vec<&[u8]> = frames_in(&framed).collect::<Result<_, _>>().unwrap();
        assert_eq!(walked, cut.iter().map(Vec::as_slice).collect::<Vec<_>>());
        assert!(matches!(
            frames_in(&framed[..framed.len() - 1]).last(),
            Some(Err(PsiError::Trailing { .. }))
        ));
        assert!(matches!(
            frames_in(&[1u8; 70]).next(),
            Some(Err(PsiError::NotAFrame { .. }))
        ));
    }

    #[test]
    fn a_list_other_than_announced_is_refused() {
        let (framed, mut summaries, ..) = sample();
        let (_, frames) = split(&[b"e\n".as_slice(), &framed].concat(), 4_096).unwrap();
        // Another size announced.
        let mut other = summaries.clone();
        other[0].size = 4_999;
        assert!(matches!(
            receive(&frames, &other),
            Err(PsiError::Announced { list: 0, .. })
        ));
        // Another digest announced (the frames of another list).
        summaries[1].digest = summaries[0].digest.clone();
        assert!(matches!(
            receive(&frames, &summaries),
            Err(PsiError::Announced { list: 1, .. })
        ));
    }

    #[test]
    fn a_frame_altered_dropped_or_added_is_refused() {
        let (framed, summaries, ..) = sample();
        let (_, frames) = split(&[b"e\n".as_slice(), &framed].concat(), 4_096).unwrap();
        let mut altered = frames.clone();
        let last = altered[1].len() - 1;
        altered[1][last] ^= 1;
        assert!(matches!(
            receive(&altered, &summaries),
            Err(PsiError::RunningDigest { list: 0, index: 1 })
        ));
        let mut dropped = frames.clone();
        dropped.pop();
        assert!(matches!(
            receive(&dropped, &summaries),
            Err(PsiError::Incomplete { list: 1, .. })
        ));
        let mut added = frames.clone();
        added.push(frames[0].clone());
        assert!(matches!(
            receive(&added, &summaries),
            Err(PsiError::Trailing { .. })
        ));
    }

    #[test]
    fn a_list_in_frames_too_small_is_refused() {
        let a = points(2_000, 3);
        let (framed, summaries) =
            frame_lists(&[(ListKind::Points, 0, &a)], HEADER_LEN + 100 * POINT_LEN).unwrap();
        let frames: Vec<&[u8]> = frames_in(&framed).collect::<Result<_, _>>().unwrap();
        let mut receiver = ListsReceiver::new(
            vec![(ListKind::Points, 0, summaries[0].clone())],
            &Limits {
                min_set: 1,
                ..Limits::default()
            },
        );
        assert!(matches!(
            receiver.read(frames[0]),
            Err(PsiError::Announced { list: 0, .. })
        ));
    }

    #[test]
    fn a_body_cut_short_or_without_envelope_is_refused() {
        let (framed, ..) = sample();
        let body = [b"e\n".as_slice(), &framed].concat();
        assert!(matches!(
            split(&body[..body.len() - 5], 512),
            Err(PsiError::Trailing { .. })
        ));
        assert!(matches!(split(b"no line feed", 4), Err(PsiError::Envelope)));
        let long = vec![b'a'; MAX_ENVELOPE_BYTES + 1];
        assert!(matches!(split(&long, 4_096), Err(PsiError::Envelope)));
        let not_a_frame = [b"e\n".as_slice(), &[0u8; 100]].concat();
        assert!(matches!(
            split(&not_a_frame, 512),
            Err(PsiError::NotAFrame { .. })
        ));
    }

    #[test]
    fn the_terms_default_and_their_bounds_are_checked() {
        let terms: OverlapTerms = serde_json::from_str(r#"{"identifier": "nik"}"#).unwrap();
        assert_eq!(terms.limits(), Limits::default());
        assert_eq!(terms.runs_per_day(), 10);
        assert!(check(&terms).is_ok());
        for bad in [
            r#"{"identifier": "NIK"}"#,
            r#"{"identifier": "nik", "min_set": 0}"#,
            r#"{"identifier": "nik", "min_set": 11, "max_set": 10}"#,
            r#"{"identifier": "nik", "max_set": 10000001}"#,
            r#"{"identifier": "nik", "max_groups": 257}"#,
            r#"{"identifier": "nik", "runs_per_day": 0}"#,
        ] {
            let terms: OverlapTerms = serde_json::from_str(bad).unwrap();
            assert!(check(&terms).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_query_is_a_run_or_a_report() {
        let run: OverlapQuery = serde_json::from_str(
            r#"{"run": {"groups": [{"size": 1000, "frames": 1, "digest": "AA"}]}}"#,
        )
        .unwrap();
        assert!(matches!(run, OverlapQuery::Run(_)));
        let report: OverlapQuery = serde_json::from_str(
            r#"{"report": {"run": "x", "theirs": 5, "groups": [{"size": 1000, "overlap": 3}]}}"#,
        )
        .unwrap();
        assert!(matches!(report, OverlapQuery::Report(_)));
        assert!(
            serde_json::from_str::<OverlapQuery>(r#"{"run": {"groups": []}, "x": 1}"#).is_err()
        );
    }
}
