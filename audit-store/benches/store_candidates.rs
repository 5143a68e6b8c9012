//! The audit store candidates of issue #13 item 2, measured side by side:
//! `cargo bench -p simpul-audit-store --bench store_candidates`.
//!
//! - `A journal`: the production store (`AuditLog` on SQLite): since issue #13, each group
//!   commit is one frame of its append journal (space filled ahead, one `fdatasync`), and an
//!   indexer writes the tables (a row per record, per evidence and per tree node, three
//!   secondary indexes, WAL, `synchronous=FULL`) off the answer's path. Before, the same
//!   tables were written on the answer's path (the run of 2026-12-03 in BENCHMARKS.md).
//! - `B sqlite`: SQLite used differently, a prototype: one row per group commit (records,
//!   sealed evidence and the batch's new tree nodes in one blob), a single autocommitted
//!   INSERT on the answer's path; the exchange-id and subject indexes written after the
//!   commit by an indexer connection; `wal_autocheckpoint=0` and a checkpointer connection.
//! - `C file`: an append-only file of our own, a prototype: one length-prefixed,
//!   SHA-256-checksummed frame per group commit holding the same blob, `fdatasync` per
//!   frame; the same indexer, into an SQLite file beside it.
//!
//! Every candidate does the per-record work the production store does (JCS of the record,
//! its leaf hash, the tree's new nodes, both envelopes sealed with HKDF + AES-256-GCM) with
//! the record and evidence sizes of `benches/audit.rs`, in files under `target/tmp` on the
//! project's disk. Each is measured empty and pre-grown to `SIMPUL_BENCH_GROWN_MB` (default
//! 1024) MB, `SIMPUL_BENCH_SECONDS` (default 5) per row. Last, a kill -9 check of candidate
//! C: a child process appends, is killed at a random moment, restarts and is killed again;
//! every append it acknowledged must be read back from the file, with a tree that
//! recomputes to the nodes and root stored in each frame.
//! `SIMPUL_BENCH_CANDIDATES` names the candidates to run by letter (default `ABC`; the
//! kill check runs with C). Run by `cargo test --benches`, all of it runs briefly, on a
//! small pre-grown store.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit::merkle::{Frontier, Hash, leaf_hash_of_bytes};
use audit::{NewRecord, Role, StoredEvidence};
use audit_store::{AuditConfig, AuditLog};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use contracts::canonical::{canonical_json, sha256, sha256_b64url};
use contracts::{Algorithm, MemberId, SigningKey};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

const WRITERS: [usize; 3] = [1, 16, 64];
const BATCH_MAX: usize = 256;
const LOG: &str = "ID:GOV:DUKCAPIL";
const CHILD_ENV: &str = "SIMPUL_CANDIDATE_CHILD";

fn envelope(kind: &str, n: u64, len: usize) -> String {
    let mut s = format!("eyJhbGciOiJFUzI1NiJ9.{kind}-{n}-");
    while s.len() < len {
        s.push('A');
    }
    s
}

/// The record and evidence of `benches/audit.rs`.
fn record(n: u64) -> (NewRecord, StoredEvidence) {
    let request = envelope("request", n, 900);
    let answer = envelope("answer", n, 1100);
    let id = format!("00000000-0000-4000-8000-{n:012}");
    (
        NewRecord {
            exchange_id: id.clone(),
            role: Role::Provider,
            consumer: "ID:GOV:KEMLU".into(),
            provider: "ID:GOV:DUKCAPIL".into(),
            contract: "citizenship.status".into(),
            version: "1".into(),
            purpose: "consular-protection".into(),
            request_hash: Some(sha256_b64url(request.as_bytes())),
            response_hash: Some(sha256_b64url(answer.as_bytes())),
            outcome: "ok".into(),
            latency_us: 850,
            subject: Some(sha256_b64url(id.as_bytes())),
            lookup_id: None,
            peer: None,
            subsystem: None,
            user: None,
            aggregate: None,
            subjects: None,
            overlap: None,
        },
        StoredEvidence {
            exchange_id: id,
            request,
            response: Some(answer),
        },
    )
}

/// Evidence sealing as `src/seal.rs` does it (a key per envelope from HKDF and 16 random
/// bytes, AES-256-GCM, bound to log, exchange and side), stored as bytes, not base64url.
struct Sealer {
    prk: hkdf::Prk,
}

