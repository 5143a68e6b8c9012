//! The middle's per-exchange costs, one bench per part (replay window, rate limit, cache,
//! bulkhead, breaker): `cargo bench -p simpul-limits --bench limits`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use contracts::manifest::Rate;
use contracts::{ContractRef, MemberId};
use criterion::{Criterion, criterion_group, criterion_main};
use limits::breaker::Breaker;
use limits::bulkhead::Bulkhead;
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
        b.iter(|| black_box(limits.check(&contract, &consumer, 1)))
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

fn bulkhead(c: &mut Criterion) {
    let bulkhead = Bulkhead::new(32, Duration::from_millis(100));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    c.bench_function("bulkhead enter and leave (a slot free)", |b| {
        b.iter(|| runtime.block_on(async { black_box(bulkhead.enter().await.is_ok()) }))
    });
}

fn breaker(c: &mut Criterion) {
    let breaker = Breaker::new(5, Duration::from_secs(10));
    c.bench_function("breaker admit and record (closed)", |b| {
        b.iter(|| {
            black_box(breaker.admit());
            breaker.record(true);
        })
    });
}

criterion_group!(middle, replay, rate, cache, bulkhead, breaker);
criterion_main!(middle);
