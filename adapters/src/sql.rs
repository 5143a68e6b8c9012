//! The SQL adapter: one parameterised statement per contract, and a mapping from the row to
//! the contract's answer, on SQLite, PostgreSQL or MySQL/MariaDB.
//!
//! The three backends share one code path for binding, running and mapping: a generic
//! function over sqlx's `Database` ([`fetch_rows`]). One exception: a SQLite binding's
//! lookups (`rows = "one"` and `"many"`, an exchange's cache miss) run on the answering
//! thread through rusqlite (`sql/sqlite.rs`), since sqlx hands every SQLite statement to a
//! thread of its own; a test holds its mapping to this one's. It is generic rather than built on
//! `sqlx::Any` because `Any` converts every value to its own small set of kinds before we
//! see it (losing, for instance, MySQL's `TINYINT` ↔ bool and PostgreSQL's `INT4` ↔ `INT8`
//! distinctions we want to map explicitly), needs a process-wide driver registry, and hides
//! the typed connect options this module uses for statement timeouts, schemas and TLS. What
//! really differs per backend — connect options, placeholders, which error codes mean
//! "unavailable" or "timed out" — is small and explicit below. The batch mode, which looks
//! many keys up with a few statements, is in `sql/batch.rs`; the table mode, which reads a
//! statistics contract's aggregate, in `sql/table.rs`; the list mode, which reads the
//! identifiers of an overlap count, in `sql/list.rs`; the changes mode, which reads the rows
//! of an event contract's change table, in `sql/changes.rs`.

mod batch;
mod changes;
mod list;
mod sqlite;
mod table;
#[cfg(test)]
mod test_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPoolOptions, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{
    AssertSqlSafe, Column, ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool,
    Row, SqlSafeStr, Statement, Type, TypeInfo, ValueRef,
};

use crate::statement::{Dialect, PreparedText, prepare, prepare_list};
use crate::{
    Adapter, AdapterConfigError, AdapterError, AnswerFuture, ChangesFuture, CheckFuture,
    ListFuture, TableFuture, resolve_env,
};
use sqlite::SqliteLookups;

pub use batch::{BatchAnswer, MAX_CHUNK, SqlBatch};

/// How many rows make an answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowMode {
    /// The first row is the answer; none gives `not_found`.
    #[default]
    One,
    /// Every row is one element of the list named by `list_field`.
    Many,
    /// The query holds a list of items; their keys are looked up together, in chunks, and
    /// each item is answered by a rule from its row (the `batch` table).
    Batch,
    /// The statement, which takes no parameters, returns a statistics contract's aggregate:
    /// a `count` column and text dimension columns, one row per combination of the
    /// dimensions, read whole by [`Adapter::table`].
    Table,
    /// The statement, which takes no parameters, returns the people of an overlap count: an
    /// `identifier` text column and optionally a `label` text column, one row per person,
    /// read whole by [`Adapter::list`].
    List,
    /// The statement, which takes exactly `:after` and `:limit`, returns the rows of an event
    /// contract's change table after row `:after`: an `integer` column `source` and the
    /// fields of each event's data, at most `:limit` rows in the order of `source`, read by
    /// [`Adapter::changes`].
    Changes,
}

/// How a column's value becomes JSON. The same JSON on every backend: the decoder accepts
/// each backend's usual column types for the kind (see docs/ADAPTERS.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// A string (TEXT, VARCHAR, CHAR).
    Text,
    /// An integer (any signed integer column: 16, 32 or 64 bits).
    Integer,
    /// A floating-point number (REAL, DOUBLE, FLOAT4/8).
    Real,
    /// A boolean: a BOOLEAN column, or an integer column where non-zero is true (SQLite's
    /// 0/1, MySQL's `TINYINT(1)`).
    Bool,
    /// Comma-separated text, as an array of strings (empty text gives `[]`).
    List,
}

/// TLS to the database server (PostgreSQL and MySQL/MariaDB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DatabaseTls {
    /// Encrypt, but do not check the server's certificate (it only stops passive listeners).
    #[serde(rename = "require")]
    Require,
    /// Encrypt, check the certificate against the web PKI roots or `ca_file`, and check that
    /// it names the host in the URL.
    #[serde(rename = "verify-full")]
    VerifyFull,
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
    /// Where the data is: a SQLite file (relative to the configuration's directory), a
    /// `postgres://…` or `mysql://…` / `mariadb://…` URL, or `env:NAME` to read either from
    /// the environment variable `NAME` (so passwords stay out of `config.toml`).
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
    /// With `rows = "batch"`: where the items are, what they are looked up by, and the rule
    /// that answers each.
    #[serde(default)]
    pub batch: Option<SqlBatch>,
    /// Deadline for one answer, in milliseconds. On PostgreSQL and MySQL/MariaDB it is also
    /// the server-side statement timeout, so a statement that overruns is cancelled there.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Connections kept to the database.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// PostgreSQL: the schema unqualified table names resolve in (`search_path`);
    /// MySQL/MariaDB: the database used. Not for SQLite.
    #[serde(default)]
    pub schema: Option<String>,
    /// TLS to the database server; without it, the URL's own `sslmode`/`ssl-mode` (or the
    /// driver's default, which tries TLS and falls back to plain).
    #[serde(default)]
    pub tls: Option<DatabaseTls>,
    /// A PEM file of CA certificates to verify the server with (relative to the
    /// configuration's directory), instead of the web PKI roots.
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// Which database engine a binding talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlBackend {
    /// An SQLite file, opened read-only.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
    /// A MySQL or MariaDB server.
    MySql,
}

/// Connect options, resolved and checked at start-up; the pool itself is opened on first
/// use (opening one needs the async runtime, and validating a configuration must not).
#[derive(Clone, Debug)]
enum Target {
    Sqlite(SqliteConnectOptions),
    Postgres(PgConnectOptions),
    MySql(MySqlConnectOptions),
}

#[derive(Debug)]
enum Pools {
    Sqlite(Pool<sqlx::Sqlite>),
    Postgres(Pool<sqlx::Postgres>),
    MySql(Pool<sqlx::MySql>),
}

/// A connection taken from the pool for one answer, however many statements it runs.
enum Connection {
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
    MySql(sqlx::pool::PoolConnection<sqlx::MySql>),
}

