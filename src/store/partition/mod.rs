//! The store's one view of a flow's events: the `Partition` trait, its backend-neutral
//! error, the awaitable `PendingAppend`, and `PartitionBackend`, which opens one per flow.
//!
//! `Log` (src/log) implements it in `log.rs`; `memory.rs` holds a second, in-memory
//! implementation (`testing` feature) that the store-level suite runs against too. A
//! NATS JetStream stream (`nats/`, cluster mode) is the third: nothing here names a
//! file, a segment or a thread.
//!
//! Appends are async (`submit` queues a batch and returns a future for its offsets).
//! Reads are plain calls that may block briefly (the log's are mmap reads); the store
//! makes them off the async executor where a read can be long (SSE, analytics).

mod log;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod nats;

use std::fmt::Debug;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::watch;

pub use self::log::{LogBackend, EVENTS_DIR};
pub use crate::log::{AppendOutcome, LogConfig, Offset, Record, RecordInput, Retention};
use crate::log::{LogError, WriterStats};

/// How a partition failed, in the terms the store acts on, whatever the backend.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PartitionError {
    /// Too many appends are queued: nothing of the call was stored; retry shortly.
    #[error("the partition's write queue is full")]
    Overloaded,
    /// The partition takes no appends until it is reopened (a failed fsync, a closed
    /// log). Reads may still work.
    #[error("{0}")]
    ReadOnly(String),
    /// Another writer (an EventMesh node sharing the partition) stored one of the
    /// batch's keys first: nothing of the batch was stored. Catch the dedup index up
    /// from the partition and plan the call again.
    #[error("another writer stored one of these idempotency keys first")]
    Conflict,
    /// The backend did not confirm the append in time (a remote store without a
    /// leader, or out of reach): it may or may not be stored, so a retry must carry
    /// the same idempotency key. Nothing is wrong with the partition itself.
    #[error("{0}")]
    Unreachable(String),
    /// Anything else: I/O, damage, a limit, a lost connection. The backend's own error
    /// is kept whole, so its message (file and byte position) reaches the operator.
    #[error(transparent)]
    Failed(Arc<dyn std::error::Error + Send + Sync>),
}

impl From<LogError> for PartitionError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Overloaded => Self::Overloaded,
            LogError::Poisoned { .. } | LogError::Closed => Self::ReadOnly(e.to_string()),
            other => Self::Failed(Arc::new(other)),
        }
    }
}

type AppendFuture = Pin<Box<dyn Future<Output = Result<AppendOutcome, PartitionError>> + Send>>;

/// An append handed to a partition. Await it for the offsets it was given; it resolves
/// only once the batch is durable under the partition's policy (or failed). Dropping it
/// does not cancel the append.
pub struct PendingAppend(AppendFuture);

impl PendingAppend {
    /// An append that resolves when `future` does: a backend wraps its own wait here.
    pub fn new(
        future: impl Future<Output = Result<AppendOutcome, PartitionError>> + Send + 'static,
    ) -> Self {
        Self(Box::pin(future))
    }

    /// An append that is already settled (a backend that stores synchronously).
    pub fn settled(result: Result<AppendOutcome, PartitionError>) -> Self {
        Self::new(std::future::ready(result))
    }
}

impl Debug for PendingAppend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingAppend")
    }
}

