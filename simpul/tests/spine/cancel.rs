//! Exchanges cut short: a provider that accepts connections and never answers, and a member
//! system that hangs up in the middle of a federated lookup. Whatever is cut, every part
//! that began is on the audit log — on both sides when it reached a provider — and a
//! timed-out part names its exchange and provider.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::common::*;

const PROFILE: &str = "person.protection-profile";
/// The lookups' deadline in these tests.
const DEADLINE_MS: u64 = 800;

fn short_deadline() -> (String, String) {
    (
        "deadline_ms = 3000".into(),
        format!("deadline_ms = {DEADLINE_MS}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_never_answers_is_a_recorded_timeout_in_every_lookup() {
    let mut f = Federation::start_with(Options {
        edits: vec![short_deadline()],
        ..Options::default()
    })
    .await;
    // BPJS Ketenagakerjaan's gateway is replaced by a listener that accepts connections and
    // never says a word.
    f.stop(BPJSTK).await;
    let frozen = TcpListener::bind(f.config.member(&id(BPJSTK)).unwrap().listen)
        .await
        .unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = frozen.accept().await {
            held.push(socket);
        }
    });
    let nik = f.population.sample_in_all_four().to_owned();
    let f = std::sync::Arc::new(f);
    let mut answers = Vec::new();
    // A dozen lookups, four at a time.
    for _ in 0..3 {
        let mut round = JoinSet::new();
        for _ in 0..4 {
            let (f, nik) = (f.clone(), nik.clone());
            round.spawn(async move {
                let started = Instant::now();
                let reply = f
                    .local_query(PEDULI, KEMLU, PROFILE, citizen_protection(&nik))
                    .await;
                (started.elapsed(), reply)
            });
        }
        while let Some(done) = round.join_next().await {
            answers.push(done.unwrap());
        }
    }
    let mut timed_out = Vec::new();
    for (took, reply) in &answers {
        assert_ok(reply);
        // Bounded by the lookup's deadline, plus the time to record the parts.
        assert!(
            *took < Duration::from_millis(DEADLINE_MS + 2_000),
            "a lookup took {took:?}"
        );
        let answer: Value = serde_json::from_slice(&reply.body).unwrap();
        let lookup = answer["exchange_id"].as_str().unwrap().to_owned();
        for part in ["citizenship", "placement", "residence"] {
            assert_eq!(answer["parts"][part]["status"], "ok", "{part}: {answer}");
        }
        let insurance = &answer["parts"]["insurance"];
        assert_eq!(insurance["status"], "error", "{answer}");
        let problem = &insurance["problem"];
        // A timeout while the provider is tried; fail-fast once its breaker opens.
        let code = problem["type"]
            .as_str()
            .and_then(|t| t.strip_prefix("urn:simpul:error:"))
            .unwrap_or_default();
        assert!(
            ["provider-timeout", "provider-unavailable"].contains(&code),
            "{problem}"
        );
        assert_eq!(problem["provider"], BPJSTK, "{problem}");
        let part_id = problem["exchange_id"].as_str().unwrap().to_owned();
        assert!(!part_id.is_empty());
        timed_out.push((lookup, part_id, code.to_owned()));
    }
    assert_eq!(timed_out.len(), 12);
    assert!(
        timed_out
            .iter()
            .any(|(_, _, code)| code == "provider-timeout"),
        "no part waited for the frozen provider"
    );
    for (lookup, part_id, code) in &timed_out {
        let records = f.records(KEMLU, part_id).await;
        assert_eq!(records.len(), 1, "{part_id}: {records:?}");
        let r = &records[0];
        assert_eq!(r["role"], "consumer");
        assert_eq!(r["provider"], BPJSTK);
        assert_eq!(r["lookup_id"], lookup.as_str());
        assert_eq!(r["outcome"], code.as_str());
    }
    holder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_system_that_hangs_up_mid_lookup_leaves_every_part_recorded_on_both_sides() {
    // Dukcapil answers slowly: its statement counts to five million first.
    let slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000) \
                SELECT citizenship, deceased FROM residents \
                WHERE nik = :nik AND (SELECT MAX(x) FROM c) > 0";
    let f = Federation::start_with(Options {
        edits: vec![(
            "statement = \"SELECT citizenship, deceased FROM residents WHERE nik = :nik\"".into(),
            format!("statement = \"{slow}\"\n  timeout_ms = 20000"),
        )],
        ..Options::default()
    })
    .await;
    let nik = f.population.sample_in_all_four().to_owned();
    let url = format!("{}/v1/query/{PROFILE}/1", f.local_url(KEMLU));
    // The member system gives up (and closes its connection) while Dukcapil is still busy.
    let cut = f
        .as_subsystem(PEDULI, KEMLU)
        .call(
            Method::POST,
            &url,
            "application/json",
            serde_json::to_vec(&citizen_protection(&nik))
                .unwrap()
                .into(),
            Duration::from_millis(300),
        )
        .await;
    assert!(cut.is_err(), "the lookup answered before the cut");
    // Every part the lookup began is on Kemlu's log under one lookup id, cut or answered.
    let mut parts = Vec::new();
    for _ in 0..300 {
        parts = f
            .all_records(KEMLU)
            .await
            .into_iter()
            .filter(|r| r["role"] == "consumer" && !r["lookup_id"].is_null())
            .collect();
        if parts.len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(parts.len(), 4, "{parts:?}");
    let lookups: HashSet<&str> = parts
        .iter()
        .map(|r| r["lookup_id"].as_str().unwrap())
        .collect();
    assert_eq!(lookups.len(), 1, "{parts:?}");
    let dukcapil_part = parts
        .iter()
        .find(|r| r["provider"] == DUKCAPIL)
        .expect("the citizenship part");
    assert_eq!(dukcapil_part["outcome"], "cancelled", "{dukcapil_part}");
    // Every part that reached a provider is on that provider's log too.
    for part in &parts {
        assert!(!part["request_hash"].is_null(), "{part}");
        let provider = part["provider"].as_str().unwrap();
        let exchange_id = part["exchange_id"].as_str().unwrap();
        let mut theirs = Vec::new();
        for _ in 0..400 {
            theirs = f.records(provider, exchange_id).await;
            if theirs.iter().any(|r| r["role"] == "provider") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let theirs: Vec<_> = theirs.iter().filter(|r| r["role"] == "provider").collect();
        assert_eq!(theirs.len(), 1, "{provider} {exchange_id}: {theirs:?}");
        assert_eq!(theirs[0]["request_hash"], part["request_hash"]);
    }
}

/// A provider that stops while an exchange waits on its backend: when the drain ends the
/// exchange is cut, and it is on the provider's log, as cancelled, before the gateway has
/// stopped — not left to a task the process would drop on exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_cut_at_the_end_of_the_drain_is_recorded_before_the_gateway_stops() {
    // Dukcapil's backend: an HTTP API that accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let sql = "  [members.provides.sql]\n  database = \"data/dukcapil.db\"\n  statement = \"SELECT citizenship, deceased FROM residents WHERE nik = :nik\"\n  columns = { citizenship = \"text\", deceased = \"bool\" }\n  found = { registered = true }\n  not_found = { registered = false, citizenship = \"unknown\", deceased = false }";
    let http = format!(
        "  [members.provides.http]\n  url = \"http://127.0.0.1:{port}/residents/{{nik}}\"\n  answer = {{ citizenship = \"/citizenship\", deceased = \"/deceased\" }}\n  found = {{ registered = true }}\n  timeout_ms = 60000"
    );
    let mut f = Federation::start_with(Options {
        edits: vec![(sql.into(), http)],
        ..Options::default()
    })
    .await;
    let request = f.citizenship_request();
    let jws = f.sign(KEMLU, &request);
    let client = f.as_gateway(KEMLU, DUKCAPIL);
    let url = format!("{}/v1/exchange/citizenship.status/1", f.url(DUKCAPIL));
    let asked = tokio::spawn(async move {
        client
            .call(
                Method::POST,
                &url,
                contracts::envelope::JOSE_MEDIA_TYPE,
                jws.into(),
                Duration::from_secs(60),
            )
            .await
    });
    // The exchange passes every check and waits on the backend.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!asked.is_finished());
    let stopping = Instant::now();
    f.stop(DUKCAPIL).await;
    // PROTOCOL.md §3.5: open connections get up to 10 s to finish.
    assert!(
        stopping.elapsed() >= Duration::from_secs(10),
        "the drain ended early"
    );
    // Stopped: what its store holds now is all it will ever hold.
    let store = f.data_dir().join("audit-ID_GOV_DUKCAPIL.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", store.display()))
        .await
        .unwrap();
    let outcomes: Vec<String> =
        sqlx::query_scalar("SELECT outcome FROM simpul_audit_records WHERE exchange_id = ?")
            .bind(&request.id)
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    assert_eq!(outcomes, ["cancelled"]);
    assert!(
        asked.await.unwrap().is_err(),
        "the cut exchange was answered"
    );
}
