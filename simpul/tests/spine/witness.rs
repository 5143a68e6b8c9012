//! Exchange partners as witnesses (PROTOCOL.md §5.4) over real TLS: every request and
//! answer carries its sender's signed tree head; a head that is not the sender's is refused;
//! a log cut back by an insider who also removed the pinned head is caught by the next
//! partner it talks to, which keeps both heads as evidence and refuses it.

use std::time::Duration;

use bytes::Bytes;
use contracts::envelope::JOSE_MEDIA_TYPE;
use gateway::witness::TREE_HEAD_HEADER;
use http::Method;
use serde_json::Value;

use crate::common::*;

const KEMLU_AUDIT: &str = "auditor:ID:GOV:KEMLU:AUDIT";

/// Kemlu's gateway signs a tree head now, through its auditor face; its size.
async fn sign_head(f: &Federation) -> u64 {
    let reply = f
        .admin_call(
            KEMLU,
            KEMLU_AUDIT,
            Method::POST,
            "/audit/tree-head",
            Bytes::new(),
        )
        .await;
    let head: Value = ok_json(&reply);
    head["tree_size"].as_u64().unwrap()
}

/// `simpul audit witness --member DUKCAPIL --json`: its exit code and its JSON. Run on a
/// blocking thread: the test's runtime must go on running the gateways meanwhile (Dukcapil's
/// indexer may hold its store's write lock, and the command waits for it).
async fn witness_cli(f: &Federation) -> (Option<i32>, Value) {
    let config = f.config_file.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_simpul"))
            .arg("--config")
            .arg(&config)
            .args(["audit", "witness", "--member", DUKCAPIL, "--json"])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), json)
}

/// The entry of `member` in `simpul audit witness --json`.
fn partner<'a>(listing: &'a Value, member: &str) -> &'a Value {
    listing["partners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["member"] == member)
        .unwrap_or_else(|| panic!("{member} is not listed: {listing}"))
}

/// What Dukcapil's store keeps of what it witnessed: Kemlu's newest head's size, and the
/// forks it caught (held, offered).
async fn dukcapil_witnessed(f: &Federation) -> (Option<i64>, Vec<(String, String, String)>) {
    let store = f.data_dir().join("audit-ID_GOV_DUKCAPIL.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", store.display()))
        .await
        .unwrap();
    let size: Option<i64> =
        sqlx::query_scalar("SELECT tree_size FROM simpul_audit_witness WHERE member = ?")
            .bind(KEMLU)
            .fetch_optional(&pool)
            .await
            .unwrap();
    let forks: Vec<(String, String, String)> =
        sqlx::query_as("SELECT reason, held, offered FROM simpul_audit_forks WHERE member = ?")
            .bind(KEMLU)
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    (size, forks)
}

