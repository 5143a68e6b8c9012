//! A slow statement gives "timeout" (504) within the deadline, and the server cancels it
//! (its statement timeout) instead of leaving it running.

use std::time::{Duration, Instant};

use adapters::{Adapter, AdapterError};
use serde_json::json;

use crate::common::{Fixture, mysql_url, postgres_url, unique};

const DEADLINE_MS: u64 = 500;

async fn check(mut fixture: Fixture, statement: String, column: &str, running: String) {
    let mut binding = json!({
        "statement": statement,
        "columns": { column: "text" },
        "not_found": {},
        "timeout_ms": DEADLINE_MS,
    });
    if column == "slept" {
        binding["columns"][column] = json!("integer");
    }
    let adapter = fixture.adapter(binding);
    let started = Instant::now();
    let query = json!({"secs": 5});
    let (result, seen_running) = tokio::join!(adapter.answer(&query), async {
        // Half-way to the deadline the statement is running on the server: this proves
        // the query below finds it, so that its absence later means something.
        tokio::time::sleep(Duration::from_millis(DEADLINE_MS / 2)).await;
        fixture.admin.scalar(&running).await
    });
    let took = started.elapsed();
    assert_eq!(
        seen_running, 1,
        "{:?}: the statement is not seen running",
        fixture.engine
    );
    let err = result.expect_err("5 s is past the deadline");
    assert!(
        matches!(err, AdapterError::Timeout(DEADLINE_MS)),
        "{:?}: {err:?}",
        fixture.engine
    );
    assert!(
        took < Duration::from_millis(DEADLINE_MS + 200),
        "{:?}: timed out only after {took:?}",
        fixture.engine
    );
    // Without the server-side timeout the statement would run for 4.5 s more.
    let mut gone_after = None;
    for _ in 0..40 {
        if fixture.admin.scalar(&running).await == 0 {
            gone_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gone_after = gone_after.unwrap_or_else(|| {
        panic!(
            "{:?}: the statement still runs on the server 2 s after the deadline",
            fixture.engine
        )
    });
    eprintln!(
        "{:?}: timeout after {took:?}; no longer running on the server {gone_after:?} after the start",
        fixture.engine
    );
    // The pool is still usable.
    assert!(adapter.answer(&json!({"secs": 0})).await.is_ok());
    fixture.drop_all().await;
}

#[tokio::test]
async fn slow_postgres_statement_times_out_and_is_cancelled() {
    let Some(url) = postgres_url("slow_postgres_statement_times_out_and_is_cancelled") else {
        return;
    };
    let marker = unique("slow");
    check(
        Fixture::postgres(&url).await,
        format!("SELECT /* {marker} */ pg_sleep(:secs)::text AS note"),
        "note",
        format!(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() AND query LIKE '%{marker}%'"
        ),
    )
    .await;
}

#[tokio::test]
async fn slow_mariadb_statement_times_out_and_is_cancelled() {
    let Some(url) = mysql_url("slow_mariadb_statement_times_out_and_is_cancelled") else {
        return;
    };
    let marker = unique("slow");
    check(
        Fixture::mysql(&url).await,
        format!("SELECT /* {marker} */ SLEEP(:secs) AS slept"),
        "slept",
        format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND COMMAND <> 'Sleep' AND INFO LIKE '%{marker}%'"
        ),
    )
    .await;
}
