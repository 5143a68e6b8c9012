//! The SQL adapter's changes mode (`rows = "changes"`): an event contract's change table — an
//! outbox the member's system writes in the same transaction as each change — read after the
//! last row emitted, at most `:limit` rows at a time, and checked row by row as they arrive.

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{
    Bind, ColumnType, Connection, SqlAdapter, SqlSpec, Unread, bound, map_row, read_column,
    refuse_unread, try_integer,
};
use crate::statement::{Dialect, PreparedText, prepare};
use crate::{AdapterConfigError, AdapterError, Change, MAX_CHANGE_BYTES};

/// The column of each row's number in the change table.
const SOURCE_COLUMN: &str = "source";
/// The parameter of the last row emitted: the statement returns the rows after it.
const AFTER: &str = "after";
/// The parameter of the most rows the statement returns.
const LIMIT: &str = "limit";

/// Checks a spec with `rows = "changes"`: nothing set that only the other modes use, and its
/// columns — `source = "integer"` and at least one more, the fields of each event's data.
/// (`batch` is refused with the other modes, in `SqlAdapter::new`; the statement in
/// [`prepare_after`].)
pub(super) fn check(spec: &SqlSpec) -> Result<(), AdapterConfigError> {
    refuse_unread(
        spec,
        "changes",
        Unread {
            found: "an event's data is its row's columns, nothing more",
            not_found: "no row after the last one emitted is no change, and nothing is emitted",
            list_field: "each row is one event, not an element of an answer's list",
        },
    )?;
    if spec.columns.get(SOURCE_COLUMN) != Some(&ColumnType::Integer) {
        return Err(AdapterConfigError::new(
            "columns",
            format!(
                "rows = \"changes\" needs `{SOURCE_COLUMN} = \"integer\"`: each row's number in the change table, which only grows (alias it in the statement: `id AS {SOURCE_COLUMN}`)"
            ),
        ));
    }
    if spec.columns.len() < 2 {
        return Err(AdapterConfigError::new(
            "columns",
            format!(
                "rows = \"changes\" needs a column beside `{SOURCE_COLUMN}`: the fields of each event's data"
            ),
        ));
    }
    Ok(())
}

/// The statement of a `rows = "changes"` binding, which takes exactly two parameters, each
/// at least once: `:after`, the last row emitted, and `:limit`, the most rows to return.
pub(super) fn prepare_after(
    statement: &str,
    dialect: Dialect,
) -> Result<PreparedText, AdapterConfigError> {
    let prepared = prepare(statement, dialect)?;
    if let Some(name) = prepared.params.iter().find(|p| *p != AFTER && *p != LIMIT) {
        return Err(AdapterConfigError::new(
            "statement",
            format!(
                "a rows = \"changes\" statement takes `:{AFTER}` and `:{LIMIT}` and no other parameter (`:{name}`)"
            ),
        ));
    }
    for (name, why) in [
        (
            AFTER,
            "it returns the rows after the last one emitted (`WHERE id > :after`)",
        ),
        (
            LIMIT,
            "it returns at most that many rows, in order (`ORDER BY id LIMIT :limit`)",
        ),
    ] {
        if !prepared.params.iter().any(|p| p == name) {
            return Err(AdapterConfigError::new(
                "statement",
                format!("a rows = \"changes\" statement uses `:{name}`: {why}"),
            ));
        }
    }
    Ok(prepared)
}

/// The fields of each change's data: the columns but `source`, sorted by name.
pub(super) fn fields(columns: &BTreeMap<String, ColumnType>) -> Vec<String> {
    columns
        .keys()
        .filter(|name| *name != SOURCE_COLUMN)
        .cloned()
        .collect()
}

/// What [`crate::Adapter::answer`] gives for a changes binding.
pub(super) fn not_a_question() -> AdapterError {
    AdapterError::Failed(
        "a rows = \"changes\" binding gives the rows of an event contract's change table, not an answer to one question"
            .into(),
    )
}

