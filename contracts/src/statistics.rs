//! Statistics contracts (PROTOCOL.md §2.6, issue #16): a question that names dimensions from
//! the contract's fixed list and optional filters on them, answered with a table of counts
//! protected by the contract's disclosure rules ([`crate::disclosure`]) before it is signed.
//!
//! The provider's binding returns an *aggregate*: one row per combination of the contract's
//! dimensions seen in the ministry's data, with its count ([`AggregateRows`]). The gateway,
//! never the binding, keeps the rows the filters select, adds them up over the dimensions the
//! question does not name, refuses a population below the contract's minimum, and protects
//! the table ([`answer`]). A binding therefore cannot publish a small count by mistake: what
//! leaves is what the rules allow, whatever the statement returns.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::disclosure::{
    CountTable, DEFAULT_MAX_CELLS, DEFAULT_MIN_CELL, DEFAULT_MIN_POPULATION, DisclosureRules,
    MAX_DIMENSIONS, PopulationTooSmall, PublishedTable, TableError, check_population, protect,
};

/// The most dimensions a contract may list: a question picks at most [`MAX_DIMENSIONS`] of
/// them.
pub const MAX_LISTED_DIMENSIONS: usize = 16;

/// The most rows a binding's aggregate may have: the combinations of every listed dimension
/// seen in the data. More means a dimension is too fine (a date where a year was meant).
pub const MAX_AGGREGATE_ROWS: usize = 1_000_000;

/// The most values one filter may list.
pub const MAX_FILTER_VALUES: usize = 1_000;

/// The most characters of a dimension's value.
pub const MAX_VALUE_CHARS: usize = 128;

/// What makes a contract a statistics contract: its dimensions and its disclosure rules
/// (PROTOCOL.md §2.6). Absent, not `null`, in any other contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statistics {
    /// The dimensions a question may name or filter on, e.g. `destination`, `sector`, `sex`.
    pub dimensions: Vec<String>,
    /// Counts from 1 to `min_cell - 1` are suppressed; default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cell: Option<u64>,
    /// A question whose filters select fewer people is refused; default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_population: Option<u64>,
    /// Published counts are rounded to a multiple of this base, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_to: Option<NonZeroU64>,
    /// The most cells an answer's table may have; default 100,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cells: Option<u64>,
}

/// What is wrong with a contract's `statistics`.
pub(crate) fn check(stats: &Statistics) -> Result<(), String> {
    if stats.dimensions.is_empty() || stats.dimensions.len() > MAX_LISTED_DIMENSIONS {
        return Err(format!(
            "`dimensions` must list 1 to {MAX_LISTED_DIMENSIONS} dimensions"
        ));
    }
    let mut seen = BTreeSet::new();
    for name in &stats.dimensions {
        if !valid_dimension(name) {
            return Err(format!(
                "dimension `{name}` must be 1 to 64 characters of [a-z0-9_]"
            ));
        }
        if name == COUNT_COLUMN {
            return Err("`count` cannot be a dimension: it is the aggregate's count".into());
        }
        if !seen.insert(name) {
            return Err(format!("dimension `{name}` is listed twice"));
        }
    }
    if stats.min_population == Some(0) {
        return Err(
            "`min_population` must be at least 1: a table of nobody answers nothing".into(),
        );
    }
    if stats.min_cell == Some(0) {
        return Err("`min_cell` must be at least 1 (1 suppresses nothing)".into());
    }
    if let Some(max) = stats.max_cells
        && !(1..=DEFAULT_MAX_CELLS as u64).contains(&max)
    {
        return Err(format!("`max_cells` must be from 1 to {DEFAULT_MAX_CELLS}"));
    }
    Ok(())
}

/// The name of the aggregate's count column.
pub const COUNT_COLUMN: &str = "count";

