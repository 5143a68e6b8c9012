//! The SQL adapter's table mode on SQLite, PostgreSQL and MariaDB/MySQL: the aggregate of a
//! statistics contract — the GROUP BY statement of docs/ADAPTERS.md, the same text on every
//! engine — read as one row per group with its count; a NULL dimension failing until the
//! statement gives it a value; more than `MAX_AGGREGATE_ROWS` rows failing; a slow aggregate
//! timing out; and `check` preparing the statement without running it.

use std::time::{Duration, Instant};

use adapters::{Adapter, AdapterError, SqlAdapter};
use contracts::statistics::{AggregateRows, MAX_AGGREGATE_ROWS};
use serde_json::{Value, json};

use crate::common::{Fixture, mysql_url, postgres_url};

/// The placements a statistics contract counts: the NIK's day of birth (its 7th and 8th
/// digits) is over 40 for a woman; one placement is no longer active.
const PLACEMENTS: [&str; 3] = [
    "DROP TABLE placements",
    "CREATE TABLE placements (nik VARCHAR(32) NOT NULL, country VARCHAR(2) NOT NULL, occupation VARCHAR(64), status VARCHAR(16) NOT NULL)",
    "INSERT INTO placements VALUES \
     ('3171011701900001', 'MY', 'domestic', 'active'), \
     ('3171015701900002', 'MY', 'domestic', 'active'), \
     ('3171015801900003', 'MY', 'domestic', 'active'), \
     ('3171012001900004', 'MY', 'construction', 'active'), \
     ('3171012101900005', 'MY', 'construction', 'active'), \
     ('3171014101900006', 'SA', 'domestic', 'active'), \
     ('3171014001900007', 'SA', 'domestic', 'active'), \
     ('3171016001900008', 'HK', 'care', 'completed'), \
     ('3171011001900009', 'HK', 'care', 'active')",
];

/// The binding of docs/ADAPTERS.md's `rows = "table"` example, with `occupation` as
/// `sector_sql` says (without `database`).
fn binding(sector_sql: &str) -> Value {
    json!({
        "rows": "table",
        "statement": format!(
            "SELECT country, {sector_sql} AS sector, \
                    CASE WHEN substr(nik, 7, 2) > '40' THEN 'F' ELSE 'M' END AS sex, \
                    COUNT(*) AS count \
               FROM placements \
              WHERE status = 'active' \
              GROUP BY 1, 2, 3"
        ),
        "columns": {"country": "text", "sector": "text", "sex": "text", "count": "integer"},
    })
}

/// The aggregate's rows in a fixed order (a GROUP BY returns its groups in any order).
fn sorted(aggregate: AggregateRows) -> Vec<(Vec<String>, u64)> {
    let mut rows = aggregate.rows;
    rows.sort();
    rows
}

fn row(key: [&str; 3], count: u64) -> (Vec<String>, u64) {
    (key.iter().map(|v| (*v).to_owned()).collect(), count)
}

async fn aggregate_by_group(mut fixture: Fixture) {
    for sql in PLACEMENTS {
        fixture.admin.exec(sql).await;
    }
    let engine = fixture.engine;
    let adapter = fixture.adapter(binding("occupation"));
    let dimensions = ["country", "sector", "sex"].map(String::from).to_vec();
    assert_eq!(adapter.table_dimensions(), Some(dimensions.clone()));
    let prepared = adapter.check().await.expect("prepared").expect("checked");
    assert!(prepared.ends_with(": statement prepared"), "{prepared}");

    let aggregate = adapter
        .table()
        .await
        .unwrap_or_else(|e| panic!("{engine:?}: {e}"));
    assert_eq!(aggregate.dimensions, dimensions, "{engine:?}");
    let expected = vec![
        row(["HK", "care", "M"], 1),
        row(["MY", "construction", "M"], 2),
        row(["MY", "domestic", "F"], 2),
        row(["MY", "domestic", "M"], 1),
        row(["SA", "domestic", "F"], 1),
        // Day 40 is a man's: only over 40 is a woman's.
        row(["SA", "domestic", "M"], 1),
    ];
    assert_eq!(sorted(aggregate), expected, "{engine:?}");

    // A placement without an occupation: a NULL group, refused naming the column only.
    fixture
        .admin
        .exec("INSERT INTO placements VALUES ('3171011101900010', 'HK', NULL, 'active')")
        .await;
    let refused = adapter.table().await.expect_err("a NULL dimension");
    assert_eq!(
        refused.to_string(),
        "backend error: column `sector` is NULL in a row: every row needs a value for each \
         dimension (write COALESCE(…, 'unknown') in the statement)",
        "{engine:?}"
    );
    // As the message says.
    let adapter = fixture.adapter(binding("COALESCE(occupation, 'unknown')"));
    let rows = sorted(
        adapter
            .table()
            .await
            .unwrap_or_else(|e| panic!("{engine:?}: {e}")),
    );
    assert_eq!(rows.len(), expected.len() + 1, "{engine:?}");
    assert!(rows.contains(&row(["HK", "unknown", "M"], 1)), "{engine:?}");
    fixture.drop_all().await;
}

