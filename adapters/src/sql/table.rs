//! The SQL adapter's table mode (`rows = "table"`): a statistics contract's aggregate — one
//! row per combination of the dimensions seen in the data, with its count — read whole by a
//! statement that takes no parameters, and checked row by row as it arrives.
//!
//! The adapter reads and checks the aggregate, nothing more: `contracts::statistics::answer`,
//! on the gateway's side, keeps the rows a question's filters select, adds them up and
//! applies the contract's disclosure rules.

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contracts::statistics::{AggregateRows, COUNT_COLUMN, MAX_AGGREGATE_ROWS, MAX_VALUE_CHARS};
use sqlx::{AssertSqlSafe, ColumnIndex, Database, Decode, Executor, IntoArguments, Row, Type};

use super::{
    ColumnType, Connection, SqlAdapter, SqlSpec, Unread, read_column, refuse_unread, try_as,
    try_integer,
};
use crate::statement::{Dialect, PreparedText, prepare};
use crate::{AdapterConfigError, AdapterError};

/// Checks a spec with `rows = "table"`: nothing set that only the other modes use, and its
/// columns — `count` an integer, at least one dimension, every dimension text. (`batch` is
/// refused with the other modes, in `SqlAdapter::new`; the statement in
/// [`prepare_aggregate`].)
pub(super) fn check(spec: &SqlSpec) -> Result<(), AdapterConfigError> {
    refuse_unread(
        spec,
        "table",
        Unread {
            found: "a statistics answer is made from the aggregate alone",
            not_found: "an aggregate with no rows counts nobody, and is answered from as it is",
            list_field: "the aggregate's rows are not an answer's list",
        },
    )?;
    if spec.columns.get(COUNT_COLUMN) != Some(&ColumnType::Integer) {
        return Err(AdapterConfigError::new(
            "columns",
            format!(
                "rows = \"table\" needs `{COUNT_COLUMN} = \"integer\"`: the number of people in each row"
            ),
        ));
    }
    if spec.columns.len() < 2 {
        return Err(AdapterConfigError::new(
            "columns",
            format!("rows = \"table\" needs a dimension column (\"text\") beside `{COUNT_COLUMN}`"),
        ));
    }
    if let Some(name) = spec
        .columns
        .iter()
        .find(|(name, kind)| *name != COUNT_COLUMN && **kind != ColumnType::Text)
        .map(|(name, _)| name)
    {
        return Err(AdapterConfigError::new(
            "columns",
            format!(
                "`{name}` is a dimension of the aggregate: its type must be \"text\" (convert it in the statement)"
            ),
        ));
    }
    Ok(())
}

/// The statement of a `rows = "table"` binding, which takes nothing from the question: the
/// gateway, not the statement, applies a question's filters to the whole aggregate.
pub(super) fn prepare_aggregate(
    statement: &str,
    dialect: Dialect,
) -> Result<PreparedText, AdapterConfigError> {
    let prepared = prepare(statement, dialect)?;
    if let Some(name) = prepared.params.first() {
        return Err(AdapterConfigError::new(
            "statement",
            format!(
                "a rows = \"table\" statement takes no parameters (`:{name}`): it returns the whole aggregate, and the gateway applies a question's filters to it"
            ),
        ));
    }
    Ok(prepared)
}

/// The dimensions of a table binding: its columns but `count`, sorted by name (the order
/// of `columns` as the adapter keeps it).
pub(super) fn dimensions(columns: &BTreeMap<String, ColumnType>) -> Vec<String> {
    columns
        .keys()
        .filter(|name| *name != COUNT_COLUMN)
        .cloned()
        .collect()
}

/// What [`crate::Adapter::answer`] gives for a table binding.
pub(super) fn not_a_question() -> AdapterError {
    AdapterError::Failed(
        "a rows = \"table\" binding gives a statistics contract's aggregate, not an answer to one question"
            .into(),
    )
}