/// A [`SqlSpec`] ready to answer: statement prepared, pool opened lazily.
#[derive(Debug)]
pub struct SqlAdapter {
    spec: SqlSpec,
    prepared: PreparedText,
    sql: Arc<str>,
    target: Target,
    pool: OnceLock<Pools>,
    /// A SQLite binding's lookups (`rows = "one"` and `"many"`), on the answering thread.
    sqlite: Option<Arc<SqliteLookups>>,
}

/// A query value, converted once to something every backend binds the same way.
#[derive(Clone, Debug)]
enum Bind {
    Null,
    Text(String),
    Bool(bool),
    Int(i64),
    Real(f64),
}

/// Why a mode reads none of the fields that only `rows = "one"` and `"many"` read.
struct Unread {
    found: &'static str,
    not_found: &'static str,
    list_field: &'static str,
}

/// Refuses the first of `found`, `not_found` and `list_field` that `spec` sets, in a mode
/// (`rows = "<mode>"`) that does not read them, saying why.
fn refuse_unread(spec: &SqlSpec, mode: &str, why: Unread) -> Result<(), AdapterConfigError> {
    let set = [
        ("found", !spec.found.is_empty(), why.found),
        ("not_found", spec.not_found.is_some(), why.not_found),
        ("list_field", spec.list_field.is_some(), why.list_field),
    ];
    match set.into_iter().find(|(_, set, _)| *set) {
        Some((field, _, why)) => Err(AdapterConfigError::new(
            field,
            format!("not with rows = \"{mode}\": {why}"),
        )),
        None => Ok(()),
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 63
}

impl SqlAdapter {
    /// Checks the spec and prepares the adapter. The database is opened on first use, so a
    /// gateway starts (and answers 503 for this contract) while a database is down or
    /// missing. An `env:` variable that is not set, an unknown URL scheme, a TLS option on
    /// SQLite or a missing `ca_file` are refused here.
    pub fn new(spec: SqlSpec, base_dir: &Path) -> Result<Self, AdapterConfigError> {
        if spec.columns.is_empty() {
            return Err(AdapterConfigError::new(
                "columns",
                "map at least one column to an answer field",
            ));
        }
        match (spec.rows, &spec.batch) {
            (RowMode::Batch, None) => {
                return Err(AdapterConfigError::new(
                    "batch",
                    "required with rows = \"batch\": a table with `items`, `key` and `answer`",
                ));
            }
            (
                RowMode::One | RowMode::Many | RowMode::Table | RowMode::List | RowMode::Changes,
                Some(_),
            ) => {
                return Err(AdapterConfigError::new(
                    "batch",
                    "only with rows = \"batch\"",
                ));
            }
            (RowMode::Batch, Some(b)) => batch::check(&spec, b)?,
            (RowMode::Table, None) => table::check(&spec)?,
            (RowMode::List, None) => list::check(&spec)?,
            (RowMode::Changes, None) => changes::check(&spec)?,
            _ => {}
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
        if let Some(schema) = &spec.schema
            && !is_identifier(schema)
        {
            return Err(AdapterConfigError::new(
                "schema",
                "must be a plain identifier (letters, digits, `_`; at most 63)",
            ));
        }
        let target = connect_target(&spec, base_dir)?;
        let dialect = match target {
            Target::Sqlite(_) => Dialect::Sqlite,
            Target::Postgres(_) => Dialect::Postgres,
            Target::MySql(_) => Dialect::MySql,
        };
        let prepared = match (&spec.batch, spec.rows) {
            (Some(b), _) => prepare_list(
                &spec.statement,
                dialect,
                &b.key,
                usize::try_from(b.chunk).unwrap_or(1),
            )?,
            (None, RowMode::Table) => table::prepare_aggregate(&spec.statement, dialect)?,
            (None, RowMode::List) => list::prepare_whole(&spec.statement, dialect)?,
            (None, RowMode::Changes) => changes::prepare_after(&spec.statement, dialect)?,
            (None, _) => prepare(&spec.statement, dialect)?,
        };
        let sqlite = match (&target, spec.rows) {
            (Target::Sqlite(o), RowMode::One | RowMode::Many) => Some(Arc::new(
                SqliteLookups::new(o.get_filename().to_owned(), spec.timeout_ms, spec.pool_size),
            )),
            _ => None,
        };
        Ok(SqlAdapter {
            spec,
            sql: prepared.sql.as_str().into(),
            prepared,
            target,
            pool: OnceLock::new(),
            sqlite,
        })
    }

    /// The database engine this adapter talks to.
    pub fn backend(&self) -> SqlBackend {
        match self.target {
            Target::Sqlite(_) => SqlBackend::Sqlite,
            Target::Postgres(_) => SqlBackend::Postgres,
            Target::MySql(_) => SqlBackend::MySql,
        }
    }

    /// The statement as sent to the database, with the backend's placeholders (in batch
    /// mode, `IN (:key)` expanded to one chunk's placeholders).
    pub fn prepared_sql(&self) -> &str {
        &self.sql
    }

    fn pool(&self) -> &Pools {
        self.pool.get_or_init(|| {
            // Half the deadline for getting a connection: a server that refuses connections
            // is retried with backoff until then, and reported as unavailable (503) rather
            // than as a timeout (504), which is kept for statements that overrun.
            let acquire = half_the_deadline(self.spec.timeout_ms);
            match &self.target {
                Target::Sqlite(o) => {
                    let watch = Arc::new(FileWatch::new(o.get_filename().to_owned()));
                    Pools::Sqlite(
                        SqlitePoolOptions::new()
                            .max_connections(self.spec.pool_size)
                            .acquire_timeout(acquire)
                            // No ping before each use: for a file it proves nothing that the
                            // statement itself does not, and it is one more round trip to the
                            // connection's thread on every answer (`before_acquire` still
                            // drops connections to a file that was replaced).
                            .test_before_acquire(false)
                            .before_acquire(move |_, meta| {
                                let fresh = watch.fresh(meta.age);
                                Box::pin(async move { Ok(fresh) })
                            })
                            .connect_lazy_with(o.clone()),
                    )
                }
                Target::Postgres(o) => Pools::Postgres(
                    PgPoolOptions::new()
                        .max_connections(self.spec.pool_size)
                        .acquire_timeout(acquire)
                        .connect_lazy_with(o.clone()),
                ),
                Target::MySql(o) => {
                    let ms = self.spec.timeout_ms;
                    Pools::MySql(
                        MySqlPoolOptions::new()
                            .max_connections(self.spec.pool_size)
                            .acquire_timeout(acquire)
                            .after_connect(move |conn, _| {
                                Box::pin(async move { set_mysql_statement_timeout(conn, ms).await })
                            })
                            .connect_lazy_with(o.clone()),
                    )
                }
            }
        })
    }

    /// A connection from the pool, its statements to finish by `deadline`. SQLite runs a
    /// statement in a worker thread that a dropped future does not stop: its progress
    /// handler is armed with the deadline, so a statement still running then is interrupted
    /// and frees its connection and its CPU. Every connection taken re-arms it, so a past
    /// deadline never outlives its answer.
    async fn connection(&self, deadline: Instant) -> Result<Connection, AdapterError> {
        let classify = |e| self.classify(e);
        Ok(match self.pool() {
            Pools::Sqlite(p) => {
                let mut conn = p.acquire().await.map_err(classify)?;
                conn.lock_handle()
                    .await
                    .map_err(classify)?
                    .set_progress_handler(1_000, move || Instant::now() < deadline);
                Connection::Sqlite(conn)
            }
            Pools::Postgres(p) => Connection::Postgres(p.acquire().await.map_err(classify)?),
            Pools::MySql(p) => Connection::MySql(p.acquire().await.map_err(classify)?),
        })
    }

    /// `work` within the binding's deadline, waiting for a connection included: past it, a
    /// timeout. (The server-side statement timeout, of the same length, makes sure an
    /// abandoned statement stops.)
    async fn within_deadline<T>(
        &self,
        work: impl Future<Output = Result<T, AdapterError>>,
    ) -> Result<T, AdapterError> {
        let deadline = Duration::from_millis(self.spec.timeout_ms);
        tokio::time::timeout(deadline, work)
            .await
            .unwrap_or(Err(AdapterError::Timeout(self.spec.timeout_ms)))
    }

    fn binds(&self, query: &Value) -> Result<Vec<Bind>, AdapterError> {
        self.prepared
            .params
            .iter()
            .map(|name| match query.get(name) {
                None | Some(Value::Null) => Ok(Bind::Null),
                Some(Value::String(s)) => Ok(Bind::Text(s.clone())),
                Some(Value::Bool(b)) => Ok(Bind::Bool(*b)),
                Some(Value::Number(n)) => Ok(match n.as_i64() {
                    Some(i) => Bind::Int(i),
                    None => Bind::Real(n.as_f64().unwrap_or(f64::NAN)),
                }),
                Some(_) => Err(AdapterError::Failed(format!(
                    "query field `{name}` is not a scalar and cannot be bound"
                ))),
            })
            .collect()
    }

    async fn run(&self, query: &Value) -> Result<Value, AdapterError> {
        let binds = self.binds(query)?;
        let one = self.spec.rows == RowMode::One;
        let columns = &self.spec.columns;
        let sql = &self.sql;
        let rows = if let Some(lookups) = &self.sqlite {
            lookups.fetch(sql, &binds, one, columns).await?
        } else {
            self.fetch_pooled(sql, &binds, one).await?
        };
        if rows.is_empty()
            && let Some(nf) = &self.spec.not_found
        {
            return Ok(nf.clone());
        }
        let mut answer = self.spec.found.clone();
        if one {
            // Not empty: a missing not_found is refused in `new` for rows = "one".
            answer.extend(rows.into_iter().next().unwrap_or_default());
        } else {
            // rows = "many" (a batch is answered by `run_batch`).
            let field = self.spec.list_field.clone().unwrap_or_default();
            answer.insert(
                field,
                Value::Array(rows.into_iter().map(Value::Object).collect()),
            );
        }
        Ok(Value::Object(answer))
    }

    /// The rows of the statement through sqlx's pool: PostgreSQL and MySQL/MariaDB (a
    /// SQLite binding's lookups run on the answering thread, `sql/sqlite.rs`).
    async fn fetch_pooled(
        &self,
        sql: &Arc<str>,
        binds: &[Bind],
        one: bool,
    ) -> Result<Vec<Map<String, Value>>, AdapterError> {
        let columns = &self.spec.columns;
        let deadline = Instant::now() + Duration::from_millis(self.spec.timeout_ms);
        match &mut self.connection(deadline).await? {
            Connection::Sqlite(c) => fetch_rows::<sqlx::Sqlite>(c, sql, binds, one, columns).await,
            Connection::Postgres(c) => {
                fetch_rows::<sqlx::Postgres>(c, sql, binds, one, columns).await
            }
            Connection::MySql(c) => fetch_rows::<sqlx::MySql>(c, sql, binds, one, columns).await,
        }
        .map_err(|e| self.classify(e))?
    }

    /// Where the data is, for an operator: the SQLite file, or the server and database
    /// (never the user or the password of a URL).
    pub fn target(&self) -> String {
        match &self.target {
            Target::Sqlite(o) => format!("SQLite file {}", o.get_filename().display()),
            Target::Postgres(o) => format!(
                "PostgreSQL {}:{}/{}",
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or("")
            ),
            Target::MySql(o) => format!(
                "MySQL/MariaDB {}:{}/{}",
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or("")
            ),
        }
    }

    /// Connects and prepares the statement, without running it, and checks that it returns
    /// every column the binding maps: the names of its result columns.
    async fn probe(&self) -> Result<String, AdapterError> {
        if let Target::Sqlite(o) = &self.target {
            // Opened read-only and never created: say so plainly, not as SQLITE_CANTOPEN.
            let file = o.get_filename();
            if !file.is_file() {
                return Err(AdapterError::Unavailable(format!(
                    "{} does not exist",
                    file.display()
                )));
            }
        }
        let sql = &self.sql;
        let deadline = Instant::now() + Duration::from_millis(self.spec.timeout_ms);
        // Closed, not returned to the pool: a statement prepared without values keeps the
        // parameter types the server inferred in the connection's statement cache (an INT4
        // for `id > $1`, say), which the values an answer binds would then not fit.
        let returned = match &mut self.connection(deadline).await? {
            Connection::Sqlite(c) => {
                c.close_on_drop();
                prepare_on::<sqlx::Sqlite>(c, sql).await
            }
            Connection::Postgres(c) => {
                c.close_on_drop();
                prepare_on::<sqlx::Postgres>(c, sql).await
            }
            Connection::MySql(c) => {
                c.close_on_drop();
                prepare_on::<sqlx::MySql>(c, sql).await
            }
        }
        .map_err(|e| self.classify(e))?;
        let missing: Vec<&str> = self
            .spec
            .columns
            .keys()
            .filter(|c| !returned.iter().any(|r| r == *c))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(AdapterError::Failed(format!(
                "the statement returns no column `{}` (it returns {})",
                missing.join("`, `"),
                if returned.is_empty() {
                    "none".to_owned()
                } else {
                    returned.join(", ")
                }
            )));
        }
        Ok(format!("{}: statement prepared", self.target()))
    }

    /// Connection-level failures are the backend being unavailable; a server-side statement
    /// timeout is a timeout; anything else is an error in what the backend answered.
    fn classify(&self, e: sqlx::Error) -> AdapterError {
        let unavailable = |e: sqlx::Error| AdapterError::Unavailable(e.to_string());
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => unavailable(e),
            // A connection cut mid-message shows up as a protocol error on some drivers.
            sqlx::Error::Protocol(_) => unavailable(e),
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                let verdict = match self.backend() {
                    SqlBackend::Sqlite => code.parse().map_or(Verdict::Failed, sqlite_verdict),
                    SqlBackend::Postgres => postgres_verdict(&code),
                    SqlBackend::MySql => db
                        .try_downcast_ref::<MySqlDatabaseError>()
                        .map_or(Verdict::Failed, |m| mysql_verdict(m.number())),
                };
                match verdict {
                    Verdict::Unavailable => unavailable(e),
                    Verdict::Timeout => AdapterError::Timeout(self.spec.timeout_ms),
                    Verdict::Failed => AdapterError::Failed(e.to_string()),
                }
            }
            _ => AdapterError::Failed(e.to_string()),
        }
    }
}