#[tokio::test]
async fn sqlite_aggregate_is_one_row_per_group_with_its_count() {
    aggregate_by_group(Fixture::sqlite().await).await;
}

#[tokio::test]
async fn postgres_aggregate_is_one_row_per_group_with_its_count() {
    let Some(url) = postgres_url("postgres_aggregate_is_one_row_per_group_with_its_count") else {
        return;
    };
    aggregate_by_group(Fixture::postgres(&url).await).await;
}

#[tokio::test]
async fn mysql_aggregate_is_one_row_per_group_with_its_count() {
    let Some(url) = mysql_url("mysql_aggregate_is_one_row_per_group_with_its_count") else {
        return;
    };
    aggregate_by_group(Fixture::mysql(&url).await).await;
}

/// A binding whose statement counts 1 for each of `rows` numbers, each its own group.
fn numbers(rows: usize) -> Value {
    json!({
        "rows": "table",
        "statement": format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) \
             SELECT CAST(x AS TEXT) AS n, 1 AS count FROM c"
        ),
        "columns": {"n": "text", "count": "integer"},
        // Reading a million rows takes longer than the default deadline of an answer.
        "timeout_ms": 60_000,
    })
}

#[tokio::test]
async fn sqlite_aggregate_of_more_than_a_million_rows_fails() {
    let fixture = Fixture::sqlite().await;
    let adapter = fixture.adapter(numbers(MAX_AGGREGATE_ROWS + 1));
    let started = Instant::now();
    let refused = adapter.table().await.expect_err("too many rows");
    assert_eq!(
        refused.to_string(),
        format!(
            "backend error: the aggregate has more than {MAX_AGGREGATE_ROWS} rows: a dimension \
             is finer than statistics need (a date where a year was meant?)"
        )
    );
    eprintln!(
        "{} rows refused after {:?}",
        MAX_AGGREGATE_ROWS + 1,
        started.elapsed()
    );
}

#[tokio::test]
async fn sqlite_slow_aggregate_times_out() {
    let fixture = Fixture::sqlite().await;
    let mut binding = numbers(1_000_000_000);
    binding["statement"] = json!(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) \
         SELECT 'all' AS n, COUNT(*) AS count FROM c"
    );
    binding["timeout_ms"] = json!(100);
    let adapter = fixture.adapter(binding);
    let started = Instant::now();
    let refused = adapter.table().await.expect_err("past the deadline");
    assert!(matches!(refused, AdapterError::Timeout(100)), "{refused:?}");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn sqlite_aggregate_of_a_missing_file_is_unavailable() {
    let fixture = Fixture::sqlite().await;
    let mut spec = fixture.spec(binding("occupation"));
    spec.database = "missing.db".into();
    let adapter = SqlAdapter::new(spec, fixture.base_dir()).expect("adapter");
    let refused = adapter.table().await.expect_err("no file");
    assert!(
        matches!(refused, AdapterError::Unavailable(_)),
        "{refused:?}"
    );
}
