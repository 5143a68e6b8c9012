//! The `identity-verdicts` rule of the SQL adapter's batch mode: one item of an
//! `identity.verify` query and the registry's row for its NIK (or none) made into that item's
//! verdicts, which carry no registry value itself.

use contracts::names::{self, NameMatch};
use contracts::nik;
use serde_json::{Map, Value};

use crate::sql::ColumnType;

/// The item field the rule reads the NIK from, and the column rows are matched by.
pub(crate) const KEY: &str = "nik";

/// The registry columns the rule reads, each with the kind it is read as.
pub(crate) const COLUMNS: [(&str, ColumnType); 6] = [
    ("nik", ColumnType::Text),
    ("full_name", ColumnType::Text),
    ("birth_date", ColumnType::Text),
    ("sex", ColumnType::Text),
    ("citizenship", ColumnType::Text),
    ("deceased", ColumnType::Bool),
];

/// Whether a reported NIK is looked up at all: only one the NIK rule accepts.
pub(crate) fn looks_up(nik: &str) -> bool {
    nik::check(nik).is_ok()
}

/// The verdicts on `item` (`ref`, `nik`, and optionally `full_name`, `birth_date`, `sex`)
/// given `row`, the registry's row for its NIK when one was found (`full_name`,
/// `birth_date`, `sex`, `citizenship`, `deceased`; a NULL column absent).
///
/// - `nik_valid`: the NIK rule; `found`: a row, for a valid NIK.
/// - `name`: [`names::compare`] of the reported and registered names — `match` (similarity
///   1), `close` or `mismatch` with `name_similarity`, rounded down to three decimals so a
///   mismatch never shows the 0.9 of a close name; `not_checked` (and no similarity) when
///   either name is missing.
/// - `birth_date`, `sex`: `match` or `mismatch` of the trimmed `YYYY-MM-DD` texts, and of `M`
///   or `F` (either case); `not_checked` when either side is missing or not of that form.
/// - `citizenship`: the row's `WNI` or `WNA`, else `unknown`; `deceased`: the row's, else
///   false.
pub(crate) fn identity(item: &Map<String, Value>, row: Option<&Map<String, Value>>) -> Value {
    let nik_valid = item.get(KEY).and_then(Value::as_str).is_some_and(looks_up);
    let row = row.filter(|_| nik_valid);
    let reported = |field: &str| text(Some(item), field);
    let registered = |field: &str| text(row, field);

    let mut out = Map::new();
    if let Some(reference) = item.get("ref") {
        out.insert("ref".into(), reference.clone());
    }
    out.insert("nik_valid".into(), nik_valid.into());
    out.insert("found".into(), row.is_some().into());
    match (reported("full_name"), registered("full_name")) {
        (Some(asked), Some(held)) => {
            let (verdict, similarity) = match names::compare(asked, held) {
                NameMatch::Match => ("match", 1.0),
                NameMatch::Close(s) => ("close", round_down(s)),
                NameMatch::Mismatch(s) => ("mismatch", round_down(s)),
            };
            out.insert("name".into(), verdict.into());
            out.insert("name_similarity".into(), similarity.into());
        }
        _ => {
            out.insert("name".into(), "not_checked".into());
        }
    }
    let date = |field| reported(field).zip(registered(field));
    out.insert(
        "birth_date".into(),
        same(date("birth_date").filter(|(a, b)| is_date(a) && is_date(b))).into(),
    );
    let sex = |value: Option<&str>| {
        value.and_then(|v| ["M", "F"].into_iter().find(|s| v.eq_ignore_ascii_case(s)))
    };
    out.insert(
        "sex".into(),
        same(sex(reported("sex")).zip(sex(registered("sex")))).into(),
    );
    let citizenship = registered("citizenship")
        .and_then(|c| {
            ["WNI", "WNA"]
                .into_iter()
                .find(|k| c.eq_ignore_ascii_case(k))
        })
        .unwrap_or("unknown");
    out.insert("citizenship".into(), citizenship.into());
    let deceased = row
        .and_then(|r| r.get("deceased"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    out.insert("deceased".into(), deceased.into());
    Value::Object(out)
}

/// A field's text, trimmed, when it is a non-empty string.
fn text<'a>(from: Option<&'a Map<String, Value>>, field: &str) -> Option<&'a str> {
    from?
        .get(field)?
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// `match` or `mismatch` for a pair of values, `not_checked` for none.
fn same(pair: Option<(&str, &str)>) -> &'static str {
    match pair {
        Some((a, b)) if a == b => "match",
        Some(_) => "mismatch",
        None => "not_checked",
    }
}

