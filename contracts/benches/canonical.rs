//! RFC 8785 canonical JSON of what an exchange canonicalises — its query (the cache key)
//! and its audit record (the Merkle leaf) — through `contracts::canonical` and through
//! serde_json_canonicalizer, the implementation it replaced, side by side in one run:
//! `cargo bench -p simpul-contracts --bench canonical`. Run by `cargo test --benches`, it
//! only checks that both still give the same bytes.

use std::hint::black_box;

use contracts::canonical::canonical_json;
use criterion::{Criterion, criterion_group, criterion_main};
use serde::Serialize;
use serde_json::{Value, json};

/// An audit record's shape (`audit::AuditRecord`, which this crate cannot name), with the
/// demo federation's values.
#[derive(Serialize)]
struct Record {
    seq: u64,
    ts: i64,
    exchange_id: String,
    role: &'static str,
    consumer: String,
    provider: String,
    contract: String,
    version: String,
    purpose: String,
    request_hash: Option<String>,
    response_hash: Option<String>,
    outcome: String,
    latency_us: u64,
    subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<String>,
}

fn record() -> Record {
    Record {
        seq: 1_234_567,
        ts: 1_796_000_000_123,
        exchange_id: "0b7e5a52-3f0c-4c52-9a43-5d2f4f1f6a01".into(),
        role: "provider",
        consumer: "ID:GOV:KEMLU".into(),
        provider: "ID:GOV:DUKCAPIL".into(),
        contract: "citizenship.status".into(),
        version: "1".into(),
        purpose: "consular-protection".into(),
        request_hash: Some("n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg".into()),
        response_hash: Some("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0".into()),
        outcome: "ok".into(),
        latency_us: 812,
        subject: Some("Yx3pQ1m9m0d7l0H2yq3oX6cJ3S7Yh1XqVQW1pF7m2aE".into()),
        peer: None,
    }
}

fn query() -> Value {
    json!({"nik": "3171011701900001", "include": ["citizenship", "deceased"]})
}

fn bench(c: &mut Criterion) {
    let (record, query) = (record(), query());
    assert_eq!(
        canonical_json(&record).unwrap(),
        serde_json_canonicalizer::to_vec(&record).unwrap()
    );
    assert_eq!(
        canonical_json(&query).unwrap(),
        serde_json_canonicalizer::to_vec(&query).unwrap()
    );
    let mut group = c.benchmark_group("canonical");
    group.bench_function("record/contracts", |b| {
        b.iter(|| canonical_json(black_box(&record)).unwrap())
    });
    group.bench_function("record/serde_json_canonicalizer", |b| {
        b.iter(|| serde_json_canonicalizer::to_vec(black_box(&record)).unwrap())
    });
    group.bench_function("query/contracts", |b| {
        b.iter(|| canonical_json(black_box(&query)).unwrap())
    });
    group.bench_function("query/serde_json_canonicalizer", |b| {
        b.iter(|| serde_json_canonicalizer::to_vec(black_box(&query)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
