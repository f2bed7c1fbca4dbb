//! One open flow: its event partition, request log, consumers, idempotency index and
//! analytics. Its insides are private: the store and HTTP use the methods here (the
//! read API: `first`, `end`, `offset_at`, `tail`, `read_events`, `health`, `stats`)
//! and in the submodules, one concern each:
//!
//! - `ingest.rs`: dedup + append (a pure plan under the lock, then submit and settle);
//! - `consumers.rs`: poll, commit, seek, list, delete; lag computed in one place;
//! - `requests.rs`: the request log (buffered entries, rejection counts, reads);
//! - `checkpoint.rs`: the dedup index and analytics, rebuilt from the logs and saved as
//!   CRC-checked bincode files.

mod checkpoint;
mod consumers;
mod ingest;
mod requests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

pub use consumers::{lag, ConsumerView, Polled, SeekTo};
pub use ingest::IngestOutcome;

use crate::log::storage::Storage;
use crate::log::{Clock, Log, LogConfig, LogError, Offset, Retention, WriterStats};
use crate::store::analytics::Aggregator;
use crate::store::consumers::Consumers;
use crate::store::dedup::{DedupIndex, KeyHash};
use crate::store::error::StoreError;
use crate::store::event::{record_type, StoredEvent};
use crate::store::meta::FlowRecord;
use crate::store::partition::{Partition, PartitionBackend};
use crate::store::requests::{
    RejectionTally, REQUEST_LOG_MAX_AGE_MS, REQUEST_LOG_MAX_BYTES, REQUEST_LOG_SEGMENT_BYTES,
};

/// The directories of a flow's request log and consumer log, under the flow's own.
const REQUESTS_DIR: &str = "requests";
const CONSUMERS_DIR: &str = "consumers";

#[derive(Debug)]
struct DedupState {
    index: DedupIndex,
    /// Keys whose append is in flight, with a signal that turns true when it settles.
    inflight: HashMap<KeyHash, watch::Receiver<bool>>,
    /// The log offset the checkpoint on disk covers, while it still matches the index
    /// (`checkpoint_dedup` then skips the write).
    saved_covered: Option<u64>,
    /// Every record below this offset is in the index (or expired from it): what
    /// `catch_up_dedup` reads from on a shared partition (cluster mode).
    seen: u64,
    /// This node's appends that settled above `seen` (`first → end`): concurrent
    /// appends settle out of order, and `seen` moves over them once the gap closes.
    /// At most one entry per append in flight (`INGEST_INFLIGHT_PER_FLOW_MAX`).
    settled_ahead: std::collections::BTreeMap<u64, u64>,
}

impl DedupState {
    /// An append of this node settled at `first..end`: its keys are in the index.
    fn note_settled(&mut self, first: u64, end: u64) {
        match first.cmp(&self.seen) {
            std::cmp::Ordering::Greater => {
                self.settled_ahead.insert(first, end);
            }
            std::cmp::Ordering::Equal => self.note_read(end),
            // Read back by a catch-up already.
            std::cmp::Ordering::Less => {}
        }
    }

    /// Every record below `to` is in the index: move `seen` there, and over the
    /// settled appends that now join it.
    fn note_read(&mut self, to: u64) {
        self.seen = self.seen.max(to);
        while let Some((&first, &end)) = self.settled_ahead.first_key_value() {
            if first > self.seen {
                break;
            }
            self.seen = self.seen.max(end);
            self.settled_ahead.remove(&first);
        }
    }
}

