//! The local face and the federated lookup.

use contracts::canonical::sha256_b64url;
use contracts::envelope::ANSWER_TYP;
use contracts::{ExchangeAnswer, ParsedJws};
use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn local_query_returns_the_verified_answer_with_its_evidence() {
    let f = Federation::start().await;
    let nik = f.population.sample_in_all_four().to_owned();
    let answer = f.ask_citizenship().await;
    assert_eq!(answer.provider.as_str(), DUKCAPIL);
    assert_eq!(answer.result["registered"], true);
    // The evidence stands on its own: the answer verifies with Dukcapil's manifest key and
    // is bound to the request that was sent, which names the asking subsystem.
    let parsed = ParsedJws::parse(&answer.evidence.response, ANSWER_TYP).unwrap();
    let (owner, key) = f
        .manifest
        .key(parsed.header.kid.as_deref().unwrap())
        .unwrap();
    assert_eq!(owner.as_str(), DUKCAPIL);
    key.verify(&parsed).unwrap();
    let signed: ExchangeAnswer = serde_json::from_slice(&parsed.payload).unwrap();
    assert_eq!(
        signed.request_hash,
        sha256_b64url(answer.evidence.request.as_bytes())
    );
    assert_eq!(signed.id, answer.exchange_id);
    let request =
        ParsedJws::parse(&answer.evidence.request, contracts::envelope::REQUEST_TYP).unwrap();
    let request: contracts::ExchangeRequest = serde_json::from_slice(&request.payload).unwrap();
    assert_eq!(request.sub.as_ref().map(|s| s.as_str()), Some(PEDULI));
    assert_eq!(request.query, json!({ "nik": nik }));
}

#[tokio::test]
async fn federated_lookup_answers_all_four_parts() {
    let f = Federation::start().await;
    let reply = f
        .local_query(
            PEDULI,
            KEMLU,
            "person.protection-profile",
            citizen_protection(f.population.sample_in_all_four()),
        )
        .await;
    let body: Value = ok_json(&reply);
    let parts = body["parts"].as_object().unwrap();
    assert_eq!(parts.len(), 4);
    for (name, part) in parts {
        assert_eq!(part["status"], "ok", "{name}: {part}");
    }
    assert_eq!(parts["citizenship"]["result"]["registered"], true);
    assert_eq!(parts["placement"]["result"]["placed"], true);
    assert_eq!(parts["insurance"]["result"]["enrolled"], true);
    assert_eq!(parts["residence"]["result"]["reported"], true);
    assert_eq!(parts["placement"]["provider"], BP2MI);
}

#[tokio::test]
async fn federated_lookup_for_a_person_only_dukcapil_knows() {
    let f = Federation::start().await;
    let reply = f
        .local_query(
            PEDULI,
            KEMLU,
            "person.protection-profile",
            citizen_protection(f.population.sample_dukcapil_only()),
        )
        .await;
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["parts"]["citizenship"]["result"]["registered"], true);
    assert_eq!(
        body["parts"]["placement"]["result"],
        json!({"placed": false})
    );
    assert_eq!(
        body["parts"]["insurance"]["result"],
        json!({"enrolled": false, "active": false, "programs": []})
    );
    assert_eq!(
        body["parts"]["residence"]["result"],
        json!({"reported": false})
    );
}

#[tokio::test]
async fn federated_lookup_with_one_provider_stopped_returns_the_other_three() {
    let mut f = Federation::start().await;
    f.stop(BP2MI).await;
    let reply = f
        .local_query(
            PEDULI,
            KEMLU,
            "person.protection-profile",
            citizen_protection(f.population.sample_in_all_four()),
        )
        .await;
    let body: Value = ok_json(&reply);
    let parts = &body["parts"];
    assert_eq!(parts["placement"]["status"], "error");
    assert_eq!(
        parts["placement"]["problem"]["type"],
        "urn:simpul:error:provider-unavailable"
    );
    assert_eq!(parts["placement"]["problem"]["provider"], BP2MI);
    for name in ["citizenship", "insurance", "residence"] {
        assert_eq!(parts[name]["status"], "ok", "{name}: {}", parts[name]);
    }
}

#[tokio::test]
async fn federated_lookup_with_an_invalid_nik_is_refused_before_any_exchange() {
    let f = Federation::start().await;
    let reply = f
        .local_query(
            PEDULI,
            KEMLU,
            "person.protection-profile",
            citizen_protection("3171013102900001"),
        )
        .await;
    let p = assert_problem(&reply, 400, "invalid-query");
    assert_eq!(p.errors[0].pointer, "/query/nik");
}

#[tokio::test]
async fn federated_lookup_for_another_purpose_is_refused_with_403_not_granted() {
    let f = Federation::start().await;
    let body =
        json!({"purpose": "social-security", "query": {"nik": f.population.sample_in_all_four()}});
    assert_problem(
        &f.local_query(PEDULI, KEMLU, "person.protection-profile", body)
            .await,
        403,
        "not-granted",
    );
}

#[tokio::test]
async fn local_face_checks_the_grant_before_asking_and_relays_provider_refusals() {
    let f = Federation::start().await;
    // Peduli WNI is granted citizenship for citizen protection only: refused locally.
    let body =
        json!({"purpose": "social-security", "query": {"nik": f.population.sample_in_all_four()}});
    assert_problem(
        &f.local_query(PEDULI, KEMLU, "citizenship.status", body)
            .await,
        403,
        "not-granted",
    );
    // A contract nobody granted it (and that is in no catalog).
    assert_problem(
        &f.local_query(
            PEDULI,
            KEMLU,
            "no.such",
            citizen_protection("3171011701900001"),
        )
        .await,
        403,
        "not-granted",
    );
    // Malformed body.
    assert_problem(
        &f.local_query(PEDULI, KEMLU, "citizenship.status", json!({"query": {}}))
            .await,
        400,
        "malformed",
    );
}

#[tokio::test]
async fn local_query_to_a_provider_with_a_missing_database_relays_503_with_the_provider() {
    let f = Federation::start_with(Options {
        remove_database_of: vec![DUKCAPIL],
        ..Default::default()
    })
    .await;
    let reply = f.ask_citizenship_reply().await;
    let p = assert_problem(&reply, 503, "provider-unavailable");
    assert_eq!(p.provider.as_deref(), Some(DUKCAPIL));
    assert!(p.exchange_id.is_some());
}
