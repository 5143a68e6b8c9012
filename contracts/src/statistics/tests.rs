use serde_json::json;

use super::*;
use crate::disclosure::{Figure, Suppression, feasible_ranges};

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
        Some(Figure::Suppressed(Suppression::Primary))
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
