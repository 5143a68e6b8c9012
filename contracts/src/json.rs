//! Strict JSON: how every JSON text that comes from outside a gateway is read (PROTOCOL.md,
//! "Encodings used throughout"). On top of RFC 8259 and the nesting bound, a member name
//! appears at most once in each object (RFC 8259 leaves repeated names to the parser, so two
//! implementations could read two different documents from one signed text), and every
//! number is I-JSON (RFC 7493 §2.2): canonical JSON turns numbers into IEEE doubles, so a
//! number a double cannot hold exactly would be changed silently — two identifiers beyond
//! 2^53 would share a cache key and a `subject` hash.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The largest whole number a number may have, in either sign: 2^53 − 1 (RFC 7493 §2.2).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The most characters of a refused member name or number quoted back in an error.
const QUOTED: usize = 40;

/// Why a JSON text was refused.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// Not JSON text (RFC 8259), or nested deeper than 127 levels.
    #[error("not JSON: {0}")]
    Syntax(serde_json::Error),
    /// One object names a member twice.
    #[error("the member name `{0}` appears twice in one object")]
    DuplicateName(String),
    /// A number outside I-JSON.
    #[error(
        "the number `{0}` is not I-JSON: a whole number must be within ±(2^53 − 1) and every number exactly the shortest decimal of a double"
    )]
    Number(String),
    /// Well-formed JSON, but not the document expected.
    #[error("{0}")]
    Shape(serde_json::Error),
}

fn quoted(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(QUOTED)
        .flat_map(char::escape_debug)
        .collect();
    if s.chars().count() > QUOTED {
        out.push('…');
    }
    out
}

/// Reads `bytes` as strict JSON into `T`.
///
/// # Errors
/// [`JsonError`]: not JSON, a member name twice, a number outside I-JSON, or not a `T`.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    serde_json::from_value(value_from_slice(bytes)?).map_err(JsonError::Shape)
}

/// Reads `bytes` as strict JSON.
///
/// # Errors
/// As [`from_slice`], but for the shape.
pub fn value_from_slice(bytes: &[u8]) -> Result<Value, JsonError> {
    let value = value_without_repeated_names(bytes)?;
    check_number_literals(bytes)?;
    Ok(value)
}

/// Reads `bytes` as JSON in which no object names a member twice, whatever its numbers: for
/// a document a gateway only takes values from (an upstream API's answer, which may carry
/// large identifiers in members no contract maps) rather than one it signs or verifies. The
/// values taken are checked with [`check_numbers`] when they become an answer.
///
/// # Errors
/// [`JsonError`]: not JSON, or a member name twice.
pub fn value_without_repeated_names(bytes: &[u8]) -> Result<Value, JsonError> {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict { found: &found }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    let value = match value {
        Ok(value) => value,
        Err(e) => return Err(found.into_inner().unwrap_or(JsonError::Syntax(e))),
    };
    Ok(value)
}

/// Checks that every number in `value` is I-JSON as far as a parsed value still tells: its
/// magnitude, if it is a whole number. For values a gateway makes itself (an adapter's
/// result) rather than reads.
///
/// # Errors
/// [`JsonError::Number`] naming the first number beyond ±(2^53 − 1).
pub fn check_numbers(value: &Value) -> Result<(), JsonError> {
    match value {
        Value::Number(n) => {
            let safe = if let Some(u) = n.as_u64() {
                u <= MAX_SAFE_INTEGER
            } else if let Some(i) = n.as_i64() {
                i.unsigned_abs() <= MAX_SAFE_INTEGER
            } else {
                n.as_f64()
                    .is_some_and(|f| f.fract() != 0.0 || f.abs() <= MAX_SAFE_INTEGER as f64)
            };
            if safe {
                Ok(())
            } else {
                Err(JsonError::Number(quoted(&n.to_string())))
            }
        }
        Value::Array(items) => items.iter().try_for_each(check_numbers),
        Value::Object(members) => members.values().try_for_each(check_numbers),
        _ => Ok(()),
    }
}

