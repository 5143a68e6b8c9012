//! The audit log after its store failed mid-transaction: on SQLite, a disk that takes no
//! more writes (the real I/O error at COMMIT, from a file-size limit), and the store's file
//! moved away or replaced under the open log; on PostgreSQL
//! (`SIMPUL_TEST_POSTGRES_URL`), the writer's connection killed, or its commit cut off by
//! the writer's deadline. Appends fail closed while it lasts; once the store takes writes
//! again the very next append succeeds — no restart — with no gap in the seqs, proofs and
//! tree heads are served, and the export verifies (issue #12).

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit::{
    AuditRecord, Role, SignedTreeHead, check_consistency_proof, check_proof_bundle, verify_export,
    verify_tree_head,
};
use audit_store::{AuditConfig, AuditError, AuditLog};
use contracts::{Algorithm, SigningKey, VerifyingKey};
use sqlx::{Connection, Executor};

mod support {
    pub mod records;
}
use support::records::{DUKCAPIL, KEMLU, exchange, exchange_id, id};

fn key() -> Arc<SigningKey> {
    Arc::new(SigningKey::generate(Algorithm::ES256, KEMLU).unwrap())
}

fn public(key: &SigningKey) -> VerifyingKey {
    key.verifying_key().unwrap()
}

fn config(store: String, dir: &tempfile::TempDir) -> AuditConfig {
    AuditConfig {
        store,
        secret_file: Some(dir.path().join("audit.secret").display().to_string()),
        batch_max: 64,
        ..AuditConfig::default()
    }
}

async fn append(log: &AuditLog, n: u64) -> Result<AuditRecord, AuditError> {
    log.append(exchange(n, Role::Consumer, KEMLU, DUKCAPIL), None)
        .await
}

/// Appends exchanges `0..n` and signs a head over them.
async fn a_log_of(log: &AuditLog, n: u64) -> SignedTreeHead {
    for i in 0..n {
        assert_eq!(append(log, i).await.unwrap().seq, i);
    }
    log.sign_tree_head().await.unwrap()
}

/// What must hold once the store takes writes again, for a log whose committed size was
/// `size` (with `before` its head) when the failure began: the very next append takes seq
/// `size`, and the ones after it follow — so no pooled connection is left unusable; a head
/// is signed over them, consistent with `before`; a proof of the first is served and
/// checks; the export verifies, gap-free.
async fn appends_and_reads_go_on(log: &AuditLog, k: &SigningKey, before: &SignedTreeHead) {
    let size = before.tree_size;
    let first = append(log, 1000)
        .await
        .unwrap_or_else(|e| panic!("the first append once the store takes writes again: {e}"));
    assert_eq!(first.seq, size, "the next seq, no gap");
    for i in 1..12 {
        let record = append(log, 1000 + i)
            .await
            .unwrap_or_else(|e| panic!("append {i} after the store recovered: {e}"));
        assert_eq!(record.seq, size + i);
    }
    let end = size + 12;
    assert_eq!(log.tree_size(), end);

    let head = log.sign_tree_head().await.unwrap();
    assert_eq!(head.tree_size, end);
    assert_eq!(log.latest_tree_head().await.unwrap(), Some(head.clone()));
    let (_, old_root) = verify_tree_head(before, &public(k)).unwrap();
    let (_, new_root) = verify_tree_head(&head, &public(k)).unwrap();
    let proof = log.consistency_proof(size, end).await.unwrap();
    check_consistency_proof(&proof, &old_root, &new_root).unwrap();
    let bundle = log.prove(&exchange_id(1000)).await.unwrap();
    let report = check_proof_bundle(&bundle, &public(k)).unwrap();
    assert_eq!(report.records[0].seq, size);

    let seqs: Vec<u64> = log
        .records(0, end + 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, (0..end).collect::<Vec<_>>(), "gap-free");
    let mut export = Vec::new();
    log.export(&mut export).await.unwrap();
    let report = verify_export(Cursor::new(export), &public(k)).unwrap();
    assert_eq!((report.records, report.verified_size), (end, end));
}

// ---------------------------------------------------------------------------------------
// SQLite: the store's file deleted, or moved away and back, while the log is open.

/// A log on a SQLite store `data/audit.db` in `dir`, the store's path and the log's key.
async fn sqlite_log(dir: &tempfile::TempDir) -> (AuditLog, std::path::PathBuf, Arc<SigningKey>) {
    let path = dir.path().join("data/audit.db");
    let k = key();
    let log = AuditLog::open(
        &config(path.display().to_string(), dir),
        dir.path(),
        &id(KEMLU),
        k.clone(),
    )
    .await
    .unwrap();
    (log, path, k)
}

