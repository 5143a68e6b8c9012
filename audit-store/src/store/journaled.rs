//! An embedded (SQLite) store with its journal in front: the group-commit writer appends
//! each batch to the journal and answers once its frame is synced; an indexer task then
//! writes the batches into the tables in larger transactions, off the answer's path; every
//! read of the log first waits until the tables hold all that was answered. At open, what
//! the journal holds beyond the tables is written into them before anything else. The
//! segments whose frames carry evidence are kept, the tables pointing into them, until the
//! evidence's retention deletes them ([`Journaled::expire`]).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::{Notify, oneshot, watch};

use super::journal::{self, Journal, Releaser};
use super::{Backend, Batch};
use crate::AuditError;
use audit::merkle::{Frontier, NodeRef, leaf_hash};
use audit::{NewRecord, StoredEvidence};

/// How long the indexer lets batches gather before writing them, unless a reader waits.
const GATHER: Duration = Duration::from_millis(20);
/// Records the indexer writes in one transaction, at most (plus the rest of the group
/// commit that crosses it).
const APPLY_MAX: usize = 500;
/// How long a read waits for the tables to take what was answered.
const SETTLE_WAIT: Duration = Duration::from_secs(5);
/// Records answered but not yet in the tables above which the writer waits for the indexer
/// before it commits more: a writer faster than the indexer is slowed to the indexer's pace
/// (back-pressure) instead of running ahead, so that a read, which waits for the tables to
/// hold everything answered, waits a fraction of [`SETTLE_WAIT`].
pub const KEEP_UP: u64 = 10_000;
/// How long the writer, held back by [`KEEP_UP`], waits for the tables to advance at all
/// before it refuses appends: they cannot be written (a full or locked disk).
const STALL: Duration = Duration::from_secs(5);
/// A hard bound on records answered but not in the tables (never reached while
/// [`KEEP_UP`] holds the writer back): the journal must not grow without bound.
const MAX_BEHIND: u64 = 200_000;

/// Where the journal of `log` in the SQLite store at `db` lives: `<db>.journal/<log>/`, the
/// member id with `:` as `_` (one store file may hold several members' logs).
pub(crate) fn journal_dir(db: &Path, log: &str) -> PathBuf {
    let stem: String = log
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '.' => c,
            _ => '_',
        })
        .collect();
    journals(db).join(stem)
}

fn journals(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_owned();
    name.push(".journal");
    db.with_file_name(name)
}

/// The writer's side: the journal and the tree it has committed.
struct Writer {
    journal: Journal,
    frontier: Frontier,
    body: Vec<u8>,
}

pub(crate) struct Journaled {
    writer: Mutex<Writer>,
    /// Batches answered, not yet in the tables, in seq order.
    pending: Mutex<VecDeque<Arc<Batch>>>,
    /// The tree size answered, and the size the tables hold.
    committed: AtomicU64,
    indexed: watch::Sender<u64>,
    /// Wakes the indexer; `urgent` when a reader waits.
    wake: Arc<Notify>,
    urgent: AtomicBool,
    /// Set when the tables turn out to have been written by someone else.
    broken: OnceLock<String>,
    releaser: Releaser,
    label: String,
}

impl std::fmt::Debug for Journaled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Journaled({}, answered {}, in tables {})",
            self.label,
            self.committed.load(Ordering::Acquire),
            *self.indexed.borrow()
        )
    }
}

