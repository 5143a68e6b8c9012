//! The middle through real exchanges over TLS: replay window, per-consumer rate limits (local
//! and shared through Redis), the response cache and its purge, bulkheads, the consumer's
//! circuit breaker, and the metrics that show each.

use std::time::Duration;

use bytes::Bytes;
use contracts::canonical::sha256_b64url;
use contracts::envelope::{ANSWER_TYP, JOSE_MEDIA_TYPE};
use contracts::{ExchangeAnswer, ParsedJws};
use serde_json::{Value, json};

use crate::common::*;

const CITIZENSHIP_RATE: &str = "rate = { per_second = 500, burst = 1000 }";

fn edit(old: &str, new: &str) -> (String, String) {
    (old.to_owned(), new.to_owned())
}

fn answer_of(reply: &gateway::client::Reply) -> ExchangeAnswer {
    assert_ok(reply);
    let parsed = ParsedJws::parse(std::str::from_utf8(&reply.body).unwrap(), ANSWER_TYP).unwrap();
    serde_json::from_slice(&parsed.payload).unwrap()
}

#[tokio::test]
async fn replayed_exchange_id_is_refused_with_409() {
    let f = Federation::start().await;
    let request = f.citizenship_request();
    let jws = f.sign(KEMLU, &request);
    assert_eq!(f.exchange(KEMLU, jws.clone(), &request).await.status, 200);
    let p = assert_problem(&f.exchange(KEMLU, jws, &request).await, 409, "replay");
    assert_eq!(p.exchange_id.as_deref(), Some(request.id.as_str()));
    // The same id freshly signed is still the same exchange id.
    let again = f.sign(KEMLU, &request);
    assert_problem(&f.exchange(KEMLU, again, &request).await, 409, "replay");
}

