//! Where the log lives: an SQLite file (WAL, `synchronous=FULL`) or a PostgreSQL database,
//! behind one code path generic over sqlx's `Database`. Only the table definitions and how
//! a writer takes the log's lock differ per engine ([`Dialect`]).
//!
//! Tables (one set serves any number of logs, told apart by `log`, the member id):
//!
//! | table | holds |
//! | --- | --- |
//! | `simpul_audit_state` | per log: committed tree size and root — the row every writer locks |
//! | `simpul_audit_records` | the records, by `(log, seq)`; never deleted |
//! | `simpul_audit_nodes` | the hash of every complete subtree (leaves included), by in-order node id |
//! | `simpul_audit_tree_heads` | signed tree heads |
//! | `simpul_audit_evidence` | signed envelopes by `(log, seq)`, deleted after the retention: PostgreSQL's, and an SQLite store's from before its journal kept them |
//! | `simpul_audit_segments` | SQLite: the journal segments that keep evidence (a record's row says which, and where its frame is), each with its newest record's time; deleted after the retention |
//! | `simpul_audit_subjects` | every item subject of a batch exchange's record, by `(log, subject, seq)`: what finds a person's records among the batches |
//! | `simpul_audit_keys` | SQLite: the records' exchange ids and subjects, written once per block of [`KEY_BLOCK`] seqs, sorted: what finds an exchange's or a person's records |
//! | `simpul_audit_key_blocks` | SQLite: the blocks whose keys are written |
//!
//! PostgreSQL finds records by exchange id and subject through two indexes of the records
//! table. SQLite does not keep those indexes: their values are random, so each append
//! wrote into a random page of each (most of what the indexer wrote, and read back, per
//! record). It writes the keys of each block of [`KEY_BLOCK`] records once the block is
//! complete, sorted, at the end of `simpul_audit_keys`; a lookup probes each written block
//! by primary key, then scans the records after the last (at most about one block).
//! A proof of any size reads O(log n) rows of `simpul_audit_nodes` by primary key; appending
//! writes the leaf and the (amortised one) interior node it completes.

mod size;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::database::HasStatementCache;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{
    ColumnIndex, Connection, Database, Decode, Encode, Executor, IntoArguments, Pool, QueryBuilder,
    Row, SqlStr, Transaction, Type,
};

use crate::AuditError;
use audit::merkle::{
    Frontier, Hash, NodeRef, consistency_ranges, empty_root, fold_subtrees, range_subtrees,
    verify_consistency,
};
use audit::{
    Aggregate, AuditRecord, NewRecord, OverlapFigures, Role, SignedTreeHead, StoredEvidence,
};

/// Records per block of lookup keys in an SQLite store: the most records a lookup by
/// exchange id or subject scans (besides those the indexer has yet to reach), and the
/// records whose keys are sorted and written at once.
const KEY_BLOCK: u64 = 16_384;
/// Blocks of keys one indexer transaction writes at most: one in the steady state; a store
/// made before the blocks catches up this many at a time, so that its appends never wait
/// for the whole of it.
const KEY_BLOCKS_PER_COMMIT: u64 = 2;
/// The indexes of exchange ids and subjects that SQLite stores made before the key blocks
/// have: kept, and used by the lookups' scans, until every complete block has its keys.
const LEGACY_KEY_INDEXES: [&str; 2] = [
    "simpul_audit_records_exchange",
    "simpul_audit_records_subject",
];

/// Rows per multi-row `INSERT`: well under SQLite's 32,766 and PostgreSQL's 65,535 bound
/// parameters with the records' 24 columns.
const INSERT_CHUNK: usize = 500;

/// Splits `items` into runs of at most `max_rows` whose estimated sizes add up to at most
/// `max_bytes` (a run holds at least one item).
fn runs<T>(
    items: &[T],
    max_rows: usize,
    max_bytes: usize,
    size: impl Fn(&T) -> usize,
) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let n = size(item);
        if i > start && (i - start >= max_rows || bytes + n > max_bytes) {
            out.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += n;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// Where each record of `batches` (in order) has its evidence kept in a journal frame:
/// `Some` for a record with evidence in a batch written to a journal.
fn located_evidence(batches: &[&Batch]) -> Vec<Option<FrameAt>> {
    let mut out = Vec::with_capacity(batches.iter().map(|b| b.records.len()).sum());
    for b in batches {
        // Both in seq order, as `Batch::assign` made them.
        let mut with = b.evidence.iter().map(|(seq, _)| *seq).peekable();
        for r in &b.records {
            while with.next_if(|seq| *seq < r.seq).is_some() {}
            let has = with.next_if_eq(&r.seq).is_some();
            out.push(b.at.filter(|_| has));
        }
    }
    out
}

/// A journal segment that keeps evidence, as one indexer transaction adds to it.
#[derive(Debug, PartialEq)]
struct KeptSegment {
    segment: u64,
    /// The newest of its records' times (Unix ms).
    newest_ts: i64,
    /// How many records' evidence it holds.
    evidence: u64,
    /// The end of its last frame with evidence.
    end: u64,
}

/// The segments the evidence of `batches` is kept in.
fn kept_segments(batches: &[&Batch]) -> Vec<KeptSegment> {
    let mut out: Vec<KeptSegment> = Vec::new();
    for b in batches {
        let Some(at) = b.at.filter(|_| !b.evidence.is_empty()) else {
            continue;
        };
        let n = b.evidence.len() as u64;
        match out.iter_mut().find(|k| k.segment == at.segment) {
            Some(k) => {
                k.newest_ts = k.newest_ts.max(b.ts);
                k.evidence += n;
                k.end = k.end.max(at.offset + at.len);
            }
            None => out.push(KeptSegment {
                segment: at.segment,
                newest_ts: b.ts,
                evidence: n,
                end: at.offset + at.len,
            }),
        }
    }
    out
}

/// How long a connection may be waited for, and SQLite waits on a locked database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The pool of an SQLite file (created if missing): WAL, `synchronous=FULL` so that a
/// transaction is durable once COMMIT returns, the busy timeout, and no connection back into
/// the pool inside a transaction. The audit log's and the event store's.
pub(crate) async fn sqlite_pool(path: &Path) -> Result<Pool<sqlx::Sqlite>, sqlx::Error> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // An append is durable once COMMIT returns: the WAL is synced on commit.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT);
    SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(BUSY_TIMEOUT)
        // No connection goes back into the pool inside a transaction. The ping first runs
        // the ROLLBACK a dropped transaction queued; one that failed (SQLite had rolled back
        // already) leaves sqlx counting a transaction.
        .after_release(|conn, _| {
            Box::pin(async move {
                conn.ping().await?;
                Ok(!conn.is_in_transaction())
            })
        })
        .connect_with(options)
        .await
}

/// The pool of a PostgreSQL database: the acquire timeout, and no connection back into the
/// pool inside a transaction. The audit log's and the event store's.
pub(crate) async fn postgres_pool(
    options: &PgConnectOptions,
) -> Result<Pool<sqlx::Postgres>, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(BUSY_TIMEOUT)
        // No connection goes back into the pool inside a transaction (a dropped one has
        // queued its ROLLBACK and is no longer counted).
        .after_release(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
        .connect_with(options.clone())
        .await
}

/// A pooled connection taken for one write transaction ([`Backend::write_conn`]). It goes
/// back to the pool only through [`WriteConn::committed`], after a COMMIT that succeeded;
/// dropped any other way — a statement, COMMIT or ROLLBACK failed, or the commit's future
/// was dropped at the writer's deadline — it is closed instead. A COMMIT that fails on a
/// full disk lets SQLite roll the transaction back itself; sqlx's own ROLLBACK then fails
/// and sqlx goes on counting a transaction, so every later `BEGIN` on that connection would
/// fail ("attempted to call begin_with at non-zero transaction depth") until the pool
/// retired it, 30 minutes later.
struct WriteConn<'s, DB: Database> {
    conn: PoolConnection<DB>,
    committed: bool,
    /// The store's label, for the log line when it is closed.
    store: &'s str,
}

impl<DB: Database> WriteConn<'_, DB> {
    /// Its transaction committed: the connection may serve again.
    fn committed(mut self) {
        self.committed = true;
    }
}

impl<DB: Database> Drop for WriteConn<'_, DB> {
    fn drop(&mut self) {
        if !self.committed {
            tracing::warn!(store = %self.store, "audit store connection closed, not reused: its write transaction did not end with a COMMIT");
            self.conn.close_on_drop();
        }
    }
}

/// Where the log lives, resolved from `AuditConfig::store`.
#[derive(Clone, Debug)]
pub(crate) enum StoreTarget {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database; `label` is the URL without credentials or parameters.
    Postgres {
        options: Box<PgConnectOptions>,
        label: String,
    },
}

impl StoreTarget {
    /// Resolves `store`: `env:VAR` reads it from the environment; a `postgres://` or
    /// `postgresql://` URL is PostgreSQL; anything else is an SQLite path relative to
    /// `base_dir`.
    pub(crate) fn resolve(store: &str, base_dir: &Path) -> Result<StoreTarget, AuditError> {
        let config = |reason: String| AuditError::Config {
            store: store.to_owned(),
            reason,
        };
        let (text, from_env) = match store.strip_prefix("env:") {
            Some(var) => {
                let var = var.trim();
                let value = std::env::var(var)
                    .map_err(|_| config(format!("environment variable {var} is not set")))?;
                (value, true)
            }
            None => (store.to_owned(), false),
        };
        if text.trim().is_empty() {
            return Err(config(
                "the store is empty: name an SQLite file or a postgres:// URL".into(),
            ));
        }
        let scheme = text.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("postgres" | "postgresql") => {
                // The error never echoes the URL: it may hold a password.
                let options = PgConnectOptions::from_str(&text).map_err(|e| {
                    config(format!(
                        "not a valid PostgreSQL URL{}: {e}",
                        if from_env {
                            " (from the environment)"
                        } else {
                            ""
                        }
                    ))
                })?;
                Ok(StoreTarget::Postgres {
                    options: Box::new(options),
                    label: redact_url(&text),
                })
            }
            Some(other) => Err(config(format!(
                "unknown URL scheme `{other}://` (postgres://, or an SQLite file path)"
            ))),
            None => Ok(StoreTarget::Sqlite(base_dir.join(text))),
        }
    }

    /// How errors name the store: the SQLite path, or the URL without credentials.
    pub(crate) fn label(&self) -> String {
        match self {
            StoreTarget::Sqlite(p) => p.display().to_string(),
            StoreTarget::Postgres { label, .. } => label.clone(),
        }
    }
}

/// `scheme://host:port/db`: the URL without user, password or parameters.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "postgres".into();
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    format!("{scheme}://{rest}")
}