impl Journaled {
    /// Writes what the journal in `dir` holds beyond the tables into them, then starts a
    /// new journal there (through `lock`) and the indexer. Refuses a journal whose frames
    /// have gaps or whose records do not hash to the roots their frames state.
    pub(crate) async fn open(
        backend: &Backend<sqlx::Sqlite>,
        dir: &Path,
        lock: std::fs::File,
    ) -> Result<Arc<Journaled>, AuditError> {
        let io = |what: &'static str| {
            let store = backend.label.clone();
            move |e: std::io::Error| AuditError::Journal {
                store: store.clone(),
                reason: format!("{what} {}: {e}", dir.display()),
            }
        };
        let mut frontier = backend.frontier().await?;
        let (scan_dir, held) = (dir.to_owned(), frontier.size());
        let frames = blocking(backend, move || journal::scan(&scan_dir, held))
            .await?
            .map_err(io("reading the journal"))?;
        let mut batches = Vec::new();
        for frame in frames {
            let corrupt = |reason: String| AuditError::Corrupt {
                store: backend.label.clone(),
                seq: Some(frame.first_seq),
                reason: format!("journal {}: {reason}", dir.display()),
            };
            let mut b = Batch::decode(&frame.body).map_err(corrupt)?;
            b.at = Some(frame.at);
            if b.size_before != frame.first_seq {
                return Err(corrupt(format!(
                    "a frame of seq {} holds a group commit from seq {}",
                    frame.first_seq, b.size_before
                )));
            }
            if b.size <= frontier.size() {
                continue;
            }
            if b.size_before != frontier.size() {
                return Err(corrupt(format!(
                    "the tables end at seq {} and the journal's next group commit begins at \
                     seq {}: frames are missing",
                    frontier.size(),
                    b.size_before
                )));
            }
            batches.push(Arc::new(recomputed(b, &mut frontier).map_err(corrupt)?));
        }
        if let Some(last) = batches.last() {
            let held = backend.apply(&batches).await?;
            tracing::info!(store = %backend.label, records = last.size - batches[0].size_before, tree_size = held, "audit records answered before the last stop written from the journal into the tables");
        }
        let size = frontier.size();
        let keep = backend.kept_segments().await?;
        let start_dir = dir.to_owned();
        let (journal, missing) = blocking(backend, move || {
            let missing: Vec<u64> = keep
                .keys()
                .copied()
                .filter(|s| !journal::segment_path(&start_dir, *s).exists())
                .collect();
            Journal::start(&start_dir, lock, size, &keep).map(|j| (j, missing))
        })
        .await?
        .map_err(io("starting the journal in"))?;
        for segment in missing {
            // Its evidence is gone; the records and the tree are not. Each read of that
            // evidence fails, naming the segment.
            tracing::error!(store = %backend.label, segment = %journal::segment_path(dir, segment).display(), "an audit journal segment that keeps evidence is missing: it was deleted outside the gateway");
        }
        let journaled = Arc::new(Journaled {
            releaser: journal.releaser(),
            writer: Mutex::new(Writer {
                journal,
                frontier,
                body: Vec::new(),
            }),
            pending: Mutex::new(VecDeque::new()),
            committed: AtomicU64::new(size),
            indexed: watch::Sender::new(size),
            wake: Arc::new(Notify::new()),
            urgent: AtomicBool::new(false),
            broken: OnceLock::new(),
            label: backend.label.clone(),
        });
        tokio::spawn(index(
            Arc::downgrade(&journaled),
            journaled.wake.clone(),
            backend.clone(),
        ));
        Ok(journaled)
    }

    /// Appends `appends` as one frame and returns their records and the tree after them,
    /// once the frame is on disk. Runs on a blocking thread, and finishes even if the caller
    /// stops waiting, so the tree this writer holds is always the journal's.
    pub(crate) async fn commit(
        self: &Arc<Self>,
        appends: Vec<(NewRecord, Option<StoredEvidence>)>,
        now_ms: i64,
    ) -> Result<(Arc<Batch>, Frontier), AuditError> {
        self.keep_up().await?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.commit_blocking(appends, now_ms))
            .await
            .map_err(|e| AuditError::NotDurable {
                store: self.label.clone(),
                reason: format!("the journal writer stopped: {e}"),
            })?
    }

    /// Waits while the tables are more than [`KEEP_UP`] records behind the journal (the
    /// indexer is hurried meanwhile); fails when they do not advance for [`STALL`]. Nothing
    /// is written before it returns, so a caller that stops waiting loses nothing.
    async fn keep_up(&self) -> Result<(), AuditError> {
        let mut held = self.indexed.subscribe();
        loop {
            let indexed = *held.borrow_and_update();
            let behind = self
                .committed
                .load(Ordering::Acquire)
                .saturating_sub(indexed);
            if behind <= KEEP_UP || self.broken.get().is_some() {
                // A broken store is refused by the commit itself.
                return Ok(());
            }
            self.urgent.store(true, Ordering::Release);
            self.wake.notify_one();
            match tokio::time::timeout(STALL, held.changed()).await {
                Ok(Ok(())) => {}
                // The indexer is gone: the commit says why.
                Ok(Err(_)) => return Ok(()),
                Err(_) => {
                    return Err(AuditError::NotDurable {
                        store: self.label.clone(),
                        reason: format!(
                            "{behind} answered records are not yet in the store's tables, which \
                             have not advanced for {} s (is its disk full or locked?); appends \
                             resume once they do",
                            STALL.as_secs()
                        ),
                    });
                }
            }
        }
    }

    fn commit_blocking(
        &self,
        appends: Vec<(NewRecord, Option<StoredEvidence>)>,
        now_ms: i64,
    ) -> Result<(Arc<Batch>, Frontier), AuditError> {
        if let Some(reason) = self.broken.get() {
            return Err(AuditError::Tampered {
                store: self.label.clone(),
                reason: reason.clone(),
            });
        }
        let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let behind = self.behind();
        if behind > MAX_BEHIND {
            return Err(AuditError::NotDurable {
                store: self.label.clone(),
                reason: format!(
                    "{behind} answered records are not yet in the store's tables (is its disk \
                     full or locked?); appends resume once they are"
                ),
            });
        }
        if w.journal.gone() {
            // Deleted or replaced under the running gateway: what it held must be in the
            // tables before the journal begins again, or a crash now would lose it.
            let behind = self.behind();
            if behind > 0 {
                self.wake.notify_one();
                return Err(AuditError::NotDurable {
                    store: self.label.clone(),
                    reason: format!(
                        "the journal was deleted or replaced while the gateway ran: appends \
                         resume once the tables hold the {behind} records it held"
                    ),
                });
            }
            let size = w.frontier.size();
            w.journal
                .begin_again(size)
                .map_err(|e| AuditError::NotDurable {
                    store: self.label.clone(),
                    reason: format!("the journal was deleted and cannot begin again: {e}"),
                })?;
            tracing::error!(store = %self.label, tree_size = size, "the audit journal was deleted or replaced while the gateway ran: begun again (every record it held is in the tables; the evidence its segments kept is not, and reading it fails, naming the segment)");
        }
        let mut frontier = w.frontier.clone();
        let mut batch = Batch::assign(appends, &mut frontier, now_ms).map_err(|(seq, e)| {
            AuditError::Corrupt {
                store: self.label.clone(),
                seq: Some(seq),
                reason: format!("the record cannot be serialised: {e}"),
            }
        })?;
        let Writer { journal, body, .. } = &mut *w;
        body.clear();
        batch.encode(body)?;
        let at = journal
            .append(batch.size_before, body, !batch.evidence.is_empty())
            .map_err(|e| AuditError::NotDurable {
                store: self.label.clone(),
                reason: format!("journal: {e}"),
            })?;
        batch.at = Some(at);
        w.frontier = frontier.clone();
        let batch = Arc::new(batch);
        self.committed.store(batch.size, Ordering::Release);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(batch.clone());
        self.wake.notify_one();
        Ok((batch, frontier))
    }

    /// Records answered that the tables do not hold yet.
    pub(crate) fn behind(&self) -> u64 {
        self.committed
            .load(Ordering::Acquire)
            .saturating_sub(*self.indexed.borrow())
    }

    /// Waits until the tables hold every record answered so far.
    pub(crate) async fn settle(&self) -> Result<(), AuditError> {
        let target = self.committed.load(Ordering::Acquire);
        let mut held = self.indexed.subscribe();
        if *held.borrow() >= target {
            return Ok(());
        }
        self.urgent.store(true, Ordering::Release);
        self.wake.notify_one();
        let caught_up = tokio::time::timeout(
            SETTLE_WAIT,
            held.wait_for(|s| *s >= target || self.broken.get().is_some()),
        )
        .await;
        if let Some(reason) = self.broken.get() {
            return Err(AuditError::Tampered {
                store: self.label.clone(),
                reason: reason.clone(),
            });
        }
        match caught_up {
            Ok(Ok(_)) => Ok(()),
            _ => Err(AuditError::Journal {
                store: self.label.clone(),
                reason: format!(
                    "the tables hold {} of the {target} records answered after {} s (is the \
                     store's disk full or locked?)",
                    *self.indexed.borrow(),
                    SETTLE_WAIT.as_secs()
                ),
            }),
        }
    }

    /// Deletes the journal segments whose records are all older than `before_ms`, with the
    /// evidence they keep (the records and their tree stay in the tables); returns how many
    /// records' evidence went. The segment being written is closed first if it is one of
    /// them (a log idle since), so that the next frame begins another. Each segment is
    /// marked deleted in the tables before its file goes: a listed segment whose file is
    /// missing was deleted outside the gateway.
    pub(crate) async fn expire(
        self: &Arc<Self>,
        backend: &Backend<sqlx::Sqlite>,
        before_ms: i64,
    ) -> Result<u64, AuditError> {
        let expired = backend.expired_segments(before_ms).await?;
        if expired.is_empty() {
            return Ok(0);
        }
        let candidates: Vec<u64> = expired.iter().map(|(s, _)| *s).collect();
        let me = self.clone();
        let deletable = blocking(backend, move || {
            let mut w = me.writer.lock().unwrap_or_else(PoisonError::into_inner);
            if candidates.contains(&w.journal.segment()) {
                let next = w.frontier.size();
                w.journal.close_segment(next)?;
            }
            drop(w);
            Ok::<_, std::io::Error>(me.releaser.deletable(&candidates, *me.indexed.borrow()))
        })
        .await?
        .map_err(|e| AuditError::Journal {
            store: self.label.clone(),
            reason: format!("closing the segment being written for the retention: {e}"),
        })?;
        if deletable.is_empty() {
            return Ok(0);
        }
        backend
            .mark_segments_deleted(&deletable, crate::now_ms())
            .await?;
        let releaser = self.releaser.clone();
        let gone = deletable.clone();
        blocking(backend, move || releaser.delete(&gone))
            .await?
            .map_err(|e| AuditError::Journal {
                store: self.label.clone(),
                reason: format!("deleting journal segments past the evidence's retention: {e}"),
            })?;
        let evidence = expired
            .iter()
            .filter(|(s, _)| deletable.contains(s))
            .map(|(_, n)| *n)
            .sum();
        tracing::info!(store = %self.label, segments = deletable.len(), evidence, "audit journal segments past the evidence's retention deleted");
        Ok(evidence)
    }

    /// The bytes of the journals of every log in the store at `db`.
    pub(crate) fn bytes(db: &Path) -> u64 {
        let Ok(logs) = std::fs::read_dir(journals(db)) else {
            return 0;
        };
        logs.filter_map(|e| e.ok())
            .map(|e| journal::bytes(&e.path()))
            .sum()
    }
}

