//! `Adapter::check`, what `simpul doctor` asks of each binding: the SQL adapter connects and
//! prepares its statement without running it, on SQLite and on the PostgreSQL and
//! MariaDB/MySQL servers under test; the HTTP adapter connects to the API's host (TLS for
//! `https://`) and sends no request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use adapters::{Adapter, AdapterError, HttpAdapter, HttpSpec};
use serde_json::json;

use crate::common::{Contract, Fixture, http_server, json_response, mysql_url, postgres_url};

/// Every demo binding prepares; a statement naming a missing column and one that does not
/// return a mapped column fail, naming the column; none of it touches a row.
async fn check_bindings(fixture: &mut Fixture) {
    let before = fixture.count("residents").await;
    for contract in Contract::ALL {
        let reached = fixture.adapter(contract.binding()).check().await;
        let what = reached.expect("prepared").expect("a SQL adapter checks");
        assert!(what.ends_with(": statement prepared"), "{what}");
        assert!(!what.contains('@'), "no user or password: {what}");
    }
    let mut binding = Contract::Citizenship.binding();
    binding["statement"] =
        json!("SELECT citizenship, deceased FROM residents WHERE no_such_column = :nik");
    let refused = fixture
        .adapter(binding)
        .check()
        .await
        .expect_err("missing column");
    assert!(
        matches!(&refused, AdapterError::Failed(m) if m.contains("no_such_column")),
        "{refused:?}"
    );
    let mut binding = Contract::Citizenship.binding();
    binding["statement"] =
        json!("SELECT citizenship AS nationality, deceased FROM residents WHERE nik = :nik");
    let refused = fixture
        .adapter(binding)
        .check()
        .await
        .expect_err("unmapped column");
    assert!(
        matches!(&refused, AdapterError::Failed(m) if m.starts_with("the statement returns no column `citizenship` (it returns ")),
        "{refused:?}"
    );
    assert_eq!(fixture.count("residents").await, before);
}

#[tokio::test]
async fn sqlite_check_prepares_each_statement_and_names_a_missing_column_or_file() {
    let mut fixture = Fixture::sqlite().await;
    check_bindings(&mut fixture).await;
    let what = fixture
        .adapter(Contract::Citizenship.binding())
        .check()
        .await
        .expect("prepared")
        .expect("checked");
    assert_eq!(
        what,
        format!(
            "SQLite file {}: statement prepared",
            fixture.base_dir().join("fixture.db").display()
        )
    );
    let mut spec = fixture.spec(Contract::Citizenship.binding());
    spec.database = "missing.db".into();
    let missing = adapters::SqlAdapter::new(spec, fixture.base_dir()).expect("adapter");
    let refused = missing.check().await.expect_err("no file");
    let expected = format!(
        "backend unavailable: {} does not exist",
        fixture.base_dir().join("missing.db").display()
    );
    assert_eq!(refused.to_string(), expected);
    // Checking opened nothing read-write: the file was not made.
    assert!(!fixture.base_dir().join("missing.db").exists());
}

#[tokio::test]
async fn postgres_check_prepares_each_statement_and_names_a_missing_column() {
    let Some(url) =
        postgres_url("postgres_check_prepares_each_statement_and_names_a_missing_column")
    else {
        return;
    };
    let mut fixture = Fixture::postgres(&url).await;
    check_bindings(&mut fixture).await;
    fixture.drop_all().await;
}

#[tokio::test]
async fn mysql_check_prepares_each_statement_and_names_a_missing_column() {
    let Some(url) = mysql_url("mysql_check_prepares_each_statement_and_names_a_missing_column")
    else {
        return;
    };
    let mut fixture = Fixture::mysql(&url).await;
    check_bindings(&mut fixture).await;
    fixture.drop_all().await;
}

fn http_adapter(url: &str) -> HttpAdapter {
    let spec: HttpSpec = serde_json::from_value(json!({
        "url": url,
        "answer": {"placed": "/placed"},
        "timeout_ms": 1000,
    }))
    .expect("spec");
    HttpAdapter::new(spec, std::path::Path::new(".")).expect("adapter")
}

#[tokio::test]
async fn http_check_connects_to_the_host_and_asks_nothing() {
    let asked = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&asked);
    let addr = http_server(Arc::new(move |_req| {
        counter.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { json_response(200, &json!({"placed": true})) })
    }))
    .await;
    let adapter = http_adapter(&format!("http://{addr}/people/{{nik}}?full=1"));
    let what = adapter.check().await.expect("reached").expect("checked");
    assert_eq!(what, format!("API http://{addr}/: connected (plain HTTP)"));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(asked.load(Ordering::SeqCst), 0, "no request was sent");

    // TLS to a server that does not speak it: the handshake fails.
    let tls = http_adapter(&format!("https://{addr}/people/{{nik}}"));
    let refused = tls.check().await.expect_err("no TLS there");
    assert!(
        matches!(refused, AdapterError::Unavailable(_)),
        "{refused:?}"
    );

    // Nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let down = http_adapter(&format!("http://127.0.0.1:{port}/people/{{nik}}"));
    let refused = down.check().await.expect_err("refused");
    assert!(
        matches!(&refused, AdapterError::Unavailable(m) if m.starts_with(&format!("cannot connect to http://127.0.0.1:{port}/: "))),
        "{refused:?}"
    );
}