/// The identity (device and inode) of a SQLite binding's file, looked at whenever a pooled
/// connection is taken: a connection opened on a file that has since been replaced (a refresh
/// or a restore by rename), moved away or deleted is closed instead of used, so the next
/// exchange reads the file the path names now — or finds it missing (503) — rather than
/// the old one, which an open connection would go on reading for as long as it lived.
struct FileWatch {
    path: PathBuf,
    /// The identity last seen (`None`: no file), and since when.
    seen: std::sync::Mutex<(Option<(u64, u64)>, Instant)>,
}

impl FileWatch {
    fn new(path: PathBuf) -> Self {
        let id = Self::identity(&path);
        FileWatch {
            path,
            seen: std::sync::Mutex::new((id, Instant::now())),
        }
    }

    fn identity(path: &Path) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }

    /// Whether a connection `age` old was opened after the file last changed identity.
    fn fresh(&self, age: Duration) -> bool {
        let now = Self::identity(&self.path);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.0 != now {
            *seen = (now, Instant::now());
        }
        age < seen.1.elapsed()
    }
}

enum Verdict {
    Unavailable,
    Timeout,
    Failed,
}

/// SQLite result codes: SQLITE_CANTOPEN (14), SQLITE_BUSY (5), SQLITE_LOCKED (6) and
/// SQLITE_NOTADB (26) are the file being unavailable; SQLITE_INTERRUPT (9) is the deadline's
/// progress handler stopping the statement.
fn sqlite_verdict(code: i32) -> Verdict {
    match code {
        14 | 5 | 6 | 26 => Verdict::Unavailable,
        9 => Verdict::Timeout,
        _ => Verdict::Failed,
    }
}

