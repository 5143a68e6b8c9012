//! The shipped contract catalog: the eight documents, their NIK rule and their answers.

use std::path::Path;

use contracts::{Contract, load_catalog};
use serde_json::{Value, json};

const CATALOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/catalog");

fn catalog() -> Vec<Contract> {
    load_catalog(Path::new(CATALOG)).expect("the shipped catalog loads")
}

/// The contracts about one person: every one but the batch contract and the statistics
/// contracts (whose questions name no one; `contracts::statistics`' tests check them).
fn one_person() -> Vec<Contract> {
    catalog()
        .into_iter()
        .filter(|c| c.doc().batch.is_none() && c.doc().personal_data == ["/nik"])
        .collect()
}

fn contract(id: &str) -> Contract {
    catalog()
        .into_iter()
        .find(|c| c.doc().id == id)
        .unwrap_or_else(|| panic!("{id} is in the catalog"))
}

#[test]
fn the_twelve_contracts_with_their_providers() {
    let found: Vec<_> = catalog()
        .iter()
        .map(|c| {
            let d = c.doc();
            (
                d.id.clone(),
                d.version.clone(),
                d.provider.to_string(),
                d.purposes.clone(),
                d.cache.as_ref().map(|c| c.ttl_s),
            )
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        found,
        vec![
            (
                "citizenship.status".into(),
                "1".into(),
                "ID:GOV:DUKCAPIL".into(),
                s(&[
                    "citizen-protection",
                    "placement-verification",
                    "social-security"
                ]),
                Some(300)
            ),
            (
                "employment.placement".into(),
                "1".into(),
                "ID:GOV:BP2MI".into(),
                s(&["citizen-protection", "social-security"]),
                Some(60)
            ),
            (
                "identity.verify".into(),
                "1".into(),
                "ID:GOV:DUKCAPIL".into(),
                s(&["citizen-protection", "election-roll"]),
                None
            ),
            (
                "insurance.counts".into(),
                "1".into(),
                "ID:GOV:BPJSTK".into(),
                s(&["statistics"]),
                Some(3600)
            ),
            (
                "insurance.overlap".into(),
                "1".into(),
                "ID:GOV:BPJSTK".into(),
                s(&["statistics"]),
                None
            ),
            (
                "insurance.status".into(),
                "1".into(),
                "ID:GOV:BPJSTK".into(),
                s(&["citizen-protection", "placement-verification"]),
                Some(300)
            ),
            (
                "placement.changed".into(),
                "1".into(),
                "ID:GOV:BP2MI".into(),
                s(&["citizen-protection"]),
                None
            ),
            (
                "placement.counts".into(),
                "1".into(),
                "ID:GOV:BP2MI".into(),
                s(&["statistics"]),
                Some(3600)
            ),
            (
                "placement.overlap".into(),
                "1".into(),
                "ID:GOV:BP2MI".into(),
                s(&["statistics"]),
                None
            ),
            (
                "placement.record".into(),
                "1".into(),
                "ID:GOV:BP2MI".into(),
                s(&["citizen-protection"]),
                None
            ),
            (
                "residence.abroad".into(),
                "1".into(),
                "ID:GOV:KEMLU".into(),
                s(&["citizen-protection"]),
                None
            ),
            (
                "selfreport.counts".into(),
                "1".into(),
                "ID:GOV:KEMLU".into(),
                s(&["statistics"]),
                Some(3600)
            ),
        ]
    );
}

/// Every object schema closes its properties, every `$ref` is local, and both top-level
/// schemas declare the 2020-12 dialect.
#[test]
fn schemas_are_closed_local_and_2020_12() {
    fn walk(v: &Value, at: &str) {
        match v {
            Value::Object(m) => {
                if m.get("type") == Some(&json!("object")) {
                    assert_eq!(
                        m.get("additionalProperties"),
                        Some(&json!(false)),
                        "{at} must set additionalProperties: false"
                    );
                }
                if let Some(r) = m.get("$ref") {
                    assert!(r.as_str().unwrap().starts_with("#/$defs/"), "{at}: {r}");
                }
                for (k, v) in m {
                    walk(v, &format!("{at}/{k}"));
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(v, &format!("{at}/{i}"));
                }
            }
            _ => {}
        }
    }
    for c in catalog() {
        let d = c.doc();
        // An event contract's response is `false`: a delivery is answered by the receipt.
        let schemas = [("request", &d.request), ("response", &d.response)];
        let schemas = if c.event().is_some() {
            assert_eq!(d.response, json!(false), "{}", d.id);
            &schemas[..1]
        } else {
            &schemas[..]
        };
        for &(name, schema) in schemas {
            assert_eq!(
                schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
                "{}: {name}",
                d.id
            );
            walk(schema, &format!("{}/{name}", d.id));
        }
        // A statistics question or an overlap run names no person (the contract loader
        // holds them to that).
        // BP2MI's placement number names a person to BP2MI: personal data as a NIK is.
        if c.statistics().is_none() && c.overlap().is_none() {
            let placement = d.id.starts_with("placement.");
            let expected = if placement { "/placement" } else { "/nik" };
            assert_eq!(d.personal_data, [expected], "{}", d.id);
        }
        assert!(d.description.contains("deliberately"), "{}", d.id);
    }
    let first_request = one_person()[0].doc().request.clone();
    for c in one_person() {
        let d = c.doc();
        assert_eq!(
            d.request, first_request,
            "{}: the same request schema",
            d.id
        );
        assert!(
            d.request["properties"]["nik"]["description"]
                .as_str()
                .is_some_and(|s| s.contains("PP RR DD DDMMYY SSSS"))
        );
    }
}

const ACCEPTED: &[(&str, &str)] = &[
    ("3171011701900001", "man born 1990-01-17 in Jakarta"),
    ("3171015701900001", "woman born the 17th: day 57"),
    ("3171012902000001", "29 Feb in YY=00"),
    ("3171012902040001", "29 Feb in YY=04"),
    ("3171012902960001", "29 Feb in YY=96"),
    ("3171016902040001", "woman born 29 Feb in YY=04"),
    ("3171012802010001", "28 Feb in YY=01"),
    ("3171016802010001", "woman born 28 Feb in YY=01"),
    ("3171013112990001", "day 31 in month 12"),
    ("3171017101990001", "woman born 31 Jan"),
    ("3171013108990001", "31 Aug"),
    ("3171013004990001", "30 Apr"),
    ("3171017011990001", "woman born 30 Nov"),
    ("3171010101000001", "day 01, month 01"),
    ("3171014101000001", "woman born the 1st: day 41"),
    ("3171011701909999", "serial 9999"),
    ("3171011701900010", "serial 0010"),
    ("3199991701900001", "regency 99, district 99"),
    ("1171011701900001", "province 11"),
    ("1971011701900001", "province 19"),
    ("2171011701900001", "province 21"),
    ("3171011701900002", "province 31"),
    ("3671011701900001", "province 36"),
    ("5171011701900001", "province 51"),
    ("5371011701900001", "province 53"),
    ("6171011701900001", "province 61"),
    ("6571011701900001", "province 65"),
    ("7171011701900001", "province 71"),
    ("7671011701900001", "province 76"),
    ("8171011701900001", "province 81"),
    ("8271011701900001", "province 82"),
    ("9171011701900001", "province 91"),
    ("9671011701900001", "province 96"),
];

const REFUSED: &[(&str, &str)] = &[
    ("317101170190001", "15 digits"),
    ("31710117019000011", "17 digits"),
    ("", "empty"),
    ("31710117019000AB", "letters"),
    ("3171O11701900001", "letter O for zero"),
    ("３１７１０１１７０１９００００１", "full-width digits"),
    ("3171011701900001\n", "trailing newline"),
    (" 3171011701900001", "leading space"),
    ("0071011701900001", "province 00"),
    ("1071011701900001", "province 10"),
    ("2071011701900001", "province 20"),
    ("2271011701900001", "province 22"),
    ("3071011701900001", "province 30"),
    ("3771011701900001", "province 37"),
    ("5071011701900001", "province 50"),
    ("5471011701900001", "province 54"),
    ("6071011701900001", "province 60"),
    ("6671011701900001", "province 66"),
    ("7071011701900001", "province 70"),
    ("7771011701900001", "province 77"),
    ("8071011701900001", "province 80"),
    ("8371011701900001", "province 83"),
    ("9071011701900001", "province 90"),
    ("9771011701900001", "province 97"),
    ("3100011701900001", "regency 00"),
    ("3171001701900001", "district 00"),
    ("3171010001900001", "day 00"),
    ("3171013201900001", "day 32"),
    ("3171014001900001", "day 40"),
    ("3171017201900001", "day 72"),
    ("3171019901900001", "day 99"),
    ("3171011700900001", "month 00"),
    ("3171011713900001", "month 13"),
    ("3171013104900001", "31 April"),
    ("3171017106900001", "71 June"),
    ("3171013102000001", "31 Feb"),
    ("3171013002000001", "30 Feb"),
    ("3171017002000001", "70 Feb"),
    ("3171012902010001", "29 Feb in YY=01"),
    ("3171012902900001", "29 Feb in YY=90"),
    ("3171016902010001", "69 Feb in YY=01"),
    ("3171011701900000", "serial 0000"),
];

#[test]
fn nik_accepted() {
    for c in one_person() {
        for (nik, why) in ACCEPTED {
            assert_eq!(
                c.check_request(&json!({ "nik": nik }), "/query"),
                Ok(()),
                "{}: {nik} ({why}) must be accepted",
                c.doc().id
            );
        }
    }
}

#[test]
fn nik_refused_at_query_nik() {
    for c in one_person() {
        for (nik, why) in REFUSED {
            let errs = c
                .check_request(&json!({ "nik": nik }), "/query")
                .expect_err(&format!("{}: {nik:?} ({why}) must be refused", c.doc().id));
            assert!(
                errs.iter().all(|e| e.pointer == "/query/nik"),
                "{}: {why}: {errs:?}",
                c.doc().id
            );
        }
        let errs = c
            .check_request(&json!({ "nik": 3171011701900001u64 }), "/query")
            .expect_err("a number is not a NIK");
        assert!(errs.iter().all(|e| e.pointer == "/query/nik"), "{errs:?}");
    }
}

#[test]
fn query_shape_refused() {
    for c in one_person() {
        let id = &c.doc().id;
        // Both violations are about the query object itself, so they point at it.
        for (query, why) in [
            (
                json!({"nik": "3171011701900001", "name": "Siti"}),
                "extra property",
            ),
            (json!({}), "missing nik"),
            (json!("3171011701900001"), "not an object"),
        ] {
            let errs = c
                .check_request(&query, "/query")
                .expect_err(&format!("{id}: {why} must be refused"));
            assert!(
                errs.iter().all(|e| e.pointer == "/query"),
                "{id}: {why}: {errs:?}"
            );
        }
    }
}

/// Asserts `result` is refused and every violation points at `pointer`.
fn refused(c: &Contract, result: Value, pointer: &str) {
    let errs = c
        .check_response(&result, "/result")
        .expect_err(&format!("{}: {result} must be refused", c.doc().id));
    assert!(
        errs.iter().all(|e| e.pointer == pointer),
        "{}: {result}: expected {pointer}, got {errs:?}",
        c.doc().id
    );
}

fn accepted(c: &Contract, result: Value) {
    assert_eq!(
        c.check_response(&result, "/result"),
        Ok(()),
        "{}: {result} must be accepted",
        c.doc().id
    );
}

#[test]
fn citizenship_status_answers() {
    let c = contract("citizenship.status");
    accepted(
        &c,
        json!({"registered": true, "citizenship": "WNI", "deceased": false}),
    );
    accepted(
        &c,
        json!({"registered": true, "citizenship": "WNA", "deceased": true}),
    );
    accepted(
        &c,
        json!({"registered": false, "citizenship": "unknown", "deceased": false}),
    );
    refused(
        &c,
        json!({"registered": true, "citizenship": "XX", "deceased": false}),
        "/result/citizenship",
    );
    refused(
        &c,
        json!({"registered": "yes", "citizenship": "WNI", "deceased": false}),
        "/result/registered",
    );
    refused(
        &c,
        json!({"registered": true, "citizenship": "WNI"}),
        "/result",
    );
    refused(
        &c,
        json!({"registered": true, "citizenship": "WNI", "deceased": false, "name": "Siti"}),
        "/result",
    );
}

#[test]
fn employment_placement_answers() {
    let c = contract("employment.placement");
    accepted(
        &c,
        json!({"placed": true, "country": "MY", "agency": "PT Contoh Jaya", "since": "2024-03-01"}),
    );
    accepted(&c, json!({"placed": false}));
    refused(
        &c,
        json!({"placed": false, "country": "MY"}),
        "/result/country",
    );
    refused(
        &c,
        json!({"placed": false, "since": "2024-03-01"}),
        "/result/since",
    );
    refused(
        &c,
        json!({"placed": true, "country": "MY", "since": "2024-03-01"}),
        "/result",
    );
    refused(&c, json!({}), "/result");
    refused(
        &c,
        json!({"placed": true, "country": "my", "agency": "PT A", "since": "2024-03-01"}),
        "/result/country",
    );
    refused(
        &c,
        json!({"placed": true, "country": "MYS", "agency": "PT A", "since": "2024-03-01"}),
        "/result/country",
    );
    refused(
        &c,
        json!({"placed": true, "country": "MY", "agency": "", "since": "2024-03-01"}),
        "/result/agency",
    );
    refused(
        &c,
        json!({"placed": true, "country": "MY", "agency": "A".repeat(201), "since": "2024-03-01"}),
        "/result/agency",
    );
    refused(
        &c,
        json!({"placed": true, "country": "MY", "agency": "PT A", "since": "2024-13-01"}),
        "/result/since",
    );
    refused(
        &c,
        json!({"placed": true, "country": "MY", "agency": "PT A", "since": "1 March 2024"}),
        "/result/since",
    );
    refused(
        &c,
        json!({"placed": true, "country": "MY", "agency": "PT A", "since": "2024-03-01", "employer": "X"}),
        "/result",
    );
}

#[test]
fn insurance_status_answers() {
    let c = contract("insurance.status");
    accepted(
        &c,
        json!({"enrolled": true, "active": true, "programs": ["JKK", "JKM", "JHT", "JP"]}),
    );
    accepted(
        &c,
        json!({"enrolled": true, "active": false, "programs": []}),
    );
    accepted(
        &c,
        json!({"enrolled": false, "active": false, "programs": []}),
    );
    refused(
        &c,
        json!({"enrolled": false, "active": true, "programs": []}),
        "/result/active",
    );
    refused(
        &c,
        json!({"enrolled": false, "active": false, "programs": ["JHT"]}),
        "/result/programs",
    );
    refused(
        &c,
        json!({"enrolled": true, "active": true, "programs": ["JHT", "JHT"]}),
        "/result/programs",
    );
    refused(
        &c,
        json!({"enrolled": true, "active": true, "programs": ["JKN"]}),
        "/result/programs/0",
    );
    refused(&c, json!({"enrolled": true, "active": true}), "/result");
    refused(
        &c,
        json!({"enrolled": true, "active": true, "programs": [], "balance": 1}),
        "/result",
    );
}

#[test]
fn residence_abroad_answers() {
    let c = contract("residence.abroad");
    accepted(
        &c,
        json!({"reported": true, "country": "SA", "reported_on": "2025-06-30", "reports": 2}),
    );
    accepted(&c, json!({"reported": false}));
    refused(
        &c,
        json!({"reported": false, "country": "SA"}),
        "/result/country",
    );
    refused(
        &c,
        json!({"reported": false, "reports": 1}),
        "/result/reports",
    );
    refused(
        &c,
        json!({"reported": true, "country": "SA", "reported_on": "2025-06-30"}),
        "/result",
    );
    refused(
        &c,
        json!({"reported": true, "country": "SA", "reported_on": "2025-06-30", "reports": 0}),
        "/result/reports",
    );
    refused(
        &c,
        json!({"reported": true, "country": "SA", "reported_on": "2025-06-30", "reports": 1.5}),
        "/result/reports",
    );
    refused(
        &c,
        json!({"reported": true, "country": "SA", "reported_on": "2025-06-32", "reports": 1}),
        "/result/reported_on",
    );
    refused(
        &c,
        json!({"reported": true, "country": "SA", "reported_on": "2025-06-30", "reports": 1, "address": "Riyadh"}),
        "/result",
    );
}

/// The pattern agrees with the calendar on every DDMMYY, every province code and every
/// serial, as the validator the gateway uses evaluates it.
#[test]
fn nik_pattern_matches_the_rules_exhaustively() {
    let c = contract("citizenship.status");
    let valid = |nik: String| c.check_request(&json!({ "nik": nik }), "/query").is_ok();
    let real_date = |dd: u32, mm: u32, yy: u32| {
        let day = if dd > 40 { dd - 40 } else { dd };
        let days = match mm {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if yy.is_multiple_of(4) => 29,
            2 => 28,
            _ => return false,
        };
        (1..=days).contains(&day)
    };
    for dd in 0..100 {
        for mm in 0..100 {
            for yy in 0..100 {
                assert_eq!(
                    valid(format!("317101{dd:02}{mm:02}{yy:02}0001")),
                    real_date(dd, mm, yy),
                    "DDMMYY {dd:02}{mm:02}{yy:02}"
                );
            }
        }
    }
    let provinces = [
        11..=19,
        21..=21,
        31..=36,
        51..=53,
        61..=65,
        71..=76,
        81..=82,
        91..=96,
    ];
    for pp in 0..100 {
        assert_eq!(
            valid(format!("{pp:02}71011701900001")),
            provinces.iter().any(|r| r.contains(&pp)),
            "province {pp:02}"
        );
    }
    for code in 0..100 {
        assert_eq!(valid(format!("31{code:02}011701900001")), code != 0);
        assert_eq!(valid(format!("3171{code:02}1701900001")), code != 0);
    }
    for serial in 0..10_000 {
        assert_eq!(
            valid(format!("317101170190{serial:04}")),
            serial != 0,
            "serial {serial:04}"
        );
    }
}

/// The digests PROTOCOL.md §2.2 prints are the catalog's own.
#[test]
fn the_protocols_digest_table_is_the_catalogs() {
    let protocol =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md"))
            .unwrap();
    for c in catalog() {
        let d = c.doc();
        let row = format!("| `{}` {} | `{}` |", d.id, d.version, c.digest());
        assert!(protocol.contains(&row), "PROTOCOL.md §2.2 lacks {row}");
    }
}

fn verify_item(i: usize) -> Value {
    json!({"ref": i.to_string(), "nik": "3171011701900001", "full_name": "Siti Aminah",
           "birth_date": "1990-01-17", "sex": "F"})
}

#[test]
fn identity_verify_takes_up_to_1000_items_and_names_the_bad_one() {
    let c = contract("identity.verify");
    let items = |n: usize| json!({"items": (0..n).map(verify_item).collect::<Vec<_>>()});
    assert_eq!(c.check_request(&items(1), "/query"), Ok(()));
    assert_eq!(c.check_request(&items(1_000), "/query"), Ok(()));
    assert_eq!(c.item_count(&items(1_000)), 1_000);
    let errs = c.check_request(&items(1_001), "/query").unwrap_err();
    assert!(errs.iter().all(|e| e.pointer == "/query/items"), "{errs:?}");
    let errs = c.check_request(&items(0), "/query").unwrap_err();
    assert!(errs.iter().all(|e| e.pointer == "/query/items"), "{errs:?}");
    // One malformed item among good ones: the pointer names it and its field.
    let mut q = items(3);
    q["items"][1]["birth_date"] = json!("17-01-1990");
    q["items"][2]["sex"] = json!("X");
    let errs = c.check_request(&q, "/query").unwrap_err();
    let pointers: Vec<&str> = errs.iter().map(|e| e.pointer.as_str()).collect();
    assert_eq!(
        pointers,
        ["/query/items/1/birth_date", "/query/items/2/sex"]
    );
    // A malformed NIK is a verdict, not a refusal; a missing one is a refusal.
    let mut q = items(1);
    q["items"][0]["nik"] = json!("12345");
    assert_eq!(c.check_request(&q, "/query"), Ok(()));
    q["items"][0].as_object_mut().unwrap().remove("nik");
    let errs = c.check_request(&q, "/query").unwrap_err();
    assert!(
        errs.iter().all(|e| e.pointer == "/query/items/0"),
        "{errs:?}"
    );
    // Only the item's five fields.
    let mut q = items(1);
    q["items"][0]["address"] = json!("Jl. Merdeka 1");
    assert!(c.check_request(&q, "/query").is_err());
}

#[test]
fn identity_verify_answers_verdicts_only() {
    let c = contract("identity.verify");
    let found = json!({"ref": "2", "nik_valid": true, "found": true, "name": "close",
        "name_similarity": 0.93, "birth_date": "match", "sex": "match",
        "citizenship": "WNI", "deceased": false});
    let unknown = json!({"ref": "3", "nik_valid": false, "found": false,
        "name": "not_checked", "birth_date": "not_checked", "sex": "not_checked",
        "citizenship": "unknown", "deceased": false});
    accepted(&c, json!({"items": [found.clone(), unknown]}));
    // Nothing of the record itself may be answered.
    let mut leaky = found.clone();
    leaky["full_name"] = json!("Siti Aminah");
    refused(&c, json!({"items": [leaky]}), "/result/items/0");
    let mut bad = found;
    bad["name"] = json!("similar");
    refused(&c, json!({"items": [bad]}), "/result/items/0/name");
}
