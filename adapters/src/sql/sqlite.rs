//! A SQLite binding's lookups (`rows = "one"` and `"many"`), run on the thread that answers
//! the exchange rather than handed to a connection thread.
//!
//! sqlx runs every SQLite connection on a thread of its own, so each statement is a hand-off
//! to that thread and back, and re-arming the connection's deadline is one more. A lookup by
//! key in a file the page cache holds takes a few microseconds of SQLite's own work, less
//! than those task switches (docs/BENCHMARKS.md, "A cache miss"). So the statement runs
//! here, through rusqlite, on a connection of the binding's own pool, within a budget: a
//! statement still running after [`INLINE_BUDGET`] is interrupted and run again from the
//! start on a blocking thread, with the answer's whole deadline (the file is opened
//! read-only: a statement has nothing to undo). A file locked by a writer is never waited
//! for here: the attempt gives up at once and the statement waits for the lock on a blocking
//! thread. After either, the binding's next [`HANDED_OFF_AFTER_OVERRUN`] lookups go to a
//! blocking thread directly, so a binding whose statements are slow, or whose file is being
//! written, does not pay for the attempt on every answer.
//!
//! The budget bounds the statement's own work, not a page read from disk: on a register
//! bigger than the host's page cache, a lookup that reads a page from disk holds the
//! answering thread for that read (docs/ADAPTERS.md).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{
    Bind, ColumnType, FileWatch, Verdict, half_the_deadline, list_value, no_such_column,
    sqlite_verdict, unreadable_as,
};
use crate::AdapterError;

/// How long a statement may run on the answering thread before it is moved to a blocking
/// thread: a lookup by key takes a few microseconds; this is a thousand times that.
const INLINE_BUDGET: Duration = Duration::from_millis(1);

/// How many lookups after one that overran [`INLINE_BUDGET`] (or found the file locked) go
/// to a blocking thread directly.
const HANDED_OFF_AFTER_OVERRUN: u32 = 256;

/// SQLite's virtual machine steps between two looks at the clock.
const STEPS_PER_CHECK: i32 = 1_000;

/// One binding's SQLite connections and how its statements run.
pub(super) struct SqliteLookups {
    path: PathBuf,
    timeout_ms: u64,
    idle: Mutex<Vec<Pooled>>,
    /// One permit per connection the binding may hold (`pool_size`).
    permits: Arc<Semaphore>,
    watch: FileWatch,
    /// Lookups left to hand to a blocking thread directly, after one overran the budget.
    hand_off: AtomicU32,
    /// Lookups run on a blocking thread so far (after an overrun, or directly).
    handed_off: AtomicU64,
}

/// A connection and the deadline its progress handler interrupts it at.
struct Pooled {
    conn: Connection,
    opened: Instant,
    /// The deadline, in nanoseconds after `opened`.
    interrupt_at: Arc<AtomicU64>,
    /// How the connection's busy timeout is set now (changed only when a run asks otherwise).
    locks: Locks,
}

/// A connection taken for one lookup, put back (or closed) when dropped, wherever that is.
struct Lease {
    pooled: Option<Pooled>,
    lookups: Arc<SqliteLookups>,
    _permit: OwnedSemaphorePermit,
}

/// How a statement ended, before it is classified.
enum Ended {
    Rows(Result<Vec<Map<String, Value>>, AdapterError>),
    /// Interrupted by the progress handler (the deadline it was given passed).
    Interrupted,
    /// The file is locked by another connection, and this attempt was not to wait for it.
    Locked,
    Sqlite(rusqlite::Error),
}

