//! The audit trail through real exchanges: a record on both sides of every exchange,
//! refusals included, bound by exchange id and request hash; no personal identifier in
//! clear; and no answer without its durable record.

use std::time::Duration;

use bytes::Bytes;
use contracts::canonical::sha256_b64url;
use serde_json::{Value, json};

use crate::common::*;

const DUKCAPIL_AUDIT: &str = "auditor:ID:GOV:DUKCAPIL:AUDIT";

#[tokio::test]
async fn every_exchange_is_recorded_on_both_sides_with_one_id_and_request_hash() {
    let f = Federation::start().await;
    let nik = f.population.sample_in_all_four().to_owned();
    let answer = f.ask_citizenship().await;
    let consumer = f.records(KEMLU, &answer.exchange_id).await;
    let provider = f.records(DUKCAPIL, &answer.exchange_id).await;
    assert_eq!((consumer.len(), provider.len()), (1, 1));
    let (c, p) = (&consumer[0], &provider[0]);
    assert_eq!(c["role"], "consumer");
    assert_eq!(p["role"], "provider");
    let request_hash = sha256_b64url(answer.evidence.request.as_bytes());
    let response_hash = sha256_b64url(answer.evidence.response.as_bytes());
    for r in [c, p] {
        assert_eq!(r["request_hash"], request_hash.as_str());
        assert_eq!(r["response_hash"], response_hash.as_str());
        assert_eq!(r["outcome"], "ok");
        assert_eq!(r["consumer"], KEMLU);
        assert_eq!(r["provider"], DUKCAPIL);
        assert_eq!(r["contract"], "citizenship.status");
        assert_eq!(r["purpose"], "citizen-protection");
        assert!(
            r["subject"].is_string(),
            "the NIK is kept as its keyed hash: {r}"
        );
    }
    // The same person hashes to the same subject within one gateway, never to the NIK.
    assert!(!c["subject"].as_str().unwrap().contains(&nik));
    // The evidence of the exchange is kept and matches the record's hashes.
    let evidence = f
        .admin_call(
            DUKCAPIL,
            DUKCAPIL_AUDIT,
            http::Method::GET,
            &format!("/audit/evidence?exchange_id={}", answer.exchange_id),
            Bytes::new(),
        )
        .await;
    let evidence: Value = serde_json::from_slice(&evidence.body).unwrap();
    assert_eq!(
        sha256_b64url(
            evidence["evidence"][0]["request"]
                .as_str()
                .unwrap()
                .as_bytes()
        ),
        request_hash
    );
    // Operators do not read the audit log; auditors do not operate the gateway.
    let refused = f
        .admin_call(
            DUKCAPIL,
            "operator:ID:GOV:DUKCAPIL:OPS",
            http::Method::GET,
            "/audit/tree-head",
            Bytes::new(),
        )
        .await;
    assert_problem(&refused, 403, "forbidden");
    let refused = f
        .admin_call(
            DUKCAPIL,
            DUKCAPIL_AUDIT,
            http::Method::GET,
            "/metrics",
            Bytes::new(),
        )
        .await;
    assert_problem(&refused, 403, "forbidden");
    let head = f
        .admin_call(
            DUKCAPIL,
            DUKCAPIL_AUDIT,
            http::Method::GET,
            "/audit/tree-head",
            Bytes::new(),
        )
        .await;
    let head: Value = serde_json::from_slice(&head.body).unwrap();
    assert!(head["tree_size"].as_u64().unwrap() >= 1, "{head}");
}

#[tokio::test]
async fn refusals_are_recorded_with_the_check_that_refused_them() {
    let f = Federation::start().await;
    // Refused by the provider: Kemlu may not ask citizenship for social security.
    let request = f.nik_request(KEMLU, DUKCAPIL, "citizenship.status", "social-security");
    assert_problem(&f.send_signed(KEMLU, &request).await, 403, "forbidden");
    let records = f.records(DUKCAPIL, &request.id).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["outcome"], "forbidden");
    assert_eq!(records[0]["response_hash"], Value::Null);
    // A replay is refused, and recorded as such.
    let ok = f.citizenship_request();
    let jws = f.sign(KEMLU, &ok);
    assert_eq!(f.exchange(KEMLU, jws.clone(), &ok).await.status, 200);
    assert_problem(&f.exchange(KEMLU, jws, &ok).await, 409, "replay");
    let outcomes: Vec<Value> = f
        .records(DUKCAPIL, &ok.id)
        .await
        .iter()
        .map(|r| r["outcome"].clone())
        .collect();
    assert_eq!(outcomes, [json!("ok"), json!("replay")]);
    // Refused on the local face before any exchange (Peduli WNI is not granted this
    // purpose): recorded at the consumer with its own id.
    let p = assert_problem(
        &f.local_query(
            PEDULI,
            KEMLU,
            "citizenship.status",
            json!({"purpose": "social-security", "query": {"nik": "3171011701900001"}}),
        )
        .await,
        403,
        "not-granted",
    );
    let id = p.exchange_id.expect("a local refusal has an exchange id");
    let records = f.records(KEMLU, &id).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["role"], "consumer");
    assert_eq!(records[0]["outcome"], "not-granted");
}