#[tokio::test]
async fn sqlite_appends_stop_while_the_store_file_is_gone_and_go_on_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path, k) = sqlite_log(&dir).await;
    let before = a_log_of(&log, 3).await;

    // Moved away (an operator's mistake, or someone removing the evidence): no append is
    // taken into a file the path no longer names.
    let aside = dir.path().join("data/aside.db");
    std::fs::rename(&path, &aside).unwrap();
    for n in 3..6 {
        let err = append(&log, n).await.expect_err("the store file is gone");
        assert!(
            matches!(&err, AuditError::NotDurable { reason, .. } if reason.contains("deleted or moved away")),
            "{err}"
        );
    }
    // Replaced by another file at the path: refused too.
    std::fs::write(&path, b"").unwrap();
    let err = append(&log, 6).await.expect_err("another file at the path");
    assert!(
        matches!(&err, AuditError::NotDurable { reason, .. } if reason.contains("replaced")),
        "{err}"
    );
    assert_eq!(log.tree_size(), 3);
    // The file the log opened, moved back: appends go on, gap-free, and the export verifies.
    std::fs::rename(&aside, &path).unwrap();
    appends_and_reads_go_on(&log, &k, &before).await;
}

#[tokio::test]
async fn sqlite_appends_fail_closed_while_another_process_locks_the_store_then_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path, k) = sqlite_log(&dir).await;
    let before = a_log_of(&log, 3).await;
    // Another process (a backup tool, a person with sqlite3) takes the write lock.
    let mut other = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&path),
    )
    .await
    .unwrap();
    other.execute("BEGIN EXCLUSIVE").await.unwrap();
    let started = Instant::now();
    let err = append(&log, 3).await.expect_err("the store is locked");
    assert!(matches!(err, AuditError::NotDurable { .. }), "{err}");
    // Refused within the store's busy timeout and the commit deadline, never hung.
    assert!(
        started.elapsed() < Duration::from_secs(11),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(log.tree_size(), 3);
    other.execute("COMMIT").await.unwrap();
    drop(other);
    appends_and_reads_go_on(&log, &k, &before).await;
}

// ---------------------------------------------------------------------------------------
// SQLite: a disk that takes no more writes.

/// Set in the child process that runs [`sqlite_full_disk_scenario`].
const CHILD_VAR: &str = "SIMPUL_TEST_FULL_DISK_CHILD";

/// The process's soft file-size limit, in bytes or `unlimited`, read and set with
/// util-linux's `prlimit`. No write to a regular file at or beyond it succeeds: with
/// SIGXFSZ ignored, `write` fails with EFBIG and SQLite reports an I/O error, the same
/// path as a full disk's ENOSPC.
fn file_size_limit() -> String {
    let out = std::process::Command::new("prlimit")
        .args(["--pid", &std::process::id().to_string()])
        .args(["--fsize", "--raw", "--noheadings", "--output=SOFT"])
        .output()
        .expect("prlimit (util-linux) runs");
    assert!(out.status.success(), "prlimit: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn set_file_size_limit(soft: &str) {
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &std::process::id().to_string()])
        .arg(format!("--fsize={soft}:"))
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success(), "prlimit --fsize={soft}:");
}

