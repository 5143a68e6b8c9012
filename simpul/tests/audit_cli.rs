//! The `simpul audit` commands end to end: export, verify, prove, check-proof and reconcile
//! on the demo configuration's logs, and an export that must extend the heads an auditor
//! kept.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use audit::{NewRecord, Role};
use audit_store::AuditLog;

use contracts::{Algorithm, SigningKey};

#[path = "../../audit-store/tests/support/records.rs"]
mod records;
use records::{DUKCAPIL, KEMLU, exchange, exchange_id, id};

// ---------------------------------------------------------------------------------------
// The `simpul audit` commands.

fn simpul(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simpul"))
        .current_dir(dir)
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The demo configuration in `dir` (catalog from the repository) with its PKI.
fn demo(dir: &Path) -> gateway::config::Config {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let text = std::fs::read_to_string(repo.join("config.toml"))
        .unwrap()
        .replace(
            "catalog = \"contracts/catalog\"",
            &format!(
                "catalog = {:?}",
                repo.join("contracts/catalog").display().to_string()
            ),
        );
    std::fs::write(dir.join("config.toml"), text).unwrap();
    let out = simpul(dir, &["pki", "init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    gateway::config::Config::load(&dir.join("config.toml")).unwrap()
}

/// Appends records to `member`'s configured log as its gateway would.
async fn fill(config: &gateway::config::Config, member: &str, records: Vec<NewRecord>) {
    let m = id(member);
    let pem = std::fs::read(config.federation.pki.signing_key(&m)).unwrap();
    let key = Arc::new(SigningKey::from_pem(Algorithm::ES256, member, &pem).unwrap());
    let mc = config.member(&m).unwrap();
    let log = AuditLog::open(&mc.audit.clone(), &config.base_dir, &m, key)
        .await
        .unwrap();
    for r in records {
        log.append(r, None).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_exports_verifies_proves_and_reconciles() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = demo(d);
    fill(
        &config,
        KEMLU,
        (0..30)
            .map(|n| exchange(n, Role::Consumer, KEMLU, DUKCAPIL))
            .collect(),
    )
    .await;
    fill(
        &config,
        DUKCAPIL,
        (0..30)
            .map(|n| exchange(n, Role::Provider, DUKCAPIL, KEMLU))
            .collect(),
    )
    .await;
    let kemlu_key = "certs/ID_GOV_KEMLU/signing.jwk";

    // A member whose gateway never ran has no log to export: nothing is created.
    let out = simpul(d, &["audit", "export", "--member", "ID:GOV:BP2MI"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!d.join("data/audit-ID_GOV_BP2MI.db").exists());

    // export → verify
    let out = simpul(
        d,
        &["audit", "export", "--member", KEMLU, "--out", "kemlu.jsonl"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = simpul(
        d,
        &[
            "audit",
            "export",
            "--member",
            DUKCAPIL,
            "--out",
            "dukcapil.jsonl",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = simpul(d, &["audit", "verify", "kemlu.jsonl", "--key", kemlu_key]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("verified"), "{}", stdout(&out));
    assert!(stdout(&out).contains("30 records"), "{}", stdout(&out));
    let out = simpul(
        d,
        &[
            "audit",
            "verify",
            "kemlu.jsonl",
            "--key",
            kemlu_key,
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["report"]["verified_size"], 30);
    // The other member's key does not verify Kemlu's log.
    let out = simpul(
        d,
        &[
            "audit",
            "verify",
            "kemlu.jsonl",
            "--key",
            "certs/ID_GOV_DUKCAPIL/signing.jwk",
        ],
    );
    assert_eq!(out.status.code(), Some(1));

    // An altered record: exit 1, naming its seq.
    let text = std::fs::read_to_string(d.join("kemlu.jsonl")).unwrap();
    let altered = text.replacen(
        &format!("\"exchange_id\":\"{}\"", exchange_id(17)),
        &format!("\"exchange_id\":\"{}\"", exchange_id(99)),
        1,
    );
    assert_ne!(altered, text);
    std::fs::write(d.join("altered.jsonl"), altered).unwrap();
    let out = simpul(d, &["audit", "verify", "altered.jsonl", "--key", kemlu_key]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("first bad seq: 17"),
        "{}",
        stdout(&out)
    );
    let out = simpul(
        d,
        &[
            "audit",
            "verify",
            "altered.jsonl",
            "--key",
            kemlu_key,
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["failure"]["first_bad_seq"], 17);

    // prove → check-proof, and a tampered proof fails.
    let eid = exchange_id(12);
    let out = simpul(
        d,
        &[
            "audit",
            "prove",
            &eid,
            "--member",
            KEMLU,
            "--out",
            "proof.json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = simpul(
        d,
        &["audit", "check-proof", "proof.json", "--key", kemlu_key],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains(&eid), "{}", stdout(&out));
    // The proof's tree head, kept by the auditor, is extended by the export.
    let out = simpul(
        d,
        &[
            "audit",
            "verify",
            "kemlu.jsonl",
            "--key",
            kemlu_key,
            "--head",
            "proof.json",
        ],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("kept tree head"), "{}", stdout(&out));
    let proof = std::fs::read_to_string(d.join("proof.json")).unwrap();
    std::fs::write(
        d.join("bad-proof.json"),
        proof.replace("\"ok\"", "\"forbidden\""),
    )
    .unwrap();
    let out = simpul(
        d,
        &["audit", "check-proof", "bad-proof.json", "--key", kemlu_key],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("FAILED"), "{}", stdout(&out));

    // reconcile: clean, then with one exchange removed from Dukcapil's export.
    let out = simpul(d, &["audit", "reconcile", "kemlu.jsonl", "dukcapil.jsonl"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("30 exchange(s) agree"),
        "{}",
        stdout(&out)
    );
    let dukcapil = std::fs::read_to_string(d.join("dukcapil.jsonl")).unwrap();
    let without: Vec<&str> = dukcapil
        .lines()
        .filter(|l| !l.contains(&exchange_id(21)))
        .collect();
    std::fs::write(d.join("dukcapil-21.jsonl"), without.join("\n")).unwrap();
    let out = simpul(
        d,
        &["audit", "reconcile", "kemlu.jsonl", "dukcapil-21.jsonl"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("only in A"), "{}", stdout(&out));
    assert!(stdout(&out).contains(&exchange_id(21)), "{}", stdout(&out));
    let out = simpul(
        d,
        &[
            "audit",
            "reconcile",
            "kemlu.jsonl",
            "dukcapil-21.jsonl",
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["only_in_a"][0]["exchange_id"], exchange_id(21));
    // A window before every record.
    let out = simpul(
        d,
        &[
            "audit",
            "reconcile",
            "kemlu.jsonl",
            "dukcapil-21.jsonl",
            "--from",
            "0",
            "--to",
            "1",
        ],
    );
    assert!(out.status.success(), "{}", stdout(&out));
}

/// Heads signed by a member's key before and after a rotation verify offline with the
/// authority's key alone: the export carries the manifest, which lists the retired key with
/// its window beside the current one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_spanning_a_key_rotation_verifies_with_the_authority_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = demo(d);
    let ok = |args: &[&str]| {
        let out = simpul(d, args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
    };
    ok(&["manifest", "sign"]);
    fill(
        &config,
        KEMLU,
        (0..10)
            .map(|n| exchange(n, Role::Consumer, KEMLU, DUKCAPIL))
            .collect(),
    )
    .await;
    // The export signs a head with the first key.
    ok(&["audit", "export", "--member", KEMLU, "--out", "first.jsonl"]);
    // A proof against that head, kept by an auditor.
    ok(&[
        "audit",
        "prove",
        &exchange_id(3),
        "--member",
        KEMLU,
        "--out",
        "proof-3.json",
    ]);
    std::fs::copy(
        d.join("certs/ID_GOV_KEMLU/signing.jwk"),
        d.join("first.jwk"),
    )
    .unwrap();
    ok(&["pki", "rotate", "--member", KEMLU]);
    ok(&["manifest", "sign"]);
    ok(&["pki", "rotate", "--member", KEMLU, "--finish"]);
    ok(&["manifest", "sign"]);
    fill(
        &config,
        KEMLU,
        (10..20)
            .map(|n| exchange(n, Role::Consumer, KEMLU, DUKCAPIL))
            .collect(),
    )
    .await;
    // This one signs a head with the second key, and carries the manifest.
    ok(&["audit", "export", "--member", KEMLU, "--out", "both.jsonl"]);
    let out = ok(&[
        "audit",
        "verify",
        "both.jsonl",
        "--authority-key",
        "certs/authority.jwk",
    ]);
    assert!(
        out.contains("20 records, 2 signed tree heads") && out.contains("1 manifest(s)"),
        "{out}"
    );
    // Either key alone fails on the other's head.
    for key in ["first.jwk", "certs/ID_GOV_KEMLU/signing.jwk"] {
        let out = simpul(d, &["audit", "verify", "both.jsonl", "--key", key]);
        assert_eq!(out.status.code(), Some(1), "{key}: {}", stdout(&out));
    }
    // The proof kept from before the rotation checks with the authority key and the newest
    // manifest, which still lists the retired key; not with the member's current key.
    let out = ok(&[
        "audit",
        "check-proof",
        "proof-3.json",
        "--authority-key",
        "certs/authority.jwk",
        "--manifest",
        "data/manifest.jws",
    ]);
    let first: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("first.jwk")).unwrap()).unwrap();
    assert!(
        out.contains("valid") && out.contains(first["kid"].as_str().unwrap()),
        "{out}"
    );
    let out = simpul(
        d,
        &[
            "audit",
            "check-proof",
            "proof-3.json",
            "--key",
            "certs/ID_GOV_KEMLU/signing.jwk",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let out = simpul(
        d,
        &[
            "audit",
            "check-proof",
            "proof-3.json",
            "--authority-key",
            "certs/authority.jwk",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--manifest"));
    // A key is needed, one way or the other.
    let out = simpul(d, &["audit", "verify", "both.jsonl"]);
    assert!(!out.status.success());
    // Another authority's key verifies no manifest of the export.
    let other = SigningKey::generate(Algorithm::ES256, "ID:GOV:SIMPUL").unwrap();
    std::fs::write(
        d.join("other.jwk"),
        serde_json::to_vec(other.public_jwk()).unwrap(),
    )
    .unwrap();
    let out = simpul(
        d,
        &[
            "audit",
            "verify",
            "both.jsonl",
            "--authority-key",
            "other.jwk",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failure"]["kind"], "manifest", "{report}");
}