/// `YYYY-MM-DD` in form (digits and dashes where they belong).
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

/// `s` rounded down to three decimals.
fn round_down(s: f64) -> f64 {
    (s * 1000.0).floor() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NIK: &str = "3171011701900001";

    fn item(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn row() -> Map<String, Value> {
        item(json!({
            "nik": NIK, "full_name": "Hj. Siti Rahmawati, S.Pd.", "birth_date": "1990-01-17",
            "sex": "F", "citizenship": "WNI", "deceased": false
        }))
    }

    #[test]
    fn a_registered_person_reported_rightly_matches_on_every_count() {
        let asked = item(json!({
            "ref": "r1", "nik": NIK, "full_name": "SITI RAHMAWATI", "birth_date": "1990-01-17", "sex": "F"
        }));
        assert_eq!(
            identity(&asked, Some(&row())),
            json!({
                "ref": "r1", "nik_valid": true, "found": true, "name": "match", "name_similarity": 1.0,
                "birth_date": "match", "sex": "match", "citizenship": "WNI", "deceased": false
            })
        );
    }

    #[test]
    fn a_close_name_a_wrong_date_and_a_wrong_sex_are_told() {
        let asked = item(json!({
            "ref": "r2", "nik": NIK, "full_name": "Siti Rahmawaty", "birth_date": "1990-01-18", "sex": "M"
        }));
        let v = identity(&asked, Some(&row()));
        assert_eq!(v["name"], "close");
        let s = v["name_similarity"].as_f64().unwrap();
        assert!((0.9..1.0).contains(&s), "{s}");
        assert_eq!((s * 1000.0).round() / 1000.0, s, "three decimals: {s}");
        assert_eq!(
            (&v["birth_date"], &v["sex"]),
            (&json!("mismatch"), &json!("mismatch"))
        );
    }

    #[test]
    fn another_persons_name_is_a_mismatch_with_its_similarity() {
        let asked = item(json!({"ref": "r3", "nik": NIK, "full_name": "Budi Santoso"}));
        let v = identity(&asked, Some(&row()));
        assert_eq!(v["name"], "mismatch");
        let s = v["name_similarity"].as_f64().unwrap();
        assert!((0.0..0.9).contains(&s), "{s}");
        // Nothing reported, nothing compared.
        assert_eq!(
            (&v["birth_date"], &v["sex"]),
            (&json!("not_checked"), &json!("not_checked"))
        );
    }

    #[test]
    fn similarity_is_rounded_down_so_it_stays_on_its_verdicts_side() {
        assert_eq!(round_down(0.8999), 0.899);
        assert_eq!(round_down(0.9999), 0.999);
        assert_eq!(round_down(0.9), 0.9);
        assert_eq!(round_down(0.12345), 0.123);
    }

    #[test]
    fn an_unregistered_nik_is_found_false_and_nothing_is_checked() {
        let asked = item(json!({
            "ref": "r4", "nik": NIK, "full_name": "Siti", "birth_date": "1990-01-17", "sex": "F"
        }));
        assert_eq!(
            identity(&asked, None),
            json!({
                "ref": "r4", "nik_valid": true, "found": false, "name": "not_checked",
                "birth_date": "not_checked", "sex": "not_checked", "citizenship": "unknown", "deceased": false
            })
        );
    }

    #[test]
    fn a_malformed_nik_is_invalid_and_never_found_even_with_a_row() {
        for nik in [
            "3171011701900000",
            "12",
            "317101170190000１",
            "3171011701900001 ",
        ] {
            let asked = item(json!({"ref": "r5", "nik": nik, "full_name": "Siti Rahmawati"}));
            let v = identity(&asked, Some(&row()));
            assert_eq!(
                (&v["nik_valid"], &v["found"], &v["name"], &v["citizenship"]),
                (
                    &json!(false),
                    &json!(false),
                    &json!("not_checked"),
                    &json!("unknown")
                ),
                "{nik}"
            );
            assert!(!looks_up(nik), "{nik}");
        }
        assert!(looks_up(NIK));
    }

    #[test]
    fn missing_or_odd_registry_values_are_not_checked_and_citizenship_unknown() {
        let held = item(json!({
            "nik": NIK, "birth_date": "17-01-1990", "sex": "L", "citizenship": "X", "deceased": true
        }));
        let asked = item(json!({
            "ref": "r6", "nik": NIK, "full_name": "Siti", "birth_date": "1990-01-17", "sex": "M"
        }));
        assert_eq!(
            identity(&asked, Some(&held)),
            json!({
                "ref": "r6", "nik_valid": true, "found": true, "name": "not_checked",
                "birth_date": "not_checked", "sex": "not_checked", "citizenship": "unknown", "deceased": true
            })
        );
    }

    #[test]
    fn registry_values_are_trimmed_and_read_in_either_case() {
        let held = item(json!({
            "nik": NIK, "full_name": " Siti Rahmawati ", "birth_date": " 1990-01-17 ", "sex": "f ",
            "citizenship": "wna", "deceased": false
        }));
        let asked = item(json!({
            "ref": "r7", "nik": NIK, "full_name": "Siti Rahmawati", "birth_date": "1990-01-17", "sex": "F"
        }));
        let v = identity(&asked, Some(&held));
        assert_eq!(
            (&v["name"], &v["birth_date"], &v["sex"], &v["citizenship"]),
            (
                &json!("match"),
                &json!("match"),
                &json!("match"),
                &json!("WNA")
            )
        );
    }

    #[test]
    fn no_registry_value_reaches_the_answer() {
        let asked = item(json!({"ref": "r8", "nik": NIK, "full_name": "Budi"}));
        let text = identity(&asked, Some(&row())).to_string();
        for held in ["Rahmawati", "1990-01-17", "\"F\""] {
            assert!(!text.contains(held), "{held} in {text}");
        }
    }

    #[test]
    fn every_kind_of_verdict_fits_the_contracts_response_schema() {
        // Read from the catalog directory, as a gateway configured with it reads it.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts/catalog");
        let catalog = contracts::load_catalog(&dir).unwrap();
        let contract = catalog
            .iter()
            .find(|c| c.doc().id == "identity.verify" && c.doc().version == "1")
            .unwrap();
        let asked = [
            json!({"ref": "a", "nik": NIK, "full_name": "Siti Rahmawati", "birth_date": "1990-01-17", "sex": "F"}),
            json!({"ref": "b", "nik": NIK, "full_name": "Siti Rahmawaty", "birth_date": "1991-01-17", "sex": "M"}),
            json!({"ref": "c", "nik": NIK, "full_name": "Budi Santoso"}),
            json!({"ref": "d", "nik": NIK}),
            json!({"ref": "e", "nik": "not a nik"}),
        ];
        let query = json!({ "items": asked });
        assert_eq!(contract.check_request(&query, "/query"), Ok(()));
        let mut wna = row();
        wna.insert("citizenship".into(), json!("WNA"));
        wna.insert("deceased".into(), json!(true));
        let mut answers: Vec<Value> = asked
            .iter()
            .map(|a| identity(a.as_object().unwrap(), Some(&row())))
            .collect();
        answers.push(identity(asked[3].as_object().unwrap(), Some(&wna)));
        answers.push(identity(asked[0].as_object().unwrap(), None));
        let names: Vec<&Value> = answers.iter().map(|a| &a["name"]).collect();
        for kind in ["match", "close", "mismatch", "not_checked"] {
            assert!(names.contains(&&json!(kind)), "{kind} in {names:?}");
        }
        assert_eq!(
            contract.check_response(&json!({ "items": answers }), "/result"),
            Ok(())
        );
    }
}
