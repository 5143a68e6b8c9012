//! The independent check of docs/AUDIT.md §6, run as written there (the Python script is
//! read out of the document) against a real log's export and proof bundle; and what the
//! heads promise about their origin and timestamps, checked by `verify_export`.
//!
//! The script needs Python 3 with the `cryptography` package: `SIMPUL_TEST_PYTHON` names the
//! interpreter (CI sets it, and then a missing package fails the test); without the variable
//! `python3` is tried and the script's tests say they are skipped if it cannot run.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use audit::{Role, SignedTreeHead, VerifyFailureKind, verify_export, verify_tree_head};
use audit_store::{AuditConfig, AuditLog};
use contracts::canonical::canonical_json;
use contracts::{Algorithm, SigningKey};

mod support {
    pub mod records;
}
use support::records::{DUKCAPIL, KEMLU, exchange, id};

const PYTHON_VAR: &str = "SIMPUL_TEST_PYTHON";

/// The interpreter to run the script with, or `None` (said) when it cannot run here.
fn python(test: &str) -> Option<String> {
    let (python, required) = match std::env::var(PYTHON_VAR) {
        Ok(p) => (p, true),
        Err(_) => ("python3".to_owned(), false),
    };
    let ok = Command::new(&python)
        .args(["-c", "import cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    match (ok, required) {
        (true, _) => Some(python),
        (false, true) => panic!("{PYTHON_VAR}={python} cannot import `cryptography`"),
        (false, false) => {
            eprintln!(
                "{test}: skipped: python3 with the `cryptography` package is not available (set {PYTHON_VAR})"
            );
            None
        }
    }
}

/// The script of docs/AUDIT.md §6, exactly as the document shows it.
fn script(dir: &Path) -> PathBuf {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/AUDIT.md")).unwrap();
    let section = doc
        .split_once("## 6. Checking without `simpul`")
        .expect("AUDIT.md has §6")
        .1;
    let code = section
        .split_once("```python\n")
        .expect("§6 has a Python block")
        .1
        .split_once("\n```")
        .expect("the block ends")
        .0;
    let path = dir.join("simpul_audit_check.py");
    std::fs::write(&path, code).unwrap();
    path
}

/// A log of 30 exchanges on a real SQLite file, with heads at 10, 25 and 30; some records
/// are parts of a federated lookup, some of batch exchanges (with item subjects) and some
/// of overlap runs (with their figures), so every record shape is hashed. Exchange 12 is of
/// a batch.
async fn log(dir: &Path, key: &Arc<SigningKey>) -> AuditLog {
    let config = AuditConfig {
        store: dir.join("audit.db").display().to_string(),
        secret_file: Some(dir.join("audit.secret").display().to_string()),
        ..AuditConfig::default()
    };
    let log = AuditLog::open(&config, dir, &id(KEMLU), key.clone())
        .await
        .unwrap();
    for n in 0..30 {
        let mut record = exchange(n, Role::Consumer, KEMLU, DUKCAPIL);
        if n % 3 == 0 {
            record.lookup_id = Some(format!("lookup-{n}"));
        }
        if n % 5 == 2 {
            record.contract = "identity.verify".into();
            record.subject = None;
            let people: Vec<Vec<serde_json::Value>> = (0..3)
                .map(|i| vec![serde_json::json!(format!("317123456789{n:02}0{i}"))])
                .collect();
            record.subjects = log.subjects(&people);
        }
        if n % 7 == 4 {
            record.contract = "placement.overlap".into();
            record.overlap = Some(audit::OverlapFigures {
                groups: vec![2_474 + n, 1_079],
                theirs: (n > 10).then_some(3_933),
                overlaps: (n > 20).then(|| vec![847, 491]),
            });
        }
        log.append(record, None).await.unwrap();
        if [9, 24, 29].contains(&n) {
            log.sign_tree_head().await.unwrap();
        }
    }
    log
}

fn run(python: &str, script: &Path, args: &[&Path]) -> (bool, String) {
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_independent_check_verifies_an_export_and_a_proof_and_catches_tampering() {
    let Some(python) = python("the_independent_check_verifies_an_export_and_a_proof") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(SigningKey::generate(Algorithm::ES256, KEMLU).unwrap());
    let log = log(dir.path(), &key).await;
    let script = script(dir.path());
    let jwk = dir.path().join("kemlu.jwk");
    std::fs::write(&jwk, serde_json::to_vec(key.public_jwk()).unwrap()).unwrap();

    let mut export = Vec::new();
    log.export(&mut export).await.unwrap();
    let export_file = dir.path().join("export.jsonl");
    std::fs::write(&export_file, &export).unwrap();
    let (ok, out) = run(&python, &script, &[Path::new("export"), &export_file, &jwk]);
    assert!(ok, "{out}");
    assert!(out.contains("tree size 30: root"), "{out}");
    assert!(out.contains("30 records"), "{out}");

    let bundle = log.prove(&support::records::exchange_id(12)).await.unwrap();
    let bundle_file = dir.path().join("proof.json");
    std::fs::write(&bundle_file, serde_json::to_vec(&bundle).unwrap()).unwrap();
    let (ok, out) = run(&python, &script, &[Path::new("proof"), &bundle_file, &jwk]);
    assert!(ok, "{out}");
    assert!(out.contains("seq 12 of exchange"), "{out}");

    // One record's purpose changed in the export: the script refuses it.
    let text = String::from_utf8(export).unwrap();
    let altered = text.replacen("\"purpose\":\"", "\"purpose\":\"x", 5);
    std::fs::write(&export_file, altered).unwrap();
    let (ok, out) = run(&python, &script, &[Path::new("export"), &export_file, &jwk]);
    assert!(!ok, "an altered export passed: {out}");
    assert!(out.contains("do not hash to the signed root"), "{out}");

    // Another member's key: the heads are not its.
    std::fs::write(&export_file, &text).unwrap();
    let other = SigningKey::generate(Algorithm::ES256, DUKCAPIL).unwrap();
    std::fs::write(&jwk, serde_json::to_vec(other.public_jwk()).unwrap()).unwrap();
    let (ok, out) = run(&python, &script, &[Path::new("export"), &export_file, &jwk]);
    assert!(!ok, "another member's key passed: {out}");

    // After a rotation the log goes on under a second key: the script takes both keys (a
    // format-3 export, whose manifest line it skips), and refuses with the new one alone.
    drop(log);
    let second = Arc::new(SigningKey::generate(Algorithm::ES256, KEMLU).unwrap());
    let log = self::log(dir.path(), &second).await;
    let mut export = Vec::new();
    log.export_with_manifests(&["eyJhbGciOiJFUzI1NiJ9.e30.c2ln".to_owned()], &mut export)
        .await
        .unwrap();
    std::fs::write(&export_file, &export).unwrap();
    std::fs::write(&jwk, serde_json::to_vec(key.public_jwk()).unwrap()).unwrap();
    let jwk2 = dir.path().join("kemlu-2.jwk");
    std::fs::write(&jwk2, serde_json::to_vec(second.public_jwk()).unwrap()).unwrap();
    let (ok, out) = run(
        &python,
        &script,
        &[Path::new("export"), &export_file, &jwk, &jwk2],
    );
    assert!(ok, "{out}");
    assert!(out.contains("60 records"), "{out}");
    let (ok, out) = run(
        &python,
        &script,
        &[Path::new("export"), &export_file, &jwk2],
    );
    assert!(
        !ok && out.contains("signed by"),
        "one key of two passed: {out}"
    );
}

/// A head over `base`'s tree, re-signed by `key` with another payload.
fn resigned(key: &SigningKey, base: &SignedTreeHead, edit: impl Fn(&mut SignedTreeHead)) -> String {
    let mut head = base.clone();
    edit(&mut head);
    let payload = serde_json::json!({
        "member": head.member, "log": head.log, "tree_size": head.tree_size,
        "root_hash": head.root_hash, "timestamp": head.timestamp,
    });
    head.jws = key
        .sign(audit::TREE_HEAD_TYP, &canonical_json(&payload).unwrap())
        .unwrap();
    serde_json::to_string(&audit::ExportLine::TreeHead(head)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_name_their_origin_and_their_time_does_not_go_back() {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(SigningKey::generate(Algorithm::ES256, KEMLU).unwrap());
    let log = log(dir.path(), &key).await;
    let mut export = Vec::new();
    log.export(&mut export).await.unwrap();
    let text = String::from_utf8(export).unwrap();
    let public = key.verifying_key().unwrap();
    let heads: Vec<(String, SignedTreeHead)> = text
        .lines()
        .filter_map(|l| match serde_json::from_str(l).unwrap() {
            audit::ExportLine::TreeHead(h) => Some((l.to_owned(), h)),
            _ => None,
        })
        .collect();
    assert_eq!(heads.len(), 3);
    for (_, h) in &heads {
        assert_eq!(
            (h.member.as_str(), h.log.as_str()),
            (KEMLU, audit::EXCHANGE_LOG)
        );
        verify_tree_head(h, &public).unwrap();
    }
    assert!(
        heads
            .windows(2)
            .all(|w| w[0].1.timestamp <= w[1].1.timestamp)
    );

    // The last head re-signed by the member's own key, stamped before the first: refused,
    // naming both heads.
    let (last_line, last) = &heads[2];
    let early = resigned(&key, last, |h| h.timestamp = heads[0].1.timestamp - 1);
    let f = verify_export(Cursor::new(text.replace(last_line, &early)), &public).unwrap_err();
    assert!(
        matches!(
            f.kind,
            VerifyFailureKind::TimeGoesBack {
                tree_size: 30,
                earlier_size: 25,
                ..
            }
        ),
        "{f}"
    );

    // Re-signed naming another log of the same member: refused as not this log's head.
    let elsewhere = resigned(&key, last, |h| h.log = "events".into());
    let f = verify_export(Cursor::new(text.replace(last_line, &elsewhere)), &public).unwrap_err();
    assert!(
        matches!(f.kind, VerifyFailureKind::TreeHead { tree_size: 30, .. }),
        "{f}"
    );
    assert!(f.to_string().contains("of log `events`"), "{f}");
}
