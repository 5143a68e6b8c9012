//! The audit log after its store failed mid-transaction: on SQLite, a disk that takes no
//! more writes (the real I/O error at COMMIT, from a file-size limit), and the store's file
//! moved away or replaced under the open log; on PostgreSQL
//! (`SIMPUL_TEST_POSTGRES_URL`), the writer's connection killed, or its commit cut off by
//! the writer's deadline, and (`SIMPUL_TEST_POSTGRES_BIN`) a server of the test's own
//! restarted and stopped under the open log. Appends fail closed while it lasts (on SQLite,
//! a locked store does not stop them, and a full disk only once the journal's space filled
//! ahead is used); once the store takes writes again the very next append succeeds — no
//! restart — with no gap in the seqs, proofs and tree heads are served, and the export
//! verifies (issue #12). The one
//! fault that needs a restart: the SQLite store's file system taken read-only by the kernel
//! at an error (`SIMPUL_TEST_MOUNT=1`), after which every record reported durable is still
//! there.

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
        .map(|r| r.to_record())
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

/// The journal deleted under the running log (an operator cleaning up what looks like a
/// leftover): once the tables hold what it held, it begins again, and no record is lost
/// across a restart.
#[tokio::test]
async fn sqlite_a_journal_deleted_under_the_running_log_begins_again_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path, k) = sqlite_log(&dir).await;
    a_log_of(&log, 3).await;
    let mut journal = path.clone().into_os_string();
    journal.push(".journal");
    std::fs::remove_dir_all(&journal).unwrap();
    // Either it begins again at once (the tables held everything), or it refuses until
    // they do; never an append into a file nothing names.
    let mut n = 3;
    let started = Instant::now();
    while n < 6 {
        match append(&log, n).await {
            Ok(r) => {
                assert_eq!(r.seq, n);
                n += 1;
            }
            Err(AuditError::NotDurable { reason, .. }) if reason.contains("deleted") => {
                assert!(started.elapsed() < Duration::from_secs(10), "{reason}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(std::path::Path::new(&journal).is_dir(), "made again");
    assert!(log.settle(Duration::from_secs(10)).await);
    drop(log);
    let log = AuditLog::open(
        &config(path.display().to_string(), &dir),
        dir.path(),
        &id(KEMLU),
        k.clone(),
    )
    .await
    .unwrap();
    assert_eq!(log.tree_size(), 6);
    appends_and_reads_go_on(&log, &k, &log.sign_tree_head().await.unwrap()).await;
}

#[tokio::test]
async fn sqlite_appends_go_on_while_another_process_locks_the_store_and_reads_wait_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path, k) = sqlite_log(&dir).await;
    a_log_of(&log, 3).await;
    // Another process (a backup tool, a person with sqlite3) takes the write lock.
    let mut other = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&path),
    )
    .await
    .unwrap();
    other.execute("BEGIN EXCLUSIVE").await.unwrap();
    // Appends go on: each is answered once its journal frame is on disk.
    for n in 3..6 {
        assert_eq!(append(&log, n).await.unwrap().seq, n);
    }
    assert_eq!(log.tables_behind(), 3, "the gauge operators watch");
    // A read needs the tables to hold them: it waits, then says why it cannot — never
    // answers without the newest records, never hangs.
    let started = Instant::now();
    let err = log.records(0, 10).await.expect_err("the tables are locked");
    assert!(
        matches!(&err, AuditError::Journal { reason, .. } if reason.contains("hold 3 of the 6")),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(11),
        "{:?}",
        started.elapsed()
    );
    other.execute("COMMIT").await.unwrap();
    drop(other);
    // Unlocked, the tables take what the journal holds: a head over all six.
    let head = log.sign_tree_head().await.unwrap();
    assert_eq!(head.tree_size, 6);
    assert_eq!(log.tables_behind(), 0);
    appends_and_reads_go_on(&log, &k, &head).await;
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