/// Half of a binding's deadline (at least 1 ms): how long it waits for a connection or a
/// lock, so that either is "unavailable" (503) before the deadline would make it a timeout
/// (504).
fn half_the_deadline(timeout_ms: u64) -> Duration {
    (Duration::from_millis(timeout_ms) / 2).max(Duration::from_millis(1))
}

/// PostgreSQL SQLSTATEs: class 08 (connection exception), 28 (authorisation), 3D000
/// (no such database), 53 (insufficient resources, e.g. too many connections), 57P01-03
/// (shutting down, starting up) are the server being unavailable to us; 57014 is a
/// cancelled statement, which is what `statement_timeout` raises.
fn postgres_verdict(code: &str) -> Verdict {
    match code {
        "57014" => Verdict::Timeout,
        "3D000" | "57P01" | "57P02" | "57P03" => Verdict::Unavailable,
        c if c.starts_with("08") || c.starts_with("28") || c.starts_with("53") => {
            Verdict::Unavailable
        }
        _ => Verdict::Failed,
    }
}

/// MySQL/MariaDB error numbers: 3024 (MySQL `max_execution_time`), 1969 (MariaDB
/// `max_statement_time`) and 1317 (query interrupted) are timeouts; too many connections,
/// access denied, unknown database, shutdown and killed connections are unavailability.
fn mysql_verdict(number: u16) -> Verdict {
    match number {
        3024 | 1969 | 1317 => Verdict::Timeout,
        1040 | 1044 | 1045 | 1049 | 1053 | 1077 | 1152 | 1153 | 1158..=1161 | 1203 | 1927 => {
            Verdict::Unavailable
        }
        _ => Verdict::Failed,
    }
}

/// Sets the server-side statement timeout on a new MySQL or MariaDB connection. The two
/// differ: MySQL has `max_execution_time` in milliseconds (SELECT only, which is what a
/// binding runs), MariaDB `max_statement_time` in seconds.
async fn set_mysql_statement_timeout(
    conn: &mut sqlx::MySqlConnection,
    ms: u64,
) -> Result<(), sqlx::Error> {
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut *conn)
        .await?;
    let set = if version.contains("MariaDB") {
        format!(
            "SET SESSION max_statement_time = {}.{:03}",
            ms / 1000,
            ms % 1000
        )
    } else {
        format!("SET SESSION max_execution_time = {ms}")
    };
    // Safe to assert: the text is a constant with one integer formatted in.
    sqlx::query(AssertSqlSafe(set)).execute(&mut *conn).await?;
    Ok(())
}

