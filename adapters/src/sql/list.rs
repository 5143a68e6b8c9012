//! The SQL adapter's list mode (`rows = "list"`): the people of an overlap count — one row per
//! person, its `identifier` and optionally its `label` — read whole by a statement that takes
//! no parameters, and checked row by row as it arrives.

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, ColumnIndex, Database, Decode, Executor, IntoArguments, Row, Type};

use super::{
    ColumnType, Connection, SqlAdapter, SqlSpec, Unread, read_column, refuse_unread, try_as,
};
use crate::statement::{Dialect, PreparedText, prepare};
use crate::{AdapterConfigError, AdapterError, ListRows, MAX_LIST_ROWS, MAX_LIST_VALUE_BYTES};

/// The column of each person's identifier.
const IDENTIFIER_COLUMN: &str = "identifier";
/// The optional column of each person's label.
const LABEL_COLUMN: &str = "label";

/// Checks a spec with `rows = "list"`: nothing set that only the other modes use, and its
/// columns — `identifier = "text"` and, optionally, `label = "text"`, nothing else. (`batch`
/// is refused with the other modes, in `SqlAdapter::new`; the statement in
/// [`prepare_whole`].)
pub(super) fn check(spec: &SqlSpec) -> Result<(), AdapterConfigError> {
    refuse_unread(
        spec,
        "list",
        Unread {
            found: "a list is its rows' identifiers and labels, nothing more",
            not_found: "a list with no rows is an empty list, and is read as it is",
            list_field: "the rows are the list itself, not a field of an answer",
        },
    )?;
    if let Some(name) = spec
        .columns
        .keys()
        .find(|name| *name != IDENTIFIER_COLUMN && *name != LABEL_COLUMN)
    {
        return Err(AdapterConfigError::new(
            "columns",
            format!(
                "`{name}` is not read with rows = \"list\": its columns are `{IDENTIFIER_COLUMN} = \"text\"` and, optionally, `{LABEL_COLUMN} = \"text\"` (leave `{name}` out)"
            ),
        ));
    }
    if spec.columns.get(IDENTIFIER_COLUMN) != Some(&ColumnType::Text) {
        return Err(AdapterConfigError::new(
            "columns",
            format!(
                "rows = \"list\" needs `{IDENTIFIER_COLUMN} = \"text\"`: each person's identifier (alias it in the statement, as text: `nik AS {IDENTIFIER_COLUMN}`)"
            ),
        ));
    }
    if spec
        .columns
        .get(LABEL_COLUMN)
        .is_some_and(|kind| *kind != ColumnType::Text)
    {
        return Err(AdapterConfigError::new(
            "columns",
            format!(
                "`{LABEL_COLUMN}` must be \"text\" with rows = \"list\" (convert it in the statement)"
            ),
        ));
    }
    Ok(())
}

/// The statement of a `rows = "list"` binding, which takes nothing from a question: it
/// returns the whole list.
pub(super) fn prepare_whole(
    statement: &str,
    dialect: Dialect,
) -> Result<PreparedText, AdapterConfigError> {
    let prepared = prepare(statement, dialect)?;
    if let Some(name) = prepared.params.first() {
        return Err(AdapterConfigError::new(
            "statement",
            format!(
                "a rows = \"list\" statement takes no parameters (`:{name}`): it returns the whole list, one row per person"
            ),
        ));
    }
    Ok(prepared)
}

/// Whether a list binding's rows carry a label.
pub(super) fn labelled(columns: &BTreeMap<String, ColumnType>) -> bool {
    columns.contains_key(LABEL_COLUMN)
}

/// What [`crate::Adapter::answer`] gives for a list binding.
pub(super) fn not_a_question() -> AdapterError {
    AdapterError::Failed(
        "a rows = \"list\" binding gives the list of an overlap count, not an answer to one question"
            .into(),
    )
}

impl SqlAdapter {
    /// Runs the statement and reads its rows into the list, at most [`MAX_LIST_ROWS`] of
    /// them, each checked as it arrives.
    pub(super) async fn read_list(&self) -> Result<ListRows, AdapterError> {
        let deadline = Instant::now() + Duration::from_millis(self.spec.timeout_ms);
        let (sql, labelled, limit) = (&self.sql, labelled(&self.spec.columns), MAX_LIST_ROWS);
        match &mut self.connection(deadline).await? {
            Connection::Sqlite(c) => fetch_list::<sqlx::Sqlite>(c, sql, labelled, limit).await,
            Connection::Postgres(c) => fetch_list::<sqlx::Postgres>(c, sql, labelled, limit).await,
            Connection::MySql(c) => fetch_list::<sqlx::MySql>(c, sql, labelled, limit).await,
        }
        .map_err(|e| self.classify(e))?
    }
}