fn valid_dimension(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Statistics {
    /// The disclosure rules the contract sets, the defaults where it sets none.
    pub fn rules(&self) -> DisclosureRules {
        let mut rules = DisclosureRules::default()
            .with_min_cell(self.min_cell.unwrap_or(DEFAULT_MIN_CELL))
            .with_min_population(self.min_population.unwrap_or(DEFAULT_MIN_POPULATION));
        if let Some(base) = self.round_to {
            rules = rules.with_round_to(base);
        }
        if let Some(max) = self.max_cells.and_then(|m| usize::try_from(m).ok()) {
            rules = rules.with_max_cells(max);
        }
        rules
    }
}

/// A statistics question: the dimensions of the table asked for, in its order, and the
/// values each filtered dimension is kept to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatisticsQuery {
    /// The table's dimensions, from the contract's list, each once.
    pub dimensions: Vec<String>,
    /// Per filtered dimension, the values kept (a row is kept when every filtered dimension
    /// has one of its values).
    pub filters: BTreeMap<String, BTreeSet<String>>,
}

/// Why a question, or a binding's aggregate, cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum StatisticsError {
    /// The question is not one the contract allows (400 `invalid-query`): the pointer into
    /// the query and what is wrong there.
    #[error("{pointer}: {reason}")]
    Query {
        /// JSON pointer into `query`.
        pointer: String,
        /// What is wrong.
        reason: String,
    },
    /// The filters select fewer people than the contract's minimum (422
    /// `population-too-small`).
    #[error(transparent)]
    PopulationTooSmall(#[from] PopulationTooSmall),
    /// The table asked for has more cells than the contract allows (422 `table-too-large`).
    #[error("the table asked for has {cells} cells, the contract allows {limit}")]
    TooManyCells {
        /// Cells of the table asked for.
        cells: u64,
        /// The contract's `max_cells`.
        limit: usize,
    },
    /// The binding's aggregate is not what the contract needs (502 `provider-error`): a
    /// dimension missing, a value too long, counts past 2^64.
    #[error("the binding's aggregate: {0}")]
    Aggregate(String),
}

impl StatisticsQuery {
    /// Reads a query already valid against the contract's request schema, and checks what a
    /// schema cannot: every dimension named is one of `stats`' and named once.
    ///
    /// # Errors
    ///
    /// [`StatisticsError::Query`] naming the place in the query.
    pub fn parse(query: &Value, stats: &Statistics) -> Result<Self, StatisticsError> {
        let wrong = |pointer: String, reason: &str| StatisticsError::Query {
            pointer,
            reason: reason.to_owned(),
        };
        let Some(object) = query.as_object() else {
            return Err(wrong("/query".into(), "must be an object"));
        };
        if let Some(key) = object
            .keys()
            .find(|k| !matches!(k.as_str(), "dimensions" | "filters"))
        {
            return Err(wrong(
                format!("/query/{}", escape(key)),
                "is not a field of a statistics question",
            ));
        }
        let listed = |name: &str| stats.dimensions.iter().any(|d| d == name);
        let Some(asked) = object.get("dimensions").and_then(Value::as_array) else {
            return Err(wrong(
                "/query/dimensions".into(),
                "must be an array of dimension names",
            ));
        };
        if asked.is_empty() || asked.len() > MAX_DIMENSIONS {
            return Err(wrong(
                "/query/dimensions".into(),
                &format!("must name 1 to {MAX_DIMENSIONS} dimensions"),
            ));
        }
        let mut dimensions = Vec::with_capacity(asked.len());
        for (i, name) in asked.iter().enumerate() {
            let pointer = format!("/query/dimensions/{i}");
            let Some(name) = name.as_str().filter(|n| listed(n)) else {
                return Err(wrong(pointer, "is not a dimension of the contract"));
            };
            if dimensions.iter().any(|d| d == name) {
                return Err(wrong(pointer, "is named twice"));
            }
            dimensions.push(name.to_owned());
        }
        let mut filters = BTreeMap::new();
        match object.get("filters") {
            None => {}
            Some(Value::Object(given)) => {
                for (name, values) in given {
                    let pointer = format!("/query/filters/{}", escape(name));
                    if !listed(name) {
                        return Err(wrong(pointer, "is not a dimension of the contract"));
                    }
                    let Some(values) = values.as_array() else {
                        return Err(wrong(pointer, "must be an array of values"));
                    };
                    if values.is_empty() || values.len() > MAX_FILTER_VALUES {
                        return Err(wrong(
                            pointer,
                            &format!("must list 1 to {MAX_FILTER_VALUES} values"),
                        ));
                    }
                    let mut kept = BTreeSet::new();
                    for (i, v) in values.iter().enumerate() {
                        let Some(v) = v.as_str() else {
                            return Err(wrong(format!("{pointer}/{i}"), "must be a string"));
                        };
                        kept.insert(v.to_owned());
                    }
                    filters.insert(name.clone(), kept);
                }
            }
            Some(_) => {
                return Err(wrong(
                    "/query/filters".into(),
                    "must be an object of dimension names to arrays of values",
                ));
            }
        }
        Ok(StatisticsQuery {
            dimensions,
            filters,
        })
    }
}

