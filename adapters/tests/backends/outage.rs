//! A database that stops mid-run gives "unavailable" (503) within the deadline, and the same
//! adapter answers again once the database is back: the pool reconnects by itself. The
//! shared servers are never stopped: a TCP proxy in front of them is.

use std::time::{Duration, Instant};

use adapters::{Adapter, AdapterError, SqlAdapter};
use serde_json::json;

use crate::common::{
    ALL_FOUR, Contract, Fixture, Proxy, mysql_url, postgres_url, server_address, with_address,
};

const DEADLINE_MS: u64 = 2_000;

async fn check(fixture: Fixture, default_port: u16) {
    let proxy = Proxy::start(server_address(&fixture.database, default_port).await).await;
    let mut spec = fixture.spec(Contract::Citizenship.binding());
    spec.database = with_address(&fixture.database, proxy.addr);
    spec.timeout_ms = DEADLINE_MS;
    spec.pool_size = 2;
    let adapter = SqlAdapter::new(spec, fixture.base_dir()).expect("adapter");
    let query = json!({ "nik": ALL_FOUR });
    let expected = Contract::Citizenship.expected(ALL_FOUR);
    assert_eq!(adapter.answer(&query).await.expect("before"), expected);

    proxy.stop();
    for round in 0..3 {
        let started = Instant::now();
        let err = adapter.answer(&query).await.expect_err("server stopped");
        let took = started.elapsed();
        assert!(
            matches!(err, AdapterError::Unavailable(_)),
            "{:?} round {round}: {err:?}",
            fixture.engine
        );
        assert!(
            took < Duration::from_millis(DEADLINE_MS),
            "{:?} round {round}: unavailable only after {took:?}",
            fixture.engine
        );
        eprintln!("{:?}: unavailable after {took:?}", fixture.engine);
    }

    proxy.restart().await;
    let started = Instant::now();
    assert_eq!(
        adapter
            .answer(&query)
            .await
            .expect("the first answer after the restart"),
        expected
    );
    eprintln!("{:?}: recovered in {:?}", fixture.engine, started.elapsed());
    fixture.drop_all().await;
}

#[tokio::test]
async fn postgres_stopped_mid_run_is_unavailable_then_recovers() {
    let Some(url) = postgres_url("postgres_stopped_mid_run_is_unavailable_then_recovers") else {
        return;
    };
    check(Fixture::postgres(&url).await, 5432).await;
}

#[tokio::test]
async fn mariadb_stopped_mid_run_is_unavailable_then_recovers() {
    let Some(url) = mysql_url("mariadb_stopped_mid_run_is_unavailable_then_recovers") else {
        return;
    };
    check(Fixture::mysql(&url).await, 3306).await;
}
