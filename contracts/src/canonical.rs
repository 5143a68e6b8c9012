//! RFC 8785 canonical JSON, SHA-256 digests and base64url, the way every hash on the wire
//! is computed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

mod writer;

/// RFC 8785 (JCS) canonical form of a JSON value.
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(128);
    writer::write(value, &mut out)?;
    Ok(out)
}

/// Appends the RFC 8785 (JCS) canonical form of `value` to `out`, for a caller that hashes
/// it after a prefix of its own or reuses one buffer; on error `out` holds part of it.
pub fn write_canonical_json<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), serde_json::Error> {
    writer::write(value, out)
}

/// SHA-256 of the concatenation of `parts`, without joining them first.
pub fn sha256_of(parts: &[&[u8]]) -> [u8; 32] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in parts {
        context.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; `None` on anything else.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// base64url SHA-256 of `bytes`: the form of `request_hash` and of contract digests.
pub fn sha256_b64url(bytes: &[u8]) -> String {
    b64url(&sha256(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn jcs(text: &str) -> String {
        let v: Value = serde_json::from_str(text).unwrap();
        String::from_utf8(canonical_json(&v).unwrap()).unwrap()
    }

    // RFC 8785 §3.2.2 (sorting and whitespace) and §3.2.2.3 / Appendix B (numbers).
    #[test]
    fn rfc8785_examples() {
        assert_eq!(
            jcs(
                r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
                   "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
                   "literals": [null, true, false]}"#
            ),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
        // §3.2.3: properties sorted by UTF-16 code units, not by UTF-8 bytes.
        assert_eq!(
            jcs(
                r#"{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
                   "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}"#
            ),
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
        // Appendix B samples.
        for (input, want) in [
            ("0", "0"),
            ("-0", "0"),
            ("1e21", "1e+21"),
            ("1e-7", "1e-7"),
            ("123456789012345680000", "123456789012345680000"),
            ("9007199254740992", "9007199254740992"),
            ("295147905179352830000", "295147905179352830000"),
            ("0.000001", "0.000001"),
        ] {
            assert_eq!(jcs(input), want, "number {input}");
        }
    }

    /// Both writers' output for `value`: this module's, and that of serde_json_canonicalizer,
    /// the RFC 8785 implementation it replaced, kept as the oracle.
    fn both<T: Serialize>(value: &T) -> (String, String) {
        let ours = canonical_json(value).map(|b| String::from_utf8(b).unwrap());
        let theirs = serde_json_canonicalizer::to_vec(value).map(|b| String::from_utf8(b).unwrap());
        match (ours, theirs) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(_), Err(_)) => (String::new(), String::new()),
            (a, b) => panic!("one writer failed: ours {a:?}, theirs {b:?}"),
        }
    }

    /// A pseudo-random JSON value of `depth` levels from `state` (xorshift: no dependency),
    /// with the names and strings JCS orders and escapes with care.
    fn random_value(state: &mut u64, depth: u32) -> Value {
        fn next(state: &mut u64) -> u64 {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            *state
        }
        const TEXTS: &[&str] = &[
            "",
            "a",
            "A",
            "nik",
            "\u{20ac}",
            "\u{1f600}",
            "\u{fb33}",
            "\u{e000}",
            "\u{ffff}",
            "\r",
            "\u{7f}",
            "\u{0}",
            "\u{1f}",
            "q\"uote",
            "back\\slash",
            "/",
            "\u{80}",
            "ö",
            "1",
            "10",
            "\u{10000}",
            "tab\there",
        ];
        let text = |state: &mut u64| TEXTS[(next(state) % TEXTS.len() as u64) as usize].to_owned();
        match next(state) % if depth == 0 { 6 } else { 8 } {
            0 => Value::Null,
            1 => Value::Bool(next(state).is_multiple_of(2)),
            2 => Value::from(next(state) as i64 >> (next(state) % 64)),
            3 => Value::from(next(state) >> (next(state) % 64)),
            4 => match f64::from_bits(next(state)) {
                f if f.is_finite() => Value::from(f),
                _ => Value::from(0.5),
            },
            5 => Value::String(text(state)),
            6 => Value::Array(
                (0..next(state) % 5)
                    .map(|_| random_value(state, depth - 1))
                    .collect(),
            ),
            _ => Value::Object(
                (0..next(state) % 6)
                    .map(|_| (text(state), random_value(state, depth - 1)))
                    .collect(),
            ),
        }
    }

    #[test]
    fn the_writer_agrees_with_the_reference_implementation_on_random_values() {
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let v = random_value(&mut state, 4);
            let (ours, theirs) = both(&v);
            assert_eq!(ours, theirs, "value {v}");
        }
    }

    #[derive(Serialize)]
    enum Shape {
        Unit,
        Newtype(u32),
        Tuple(i8, String),
        Struct { z: bool, a: Option<f32> },
    }

    #[derive(Serialize)]
    struct Typed {
        zeta: u64,
        alpha: i128,
        shapes: Vec<Shape>,
        bytes: serde_bytes_like::Bytes,
        map: std::collections::BTreeMap<i64, char>,
        flags: std::collections::BTreeMap<bool, ()>,
        #[serde(rename = "\u{20ac}")]
        euro: Option<String>,
        tuple: (u8, f64),
    }

    mod serde_bytes_like {
        /// A byte string serialised as serde's bytes, as `serde_bytes` would.
        pub struct Bytes(pub Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }

    #[test]
    fn the_writer_agrees_with_the_reference_implementation_on_serde_s_data_model() {
        let typed = Typed {
            zeta: u64::MAX,
            alpha: -(1 << 70),
            shapes: vec![
                Shape::Unit,
                Shape::Newtype(7),
                Shape::Tuple(-3, "\u{1}".into()),
                Shape::Struct {
                    z: true,
                    a: Some(0.1),
                },
                Shape::Struct { z: false, a: None },
            ],
            bytes: serde_bytes_like::Bytes(vec![0, 255, 16]),
            map: [(10, 'x'), (-2, '"'), (9_007_199_254_740_993, '\u{1f600}')].into(),
            flags: [(true, ()), (false, ())].into(),
            euro: Some("euro".into()),
            tuple: (1, 1e21),
        };
        let (ours, theirs) = both(&typed);
        assert_eq!(ours, theirs);
        assert!(
            ours.starts_with("{\"alpha\":-1.1805916207174113e+21,\"bytes\":[0,255,16],"),
            "{ours}"
        );
    }

    #[test]
    fn what_json_cannot_hold_is_refused() {
        assert!(canonical_json(&f64::NAN).is_err());
        assert!(canonical_json(&[f64::INFINITY]).is_err());
        assert!(canonical_json(&std::collections::BTreeMap::from([((1, 2), 3)])).is_err());
        // serde's derive with a flattened map can name a member twice.
        #[derive(Serialize)]
        struct Twice {
            a: u8,
            #[serde(flatten)]
            rest: std::collections::BTreeMap<String, u8>,
        }
        let twice = Twice {
            a: 1,
            rest: [("a".to_owned(), 2)].into(),
        };
        assert!(canonical_json(&twice).is_err());
        assert!(serde_json_canonicalizer::to_vec(&twice).is_err());
    }

    #[test]
    fn a_digest_of_parts_is_the_digest_of_their_concatenation() {
        assert_eq!(sha256_of(&[b"a", b"", b"bc"]), sha256(b"abc"));
    }

    #[test]
    fn sha256_is_the_standard_one() {
        assert_eq!(
            sha256_b64url(b"abc"),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
    }
}