/// Resolves `database` (through `env:` if so written) into typed connect options.
fn connect_target(spec: &SqlSpec, base_dir: &Path) -> Result<Target, AdapterConfigError> {
    let database = resolve_env(&spec.database, "database")?;
    let from_env = spec.database.starts_with(crate::ENV_PREFIX);
    // Parse errors never echo the URL: it may hold a password.
    let bad_url = |e: sqlx::Error| {
        AdapterConfigError::new(
            "database",
            format!(
                "not a valid database URL{}: {e}",
                if from_env {
                    " (from the environment)"
                } else {
                    ""
                }
            ),
        )
    };
    let ca_file = spec.ca_file.as_ref().map(|f| base_dir.join(f));
    if let Some(ca) = &ca_file
        && !ca.is_file()
    {
        return Err(AdapterConfigError::new(
            "ca_file",
            format!("{} is not a readable file", ca.display()),
        ));
    }
    let timeout_ms = spec.timeout_ms.to_string();
    let scheme = database
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("postgres" | "postgresql") => {
            let mut o = PgConnectOptions::from_str(&database).map_err(bad_url)?;
            // Set at connection start-up: no extra round trip per connection.
            o = o.options([("statement_timeout", timeout_ms.as_str())]);
            if let Some(schema) = &spec.schema {
                o = o.options([("search_path", schema.as_str())]);
            }
            match spec.tls {
                Some(DatabaseTls::Require) => o = o.ssl_mode(PgSslMode::Require),
                Some(DatabaseTls::VerifyFull) => o = o.ssl_mode(PgSslMode::VerifyFull),
                None => {}
            }
            if let Some(ca) = &ca_file {
                o = o.ssl_root_cert(ca);
            }
            Ok(Target::Postgres(o))
        }
        Some("mysql" | "mariadb") => {
            let mut o = MySqlConnectOptions::from_str(&database).map_err(bad_url)?;
            if let Some(schema) = &spec.schema {
                o = o.database(schema);
            }
            match spec.tls {
                Some(DatabaseTls::Require) => o = o.ssl_mode(MySqlSslMode::Required),
                Some(DatabaseTls::VerifyFull) => o = o.ssl_mode(MySqlSslMode::VerifyIdentity),
                None => {}
            }
            if let Some(ca) = &ca_file {
                o = o.ssl_ca(ca);
            }
            Ok(Target::MySql(o))
        }
        Some(other) => Err(AdapterConfigError::new(
            "database",
            format!(
                "unknown database URL scheme `{other}://` (postgres://, mysql://, mariadb://, or a SQLite file path)"
            ),
        )),
        None => {
            for (set, field) in [
                (spec.schema.is_some(), "schema"),
                (spec.tls.is_some(), "tls"),
                (spec.ca_file.is_some(), "ca_file"),
            ] {
                if set {
                    return Err(AdapterConfigError::new(
                        field,
                        "only for PostgreSQL and MySQL/MariaDB, not a SQLite file",
                    ));
                }
            }
            let path: PathBuf = base_dir.join(&database);
            let o = SqliteConnectOptions::new()
                .filename(&path)
                .read_only(true)
                .create_if_missing(false)
                // A lock held past half the deadline is SQLITE_BUSY, "unavailable" (503),
                // before the deadline would make it a timeout (504).
                .busy_timeout(half_the_deadline(spec.timeout_ms));
            Ok(Target::Sqlite(o))
        }
    }
}

/// Prepares the statement on any of the three backends (the server parses and plans it;
/// nothing runs): the names of the columns it returns.
async fn prepare_on<DB>(
    conn: &mut DB::Connection,
    sql: &Arc<str>,
) -> Result<Vec<String>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    // The statement text comes from the operator's configuration, as in `fetch_rows`.
    let statement = (&mut *conn)
        .prepare(AssertSqlSafe(Arc::clone(sql)).into_sql_str())
        .await?;
    Ok(statement
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect())
}

/// Runs the statement on any of the three backends and maps each row to an answer object:
/// at most one row with `one`. The outer error is the database's; the inner one a row that
/// does not fit the binding's columns.
async fn fetch_rows<DB>(
    conn: &mut DB::Connection,
    sql: &Arc<str>,
    binds: &[Bind],
    one: bool,
    columns: &BTreeMap<String, ColumnType>,
) -> Result<Result<Vec<Map<String, Value>>, AdapterError>, sqlx::Error>
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
    let q = bound::<DB>(sql, binds);
    let rows = if one {
        q.fetch_optional(&mut *conn).await?.into_iter().collect()
    } else {
        q.fetch_all(&mut *conn).await?
    };
    Ok(rows.iter().map(|r| map_row(r, columns)).collect())
}

/// The statement with `binds` bound to its placeholders, in order.
fn bound<'q, DB>(sql: &Arc<str>, binds: &[Bind]) -> sqlx::query::Query<'q, DB, DB::Arguments>
where
    DB: Database,
    for<'b> String: Encode<'b, DB> + Type<DB>,
    for<'b> Option<String>: Encode<'b, DB>,
    for<'b> bool: Encode<'b, DB> + Type<DB>,
    for<'b> i64: Encode<'b, DB> + Type<DB>,
    for<'b> f64: Encode<'b, DB> + Type<DB>,
{
    // The statement text comes from the operator's configuration, fixed at start-up; a
    // question (or a poller's position) only ever supplies bound values.
    let mut q = sqlx::query::<DB>(AssertSqlSafe(Arc::clone(sql)));
    for b in binds {
        q = match b {
            Bind::Null => q.bind(None::<String>),
            Bind::Text(s) => q.bind(s.clone()),
            Bind::Bool(v) => q.bind(*v),
            Bind::Int(v) => q.bind(*v),
            Bind::Real(v) => q.bind(*v),
        };
    }
    q
}

/// Decodes `field` as `T`: `Ok(None)` when the column's type is not `T`'s (so the caller
/// tries the next), `Ok(Some(None))` for NULL.
#[allow(clippy::option_option)] // the two levels mean different things, documented above
fn try_as<'r, R, T>(row: &'r R, field: &str) -> Result<Option<Option<T>>, AdapterError>
where
    R: Row,
    T: Decode<'r, R::Database> + Type<R::Database>,
    for<'a> &'a str: ColumnIndex<R>,
{
    let bad = |e: &dyn std::fmt::Display| AdapterError::Failed(format!("column `{field}`: {e}"));
    let value = row.try_get_raw(field).map_err(|e| bad(&e))?;
    if value.is_null() {
        return Ok(Some(None));
    }
    let ty = value.type_info();
    if !ty.is_null() && !T::compatible(&ty) {
        return Ok(None);
    }
    T::decode(value).map(|v| Some(Some(v))).map_err(|e| bad(&e))
}