/// Each record names who really asked: the TLS identity of the other side, and on the
/// consumer the member system and the end user it named (only as a keyed hash); a request
/// whose claimed `iss` is not the TLS peer is recorded under the peer.
#[tokio::test]
async fn records_name_who_asked_as_tls_authenticated_them() {
    let f = Federation::start().await;
    let nik = f.population.sample_in_all_four().to_owned();
    let ask = |user: &'static str| {
        let body = citizen_protection(&nik);
        let f = &f;
        async move {
            let reply = f
                .local_query_with(
                    PEDULI,
                    KEMLU,
                    "citizenship.status",
                    &[("Simpul-User-Id", user)],
                    body,
                )
                .await;
            ok_json::<contracts::envelope::LocalAnswer>(&reply).exchange_id
        }
    };
    let (first, again, other) = (
        ask("officer-7@kemlu").await,
        ask("officer-7@kemlu").await,
        ask("officer-9@kemlu").await,
    );
    let consumer = |id: String| {
        let f = &f;
        async move {
            let records = f.records(KEMLU, &id).await;
            assert_eq!(records.len(), 1);
            records[0].clone()
        }
    };
    let c = consumer(first.clone()).await;
    assert_eq!(c["subsystem"], PEDULI);
    assert_eq!(c["peer"], DUKCAPIL);
    let user = c["user"].as_str().expect("the end user is recorded");
    assert!(!user.contains("officer"), "never in clear: {c}");
    assert_eq!(consumer(again).await["user"], user, "one user, one hash");
    assert_ne!(consumer(other).await["user"], user);
    let p = &f.records(DUKCAPIL, &first).await[0];
    assert_eq!(p["peer"], KEMLU);
    assert_eq!(p["consumer"], KEMLU);
    assert!(
        p.get("user").is_none() && p.get("subsystem").is_none(),
        "{p}"
    );

    // Without the header, no user; a malformed one is refused before any exchange.
    let plain = f.ask_citizenship().await;
    assert!(
        f.records(KEMLU, &plain.exchange_id).await[0]
            .get("user")
            .is_none()
    );
    let refused = f
        .local_query_with(
            PEDULI,
            KEMLU,
            "citizenship.status",
            &[("Simpul-User-Id", &"x".repeat(257))],
            citizen_protection(&nik),
        )
        .await;
    assert_problem(&refused, 400, "malformed");

    // BP2MI's gateway certificate with a request Kemlu signed: refused, and recorded under
    // BP2MI, the member TLS authenticated, not under the claimed `iss`.
    let request = f.citizenship_request();
    let jws = f.sign(KEMLU, &request);
    assert_problem(
        &f.exchange(BP2MI, jws, &request).await,
        401,
        "identity-mismatch",
    );
    let records = f.records(DUKCAPIL, &request.id).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["outcome"], "identity-mismatch");
    assert_eq!(records[0]["consumer"], BP2MI);
    assert_eq!(records[0]["peer"], BP2MI);
}