impl SqliteLookups {
    pub(super) fn new(path: PathBuf, timeout_ms: u64, pool_size: u32) -> Self {
        let permits = usize::try_from(pool_size).unwrap_or(1).max(1);
        SqliteLookups {
            watch: FileWatch::new(path.clone()),
            path,
            timeout_ms,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(permits)),
            hand_off: AtomicU32::new(0),
            handed_off: AtomicU64::new(0),
        }
    }

    /// The rows `sql` returns for `binds` (the first only when `one`), each mapped to the
    /// answer's fields, within the binding's deadline.
    pub(super) async fn fetch(
        self: &Arc<Self>,
        sql: &Arc<str>,
        binds: &[Bind],
        one: bool,
        columns: &BTreeMap<String, ColumnType>,
    ) -> Result<Vec<Map<String, Value>>, AdapterError> {
        let deadline = Instant::now() + Duration::from_millis(self.timeout_ms);
        let mut lease = self.lease(deadline).await?;
        let direct = self
            .hand_off
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if !direct {
            let limit = deadline.min(Instant::now() + INLINE_BUDGET);
            match lease.run(sql, binds, one, columns, limit, Locks::GiveUp) {
                ended @ (Ended::Interrupted | Ended::Locked) if Instant::now() < deadline => {
                    self.hand_off
                        .store(HANDED_OFF_AFTER_OVERRUN, Ordering::Relaxed);
                    let why = match ended {
                        Ended::Locked => "found the file locked",
                        _ => "overran its budget",
                    };
                    tracing::debug!(
                        file = %self.path.display(),
                        "a statement {why} on the answering thread: run again on a blocking thread"
                    );
                }
                ended => return self.classify(ended),
            }
        }
        self.handed_off.fetch_add(1, Ordering::Relaxed);
        let (sql, binds, columns) = (Arc::clone(sql), binds.to_vec(), columns.clone());
        let ended = tokio::task::spawn_blocking(move || {
            lease.run(&sql, &binds, one, &columns, deadline, Locks::Wait)
        })
        .await
        .map_err(|e| AdapterError::Failed(format!("the lookup's thread failed: {e}")))?;
        self.classify(ended)
    }

    /// How many lookups ran on a blocking thread rather than the answering one.
    #[cfg(test)]
    pub(super) fn handed_off(&self) -> u64 {
        self.handed_off.load(Ordering::Relaxed)
    }

    /// A connection for one lookup: an idle one opened after the file last changed, or a
    /// new one. Waiting for a free one takes at most half the deadline (then: unavailable,
    /// as sqlx's pool gives, keeping "timeout" for statements that overrun).
    async fn lease(self: &Arc<Self>, deadline: Instant) -> Result<Lease, AdapterError> {
        let wait = half_the_deadline(self.timeout_ms);
        let permit = tokio::time::timeout(wait, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| {
                AdapterError::Unavailable(format!(
                    "no connection to {} free within {} ms",
                    self.path.display(),
                    wait.as_millis()
                ))
            })?
            .map_err(|_| AdapterError::Unavailable("the connection pool is closed".into()))?;
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let pooled = match idle {
            Some(p) if self.watch.fresh(p.opened.elapsed()) => p,
            _ => self.open(deadline)?,
        };
        Ok(Lease {
            pooled: Some(pooled),
            lookups: Arc::clone(self),
            _permit: permit,
        })
    }

    /// Opens the file read-only, never creating it.
    fn open(&self, deadline: Instant) -> Result<Pooled, AdapterError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let unavailable =
            |e: rusqlite::Error| AdapterError::Unavailable(format!("{}: {e}", self.path.display()));
        let conn = Connection::open_with_flags(&self.path, flags).map_err(unavailable)?;
        // rusqlite arms a busy timeout of 5 s at open: none, as `Locks::GiveUp` asks.
        conn.busy_timeout(Duration::ZERO).map_err(unavailable)?;
        let opened = Instant::now();
        let interrupt_at = Arc::new(AtomicU64::new(nanos_after(opened, deadline)));
        let at = Arc::clone(&interrupt_at);
        conn.progress_handler(
            STEPS_PER_CHECK,
            Some(move || nanos_after(opened, Instant::now()) >= at.load(Ordering::Relaxed)),
        )
        .map_err(unavailable)?;
        Ok(Pooled {
            conn,
            opened,
            interrupt_at,
            locks: Locks::GiveUp,
        })
    }

    /// Connection-level failures are the file being unavailable; an interrupted statement
    /// has overrun the deadline; anything else is an error in what the file holds.
    fn classify(&self, ended: Ended) -> Result<Vec<Map<String, Value>>, AdapterError> {
        match ended {
            Ended::Rows(rows) => rows,
            Ended::Interrupted => Err(AdapterError::Timeout(self.timeout_ms)),
            Ended::Locked => Err(AdapterError::Unavailable(format!(
                "{}: locked by another connection",
                self.path.display()
            ))),
            Ended::Sqlite(e) => {
                // The primary result code, as the sqlx path classifies it.
                let code = e.sqlite_error().map_or(0, |f| f.extended_code & 0xff);
                Err(match sqlite_verdict(code) {
                    Verdict::Unavailable => {
                        AdapterError::Unavailable(format!("{}: {e}", self.path.display()))
                    }
                    Verdict::Timeout => AdapterError::Timeout(self.timeout_ms),
                    Verdict::Failed => AdapterError::Failed(e.to_string()),
                })
            }
        }
    }
}