fn payload_of(jws: &str) -> Value {
    let part = jws.split('.').nth(1).unwrap();
    serde_json::from_slice(&contracts::canonical::b64url_decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn answers_carry_the_providers_head_and_a_proof_route_connects_its_heads() {
    let f = Federation::start().await;
    let request = f.citizenship_request();
    let reply = f.send_signed(KEMLU, &request).await;
    assert_ok(&reply);
    let head = reply
        .headers
        .get(TREE_HEAD_HEADER)
        .expect("the answer carries the provider's head")
        .to_str()
        .unwrap()
        .to_owned();
    let payload = payload_of(&head);
    assert_eq!(payload["member"], DUKCAPIL);
    assert_eq!(payload["log"], "exchanges");
    // A refusal carries it too.
    let refused = f
        .post_exchange(KEMLU, DUKCAPIL, "citizenship.status", JOSE_MEDIA_TYPE, "x")
        .await;
    assert!(refused.headers.get(TREE_HEAD_HEADER).is_some());

    // Any member may ask how two of the log's heads connect; sizes outside it are refused.
    // (A second exchange: the refusal above is counted into its minute, not yet recorded.)
    assert_ok(&f.send_signed(KEMLU, &f.citizenship_request()).await);
    let client = f.as_gateway(BP2MI, DUKCAPIL);
    let ask = |q: &'static str| {
        let url = format!("{}/v1/audit/consistency?{q}", f.url(DUKCAPIL));
        let client = client.clone();
        async move {
            client
                .call(
                    Method::GET,
                    &url,
                    "application/json",
                    Bytes::new(),
                    Duration::from_secs(5),
                )
                .await
                .unwrap()
        }
    };
    let proof: Value = ok_json(&ask("first=1&second=2").await);
    assert_eq!(
        (proof["first"].as_u64(), proof["second"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(proof["path"].is_array());
    assert_problem(&ask("first=1&second=999999").await, 400, "malformed");
    assert_problem(&ask("first=2&second=1").await, 400, "malformed");
    assert_problem(&ask("first=x").await, 400, "malformed");
}

#[tokio::test]
async fn a_head_that_is_not_the_senders_is_refused() {
    let f = Federation::start().await;
    // BP2MI's genuine head, sent by Kemlu.
    let bp2mi_head = {
        let request = f.request(
            KEMLU,
            BP2MI,
            "placement.status",
            "citizen-protection",
            serde_json::json!({"nik": f.population.sample_in_all_four()}),
        );
        let reply = f.send_signed(KEMLU, &request).await;
        reply
            .headers
            .get(TREE_HEAD_HEADER)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    for (head, why) in [
        (bp2mi_head.as_str(), "signed by ID:GOV:BP2MI"),
        ("not-a-jws", "not valid"),
    ] {
        let request = f.citizenship_request();
        let url = format!("{}/v1/exchange/citizenship.status/1", f.url(DUKCAPIL));
        let reply = f
            .as_gateway(KEMLU, DUKCAPIL)
            .call_with(
                Method::POST,
                &url,
                JOSE_MEDIA_TYPE,
                &[(TREE_HEAD_HEADER, head)],
                f.sign(KEMLU, &request).into(),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        let p = assert_problem(&reply, 400, "bad-tree-head");
        assert!(p.detail.contains(why), "{}", p.detail);
        assert_eq!(p.exchange_id.as_deref(), Some(request.id.as_str()));
        let records = f.records(DUKCAPIL, &request.id).await;
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["outcome"], "bad-tree-head");
    }
}

#[tokio::test]
async fn a_log_cut_back_without_its_pin_is_caught_by_the_next_partner() {
    let mut f = Federation::start().await;
    for _ in 0..3 {
        f.ask_citizenship().await;
    }
    let cut = sign_head(&f).await;
    f.ask_citizenship().await; // carries the head of size `cut` to Dukcapil
    for _ in 0..4 {
        f.ask_citizenship().await;
    }
    let newest = sign_head(&f).await;
    assert!(newest >= cut + 5, "{cut} {newest}");
    f.ask_citizenship().await; // Dukcapil proves `cut` → `newest` with Kemlu's help
    let (held, forks) = dukcapil_witnessed(&f).await;
    assert_eq!(held, Some(newest as i64));
    assert!(forks.is_empty(), "{forks:?}");
    let (code, listing) = witness_cli(&f).await;
    assert_eq!(code, Some(0), "{listing}");
    let kemlu = partner(&listing, KEMLU);
    assert_eq!(kemlu["consistent"], true);
    assert_eq!(kemlu["tree_head"]["tree_size"].as_u64(), Some(newest));

    // The insider, with the disk but not the key: Kemlu's log cut back to `cut` records,
    // every later head deleted, the tree recomputed (the algorithm is public) and the state
    // set to it, and the pin removed.
    let kept: Value = ok_json(
        &f.audit_get(KEMLU, &format!("/audit/records?from=0&to={cut}"))
            .await,
    );
    let kept: Vec<audit::AuditRecord> = serde_json::from_value(kept["records"].clone()).unwrap();
    let mut tree = audit::merkle::Frontier::new();
    let mut nodes = Vec::new();
    for r in &kept {
        tree.push(audit::merkle::leaf_hash(r).unwrap(), |n, h| {
            nodes.push((n.id(), *h))
        });
    }
    f.stop(KEMLU).await;
    let store = f.data_dir().join("audit-ID_GOV_KEMLU.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", store.display()))
        .await
        .unwrap();
    for sql in [
        "DELETE FROM simpul_audit_records WHERE seq >= ?1",
        // The journal's segments keep the evidence; the insider deletes them below, and
        // their listing here.
        "DELETE FROM simpul_audit_segments WHERE ?1 >= 0",
        "DELETE FROM simpul_audit_tree_heads WHERE tree_size > ?1",
        "DELETE FROM simpul_audit_nodes WHERE ?1 >= 0",
    ] {
        sqlx::query(sql)
            .bind(cut as i64)
            .execute(&pool)
            .await
            .unwrap();
    }
    for (node, hash) in nodes {
        sqlx::query("INSERT INTO simpul_audit_nodes (log, node, hash) VALUES (?, ?, ?)")
            .bind(KEMLU)
            .bind(node as i64)
            .bind(hash.to_vec())
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE simpul_audit_state SET tree_size = ?, root_hash = ?")
        .bind(cut as i64)
        .bind(tree.root().to_vec())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    // The journal in front of the tables would put the records back: the insider deletes it.
    std::fs::remove_dir_all(f.data_dir().join("audit-ID_GOV_KEMLU.db.journal")).unwrap();
    std::fs::remove_file(f.layout().member_dir(&id(KEMLU)).join("audit-head.json")).unwrap();
    f.restart(KEMLU).await;

    // Kemlu's gateway starts (nothing it holds contradicts the store) and goes on: its next
    // head is of a tree that does not extend the one Dukcapil holds.
    f.ask_citizenship().await;
    let forged = sign_head(&f).await;
    assert!(forged < newest, "{forged} {newest}");
    let reply = f.ask_citizenship_reply().await;
    let p = assert_problem(&reply, 409, "log-forked");
    assert_eq!(p.provider.as_deref(), Some(DUKCAPIL));
    assert!(p.detail.contains(KEMLU), "{}", p.detail);

    let (_, forks) = dukcapil_witnessed(&f).await;
    assert_eq!(forks.len(), 1, "{forks:?}");
    let (reason, held, offered) = &forks[0];
    assert_eq!(payload_of(held)["tree_size"].as_u64(), Some(newest));
    assert_eq!(payload_of(offered)["tree_size"].as_u64(), Some(forged));
    assert!(reason.contains("cannot prove"), "{reason}");
    assert_eq!(
        f.counter(
            DUKCAPIL,
            "simpul_witness_forked",
            &[&format!("peer=\"{KEMLU}\"")]
        )
        .await,
        1.0
    );
    let (code, listing) = witness_cli(&f).await;
    assert_eq!(code, Some(1), "a fork is a failure: {listing}");
    let kemlu = partner(&listing, KEMLU);
    assert_eq!(kemlu["consistent"], false);
    assert_eq!(kemlu["forks"][0]["held"].as_str(), Some(held.as_str()));
    assert_eq!(
        kemlu["forks"][0]["offered"].as_str(),
        Some(offered.as_str())
    );
    // Every later exchange with Kemlu is refused too, whatever head it carries.
    let request = f.citizenship_request();
    assert_problem(&f.send_signed(KEMLU, &request).await, 409, "log-forked");
    let records = f.records(DUKCAPIL, &request.id).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["outcome"], "log-forked");
    assert_eq!(records[0]["consumer"], KEMLU);
}
