//! An in-memory `Partition` (`testing` feature): the second implementation of the seam.
//! The store-level suite (tests/it/store_backends.rs) runs the same flows against it
//! and against `Log`, so nothing in the store may lean on what only `Log` does.
//!
//! Records live in a `VecDeque`; an append is settled at once (it is "durable" as soon
//! as it is in memory). A `MemoryBackend` keeps its partitions across a store's close
//! and reopen, as a remote stream store would.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

use super::{Partition, PartitionBackend, PartitionError, PendingAppend, RecordStream};
use crate::log::record::validate_batch;
use crate::log::{
    AppendOutcome, Clock, LogConfig, Offset, Record, RecordInput, Retention, WriterStats,
};

#[derive(Debug, Default)]
struct State {
    records: VecDeque<Record>,
    /// Offset of `records[0]` (of the next record when empty).
    first: u64,
    last_ts: i64,
    /// Why appends are refused (`fail_appends`), if they are.
    read_only: Option<String>,
}

impl State {
    fn next(&self) -> u64 {
        self.first + self.records.len() as u64
    }
    fn from(&self, from: Offset) -> impl Iterator<Item = &Record> {
        let skip = from.0.saturating_sub(self.first);
        self.records
            .iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
    }
}

/// One partition held in memory.
#[derive(Debug)]
pub struct MemoryPartition {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    next_tx: watch::Sender<Offset>,
}

impl MemoryPartition {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            state: Mutex::new(State::default()),
            next_tx: watch::channel(Offset(0)).0,
        }
    }

    /// Refuses every append from now on with `reason` (a backend that failed for good).
    pub fn fail_appends(&self, reason: &str) {
        self.state.lock().read_only = Some(reason.to_owned());
    }

    fn snapshot(&self, from: Offset) -> Vec<Record> {
        self.state.lock().from(from).cloned().collect()
    }
}

impl Partition for MemoryPartition {
    fn submit(&self, records: Vec<RecordInput>) -> Result<PendingAppend, PartitionError> {
        validate_batch(&records).map_err(|e| PartitionError::Failed(Arc::new(e)))?;
        let mut st = self.state.lock();
        if let Some(reason) = &st.read_only {
            return Err(PartitionError::ReadOnly(reason.clone()));
        }
        let ts = self.clock.now_ms().max(st.last_ts);
        st.last_ts = ts;
        let first = st.next();
        for (i, input) in records.iter().enumerate() {
            let record = Record::from_input(Offset(first + i as u64), ts, input);
            st.records.push_back(record);
        }
        self.next_tx.send_replace(Offset(st.next()));
        let count = u32::try_from(records.len()).unwrap_or(u32::MAX);
        Ok(PendingAppend::settled(Ok(AppendOutcome {
            first: Offset(first),
            count,
            timestamp_ms: ts,
        })))
    }

    fn records_from(&self, from: Offset) -> RecordStream {
        Box::new(self.snapshot(from).into_iter().map(Ok))
    }

    fn scan_from(&self, from: Offset) -> RecordStream {
        self.records_from(from)
    }

    fn read(
        &self,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, PartitionError> {
        let st = self.state.lock();
        if from.0 < st.first {
            return Err(PartitionError::Failed(Arc::new(
                crate::log::LogError::OffsetOutOfRange {
                    requested: from,
                    first: Offset(st.first),
                    next: Offset(st.next()),
                },
            )));
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for r in st.from(from).take(max_records) {
            bytes += r.payload.len();
            out.push(r.clone());
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Offset, PartitionError> {
        let st = self.state.lock();
        Ok(st
            .records
            .iter()
            .find(|r| r.timestamp_ms >= timestamp_ms)
            .map_or(Offset(st.next()), |r| r.offset))
    }

    fn first_offset(&self) -> Offset {
        Offset(self.state.lock().first)
    }

    fn next_offset(&self) -> Offset {
        Offset(self.state.lock().next())
    }

    fn durable_next_offset(&self) -> Offset {
        self.next_offset()
    }

    fn subscribe(&self) -> watch::Receiver<Offset> {
        self.next_tx.subscribe()
    }

    fn apply_retention(&self, retention: Retention) -> Result<(), PartitionError> {
        let now = self.clock.now_ms();
        let mut st = self.state.lock();
        let mut bytes: u64 = st.records.iter().map(|r| r.payload.len() as u64).sum();
        while let Some(oldest) = st.records.front() {
            let old = retention
                .max_age_ms
                .is_some_and(|age| oldest.timestamp_ms < now.saturating_sub(age));
            let big = retention.max_bytes.is_some_and(|max| bytes > max);
            // The newest record is kept, as the log keeps its active segment.
            if !(old || big) || st.records.len() == 1 {
                break;
            }
            bytes -= oldest.payload.len() as u64;
            st.records.pop_front();
            st.first += 1;
        }
        Ok(())
    }

    fn health(&self) -> Option<String> {
        self.state.lock().read_only.clone()
    }

    fn sync(&self) -> Result<(), PartitionError> {
        Ok(())
    }

    fn writer_stats(&self) -> WriterStats {
        WriterStats::default()
    }
}

/// Memory partitions by flow directory; they outlive a store's close and reopen.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    partitions: Mutex<HashMap<PathBuf, Arc<MemoryPartition>>>,
    /// Opens still to answer `Unreachable` (a backend without a leader for a while).
    unreachable_opens: Mutex<usize>,
}

impl MemoryBackend {
    /// The next `n` opens answer `PartitionError::Unreachable`, as a NATS cluster
    /// without a stream leader would.
    pub fn refuse_opens(&self, n: usize) {
        *self.unreachable_opens.lock() = n;
    }

    /// The partition of the flow in `flow_dir`, if one was opened.
    pub fn partition(&self, flow_dir: &Path) -> Option<Arc<MemoryPartition>> {
        self.partitions.lock().get(flow_dir).cloned()
    }
}

impl PartitionBackend for MemoryBackend {
    fn open(
        &self,
        flow_dir: &Path,
        config: LogConfig,
        create: bool,
    ) -> Result<Arc<dyn Partition>, PartitionError> {
        {
            let mut refusing = self.unreachable_opens.lock();
            if *refusing > 0 {
                *refusing -= 1;
                return Err(PartitionError::Unreachable(
                    "no stream leader (a test)".into(),
                ));
            }
        }
        let mut all = self.partitions.lock();
        if let Some(p) = all.get(flow_dir) {
            return Ok(Arc::clone(p) as Arc<dyn Partition>);
        }
        if !create {
            return Err(PartitionError::Failed(Arc::new(
                crate::log::LogError::Missing {
                    path: flow_dir.to_path_buf(),
                    reason: "no such memory partition".into(),
                },
            )));
        }
        let p = Arc::new(MemoryPartition::new(config.clock));
        all.insert(flow_dir.to_path_buf(), Arc::clone(&p));
        Ok(p)
    }
}
