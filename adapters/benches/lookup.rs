//! One-row lookups through the SQL adapter, as a provider's cache miss makes them (issue
//! #13): `cargo bench -p simpul-adapters --bench lookup`.
//!
//! Dukcapil's `citizenship.status` binding of config.toml, word for word, over a residents
//! table shaped like the demo's (`nik TEXT PRIMARY KEY`), asked for distinct NIKs in random
//! order by `SIMPUL_BENCH_CONNECTIONS` (default 8) concurrent askers on one thread (a
//! current-thread runtime: the gateway's core when it is pinned to one), for
//! `SIMPUL_BENCH_SECONDS` (default 5) after a warm-up of the pool and the page cache. It
//! prints lookups/s, the latency p50/p99, and per lookup the process's CPU time (user +
//! system, every thread: the adapter's SQLite worker threads included) and its context
//! switches (every thread's, from /proc), which is what the hand-offs to sqlx's SQLite threads
//! cost. `SIMPUL_BENCH_RESIDENTS` (default 1,000,000) sets the table's size;
//! `SIMPUL_BENCH_LOOKUP_DIR` keeps the database there and reuses it. Run by `cargo test
//! --benches` (no `--bench` argument), it builds 20,000 rows and runs half a second, only to
//! check it still works.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use adapters::{Adapter, SqlAdapter, SqlSpec};
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};

/// config.toml's `citizenship.status` binding at Dukcapil.
const STATEMENT: &str = "SELECT citizenship, deceased FROM residents WHERE nik = :nik";

/// The demo's residents table (`demo/src/population/sqlite.rs`).
const SCHEMA: &str = "CREATE TABLE residents (nik TEXT PRIMARY KEY, full_name TEXT NOT NULL, sex TEXT NOT NULL CHECK (sex IN ('M','F')), birth_date TEXT NOT NULL, province TEXT NOT NULL, citizenship TEXT NOT NULL CHECK (citizenship IN ('WNI','WNA')), deceased INTEGER NOT NULL CHECK (deceased IN (0,1)))";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `i`th NIK: 16 digits, distinct for every `i`, spread over the key space.
fn nik(i: u64) -> String {
    // An odd multiplier modulo 10^10 is a bijection: distinct serials, not in key order.
    let spread = i.wrapping_mul(2_654_435_761) % 10_000_000_000;
    format!("31{spread:010}{:04}", i % 10_000)
}

async fn build(path: &Path, residents: u64) {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Off);
    let mut db = SqliteConnection::connect_with(&options)
        .await
        .expect("a new database");
    sqlx::query(SCHEMA).execute(&mut db).await.expect("schema");
    let mut tx = db.begin().await.expect("begin");
    for i in 0..residents {
        sqlx::query(
            "INSERT INTO residents VALUES (?, 'Nama Lengkap', 'M', '1990-01-17', '31', 'WNI', 0)",
        )
        .bind(nik(i))
        .execute(&mut *tx)
        .await
        .expect("insert");
    }
    tx.commit().await.expect("commit");
    db.close().await.expect("close");
}

/// CPU time (user + system) of the whole process, and its live threads' context switches
/// (the pool keeps its connections' threads for the whole run).
fn process_cost() -> (Duration, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // Clock ticks of 1/100 s (USER_HZ on Linux).
    let ticks = fields.get(11).unwrap_or(&0) + fields.get(12).unwrap_or(&0);
    let mut switches = 0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            for line in status.lines() {
                if let Some(n) = line
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
                {
                    switches += n.trim().parse::<u64>().unwrap_or(0);
                }
            }
        }
    }
    (Duration::from_millis(ticks * 10), switches)
}

/// Runs lookups of NIKs `from..` (wrapping at `residents`) with `connections` askers until `until`; their latencies.
async fn run(
    adapter: Rc<SqlAdapter>,
    residents: u64,
    from: u64,
    connections: u64,
    until: Instant,
) -> Vec<Duration> {
    let next = Rc::new(std::cell::Cell::new(from));
    let mut askers = Vec::new();
    for _ in 0..connections {
        let (adapter, next) = (adapter.clone(), next.clone());
        askers.push(tokio::task::spawn_local(async move {
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let i = next.get() % residents;
                next.set(i + 1);
                let started = Instant::now();
                let answer = adapter
                    .answer(&json!({"nik": nik(i)}))
                    .await
                    .expect("an answer");
                latencies.push(started.elapsed());
                assert_eq!(answer["registered"], true, "NIK {} is a resident", nik(i));
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for asker in askers {
        all.extend(asker.await.expect("an asker"));
    }
    all
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let residents = if quick {
        20_000
    } else {
        env_or("SIMPUL_BENCH_RESIDENTS", 1_000_000)
    };
    let seconds = if quick {
        0.5
    } else {
        env_or("SIMPUL_BENCH_SECONDS", 5) as f64
    };
    let connections = env_or("SIMPUL_BENCH_CONNECTIONS", 8);
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let dir: PathBuf = std::env::var("SIMPUL_BENCH_LOOKUP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| scratch.path().to_owned());
    std::fs::create_dir_all(&dir).expect("the database's directory");
    let path = dir.join(format!("residents-{residents}.db"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        if !path.exists() {
            eprintln!("building {residents} residents in {}", path.display());
            build(&path, residents).await;
        }
        let spec: SqlSpec = serde_json::from_value(json!({
            "database": path.to_str().expect("a UTF-8 path"),
            "statement": STATEMENT,
            "columns": {"citizenship": "text", "deceased": "bool"},
            "found": {"registered": true},
            "not_found": {"registered": false, "citizenship": "unknown", "deceased": false},
        }))
        .expect("the binding");
        let adapter = Rc::new(SqlAdapter::new(spec, Path::new("/")).expect("a valid binding"));
        // Warm-up: the pool's connections opened, the page cache filled a little.
        let warm = Instant::now() + Duration::from_secs_f64(seconds / 5.0);
        let warmed = run(adapter.clone(), residents, residents / 2, connections, warm)
            .await
            .len() as u64;
        let (cpu0, switches0) = process_cost();
        let started = Instant::now();
        let until = started + Duration::from_secs_f64(seconds);
        let mut latencies = run(
            adapter,
            residents,
            residents / 2 + warmed,
            connections,
            until,
        )
        .await;
        let wall = started.elapsed();
        let (cpu1, switches1) = process_cost();
        latencies.sort();
        let n = latencies.len().max(1);
        let at = |q: f64| latencies[((n as f64 * q) as usize).min(n - 1)];
        let lookups = latencies.len() as f64;
        println!(
            "{residents} residents, {connections} askers on one thread, {:.1} s: {:.0} lookups/s, \
             p50 {:?}, p99 {:?}, CPU {:.1} µs and {:.1} context switches per lookup",
            wall.as_secs_f64(),
            lookups / wall.as_secs_f64(),
            at(0.5),
            at(0.99),
            (cpu1 - cpu0).as_secs_f64() * 1e6 / lookups,
            switches1.saturating_sub(switches0) as f64 / lookups,
        );
    });
}