/// The file-size limit is the whole process's, so the scenario runs alone in a child of
/// this test binary, started through `sh` to ignore SIGXFSZ (ignored signals stay ignored
/// across `exec`): a write past the limit then fails instead of killing the process.
#[cfg(target_os = "linux")]
#[test]
fn sqlite_appends_recover_once_a_full_disk_has_room_again() {
    let test = "sqlite_full_disk_scenario";
    let out = std::process::Command::new("sh")
        .args(["-c", r#"trap '' XFSZ; exec "$@""#, "sh"])
        .arg(std::env::current_exe().unwrap())
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_VAR, "1")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} failed in its child process ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// Run by [`sqlite_appends_recover_once_a_full_disk_has_room_again`] in a child process;
/// does nothing elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run in a child process by sqlite_appends_recover_once_a_full_disk_has_room_again"]
async fn sqlite_full_disk_scenario() {
    if std::env::var_os(CHILD_VAR).is_none() {
        eprintln!("sqlite_full_disk_scenario: skipped: it sets the process's file-size limit");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("data/audit.db").display().to_string();
    let k = key();
    let log = AuditLog::open(&config(store, &dir), dir.path(), &id(KEMLU), k.clone())
        .await
        .unwrap();
    let before = a_log_of(&log, 3).await;

    // The disk is full: every append fails closed. Several, so that each connection the
    // pool holds has had a COMMIT fail on it.
    let limit = file_size_limit();
    set_file_size_limit("0");
    let mut failed = Vec::new();
    for n in 3..11 {
        failed.push(append(&log, n).await);
    }
    set_file_size_limit(&limit);
    let failed: Vec<AuditError> = failed
        .into_iter()
        .map(|outcome| outcome.expect_err("no append is durable on a full disk"))
        .collect();
    assert!(
        failed
            .iter()
            .all(|e| matches!(e, AuditError::NotDurable { .. })),
        "{failed:?}"
    );
    // The real failure: SQLite's I/O error when COMMIT writes the WAL.
    let first = failed[0].to_string();
    assert!(
        first.contains("committing") && first.contains("disk I/O error"),
        "{first}"
    );
    assert_eq!(log.tree_size(), 3);

    appends_and_reads_go_on(&log, &k, &before).await;
}

// ---------------------------------------------------------------------------------------
// PostgreSQL (SIMPUL_TEST_POSTGRES_URL): the writer's transaction cut off.

const PG_VAR: &str = "SIMPUL_TEST_POSTGRES_URL";

/// A fresh schema for one test, and the log's store URL in it.
struct PgSchema {
    url: String,
    schema: String,
    dir: tempfile::TempDir,
}

impl PgSchema {
    /// `None` (the test says it is skipped) without the variable.
    async fn new(test: &str) -> Option<PgSchema> {
        let Ok(url) = std::env::var(PG_VAR) else {
            eprintln!("{test}: skipped: {PG_VAR} is not set");
            return None;
        };
        let schema = format!("audit_disk_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .await
            .unwrap();
        conn.close().await.unwrap();
        Some(PgSchema {
            url,
            schema,
            dir: tempfile::tempdir().unwrap(),
        })
    }

    async fn open(&self, k: &Arc<SigningKey>) -> AuditLog {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        let store = format!("{}{sep}options[search_path]={}", self.url, self.schema);
        AuditLog::open(
            &config(store, &self.dir),
            self.dir.path(),
            &id(KEMLU),
            k.clone(),
        )
        .await
        .unwrap()
    }

    /// A connection of its own that takes the log's state row lock — the row every writer
    /// locks first — so the gateway's next commit waits inside its transaction.
    async fn lock_the_log(&self) -> sqlx::PgConnection {
        let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
        conn.execute(sqlx::AssertSqlSafe(format!(
            "BEGIN; SELECT tree_size FROM {}.simpul_audit_state FOR UPDATE",
            self.schema
        )))
        .await
        .unwrap();
        conn
    }

    async fn cleanup(self) {
        let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
        conn.execute(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.schema
        )))
        .await
        .unwrap();
        conn.close().await.unwrap();
    }
}

/// The server pid of the connection waiting for a lock `blocker` holds.
async fn blocked_by(blocker: &mut sqlx::PgConnection) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))",
        )
        .fetch_optional(&mut *blocker)
        .await
        .unwrap();
        if let Some(pid) = pid {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "the writer never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The writer's connection is terminated while it is inside its transaction: that append
/// fails closed, and the next one succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_appends_recover_after_the_writers_connection_is_killed() {
    let test = "postgres_appends_recover_after_the_writers_connection_is_killed";
    let Some(pg) = PgSchema::new(test).await else {
        return;
    };
    let k = key();
    let log = pg.open(&k).await;
    let before = a_log_of(&log, 3).await;

    let mut blocker = pg.lock_the_log().await;
    let pending = tokio::spawn({
        let log = log.clone();
        async move { append(&log, 3).await }
    });
    let writer = blocked_by(&mut blocker).await;
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(writer)
        .fetch_one(&mut blocker)
        .await
        .unwrap();
    assert!(killed);
    let e = pending.await.unwrap().unwrap_err();
    assert!(matches!(e, AuditError::NotDurable { .. }), "{e}");
    blocker.execute("ROLLBACK").await.unwrap();
    blocker.close().await.unwrap();

    appends_and_reads_go_on(&log, &k, &before).await;
    pg.cleanup().await;
}

/// The writer waits inside its transaction past its deadline (10 s), so its commit is
/// dropped half-way: that append fails closed, and once the lock is released the next one
/// succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_appends_recover_after_a_commit_is_cut_off_by_its_deadline() {
    let test = "postgres_appends_recover_after_a_commit_is_cut_off_by_its_deadline";
    let Some(pg) = PgSchema::new(test).await else {
        return;
    };
    let k = key();
    let log = pg.open(&k).await;
    let before = a_log_of(&log, 3).await;

    let mut blocker = pg.lock_the_log().await;
    let e = append(&log, 3).await.unwrap_err();
    assert!(matches!(e, AuditError::NotDurable { .. }), "{e}");
    assert!(e.to_string().contains("no commit within"), "{e}");
    blocker.execute("ROLLBACK").await.unwrap();
    blocker.close().await.unwrap();

    appends_and_reads_go_on(&log, &k, &before).await;
    pg.cleanup().await;
}
