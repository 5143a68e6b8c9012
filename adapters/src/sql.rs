//! The SQL adapter: one parameterised statement per contract, and a mapping from the row to
//! the contract's answer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Column, Row};

use crate::statement::{PreparedText, prepare};
use crate::{Adapter, AdapterConfigError, AdapterError, AnswerFuture};

/// How many rows make an answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowMode {
    /// The first row is the answer; none gives `not_found`.
    #[default]
    One,
    /// Every row is one element of the list named by `list_field`.
    Many,
}

/// How a column's value becomes JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// A string.
    Text,
    /// An integer.
    Integer,
    /// A floating-point number.
    Real,
    /// A boolean (0/1 in SQLite).
    Bool,
    /// Comma-separated text, as an array of strings (empty text gives `[]`).
    List,
}

fn default_timeout_ms() -> u64 {
    2_000
}

fn default_pool_size() -> u32 {
    4
}

/// A contract bound to a SQL statement (the `sql` table of a binding in `config.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlSpec {
    /// The SQLite database file, relative to the configuration's directory.
    pub database: String,
    /// One statement with named parameters (`:nik`) taken from the query's top-level fields.
    pub statement: String,
    /// One row or many.
    #[serde(default)]
    pub rows: RowMode,
    /// Answer field ← column of the same name, with its type. Alias columns in the statement
    /// (`SELECT x AS field`) to name them. A NULL column leaves its field out.
    pub columns: BTreeMap<String, ColumnType>,
    /// Constant fields added to the answer when a row is found (`{ registered = true }`).
    #[serde(default)]
    pub found: Map<String, Value>,
    /// The whole answer when no row is found.
    #[serde(default)]
    pub not_found: Option<Value>,
    /// With `rows = "many"`: the answer field holding the list of rows.
    #[serde(default)]
    pub list_field: Option<String>,
    /// Deadline for one answer, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Connections kept to the database.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
}

/// A [`SqlSpec`] ready to answer: statement prepared, pool opened lazily.
#[derive(Debug)]
pub struct SqlAdapter {
    spec: SqlSpec,
    prepared: PreparedText,
    sql: std::sync::Arc<str>,
    pool: SqlitePool,
    path: PathBuf,
}

