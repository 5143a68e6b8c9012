//! The SQL adapter's list mode on SQLite, PostgreSQL and MariaDB/MySQL: the people of an
//! overlap count — the statement of docs/ADAPTERS.md, the same text on every engine — read as
//! one identifier per row, with its label or without, duplicates kept; a NULL label or a
//! value over 256 bytes failing naming the row and the column; a slow list timing out; and
//! `check` preparing the statement without running it.

use std::time::{Duration, Instant};

use adapters::{Adapter, AdapterError, ListRows, SqlAdapter};
use serde_json::{Value, json};

use crate::common::{ALL_FOUR, DUKCAPIL_ONLY, Fixture, WNA_DECEASED, mysql_url, postgres_url};

/// The people a consumer's list holds: one of them reported twice, from two regions.
const SELFREPORTS: [&str; 2] = [
    "CREATE TABLE selfreports (id INTEGER PRIMARY KEY, nik VARCHAR(300), region VARCHAR(64))",
    "INSERT INTO selfreports VALUES \
     (1, '3171011701900001', 'Jakarta'), \
     (2, '3171015701900002', 'Jakarta'), \
     (3, '3273012505850003', 'Bandung'), \
     (4, '3171011701900001', 'Bandung')",
];

/// The binding of docs/ADAPTERS.md's `rows = "list"` example, with the label as `label_sql`
/// says, or without a label (without `database`).
fn binding(label_sql: Option<&str>) -> Value {
    match label_sql {
        Some(label) => json!({
            "rows": "list",
            "statement": format!(
                "SELECT nik AS identifier, {label} AS label FROM selfreports \
                  WHERE nik IS NOT NULL ORDER BY id"
            ),
            "columns": {"identifier": "text", "label": "text"},
        }),
        None => json!({
            "rows": "list",
            "statement": "SELECT nik AS identifier FROM selfreports WHERE nik IS NOT NULL ORDER BY id",
            "columns": {"identifier": "text"},
        }),
    }
}

fn texts(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

async fn list_in_order(mut fixture: Fixture) {
    for sql in SELFREPORTS {
        fixture.admin.exec(sql).await;
    }
    let engine = fixture.engine;
    let identifiers = texts(&[ALL_FOUR, WNA_DECEASED, DUKCAPIL_ONLY, ALL_FOUR]);

    let adapter = fixture.adapter(binding(None));
    assert_eq!(adapter.list_labelled(), Some(false));
    let prepared = adapter.check().await.expect("prepared").expect("checked");
    assert!(prepared.ends_with(": statement prepared"), "{prepared}");
    let list = adapter
        .list()
        .await
        .unwrap_or_else(|e| panic!("{engine:?}: {e}"));
    assert_eq!(
        list,
        ListRows {
            identifiers: identifiers.clone(),
            labels: None
        },
        "{engine:?}"
    );

    let adapter = fixture.adapter(binding(Some("region")));
    assert_eq!(adapter.list_labelled(), Some(true));
    let list = adapter
        .list()
        .await
        .unwrap_or_else(|e| panic!("{engine:?}: {e}"));
    assert_eq!(
        list,
        ListRows {
            identifiers: identifiers.clone(),
            labels: Some(texts(&["Jakarta", "Jakarta", "Bandung", "Bandung"])),
        },
        "{engine:?}"
    );

    // A person without a region: a NULL label, refused naming the row and the column only.
    fixture
        .admin
        .exec("INSERT INTO selfreports VALUES (5, '3171011101900010', NULL)")
        .await;
    let refused = adapter.list().await.expect_err("a NULL label");
    assert_eq!(
        refused.to_string(),
        "backend error: row 5: column `label` is NULL: every row needs a label \
         (write COALESCE(…, 'unknown') in the statement)",
        "{engine:?}"
    );
    // As the message says.
    let adapter = fixture.adapter(binding(Some("COALESCE(region, 'unknown')")));
    let list = adapter
        .list()
        .await
        .unwrap_or_else(|e| panic!("{engine:?}: {e}"));
    assert_eq!(list.identifiers.len(), 5, "{engine:?}");
    assert_eq!(
        list.labels
            .as_ref()
            .and_then(|l| l.last())
            .map(String::as_str),
        Some("unknown"),
        "{engine:?}"
    );

    // A NULL identifier is left out by the statement's WHERE; one over 256 bytes fails.
    let long = "7".repeat(257);
    fixture
        .admin
        .exec(&format!(
            "INSERT INTO selfreports VALUES (6, NULL, 'Jakarta'), (7, '{long}', 'Jakarta')"
        ))
        .await;
    let refused = adapter.list().await.expect_err("an identifier too long");
    assert_eq!(
        refused.to_string(),
        "backend error: row 6: column `identifier` has a value longer than 256 bytes",
        "{engine:?}"
    );
    fixture.drop_all().await;
}

#[tokio::test]
async fn sqlite_list_is_one_identifier_per_row_with_its_label() {
    list_in_order(Fixture::sqlite().await).await;
}

#[tokio::test]
async fn postgres_list_is_one_identifier_per_row_with_its_label() {
    let Some(url) = postgres_url("postgres_list_is_one_identifier_per_row_with_its_label") else {
        return;
    };
    list_in_order(Fixture::postgres(&url).await).await;
}

#[tokio::test]
async fn mysql_list_is_one_identifier_per_row_with_its_label() {
    let Some(url) = mysql_url("mysql_list_is_one_identifier_per_row_with_its_label") else {
        return;
    };
    list_in_order(Fixture::mysql(&url).await).await;
}

#[tokio::test]
async fn sqlite_slow_list_times_out() {
    let fixture = Fixture::sqlite().await;
    let mut binding = binding(None);
    binding["statement"] = json!(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) \
         SELECT CAST(COUNT(*) AS TEXT) AS identifier FROM c"
    );
    binding["timeout_ms"] = json!(100);
    let adapter = fixture.adapter(binding);
    let started = Instant::now();
    let refused = adapter.list().await.expect_err("past the deadline");
    assert!(matches!(refused, AdapterError::Timeout(100)), "{refused:?}");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn sqlite_list_of_a_missing_file_is_unavailable() {
    let fixture = Fixture::sqlite().await;
    let mut spec = fixture.spec(binding(None));
    spec.database = "missing.db".into();
    let adapter = SqlAdapter::new(spec, fixture.base_dir()).expect("adapter");
    let refused = adapter.list().await.expect_err("no file");
    assert!(
        matches!(refused, AdapterError::Unavailable(_)),
        "{refused:?}"
    );
}
