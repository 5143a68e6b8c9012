use serde_json::json;

use super::*;
use crate::disclosure::{Figure, feasible_ranges};

fn stats() -> Statistics {
    Statistics {
        dimensions: vec!["destination".into(), "sector".into(), "sex".into()],
        min_cell: None,
        min_population: None,
        round_to: None,
        max_cells: None,
    }
}

/// Placements by destination, sector and sex: Brunei has 3 women in care, which alone gives
/// away nothing in the 3-way table but leaks through every total it sits in unless protected.
fn aggregate() -> AggregateRows {
    let rows = [
        (["MY", "care", "F"], 120),
        (["MY", "care", "M"], 15),
        (["MY", "plantation", "M"], 400),
        (["MY", "plantation", "F"], 60),
        (["HK", "care", "F"], 300),
        (["HK", "care", "M"], 12),
        (["BN", "care", "F"], 3),
        (["BN", "plantation", "M"], 40),
        (["BN", "plantation", "F"], 22),
        (["SG", "care", "F"], 0),
    ];
    AggregateRows {
        dimensions: vec!["destination".into(), "sector".into(), "sex".into()],
        rows: rows
            .iter()
            .map(|(k, n)| (k.iter().map(|s| s.to_string()).collect(), *n))
            .collect(),
    }
}

fn query(value: serde_json::Value) -> StatisticsQuery {
    StatisticsQuery::parse(&value, &stats()).unwrap()
}

fn pointer_of(value: serde_json::Value) -> String {
    match StatisticsQuery::parse(&value, &stats()) {
        Err(StatisticsError::Query { pointer, .. }) => pointer,
        other => panic!("expected a refused query, got {other:?}"),
    }
}

#[test]
fn a_question_names_listed_dimensions_once_and_filters_on_listed_ones() {
    let q = query(json!({"dimensions": ["sex", "destination"], "filters": {"sector": ["care"]}}));
    assert_eq!(q.dimensions, ["sex", "destination"]);
    assert_eq!(q.filters["sector"].iter().collect::<Vec<_>>(), ["care"]);
    assert_eq!(
        pointer_of(json!({"dimensions": ["sex", "religion"]})),
        "/query/dimensions/1"
    );
    assert_eq!(
        pointer_of(json!({"dimensions": ["sex", "sex"]})),
        "/query/dimensions/1"
    );
    assert_eq!(pointer_of(json!({"dimensions": []})), "/query/dimensions");
    assert_eq!(
        pointer_of(json!({"dimensions": ["sex"], "filters": {"name": ["x"]}})),
        "/query/filters/name"
    );
    assert_eq!(
        pointer_of(json!({"dimensions": ["sex"], "filters": {"sector": []}})),
        "/query/filters/sector"
    );
    assert_eq!(
        pointer_of(json!({"dimensions": ["sex"], "filters": {"sector": [1]}})),
        "/query/filters/sector/0"
    );
    assert_eq!(
        pointer_of(json!({"dimensions": ["sex"], "nik": "x"})),
        "/query/nik"
    );
}

#[test]
fn the_answer_adds_up_the_dimensions_not_asked_and_keeps_what_the_filters_keep() {
    let rules = stats().rules();
    let q = query(json!({"dimensions": ["destination"], "filters": {"sector": ["plantation"]}}));
    let table = answer(&q, &aggregate(), &rules).unwrap();
    assert_eq!(table.figure(&[Some("MY")]), Some(Figure::Count(460)));
    assert_eq!(table.figure(&[Some("BN")]), Some(Figure::Count(62)));
    // Hong Kong has no plantation workers: a value no kept row has is not in the table.
    assert_eq!(table.figure(&[Some("HK")]), None);
    assert_eq!(table.figure(&[None]), Some(Figure::Count(522)));
}

