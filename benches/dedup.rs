//! Idempotency index: insert, lookup of a present key, lookup of a new key (the common
//! case for fresh events), at 1 M keys in one flow. Memory per key: `eventmesh bench dedup`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use eventmesh::store::dedup::{key_hash, DedupEntry, DedupIndex};

const KEYS: usize = 1_000_000;

fn filled() -> (DedupIndex, Vec<[u8; 16]>) {
    let hashes: Vec<_> = (0..KEYS).map(|i| key_hash(&format!("k{i}"))).collect();
    let mut index = DedupIndex::new(86_400, 10_000_000);
    for (i, h) in hashes.iter().enumerate() {
        let entry = DedupEntry {
            offset: i as u64,
            body_hash: 0,
            time_s: 1_700_000_000 + (i / 20) as u32,
        };
        index.insert(*h, entry);
    }
    (index, hashes)
}

fn dedup(c: &mut Criterion) {
    let (mut index, hashes) = filled();
    let now = 1_700_000_000 + (KEYS / 20) as i64;
    let mut group = c.benchmark_group("dedup");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("lookup_present/1M", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            index.get(&hashes[i], now).is_some()
        })
    });
    let misses: Vec<_> = (0..1024).map(|i| key_hash(&format!("new{i}"))).collect();
    group.bench_function("lookup_new_key/1M", |b| {
        b.iter(|| {
            i = (i + 1) % misses.len();
            index.get(&misses[i], now).is_none()
        })
    });
    group.bench_function("key_hash/36B", |b| {
        b.iter(|| key_hash("0f3c9a52-1b7e-4a55-9d8e-2c1f6b7a9e01"))
    });
    let mut n = 0u64;
    group.bench_function("insert/1M", |b| {
        b.iter(|| {
            n += 1;
            let h = key_hash(&format!("ins{n}"));
            index.insert(
                h,
                DedupEntry {
                    offset: n,
                    body_hash: 0,
                    time_s: now as u32,
                },
            );
        })
    });
    group.finish();
}

criterion_group!(benches, dedup);
criterion_main!(benches);