/// Whether a statement waits for a lock another connection holds on the file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Locks {
    /// Not at all: on the answering thread, which a wait would stall for every exchange.
    GiveUp,
    /// Up to half the deadline, on a blocking thread: a lock held longer is SQLITE_BUSY,
    /// "unavailable", before the deadline would make it a timeout.
    Wait,
}

impl Lease {
    /// Runs the statement on this thread, interrupted at `limit`.
    fn run(
        &mut self,
        sql: &str,
        binds: &[Bind],
        one: bool,
        columns: &BTreeMap<String, ColumnType>,
        limit: Instant,
        locks: Locks,
    ) -> Ended {
        let Some(p) = &mut self.pooled else {
            return Ended::Rows(Err(AdapterError::Failed("no connection".into())));
        };
        p.interrupt_at
            .store(nanos_after(p.opened, limit), Ordering::Relaxed);
        if p.locks != locks {
            let wait = match locks {
                Locks::GiveUp => Duration::ZERO,
                Locks::Wait => half_the_deadline(self.lookups.timeout_ms),
            };
            if let Err(e) = p.conn.busy_timeout(wait) {
                self.pooled = None;
                return Ended::Sqlite(e);
            }
            p.locks = locks;
        }
        match fetch_mapped(&p.conn, sql, binds, one, columns) {
            Ok(rows) => Ended::Rows(rows),
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::OperationInterrupted) => {
                Ended::Interrupted
            }
            Err(e)
                if locks == Locks::GiveUp
                    && matches!(
                        e.sqlite_error_code(),
                        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                    ) =>
            {
                Ended::Locked
            }
            Err(e) => {
                // A connection that met a fault (the file gone, not a database, locked) is
                // closed, not kept: the next lookup opens the file as it is then.
                self.pooled = None;
                Ended::Sqlite(e)
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(p) = self.pooled.take() {
            let mut idle = self.lookups.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.push(p);
        }
    }
}

/// Nanoseconds from `from` to `to` (0 if `to` is earlier), saturating.
fn nanos_after(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.saturating_duration_since(from).as_nanos()).unwrap_or(u64::MAX)
}

/// Prepares (or takes from the connection's cache), binds and steps the statement; the
/// inner result is the rows mapped, or the first column that would not map.
fn fetch_mapped(
    conn: &Connection,
    sql: &str,
    binds: &[Bind],
    one: bool,
    columns: &BTreeMap<String, ColumnType>,
) -> rusqlite::Result<Result<Vec<Map<String, Value>>, AdapterError>> {
    let mut stmt = conn.prepare_cached(sql)?;
    for (i, b) in binds.iter().enumerate() {
        let at = i + 1;
        match b {
            Bind::Null => stmt.raw_bind_parameter(at, rusqlite::types::Null)?,
            Bind::Text(s) => stmt.raw_bind_parameter(at, s.as_str())?,
            Bind::Bool(v) => stmt.raw_bind_parameter(at, *v)?,
            Bind::Int(v) => stmt.raw_bind_parameter(at, *v)?,
            Bind::Real(v) => stmt.raw_bind_parameter(at, *v)?,
        }
    }
    // Each answer field's column, by its exact name (SQLite's own lookup ignores case).
    let mut at = Vec::with_capacity(columns.len());
    for (field, kind) in columns {
        let index = (0..stmt.column_count()).find(|&i| stmt.column_name(i).ok() == Some(field));
        match index {
            Some(i) => at.push((field, *kind, i)),
            None => return Ok(Err(no_such_column(field))),
        }
    }
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut mapped = Map::new();
        for &(field, kind, i) in &at {
            match json_of(row.get_ref(i)?, field, kind) {
                Ok(Some(v)) => {
                    mapped.insert(field.clone(), v);
                }
                Ok(None) => {}
                Err(e) => return Ok(Err(e)),
            }
        }
        out.push(mapped);
        if one {
            break;
        }
    }
    Ok(Ok(out))
}

