//! An `application/simpul-psi` body as it arrives: its envelope read first, within the body
//! timeout and the protocol's envelope bound, and then its lists frame by frame, each
//! checked against what the (by then verified) envelope announced, handed on to a blocking
//! thread through a small channel so that no more than a few frames are held at once.

use std::time::Duration;

use bytes::Bytes;
use contracts::psi::wire::{BodySplitter, ListsReceiver, MAX_ENVELOPE_BYTES, MIN_FRAME_RECORDS};
use contracts::psi::{DIGEST_LEN, HEADER_LEN, Limits, POINT_LEN, PsiError};
use contracts::{Problem, ProblemCode};
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::sync::mpsc;

use crate::http::BODY_TIMEOUT;

/// Frames in flight between the reader and the thread that works on them: 4 MiB at the
/// sender's 1 MiB frames.
const IN_FLIGHT: usize = 4;

/// How long the lists may take to arrive after the envelope: 60 s, and 2 s more for every
/// whole MiB announced (a 1,000,000-point group is 30.5 MiB: 120 s). They arrive only as
/// fast as the provider re-blinds them, on cores it shares with blinding its own list: about
/// 20 s per million points on two quiet cores, so the bound leaves room for a busy host.
pub(crate) fn lists_deadline(announced_bytes: u64) -> Duration {
    Duration::from_secs(60 + 2 * (announced_bytes / (1 << 20)))
}

/// The most bytes the answer to a run of groups of `sizes` may have: its envelope, an
/// answer digest per point sent, and the provider's list at the contract's `max_set`, each
/// list in frames of at least [`MIN_FRAME_RECORDS`] records but its last.
pub(crate) fn answer_bound(sizes: &[u64], limits: &Limits) -> usize {
    let list = |records: u64, record_len: usize| {
        records
            .saturating_mul(record_len as u64)
            .saturating_add((records / MIN_FRAME_RECORDS as u64 + 1) * HEADER_LEN as u64)
    };
    let lists = sizes
        .iter()
        .map(|&s| list(s, DIGEST_LEN))
        .fold(list(limits.max_set as u64, POINT_LEN), u64::saturating_add);
    usize::try_from(lists.saturating_add(MAX_ENVELOPE_BYTES as u64 + 1)).unwrap_or(usize::MAX)
}

/// Why a body's lists could not be received.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReceiveError {
    /// The lists are not what the envelope announced, or not frames.
    #[error("{0}")]
    Frames(#[from] PsiError),
    /// The connection failed mid-body.
    #[error("cannot read the body: {0}")]
    Broken(String),
    /// The lists did not arrive in time.
    #[error("the lists did not arrive within {} s", .0.as_secs())]
    Late(Duration),
    /// The thread working on the records stopped taking them (it refused a list).
    #[error("the records were refused")]
    Stopped,
}

/// The rest of a body after its envelope: the bytes read past it and the stream.
pub(crate) struct Lists<B> {
    splitter: BodySplitter,
    body: B,
}

/// Reads a body's envelope — the bytes before its first LF, at most
/// [`MAX_ENVELOPE_BYTES`] — within [`BODY_TIMEOUT`], keeping the rest for its lists.
///
/// # Errors
/// 413 `payload-too-large` for an envelope over the bound, 400 `malformed` for a body that
/// ends before its LF or breaks, 408 `request-timeout` after the timeout; with the bytes
/// read.
pub(crate) async fn read_envelope<B>(body: B) -> Result<(Bytes, Lists<B>), (Problem, u64)>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut lists = Lists {
        splitter: BodySplitter::new(),
        body,
    };
    let mut read = 0u64;
    let work = async {
        loop {
            match lists.splitter.envelope() {
                Ok(Some(envelope)) => return Ok(Bytes::from(envelope)),
                Ok(None) => {}
                Err(_) => {
                    return Err(Problem::new(
                        ProblemCode::PayloadTooLarge,
                        format!(
                            "the envelope before the first LF exceeds {MAX_ENVELOPE_BYTES} bytes"
                        ),
                    ));
                }
            }
            match next_data(&mut lists.body).await {
                Ok(Some(data)) => {
                    read += data.len() as u64;
                    lists.splitter.push(&data);
                }
                Ok(None) => {
                    return Err(Problem::new(
                        ProblemCode::Malformed,
                        "the body ended before the LF after its envelope",
                    ));
                }
                Err(e) => {
                    return Err(Problem::new(
                        ProblemCode::Malformed,
                        format!("cannot read the body: {e}"),
                    ));
                }
            }
        }
    };
    let outcome = tokio::time::timeout(BODY_TIMEOUT, work).await;
    match outcome {
        Ok(Ok(envelope)) => Ok((envelope, lists)),
        Ok(Err(p)) => Err((p, read)),
        Err(_) => Err((
            Problem::new(
                ProblemCode::RequestTimeout,
                format!(
                    "the envelope did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            ),
            read,
        )),
    }
}

impl<B> Lists<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    /// Receives the lists `receiver` expects, within `deadline`, sending each frame's records
    /// with the place of its list to `records`; then checks that the body ended with the
    /// last list.
    ///
    /// # Errors
    /// [`ReceiveError`].
    pub(crate) async fn receive(
        mut self,
        mut receiver: ListsReceiver,
        records: mpsc::Sender<Records>,
        deadline: Duration,
    ) -> Result<(), ReceiveError> {
        let work = async {
            loop {
                while let Some(mut frame) = self.splitter.next_frame()? {
                    let (place, _) = receiver.read(&frame)?;
                    frame.drain(..HEADER_LEN);
                    records
                        .send((place, frame))
                        .await
                        .map_err(|_| ReceiveError::Stopped)?;
                }
                match next_data(&mut self.body).await {
                    Ok(Some(data)) => self.splitter.push(&data),
                    Ok(None) => break,
                    Err(e) => return Err(ReceiveError::Broken(e)),
                }
            }
            self.splitter.finish()?;
            receiver.finish()?;
            Ok(())
        };
        tokio::time::timeout(deadline, work)
            .await
            .unwrap_or(Err(ReceiveError::Late(deadline)))
    }
}

/// One frame's records, with the place of its list among those received.
pub(crate) type Records = (usize, Vec<u8>);

/// A channel for the records of [`Lists::receive`].
pub(crate) fn channel() -> (mpsc::Sender<Records>, mpsc::Receiver<Records>) {
    mpsc::channel(IN_FLIGHT)
}

/// The next data of `body`, skipping trailers; `None` at its end.
async fn next_data<B>(body: &mut B) -> Result<Option<Bytes>, String>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}