/// An integer column: the signed integer types backends use, widest first; `Ok(None)` and
/// `Ok(Some(None))` as in [`try_as`].
#[allow(clippy::option_option)] // as in `try_as`
fn try_integer<R>(row: &R, field: &str) -> Result<Option<Option<i64>>, AdapterError>
where
    R: Row,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i16: Decode<'r, R::Database> + Type<R::Database>,
    for<'a> &'a str: ColumnIndex<R>,
{
    if let Some(v) = try_as::<R, i64>(row, field)? {
        return Ok(Some(v));
    }
    if let Some(v) = try_as::<R, i32>(row, field)? {
        return Ok(Some(v.map(i64::from)));
    }
    Ok(try_as::<R, i16>(row, field)?.map(|v| v.map(i64::from)))
}

/// Column `field` of `row` read as `kind` by `decode` (which tries the column types backends
/// use for the kind, as [`try_as`] does), `None` for NULL. The statement returning no column
/// `field`, or one of a type `decode` does not read, is an error naming the column.
fn read_column<'r, R, T>(
    row: &'r R,
    field: &str,
    kind: ColumnType,
    decode: impl FnOnce(&'r R, &str) -> Result<Option<Option<T>>, AdapterError>,
) -> Result<Option<T>, AdapterError>
where
    R: Row,
{
    if !row.columns().iter().any(|c| c.name() == field) {
        return Err(no_such_column(field));
    }
    decode(row, field)?.ok_or_else(|| unreadable_as(field, kind))
}

/// The statement returns no column for answer field `field`.
fn no_such_column(field: &str) -> AdapterError {
    AdapterError::Failed(format!("the statement returns no column `{field}`"))
}

/// Column `field` holds a value of a SQL type that answer kind `kind` does not read.
fn unreadable_as(field: &str, kind: ColumnType) -> AdapterError {
    AdapterError::Failed(format!(
        "column `{field}`: its SQL type cannot be read as {kind:?}"
    ))
}

/// A `list` column: its comma-separated items, trimmed, empty ones left out.
fn list_value(s: &str) -> Value {
    Value::Array(
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(Value::from)
            .collect(),
    )
}

fn map_row<R>(
    row: &R,
    columns: &BTreeMap<String, ColumnType>,
) -> Result<Map<String, Value>, AdapterError>
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
    let mut out = Map::new();
    for (field, ty) in columns {
        // Each kind tries the column types backends use for it, widest first.
        let value = read_column(row, field, *ty, |row, f| {
            Ok(match ty {
                ColumnType::Text => try_as::<R, String>(row, f)?.map(|v| v.map(Value::from)),
                ColumnType::Integer => try_integer(row, f)?.map(|v| v.map(Value::from)),
                ColumnType::Real => match try_as::<R, f64>(row, f)? {
                    Some(v) => Some(v.map(Value::from)),
                    None => try_as::<R, f32>(row, f)?.map(|v| v.map(|x| Value::from(f64::from(x)))),
                },
                ColumnType::Bool => match try_as::<R, bool>(row, f)? {
                    Some(v) => Some(v.map(Value::from)),
                    None => try_integer(row, f)?.map(|v| v.map(|i| Value::from(i != 0))),
                },
                ColumnType::List => try_as::<R, String>(row, f)?.map(|v| v.map(|s| list_value(&s))),
            })
        })?;
        if let Some(v) = value {
            out.insert(field.clone(), v);
        }
    }
    Ok(out)
}

impl Adapter for SqlAdapter {
    fn answer<'a>(&'a self, query: &'a Value) -> AnswerFuture<'a> {
        Box::pin(async move {
            match (&self.spec.batch, self.spec.rows) {
                // The whole batch, every chunk's statement, within the one deadline.
                (Some(batch), _) => self.within_deadline(self.run_batch(batch, query)).await,
                (None, RowMode::Table) => Err(table::not_a_question()),
                (None, RowMode::List) => Err(list::not_a_question()),
                (None, RowMode::Changes) => Err(changes::not_a_question()),
                (None, _) => self.within_deadline(self.run(query)).await,
            }
        })
    }