impl SqlAdapter {
    /// Runs the statement and reads its rows into the aggregate, at most
    /// [`MAX_AGGREGATE_ROWS`] of them, each checked as it arrives.
    pub(super) async fn read_aggregate(&self) -> Result<AggregateRows, AdapterError> {
        let deadline = Instant::now() + Duration::from_millis(self.spec.timeout_ms);
        let dimensions = dimensions(&self.spec.columns);
        let (sql, dims, limit) = (&self.sql, dimensions.as_slice(), MAX_AGGREGATE_ROWS);
        let rows = match &mut self.connection(deadline).await? {
            Connection::Sqlite(c) => fetch_aggregate::<sqlx::Sqlite>(c, sql, dims, limit).await,
            Connection::Postgres(c) => fetch_aggregate::<sqlx::Postgres>(c, sql, dims, limit).await,
            Connection::MySql(c) => fetch_aggregate::<sqlx::MySql>(c, sql, dims, limit).await,
        }
        .map_err(|e| self.classify(e))??;
        Ok(AggregateRows { dimensions, rows })
    }
}

/// Runs the statement on any of the three backends and reads each row's dimensions (in the
/// order of `dimensions`) and count, stopping at the first row past `limit`: no row after it
/// is decoded. The outer error is the database's; the inner one a row that does not fit.
async fn fetch_aggregate<DB>(
    conn: &mut DB::Connection,
    sql: &Arc<str>,
    dimensions: &[String],
    limit: usize,
) -> Result<Result<Vec<(Vec<String>, u64)>, AdapterError>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    for<'r> i32: Decode<'r, DB> + Type<DB>,
    for<'r> i16: Decode<'r, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    // The statement text comes from the operator's configuration, fixed at start-up, and
    // binds nothing.
    let mut stream = sqlx::query::<DB>(AssertSqlSafe(Arc::clone(sql))).fetch(&mut *conn);
    let mut rows = Vec::new();
    while let Some(row) = poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        let row = row?;
        if rows.len() == limit {
            return Ok(Err(AdapterError::Failed(format!(
                "the aggregate has more than {limit} rows: a dimension is finer than statistics need (a date where a year was meant?)"
            ))));
        }
        match aggregate_row(&row, dimensions) {
            Ok(row) => rows.push(row),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(rows))
}

