//! The audit log on real SQLite files, and on the real PostgreSQL when
//! `SIMPUL_TEST_POSTGRES_URL` names it: durable, gap-free group commits; tampering found by
//! `verify_export` with the first bad seq; proofs; evidence; reconcile; replicas sharing one
//! store.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use audit::merkle;
use audit::{
    AuditRecord, MAX_OVERLAP_GROUPS, OverlapFigures, ProofFailure, Role, SignedTreeHead,
    StoredEvidence, VerifyFailureKind, check_consistency_proof, check_proof_bundle, reconcile,
    verify_export,
};
use audit_store::{AuditConfig, AuditError, AuditLog, JOURNAL_KEEP_UP};
use contracts::canonical::{b64url, sha256, sha256_b64url};
use contracts::{Algorithm, SigningKey, VerifyingKey};
use serde_json::json;
use sqlx::Executor;

mod support {
    pub mod records;
}
use support::records::{DUKCAPIL, KEMLU, exchange, exchange_id, id};

fn key(member: &str) -> Arc<SigningKey> {
    Arc::new(SigningKey::generate(Algorithm::ES256, member).unwrap())
}

fn public(key: &SigningKey) -> VerifyingKey {
    key.verifying_key().unwrap()
}

// ---------------------------------------------------------------------------------------
// Stores: a real SQLite file, or a fresh schema of the real PostgreSQL.

const PG_VAR: &str = "SIMPUL_TEST_POSTGRES_URL";

enum Engine {
    Sqlite(PathBuf),
    Postgres { url: String, schema: String },
}

/// One test's store: what to put in `AuditConfig::store`, and a back door for tampering.
struct TestStore {
    dir: tempfile::TempDir,
    engine: Engine,
}

impl TestStore {
    fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/audit.db");
        TestStore {
            dir,
            engine: Engine::Sqlite(path),
        }
    }

    /// A fresh schema, or `None` (the test says it is skipped) without the variable.
    async fn postgres(test: &str) -> Option<TestStore> {
        let Ok(url) = std::env::var(PG_VAR) else {
            eprintln!("{test}: skipped: {PG_VAR} is not set");
            return None;
        };
        let schema = format!("audit_test_{}", uuid::Uuid::new_v4().simple());
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        pool.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .await
            .unwrap();
        pool.close().await;
        Some(TestStore {
            dir: tempfile::tempdir().unwrap(),
            engine: Engine::Postgres { url, schema },
        })
    }

    fn config(&self) -> AuditConfig {
        let store = match &self.engine {
            Engine::Sqlite(p) => p.display().to_string(),
            Engine::Postgres { url, schema } => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}options[search_path]={schema}")
            }
        };
        AuditConfig {
            store,
            secret_file: Some(self.dir.path().join("audit.secret").display().to_string()),
            batch_max: 64,
            ..AuditConfig::default()
        }
    }

    async fn open(&self, member: &str, key: &Arc<SigningKey>) -> AuditLog {
        AuditLog::open(&self.config(), self.dir.path(), &id(member), key.clone())
            .await
            .unwrap()
    }

    /// An SQLite store's journal directory of `member`'s log (`<file>.journal/<member>/`).
    fn journal_dir(&self, member: &str) -> PathBuf {
        let Engine::Sqlite(p) = &self.engine else {
            panic!("a PostgreSQL store has no journal");
        };
        let mut dir = p.clone().into_os_string();
        dir.push(".journal");
        PathBuf::from(dir).join(member.replace(':', "_"))
    }

    /// The segment files of `member`'s journal, by name.
    fn segments(&self, member: &str) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(self.journal_dir(member))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        out.sort();
        out
    }

    /// One number an SQL query on an SQLite store answers.
    async fn sqlite_count(&self, sql: &str) -> i64 {
        let Engine::Sqlite(p) = &self.engine else {
            panic!("an SQLite store");
        };
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", p.display()))
            .await
            .unwrap();
        let n = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    }

    /// Deletes an SQLite store's journal of `member`'s log (`<file>.journal/<member>/`), as
    /// an insider who rewrites the tables with the gateway stopped does too: its frames would
    /// otherwise put the records back.
    fn cut_journal(&self, member: &str) {
        if let Engine::Sqlite(_) = &self.engine {
            let dir = self.journal_dir(member);
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "seg") {
                    std::fs::remove_file(path).unwrap();
                }
            }
        }
    }

    /// Runs SQL on the store behind the gateway's back (`simpul_audit_*` tables).
    async fn tamper(&self, sql: &str) {
        match &self.engine {
            Engine::Sqlite(p) => {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", p.display()))
                    .await
                    .unwrap();
                pool.execute(sqlx::AssertSqlSafe(sql.to_owned()))
                    .await
                    .unwrap();
                pool.close().await;
            }
            Engine::Postgres { url, schema } => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                pool.execute(sqlx::AssertSqlSafe(format!(
                    "SET search_path TO {schema}; {sql}"
                )))
                .await
                .unwrap();
                pool.close().await;
            }
        }
    }

    async fn cleanup(self) {
        if let Engine::Postgres { url, schema } = &self.engine {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            pool.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

async fn export(log: &AuditLog) -> Vec<u8> {
    let mut out = Vec::new();
    log.export(&mut out).await.unwrap();
    out
}

// ---------------------------------------------------------------------------------------
// Scenarios, run on each engine.

/// 64 writers append at once: every append returns a distinct seq, the seqs are 0..n
/// without gaps, and after reopening the store every returned record reads back as it was.
async fn concurrent_appends_are_gap_free_and_durable(store: &TestStore) {
    let k = key(KEMLU);
    let log = store.open(KEMLU, &k).await;
    let (writers, each) = (64u64, 20u64);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..each {
                let n = w * each + i;
                got.push(
                    log.append(exchange(n, Role::Provider, KEMLU, DUKCAPIL), None)
                        .await
                        .unwrap(),
                );
            }
            got
        }));
    }
    let mut appended = Vec::new();
    for t in tasks {
        appended.extend(t.await.unwrap());
    }
    appended.sort_by_key(|r| r.seq);
    let n = writers * each;
    assert_eq!(
        appended.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>(),
        "seqs are gap-free"
    );
    assert_eq!(log.tree_size(), n);
    drop(log);

    let log = store.open(KEMLU, &k).await;
    assert_eq!(log.tree_size(), n);
    assert_eq!(
        log.records(0, n).await.unwrap(),
        appended,
        "every append is durable"
    );
    // Appends go on from where the log was.
    let next = log
        .append(exchange(n, Role::Consumer, KEMLU, DUKCAPIL), None)
        .await
        .unwrap();
    assert_eq!(next.seq, n);
    let head = log.sign_tree_head().await.unwrap();
    assert_eq!(head.tree_size, n + 1);
    verify_export(Cursor::new(export(&log).await), &public(&k)).unwrap();
}

/// A log of 40 records with heads signed at 20 and 40; its export verifies.
async fn forty(store: &TestStore, k: &Arc<SigningKey>) -> AuditLog {
    let log = store.open(KEMLU, k).await;
    for n in 0..40 {
        log.append(exchange(n, Role::Consumer, KEMLU, DUKCAPIL), None)
            .await
            .unwrap();
        if n == 19 || n == 39 {
            log.sign_tree_head().await.unwrap();
        }
    }
    let report = verify_export(Cursor::new(export(&log).await), &public(k)).unwrap();
    assert_eq!((report.records, report.verified_size), (40, 40));
    log
}

fn tree_head_of(line: &str) -> SignedTreeHead {
    match serde_json::from_str(line).unwrap() {
        audit::ExportLine::TreeHead(h) => h,
        other => panic!("not a tree head: {other:?}"),
    }
}

fn failure(log_export: Vec<u8>, k: &SigningKey) -> audit::VerifyFailure {
    verify_export(Cursor::new(log_export), &public(k)).expect_err("the export must not verify")
}

async fn an_altered_record_is_named(store: &TestStore) {
    let k = key(KEMLU);
    let log = forty(store, &k).await;
    store
        .tamper("UPDATE simpul_audit_records SET outcome = 'forbidden' WHERE seq = 25")
        .await;
    let f = failure(export(&log).await, &k);
    assert_eq!(f.first_bad_seq, Some(25), "{f}");
    assert!(
        matches!(
            f.kind,
            VerifyFailureKind::RootMismatch {
                tree_size: 40,
                exact: true,
                ..
            }
        ),
        "{f}"
    );

    // Rewriting the stored leaf hash as well hides which record it was, not that one was:
    // the altered record lies after the last head that verifies.
    let altered = log.records(25, 26).await.unwrap().remove(0);
    let leaf = merkle::leaf_hash(&altered).unwrap();
    let hex_leaf = hex(&leaf);
    let sql = match store.engine {
        Engine::Sqlite(_) => {
            format!("UPDATE simpul_audit_nodes SET hash = X'{hex_leaf}' WHERE node = 50")
        }
        Engine::Postgres { .. } => {
            format!("UPDATE simpul_audit_nodes SET hash = '\\x{hex_leaf}'::bytea WHERE node = 50")
        }
    };
    store.tamper(&sql).await;
    let f = failure(export(&log).await, &k);
    assert!(
        matches!(
            f.kind,
            VerifyFailureKind::RootMismatch {
                tree_size: 40,
                verified_size: 20,
                exact: false
            }
        ),
        "{f}"
    );
    assert_eq!(f.first_bad_seq, Some(20), "{f}");
}

async fn a_deleted_record_is_named(store: &TestStore) {
    let k = key(KEMLU);
    let log = forty(store, &k).await;
    store
        .tamper("DELETE FROM simpul_audit_records WHERE seq = 25")
        .await;
    let f = failure(export(&log).await, &k);
    assert_eq!(f.first_bad_seq, Some(25), "{f}");
    assert_eq!(
        f.kind,
        VerifyFailureKind::Sequence {
            expected: 25,
            found: 26
        }
    );
    // The last record deleted: the head signs more records than there are.
    store
        .tamper("DELETE FROM simpul_audit_records WHERE seq = 39")
        .await;
    // Close the gap: later records renumbered down (in two steps, so no two rows ever
    // share a key).
    store
        .tamper(
            "UPDATE simpul_audit_records SET seq = -seq WHERE seq > 25; \
             UPDATE simpul_audit_records SET seq = -seq - 1 WHERE seq < 0",
        )
        .await;
    let f = failure(export(&log).await, &k);
    assert_eq!(f.first_bad_seq, Some(25), "renumbered records: {f}");
}

async fn the_end_of_the_log_deleted_is_named(store: &TestStore) {
    let k = key(KEMLU);
    let log = forty(store, &k).await;
    store
        .tamper("DELETE FROM simpul_audit_records WHERE seq >= 38")
        .await;
    let f = failure(export(&log).await, &k);
    assert_eq!(f.first_bad_seq, Some(38), "{f}");
    assert_eq!(
        f.kind,
        VerifyFailureKind::ShorterThanHead {
            records: 38,
            tree_size: 40
        }
    );
}

async fn swapped_records_are_named(store: &TestStore) {
    let k = key(KEMLU);
    let log = forty(store, &k).await;
    // Two records swap places in the store (their seqs stay in order).
    store
        .tamper(&format!(
            "UPDATE simpul_audit_records SET exchange_id = CASE seq WHEN 3 THEN '{}' ELSE '{}' END \
             WHERE seq IN (3, 7)",
            exchange_id(7),
            exchange_id(3)
        ))
        .await;
    let f = failure(export(&log).await, &k);
    assert_eq!(f.first_bad_seq, Some(3), "{f}");
}

async fn a_forged_tree_head_is_refused(store: &TestStore) {
    let k = key(KEMLU);
    let log = forty(store, &k).await;
    let text = String::from_utf8(export(&log).await).unwrap();
    let last = text
        .lines()
        .rfind(|l| l.contains("\"tree_head\""))
        .unwrap()
        .to_owned();
    let genuine = tree_head_of(&last);
    let root = merkle::decode_hash(&genuine.root_hash).unwrap();

    // The same tree head signed by another key of the same member.
    let other = SigningKey::generate(Algorithm::ES256, KEMLU).unwrap();
    let forged = audit::tree_head::sign_tree_head(&other, 40, &root, genuine.timestamp).unwrap();
    let line = serde_json::to_string(&audit::ExportLine::TreeHead(forged.clone())).unwrap();
    let f = failure(text.replace(&last, &line).into_bytes(), &k);
    assert!(
        matches!(f.kind, VerifyFailureKind::TreeHead { tree_size: 40, .. }),
        "{f}"
    );
    assert!(f.to_string().contains("signed by"), "{f}");

    // …and with the genuine key's kid in its header: the signature fails.
    let genuine_header = genuine.jws.split('.').next().unwrap();
    let mut parts = forged.jws.split('.');
    let (_, payload, signature) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
    let relabelled = SignedTreeHead {
        jws: format!("{genuine_header}.{payload}.{signature}"),
        ..forged
    };
    let line = serde_json::to_string(&audit::ExportLine::TreeHead(relabelled)).unwrap();
    let f = failure(text.replace(&last, &line).into_bytes(), &k);
    assert!(
        matches!(f.kind, VerifyFailureKind::TreeHead { tree_size: 40, .. }),
        "{f}"
    );
    assert!(f.to_string().contains("signature"), "{f}");

    // The whole genuine export checked with another key.
    let f = failure(text.into_bytes(), &other);
    assert!(matches!(f.kind, VerifyFailureKind::TreeHead { .. }), "{f}");
}

