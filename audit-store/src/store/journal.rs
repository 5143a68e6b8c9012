//! The journal in front of an embedded store's tables, as files: each group commit is one
//! checksummed frame, written into space that was zero-filled and synced ahead of the
//! writer, and made durable by one `fdatasync`. Overwriting a file whose size does not
//! change, that sync writes the frame's pages and no file-system metadata (a file that grows
//! must also commit its new size and extents through the file system's journal). Segments of
//! [`SEGMENT_BYTES`] are named by the first seq they hold. A segment whose frames carry
//! evidence is kept: the tables point into it, and [`read_frame`] reads a frame back by
//! where it was written; it goes with the evidence's retention. The others are deleted once
//! the tables hold all of them.
//!
//! A frame is `SAJ1`, the body's length (u32, little-endian), the first seq of its batch
//! (u64), the body, and the SHA-256 of all before it. Reading stops at the first frame that
//! is not whole: zeros where the writer has not reached, or a frame torn by a crash, which
//! held no answered record.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;

const MAGIC: [u8; 4] = *b"SAJ1";
const HEADER: usize = 4 + 4 + 8;
const TRAILER: usize = 32;
/// A segment is closed when the next frame would take it past this size (a single larger
/// frame gets a segment of its own).
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;
/// Zero-filled per step of the allocator.
const CHUNK: u64 = 1 << 20;
/// How far ahead of the writer the allocator keeps the current segment filled: as far as
/// the segment has been written, between one chunk and 8 MiB, so that a busy log has room
/// for a burst and an idle one (a test's) costs little.
fn ahead(offset: u64) -> u64 {
    offset.clamp(CHUNK, 8 << 20)
}
/// How long an append waits for space before it fails (the disk is full, or very slow).
const SPACE_WAIT: Duration = Duration::from_secs(2);
const SUFFIX: &str = ".seg";
const SPARE: &str = "spare";
const LOCK: &str = "lock";

/// One frame as read back: the first seq of its batch, where it is, and the batch's bytes.
pub(crate) struct Frame {
    pub(crate) first_seq: u64,
    pub(crate) at: FrameAt,
    pub(crate) body: Vec<u8>,
}

/// Where a frame was written: its segment (by the segment's first seq), the offset of its
/// first byte there, and its length, header and checksum included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameAt {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// A segment of the journal, as the writer knows it.
struct Segment {
    first_seq: u64,
    path: PathBuf,
    /// A frame in it carries evidence: it stays after the tables hold it.
    keep: bool,
}

/// A frame that cannot be read back where the tables say it is.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// The segment is not there.
    #[error("journal segment {} is missing", path.display())]
    Missing { path: PathBuf },
    /// Reading it failed.
    #[error("journal segment {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// What is there is not a whole frame: cut short, another frame's bytes, or altered.
    #[error("journal segment {} at offset {offset}: {reason}", path.display())]
    Damaged {
        path: PathBuf,
        offset: u64,
        reason: &'static str,
    },
}

/// The path of the segment whose first seq is `first_seq`.
pub(crate) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}{SUFFIX}"))
}

/// The body of the frame at `offset` of segment `segment` in `dir`, its checksum verified.
pub(crate) fn read_frame(dir: &Path, segment: u64, offset: u64) -> Result<Vec<u8>, FrameError> {
    let path = segment_path(dir, segment);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(FrameError::Missing { path }),
        Err(source) => return Err(FrameError::Io { path, source }),
    };
    let damaged = |reason| FrameError::Damaged {
        path: path.clone(),
        offset,
        reason,
    };
    let mut header = [0u8; HEADER];
    match file.read_exact_at(&mut header, offset) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(damaged("the segment ends before the frame"));
        }
        Err(source) => return Err(FrameError::Io { path, source }),
    }
    if header[..4] != MAGIC {
        return Err(damaged("no frame begins there"));
    }
    let body_len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    // A length the file cannot hold is damage, found before anything is allocated for it.
    let file_len = file
        .metadata()
        .map_err(|source| FrameError::Io {
            path: path.clone(),
            source,
        })?
        .len();
    if offset.saturating_add((HEADER + body_len + TRAILER) as u64) > file_len {
        return Err(damaged(
            "the frame's length runs past the end of the segment",
        ));
    }
    let mut rest = vec![0u8; body_len + TRAILER];
    match file.read_exact_at(&mut rest, offset + HEADER as u64) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(damaged("the segment ends inside the frame"));
        }
        Err(source) => return Err(FrameError::Io { path, source }),
    }
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&header);
    ctx.update(&rest[..body_len]);
    if ctx.finish().as_ref() != &rest[body_len..] {
        return Err(damaged("the frame's checksum fails"));
    }
    rest.truncate(body_len);
    Ok(rest)
}