/// One row of the aggregate: its dimensions' values and its count. The errors name the
/// column, never a value: the message reaches the provider's log.
fn aggregate_row<R>(row: &R, dimensions: &[String]) -> Result<(Vec<String>, u64), AdapterError>
where
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i16: Decode<'r, R::Database> + Type<R::Database>,
    for<'a> &'a str: ColumnIndex<R>,
{
    let mut key = Vec::with_capacity(dimensions.len());
    for name in dimensions {
        let Some(value) = read_column(row, name, ColumnType::Text, try_as::<R, String>)? else {
            return Err(AdapterError::Failed(format!(
                "column `{name}` is NULL in a row: every row needs a value for each dimension (write COALESCE(…, 'unknown') in the statement)"
            )));
        };
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(AdapterError::Failed(format!(
                "column `{name}` has a value longer than {MAX_VALUE_CHARS} characters"
            )));
        }
        key.push(value);
    }
    let count = match read_column(row, COUNT_COLUMN, ColumnType::Integer, try_integer)? {
        Some(count) => u64::try_from(count).map_err(|_| {
            AdapterError::Failed(format!("column `{COUNT_COLUMN}` is negative in a row"))
        })?,
        None => {
            return Err(AdapterError::Failed(format!(
                "column `{COUNT_COLUMN}` is NULL in a row"
            )));
        }
    };
    Ok((key, count))
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
        adapter_with_the_trait_defaults, assert_refused, assert_refused_with_field,
    };

    fn table_spec() -> SqlSpec {
        serde_json::from_value(json!({
            "database": "t.db",
            "rows": "table",
            "statement": "SELECT country, occupation AS sector, COUNT(*) AS count FROM placements GROUP BY 1, 2",
            "columns": {"country": "text", "sector": "text", "count": "integer"},
        }))
        .unwrap()
    }

    #[test]
    fn a_table_binding_is_read_from_config_and_gives_its_dimensions_sorted() {
        let a = SqlAdapter::new(table_spec(), Path::new(".")).unwrap();
        assert_eq!(
            a.table_dimensions(),
            Some(vec!["country".to_owned(), "sector".to_owned()])
        );
        let toml_like = json!({
            "database": "t.db", "rows": "table", "statement": "SELECT 1",
            "columns": {"sex": "text", "count": "integer", "country": "text"},
        });
        let s: SqlSpec = serde_json::from_value(toml_like).unwrap();
        assert_eq!(s.rows, RowMode::Table);
        let a = SqlAdapter::new(s, Path::new(".")).unwrap();
        assert_eq!(
            a.table_dimensions(),
            Some(vec!["country".to_owned(), "sex".to_owned()])
        );
    }

    #[test]
    fn a_table_statement_with_a_parameter_is_refused() {
        let mut s = table_spec();
        s.statement = "SELECT country, occupation AS sector, COUNT(*) AS count FROM placements WHERE country = :country GROUP BY 1, 2".into();
        assert_refused(s, "statement", "takes no parameters (`:country`)");
    }

    #[test]
    fn a_table_binding_without_an_integer_count_column_is_refused() {
        let mut s = table_spec();
        s.columns.remove("count");
        assert_refused(s, "columns", "`count = \"integer\"`");
        let mut s = table_spec();
        s.columns.insert("count".into(), ColumnType::Real);
        assert_refused(s, "columns", "`count = \"integer\"`");
    }

    #[test]
    fn a_table_binding_without_a_dimension_is_refused() {
        let mut s = table_spec();
        s.columns.retain(|name, _| name == "count");
        assert_refused(s, "columns", "a dimension column");
    }

    #[test]
    fn a_dimension_that_is_not_text_is_refused() {
        for kind in [
            ColumnType::Integer,
            ColumnType::Real,
            ColumnType::Bool,
            ColumnType::List,
        ] {
            let mut s = table_spec();
            s.columns.insert("sector".into(), kind);
            assert_refused(s, "columns", "`sector` is a dimension of the aggregate");
        }
    }

    #[test]
    fn found_is_refused_with_table() {
        assert_refused_with_field(table_spec(), "table", "found");
    }

    #[test]
    fn not_found_is_refused_with_table() {
        assert_refused_with_field(table_spec(), "table", "not_found");
    }

    #[test]
    fn list_field_is_refused_with_table() {
        assert_refused_with_field(table_spec(), "table", "list_field");
    }

    #[test]
    fn a_batch_table_is_refused_with_table() {
        assert_refused_with_field(table_spec(), "table", "batch");
    }

    #[tokio::test]
    async fn a_table_binding_answers_no_question_and_the_others_give_no_table() {
        let a = SqlAdapter::new(table_spec(), Path::new(".")).unwrap();
        let e = a.answer(&json!({})).await.unwrap_err();
        assert!(matches!(e, AdapterError::Failed(_)), "{e:?}");
        let mut one = table_spec();
        one.rows = RowMode::One;
        one.statement = "SELECT country FROM placements WHERE nik = :nik".into();
        one.columns = [("country".to_owned(), ColumnType::Text)].into();
        one.not_found = Some(json!({"placed": false}));
        let one = SqlAdapter::new(one, Path::new(".")).unwrap();
        assert_eq!(one.table_dimensions(), None);
        let e = one.table().await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "backend error: this binding answers no statistics"
        );
        // The trait's default, for an adapter that does not override it.
        let http = adapter_with_the_trait_defaults();
        assert_eq!(http.table_dimensions(), None);
        let e = http.table().await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "backend error: this binding answers no statistics"
        );
    }

    /// The rows `statement` gives, read as the aggregate of dimension `n` with at most
    /// `limit` rows.
    async fn aggregate(statement: &str, limit: usize) -> Result<Vec<(Vec<String>, u64)>, String> {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let sql: Arc<str> = statement.into();
        fetch_aggregate::<sqlx::Sqlite>(&mut conn, &sql, &["n".to_owned()], limit)
            .await
            .map_err(|e| format!("database: {e}"))?
            .map_err(|e| e.to_string())
    }

    /// `rows` rows, `n` = 1…`rows` as text; `count` is `count_of_x` (SQL of `x`).
    fn counting(rows: u32, count_of_x: &str) -> String {
        format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) \
             SELECT CAST(x AS TEXT) AS n, {count_of_x} AS count FROM c"
        )
    }

    #[tokio::test]
    async fn an_aggregate_of_exactly_the_limit_is_read_whole() {
        let rows = aggregate(&counting(3, "x * 10"), 3).await.unwrap();
        assert_eq!(
            rows,
            [
                (vec!["1".to_owned()], 10),
                (vec!["2".to_owned()], 20),
                (vec!["3".to_owned()], 30)
            ]
        );
    }

    #[tokio::test]
    async fn reading_stops_at_the_first_row_past_the_limit() {
        // Row 500 on would fail the statement (abs of the smallest integer overflows): the
        // limit's error, not that one, shows the rest was never read.
        let statement = counting(
            1_000,
            "CASE WHEN x < 500 THEN 1 ELSE abs(-9223372036854775807 - 1) END",
        );
        let e = aggregate(&statement, 3).await.unwrap_err();
        assert!(e.contains("the aggregate has more than 3 rows"), "{e}");
        let e = aggregate(&statement, 1_000).await.unwrap_err();
        assert!(e.starts_with("database: "), "{e}");
    }

    #[tokio::test]
    async fn a_negative_or_null_count_fails_naming_the_column_not_the_value() {
        let e = aggregate(&counting(2, "x - 2"), 10).await.unwrap_err();
        assert_eq!(e, "backend error: column `count` is negative in a row");
        let e = aggregate(&counting(2, "NULL"), 10).await.unwrap_err();
        assert_eq!(e, "backend error: column `count` is NULL in a row");
        let e = aggregate(&counting(2, "'many'"), 10).await.unwrap_err();
        assert_eq!(
            e,
            "backend error: column `count`: its SQL type cannot be read as Integer"
        );
    }

    #[tokio::test]
    async fn a_null_or_too_long_dimension_fails_naming_the_column() {
        let e = aggregate("SELECT NULL AS n, 5 AS count", 10)
            .await
            .unwrap_err();
        assert!(
            e.starts_with("backend error: column `n` is NULL in a row") && e.contains("COALESCE"),
            "{e}"
        );
        let long = "x".repeat(MAX_VALUE_CHARS + 1);
        let e = aggregate(&format!("SELECT '{long}' AS n, 5 AS count"), 10)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            format!(
                "backend error: column `n` has a value longer than {MAX_VALUE_CHARS} characters"
            )
        );
        // Characters, not bytes: 128 two-byte characters are within the limit.
        let most = "é".repeat(MAX_VALUE_CHARS);
        let rows = aggregate(&format!("SELECT '{most}' AS n, 5 AS count"), 10)
            .await
            .unwrap();
        assert_eq!(rows, [(vec![most], 5)]);
        let e = aggregate("SELECT 7 AS n, 5 AS count", 10)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            "backend error: column `n`: its SQL type cannot be read as Text"
        );
        let e = aggregate("SELECT 5 AS count", 10).await.unwrap_err();
        assert_eq!(e, "backend error: the statement returns no column `n`");
    }
}