async fn inclusion_and_consistency_proofs_verify_offline(store: &TestStore) {
    let k = key(KEMLU);
    let log = forty(store, &k).await;
    let bundle = log.prove(&exchange_id(10)).await.unwrap();
    assert_eq!(bundle.tree_head.tree_size, 40, "the latest head covers it");
    let report = check_proof_bundle(&bundle, &public(&k)).unwrap();
    assert_eq!(report.records.len(), 1);
    assert_eq!(report.records[0].seq, 10);

    // A record after the latest head: a fresh head is signed for it.
    log.append(exchange(40, Role::Consumer, KEMLU, DUKCAPIL), None)
        .await
        .unwrap();
    let fresh = log.prove(&exchange_id(40)).await.unwrap();
    assert_eq!(fresh.tree_head.tree_size, 41);
    check_proof_bundle(&fresh, &public(&k)).unwrap();
    // Against an explicit earlier size.
    let at20 = log
        .inclusion_proof(&exchange_id(10), Some(20))
        .await
        .unwrap();
    assert_eq!(at20[0].tree_size, 20);
    assert!(matches!(
        log.inclusion_proof(&exchange_id(30), Some(20)).await,
        Err(AuditError::OutOfRange(_))
    ));
    assert!(
        log.inclusion_proof("no-such-exchange", None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        log.prove("no-such-exchange").await,
        Err(AuditError::UnknownExchange(_))
    ));

    // Tampered bundles fail: the record, the path, the head's key.
    let mut tampered = bundle.clone();
    tampered.proofs[0].record.outcome = "forbidden".into();
    assert!(matches!(
        check_proof_bundle(&tampered, &public(&k)),
        Err(ProofFailure::LeafMismatch { seq: 10 })
    ));
    let mut tampered = bundle.clone();
    tampered.proofs[0].path.swap(0, 1);
    assert!(matches!(
        check_proof_bundle(&tampered, &public(&k)),
        Err(ProofFailure::Path { seq: 10, .. })
    ));
    let other = SigningKey::generate(Algorithm::ES256, KEMLU).unwrap();
    assert!(matches!(
        check_proof_bundle(&bundle, &public(&other)),
        Err(ProofFailure::TreeHead(_))
    ));
    // A record altered in the store cannot be proven.
    store
        .tamper("UPDATE simpul_audit_records SET purpose = 'curiosity' WHERE seq = 10")
        .await;
    let from_store = log.prove(&exchange_id(10)).await.unwrap();
    assert!(matches!(
        check_proof_bundle(&from_store, &public(&k)),
        Err(ProofFailure::LeafMismatch { seq: 10 })
    ));

    // Consistency between the heads of size 20 and 41.
    let text = String::from_utf8(export(&log).await).unwrap();
    let heads: Vec<SignedTreeHead> = text
        .lines()
        .filter(|l| l.contains("\"tree_head\""))
        .map(tree_head_of)
        .collect();
    let root_of = |size: u64| {
        let h = heads.iter().find(|h| h.tree_size == size).unwrap();
        audit::verify_tree_head(h, &public(&k)).unwrap().1
    };
    for (first, second) in [(20, 41), (20, 40), (40, 41), (41, 41)] {
        let proof = log.consistency_proof(first, second).await.unwrap();
        check_consistency_proof(&proof, &root_of(first), &root_of(second)).unwrap();
    }
    let proof = log.consistency_proof(20, 41).await.unwrap();
    assert!(check_consistency_proof(&proof, &root_of(40), &root_of(41)).is_err());
    assert!(matches!(
        log.consistency_proof(20, 42).await,
        Err(AuditError::OutOfRange(_))
    ));
}

async fn evidence_is_kept_and_checked(store: &TestStore) {
    let k = key(KEMLU);
    let log = store.open(KEMLU, &k).await;
    let mut rec = exchange(1, Role::Consumer, KEMLU, DUKCAPIL);
    let request = "eyJhbGciOiJFUzI1NiJ9.e30.c2ln".to_owned();
    let answer = "eyJhbGciOiJFUzI1NiJ9.e30.YW5zd2Vy".to_owned();
    rec.request_hash = Some(sha256_b64url(request.as_bytes()));
    rec.response_hash = Some(sha256_b64url(answer.as_bytes()));
    let evidence = StoredEvidence {
        exchange_id: rec.exchange_id.clone(),
        request: request.clone(),
        response: Some(answer),
    };
    log.append(rec.clone(), Some(evidence.clone()))
        .await
        .unwrap();
    assert_eq!(
        log.evidence(&rec.exchange_id).await.unwrap(),
        vec![evidence.clone()]
    );
    // An SQLite store made before 2026-12-04 has an index of the evidence's own exchange
    // ids: the next open drops it (so creating it again succeeds), and evidence is still
    // found by exchange id, through the records. (PostgreSQL keeps it.)
    let log = if matches!(store.engine, Engine::Sqlite(_)) {
        const OLD_INDEX: &str = "CREATE INDEX simpul_audit_evidence_exchange
            ON simpul_audit_evidence (log, exchange_id)";
        drop(log);
        store.tamper(OLD_INDEX).await;
        let log = store.open(KEMLU, &k).await;
        assert_eq!(
            log.evidence(&rec.exchange_id).await.unwrap(),
            vec![evidence.clone()]
        );
        store.tamper(OLD_INDEX).await;
        store
            .tamper("DROP INDEX simpul_audit_evidence_exchange")
            .await;
        log
    } else {
        log
    };
    // Evidence whose envelopes do not hash to the record's hashes is refused.
    let wrong = StoredEvidence {
        request: "something else".into(),
        ..evidence.clone()
    };
    assert!(matches!(
        log.append(rec.clone(), Some(wrong)).await,
        Err(AuditError::Evidence { .. })
    ));
    // Past the retention the envelopes go; the record stays. SQLite keeps them in its
    // journal's segments, which go whole once their newest record is past it.
    let sqlite = matches!(store.engine, Engine::Sqlite(_));
    if sqlite {
        assert_eq!(
            store
                .sqlite_count("SELECT COUNT(*) FROM simpul_audit_evidence")
                .await,
            0,
            "no evidence row: the journal keeps it"
        );
        assert_eq!(
            store
                .sqlite_count("SELECT COUNT(*) FROM simpul_audit_segments")
                .await,
            1
        );
        store
            .tamper("UPDATE simpul_audit_segments SET newest_ts = newest_ts - 7862400000")
            .await;
    } else {
        store
            .tamper("UPDATE simpul_audit_evidence SET ts = ts - 7862400000")
            .await;
    }
    drop(log);
    let log = store.open(KEMLU, &k).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !log.evidence(&rec.exchange_id).await.unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "old evidence was not deleted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(log.records(0, 10).await.unwrap().len(), 1);
    if sqlite {
        // The segment is deleted, not merely forgotten; the tables say so.
        let segments = store.segments(KEMLU);
        assert!(
            !segments
                .iter()
                .any(|p| p.ends_with("00000000000000000000.seg")),
            "{segments:?}"
        );
        assert_eq!(
            store
                .sqlite_count(
                    "SELECT COUNT(*) FROM simpul_audit_segments WHERE deleted_at IS NOT NULL"
                )
                .await,
            1
        );
    }
    log.sign_tree_head().await.unwrap();
    let report = verify_export(Cursor::new(export(&log).await), &public(&k)).unwrap();
    assert_eq!((report.records, report.verified_size), (1, 1));
}

/// Exchange `n`'s record and evidence whose envelopes hash to it.
fn with_evidence(n: u64) -> (audit::NewRecord, StoredEvidence) {
    let mut rec = exchange(n, Role::Provider, KEMLU, DUKCAPIL);
    let request = format!(
        "eyJhbGciOiJFUzI1NiJ9.e30.{}",
        b64url(format!("request {n}").as_bytes())
    );
    let answer = format!(
        "eyJhbGciOiJFUzI1NiJ9.e30.{}",
        b64url(format!("answer {n}").as_bytes())
    );
    rec.request_hash = Some(sha256_b64url(request.as_bytes()));
    rec.response_hash = Some(sha256_b64url(answer.as_bytes()));
    let ev = StoredEvidence {
        exchange_id: rec.exchange_id.clone(),
        request,
        response: Some(answer),
    };
    (rec, ev)
}

/// An SQLite store keeps evidence in its journal's segments, not in a table: found right
/// after the append, once the tables hold the record, after a restart, and after the
/// segment it was written in was closed and another begun.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_evidence_is_read_from_the_journal_segment_its_record_points_to() {
    let store = TestStore::sqlite();
    let k = key(KEMLU);
    let log = store.open(KEMLU, &k).await;
    let mut kept = Vec::new();
    for n in 0..20 {
        let (rec, ev) = with_evidence(n);
        // Every other record without evidence: the rest must not shift.
        let ev = (n % 2 == 0).then_some(ev);
        log.append(rec, ev.clone()).await.unwrap();
        kept.push(ev);
    }
    // Read while the segment is still being written.
    for (n, ev) in kept.iter().enumerate() {
        let found = log.evidence(&exchange_id(n as u64)).await.unwrap();
        assert_eq!(
            found,
            ev.iter().cloned().collect::<Vec<_>>(),
            "exchange {n}"
        );
    }
    assert!(log.settle(Duration::from_secs(5)).await);
    assert_eq!(
        store
            .sqlite_count("SELECT COUNT(*) FROM simpul_audit_evidence")
            .await,
        0
    );
    assert_eq!(
        store
            .sqlite_count(
                "SELECT COUNT(*) FROM simpul_audit_records WHERE evidence_segment IS NOT NULL"
            )
            .await,
        10
    );
    assert_eq!(
        store
            .sqlite_count("SELECT evidence FROM simpul_audit_segments")
            .await,
        10
    );
    // After a restart: the segment is kept (cut after its last frame), a new one begun.
    drop(log);
    let log = store.open(KEMLU, &k).await;
    let segments = store.segments(KEMLU);
    assert_eq!(segments.len(), 2, "{segments:?}");
    let end = store
        .sqlite_count("SELECT end_offset FROM simpul_audit_segments")
        .await;
    assert_eq!(segments[0].metadata().unwrap().len(), end as u64);
    for n in 20..30 {
        let (rec, ev) = with_evidence(n);
        log.append(rec, Some(ev.clone())).await.unwrap();
        kept.push(Some(ev));
    }
    for (n, ev) in kept.iter().enumerate() {
        let found = log.evidence(&exchange_id(n as u64)).await.unwrap();
        assert_eq!(
            found,
            ev.iter().cloned().collect::<Vec<_>>(),
            "exchange {n}"
        );
    }
    // Reopened straight after appends: what the tables had not taken yet is written from
    // the journal's frames, with their places.
    for n in 30..40 {
        let (rec, ev) = with_evidence(n);
        log.append(rec, Some(ev.clone())).await.unwrap();
        kept.push(Some(ev));
    }
    drop(log);
    let log = store.open(KEMLU, &k).await;
    for (n, ev) in kept.iter().enumerate() {
        let found = log.evidence(&exchange_id(n as u64)).await.unwrap();
        assert_eq!(
            found,
            ev.iter().cloned().collect::<Vec<_>>(),
            "exchange {n}"
        );
    }
}

/// An SQLite store made before its journal kept evidence has it in `simpul_audit_evidence`:
/// still found there, with no migration at open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_evidence_of_a_store_made_before_is_still_found_in_its_table() {
    let store = TestStore::sqlite();
    let k = key(KEMLU);
    let log = store.open(KEMLU, &k).await;
    let (rec, ev) = with_evidence(1);
    log.append(rec.clone(), None).await.unwrap();
    let (newer, newer_ev) = with_evidence(2);
    log.append(newer, Some(newer_ev.clone())).await.unwrap();
    assert!(log.settle(Duration::from_secs(5)).await);
    drop(log);
    // As the old indexer wrote it (envelopes from before sealing are served as stored).
    store
        .tamper(&format!(
            "INSERT INTO simpul_audit_evidence (log, seq, exchange_id, ts, request, response)
             VALUES ('{KEMLU}', 0, '{}', 0, '{}', '{}')",
            ev.exchange_id,
            ev.request,
            ev.response.clone().unwrap()
        ))
        .await;
    let log = store.open(KEMLU, &k).await;
    assert_eq!(log.evidence(&rec.exchange_id).await.unwrap(), [ev]);
    assert_eq!(log.evidence(&exchange_id(2)).await.unwrap(), [newer_ev]);
}

