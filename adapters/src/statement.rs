//! Named parameters (`:nik`) in a configured statement, turned into the positional
//! placeholders of the backend's dialect — a batch's list parameter into a fixed number of
//! them.
//!
//! Values are always bound, never spliced into SQL: the statement text is fixed at
//! configuration time and only the parameter list varies.

use crate::AdapterConfigError;

/// How a backend writes positional parameters, and which of its lexical quirks matter when
/// looking for `:name` outside strings and comments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `?` placeholders; `'…'`, `"…"` and `` `…` `` quoting.
    Sqlite,
    /// `$1…$n` placeholders (a name used twice reuses its number, so both uses have one
    /// type); also `E'…'` strings with backslash escapes and `$tag$…$tag$` dollar quoting.
    Postgres,
    /// `?` placeholders; backslash escapes inside quotes and `#` comments.
    MySql,
}

/// A statement with its named parameters replaced by positional placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedText {
    /// SQL with the dialect's placeholders.
    pub sql: String,
    /// The parameter names in bind order: for `?`, one per placeholder (a name used twice
    /// appears twice); for `$n`, name `n - 1`.
    pub params: Vec<String>,
}

fn refuse(reason: &str) -> AdapterConfigError {
    AdapterConfigError::new("statement", reason)
}

/// The end (exclusive) of a quoted run starting at `start`, where `bytes[start]` is the
/// quote. With `backslash`, `\x` escapes the next byte.
fn quote_end(bytes: &[u8], start: usize, backslash: bool) -> Result<usize, AdapterConfigError> {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if backslash => i += 2,
            b if b == quote => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(refuse("unterminated quote"))
}

/// A PostgreSQL dollar-quote tag (`$$` or `$tag$`) starting at `start`, if there is one.
fn dollar_tag(statement: &str, start: usize) -> Option<&str> {
    let rest = &statement[start + 1..];
    let len = rest
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    let tag_body = &rest[..len];
    if rest.as_bytes().get(len) == Some(&b'$')
        && !tag_body.starts_with(|c: char| c.is_ascii_digit())
    {
        Some(&statement[start..start + len + 2])
    } else {
        None
    }
}

/// Rewrites `:name` placeholders to the dialect's positional ones, skipping quoted strings,
/// quoted identifiers and comments, and leaving `::` (a PostgreSQL cast) alone. Positional
/// placeholders written by hand are refused: a binding names what it binds.
pub fn prepare(statement: &str, dialect: Dialect) -> Result<PreparedText, AdapterConfigError> {
    rewrite(statement, dialect, None)
}

/// A list parameter expanded in place: its name, and how many placeholders it stands for.
#[derive(Clone, Copy)]
struct List<'a> {
    name: &'a str,
    count: usize,
}

/// [`prepare`] for a statement whose one parameter, `:list`, is the whole list of an
/// `IN (…)`: it becomes `count` placeholders (`?, ?, …` or `$1, $2, …`), and `params` names
/// `list` once per placeholder. Any other parameter, `:list` used more than once or not
/// alone between the parentheses of an `IN`, is refused.
pub fn prepare_list(
    statement: &str,
    dialect: Dialect,
    list: &str,
    count: usize,
) -> Result<PreparedText, AdapterConfigError> {
    if count == 0 {
        return Err(refuse("a list parameter stands for at least one value"));
    }
    let prepared = rewrite(statement, dialect, Some(List { name: list, count }))?;
    if let Some(other) = prepared.params.iter().find(|p| *p != list) {
        return Err(refuse(&format!(
            "a batch statement has one parameter, `:{list}`, and no other (`:{other}`)"
        )));
    }
    match prepared.params.len() / count {
        1 => Ok(prepared),
        0 => Err(refuse(&format!(
            "a batch statement looks its keys up with `IN (:{list})`"
        ))),
        _ => Err(refuse(&format!(
            "a batch statement uses `:{list}` once, in `IN (:{list})`"
        ))),
    }
}