/// Runs the file work `f` of opening `backend`'s journal on a blocking thread.
async fn blocking<T: Send + 'static>(
    backend: &Backend<sqlx::Sqlite>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AuditError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AuditError::Journal {
            store: backend.label.clone(),
            reason: format!("the journal's file work stopped: {e}"),
        })
}

/// `b` with its nodes and roots recomputed from its records on `frontier` (advanced): what
/// recovery writes, so that a journal edited while the gateway was down cannot put records
/// and nodes that disagree into the tables.
fn recomputed(mut b: Batch, frontier: &mut Frontier) -> Result<Batch, String> {
    if b.root_before != frontier.root() {
        return Err(format!(
            "its group commit from seq {} extends another tree than the tables'",
            b.size_before
        ));
    }
    let mut nodes = Vec::with_capacity(b.nodes.len());
    for (i, record) in b.records.iter().enumerate() {
        let seq = b.size_before + i as u64;
        if record.seq != seq {
            return Err(format!("seq {seq} holds a record of seq {}", record.seq));
        }
        let leaf = leaf_hash(record).map_err(|e| format!("seq {seq}: {e}"))?;
        frontier.push(leaf, |n: NodeRef, h| nodes.push((n.id(), *h)));
    }
    if frontier.root() != b.root {
        return Err(format!(
            "the records of seqs {}..{} do not hash to the root their frame states",
            b.size_before, b.size
        ));
    }
    b.nodes = nodes;
    Ok(b)
}

