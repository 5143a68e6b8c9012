//! The middle's per-exchange costs: `cargo bench -p simpul-limits --bench limits`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use contracts::manifest::Rate;
use contracts::{ContractRef, MemberId};
use criterion::{Criterion, criterion_group, criterion_main};
use limits::cache::ResponseCache;
use limits::rate::LocalLimits;
use limits::replay::ReplayWindow;
use serde_json::json;

fn replay(c: &mut Criterion) {
    let window = ReplayWindow::new(Duration::from_secs(120), 10_000_000);
    let consumer = MemberId::parse("ID:GOV:KEMLU").unwrap();
    let now = Duration::from_secs(1_800_000_000);
    let mut id = 0u128;
    c.bench_function("replay check (fresh id)", |b| {
        b.iter(|| {
            id += 1;
            black_box(window.check(&consumer, id, now)).ok();
        })
    });
}

fn rate(c: &mut Criterion) {
    let contract = ContractRef::new("citizenship.status", "1");
    let limits = LocalLimits::new(&[(
        contract.clone(),
        Rate {
            per_second: u32::MAX / 2,
            burst: u32::MAX / 2,
        },
    )]);
    let consumer = MemberId::parse("ID:GOV:KEMLU").unwrap();
    c.bench_function("rate check (admitted)", |b| {
        b.iter(|| black_box(limits.check(&contract, &consumer)))
    });
}

fn cache(c: &mut Criterion) {
    let cache = ResponseCache::new(100_000, 64 << 20, metrics::Counter::noop());
    let contract = Arc::new(ContractRef::new("citizenship.status", "1"));
    let query = json!({"nik": "3171011701900001"});
    let key = ResponseCache::key(&contract, &query).unwrap();
    cache.insert(
        key,
        contract.clone(),
        Arc::new(json!({"registered": true, "citizenship": "WNI", "deceased": false})),
        Duration::from_secs(300),
    );
    c.bench_function("cache key (JCS + SHA-256 of the query)", |b| {
        b.iter(|| black_box(ResponseCache::key(&contract, black_box(&query))))
    });
    c.bench_function("cache hit (lookup)", |b| {
        b.iter(|| black_box(cache.get(&key)))
    });
}

criterion_group!(middle, replay, rate, cache);
criterion_main!(middle);