/// Runs the statement on any of the three backends and reads each row's identifier (and
/// label, with `labelled`), stopping at the first row past `limit`: no row after it is
/// decoded. The outer error is the database's; the inner one a row that does not fit.
async fn fetch_list<DB>(
    conn: &mut DB::Connection,
    sql: &Arc<str>,
    labelled: bool,
    limit: usize,
) -> Result<Result<ListRows, AdapterError>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    // The statement text comes from the operator's configuration, fixed at start-up, and
    // binds nothing.
    let mut stream = sqlx::query::<DB>(AssertSqlSafe(Arc::clone(sql))).fetch(&mut *conn);
    let mut list = ListRows {
        identifiers: Vec::new(),
        labels: labelled.then(Vec::new),
    };
    while let Some(row) = poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        let row = row?;
        if list.identifiers.len() == limit {
            return Ok(Err(AdapterError::Failed(format!(
                "the list has more than {limit} rows, the most an overlap count reads"
            ))));
        }
        let number = list.identifiers.len() + 1;
        match list_value(&row, IDENTIFIER_COLUMN, number) {
            Ok(identifier) => list.identifiers.push(identifier),
            Err(e) => return Ok(Err(e)),
        }
        if let Some(labels) = &mut list.labels {
            match list_value(&row, LABEL_COLUMN, number) {
                Ok(label) => labels.push(label),
                Err(e) => return Ok(Err(e)),
            }
        }
    }
    Ok(Ok(list))
}