/// The nice value of the indexer's SQLite thread (unless the process runs lower still): a
/// low CPU priority. On a core the exchanges keep busy, the tables are written mostly while
/// they wait (for the network, for the journal's sync) rather than in the middle of their
/// work, and in larger transactions; should the indexer fall [`KEEP_UP`] behind, the
/// writer waits for it, and the core is its. Not the lowest (19): on a host whose other
/// work keeps the cores busy, the indexer still gets about a tenth of a core's share.
const INDEXER_NICE: i32 = 10;

/// A connection of its own for the indexer, outside the pool, whose SQLite worker thread
/// runs at [`INDEXER_NICE`]: it is opened from a thread that lowered its own priority, and
/// Linux gives a new thread the priority of the thread that starts it. Where the priority
/// cannot be lowered (not Linux), the connection is opened as it is.
async fn indexer_connection(
    backend: &Backend<sqlx::Sqlite>,
) -> Result<SqliteConnection, AuditError> {
    let options = backend.pool.connect_options();
    let (tx, rx) = oneshot::channel();
    let err = |reason: String| AuditError::Journal {
        store: backend.label.clone(),
        reason,
    };
    std::thread::Builder::new()
        .name("simpul-audit-indexer-open".into())
        .spawn(move || {
            let current = rustix::process::getpriority_process(None).unwrap_or(0);
            if current < INDEXER_NICE
                && let Err(e) = rustix::process::setpriority_process(None, INDEXER_NICE)
            {
                tracing::debug!(error = %e, "the audit indexer's priority is not lowered");
            }
            let opened = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|rt| rt.block_on(options.connect()).map_err(|e| e.to_string()));
            let _ = tx.send(opened);
        })
        .map_err(|e| err(format!("cannot start the indexer's connection: {e}")))?;
    rx.await
        .map_err(|_| err("the indexer's connection was not opened".into()))?
        .map_err(|e| err(format!("cannot open the indexer's connection: {e}")))
}