#[test]
fn a_small_cell_is_suppressed_and_cannot_be_recovered_from_what_is_published() {
    let rules = stats().rules();
    let q = query(json!({"dimensions": ["destination", "sector", "sex"]}));
    let table = answer(&q, &aggregate(), &rules).unwrap();
    assert_eq!(
        table.figure(&[Some("BN"), Some("care"), Some("F")]),
        Some(Figure::Suppressed)
    );
    // Primary suppression alone leaks it through BN × care's total (3, itself primary) and
    // through BN × F's (25); the protected table hides it.
    assert!(table.suppressed().count() > 2);
    for range in feasible_ranges(&table).unwrap() {
        assert!(range.protected(rules.min_cell()), "{range:?} is exposed");
    }
    // Every published figure is the true one.
    assert_eq!(
        table.figure(&[Some("MY"), Some("plantation"), Some("M")]),
        Some(Figure::Count(400))
    );
}

#[test]
fn a_filter_that_narrows_the_population_below_the_minimum_is_refused() {
    let rules = stats().rules();
    let q = query(json!({"dimensions": ["sex"], "filters": {"destination": ["BN"]}}));
    match answer(&q, &aggregate(), &rules) {
        Err(StatisticsError::PopulationTooSmall(p)) => assert_eq!(p.minimum, 100),
        other => panic!("expected population-too-small, got {other:?}"),
    }
    let wider = query(json!({"dimensions": ["sex"], "filters": {"destination": ["BN", "HK"]}}));
    assert!(answer(&wider, &aggregate(), &rules).is_ok());
}

#[test]
fn a_table_over_the_contracts_cell_limit_is_refused() {
    let rules = Statistics {
        max_cells: Some(4),
        ..stats()
    }
    .rules();
    let q = query(json!({"dimensions": ["destination", "sex"]}));
    assert!(matches!(
        answer(&q, &aggregate(), &rules),
        Err(StatisticsError::TooManyCells { cells: 6, limit: 4 })
    ));
}

#[test]
fn an_aggregate_without_an_asked_dimension_is_the_providers_fault() {
    let mut short = aggregate();
    short.dimensions[2] = "gender".into();
    let q = query(json!({"dimensions": ["sex"]}));
    assert!(matches!(
        answer(&q, &short, &stats().rules()),
        Err(StatisticsError::Aggregate(_))
    ));
}

#[test]
fn a_rounding_contract_publishes_multiples_of_its_base() {
    let rules = Statistics {
        round_to: NonZeroU64::new(5),
        ..stats()
    }
    .rules();
    let q = query(json!({"dimensions": ["destination"]}));
    let table = answer(&q, &aggregate(), &rules).unwrap();
    assert_eq!(table.round_to, NonZeroU64::new(5));
    assert_eq!(table.figure(&[Some("MY")]), Some(Figure::Count(595)));
    assert!(
        table
            .figures
            .iter()
            .filter_map(|f| f.figure.value())
            .all(|v| v % 5 == 0)
    );
}

#[test]
fn a_contract_checks_its_statistics() {
    let mut bad = stats();
    bad.dimensions.push("sex".into());
    assert!(check(&bad).unwrap_err().contains("twice"));
    bad = stats();
    bad.dimensions.push("Sex".into());
    assert!(check(&bad).is_err());
    bad = stats();
    bad.dimensions.push("count".into());
    assert!(check(&bad).is_err());
    assert!(
        check(&Statistics {
            min_cell: Some(0),
            ..stats()
        })
        .is_err()
    );
    assert!(
        check(&Statistics {
            min_population: Some(0),
            ..stats()
        })
        .is_err()
    );
    assert!(
        check(&Statistics {
            max_cells: Some(100_001),
            ..stats()
        })
        .is_err()
    );
    assert!(check(&stats()).is_ok());
}

/// The catalog's statistics contracts, each with a question its consumers would ask.
fn catalog_contracts() -> [(crate::Contract, serde_json::Value); 3] {
    let load = |text: &str| crate::Contract::from_json(text.as_bytes()).unwrap();
    [
        (
            load(include_str!("../../catalog/placement.counts.v1.json")),
            json!({"dimensions": ["country", "sex"], "filters": {"sector": ["caregiver", "domestic worker"]}}),
        ),
        (
            load(include_str!("../../catalog/selfreport.counts.v1.json")),
            json!({"dimensions": ["year", "country"], "filters": {"year": ["2024", "2025"]}}),
        ),
        (
            load(include_str!("../../catalog/insurance.counts.v1.json")),
            json!({"dimensions": ["sex"], "filters": {"country": ["HK", "MY"]}}),
        ),
    ]
}