impl SqlAdapter {
    /// Checks the spec and prepares the adapter. The database is opened on first use, so a
    /// gateway starts (and answers 503 for this contract) while a database is missing.
    pub fn new(spec: SqlSpec, base_dir: &Path) -> Result<Self, AdapterConfigError> {
        let prepared = prepare(&spec.statement)?;
        if spec.columns.is_empty() {
            return Err(AdapterConfigError::new(
                "columns",
                "map at least one column to an answer field",
            ));
        }
        match (spec.rows, &spec.list_field) {
            (RowMode::Many, None) => {
                return Err(AdapterConfigError::new(
                    "list_field",
                    "required when rows = \"many\"",
                ));
            }
            (RowMode::One, Some(_)) => {
                return Err(AdapterConfigError::new(
                    "list_field",
                    "only with rows = \"many\"",
                ));
            }
            _ => {}
        }
        if spec.rows == RowMode::One && spec.not_found.is_none() {
            return Err(AdapterConfigError::new(
                "not_found",
                "required with rows = \"one\": the answer when no row matches",
            ));
        }
        if let Some(nf) = &spec.not_found
            && !nf.is_object()
        {
            return Err(AdapterConfigError::new(
                "not_found",
                "must be a table (a JSON object)",
            ));
        }
        if spec.timeout_ms == 0 || spec.pool_size == 0 {
            return Err(AdapterConfigError::new(
                "timeout_ms/pool_size",
                "must be at least 1",
            ));
        }
        let path = base_dir.join(&spec.database);
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|e| AdapterConfigError::new("database", e.to_string()))?
            .filename(&path)
            .read_only(true)
            .create_if_missing(false)
            .busy_timeout(Duration::from_millis(spec.timeout_ms));
        let pool = SqlitePoolOptions::new()
            .max_connections(spec.pool_size)
            .acquire_timeout(Duration::from_millis(spec.timeout_ms))
            .connect_lazy_with(options);
        Ok(SqlAdapter {
            spec,
            sql: prepared.sql.as_str().into(),
            prepared,
            pool,
            path,
        })
    }

    /// The database file this adapter reads.
    pub fn database_path(&self) -> &Path {
        &self.path
    }

    async fn run(&self, query: &Value) -> Result<Value, AdapterError> {
        // The statement text comes from the operator's configuration, fixed at start-up; the
        // request only ever supplies bound values.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.sql.clone()));
        for name in &self.prepared.params {
            q = match query.get(name) {
                None | Some(Value::Null) => q.bind(None::<String>),
                Some(Value::String(s)) => q.bind(s.clone()),
                Some(Value::Bool(b)) => q.bind(*b),
                Some(Value::Number(n)) if n.is_i64() => q.bind(n.as_i64()),
                Some(Value::Number(n)) => q.bind(n.as_f64()),
                Some(_) => {
                    return Err(AdapterError::Failed(format!(
                        "query field `{name}` is not a scalar and cannot be bound"
                    )));
                }
            };
        }
        let mut answer = Map::new();
        match self.spec.rows {
            RowMode::One => match q.fetch_optional(&self.pool).await.map_err(classify)? {
                None => return Ok(self.spec.not_found.clone().unwrap_or(Value::Null)),
                Some(row) => {
                    answer.extend(self.spec.found.clone());
                    answer.extend(self.map_row(&row)?);
                }
            },
            RowMode::Many => {
                let rows = q.fetch_all(&self.pool).await.map_err(classify)?;
                if rows.is_empty()
                    && let Some(nf) = &self.spec.not_found
                {
                    return Ok(nf.clone());
                }
                let list = rows
                    .iter()
                    .map(|r| self.map_row(r).map(Value::Object))
                    .collect::<Result<Vec<_>, _>>()?;
                answer.extend(self.spec.found.clone());
                let field = self.spec.list_field.clone().unwrap_or_default();
                answer.insert(field, Value::Array(list));
            }
        }
        Ok(Value::Object(answer))
    }

    fn map_row(&self, row: &SqliteRow) -> Result<Map<String, Value>, AdapterError> {
        let mut out = Map::new();
        for (field, ty) in &self.spec.columns {
            if !row.columns().iter().any(|c| c.name() == field) {
                return Err(AdapterError::Failed(format!(
                    "the statement returns no column `{field}`"
                )));
            }
            let bad = |e: sqlx::Error| AdapterError::Failed(format!("column `{field}`: {e}"));
            let value = match ty {
                ColumnType::Text => row
                    .try_get::<Option<String>, _>(field.as_str())
                    .map_err(bad)?
                    .map(Value::from),
                ColumnType::Integer => row
                    .try_get::<Option<i64>, _>(field.as_str())
                    .map_err(bad)?
                    .map(Value::from),
                ColumnType::Real => row
                    .try_get::<Option<f64>, _>(field.as_str())
                    .map_err(bad)?
                    .map(Value::from),
                ColumnType::Bool => row
                    .try_get::<Option<bool>, _>(field.as_str())
                    .map_err(bad)?
                    .map(Value::from),
                ColumnType::List => row
                    .try_get::<Option<String>, _>(field.as_str())
                    .map_err(bad)?
                    .map(|s| {
                        Value::Array(
                            s.split(',')
                                .map(str::trim)
                                .filter(|p| !p.is_empty())
                                .map(Value::from)
                                .collect(),
                        )
                    }),
            };
            if let Some(v) = value {
                out.insert(field.clone(), v);
            }
        }
        Ok(out)
    }
}

/// Connection-level failures are the backend being unavailable; anything else is an error
/// in what the backend answered.
fn classify(e: sqlx::Error) -> AdapterError {
    match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_) => AdapterError::Unavailable(e.to_string()),
        sqlx::Error::Database(db)
            if matches!(
                db.code().as_deref(),
                Some("14") | Some("5") | Some("6") | Some("26")
            ) =>
        {
            // SQLITE_CANTOPEN, SQLITE_BUSY, SQLITE_LOCKED, SQLITE_NOTADB
            AdapterError::Unavailable(e.to_string())
        }
        _ => AdapterError::Failed(e.to_string()),
    }
}

