//! The engine's `Log` as a `Partition`: the single-node backend.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

use super::{Partition, PartitionBackend, PartitionError, PendingAppend, RecordStream};
use crate::log::storage::Storage;
use crate::log::{Log, LogConfig, Offset, Record, RecordInput, Retention, WriterStats};

/// The directory of a flow's event log, under the flow's directory.
pub const EVENTS_DIR: &str = "events";

/// Event partitions as `Log`s in `<flow>/events/` on `storage`.
#[derive(Debug)]
pub struct LogBackend {
    storage: Arc<dyn Storage>,
}

impl LogBackend {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self { storage }
    }
}

impl PartitionBackend for LogBackend {
    fn open(
        &self,
        flow_dir: &Path,
        config: LogConfig,
        create: bool,
    ) -> Result<Arc<dyn Partition>, PartitionError> {
        let dir = flow_dir.join(EVENTS_DIR);
        let storage = Arc::clone(&self.storage);
        let log = match create {
            true => Log::open_with(dir, config, storage),
            false => Log::open_existing_with(dir, config, storage),
        }?;
        Ok(Arc::new(log))
    }
}

fn stream(iter: crate::log::RecordIter) -> RecordStream {
    Box::new(iter.map(|r| r.map_err(PartitionError::from)))
}

impl Partition for Log {
    fn submit(&self, records: Vec<RecordInput>) -> Result<PendingAppend, PartitionError> {
        let pending = self.try_submit(records)?;
        Ok(PendingAppend::new(async move {
            pending.await.map_err(PartitionError::from)
        }))
    }
    fn records_from(&self, from: Offset) -> RecordStream {
        stream(self.iter_from(from))
    }
    fn scan_from(&self, from: Offset) -> RecordStream {
        stream(Log::scan_from(self, from))
    }
    fn read(
        &self,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, PartitionError> {
        Ok(Log::read(self, from, max_records, max_bytes)?)
    }
    fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Offset, PartitionError> {
        Ok(Log::offset_for_timestamp(self, timestamp_ms)?)
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
    fn apply_retention(&self, retention: Retention) -> Result<(), PartitionError> {
        Log::apply_retention(self, retention)?;
        Ok(())
    }
    fn health(&self) -> Option<String> {
        Log::poisoned(self).map(|e| e.to_string())
    }
    fn sync(&self) -> Result<(), PartitionError> {
        Ok(Log::sync(self)?)
    }
    fn writer_stats(&self) -> WriterStats {
        Log::writer_stats(self)
    }
    fn barrier(&self) -> Result<(), PartitionError> {
        Ok(Log::barrier(self)?)
    }
}
