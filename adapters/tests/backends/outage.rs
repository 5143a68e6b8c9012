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

/// The SQLite file of a binding, as an operator meets it: moved away, replaced by something
/// that is not a database, locked by a writer, then restored. Each fault is "unavailable"
/// (503) within the deadline, and the same adapter answers again as soon as the file is
/// back, without a restart: a connection that met a fault is not kept.
#[tokio::test]
async fn sqlite_file_missing_corrupt_or_locked_is_unavailable_then_recovers() {
    let fixture = Fixture::sqlite().await;
    let mut spec = fixture.spec(Contract::Citizenship.binding());
    spec.timeout_ms = DEADLINE_MS;
    spec.pool_size = 2;
    let adapter = SqlAdapter::new(spec, fixture.base_dir()).expect("adapter");
    let query = json!({ "nik": ALL_FOUR });
    let expected = Contract::Citizenship.expected(ALL_FOUR);
    assert_eq!(adapter.answer(&query).await.expect("before"), expected);
    let file = fixture.base_dir().join("fixture.db");
    let kept = fixture.base_dir().join("kept.db");
    std::fs::copy(&file, &kept).unwrap();

    let expect_unavailable = |what: &'static str| {
        let adapter = &adapter;
        let query = &query;
        async move {
            for round in 0..2 {
                let started = Instant::now();
                let err = adapter.answer(query).await.expect_err(what);
                assert!(
                    matches!(err, AdapterError::Unavailable(_)),
                    "{what}, round {round}: {err:?}"
                );
                assert!(
                    started.elapsed() <= Duration::from_millis(DEADLINE_MS + 500),
                    "{what}: unavailable only after {:?}",
                    started.elapsed()
                );
            }
        }
    };
    let restore = || {
        let tmp = fixture.base_dir().join("restore.db");
        std::fs::copy(&kept, &tmp).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };
    let answers_again = |what: &'static str| {
        let adapter = &adapter;
        let query = &query;
        let expected = &expected;
        async move {
            assert_eq!(
                &adapter
                    .answer(query)
                    .await
                    .unwrap_or_else(|e| panic!("after {what}: {e:?}")),
                expected
            );
        }
    };

    // Missing.
    std::fs::rename(&file, fixture.base_dir().join("moved.db")).unwrap();
    expect_unavailable("the file moved away").await;
    restore();
    answers_again("the file moved away").await;

    // Replaced by something that is not a database.
    let tmp = fixture.base_dir().join("garbage.db");
    std::fs::write(&tmp, vec![0x5a; 8192]).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    expect_unavailable("a file that is not a database").await;
    restore();
    answers_again("a file that is not a database").await;

    // Locked: a writer holds an exclusive lock past the deadline.
    let mut writer = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(&file),
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
    expect_unavailable("a file locked by a writer").await;
    sqlx::query("COMMIT").execute(&mut writer).await.unwrap();
    drop(writer);
    answers_again("a file locked by a writer").await;
    fixture.drop_all().await;
}
