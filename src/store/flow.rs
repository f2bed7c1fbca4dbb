//! One open flow: its event partition, request log, consumers, idempotency index and
//! analytics, and the ingest path that ties dedup to the append.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::limits::INGEST_INFLIGHT_PER_FLOW_MAX;
use crate::log::storage::{read_to_vec, write_atomic, Storage};
use crate::log::LogError;
use crate::log::{Clock, Log, LogConfig, Offset, RecordInput, Retention};
use crate::store::analytics::{Aggregator, Report, Window};
use crate::store::consumers::Consumers;
use crate::store::dedup::{key_hash, DedupEntry, DedupIndex, KeyHash, DEDUP_KEYS_PER_FLOW_MAX};
use crate::store::error::StoreError;
use crate::store::event::{body_hash, record_body_hash, record_type, EventInput, StoredEvent};
use crate::store::meta::FlowRecord;
use crate::store::partition::Partition;
use crate::store::requests::{
    RejectionTally, RequestEntry, REQUEST_LOG_BATCH_MAX, REQUEST_LOG_MAX_AGE_MS,
    REQUEST_LOG_MAX_BYTES, REQUEST_LOG_READ_MAX, REQUEST_LOG_SEGMENT_BYTES,
};

const ANALYTICS_FILE: &str = "analytics.ckpt";
const DEDUP_FILE: &str = "dedup.ckpt";

/// The idempotency index as saved at a graceful shutdown: every key and the offset up
/// to which the log had been read into it.
#[derive(serde::Serialize, serde::Deserialize)]
struct DedupCheckpoint {
    covered: u64,
    entries: Vec<([u8; 16], u64, u32, u32)>,
}

/// What ingestion did with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Appended now, at this offset.
    Stored { offset: Offset },
    /// Its key was seen within the window: nothing appended; the first event's offset.
    Duplicate { offset: Offset },
    /// Its `Idempotency-Key` was seen with another body. `ingest` answers this as
    /// `StoreError::IdempotencyKeyReused` and appends nothing of the call.
    KeyReused { offset: Offset },
}

#[derive(Debug)]
struct DedupState {
    index: DedupIndex,
    /// Keys whose append is in flight, with a signal that turns true when it settles.
    inflight: HashMap<KeyHash, watch::Receiver<bool>>,
}

#[derive(Debug)]
pub struct Flow {
    pub id: String,
    /// The flow's settings; replaced whole on a change, so readers clone an `Arc`.
    pub record: RwLock<Arc<FlowRecord>>,
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    events: Arc<dyn Partition>,
    requests: Log,
    pub consumers: Consumers,
    dedup: Arc<Mutex<DedupState>>,
    analytics: Mutex<Aggregator>,
    /// Ingest calls waiting for their append (bounded by `INGEST_INFLIGHT_PER_FLOW_MAX`).
    inflight_appends: Arc<AtomicUsize>,
    /// Request-log entries not yet handed to the request log's writer: handed over in
    /// batches (`REQUEST_LOG_BATCH_MAX`, or by `flush_requests`), not one by one.
    request_buf: Mutex<Vec<RecordInput>>,
    /// Unauthenticated rejections being counted per reason and second (requests.rs).
    /// Locked before `request_buf` when both are.
    rejections: Mutex<RejectionTally>,
}

/// One ingest call counted in `Flow::inflight_appends` until it is dropped.
struct InflightGuard(Arc<AtomicUsize>);

