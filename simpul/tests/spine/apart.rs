//! The ministry's side apart from the federation (PROTOCOL.md §4.1): the local face on a
//! listener of its own that trusts the member's own CA only, each subsystem held to its own
//! grants and rate, operators and auditors on the admin listener only — every refusal over
//! real TLS with its status and code, or its refused handshake.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::json;

use crate::common::*;

fn placement_verification(nik: &str) -> serde_json::Value {
    json!({"purpose": "placement-verification", "query": {"nik": nik}})
}

#[tokio::test]
async fn a_subsystem_of_another_member_is_refused_in_the_local_handshake() {
    let f = Federation::start().await;
    let body = citizen_protection(f.population.sample_in_all_four());
    // BP2MI's system, from BP2MI's CA, on Kemlu's local listener: Kemlu trusts its own CA.
    let refused = f
        .try_local_query(SISKOP2MI, KEMLU, "citizenship.status", body.clone())
        .await
        .unwrap_err();
    assert!(is_refused(&refused), "{refused}");
    // A gateway's certificate, from the federation CA: not an anchor here either, not even
    // Kemlu's own.
    for gateway in [DUKCAPIL, KEMLU] {
        let refused = f
            .try_local_query(gateway, KEMLU, "citizenship.status", body.clone())
            .await
            .unwrap_err();
        assert!(is_refused(&refused), "{gateway}: {refused}");
    }
    // The same subsystem is served by its own member.
    let reply = f
        .local_query(
            SISKOP2MI,
            BP2MI,
            "citizenship.status",
            placement_verification(f.population.sample_in_all_four()),
        )
        .await;
    assert_ok(&reply);
}

#[tokio::test]
async fn a_subsystem_the_configuration_does_not_list_is_refused_with_403_forbidden() {
    let f = Federation::start().await;
    // Issued by Kemlu's own CA, so the handshake passes, but not configured.
    demo::pki::issue_client(&f.layout(), &id("ID:GOV:KEMLU:STRAY"), false).unwrap();
    let reply = f
        .local_query(
            "ID:GOV:KEMLU:STRAY",
            KEMLU,
            "citizenship.status",
            citizen_protection(f.population.sample_in_all_four()),
        )
        .await;
    assert_problem(&reply, 403, "forbidden");
}

#[tokio::test]
async fn an_ungranted_contract_or_purpose_is_refused_with_403_not_granted() {
    let f = Federation::start().await;
    let nik = f.population.sample_in_all_four();
    // SISKOP2MI is granted citizenship and insurance, not placements.
    let p = assert_problem(
        &f.local_query(
            SISKOP2MI,
            BP2MI,
            "employment.placement",
            placement_verification(nik),
        )
        .await,
        403,
        "not-granted",
    );
    assert!(p.detail.contains("employment.placement"), "{}", p.detail);
    assert!(p.exchange_id.is_some() && p.provider.is_none());
    // Granted citizenship for placement verification, not for citizen protection.
    let p = assert_problem(
        &f.local_query(
            SISKOP2MI,
            BP2MI,
            "citizenship.status",
            citizen_protection(nik),
        )
        .await,
        403,
        "not-granted",
    );
    assert!(p.detail.contains("citizen-protection"), "{}", p.detail);
    // Nothing reached the provider.
    assert_eq!(
        f.counter(
            DUKCAPIL,
            "simpul_rate_admitted_total",
            &["citizenship.status/1"]
        )
        .await,
        0.0
    );
}

