//! The SQL adapter's batch mode (`rows = "batch"`): every item of a query looked up with a
//! bounded number of statements — the distinct keys, in chunks of a fixed size, each chunk
//! one run of the same prepared statement — and each item answered by a rule from its row.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    Bind, ColumnType, Connection, SqlAdapter, SqlSpec, Unread, fetch_rows, is_identifier,
    refuse_unread,
};
use crate::{AdapterConfigError, AdapterError, verdicts};

/// The most keys one statement looks up, well within every engine's limit on placeholders
/// (SQLite 32,766; PostgreSQL and MySQL 65,535).
pub const MAX_CHUNK: u32 = 1_000;

fn default_chunk() -> u32 {
    500
}

/// How each item of a batch, with its row or none, becomes the item's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchAnswer {
    /// The verdicts of `identity.verify` v1 on a reported identity against the civil
    /// registry: the NIK well-formed and found, the name, birth date and sex compared, the
    /// citizenship and a recorded death — and no registry value itself.
    #[serde(rename = "identity-verdicts")]
    IdentityVerdicts,
}

impl BatchAnswer {
    /// The item field (and column) the rule's rows are matched by.
    fn key(self) -> &'static str {
        match self {
            BatchAnswer::IdentityVerdicts => verdicts::KEY,
        }
    }

    /// The columns the rule reads, with their kinds.
    fn columns(self) -> &'static [(&'static str, ColumnType)] {
        match self {
            BatchAnswer::IdentityVerdicts => &verdicts::COLUMNS,
        }
    }

    /// The name written in `config.toml`.
    fn name(self) -> &'static str {
        match self {
            BatchAnswer::IdentityVerdicts => "identity-verdicts",
        }
    }

    /// Whether an item's key is worth a lookup (a malformed NIK is answered without one).
    fn looks_up(self, key: &str) -> bool {
        match self {
            BatchAnswer::IdentityVerdicts => verdicts::looks_up(key),
        }
    }

    fn answer(self, item: &Map<String, Value>, row: Option<&Map<String, Value>>) -> Value {
        match self {
            BatchAnswer::IdentityVerdicts => verdicts::identity(item, row),
        }
    }
}

/// The `batch` table of a binding with `rows = "batch"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlBatch {
    /// The query's top-level field holding the array of items; the answer holds the array of
    /// the items' answers under the same name.
    pub items: String,
    /// The item field whose value is looked up, and the column rows are matched by; the
    /// statement's one parameter, `:<key>`, written alone inside `IN (…)`.
    pub key: String,
    /// The rule that makes each item's answer from the item and its row (or none).
    pub answer: BatchAnswer,
    /// Keys per statement (default 500, at most [`MAX_CHUNK`]): `IN (:key)` becomes this
    /// many placeholders, so one statement text serves every chunk and is prepared once per
    /// connection.
    #[serde(default = "default_chunk")]
    pub chunk: u32,
}

