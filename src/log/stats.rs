//! Counters the writer keeps for `/metrics`: groups, records, bytes, fsyncs and their
//! latency. Relaxed atomics: each is exact, a snapshot of several is not a transaction.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (µs) of the fsync latency histogram buckets; one more bucket is +Inf.
pub const FSYNC_BUCKETS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

#[derive(Debug, Default)]
pub(crate) struct WriterCounters {
    pub groups: AtomicU64,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub fsyncs: AtomicU64,
    pub fsync_us_total: AtomicU64,
    pub fsync_buckets: [AtomicU64; FSYNC_BUCKETS_US.len() + 1],
}

impl WriterCounters {
    pub fn note_group(&self, records: u64, bytes: u64) {
        self.groups.fetch_add(1, Ordering::Relaxed);
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn note_fsync(&self, us: u64) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.fsync_us_total.fetch_add(us, Ordering::Relaxed);
        let i = FSYNC_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(FSYNC_BUCKETS_US.len());
        self.fsync_buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> WriterStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WriterStats {
            groups: load(&self.groups),
            records: load(&self.records),
            bytes: load(&self.bytes),
            fsyncs: load(&self.fsyncs),
            fsync_us_total: load(&self.fsync_us_total),
            fsync_buckets: std::array::from_fn(|i| load(&self.fsync_buckets[i])),
        }
    }
}

/// A snapshot of one partition's writer counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    /// Group commits written.
    pub groups: u64,
    /// Records acknowledged.
    pub records: u64,
    /// Frame bytes written.
    pub bytes: u64,
    pub fsyncs: u64,
    pub fsync_us_total: u64,
    /// Counts per `FSYNC_BUCKETS_US` bucket (not cumulative), then +Inf.
    pub fsync_buckets: [u64; FSYNC_BUCKETS_US.len() + 1],
}

impl WriterStats {
    /// Adds `other`'s fdatasyncs only (the journal's: its groups are the flows' too).
    pub fn add_fsyncs(&mut self, other: &WriterStats) {
        self.fsyncs += other.fsyncs;
        self.fsync_us_total += other.fsync_us_total;
        for (a, b) in self
            .fsync_buckets
            .iter_mut()
            .zip(other.fsync_buckets.iter())
        {
            *a += b;
        }
    }

    pub fn add(&mut self, other: &WriterStats) {
        self.groups += other.groups;
        self.records += other.records;
        self.bytes += other.bytes;
        self.add_fsyncs(other);
    }
}