#[derive(Debug)]
pub struct Flow {
    id: String,
    /// The flow's settings; replaced whole on a change, so readers clone an `Arc`.
    record: RwLock<Arc<FlowRecord>>,
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    /// The events: reached only through the `Partition` seam.
    events: Arc<dyn Partition>,
    /// The request log: a local `Log` in `<flow>/requests/`, or where the backend
    /// keeps it (cluster mode: a stream every node appends to and reads).
    requests: Arc<dyn Partition>,
    consumers: Consumers,
    dedup: Arc<Mutex<DedupState>>,
    /// Held while the dedup index reads other nodes' records (cluster mode), so that
    /// concurrent ingests read them once, not once each.
    catching_up: Mutex<()>,
    analytics: Mutex<Aggregator>,
    /// Ingest calls waiting for their append (bounded by `INGEST_INFLIGHT_PER_FLOW_MAX`).
    inflight_appends: Arc<AtomicUsize>,
    /// Request-log entries not yet handed to the request log's writer: handed over in
    /// batches (`REQUEST_LOG_BATCH_MAX`, or by `flush_requests`), not one by one.
    request_buf: Mutex<Vec<crate::log::RecordInput>>,
    /// Set when an entry is buffered or a rejection count is open: `flush_requests`
    /// has work. Idle flows cost the periodic flush one atomic swap.
    requests_pending: AtomicBool,
    /// Unauthenticated rejections being counted per reason and second (requests.rs).
    /// Locked before `request_buf` when both are.
    rejections: Mutex<RejectionTally>,
}

/// One page of events, read against one snapshot of the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub events: Vec<StoredEvent>,
    /// The offset to read next.
    pub next: Offset,
    /// One past the last event when the page was read (`next <= end`, unless the read
    /// began beyond the end: then `next` is where it began).
    pub end: Offset,
}

/// Whether a flow takes events, and which of its logs refuse appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowHealth {
    /// The events partition takes appends.
    pub writable: bool,
    /// `("events" | "requests" | "consumers", why)` for each log that refuses appends.
    pub refusing: Vec<(&'static str, String)>,
}

/// A flow's numbers for `/metrics` and the API.
#[derive(Debug, Clone)]
pub struct FlowStats {
    pub writer: WriterStats,
    /// Keys in the idempotency index, and keys it dropped early at its bound.
    pub dedup_keys: usize,
    pub dedup_evicted_early: u64,
}

