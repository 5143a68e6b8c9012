//! The SQL adapter's changes mode on SQLite, PostgreSQL and MariaDB/MySQL: an event
//! contract's change table — the statement of docs/ADAPTERS.md, the same text on every engine
//! — read after the last row emitted, at most `:limit` rows, in the order of `source`, a NULL
//! column leaving its field out; a statement that ignores `:limit` or returns the rows out of
//! order failing naming the row; and `check` preparing the statement without running it.

use adapters::{Adapter, AdapterError, Change, SqlAdapter};
use serde_json::{Map, Value, json};

use crate::common::{Fixture, mysql_url, postgres_url};

/// A change table as a member's system keeps it: one row per change, written in the same
/// transaction as the change itself.
const PLACEMENT_CHANGES: [&str; 2] = [
    "CREATE TABLE placement_changes (id INTEGER PRIMARY KEY, placement VARCHAR(12) NOT NULL, \
     kind VARCHAR(16), changed_on VARCHAR(10) NOT NULL)",
    "INSERT INTO placement_changes VALUES \
     (1, '84211', 'started', '2026-12-06'), \
     (2, '84212', NULL, '2026-12-06'), \
     (3, '84211', 'ended', '2026-12-07')",
];

/// The binding of docs/ADAPTERS.md's `rows = "changes"` example, with `order` and `limit`
/// as given (without `database`).
fn binding(order: &str, limit: &str) -> Value {
    json!({
        "rows": "changes",
        "statement": format!(
            "SELECT id AS source, placement, kind AS \"change\", changed_on AS \"on\" \
               FROM placement_changes WHERE id > :after ORDER BY {order} {limit}"
        ),
        "columns": {"source": "integer", "placement": "text", "change": "text", "on": "text"},
    })
}

fn data(v: Value) -> Map<String, Value> {
    serde_json::from_value(v).expect("an object")
}

fn sources(changes: &[Change]) -> Vec<i64> {
    changes.iter().map(|c| c.source).collect()
}

async fn changes_in_order(mut fixture: Fixture) {
    for sql in PLACEMENT_CHANGES {
        fixture.admin.exec(sql).await;
    }
    let engine = fixture.engine;
    let adapter = fixture.adapter(binding("id", "LIMIT :limit"));
    // Prepared first, as `simpul doctor` does: the values bound after it still fit (on
    // PostgreSQL the server types `id > $1` INT4 here, and the probe's connection, which
    // caches that, is closed rather than reused).
    let prepared = adapter.check().await.expect("prepared").expect("checked");
    assert!(prepared.ends_with(": statement prepared"), "{prepared}");

    let changes = adapter
        .changes(0, 100)
        .await
        .unwrap_or_else(|e| panic!("{engine:?}: {e}"));
    assert_eq!(
        changes,
        [
            Change {
                source: 1,
                data: data(json!({"placement": "84211", "change": "started", "on": "2026-12-06"})),
            },
            Change {
                source: 2,
                data: data(json!({"placement": "84212", "on": "2026-12-06"})),
            },
            Change {
                source: 3,
                data: data(json!({"placement": "84211", "change": "ended", "on": "2026-12-07"})),
            },
        ],
        "{engine:?}"
    );
    for (after, limit, expected) in [
        (1, 100, vec![2, 3]),
        (0, 2, vec![1, 2]),
        (2, 1, vec![3]),
        (3, 100, vec![]),
    ] {
        let read = adapter
            .changes(after, limit)
            .await
            .unwrap_or_else(|e| panic!("{engine:?}: {e}"));
        assert_eq!(sources(&read), expected, "{engine:?} after {after}");
    }

    // A statement that does not stop at `:limit` fails, and reads no row past it.
    let mut spec = fixture.spec(binding("id", ""));
    spec.statement = spec
        .statement
        .replace("WHERE id > :after", "WHERE id > :after AND :limit > 0");
    let unbounded = SqlAdapter::new(spec, fixture.base_dir()).expect("adapter");
    let refused = unbounded.changes(0, 2).await.expect_err("past the limit");
    assert_eq!(
        refused.to_string(),
        "backend error: the statement returned more than 2 rows, the `:limit` it was given (end it with `LIMIT :limit`)",
        "{engine:?}"
    );

    // Rows out of order fail naming the row.
    let backwards = fixture.adapter(binding("id DESC", "LIMIT :limit"));
    let refused = backwards.changes(0, 100).await.expect_err("out of order");
    assert!(
        refused
            .to_string()
            .starts_with("backend error: row 2: source 2 is not after the row before it (3)"),
        "{engine:?}: {refused}"
    );
    fixture.drop_all().await;
}

#[tokio::test]
async fn sqlite_changes_are_read_after_the_last_row_in_order_and_bounded() {
    changes_in_order(Fixture::sqlite().await).await;
}

#[tokio::test]
async fn postgres_changes_are_read_after_the_last_row_in_order_and_bounded() {
    let Some(url) =
        postgres_url("postgres_changes_are_read_after_the_last_row_in_order_and_bounded")
    else {
        return;
    };
    changes_in_order(Fixture::postgres(&url).await).await;
}

#[tokio::test]
async fn mysql_changes_are_read_after_the_last_row_in_order_and_bounded() {
    let Some(url) = mysql_url("mysql_changes_are_read_after_the_last_row_in_order_and_bounded")
    else {
        return;
    };
    changes_in_order(Fixture::mysql(&url).await).await;
}

#[tokio::test]
async fn sqlite_changes_of_a_missing_file_are_unavailable() {
    let fixture = Fixture::sqlite().await;
    let mut spec = fixture.spec(binding("id", "LIMIT :limit"));
    spec.database = "missing.db".into();
    let adapter = SqlAdapter::new(spec, fixture.base_dir()).expect("adapter");
    let refused = adapter.changes(0, 100).await.expect_err("no file");
    assert!(
        matches!(refused, AdapterError::Unavailable(_)),
        "{refused:?}"
    );
}