/// A citizen's history: `simpul audit subject --nik` through Dukcapil's auditor face finds
/// exactly the exchanges about that NIK among others', each proven against a verified head,
/// and the NIK reaches no record.
#[tokio::test]
async fn the_subject_lookup_finds_exactly_one_persons_exchanges() {
    let f = Federation::start().await;
    let mine = f.population.sample_in_all_four().to_owned();
    let other = f.population.sample_dukcapil_only().to_owned();
    let mut my_exchanges = Vec::new();
    for nik in [&mine, &other, &mine, &other, &other] {
        let r = f
            .local_query(
                PEDULI,
                KEMLU,
                "person.protection-profile",
                citizen_protection(nik),
            )
            .await;
        assert_eq!(r.status, 200);
        if nik == &mine {
            let answer: Value = serde_json::from_slice(&r.body).unwrap();
            my_exchanges.push(
                answer["parts"]["citizenship"]["exchange_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    let config = f.config_file.display().to_string();
    let nik = mine.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_simpul"))
            .args([
                "--config", &config, "audit", "subject", "--member", DUKCAPIL, "--nik", &nik,
                "--json",
            ])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let history: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(history["ok"], true, "{history}");
    let found: Vec<&str> = history["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["exchange_id"].as_str().unwrap())
        .collect();
    assert_eq!(found, my_exchanges, "{history}");
    for r in history["records"].as_array().unwrap() {
        assert_eq!(r["contract"], "citizenship.status");
        assert_eq!(r["consumer"], KEMLU);
        assert_eq!(r["purpose"], "citizen-protection");
    }
    assert!(!stdout.contains(mine.as_str()), "the NIK is echoed");
    // A malformed NIK is refused by the auditor face.
    let bad = f
        .admin_call(
            DUKCAPIL,
            DUKCAPIL_AUDIT,
            http::Method::POST,
            "/audit/subject",
            Bytes::from_static(b"{\"nik\": \"12\"}"),
        )
        .await;
    assert_problem(&bad, 400, "malformed");
}

/// An auditor that is not also granted evidence reads records and proofs, and is refused
/// the envelopes, which hold the queries' personal data.
#[tokio::test]
async fn evidence_is_served_only_to_auditors_granted_it() {
    let f = Federation::start_with(Options {
        edits: vec![(
            ", evidence_auditors = [\"AUDIT\"] }  # metrics and cache purge; the audit log\nseed = { dataset = \"residents\"".into(),
            " }\nseed = { dataset = \"residents\"".into(),
        )],
        ..Options::default()
    })
    .await;
    let answer = f.ask_citizenship().await;
    let inclusion = format!("/audit/inclusion?exchange_id={}", answer.exchange_id);
    let records = f
        .admin_call(
            DUKCAPIL,
            DUKCAPIL_AUDIT,
            http::Method::GET,
            &inclusion,
            Bytes::new(),
        )
        .await;
    assert_eq!(records.status, 200);
    let evidence = format!("/audit/evidence?exchange_id={}", answer.exchange_id);
    let evidence = f
        .admin_call(
            DUKCAPIL,
            DUKCAPIL_AUDIT,
            http::Method::GET,
            &evidence,
            Bytes::new(),
        )
        .await;
    let p = assert_problem(&evidence, 403, "forbidden");
    assert!(p.detail.contains("evidence_auditors"), "{}", p.detail);
}

#[tokio::test]
async fn no_personal_identifier_appears_in_clear_in_any_audit_store() {
    let f = Federation::start().await;
    let niks = [
        f.population.sample_in_all_four().to_owned(),
        f.population.sample_dukcapil_only().to_owned(),
        "3171011701909999".to_owned(),
    ];
    for nik in &niks {
        let r = f
            .local_query(
                PEDULI,
                KEMLU,
                "person.protection-profile",
                citizen_protection(nik),
            )
            .await;
        assert_eq!(r.status, 200);
        // And a refused one, whose query never reached a provider.
        f.local_query(
            PEDULI,
            KEMLU,
            "citizenship.status",
            json!({"purpose": "social-security", "query": {"nik": nik}}),
        )
        .await;
    }
    let data = f.data_dir();
    let mut scanned = 0;
    // Every file of every audit store: the SQLite files and the journals' segments.
    let mut files = Vec::new();
    let mut dirs = vec![data.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                if dir != data || name.starts_with("audit") {
                    dirs.push(path);
                }
            } else if dir != data || name.starts_with("audit") {
                files.push(path);
            }
        }
    }
    assert!(
        files
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "seg")),
        "journal segments are scanned: {files:?}"
    );
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        scanned += bytes.len();
        for nik in &niks {
            // In clear, or inside a JWS payload (base64url, at any of its three alignments).
            for form in std::iter::once(nik.clone()).chain(base64url_forms(nik)) {
                assert!(
                    !bytes.windows(form.len()).any(|w| w == form.as_bytes()),
                    "{nik} (as `{form}`) in {}",
                    path.display()
                );
            }
        }
    }
    assert!(scanned > 0, "no audit store found in {}", data.display());
}

/// The base64url characters that encode `text` wherever it sits in a longer encoded
/// string: one run per alignment (0, 1 or 2 bytes before it), without the characters its
/// neighbours share.
fn base64url_forms(text: &str) -> Vec<String> {
    (0..3)
        .map(|pad| {
            let mut bytes = vec![b'{'; pad];
            bytes.extend_from_slice(text.as_bytes());
            let encoded = contracts::canonical::b64url(&bytes);
            let from = (pad * 4).div_ceil(3);
            let to = (pad + text.len()) * 4 / 3;
            encoded[from..to].to_owned()
        })
        .collect()
}

#[test]
fn base64url_forms_find_a_nik_inside_a_jws_payload() {
    let nik = "3171011701900001";
    for prefix in ["", "{", "{\"", "{\"nik\":\""] {
        let payload = contracts::canonical::b64url(format!("{prefix}{nik}\"}}").as_bytes());
        assert!(
            base64url_forms(nik)
                .iter()
                .any(|f| payload.contains(f.as_str())),
            "{prefix}: {payload}"
        );
    }
}

#[tokio::test]
async fn an_audit_store_that_cannot_be_written_fails_the_exchange_closed_with_503() {
    let f = Federation::start().await;
    let store = f.data_dir().join("audit-ID_GOV_DUKCAPIL.db");
    assert!(store.exists(), "{}", store.display());
    // The store's file moved away under the running gateway: no append can be durable in a
    // file nothing names.
    let aside = f.data_dir().join("aside.db");
    std::fs::rename(&store, &aside).unwrap();
    let request = f.citizenship_request();
    let reply = tokio::time::timeout(
        Duration::from_secs(60),
        f.exchange(KEMLU, f.sign(KEMLU, &request), &request),
    )
    .await
    .unwrap();
    let p = assert_problem(&reply, 503, "provider-unavailable");
    assert!(p.detail.contains("audit"), "{}", p.detail);
    std::fs::rename(&aside, &store).unwrap();
    let request = f.citizenship_request();
    assert_eq!(f.send_signed(KEMLU, &request).await.status, 200);
}
