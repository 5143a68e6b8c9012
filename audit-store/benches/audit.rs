//! Durable audit appends per second, at 1, 16 and 64 concurrent writers:
//! `cargo bench -p simpul-audit-store --bench audit`.
//!
//! Each writer appends records (with their evidence, two envelopes of about 1 KB, as the
//! exchange pipeline does) one after the other; an append returns only once its group
//! commit is durable (SQLite: one frame of its append journal and one `fdatasync` per group
//! commit, in `target/tmp` on the project's disk; PostgreSQL: `synchronous_commit` as the
//! server has it). A row's time runs until the SQLite tables, written by the journal's
//! indexer, hold every append: the rate the store sustains. PostgreSQL is measured too
//! when `SIMPUL_TEST_POSTGRES_URL` names a server (in a schema made for the run and
//! dropped after). Run by `cargo test --benches`, it only checks it still works.

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit::{NewRecord, Role, StoredEvidence};
use audit_store::{AuditConfig, AuditLog};
use contracts::canonical::sha256_b64url;
use contracts::{Algorithm, MemberId, SigningKey};
use sqlx::Executor;

const WRITERS: [usize; 3] = [1, 16, 64];

fn envelope(kind: &str, n: u64, len: usize) -> String {
    let mut s = format!("eyJhbGciOiJFUzI1NiJ9.{kind}-{n}-");
    while s.len() < len {
        s.push('A');
    }
    s
}

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

struct Run {
    appends: u64,
    elapsed: Duration,
    p50_us: u64,
    p99_us: u64,
}

async fn measure(log: &AuditLog, writers: usize, length: Duration) -> Run {
    // Warm up: tables, caches, the WAL.
    for n in 0..50 {
        let (r, e) = record(u64::MAX / 2 + n);
        log.append(r, Some(e)).await.expect("warm-up append");
    }
    let started = Instant::now();
    let deadline = started + length;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = (w as u64) << 32;
            while Instant::now() < deadline {
                let (r, e) = record(n);
                let t = Instant::now();
                log.append(r, Some(e)).await.expect("durable append");
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
    // Until the tables hold every append (SQLite's indexer; at once for PostgreSQL): the
    // rate the store sustains, not what its journal absorbs in a burst.
    assert!(
        log.settle(Duration::from_secs(60)).await,
        "the tables did not catch up"
    );
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
    }
}

fn print(engine: &str, writers: usize, run: &Run) {
    println!(
        "{engine:<10} {writers:>7} {:>9} {:>12.0} {:>10.2} {:>10.2}",
        run.appends,
        run.appends as f64 / run.elapsed.as_secs_f64(),
        run.p50_us as f64 / 1000.0,
        run.p99_us as f64 / 1000.0,
    );
}

async fn open(store: String, dir: &std::path::Path, key: &Arc<SigningKey>) -> AuditLog {
    let cfg = AuditConfig {
        store,
        secret_file: Some("audit.secret".into()),
        ..AuditConfig::default()
    };
    let member = MemberId::parse("ID:GOV:DUKCAPIL").expect("member id");
    AuditLog::open(&cfg, dir, &member, key.clone())
        .await
        .expect("open the audit log")
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let length = if quick {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(5)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let key = Arc::new(SigningKey::generate(Algorithm::ES256, "ID:GOV:DUKCAPIL").expect("key"));
        println!(
            "durable audit appends, {} s per row, batch_max {}",
            length.as_secs_f64(),
            AuditConfig::default().batch_max
        );
        println!(
            "{:<10} {:>7} {:>9} {:>12} {:>10} {:>10}",
            "store", "writers", "appends", "appends/s", "p50 ms", "p99 ms"
        );
        for writers in WRITERS {
            let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
            let log = open("audit.db".into(), dir.path(), &key).await;
            print("sqlite", writers, &measure(&log, writers, length).await);
        }
        let Ok(url) = std::env::var("SIMPUL_TEST_POSTGRES_URL") else {
            println!("postgresql: skipped (SIMPUL_TEST_POSTGRES_URL is not set)");
            return;
        };
        let admin = sqlx::PgPool::connect(&url).await.expect("PostgreSQL");
        for writers in WRITERS {
            let schema = format!("audit_bench_{}", uuid::Uuid::new_v4().simple());
            admin
                .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .await
                .expect("create schema");
            let dir = tempfile::tempdir().expect("temp dir");
            let sep = if url.contains('?') { '&' } else { '?' };
            let log = open(
                format!("{url}{sep}options[search_path]={schema}"),
                dir.path(),
                &key,
            )
            .await;
            print("postgresql", writers, &measure(&log, writers, length).await);
            drop(log);
            admin
                .execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .await
                .expect("drop schema");
        }
    });
}
