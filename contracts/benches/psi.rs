//! The group work of an overlap count (`contracts::psi`), per identifier or point, on all the
//! machine's cores: `cargo bench -p simpul-contracts --bench psi`.
//!
//! - hash to the group: one identifier, one core;
//! - blind: identifiers to sorted blinded points (hash, multiply, batched encoding, sort);
//! - re-blind: received points to sorted digests (decode, multiply, batched encoding, digest,
//!   sort).
//!
//! The whole protocol, both sides and the bytes on the wire, is the example
//! `cargo run --release -p simpul-contracts --example psi_overlap`. Run by
//! `cargo test --benches`, this only checks it still works.

use std::hint::black_box;

use contracts::psi::{BlindingKey, Limits, Reblinder, blind, hash_to_group};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Identifiers per measured call: enough for every thread to work in several batches.
const N: usize = 16_384;

fn group_work(c: &mut Criterion) {
    let ids: Vec<String> = (0..N as u64)
        .map(|n| format!("{:016}", 3_171_000_000_000_000 + n))
        .collect();
    let (alpha, beta) = (
        BlindingKey::generate().unwrap(),
        BlindingKey::generate().unwrap(),
    );
    let context = b"bench run";
    let points = blind(&alpha, context, &ids);
    let limits = Limits::default();

    let mut group = c.benchmark_group("psi");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1));
    group.bench_function("hash to the group (one core)", |b| {
        b.iter(|| hash_to_group(black_box(context), black_box(ids[7].as_bytes())))
    });
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("blind identifiers", |b| {
        b.iter(|| blind(&beta, black_box(context), black_box(&ids)))
    });
    group.bench_function("re-blind points", |b| {
        b.iter(|| {
            let mut reblinder = Reblinder::new(&beta, 0, &limits);
            reblinder.push(black_box(points.as_flattened())).unwrap();
            reblinder.finish().unwrap()
        })
    });
    group.finish();
}

criterion_group!(psi, group_work);
criterion_main!(psi);
