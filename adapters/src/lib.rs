//! Adapters answer a contract from what a ministry already runs: its database or its API.
//!
//! An adapter receives a query that has already been authorised and checked against the
//! contract's request schema, and returns the contract's answer as JSON. It knows nothing of
//! signatures, certificates or the federation; the gateway checks the answer against the
//! response schema after it. For a statistics contract an adapter instead returns the
//! aggregate the answers are made from ([`Adapter::table`]), which
//! `contracts::statistics::answer` filters, adds up and protects; for an overlap count, the
//! list of identifiers the gateway blinds ([`Adapter::list`]); for an event contract, the
//! rows of a change table the gateway emits as events ([`Adapter::changes`]).

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use contracts::statistics::AggregateRows;
use contracts::trace::TraceContext;
use serde_json::{Map, Value};

pub mod http;
pub mod sql;
/// The `:name` rewriter, public only for the fuzz targets of `fuzz/` (it is not an API).
#[doc(hidden)]
pub mod statement;
mod verdicts;

pub use http::{HttpAdapter, HttpMethod, HttpSpec};
pub use sql::{
    BatchAnswer, ColumnType, DatabaseTls, RowMode, SqlAdapter, SqlBackend, SqlBatch, SqlSpec,
};

/// How one contract is answered: the backend a binding in `config.toml` names.
#[derive(Clone, Debug, PartialEq)]
pub enum AdapterSpec {
    /// A parameterised SQL statement (SQLite, PostgreSQL, MySQL/MariaDB).
    Sql(SqlSpec),
    /// A request to an existing REST API.
    Http(HttpSpec),
}

/// Builds the adapter a spec describes. Nothing is connected yet: backends are reached on
/// first use, so a gateway starts (and answers 503) while a backend is down. What can be
/// checked without the backend is checked here: statements, URL templates, `env:` secrets,
/// certificate files.
pub fn build(spec: &AdapterSpec, base_dir: &Path) -> Result<Arc<dyn Adapter>, AdapterConfigError> {
    match spec {
        AdapterSpec::Sql(sql) => Ok(Arc::new(
            SqlAdapter::new(sql.clone(), base_dir).map_err(|e| e.within("sql"))?,
        )),
        AdapterSpec::Http(http) => Ok(Arc::new(
            HttpAdapter::new(http.clone(), base_dir).map_err(|e| e.within("http"))?,
        )),
    }
}

/// The prefix of a configuration value that names an environment variable holding the real
/// value (`env:SIMPUL_DUKCAPIL_DB`), so that passwords and tokens stay out of `config.toml`.
pub const ENV_PREFIX: &str = "env:";

/// The value itself, or, for `env:NAME`, the value of the environment variable `NAME`.
/// A variable that is not set (or not UTF-8) is a configuration error naming it.
pub fn resolve_env(value: &str, field: &str) -> Result<String, AdapterConfigError> {
    let Some(name) = value.strip_prefix(ENV_PREFIX) else {
        return Ok(value.to_owned());
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(AdapterConfigError::new(
            field,
            "`env:` needs the name of an environment variable",
        ));
    }
    std::env::var(name).map_err(|e| {
        let mut err = AdapterConfigError::new(
            field,
            format!(
                "environment variable {name} is {}",
                match e {
                    std::env::VarError::NotPresent => "not set",
                    std::env::VarError::NotUnicode(_) => "not valid UTF-8",
                }
            ),
        );
        if matches!(e, std::env::VarError::NotPresent) {
            err.unset_variable = Some(name.to_owned());
        }
        err
    })
}

/// The future an adapter returns.
pub type AnswerFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, AdapterError>> + Send + 'a>>;

/// The future [`Adapter::check`] returns: what was reached, as a phrase for an operator
/// with no secret in it (`SQLite file data/dukcapil.db: statement prepared`), or `None`
/// when the adapter has nothing it can check.
pub type CheckFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<String>, AdapterError>> + Send + 'a>>;

/// The future [`Adapter::table`] returns.
pub type TableFuture<'a> =
    Pin<Box<dyn Future<Output = Result<AggregateRows, AdapterError>> + Send + 'a>>;

/// The most rows [`Adapter::list`] reads: past it, the list fails rather than grow further.
pub const MAX_LIST_ROWS: usize = 10_000_000;

/// The most bytes of one identifier or label in a list [`Adapter::list`] reads.
pub const MAX_LIST_VALUE_BYTES: usize = 256;

/// A list of people for an overlap count, as the backend gave it: one identifier per row, in
/// the order of the rows, duplicates kept (the overlap code removes them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListRows {
    /// Each row's identifier.
    pub identifiers: Vec<String>,
    /// Each row's label, in the order of `identifiers` and as many: present exactly when the
    /// binding has a `label` column.
    pub labels: Option<Vec<String>>,
}

/// The future [`Adapter::list`] returns.
pub type ListFuture<'a> = Pin<Box<dyn Future<Output = Result<ListRows, AdapterError>> + Send + 'a>>;

/// The most bytes of one change's `data`, as JSON, that [`Adapter::changes`] reads: a signed
/// event holding more would be over the protocol's 8,192 bytes anyway.
pub const MAX_CHANGE_BYTES: usize = contracts::events::MAX_EVENT_BYTES;

/// One row of a change table: the change a member system recorded, to be emitted as one
/// event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Change {
    /// The row's number in the change table (its `source` column): greater than every row
    /// read before it.
    pub source: i64,
    /// The event's `data`: every other column of the row, by name; a NULL column is left out.
    pub data: Map<String, Value>,
}