fn now_s(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

/// Each of a flow's local logs, by directory name, with its configuration derived
/// from the store's: the request log (`interval=250ms`: the request never waits for
/// it) and the consumer log (every commit synced). The events' partition takes the
/// store's own configuration.
pub fn log_configs(base: &LogConfig) -> [(&'static str, LogConfig); 3] {
    [
        (crate::store::partition::EVENTS_DIR, base.clone()),
        (
            REQUESTS_DIR,
            LogConfig {
                segment_bytes: REQUEST_LOG_SEGMENT_BYTES,
                fsync: crate::log::FsyncPolicy::Interval(std::time::Duration::from_millis(250)),
                ..base.clone()
            },
        ),
        (CONSUMERS_DIR, Consumers::log_config(base)),
    ]
}

/// With `create`, makes the flow's directory durable in its parent; without, checks
/// that it is there (a missing one is damage, never recreated empty).
fn prepare_dir(storage: &dyn Storage, dir: &Path, create: bool) -> Result<(), StoreError> {
    if create {
        storage
            .create_dir_all(dir)
            .map_err(|e| StoreError::io("create", dir, e))?;
        if let Some(parent) = dir.parent() {
            storage
                .sync_dir(parent)
                .map_err(|e| StoreError::io("fsync directory", parent, e))?;
        }
    } else if !storage.exists(dir) {
        return Err(LogError::Missing {
            path: dir.to_path_buf(),
            reason: "the flow's directory is gone; it is never recreated empty".into(),
        }
        .into());
    }
    Ok(())
}

/// What an opening may make, and what must exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Creating {
    /// A new flow: its event partition is made.
    pub flow: bool,
    /// Its local logs (request log, consumers) and directory are made if missing: a new
    /// flow, or in cluster mode one another node made.
    pub local_logs: bool,
}

impl Flow {
    /// Opens the flow's files under `dir` and rebuilds its derived state. With
    /// `create.flow` (a new flow) its partition is made; with `create.local_logs` its
    /// directory and local logs are made if missing, each made durable in its parent.
    /// Without, they must exist: a missing directory or log is damage, never replaced
    /// by an empty one.
    pub fn open(
        record: FlowRecord,
        dir: PathBuf,
        storage: Arc<dyn Storage>,
        partitions: &dyn PartitionBackend,
        base: &LogConfig,
        create: Creating,
        offsets: Option<Arc<dyn crate::store::registry::SharedOffsets>>,
    ) -> Result<Self, StoreError> {
        // A new flow's directory is made durable even though its creation made it; a
        // flow adopted from the registry only gets one if it has none.
        let make_dir = create.flow || (create.local_logs && !storage.exists(&dir));
        prepare_dir(&*storage, &dir, make_dir)?;
        let [events, requests, consumers] = log_configs(base);
        let events = partitions.open(&dir, events.1, create.flow)?;
        let make_local = |path: &Path| create.local_logs && !storage.exists(path);
        let requests: Arc<dyn Partition> = match partitions.open_requests(
            &dir,
            requests.1.clone(),
            create.flow || create.local_logs,
        ) {
            Some(opened) => opened?,
            None => {
                let path = dir.join(requests.0);
                Arc::new(match make_local(&path) || create.flow {
                    true => Log::open_with(path, requests.1, Arc::clone(&storage)),
                    false => Log::open_existing_with(path, requests.1, Arc::clone(&storage)),
                }?)
            }
        };
        let consumers_dir = dir.join(consumers.0);
        let consumers = Consumers::open(
            &consumers_dir,
            Arc::clone(&storage),
            consumers.1,
            make_local(&consumers_dir) || create.flow,
            offsets.map(|offsets| crate::store::consumers::SharedConsumers {
                offsets,
                flow: record.id.clone(),
            }),
        )?;
        let clock = Arc::clone(&base.clock);
        let moved = consumers.reset_past(events.next_offset(), clock.now_ms())?;
        if moved > 0 {
            tracing::warn!(flow = %record.id, consumers = moved, end = %events.next_offset(),
                "consumers committed past the end of the event log (after a repair) now read from its end");
        }
        let (index, saved_covered) = checkpoint::rebuild_dedup(
            &*storage,
            &dir,
            &*events,
            record.dedup_window_seconds,
            clock.now_ms(),
        )?;
        let analytics =
            checkpoint::load_analytics(&*storage, &dir, &*events, requests.next_offset());
        let seen = events.next_offset().0;
        Ok(Self {
            id: record.id.clone(),
            record: RwLock::new(Arc::new(record)),
            dir,
            storage,
            clock,
            events,
            requests,
            consumers,
            dedup: Arc::new(Mutex::new(DedupState {
                index,
                inflight: HashMap::new(),
                saved_covered,
                seen,
                settled_ahead: std::collections::BTreeMap::new(),
            })),
            catching_up: Mutex::new(()),
            analytics: Mutex::new(analytics),
            inflight_appends: Arc::new(AtomicUsize::new(0)),
            request_buf: Mutex::new(Vec::new()),
            requests_pending: AtomicBool::new(false),
            rejections: Mutex::new(RejectionTally::default()),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The flow's settings as they are now.
    pub fn record(&self) -> Arc<FlowRecord> {
        Arc::clone(&self.record.read())
    }

    /// Adopts changed settings (the store saved them first).
    pub(crate) fn set_record(&self, record: FlowRecord) {
        self.set_dedup_window(record.dedup_window_seconds);
        *self.record.write() = Arc::new(record);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    // ---- the read API ------------------------------------------------------------

    /// The first retained offset.
    pub fn first(&self) -> Offset {
        self.events.first_offset()
    }

    /// One past the last acknowledged event.
    pub fn end(&self) -> Offset {
        self.events.next_offset()
    }

    /// One past the last durable event (behind `end` under a lazy fsync policy until
    /// the next fdatasync).
    pub fn durable_end(&self) -> Offset {
        self.events.durable_next_offset()
    }

    /// The first offset appended at or after `timestamp_ms` (`end` when none is).
    pub fn offset_at(&self, timestamp_ms: i64) -> Result<Offset, StoreError> {
        Ok(self.events.offset_for_timestamp(timestamp_ms)?)
    }

    /// Watches `end`: it changes after each durable append (tails and long polls).
    pub fn tail(&self) -> watch::Receiver<Offset> {
        self.events.subscribe()
    }

    /// Whether the flow takes events, and which of its logs refuse appends.
    pub fn health(&self) -> FlowHealth {
        let events = self.events.health();
        let writable = events.is_none();
        let refusing = [
            ("events", events),
            ("requests", self.requests.health()),
            (
                "consumers",
                self.consumers.poisoned().map(|e| e.to_string()),
            ),
        ]
        .into_iter()
        .filter_map(|(name, why)| why.map(|w| (name, w)))
        .collect();
        FlowHealth { writable, refusing }
    }

    pub fn stats(&self) -> FlowStats {
        let (dedup_keys, dedup_evicted_early) = {
            let st = self.dedup.lock();
            (st.index.len(), st.index.evicted_early)
        };
        FlowStats {
            writer: self.events.writer_stats(),
            dedup_keys,
            dedup_evicted_early,
        }
    }

    /// Events from `from`, at most `limit` and at most `max_bytes` of payload (but always
    /// at least one event when one matches), optionally only of `event_type`, all below
    /// the end as it was when the read began (the page's `end`).
    pub fn read_events(
        &self,
        from: Offset,
        limit: usize,
        max_bytes: usize,
        event_type: Option<&str>,
    ) -> Result<Page, StoreError> {
        let end = self.events.next_offset();
        let mut bytes = 0usize;
        let mut next = from.max(self.events.first_offset());
        let mut events = Vec::new();
        // Scan at most this many records per call when filtering, so one read stays bounded.
        let mut scan_budget = crate::log::limits::READ_RECORDS_MAX;
        for record in self.events.records_from(next) {
            let record = record?;
            if record.offset >= end {
                break;
            }
            next = Offset(record.offset.0 + 1);
            scan_budget -= 1;
            if event_type.is_none_or(|t| record_type(&record) == t) {
                if !events.is_empty() && bytes + record.payload.len() > max_bytes {
                    // Over the byte budget: this one is the next page's first.
                    next = record.offset;
                    break;
                }
                bytes += record.payload.len();
                events.push(StoredEvent::from_record(&self.id, record));
                if events.len() >= limit || bytes >= max_bytes {
                    break;
                }
            }
            if scan_budget == 0 {
                break;
            }
        }
        Ok(Page { events, next, end })
    }

    /// The event at `offset`, if retained.
    pub fn event_at(&self, offset: Offset) -> Result<Option<StoredEvent>, StoreError> {
        if offset < self.events.first_offset() || offset >= self.events.next_offset() {
            return Ok(None);
        }
        Ok(self
            .events
            .read(offset, 1, usize::MAX)?
            .into_iter()
            .next()
            .map(|r| StoredEvent::from_record(&self.id, r)))
    }

    // ---- upkeep ------------------------------------------------------------------

    /// Retention of the event log (the flow's settings) and of the request log.
    pub fn apply_retention(&self) -> Result<(), StoreError> {
        let settings = self.record.read().retention;
        // A shared partition (a stream) keeps the limits it was given, so removing a
        // setting must reach it too; a local log with no limits has nothing to do.
        let limited = settings.max_age_seconds.is_some() || settings.max_bytes.is_some();
        if limited || self.events.shared() {
            self.events.apply_retention(Retention {
                max_age_ms: settings
                    .max_age_seconds
                    .map(|s| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)),
                max_bytes: settings.max_bytes,
            })?;
        }
        self.requests.apply_retention(Retention {
            max_age_ms: Some(REQUEST_LOG_MAX_AGE_MS),
            max_bytes: Some(REQUEST_LOG_MAX_BYTES),
        })?;
        Ok(())
    }

    /// Compacts the consumer log once it is large (upkeep).
    pub fn compact_consumers(&self) -> Result<(), StoreError> {
        self.consumers.compact_if_large().map(drop)
    }

    /// Syncs every log of the flow and saves the idempotency index (graceful shutdown:
    /// no append is in flight, so the index holds every key below the log's end). Each
    /// step runs even if one before it failed; the first error is returned.
    pub fn sync(&self) -> Result<(), StoreError> {
        let events = self.events.sync().map_err(StoreError::from);
        let requests = self
            .flush_all_requests()
            .and_then(|()| Ok(self.requests.barrier()?))
            .and_then(|()| Ok(self.requests.sync()?));
        let consumers = self.consumers.sync();
        let dedup = match &events {
            Ok(()) => self.checkpoint_dedup(),
            Err(_) => Ok(()),
        };
        events.and(requests).and(consumers).and(dedup)
    }

    /// Makes every acknowledged event durable now (blocking).
    pub fn sync_events(&self) -> Result<(), StoreError> {
        Ok(self.events.sync()?)
    }
}