#[tokio::test]
async fn a_subsystem_over_its_own_rate_is_refused_with_429_subsystem_rate_limited() {
    let f = Federation::start_with(Options {
        edits: vec![
            (
                "name = \"SISKOP2MI\"\n  rate = { per_second = 20, burst = 40 }".into(),
                "name = \"SISKOP2MI\"\n  rate = { per_second = 1, burst = 1 }".into(),
            ),
            // A second system of BP2MI, with its own quota.
            (
                "  [[members.provides]]\n  contract = \"employment.placement\"".into(),
                "  [[members.subsystems]]\n  name = \"SISKOTKLN\"\n  grants = [{ contract = \"citizenship.status\", version = \"1\", purposes = [\"placement-verification\"] }]\n\n  [[members.provides]]\n  contract = \"employment.placement\"".into(),
            ),
        ],
        ..Options::default()
    })
    .await;
    let nik = f.population.sample_in_all_four();
    let ask = || {
        f.local_query(
            SISKOP2MI,
            BP2MI,
            "citizenship.status",
            placement_verification(nik),
        )
    };
    assert_ok(&ask().await);
    let reply = ask().await;
    let p = assert_problem(&reply, 429, "subsystem-rate-limited");
    assert_eq!(p.retry_after, Some(1));
    assert_eq!(
        reply
            .headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // Its own quota only: another system of the same member, and Peduli WNI at Kemlu, ask
    // the same provider at once.
    assert_ok(
        &f.local_query(
            "ID:GOV:BP2MI:SISKOTKLN",
            BP2MI,
            "citizenship.status",
            placement_verification(nik),
        )
        .await,
    );
    assert_ok(
        &f.local_query(PEDULI, KEMLU, "citizenship.status", citizen_protection(nik))
            .await,
    );
}

#[tokio::test]
async fn an_operator_or_auditor_certificate_on_the_local_face_is_refused_with_403_identity_kind() {
    let f = Federation::start().await;
    let body = citizen_protection(f.population.sample_in_all_four());
    for staff in ["operator:ID:GOV:KEMLU:OPS", "auditor:ID:GOV:KEMLU:AUDIT"] {
        let p = assert_problem(
            &f.local_query(staff, KEMLU, "citizenship.status", body.clone())
                .await,
            403,
            "identity-kind",
        );
        assert!(p.detail.contains("admin listener"), "{}", p.detail);
    }
}

#[tokio::test]
async fn the_local_face_on_the_federation_listener_is_refused_with_404_wrong_listener() {
    let f = Federation::start().await;
    let body = serde_json::to_vec(&citizen_protection(f.population.sample_in_all_four())).unwrap();
    // Whoever asks, a single contract or the federated lookup, whatever the method.
    for (path, method) in [
        ("/v1/query/citizenship.status/1", Method::POST),
        ("/v1/query/person.protection-profile/1", Method::POST),
        ("/v1/query/citizenship.status/1", Method::GET),
    ] {
        for caller in [DUKCAPIL, KEMLU] {
            let reply = f
                .as_gateway(caller, KEMLU)
                .call(
                    method.clone(),
                    &format!("{}{path}", f.url(KEMLU)),
                    "application/json",
                    Bytes::from(body.clone()),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
            assert_problem(&reply, 404, "wrong-listener");
        }
    }
}

#[tokio::test]
async fn the_exchange_face_on_the_local_listener_is_refused_with_404_wrong_listener() {
    let f = Federation::start().await;
    let request = f.citizenship_request();
    let reply = f
        .as_subsystem(PEDULI, KEMLU)
        .call(
            Method::POST,
            &format!("{}/v1/exchange/citizenship.status/1", f.local_url(KEMLU)),
            contracts::envelope::JOSE_MEDIA_TYPE,
            f.sign(KEMLU, &request).into(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_problem(&reply, 404, "wrong-listener");
}

#[tokio::test]
async fn a_subsystem_certificate_on_the_admin_listener_is_refused_with_403_identity_kind() {
    let f = Federation::start().await;
    for path in ["/metrics", "/audit/tree-head"] {
        let reply = f
            .admin_call(DUKCAPIL, SIAK, Method::GET, path, Bytes::new())
            .await;
        let p = assert_problem(&reply, 403, "identity-kind");
        assert!(p.detail.contains("operators and auditors"), "{}", p.detail);
    }
    // Another member's operator, from another member's CA: refused in the handshake.
    let refused = f
        .try_admin_call(
            DUKCAPIL,
            "operator:ID:GOV:KEMLU:OPS",
            Method::GET,
            "/metrics",
            Bytes::new(),
        )
        .await
        .unwrap_err();
    assert!(is_refused(&refused), "{refused}");
    // A gateway's certificate, from the federation CA: refused in the handshake too.
    let refused = f
        .try_admin_call(DUKCAPIL, DUKCAPIL, Method::GET, "/metrics", Bytes::new())
        .await
        .unwrap_err();
    assert!(is_refused(&refused), "{refused}");
    // Its own operator is served.
    assert!(f.metrics(DUKCAPIL).await.contains("simpul_"));
}