/// The future [`Adapter::changes`] returns.
pub type ChangesFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Change>, AdapterError>> + Send + 'a>>;

/// Answers one contract.
pub trait Adapter: Send + Sync + fmt::Debug {
    /// The answer to `query`, or why there is none.
    fn answer<'a>(&'a self, query: &'a Value) -> AnswerFuture<'a>;

    /// [`Adapter::answer`] within `trace`, the W3C trace context the exchange came with
    /// (PROTOCOL.md §3.8): an adapter that calls out over HTTP sends it on from a span of
    /// its own; the others have no call to send it with.
    fn answer_traced<'a>(
        &'a self,
        query: &'a Value,
        trace: Option<&'a TraceContext>,
    ) -> AnswerFuture<'a> {
        let _ = trace;
        self.answer(query)
    }

    /// Checks that the backend could answer now, without asking it about anyone: the SQL
    /// adapter connects and prepares its statement (never runs it), the HTTP adapter
    /// connects to the API's host (with the TLS handshake for `https://`) and sends no
    /// request. `simpul doctor` calls it; the exchange path never does. The default has
    /// nothing to check.
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async { Ok(None) })
    }

    /// The aggregate a statistics contract is answered from: one row per combination of the
    /// binding's dimensions seen in the data, with its count, read whole from the backend
    /// (the SQL adapter with `rows = "table"`). `contracts::statistics::answer`, on the
    /// gateway's side, filters it, adds it up and applies the contract's disclosure rules;
    /// the adapter applies none of them. The default, for a binding that answers one question
    /// at a time, fails with [`AdapterError::Failed`].
    fn table(&self) -> TableFuture<'_> {
        Box::pin(async { Err(AdapterError::no_statistics()) })
    }

    /// The dimensions of the aggregate [`Adapter::table`] returns, in the order of each
    /// row's values, known without reaching the backend: the gateway checks at configuration
    /// time that they cover a statistics contract's `dimensions`. `None` (the default) for a
    /// binding that answers no statistics.
    fn table_dimensions(&self) -> Option<Vec<String>> {
        None
    }

    /// The list of people an overlap count is made from: each row's identifier and, when the
    /// binding has one, its label, read whole from the backend (the SQL adapter with
    /// `rows = "list"`), at most [`MAX_LIST_ROWS`] rows. The gateway blinds and counts it;
    /// the adapter only reads and checks it. The default, for a binding that is not a list,
    /// fails with [`AdapterError::Failed`].
    fn list(&self) -> ListFuture<'_> {
        Box::pin(async { Err(AdapterError::no_list()) })
    }

    /// Whether this binding is a list and, if so, whether its rows carry a label, known
    /// without reaching the backend: `None` (the default) for a binding that gives no list,
    /// `Some(false)` for a list without a `label` column, `Some(true)` for one with it.
    fn list_labelled(&self) -> Option<bool> {
        None
    }

    /// The changes of an event contract's change table after row `after`, in the order of
    /// their `source`, at most `limit` of them (the SQL adapter with `rows = "changes"`):
    /// each row's `source` greater than `after` and than the row's before it. The gateway
    /// checks, signs and emits each; the adapter only reads and checks the rows. The default,
    /// for a binding that is not a change table, fails with [`AdapterError::Failed`].
    fn changes(&self, after: i64, limit: u32) -> ChangesFuture<'_> {
        let _ = (after, limit);
        Box::pin(async { Err(AdapterError::no_changes()) })
    }

    /// The fields of each change's `data` (every column but `source`, sorted by name), known
    /// without reaching the backend: the gateway checks them against the event contract at
    /// configuration time. `None` (the default) for a binding that is not a change table.
    fn change_fields(&self) -> Option<Vec<String>> {
        None
    }
}

/// Why an adapter gave no answer. Each maps to one protocol problem.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The backend cannot be reached or opened (503 `provider-unavailable`).
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The backend did not answer within the deadline (504 `provider-timeout`).
    #[error("backend did not answer within {0} ms")]
    Timeout(u64),
    /// The backend answered, but not in a form the binding can map (502 `provider-error`).
    #[error("backend error: {0}")]
    Failed(String),
}

impl AdapterError {
    /// What [`Adapter::table`] gives for a binding that answers one question at a time.
    pub(crate) fn no_statistics() -> Self {
        AdapterError::Failed("this binding answers no statistics".into())
    }

    /// What [`Adapter::list`] gives for a binding that is not a list.
    pub(crate) fn no_list() -> Self {
        AdapterError::Failed("this binding gives no list".into())
    }

    /// What [`Adapter::changes`] gives for a binding that is not a change table.
    pub(crate) fn no_changes() -> Self {
        AdapterError::Failed(
            "this binding reads no change table (it is not in rows = \"changes\" mode)".into(),
        )
    }
}

/// A binding that cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct AdapterConfigError {
    /// The configuration field at fault, relative to the binding.
    pub field: String,
    /// What is wrong.
    pub reason: String,
    /// The `env:` variable that is not set, when that is all that is wrong: a secret of
    /// the machine that runs this binding, which another member's machine does not have.
    pub unset_variable: Option<String>,
}

impl AdapterConfigError {
    /// The same error with its field prefixed by the table it sits in (`sql.not_found`).
    pub fn within(mut self, table: &str) -> Self {
        self.field = format!("{table}.{}", self.field);
        self
    }

    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
            unset_variable: None,
        }
    }
}