impl Adapter for SqlAdapter {
    fn answer<'a>(&'a self, query: &'a Value) -> AnswerFuture<'a> {
        Box::pin(async move {
            let deadline = Duration::from_millis(self.spec.timeout_ms);
            match tokio::time::timeout(deadline, self.run(query)).await {
                Ok(result) => result,
                Err(_) => Err(AdapterError::Timeout(self.spec.timeout_ms)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn make_db(dir: &Path) {
        let opts = SqliteConnectOptions::new()
            .filename(dir.join("t.db"))
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(opts).await.unwrap();
        for sql in [
            "CREATE TABLE people (nik TEXT PRIMARY KEY, citizenship TEXT, deceased INTEGER, programs TEXT, note TEXT)",
            "INSERT INTO people VALUES ('3171011701900001', 'WNI', 0, 'JKK,JKM', NULL)",
            "INSERT INTO people VALUES ('3171015701900002', 'WNA', 1, '', 'x')",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }

    fn spec() -> SqlSpec {
        serde_json::from_value(json!({
            "database": "t.db",
            "statement": "SELECT citizenship, deceased, programs, note FROM people WHERE nik = :nik",
            "columns": {"citizenship": "text", "deceased": "bool", "programs": "list", "note": "text"},
            "found": {"registered": true},
            "not_found": {"registered": false, "citizenship": "unknown", "deceased": false}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_row_maps_to_the_answer_and_null_columns_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        make_db(dir.path()).await;
        let a = SqlAdapter::new(spec(), dir.path()).unwrap();
        assert_eq!(
            a.answer(&json!({"nik": "3171011701900001"})).await.unwrap(),
            json!({"registered": true, "citizenship": "WNI", "deceased": false, "programs": ["JKK", "JKM"]})
        );
        assert_eq!(
            a.answer(&json!({"nik": "3171015701900002"})).await.unwrap(),
            json!({"registered": true, "citizenship": "WNA", "deceased": true, "programs": [], "note": "x"})
        );
    }

    #[tokio::test]
    async fn no_row_gives_not_found_and_injection_is_just_a_value() {
        let dir = tempfile::tempdir().unwrap();
        make_db(dir.path()).await;
        let a = SqlAdapter::new(spec(), dir.path()).unwrap();
        for nik in [
            "9999999999999999",
            "' OR '1'='1",
            "x'; DROP TABLE people; --",
            "3171011701900001' --",
        ] {
            assert_eq!(
                a.answer(&json!({ "nik": nik })).await.unwrap()["registered"],
                json!(false),
                "{nik}"
            );
        }
        // The table is still there.
        assert_eq!(
            a.answer(&json!({"nik": "3171011701900001"})).await.unwrap()["registered"],
            json!(true)
        );
    }

    #[tokio::test]
    async fn many_rows_make_a_list() {
        let dir = tempfile::tempdir().unwrap();
        make_db(dir.path()).await;
        let mut s = spec();
        s.statement = "SELECT citizenship FROM people ORDER BY nik".into();
        s.rows = RowMode::Many;
        s.list_field = Some("people".into());
        s.columns = [("citizenship".to_owned(), ColumnType::Text)].into();
        s.found = Map::new();
        s.not_found = None;
        let a = SqlAdapter::new(s, dir.path()).unwrap();
        assert_eq!(
            a.answer(&json!({})).await.unwrap(),
            json!({"people": [{"citizenship": "WNI"}, {"citizenship": "WNA"}]})
        );
    }

    #[tokio::test]
    async fn missing_database_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let a = SqlAdapter::new(spec(), dir.path()).unwrap();
        let err = a
            .answer(&json!({"nik": "3171011701900001"}))
            .await
            .unwrap_err();
        assert!(matches!(err, AdapterError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn slow_statement_times_out() {
        let dir = tempfile::tempdir().unwrap();
        make_db(dir.path()).await;
        let mut s = spec();
        s.statement = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) \
                       SELECT count(*) AS citizenship, 0 AS deceased, '' AS programs, NULL AS note FROM c WHERE :nik IS NOT NULL"
            .into();
        s.timeout_ms = 100;
        let a = SqlAdapter::new(s, dir.path()).unwrap();
        let err = a.answer(&json!({"nik": "1"})).await.unwrap_err();
        assert!(matches!(err, AdapterError::Timeout(100)), "{err:?}");
    }

    #[test]
    fn bad_bindings_name_their_field() {
        let dir = Path::new(".");
        let mut s = spec();
        s.not_found = None;
        assert_eq!(SqlAdapter::new(s, dir).unwrap_err().field, "not_found");
        let mut s = spec();
        s.rows = RowMode::Many;
        assert_eq!(SqlAdapter::new(s, dir).unwrap_err().field, "list_field");
        let mut s = spec();
        s.statement = "SELECT * FROM people WHERE nik = ?".into();
        assert_eq!(SqlAdapter::new(s, dir).unwrap_err().field, "statement");
    }
}