/// A segment altered or deleted behind the gateway's back: reading the evidence in it is
/// refused with an error naming the segment, the offset and the exchange, never answered
/// with what happens to be there; the records and their tree are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_evidence_in_a_damaged_or_deleted_segment_is_refused_by_name() {
    use std::os::unix::fs::FileExt;
    let store = TestStore::sqlite();
    let k = key(KEMLU);
    let log = store.open(KEMLU, &k).await;
    for n in 0..3 {
        let (rec, ev) = with_evidence(n);
        log.append(rec, Some(ev)).await.unwrap();
    }
    assert!(log.settle(Duration::from_secs(5)).await);
    let segment = store.segments(KEMLU).pop().unwrap();
    let offset = store
        .sqlite_count("SELECT evidence_offset FROM simpul_audit_records WHERE seq = 1")
        .await as u64;
    // One byte of the frame's body altered under the running gateway.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&segment)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset + 40).unwrap();
    file.write_all_at(&[byte[0] ^ 1], offset + 40).unwrap();
    let e = log.evidence(&exchange_id(1)).await.unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, AuditError::Corrupt { seq: Some(1), .. }),
        "{text}"
    );
    for part in [
        segment.display().to_string(),
        format!("offset {offset}"),
        exchange_id(1),
        "checksum fails".into(),
    ] {
        assert!(text.contains(&part), "{part} not in {text}");
    }
    // The log goes on: appends, records and the export are not the evidence.
    let (rec, ev) = with_evidence(3);
    log.append(rec, Some(ev.clone())).await.unwrap();
    assert_eq!(log.records(0, 10).await.unwrap().len(), 4);
    // Restarted on the altered segment: still refused.
    drop(log);
    let log = store.open(KEMLU, &k).await;
    let e = log.evidence(&exchange_id(1)).await.unwrap_err();
    assert!(e.to_string().contains("checksum fails"), "{e}");
    // A frame whose length was rewritten to more than the file holds: refused before
    // anything is allocated for it.
    file.write_all_at(&0xFFFF_FFF0u32.to_le_bytes(), offset + 4)
        .unwrap();
    let e = log.evidence(&exchange_id(1)).await.unwrap_err();
    assert!(e.to_string().contains("length runs past the end"), "{e}");
    // Deleted: refused as missing (the retention marks what it deletes; this was not it).
    std::fs::remove_file(&segment).unwrap();
    let e = log.evidence(&exchange_id(2)).await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("is missing"), "{text}");
    assert!(text.contains(&segment.display().to_string()), "{text}");
    assert!(text.contains(&exchange_id(2)), "{text}");
    drop(log);
    let log = store.open(KEMLU, &k).await;
    assert!(
        log.evidence(&exchange_id(2))
            .await
            .unwrap_err()
            .to_string()
            .contains("is missing")
    );
    log.sign_tree_head().await.unwrap();
    let report = verify_export(Cursor::new(export(&log).await), &public(&k)).unwrap();
    assert_eq!((report.records, report.verified_size), (4, 4));
}

/// The envelopes kept as evidence are sealed: the store's file and its WAL hold neither
/// the envelope nor the identifier in it; the log opens them with its evidence key, and a
/// log given another key refuses to pretend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_is_sealed_at_rest() {
    let store = TestStore::sqlite();
    let k = key(KEMLU);
    let log = store.open(KEMLU, &k).await;
    let nik = "3171011701900001";
    let mut rec = exchange(1, Role::Provider, KEMLU, DUKCAPIL);
    let request = format!("eyJhbGciOiJFUzI1NiJ9.{{\"nik\":\"{nik}\"}}.c2ln");
    rec.request_hash = Some(sha256_b64url(request.as_bytes()));
    rec.response_hash = None;
    let evidence = StoredEvidence {
        exchange_id: rec.exchange_id.clone(),
        request,
        response: None,
    };
    log.append(rec.clone(), Some(evidence.clone()))
        .await
        .unwrap();
    assert_eq!(
        log.evidence(&rec.exchange_id).await.unwrap(),
        vec![evidence.clone()]
    );

    let Engine::Sqlite(db) = &store.engine else {
        unreachable!()
    };
    let mut scanned = 0;
    // The journal's segments keep the evidence: sealed there too.
    let files = [db.clone(), db.with_extension("db-wal")]
        .into_iter()
        .chain(store.segments(KEMLU));
    for file in files {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        scanned += bytes.len();
        assert!(
            !bytes.windows(nik.len()).any(|w| w == nik.as_bytes()),
            "the NIK in clear in {}",
            file.display()
        );
    }
    assert!(scanned > 0);

    drop(log);
    let mut other = store.config();
    other.evidence_key_file = Some(store.dir.path().join("other.key").display().to_string());
    let log = AuditLog::open(&other, store.dir.path(), &id(KEMLU), k)
        .await
        .unwrap();
    let e = log.evidence(&rec.exchange_id).await.unwrap_err();
    assert!(matches!(e, AuditError::Evidence { .. }), "{e}");
    assert!(e.to_string().contains("does not open"), "{e}");
}

/// A secret file its group or others can read is refused, as ssh refuses such a key.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let store = TestStore::sqlite();
    let k = key(KEMLU);
    drop(store.open(KEMLU, &k).await);
    let secret = store.dir.path().join("audit.secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = AuditLog::open(&store.config(), store.dir.path(), &id(KEMLU), k)
        .await
        .unwrap_err();
    assert!(matches!(e, AuditError::Secret { .. }), "{e}");
    assert!(e.to_string().contains("chmod 600"), "{e}");
}

async fn reconcile_finds_an_exchange_deleted_from_one_side(a: &TestStore, b: &TestStore) {
    let (ka, kb) = (key(KEMLU), key(DUKCAPIL));
    let (kemlu, dukcapil) = (a.open(KEMLU, &ka).await, b.open(DUKCAPIL, &kb).await);
    for n in 0..10 {
        kemlu
            .append(exchange(n, Role::Consumer, KEMLU, DUKCAPIL), None)
            .await
            .unwrap();
        dukcapil
            .append(exchange(n, Role::Provider, DUKCAPIL, KEMLU), None)
            .await
            .unwrap();
    }
    // Dukcapil asks Kemlu once; Kemlu asks a third member once (not Dukcapil's business).
    kemlu
        .append(exchange(50, Role::Provider, KEMLU, DUKCAPIL), None)
        .await
        .unwrap();
    dukcapil
        .append(exchange(50, Role::Consumer, DUKCAPIL, KEMLU), None)
        .await
        .unwrap();
    kemlu
        .append(exchange(60, Role::Consumer, KEMLU, "ID:GOV:BP2MI"), None)
        .await
        .unwrap();
    let clean = reconcile(
        Cursor::new(export(&kemlu).await),
        Cursor::new(export(&dukcapil).await),
        None,
        None,
    )
    .unwrap();
    assert!(clean.is_clean(), "{clean:?}");
    assert_eq!(clean.matched, 11);

    // Dukcapil's record of exchange 4 is deleted; it disagrees on the outcome of 7.
    b.tamper(&format!(
        "DELETE FROM simpul_audit_records WHERE exchange_id = '{}'",
        exchange_id(4)
    ))
    .await;
    b.tamper(&format!(
        "UPDATE simpul_audit_records SET outcome = 'not-found' WHERE exchange_id = '{}'",
        exchange_id(7)
    ))
    .await;
    let report = reconcile(
        Cursor::new(export(&kemlu).await),
        Cursor::new(export(&dukcapil).await),
        None,
        None,
    )
    .unwrap();
    assert!(!report.is_clean());
    assert_eq!(
        report
            .only_in_a
            .iter()
            .map(|r| r.exchange_id.clone())
            .collect::<Vec<_>>(),
        vec![exchange_id(4)]
    );
    assert!(report.only_in_b.is_empty());
    assert_eq!(report.disagreements.len(), 1);
    assert_eq!(report.disagreements[0].exchange_id, exchange_id(7));
    assert_eq!(report.disagreements[0].fields, vec!["outcome".to_owned()]);
    // The other way round, B's view.
    let swapped = reconcile(
        Cursor::new(export(&dukcapil).await),
        Cursor::new(export(&kemlu).await),
        None,
        None,
    )
    .unwrap();
    assert_eq!(swapped.only_in_b.len(), 1);
    // A window that ends before every record is clean.
    let before = reconcile(
        Cursor::new(export(&kemlu).await),
        Cursor::new(export(&dukcapil).await),
        Some(0),
        Some(1),
    )
    .unwrap();
    assert!(before.is_clean());
    assert_eq!(before.matched, 0);
}

