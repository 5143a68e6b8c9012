//! Named parameters (`:nik`) in a configured statement, turned into positional ones.
//!
//! Values are always bound, never spliced into SQL: the statement text is fixed at
//! configuration time and only the parameter list varies.

use crate::AdapterConfigError;

/// A statement with its named parameters replaced by positional placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedText {
    /// SQL with `?` placeholders.
    pub sql: String,
    /// The parameter names, in placeholder order (a name used twice appears twice).
    pub params: Vec<String>,
}

/// Rewrites `:name` placeholders to `?`, skipping quoted strings, quoted identifiers and
/// comments, and leaving `::` (a PostgreSQL cast) alone.
pub fn prepare(statement: &str) -> Result<PreparedText, AdapterConfigError> {
    let bytes = statement.as_bytes();
    let mut sql = String::with_capacity(statement.len());
    let mut params = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\'' | b'"' | b'`' => {
                let end = statement[i + 1..]
                    .find(c as char)
                    .map(|p| i + 1 + p + 1)
                    .ok_or_else(|| AdapterConfigError::new("statement", "unterminated quote"))?;
                sql.push_str(&statement[i..end]);
                i = end;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                let end = statement[i..]
                    .find('\n')
                    .map(|p| i + p)
                    .unwrap_or(bytes.len());
                sql.push_str(&statement[i..end]);
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = statement[i + 2..]
                    .find("*/")
                    .map(|p| i + 2 + p + 2)
                    .ok_or_else(|| AdapterConfigError::new("statement", "unterminated comment"))?;
                sql.push_str(&statement[i..end]);
                i = end;
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
                params.push(statement[start..end].to_owned());
                sql.push('?');
                i = end;
            }
            b'?' => {
                return Err(AdapterConfigError::new(
                    "statement",
                    "use named parameters (:name), not `?`",
                ));
            }
            _ => {
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

    #[test]
    fn named_parameters_become_positional() {
        let p = prepare("SELECT a FROM t WHERE nik = :nik AND x = ':no' AND y = :nik -- :no\n AND z::text = :z_1").unwrap();
        assert_eq!(
            p.sql,
            "SELECT a FROM t WHERE nik = ? AND x = ':no' AND y = ? -- :no\n AND z::text = ?"
        );
        assert_eq!(p.params, ["nik", "nik", "z_1"]);
    }

    #[test]
    fn positional_and_unterminated_are_refused() {
        assert!(prepare("SELECT ? ").is_err());
        assert!(prepare("SELECT 'x").is_err());
        assert!(prepare("SELECT /* x").is_err());
    }
}