impl Sealer {
    fn new() -> Sealer {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"simpul audit evidence v1");
        Sealer {
            prk: salt.extract(&[7u8; 32]),
        }
    }

    fn seal(&self, exchange_id: &str, side: &str, plain: &str) -> Vec<u8> {
        let mut salt = [0u8; 16];
        aws_lc_rs::rand::fill(&mut salt).expect("random salt");
        let info = [&salt[..]];
        let okm = self.prk.expand(&info, &AES_256_GCM).expect("hkdf");
        let key = LessSafeKey::new(UnboundKey::from(okm));
        let mut data = plain.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(format!("{LOG}\n{exchange_id}\n{side}").into_bytes()),
            &mut data,
        )
        .expect("seal");
        let mut out = salt.to_vec();
        out.extend_from_slice(&data);
        out
    }
}

/// One append waiting for its group commit.
struct Pending {
    record: NewRecord,
    request: Vec<u8>,
    response: Option<Vec<u8>>,
    done: oneshot::Sender<u64>,
}

/// What a committed batch leaves for the indexer: (seq, exchange id, subject).
type IndexEntries = Vec<(u64, String, Option<String>)>;

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A batch's blob: first seq, count, each record's JCS bytes (its leaf hash is over exactly
/// these), each record's sealed envelopes, the tree nodes the batch completed (id, hash;
/// leaves included, as the production store keeps them), and the root after the batch.
fn encode_batch(
    frontier: &mut Frontier,
    batch: Vec<Pending>,
    now_ms: i64,
) -> (Vec<u8>, IndexEntries, Vec<oneshot::Sender<u64>>) {
    let first = frontier.size();
    let mut body = Vec::with_capacity(batch.len() * 2700);
    body.extend_from_slice(&first.to_le_bytes());
    body.extend_from_slice(&(batch.len() as u32).to_le_bytes());
    let mut nodes: Vec<(u64, Hash)> = Vec::with_capacity(batch.len() * 2 + 8);
    let mut index = Vec::with_capacity(batch.len());
    let mut acks = Vec::with_capacity(batch.len());
    let mut evidence = Vec::with_capacity(batch.len() * 2100);
    for p in batch {
        let seq = frontier.size();
        let rec = p.record.into_record(seq, now_ms);
        let bytes = canonical_json(&rec).expect("JCS");
        frontier.push(leaf_hash_of_bytes(&bytes), |at, h| {
            nodes.push((at.id(), *h))
        });
        put_bytes(&mut body, &bytes);
        put_bytes(&mut evidence, &p.request);
        match &p.response {
            Some(r) => put_bytes(&mut evidence, r),
            None => evidence.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
        index.push((seq, rec.exchange_id, rec.subject));
        acks.push((p.done, seq));
    }
    body.extend_from_slice(&evidence);
    body.extend_from_slice(&(nodes.len() as u32).to_le_bytes());
    for (id, h) in &nodes {
        body.extend_from_slice(&id.to_le_bytes());
        body.extend_from_slice(h);
    }
    body.extend_from_slice(&frontier.root());
    let senders = acks.into_iter().map(|(done, _)| done).collect();
    (body, index, senders)
}

/// A decoded batch, for the kill -9 check: records' bytes, the nodes, the stored root.
struct DecodedBatch {
    first: u64,
    records: Vec<Vec<u8>>,
    nodes: Vec<(u64, Hash)>,
    root: Hash,
}

fn decode_batch(body: &[u8]) -> Option<DecodedBatch> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = body.get(at..at + n)?;
        at += n;
        Some(s)
    };
    let first = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let n = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    let mut records = Vec::with_capacity(n);
    for _ in 0..n {
        let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        records.push(take(len)?.to_vec());
    }
    for _ in 0..2 * n {
        let len = u32::from_le_bytes(take(4)?.try_into().ok()?);
        if len != u32::MAX {
            take(len as usize)?;
        }
    }
    let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    let mut nodes = Vec::with_capacity(count);
    for _ in 0..count {
        let id = u64::from_le_bytes(take(8)?.try_into().ok()?);
        nodes.push((id, take(32)?.try_into().ok()?));
    }
    let root = take(32)?.try_into().ok()?;
    Some(DecodedBatch {
        first,
        records,
        nodes,
        root,
    })
}

