//! Each demo contract answered from each database, and one contract answered identically by
//! all four backends.

use std::sync::Arc;

use adapters::{Adapter, HttpAdapter, HttpSpec};
use serde_json::{Value, json};

use crate::common::{
    ALL_FOUR, Contract, Fixture, PEOPLE, WNA_DECEASED, check_all_contracts, http_server,
    json_response, mysql_url, postgres_url,
};

#[tokio::test]
async fn each_demo_contract_is_answered_from_sqlite() {
    let fixture = Fixture::sqlite().await;
    check_all_contracts(&fixture).await;
}

#[tokio::test]
async fn each_demo_contract_is_answered_from_postgres() {
    let Some(url) = postgres_url("each_demo_contract_is_answered_from_postgres") else {
        return;
    };
    let fixture = Fixture::postgres(&url).await;
    check_all_contracts(&fixture).await;
    fixture.drop_all().await;
}

#[tokio::test]
async fn each_demo_contract_is_answered_from_mariadb() {
    let Some(url) = mysql_url("each_demo_contract_is_answered_from_mariadb") else {
        return;
    };
    let fixture = Fixture::mysql(&url).await;
    check_all_contracts(&fixture).await;
    fixture.drop_all().await;
}

/// BPJS Ketenagakerjaan's participant API as the HTTP adapter's upstream: the same people
/// as the database fixtures, in the API's own shape.
async fn participant_api() -> std::net::SocketAddr {
    http_server(Arc::new(|req| {
        Box::pin(async move {
            let nik = req
                .uri()
                .path()
                .strip_prefix("/bpjs/v1/participants/")
                .unwrap_or("");
            match nik {
                ALL_FOUR => json_response(
                    200,
                    &json!({"data": {"participant": {"nik": nik, "active": true, "programs": ["JKK", "JKM", "JHT"], "balance": 1200}}}),
                ),
                WNA_DECEASED => json_response(
                    200,
                    &json!({"data": {"participant": {"nik": nik, "active": false, "programs": []}}}),
                ),
                _ => json_response(404, &json!({"error": "participant not found"})),
            }
        })
    }))
    .await
}

#[tokio::test]
async fn all_four_backends_answer_the_same_contract_identically() {
    let test = "all_four_backends_answer_the_same_contract_identically";
    let (Some(pg), Some(my)) = (postgres_url(test), mysql_url(test)) else {
        return;
    };
    let contract = Contract::Insurance;
    let sqlite = Fixture::sqlite().await;
    let postgres = Fixture::postgres(&pg).await;
    let mariadb = Fixture::mysql(&my).await;
    let api = participant_api().await;
    let http: HttpSpec = serde_json::from_value(json!({
        "url": format!("http://{api}/bpjs/v1/participants/{{nik}}"),
        "answer": {"active": "/data/participant/active", "programs": "/data/participant/programs"},
        "found": {"enrolled": true},
        "not_found": {"enrolled": false, "active": false, "programs": []},
    }))
    .expect("http binding");
    let backends: Vec<(&str, Box<dyn Adapter>)> = vec![
        ("sqlite", Box::new(sqlite.adapter(contract.binding()))),
        ("postgres", Box::new(postgres.adapter(contract.binding()))),
        ("mariadb", Box::new(mariadb.adapter(contract.binding()))),
        (
            "http",
            Box::new(HttpAdapter::new(http, sqlite.base_dir()).expect("http adapter")),
        ),
    ];
    let tricky = [
        "' OR '1'='1",
        "3171011701900001' --",
        "3171011701900001/../x",
    ];
    for nik in PEOPLE.iter().chain(tricky.iter()) {
        let query = json!({ "nik": nik });
        let mut answers: Vec<(&str, Value)> = Vec::new();
        for (name, adapter) in &backends {
            let answer = adapter
                .answer(&query)
                .await
                .unwrap_or_else(|e| panic!("{name} {nik}: {e}"));
            answers.push((name, answer));
        }
        let expected = contract.expected(nik);
        for (name, answer) in &answers {
            assert_eq!(answer, &expected, "{name} answers {nik} differently");
        }
        // Identical down to the bytes a provider would sign.
        let texts: Vec<String> = answers.iter().map(|(_, a)| a.to_string()).collect();
        assert!(texts.windows(2).all(|w| w[0] == w[1]), "{texts:?}");
    }
    postgres.drop_all().await;
    mariadb.drop_all().await;
}