/// A SQLite value as the answer field of `kind`, `None` for NULL: the rules of the sqlx
/// path's `map_row` for SQLite, whose values carry their own type (INTEGER, REAL, TEXT,
/// BLOB).
fn json_of(
    value: ValueRef<'_>,
    field: &str,
    kind: ColumnType,
) -> Result<Option<Value>, AdapterError> {
    fn text<'a>(bytes: &'a [u8], field: &str) -> Result<&'a str, AdapterError> {
        std::str::from_utf8(bytes)
            .map_err(|e| AdapterError::Failed(format!("column `{field}`: {e}")))
    }
    Ok(Some(match (kind, value) {
        (_, ValueRef::Null) => return Ok(None),
        (ColumnType::Text, ValueRef::Text(t)) => Value::from(text(t, field)?),
        (ColumnType::Integer, ValueRef::Integer(i)) => Value::from(i),
        (ColumnType::Real, ValueRef::Real(r)) => Value::from(r),
        (ColumnType::Bool, ValueRef::Integer(i)) => Value::from(i != 0),
        (ColumnType::List, ValueRef::Text(t)) => list_value(text(t, field)?),
        _ => return Err(unreadable_as(field, kind)),
    }))
}

impl std::fmt::Debug for SqliteLookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLookups")
            .field("path", &self.path)
            .field("timeout_ms", &self.timeout_ms)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Adapter;
    use crate::sql::{SqlAdapter, SqlSpec};

    async fn register(dir: &std::path::Path) {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.join("register.db"))
            .create_if_missing(true);
        let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options)
            .await
            .unwrap();
        for sql in [
            "CREATE TABLE people (nik TEXT PRIMARY KEY, citizenship TEXT NOT NULL)",
            "INSERT INTO people VALUES ('3171011701900001', 'WNI'), ('3171011701900002', 'WNA')",
        ] {
            sqlx::query(sql).execute(&mut db).await.unwrap();
        }
    }

    fn spec(statement: &str) -> SqlSpec {
        serde_json::from_value(json!({
            "database": "register.db",
            "statement": statement,
            "columns": { "citizenship": "text" },
            "not_found": { "registered": false },
            "timeout_ms": 5000,
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_lookup_by_key_runs_on_the_answering_thread() {
        let dir = tempfile::tempdir().unwrap();
        register(dir.path()).await;
        let a = SqlAdapter::new(
            spec("SELECT citizenship FROM people WHERE nik = :nik"),
            dir.path(),
        )
        .unwrap();
        for _ in 0..50 {
            let answer = a.answer(&json!({"nik": "3171011701900002"})).await.unwrap();
            assert_eq!(answer, json!({"citizenship": "WNA"}));
            let answer = a.answer(&json!({"nik": "9"})).await.unwrap();
            assert_eq!(answer, json!({"registered": false}));
        }
        let lookups = a.sqlite.as_ref().unwrap();
        assert_eq!(lookups.handed_off(), 0);
        // The pool's connections were reused, not one opened per lookup.
        let idle = lookups.idle.lock().unwrap().len();
        assert!((1..=4).contains(&idle), "{idle} idle connections");
    }

    /// 'slow' counts to 3,000,000 first (tens of milliseconds, past the budget); any other
    /// NIK counts to 1.
    const SLOW_FOR_SLOW: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
        WHERE x < CASE WHEN :nik = 'slow' THEN 3000000 ELSE 1 END) \
        SELECT CAST(max(x) AS TEXT) AS citizenship FROM c";

    #[tokio::test]
    async fn a_statement_that_overruns_the_budget_is_run_again_on_a_blocking_thread() {
        let dir = tempfile::tempdir().unwrap();
        register(dir.path()).await;
        let a = SqlAdapter::new(spec(SLOW_FOR_SLOW), dir.path()).unwrap();
        let lookups = Arc::clone(a.sqlite.as_ref().unwrap());
        let answer = a.answer(&json!({"nik": "fast"})).await.unwrap();
        assert_eq!(answer, json!({"citizenship": "1"}));
        assert_eq!(lookups.handed_off(), 0);

        // Interrupted after the budget, then answered in full from a blocking thread.
        let answer = a.answer(&json!({"nik": "slow"})).await.unwrap();
        assert_eq!(answer, json!({"citizenship": "3000000"}));
        assert_eq!(lookups.handed_off(), 1);
        // The lookups after it go to a blocking thread directly, for a while.
        let answer = a.answer(&json!({"nik": "fast"})).await.unwrap();
        assert_eq!(answer, json!({"citizenship": "1"}));
        assert_eq!(lookups.handed_off(), 2);
        for _ in 2..=HANDED_OFF_AFTER_OVERRUN {
            a.answer(&json!({"nik": "fast"})).await.unwrap();
        }
        assert_eq!(
            lookups.handed_off(),
            u64::from(HANDED_OFF_AFTER_OVERRUN) + 1
        );
        // Then on the answering thread again.
        a.answer(&json!({"nik": "fast"})).await.unwrap();
        assert_eq!(
            lookups.handed_off(),
            u64::from(HANDED_OFF_AFTER_OVERRUN) + 1
        );
    }

    /// A writer holds the file locked: the lookup waits for the lock on a blocking thread,
    /// and the answering thread (this test's only one) goes on running other tasks meanwhile.
    #[tokio::test(flavor = "current_thread")]
    async fn a_locked_file_is_waited_for_on_a_blocking_thread_not_the_answering_one() {
        let dir = tempfile::tempdir().unwrap();
        register(dir.path()).await;
        let mut s = spec("SELECT citizenship FROM people WHERE nik = :nik");
        // A wait for the lock of up to 5 s, were it made here.
        s.timeout_ms = 10_000;
        let a = Arc::new(SqlAdapter::new(s, dir.path()).unwrap());
        let writer = Connection::open(dir.path().join("register.db")).unwrap();
        writer
            .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;")
            .unwrap();
        let asking = Arc::clone(&a);
        let lookup = tokio::spawn(async move {
            asking
                .answer(&json!({"nik": "3171011701900001"}))
                .await
                .unwrap()
        });
        // Were the lookup waiting for the lock on this thread, the sleep would end only once
        // that wait had (seconds later).
        let slept = Instant::now();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            slept.elapsed() < Duration::from_secs(3),
            "the answering thread was held for {:?}",
            slept.elapsed()
        );
        assert!(!lookup.is_finished(), "the lookup waits for the lock");
        writer.execute_batch("COMMIT;").unwrap();
        drop(writer);
        assert_eq!(lookup.await.unwrap(), json!({"citizenship": "WNI"}));
        assert_eq!(a.sqlite.as_ref().unwrap().handed_off(), 1);
    }

    /// Locked for longer than half the deadline: unavailable (503), as before.
    #[tokio::test]
    async fn a_file_locked_past_half_the_deadline_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        register(dir.path()).await;
        let mut s = spec("SELECT citizenship FROM people WHERE nik = :nik");
        s.timeout_ms = 400;
        let a = SqlAdapter::new(s, dir.path()).unwrap();
        let writer = Connection::open(dir.path().join("register.db")).unwrap();
        writer
            .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;")
            .unwrap();
        let started = Instant::now();
        let err = a
            .answer(&json!({"nik": "3171011701900001"}))
            .await
            .unwrap_err();
        assert!(matches!(err, AdapterError::Unavailable(_)), "{err:?}");
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn a_statement_past_its_deadline_on_the_blocking_thread_is_a_timeout() {
        let dir = tempfile::tempdir().unwrap();
        register(dir.path()).await;
        let mut s = spec(&SLOW_FOR_SLOW.replace("3000000", "1000000000"));
        s.timeout_ms = 50;
        s.pool_size = 1;
        let a = SqlAdapter::new(s, dir.path()).unwrap();
        let err = a.answer(&json!({"nik": "slow"})).await.unwrap_err();
        assert!(matches!(err, AdapterError::Timeout(50)), "{err:?}");
        assert_eq!(a.sqlite.as_ref().unwrap().handed_off(), 1);
    }
}