/// A JSON pointer token for `key` (RFC 6901).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// What a statistics binding returns: its dimensions' names (columns), and one row per
/// combination of their values with its count. A combination may come more than once (its
/// counts are added); one absent counts zero.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AggregateRows {
    /// The dimension of each value in a row's key, in order.
    pub dimensions: Vec<String>,
    /// Each row's key (one value per dimension) and count.
    pub rows: Vec<(Vec<String>, u64)>,
}

/// The protected table answering `query`: [`table`], then protected by `rules`
/// ([`protect`]). The answer is the [`PublishedTable`] as JSON.
///
/// # Errors
///
/// [`StatisticsError`], as [`table`].
pub fn answer(
    query: &StatisticsQuery,
    aggregate: &AggregateRows,
    rules: &DisclosureRules,
) -> Result<PublishedTable, StatisticsError> {
    Ok(protect(&table(query, aggregate, rules)?, rules))
}

/// The true table `query` asks of `aggregate`, before any protection: the rows its filters
/// keep, added up over the dimensions it does not name, refused below the population minimum
/// and over the cell limit.
///
/// # Errors
///
/// [`StatisticsError`]: the population below the minimum, too many cells, or an aggregate
/// without a dimension the query names or filters on.
pub fn table(
    query: &StatisticsQuery,
    aggregate: &AggregateRows,
    rules: &DisclosureRules,
) -> Result<CountTable, StatisticsError> {
    let column = |name: &str| {
        aggregate
            .dimensions
            .iter()
            .position(|d| d == name)
            .ok_or_else(|| {
                StatisticsError::Aggregate(format!("it has no column for dimension `{name}`"))
            })
    };
    let picked: Vec<usize> = query
        .dimensions
        .iter()
        .map(|d| column(d))
        .collect::<Result<_, _>>()?;
    let filters: Vec<(usize, &BTreeSet<String>)> = query
        .filters
        .iter()
        .map(|(d, kept)| Ok((column(d)?, kept)))
        .collect::<Result<_, StatisticsError>>()?;
    let mut cells: BTreeMap<Vec<&str>, u64> = BTreeMap::new();
    let mut population = 0u64;
    for (row, (key, count)) in aggregate.rows.iter().enumerate() {
        if key.len() != aggregate.dimensions.len() {
            return Err(StatisticsError::Aggregate(format!(
                "row {row} has {} values for {} dimensions",
                key.len(),
                aggregate.dimensions.len()
            )));
        }
        if !filters.iter().all(|(c, kept)| kept.contains(&key[*c])) {
            continue;
        }
        let overflow = || StatisticsError::Aggregate("the counts add up past 2^64".into());
        population = population.checked_add(*count).ok_or_else(overflow)?;
        if *count == 0 {
            continue;
        }
        let mut cell = Vec::with_capacity(picked.len());
        for &c in &picked {
            let value = key[c].as_str();
            if value.chars().count() > MAX_VALUE_CHARS {
                return Err(StatisticsError::Aggregate(format!(
                    "a value of `{}` is longer than {MAX_VALUE_CHARS} characters",
                    aggregate.dimensions[c]
                )));
            }
            cell.push(value);
        }
        let sum = cells.entry(cell).or_default();
        *sum = sum.checked_add(*count).ok_or_else(overflow)?;
    }
    check_population(population, rules)?;
    CountTable::new(
        query.dimensions.iter().map(String::as_str),
        cells,
        rules.max_cells(),
    )
    .map_err(|e| match e {
        TableError::TooManyCells { cells, limit } => StatisticsError::TooManyCells { cells, limit },
        other => StatisticsError::Aggregate(other.to_string()),
    })
}

#[cfg(test)]
mod tests;
