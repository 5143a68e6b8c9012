//! Protecting a statistics answer of 200 destination countries × 10 sectors × 2 sexes (4,000
//! cells, many of them small; about half a million people): `cargo bench -p simpul-contracts
//! --bench disclosure`. It also audits, once, the published table of the first 80 countries
//! from it alone (the audit of all 200 takes minutes: a linear program per suppressed
//! figure) and prints what was suppressed and how long each took. Run by `cargo test
//! --benches`, it only checks it still works.

use std::hint::black_box;
use std::time::Instant;

use contracts::disclosure::{
    CountTable, DisclosureRules, PublishedTable, feasible_ranges, protect,
};
use criterion::{Criterion, criterion_group, criterion_main};

/// The answer: a few large destinations and a long tail of small ones, sectors of falling
/// size, each with its own share of women, and noise (a fixed xorshift, so every run
/// protects the same table).
fn answer(countries: usize) -> CountTable {
    let sectors = [0.30, 0.20, 0.12, 0.10, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        0.5 + (state % 1000) as f64 / 1000.0
    };
    let mut rows = Vec::new();
    for c in 0..countries {
        let country = 150_000.0 / f64::powf(c as f64 + 1.0, 1.3);
        for (s, share) in sectors.iter().enumerate() {
            let women = 0.2 + 0.6 * s as f64 / 9.0;
            for (sex, part) in [("F", women), ("M", 1.0 - women)] {
                let count = (country * share * part * noise()).round() as u64;
                rows.push((
                    vec![format!("C{c:03}"), format!("S{s}"), sex.to_owned()],
                    count,
                ));
            }
        }
    }
    CountTable::new(["destination", "sector", "sex"], rows, 100_000).expect("a valid table")
}

/// What was suppressed in `published`, for people: the small cells (count from 1 to
/// `min_cell` - 1) and the others, known from the true `table`.
fn summary(table: &CountTable, published: &PublishedTable) -> String {
    let small = |key: &[Option<String>]| {
        let key: Vec<Option<&str>> = key.iter().map(Option::as_deref).collect();
        table
            .count(&key)
            .is_some_and(|v| (1..published.min_cell).contains(&v))
    };
    let cells = |want_small: bool| {
        published
            .suppressed()
            .filter(|key| key.iter().all(Option::is_some) && small(key) == want_small)
            .count()
    };
    let totals = published
        .suppressed()
        .filter(|key| key.iter().any(Option::is_none))
        .count();
    format!(
        "{} cells, {} people, {} figures: {} cells primary, {} complementary, {totals} totals",
        table.cell_count(),
        table.population(),
        published.figures.len(),
        cells(true),
        cells(false),
    )
}

fn disclosure(c: &mut Criterion) {
    let rules = DisclosureRules::default();

    let smaller = answer(80);
    let published = protect(&smaller, &rules);
    let started = Instant::now();
    let ranges = feasible_ranges(&published).expect("an auditable table");
    let audit_time = started.elapsed();
    let exposed = ranges
        .iter()
        .filter(|r| !r.protected(rules.min_cell()))
        .count();
    eprintln!(
        "{}; audit {audit_time:?} ({} ranges, {exposed} exposed)",
        summary(&smaller, &published),
        ranges.len()
    );
    assert_eq!(exposed, 0);

    let table = answer(200);
    let started = Instant::now();
    let published = protect(&table, &rules);
    eprintln!(
        "{}; protect {:?}",
        summary(&table, &published),
        started.elapsed()
    );

    let mut group = c.benchmark_group("disclosure");
    group.sample_size(10);
    group.bench_function("protect 200x10x2", |b| {
        b.iter(|| protect(black_box(&table), &rules))
    });
    group.finish();
}

criterion_group!(benches, disclosure);
criterion_main!(benches);
