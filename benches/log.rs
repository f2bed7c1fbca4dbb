//! Engine benches: append (payload size × fsync policy × writers), replay, recovery.
//! Run: cargo bench --bench log [-- <filter>]. Results and baselines: docs/performance.md.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use eventmesh::log::{FsyncPolicy, Log, LogConfig, Offset, RecordInput};

fn open(dir: &std::path::Path, fsync: FsyncPolicy) -> Log {
    let config = LogConfig {
        fsync,
        ..LogConfig::default()
    };
    Log::open(dir, config).expect("open bench log")
}

/// Appends `total` single-record calls from `writers` threads, each waiting for its ack.
fn append_from(log: &Arc<Log>, writers: usize, total: u64, payload: &Bytes) -> Duration {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..writers {
            let (log, next, payload) = (Arc::clone(log), Arc::clone(&next), payload.clone());
            s.spawn(move || {
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    log.append(RecordInput::new(payload.clone()))
                        .expect("append");
                }
            });
        }
    });
    start.elapsed()
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    for fsync in [FsyncPolicy::Never, FsyncPolicy::Always] {
        for size in [64usize, 256, 4096] {
            for writers in [1usize, 64] {
                let dir = tempfile::tempdir().expect("tempdir");
                let log = Arc::new(open(dir.path(), fsync));
                let payload = Bytes::from(vec![b'x'; size]);
                let id = BenchmarkId::new(format!("{fsync}/{size}B"), format!("{writers}w"));
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| append_from(&log, writers, iters, &payload));
                });
            }
        }
    }
    group.finish();
}

fn replay(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), FsyncPolicy::Never);
    let records = 200_000u64;
    let payload = Bytes::from(vec![b'x'; 256]);
    for _ in 0..records / 1000 {
        log.append_batch(vec![RecordInput::new(payload.clone()); 1000])
            .expect("append");
    }
    log.roll().expect("roll");
    let mut group = c.benchmark_group("replay");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(records));
    group.bench_function("256B/checksummed", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for r in log.iter_from(Offset(0)) {
                n += r.expect("read").payload.len() as u64;
            }
            assert_eq!(n, records * 256);
        });
    });
    group.finish();
}

fn recovery(c: &mut Criterion) {
    // Open cost: the last segment is scanned, sealed segments load their index.
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let config = LogConfig {
            segment_bytes: 32 * 1024 * 1024,
            fsync: FsyncPolicy::Never,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), config).expect("open");
        let payload = Bytes::from(vec![b'x'; 256]);
        // About 96 MiB: two sealed segments and a full-ish active one.
        for _ in 0..340 {
            log.append_batch(vec![RecordInput::new(payload.clone()); 1000])
                .expect("append");
        }
    }
    let mut group = c.benchmark_group("recovery");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    group.bench_function("open/96MiB/32MiB-segments", |b| {
        b.iter(|| {
            let config = LogConfig {
                segment_bytes: 32 * 1024 * 1024,
                ..LogConfig::default()
            };
            let log = Log::open(dir.path(), config).expect("open");
            assert_eq!(log.next_offset(), Offset(340_000));
        });
    });
    group.finish();
}

criterion_group!(benches, append, replay, recovery);
criterion_main!(benches);