/// Runs `scenario`, an ignored test of this binary, alone in a child process started by
/// `launcher` (which execs the test binary it is given as its last arguments), with `var`
/// set; fails unless it passes there.
fn run_in_child(mut launcher: std::process::Command, scenario: &str, var: &str) {
    let out = launcher
        .arg(std::env::current_exe().unwrap())
        .args([
            scenario,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(var, "1")
        .output()
        .unwrap_or_else(|e| panic!("{launcher:?} does not start: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{scenario} failed in its child process ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // What the scenario measured.
    eprint!("{stderr}");
}

/// The file-size limit is the whole process's, so the scenario runs alone in a child of
/// this test binary, started through `sh` to ignore SIGXFSZ (ignored signals stay ignored
/// across `exec`): a write past the limit then fails instead of killing the process.
#[cfg(target_os = "linux")]
#[test]
fn sqlite_appends_recover_once_a_full_disk_has_room_again() {
    let mut sh = std::process::Command::new("sh");
    sh.args(["-c", r#"trap '' XFSZ; exec "$@""#, "sh"]);
    run_in_child(sh, "sqlite_full_disk_scenario", CHILD_VAR);
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
    a_log_of(&log, 3).await;

    // The disk is full. On a real disk appends would go on into the journal's space filled
    // ahead (each answered only once its frame is synced); the file-size limit refuses
    // writes into that space too, so here they may fail at once. Either way they then fail
    // closed, naming the journal's want of space, and every one answered is gap-free.
    let limit = file_size_limit();
    set_file_size_limit("0");
    let mut taken = 3;
    let err = loop {
        match append(&log, taken).await {
            Ok(record) => {
                assert_eq!(record.seq, taken, "gap-free while space lasts");
                taken += 1;
                assert!(taken < 100_000, "appends never stopped on a full disk");
            }
            Err(e) => break e,
        }
    };
    let more: Vec<_> = [append(&log, 200_000).await, append(&log, 200_001).await].into();
    set_file_size_limit(&limit);
    assert!(
        matches!(&err, AuditError::NotDurable { reason, .. } if reason.contains("journal") && reason.contains("File too large")),
        "{err}"
    );
    assert!(more.iter().all(Result::is_err), "{more:?}");
    assert_eq!(log.tree_size(), taken);
    eprintln!(
        "sqlite_full_disk_scenario: {} appends answered from the space filled ahead",
        taken - 3
    );

    // Room again: the tables take the journal's records, and appends go on.
    let before = log.sign_tree_head().await.unwrap();
    assert_eq!(before.tree_size, taken);
    appends_and_reads_go_on(&log, &k, &before).await;
}

// ---------------------------------------------------------------------------------------
// SQLite: the store's file system gone read-only under the open log (SIMPUL_TEST_MOUNT=1).
//
// Linux refuses `mount -o remount,ro` while a file on the file system is open for writing,
// as the store is; a file system goes read-only under an open store only when the kernel
// takes it so at an error (ext4's `errors=remount-ro`), and then it stays read-only until it
// is unmounted, whatever `mount -o remount,rw` says. Both are made here for real on an ext4
// image on a loop device.

/// `1` runs the tests that mount file systems (root, util-linux and e2fsprogs); anything
/// else skips them, saying so.
const MOUNT_VAR: &str = "SIMPUL_TEST_MOUNT";

/// Set in the child process that runs [`sqlite_read_only_scenario`].
const READ_ONLY_CHILD_VAR: &str = "SIMPUL_TEST_READ_ONLY_CHILD";

/// Runs `command`, failing the test unless it succeeds; its stdout.
fn must(command: &mut std::process::Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} does not start: {e}"));
    assert!(out.status.success(), "{command:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Mounting is for the whole machine unless it is done in a mount namespace of its own:
/// the scenario runs in a child of this test binary under `unshare --mount`, so its mount
/// ends with the child however the child ends (and the loop device with the mount).
#[cfg(target_os = "linux")]
#[test]
fn sqlite_appends_fail_closed_on_a_file_system_gone_read_only_and_no_durable_record_is_lost() {
    if std::env::var(MOUNT_VAR).as_deref() != Ok("1") {
        eprintln!(
            "sqlite_appends_fail_closed_on_a_file_system_gone_read_only_and_no_durable_record_is_lost: \
             skipped: {MOUNT_VAR} is not 1"
        );
        return;
    }
    let mut unshare = std::process::Command::new("unshare");
    unshare.args(["--mount", "--propagation", "private"]);
    run_in_child(unshare, "sqlite_read_only_scenario", READ_ONLY_CHILD_VAR);
}

/// An ext4 image, mounted through a loop device on `mnt` as a production data disk is:
/// read-only at the first error.
struct Ext4 {
    image: std::path::PathBuf,
    mnt: std::path::PathBuf,
}

impl Ext4 {
    fn make(dir: &tempfile::TempDir) -> Ext4 {
        let image = dir.path().join("disk.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        must(
            std::process::Command::new("mkfs.ext4")
                .args(["-q", "-F"])
                .arg(&image),
        );
        let disk = Ext4 { image, mnt };
        disk.mount();
        disk
    }

    fn mount(&self) {
        must(
            std::process::Command::new("mount")
                .args(["-o", "loop,errors=remount-ro"])
                .arg(&self.image)
                .arg(&self.mnt),
        );
    }

    /// `mount -o remount,<how>` on it, as an operator types it.
    fn remount(&self, how: &str) -> std::process::Output {
        std::process::Command::new("mount")
            .args(["-o", &format!("remount,{how}")])
            .arg(&self.mnt)
            .output()
            .unwrap()
    }

    /// The kernel's own error path: ext4 records an error (here through its
    /// `trigger_fs_error`, as on a failed metadata write) and, with `errors=remount-ro`,
    /// aborts its journal and takes the file system read-only.
    fn fail(&self) {
        let source = must(
            std::process::Command::new("findmnt")
                .args(["-n", "-o", "SOURCE"])
                .arg(&self.mnt),
        );
        let device = source.trim().trim_start_matches("/dev/");
        std::fs::write(
            format!("/sys/fs/ext4/{device}/trigger_fs_error"),
            "simpul test: the audit store's disk failed",
        )
        .unwrap();
    }

    /// What writing a new file on it gives.
    fn write_probe(&self) -> std::io::Result<()> {
        std::fs::write(self.mnt.join("probe"), b"probe")
    }

    /// Unmounts it once the files on it are closed (a log's pool closes its connections
    /// as its writer ends), within 10 s.
    fn unmount(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = std::process::Command::new("umount")
                .arg(&self.mnt)
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "umount: {out:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `e2fsck -fy`: replays the aborted journal and repairs; exit 0 or 1 is a file system
    /// fit to mount.
    fn check(&self) {
        let out = std::process::Command::new("e2fsck")
            .arg("-fy")
            .arg(&self.image)
            .output()
            .unwrap();
        assert!(matches!(out.status.code(), Some(0 | 1)), "e2fsck: {out:?}");
    }
}

/// Run by [`sqlite_appends_fail_closed_on_a_file_system_gone_read_only_and_no_durable_record_is_lost`]
/// in a mount namespace of its own; does nothing elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run in a mount namespace of its own by sqlite_appends_fail_closed_on_a_file_system_gone_read_only_and_no_durable_record_is_lost"]
async fn sqlite_read_only_scenario() {
    if std::env::var_os(READ_ONLY_CHILD_VAR).is_none() {
        eprintln!("sqlite_read_only_scenario: skipped: it mounts a file system");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = Ext4::make(&dir);
    // The store on the disk; its secret and pinned head beside the configuration.
    let cfg = config(disk.mnt.join("audit.db").display().to_string(), &dir);
    let k = key();
    let log = AuditLog::open(&cfg, dir.path(), &id(KEMLU), k.clone())
        .await
        .unwrap();
    a_log_of(&log, 3).await;

    // An operator's `mount -o remount,ro`: the kernel refuses it while the store is open
    // for writing, and appends go on.
    let refused = disk.remount("ro");
    assert!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("busy"),
        "{refused:?}"
    );
    for n in 3..5 {
        assert_eq!(append(&log, n).await.unwrap().seq, n);
    }
    let before = log.sign_tree_head().await.unwrap();
    assert_eq!(before.tree_size, 5);

    disk.fail();
    let probe = disk
        .write_probe()
        .expect_err("the file system is read-only");
    assert_eq!(
        probe.kind(),
        std::io::ErrorKind::ReadOnlyFilesystem,
        "{probe}"
    );

    // Every append fails closed: rounds of concurrent ones, so that more than one pooled
    // connection meets the fault (a connection whose transaction failed is closed, and the
    // next commit takes another).
    let started = Instant::now();
    let mut failed = Vec::new();
    for round in 0..4u64 {
        let pending: Vec<_> = (0..4u64)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move { append(&log, 5 + 4 * round + i).await })
            })
            .collect();
        for p in pending {
            let outcome = p.await.unwrap();
            failed.push(outcome.expect_err("no append is durable on a read-only file system"));
        }
    }
    eprintln!(
        "measured: 16 appends on the read-only file system failed in {:?}; first error: {}",
        started.elapsed(),
        failed[0]
    );
    assert!(
        failed
            .iter()
            .all(|e| matches!(e, AuditError::NotDurable { .. })),
        "{failed:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(log.tree_size(), 5);

    // Reads go on from the file as it was: records, proofs, heads.
    let seqs: Vec<u64> = log
        .records(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, (0..5).collect::<Vec<_>>());
    let report =
        check_proof_bundle(&log.prove(&exchange_id(4)).await.unwrap(), &public(&k)).unwrap();
    assert_eq!(report.records[0].seq, 4);
    assert_eq!(log.latest_tree_head().await.unwrap(), Some(before.clone()));

    // `mount -o remount,rw` does not bring it back: the kernel keeps it read-only until it
    // is unmounted, and appends go on failing.
    let rw = disk.remount("rw");
    let probe = disk
        .write_probe()
        .expect_err("still read-only after remount,rw");
    assert_eq!(
        probe.kind(),
        std::io::ErrorKind::ReadOnlyFilesystem,
        "{probe} ({rw:?})"
    );
    let e = append(&log, 100).await.expect_err("still read-only");
    assert!(matches!(e, AuditError::NotDurable { .. }), "{e}");

    // Service returns when the gateway is started again on the checked file system: every
    // record that was reported durable is there, the log extends the pinned head, and
    // appends go on after it.
    drop(log);
    disk.unmount();
    disk.check();
    disk.mount();
    let log = AuditLog::open(&cfg, dir.path(), &id(KEMLU), k.clone())
        .await
        .unwrap();
    assert_eq!(log.tree_size(), 5);
    let kept: Vec<String> = log
        .records(0, 5)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.exchange_id)
        .collect();
    assert_eq!(kept, (0..5).map(exchange_id).collect::<Vec<_>>());
    appends_and_reads_go_on(&log, &k, &before).await;
    drop(log);
    disk.unmount();
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

// ---------------------------------------------------------------------------------------
// PostgreSQL: a server of the test's own (SIMPUL_TEST_POSTGRES_BIN), restarted and stopped
// under the open log. The shared server of SIMPUL_TEST_POSTGRES_URL serves other tests.

/// The directory of PostgreSQL's server binaries (`initdb`, `pg_ctl`).
const PG_BIN_VAR: &str = "SIMPUL_TEST_POSTGRES_BIN";

/// A PostgreSQL server of one test's own: a cluster in a temporary directory owned by
/// `postgres` (the server refuses to run as root), trust authentication, TCP on 127.0.0.1
/// only, its socket in the directory. Stopped at once (`-m immediate`) when dropped, so a
/// failing test leaves no server behind.
struct PgServer {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl PgServer {
    /// `None` (the test says it is skipped) without the variable.
    fn start(test: &str) -> Option<PgServer> {
        let Some(bin) = std::env::var_os(PG_BIN_VAR) else {
            eprintln!("{test}: skipped: {PG_BIN_VAR} is not set");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let id = |flag| {
            must(std::process::Command::new("id").args([flag, "postgres"]))
                .trim()
                .parse::<u32>()
                .unwrap()
        };
        std::os::unix::fs::chown(dir.path(), Some(id("-u")), Some(id("-g"))).unwrap();
        // A port free now; the server takes it a moment later.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = PgServer {
            bin: bin.into(),
            dir,
            port,
        };
        must(server.as_postgres("initdb").args([
            "-D",
            &server.data(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]));
        server.ctl(&["start"]);
        Some(server)
    }

    /// `program` of the server's binaries, run as `postgres`.
    fn as_postgres(&self, program: &str) -> std::process::Command {
        let mut command = std::process::Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(std::path::Path::new(&self.bin).join(program));
        command
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// `pg_ctl <args>`, waiting until it is done; fails the test unless it succeeds.
    fn ctl(&self, args: &[&str]) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        must(
            self.as_postgres("pg_ctl")
                .args([
                    "-D",
                    &self.data(),
                    "-l",
                    &log,
                    "-w",
                    "-t",
                    "30",
                    "-o",
                    &options,
                ])
                .args(args),
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Already stopped is fine.
        let _ = self
            .as_postgres("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// What a run of appends came to.
#[derive(Default)]
struct Appended {
    /// The records reported durable, and when each was.
    durable: Vec<(AuditRecord, Instant)>,
    failed: Vec<AuditError>,
    /// The longest any append took.
    longest: Duration,
}

/// Appends from `tasks` tasks, each its own exchanges from `first`, until `stop` is set.
async fn appending_until(
    log: &AuditLog,
    tasks: u64,
    first: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Appended {
    let running: Vec<_> = (0..tasks)
        .map(|t| {
            let (log, stop) = (log.clone(), stop.clone());
            tokio::spawn(async move {
                let mut out = Appended::default();
                let mut n = first + t * 100_000;
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    let began = Instant::now();
                    let outcome = append(&log, n).await;
                    out.longest = out.longest.max(began.elapsed());
                    match outcome {
                        Ok(record) => out.durable.push((record, Instant::now())),
                        Err(e) => out.failed.push(e),
                    }
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                out
            })
        })
        .collect();
    let mut all = Appended::default();
    for task in running {
        let out = task.await.unwrap();
        all.durable.extend(out.durable);
        all.failed.extend(out.failed);
        all.longest = all.longest.max(out.longest);
    }
    all
}

/// The server is restarted (`pg_ctl restart -m fast`) with appends in flight, then stopped
/// and started again: appends fail closed while it is down, within a bound, and succeed
/// again on the same open log once it is back; no record reported durable is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_appends_fail_closed_while_the_server_restarts_or_is_down_then_go_on() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let test = "postgres_appends_fail_closed_while_the_server_restarts_or_is_down_then_go_on";
    let Some(server) = PgServer::start(test) else {
        return;
    };
    let files = tempfile::tempdir().unwrap();
    let k = key();
    let log = AuditLog::open(
        &config(server.url(), &files),
        files.path(),
        &id(KEMLU),
        k.clone(),
    )
    .await
    .unwrap();
    a_log_of(&log, 3).await;

    // A restart with appends in flight.
    let stop = Arc::new(AtomicBool::new(false));
    let appending = tokio::spawn({
        let (log, stop) = (log.clone(), stop.clone());
        async move { appending_until(&log, 4, 10_000, stop).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restarting = Instant::now();
    tokio::task::block_in_place(|| server.ctl(&["-m", "fast", "restart"]));
    let restarted = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Release);
    let run = appending.await.unwrap();
    let first_after = run
        .durable
        .iter()
        .map(|(_, at)| *at)
        .filter(|&at| at > restarted)
        .min();
    eprintln!(
        "measured: restart took {:?}; {} appends durable, {} failed ({}), the longest took \
         {:?}; the first success after the server was back came {:?} after",
        restarted - restarting,
        run.durable.len(),
        run.failed.len(),
        run.failed
            .first()
            .map_or(String::new(), ToString::to_string),
        run.longest,
        first_after.map(|t| t - restarted),
    );
    assert!(
        run.failed
            .iter()
            .all(|e| matches!(e, AuditError::NotDurable { .. })),
        "{:?}",
        run.failed
    );
    let first_after = first_after.expect("appends succeed after the restart");
    assert!(first_after - restarted < Duration::from_secs(2));
    assert!(
        run.longest < Duration::from_secs(11),
        "an append took {:?}",
        run.longest
    );
    let mut durable: Vec<AuditRecord> = run.durable.into_iter().map(|(r, _)| r).collect();

    // Stopped: appends fail closed, each within a bound, and so do reads.
    tokio::task::block_in_place(|| server.ctl(&["-m", "fast", "stop"]));
    let down = Instant::now();
    let pending: Vec<_> = (0..4u64)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move {
                let outcome = append(&log, 20_000 + i).await;
                (outcome, down.elapsed())
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for p in pending {
        let (outcome, took) = p.await.unwrap();
        let e = outcome.expect_err("no append is durable while the server is down");
        assert!(matches!(e, AuditError::NotDurable { .. }), "{e}");
        eprintln!("measured: an append failed {took:?} after the server stopped: {e}");
        slowest = slowest.max(took);
    }
    assert!(slowest < Duration::from_secs(11), "{slowest:?}");
    let reading = Instant::now();
    let e = log.records(0, 10).await.expect_err("no reads while down");
    eprintln!("measured: a read failed after {:?}: {e}", reading.elapsed());
    assert!(reading.elapsed() < Duration::from_secs(6));

    // Started again: the very next append succeeds, on the same open log.
    tokio::task::block_in_place(|| server.ctl(&["start"]));
    let up = Instant::now();
    let first = append(&log, 30_000)
        .await
        .unwrap_or_else(|e| panic!("the first append once the server is back: {e}"));
    eprintln!(
        "measured: the first append after the server was started took {:?}",
        up.elapsed()
    );
    assert!(up.elapsed() < Duration::from_secs(3), "{:?}", up.elapsed());
    durable.push(first);
    let before = log.sign_tree_head().await.unwrap();
    appends_and_reads_go_on(&log, &k, &before).await;

    // No record reported durable is missing, or different.
    let stored = log.records(0, log.tree_size()).await.unwrap();
    for record in &durable {
        assert_eq!(
            stored.get(usize::try_from(record.seq).unwrap()),
            Some(record),
            "a record reported durable"
        );
    }
}