// ---------------------------------------------------------------------------------------
// SQLite.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_appends_are_gap_free_and_durable() {
    concurrent_appends_are_gap_free_and_durable(&TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_altered_record_is_named_by_its_seq() {
    an_altered_record_is_named(&TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_deleted_record_is_named_by_its_seq() {
    a_deleted_record_is_named(&TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_records_deleted_at_the_end_are_named() {
    the_end_of_the_log_deleted_is_named(&TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_swapped_records_are_named() {
    swapped_records_are_named(&TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_tree_head_signed_by_another_key_is_refused() {
    a_forged_tree_head_is_refused(&TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_proofs_verify_offline_and_fail_for_tampered_records() {
    inclusion_and_consistency_proofs_verify_offline(&TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_evidence_is_kept_checked_and_expires() {
    evidence_is_kept_and_checked(&TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reconcile_finds_an_exchange_deleted_from_one_side() {
    reconcile_finds_an_exchange_deleted_from_one_side(&TestStore::sqlite(), &TestStore::sqlite())
        .await;
}

/// The held manifest serial: only ever raised, kept per member log, there after a restart.
async fn the_held_manifest_serial_only_rises_and_outlives_the_process(store: &TestStore) {
    let k = key(KEMLU);
    let log = store.open(KEMLU, &k).await;
    assert_eq!(log.held_manifest_serial().await.unwrap(), None);
    log.hold_manifest_serial(3, 1).await.unwrap();
    log.hold_manifest_serial(2, 2).await.unwrap();
    assert_eq!(log.held_manifest_serial().await.unwrap(), Some(3));
    log.hold_manifest_serial(5, 3).await.unwrap();
    drop(log);
    let log = store.open(KEMLU, &k).await;
    assert_eq!(log.held_manifest_serial().await.unwrap(), Some(5));
    // Another member's log in the same store holds its own.
    let other = store.open(DUKCAPIL, &key(DUKCAPIL)).await;
    assert_eq!(other.held_manifest_serial().await.unwrap(), None);
}

/// A signing key rotated at run time signs the next heads, and the log reopens under it.
async fn a_rotated_key_signs_the_next_tree_heads(store: &TestStore) {
    let k = key(KEMLU);
    let log = forty(store, &k).await;
    let next = key(KEMLU);
    log.set_signing_key(next.clone());
    log.append(exchange(40, Role::Consumer, KEMLU, DUKCAPIL), None)
        .await
        .unwrap();
    let head = log.sign_tree_head().await.unwrap();
    assert_eq!(head.tree_size, 41);
    audit::tree_head::verify_tree_head(&head, &public(&next)).unwrap();
    assert!(audit::tree_head::verify_tree_head(&head, &public(&k)).is_err());
    drop(log);
    let log = store.open(KEMLU, &next).await;
    assert_eq!(log.tree_size(), 41);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_held_manifest_serial_only_rises_and_outlives_the_process() {
    the_held_manifest_serial_only_rises_and_outlives_the_process(&TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_held_manifest_serial_only_rises_and_outlives_the_process() {
    let name = "postgres_the_held_manifest_serial_only_rises_and_outlives_the_process";
    let Some(store) = TestStore::postgres(name).await else {
        return;
    };
    the_held_manifest_serial_only_rises_and_outlives_the_process(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_rotated_key_signs_the_next_tree_heads() {
    a_rotated_key_signs_the_next_tree_heads(&TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_is_in_wal_mode() {
    let store = TestStore::sqlite();
    let k = key(KEMLU);
    let _log = store.open(KEMLU, &k).await;
    let Engine::Sqlite(path) = &store.engine else {
        unreachable!()
    };
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reordered_export_is_named() {
    let store = TestStore::sqlite();
    let k = key(KEMLU);
    let log = forty(&store, &k).await;
    let text = String::from_utf8(export(&log).await).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let at = |seq: u64| {
        lines
            .iter()
            .position(|l| l.contains(&format!("\"seq\":{seq},")))
            .unwrap()
    };
    let (i, j) = (at(3), at(7));
    lines.swap(i, j);
    let f = failure(lines.join("\n").into_bytes(), &k);
    assert_eq!(f.first_bad_seq, Some(3), "{f}");
    assert_eq!(
        f.kind,
        VerifyFailureKind::Sequence {
            expected: 3,
            found: 7
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_is_a_keyed_hash_that_survives_a_restart() {
    let store = TestStore::sqlite();
    let k = key(KEMLU);
    let log = store.open(KEMLU, &k).await;
    let nik = json!("3171234567890001");
    let s = log.subject(std::slice::from_ref(&nik)).unwrap();
    assert!(!s.contains("3171234567890001"));
    assert_eq!(s.len(), 43, "base64url of 32 bytes");
    assert_ne!(log.subject(&[json!("3171234567890002")]), Some(s.clone()));
    assert_eq!(log.subject(&[]), None);
    // Not a plain hash of the values: the secret matters.
    assert_ne!(s, b64url(&sha256(b"[\"3171234567890001\"]")));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store.dir.path().join("audit.secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    drop(log);
    let log = store.open(KEMLU, &k).await;
    assert_eq!(log.subject(&[nik]), Some(s), "same secret after a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_made_before_lookup_ids_gains_the_column_and_still_verifies() {
    let store = TestStore::sqlite();
    let k = key(KEMLU);
    let log = store.open(KEMLU, &k).await;
    for n in 0..3 {
        log.append(exchange(n, Role::Consumer, KEMLU, DUKCAPIL), None)
            .await
            .unwrap();
    }
    drop(log);
    // The records table as it was before `lookup_id` existed.
    store
        .tamper("ALTER TABLE simpul_audit_records DROP COLUMN lookup_id")
        .await;
    let log = store.open(KEMLU, &k).await;
    let mut part = exchange(3, Role::Consumer, KEMLU, DUKCAPIL);
    part.lookup_id = Some("00000000-0000-4000-8000-0000000000aa".into());
    log.append(part, None).await.unwrap();
    log.sign_tree_head().await.unwrap();
    let text = export(&log).await;
    let report = verify_export(Cursor::new(text.clone()), &public(&k)).unwrap();
    assert_eq!(report.records, 4);
    let lines = String::from_utf8(text).unwrap();
    // Absent, not null, on records that are not parts of a lookup.
    assert_eq!(lines.matches("lookup_id").count(), 1, "{lines}");
}

/// An aggregate of refusals before authentication is a record like any other: it is
/// stored, read back and proven whole, and a store made before aggregates existed gains
/// their columns; records that are not aggregates keep their canonical bytes.
async fn aggregates_are_kept_and_old_stores_gain_their_columns(store: &TestStore) {
    let k = key(DUKCAPIL);
    let log = store.open(DUKCAPIL, &k).await;
    for n in 0..2 {
        log.append(exchange(n, Role::Provider, DUKCAPIL, KEMLU), None)
            .await
            .unwrap();
    }
    drop(log);
    // The records table as it was before aggregates existed.
    store
        .tamper(
            "ALTER TABLE simpul_audit_records DROP COLUMN aggregate_minute; \
             ALTER TABLE simpul_audit_records DROP COLUMN aggregate_count; \
             ALTER TABLE simpul_audit_records DROP COLUMN aggregate_bytes",
        )
        .await;
    let log = store.open(DUKCAPIL, &k).await;
    let aggregate = audit::Aggregate {
        minute: 1_795_458_780_000,
        count: 312,
        body_bytes: 1_248_000,
    };
    let mut refusals = exchange(2, Role::Provider, DUKCAPIL, KEMLU);
    refusals.exchange_id = String::new();
    refusals.purpose = String::new();
    refusals.request_hash = None;
    refusals.response_hash = None;
    refusals.outcome = "malformed".into();
    refusals.aggregate = Some(aggregate);
    let appended = log.append(refusals, None).await.unwrap();
    assert_eq!(appended.aggregate, Some(aggregate));
    log.sign_tree_head().await.unwrap();
    let read = log.records(0, 3).await.unwrap();
    assert_eq!(read[2], appended);
    assert_eq!(read[0].aggregate, None);
    let text = export(&log).await;
    let report = verify_export(Cursor::new(text.clone()), &public(&k)).unwrap();
    assert_eq!(report.records, 3);
    let lines = String::from_utf8(text).unwrap();
    // Absent, not null, on the records of single exchanges.
    assert_eq!(lines.matches("\"aggregate\"").count(), 1, "{lines}");
    assert!(
        lines.contains(
            "\"aggregate\":{\"minute\":1795458780000,\"count\":312,\"body_bytes\":1248000}"
        ),
        "{lines}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_aggregates_are_kept_and_old_stores_gain_their_columns() {
    aggregates_are_kept_and_old_stores_gain_their_columns(&TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_aggregates_are_kept_and_old_stores_gain_their_columns() {
    let test = "postgres_aggregates_are_kept_and_old_stores_gain_their_columns";
    let Some(store) = TestStore::postgres(test).await else {
        return;
    };
    aggregates_are_kept_and_old_stores_gain_their_columns(&store).await;
    store.cleanup().await;
}

// ---------------------------------------------------------------------------------------
// Item subjects: a batch exchange's record found in each of its people's history.

/// The NIK of made-up person `n`.
fn nik(n: u64) -> serde_json::Value {
    json!(format!("3171{n:012}"))
}

/// A provider's record of exchange `n`, of `citizenship.status`, about person `person`.
fn about_one(log: &AuditLog, n: u64, person: u64) -> audit::NewRecord {
    let mut record = exchange(n, Role::Provider, DUKCAPIL, KEMLU);
    record.subject = log.subject(&[nik(person)]);
    record
}

/// A provider's record of exchange `n`, of the batch contract `identity.verify`, about
/// `people` (one item each, in this order).
fn about_many(log: &AuditLog, n: u64, people: &[u64]) -> audit::NewRecord {
    let mut record = exchange(n, Role::Provider, DUKCAPIL, KEMLU);
    record.contract = "identity.verify".into();
    record.subject = None;
    let items: Vec<Vec<serde_json::Value>> = people.iter().map(|p| vec![nik(*p)]).collect();
    record.subjects = log.subjects(&items);
    record
}

/// The seqs of person `person`'s history, every proof checked against the head returned.
async fn history(log: &AuditLog, k: &SigningKey, person: u64) -> Vec<u64> {
    let (head, proofs) = log.subject_history(&[nik(person)]).await.unwrap();
    if proofs.is_empty() {
        return Vec::new();
    }
    let (_, root) = audit::verify_tree_head(&head.unwrap(), &public(k)).unwrap();
    for p in &proofs {
        audit::check_inclusion_proof(p, &root).unwrap();
    }
    proofs.iter().map(|p| p.seq).collect()
}

/// A batch exchange's record holds the subject of each of its people — the same subject an
/// exchange about that person alone carries — sorted and distinct; a person's history finds
/// it beside their single exchanges, before and after the store is reopened, and the export
/// holding it verifies offline.
async fn a_batch_records_item_subjects_find_it_in_each_persons_history(store: &TestStore) {
    let k = key(DUKCAPIL);
    let log = store.open(DUKCAPIL, &k).await;
    // Items without personal data name nobody.
    assert_eq!(log.subjects(&[vec![], vec![]]), None);
    assert_eq!(log.subjects(&[]), None);
    assert_eq!(
        log.subjects(&[vec![nik(1)], vec![]]),
        Some(vec![log.subject(&[nik(1)]).unwrap()])
    );

    let mut appended = Vec::new();
    for record in [
        about_one(&log, 0, 1),
        about_one(&log, 1, 9),
        // Person 1 twice: one subject.
        about_many(&log, 2, &[3, 1, 2, 1]),
        // A full batch of 1,000: person 2 and 999 others.
        about_many(
            &log,
            3,
            &std::iter::once(2).chain(1_000..1_999).collect::<Vec<_>>(),
        ),
        about_one(&log, 4, 2),
    ] {
        appended.push(log.append(record, None).await.unwrap());
    }

    let batch = &appended[2];
    assert_eq!(batch.subject, None);
    let mut each: Vec<String> = [1, 2, 3]
        .iter()
        .map(|p| log.subject(&[nik(*p)]).unwrap())
        .collect();
    each.sort();
    assert_eq!(batch.subjects.as_ref(), Some(&each), "sorted and distinct");
    assert_eq!(appended[3].subjects.as_ref().map(Vec::len), Some(1_000));
    assert_eq!(appended[0].subjects, None);
    assert_eq!(
        appended[0].subject.as_ref(),
        Some(&log.subject(&[nik(1)]).unwrap())
    );

    holds_the_batch_histories(&log, &k, &records(&appended)).await;
    drop(log);
    let log = store.open(DUKCAPIL, &k).await;
    holds_the_batch_histories(&log, &k, &records(&appended)).await;
    let bundle = log.prove(&exchange_id(3)).await.unwrap();
    check_proof_bundle(&bundle, &public(&k)).unwrap();
    assert_eq!(bundle.proofs[0].record, appended[3]);
}

/// What [`a_batch_records_item_subjects_find_it_in_each_persons_history`] appended, found
/// in each person's history, read back exactly, and exported in a log that verifies.
/// Copies of what appends made durable, to hold beside what the log reads back.
fn records(appended: &[audit_store::Committed]) -> Vec<AuditRecord> {
    appended
        .iter()
        .map(audit_store::Committed::to_record)
        .collect()
}

async fn holds_the_batch_histories(log: &AuditLog, k: &SigningKey, appended: &[AuditRecord]) {
    assert_eq!(history(log, k, 1).await, [0, 2]);
    assert_eq!(history(log, k, 2).await, [2, 3, 4]);
    assert_eq!(history(log, k, 3).await, [2]);
    assert_eq!(history(log, k, 9).await, [1]);
    assert_eq!(history(log, k, 1_500).await, [3]);
    assert_eq!(history(log, k, 77).await, Vec::<u64>::new());
    // Read back exactly as appended, so every leaf hash recomputes.
    assert_eq!(log.records(0, 5).await.unwrap(), appended);
    let text = export(log).await;
    let report = verify_export(Cursor::new(text.clone()), &public(k)).unwrap();
    assert_eq!((report.records, report.verified_size), (5, 5));
    let lines = String::from_utf8(text).unwrap();
    // Absent, not null, on the records that are not of batches.
    assert_eq!(lines.matches("\"subjects\"").count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_batch_records_item_subjects_find_it_in_each_persons_history() {
    a_batch_records_item_subjects_find_it_in_each_persons_history(&TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_batch_records_item_subjects_find_it_in_each_persons_history() {
    let Some(store) = TestStore::postgres(
        "postgres_a_batch_records_item_subjects_find_it_in_each_persons_history",
    )
    .await
    else {
        return;
    };
    a_batch_records_item_subjects_find_it_in_each_persons_history(&store).await;
    store.cleanup().await;
}

/// A person in more records than a history holds: the oldest
/// [`audit_store::MAX_RECORDS_PER_SUBJECT`], in seq order, whether they were found by
/// `subject` or among a batch's item subjects.
async fn a_persons_history_is_its_oldest_records_up_to_the_bound(store: &TestStore) {
    let k = key(DUKCAPIL);
    let log = store.open(DUKCAPIL, &k).await;
    let bound = u64::from(audit_store::MAX_RECORDS_PER_SUBJECT);
    let n = bound + 10;
    let mut tasks = Vec::new();
    for w in 0..16 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(16) {
                // Half alone, half in a batch with someone else.
                let record = if i % 2 == 0 {
                    about_one(&log, i, 1)
                } else {
                    about_many(&log, i, &[1_000_000 + i, 1])
                };
                log.append(record, None).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(log.tree_size(), n);
    assert_eq!(history(&log, &k, 1).await, (0..bound).collect::<Vec<_>>());
    // Exchange 1's batch was the only one about person 1,000,001.
    assert_eq!(history(&log, &k, 1_000_001).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_persons_history_is_its_oldest_records_up_to_the_bound() {
    a_persons_history_is_its_oldest_records_up_to_the_bound(&TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_persons_history_is_its_oldest_records_up_to_the_bound() {
    let Some(store) =
        TestStore::postgres("postgres_a_persons_history_is_its_oldest_records_up_to_the_bound")
            .await
    else {
        return;
    };
    a_persons_history_is_its_oldest_records_up_to_the_bound(&store).await;
    store.cleanup().await;
}

/// A store made before batch records existed (no `subjects` column, no item subjects'
/// table) gains both when opened: its old records keep their bytes, and a batch record
/// appended after is found in a history beside them.
async fn a_store_made_before_item_subjects_gains_their_table_and_still_verifies(store: &TestStore) {
    let k = key(DUKCAPIL);
    let log = store.open(DUKCAPIL, &k).await;
    let first = log.append(about_one(&log, 0, 1), None).await.unwrap();
    log.sign_tree_head().await.unwrap();
    drop(log);
    store
        .tamper(
            "DROP TABLE simpul_audit_subjects; \
             ALTER TABLE simpul_audit_records DROP COLUMN subjects",
        )
        .await;
    let log = store.open(DUKCAPIL, &k).await;
    assert_eq!(log.records(0, 1).await.unwrap(), [first]);
    log.append(about_many(&log, 1, &[2, 1]), None)
        .await
        .unwrap();
    assert_eq!(history(&log, &k, 1).await, [0, 1]);
    assert_eq!(history(&log, &k, 2).await, [1]);
    let report = verify_export(Cursor::new(export(&log).await), &public(&k)).unwrap();
    assert_eq!(report.records, 2);
    drop(log);
    let log = store.open(DUKCAPIL, &k).await;
    assert_eq!(history(&log, &k, 2).await, [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_store_made_before_item_subjects_gains_their_table_and_still_verifies() {
    a_store_made_before_item_subjects_gains_their_table_and_still_verifies(&TestStore::sqlite())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_store_made_before_item_subjects_gains_their_table_and_still_verifies() {
    let Some(store) = TestStore::postgres(
        "postgres_a_store_made_before_item_subjects_gains_their_table_and_still_verifies",
    )
    .await
    else {
        return;
    };
    a_store_made_before_item_subjects_gains_their_table_and_still_verifies(&store).await;
    store.cleanup().await;
}

/// A record holds as many item subjects as a batch contract may carry items, and its export
/// verifies; one more is refused before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_with_more_item_subjects_than_a_batch_carries_is_refused() {
    let store = TestStore::sqlite();
    let k = key(DUKCAPIL);
    let log = store.open(DUKCAPIL, &k).await;
    let people: Vec<u64> = (0..audit::MAX_SUBJECTS as u64).collect();
    let full = log
        .append(about_many(&log, 0, &people), None)
        .await
        .unwrap();
    assert_eq!(
        full.subjects.as_ref().map(Vec::len),
        Some(audit::MAX_SUBJECTS)
    );
    assert_eq!(history(&log, &k, 4_321).await, [0]);
    let report = verify_export(Cursor::new(export(&log).await), &public(&k)).unwrap();
    assert_eq!(report.records, 1);

    let mut over = about_many(&log, 1, &people);
    over.subjects
        .as_mut()
        .unwrap()
        .push(log.subject(&[nik(u64::MAX)]).unwrap());
    match log.append(over, None).await {
        Err(AuditError::TooManySubjects {
            exchange_id: id,
            count,
        }) => {
            assert_eq!((id, count), (exchange_id(1), audit::MAX_SUBJECTS + 1));
        }
        other => panic!("not refused: {other:?}"),
    }
    assert_eq!(log.tree_size(), 1);
}

// ---------------------------------------------------------------------------------------
// Overlap figures: a run's sizes and counts on its records and its report's, never its points.

/// The figures of a run of two groups: the sizes the envelopes announced (what the provider
/// knows), and with `overlaps` what the consumer counted (and its report says).
fn figures(overlaps: bool) -> OverlapFigures {
    OverlapFigures {
        groups: vec![2474, 1079],
        theirs: Some(3933),
        overlaps: overlaps.then(|| vec![847, 491]),
    }
}

/// BP2MI's record, as provider, of exchange `n` of `placement.overlap`, with `figures`.
fn overlap_record(n: u64, figures: Option<OverlapFigures>) -> audit::NewRecord {
    let mut r = exchange(n, Role::Provider, BP2MI, KEMLU);
    r.contract = "placement.overlap".into();
    r.purpose = "statistics".into();
    r.overlap = figures;
    r
}

/// A store made before overlap figures existed (no `overlap` column) gains the column when
/// opened, and its older record reads back as it was; a run's figures, its report's and a
/// refused run's are stored, read back exactly (so their leaves recompute), proven,
/// exported and verified offline, before and after the store is reopened.
async fn overlap_figures_are_kept_and_old_stores_gain_their_column(store: &TestStore) {
    let k = key(BP2MI);
    let log = store.open(BP2MI, &k).await;
    let before = log
        .append(exchange(0, Role::Provider, BP2MI, KEMLU), None)
        .await
        .unwrap();
    log.sign_tree_head().await.unwrap();
    drop(log);
    store
        .tamper("ALTER TABLE simpul_audit_records DROP COLUMN overlap")
        .await;
    let log = store.open(BP2MI, &k).await;
    assert_eq!(
        log.records(0, 1).await.unwrap(),
        std::slice::from_ref(&before)
    );

    let mut report = overlap_record(2, Some(figures(true)));
    report.lookup_id = Some(exchange_id(1));
    // Refused before an answer announced the provider's list.
    let mut refused = overlap_record(
        3,
        Some(OverlapFigures {
            groups: vec![999],
            theirs: None,
            overlaps: None,
        }),
    );
    refused.outcome = "set-too-small".into();
    refused.response_hash = None;
    let mut appended = vec![before];
    for record in [
        overlap_record(1, Some(figures(false))),
        report,
        refused,
        exchange(4, Role::Provider, BP2MI, KEMLU),
    ] {
        appended.push(log.append(record, None).await.unwrap());
    }
    assert_eq!(appended[1].overlap, Some(figures(false)));
    assert_eq!(appended[2].overlap, Some(figures(true)));
    assert_eq!(appended[4].overlap, None);
    holds_the_overlap_figures(&log, &k, &records(&appended)).await;
    drop(log);
    let log = store.open(BP2MI, &k).await;
    holds_the_overlap_figures(&log, &k, &records(&appended)).await;
}

/// What [`overlap_figures_are_kept_and_old_stores_gain_their_column`] appended, read back
/// exactly, proven, and exported in a log that verifies.
async fn holds_the_overlap_figures(log: &AuditLog, k: &SigningKey, appended: &[AuditRecord]) {
    assert_eq!(log.records(0, 10).await.unwrap(), appended);
    let bundle = log.prove(&exchange_id(2)).await.unwrap();
    check_proof_bundle(&bundle, &public(k)).unwrap();
    assert_eq!(bundle.proofs[0].record, appended[2]);
    let text = export(log).await;
    let report = verify_export(Cursor::new(text.clone()), &public(k)).unwrap();
    assert_eq!((report.records, report.verified_size), (5, 5));
    let lines = String::from_utf8(text).unwrap();
    // Absent, not null, on the records without figures.
    assert_eq!(lines.matches("\"overlap\"").count(), 3, "{lines}");
    for figures in [
        r#""overlap":{"groups":[2474,1079],"theirs":3933}"#,
        r#""overlap":{"groups":[2474,1079],"theirs":3933,"overlaps":[847,491]}"#,
        r#""overlap":{"groups":[999]}"#,
    ] {
        assert!(lines.contains(figures), "{figures} in {lines}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_overlap_figures_are_kept_and_old_stores_gain_their_column() {
    overlap_figures_are_kept_and_old_stores_gain_their_column(&TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_overlap_figures_are_kept_and_old_stores_gain_their_column() {
    let Some(store) =
        TestStore::postgres("postgres_overlap_figures_are_kept_and_old_stores_gain_their_column")
            .await
    else {
        return;
    };
    overlap_figures_are_kept_and_old_stores_gain_their_column(&store).await;
    store.cleanup().await;
}

/// Records with overlap figures that were only in the journal when the process ended (the
/// tables locked by another process until after it had gone) are in the tables, exactly,
/// once the log is opened again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_overlap_figures_only_in_the_journal_are_in_the_tables_after_the_next_open() {
    use sqlx::Connection;
    let store = TestStore::sqlite();
    let k = key(BP2MI);
    let log = store.open(BP2MI, &k).await;
    let mut appended = vec![
        log.append(exchange(0, Role::Provider, BP2MI, KEMLU), None)
            .await
            .unwrap(),
    ];
    log.records(0, 1).await.unwrap();
    let Engine::Sqlite(path) = &store.engine else {
        unreachable!()
    };
    let mut other = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(path),
    )
    .await
    .unwrap();
    other.execute("BEGIN EXCLUSIVE").await.unwrap();
    for n in 1..7 {
        let record = overlap_record(n, (n % 3 != 0).then(|| figures(n % 2 == 0)));
        appended.push(log.append(record, None).await.unwrap());
    }
    drop(log);
    // The journal is let go of once the dropped log's tasks have ended.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let in_tables: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM simpul_audit_records WHERE log = 'ID:GOV:BP2MI'")
            .fetch_one(&mut other)
            .await
            .unwrap();
    assert_eq!(in_tables, 1, "the tables were locked");
    other.execute("COMMIT").await.unwrap();
    drop(other);
    let log = store.open(BP2MI, &k).await;
    assert_eq!(log.records(0, 10).await.unwrap(), appended);
    assert_eq!(appended[2].overlap, Some(figures(true)));
    assert_eq!(appended[3].overlap, None);
    let report = verify_export(Cursor::new(export(&log).await), &public(&k)).unwrap();
    assert_eq!(report.records, 7);
}

/// Figures of as many groups as a run may have are appended and verify; one group more is
/// refused before anything is written (a reader would refuse it), and so is an export, or a
/// store's row, edited to hold one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_figures_of_more_groups_than_a_run_has_are_refused() {
    let store = TestStore::sqlite();
    let k = key(BP2MI);
    let log = store.open(BP2MI, &k).await;
    let most = |n: usize| OverlapFigures {
        groups: vec![1_000; n],
        theirs: Some(1_000),
        overlaps: Some(vec![10; n]),
    };
    let full = log
        .append(overlap_record(0, Some(most(MAX_OVERLAP_GROUPS))), None)
        .await
        .unwrap();
    assert_eq!(full.overlap, Some(most(MAX_OVERLAP_GROUPS)));
    let text = export(&log).await;
    let report = verify_export(Cursor::new(text.clone()), &public(&k)).unwrap();
    assert_eq!(report.records, 1);

    for over in [
        most(MAX_OVERLAP_GROUPS + 1),
        OverlapFigures {
            overlaps: Some(vec![10; MAX_OVERLAP_GROUPS + 1]),
            ..most(1)
        },
    ] {
        match log.append(overlap_record(1, Some(over)), None).await {
            Err(AuditError::OverlapFigures {
                exchange_id: id,
                reason,
            }) => {
                assert_eq!(id, exchange_id(1));
                assert!(reason.contains("257"), "{reason}");
            }
            other => panic!("not refused: {other:?}"),
        }
    }
    assert_eq!(log.tree_size(), 1);

    // An export edited to hold a 257th group.
    let lines = String::from_utf8(text).unwrap();
    let groups = format!(
        "\"groups\":[{}]",
        vec!["1000"; MAX_OVERLAP_GROUPS].join(",")
    );
    assert!(lines.contains(&groups));
    let edited = lines.replace(&groups, &groups.replace("[1000,", "[1000,1000,"));
    let failure = verify_export(Cursor::new(edited), &public(&k)).unwrap_err();
    match failure.kind {
        VerifyFailureKind::Malformed { reason } => {
            assert!(reason.contains("more than 256 groups"), "{reason}");
        }
        other => panic!("{other:?}"),
    }

    // A store's row edited so.
    let over = serde_json::to_string(&most(MAX_OVERLAP_GROUPS + 1)).unwrap();
    store
        .tamper(&format!(
            "UPDATE simpul_audit_records SET overlap = '{over}' WHERE seq = 0"
        ))
        .await;
    match log.records(0, 1).await {
        Err(AuditError::Corrupt {
            seq: Some(0),
            reason,
            ..
        }) => assert!(reason.contains("more than 256 groups"), "{reason}"),
        other => panic!("read: {other:?}"),
    }
}

/// The store's size is measured on its engine, and grows with what is appended.
async fn the_store_size_is_measured_and_grows(store: &TestStore) {
    let k = key(KEMLU);
    let log = store.open(KEMLU, &k).await;
    let empty = log.store_size().await.unwrap();
    assert!(empty > 0, "the tables take room");
    for n in 0..200 {
        let record = exchange(n, Role::Consumer, KEMLU, DUKCAPIL);
        let evidence = StoredEvidence {
            exchange_id: record.exchange_id.clone(),
            request: format!("request {n}"),
            response: Some(format!("answer {n}")),
        };
        log.append(record, Some(evidence)).await.unwrap();
    }
    let grown = log.store_size().await.unwrap();
    assert!(grown > empty, "{empty} -> {grown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_store_size_is_measured_and_grows() {
    the_store_size_is_measured_and_grows(&TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_store_size_is_measured_and_grows() {
    let Some(store) = TestStore::postgres("postgres_the_store_size_is_measured_and_grows").await
    else {
        return;
    };
    the_store_size_is_measured_and_grows(&store).await;
    store.cleanup().await;
}

#[test]
fn a_size_alarm_of_zero_bytes_is_refused() {
    let config = AuditConfig {
        size_alarm_bytes: Some(0),
        ..AuditConfig::default()
    };
    assert_eq!(config.check().unwrap_err().0, "size_alarm_bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_whose_tree_was_altered_is_refused_at_open() {
    let store = TestStore::sqlite();
    let k = key(KEMLU);
    let log = store.open(KEMLU, &k).await;
    for n in 0..5 {
        log.append(exchange(n, Role::Consumer, KEMLU, DUKCAPIL), None)
            .await
            .unwrap();
    }
    // Stopped as a gateway stops: the tables hold every record, the journal nothing more.
    assert!(log.settle(Duration::from_secs(10)).await);
    drop(log);
    // Node 3 is the subtree over leaves 0..4, part of the tree's right edge.
    store
        .tamper("UPDATE simpul_audit_nodes SET hash = zeroblob(32) WHERE node = 3")
        .await;
    let e = AuditLog::open(&store.config(), store.dir.path(), &id(KEMLU), k)
        .await
        .unwrap_err();
    assert!(matches!(e, AuditError::Corrupt { .. }), "{e}");
    assert!(
        e.to_string().contains("data/audit.db"),
        "names the store: {e}"
    );
}

/// The seqs of `log`'s records below `to`, as its reads return them.
async fn seqs(log: &AuditLog, to: u64) -> Vec<u64> {
    log.records(0, to)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect()
}

/// Kemlu's log on `store` with one record in its tables, then a trigger that makes the
/// tables refuse every further record (as a broken database would); `DROP TRIGGER no_more`
/// lifts it.
async fn one_record_then_tables_refusing_writes(
    store: &TestStore,
    k: &Arc<SigningKey>,
) -> AuditLog {
    let log = store.open(KEMLU, k).await;
    log.append(exchange(0, Role::Consumer, KEMLU, DUKCAPIL), None)
        .await
        .unwrap();
    log.records(0, 1).await.unwrap();
    store
        .tamper(
            "CREATE TRIGGER no_more BEFORE INSERT ON simpul_audit_records \
             BEGIN SELECT RAISE(ABORT, 'disk full'); END",
        )
        .await;
    log
}

/// The tables refusing writes (a trigger here; a broken database or a disk that takes the
/// journal's preallocated frames but nothing else): appends go on, durable in the journal;
/// reads wait for the tables and fail, saying why; once the tables take writes again they
/// catch up, gap-free, with nothing half-written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_appends_go_on_while_the_tables_refuse_writes_and_the_tables_catch_up() {
    let store = TestStore::sqlite();
    let k = key(KEMLU);
    let log = one_record_then_tables_refusing_writes(&store, &k).await;
    for n in 1..4 {
        let r = log
            .append(exchange(n, Role::Consumer, KEMLU, DUKCAPIL), None)
            .await
            .unwrap();
        assert_eq!(r.seq, n);
    }
    let e = log.records(0, 4).await.unwrap_err();
    assert!(
        matches!(&e, AuditError::Journal { reason, .. } if reason.contains("hold 1 of the 4")),
        "{e}"
    );
    store.tamper("DROP TRIGGER no_more").await;
    assert_eq!(seqs(&log, 10).await, [0, 1, 2, 3]);
    let next = log
        .append(exchange(4, Role::Consumer, KEMLU, DUKCAPIL), None)
        .await
        .unwrap();
    assert_eq!(next.seq, 4);
    let report = verify_export(Cursor::new(export(&log).await), &public(&k)).unwrap();
    assert_eq!(report.records, 5);
}

/// Back-pressure: while the tables refuse writes, the journal runs at most
/// `JOURNAL_KEEP_UP` records ahead of them; the next group commit waits for the tables, and
/// when they do not advance (5 s) its appends are refused as not durable (the exchanges'
/// 503), with nothing of them written. Once the tables take writes, appends go on gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_writer_keep_up_records_ahead_of_the_tables_waits_for_them_then_is_refused() {
    let store = TestStore::sqlite();
    let k = key(KEMLU);
    let log = one_record_then_tables_refusing_writes(&store, &k).await;
    let next = Arc::new(AtomicU64::new(1));
    let writers: Vec<_> = (0..64)
        .map(|_| {
            let (log, next) = (log.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n > 2 * JOURNAL_KEEP_UP {
                        return None;
                    }
                    if let Err(e) = log
                        .append(exchange(n, Role::Consumer, KEMLU, DUKCAPIL), None)
                        .await
                    {
                        return Some(e);
                    }
                }
            })
        })
        .collect();
    let mut refused = Vec::new();
    for w in writers {
        refused.extend(w.await.unwrap());
    }
    assert_eq!(refused.len(), 64, "every writer is refused in the end");
    for e in &refused {
        assert!(
            matches!(e, AuditError::NotDurable { reason, .. } if reason.contains("have not advanced for 5 s")),
            "{e}"
        );
    }
    // One record in the tables, then group commits of at most batch_max (64) until the
    // journal was more than JOURNAL_KEEP_UP ahead.
    let answered = log.tree_size();
    assert!(
        answered > JOURNAL_KEEP_UP + 1 && answered <= JOURNAL_KEEP_UP + 1 + 64,
        "{answered} answered"
    );
    store.tamper("DROP TRIGGER no_more").await;
    let r = log
        .append(
            exchange(3 * JOURNAL_KEEP_UP, Role::Consumer, KEMLU, DUKCAPIL),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.seq, answered);
    let report = verify_export(Cursor::new(export(&log).await), &public(&k)).unwrap();
    assert_eq!(report.records, answered + 1);
}

/// The indexer writes the tables from a thread at a low CPU priority (nice 10), so that
/// on a busy core the exchanges' work goes first (BENCHMARKS.md, "Where the provider's CPU
/// goes"); the pool's connections, which serve reads, keep the process's priority.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_indexer_writes_at_a_low_cpu_priority() {
    let store = TestStore::sqlite();
    let k = key(KEMLU);
    let log = store.open(KEMLU, &k).await;
    log.append(exchange(0, Role::Consumer, KEMLU, DUKCAPIL), None)
        .await
        .unwrap();
    log.records(0, 1).await.unwrap();
    // A thread's name and nice value (field 19 of its stat file, counted after the name's
    // closing parenthesis).
    let stat = |path: PathBuf| -> Option<(String, i64)> {
        let stat = std::fs::read_to_string(path).ok()?;
        let (name, rest) = stat.split_once(") ")?;
        Some((name.to_owned(), rest.split(' ').nth(16)?.parse().ok()?))
    };
    let (_, ours) = stat(PathBuf::from("/proc/self/stat")).unwrap();
    if ours >= 10 {
        eprintln!("skipped: this test process already runs at nice {ours}");
        return;
    }
    let sqlite: Vec<i64> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| stat(t.ok()?.path().join("stat")))
        .filter(|(name, _)| name.ends_with("sqlx-sqlite-wor"))
        .map(|(_, nice)| nice)
        .collect();
    assert!(sqlite.contains(&10), "the indexer's thread: {sqlite:?}");
    assert!(sqlite.contains(&ours), "the pool's threads: {sqlite:?}");
}

/// What the journal held beyond the tables when the process ended — here the tables were
/// locked by another process until after it had gone — is in the tables once the log is
/// opened again, before anything else is read or appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_records_only_in_the_journal_are_in_the_tables_after_the_next_open() {
    use sqlx::Connection;
    let store = TestStore::sqlite();
    let k = key(KEMLU);
    let log = store.open(KEMLU, &k).await;
    log.append(exchange(0, Role::Consumer, KEMLU, DUKCAPIL), None)
        .await
        .unwrap();
    log.records(0, 1).await.unwrap();
    let Engine::Sqlite(path) = &store.engine else {
        unreachable!()
    };
    let mut other = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(path),
    )
    .await
    .unwrap();
    other.execute("BEGIN EXCLUSIVE").await.unwrap();
    for n in 1..30 {
        log.append(exchange(n, Role::Consumer, KEMLU, DUKCAPIL), None)
            .await
            .unwrap();
    }
    drop(log);
    // The journal is let go of once the dropped log's tasks have ended.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let in_tables: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM simpul_audit_records WHERE log = 'ID:GOV:KEMLU'")
            .fetch_one(&mut other)
            .await
            .unwrap();
    assert_eq!(in_tables, 1, "the tables were locked");
    other.execute("COMMIT").await.unwrap();
    drop(other);
    let log = store.open(KEMLU, &k).await;
    assert_eq!(log.tree_size(), 30);
    assert_eq!(seqs(&log, 40).await, (0..30).collect::<Vec<_>>());
    assert_eq!(
        log.append(exchange(30, Role::Consumer, KEMLU, DUKCAPIL), None)
            .await
            .unwrap()
            .seq,
        30
    );
    let report = verify_export(Cursor::new(export(&log).await), &public(&k)).unwrap();
    assert_eq!(report.records, 31);
}

/// One gateway per SQLite store: a second log opened to append to the same member's log
/// while the first runs is refused, naming the lock (replicas share PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_second_gateway_on_the_same_log_is_refused() {
    let store = TestStore::sqlite();
    let k = key(KEMLU);
    let _first = store.open(KEMLU, &k).await;
    let e = AuditLog::open(&store.config(), store.dir.path(), &id(KEMLU), k.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AuditError::Config { reason, .. } if reason.contains("another process appends to this store")),
        "{e}"
    );
    // An operator's command reads it meanwhile.
    let read = AuditLog::inspect(&store.config(), store.dir.path(), &id(KEMLU), k)
        .await
        .unwrap();
    let e = read
        .append(exchange(0, Role::Consumer, KEMLU, DUKCAPIL), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("opened to read"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_logs_share_one_store_file() {
    let store = TestStore::sqlite();
    let (ka, kb) = (key(KEMLU), key(DUKCAPIL));
    let a = store.open(KEMLU, &ka).await;
    let b = store.open(DUKCAPIL, &kb).await;
    for n in 0..3 {
        a.append(exchange(n, Role::Consumer, KEMLU, DUKCAPIL), None)
            .await
            .unwrap();
    }
    let first_b = b
        .append(exchange(9, Role::Provider, DUKCAPIL, KEMLU), None)
        .await
        .unwrap();
    assert_eq!(first_b.seq, 0, "each log has its own seqs");
    assert_eq!(
        verify_export(Cursor::new(export(&a).await), &public(&ka))
            .unwrap()
            .records,
        3
    );
}

// ---------------------------------------------------------------------------------------
// Counting a consumer's answered exchanges since a time (an overlap contract's daily runs).

const BP2MI: &str = "ID:GOV:BP2MI";
const RUNS: (&str, &str, &str) = ("population.overlap", "1", "migrant-protection");
/// Every record of [`counted_log`] whose seq is a multiple of this is one it counts.
const EVERY: u64 = 8;
/// The `ts` [`counted_log`] gives the record at `seq`: one second apart.
fn stamp(seq: u64) -> i64 {
    1_000_000 + i64::try_from(seq).unwrap() * 1_000
}

/// Record `n` of DUKCAPIL's log: when `n` is a multiple of [`EVERY`] a run of [`RUNS`]
/// DUKCAPIL answered KEMLU; otherwise the same but for one thing that keeps it from being
/// counted.
fn run_or_near_miss(n: u64) -> audit::NewRecord {
    let mut r = exchange(n, Role::Provider, DUKCAPIL, KEMLU);
    (r.contract, r.version, r.purpose) = (RUNS.0.into(), RUNS.1.into(), RUNS.2.into());
    match n % EVERY {
        0 => {}
        1 => r.consumer = BP2MI.into(),
        2 => r.purpose = "consular-protection".into(),
        3 => r.contract = "citizenship.status".into(),
        4 => r.version = "2".into(),
        5 => {
            r.outcome = "runs-exhausted".into();
            r.response_hash = None;
        }
        // This gateway asked KEMLU (here under KEMLU's consumer id, so only the role differs).
        6 => {
            r.role = Role::Consumer;
            r.provider = KEMLU.into();
        }
        // The report of a run carries the run's id.
        _ => r.lookup_id = Some(exchange_id(n - 1)),
    }
    r
}

async fn count_runs(log: &AuditLog, since_ms: i64) -> u64 {
    log.count_answered(RUNS.0, RUNS.1, KEMLU, RUNS.2, since_ms)
        .await
        .unwrap()
}

/// DUKCAPIL's log of `n` records [`run_or_near_miss`], stamped [`stamp`] (the stamps
/// rewritten in the store once the tables hold them all: the count reads `ts`, not the
/// leaves), beside KEMLU's log in the same store holding records that would count were
/// they in DUKCAPIL's.
async fn counted_log(store: &TestStore, n: u64) -> AuditLog {
    let log = store.open(DUKCAPIL, &key(DUKCAPIL)).await;
    assert_eq!(count_runs(&log, i64::MIN).await, 0, "an empty log");
    assert_eq!(count_runs(&log, 0).await, 0, "an empty log");
    let mut last = None;
    for i in 0..n {
        last = Some(log.append(run_or_near_miss(i), None).await.unwrap());
    }
    let last = last.unwrap();
    assert_eq!(last.seq, n - 1);
    // With the stamps the writer gave.
    let runs = n.div_ceil(EVERY);
    assert_eq!(count_runs(&log, 0).await, runs);
    assert_eq!(count_runs(&log, last.ts + 1).await, 0, "after every record");

    let other = store.open(KEMLU, &key(KEMLU)).await;
    for i in 0..n {
        other
            .append(run_or_near_miss(i * EVERY), None)
            .await
            .unwrap();
    }
    assert_eq!(count_runs(&other, 0).await, n);
    other.records(0, 1).await.unwrap();
    log.records(0, 1).await.unwrap();
    store
        .tamper(&format!(
            "UPDATE simpul_audit_records SET ts = 1000000 + seq * 1000 WHERE log = '{DUKCAPIL}'"
        ))
        .await;
    log
}

/// Exactly the runs DUKCAPIL answered KEMLU for this contract version and purpose at or
/// after `since_ms`: not another consumer's, purpose's, contract's or version's, not a
/// refusal, not an exchange DUKCAPIL asked, not a run's report, not one stamped earlier,
/// not one in another member's log of the same store.
async fn answered_runs_are_counted_since_a_time(store: &TestStore) {
    let n = 200;
    let log = counted_log(store, n).await;
    let runs_from = |seq: u64| (seq..n).filter(|s| s % EVERY == 0).count() as u64;
    assert_eq!(runs_from(0), 25);
    for since in [i64::MIN, 0, stamp(0)] {
        assert_eq!(count_runs(&log, since).await, 25, "since {since}");
    }
    for seq in [1, 95, 96, 97, 100, 150, 191, 192, 193, 199] {
        assert_eq!(
            count_runs(&log, stamp(seq)).await,
            runs_from(seq),
            "from seq {seq}"
        );
        assert_eq!(
            count_runs(&log, stamp(seq) - 1).await,
            runs_from(seq),
            "from just before seq {seq}"
        );
        assert_eq!(
            count_runs(&log, stamp(seq) + 1).await,
            runs_from(seq + 1),
            "from just after seq {seq}"
        );
    }
    assert_eq!(count_runs(&log, stamp(192)).await, 1);
    for since in [stamp(199) + 1, stamp(n + 1_000), i64::MAX] {
        assert_eq!(count_runs(&log, since).await, 0, "since {since}");
    }
    // Another consumer's, purpose's, contract's or version's runs are counted as theirs.
    let count = |contract: &'static str, version: &'static str, consumer, purpose| {
        let log = log.clone();
        async move {
            log.count_answered(contract, version, consumer, purpose, 0)
                .await
                .unwrap()
        }
    };
    assert_eq!(count(RUNS.0, RUNS.1, BP2MI, RUNS.2).await, 25);
    assert_eq!(
        count(RUNS.0, RUNS.1, KEMLU, "consular-protection").await,
        25
    );
    assert_eq!(count("citizenship.status", RUNS.1, KEMLU, RUNS.2).await, 25);
    assert_eq!(count(RUNS.0, "2", KEMLU, RUNS.2).await, 25);
    assert_eq!(count(RUNS.0, RUNS.1, DUKCAPIL, RUNS.2).await, 0);
}

/// A record stamped before an earlier one — a replica's commit that waited for another's,
/// stamped up to the writer's deadline sooner — still counts when it is at or after
/// `since_ms`, and the one stamped before it does not.
async fn a_run_committed_before_one_stamped_earlier_is_counted(store: &TestStore) {
    let n = 200;
    let log = counted_log(store, n).await;
    // Seqs 96..100 stamped after `since`; 100..110 stamped 30 s before it, committed later.
    let since = stamp(96) - 500;
    store
        .tamper(&format!(
            "UPDATE simpul_audit_records SET ts = {} WHERE log = '{DUKCAPIL}' \
             AND seq >= 100 AND seq < 110",
            since - 30_000
        ))
        .await;
    // Runs 96 and 112..200; not 104, stamped before `since`.
    assert_eq!(count_runs(&log, since).await, 1 + 11);
    // From 30 s before it: runs 72..200, 104 among them.
    assert_eq!(count_runs(&log, since - 30_000).await, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_answered_runs_are_counted_since_a_time() {
    answered_runs_are_counted_since_a_time(&TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_run_committed_before_one_stamped_earlier_is_counted() {
    a_run_committed_before_one_stamped_earlier_is_counted(&TestStore::sqlite()).await;
}

// ---------------------------------------------------------------------------------------
// An insider with write access to the store but not the member's key.

/// Replaces the stored tree by the tree of `records` (recomputed, as the algorithm is
/// public), sets the state to it, deletes the records beyond it and every tree head of a
/// size above `heads_below` — what someone who can write the database but does not hold
/// the key does to rewrite or cut back the log.
async fn rewrite_tree(store: &TestStore, records: &[AuditRecord], heads_below: u64) {
    let mut frontier = merkle::Frontier::new();
    let mut nodes = Vec::new();
    for r in records {
        frontier.push(merkle::leaf_hash(r).unwrap(), |n, h| {
            nodes.push((n.id(), *h))
        });
    }
    let blob = |h: &[u8]| match store.engine {
        Engine::Sqlite(_) => format!("X'{}'", hex(h)),
        Engine::Postgres { .. } => format!("'\\x{}'::bytea", hex(h)),
    };
    let n = records.len();
    let mut sql = format!(
        "DELETE FROM simpul_audit_nodes; \
         DELETE FROM simpul_audit_records WHERE seq >= {n}; \
         DELETE FROM simpul_audit_tree_heads WHERE tree_size > {heads_below}; \
         UPDATE simpul_audit_state SET tree_size = {n}, root_hash = {} WHERE log = '{KEMLU}';",
        blob(&frontier.root())
    );
    for (node, hash) in nodes {
        sql.push_str(&format!(
            "INSERT INTO simpul_audit_nodes (log, node, hash) VALUES ('{KEMLU}', {node}, {});",
            blob(&hash)
        ));
    }
    store.tamper(&sql).await;
}

fn tampered(e: &AuditError) -> &str {
    match e {
        AuditError::Tampered { reason, .. } => reason,
        other => panic!("not a tamper refusal: {other}"),
    }
}

/// The log cut back to 20 records with the tree recomputed and the heads above 20 deleted:
/// the pinned head (40) catches it; the gateway does not start, and names both sizes. An
/// operator can still open it to export it, and it then appends and signs nothing.
async fn a_log_cut_back_is_refused_at_open(store: &TestStore) {
    let k = key(KEMLU);
    let log = forty(store, &k).await;
    let records = log.records(0, 40).await.unwrap();
    drop(log);
    rewrite_tree(store, &records[..20], 20).await;
    store.cut_journal(KEMLU);
    let e = AuditLog::open(&store.config(), store.dir.path(), &id(KEMLU), k.clone())
        .await
        .unwrap_err();
    let reason = tampered(&e);
    assert!(reason.contains("size 20"), "{reason}");
    assert!(reason.contains("size 40"), "{reason}");
    assert!(reason.contains("cut back"), "{reason}");

    let inspected = AuditLog::inspect(&store.config(), store.dir.path(), &id(KEMLU), k)
        .await
        .unwrap();
    assert!(inspected.tampered().unwrap().contains("size 40"));
    let e = inspected
        .append(exchange(99, Role::Consumer, KEMLU, DUKCAPIL), None)
        .await
        .unwrap_err();
    tampered(&e);
    tampered(&inspected.sign_tree_head().await.unwrap_err());
}

/// One record rewritten, the whole tree recomputed over it and every head deleted: the
/// stored tree no longer extends the pinned head of the same size.
async fn a_rewritten_record_is_refused_at_open(store: &TestStore) {
    let k = key(KEMLU);
    let log = forty(store, &k).await;
    let mut records = log.records(0, 40).await.unwrap();
    drop(log);
    records[5].purpose = "marketing".into();
    store
        .tamper("UPDATE simpul_audit_records SET purpose = 'marketing' WHERE seq = 5")
        .await;
    rewrite_tree(store, &records, 0).await;
    store.cut_journal(KEMLU);
    let e = AuditLog::open(&store.config(), store.dir.path(), &id(KEMLU), k)
        .await
        .unwrap_err();
    let reason = tampered(&e);
    assert!(
        reason.contains("tree of size 40 is not an extension of the pinned head"),
        "{reason}"
    );
    assert!(reason.contains("rewritten"), "{reason}");
}

/// Two gateways (replicas) run on the store when it is cut back: the one that appends
/// next refuses to adopt the stored state, and neither signs a head over it.
async fn a_running_log_refuses_to_adopt_a_store_cut_back(store: &TestStore) {
    let k = key(KEMLU);
    let first = forty(store, &k).await;
    let second = store.open(KEMLU, &k).await;
    let records = first.records(0, 40).await.unwrap();
    rewrite_tree(store, &records[..30], 20).await;

    let e = second
        .append(exchange(100, Role::Consumer, KEMLU, DUKCAPIL), None)
        .await
        .unwrap_err();
    let reason = tampered(&e);
    assert!(
        reason.contains("size 30, smaller than the tree this gateway last committed of size 40"),
        "{reason}"
    );
    // Once found, for good: a later append is refused before it reaches the store.
    tampered(
        &second
            .append(exchange(101, Role::Consumer, KEMLU, DUKCAPIL), None)
            .await
            .unwrap_err(),
    );
    assert!(second.tampered().is_some());
    let e = first.sign_tree_head().await.unwrap_err();
    assert!(tampered(&e).contains("pinned head"), "{e}");
    let e = first
        .append(exchange(102, Role::Consumer, KEMLU, DUKCAPIL), None)
        .await
        .unwrap_err();
    tampered(&e);
}

/// The same size, one record rewritten under a running gateway: its next commit sees a
/// root that is not the one it committed, and refuses.
async fn a_running_log_refuses_to_adopt_a_rewritten_store(store: &TestStore) {
    let k = key(KEMLU);
    let log = forty(store, &k).await;
    let mut records = log.records(0, 40).await.unwrap();
    records[7].outcome = "forbidden".into();
    assert_ne!(records[7], log.records(7, 8).await.unwrap()[0]);
    rewrite_tree(store, &records, 0).await;
    // An SQLite store's journal takes the next append before its tables are written: the
    // rewrite is found when they are, and refused from then on.
    let first = log
        .append(exchange(100, Role::Consumer, KEMLU, DUKCAPIL), None)
        .await;
    let e = match first {
        Err(e) => e,
        Ok(_) if matches!(store.engine, Engine::Sqlite(_)) => {
            let e = log.records(0, 41).await.unwrap_err();
            assert!(tampered(&e).contains("not an extension"), "{e}");
            log.append(exchange(101, Role::Consumer, KEMLU, DUKCAPIL), None)
                .await
                .unwrap_err()
        }
        Ok(r) => panic!("appended over a rewritten store: {r:?}"),
    };
    let reason = tampered(&e);
    assert!(reason.contains("not an extension"), "{reason}");
    assert!(log.tampered().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_log_cut_back_is_refused_at_open_naming_both_sizes() {
    a_log_cut_back_is_refused_at_open(&TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_rewritten_record_with_the_tree_recomputed_is_refused_at_open() {
    a_rewritten_record_is_refused_at_open(&TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_running_log_refuses_to_adopt_a_rewritten_store() {
    a_running_log_refuses_to_adopt_a_rewritten_store(&TestStore::sqlite()).await;
}

/// The head pinned outside the store is the last one signed, written where the
/// configuration says, and timestamps never go back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_signed_head_is_pinned_outside_the_store() {
    let store = TestStore::sqlite();
    let k = key(KEMLU);
    let log = forty(&store, &k).await;
    let pin = store.dir.path().join("audit-ID_GOV_KEMLU.head.json");
    let pinned: SignedTreeHead = serde_json::from_slice(&std::fs::read(&pin).unwrap()).unwrap();
    let latest = log.latest_tree_head().await.unwrap().unwrap();
    assert_eq!(pinned, latest);
    assert_eq!(pinned.tree_size, 40);
    let again = log.sign_tree_head().await.unwrap();
    assert!(again.timestamp >= pinned.timestamp);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&pin).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the pin is not readable by others: {mode:o}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL (SIMPUL_TEST_POSTGRES_URL).

macro_rules! on_postgres {
    ($name:ident, $scenario:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some(store) = TestStore::postgres(stringify!($name)).await else {
                return;
            };
            $scenario(&store).await;
            store.cleanup().await;
        }
    };
}

on_postgres!(
    postgres_concurrent_appends_are_gap_free_and_durable,
    concurrent_appends_are_gap_free_and_durable
);
on_postgres!(
    postgres_an_altered_record_is_named_by_its_seq,
    an_altered_record_is_named
);
on_postgres!(
    postgres_a_deleted_record_is_named_by_its_seq,
    a_deleted_record_is_named
);
on_postgres!(
    postgres_records_deleted_at_the_end_are_named,
    the_end_of_the_log_deleted_is_named
);
on_postgres!(
    postgres_swapped_records_are_named,
    swapped_records_are_named
);
on_postgres!(
    postgres_a_tree_head_signed_by_another_key_is_refused,
    a_forged_tree_head_is_refused
);
on_postgres!(
    postgres_proofs_verify_offline_and_fail_for_tampered_records,
    inclusion_and_consistency_proofs_verify_offline
);
on_postgres!(
    postgres_evidence_is_kept_checked_and_expires,
    evidence_is_kept_and_checked
);
on_postgres!(
    postgres_a_log_cut_back_is_refused_at_open_naming_both_sizes,
    a_log_cut_back_is_refused_at_open
);
on_postgres!(
    postgres_a_rewritten_record_with_the_tree_recomputed_is_refused_at_open,
    a_rewritten_record_is_refused_at_open
);
on_postgres!(
    postgres_a_replica_refuses_to_adopt_a_store_cut_back,
    a_running_log_refuses_to_adopt_a_store_cut_back
);
on_postgres!(
    postgres_a_replica_refuses_to_adopt_a_rewritten_store,
    a_running_log_refuses_to_adopt_a_rewritten_store
);
on_postgres!(
    postgres_answered_runs_are_counted_since_a_time,
    answered_runs_are_counted_since_a_time
);
on_postgres!(
    postgres_a_run_committed_before_one_stamped_earlier_is_counted,
    a_run_committed_before_one_stamped_earlier_is_counted
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reconcile_finds_an_exchange_deleted_from_one_side() {
    let name = "postgres_reconcile_finds_an_exchange_deleted_from_one_side";
    let (Some(a), Some(b)) = (
        TestStore::postgres(name).await,
        TestStore::postgres(name).await,
    ) else {
        return;
    };
    reconcile_finds_an_exchange_deleted_from_one_side(&a, &b).await;
    a.cleanup().await;
    b.cleanup().await;
}

/// A connection that would acknowledge COMMIT before the WAL is flushed is refused: the
/// gateway would otherwise release answers whose records are not durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_without_synchronous_commit_is_refused() {
    let Some(store) = TestStore::postgres("postgres_without_synchronous_commit_is_refused").await
    else {
        return;
    };
    let mut cfg = store.config();
    cfg.store.push_str("&options[synchronous_commit]=off");
    let e = AuditLog::open(&cfg, store.dir.path(), &id(KEMLU), key(KEMLU))
        .await
        .unwrap_err();
    assert!(matches!(e, AuditError::Config { .. }), "{e}");
    assert!(e.to_string().contains("synchronous_commit"), "{e}");
    assert!(
        !e.to_string().contains("postgres@"),
        "no credentials in errors: {e}"
    );
    store.cleanup().await;
}

/// Two replicas of one member append to one PostgreSQL log at once: one gap-free sequence,
/// and a tree both extend correctly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_replicas_share_one_log() {
    let Some(store) = TestStore::postgres("postgres_two_replicas_share_one_log").await else {
        return;
    };
    let k = key(KEMLU);
    let (r1, r2) = (store.open(KEMLU, &k).await, store.open(KEMLU, &k).await);
    let mut tasks = Vec::new();
    for (w, log) in [r1.clone(), r2.clone(), r1.clone(), r2.clone()]
        .into_iter()
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..50u64 {
                let n = w as u64 * 100 + i;
                seqs.push(
                    log.append(exchange(n, Role::Provider, KEMLU, DUKCAPIL), None)
                        .await
                        .unwrap()
                        .seq,
                );
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..200).collect::<Vec<_>>());
    r1.sign_tree_head().await.unwrap();
    let report = verify_export(Cursor::new(export(&r2).await), &public(&k)).unwrap();
    assert_eq!((report.records, report.verified_size), (200, 200));
    store.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_must_extend_the_heads_an_auditor_kept() {
    let store = TestStore::sqlite();
    let k = key(KEMLU);
    let log = forty(&store, &k).await;
    let kept = log.latest_tree_head().await.unwrap().unwrap();
    assert_eq!(kept.tree_size, 40);
    let text = String::from_utf8(export(&log).await).unwrap();
    audit::verify_export_against(
        Cursor::new(text.clone()),
        &public(&k),
        std::slice::from_ref(&kept),
    )
    .unwrap();

    // Cut back to 38 records, the heads that covered the rest dropped: consistent in
    // itself, but shorter than the head the auditor holds.
    let cut: Vec<&str> = text
        .lines()
        .filter(|l| {
            let line: audit::ExportLine = serde_json::from_str(l).unwrap();
            match line {
                audit::ExportLine::Record(r) => r.record.seq < 38,
                audit::ExportLine::TreeHead(h) => h.tree_size <= 38,
                audit::ExportLine::Header(_) | audit::ExportLine::Manifest(_) => true,
            }
        })
        .collect();
    let cut = cut.join("\n");
    verify_export(Cursor::new(cut.clone()), &public(&k)).unwrap();
    let f =
        audit::verify_export_against(Cursor::new(cut), &public(&k), std::slice::from_ref(&kept))
            .unwrap_err();
    assert_eq!(f.first_bad_seq, Some(38), "{f}");

    // Another history under the same key (the store rewritten, heads re-signed): it
    // verifies alone, not against the kept head.
    let other = TestStore::sqlite();
    let rewritten = other.open(KEMLU, &k).await;
    for n in 0..40 {
        let mut r = exchange(n, Role::Consumer, KEMLU, DUKCAPIL);
        if n == 33 {
            r.outcome = "forbidden".into();
        }
        rewritten.append(r, None).await.unwrap();
    }
    rewritten.sign_tree_head().await.unwrap();
    let again = export(&rewritten).await;
    verify_export(Cursor::new(again.clone()), &public(&k)).unwrap();
    let f =
        audit::verify_export_against(Cursor::new(again), &public(&k), std::slice::from_ref(&kept))
            .unwrap_err();
    assert!(
        matches!(
            f.kind,
            VerifyFailureKind::RootMismatch { tree_size: 40, .. }
        ),
        "{f}"
    );

    // A kept head signed by another key is refused as such.
    let stranger = SigningKey::generate(Algorithm::ES256, KEMLU).unwrap();
    let forged = audit::tree_head::sign_tree_head(&stranger, 40, &[0u8; 32], 0).unwrap();
    let f = audit::verify_export_against(
        Cursor::new(text),
        &public(&k),
        std::slice::from_ref(&forged),
    )
    .unwrap_err();
    assert!(matches!(f.kind, VerifyFailureKind::TreeHead { .. }), "{f}");
}

fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// A manifest for Kemlu listing `keys` (each with its window), signed by `authority`.
fn manifest_listing(
    authority: &SigningKey,
    serial: u64,
    keys: &[(&SigningKey, contracts::KeyWindow)],
) -> String {
    use contracts::manifest::{ManifestDoc, ManifestMember};
    let now = contracts::unix_now();
    let doc = ManifestDoc {
        v: 2,
        federation: "ID".into(),
        serial,
        issued_at: now - 10,
        expires_at: now + 86_400,
        ca: vec!["a CA certificate, not read here".into()],
        members: vec![ManifestMember {
            id: id(KEMLU),
            name: "Kemlu".into(),
            gateway: "https://localhost:7442".into(),
            keys: keys
                .iter()
                .map(|(k, w)| {
                    let mut jwk = k.public_jwk().clone();
                    w.set_in(&mut jwk);
                    jwk
                })
                .collect(),
        }],
        contracts: vec![],
    };
    contracts::Manifest::sign(&doc, authority).unwrap()
}

/// A log whose heads were signed by key 1, then by key 2 after a rotation, verifies offline
/// with the authority's key alone from the manifests its export carries; a key the export
/// adds itself, a manifest not signed by the authority and a head outside its key's window
/// are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_heads_signed_before_and_after_a_rotation_verify_with_the_authority_key() {
    use audit::{Trust, verify_export_trusting};
    use contracts::KeyWindow;
    let store = TestStore::sqlite();
    let (k1, k2) = (key(KEMLU), key(KEMLU));
    let log = store.open(KEMLU, &k1).await;
    for n in 0..5 {
        log.append(exchange(n, Role::Consumer, KEMLU, DUKCAPIL), None)
            .await
            .unwrap();
    }
    log.sign_tree_head().await.unwrap();
    drop(log);
    // The rotation finished: the gateway restarts with key 2.
    let log = store.open(KEMLU, &k2).await;
    for n in 5..9 {
        log.append(exchange(n, Role::Consumer, KEMLU, DUKCAPIL), None)
            .await
            .unwrap();
    }
    log.sign_tree_head().await.unwrap();

    let now = contracts::unix_now();
    let authority = key("ID:GOV:SIMPUL");
    let authorities = [public(&authority)];
    let windows = (
        KeyWindow {
            not_before: None,
            not_after: Some(now + 3_600),
        },
        KeyWindow {
            not_before: Some(now - 3_600),
            not_after: None,
        },
    );
    let export_with = |manifests: Vec<String>| {
        let log = &log;
        async move {
            let mut out = Vec::new();
            log.export_with_manifests(&manifests, &mut out)
                .await
                .unwrap();
            out
        }
    };
    // The manifest of the overlap lists both keys.
    let both = manifest_listing(&authority, 7, &[(&k1, windows.0), (&k2, windows.1)]);
    let text = export_with(vec![both.clone()]).await;
    let report =
        verify_export_trusting(Cursor::new(&text), Trust::Authority(&authorities), &[]).unwrap();
    assert_eq!(
        (report.records, report.tree_heads, report.verified_size),
        (9, 2, 9)
    );
    assert_eq!(report.manifests, 1);
    let mut kids = vec![k1.kid().to_owned(), k2.kid().to_owned()];
    kids.sort();
    assert_eq!(report.signed_by, kids);
    // One key alone cannot verify both heads; the manifests are not read then.
    let f = verify_export(Cursor::new(&text), &public(&k2)).unwrap_err();
    assert!(
        matches!(f.kind, VerifyFailureKind::TreeHead { tree_size: 5, .. }),
        "{f}"
    );
    // Two manifests, an older one listing key 1 only: key 1's entry comes from the newer.
    let older = manifest_listing(&authority, 3, &[(&k1, KeyWindow::default())]);
    let text2 = export_with(vec![older.clone(), both.clone()]).await;
    verify_export_trusting(Cursor::new(&text2), Trust::Authority(&authorities), &[]).unwrap();

    let refused = |text: Vec<u8>| {
        verify_export_trusting(Cursor::new(text), Trust::Authority(&authorities), &[]).unwrap_err()
    };
    // No manifest: no key.
    let f = refused(export_with(vec![]).await);
    assert!(
        matches!(&f.kind, VerifyFailureKind::TreeHead { reason, .. } if reason.contains("carries no manifest")),
        "{f}"
    );
    // The older manifest alone does not list key 2.
    assert!(matches!(
        refused(export_with(vec![older]).await).kind,
        VerifyFailureKind::TreeHead { tree_size: 9, .. }
    ));
    // A key added by whoever wrote the export: a manifest signed by another "authority"...
    let forger = key("ID:GOV:SIMPUL");
    let forged = manifest_listing(&forger, 8, &[(&k1, windows.0), (&k2, windows.1)]);
    let f = refused(export_with(vec![forged]).await);
    assert!(matches!(f.kind, VerifyFailureKind::Manifest { .. }), "{f}");
    assert_eq!(f.line, 2);
    // ... or the authority's manifest with a key slipped into its payload.
    let stranger = key(KEMLU);
    let parts: Vec<&str> = both.split('.').collect();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&contracts::canonical::b64url_decode(parts[1]).unwrap()).unwrap();
    payload["members"][0]["keys"]
        .as_array_mut()
        .unwrap()
        .push(stranger.public_jwk().clone());
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64url(&serde_json::to_vec(&payload).unwrap()),
        parts[2]
    );
    let f = refused(export_with(vec![tampered]).await);
    assert!(matches!(f.kind, VerifyFailureKind::Manifest { .. }), "{f}");
    // Key 1 retired before its head was signed: outside its window.
    let early = manifest_listing(
        &authority,
        9,
        &[
            (
                &k1,
                KeyWindow {
                    not_before: None,
                    not_after: Some(now - 3_600),
                },
            ),
            (&k2, windows.1),
        ],
    );
    let f = refused(export_with(vec![early]).await);
    assert!(
        matches!(&f.kind, VerifyFailureKind::TreeHead { tree_size: 5, reason } if reason.contains("may sign until")),
        "{f}"
    );
    // A manifest after the first record is refused.
    let text = String::from_utf8(export_with(vec![]).await).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.insert(
        2,
        serde_json::json!({"type": "manifest", "jws": both}).to_string(),
    );
    let f = refused(lines.join("\n").into_bytes());
    assert!(matches!(f.kind, VerifyFailureKind::Manifest { .. }), "{f}");
    store.cleanup().await;
}
