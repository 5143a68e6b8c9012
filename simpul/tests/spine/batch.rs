//! The batch contract `identity.verify` end to end (PROTOCOL.md §2.5): verdicts for up to
//! 1,000 people per exchange, a subject per person on both audit logs, its refusals — too
//! many items, a malformed item by pointer, a body over the contract's own limit — and a
//! rate that counts items.

use serde_json::{Value, json};

use crate::common::*;

const VERIFY: &str = "identity.verify";

/// Registered residents as Dukcapil's database has them: NIK, name, birth date, sex,
/// citizenship, deceased.
async fn residents(f: &Federation, n: i64) -> Vec<(String, String, String, String, String, bool)> {
    use sqlx::ConnectOptions;
    let mut db = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(f.data_dir().join("dukcapil.db"))
        .read_only(true)
        .connect()
        .await
        .unwrap();
    sqlx::query_as(
        "SELECT nik, full_name, birth_date, sex, citizenship, deceased FROM residents ORDER BY nik LIMIT ?",
    )
    .bind(n)
    .fetch_all(&mut db)
    .await
    .unwrap()
}

fn election_roll(items: Vec<Value>) -> Value {
    json!({"purpose": "election-roll", "query": {"items": items}})
}

#[tokio::test]
async fn a_batch_of_1000_is_answered_with_verdicts_only_and_recorded_per_person_at_both_ends() {
    let f = Federation::start().await;
    let people = residents(&f, 997).await;
    let mut items: Vec<Value> = people
        .iter()
        .enumerate()
        .map(|(i, (nik, name, birth, sex, _, _))| {
            json!({"ref": i.to_string(), "nik": nik, "full_name": name.to_uppercase(),
                   "birth_date": birth, "sex": sex})
        })
        .collect();
    // A stranger's name, a malformed NIK, and a well-formed NIK nobody holds.
    items[1]["full_name"] = json!("Zzyzx Qwerty");
    items.push(json!({"ref": "997", "nik": "12345"}));
    items.push(json!({"ref": "998", "nik": "3171500101900001", "full_name": "Siti"}));
    items.push(json!({"ref": "999", "nik": people[0].0}));
    let reply = f
        .local_query(PEDULI, KEMLU, VERIFY, election_roll(items))
        .await;
    assert_ok(&reply);
    let body: Value = ok_json(&reply);
    let answered = body["result"]["items"].as_array().unwrap();
    assert_eq!(answered.len(), 1_000);
    let first = &answered[0];
    assert_eq!(first["ref"], "0");
    assert_eq!(
        (
            first["nik_valid"].clone(),
            first["found"].clone(),
            first["name"].clone()
        ),
        (json!(true), json!(true), json!("match"))
    );
    assert_eq!(first["birth_date"], "match");
    assert_eq!(first["sex"], "match");
    assert_eq!(first["citizenship"], people[0].4.as_str());
    assert_eq!(answered[1]["name"], "mismatch");
    assert_eq!(answered[997]["nik_valid"], false);
    assert_eq!(answered[997]["found"], false);
    assert_eq!(answered[998]["nik_valid"], true);
    assert_eq!(answered[998]["found"], false);
    assert_eq!(answered[998]["name"], "not_checked");
    assert_eq!(answered[999]["found"], true);
    assert_eq!(answered[999]["name"], "not_checked");
    // Verdicts only: nothing of a registered person's record is in the answer.
    let text = String::from_utf8_lossy(&reply.body);
    assert!(
        !text.contains(&people[5].1) && !text.contains(&people[5].2),
        "{text}"
    );

    // One record on each side, with a subject for every distinct NIK and none in clear;
    // a person's history at either end finds the batch.
    let exchange_id = body["exchange_id"].as_str().unwrap();
    for member in [KEMLU, DUKCAPIL] {
        let records = f.records(member, exchange_id).await;
        assert_eq!(records.len(), 1, "{member}");
        let r = &records[0];
        assert!(r["subject"].is_null(), "{member}: {r}");
        let subjects = r["subjects"].as_array().unwrap();
        assert_eq!(
            subjects.len(),
            999,
            "{member}: 997 residents, two strangers"
        );
        assert!(!r.to_string().contains(&people[0].0), "{member}");
        let auditor = format!("auditor:{member}:AUDIT");
        let history = f
            .admin_call(
                member,
                &auditor,
                http::Method::POST,
                "/audit/subject",
                serde_json::to_vec(&json!({"nik": people[3].0}))
                    .unwrap()
                    .into(),
            )
            .await;
        let history: Value = ok_json(&history);
        assert!(
            history["proofs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["record"]["exchange_id"] == exchange_id),
            "{member}: the person's history finds the batch: {history}"
        );
    }
}

#[tokio::test]
async fn a_batch_over_its_1000_items_is_refused_with_400_invalid_query_at_the_items() {
    let f = Federation::start().await;
    let items: Vec<Value> = (0..1_001)
        .map(|i| json!({"ref": i.to_string(), "nik": "3171011701900001"}))
        .collect();
    // At the provider, from a consumer that sends it anyway.
    let request = f.request(
        KEMLU,
        DUKCAPIL,
        VERIFY,
        "election-roll",
        json!({"items": items.clone()}),
    );
    let p = assert_problem(&f.send_signed(KEMLU, &request).await, 400, "invalid-query");
    assert_eq!(p.errors[0].pointer, "/query/items", "{p:?}");
    // And on the local face, before anything is signed.
    let reply = f
        .local_query(PEDULI, KEMLU, VERIFY, election_roll(items))
        .await;
    let p = assert_problem(&reply, 400, "invalid-query");
    assert_eq!(p.errors[0].pointer, "/query/items", "{p:?}");
}

#[tokio::test]
async fn a_malformed_item_is_refused_naming_it_by_its_pointer() {
    let f = Federation::start().await;
    let mut items: Vec<Value> = (0..5)
        .map(|i| json!({"ref": i.to_string(), "nik": "3171011701900001"}))
        .collect();
    items[3]["birth_date"] = json!("17/01/1990");
    let request = f.request(
        KEMLU,
        DUKCAPIL,
        VERIFY,
        "election-roll",
        json!({"items": items}),
    );
    let p = assert_problem(&f.send_signed(KEMLU, &request).await, 400, "invalid-query");
    let pointers: Vec<&str> = p.errors.iter().map(|e| e.pointer.as_str()).collect();
    assert_eq!(pointers, ["/query/items/3/birth_date"]);
}

#[tokio::test]
async fn a_body_over_the_contracts_own_limit_is_refused_with_413_and_one_under_it_is_read() {
    let f = Federation::start().await;
    // 100 KB: over the protocol's 65,536 for citizenship.status, under identity.verify's
    // 1 MiB, where it is read and then found not to be a JWS.
    let body = vec![b'a'; 100_000];
    let reply = f
        .post_exchange(
            KEMLU,
            DUKCAPIL,
            "citizenship.status",
            "application/jose",
            body.clone(),
        )
        .await;
    assert_problem(&reply, 413, "payload-too-large");
    let reply = f
        .post_exchange(KEMLU, DUKCAPIL, VERIFY, "application/jose", body)
        .await;
    assert_problem(&reply, 400, "malformed");
    let reply = f
        .post_exchange(
            KEMLU,
            DUKCAPIL,
            VERIFY,
            "application/jose",
            vec![b'a'; 1_048_577],
        )
        .await;
    assert_problem(&reply, 413, "payload-too-large");
}

#[tokio::test]
async fn a_batch_spends_one_unit_of_the_rate_per_item() {
    let f = Federation::start_with(Options {
        edits: vec![(
            "rate = { per_second = 20000, burst = 20000 }   # items, not exchanges".into(),
            "rate = { per_second = 1, burst = 1000 }".into(),
        )],
        ..Options::default()
    })
    .await;
    let items = |n: usize| {
        (0..n)
            .map(|i| json!({"ref": i.to_string(), "nik": "3171011701900001"}))
            .collect::<Vec<_>>()
    };
    let ask = |n| {
        f.request(
            KEMLU,
            DUKCAPIL,
            VERIFY,
            "election-roll",
            json!({"items": items(n)}),
        )
    };
    assert_ok(&f.send_signed(KEMLU, &ask(600)).await);
    // 400 left of the burst: 600 more items are over it, 300 are not.
    let p = assert_problem(&f.send_signed(KEMLU, &ask(600)).await, 429, "rate-limited");
    assert!(p.retry_after.is_some_and(|s| s >= 200), "{p:?}");
    assert_ok(&f.send_signed(KEMLU, &ask(300)).await);
}

#[tokio::test]
async fn a_query_whose_signed_request_would_pass_the_contracts_limit_is_refused_with_413_unsent() {
    let f = Federation::start().await;
    // Control characters are six bytes each in JSON: 1,000 such names fit the local face's
    // 1 MiB as JSON, and not the exchange's once signed (base64 adds a third).
    let name: String = "\u{1}".repeat(128);
    let items: Vec<Value> = (0..1_000)
        .map(|i| json!({"ref": format!("{i:064}"), "nik": "3".repeat(32), "full_name": name}))
        .collect();
    let reply = f
        .local_query(PEDULI, KEMLU, VERIFY, election_roll(items))
        .await;
    let p = assert_problem(&reply, 413, "payload-too-large");
    assert!(p.detail.contains("1048576"), "{}", p.detail);
    // Recorded as refused on Kemlu's side; Dukcapil never saw it.
    let id = p.exchange_id.clone().unwrap();
    let records = f.records(KEMLU, &id).await;
    assert_eq!(records[0]["outcome"], "payload-too-large");
    assert!(f.records(DUKCAPIL, &id).await.is_empty());
}