/// Takes the journal directory `dir` (creating it) for this process: `Some(lock)` while
/// it holds it, `None` if another process does. Waits up to `wait` for the other to let go.
pub(crate) fn lock(dir: &Path, wait: Duration) -> io::Result<Option<File>> {
    std::fs::create_dir_all(dir)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK))?;
    let until = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// The segments in `dir`, by first seq.
fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

/// The frames in `dir`'s segments that may hold seqs at or beyond `held` (the size the
/// tables hold), in order: every frame from the last one that begins at or below `held`.
/// Segments are read frame by frame, so only those frames are kept in memory, never a
/// whole segment; only the segments from the last one that begins at or below `held` are
/// read (those before it hold nothing beyond it, and may be many: they keep evidence).
pub(crate) fn scan(dir: &Path, held: u64) -> io::Result<Vec<Frame>> {
    let mut frames: Vec<Frame> = Vec::new();
    let mut all = segments(dir)?;
    let from = all
        .iter()
        .rposition(|(first, _)| *first <= held)
        .unwrap_or(0);
    for (segment, path) in all.drain(from..) {
        let mut file = io::BufReader::new(File::open(&path)?);
        let len = file.get_ref().metadata()?.len();
        let mut at = 0u64;
        while let Some(mut frame) = next_frame(&mut file, len - at)? {
            let frame_len = (HEADER + frame.body.len() + TRAILER) as u64;
            frame.at = FrameAt {
                segment,
                offset: at,
                len: frame_len,
            };
            at += frame_len;
            if frame.first_seq <= held {
                // Held by the tables, unless it is the last such frame and runs past `held`.
                frames.clear();
            }
            frames.push(frame);
        }
    }
    Ok(frames)
}

/// The next whole frame of a segment with `left` bytes left to read; `None` at zeros, at a
/// frame cut short, or at one whose checksum fails.
fn next_frame(file: &mut impl io::Read, left: u64) -> io::Result<Option<Frame>> {
    let mut header = [0u8; HEADER];
    if left < (HEADER + TRAILER) as u64 || file.read_exact(&mut header).is_err() {
        return Ok(None);
    }
    if header[..4] != MAGIC {
        return Ok(None);
    }
    let body_len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as u64;
    if body_len + (HEADER + TRAILER) as u64 > left {
        return Ok(None);
    }
    let mut rest = vec![0u8; body_len as usize + TRAILER];
    file.read_exact(&mut rest)?;
    let (body, sum) = rest.split_at(body_len as usize);
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&header);
    ctx.update(body);
    if ctx.finish().as_ref() != sum {
        return Ok(None);
    }
    let first_seq = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
    rest.truncate(body_len as usize);
    Ok(Some(Frame {
        first_seq,
        at: FrameAt {
            segment: 0,
            offset: 0,
            len: 0,
        },
        body: rest,
    }))
}

/// The bytes the journal's files take in `dir`.
pub(crate) fn bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Writes `n` zero bytes at `from` and syncs them.
fn zero_fill(file: &File, from: u64, n: u64) -> io::Result<()> {
    let zeros = vec![0u8; 64 << 10];
    let mut at = from;
    while at < from + n {
        let len = (from + n - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..len], at)?;
        at += len as u64;
    }
    file.sync_data()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What the writer and the allocator thread share.