/// Column `column` of row `number` (counted from 1): text, not NULL, at most
/// [`MAX_LIST_VALUE_BYTES`] bytes. The errors name the row and the column, never a value:
/// the message reaches the log.
fn list_value<R>(row: &R, column: &str, number: usize) -> Result<String, AdapterError>
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'a> &'a str: ColumnIndex<R>,
{
    let in_row = |why: String| AdapterError::Failed(format!("row {number}: {why}"));
    let value = match read_column(row, column, ColumnType::Text, try_as::<R, String>) {
        Ok(Some(value)) => value,
        Ok(None) => {
            let fix = if column == IDENTIFIER_COLUMN {
                "every row needs an identifier (leave such rows out in the statement: `WHERE nik IS NOT NULL`)"
            } else {
                "every row needs a label (write COALESCE(…, 'unknown') in the statement)"
            };
            return Err(in_row(format!("column `{column}` is NULL: {fix}")));
        }
        Err(AdapterError::Failed(why)) => return Err(in_row(why)),
        Err(e) => return Err(e),
    };
    if value.len() > MAX_LIST_VALUE_BYTES {
        return Err(in_row(format!(
            "column `{column}` has a value longer than {MAX_LIST_VALUE_BYTES} bytes"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;
    use sqlx::{Connection as _, SqliteConnection};

    use super::*;
    use crate::Adapter;
    use crate::sql::RowMode;
    use crate::sql::test_support::{
        adapter_with_the_trait_defaults, assert_refused, assert_refused_with_field, sqlite_file,
    };

    fn list_spec() -> SqlSpec {
        serde_json::from_value(json!({
            "database": "t.db",
            "rows": "list",
            "statement": "SELECT nik AS identifier, region AS label FROM selfreports",
            "columns": {"identifier": "text", "label": "text"},
        }))
        .unwrap()
    }

    #[test]
    fn a_list_binding_is_read_from_config_and_says_whether_it_is_labelled() {
        let s = list_spec();
        assert_eq!(s.rows, RowMode::List);
        let a = SqlAdapter::new(s, Path::new(".")).unwrap();
        assert_eq!(a.list_labelled(), Some(true));
        assert_eq!(a.table_dimensions(), None);
        let mut s = list_spec();
        s.columns.remove("label");
        s.statement = "SELECT nik AS identifier FROM selfreports".into();
        let a = SqlAdapter::new(s, Path::new(".")).unwrap();
        assert_eq!(a.list_labelled(), Some(false));
    }

    #[test]
    fn a_list_statement_with_a_parameter_is_refused() {
        let mut s = list_spec();
        s.statement =
            "SELECT nik AS identifier, region AS label FROM selfreports WHERE region = :region"
                .into();
        assert_refused(
            s,
            "statement",
            "a rows = \"list\" statement takes no parameters (`:region`): it returns the whole list",
        );
    }

    #[test]
    fn a_column_other_than_identifier_and_label_is_refused() {
        let mut s = list_spec();
        s.columns.insert("province".into(), ColumnType::Text);
        assert_refused(
            s,
            "columns",
            "`province` is not read with rows = \"list\": its columns are `identifier = \"text\"` and, optionally, `label = \"text\"` (leave `province` out)",
        );
    }

    #[test]
    fn a_list_binding_without_a_text_identifier_is_refused() {
        let mut s = list_spec();
        s.columns.remove("identifier");
        assert_refused(
            s,
            "columns",
            "rows = \"list\" needs `identifier = \"text\"`: each person's identifier (alias it in the statement, as text: `nik AS identifier`)",
        );
        for kind in [
            ColumnType::Integer,
            ColumnType::Real,
            ColumnType::Bool,
            ColumnType::List,
        ] {
            let mut s = list_spec();
            s.columns.insert("identifier".into(), kind);
            assert_refused(s, "columns", "needs `identifier = \"text\"`");
        }
    }

    #[test]
    fn a_label_that_is_not_text_is_refused() {
        let mut s = list_spec();
        s.columns.insert("label".into(), ColumnType::Integer);
        assert_refused(
            s,
            "columns",
            "`label` must be \"text\" with rows = \"list\" (convert it in the statement)",
        );
    }

    #[test]
    fn found_is_refused_with_list() {
        assert_refused_with_field(list_spec(), "list", "found");
    }

    #[test]
    fn not_found_is_refused_with_list() {
        assert_refused_with_field(list_spec(), "list", "not_found");
    }

    #[test]
    fn list_field_is_refused_with_list() {
        assert_refused_with_field(list_spec(), "list", "list_field");
    }

    #[test]
    fn a_batch_table_is_refused_with_list() {
        assert_refused_with_field(list_spec(), "list", "batch");
    }

    #[tokio::test]
    async fn a_list_binding_answers_no_question_and_the_others_give_no_list() {
        let a = SqlAdapter::new(list_spec(), Path::new(".")).unwrap();
        let e = a.answer(&json!({})).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "backend error: a rows = \"list\" binding gives the list of an overlap count, not an answer to one question"
        );
        let e = a.table().await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "backend error: this binding answers no statistics"
        );
        let mut table = list_spec();
        table.rows = RowMode::Table;
        table.statement = "SELECT region, COUNT(*) AS count FROM selfreports GROUP BY 1".into();
        table.columns = [
            ("region".to_owned(), ColumnType::Text),
            ("count".to_owned(), ColumnType::Integer),
        ]
        .into();
        let table = SqlAdapter::new(table, Path::new(".")).unwrap();
        assert_eq!(table.list_labelled(), None);
        let e = table.list().await.unwrap_err();
        assert_eq!(e.to_string(), "backend error: this binding gives no list");
        // The trait's default, for an adapter that does not override it.
        let http = adapter_with_the_trait_defaults();
        assert_eq!(http.list_labelled(), None);
        let e = http.list().await.unwrap_err();
        assert_eq!(e.to_string(), "backend error: this binding gives no list");
    }

    #[tokio::test]
    async fn a_list_binding_reads_its_rows_from_a_sqlite_file() {
        let dir = tempfile::tempdir().unwrap();
        sqlite_file(
            dir.path(),
            &[
                "CREATE TABLE selfreports (id INTEGER PRIMARY KEY, nik TEXT, region TEXT)",
                "INSERT INTO selfreports VALUES (1, '3171011701900001', 'Jakarta'), (2, '3273012505850003', 'Bandung'), (3, '3171011701900001', 'Jakarta')",
            ],
        )
        .await;
        let mut s = list_spec();
        s.statement =
            "SELECT nik AS identifier, region AS label FROM selfreports ORDER BY id".into();
        let a = SqlAdapter::new(s.clone(), dir.path()).unwrap();
        let list = a.list().await.unwrap();
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let identifiers = owned(&["3171011701900001", "3273012505850003", "3171011701900001"]);
        assert_eq!(
            list,
            ListRows {
                identifiers: identifiers.clone(),
                labels: Some(owned(&["Jakarta", "Bandung", "Jakarta"])),
            }
        );
        s.statement = "SELECT nik AS identifier FROM selfreports ORDER BY id".into();
        s.columns.remove("label");
        let a = SqlAdapter::new(s, dir.path()).unwrap();
        assert_eq!(
            a.list().await.unwrap(),
            ListRows {
                identifiers,
                labels: None
            }
        );
    }

    /// The list `statement` gives, with labels when `labelled`, of at most `limit` rows.
    async fn list(statement: &str, labelled: bool, limit: usize) -> Result<ListRows, String> {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let sql: Arc<str> = statement.into();
        fetch_list::<sqlx::Sqlite>(&mut conn, &sql, labelled, limit)
            .await
            .map_err(|e| format!("database: {e}"))?
            .map_err(|e| e.to_string())
    }

    /// `rows` rows, `identifier` = 1…`rows` as text; `label` is `label_of_x` (SQL of `x`).
    fn counting(rows: u32, label_of_x: &str) -> String {
        format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) \
             SELECT CAST(x AS TEXT) AS identifier, {label_of_x} AS label FROM c"
        )
    }

    fn texts(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[tokio::test]
    async fn identifiers_are_read_in_order_with_duplicates_kept() {
        let statement = "SELECT identifier FROM (SELECT 'b' AS identifier, 1 AS o UNION ALL \
             SELECT 'a', 2 UNION ALL SELECT 'b', 3) ORDER BY o";
        let rows = list(statement, false, 10).await.unwrap();
        assert_eq!(
            rows,
            ListRows {
                identifiers: texts(&["b", "a", "b"]),
                labels: None
            }
        );
        // An unlabelled binding reads no label, whatever the statement returns.
        let rows = list(&counting(2, "NULL"), false, 10).await.unwrap();
        assert_eq!(rows.labels, None);
    }

    #[tokio::test]
    async fn labels_are_read_beside_their_identifiers() {
        let rows = list(
            &counting(3, "CASE x WHEN 2 THEN 'odd' ELSE 'even' END"),
            true,
            10,
        )
        .await
        .unwrap();
        assert_eq!(
            rows,
            ListRows {
                identifiers: texts(&["1", "2", "3"]),
                labels: Some(texts(&["even", "odd", "even"])),
            }
        );
    }

    #[tokio::test]
    async fn a_list_with_no_rows_is_empty() {
        let rows = list("SELECT 'a' AS identifier, 'l' AS label WHERE 0", true, 10)
            .await
            .unwrap();
        assert_eq!(
            rows,
            ListRows {
                identifiers: vec![],
                labels: Some(vec![])
            }
        );
    }

    #[tokio::test]
    async fn a_list_of_exactly_the_limit_is_read_whole() {
        let rows = list(&counting(3, "'l'"), true, 3).await.unwrap();
        assert_eq!(rows.identifiers, texts(&["1", "2", "3"]));
    }

    #[tokio::test]
    async fn reading_stops_at_the_first_row_past_the_limit() {
        // Row 500 on would fail the statement (abs of the smallest integer overflows): the
        // limit's error, not that one, shows the rest was never read.
        let statement = counting(
            1_000,
            "CASE WHEN x < 500 THEN 'l' ELSE abs(-9223372036854775807 - 1) END",
        );
        let e = list(&statement, true, 3).await.unwrap_err();
        assert_eq!(
            e,
            "backend error: the list has more than 3 rows, the most an overlap count reads"
        );
        let e = list(&statement, true, 1_000).await.unwrap_err();
        assert!(e.starts_with("database: "), "{e}");
    }

    #[tokio::test]
    async fn a_null_identifier_or_label_fails_naming_the_row_and_column() {
        let e = list("SELECT 'a' AS identifier UNION ALL SELECT NULL", false, 10)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            "backend error: row 2: column `identifier` is NULL: every row needs an identifier \
             (leave such rows out in the statement: `WHERE nik IS NOT NULL`)"
        );
        let e = list(
            &counting(3, "CASE WHEN x = 3 THEN NULL ELSE 'l' END"),
            true,
            10,
        )
        .await
        .unwrap_err();
        assert_eq!(
            e,
            "backend error: row 3: column `label` is NULL: every row needs a label \
             (write COALESCE(…, 'unknown') in the statement)"
        );
    }

    #[tokio::test]
    async fn a_value_longer_than_256_bytes_fails_naming_the_row_and_column_not_the_value() {
        let long = "7".repeat(MAX_LIST_VALUE_BYTES + 1);
        let e = list(&format!("SELECT '{long}' AS identifier"), false, 10)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            "backend error: row 1: column `identifier` has a value longer than 256 bytes"
        );
        assert!(!e.contains("7777"), "{e}");
        // Bytes, not characters: 128 two-byte characters are the most a label may have.
        let most = "é".repeat(MAX_LIST_VALUE_BYTES / 2);
        let rows = list(
            &format!("SELECT 'a' AS identifier, '{most}' AS label"),
            true,
            10,
        )
        .await
        .unwrap();
        assert_eq!(rows.labels, Some(vec![most.clone()]));
        let e = list(
            &format!("SELECT 'a' AS identifier, 'l' AS label UNION ALL SELECT 'b', '{most}é'"),
            true,
            10,
        )
        .await
        .unwrap_err();
        assert_eq!(
            e,
            "backend error: row 2: column `label` has a value longer than 256 bytes"
        );
    }

    #[tokio::test]
    async fn a_column_that_is_not_text_or_is_missing_fails_naming_the_row_and_column() {
        let e = list("SELECT 3171011701900001 AS identifier", false, 10)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            "backend error: row 1: column `identifier`: its SQL type cannot be read as Text"
        );
        let e = list("SELECT 'a' AS identifier", true, 10)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            "backend error: row 1: the statement returns no column `label`"
        );
    }
}