#[tokio::test]
async fn over_the_rate_is_refused_with_429_and_a_usable_retry_after() {
    let f = Federation::start_with(Options {
        edits: vec![edit(
            CITIZENSHIP_RATE,
            "rate = { per_second = 1, burst = 5 }",
        )],
        ..Default::default()
    })
    .await;
    for _ in 0..5 {
        let r = f.citizenship_request();
        assert_eq!(f.send_signed(KEMLU, &r).await.status, 200);
    }
    let r = f.citizenship_request();
    let reply = f.send_signed(KEMLU, &r).await;
    let p = assert_problem(&reply, 429, "rate-limited");
    let retry: u64 = reply.headers[http::header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(p.retry_after, Some(retry));
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let r = f.citizenship_request();
    assert_eq!(
        f.send_signed(KEMLU, &r).await.status,
        200,
        "after Retry-After the next one is admitted"
    );
    assert!(
        f.counter(
            DUKCAPIL,
            "simpul_rate_limited_total",
            &["consumer=\"ID:GOV:KEMLU\""]
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn one_consumer_flooding_a_contract_does_not_lower_anothers_success_rate() {
    let f = Federation::start_with(Options {
        edits: vec![edit(
            CITIZENSHIP_RATE,
            "rate = { per_second = 2, burst = 5 }",
        )],
        ..Default::default()
    })
    .await;
    let nik = f.population.sample_in_all_four().to_owned();
    let f = &f;
    let flood = async {
        let mut limited = 0;
        for _ in 0..40 {
            let r = f.citizenship_request();
            limited += usize::from(f.send_signed(KEMLU, &r).await.status == 429);
        }
        limited
    };
    let polite = async {
        let mut ok = 0;
        for _ in 0..5 {
            let r = f.request(
                BP2MI,
                DUKCAPIL,
                "citizenship.status",
                "placement-verification",
                json!({ "nik": nik }),
            );
            ok += usize::from(f.send_signed(BP2MI, &r).await.status == 200);
        }
        ok
    };
    let (limited, ok) = tokio::join!(flood, polite);
    assert!(
        limited >= 30,
        "the flood must be limited: {limited} of 40 refused"
    );
    assert_eq!(ok, 5, "the other consumer keeps its whole quota");
}

#[tokio::test]
async fn replicas_sharing_redis_admit_the_quota_once_not_twice() {
    let Ok(redis_url) = std::env::var("SIMPUL_TEST_REDIS_URL") else {
        eprintln!("skipped: SIMPUL_TEST_REDIS_URL is not set (CI sets it; see .ci/run)");
        return;
    };
    let prefix = format!("simpul-test-{}", uuid::Uuid::new_v4());
    let f = Federation::start_with(Options {
        edits: vec![
            edit(CITIZENSHIP_RATE, "rate = { per_second = 1, burst = 6 }"),
            dukcapil_limits(&format!(
                "rate_backend = \"redis\", redis_url = \"{redis_url}\", redis_prefix = \"{prefix}\""
            )),
        ],
        replicas_of: vec![DUKCAPIL],
        ..Default::default()
    })
    .await;
    let replica = f.replicas[&id(DUKCAPIL)].clone();
    let mut admitted = 0;
    for i in 0..12 {
        let r = f.citizenship_request();
        let jws = f.sign(KEMLU, &r);
        let base = if i % 2 == 0 {
            f.url(DUKCAPIL)
        } else {
            replica.clone()
        };
        let reply = f
            .as_gateway(KEMLU, DUKCAPIL)
            .call(
                http::Method::POST,
                &format!("{base}/v1/exchange/citizenship.status/1"),
                JOSE_MEDIA_TYPE,
                jws.into(),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        match reply.status.as_u16() {
            200 => admitted += 1,
            429 => {}
            other => panic!(
                "unexpected {other}: {}",
                String::from_utf8_lossy(&reply.body)
            ),
        }
    }
    // One shared quota of 6 (plus at most one refill during the test), not 6 per replica.
    assert!(
        (6..=7).contains(&admitted),
        "admitted {admitted} of 12 across two replicas"
    );
}

#[tokio::test]
async fn replicas_sharing_a_redis_replay_window_refuse_an_id_the_other_accepted() {
    let Ok(redis_url) = std::env::var("SIMPUL_TEST_REDIS_URL") else {
        eprintln!("skipped: SIMPUL_TEST_REDIS_URL is not set (CI sets it; see .ci/run)");
        return;
    };
    let prefix = format!("simpul-test-{}", uuid::Uuid::new_v4());
    let f = Federation::start_with(Options {
        edits: vec![dukcapil_limits(&format!(
            "replay_backend = \"redis\", redis_url = \"{redis_url}\", redis_prefix = \"{prefix}\""
        ))],
        replicas_of: vec![DUKCAPIL],
        ..Default::default()
    })
    .await;
    let replica = f.replicas[&id(DUKCAPIL)].clone();
    let send = |base: String, jws: String| {
        let client = f.as_gateway(KEMLU, DUKCAPIL);
        async move {
            client
                .call(
                    http::Method::POST,
                    &format!("{base}/v1/exchange/citizenship.status/1"),
                    JOSE_MEDIA_TYPE,
                    jws.into(),
                    Duration::from_secs(10),
                )
                .await
                .unwrap()
        }
    };
    for round in 0..3 {
        let r = f.citizenship_request();
        let jws = f.sign(KEMLU, &r);
        // Answered by one replica, then the very same bytes at the other: a replay.
        let (first, second) = if round % 2 == 0 {
            (f.url(DUKCAPIL), replica.clone())
        } else {
            (replica.clone(), f.url(DUKCAPIL))
        };
        assert_ok(&send(first, jws.clone()).await);
        assert_problem(&send(second, jws).await, 409, "replay");
    }
}

#[tokio::test]
async fn cache_hit_does_not_reach_the_database_and_is_signed_for_its_own_request() {
    let f = Federation::start().await;
    let mut answers = Vec::new();
    for _ in 0..2 {
        let r = f.citizenship_request();
        let jws = f.sign(KEMLU, &r);
        let answer = answer_of(&f.exchange(KEMLU, jws.clone(), &r).await);
        assert_eq!(answer.id, r.id);
        assert_eq!(
            answer.request_hash,
            sha256_b64url(jws.as_bytes()),
            "a hit is bound to its own request"
        );
        answers.push(answer);
    }
    assert_eq!(answers[0].result, answers[1].result);
    let calls = f
        .counter(
            DUKCAPIL,
            "simpul_adapter_calls_total",
            &["citizenship.status/1"],
        )
        .await;
    assert_eq!(calls, 1.0, "the second answer came from the cache");
    assert_eq!(
        f.counter(DUKCAPIL, "simpul_cache_hits_total", &[]).await,
        1.0
    );
    assert_eq!(
        f.counter(DUKCAPIL, "simpul_cache_misses_total", &[]).await,
        1.0
    );
    // Contracts without caching always reach their adapter.
    for _ in 0..2 {
        let r = f.nik_request(KEMLU, KEMLU, "residence.abroad", "citizen-protection");
        answer_of(&f.send_signed(KEMLU, &r).await);
    }
    assert_eq!(
        f.counter(KEMLU, "simpul_adapter_calls_total", &["residence.abroad/1"])
            .await,
        2.0
    );
}

#[tokio::test]
async fn forbidden_consumer_is_refused_even_when_the_answer_is_cached() {
    let f = Federation::start().await;
    let r = f.citizenship_request();
    answer_of(&f.send_signed(KEMLU, &r).await);
    let nik = json!({"nik": f.population.sample_in_all_four()});
    let stranger = f.request(
        DUKCAPIL,
        DUKCAPIL,
        "citizenship.status",
        "citizen-protection",
        nik.clone(),
    );
    assert_problem(&f.send_signed(DUKCAPIL, &stranger).await, 403, "forbidden");
    let wrong_purpose = f.request(
        BP2MI,
        DUKCAPIL,
        "citizenship.status",
        "citizen-protection",
        nik,
    );
    assert_problem(
        &f.send_signed(BP2MI, &wrong_purpose).await,
        403,
        "forbidden",
    );
    assert_eq!(
        f.counter(DUKCAPIL, "simpul_cache_hits_total", &[]).await,
        0.0
    );
}

#[tokio::test]
async fn cache_purge_on_the_admin_listener_empties_one_contract_for_allowed_identities_only() {
    let f = Federation::start().await;
    let ask = || async {
        let r = f.citizenship_request();
        answer_of(&f.send_signed(KEMLU, &r).await);
    };
    ask().await;
    ask().await;
    let purge = Bytes::from(r#"{"contract":"citizenship.status"}"#);
    // An auditor is not an operator.
    let refused = f
        .admin_call(
            DUKCAPIL,
            "auditor:ID:GOV:DUKCAPIL:AUDIT",
            http::Method::POST,
            "/admin/cache/purge",
            purge.clone(),
        )
        .await;
    assert_problem(&refused, 403, "forbidden");
    let done = f
        .admin_call(
            DUKCAPIL,
            "operator:ID:GOV:DUKCAPIL:OPS",
            http::Method::POST,
            "/admin/cache/purge",
            purge,
        )
        .await;
    assert_eq!(done.status, 200, "{}", String::from_utf8_lossy(&done.body));
    let done: Value = ok_json(&done);
    assert_eq!(
        done["entries"], 1,
        "the one answer the two asks cached: {done}"
    );
    ask().await;
    assert_eq!(
        f.counter(
            DUKCAPIL,
            "simpul_adapter_calls_total",
            &["citizenship.status/1"]
        )
        .await,
        2.0
    );
    // A contract this gateway does not provide, or a version it does not, is an error
    // naming what it provides.
    for body in [
        r#"{"contract":"citizenship.statu"}"#,
        r#"{"contract":"citizenship.status","version":"2"}"#,
    ] {
        let refused = f
            .admin_call(
                DUKCAPIL,
                "operator:ID:GOV:DUKCAPIL:OPS",
                http::Method::POST,
                "/admin/cache/purge",
                Bytes::from(body),
            )
            .await;
        let p = assert_problem(&refused, 404, "unknown-contract");
        assert!(
            p.detail.contains("it provides: citizenship.status/1"),
            "{}",
            p.detail
        );
    }
}

#[tokio::test]
async fn slow_database_fills_only_its_own_bulkhead_and_the_overflow_is_503() {
    // The database is slow because a writer holds it locked: the adapter waits for the lock
    // (up to half its 20 s timeout) in the contract's only slot, without using the CPU, so
    // the test does not depend on how busy the machine is.
    let f = Federation::start_with(Options {
        edits: vec![
            edit(
                CITIZENSHIP_RATE,
                "rate = { per_second = 500, burst = 1000 }\n  concurrency = 1\n  queue_ms = 50",
            ),
            edit(
                "statement = \"SELECT citizenship, deceased FROM residents WHERE nik = :nik\"",
                "statement = \"SELECT citizenship, deceased FROM residents WHERE nik = :nik\"\n  timeout_ms = 20000",
            ),
        ],
        ..Default::default()
    })
    .await;
    let database = f.config_file.with_file_name("data").join("dukcapil.db");
    let mut writer = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&database),
    )
    .await
    .unwrap();
    sqlx::query("PRAGMA locking_mode = EXCLUSIVE")
        .execute(&mut writer)
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut writer)
        .await
        .unwrap();
    let f = std::sync::Arc::new(f);
    let mut slow_calls = Vec::new();
    for i in 0..3 {
        let f = f.clone();
        slow_calls.push(tokio::spawn(async move {
            // The first takes the slot and waits for the lock; the others never get a slot.
            let mut r = f.citizenship_request();
            if i > 0 {
                r.query = json!({ "nik": format!("317101170190{:04}", i) });
            }
            let reply = f.send_signed(KEMLU, &r).await;
            (
                reply.status.as_u16(),
                reply.headers.get(http::header::RETRY_AFTER).cloned(),
            )
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Another contract answers while the locked one still holds its only slot.
    let nik = f.population.sample_in_all_four().to_owned();
    let placement = f.request(
        KEMLU,
        BP2MI,
        "employment.placement",
        "citizen-protection",
        json!({ "nik": nik }),
    );
    answer_of(&f.send_signed(KEMLU, &placement).await);
    assert!(
        !slow_calls[0].is_finished(),
        "the locked statement is still waiting: the placement did not wait for it"
    );
    sqlx::query("COMMIT").execute(&mut writer).await.unwrap();
    drop(writer);
    let mut refused = 0;
    for call in slow_calls {
        let (status, retry_after) = call.await.unwrap();
        if status == 503 {
            refused += 1;
            assert!(retry_after.is_some(), "503 carries Retry-After");
        } else {
            assert_eq!(status, 200);
        }
    }
    assert_eq!(
        refused, 2,
        "one slot: the second waited 50 ms and the third found the queue full"
    );
    assert_eq!(
        f.counter(DUKCAPIL, "simpul_bulkhead_rejected_total", &[])
            .await,
        2.0
    );
}

#[tokio::test]
async fn breaker_fails_fast_while_a_provider_is_down_and_closes_after_a_probe() {
    let mut f = Federation::start_with(Options {
        edits: vec![edit(
            "seed = { dataset = \"reports\", database = \"data/kemlu.db\" }",
            "seed = { dataset = \"reports\", database = \"data/kemlu.db\" }\nbreaker = { failures = 3, cooldown_ms = 400 }",
        )],
        ..Default::default()
    })
    .await;
    let nik = f.population.sample_in_all_four().to_owned();
    let body = citizen_protection(&nik);
    f.stop(BP2MI).await;
    for _ in 0..3 {
        let p = assert_problem(
            &f.local_query(PEDULI, KEMLU, "employment.placement", body.clone())
                .await,
            503,
            "provider-unavailable",
        );
        assert!(p.detail.contains("cannot reach"), "{}", p.detail);
    }
    let p = assert_problem(
        &f.local_query(PEDULI, KEMLU, "employment.placement", body.clone())
            .await,
        503,
        "provider-unavailable",
    );
    assert!(p.detail.contains("circuit is open"), "{}", p.detail);
    assert!(p.retry_after.is_some());
    // The federated lookup reports that part at once and answers the others.
    let reply = f
        .local_query(PEDULI, KEMLU, "person.protection-profile", body.clone())
        .await;
    let profile: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert!(
        profile["parts"]["placement"]["problem"]["detail"]
            .as_str()
            .unwrap()
            .contains("circuit is open")
    );
    assert_eq!(profile["parts"]["citizenship"]["status"], "ok");
    assert_eq!(
        f.counter(
            KEMLU,
            "simpul_breaker_state",
            &["provider=\"ID:GOV:BP2MI\""]
        )
        .await,
        1.0
    );

    f.restart(BP2MI).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reply = f
        .local_query(PEDULI, KEMLU, "employment.placement", body.clone())
        .await;
    assert_eq!(
        reply.status,
        200,
        "the probe goes through: {}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        f.local_query(PEDULI, KEMLU, "employment.placement", body)
            .await
            .status,
        200
    );
    assert_eq!(
        f.counter(
            KEMLU,
            "simpul_breaker_state",
            &["provider=\"ID:GOV:BP2MI\""]
        )
        .await,
        0.0
    );
}
