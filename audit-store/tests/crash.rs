//! kill -9 of a process appending to an SQLite audit store, at random moments: every append
//! the store acknowledged is there after the next open, with its evidence (read back from
//! the journal's segments), the seqs are gap-free, and the export verifies. The appender is a child process (this test binary,
//! re-run with [`CHILD_VAR`] set) with 16 concurrent writers, printing each acknowledged
//! seq; the parent kills it with SIGKILL after a random number of acknowledgements, opens
//! the store as the next gateway would (the journal's frames beyond the tables are written
//! into them), checks, and starts the next round on the same store.

use std::io::{BufRead, BufReader, Cursor};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit::{Role, StoredEvidence, verify_export};
use audit_store::{AuditConfig, AuditLog};
use contracts::{Algorithm, SigningKey};

mod support {
    pub mod records;
}
use support::records::{DUKCAPIL, KEMLU, exchange, exchange_id, id};

/// Set in the appending child: the store's directory.
const CHILD_VAR: &str = "SIMPUL_TEST_CRASH_CHILD";
const ROUNDS: u32 = 6;
const WRITERS: u64 = 16;

fn config(dir: &std::path::Path) -> AuditConfig {
    AuditConfig {
        store: dir.join("data/audit.db").display().to_string(),
        secret_file: Some(dir.join("audit.secret").display().to_string()),
        evidence_key_file: Some(dir.join("audit.evidence").display().to_string()),
        pinned_head: Some(dir.join("audit.head.json").display().to_string()),
        batch_max: 64,
        ..AuditConfig::default()
    }
}

fn key(dir: &std::path::Path) -> Arc<SigningKey> {
    let path = dir.join("signing.pem");
    if !path.exists() {
        let k = SigningKey::generate(Algorithm::ES256, KEMLU).unwrap();
        std::fs::write(&path, k.private_pem().unwrap()).unwrap();
    }
    let pem = std::fs::read(&path).unwrap();
    Arc::new(SigningKey::from_pem(Algorithm::ES256, KEMLU, &pem).unwrap())
}

/// Exchange `n`'s evidence: envelopes that hash to its record's hashes.
fn evidence(n: u64) -> StoredEvidence {
    StoredEvidence {
        exchange_id: exchange_id(n),
        request: format!("request {n}"),
        response: Some(format!("answer {n}")),
    }
}

/// The child: appends from [`WRITERS`] tasks until killed, exchange numbers from a base
/// above every earlier round's, printing `seq n` for each acknowledged append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the appending child of kill_9_at_random_moments_loses_no_acknowledged_append"]
async fn appending_child() {
    let Some(dir) = std::env::var_os(CHILD_VAR) else {
        eprintln!(
            "appending_child: skipped: run by kill_9_at_random_moments_loses_no_acknowledged_append"
        );
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let log = AuditLog::open(&config(&dir), &dir, &id(KEMLU), key(&dir))
        .await
        .unwrap();
    let base = (log.tree_size() + 1) * 1_000_000;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for w in 0..WRITERS {
        let (log, tx) = (log.clone(), tx.clone());
        tokio::spawn(async move {
            for i in 0.. {
                let n = base + i * WRITERS + w;
                let r = log
                    .append(
                        exchange(n, Role::Consumer, KEMLU, DUKCAPIL),
                        Some(evidence(n)),
                    )
                    .await
                    .unwrap();
                if tx.send((r.seq, n)).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    // One writer of standard output, line by line, so the parent never reads half a line.
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    while let Some((seq, n)) = rx.recv().await {
        writeln!(out, "{seq} {n}").unwrap();
        out.flush().unwrap();
    }
}

/// A pseudo-random number below `n`, different every call.
fn random_below(n: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() % n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_no_acknowledged_append() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut acknowledged: Vec<(u64, u64)> = Vec::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "appending_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_VAR, dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap());
        let wanted = 50 + random_below(1_500);
        let started = Instant::now();
        let mut got = 0;
        for line in lines.lines() {
            let line = line.unwrap();
            let mut parts = line.split(' ').map(|p| p.parse::<u64>());
            if let (Some(Ok(seq)), Some(Ok(n))) = (parts.next(), parts.next()) {
                acknowledged.push((seq, n));
                got += 1;
            }
            if got >= wanted || started.elapsed() > Duration::from_secs(30) {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL: no drop, no flush, the tables behind the journal
        child.wait().unwrap();
        assert!(got > 0, "round {round}: the child acknowledged nothing");

        // The next gateway's open: what the journal holds is written into the tables.
        let log = AuditLog::open(&config(dir), dir, &id(KEMLU), key(dir))
            .await
            .unwrap();
        let size = log.tree_size();
        let records = {
            let mut all = Vec::new();
            while (all.len() as u64) < size {
                let from = all.len() as u64;
                all.extend(log.records(from, size).await.unwrap());
            }
            all
        };
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(
            seqs,
            (0..size).collect::<Vec<_>>(),
            "round {round}: gap-free"
        );
        for &(seq, n) in &acknowledged {
            assert!(
                seq < size,
                "round {round}: acknowledged seq {seq} is not in a log of {size}"
            );
            assert_eq!(
                records[seq as usize].exchange_id,
                exchange_id(n),
                "round {round}: seq {seq}"
            );
        }
        // Evidence too, read from the journal segments the records point to: every append
        // acknowledged in this round, and every tenth of the earlier rounds' (their
        // segments kept through the later kills and opens).
        let this_round = acknowledged.len() - got as usize;
        for (i, &(_, n)) in acknowledged.iter().enumerate() {
            if i < this_round && i % 10 != 0 {
                continue;
            }
            let kept = log.evidence(&exchange_id(n)).await.unwrap();
            assert_eq!(kept, [evidence(n)], "round {round}: evidence of {n}");
        }
        log.sign_tree_head().await.unwrap();
        let mut export = Vec::new();
        log.export(&mut export).await.unwrap();
        let k = key(dir).verifying_key().unwrap();
        let report = verify_export(Cursor::new(export), &k).unwrap();
        assert_eq!((report.records, report.verified_size), (size, size));
        eprintln!("round {round}: {got} acknowledged before the kill, log of {size} verified");
        assert!(log.settle(Duration::from_secs(10)).await);
    }
}