/// Where a prototype's committed batches go.
enum Sink {
    /// B: one autocommitted INSERT of the batch's row (WAL, `synchronous=FULL`).
    Sqlite {
        runtime: tokio::runtime::Runtime,
        conn: SqliteConnection,
    },
    /// C: one frame appended, then `fdatasync`.
    File(File),
}

/// C's frame: `len u32 ‖ body ‖ SHA-256(len ‖ body)`.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 36);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    let sum = sha256(&out);
    out.extend_from_slice(&sum);
    out
}

/// Reads C's frames, stopping at the first torn or damaged one; returns the batches and
/// the length of the valid prefix.
fn read_frames(path: &Path) -> (Vec<DecodedBatch>, u64) {
    let mut data = Vec::new();
    if let Ok(mut f) = File::open(path) {
        f.read_to_end(&mut data).expect("read the log");
    }
    let mut at = 0usize;
    let mut batches = Vec::new();
    while let Some(len) = data.get(at..at + 4) {
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let Some(whole) = data.get(at..at + 4 + len + 32) else {
            break;
        };
        if sha256(&whole[..4 + len]) != whole[4 + len..] {
            break;
        }
        let Some(batch) = decode_batch(&whole[4..4 + len]) else {
            break;
        };
        batches.push(batch);
        at += 4 + len + 32;
    }
    (batches, at as u64)
}

#[derive(Default)]
struct Stats {
    batches: AtomicU64,
    records: AtomicU64,
    syncs: AtomicU64,
}

/// A prototype store: a writer thread doing group commits, an indexer thread, and for B a
/// checkpointer thread.
#[derive(Clone)]
struct Proto {
    tx: mpsc::UnboundedSender<Pending>,
    sealer: Arc<Sealer>,
    stats: Arc<Stats>,
}

struct ProtoThreads {
    writer: std::thread::JoinHandle<()>,
    indexer: std::thread::JoinHandle<()>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

fn sqlite_options(path: &Path, sync: SqliteSynchronous) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(sync)
        .busy_timeout(Duration::from_secs(30))
        .pragma("wal_autocheckpoint", "0")
}

fn small_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sqlite,
    File,
}

impl Proto {
    fn open(kind: Kind, dir: &Path) -> (Proto, ProtoThreads) {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
        let (itx, irx) = std::sync::mpsc::channel::<IndexEntries>();
        let (sink, mut frontier, index_path) = match kind {
            Kind::Sqlite => {
                let path = dir.join("audit.db");
                // Opened on a thread of its own: the caller may be inside a runtime.
                let open_path = path.clone();
                let (runtime, conn) = std::thread::spawn(move || {
                    let path = open_path;
                    let runtime = small_runtime();
                    let conn = runtime.block_on(async {
                        let mut conn = SqliteConnection::connect_with(&sqlite_options(
                            &path,
                            SqliteSynchronous::Full,
                        ))
                        .await
                        .expect("open B");
                        sqlx::query(
                            "CREATE TABLE IF NOT EXISTS simpul_audit_batches (
                            first_seq INTEGER PRIMARY KEY, n INTEGER NOT NULL, body BLOB NOT NULL)",
                        )
                        .execute(&mut conn)
                        .await
                        .expect("DDL");
                        conn
                    });
                    (runtime, conn)
                })
                .join()
                .expect("open B");
                (Sink::Sqlite { runtime, conn }, Frontier::new(), path)
            }
            Kind::File => {
                let path = dir.join("audit.log");
                let (batches, valid) = read_frames(&path);
                let mut frontier = Frontier::new();
                for b in &batches {
                    for r in &b.records {
                        frontier.push(leaf_hash_of_bytes(r), |_, _| {});
                    }
                }
                let mut file = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .read(true)
                    .write(true)
                    .open(&path)
                    .expect("open C");
                // A torn last frame was never acknowledged: cut it off before appending.
                file.set_len(valid).expect("truncate the torn tail");
                file.seek(SeekFrom::Start(valid)).expect("seek");
                file.sync_all().expect("sync");
                (Sink::File(file), frontier, dir.join("index.db"))
            }
        };
        let wstats = stats.clone();
        let writer = std::thread::spawn(move || {
            let mut sink = sink;
            while let Some(first) = rx.blocking_recv() {
                let mut batch = vec![first];
                while batch.len() < BATCH_MAX {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let n = batch.len() as u64;
                let first_seq = frontier.size();
                let (body, index, senders) =
                    encode_batch(&mut frontier, batch, audit_store::now_ms());
                match &mut sink {
                    Sink::Sqlite { runtime, conn } => {
                        runtime
                            .block_on(
                                sqlx::query(
                                    "INSERT INTO simpul_audit_batches (first_seq, n, body) \
                                     VALUES ($1, $2, $3)",
                                )
                                .bind(first_seq as i64)
                                .bind(n as i64)
                                .bind(body)
                                .execute(&mut *conn),
                            )
                            .expect("B commit");
                    }
                    Sink::File(file) => {
                        file.write_all(&frame(&body)).expect("C write");
                        file.sync_data().expect("C fdatasync");
                    }
                }
                wstats.syncs.fetch_add(1, Ordering::Relaxed);
                wstats.batches.fetch_add(1, Ordering::Relaxed);
                wstats.records.fetch_add(n, Ordering::Relaxed);
                for (i, done) in senders.into_iter().enumerate() {
                    let _ = done.send(first_seq + i as u64);
                }
                let _ = itx.send(index);
            }
        });
        let indexer = std::thread::spawn(move || index_after_commit(&index_path, irx));
        let checkpointer = (kind == Kind::Sqlite).then(|| {
            let path = dir.join("audit.db");
            let stop = stop.clone();
            std::thread::spawn(move || checkpoint_in_background(&path, &stop))
        });
        (
            Proto {
                tx,
                sealer: Arc::new(Sealer::new()),
                stats,
            },
            ProtoThreads {
                writer,
                indexer,
                checkpointer,
                stop,
            },
        )
    }