struct Shared {
    alloc: Mutex<Alloc>,
    changed: Condvar,
    /// The segments of this run not yet released, by first seq; the last is being written.
    segments: Mutex<Vec<Segment>>,
    dir: PathBuf,
}

struct Alloc {
    /// The segment being written, and how far it is zero-filled and synced.
    file: Arc<File>,
    allocated: u64,
    /// How far the writer wants it filled.
    wanted: u64,
    /// The next segment, filled ahead, once the writer is past half of this one.
    spare: Option<(File, u64)>,
    want_spare: bool,
    /// The allocator's last failure, until it succeeds again, and how many times it has
    /// tried: a writer that finds space missing fails only on a failure newer than its ask.
    error: Option<String>,
    attempts: u64,
    stop: bool,
}

impl Shared {
    fn alloc(&self) -> MutexGuard<'_, Alloc> {
        self.alloc.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps the current segment filled ahead of the writer, and a spare ready, until stopped.
fn allocate(shared: Arc<Shared>) {
    enum Job {
        Extend(Arc<File>, u64, u64),
        Spare,
    }
    let mut backoff = Duration::from_millis(50);
    loop {
        let job = {
            let mut a = shared.alloc();
            loop {
                if a.stop {
                    return;
                }
                if a.allocated < a.wanted {
                    let n = (a.wanted - a.allocated).div_ceil(CHUNK) * CHUNK;
                    break Job::Extend(a.file.clone(), a.allocated, n);
                }
                if a.want_spare && a.spare.is_none() {
                    break Job::Spare;
                }
                a = shared
                    .changed
                    .wait(a)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let done = match job {
            Job::Extend(file, from, n) => zero_fill(&file, from, n).map(|()| {
                let mut a = shared.alloc();
                if Arc::ptr_eq(&a.file, &file) && a.allocated == from {
                    a.allocated = from + n;
                }
            }),
            Job::Spare => new_spare(&shared.dir).map(|spare| shared.alloc().spare = Some(spare)),
        };
        let mut a = shared.alloc();
        a.attempts += 1;
        match done {
            Ok(()) => {
                a.error = None;
                backoff = Duration::from_millis(50);
            }
            Err(e) => {
                a.error = Some(e.to_string());
                shared.changed.notify_all();
                // Again after the back-off, or at once when a writer asks (it notifies).
                let _ = shared
                    .changed
                    .wait_timeout(a, backoff)
                    .unwrap_or_else(PoisonError::into_inner);
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        }
        shared.changed.notify_all();
    }
}

/// A new spare segment, its first chunk zero-filled and synced.
fn new_spare(dir: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.join(SPARE))?;
    zero_fill(&file, 0, CHUNK)?;
    Ok((file, CHUNK))
}

/// The journal's writer: one per store, in the process holding its lock.
pub(crate) struct Journal {
    shared: Arc<Shared>,
    current: Arc<File>,
    current_path: PathBuf,
    /// The first seq of the segment being written (its name).
    first_seq: u64,
    offset: u64,
    frame: Vec<u8>,
    /// Held while the journal is open: another process finds the directory taken.
    _lock: File,
}

/// Deletes the segments the tables hold entirely and that keep no evidence; shared with the
/// indexer and the evidence's retention.
#[derive(Clone)]
pub(crate) struct Releaser(Arc<Shared>);

impl Releaser {
    fn segments(&self) -> MutexGuard<'_, Vec<Segment>> {
        self.0
            .segments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets go of every segment whose records all have seqs below `held`, deleting those
    /// that keep no evidence. The segment being written stays.
    pub(crate) fn release(&self, held: u64) {
        let mut segments = self.segments();
        while segments.len() > 1 && segments[1].first_seq <= held {
            let segment = segments.remove(0);
            if segment.keep {
                continue;
            }
            if let Err(e) = std::fs::remove_file(&segment.path) {
                tracing::warn!(segment = %segment.path.display(), error = %e, "audit journal segment not deleted");
            }
        }
    }

    /// Of `candidates`, the segments that are closed and whose records all have seqs below
    /// `held`: those whose evidence the retention may delete. A segment of an earlier run
    /// (not in this run's list) is closed and held.
    pub(crate) fn deletable(&self, candidates: &[u64], held: u64) -> Vec<u64> {
        let segments = self.segments();
        candidates
            .iter()
            .copied()
            .filter(|c| match segments.iter().position(|s| s.first_seq == *c) {
                None => segments.first().is_none_or(|s| *c < s.first_seq),
                Some(i) => segments
                    .get(i + 1)
                    .is_some_and(|next| next.first_seq <= held),
            })
            .collect()
    }

    /// Deletes the segments `gone` (whose evidence the retention ended), and syncs the
    /// directory.
    pub(crate) fn delete(&self, gone: &[u64]) -> io::Result<()> {
        self.segments().retain(|s| !gone.contains(&s.first_seq));
        for segment in gone {
            match std::fs::remove_file(segment_path(&self.0.dir, *segment)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        sync_dir(&self.0.dir)
    }
}

impl Journal {
    /// Starts the journal in `dir` (held through `lock`) at `next_seq`: keeps the segments
    /// of `keep` (by first seq, with the end of the last frame the tables point into, beyond
    /// which a segment is cut: zeros filled ahead, or frames without evidence), deletes every
    /// other segment there — the caller has had the tables take all they hold — and begins
    /// a new one, filled ahead.
    pub(crate) fn start(
        dir: &Path,
        lock: File,
        next_seq: u64,
        keep: &HashMap<u64, u64>,
    ) -> io::Result<Journal> {
        for (first_seq, path) in segments(dir)? {
            match keep.get(&first_seq) {
                Some(&end) if first_seq < next_seq => {
                    let file = OpenOptions::new().write(true).open(&path)?;
                    if file.metadata()?.len() > end {
                        file.set_len(end)?;
                        file.sync_all()?;
                    }
                }
                _ => std::fs::remove_file(path)?,
            }
        }
        let (file, allocated) = new_spare(dir)?;
        let path = segment_path(dir, next_seq);
        std::fs::rename(dir.join(SPARE), &path)?;
        sync_dir(dir)?;
        let current = Arc::new(file);
        let current_path = path.clone();
        let shared = Arc::new(Shared {
            alloc: Mutex::new(Alloc {
                file: current.clone(),
                allocated,
                wanted: allocated,
                spare: None,
                want_spare: false,
                error: None,
                attempts: 0,
                stop: false,
            }),
            changed: Condvar::new(),
            segments: Mutex::new(vec![Segment {
                first_seq: next_seq,
                path,
                keep: false,
            }]),
            dir: dir.to_owned(),
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("audit-journal-alloc".into())
            .spawn(move || allocate(thread_shared))?;
        Ok(Journal {
            shared,
            current,
            current_path,
            first_seq: next_seq,
            offset: 0,
            frame: Vec::new(),
            _lock: lock,
        })
    }

    /// The handle that deletes segments once the tables hold them.
    pub(crate) fn releaser(&self) -> Releaser {
        Releaser(self.shared.clone())
    }

    /// Appends the frame of a batch starting at `first_seq` and returns where, once it is on
    /// disk; a frame that carries `evidence` keeps its segment past the tables (until the
    /// retention). On `Err` nothing counts as written: the next frame is written at the same
    /// place.
    pub(crate) fn append(
        &mut self,
        first_seq: u64,
        body: &[u8],
        evidence: bool,
    ) -> io::Result<FrameAt> {
        let body_len = u32::try_from(body.len())
            .map_err(|_| io::Error::other("a group commit of more than 4 GiB"))?;
        self.frame.clear();
        self.frame.extend_from_slice(&MAGIC);
        self.frame.extend_from_slice(&body_len.to_le_bytes());
        self.frame.extend_from_slice(&first_seq.to_le_bytes());
        self.frame.extend_from_slice(body);
        let sum = digest::digest(&digest::SHA256, &self.frame);
        self.frame.extend_from_slice(sum.as_ref());
        let len = self.frame.len() as u64;
        if self.offset > 0 && self.offset + len > SEGMENT_BYTES {
            self.rotate(first_seq)?;
        }
        self.reserve(self.offset + len)?;
        if evidence {
            // Before the frame is written: the indexer, which releases segments, learns of
            // the frame only after this returns.
            let mut segments = self
                .shared
                .segments
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(s) = segments.last_mut() {
                s.keep = true;
            }
        }
        self.current.write_all_at(&self.frame, self.offset)?;
        self.current.sync_data()?;
        let at = FrameAt {
            segment: self.first_seq,
            offset: self.offset,
            len,
        };
        self.offset += len;
        let mut a = self.shared.alloc();
        let ahead = ahead(self.offset);
        a.wanted = a.wanted.max(self.offset + ahead);
        let spare = self.offset > SEGMENT_BYTES / 2;
        // The allocator is woken only when it has work — less than half the space ahead
        // left, or the spare newly wanted — not once per frame.
        if a.allocated < self.offset + ahead / 2 || (spare && !a.want_spare) {
            self.shared.changed.notify_all();
        }
        a.want_spare = spare;
        Ok(at)
    }

    /// The first seq of the segment being written.
    pub(crate) fn segment(&self) -> u64 {
        self.first_seq
    }

    /// Closes the segment being written, if a frame is in it, and continues in a new one
    /// named `first_seq` (the next frame's): the retention may then delete the old one.
    pub(crate) fn close_segment(&mut self, first_seq: u64) -> io::Result<()> {
        if self.offset > 0 {
            self.rotate(first_seq)?;
        }
        Ok(())
    }

    /// Waits until the current segment is filled up to `end`.
    fn reserve(&self, end: u64) -> io::Result<()> {
        let until = Instant::now() + SPACE_WAIT;
        let mut a = self.shared.alloc();
        a.wanted = a.wanted.max(end + ahead(end));
        if a.allocated >= end {
            // The usual case: no wake-up of the allocator (and no task switch to it and
            // back) per frame; `append` wakes it once less than half the space ahead is left.
            return Ok(());
        }
        let asked = a.attempts;
        self.shared.changed.notify_all();
        loop {
            if a.allocated >= end {
                return Ok(());
            }
            if let Some(e) = a.error.as_ref().filter(|_| a.attempts > asked) {
                return Err(io::Error::other(format!(
                    "no journal space allocated ahead: {e}"
                )));
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::other(format!(
                    "no journal space allocated within {} s",
                    SPACE_WAIT.as_secs()
                )));
            }
            a = self
                .shared
                .changed
                .wait_timeout(a, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Whether the segment being written is no longer at its path (deleted, with its
    /// directory or alone, or replaced): frames written into it would be lost at a crash.
    pub(crate) fn gone(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let named = std::fs::metadata(&self.current_path).map(|m| (m.dev(), m.ino()));
        let open = self.current.metadata().map(|m| (m.dev(), m.ino()));
        !matches!((named, open), (Ok(a), Ok(b)) if a == b)
    }

    /// Begins the journal again at `first_seq` after [`Journal::gone`]: the directory made
    /// again if it went, its lock taken again (another process may not take it meanwhile),
    /// and a new segment. The caller has had the tables take every record answered.
    pub(crate) fn begin_again(&mut self, first_seq: u64) -> io::Result<()> {
        let dir = self.shared.dir.clone();
        let lock = lock(&dir, Duration::ZERO)?.ok_or_else(|| {
            io::Error::other(format!("{} is held by another process", dir.display()))
        })?;
        self.shared.alloc().spare = None;
        let _ = std::fs::remove_file(dir.join(SPARE));
        self.rotate(first_seq)?;
        self._lock = lock;
        let mut segments = self
            .shared
            .segments
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        segments.retain(|s| s.first_seq == first_seq);
        Ok(())
    }

    /// Closes the current segment and continues in a new one, named `first_seq`.
    fn rotate(&mut self, first_seq: u64) -> io::Result<()> {
        let dir = &self.shared.dir;
        let ready = self.shared.alloc().spare.take();
        let (file, allocated) = match ready {
            Some(spare) => spare,
            None => new_spare(dir)?,
        };
        let path = segment_path(dir, first_seq);
        std::fs::rename(dir.join(SPARE), &path)?;
        sync_dir(dir)?;
        self.current = Arc::new(file);
        self.current_path = path.clone();
        self.first_seq = first_seq;
        self.offset = 0;
        {
            let mut a = self.shared.alloc();
            a.file = self.current.clone();
            a.allocated = allocated;
            a.wanted = allocated;
            a.want_spare = false;
        }
        self.shared
            .segments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Segment {
                first_seq,
                path,
                keep: false,
            });
        Ok(())
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.shared.alloc().stop = true;
        self.shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    /// The first seqs of the segments in `dir`.
    fn names(dir: &Path) -> Vec<u64> {
        segments(dir).unwrap().into_iter().map(|(s, _)| s).collect()
    }

    #[test]
    fn frames_read_back_in_order_and_a_torn_tail_is_cut_off() {
        let d = dir();
        let j = d.path().join("j");
        let lock = lock(&j, Duration::ZERO).unwrap().unwrap();
        let mut journal = Journal::start(&j, lock, 7, &HashMap::new()).unwrap();
        journal.append(7, b"first", false).unwrap();
        journal.append(9, b"second", false).unwrap();
        let frames = scan(&j, 0).unwrap();
        let got: Vec<_> = frames.iter().map(|f| (f.first_seq, &f.body[..])).collect();
        assert_eq!(got, [(7, &b"first"[..]), (9, &b"second"[..])]);
        // Beyond what the tables hold: from the last frame that begins at or below it.
        let firsts = |held| {
            scan(&j, held)
                .unwrap()
                .iter()
                .map(|f| f.first_seq)
                .collect::<Vec<_>>()
        };
        assert_eq!(firsts(8), [7, 9]);
        assert_eq!(firsts(9), [9]);
        assert_eq!(firsts(100), [9]);
        // A frame torn by a crash (its last byte never written) ends the journal there.
        let seg = j.join(format!("{:020}{SUFFIX}", 7));
        let file = OpenOptions::new().write(true).open(&seg).unwrap();
        let second_end = (2 * (HEADER + TRAILER) + 5 + 6) as u64;
        file.write_all_at(&[0xff], second_end - 1).unwrap();
        assert_eq!(scan(&j, 0).unwrap().len(), 1);
        // Written again after a failure, the next frame takes the torn one's place.
        drop(journal);
        let lock = super::lock(&j, Duration::from_secs(1)).unwrap().unwrap();
        let mut journal = Journal::start(&j, lock, 8, &HashMap::new()).unwrap();
        assert!(
            scan(&j, 0).unwrap().is_empty(),
            "start deletes what the tables hold"
        );
        journal.append(8, b"third", false).unwrap();
        assert_eq!(scan(&j, 0).unwrap()[0].body, b"third");
    }

    #[test]
    fn a_journal_deleted_under_its_writer_is_noticed_and_begun_again() {
        let d = dir();
        let j = d.path().join("j");
        let lock = lock(&j, Duration::ZERO).unwrap().unwrap();
        let mut journal = Journal::start(&j, lock, 0, &HashMap::new()).unwrap();
        journal.append(0, b"first", false).unwrap();
        assert!(!journal.gone());
        std::fs::remove_dir_all(&j).unwrap();
        assert!(journal.gone());
        journal.begin_again(1).unwrap();
        assert!(!journal.gone());
        journal.append(1, b"second", false).unwrap();
        let frames = scan(&j, 0).unwrap();
        assert_eq!((frames.len(), frames[0].first_seq), (1, 1));
        // Its lock is held again.
        assert!(super::lock(&j, Duration::ZERO).unwrap().is_none());
    }

    #[test]
    fn a_second_holder_of_the_directory_is_refused() {
        let d = dir();
        let held = lock(d.path(), Duration::ZERO).unwrap();
        assert!(held.is_some());
        assert!(
            lock(d.path(), Duration::from_millis(100))
                .unwrap()
                .is_none()
        );
        drop(held);
        assert!(lock(d.path(), Duration::ZERO).unwrap().is_some());
    }

    #[test]
    fn segments_roll_over_and_are_released_once_held() {
        let d = dir();
        let lock = lock(d.path(), Duration::ZERO).unwrap().unwrap();
        let mut journal = Journal::start(d.path(), lock, 0, &HashMap::new()).unwrap();
        let body = vec![1u8; (SEGMENT_BYTES / 3) as usize];
        for seq in 0..4 {
            journal.append(seq, &body, false).unwrap();
        }
        assert_eq!(names(d.path()), [0, 2]);
        assert_eq!(scan(d.path(), 0).unwrap().len(), 4);
        journal.releaser().release(1);
        assert_eq!(names(d.path()), [0, 2], "seq 1 is not held yet");
        journal.releaser().release(2);
        assert_eq!(names(d.path()), [2]);
    }

    #[test]
    fn a_segment_with_evidence_is_kept_read_back_by_place_and_cut_to_its_frames() {
        let d = dir();
        let lock = lock(d.path(), Duration::ZERO).unwrap().unwrap();
        let mut journal = Journal::start(d.path(), lock, 0, &HashMap::new()).unwrap();
        let body = vec![1u8; (SEGMENT_BYTES / 3) as usize];
        let first = journal.append(0, b"evidence", true).unwrap();
        assert_eq!((first.segment, first.offset), (0, 0));
        let mut last = first;
        for seq in 1..4 {
            last = journal.append(seq, &body, false).unwrap();
        }
        assert_eq!(last.segment, 3, "a new segment began at seq 3");
        let releaser = journal.releaser();
        releaser.release(4);
        assert_eq!(names(d.path()), [0, 3], "the segment with evidence stays");
        assert_eq!(read_frame(d.path(), 0, first.offset).unwrap(), b"evidence");
        // Not at a frame's start, or past the end: refused, never garbage.
        let e = read_frame(d.path(), 0, 1).unwrap_err();
        assert!(e.to_string().contains("no frame begins there"), "{e}");
        // A byte of the frame altered: its checksum fails.
        let seg = segment_path(d.path(), 0);
        let file = OpenOptions::new().write(true).open(&seg).unwrap();
        file.write_all_at(b"E", (HEADER + 1) as u64).unwrap();
        let e = read_frame(d.path(), 0, 0).unwrap_err();
        assert!(matches!(e, FrameError::Damaged { offset: 0, .. }), "{e}");
        assert!(e.to_string().contains("checksum fails"), "{e}");
        assert!(e.to_string().contains(&seg.display().to_string()), "{e}");
        file.write_all_at(b"v", (HEADER + 1) as u64).unwrap();
        // The retention deletes closed segments only.
        assert_eq!(releaser.deletable(&[0, 3], 4), [0]);
        // Started again, the journal keeps the segment, cut after its frame with evidence.
        drop(journal);
        let lock = super::lock(d.path(), Duration::from_secs(1))
            .unwrap()
            .unwrap();
        let keep = HashMap::from([(0, first.len)]);
        let journal = Journal::start(d.path(), lock, 4, &keep).unwrap();
        assert_eq!(names(d.path()), [0, 4]);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), first.len);
        assert_eq!(read_frame(d.path(), 0, 0).unwrap(), b"evidence");
        journal.releaser().delete(&[0]).unwrap();
        let e = read_frame(d.path(), 0, 0).unwrap_err();
        assert!(matches!(e, FrameError::Missing { .. }), "{e}");
    }
}
