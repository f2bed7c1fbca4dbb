//! The store's narrow view of one partition. `Log` implements it today; a JetStream
//! stream can implement it later without touching HTTP, dedup or offsets.

use std::fmt::Debug;

use tokio::sync::watch;

use crate::log::LogError;
use crate::log::{
    Log, LogStats, Offset, PendingAppend, Record, RecordInput, Retention, RetentionReport,
};

pub type RecordStream = Box<dyn Iterator<Item = Result<Record, LogError>> + Send>;

pub trait Partition: Send + Sync + Debug {
    /// Queues a batch (stored all or nothing) without blocking; a full queue is `Overloaded`.
    fn submit(&self, records: Vec<RecordInput>) -> Result<PendingAppend, LogError>;
    /// Records from `from`, lazily, up to the end published when the reader gets there.
    fn records_from(&self, from: Offset) -> RecordStream;
    /// The same for a one-pass scan that keeps no cached state behind (no maps).
    fn scan_from(&self, from: Offset) -> RecordStream;
    /// At most `max_records` records from `from`, stopping after `max_bytes` of payload.
    fn read(
        &self,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, LogError>;
    /// The first offset appended at or after `timestamp_ms`.
    fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Offset, LogError>;
    fn first_offset(&self) -> Offset;
    fn next_offset(&self) -> Offset;
    /// One past the last record that is durable (not only acknowledged under a lazy
    /// fsync policy).
    fn durable_next_offset(&self) -> Offset;
    /// Changes to the next offset, after each durable append.
    fn subscribe(&self) -> watch::Receiver<Offset>;
    fn apply_retention(&self, retention: Retention) -> Result<RetentionReport, LogError>;
    fn stats(&self) -> LogStats;
    /// Why appends are refused, if they are.
    fn poisoned(&self) -> Option<LogError>;
    /// Makes everything appended so far durable.
    fn sync(&self) -> Result<(), LogError>;
    /// Writer counters for metrics.
    fn writer_stats(&self) -> crate::log::WriterStats;
}

impl Partition for Log {
    fn submit(&self, records: Vec<RecordInput>) -> Result<PendingAppend, LogError> {
        self.try_submit(records)
    }
    fn records_from(&self, from: Offset) -> RecordStream {
        Box::new(self.iter_from(from))
    }
    fn scan_from(&self, from: Offset) -> RecordStream {
        Box::new(Log::scan_from(self, from))
    }
    fn read(
        &self,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, LogError> {
        Log::read(self, from, max_records, max_bytes)
    }
    fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Offset, LogError> {
        Log::offset_for_timestamp(self, timestamp_ms)
    }
    fn first_offset(&self) -> Offset {
        Log::first_offset(self)
    }
    fn next_offset(&self) -> Offset {
        Log::next_offset(self)
    }
    fn durable_next_offset(&self) -> Offset {
        Log::durable_next_offset(self)
    }
    fn subscribe(&self) -> watch::Receiver<Offset> {
        Log::subscribe(self)
    }
    fn apply_retention(&self, retention: Retention) -> Result<RetentionReport, LogError> {
        Log::apply_retention(self, retention)
    }
    fn stats(&self) -> LogStats {
        Log::stats(self)
    }
    fn poisoned(&self) -> Option<LogError> {
        Log::poisoned(self)
    }
    fn sync(&self) -> Result<(), LogError> {
        Log::sync(self)
    }
    fn writer_stats(&self) -> crate::log::WriterStats {
        Log::writer_stats(self)
    }
}