/// Checks each number literal of a text already known to be JSON, as written.
fn check_number_literals(text: &[u8]) -> Result<(), JsonError> {
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                i += 1;
                while i < text.len() {
                    match text[i] {
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < text.len()
                    && matches!(text[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                // ASCII only, by the loop above.
                let literal = std::str::from_utf8(&text[start..i]).unwrap_or_default();
                if !is_i_json(literal) {
                    return Err(JsonError::Number(quoted(literal)));
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Whether a JSON number literal is I-JSON: a whole-number value within ±(2^53 − 1), and a
/// decimal value that is exactly the shortest decimal of the double nearest to it (so reading
/// it as a double, as canonical JSON does, loses nothing).
fn is_i_json(literal: &str) -> bool {
    // A whole number written without a fraction or an exponent (the timestamps and versions
    // of every envelope): within ±(2^53 − 1) every one is a double exactly, and JSON allows
    // no leading zeros, so it is its double's shortest decimal; decided without the
    // comparison below, which allocates.
    let digits = literal.strip_prefix('-').unwrap_or(literal);
    if !digits.is_empty() && digits.len() <= 16 && digits.bytes().all(|b| b.is_ascii_digit()) {
        return digits.parse::<u64>().is_ok_and(|n| n <= MAX_SAFE_INTEGER);
    }
    let Ok(value) = literal.parse::<f64>() else {
        return false;
    };
    if !value.is_finite() || (value.fract() == 0.0 && value.abs() > MAX_SAFE_INTEGER as f64) {
        return false;
    }
    match (decimal(literal), decimal(&format!("{value:e}"))) {
        (Some(written), Some(double)) => written == double,
        _ => false,
    }
}

/// A decimal number as (negative, significant digits, position of the decimal point
/// relative to the first digit); zero is `(false, "", 0)` whatever its sign or exponent.
fn decimal(text: &str) -> Option<(bool, String, i64)> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], &unsigned[at + 1..]),
        None => (unsigned, "0"),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = whole.chars().chain(fraction.chars()).collect();
    let leading = digits.len() - digits.trim_start_matches('0').len();
    let significant = digits.trim_matches('0');
    if significant.is_empty() {
        return Some((false, String::new(), 0));
    }
    let exponent: i64 = exponent
        .strip_prefix('+')
        .unwrap_or(exponent)
        .parse()
        .ok()?;
    let point = (whole.len() as i64)
        .checked_sub(leading as i64)?
        .checked_add(exponent)?;
    Some((negative, significant.to_owned(), point))
}

/// A `Value` deserializer that refuses a repeated member name.
struct Strict<'a> {
    found: &'a RefCell<Option<JsonError>>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict { found: self.found })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                let e = JsonError::DuplicateName(quoted(&name));
                let message = e.to_string();
                *self.found.borrow_mut() = Some(e);
                return Err(de::Error::custom(message));
            }
            let value = map.next_value_seed(Strict { found: self.found })?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(text: &str) -> Result<Value, JsonError> {
        value_from_slice(text.as_bytes())
    }

    #[test]
    fn json_without_repeats_or_big_numbers_reads_as_serde_json_does() {
        for text in [
            r#"{"a": 1, "b": [true, null, "x", {"a": 2}], "c": -0.5e-3}"#,
            "[]",
            "\"\\\"1e999\\\"\"",
            "0",
            "-0",
            "4.50",
            "2.5e-3",
            "1e-7",
            "0.1",
            "9007199254740991",
            "-9007199254740991",
            "2.2250738585072014e-308",
            "5e-324",
        ] {
            let want: Value = serde_json::from_str(text).unwrap();
            assert_eq!(read(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn a_member_name_given_twice_is_refused_at_any_depth() {
        for text in [
            r#"{"a": 1, "a": 1}"#,
            r#"{"a": 1, "b": {"c": 1, "c": 2}}"#,
            r#"[{"x": [ {"n": 1, "n": 1} ]}]"#,
            // The same name escaped differently is the same name.
            r#"{"nik": "1", "\u006eik": "2"}"#,
        ] {
            assert!(
                matches!(read(text), Err(JsonError::DuplicateName(_))),
                "{text}"
            );
        }
    }

    /// The comparison `is_i_json` makes for every literal, without its shortcut for whole
    /// numbers.
    fn i_json_by_comparison(literal: &str) -> bool {
        let Ok(value) = literal.parse::<f64>() else {
            return false;
        };
        value.is_finite()
            && !(value.fract() == 0.0 && value.abs() > MAX_SAFE_INTEGER as f64)
            && decimal(literal).is_some()
            && decimal(literal) == decimal(&format!("{value:e}"))
    }

    #[test]
    fn whole_numbers_are_decided_as_the_comparison_decides_them() {
        let mut literals: Vec<String> = ["0", "-0", "7", "-7", "1796000000", "9007199254740990"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for edge in [MAX_SAFE_INTEGER - 1, MAX_SAFE_INTEGER, MAX_SAFE_INTEGER + 1] {
            literals.push(edge.to_string());
            literals.push(format!("-{edge}"));
        }
        for n in (0..64).map(|shift| 1u64 << shift) {
            literals.push(n.to_string());
            literals.push((n - 1).to_string());
            literals.push(format!("-{n}"));
        }
        literals.push("99999999999999999999".into());
        for literal in &literals {
            assert_eq!(
                is_i_json(literal),
                i_json_by_comparison(literal),
                "{literal}"
            );
        }
    }

    #[test]
    fn numbers_outside_i_json_are_refused() {
        for text in [
            "9007199254740992",
            "-9007199254740992",
            "9007199254740993",
            "18446744073709551616",
            r#"{"id": 12345678901234567890}"#,
            "1e300",
            "9007199254740992.0",
            "0.10000000000000001",
            "333333333.33333329",
            "1e400",
        ] {
            assert!(
                matches!(
                    read(text),
                    Err(JsonError::Number(_)) | Err(JsonError::Syntax(_))
                ),
                "{text}"
            );
        }
        assert!(matches!(
            read(r#"{"n": 9007199254740993}"#),
            Err(JsonError::Number(n)) if n == "9007199254740993"
        ));
    }

    #[test]
    fn numbers_inside_strings_are_text() {
        assert!(read(r#"{"nik": "99999999999999999999", "e": "\\"}"#).is_ok());
    }

    #[test]
    fn the_shape_is_checked_after_the_text() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Doc {
            a: u32,
        }
        assert!(from_slice::<Doc>(br#"{"a": 1}"#).is_ok());
        assert!(matches!(
            from_slice::<Doc>(br#"{"a": 1, "b": 2}"#),
            Err(JsonError::Shape(_))
        ));
        assert!(matches!(
            from_slice::<Doc>(br#"{"a": 1, "a": 1}"#),
            Err(JsonError::DuplicateName(_))
        ));
        assert!(matches!(
            from_slice::<Doc>(b"{\"a\": 1} x"),
            Err(JsonError::Syntax(_))
        ));
    }

    #[test]
    fn nesting_is_bounded_as_serde_json_bounds_it() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(read(&deep(127)).is_ok());
        assert!(matches!(read(&deep(128)), Err(JsonError::Syntax(_))));
    }

    #[test]
    fn values_made_here_are_checked_by_magnitude() {
        assert!(check_numbers(&json!({"a": [1, -2, 0.5, 9007199254740991_u64]})).is_ok());
        for bad in [
            json!(9007199254740992_u64),
            json!([-9007199254740992_i64]),
            json!({"x": 1e300}),
        ] {
            assert!(
                matches!(check_numbers(&bad), Err(JsonError::Number(_))),
                "{bad}"
            );
        }
    }
}