    fn check(&self) -> CheckFuture<'_> {
        // Within the deadline an answer has: a backend slower than that fails exchanges.
        Box::pin(async move { self.within_deadline(self.probe()).await.map(Some) })
    }

    fn table(&self) -> TableFuture<'_> {
        Box::pin(async move {
            match self.spec.rows {
                RowMode::Table => self.within_deadline(self.read_aggregate()).await,
                RowMode::One
                | RowMode::Many
                | RowMode::Batch
                | RowMode::List
                | RowMode::Changes => Err(AdapterError::no_statistics()),
            }
        })
    }

    fn table_dimensions(&self) -> Option<Vec<String>> {
        (self.spec.rows == RowMode::Table).then(|| table::dimensions(&self.spec.columns))
    }

    fn list(&self) -> ListFuture<'_> {
        Box::pin(async move {
            match self.spec.rows {
                RowMode::List => self.within_deadline(self.read_list()).await,
                RowMode::One
                | RowMode::Many
                | RowMode::Batch
                | RowMode::Table
                | RowMode::Changes => Err(AdapterError::no_list()),
            }
        })
    }

    fn list_labelled(&self) -> Option<bool> {
        (self.spec.rows == RowMode::List).then(|| list::labelled(&self.spec.columns))
    }

    fn changes(&self, after: i64, limit: u32) -> ChangesFuture<'_> {
        Box::pin(async move {
            match self.spec.rows {
                RowMode::Changes => self.within_deadline(self.read_changes(after, limit)).await,
                RowMode::One | RowMode::Many | RowMode::Batch | RowMode::Table | RowMode::List => {
                    Err(AdapterError::no_changes())
                }
            }
        })
    }

    fn change_fields(&self) -> Option<Vec<String>> {
        (self.spec.rows == RowMode::Changes).then(|| changes::fields(&self.spec.columns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sqlx::SqlitePool;

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
        assert_eq!(a.backend(), SqlBackend::Sqlite);
        assert_eq!(
            a.answer(&json!({"nik": "3171011701900001"})).await.unwrap(),
            json!({"registered": true, "citizenship": "WNI", "deceased": false, "programs": ["JKK", "JKM"]})
        );
        assert_eq!(
            a.answer(&json!({"nik": "3171015701900002"})).await.unwrap(),
            json!({"registered": true, "citizenship": "WNA", "deceased": true, "programs": [], "note": "x"})
        );
    }

    /// The lookups on the answering thread (rusqlite) map every SQLite storage class to every
    /// answer kind exactly as sqlx's path does for the other modes: the same values, the
    /// same refusals.
    #[tokio::test]
    async fn sqlite_lookups_map_every_value_as_the_sqlx_path_does() {
        let dir = tempfile::tempdir().unwrap();
        let opts = SqliteConnectOptions::new()
            .filename(dir.path().join("kinds.db"))
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(opts).await.unwrap();
        for sql in [
            "CREATE TABLE v (k TEXT, i INTEGER, zero INTEGER, r REAL, s TEXT, list TEXT, b BLOB, n TEXT, bad TEXT)",
            "INSERT INTO v VALUES ('a', 7, 0, 2.5, 'WNI', ' JKK, ,JKM ', x'00ff', NULL, CAST(x'ff' AS TEXT))",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
        let kinds = ["text", "integer", "real", "bool", "list"];
        let mut compared = 0;
        for column in ["i", "zero", "r", "s", "list", "b", "n", "bad", "absent"] {
            for kind in kinds {
                let select = if column == "absent" {
                    "i AS other"
                } else {
                    column
                };
                let s: SqlSpec = serde_json::from_value(json!({
                    "database": "kinds.db",
                    "statement": format!("SELECT {select} FROM v WHERE k = :k"),
                    "columns": { column: kind },
                    "not_found": {},
                }))
                .unwrap();
                let a = SqlAdapter::new(s, dir.path()).unwrap();
                let binds = a.binds(&json!({"k": "a"})).unwrap();
                let lookups = a.sqlite.as_ref().unwrap();
                let here = lookups.fetch(&a.sql, &binds, true, &a.spec.columns).await;
                let sqlx = a.fetch_pooled(&a.sql, &binds, true).await;
                let what = format!("column {column} as {kind}");
                match (&here, &sqlx) {
                    (Ok(h), Ok(x)) => assert_eq!(h, x, "{what}"),
                    // Invalid UTF-8: both refuse it, each in its library's words.
                    (Err(AdapterError::Failed(h)), Err(AdapterError::Failed(x)))
                        if column == "bad" =>
                    {
                        assert!(h.starts_with("column `bad`: "), "{what}: {h}");
                        assert!(x.starts_with("column `bad`: "), "{what}: {x}");
                    }
                    (Err(AdapterError::Failed(h)), Err(AdapterError::Failed(x))) => {
                        assert_eq!(h, x, "{what}")
                    }
                    _ => panic!("{what}: {here:?} against {sqlx:?}"),
                }
                compared += 1;
            }
        }
        assert_eq!(compared, 45);
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
    async fn a_column_of_the_wrong_kind_is_a_backend_error() {
        let dir = tempfile::tempdir().unwrap();
        make_db(dir.path()).await;
        let mut s = spec();
        s.columns.insert("citizenship".into(), ColumnType::Integer);
        let a = SqlAdapter::new(s, dir.path()).unwrap();
        let err = a
            .answer(&json!({"nik": "3171011701900001"}))
            .await
            .unwrap_err();
        assert!(matches!(err, AdapterError::Failed(_)), "{err:?}");
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

    #[tokio::test]
    async fn a_timed_out_sqlite_statement_is_interrupted_and_frees_its_connection() {
        let dir = tempfile::tempdir().unwrap();
        make_db(dir.path()).await;
        let mut s = spec();
        // Slow (about a minute of CPU) for 'slow', instant otherwise.
        s.statement = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
                       WHERE x < CASE WHEN :nik = 'slow' THEN 1000000000 ELSE 1 END) \
                       SELECT CAST(count(*) AS TEXT) AS citizenship, 0 AS deceased, '' AS programs, NULL AS note FROM c"
            .into();
        s.timeout_ms = 100;
        s.pool_size = 1;
        let a = SqlAdapter::new(s, dir.path()).unwrap();
        let err = a.answer(&json!({"nik": "slow"})).await.unwrap_err();
        assert!(matches!(err, AdapterError::Timeout(100)), "{err:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The only connection is free again: the statement did not run on in the background.
        let answer = a.answer(&json!({"nik": "fast"})).await;
        assert!(answer.is_ok(), "{answer:?}");
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
        let mut s = spec();
        s.tls = Some(DatabaseTls::Require);
        assert_eq!(SqlAdapter::new(s, dir).unwrap_err().field, "tls");
        let mut s = spec();
        s.database = "postgress://x/y".into();
        assert_eq!(SqlAdapter::new(s, dir).unwrap_err().field, "database");
        let mut s = spec();
        s.database = "postgres://u@h/db".into();
        s.schema = Some("kemlu; DROP".into());
        assert_eq!(SqlAdapter::new(s, dir).unwrap_err().field, "schema");
        let mut s = spec();
        s.database = "postgres://u@h/db".into();
        s.ca_file = Some("no-such-ca.pem".into());
        assert_eq!(SqlAdapter::new(s, dir).unwrap_err().field, "ca_file");
    }

    #[test]
    fn database_urls_choose_the_backend_and_placeholders() {
        let dir = Path::new(".");
        for (url, backend, sql) in [
            (
                "postgres://u@h/db",
                SqlBackend::Postgres,
                "SELECT citizenship, deceased, programs, note FROM people WHERE nik = $1",
            ),
            (
                "mariadb://u@h/db",
                SqlBackend::MySql,
                "SELECT citizenship, deceased, programs, note FROM people WHERE nik = ?",
            ),
            (
                "data/x.db",
                SqlBackend::Sqlite,
                "SELECT citizenship, deceased, programs, note FROM people WHERE nik = ?",
            ),
        ] {
            let mut s = spec();
            s.database = url.into();
            let a = SqlAdapter::new(s, dir).unwrap();
            assert_eq!(a.backend(), backend, "{url}");
            assert_eq!(a.prepared_sql(), sql);
        }
    }

    fn batch_spec() -> SqlSpec {
        serde_json::from_value(json!({
            "database": "t.db",
            "rows": "batch",
            "statement": "SELECT nik, full_name, birth_date, sex, citizenship, deceased FROM residents WHERE nik IN (:nik)",
            "columns": {
                "nik": "text", "full_name": "text", "birth_date": "text", "sex": "text",
                "citizenship": "text", "deceased": "bool"
            },
            "batch": {"items": "items", "key": "nik", "answer": "identity-verdicts"}
        }))
        .unwrap()
    }

    fn refused_field(s: SqlSpec) -> String {
        SqlAdapter::new(s, Path::new(".")).unwrap_err().field
    }

    #[test]
    fn a_batch_binding_expands_its_key_to_one_chunk_of_placeholders() {
        let a = SqlAdapter::new(batch_spec(), Path::new(".")).unwrap();
        let sql = a.prepared_sql();
        assert_eq!(sql.matches('?').count(), 500, "{sql}");
        assert!(sql.ends_with(", ?)"), "{sql}");
        assert!(sql.contains("WHERE nik IN (?, ?, "), "{sql}");
        let mut s = batch_spec();
        s.database = "postgres://u@h/db".into();
        s.batch.as_mut().unwrap().chunk = 3;
        let a = SqlAdapter::new(s, Path::new(".")).unwrap();
        assert!(a.prepared_sql().ends_with("WHERE nik IN ($1, $2, $3)"));
    }

    #[test]
    fn rows_batch_without_a_batch_table_is_refused() {
        let mut s = batch_spec();
        s.batch = None;
        assert_eq!(refused_field(s), "batch");
    }

    #[test]
    fn a_batch_table_without_rows_batch_is_refused() {
        for rows in [RowMode::One, RowMode::Many] {
            let mut s = batch_spec();
            s.rows = rows;
            s.not_found = Some(json!({}));
            s.list_field = Some("x".into());
            assert_eq!(refused_field(s), "batch", "{rows:?}");
        }
    }

    #[test]
    fn found_is_refused_with_batch() {
        let mut s = batch_spec();
        s.found.insert("registered".into(), json!(true));
        assert_eq!(refused_field(s), "found");
    }

    #[test]
    fn not_found_is_refused_with_batch() {
        let mut s = batch_spec();
        s.not_found = Some(json!({"registered": false}));
        assert_eq!(refused_field(s), "not_found");
    }

    #[test]
    fn list_field_is_refused_with_batch() {
        let mut s = batch_spec();
        s.list_field = Some("items".into());
        assert_eq!(refused_field(s), "list_field");
    }

    #[test]
    fn a_batch_statement_must_use_only_its_key_once_inside_in() {
        let select = "SELECT nik, full_name, birth_date, sex, citizenship, deceased FROM residents";
        for clause in [
            "WHERE nik = :nik",
            "WHERE nik IN (:nik) AND province = :province",
            "WHERE nik IN (:nik) OR old_nik IN (:nik)",
            "WHERE nik IN (:nik, '3171011701900001')",
            "WHERE nik IN ('3171011701900001')",
            "WHERE nik IN (:id)",
        ] {
            let mut s = batch_spec();
            s.statement = format!("{select} {clause}");
            assert_eq!(refused_field(s), "statement", "{clause}");
        }
    }

    #[test]
    fn the_identity_verdicts_rule_needs_its_six_columns_of_their_kinds() {
        let mut s = batch_spec();
        s.columns.remove("sex");
        assert_eq!(refused_field(s), "columns");
        let mut s = batch_spec();
        s.columns.insert("deceased".into(), ColumnType::Integer);
        assert_eq!(refused_field(s), "columns");
        let mut s = batch_spec();
        s.columns.insert("birth_date".into(), ColumnType::List);
        let e = SqlAdapter::new(s, Path::new(".")).unwrap_err();
        assert_eq!(e.field, "columns");
        assert!(
            e.reason.contains("reads `birth_date` as text")
                && e.reason.contains("deceased = \"bool\""),
            "{}",
            e.reason
        );
        // A column the rule does not read is refused too: nothing is fetched for nothing.
        let mut s = batch_spec();
        s.columns.insert("province".into(), ColumnType::Text);
        assert_eq!(refused_field(s), "columns");
    }

    #[test]
    fn the_identity_verdicts_rule_matches_items_by_nik() {
        let mut s = batch_spec();
        s.batch.as_mut().unwrap().key = "id".into();
        s.statement = s.statement.replace(":nik", ":id");
        assert_eq!(refused_field(s), "batch.key");
    }

    #[test]
    fn a_chunk_outside_1_to_1000_is_refused() {
        for chunk in [0, 1_001] {
            let mut s = batch_spec();
            s.batch.as_mut().unwrap().chunk = chunk;
            assert_eq!(refused_field(s), "batch.chunk", "{chunk}");
        }
    }

    #[test]
    fn batch_items_must_be_a_plain_field_name() {
        for items in ["", "/items", "a.b"] {
            let mut s = batch_spec();
            s.batch.as_mut().unwrap().items = items.into();
            assert_eq!(refused_field(s), "batch.items", "{items}");
        }
    }

    #[test]
    fn an_unknown_answer_rule_or_batch_field_is_refused_naming_the_choices() {
        let mut v = serde_json::to_value(batch_spec()).unwrap();
        v["batch"]["answer"] = json!("citizenship-verdicts");
        let e = serde_json::from_value::<SqlSpec>(v)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`identity-verdicts`"), "{e}");
        let mut v = serde_json::to_value(batch_spec()).unwrap();
        v["batch"]["size"] = json!(10);
        let e = serde_json::from_value::<SqlSpec>(v)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `size`"), "{e}");
    }

    #[test]
    fn statements_for_is_one_per_chunk_of_keys() {
        let a = SqlAdapter::new(batch_spec(), Path::new(".")).unwrap();
        for (keys, statements) in [(0, 0), (1, 1), (500, 1), (501, 2), (1_000, 2)] {
            assert_eq!(a.statements_for(keys), statements, "{keys}");
        }
        let mut s = batch_spec();
        s.batch.as_mut().unwrap().chunk = 7;
        let a = SqlAdapter::new(s, Path::new(".")).unwrap();
        assert_eq!(a.statements_for(1_000), 143);
        // Outside batch mode an answer is one statement.
        let a = SqlAdapter::new(spec(), Path::new(".")).unwrap();
        assert_eq!(a.statements_for(1), 1);
    }

    #[test]
    fn a_database_from_an_unset_variable_is_refused_naming_it() {
        let mut s = spec();
        s.database = "env:SIMPUL_TEST_SURELY_UNSET_VARIABLE".into();
        let e = SqlAdapter::new(s, Path::new(".")).unwrap_err();
        assert_eq!(e.field, "database");
        assert!(
            e.reason.contains("SIMPUL_TEST_SURELY_UNSET_VARIABLE"),
            "{}",
            e.reason
        );
    }
}