/// Whether the `:name` at `rest` stands alone inside `IN (…)`: `sql`, the text before it,
/// ends with `IN (` (the `IN` a word of its own), and `rest`, the text after it, starts with
/// `)`; spaces and line breaks may come between.
fn alone_in_in_list(sql: &str, rest: &str) -> bool {
    let Some(before) = sql.trim_end().strip_suffix('(') else {
        return false;
    };
    let before = before.trim_end();
    let Some(in_at) = before.len().checked_sub(2) else {
        return false;
    };
    before.is_char_boundary(in_at)
        && before[in_at..].eq_ignore_ascii_case("in")
        && before[..in_at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
        && rest.trim_start().starts_with(')')
}

fn rewrite(
    statement: &str,
    dialect: Dialect,
    list: Option<List<'_>>,
) -> Result<PreparedText, AdapterConfigError> {
    let bytes = statement.as_bytes();
    let mut sql = String::with_capacity(statement.len());
    let mut params: Vec<String> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let prev_is_word = i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        match c {
            b'\'' | b'"' | b'`' => {
                let backslash = match dialect {
                    Dialect::MySql => c != b'`',
                    // E'…' (escape string): the E must start a token, not end an identifier.
                    Dialect::Postgres => {
                        c == b'\''
                            && i > 0
                            && matches!(bytes[i - 1], b'E' | b'e')
                            && !(i > 1
                                && (bytes[i - 2].is_ascii_alphanumeric() || bytes[i - 2] == b'_'))
                    }
                    Dialect::Sqlite => false,
                };
                let end = quote_end(bytes, i, backslash)?;
                sql.push_str(&statement[i..end]);
                i = end;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                let end = statement[i..].find('\n').map_or(bytes.len(), |p| i + p);
                sql.push_str(&statement[i..end]);
                i = end;
            }
            b'#' if dialect == Dialect::MySql => {
                let end = statement[i..].find('\n').map_or(bytes.len(), |p| i + p);
                sql.push_str(&statement[i..end]);
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = statement[i + 2..]
                    .find("*/")
                    .map(|p| i + 2 + p + 2)
                    .ok_or_else(|| refuse("unterminated comment"))?;
                sql.push_str(&statement[i..end]);
                i = end;
            }
            b'$' if dialect == Dialect::Postgres && !prev_is_word => {
                if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    return Err(refuse("use named parameters (:name), not `$1`"));
                }
                match dollar_tag(statement, i) {
                    Some(tag) => {
                        let body = i + tag.len();
                        let end = statement[body..]
                            .find(tag)
                            .map(|p| body + p + tag.len())
                            .ok_or_else(|| refuse("unterminated dollar-quoted string"))?;
                        sql.push_str(&statement[i..end]);
                        i = end;
                    }
                    None => {
                        sql.push('$');
                        i += 1;
                    }
                }
            }
            b':' if bytes.get(i + 1) == Some(&b':') => {
                sql.push_str("::");
                i += 2;
            }
            b':' if bytes
                .get(i + 1)
                .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') =>
            {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_')
                {
                    end += 1;
                }
                let name = &statement[start..end];
                if let Some(list) = list.filter(|l| l.name == name) {
                    if !alone_in_in_list(&sql, &statement[end..]) {
                        return Err(refuse(&format!(
                            "`:{name}` is a list: write it alone inside `IN (…)`"
                        )));
                    }
                    let first = params.len() + 1;
                    for k in 0..list.count {
                        if k > 0 {
                            sql.push_str(", ");
                        }
                        params.push(name.to_owned());
                        match dialect {
                            Dialect::Sqlite | Dialect::MySql => sql.push('?'),
                            Dialect::Postgres => {
                                sql.push('$');
                                sql.push_str(&(first + k).to_string());
                            }
                        }
                    }
                    i = end;
                    continue;
                }
                match dialect {
                    Dialect::Sqlite | Dialect::MySql => {
                        params.push(name.to_owned());
                        sql.push('?');
                    }
                    Dialect::Postgres => {
                        let n = match params.iter().position(|p| p == name) {
                            Some(k) => k + 1,
                            None => {
                                params.push(name.to_owned());
                                params.len()
                            }
                        };
                        sql.push('$');
                        sql.push_str(&n.to_string());
                    }
                }
                i = end;
            }
            // In PostgreSQL `?` is a jsonb operator, not a placeholder; elsewhere it is one.
            b'?' if dialect != Dialect::Postgres => {
                return Err(refuse("use named parameters (:name), not `?`"));
            }
            _ => {
                // `i` is always on a character boundary: every arm above advances over
                // ASCII bytes or whole quoted runs.
                let ch = statement[i..].chars().next().unwrap_or_default();
                sql.push(ch);
                i += ch.len_utf8().max(1);
            }
        }
    }
    Ok(PreparedText { sql, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "SELECT a FROM t WHERE nik = :nik AND x = ':no' AND y = :nik -- :no\n AND z::text = :z_1";

    #[test]
    fn named_parameters_become_question_marks() {
        for dialect in [Dialect::Sqlite, Dialect::MySql] {
            let p = prepare(TEXT, dialect).unwrap();
            assert_eq!(
                p.sql,
                "SELECT a FROM t WHERE nik = ? AND x = ':no' AND y = ? -- :no\n AND z::text = ?"
            );
            assert_eq!(p.params, ["nik", "nik", "z_1"]);
        }
    }

    #[test]
    fn named_parameters_become_numbered_for_postgres_and_reuse_their_number() {
        let p = prepare(TEXT, Dialect::Postgres).unwrap();
        assert_eq!(
            p.sql,
            "SELECT a FROM t WHERE nik = $1 AND x = ':no' AND y = $1 -- :no\n AND z::text = $2"
        );
        assert_eq!(p.params, ["nik", "z_1"]);
    }

    #[test]
    fn dialect_quoting_hides_names() {
        let p = prepare(
            r"SELECT 'it''s :a', E'\' :b', $$ :c $$, $q$ :d $q$, x$y FROM t WHERE k = :k",
            Dialect::Postgres,
        )
        .unwrap();
        assert_eq!(p.params, ["k"]);
        assert!(p.sql.ends_with("k = $1"), "{}", p.sql);
        let p = prepare(
            "SELECT 'it\\'s :a' # :b\n FROM t WHERE k = :k",
            Dialect::MySql,
        )
        .unwrap();
        assert_eq!(p.params, ["k"]);
        // SQLite has no backslash escapes: 'it\' ends the string and :a is a parameter.
        let p = prepare("SELECT 'it\\' || :a", Dialect::Sqlite).unwrap();
        assert_eq!(p.params, ["a"]);
    }

    #[test]
    fn a_list_parameter_becomes_a_fixed_number_of_placeholders() {
        let text = "SELECT nik FROM t WHERE x = ':nik' AND nik IN ( :nik\n) -- :nik";
        for (dialect, list) in [
            (Dialect::Sqlite, "?, ?, ?"),
            (Dialect::MySql, "?, ?, ?"),
            (Dialect::Postgres, "$1, $2, $3"),
        ] {
            let p = prepare_list(text, dialect, "nik", 3).unwrap();
            assert_eq!(
                p.sql,
                format!("SELECT nik FROM t WHERE x = ':nik' AND nik IN ( {list}\n) -- :nik")
            );
            assert_eq!(p.params, ["nik", "nik", "nik"]);
        }
        let p = prepare_list("SELECT 1 FROM t WHERE k in(:k)", Dialect::Sqlite, "k", 1).unwrap();
        assert_eq!(p.sql, "SELECT 1 FROM t WHERE k in(?)");
    }

    #[test]
    fn a_list_parameter_must_be_the_one_parameter_used_once_inside_in() {
        for (dialect, text) in [
            (
                Dialect::Sqlite,
                "SELECT 1 FROM t WHERE k IN (:k) AND x = :x",
            ),
            (
                Dialect::Postgres,
                "SELECT 1 FROM t WHERE k IN (:k) AND x = :x",
            ),
            (Dialect::Sqlite, "SELECT 1 FROM t WHERE k = 1"),
            (
                Dialect::Sqlite,
                "SELECT 1 FROM t WHERE k IN (:k) OR j IN (:k)",
            ),
            (
                Dialect::Postgres,
                "SELECT 1 FROM t WHERE k IN (:k) OR j IN (:k)",
            ),
            (Dialect::Sqlite, "SELECT 1 FROM t WHERE k = :k"),
            (Dialect::Sqlite, "SELECT 1 FROM t WHERE k IN (:k, 'x')"),
            (Dialect::Sqlite, "SELECT 1 FROM t WHERE k IN ('x', :k)"),
            (Dialect::Sqlite, "SELECT 1 FROM t WHERE k JOIN (:k)"),
            (Dialect::MySql, "SELECT 1 FROM t WHERE k IN :k"),
        ] {
            let e = prepare_list(text, dialect, "k", 4).unwrap_err();
            assert_eq!(e.field, "statement", "{text}");
        }
        assert!(prepare_list("SELECT 1 FROM t WHERE k IN (:k)", Dialect::Sqlite, "k", 0).is_err());
    }

    #[test]
    fn positional_and_unterminated_are_refused() {
        assert!(prepare("SELECT ? ", Dialect::Sqlite).is_err());
        assert!(prepare("SELECT ? ", Dialect::MySql).is_err());
        assert!(prepare("SELECT $1", Dialect::Postgres).is_err());
        assert!(prepare("SELECT doc ? 'key' FROM t", Dialect::Postgres).is_ok());
        assert!(prepare("SELECT 'x", Dialect::Sqlite).is_err());
        assert!(prepare("SELECT /* x", Dialect::Sqlite).is_err());
        assert!(prepare("SELECT $a$ x", Dialect::Postgres).is_err());
    }
}