impl Future for PendingAppend {
    type Output = Result<AppendOutcome, PartitionError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// Records from an offset, lazily, in offset order.
pub type RecordStream = Box<dyn Iterator<Item = Result<Record, PartitionError>> + Send>;

/// One flow's ordered, durable events. Offsets are dense from 0 and never reused; the
/// retained range is `first_offset()..next_offset()`.
pub trait Partition: Send + Sync + Debug {
    /// Queues a batch (stored all or nothing) without blocking; a full queue is
    /// `Overloaded`. The records get consecutive offsets and one append time.
    fn submit(&self, records: Vec<RecordInput>) -> Result<PendingAppend, PartitionError>;
    /// Records from `from`, lazily, up to the end published when the reader gets there.
    fn records_from(&self, from: Offset) -> RecordStream;
    /// The same for a one-pass scan that keeps no cached state behind.
    fn scan_from(&self, from: Offset) -> RecordStream;
    /// At most `max_records` records from `from`, stopping after `max_bytes` of payload
    /// (at least one record when one exists). Below `first_offset` is an error.
    fn read(
        &self,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, PartitionError>;
    /// The first offset appended at or after `timestamp_ms` (`next_offset` if none).
    fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Offset, PartitionError>;
    /// The first retained offset.
    fn first_offset(&self) -> Offset;
    /// One past the last acknowledged record.
    fn next_offset(&self) -> Offset;
    /// One past the last record that is durable (behind `next_offset` only under a lazy
    /// fsync policy).
    fn durable_next_offset(&self) -> Offset;
    /// Watches `next_offset`: it changes after each durable append (tails, long polls).
    fn subscribe(&self) -> watch::Receiver<Offset>;
    /// Deletes the oldest records that break `retention` (a backend may keep more).
    fn apply_retention(&self, retention: Retention) -> Result<(), PartitionError>;
    /// Why appends are refused, if they are: `None` when healthy.
    fn health(&self) -> Option<String>;
    /// Makes everything acknowledged so far durable. May block.
    fn sync(&self) -> Result<(), PartitionError>;
    /// Write-path counters for `/metrics` (zero where a backend has none).
    fn writer_stats(&self) -> WriterStats;
    /// Other writers (other EventMesh nodes) may append to this partition too, so the
    /// store catches its dedup index up from the partition before it plans an ingest.
    fn shared(&self) -> bool {
        false
    }
    /// Waits until every append submitted before the call is settled (stored or
    /// failed), so that a read after it sees them. May block. A backend whose appends
    /// each settle before their caller goes on needs nothing here.
    fn barrier(&self) -> Result<(), PartitionError> {
        Ok(())
    }
    /// Learns the end other writers reached (a shared partition: one round trip to
    /// the backend). A partition only this node writes knows its end already.
    fn refresh_end(&self) -> Result<(), PartitionError> {
        Ok(())
    }
    /// One past the last record another writer may have appended, as far as this
    /// node has heard: records from it to `next_offset` are this node's own appends.
    /// Never blocks (a shared partition refreshes it in the background). The store
    /// reads only up to it before an ingest, never its own records back.
    fn others_end(&self) -> Offset {
        self.next_offset()
    }
}

/// Opens each flow's event partition. `StoreConfig::partitions` picks the backend.
pub trait PartitionBackend: Send + Sync + Debug {
    /// Opens the event partition of the flow whose directory is `flow_dir`. With
    /// `create` (a new flow) it is made; without, it must exist: a missing partition is
    /// damage, never replaced by an empty one.
    fn open(
        &self,
        flow_dir: &Path,
        config: LogConfig,
        create: bool,
    ) -> Result<Arc<dyn Partition>, PartitionError>;

    /// Deletes the partition of a deleted flow whose data lives outside `flow_dir`
    /// (a remote stream). The store calls it before removing the directory; an error
    /// leaves both for the next maintenance pass.
    fn remove(&self, _flow_dir: &Path) -> Result<(), PartitionError> {
        Ok(())
    }

    /// Opens the flow's request log where this backend keeps it, or `None`: a local
    /// log in the flow's directory (the default). Cluster mode keeps it in a stream,
    /// so that every node reads every node's entries (and counts them in analytics).
    /// With `create` it is made if missing.
    fn open_requests(
        &self,
        _flow_dir: &Path,
        _config: LogConfig,
        _create: bool,
    ) -> Option<Result<Arc<dyn Partition>, PartitionError>> {
        None
    }
}