impl InflightGuard {
    fn take(counter: &Arc<AtomicUsize>) -> Result<Self, StoreError> {
        if counter.fetch_add(1, Ordering::AcqRel) >= INGEST_INFLIGHT_PER_FLOW_MAX {
            counter.fetch_sub(1, Ordering::AcqRel);
            return Err(StoreError::Overloaded);
        }
        Ok(Self(Arc::clone(counter)))
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

enum Plan {
    Known(IngestOutcome),
    /// Appended now as the j-th record of the batch.
    New(usize),
    /// The same key as the j-th new record of this batch (a duplicate, or reused).
    SameAsNew {
        j: usize,
        reused: bool,
    },
}

fn now_s(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

impl Flow {
    /// Opens the flow's files under `dir` and rebuilds its derived state. With `create`
    /// (a new flow) the directory and its logs are made, each made durable in its
    /// parent; without it they must all exist: a missing directory or log is damage,
    /// never replaced by an empty one.
    pub fn open(
        record: FlowRecord,
        dir: PathBuf,
        storage: Arc<dyn Storage>,
        base: &LogConfig,
        create: bool,
    ) -> Result<Self, StoreError> {
        if create {
            storage
                .create_dir_all(&dir)
                .map_err(|e| StoreError::io("create", &dir, e))?;
            if let Some(parent) = dir.parent() {
                storage
                    .sync_dir(parent)
                    .map_err(|e| StoreError::io("fsync directory", parent, e))?;
            }
        } else if !storage.exists(&dir) {
            return Err(StoreError::Log(LogError::Missing {
                path: dir,
                reason: "the flow's directory is gone; it is never recreated empty".into(),
            }));
        }
        let open = |name: &str, config: LogConfig| {
            let path = dir.join(name);
            match create {
                true => Log::open_with(path, config, Arc::clone(&storage)),
                false => Log::open_existing_with(path, config, Arc::clone(&storage)),
            }
        };
        let [events, requests, consumers] = log_configs(base);
        let events = open(events.0, events.1)?;
        let requests = open(requests.0, requests.1)?;
        let consumers = Consumers::open(
            &dir.join(consumers.0),
            Arc::clone(&storage),
            consumers.1,
            create,
        )?;
        let clock = Arc::clone(&base.clock);
        let moved = consumers.reset_past(events.next_offset(), clock.now_ms())?;
        if moved > 0 {
            tracing::warn!(flow = %record.id, consumers = moved, end = %events.next_offset(),
                "consumers committed past the end of the event log (after a repair) now read from its end");
        }
        let index = rebuild_dedup(
            &*storage,
            &dir,
            &events,
            record.dedup_window_seconds,
            clock.now_ms(),
        )?;
        let analytics = load_analytics(&*storage, &dir, &events, &requests);
        Ok(Self {
            id: record.id.clone(),
            record: RwLock::new(Arc::new(record)),
            dir,
            storage,
            clock,
            events: Arc::new(events),
            requests,
            consumers,
            dedup: Arc::new(Mutex::new(DedupState {
                index,
                inflight: HashMap::new(),
            })),
            analytics: Mutex::new(analytics),
            inflight_appends: Arc::new(AtomicUsize::new(0)),
            request_buf: Mutex::new(Vec::new()),
            rejections: Mutex::new(RejectionTally::default()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn events(&self) -> &Arc<dyn Partition> {
        &self.events
    }

    /// Changes the dedup window (a patch); the index keeps its entries.
    pub fn set_dedup_window(&self, window_s: u64) {
        if self.dedup.lock().index.window_s() == i64::try_from(window_s).unwrap_or(i64::MAX) {
            return;
        }
        // Read the log's keys for the new window without holding the ingest lock (a
        // full-window scan can take seconds), then merge in what memory holds now: keys
        // stored during the scan, and keys whose events retention already deleted.
        let now_ms = self.clock.now_ms();
        let scanned = rebuild_dedup_from(&*self.events, window_s, now_ms, Offset(0));
        let mut st = self.dedup.lock();
        let mut all: HashMap<KeyHash, DedupEntry> = match &scanned {
            Ok(ix) => ix.entries().map(|(k, e)| (*k, *e)).collect(),
            Err(e) => {
                tracing::warn!(flow = %self.id, error = %e, "dedup rebuild for a new window failed; keeping the keys in memory");
                HashMap::new()
            }
        };
        for (k, e) in st.index.entries() {
            all.entry(*k).or_insert(*e);
        }
        let mut entries: Vec<(KeyHash, DedupEntry)> = all.into_iter().collect();
        entries.sort_by_key(|(_, e)| (e.time_s, e.offset));
        let mut fresh = DedupIndex::new(window_s, DEDUP_KEYS_PER_FLOW_MAX);
        for (k, e) in entries {
            fresh.insert(k, e);
        }
        fresh.expire(now_s(now_ms));
        st.index = fresh;
    }

    /// Checks the events' keys against the index and appends the new ones as one
    /// all-or-nothing batch, durable under the log's policy. Two concurrent calls with
    /// one key store one event: the second waits for the first and learns its offset.
    pub async fn ingest(&self, events: &[EventInput]) -> Result<Vec<IngestOutcome>, StoreError> {
        loop {
            let now_ms = self.clock.now_ms();
            let mut wait = None;
            let mut plan = Vec::with_capacity(events.len());
            let mut new: Vec<&EventInput> = Vec::new();
            let mut keys: Vec<(KeyHash, usize, u32)> = Vec::new();
            let submitted = {
                let mut st = self.dedup.lock();
                st.index.expire(now_s(now_ms));
                for ev in events {
                    let Some(key) = &ev.idempotency_key else {
                        plan.push(Plan::New(new.len()));
                        new.push(ev);
                        continue;
                    };
                    let h = key_hash(key);
                    if let Some(rx) = st.inflight.get(&h) {
                        wait = Some(rx.clone());
                        break;
                    }
                    let hash = body_hash(&ev.payload);
                    let reused = |first_hash: u32| ev.strict_key && first_hash != hash;
                    if let Some(e) = st.index.get(&h, now_s(now_ms)) {
                        let offset = Offset(e.offset);
                        plan.push(Plan::Known(if reused(e.body_hash) {
                            IngestOutcome::KeyReused { offset }
                        } else {
                            IngestOutcome::Duplicate { offset }
                        }));
                    } else if let Some((_, j, first_hash)) = keys.iter().find(|(k, _, _)| *k == h) {
                        plan.push(Plan::SameAsNew {
                            j: *j,
                            reused: reused(*first_hash),
                        });
                    } else {
                        keys.push((h, new.len(), hash));
                        plan.push(Plan::New(new.len()));
                        new.push(ev);
                    }
                }
                let reused = plan.iter().find_map(|p| match p {
                    Plan::Known(IngestOutcome::KeyReused { offset }) => Some(*offset),
                    _ => None,
                });
                if let Some(offset) = reused.filter(|_| wait.is_none()) {
                    // All or nothing: a call with a reused key stores none of its events.
                    return Err(StoreError::IdempotencyKeyReused { offset });
                }
                if plan
                    .iter()
                    .any(|p| matches!(p, Plan::SameAsNew { reused: true, .. }))
                {
                    return Err(StoreError::Invalid(
                        "one Idempotency-Key is used twice in this call with different bodies"
                            .into(),
                    ));
                }
                if wait.is_some() || new.is_empty() {
                    None
                } else {
                    let guard = InflightGuard::take(&self.inflight_appends)?;
                    let records: Vec<RecordInput> = new.iter().map(|e| e.to_record()).collect();
                    let pending = self.events.submit(records)?;
                    // Without keys nothing waits on this append, and a cancelled request
                    // leaves nothing behind: no settle task is needed.
                    let done_tx = (!keys.is_empty()).then(|| {
                        let (done_tx, done_rx) = watch::channel(false);
                        for (h, _, _) in &keys {
                            st.inflight.insert(*h, done_rx.clone());
                        }
                        done_tx
                    });
                    Some((pending, done_tx, guard))
                }
            };
            if let Some(mut rx) = wait {
                let _ = rx.wait_for(|settled| *settled).await;
                continue;
            }
            let first = match submitted {
                None => None,
                Some((pending, None, _guard)) => Some(pending.await?.first),
                Some((pending, Some(done_tx), guard)) => {
                    Some(self.settle(pending, done_tx, keys, guard).await?)
                }
            };
            let at = |j: usize| Offset(first.map_or(0, |f| f.0) + j as u64);
            return Ok(plan
                .into_iter()
                .map(|p| match p {
                    Plan::Known(o) => o,
                    Plan::New(j) => IngestOutcome::Stored { offset: at(j) },
                    Plan::SameAsNew { j, reused: true } => {
                        IngestOutcome::KeyReused { offset: at(j) }
                    }
                    Plan::SameAsNew { j, reused: false } => {
                        IngestOutcome::Duplicate { offset: at(j) }
                    }
                })
                .collect());
        }
    }

    /// Waits for an append in a task of its own, so a cancelled request can never leave a
    /// key in flight forever or skip recording a stored key in the index.
    async fn settle(
        &self,
        pending: crate::log::PendingAppend,
        done_tx: watch::Sender<bool>,
        keys: Vec<(KeyHash, usize, u32)>,
        guard: InflightGuard,
    ) -> Result<Offset, StoreError> {
        let dedup = Arc::clone(&self.dedup);
        let task = tokio::spawn(async move {
            let result = pending.await;
            drop(guard);
            {
                let mut st = dedup.lock();
                for (h, _, _) in &keys {
                    st.inflight.remove(h);
                }
                if let Ok(out) = &result {
                    let time_s = u32::try_from(now_s(out.timestamp_ms)).unwrap_or(u32::MAX);
                    for (h, j, body_hash) in keys {
                        let entry = DedupEntry {
                            offset: out.first.0 + j as u64,
                            body_hash,
                            time_s,
                        };
                        st.index.insert(h, entry);
                    }
                }
            }
            let _ = done_tx.send(true);
            result
        });
        match task.await {
            Ok(result) => Ok(result?.first),
            Err(e) => Err(StoreError::Unavailable(format!("append task failed: {e}"))),
        }
    }

    /// Queues one request-log entry for the request log's writer and returns at once
    /// (the request never waits on it). Readers of the request log (`recent_requests`,
    /// analytics) first pass a barrier, so they see every entry queued before them. A
    /// `kill -9` can lose the entries still queued (at most the last moments' attempts);
    /// `/metrics` counts them all.
    pub fn record_request(&self, entry: &RequestEntry) -> Result<(), StoreError> {
        let record = entry.to_record()?;
        let mut buf = self.request_buf.lock();
        buf.push(record);
        if buf.len() >= REQUEST_LOG_BATCH_MAX {
            self.hand_over_requests(&mut buf)?;
        }
        Ok(())
    }

    /// Records the rejection of an unauthenticated attempt: the first of its reason in
    /// a second of the store clock as any entry, the rest of that second as one counted
    /// entry written once the second is over or a reader looks (`RejectionTally`).
    pub fn record_unauthenticated(&self, entry: RequestEntry) -> Result<(), StoreError> {
        let mut tally = self.rejections.lock();
        for closed in tally.add(entry, self.clock.now_ms()) {
            self.record_request(&closed)?;
        }
        Ok(())
    }

    /// Hands the buffered request-log entries, and the counts of rejections of seconds
    /// that are over, to the writer. The server calls it every `REQUEST_LOG_FLUSH_PERIOD`.
    pub fn flush_requests(&self) -> Result<(), StoreError> {
        self.flush_requests_upto(Some(self.clock.now_ms()))
    }

    /// As `flush_requests`, with every count still open: readers of the request log and
    /// shutdown call it, so they see every attempt answered before them.
    fn flush_all_requests(&self) -> Result<(), StoreError> {
        self.flush_requests_upto(None)
    }

    fn flush_requests_upto(&self, now_ms: Option<i64>) -> Result<(), StoreError> {
        let mut tally = self.rejections.lock();
        let mut buf = self.request_buf.lock();
        for closed in tally.take(now_ms) {
            buf.push(closed.to_record()?);
        }
        self.hand_over_requests(&mut buf)
    }

    fn hand_over_requests(&self, buf: &mut Vec<RecordInput>) -> Result<(), StoreError> {
        if buf.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(buf);
        // Queued under the buffer's lock, so entries keep their order. The answer is
        // not awaited: dropping it is fine, the writer still writes.
        drop(self.requests.try_submit(batch)?);
        Ok(())
    }

    /// The newest `limit` request-log entries, newest first, with their times.
    pub async fn recent_requests(
        &self,
        limit: usize,
    ) -> Result<Vec<(i64, RequestEntry)>, StoreError> {
        self.flush_all_requests()?;
        self.requests.barrier_async().await?;
        let limit = limit.clamp(1, REQUEST_LOG_READ_MAX);
        let next = self.requests.next_offset().0;
        let from = next
            .saturating_sub(limit as u64)
            .max(self.requests.first_offset().0);
        let mut out: Vec<(i64, RequestEntry)> = self
            .requests
            .read(Offset(from), limit, usize::MAX)?
            .iter()
            .filter_map(|r| RequestEntry::decode(r).map(|e| (r.timestamp_ms, e)))
            .collect();
        out.reverse();
        Ok(out)
    }

    /// Events from `from`, at most `limit` and at most `max_bytes` of payload (but always
    /// at least one event when one matches), optionally only of `event_type`.
    /// Returns the events and the offset to read next.
    pub fn read_events(
        &self,
        from: Offset,
        limit: usize,
        max_bytes: usize,
        event_type: Option<&str>,
    ) -> Result<(Vec<StoredEvent>, Offset), StoreError> {
        let mut bytes = 0usize;
        let first = self.events.first_offset();
        let mut next = from.max(first);
        let mut out = Vec::new();
        // Scan at most this many records per call when filtering, so one read stays bounded.
        let mut scan_budget = crate::limits::READ_RECORDS_MAX;
        for record in self.events.records_from(next) {
            let record = record?;
            next = Offset(record.offset.0 + 1);
            scan_budget -= 1;
            if event_type.is_none_or(|t| record_type(&record) == t) {
                if !out.is_empty() && bytes + record.payload.len() > max_bytes {
                    // Over the byte budget: this one is the next page's first.
                    next = record.offset;
                    break;
                }
                bytes += record.payload.len();
                out.push(StoredEvent::from_record(&self.id, record));
                if out.len() >= limit || bytes >= max_bytes {
                    break;
                }
            }
            if scan_budget == 0 {
                break;
            }
        }
        Ok((out, next))
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

    /// Reads both logs up to their ends into the aggregator, then reports `window`.
    pub fn analytics(&self, window: Window) -> Result<Report, StoreError> {
        let mut agg = self.analytics.lock();
        self.catch_up(&mut agg)?;
        Ok(agg.report(window, self.clock.now_ms()))
    }

    fn catch_up(&self, agg: &mut Aggregator) -> Result<(), StoreError> {
        // Read-your-writes: every request-log entry recorded before now is in the log.
        self.flush_all_requests()?;
        self.requests.barrier()?;
        let from = Offset(agg.requests_next.max(self.requests.first_offset().0));
        for record in self.requests.scan_from(from) {
            let record = record?;
            if let Some(entry) = RequestEntry::decode(&record) {
                agg.add_request(record.timestamp_ms, &entry);
            }
            agg.requests_next = record.offset.0 + 1;
        }
        let from = Offset(agg.events_next.max(self.events.first_offset().0));
        for record in self.events.scan_from(from) {
            let record = record?;
            agg.add_event(record.timestamp_ms, &record_type(&record));
            agg.events_next = record.offset.0 + 1;
        }
        agg.prune(self.clock.now_ms());
        Ok(())
    }

    /// Reads both logs up to their ends into the aggregator (small when done often).
    pub fn catch_up_analytics(&self) -> Result<(), StoreError> {
        let mut agg = self.analytics.lock();
        self.catch_up(&mut agg)
    }

    /// Catches analytics up and writes its checkpoint (state and offsets together).
    pub fn checkpoint_analytics(&self) -> Result<(), StoreError> {
        let mut agg = self.analytics.lock();
        self.catch_up(&mut agg)?;
        let body = bincode::serde::encode_to_vec(&*agg, bincode::config::standard())
            .map_err(|e| StoreError::Invalid(format!("cannot encode analytics: {e}")))?;
        let mut bytes = crc32fast::hash(&body).to_le_bytes().to_vec();
        bytes.extend_from_slice(&body);
        let path = self.dir.join(ANALYTICS_FILE);
        write_atomic(&*self.storage, &path, &bytes).map_err(|e| StoreError::io("write", &path, e))
    }

    /// Retention of the event log (the flow's settings) and of the request log.
    pub fn apply_retention(&self) -> Result<(), StoreError> {
        let settings = self.record.read().retention;
        if settings.max_age_seconds.is_some() || settings.max_bytes.is_some() {
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

    /// Keys in the idempotency index, and keys dropped early by its bound.
    pub fn dedup_stats(&self) -> (usize, u64) {
        let st = self.dedup.lock();
        (st.index.len(), st.index.evicted_early)
    }

    /// Syncs every log of the flow and saves the idempotency index (graceful shutdown:
    /// no append is in flight, so the index holds every key below the log's end). Each
    /// step runs even if one before it failed; the first error is returned.
    pub fn sync(&self) -> Result<(), StoreError> {
        let events = self.events.sync().map_err(StoreError::from);
        let requests = self
            .flush_all_requests()
            .and_then(|()| Ok(self.requests.sync()?));
        let consumers = self.consumers.sync();
        let dedup = match &events {
            Ok(()) => self.checkpoint_dedup(),
            Err(_) => Ok(()),
        };
        events.and(requests).and(consumers).and(dedup)
    }

    /// The flow's logs that refuse appends, with why: `("events" | "requests" |
    /// "consumers", reason)`. Empty when all are healthy.
    pub fn poisoned_logs(&self) -> Vec<(&'static str, String)> {
        [
            ("events", self.events.poisoned()),
            ("requests", self.requests.poisoned()),
            ("consumers", self.consumers.poisoned()),
        ]
        .into_iter()
        .filter_map(|(name, p)| p.map(|e| (name, e.to_string())))
        .collect()
    }

    /// The last durable end of the event log (behind the acknowledged end under a lazy
    /// fsync policy until the next fdatasync).
    pub fn durable_end(&self) -> Offset {
        self.events.durable_next_offset()
    }

    /// Makes every acknowledged event durable now (blocking).
    pub fn sync_events(&self) -> Result<(), StoreError> {
        Ok(self.events.sync()?)
    }

    /// Saves the idempotency index with the offset it covers. Call it only when no
    /// append is in flight (graceful shutdown).
    fn checkpoint_dedup(&self) -> Result<(), StoreError> {
        let checkpoint = {
            let st = self.dedup.lock();
            DedupCheckpoint {
                covered: self.events.next_offset().0,
                entries: st
                    .index
                    .entries()
                    .map(|(k, e)| (*k, e.offset, e.body_hash, e.time_s))
                    .collect(),
            }
        };
        let body = bincode::serde::encode_to_vec(&checkpoint, bincode::config::standard())
            .map_err(|e| StoreError::Invalid(format!("cannot encode the dedup index: {e}")))?;
        let mut bytes = crc32fast::hash(&body).to_le_bytes().to_vec();
        bytes.extend_from_slice(&body);
        let path = self.dir.join(DEDUP_FILE);
        write_atomic(&*self.storage, &path, &bytes).map_err(|e| StoreError::io("write", &path, e))
    }
}

/// Each of a flow's three logs, by directory name, with its configuration derived from
/// the store's: the events (the store's policy), the request log (`interval=250ms`: the
/// request never waits for it) and the consumer log (every commit synced).
pub fn log_configs(base: &LogConfig) -> [(&'static str, LogConfig); 3] {
    [
        ("events", base.clone()),
        (
            "requests",
            LogConfig {
                segment_bytes: REQUEST_LOG_SEGMENT_BYTES,
                fsync: crate::log::FsyncPolicy::Interval(std::time::Duration::from_millis(250)),
                ..base.clone()
            },
        ),
        ("consumers", Consumers::log_config(base)),
    ]
}

/// Rebuilds the idempotency index on open: from the checkpoint of the last graceful
/// shutdown when there is a sound one (it keeps keys whose events retention has since
/// deleted), then from the keys in the log after what it covers. The log is the truth:
/// a checkpoint that claims more than the log holds is ignored.
fn rebuild_dedup(
    storage: &dyn Storage,
    dir: &Path,
    events: &Log,
    window_s: u64,
    now_ms: i64,
) -> Result<DedupIndex, StoreError> {
    let checkpoint = read_to_vec(storage, &dir.join(DEDUP_FILE))
        .ok()
        .and_then(|bytes| {
            let (crc, body) = bytes.split_at_checked(4)?;
            if crc32fast::hash(body).to_le_bytes() != crc {
                return None;
            }
            bincode::serde::decode_from_slice::<DedupCheckpoint, _>(
                body,
                bincode::config::standard(),
            )
            .ok()
            .map(|(c, _)| c)
        });
    let Some(checkpoint) = checkpoint.filter(|c| c.covered <= events.next_offset().0) else {
        return rebuild_dedup_from(events, window_s, now_ms, Offset(0));
    };
    let mut entries = checkpoint.entries;
    entries.sort_by_key(|e| (e.3, e.1));
    let mut index = DedupIndex::new(window_s, DEDUP_KEYS_PER_FLOW_MAX);
    for (key, offset, body_hash, time_s) in entries {
        index.insert(
            key,
            DedupEntry {
                offset,
                body_hash,
                time_s,
            },
        );
    }
    index.expire(now_s(now_ms));
    add_keys_from(
        &mut index,
        events,
        window_s,
        now_ms,
        Offset(checkpoint.covered),
    )?;
    Ok(index)
}

/// Rebuilds the idempotency index from the keys of the records in the window (and at or
/// after `not_before`).
fn rebuild_dedup_from(
    events: &dyn Partition,
    window_s: u64,
    now_ms: i64,
    not_before: Offset,
) -> Result<DedupIndex, StoreError> {
    let mut index = DedupIndex::new(window_s, DEDUP_KEYS_PER_FLOW_MAX);
    add_keys_from(&mut index, events, window_s, now_ms, not_before)?;
    Ok(index)
}

fn add_keys_from(
    index: &mut DedupIndex,
    events: &dyn Partition,
    window_s: u64,
    now_ms: i64,
    not_before: Offset,
) -> Result<(), StoreError> {
    let window_ms = i64::try_from(window_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let from = events
        .offset_for_timestamp(now_ms.saturating_sub(window_ms))?
        .max(not_before)
        .max(events.first_offset());
    for record in events.scan_from(from) {
        let record = record?;
        if let Some(key) = &record.key {
            let key = String::from_utf8_lossy(key);
            index.insert(
                key_hash(&key),
                DedupEntry {
                    offset: record.offset.0,
                    body_hash: record_body_hash(&record),
                    time_s: u32::try_from(now_s(record.timestamp_ms)).unwrap_or(u32::MAX),
                },
            );
        }
    }
    Ok(())
}

/// Loads the analytics checkpoint if it is whole and not ahead of the logs (a log
/// that lost its tail); otherwise starts empty and the first catch-up rescans.
fn load_analytics(storage: &dyn Storage, dir: &Path, events: &Log, requests: &Log) -> Aggregator {
    let path = dir.join(ANALYTICS_FILE);
    let decoded = read_to_vec(storage, &path).ok().and_then(|bytes| {
        let (crc, body) = bytes.split_at_checked(4)?;
        if crc32fast::hash(body).to_le_bytes() != crc {
            return None;
        }
        bincode::serde::decode_from_slice::<Aggregator, _>(body, bincode::config::standard())
            .ok()
            .map(|(a, _)| a.restore())
    });
    match decoded {
        Some(a)
            if a.requests_next <= requests.next_offset().0
                && a.events_next <= events.next_offset().0 =>
        {
            a
        }
        _ => Aggregator::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_calls_past_the_inflight_limit_are_refused_until_one_finishes() {
        // Proves the per-flow bound on appends awaiting durability: the call past it is
        // refused as Overloaded (503 + Retry-After), and a finished call frees a slot.
        let counter = Arc::new(AtomicUsize::new(0));
        let mut held: Vec<InflightGuard> = (0..INGEST_INFLIGHT_PER_FLOW_MAX)
            .map(|_| InflightGuard::take(&counter).expect("under the limit"))
            .collect();
        assert!(matches!(
            InflightGuard::take(&counter),
            Err(StoreError::Overloaded)
        ));
        assert_eq!(
            counter.load(Ordering::Acquire),
            INGEST_INFLIGHT_PER_FLOW_MAX
        );
        held.pop();
        let again = InflightGuard::take(&counter).expect("a slot was freed");
        drop(again);
        drop(held);
        assert_eq!(counter.load(Ordering::Acquire), 0);
    }
}