impl SqlAdapter {
    /// Runs the statement with `:after` and `:limit` bound and reads its rows, at most
    /// `limit` of them, each checked as it arrives.
    pub(super) async fn read_changes(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Change>, AdapterError> {
        let binds = self.binds(&json!({ "after": after, "limit": limit }))?;
        let data: BTreeMap<String, ColumnType> = self
            .spec
            .columns
            .iter()
            .filter(|(name, _)| *name != SOURCE_COLUMN)
            .map(|(name, kind)| (name.clone(), *kind))
            .collect();
        let deadline = Instant::now() + Duration::from_millis(self.spec.timeout_ms);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let (sql, binds, data) = (&self.sql, binds.as_slice(), &data);
        match &mut self.connection(deadline).await? {
            Connection::Sqlite(c) => {
                fetch_changes::<sqlx::Sqlite>(c, sql, binds, data, after, limit).await
            }
            Connection::Postgres(c) => {
                fetch_changes::<sqlx::Postgres>(c, sql, binds, data, after, limit).await
            }
            Connection::MySql(c) => {
                fetch_changes::<sqlx::MySql>(c, sql, binds, data, after, limit).await
            }
        }
        .map_err(|e| self.classify(e))?
    }
}

/// Runs the statement on any of the three backends and reads each row's `source` and data,
/// stopping at the first row past `limit`: no row after it is decoded. The outer error is the
/// database's; the inner one a row that does not fit.
async fn fetch_changes<DB>(
    conn: &mut DB::Connection,
    sql: &Arc<str>,
    binds: &[Bind],
    data: &BTreeMap<String, ColumnType>,
    after: i64,
    limit: usize,
) -> Result<Result<Vec<Change>, AdapterError>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB>,
    for<'r> bool: Decode<'r, DB>,
    for<'r> i64: Decode<'r, DB>,
    for<'r> i32: Decode<'r, DB> + Type<DB>,
    for<'r> i16: Decode<'r, DB> + Type<DB>,
    for<'r> f64: Decode<'r, DB>,
    for<'r> f32: Decode<'r, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    let mut stream = bound::<DB>(sql, binds).fetch(&mut *conn);
    let mut changes: Vec<Change> = Vec::new();
    while let Some(row) = poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        let row = row?;
        if changes.len() == limit {
            return Ok(Err(AdapterError::Failed(format!(
                "the statement returned more than {limit} rows, the `:limit` it was given (end it with `LIMIT :limit`)"
            ))));
        }
        let before = changes.last().map(|c| c.source);
        match change(&row, data, (after, before), changes.len() + 1) {
            Ok(change) => changes.push(change),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(changes))
}