/// Checks a spec with `rows = "batch"` and its `batch` table: nothing set that only the
/// other modes use, the table's fields, and the columns the rule reads. The statement is
/// checked where it is rewritten (`statement::prepare_list`).
pub(super) fn check(spec: &SqlSpec, batch: &SqlBatch) -> Result<(), AdapterConfigError> {
    refuse_unread(
        spec,
        "batch",
        Unread {
            found: "the batch's `answer` rule makes each item's answer",
            not_found: "the batch's `answer` rule answers an item without a row",
            list_field: "the answer's list is named by the batch's `items`",
        },
    )?;
    if !is_identifier(&batch.items) {
        return Err(AdapterConfigError::new(
            "batch.items",
            "must be a top-level field of the query (letters, digits, `_`; at most 63)",
        ));
    }
    if !(1..=MAX_CHUNK).contains(&batch.chunk) {
        return Err(AdapterConfigError::new(
            "batch.chunk",
            format!("must be from 1 to {MAX_CHUNK}"),
        ));
    }
    let rule = batch.answer;
    if batch.key != rule.key() {
        return Err(AdapterConfigError::new(
            "batch.key",
            format!("the {} rule matches items by `{}`", rule.name(), rule.key()),
        ));
    }
    let wanted = || {
        rule.columns()
            .iter()
            .map(|(name, kind)| format!("{name} = \"{}\"", kind_name(*kind)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (name, kind) in rule.columns() {
        if spec.columns.get(*name) != Some(kind) {
            return Err(AdapterConfigError::new(
                "columns",
                format!(
                    "the {} rule reads `{name}` as {}: columns = {{ {} }}",
                    rule.name(),
                    kind_name(*kind),
                    wanted()
                ),
            ));
        }
    }
    if let Some(extra) = spec
        .columns
        .keys()
        .find(|c| !rule.columns().iter().any(|(name, _)| name == c))
    {
        return Err(AdapterConfigError::new(
            "columns",
            format!(
                "the {} rule reads no column `{extra}`: columns = {{ {} }}",
                rule.name(),
                wanted()
            ),
        ));
    }
    Ok(())
}

fn kind_name(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::Text => "text",
        ColumnType::Integer => "integer",
        ColumnType::Real => "real",
        ColumnType::Bool => "bool",
        ColumnType::List => "list",
    }
}

impl SqlAdapter {
    /// How many statements one answer runs when it looks `keys` distinct keys up: in batch
    /// mode one per chunk, ceil(`keys` / `chunk`), and none for a batch in which no item has
    /// a key worth looking up; one in the other modes.
    pub fn statements_for(&self, keys: usize) -> usize {
        match &self.spec.batch {
            Some(batch) => keys.div_ceil(usize::try_from(batch.chunk).unwrap_or(1).max(1)),
            None => 1,
        }
    }

    /// Answers a batch query: each item in order, by the rule, from the row its key found.
    pub(super) async fn run_batch(
        &self,
        batch: &SqlBatch,
        query: &Value,
    ) -> Result<Value, AdapterError> {
        // One deadline for the whole batch, however many statements it takes.
        let deadline = Instant::now() + Duration::from_millis(self.spec.timeout_ms);
        let items = query
            .get(&batch.items)
            .and_then(Value::as_array)
            .ok_or_else(|| {
                AdapterError::Failed(format!("query field `{}` is not an array", batch.items))
            })?;
        let items = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_object().ok_or_else(|| {
                    AdapterError::Failed(format!(
                        "item {i} of query field `{}` is not an object",
                        batch.items
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let key_of = |item: &Map<String, Value>| -> Option<String> {
            item.get(&batch.key)
                .and_then(Value::as_str)
                .filter(|k| batch.answer.looks_up(k))
                .map(str::to_owned)
        };
        let mut seen = HashSet::new();
        let keys: Vec<String> = items
            .iter()
            .filter_map(|item| key_of(item))
            .filter(|k| seen.insert(k.clone()))
            .collect();
        let rows = self.look_up(batch, &keys, deadline).await?;
        let answers = items
            .iter()
            .map(|item| {
                let row = key_of(item).and_then(|k| rows.get(&k));
                batch.answer.answer(item, row)
            })
            .collect();
        let mut answer = Map::new();
        answer.insert(batch.items.clone(), Value::Array(answers));
        Ok(Value::Object(answer))
    }

    /// The rows of `keys`, by the text of their key column (trimmed), one statement per
    /// chunk on one connection. A key that matches several rows keeps the first returned.
    async fn look_up(
        &self,
        batch: &SqlBatch,
        keys: &[String],
        deadline: Instant,
    ) -> Result<HashMap<String, Map<String, Value>>, AdapterError> {
        let mut found = HashMap::new();
        if keys.is_empty() {
            return Ok(found);
        }
        let classify = |e| self.classify(e);
        // One connection for the whole batch, armed once with the batch's deadline: on
        // SQLite a statement still running when the batch's time is up is interrupted,
        // however late it came.
        let mut conn = self.connection(deadline).await?;
        let size = usize::try_from(batch.chunk).unwrap_or(1).max(1);
        let (sql, columns) = (&self.sql, &self.spec.columns);
        for (n, chunk) in keys.chunks(size).enumerate() {
            let Some(first) = chunk.first() else {
                continue;
            };
            // A short chunk repeats its first key: the statement text, and so its prepared
            // form, stays the same, and `IN` matches a repeated key once.
            let binds: Vec<Bind> = chunk
                .iter()
                .chain(std::iter::repeat_n(first, size - chunk.len()))
                .map(|k| Bind::Text(k.clone()))
                .collect();
            tracing::debug!(
                batch_statement = n + 1,
                keys = chunk.len(),
                "batch statement"
            );
            let rows = match &mut conn {
                Connection::Sqlite(c) => {
                    fetch_rows::<sqlx::Sqlite>(c, sql, &binds, false, columns).await
                }
                Connection::Postgres(c) => {
                    fetch_rows::<sqlx::Postgres>(c, sql, &binds, false, columns).await
                }
                Connection::MySql(c) => {
                    fetch_rows::<sqlx::MySql>(c, sql, &binds, false, columns).await
                }
            }
            .map_err(classify)??;
            for row in rows {
                let key = row
                    .get(&batch.key)
                    .and_then(Value::as_str)
                    .map(|k| k.trim().to_owned());
                if let Some(key) = key {
                    found.entry(key).or_insert(row);
                }
            }
        }
        Ok(found)
    }
}