/// A made-up aggregate over `dimensions`: every combination of a few values each, with
/// counts from 0 to 59, so that some cells are small and the table needs protecting.
fn made_up_aggregate(dimensions: &[String]) -> AggregateRows {
    let values = |dimension: &str| -> &[&str] {
        match dimension {
            "country" => &["HK", "MY", "TW"],
            "sector" => &["caregiver", "domestic worker", "factory worker"],
            "sex" => &["F", "M"],
            "year" => &["2023", "2024", "2025"],
            other => panic!("no made-up values for `{other}`"),
        }
    };
    let mut keys: Vec<Vec<String>> = vec![Vec::new()];
    for d in dimensions {
        keys = keys
            .into_iter()
            .flat_map(|key| {
                values(d).iter().map(move |v| {
                    let mut longer = key.clone();
                    longer.push(v.to_string());
                    longer
                })
            })
            .collect();
    }
    AggregateRows {
        dimensions: dimensions.to_vec(),
        rows: keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| (key, (i as u64 * 37 + 3) % 60))
            .collect(),
    }
}

#[test]
fn the_catalogs_statistics_contracts_take_their_questions_and_publish_their_tables() {
    for (contract, example) in catalog_contracts() {
        let id = &contract.doc().id;
        let stats = contract
            .statistics()
            .expect("a statistics contract")
            .clone();
        assert_eq!(contract.doc().purposes, ["statistics"], "{id}");
        assert!(contract.doc().personal_data.is_empty(), "{id}");
        assert_eq!(
            (stats.min_cell, stats.min_population),
            (Some(10), Some(100)),
            "{id}"
        );

        // The example is valid, and reads as the question it is.
        assert_eq!(contract.check_request(&example, "/query"), Ok(()), "{id}");
        let question = StatisticsQuery::parse(&example, &stats).unwrap();
        assert_eq!(json!(question.dimensions), example["dimensions"], "{id}");

        // The schema itself refuses what is not the contract's, so every partner's
        // validator does too.
        let refused_at = |query: serde_json::Value, pointer: &str| {
            let errs = contract
                .check_request(&query, "/query")
                .expect_err(&format!("{id}: {query} must be refused"));
            assert!(
                errs.iter().any(|e| e.pointer == pointer),
                "{id}: {query}: expected {pointer}, got {errs:?}"
            );
        };
        refused_at(
            json!({"dimensions": ["country", "religion"]}),
            "/query/dimensions/1",
        );
        refused_at(
            json!({"dimensions": ["country"], "filters": {"religion": ["x"]}}),
            "/query/filters",
        );
        refused_at(
            json!({"dimensions": ["country", "country"]}),
            "/query/dimensions",
        );
        refused_at(json!({"dimensions": []}), "/query/dimensions");
        refused_at(json!({"filters": {"country": ["MY"]}}), "/query");
        refused_at(
            json!({"dimensions": ["country"], "filters": {"country": []}}),
            "/query/filters/country",
        );
        refused_at(
            json!({"dimensions": ["country"], "filters": {"country": ["x".repeat(129)]}}),
            "/query/filters/country/0",
        );
        refused_at(json!({"dimensions": ["country"], "nik": "x"}), "/query");
        let too_many: Vec<&String> = stats.dimensions.iter().chain(&stats.dimensions).collect();
        refused_at(json!({ "dimensions": too_many }), "/query/dimensions");

        // The tables `answer` makes from a binding's aggregate are what the response
        // schema accepts: the example's, and the full table of every dimension, which has
        // suppressed figures of both kinds (small, and complementary).
        let aggregate = made_up_aggregate(&stats.dimensions);
        let every = json!({ "dimensions": stats.dimensions });
        let (mut primary, mut complementary) = (false, false);
        for query in [&example, &every] {
            let question = StatisticsQuery::parse(query, &stats).unwrap();
            let table = answer(&question, &aggregate, &stats.rules()).unwrap();
            let truth = truth_of(&aggregate, &question);
            for key in table.suppressed() {
                let small = (1..10).contains(&truth(key));
                primary |= small;
                complementary |= !small;
            }
            let result = serde_json::to_value(&table).unwrap();
            assert_eq!(
                contract.check_response(&result, "/result"),
                Ok(()),
                "{id}: {query}: {result}"
            );
        }
        assert!(
            primary && complementary,
            "{id}: both kinds of suppression checked"
        );

        // And it refuses what is not such a table: a count below zero, not whole or not a
        // number, a figure both counted and suppressed, a reason of its own, a lower
        // threshold than the contract's, rounding the contract does not do, a field of its
        // own, a country that is no code.
        let question = StatisticsQuery::parse(&every, &stats).unwrap();
        let table = answer(&question, &aggregate, &stats.rules()).unwrap();
        let good = serde_json::to_value(&table).unwrap();
        let counted = table
            .figures
            .iter()
            .position(|f| f.figure.value().is_some());
        let suppressed = table
            .figures
            .iter()
            .position(|f| f.figure.value().is_none());
        let (counted, suppressed) = (counted.unwrap(), suppressed.unwrap());
        let country = stats.dimensions.iter().position(|d| d == "country");
        let country = format!("/dimensions/{}/values/0", country.unwrap());
        for (at, value, refused) in [
            (
                format!("/figures/{counted}/count"),
                json!(-1),
                format!("/figures/{counted}"),
            ),
            (
                format!("/figures/{counted}/count"),
                json!(1.5),
                format!("/figures/{counted}"),
            ),
            (
                format!("/figures/{counted}/count"),
                json!("12"),
                format!("/figures/{counted}"),
            ),
            (
                format!("/figures/{counted}/suppressed"),
                json!(true),
                format!("/figures/{counted}"),
            ),
            (
                format!("/figures/{suppressed}/suppressed"),
                json!("primary"),
                format!("/figures/{suppressed}"),
            ),
            ("/min_cell".into(), json!(5), "/min_cell".into()),
            ("/round_to".into(), json!(5), "/round_to".into()),
            ("/population".into(), json!(1000), String::new()),
            (country.clone(), json!("Hong Kong"), country.clone()),
        ] {
            let mut result = good.clone();
            put(&mut result, &at, value);
            let errs = contract
                .check_response(&result, "/result")
                .expect_err(&format!("{id}: {at} changed must be refused"));
            let refused = format!("/result{refused}");
            assert!(
                errs.iter().any(|e| e.pointer == refused),
                "{id}: {at}: expected {refused}, got {errs:?}"
            );
        }
        let grand_total = &good["figures"][table.figures.len() - 1]["key"];
        assert_eq!(
            grand_total,
            &json!(vec![serde_json::Value::Null; stats.dimensions.len()])
        );
    }
}

/// The true count of a figure of the table `question` asks of `aggregate` (`None` in a key:
/// the total over that dimension).
fn truth_of<'a>(
    aggregate: &'a AggregateRows,
    question: &'a StatisticsQuery,
) -> impl Fn(&[Option<String>]) -> u64 + 'a {
    move |key| {
        aggregate
            .rows
            .iter()
            .filter(|(values, _)| {
                question.dimensions.iter().zip(key).all(|(d, want)| {
                    let column = aggregate.dimensions.iter().position(|c| c == d).unwrap();
                    want.as_ref().is_none_or(|w| &values[column] == w)
                })
            })
            .map(|(_, n)| n)
            .sum()
    }
}

/// Sets the member or element at JSON pointer `at` of `value`, adding a member if missing.
fn put(value: &mut serde_json::Value, at: &str, new: serde_json::Value) {
    let (parent, last) = at.rsplit_once('/').unwrap();
    match value.pointer_mut(parent).unwrap() {
        serde_json::Value::Object(members) => {
            members.insert(last.to_owned(), new);
        }
        serde_json::Value::Array(items) => items[last.parse::<usize>().unwrap()] = new,
        other => panic!("{parent} is {other}"),
    }
}