/// What differs between the engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn ddl(self) -> &'static [&'static str] {
        match self {
            Dialect::Sqlite => &[
                "CREATE TABLE IF NOT EXISTS simpul_audit_state (
                    log TEXT PRIMARY KEY,
                    tree_size INTEGER NOT NULL,
                    root_hash BLOB NOT NULL)",
                "CREATE TABLE IF NOT EXISTS simpul_audit_records (
                    log TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL,
                    exchange_id TEXT NOT NULL, role TEXT NOT NULL, consumer TEXT NOT NULL,
                    provider TEXT NOT NULL, contract TEXT NOT NULL, version TEXT NOT NULL,
                    purpose TEXT NOT NULL, request_hash TEXT, response_hash TEXT,
                    outcome TEXT NOT NULL, latency_us INTEGER NOT NULL, subject TEXT,
                    lookup_id TEXT, peer TEXT, subsystem TEXT, end_user TEXT,
                    aggregate_minute INTEGER, aggregate_count INTEGER, aggregate_bytes INTEGER,
                    subjects TEXT, overlap TEXT, evidence_segment INTEGER, evidence_offset INTEGER,
                    PRIMARY KEY (log, seq)) WITHOUT ROWID",
                // A batch record's item subjects, one row each (the record keeps them too,
                // as they were hashed); a store made before it gains it when opened.
                "CREATE TABLE IF NOT EXISTS simpul_audit_subjects (
                    log TEXT NOT NULL, subject TEXT NOT NULL, seq INTEGER NOT NULL,
                    PRIMARY KEY (log, subject, seq)) WITHOUT ROWID",
                // The lookup keys, block by block (`kind` is `exchange` or `subject`): the
                // newest block sorts last, so writing one appends to the table's end.
                "CREATE TABLE IF NOT EXISTS simpul_audit_keys (
                    log TEXT NOT NULL, block INTEGER NOT NULL, kind TEXT NOT NULL,
                    key TEXT NOT NULL, seq INTEGER NOT NULL,
                    PRIMARY KEY (log, block, kind, key, seq)) WITHOUT ROWID",
                "CREATE TABLE IF NOT EXISTS simpul_audit_key_blocks (
                    log TEXT NOT NULL, block INTEGER NOT NULL,
                    PRIMARY KEY (log, block)) WITHOUT ROWID",
                "CREATE TABLE IF NOT EXISTS simpul_audit_nodes (
                    log TEXT NOT NULL, node INTEGER NOT NULL, hash BLOB NOT NULL,
                    PRIMARY KEY (log, node)) WITHOUT ROWID",
                "CREATE TABLE IF NOT EXISTS simpul_audit_tree_heads (
                    log TEXT NOT NULL, tree_size INTEGER NOT NULL, signed_at INTEGER NOT NULL,
                    root_hash TEXT NOT NULL, jws TEXT NOT NULL,
                    PRIMARY KEY (log, tree_size, signed_at))",
                "CREATE TABLE IF NOT EXISTS simpul_audit_evidence (
                    log TEXT NOT NULL, seq INTEGER NOT NULL, exchange_id TEXT NOT NULL,
                    ts INTEGER NOT NULL, request TEXT NOT NULL, response TEXT,
                    PRIMARY KEY (log, seq))",
                // Evidence is found by exchange id through the records' index (their seq
                // is the evidence's): a second index of the same ids cost every append a
                // write into another random B-tree page. Stores made before 2026-12-04 had it.
                "DROP INDEX IF EXISTS simpul_audit_evidence_exchange",
                "CREATE INDEX IF NOT EXISTS simpul_audit_evidence_ts
                    ON simpul_audit_evidence (log, ts)",
                // The journal segments that keep evidence: a record's evidence is read from
                // the frame its row points to (`evidence_segment`, `evidence_offset`). One
                // row per segment (64 MiB of frames): no index per record.
                "CREATE TABLE IF NOT EXISTS simpul_audit_segments (
                    log TEXT NOT NULL, segment INTEGER NOT NULL, newest_ts INTEGER NOT NULL,
                    evidence INTEGER NOT NULL, end_offset INTEGER NOT NULL, deleted_at INTEGER,
                    PRIMARY KEY (log, segment)) WITHOUT ROWID",
            ],
            Dialect::Postgres => &[
                // Replicas starting together would race on CREATE … IF NOT EXISTS (it is
                // not atomic in PostgreSQL): one lock for the whole schema set-up.
                "SELECT pg_advisory_xact_lock(7421946319)",
                "CREATE TABLE IF NOT EXISTS simpul_audit_state (
                    log TEXT PRIMARY KEY,
                    tree_size BIGINT NOT NULL,
                    root_hash BYTEA NOT NULL)",
                "CREATE TABLE IF NOT EXISTS simpul_audit_records (
                    log TEXT NOT NULL, seq BIGINT NOT NULL, ts BIGINT NOT NULL,
                    exchange_id TEXT NOT NULL, role TEXT NOT NULL, consumer TEXT NOT NULL,
                    provider TEXT NOT NULL, contract TEXT NOT NULL, version TEXT NOT NULL,
                    purpose TEXT NOT NULL, request_hash TEXT, response_hash TEXT,
                    outcome TEXT NOT NULL, latency_us BIGINT NOT NULL, subject TEXT,
                    lookup_id TEXT, peer TEXT, subsystem TEXT, end_user TEXT,
                    aggregate_minute BIGINT, aggregate_count BIGINT, aggregate_bytes BIGINT,
                    subjects TEXT, overlap TEXT,
                    PRIMARY KEY (log, seq))",
                // Stores made before records had these columns.
                "ALTER TABLE simpul_audit_records ADD COLUMN IF NOT EXISTS lookup_id TEXT",
                "ALTER TABLE simpul_audit_records ADD COLUMN IF NOT EXISTS peer TEXT",
                "ALTER TABLE simpul_audit_records ADD COLUMN IF NOT EXISTS subsystem TEXT",
                "ALTER TABLE simpul_audit_records ADD COLUMN IF NOT EXISTS end_user TEXT",
                // Stores made before records could be aggregates.
                "ALTER TABLE simpul_audit_records
                    ADD COLUMN IF NOT EXISTS aggregate_minute BIGINT,
                    ADD COLUMN IF NOT EXISTS aggregate_count BIGINT,
                    ADD COLUMN IF NOT EXISTS aggregate_bytes BIGINT",
                // Stores made before batch records.
                "ALTER TABLE simpul_audit_records ADD COLUMN IF NOT EXISTS subjects TEXT",
                // Stores made before overlap runs' figures.
                "ALTER TABLE simpul_audit_records ADD COLUMN IF NOT EXISTS overlap TEXT",
                "CREATE INDEX IF NOT EXISTS simpul_audit_records_exchange
                    ON simpul_audit_records (log, exchange_id)",
                "CREATE INDEX IF NOT EXISTS simpul_audit_records_subject
                    ON simpul_audit_records (log, subject)",
                "CREATE TABLE IF NOT EXISTS simpul_audit_subjects (
                    log TEXT NOT NULL, subject TEXT NOT NULL, seq BIGINT NOT NULL,
                    PRIMARY KEY (log, subject, seq))",
                "CREATE TABLE IF NOT EXISTS simpul_audit_nodes (
                    log TEXT NOT NULL, node BIGINT NOT NULL, hash BYTEA NOT NULL,
                    PRIMARY KEY (log, node))",
                "CREATE TABLE IF NOT EXISTS simpul_audit_tree_heads (
                    log TEXT NOT NULL, tree_size BIGINT NOT NULL, signed_at BIGINT NOT NULL,
                    root_hash TEXT NOT NULL, jws TEXT NOT NULL,
                    PRIMARY KEY (log, tree_size, signed_at))",
                "CREATE TABLE IF NOT EXISTS simpul_audit_evidence (
                    log TEXT NOT NULL, seq BIGINT NOT NULL, exchange_id TEXT NOT NULL,
                    ts BIGINT NOT NULL, request TEXT NOT NULL, response TEXT,
                    PRIMARY KEY (log, seq))",
                // Not used (evidence is found through the records' index), but not dropped
                // here either: DROP INDEX waits for an exclusive lock on a table replicas
                // share while they run. A DBA may drop it.
                "CREATE INDEX IF NOT EXISTS simpul_audit_evidence_exchange
                    ON simpul_audit_evidence (log, exchange_id)",
                "CREATE INDEX IF NOT EXISTS simpul_audit_evidence_ts
                    ON simpul_audit_evidence (log, ts)",
            ],
        }
    }

    /// The most bytes of bound values one statement carries. sqlx 0.9.0 leaves Nagle's
    /// algorithm on for its TCP sockets (sqlx issue #4335), so a message that needs more
    /// than one write waits for a delayed ACK (40 ms); statements of a few KiB each cost a
    /// round trip instead. Unbounded for SQLite, which has no socket.
    fn max_statement_bytes(self) -> usize {
        match self {
            Dialect::Sqlite => usize::MAX,
            Dialect::Postgres => 12 * 1024,
        }
    }

    /// Whether the multi-row inserts are kept prepared. Their text differs per batch size,
    /// but SQLite prepares in-process and re-preparing a statement of hundreds of
    /// parameters for every batch costs a fifth of the writer's time; PostgreSQL gets an
    /// unnamed statement, parsed with its execution in the same round trip.
    fn cache_batch_statements(self) -> bool {
        self == Dialect::Sqlite
    }

    /// Reads the log's state row inside a write transaction, locking out other writers
    /// (other replicas, or another process on the same SQLite file) until COMMIT. SQLite
    /// takes its write lock at `BEGIN IMMEDIATE` already.
    fn lock_state(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SELECT tree_size, root_hash FROM simpul_audit_state WHERE log = $1",
            Dialect::Postgres => {
                "SELECT tree_size, root_hash FROM simpul_audit_state WHERE log = $1 FOR UPDATE"
            }
        }
    }
}

/// A record's columns kept as JSON: its item subjects and its overlap figures.
type JsonColumns = (Option<String>, Option<String>);

const RECORD_COLUMNS: &str = "seq, ts, exchange_id, role, consumer, provider, contract, \
     version, purpose, request_hash, response_hash, outcome, latency_us, subject, lookup_id, \
     peer, subsystem, end_user, aggregate_minute, aggregate_count, aggregate_bytes, subjects, \
     overlap";

/// The outcome of an exchange answered (the gateway's trail records a refusal's problem
/// code instead).
const ANSWERED: &str = "ok";

/// How many records of seq at least `$2` and below `$3` are stamped at or after `$4` and
/// are exchanges answered ([`Answered`]): a range of the primary key read with the filters,
/// which no index of the records serves (appends pay for each index; the upper bound also
/// keeps PostgreSQL's generic plan on the key).
const COUNT_ANSWERED: &str = "SELECT COUNT(*) FROM simpul_audit_records
     WHERE log = $1 AND seq >= $2 AND seq < $3 AND ts >= $4
       AND role = $5 AND outcome = $6 AND lookup_id IS NULL
       AND contract = $7 AND version = $8 AND consumer = $9 AND purpose = $10";

/// Columns of the records table added after its first version, with their SQLite types, in
/// the order they were added: a store made before one of them gains it when opened.
const LATER_RECORD_COLUMNS: [(&str, &str); 11] = [
    ("lookup_id", "TEXT"),
    ("peer", "TEXT"),
    ("subsystem", "TEXT"),
    ("end_user", "TEXT"),
    ("aggregate_minute", "INTEGER"),
    ("aggregate_count", "INTEGER"),
    ("aggregate_bytes", "INTEGER"),
    ("subjects", "TEXT"),
    ("overlap", "TEXT"),
    ("evidence_segment", "INTEGER"),
    ("evidence_offset", "INTEGER"),
];

/// Which indexed column a seq lookup goes by.
#[derive(Clone, Copy)]
pub(crate) enum Lookup {
    Exchange = 0,
    Subject = 1,
}

/// The two queries of a lookup by key of `kind`, the records' `column`.
macro_rules! key_lookups {
    ($kind:literal, $column:literal) => {
        (
            concat!(
                "SELECT k.seq FROM simpul_audit_keys k
                   JOIN simpul_audit_records r ON r.log = k.log AND r.seq = k.seq
                  WHERE k.log = $1
                    AND k.block IN (SELECT block FROM simpul_audit_key_blocks
                                     WHERE log = $1 AND block < $2)
                    AND k.kind = '",
                $kind,
                "' AND k.key = $3 AND r.",
                $column,
                " = $3
                  ORDER BY k.block, k.seq LIMIT $4"
            ),
            concat!(
                "SELECT seq FROM simpul_audit_records
                  WHERE log = $1 AND seq >= $2 AND ",
                $column,
                " = $3 ORDER BY seq LIMIT $4"
            ),
        )
    };
}

/// An SQLite store's lookups, by [`Lookup`]: in the written blocks of keys (`$2`: how many
/// are written), each key checked against its record's row; and in the records after
/// those blocks (`$2`: the first seq after them). `$1` the log, `$3` the value, `$4` the
/// limit. The blocks are probed in order, and a block's matches are in seq order, so the
/// first query stops at its limit without sorting.
const KEY_LOOKUPS: [(&str, &str); 2] = [
    key_lookups!("exchange", "exchange_id"),
    key_lookups!("subject", "subject"),
];

/// The exchanges [`Store::count_answered`] counts: those this gateway answered as provider,
/// with outcome `ok`, of one contract version, for one consumer and purpose, that are not
/// part of another exchange (no `lookup_id`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Answered<'a> {
    pub(crate) contract: &'a str,
    pub(crate) version: &'a str,
    pub(crate) consumer: &'a str,
    pub(crate) purpose: &'a str,
}

/// One engine's pool and the log it holds.
#[derive(Debug)]
pub(crate) struct Backend<DB: Database> {
    pool: Pool<DB>,
    dialect: Dialect,
    log: String,
    label: String,
    /// A SQLite store's file as it was opened: appends stop once the path no longer names it.
    file: Option<Arc<StoreFile>>,
    /// Records per block of lookup keys (SQLite; [`KEY_BLOCK`] but in tests).
    key_block: u64,
}