/// The indexer: writes answered batches into the tables until the store is dropped.
async fn index(weak: Weak<Journaled>, wake: Arc<Notify>, backend: Backend<sqlx::Sqlite>) {
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;
    let mut conn: Option<SqliteConnection> = None;
    loop {
        // Woken by a commit, or every second to see whether the store is gone.
        let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
        let Some(j) = weak.upgrade() else {
            return;
        };
        if !j.urgent.swap(false, Ordering::AcqRel) {
            tokio::time::sleep(GATHER).await;
        }
        // The oldest group commits, up to about APPLY_MAX records: a transaction short
        // enough that a writer waiting for the tables (KEEP_UP) waits for one of them only.
        let (batches, more) = {
            let pending = j.pending.lock().unwrap_or_else(PoisonError::into_inner);
            let mut records = 0;
            let batches: Vec<Arc<Batch>> = pending
                .iter()
                .take_while(|b| {
                    let take = records < APPLY_MAX;
                    records += b.records.len();
                    take
                })
                .cloned()
                .collect();
            let more = pending.len() > batches.len();
            (batches, more)
        };
        if batches.is_empty() {
            continue;
        }
        if more {
            // Straight on with the rest.
            j.urgent.store(true, Ordering::Release);
            wake.notify_one();
        }
        let applied = match conn.as_mut() {
            Some(c) => backend.apply_on(c, &batches).await,
            None => match indexer_connection(&backend).await {
                Ok(c) => backend.apply_on(conn.insert(c), &batches).await,
                Err(e) => Err(e),
            },
        };
        if applied.is_err() {
            // Its transaction may still be counted open: the next pass opens another.
            conn = None;
        }
        match applied {
            Ok(held) => {
                j.pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .retain(|b| b.size > held);
                j.indexed.send_replace(held);
                j.releaser.release(held);
                if failing {
                    tracing::info!(store = %j.label, tree_size = held, "the audit store's tables have caught up with the journal");
                    (failing, backoff) = (false, Duration::from_millis(100));
                }
            }
            Err(AuditError::Tampered { reason, .. }) => {
                tracing::error!(store = %j.label, reason = %reason, "audit store tampered with: its tables were written outside this gateway");
                let _ = j.broken.set(reason);
                j.indexed.send_modify(|_| {});
                return;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(store = %j.label, error = %e, behind = j.behind(), "the audit store's tables cannot take the journal's records: retrying (every answered record is in the journal)");
                }
                failing = true;
                drop(j);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                wake.notify_one();
            }
        }
    }
}