/// Row `number` (counted from 1) as a change: its `source`, greater than `after` and than
/// the source of the row `before` it, and its data, at most [`MAX_CHANGE_BYTES`] as JSON.
/// The errors name the row and its source, never a value of the data: the message reaches
/// the log.
fn change<R>(
    row: &R,
    data: &BTreeMap<String, ColumnType>,
    (after, before): (i64, Option<i64>),
    number: usize,
) -> Result<Change, AdapterError>
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i16: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f32: Decode<'r, R::Database> + Type<R::Database>,
    for<'a> &'a str: ColumnIndex<R>,
{
    let in_row = |why: String| AdapterError::Failed(format!("row {number}: {why}"));
    let source = match read_column(row, SOURCE_COLUMN, ColumnType::Integer, try_integer) {
        Ok(Some(source)) => source,
        Ok(None) => {
            return Err(in_row(format!(
                "column `{SOURCE_COLUMN}` is NULL: every change needs its row's number"
            )));
        }
        Err(AdapterError::Failed(why)) => return Err(in_row(why)),
        Err(e) => return Err(e),
    };
    match before {
        None if source <= after => {
            return Err(in_row(format!(
                "source {source} is not after `:after` ({after}): return only the rows after it (`WHERE id > :after`)"
            )));
        }
        Some(before) if source <= before => {
            return Err(in_row(format!(
                "source {source} is not after the row before it ({before}): return the rows in the order of `{SOURCE_COLUMN}` (`ORDER BY id`), each once"
            )));
        }
        _ => {}
    }
    let data = map_row(row, data).map_err(|e| match e {
        AdapterError::Failed(why) => in_row(format!("source {source}: {why}")),
        e => e,
    })?;
    let bytes = serde_json::to_vec(&data).map_or(usize::MAX, |json| json.len());
    if bytes > MAX_CHANGE_BYTES {
        return Err(in_row(format!(
            "source {source}: its data is over {MAX_CHANGE_BYTES} bytes, more than a signed event holds"
        )));
    }
    Ok(Change { source, data })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::{Map, Value, json};
    use sqlx::{Connection as _, SqliteConnection};

    use super::*;
    use crate::Adapter;
    use crate::sql::RowMode;
    use crate::sql::test_support::{
        adapter_with_the_trait_defaults, assert_refused, assert_refused_with_field, sqlite_file,
    };

    fn changes_spec() -> SqlSpec {
        serde_json::from_value(json!({
            "database": "t.db",
            "rows": "changes",
            "statement": "SELECT id AS source, placement, change, changed_on AS \"on\" \
                          FROM placement_changes WHERE id > :after ORDER BY id LIMIT :limit",
            "columns": {"source": "integer", "placement": "text", "change": "text", "on": "text"},
        }))
        .unwrap()
    }

    #[test]
    fn a_changes_binding_is_read_from_config_and_gives_its_data_fields_sorted() {
        let s = changes_spec();
        assert_eq!(s.rows, RowMode::Changes);
        let a = SqlAdapter::new(s, Path::new(".")).unwrap();
        assert_eq!(
            a.change_fields(),
            Some(vec![
                "change".to_owned(),
                "on".to_owned(),
                "placement".to_owned()
            ])
        );
        assert_eq!(a.list_labelled(), None);
        assert_eq!(a.table_dimensions(), None);
        assert_eq!(
            a.prepared_sql(),
            "SELECT id AS source, placement, change, changed_on AS \"on\" \
             FROM placement_changes WHERE id > ? ORDER BY id LIMIT ?"
        );
        // On PostgreSQL `:after` and `:limit` are $1 and $2, whichever comes first.
        let mut s = changes_spec();
        s.database = "postgres://u@h/db".into();
        s.statement =
            "SELECT id AS source, placement FROM c WHERE id > :after AND id < :after + 1000 \
                       ORDER BY id LIMIT :limit"
                .into();
        s.columns = [
            ("source".to_owned(), ColumnType::Integer),
            ("placement".to_owned(), ColumnType::Text),
        ]
        .into();
        let a = SqlAdapter::new(s, Path::new(".")).unwrap();
        assert!(
            a.prepared_sql()
                .ends_with("WHERE id > $1 AND id < $1 + 1000 ORDER BY id LIMIT $2"),
            "{}",
            a.prepared_sql()
        );
    }

    #[test]
    fn a_changes_statement_without_after_is_refused() {
        let mut s = changes_spec();
        s.statement = "SELECT id AS source, placement, change, changed_on AS \"on\" \
                       FROM placement_changes ORDER BY id LIMIT :limit"
            .into();
        assert_refused(
            s,
            "statement",
            "a rows = \"changes\" statement uses `:after`: it returns the rows after the last one emitted",
        );
    }

    #[test]
    fn a_changes_statement_without_limit_is_refused() {
        let mut s = changes_spec();
        s.statement = "SELECT id AS source, placement, change, changed_on AS \"on\" \
                       FROM placement_changes WHERE id > :after ORDER BY id LIMIT 100"
            .into();
        assert_refused(
            s,
            "statement",
            "a rows = \"changes\" statement uses `:limit`: it returns at most that many rows",
        );
    }

    #[test]
    fn a_changes_statement_with_another_parameter_is_refused() {
        let mut s = changes_spec();
        s.statement = "SELECT id AS source, placement, change, changed_on AS \"on\" \
                       FROM placement_changes WHERE id > :after AND kind = :kind \
                       ORDER BY id LIMIT :limit"
            .into();
        assert_refused(
            s,
            "statement",
            "takes `:after` and `:limit` and no other parameter (`:kind`)",
        );
    }

    #[test]
    fn a_changes_binding_without_an_integer_source_is_refused() {
        let mut s = changes_spec();
        s.columns.remove("source");
        assert_refused(s, "columns", "needs `source = \"integer\"`");
        for kind in [
            ColumnType::Text,
            ColumnType::Real,
            ColumnType::Bool,
            ColumnType::List,
        ] {
            let mut s = changes_spec();
            s.columns.insert("source".into(), kind);
            assert_refused(s, "columns", "needs `source = \"integer\"`");
        }
    }

    #[test]
    fn a_changes_binding_with_no_data_column_is_refused() {
        let mut s = changes_spec();
        s.columns.retain(|name, _| name == "source");
        assert_refused(s, "columns", "a column beside `source`");
    }

    #[test]
    fn found_is_refused_with_changes() {
        assert_refused_with_field(changes_spec(), "changes", "found");
    }

    #[test]
    fn not_found_is_refused_with_changes() {
        assert_refused_with_field(changes_spec(), "changes", "not_found");
    }

    #[test]
    fn list_field_is_refused_with_changes() {
        assert_refused_with_field(changes_spec(), "changes", "list_field");
    }

    #[test]
    fn a_batch_table_is_refused_with_changes() {
        assert_refused_with_field(changes_spec(), "changes", "batch");
    }

    #[tokio::test]
    async fn a_changes_binding_answers_no_question_and_the_others_read_no_changes() {
        let a = SqlAdapter::new(changes_spec(), Path::new(".")).unwrap();
        let e = a.answer(&json!({})).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "backend error: a rows = \"changes\" binding gives the rows of an event contract's change table, not an answer to one question"
        );
        assert!(a.table().await.is_err());
        assert!(a.list().await.is_err());
        let mut one = changes_spec();
        one.rows = RowMode::One;
        one.statement = "SELECT country FROM placements WHERE nik = :nik".into();
        one.columns = [("country".to_owned(), ColumnType::Text)].into();
        one.not_found = Some(json!({"placed": false}));
        let one = SqlAdapter::new(one, Path::new(".")).unwrap();
        assert_eq!(one.change_fields(), None);
        let e = one.changes(0, 10).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "backend error: this binding reads no change table (it is not in rows = \"changes\" mode)"
        );
        // The trait's default, for an adapter that does not override it.
        let http = adapter_with_the_trait_defaults();
        assert_eq!(http.change_fields(), None);
        let e = http.changes(0, 10).await.unwrap_err();
        assert!(e.to_string().contains("reads no change table"), "{e}");
    }

    #[tokio::test]
    async fn a_changes_binding_reads_the_rows_after_the_last_one_from_a_sqlite_file() {
        let dir = tempfile::tempdir().unwrap();
        sqlite_file(
            dir.path(),
            &[
                "CREATE TABLE placement_changes (id INTEGER PRIMARY KEY AUTOINCREMENT, placement TEXT NOT NULL, change TEXT, changed_on TEXT NOT NULL)",
                "INSERT INTO placement_changes (placement, change, changed_on) VALUES \
                 ('84211', 'started', '2026-12-06'), ('84212', NULL, '2026-12-06'), ('84211', 'ended', '2026-12-07')",
            ],
        )
        .await;
        let a = SqlAdapter::new(changes_spec(), dir.path()).unwrap();
        let changes = a.changes(0, 100).await.unwrap();
        let data = |v: Value| -> Map<String, Value> { serde_json::from_value(v).unwrap() };
        assert_eq!(
            changes,
            [
                Change {
                    source: 1,
                    data: data(
                        json!({"placement": "84211", "change": "started", "on": "2026-12-06"})
                    ),
                },
                // A NULL column leaves its field out.
                Change {
                    source: 2,
                    data: data(json!({"placement": "84212", "on": "2026-12-06"})),
                },
                Change {
                    source: 3,
                    data: data(
                        json!({"placement": "84211", "change": "ended", "on": "2026-12-07"})
                    ),
                },
            ]
        );
        let sources = |c: Vec<Change>| c.iter().map(|c| c.source).collect::<Vec<_>>();
        assert_eq!(sources(a.changes(1, 100).await.unwrap()), [2, 3]);
        assert_eq!(sources(a.changes(0, 2).await.unwrap()), [1, 2]);
        assert_eq!(sources(a.changes(3, 100).await.unwrap()), Vec::<i64>::new());
        assert_eq!(sources(a.changes(0, 0).await.unwrap()), Vec::<i64>::new());
    }

    /// The changes `statement` gives after `after`, at most `limit` of them, with the data
    /// column `n` read as text.
    async fn changes(statement: &str, after: i64, limit: usize) -> Result<Vec<Change>, String> {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let sql: Arc<str> = statement.into();
        let data = [("n".to_owned(), ColumnType::Text)].into();
        fetch_changes::<sqlx::Sqlite>(&mut conn, &sql, &[], &data, after, limit)
            .await
            .map_err(|e| format!("database: {e}"))?
            .map_err(|e| e.to_string())
    }

    /// `rows` rows, `source` = `source_of_x` and `n` = `x` as text, x = 1…`rows`.
    fn counting(rows: u32, source_of_x: &str) -> String {
        format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) \
             SELECT {source_of_x} AS source, CAST(x AS TEXT) AS n FROM c"
        )
    }

    #[tokio::test]
    async fn exactly_the_limit_is_read_and_reading_stops_at_the_first_row_past_it() {
        let read = changes(&counting(3, "x * 10"), 0, 3).await.unwrap();
        assert_eq!(
            read.iter().map(|c| c.source).collect::<Vec<_>>(),
            [10, 20, 30]
        );
        // Row 500 on would fail the statement (abs of the smallest integer overflows): the
        // limit's error, not that one, shows the rest was never read.
        let statement = counting(
            1_000,
            "CASE WHEN x < 500 THEN x ELSE abs(-9223372036854775807 - 1) END",
        );
        let e = changes(&statement, 0, 3).await.unwrap_err();
        assert_eq!(
            e,
            "backend error: the statement returned more than 3 rows, the `:limit` it was given (end it with `LIMIT :limit`)"
        );
        let e = changes(&statement, 0, 1_000).await.unwrap_err();
        assert!(e.starts_with("database: "), "{e}");
    }

    #[tokio::test]
    async fn a_source_not_after_after_or_the_row_before_fails_naming_the_row() {
        let e = changes(&counting(3, "x"), 1, 10).await.unwrap_err();
        assert_eq!(
            e,
            "backend error: row 1: source 1 is not after `:after` (1): return only the rows after it (`WHERE id > :after`)"
        );
        let e = changes(&counting(3, "CASE x WHEN 3 THEN 2 ELSE x END"), 0, 10)
            .await
            .unwrap_err();
        assert!(
            e.starts_with(
                "backend error: row 3: source 2 is not after the row before it (2): return the rows in the order of `source`"
            ),
            "{e}"
        );
        let e = changes(&counting(2, "3 - x"), 0, 10).await.unwrap_err();
        assert!(
            e.starts_with("backend error: row 2: source 1 is not after the row before it (2)"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_null_or_non_integer_source_fails_naming_the_row() {
        let e = changes(&counting(2, "CASE x WHEN 2 THEN NULL ELSE x END"), 0, 10)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            "backend error: row 2: column `source` is NULL: every change needs its row's number"
        );
        let e = changes(&counting(1, "'one'"), 0, 10).await.unwrap_err();
        assert_eq!(
            e,
            "backend error: row 1: column `source`: its SQL type cannot be read as Integer"
        );
        let e = changes("SELECT 'a' AS n", 0, 10).await.unwrap_err();
        assert_eq!(
            e,
            "backend error: row 1: the statement returns no column `source`"
        );
    }

    #[tokio::test]
    async fn a_data_column_that_does_not_fit_fails_naming_the_row_and_its_source_not_the_value() {
        let e = changes("SELECT 7 AS source, 42 AS n", 0, 10)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            "backend error: row 1: source 7: column `n`: its SQL type cannot be read as Text"
        );
        let long = "7".repeat(MAX_CHANGE_BYTES);
        let e = changes(&format!("SELECT 7 AS source, '{long}' AS n"), 0, 10)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            "backend error: row 1: source 7: its data is over 8192 bytes, more than a signed event holds"
        );
        assert!(!e.contains("7777"), "{e}");
    }
}