/// A SQLite store's file, by path and identity (device, inode). A file deleted, or moved
/// away and replaced, while the gateway runs would go on taking appends through the open
/// connections — into an inode nothing names, lost when the process exits — so each commit
/// first checks the path still names the file that was opened, and fails closed if not.
#[derive(Debug)]
pub(crate) struct StoreFile {
    path: PathBuf,
    identity: (u64, u64),
}

impl StoreFile {
    fn identity(path: &Path) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }

    fn opened(path: &Path) -> Option<Self> {
        Self::identity(path).map(|identity| StoreFile {
            path: path.to_owned(),
            identity,
        })
    }

    /// `Ok` while the path names the file that was opened.
    fn unchanged(&self, store: &str) -> Result<(), AuditError> {
        match Self::identity(&self.path) {
            Some(id) if id == self.identity => Ok(()),
            now => Err(AuditError::Config {
                store: store.to_owned(),
                reason: format!(
                    "{} was {} while the gateway ran: appends are refused until the file the \
                     gateway opened is back at that path (moved back), or the gateway is \
                     restarted on a restored copy (which must extend the pinned head)",
                    self.path.display(),
                    if now.is_none() {
                        "deleted or moved away"
                    } else {
                        "replaced"
                    }
                ),
            }),
        }
    }
}

// By hand: the derive would ask `DB: Clone`, which the engine markers are not.
impl<DB: Database> Clone for Backend<DB> {
    fn clone(&self) -> Self {
        Backend {
            pool: self.pool.clone(),
            dialect: self.dialect,
            log: self.log.clone(),
            label: self.label.clone(),
            file: self.file.clone(),
            key_block: self.key_block,
        }
    }
}

/// The store of one log: its engine and, for an SQLite store this process appends to, the
/// journal in front of its tables ([`Journaled`]).
#[derive(Clone, Debug)]
pub(crate) struct Store {
    engine: Engine,
    journal: Option<Arc<Journaled>>,
    /// An SQLite store's journal directory, whose segments keep evidence: read by every
    /// process that reads the store, appended to by the one that holds it.
    journal_dir: Option<PathBuf>,
    /// An SQLite store whose journal another process holds: it may be read, not appended to.
    read_only: bool,
}

#[derive(Clone, Debug)]
enum Engine {
    Sqlite(Backend<sqlx::Sqlite>),
    Postgres(Backend<sqlx::Postgres>),
}

/// Runs the same generic method on whichever engine the store is.
macro_rules! dispatch {
    ($self:expr, $b:ident => $e:expr) => {
        match &$self.engine {
            $crate::store::Engine::Sqlite($b) => $e,
            $crate::store::Engine::Postgres($b) => $e,
        }
    };
}

/// What a process opening a store does with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// A gateway: appends. An SQLite store's journal must be free (another gateway appending
    /// to the same file is refused).
    Append,
    /// An operator's or auditor's command: reads, and appends only if no gateway holds the
    /// journal.
    Read,
}

/// How long a gateway waits for another process (or an earlier instance in this one) to let
/// go of an SQLite store's journal.
const JOURNAL_LOCK_WAIT: Duration = Duration::from_secs(10);
/// How long a reading command waits for it: a gateway that has just stopped lets go at
/// once; one still running holds it, and the command reads the tables as they are.
const JOURNAL_LOCK_WAIT_READ: Duration = Duration::from_secs(2);

mod batch;
mod journal;
mod journaled;
mod manifest;
mod segments;
mod witness;
pub(crate) use batch::Batch;
use journal::FrameAt;
pub use journaled::KEEP_UP as JOURNAL_KEEP_UP;
use journaled::{Journaled, journal_dir};
pub use witness::{Fork, Witnessed};

impl Store {
    /// Connects, creates the tables if missing and the log's state row.
    /// An SQLite store opened by the process that can take its journal (waiting for it a
    /// little, [`Access::Append`] longer) first has the tables take
    /// what the journal holds beyond them.
    pub(crate) async fn open(
        target: &StoreTarget,
        log: &str,
        access: Access,
    ) -> Result<Store, AuditError> {
        Self::open_with_key_block(target, log, access, KEY_BLOCK).await
    }

    /// [`Store::open`] with blocks of `key_block` records' lookup keys: tests reach the
    /// blocks with a handful of records.
    async fn open_with_key_block(
        target: &StoreTarget,
        log: &str,
        access: Access,
        key_block: u64,
    ) -> Result<Store, AuditError> {
        let label = target.label();
        let open_err = |source: sqlx::Error| AuditError::Open {
            store: label.clone(),
            source,
        };
        let store = match target {
            StoreTarget::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| AuditError::Config {
                        store: label.clone(),
                        reason: format!("cannot create {}: {e}", dir.display()),
                    })?;
                }
                let pool = sqlite_pool(path).await.map_err(open_err)?;
                Engine::Sqlite(Backend {
                    pool,
                    dialect: Dialect::Sqlite,
                    log: log.to_owned(),
                    label: label.clone(),
                    file: StoreFile::opened(path).map(Arc::new),
                    key_block,
                })
            }
            StoreTarget::Postgres { options, .. } => {
                let pool = postgres_pool(options).await.map_err(open_err)?;
                Engine::Postgres(Backend {
                    pool,
                    dialect: Dialect::Postgres,
                    log: log.to_owned(),
                    label: label.clone(),
                    file: None,
                    key_block,
                })
            }
        };
        let mut store = Store {
            engine: store,
            journal: None,
            journal_dir: None,
            read_only: false,
        };
        dispatch!(&store, b => b.create().await)?;
        if let (Engine::Sqlite(b), StoreTarget::Sqlite(path)) = (&store.engine, target) {
            let dir = journal_dir(path, log);
            store.journal_dir = Some(dir.clone());
            let wait = match access {
                Access::Append => JOURNAL_LOCK_WAIT,
                Access::Read => JOURNAL_LOCK_WAIT_READ,
            };
            let lock_dir = dir.clone();
            let lock = tokio::task::spawn_blocking(move || journal::lock(&lock_dir, wait))
                .await
                .map_err(|e| AuditError::Journal {
                    store: label.clone(),
                    reason: format!("locking the journal: {e}"),
                })?
                .map_err(|e| AuditError::Journal {
                    store: label.clone(),
                    reason: format!("locking the journal {}: {e}", dir.display()),
                })?;
            match lock {
                Some(lock) => store.journal = Some(Journaled::open(b, &dir, lock).await?),
                None if access == Access::Append => {
                    return Err(AuditError::Config {
                        store: label.clone(),
                        reason: format!(
                            "another process appends to this store (it holds {}): one gateway \
                             per SQLite audit store; replicas share a PostgreSQL store",
                            dir.join("lock").display()
                        ),
                    });
                }
                None => store.read_only = true,
            }
        }
        Ok(store)
    }

    /// Records answered that an SQLite store's tables do not hold yet.
    pub(crate) fn tables_behind(&self) -> u64 {
        self.journal.as_ref().map_or(0, |j| j.behind())
    }

    /// Waits until an SQLite store's tables hold every record answered.
    pub(crate) async fn settle(&self) -> Result<(), AuditError> {
        match &self.journal {
            Some(j) => j.settle().await,
            None => Ok(()),
        }
    }

    /// The store's name for messages.
    pub(crate) fn label(&self) -> &str {
        dispatch!(self, b => &b.label)
    }

    /// The committed tree size and root.
    pub(crate) async fn state(&self) -> Result<(u64, Hash), AuditError> {
        self.settle().await?;
        dispatch!(self, b => b.state().await)
    }

    /// The frontier of the committed tree, checked against the committed root.
    pub(crate) async fn frontier(&self) -> Result<Frontier, AuditError> {
        self.settle().await?;
        dispatch!(self, b => b.frontier().await)
    }

    /// The highest seq in the records table, if any.
    pub(crate) async fn max_seq(&self) -> Result<Option<u64>, AuditError> {
        self.settle().await?;
        dispatch!(self, b => b.max_seq().await)
    }

    /// The Merkle tree hashes of `ranges` and the hashes of the single nodes `extra`, from
    /// one read of the stored nodes (see [`Backend::range_hashes_on`]).
    pub(crate) async fn range_hashes(
        &self,
        ranges: &[(u64, u64)],
        extra: &[NodeRef],
    ) -> Result<(Vec<Hash>, Vec<Hash>), AuditError> {
        self.settle().await?;
        dispatch!(self, b => b.range_hashes_on(&b.pool, ranges, extra).await)
    }

    /// Whether the stored tree of `new` leaves with root `new_root` extends the tree of
    /// `old` leaves with root `old_root` (`what`, named in the answer): `Ok(Err)` says how
    /// it does not (see [`Backend::extends_on`]).
    pub(crate) async fn extends(
        &self,
        old: u64,
        old_root: &Hash,
        new: u64,
        new_root: &Hash,
        what: &str,
    ) -> Result<Result<(), String>, AuditError> {
        self.settle().await?;
        dispatch!(self, b => b.extends_on(&b.pool, old, old_root, new, new_root, what).await)
    }

    /// Appends `batch` in one transaction (see [`Backend::commit`]).
    pub(crate) async fn commit(
        &self,
        batch: Vec<(NewRecord, Option<StoredEvidence>)>,
        frontier: &mut Frontier,
        now_ms: i64,
    ) -> Result<Arc<Batch>, AuditError> {
        if let Some(j) = &self.journal {
            if let Engine::Sqlite(b) = &self.engine
                && let Some(file) = &b.file
            {
                file.unchanged(&b.label)?;
            }
            let (commit, after) = j.commit(batch, now_ms).await?;
            *frontier = after;
            return Ok(commit);
        }
        if self.read_only {
            return Err(AuditError::Config {
                store: self.label().to_owned(),
                reason: "opened to read: a running gateway holds its journal".into(),
            });
        }
        dispatch!(self, b => b.commit(batch, frontier, now_ms).await)
    }

    /// Stores a signed tree head.
    /// Stores a head of the tree of `size`, made by `sign` with a timestamp of at least the
    /// `floor` it is given: the newest timestamp of any stored head. Every writer of the
    /// log (the replicas sharing it) stores heads under the state row's lock, so heads'
    /// timestamps never go back as their trees grow, across replicas too. `None`, and
    /// nothing stored, when a head of a larger tree is stored already: the caller's state is
    /// behind it.
    pub(crate) async fn insert_tree_head(
        &self,
        size: u64,
        sign: impl FnOnce(i64) -> Result<SignedTreeHead, AuditError>,
    ) -> Result<Option<SignedTreeHead>, AuditError> {
        self.settle().await?;
        dispatch!(self, b => b.insert_tree_head(size, sign).await)
    }

    /// The head of the largest tree size (the newest of those).
    pub(crate) async fn latest_tree_head(&self) -> Result<Option<SignedTreeHead>, AuditError> {
        dispatch!(self, b => b.latest_tree_head().await)
    }

    /// Up to `limit` heads of size at most `max_size`, ordered by size then time, after
    /// `after` (a `(tree_size, timestamp)` cursor).
    pub(crate) async fn tree_heads(
        &self,
        after: Option<(u64, i64)>,
        max_size: u64,
        limit: u32,
    ) -> Result<Vec<SignedTreeHead>, AuditError> {
        dispatch!(self, b => b.tree_heads(after, max_size, limit).await)
    }

    /// Records with `from ≤ seq < to`, in order, each with the leaf hash the store holds
    /// for its seq (`None` if it holds none).
    pub(crate) async fn records(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<(AuditRecord, Option<Hash>)>, AuditError> {
        self.settle().await?;
        dispatch!(self, b => b.records(from, to).await)
    }

    /// Seqs of the records of `exchange_id`, at most `limit`.
    pub(crate) async fn seqs_of(
        &self,
        exchange_id: &str,
        limit: u32,
    ) -> Result<Vec<u64>, AuditError> {
        self.settle().await?;
        dispatch!(self, b => b.seqs_where(Lookup::Exchange, exchange_id, limit).await)
    }

    /// Seqs of the records whose `subject` is `subject` or whose item `subjects` hold it,
    /// oldest first, at most `limit`.
    pub(crate) async fn seqs_of_subject(
        &self,
        subject: &str,
        limit: u32,
    ) -> Result<Vec<u64>, AuditError> {
        self.settle().await?;
        dispatch!(self, b => b.seqs_where(Lookup::Subject, subject, limit).await)
    }

    /// How many records stamped at or after `since_ms` are exchanges `answered`, reading
    /// only the records from the first stamped at or after `from_ms` on (see
    /// [`Backend::count_answered`]).
    pub(crate) async fn count_answered(
        &self,
        answered: Answered<'_>,
        from_ms: i64,
        since_ms: i64,
    ) -> Result<u64, AuditError> {
        self.settle().await?;
        dispatch!(self, b => b.count_answered(answered, from_ms, since_ms).await)
    }

    /// The evidence kept for `exchange_id`: an SQLite store's from the journal segments its
    /// records point to (or its evidence table, for records from before), PostgreSQL's
    /// from its table.
    pub(crate) async fn evidence(
        &self,
        exchange_id: &str,
    ) -> Result<Vec<StoredEvidence>, AuditError> {
        self.settle().await?;
        match (&self.engine, &self.journal_dir) {
            (Engine::Sqlite(b), Some(dir)) => b.evidence_kept(exchange_id, dir).await,
            _ => dispatch!(self, b => b.evidence(exchange_id).await),
        }
    }

    /// Deletes evidence appended before `before_ms`: rows of the evidence table in small
    /// transactions, and an SQLite store's journal segments whose records are all older
    /// (only by the process that holds its journal); returns how many records' evidence
    /// went.
    pub(crate) async fn delete_evidence_before(&self, before_ms: i64) -> Result<u64, AuditError> {
        self.settle().await?;
        let rows = dispatch!(self, b => b.delete_evidence_before(before_ms).await)?;
        let in_segments = match (&self.engine, &self.journal) {
            (Engine::Sqlite(b), Some(j)) => j.expire(b, before_ms).await?,
            _ => 0,
        };
        Ok(rows + in_segments)
    }
}