    async fn append(&self, record: NewRecord, evidence: StoredEvidence) -> u64 {
        // Sealing needs no seq: done by the caller, in parallel, off the writer thread.
        let request = self
            .sealer
            .seal(&evidence.exchange_id, "request", &evidence.request);
        let response = evidence
            .response
            .as_deref()
            .map(|r| self.sealer.seal(&evidence.exchange_id, "response", r));
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Pending {
                record,
                request,
                response,
                done,
            })
            .expect("writer running");
        wait.await.expect("durable append")
    }
}

impl ProtoThreads {
    fn close(self, proto: Proto) {
        drop(proto);
        self.writer.join().expect("writer");
        self.indexer.join().expect("indexer");
        self.stop.store(true, Ordering::Relaxed);
        if let Some(c) = self.checkpointer {
            c.join().expect("checkpointer");
        }
    }
}

/// The background indexer: every 200 ms (or 8,192 records), one transaction adds the
/// committed records' exchange ids and subjects to two WITHOUT ROWID tables. Its commits
/// do not sync (`synchronous=NORMAL` in WAL): the index is rebuilt from the log's tail.
fn index_after_commit(path: &Path, rx: std::sync::mpsc::Receiver<IndexEntries>) {
    let runtime = small_runtime();
    runtime.block_on(async {
        let mut conn = SqliteConnection::connect_with(&sqlite_options(path, SqliteSynchronous::Normal))
            .await
            .expect("open the index");
        for ddl in [
            "CREATE TABLE IF NOT EXISTS simpul_audit_by_exchange (
                exchange_id TEXT NOT NULL, seq INTEGER NOT NULL,
                PRIMARY KEY (exchange_id, seq)) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS simpul_audit_by_subject (
                subject TEXT NOT NULL, seq INTEGER NOT NULL,
                PRIMARY KEY (subject, seq)) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS simpul_audit_indexed (id INTEGER PRIMARY KEY, upto INTEGER NOT NULL)",
        ] {
            sqlx::query(ddl).execute(&mut conn).await.expect("index DDL");
        }
        let mut open = true;
        while open {
            let mut pending: IndexEntries = Vec::new();
            let started = Instant::now();
            while pending.len() < 8192 && started.elapsed() < Duration::from_millis(200) {
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(mut e) => pending.append(&mut e),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            if pending.is_empty() {
                continue;
            }
            let mut tx = conn.begin().await.expect("index BEGIN");
            for chunk in pending.chunks(500) {
                let mut by_exchange =
                    String::from("INSERT OR IGNORE INTO simpul_audit_by_exchange VALUES ");
                let mut by_subject =
                    String::from("INSERT OR IGNORE INTO simpul_audit_by_subject VALUES ");
                for i in 0..chunk.len() {
                    let sep = if i == 0 { "" } else { "," };
                    by_exchange.push_str(&format!("{sep}(?, ?)"));
                    by_subject.push_str(&format!("{sep}(?, ?)"));
                }
                let mut q = sqlx::query(sqlx::AssertSqlSafe(by_exchange));
                for (seq, id, _) in chunk {
                    q = q.bind(id.clone()).bind(*seq as i64);
                }
                q.execute(&mut *tx).await.expect("index exchange ids");
                let mut q = sqlx::query(sqlx::AssertSqlSafe(by_subject));
                for (seq, _, subject) in chunk {
                    q = q.bind(subject.clone()).bind(*seq as i64);
                }
                q.execute(&mut *tx).await.expect("index subjects");
            }
            let upto = pending.last().map_or(0, |e| e.0 as i64 + 1);
            sqlx::query("INSERT OR REPLACE INTO simpul_audit_indexed (id, upto) VALUES (0, $1)")
                .bind(upto)
                .execute(&mut *tx)
                .await
                .expect("index mark");
            tx.commit().await.expect("index COMMIT");
        }
    });
}