/// The texts of one write's rows that repeat from row to row (member ids, contract, purpose,
/// outcome), each held once and bound by a shared reference.
#[derive(Default)]
struct SharedText(std::collections::HashSet<Arc<str>>);

impl SharedText {
    fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(held) = self.0.get(text) {
            return held.clone();
        }
        let held: Arc<str> = Arc::from(text);
        self.0.insert(held.clone());
        held
    }
}

/// Two lists of seqs in ascending order merged into one, each seq once, the first `limit`.
fn merge_seqs(a: Vec<u64>, b: Vec<u64>, limit: u32) -> Vec<u64> {
    let mut all = a;
    all.extend(b);
    all.sort_unstable();
    all.dedup();
    all.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    all
}

fn to_i64(v: u64) -> i64 {
    // Seqs and node ids stay below 2^63 (MAX_TREE_SIZE is 2^62); latencies are clamped
    // before hashing, so what is stored is what was hashed.
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl<DB> Backend<DB>
where
    DB: Database + HasStatementCache,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB> + Default,
    for<'q> i64: Encode<'q, DB> + Type<DB> + Decode<'q, DB>,
    for<'q> String: Encode<'q, DB> + Type<DB> + Decode<'q, DB>,
    for<'q> Option<String>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Type<DB> + Decode<'q, DB>,
    for<'q> Option<Vec<u8>>: Decode<'q, DB>,
    usize: ColumnIndex<DB::Row>,
{
    fn err(&self, op: &'static str) -> impl Fn(sqlx::Error) -> AuditError + '_ {
        move |source| AuditError::Store {
            store: self.label.clone(),
            op,
            source,
        }
    }

    fn corrupt(&self, seq: Option<u64>, reason: impl Into<String>) -> AuditError {
        AuditError::Corrupt {
            store: self.label.clone(),
            seq,
            reason: reason.into(),
        }
    }

    async fn create(&self) -> Result<(), AuditError> {
        if self.dialect == Dialect::Postgres {
            // With synchronous_commit off, COMMIT returns before the WAL is flushed: an
            // answer could leave before its record is durable.
            let row = sqlx::query::<DB>("SHOW synchronous_commit")
                .fetch_one(&self.pool)
                .await
                .map_err(self.err("reading synchronous_commit"))?;
            let setting: String = row
                .try_get(0)
                .map_err(self.err("reading synchronous_commit"))?;
            if setting == "off" {
                return Err(AuditError::Config {
                    store: self.label.clone(),
                    reason: "synchronous_commit is off for this connection, so audit records \
                             would not be durable when committed: set it to on (or stronger) \
                             for this database or role"
                        .into(),
                });
            }
        }
        // Immediate for SQLite: the set-up reads the records table's columns, then may write.
        let mut conn = self.write_conn().await?;
        let mut tx = self.begin_write(&mut conn.conn).await?;
        for ddl in self
            .dialect
            .ddl()
            .iter()
            .chain(&witness::DDL)
            .chain(&manifest::DDL)
        {
            sqlx::query::<DB>(*ddl)
                .execute(&mut *tx)
                .await
                .map_err(self.err("creating tables"))?;
        }
        if self.dialect == Dialect::Sqlite {
            // Stores made before records had the later columns (SQLite has no ADD COLUMN IF
            // NOT EXISTS).
            for (column, kind) in LATER_RECORD_COLUMNS {
                let row = sqlx::query::<DB>(
                    "SELECT COUNT(*) FROM pragma_table_info('simpul_audit_records') \
                     WHERE name = $1",
                )
                .bind(column.to_owned())
                .fetch_one(&mut *tx)
                .await
                .map_err(self.err("reading the records table"))?;
                let has: i64 = row
                    .try_get(0)
                    .map_err(self.err("reading the records table"))?;
                if has == 0 {
                    sqlx::query::<DB>(sqlx::AssertSqlSafe(format!(
                        "ALTER TABLE simpul_audit_records ADD COLUMN {column} {kind}"
                    )))
                    .execute(&mut *tx)
                    .await
                    .map_err(self.err("adding a column to the records table"))?;
                }
            }
        }
        sqlx::query::<DB>(
            "INSERT INTO simpul_audit_state (log, tree_size, root_hash) VALUES ($1, 0, $2)
             ON CONFLICT (log) DO NOTHING",
        )
        .bind(self.log.clone())
        .bind(empty_root().to_vec())
        .execute(&mut *tx)
        .await
        .map_err(self.err("creating the log's state"))?;
        if self.dialect == Dialect::Sqlite {
            // A store made before the key blocks whose every complete block has its keys
            // (one too small to have any, say) needs its old indexes no more.
            let (size, _) = self.locked_state(&mut tx).await?;
            if self.key_blocks_written(&mut tx).await? >= size / self.key_block {
                self.drop_legacy_key_indexes(&mut tx).await?;
            }
        }
        tx.commit().await.map_err(self.err("creating tables"))?;
        conn.committed();
        Ok(())
    }

    fn hash_of(&self, bytes: Vec<u8>, what: &str) -> Result<Hash, AuditError> {
        Hash::try_from(bytes.as_slice())
            .map_err(|_| self.corrupt(None, format!("{what} is not a 32-byte hash")))
    }

    fn state_of(&self, row: &DB::Row) -> Result<(u64, Hash), AuditError> {
        let size: i64 = row.try_get(0).map_err(self.err("reading the state"))?;
        let root: Vec<u8> = row.try_get(1).map_err(self.err("reading the state"))?;
        let size = u64::try_from(size)
            .map_err(|_| self.corrupt(None, format!("negative tree size {size}")))?;
        Ok((size, self.hash_of(root, "the state's root hash")?))
    }

    async fn state(&self) -> Result<(u64, Hash), AuditError> {
        let row =
            sqlx::query::<DB>("SELECT tree_size, root_hash FROM simpul_audit_state WHERE log = $1")
                .bind(self.log.clone())
                .fetch_optional(&self.pool)
                .await
                .map_err(self.err("reading the state"))?
                .ok_or_else(|| self.corrupt(None, "the log's state row is missing"))?;
        self.state_of(&row)
    }

    async fn max_seq(&self) -> Result<Option<u64>, AuditError> {
        let row = sqlx::query::<DB>("SELECT MAX(seq) FROM simpul_audit_records WHERE log = $1")
            .bind(self.log.clone())
            .fetch_one(&self.pool)
            .await
            .map_err(self.err("reading the last seq"))?;
        let max: Option<i64> = row
            .try_get::<Option<i64>, _>(0)
            .map_err(self.err("reading the last seq"))?;
        Ok(max.and_then(|m| u64::try_from(m).ok()))
    }

    async fn nodes_on<'c, E>(&self, exec: E, ids: &[u64]) -> Result<HashMap<u64, Hash>, AuditError>
    where
        E: Executor<'c, Database = DB>,
    {
        let mut out = HashMap::with_capacity(ids.len());
        if ids.is_empty() {
            return Ok(out);
        }
        let mut q =
            QueryBuilder::<DB>::new("SELECT node, hash FROM simpul_audit_nodes WHERE log = ");
        q.push_bind(self.log.clone()).push(" AND node IN (");
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(to_i64(*id));
        }
        q.push(")");
        let rows = q
            .build()
            .persistent(false)
            .fetch_all(exec)
            .await
            .map_err(self.err("reading tree nodes"))?;
        for row in rows {
            let id: i64 = row.try_get(0).map_err(self.err("reading tree nodes"))?;
            let hash: Vec<u8> = row.try_get(1).map_err(self.err("reading tree nodes"))?;
            let id = u64::try_from(id).map_err(|_| self.corrupt(None, "negative node id"))?;
            out.insert(id, self.hash_of(hash, "a tree node")?);
        }
        Ok(out)
    }

    async fn nodes(&self, ids: &[u64]) -> Result<HashMap<u64, Hash>, AuditError> {
        self.nodes_on(&self.pool, ids).await
    }

    /// The Merkle tree hashes of `ranges` (each `(start, end)` of leaves, folded from the
    /// stored complete subtrees that cover it) and the hashes of the single nodes `extra`,
    /// from one read of the stored nodes. A node that should be stored and is not is
    /// [`AuditError::Corrupt`].
    async fn range_hashes_on<'c, E>(
        &self,
        exec: E,
        ranges: &[(u64, u64)],
        extra: &[NodeRef],
    ) -> Result<(Vec<Hash>, Vec<Hash>), AuditError>
    where
        E: Executor<'c, Database = DB>,
    {
        let mut subtrees = Vec::with_capacity(ranges.len());
        for &(a, b) in ranges {
            subtrees.push(range_subtrees(a, b).ok_or_else(|| {
                AuditError::OutOfRange(format!("leaves {a}..{b} are not a proof range"))
            })?);
        }
        let mut ids: Vec<u64> = subtrees
            .iter()
            .flatten()
            .chain(extra.iter())
            .map(|n| n.id())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let found = self.nodes_on(exec, &ids).await?;
        let get = |n: &NodeRef| {
            found.get(&n.id()).copied().ok_or_else(|| {
                self.corrupt(
                    Some(n.first_leaf()),
                    format!(
                        "the tree node over leaves {}..{} is missing",
                        n.first_leaf(),
                        n.first_leaf() + n.width()
                    ),
                )
            })
        };
        let mut hashes = Vec::with_capacity(ranges.len());
        for parts in &subtrees {
            let part_hashes = parts.iter().map(get).collect::<Result<Vec<_>, _>>()?;
            hashes.push(fold_subtrees(&part_hashes).unwrap_or_else(empty_root));
        }
        let extra = extra.iter().map(get).collect::<Result<Vec<_>, _>>()?;
        Ok((hashes, extra))
    }

    /// Whether the stored tree of `new` leaves with root `new_root` is a consistent
    /// extension of the tree of `old` leaves with root `old_root` (`what`: a head this
    /// gateway signed, or the tree it last committed): a consistency proof is recomputed
    /// from the stored nodes and checked against both roots (RFC 9162 §2.1.4.2), so a tree
    /// cut back, or rewritten and rehashed, is caught however its nodes were recomputed.
    /// `Ok(Err)` names both sizes and what disagrees; `Err` is a failure to read.
    async fn extends_on<'c, E>(
        &self,
        exec: E,
        old: u64,
        old_root: &Hash,
        new: u64,
        new_root: &Hash,
        what: &str,
    ) -> Result<Result<(), String>, AuditError>
    where
        E: Executor<'c, Database = DB>,
    {
        if old > new {
            return Ok(Err(format!(
                "the store holds a tree of size {new}, smaller than {what} of size {old}: \
                 the log was cut back"
            )));
        }
        let ranges = consistency_ranges(old, new)?;
        let path = match self.range_hashes_on(exec, &ranges, &[]).await {
            Ok((path, _)) => path,
            Err(AuditError::Corrupt { reason, .. }) => {
                return Ok(Err(format!(
                    "the stored tree of size {new} cannot prove it extends {what} of size \
                     {old}: {reason}"
                )));
            }
            Err(e) => return Err(e),
        };
        Ok(
            verify_consistency(old, new, old_root, new_root, &path).map_err(|_| {
                format!(
                    "the stored tree of size {new} is not an extension of {what} of size \
                     {old}: the log was rewritten"
                )
            }),
        )
    }

    /// The frontier of a tree of `size` from its stored subtrees, checked against `root`.
    fn frontier_from(
        &self,
        size: u64,
        root: &Hash,
        found: &HashMap<u64, Hash>,
    ) -> Result<Frontier, AuditError> {
        let mut hashes = Vec::new();
        for n in Frontier::subtrees(size) {
            let h = found.get(&n.id()).ok_or_else(|| {
                self.corrupt(
                    Some(n.first_leaf()),
                    format!(
                        "the tree node over leaves {}..{} is missing",
                        n.first_leaf(),
                        n.first_leaf() + n.width()
                    ),
                )
            })?;
            hashes.push(*h);
        }
        let frontier = Frontier::from_parts(size, hashes)
            .ok_or_else(|| self.corrupt(None, "the tree's right edge does not fit its size"))?;
        if &frontier.root() != root {
            return Err(self.corrupt(
                None,
                format!(
                    "the stored tree nodes do not hash to the committed root of size {size}: \
                     the nodes table was altered; new appends would break every proof"
                ),
            ));
        }
        Ok(frontier)
    }

    async fn frontier(&self) -> Result<Frontier, AuditError> {
        let (size, root) = self.state().await?;
        let ids: Vec<u64> = Frontier::subtrees(size).iter().map(|n| n.id()).collect();
        let found = self.nodes(&ids).await?;
        self.frontier_from(size, &root, &found)
    }

    /// A connection of its own for a write transaction, closed rather than reused unless
    /// its transaction committed ([`WriteConn`]).
    async fn write_conn(&self) -> Result<WriteConn<'_, DB>, AuditError> {
        let conn = self
            .pool
            .acquire()
            .await
            .map_err(self.err("beginning the append transaction"))?;
        Ok(WriteConn {
            conn,
            committed: false,
            store: &self.label,
        })
    }

    /// Begins a write transaction on `conn`.
    async fn begin_write<'c>(
        &self,
        conn: &'c mut DB::Connection,
    ) -> Result<Transaction<'c, DB>, AuditError> {
        match self.dialect {
            // Take the write lock now: a deferred transaction that reads first could fail to
            // upgrade when another connection wrote in between. A `SqlStr`, not the literal:
            // sqlx's `SqlSafeStr` is for `&'static str` only, and rustc, which erases the
            // literal's lifetime when it checks the writer's future, then finds it not `Send`.
            Dialect::Sqlite => {
                conn.begin_with(SqlStr::from_static("BEGIN IMMEDIATE"))
                    .await
            }
            Dialect::Postgres => conn.begin().await,
        }
        .map_err(self.err("beginning the append transaction"))
    }

    /// Appends `batch` in one transaction: locks the state row, reloads the frontier if
    /// another writer (a replica) appended meanwhile, assigns the next seqs in order,
    /// writes the records, their tree nodes, their evidence and the new state, and commits.
    /// `frontier` is replaced only once COMMIT has succeeded. On any error, or if this future
    /// is dropped, the transaction's connection is closed, not reused ([`WriteConn`]).
    async fn commit(
        &self,
        batch: Vec<(NewRecord, Option<StoredEvidence>)>,
        frontier: &mut Frontier,
        now_ms: i64,
    ) -> Result<Arc<Batch>, AuditError>
    where
        for<'q> Arc<str>: Encode<'q, DB> + Type<DB>,
        for<'q> Option<Arc<str>>: Encode<'q, DB>,
        for<'q> Arc<[u8]>: Encode<'q, DB> + Type<DB>,
    {
        if let Some(file) = &self.file {
            file.unchanged(&self.label)?;
        }
        let mut conn = self.write_conn().await?;
        let mut tx = self.begin_write(&mut conn.conn).await?;
        let (size, root) = self.locked_state(&mut tx).await?;
        let mut f = if frontier.size() == size && frontier.root() == root {
            frontier.clone()
        } else {
            // Another writer (a replica) committed meanwhile, or someone rewrote the store:
            // adopt the stored state only if it extends the tree this writer last committed.
            let what = "the tree this gateway last committed";
            if let Err(reason) = self
                .extends_on(
                    &mut *tx,
                    frontier.size(),
                    &frontier.root(),
                    size,
                    &root,
                    what,
                )
                .await?
            {
                return Err(AuditError::Tampered {
                    store: self.label.clone(),
                    reason,
                });
            }
            let ids: Vec<u64> = Frontier::subtrees(size).iter().map(|n| n.id()).collect();
            let found = self.nodes_on(&mut *tx, &ids).await?;
            self.frontier_from(size, &root, &found)?
        };

        let batch = Batch::assign(batch, &mut f, now_ms).map_err(|(seq, e)| {
            self.corrupt(Some(seq), format!("the record cannot be serialised: {e}"))
        })?;
        self.write_rows(&mut tx, &[&batch]).await?;
        tx.commit().await.map_err(self.err("committing"))?;
        conn.committed();
        *frontier = f;
        Ok(Arc::new(batch))
    }

    /// Locks the log's state row inside `tx` (other writers wait until it ends) and reads
    /// the committed tree size and root.
    async fn locked_state(&self, tx: &mut Transaction<'_, DB>) -> Result<(u64, Hash), AuditError> {
        let row = sqlx::query::<DB>(self.dialect.lock_state())
            .bind(self.log.clone())
            .fetch_optional(&mut **tx)
            .await
            .map_err(self.err("locking the log"))?
            .ok_or_else(|| self.corrupt(None, "the log's state row is missing"))?;
        self.state_of(&row)
    }

    /// [`Backend::apply_on`] a connection of the pool.
    async fn apply(&self, batches: &[Arc<Batch>]) -> Result<u64, AuditError>
    where
        for<'q> Arc<str>: Encode<'q, DB> + Type<DB>,
        for<'q> Option<Arc<str>>: Encode<'q, DB>,
        for<'q> Arc<[u8]>: Encode<'q, DB> + Type<DB>,
    {
        let mut conn = self.write_conn().await?;
        let held = self.apply_on(&mut conn.conn, batches).await?;
        conn.committed();
        Ok(held)
    }

    /// Writes on `conn`, in one transaction, those of the journal's `batches` (in seq
    /// order) that the tables do not hold yet; returns the size the tables hold after it.
    /// The first batch not held must extend exactly the stored tree: anything else means
    /// someone else wrote the tables ([`AuditError::Tampered`]). After an error `conn` may
    /// still count a transaction: the caller closes it.
    async fn apply_on(
        &self,
        conn: &mut DB::Connection,
        batches: &[Arc<Batch>],
    ) -> Result<u64, AuditError>
    where
        for<'q> Arc<str>: Encode<'q, DB> + Type<DB>,
        for<'q> Option<Arc<str>>: Encode<'q, DB>,
        for<'q> Arc<[u8]>: Encode<'q, DB> + Type<DB>,
    {
        if let Some(file) = &self.file {
            file.unchanged(&self.label)?;
        }
        let mut tx = self.begin_write(conn).await?;
        let (mut size, mut root) = self.locked_state(&mut tx).await?;
        let mut fresh = Vec::with_capacity(batches.len());
        for b in batches {
            if b.size < size || (b.size == size && b.root == root) {
                continue;
            }
            if b.size_before != size || b.root_before != root {
                return Err(AuditError::Tampered {
                    store: self.label.clone(),
                    reason: format!(
                        "the tables' tree of size {size} is not an extension of the tree this \
                         gateway committed (the journal's group commit of seqs {}..{} follows \
                         another): the tables were written outside this gateway",
                        b.size_before, b.size
                    ),
                });
            }
            fresh.push(&**b);
            (size, root) = (b.size, b.root);
        }
        self.write_rows(&mut tx, &fresh).await?;
        tx.commit().await.map_err(self.err("committing"))?;
        Ok(size)
    }

    /// Writes the records, tree nodes and evidence of `batches` (consecutive, in seq order;
    /// none: nothing) with as few multi-row statements as the bounds allow, and sets the
    /// state to the tree after the last, inside `tx`. The evidence of a batch whose journal
    /// frame is kept ([`Batch::at`]) stays in the frame: its records' rows say where, and
    /// the segment is listed in `simpul_audit_segments`; any other batch's goes into
    /// `simpul_audit_evidence`.
    async fn write_rows(
        &self,
        tx: &mut Transaction<'_, DB>,
        batches: &[&Batch],
    ) -> Result<(), AuditError>
    where
        for<'q> Arc<str>: Encode<'q, DB> + Type<DB>,
        for<'q> Option<Arc<str>>: Encode<'q, DB>,
        for<'q> Arc<[u8]>: Encode<'q, DB> + Type<DB>,
    {
        let Some(last) = batches.last() else {
            return Ok(());
        };
        let records: Vec<&AuditRecord> = batches.iter().flat_map(|b| &b.records).collect();
        let nodes: Vec<&(u64, Hash)> = batches.iter().flat_map(|b| &b.nodes).collect();
        let evidence: Vec<(i64, &(u64, StoredEvidence))> = batches
            .iter()
            .filter(|b| b.at.is_none())
            .flat_map(|b| b.evidence.iter().map(|e| (b.ts, e)))
            .collect();
        let located = located_evidence(batches);
        // The drivers keep each bound text in an `Arc` of its own (SQLite's copies a bound
        // `String` into a new one): what repeats from row to row is bound shared.
        let log: Arc<str> = Arc::from(self.log.as_str());
        let mut text = SharedText::default();
        // Only an SQLite store's records have the columns (PostgreSQL keeps its evidence in
        // the table).
        let locate = self.dialect == Dialect::Sqlite;
        let max_bytes = self.dialect.max_statement_bytes();
        // A batch record's item subjects are kept with it as the JSON array it was hashed
        // with, and one row each in `simpul_audit_subjects`, which finds it by any of them;
        // an overlap run's figures as their JSON object.
        let json_of = |r: &&AuditRecord| -> Result<JsonColumns, serde_json::Error> {
            Ok((
                r.subjects.as_ref().map(serde_json::to_string).transpose()?,
                r.overlap.as_ref().map(serde_json::to_string).transpose()?,
            ))
        };
        let json = records
            .iter()
            .map(json_of)
            .collect::<Result<Vec<JsonColumns>, _>>()?;
        let rows: Vec<(&AuditRecord, JsonColumns, Option<FrameAt>)> = records
            .iter()
            .copied()
            .zip(json)
            .zip(located)
            .map(|((r, j), at)| (r, j, at))
            .collect();
        let record_size = |(r, (subjects, overlap), _): &(&AuditRecord, JsonColumns, _)| {
            96 + r.exchange_id.len()
                + r.consumer.len()
                + r.provider.len()
                + r.contract.len()
                + r.version.len()
                + r.purpose.len()
                + r.outcome.len()
                + 3 * 44
                + subjects.as_ref().map_or(0, String::len)
                + overlap.as_ref().map_or(0, String::len)
        };
        for chunk in runs(&rows, INSERT_CHUNK, max_bytes, record_size) {
            let mut q = QueryBuilder::<DB>::new(format!(
                "INSERT INTO simpul_audit_records (log, {RECORD_COLUMNS}{}) ",
                if locate {
                    ", evidence_segment, evidence_offset"
                } else {
                    ""
                }
            ));
            q.push_values(chunk, |mut row, (r, (subjects, overlap), at)| {
                row.push_bind(log.clone())
                    .push_bind(to_i64(r.seq))
                    .push_bind(r.ts)
                    .push_bind(Arc::<str>::from(r.exchange_id.as_str()))
                    .push_bind(text.get(r.role.as_str()))
                    .push_bind(text.get(&r.consumer))
                    .push_bind(text.get(&r.provider))
                    .push_bind(text.get(&r.contract))
                    .push_bind(text.get(&r.version))
                    .push_bind(text.get(&r.purpose))
                    .push_bind(r.request_hash.as_deref().map(Arc::<str>::from))
                    .push_bind(r.response_hash.as_deref().map(Arc::<str>::from))
                    .push_bind(text.get(&r.outcome))
                    .push_bind(to_i64(r.latency_us))
                    .push_bind(r.subject.as_deref().map(Arc::<str>::from))
                    .push_bind(r.lookup_id.as_deref().map(Arc::<str>::from))
                    .push_bind(r.peer.as_deref().map(|p| text.get(p)))
                    .push_bind(r.subsystem.as_deref().map(|s| text.get(s)))
                    .push_bind(r.user.as_deref().map(|u| text.get(u)))
                    .push_bind(r.aggregate.map(|a| a.minute))
                    .push_bind(r.aggregate.map(|a| to_i64(a.count)))
                    .push_bind(r.aggregate.map(|a| to_i64(a.body_bytes)))
                    .push_bind(subjects.as_deref().map(Arc::<str>::from))
                    .push_bind(overlap.as_deref().map(Arc::<str>::from));
                if locate {
                    row.push_bind(at.map(|at| to_i64(at.segment)))
                        .push_bind(at.map(|at| to_i64(at.offset)));
                }
            });
            q.build()
                .persistent(self.dialect.cache_batch_statements())
                .execute(&mut **tx)
                .await
                .map_err(self.err("inserting records"))?;
        }
        let subjects: Vec<(u64, &str)> = records
            .iter()
            .flat_map(|r| {
                r.subjects
                    .iter()
                    .flatten()
                    .map(move |s| (r.seq, s.as_str()))
            })
            .collect();
        let subject_size = |(_, s): &(u64, &str)| 24 + self.log.len() + s.len();
        for chunk in runs(&subjects, INSERT_CHUNK, max_bytes, subject_size) {
            let mut q =
                QueryBuilder::<DB>::new("INSERT INTO simpul_audit_subjects (log, subject, seq) ");
            q.push_values(chunk, |mut row, (seq, subject)| {
                row.push_bind(log.clone())
                    .push_bind(Arc::<str>::from(*subject))
                    .push_bind(to_i64(*seq));
            });
            // A record's subjects are distinct (`NewRecord::into_record`); a frame edited to
            // repeat one still indexes its record once.
            q.push(" ON CONFLICT DO NOTHING");
            q.build()
                .persistent(self.dialect.cache_batch_statements())
                .execute(&mut **tx)
                .await
                .map_err(self.err("inserting item subjects"))?;
        }
        for chunk in runs(&nodes, INSERT_CHUNK, max_bytes, |_| 64 + self.log.len()) {
            let mut q =
                QueryBuilder::<DB>::new("INSERT INTO simpul_audit_nodes (log, node, hash) ");
            q.push_values(chunk, |mut row, (id, hash)| {
                row.push_bind(log.clone())
                    .push_bind(to_i64(*id))
                    .push_bind(Arc::<[u8]>::from(&hash[..]));
            });
            q.build()
                .persistent(self.dialect.cache_batch_statements())
                .execute(&mut **tx)
                .await
                .map_err(self.err("inserting tree nodes"))?;
        }
        let evidence_size = |(_, (_, e)): &(i64, &(u64, StoredEvidence))| {
            64 + e.exchange_id.len() + e.request.len() + e.response.as_ref().map_or(0, String::len)
        };
        for chunk in runs(&evidence, 32, max_bytes, evidence_size) {
            let mut q = QueryBuilder::<DB>::new(
                "INSERT INTO simpul_audit_evidence (log, seq, exchange_id, ts, request, response) ",
            );
            q.push_values(chunk, |mut row, (ts, (seq, ev))| {
                row.push_bind(log.clone())
                    .push_bind(to_i64(*seq))
                    .push_bind(ev.exchange_id.clone())
                    .push_bind(*ts)
                    .push_bind(ev.request.clone())
                    .push_bind(ev.response.clone());
            });
            q.build()
                .persistent(self.dialect.cache_batch_statements())
                .execute(&mut **tx)
                .await
                .map_err(self.err("inserting evidence"))?;
        }
        for kept in kept_segments(batches) {
            // SQLite's: only an SQLite store's batches are written to a journal.
            sqlx::query::<DB>(
                "INSERT INTO simpul_audit_segments (log, segment, newest_ts, evidence, end_offset)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (log, segment) DO UPDATE SET
                    newest_ts = MAX(newest_ts, excluded.newest_ts),
                    evidence = evidence + excluded.evidence,
                    end_offset = MAX(end_offset, excluded.end_offset)",
            )
            .bind(self.log.clone())
            .bind(to_i64(kept.segment))
            .bind(kept.newest_ts)
            .bind(to_i64(kept.evidence))
            .bind(to_i64(kept.end))
            .execute(&mut **tx)
            .await
            .map_err(self.err("listing a journal segment that keeps evidence"))?;
        }
        if self.dialect == Dialect::Sqlite {
            self.write_key_blocks(tx, last.size).await?;
        }
        sqlx::query::<DB>(
            "UPDATE simpul_audit_state SET tree_size = $1, root_hash = $2 WHERE log = $3",
        )
        .bind(to_i64(last.size))
        .bind(last.root.to_vec())
        .bind(self.log.clone())
        .execute(&mut **tx)
        .await
        .map_err(self.err("updating the state"))?;
        Ok(())
    }

    async fn insert_tree_head(
        &self,
        size: u64,
        sign: impl FnOnce(i64) -> Result<SignedTreeHead, AuditError>,
    ) -> Result<Option<SignedTreeHead>, AuditError> {
        let e = self.err("storing a tree head");
        let mut conn = self.write_conn().await?;
        let mut tx = self.begin_write(&mut conn.conn).await?;
        sqlx::query::<DB>(self.dialect.lock_state())
            .bind(self.log.clone())
            .fetch_optional(&mut *tx)
            .await
            .map_err(&e)?;
        let row = sqlx::query::<DB>(
            "SELECT MAX(tree_size), MAX(signed_at) FROM simpul_audit_tree_heads WHERE log = $1",
        )
        .bind(self.log.clone())
        .fetch_one(&mut *tx)
        .await
        .map_err(&e)?;
        let largest: Option<i64> = row.try_get(0).map_err(&e)?;
        let newest: Option<i64> = row.try_get(1).map_err(&e)?;
        if largest.is_some_and(|l| l > to_i64(size)) {
            tx.rollback().await.map_err(&e)?;
            conn.committed();
            return Ok(None);
        }
        let head = sign(newest.unwrap_or(i64::MIN))?;
        sqlx::query::<DB>(
            "INSERT INTO simpul_audit_tree_heads (log, tree_size, signed_at, root_hash, jws)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(self.log.clone())
        .bind(to_i64(head.tree_size))
        .bind(head.timestamp)
        .bind(head.root_hash.clone())
        .bind(head.jws.clone())
        .execute(&mut *tx)
        .await
        .map_err(&e)?;
        tx.commit().await.map_err(&e)?;
        conn.committed();
        Ok(Some(head))
    }

    fn tree_head_of(&self, row: &DB::Row) -> Result<SignedTreeHead, AuditError> {
        let e = self.err("reading tree heads");
        let size: i64 = row.try_get(0).map_err(&e)?;
        // The store keeps the JWS; the origin beside it is this store's: its log key is the
        // member id, and it holds the log of exchanges. A head copied in from elsewhere
        // names another origin in what it signs and fails verification.
        Ok(SignedTreeHead {
            member: self.log.clone(),
            log: audit::EXCHANGE_LOG.to_owned(),
            tree_size: u64::try_from(size)
                .map_err(|_| self.corrupt(None, "a tree head has a negative size"))?,
            timestamp: row.try_get(1).map_err(&e)?,
            root_hash: row.try_get(2).map_err(&e)?,
            jws: row.try_get(3).map_err(&e)?,
        })
    }

    async fn latest_tree_head(&self) -> Result<Option<SignedTreeHead>, AuditError> {
        let row = sqlx::query::<DB>(
            "SELECT tree_size, signed_at, root_hash, jws FROM simpul_audit_tree_heads
             WHERE log = $1 ORDER BY tree_size DESC, signed_at DESC LIMIT 1",
        )
        .bind(self.log.clone())
        .fetch_optional(&self.pool)
        .await
        .map_err(self.err("reading tree heads"))?;
        row.map(|r| self.tree_head_of(&r)).transpose()
    }

    async fn tree_heads(
        &self,
        after: Option<(u64, i64)>,
        max_size: u64,
        limit: u32,
    ) -> Result<Vec<SignedTreeHead>, AuditError> {
        // (-1, MIN) sorts before every head.
        let (size, at) = after.map_or((-1, i64::MIN), |(s, t)| (to_i64(s), t));
        let rows = sqlx::query::<DB>(
            "SELECT tree_size, signed_at, root_hash, jws FROM simpul_audit_tree_heads
             WHERE log = $1 AND tree_size <= $2
               AND (tree_size > $3 OR (tree_size = $3 AND signed_at > $4))
             ORDER BY tree_size, signed_at LIMIT $5",
        )
        .bind(self.log.clone())
        .bind(to_i64(max_size))
        .bind(size)
        .bind(at)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("reading tree heads"))?;
        rows.iter().map(|r| self.tree_head_of(r)).collect()
    }

    fn record_of(&self, row: &DB::Row) -> Result<AuditRecord, AuditError> {
        let e = self.err("reading records");
        let seq: i64 = row.try_get(0).map_err(&e)?;
        let seq = u64::try_from(seq).map_err(|_| self.corrupt(None, "a negative seq"))?;
        let role: String = row.try_get(3).map_err(&e)?;
        let latency: i64 = row.try_get(12).map_err(&e)?;
        Ok(AuditRecord {
            seq,
            ts: row.try_get(1).map_err(&e)?,
            exchange_id: row.try_get(2).map_err(&e)?,
            role: Role::parse(&role)
                .ok_or_else(|| self.corrupt(Some(seq), format!("unknown role `{role}`")))?,
            consumer: row.try_get(4).map_err(&e)?,
            provider: row.try_get(5).map_err(&e)?,
            contract: row.try_get(6).map_err(&e)?,
            version: row.try_get(7).map_err(&e)?,
            purpose: row.try_get(8).map_err(&e)?,
            request_hash: row.try_get(9).map_err(&e)?,
            response_hash: row.try_get(10).map_err(&e)?,
            outcome: row.try_get(11).map_err(&e)?,
            latency_us: u64::try_from(latency)
                .map_err(|_| self.corrupt(Some(seq), "a negative latency"))?,
            subject: row.try_get(13).map_err(&e)?,
            lookup_id: row.try_get(14).map_err(&e)?,
            peer: row.try_get(15).map_err(&e)?,
            subsystem: row.try_get(16).map_err(&e)?,
            user: row.try_get(17).map_err(&e)?,
            aggregate: self.aggregate_of(row, seq)?,
            subjects: self.subjects_of(row, seq)?,
            overlap: self.overlap_of(row, seq)?,
        })
    }

    /// Column 22 of a record row: an overlap run's figures, kept as their JSON object (and
    /// read with the bounds an export's reader holds them to).
    fn overlap_of(&self, row: &DB::Row, seq: u64) -> Result<Option<OverlapFigures>, AuditError> {
        let text: Option<String> = row.try_get(22).map_err(self.err("reading records"))?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| {
                self.corrupt(
                    Some(seq),
                    format!("its overlap figures are not as a record holds them: {e}"),
                )
            })
        })
        .transpose()
    }

    /// Column 21 of a record row: a batch record's item subjects, kept as the JSON array
    /// they were hashed as.
    fn subjects_of(&self, row: &DB::Row, seq: u64) -> Result<Option<Vec<String>>, AuditError> {
        let text: Option<String> = row.try_get(21).map_err(self.err("reading records"))?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| {
                self.corrupt(
                    Some(seq),
                    format!("its item subjects are not a JSON array of strings: {e}"),
                )
            })
        })
        .transpose()
    }

    /// Columns 18–20 of a record row: its aggregate, when it is one (all three set) or
    /// `None` (all three null).
    fn aggregate_of(&self, row: &DB::Row, seq: u64) -> Result<Option<Aggregate>, AuditError> {
        let e = self.err("reading records");
        let minute: Option<i64> = row.try_get(18).map_err(&e)?;
        let count: Option<i64> = row.try_get(19).map_err(&e)?;
        let bytes: Option<i64> = row.try_get(20).map_err(&e)?;
        let natural = |v: i64, what: &str| {
            u64::try_from(v).map_err(|_| self.corrupt(Some(seq), format!("a negative {what}")))
        };
        match (minute, count, bytes) {
            (None, None, None) => Ok(None),
            (Some(minute), Some(count), Some(bytes)) => Ok(Some(Aggregate {
                minute,
                count: natural(count, "aggregate count")?,
                body_bytes: natural(bytes, "aggregate byte count")?,
            })),
            _ => Err(self.corrupt(Some(seq), "an aggregate with some of its columns null")),
        }
    }

    async fn records(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<(AuditRecord, Option<Hash>)>, AuditError> {
        let sql = "SELECT r.seq, r.ts, r.exchange_id, r.role, r.consumer, r.provider, r.contract, \
                   r.version, r.purpose, r.request_hash, r.response_hash, r.outcome, \
                   r.latency_us, r.subject, r.lookup_id, r.peer, r.subsystem, r.end_user, \
                   r.aggregate_minute, r.aggregate_count, r.aggregate_bytes, r.subjects, r.overlap, \
                   n.hash \
                   FROM simpul_audit_records r LEFT JOIN simpul_audit_nodes n \
                   ON n.log = r.log AND n.node = 2 * r.seq \
                   WHERE r.log = $1 AND r.seq >= $2 AND r.seq < $3 ORDER BY r.seq";
        let rows = sqlx::query::<DB>(sql)
            .bind(self.log.clone())
            .bind(to_i64(from))
            .bind(to_i64(to))
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("reading records"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let record = self.record_of(row)?;
            let leaf: Option<Vec<u8>> = row.try_get(23).map_err(self.err("reading records"))?;
            let leaf = leaf.map(|l| self.hash_of(l, "a leaf hash")).transpose()?;
            out.push((record, leaf));
        }
        Ok(out)
    }

    /// How many blocks of lookup keys are written: blocks `0..` that many (written in
    /// order, one transaction each at most [`KEY_BLOCKS_PER_COMMIT`]). Read on every
    /// indexer transaction: the newest block by primary key, not a count of them all.
    async fn key_blocks_written(&self, tx: &mut Transaction<'_, DB>) -> Result<u64, AuditError> {
        let row = sqlx::query::<DB>(
            "SELECT COALESCE(MAX(block) + 1, 0) FROM simpul_audit_key_blocks WHERE log = $1",
        )
        .bind(self.log.clone())
        .fetch_one(&mut **tx)
        .await
        .map_err(self.err("counting the blocks of lookup keys"))?;
        let n: i64 = row
            .try_get(0)
            .map_err(self.err("counting the blocks of lookup keys"))?;
        u64::try_from(n).map_err(|_| self.corrupt(None, "a negative count of key blocks"))
    }

    /// SQLite, inside the indexer's transaction: writes the lookup keys of the blocks the
    /// tree of `size` completes that have none yet, oldest first and at most
    /// [`KEY_BLOCKS_PER_COMMIT`]; each block's exchange ids and subjects, read back from
    /// the records' rows, sorted by kind, key and seq, so that the table grows at
    /// its end. When that leaves no complete block without keys, a store made before the
    /// blocks drops its old indexes.
    async fn write_key_blocks(
        &self,
        tx: &mut Transaction<'_, DB>,
        size: u64,
    ) -> Result<(), AuditError> {
        let complete = size / self.key_block;
        let written = self.key_blocks_written(tx).await?;
        if written >= complete {
            return Ok(());
        }
        let op = "writing a block of lookup keys";
        for block in written..complete.min(written + KEY_BLOCKS_PER_COMMIT) {
            let (from, to) = (block * self.key_block, (block + 1) * self.key_block);
            sqlx::query::<DB>(
                "INSERT INTO simpul_audit_keys (log, block, kind, key, seq)
                 SELECT log, $2, 'exchange', exchange_id, seq FROM simpul_audit_records
                  WHERE log = $1 AND seq >= $3 AND seq < $4
                 UNION ALL
                 SELECT log, $2, 'subject', subject, seq FROM simpul_audit_records
                  WHERE log = $1 AND seq >= $3 AND seq < $4 AND subject IS NOT NULL
                 ORDER BY 3, 4, 5",
            )
            .bind(self.log.clone())
            .bind(to_i64(block))
            .bind(to_i64(from))
            .bind(to_i64(to))
            .execute(&mut **tx)
            .await
            .map_err(self.err(op))?;
            sqlx::query::<DB>("INSERT INTO simpul_audit_key_blocks (log, block) VALUES ($1, $2)")
                .bind(self.log.clone())
                .bind(to_i64(block))
                .execute(&mut **tx)
                .await
                .map_err(self.err(op))?;
        }
        if written + KEY_BLOCKS_PER_COMMIT >= complete {
            self.drop_legacy_key_indexes(tx).await?;
        }
        Ok(())
    }

    /// SQLite: drops the indexes of exchange ids and subjects a store made before the key
    /// blocks has, if it has them.
    async fn drop_legacy_key_indexes(
        &self,
        tx: &mut Transaction<'_, DB>,
    ) -> Result<(), AuditError> {
        let op = "dropping the indexes the key blocks replace";
        for index in LEGACY_KEY_INDEXES {
            let row = sqlx::query::<DB>(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = $1",
            )
            .bind(index.to_owned())
            .fetch_one(&mut **tx)
            .await
            .map_err(self.err(op))?;
            let present: i64 = row.try_get(0).map_err(self.err(op))?;
            if present > 0 {
                sqlx::query::<DB>(sqlx::AssertSqlSafe(format!("DROP INDEX IF EXISTS {index}")))
                    .execute(&mut **tx)
                    .await
                    .map_err(self.err(op))?;
                tracing::info!(store = %self.label, index, "every block of lookup keys written: the index they replace dropped");
            }
        }
        Ok(())
    }

    /// SQLite: the seqs of the records whose `by` is `value`, oldest first, at most `limit`:
    /// from the written blocks of keys (each key checked against its record's row, so a
    /// key row pointing elsewhere finds nothing), then from the records after them; for a
    /// subject, merged with the batch records' item subjects.
    async fn seqs_by_key(
        &self,
        by: Lookup,
        value: &str,
        limit: u32,
    ) -> Result<Vec<u64>, AuditError> {
        let (in_blocks, after_blocks) = KEY_LOOKUPS[by as usize];
        let op = match by {
            Lookup::Exchange => "finding an exchange's records",
            Lookup::Subject => "finding a subject's records",
        };
        let mut conn = self.pool.acquire().await.map_err(self.err(op))?;
        let mut tx = conn.begin().await.map_err(self.err(op))?;
        // The blocks written now; one written after this read is not probed, and its
        // records are among those scanned after the blocks.
        let written = self.key_blocks_written(&mut tx).await?;
        let mut seqs = self
            .seqs_of_query(
                &mut tx,
                in_blocks,
                to_i64(written),
                value,
                i64::from(limit),
                op,
            )
            .await?;
        let left = i64::from(limit) - i64::try_from(seqs.len()).unwrap_or(i64::MAX);
        if left > 0 {
            let after = to_i64(written.saturating_mul(self.key_block));
            seqs.extend(
                self.seqs_of_query(&mut tx, after_blocks, after, value, left, op)
                    .await?,
            );
        }
        if let Lookup::Subject = by {
            let rows = sqlx::query::<DB>(
                "SELECT seq FROM simpul_audit_subjects
                  WHERE log = $1 AND subject = $2 ORDER BY seq LIMIT $3",
            )
            .bind(self.log.clone())
            .bind(value.to_owned())
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(self.err(op))?;
            seqs = merge_seqs(seqs, self.seqs_of_rows(&rows, op)?, limit);
        }
        tx.commit().await.map_err(self.err(op))?;
        Ok(seqs)
    }

    /// Runs one of [`Backend::seqs_by_key`]'s queries: `$1` the log, then `n`, `value` and
    /// `limit`; its seqs.
    async fn seqs_of_query(
        &self,
        tx: &mut Transaction<'_, DB>,
        sql: &'static str,
        n: i64,
        value: &str,
        limit: i64,
        op: &'static str,
    ) -> Result<Vec<u64>, AuditError> {
        let rows = sqlx::query::<DB>(sql)
            .bind(self.log.clone())
            .bind(n)
            .bind(value.to_owned())
            .bind(limit)
            .fetch_all(&mut **tx)
            .await
            .map_err(self.err(op))?;
        self.seqs_of_rows(&rows, op)
    }

    fn seqs_of_rows(&self, rows: &[DB::Row], op: &'static str) -> Result<Vec<u64>, AuditError> {
        rows.iter()
            .map(|r| {
                let s: i64 = r.try_get(0).map_err(self.err(op))?;
                u64::try_from(s).map_err(|_| self.corrupt(None, "a negative seq"))
            })
            .collect()
    }

    async fn seqs_where(
        &self,
        by: Lookup,
        value: &str,
        limit: u32,
    ) -> Result<Vec<u64>, AuditError> {
        if self.dialect == Dialect::Sqlite {
            return self.seqs_by_key(by, value, limit).await;
        }
        let (sql, op) = match by {
            Lookup::Exchange => (
                "SELECT seq FROM simpul_audit_records WHERE log = $1 AND exchange_id = $2
                 ORDER BY seq LIMIT $3",
                "finding an exchange's records",
            ),
            // A single person's records by `subject`, and batch records by any of their
            // item subjects; each side read in seq order only as far as the limit.
            Lookup::Subject => (
                "SELECT seq FROM (
                    SELECT seq FROM (
                        SELECT seq FROM simpul_audit_records WHERE log = $1 AND subject = $2
                        ORDER BY seq LIMIT $3) AS by_subject
                    UNION
                    SELECT seq FROM (
                        SELECT seq FROM simpul_audit_subjects WHERE log = $1 AND subject = $2
                        ORDER BY seq LIMIT $3) AS by_item
                 ) AS found ORDER BY seq LIMIT $3",
                "finding a subject's records",
            ),
        };
        let rows = sqlx::query::<DB>(sql)
            .bind(self.log.clone())
            .bind(value.to_owned())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(self.err(op))?;
        self.seqs_of_rows(&rows, op)
    }

    /// How many records stamped at or after `since_ms` are exchanges `answered`. The range
    /// read starts at the first seq stamped at or after `from_ms`, found by binary search
    /// of point lookups on the primary key `(log, seq)`: O(log n) lookups, then the records
    /// from there to the committed size. Exact when no record's stamp is more than
    /// `since_ms - from_ms` below the stamp of a record before it: the search ends at a
    /// seq `p` whose predecessor is stamped below `from_ms`, so every record before `p`
    /// is stamped below `from_ms` plus that disorder, below `since_ms`.
    async fn count_answered(
        &self,
        answered: Answered<'_>,
        from_ms: i64,
        since_ms: i64,
    ) -> Result<u64, AuditError> {
        let op = "counting answered exchanges";
        let mut conn = self.pool.acquire().await.map_err(self.err(op))?;
        let row = sqlx::query::<DB>("SELECT tree_size FROM simpul_audit_state WHERE log = $1")
            .bind(self.log.clone())
            .fetch_optional(&mut *conn)
            .await
            .map_err(self.err(op))?
            .ok_or_else(|| self.corrupt(None, "the log's state row is missing"))?;
        let size: i64 = row.try_get(0).map_err(self.err(op))?;
        let size = u64::try_from(size).map_err(|_| self.corrupt(None, "a negative tree size"))?;
        let (mut start, mut end) = (0, size);
        while start < end {
            let mid = start + (end - start) / 2;
            let row = sqlx::query::<DB>(
                "SELECT ts FROM simpul_audit_records WHERE log = $1 AND seq = $2",
            )
            .bind(self.log.clone())
            .bind(to_i64(mid))
            .fetch_optional(&mut *conn)
            .await
            .map_err(self.err(op))?
            .ok_or_else(|| {
                self.corrupt(Some(mid), "the record is missing below the committed size")
            })?;
            let ts: i64 = row.try_get(0).map_err(self.err(op))?;
            if ts < from_ms {
                start = mid + 1;
            } else {
                end = mid;
            }
        }
        let row = sqlx::query::<DB>(COUNT_ANSWERED)
            .bind(self.log.clone())
            .bind(to_i64(start))
            .bind(to_i64(size))
            .bind(since_ms)
            .bind(Role::Provider.as_str().to_owned())
            .bind(ANSWERED.to_owned())
            .bind(answered.contract.to_owned())
            .bind(answered.version.to_owned())
            .bind(answered.consumer.to_owned())
            .bind(answered.purpose.to_owned())
            .fetch_one(&mut *conn)
            .await
            .map_err(self.err(op))?;
        let count: i64 = row.try_get(0).map_err(self.err(op))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn evidence(&self, exchange_id: &str) -> Result<Vec<StoredEvidence>, AuditError> {
        let rows = sqlx::query::<DB>(
            "SELECT e.exchange_id, e.request, e.response
             FROM simpul_audit_records r
             JOIN simpul_audit_evidence e ON e.log = r.log AND e.seq = r.seq
             WHERE r.log = $1 AND r.exchange_id = $2 ORDER BY r.seq LIMIT 64",
        )
        .bind(self.log.clone())
        .bind(exchange_id.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("reading evidence"))?;
        rows.iter()
            .map(|r| {
                let e = self.err("reading evidence");
                Ok(StoredEvidence {
                    exchange_id: r.try_get(0).map_err(&e)?,
                    request: r.try_get(1).map_err(&e)?,
                    response: r.try_get(2).map_err(&e)?,
                })
            })
            .collect()
    }

    async fn delete_evidence_before(&self, before_ms: i64) -> Result<u64, AuditError> {
        let mut total = 0;
        loop {
            // Small deletes, each its own transaction, so appends never wait long.
            // RETURNING rather than rows_affected, which sqlx has per engine only.
            let done = sqlx::query::<DB>(
                "DELETE FROM simpul_audit_evidence WHERE log = $1 AND seq IN (
                    SELECT seq FROM simpul_audit_evidence WHERE log = $1 AND ts < $2 LIMIT 1000)
                 RETURNING seq",
            )
            .bind(self.log.clone())
            .bind(before_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(self.err("deleting old evidence"))?;
            let n = done.len() as u64;
            total += n;
            if n < 1000 {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use batch::sample_record;

    const LOG: &str = "ID:GOV:DUKCAPIL";

    /// Record `n` of the lookup tests: one of 7 exchange ids, so most have several records;
    /// one of 5 subjects, none on every sixth; and every eleventh a batch record whose item
    /// subjects are two of the same five.
    fn keyed(n: u64) -> NewRecord {
        let mut r = sample_record(n);
        r.exchange_id = format!("exchange-{}", (n * 5) % 7);
        r.subject = (!n.is_multiple_of(6)).then(|| format!("subject-{}", (n * 3) % 5));
        if n.is_multiple_of(11) {
            r.subject = None;
            r.subjects = Some(vec![
                format!("subject-{}", n % 5),
                format!("subject-{}", (n + 2) % 5),
            ]);
        }
        r
    }

    /// What a lookup must find among records `0..size` of [`keyed`]: the seqs in order,
    /// the first `limit`.
    fn expected(size: u64, by: Lookup, value: &str, limit: u32) -> Vec<u64> {
        (0..size)
            .filter(|&n| {
                let r = keyed(n);
                match by {
                    Lookup::Exchange => r.exchange_id == value,
                    Lookup::Subject => {
                        r.subject.as_deref() == Some(value)
                            || r.subjects.is_some_and(|s| s.iter().any(|s| s == value))
                    }
                }
            })
            .take(limit as usize)
            .collect()
    }

    /// Every exchange id and subject of [`keyed`] looked up through `b` at three limits.
    async fn check_lookups(b: &Backend<sqlx::Sqlite>, size: u64) {
        for limit in [1, 3, 1000] {
            for (by, prefix, values) in [
                (Lookup::Exchange, "exchange", 8),
                (Lookup::Subject, "subject", 6),
            ] {
                for i in 0..values {
                    let value = format!("{prefix}-{i}");
                    let found = b.seqs_where(by, &value, limit).await.unwrap();
                    assert_eq!(
                        found,
                        expected(size, by, &value, limit),
                        "{value}, limit {limit}, size {size}"
                    );
                }
            }
        }
    }

    async fn key_blocks(b: &Backend<sqlx::Sqlite>) -> u64 {
        let mut conn = b.pool.acquire().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        b.key_blocks_written(&mut tx).await.unwrap()
    }

    async fn legacy_indexes(b: &Backend<sqlx::Sqlite>) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' \
             AND name IN ('simpul_audit_records_exchange', 'simpul_audit_records_subject')",
        )
        .fetch_one(&b.pool)
        .await
        .unwrap()
    }

    /// A new store appended to as a gateway does, through its journal and indexer, with
    /// blocks of 4 records' keys.
    async fn appending_in_blocks_of_4() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let target = StoreTarget::Sqlite(dir.path().join("audit.db"));
        let store = Store::open_with_key_block(&target, LOG, Access::Append, 4)
            .await
            .unwrap();
        (dir, store)
    }

    /// Through the journal and its indexer, as a gateway appends: the keys of each complete
    /// block of 4 records are written, and a lookup finds every record by exchange id and
    /// by subject (a batch record by its item subjects), oldest first, up to its limit,
    /// whether the record's keys are in a written block or not yet.
    #[tokio::test]
    async fn lookups_find_records_in_the_written_key_blocks_and_after_them() {
        let (_dir, store) = appending_in_blocks_of_4().await;
        let mut frontier = Frontier::default();
        let mut size = 0;
        for len in [1, 3, 2, 5, 1, 4, 7, 2, 3, 6, 1, 1, 3] {
            let batch = (size..size + len).map(|n| (keyed(n), None)).collect();
            store.commit(batch, &mut frontier, 1_000).await.unwrap();
            size += len;
            store.settle().await.unwrap();
            let Engine::Sqlite(b) = &store.engine else {
                panic!("an SQLite store");
            };
            check_lookups(b, size).await;
            // Through the store's own lookups too (they wait for the indexer).
            assert_eq!(
                store.seqs_of("exchange-3", 1000).await.unwrap(),
                expected(size, Lookup::Exchange, "exchange-3", 1000)
            );
            assert_eq!(
                store.seqs_of_subject("subject-2", 1000).await.unwrap(),
                expected(size, Lookup::Subject, "subject-2", 1000)
            );
        }
        let Engine::Sqlite(b) = &store.engine else {
            panic!("an SQLite store");
        };
        assert_eq!(size, 39);
        assert!(key_blocks(b).await >= 1, "no block of keys written");
        // One record more per commit until every complete block has its keys.
        for _ in 0..8 {
            let batch = vec![(keyed(size), None)];
            store.commit(batch, &mut frontier, 1_000).await.unwrap();
            size += 1;
        }
        store.settle().await.unwrap();
        assert_eq!(key_blocks(b).await, size / 4);
        check_lookups(b, size).await;
    }

    /// A key row pointing at another record finds nothing: each key is checked against its
    /// record's row.
    #[tokio::test]
    async fn a_key_that_does_not_match_its_record_finds_nothing() {
        let (_dir, store) = appending_in_blocks_of_4().await;
        let mut frontier = Frontier::default();
        let batch = (0..8).map(|n| (keyed(n), None)).collect();
        store.commit(batch, &mut frontier, 1_000).await.unwrap();
        store.settle().await.unwrap();
        let Engine::Sqlite(b) = &store.engine else {
            panic!("an SQLite store");
        };
        assert_eq!(key_blocks(b).await, 2);
        sqlx::query(
            "INSERT INTO simpul_audit_keys (log, block, kind, key, seq) \
             VALUES ($1, 0, 'exchange', 'exchange-forged', 2)",
        )
        .bind(LOG)
        .execute(&b.pool)
        .await
        .unwrap();
        assert!(
            b.seqs_where(Lookup::Exchange, "exchange-forged", 10)
                .await
                .unwrap()
                .is_empty()
        );
        check_lookups(b, 8).await;
    }

    /// A store made before the key blocks, with its indexes of exchange ids and subjects
    /// and records but no blocks: its lookups stay right while its appends write the
    /// missing blocks, two per commit, and once every complete block has its keys the old
    /// indexes are dropped.
    #[tokio::test]
    async fn a_store_made_before_the_key_blocks_catches_up_then_drops_its_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let target = StoreTarget::Sqlite(dir.path().join("audit.db"));
        let store = Store::open(&target, LOG, Access::Read).await.unwrap();
        let Engine::Sqlite(b) = &store.engine else {
            panic!("an SQLite store");
        };
        // Written straight to the tables, as before: no key blocks, the two indexes.
        let before = Backend {
            key_block: u64::MAX,
            ..b.clone()
        };
        for ddl in [
            "CREATE INDEX simpul_audit_records_exchange ON simpul_audit_records (log, exchange_id)",
            "CREATE INDEX simpul_audit_records_subject ON simpul_audit_records (log, subject)",
        ] {
            sqlx::query(ddl).execute(&b.pool).await.unwrap();
        }
        let mut frontier = Frontier::default();
        let batch = (0..30).map(|n| (keyed(n), None)).collect();
        before.commit(batch, &mut frontier, 1_000).await.unwrap();
        assert_eq!(key_blocks(&before).await, 0);

        // Opened now: blocks of 4.
        let after = Backend {
            key_block: 4,
            ..b.clone()
        };
        after.create().await.unwrap();
        assert_eq!(
            legacy_indexes(&after).await,
            2,
            "dropped before the blocks caught up"
        );
        // Until then a lookup's scan of the records after the blocks (here all of them)
        // goes through the old index, not through every record.
        for (_, after_blocks) in KEY_LOOKUPS {
            let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
                "EXPLAIN QUERY PLAN {after_blocks}"
            )))
            .bind(LOG)
            .bind(0_i64)
            .bind("k")
            .bind(10_i64)
            .fetch_all(&after.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(3))
            .collect();
            assert!(
                plan.iter()
                    .any(|step| step.contains("USING COVERING INDEX simpul_audit_records_")),
                "{plan:?}"
            );
        }
        check_lookups(&after, 30).await;
        let mut size = 30;
        // 7 complete blocks missing, two written per commit: the fourth commit catches up.
        for commit in 1..=4 {
            let batch = vec![(keyed(size), None)];
            after.commit(batch, &mut frontier, 1_000).await.unwrap();
            size += 1;
            assert_eq!(key_blocks(&after).await, (commit * 2).min(size / 4));
            check_lookups(&after, size).await;
            let kept = if commit < 4 { 2 } else { 0 };
            assert_eq!(legacy_indexes(&after).await, kept, "after commit {commit}");
        }
    }

    /// A lookup probes each written block by primary key, in the order of the seqs, so it
    /// stops at its limit without sorting; the records after the blocks are a range of the
    /// records' primary key.
    #[tokio::test]
    async fn a_lookup_probes_each_block_by_primary_key_and_scans_only_the_records_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let target = StoreTarget::Sqlite(dir.path().join("audit.db"));
        let store = Store::open(&target, LOG, Access::Read).await.unwrap();
        let Engine::Sqlite(b) = &store.engine else {
            panic!("an SQLite store");
        };
        let plan = |sql: &str| {
            let sql = format!("EXPLAIN QUERY PLAN {sql}");
            async move {
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(LOG)
                    .bind(1_i64)
                    .bind("k")
                    .bind(10_i64)
                    .fetch_all(&b.pool)
                    .await
                    .unwrap();
                rows.iter()
                    .map(|r| r.get::<String, _>(3))
                    .collect::<Vec<_>>()
            }
        };
        let (in_blocks, after_blocks) = KEY_LOOKUPS[0];
        let steps = plan(in_blocks).await;
        assert!(
            steps.contains(
                &"SEARCH k USING PRIMARY KEY (log=? AND block=? AND kind=? AND key=?)".to_owned()
            ),
            "{steps:?}"
        );
        assert!(
            !steps.iter().any(|s| s.contains("TEMP B-TREE")),
            "{steps:?}"
        );
        assert_eq!(
            plan(after_blocks).await,
            ["SEARCH simpul_audit_records USING PRIMARY KEY (log=? AND seq>?)"]
        );
    }

    /// The answered count reads a range of the records' primary key: not the whole log, and
    /// no index of its own.
    #[tokio::test]
    async fn the_answered_count_reads_a_range_of_the_primary_key() {
        let dir = tempfile::tempdir().unwrap();
        let target = StoreTarget::Sqlite(dir.path().join("audit.db"));
        let store = Store::open(&target, "ID:GOV:DUKCAPIL", Access::Read)
            .await
            .unwrap();
        let Engine::Sqlite(b) = &store.engine else {
            panic!("an SQLite store");
        };
        let mut plan = sqlx::query(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {COUNT_ANSWERED}"
        )))
        .bind("ID:GOV:DUKCAPIL")
        .bind(0_i64)
        .bind(10_i64)
        .bind(0_i64);
        for text in ["provider", "ok", "c", "1", "ID:GOV:KEMLU", "p"] {
            plan = plan.bind(text);
        }
        let rows = plan.fetch_all(&b.pool).await.unwrap();
        let steps: Vec<String> = rows.iter().map(|r| r.get::<String, _>(3)).collect();
        assert_eq!(
            steps,
            ["SEARCH simpul_audit_records USING PRIMARY KEY (log=? AND seq>? AND seq<?)"]
        );
    }
}