/// B's checkpointer: with `wal_autocheckpoint=0` no commit checkpoints; this connection
/// copies the WAL into the database every 500 ms (PASSIVE: it never blocks the writer).
fn checkpoint_in_background(path: &Path, stop: &AtomicBool) {
    let runtime = small_runtime();
    runtime.block_on(async {
        let mut conn =
            SqliteConnection::connect_with(&sqlite_options(path, SqliteSynchronous::Full))
                .await
                .expect("open the checkpointer");
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&mut conn)
                .await
                .expect("checkpoint");
        }
    });
}

/// A candidate under measurement.
#[derive(Clone)]
enum Store {
    Today(AuditLog),
    Proto(Proto),
}

impl Store {
    async fn append(&self, n: u64) {
        let (r, e) = record(n);
        match self {
            Store::Today(log) => {
                log.append(r, Some(e)).await.expect("durable append");
            }
            Store::Proto(p) => {
                p.append(r, e).await;
            }
        }
    }
}

struct Run {
    appends: u64,
    elapsed: Duration,
    p50_us: u64,
    p99_us: u64,
    /// Bytes this process caused to be written to storage during the row (`write_bytes` of
    /// /proc/self/io: the journal, the WAL, checkpoints), per append.
    written_per_append: f64,
}

/// `write_bytes` of /proc/self/io (0 where there is none).
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("write_bytes: "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn measure(store: &Store, writers: usize, length: Duration, base: u64) -> Run {
    for n in 0..50 {
        store.append(base + (1 << 40) + n).await;
    }
    let written = written_bytes();
    let started = Instant::now();
    let deadline = started + length;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = base + ((w as u64) << 32);
            while Instant::now() < deadline {
                let t = Instant::now();
                store.append(n).await;
                latencies.push(t.elapsed().as_micros() as u64);
                n += 1;
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("writer"));
    }
    // A: until its tables hold every append (the rate it sustains, not what its journal
    // absorbs in a burst); the prototypes' after-commit indexes are not waited for.
    if let Store::Today(log) = store {
        assert!(
            log.settle(Duration::from_secs(60)).await,
            "the tables did not catch up"
        );
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Run {
        appends: all.len() as u64,
        elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        written_per_append: written_bytes().saturating_sub(written) as f64
            / all.len().max(1) as f64,
    }
}

/// Bytes the directory's files take on disk, its subdirectories' included (A's journal,
/// whose segments keep the evidence, is `audit.db.journal/<member>/`).
fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| Some((e.path(), e.metadata().ok()?)))
                .map(|(path, m)| {
                    if m.is_dir() {
                        disk_bytes(&path)
                    } else {
                        m.blocks() * 512
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Appends with 256 writers until the store takes `target` bytes; returns the appends.
async fn grow(store: &Store, dir: &Path, target: u64) -> u64 {
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..256u64 {
        let (store, done, count) = (store.clone(), done.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = (1 << 50) + (w << 32);
            while !done.load(Ordering::Relaxed) {
                store.append(n).await;
                count.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    while disk_bytes(dir) < target {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    done.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("grower");
    }
    count.load(Ordering::Relaxed)
}

async fn open_today(dir: &Path, key: &Arc<SigningKey>) -> AuditLog {
    let cfg = AuditConfig {
        store: "audit.db".into(),
        secret_file: Some("audit.secret".into()),
        ..AuditConfig::default()
    };
    let member = MemberId::parse(LOG).expect("member id");
    AuditLog::open(&cfg, dir, &member, key.clone())
        .await
        .expect("open the audit log")
}

/// One candidate, opened in `dir`; the closer stops its threads.
async fn open(name: &str, dir: &Path, key: &Arc<SigningKey>) -> (Store, Option<ProtoThreads>) {
    match name {
        "A journal" => (Store::Today(open_today(dir, key).await), None),
        _ => {
            let kind = if name == "B sqlite" {
                Kind::Sqlite
            } else {
                Kind::File
            };
            let (p, threads) = Proto::open(kind, dir);
            (Store::Proto(p), Some(threads))
        }
    }
}

async fn close(store: Store, threads: Option<ProtoThreads>) -> Option<(u64, u64, u64)> {
    let stats = match &store {
        Store::Proto(p) => Some(p.stats.clone()),
        Store::Today(_) => None,
    };
    if let (Store::Proto(p), Some(t)) = (store, threads) {
        tokio::task::spawn_blocking(move || t.close(p))
            .await
            .expect("close");
    }
    stats.map(|s| {
        (
            s.batches.load(Ordering::Relaxed),
            s.records.load(Ordering::Relaxed),
            s.syncs.load(Ordering::Relaxed),
        )
    })
}

fn print_row(name: &str, size: &str, writers: usize, run: &Run, batch: &str) {
    println!(
        "{name:<9} {size:>9} {writers:>7} {:>8} {:>10.0} {:>8.3} {:>8.3} {batch:>14} {:>11.0}",
        run.appends,
        run.appends as f64 / run.elapsed.as_secs_f64(),
        run.p50_us as f64 / 1000.0,
        run.p99_us as f64 / 1000.0,
        run.written_per_append,
    );
}

fn batch_column(before: Option<(u64, u64, u64)>, after: Option<(u64, u64, u64)>) -> String {
    match (before, after) {
        (Some(b), Some(a)) if a.0 > b.0 => format!(
            "{:.1} / {:.2}",
            (a.1 - b.1) as f64 / (a.0 - b.0) as f64,
            (a.2 - b.2) as f64 / (a.0 - b.0) as f64
        ),
        _ => "n/a / 1 + ckpt".into(),
    }
}

fn snapshot(store: &Store) -> Option<(u64, u64, u64)> {
    match store {
        Store::Proto(p) => Some((
            p.stats.batches.load(Ordering::Relaxed),
            p.stats.records.load(Ordering::Relaxed),
            p.stats.syncs.load(Ordering::Relaxed),
        )),
        Store::Today(_) => None,
    }
}

/// The child of the kill -9 check: appends to candidate C in `dir` with 16 writers until
/// killed, printing each acknowledged seq.
fn child(dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (proto, _threads) = Proto::open(Kind::File, dir);
        let out = Arc::new(Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for w in 0..16u64 {
            let (proto, out) = (proto.clone(), out.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = w << 32;
                loop {
                    let (r, e) = record(n);
                    let seq = proto.append(r, e).await;
                    let mut out = out.lock().expect("stdout");
                    writeln!(out, "{seq}").expect("print the ack");
                    out.flush().expect("flush the ack");
                    n += 1;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).expect("random");
    u64::from_le_bytes(b) % n
}

/// kill -9 at random moments: every acknowledged seq must be in the file afterwards, the
/// records must hash to the stored nodes and the last frame's root.
fn kill_check(rounds: u32) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let mut acked_max: Option<u64> = None;
    let mut acked_total = 0u64;
    for _ in 0..rounds {
        let mut child = Command::new(std::env::current_exe().expect("this binary"))
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the appender");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut max = None::<u64>;
            let mut count = 0u64;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(seq) = line.trim().parse::<u64>() {
                    max = Some(max.map_or(seq, |m: u64| m.max(seq)));
                    count += 1;
                }
            }
            (max, count)
        });
        std::thread::sleep(Duration::from_millis(150 + random_below(400)));
        child.kill().expect("kill -9"); // SIGKILL on Unix
        child.wait().expect("reap");
        let (max, count) = reader.join().expect("reader");
        acked_total += count;
        if let Some(m) = max {
            acked_max = Some(acked_max.map_or(m, |a| a.max(m)));
        }
        let (batches, _) = read_frames(&dir.path().join("audit.log"));
        let mut frontier = Frontier::new();
        for b in &batches {
            assert_eq!(b.first, frontier.size(), "frames are gap-free");
            let mut stored = b.nodes.iter();
            for r in &b.records {
                frontier.push(leaf_hash_of_bytes(r), |at, h| {
                    let (id, hash) = stored.next().expect("a stored node per completed node");
                    assert_eq!((*id, hash), (at.id(), h), "stored node matches the records");
                });
            }
            assert_eq!(frontier.root(), b.root, "stored root matches the records");
        }
        if let Some(m) = acked_max {
            assert!(
                m < frontier.size(),
                "acknowledged seq {m} lost: the file holds {} records",
                frontier.size()
            );
        }
    }
    println!(
        "kill -9 check (C): {rounds} kills, {acked_total} acknowledged appends, every one read back \
         with its tree ({} records in the file)",
        acked_max.map_or(0, |m| m + 1)
    );
}

fn letters_include(letter: char) -> bool {
    std::env::var("SIMPUL_BENCH_CANDIDATES")
        .ok()
        .is_none_or(|v| v.contains(letter))
}

fn main() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(&PathBuf::from(dir));
        return;
    }
    let quick = !std::env::args().any(|a| a == "--bench");
    let length = if quick {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(
            std::env::var("SIMPUL_BENCH_SECONDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(5),
        )
    };
    let grown_bytes = if quick {
        2 << 20
    } else {
        std::env::var("SIMPUL_BENCH_GROWN_MB")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(1024)
            << 20
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let key = Arc::new(SigningKey::generate(Algorithm::ES256, LOG).expect("key"));
        println!(
            "audit store candidates, {} s per row, batch_max {BATCH_MAX}, pre-grown to {} MB",
            length.as_secs_f64(),
            grown_bytes >> 20
        );
        println!(
            "{:<9} {:>9} {:>7} {:>8} {:>10} {:>8} {:>8} {:>14} {:>11}",
            "candidate", "store", "writers", "appends", "appends/s", "p50 ms", "p99 ms", "batch / syncs",
            "written B/a"
        );
        for name in ["A journal", "B sqlite", "C file"] {
            if !name.chars().next().is_some_and(letters_include) {
                continue;
            }
            for writers in WRITERS {
                let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
                let (store, threads) = open(name, dir.path(), &key).await;
                let before = snapshot(&store);
                let run = measure(&store, writers, length, 0).await;
                let after = snapshot(&store);
                print_row(name, "empty", writers, &run, &batch_column(before, after));
                close(store, threads).await;
            }
            let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
            let (store, threads) = open(name, dir.path(), &key).await;
            let t = Instant::now();
            let mut records = grow(&store, dir.path(), grown_bytes).await;
            let grew = t.elapsed();
            let grown = disk_bytes(dir.path());
            for writers in WRITERS {
                let before = snapshot(&store);
                let run = measure(&store, writers, length, (writers as u64) << 44).await;
                let after = snapshot(&store);
                records += run.appends + 50;
                let size = format!("{} MB", disk_bytes(dir.path()) >> 20);
                print_row(name, &size, writers, &run, &batch_column(before, after));
            }
            close(store, threads).await;
            println!(
                "{name:<9} grown to {} MB with {records} records in {:.0} s: {:.0} bytes per record on disk",
                grown >> 20,
                grew.as_secs_f64(),
                disk_bytes(dir.path()) as f64 / records as f64
            );
        }
    });
    if letters_include('C') {
        kill_check(if quick { 2 } else { 20 });
    }
}
