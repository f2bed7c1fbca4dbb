//! `NatsPartition`: one flow's events in one JetStream stream (docs/cluster.md).
//!
//! The end this node knows (`next_offset`) is its own acks, the ticks of other nodes,
//! what reads have seen, and, while a reader waits, the stream's own answer every
//! `NATS_END_REFRESH`. Offsets are stream sequences minus one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use super::js::{self, Published, StreamNames, StreamSpec, StreamState};
use super::{codec, Shared, NATS_END_REFRESH, NATS_READ_BATCH_MAX};
use crate::log::record::validate_batch;
use crate::log::stats::WriterCounters;
use crate::log::{
    AppendOutcome, Clock, LogError, Offset, Record, RecordInput, Retention, WriterStats,
};
use crate::store::partition::{Partition, PartitionError, PendingAppend, RecordStream};

/// What the partition's tasks (ticks, the end refresher) share with it.
#[derive(Debug)]
pub(crate) struct Inner {
    shared: Arc<Shared>,
    flow_id: String,
    names: StreamNames,
    /// The settings the stream was opened with (its retention is read from the stream
    /// itself on each pass: another node may change it).
    spec: StreamSpec,
    clock: Arc<dyn Clock>,
    /// The first retained offset (the stream's `first_seq - 1`).
    first: AtomicU64,
    /// One past the last event this node knows is stored.
    next_tx: watch::Sender<Offset>,
    /// The latest append time this node gave or saw: times never go back from here.
    last_ts: Mutex<i64>,
    /// Whether the end refresher runs (while someone subscribes).
    refreshing: AtomicBool,
    /// Batches, events and bytes this node appended, for `/metrics` (no fsyncs: the
    /// NATS servers sync).
    stats: WriterCounters,
    /// The queue of the writer task, for a stream whose appends keep their order and
    /// take barriers (the request log); `None` for events, whose appends run at once
    /// and are each awaited by their request.
    ordered: Option<mpsc::Sender<Job>>,
    /// One past the last record another node may have appended, as far as this node
    /// has heard (a tick, a refresh, a conflict): between it and `next` lie only this
    /// node's own appends, which the store's dedup index holds already.
    others: AtomicU64,
    /// When `others` was last asked of the stream (`others_end` asks again, in the
    /// background, after `NATS_END_REFRESH`: a lost tick costs about that).
    asked_at: Mutex<Option<std::time::Instant>>,
}

impl Inner {
    /// The stream's end is at least `end` (an offset: one past the last event).
    pub(crate) fn advance(&self, end: u64) {
        self.next_tx.send_if_modified(|next| {
            let moved = end > next.0;
            if moved {
                *next = Offset(end);
            }
            moved
        });
    }

    /// Another node's records reach at least `end`: the stream's end moves there too.
    pub(crate) fn learn(&self, end: u64) {
        self.others.fetch_max(end, Ordering::AcqRel);
        self.advance(end);
    }

    fn next(&self) -> u64 {
        self.next_tx.borrow().0
    }

    fn adopt(&self, state: StreamState) {
        self.first
            .fetch_max(state.first_seq.saturating_sub(1), Ordering::AcqRel);
        self.learn(state.last_seq);
    }

    fn wait<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = Result<T, PartitionError>> + Send + 'static,
    ) -> Result<T, PartitionError> {
        self.shared.bridge.wait(future)
    }

    fn state_now(&self) -> Result<StreamState, PartitionError> {
        let client = self.shared.client.clone();
        let names = self.names.clone();
        let state = self.wait(async move { js::stream_state(&client, &names).await })?;
        self.adopt(state);
        Ok(state)
    }

    /// Records from `from` (below `next`), one direct-get batch: consecutive from
    /// `from`, so a replica that is behind gives a short page, never a gap. A sequence
    /// the answering replica lacks is asked of the leader.
    fn fetch(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, PartitionError> {
        let next = self.next();
        let want = max_records
            .min(NATS_READ_BATCH_MAX)
            .min(usize::try_from(next.saturating_sub(from)).unwrap_or(usize::MAX))
            .max(1);
        let client = self.shared.client.clone();
        let names = self.names.clone();
        let fetched = self.wait(async move {
            js::direct_get_batch(&client, &names, from + 1, want, max_bytes).await
        })?;
        if let Some(end) = fetched.end_seq {
            self.advance(end);
        }
        let mut records = fetched.records;
        if records.first().is_none_or(|r| r.offset.0 != from) {
            // The replica that answered lacks `from`: behind, or it expired.
            let client = self.shared.client.clone();
            let names = self.names.clone();
            match self.wait(async move { js::leader_get(&client, &names, from + 1).await })? {
                Some(r) => records = vec![r],
                None => {
                    let state = self.state_now()?;
                    return Err(if from + 1 < state.first_seq {
                        PartitionError::Failed(Arc::new(LogError::OffsetOutOfRange {
                            requested: Offset(from),
                            first: Offset(state.first_seq - 1),
                            next: Offset(state.last_seq),
                        }))
                    } else {
                        PartitionError::Failed(Arc::new(std::io::Error::other(format!(
                            "stream {} has no message at sequence {} below its end {}",
                            self.names.stream,
                            from + 1,
                            state.last_seq
                        ))))
                    });
                }
            }
        }
        // Keep only the consecutive run from `from`.
        let run = records
            .iter()
            .enumerate()
            .take_while(|(i, r)| r.offset.0 == from + *i as u64)
            .count();
        records.truncate(run);
        if let Some(last) = records.last() {
            self.advance(last.offset.0 + 1);
            let mut ts = self.last_ts.lock();
            *ts = (*ts).max(last.timestamp_ms);
        }
        Ok(records)
    }
}

/// One batch to publish, with its append time.
struct Batch {
    messages: Vec<(async_nats::HeaderMap, bytes::Bytes)>,
    count: usize,
    bytes: usize,
    ts: i64,
}

/// What an ordered stream's writer task is asked to do, in order.
enum Job {
    Append(
        Batch,
        oneshot::Sender<Result<AppendOutcome, PartitionError>>,
    ),
    /// Answered once every job before it is done.
    Barrier(oneshot::Sender<()>),
}

/// Most jobs an ordered stream's writer holds queued; past it, appends are refused
/// `Overloaded` (as a local log's full write queue).
pub const NATS_ORDERED_QUEUE_MAX: usize = 64;

/// Publishes one batch and learns the end it reached.
async fn publish(inner: Arc<Inner>, batch: Batch) -> Result<AppendOutcome, PartitionError> {
    let Batch {
        messages,
        count,
        bytes,
        ts,
    } = batch;
    let client = inner.shared.client.clone();
    match js::publish(&client, &inner.names.subject, messages).await? {
        Published::Stored { last_seq } => {
            inner.advance(last_seq);
            inner.stats.note_group(count as u64, bytes as u64);
            // Tell the other nodes; at most once, and a lost tick only delays
            // them (their readers refresh while they wait). Events only: readers of
            // the request log ask for its end (`refresh_end`).
            if inner.ordered.is_none() {
                let _ = client
                    .publish(
                        inner.shared.tick_subject(&inner.flow_id),
                        last_seq.to_string().into(),
                    )
                    .await;
            }
            let first = last_seq + 1 - count as u64;
            Ok(AppendOutcome {
                first: Offset(first - 1),
                count: u32::try_from(count).unwrap_or(u32::MAX),
                timestamp_ms: ts,
            })
        }
        Published::Duplicate { seq } => {
            // Another writer stored one of these keys: learn the end that
            // holds it, so the store's catch-up reads it.
            match seq {
                Some(seq) => inner.learn(seq),
                None => {
                    if let Ok(state) = js::stream_state(&client, &inner.names).await {
                        inner.adopt(state);
                    }
                }
            }
            Err(PartitionError::Conflict)
        }
    }
}

/// The writer task of an ordered stream: one job at a time, in the order queued.
async fn write_in_order(inner: std::sync::Weak<Inner>, mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Append(batch, done) => {
                let Some(inner) = inner.upgrade() else { break };
                let _ = done.send(publish(inner, batch).await);
            }
            Job::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// One flow's events in one JetStream stream.
#[derive(Debug)]
pub struct NatsPartition {
    inner: Arc<Inner>,
}

impl NatsPartition {
    /// Opens (with `create`, makes) the stream. An `ordered` stream (the request log)
    /// appends through one writer task and hears no ticks; the events stream appends
    /// at once and is kept current by the other nodes' ticks.
    pub(crate) fn open(
        shared: Arc<Shared>,
        flow_id: String,
        names: StreamNames,
        spec: StreamSpec,
        clock: Arc<dyn Clock>,
        create: bool,
        ordered: bool,
    ) -> Result<Self, PartitionError> {
        let client = shared.client.clone();
        let (n, s) = (names.clone(), spec.clone());
        let state = shared
            .bridge
            .wait(async move { js::ensure_stream(&client, &n, &s, create).await })?;
        let queue = mpsc::channel(NATS_ORDERED_QUEUE_MAX);
        let inner = Arc::new(Inner {
            shared: Arc::clone(&shared),
            flow_id: flow_id.clone(),
            names,
            spec,
            clock,
            first: AtomicU64::new(state.first_seq.saturating_sub(1)),
            next_tx: watch::channel(Offset(state.last_seq)).0,
            last_ts: Mutex::new(i64::MIN),
            refreshing: AtomicBool::new(false),
            stats: WriterCounters::default(),
            ordered: ordered.then_some(queue.0),
            others: AtomicU64::new(state.last_seq),
            asked_at: Mutex::new(Some(std::time::Instant::now())),
        });
        if ordered {
            let jobs = queue.1;
            shared
                .bridge
                .spawn(write_in_order(Arc::downgrade(&inner), jobs));
        }
        if state.last_seq > 0 {
            // Times never go back from the last stored one.
            let last = inner.fetch(state.last_seq - 1, 1, 1)?;
            if let Some(r) = last.first() {
                *inner.last_ts.lock() = r.timestamp_ms;
            }
        }
        if !ordered {
            shared.open.lock().insert(flow_id, Arc::downgrade(&inner));
        }
        Ok(Self { inner })
    }

    /// Keeps `next_offset` fresh while anyone watches it: asks the stream for its end
    /// every `NATS_END_REFRESH`, in case a tick was lost. Stops when the last watcher
    /// goes.
    fn refresh_while_watched(&self) {
        if self.inner.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = Arc::clone(&self.inner);
        self.inner.shared.bridge.spawn(async move {
            loop {
                tokio::select! {
                    _ = inner.next_tx.closed() => {}
                    _ = tokio::time::sleep(NATS_END_REFRESH) => {
                        if let Ok(state) = js::stream_state(&inner.shared.client, &inner.names).await {
                            inner.adopt(state);
                        }
                        continue;
                    }
                }
                inner.refreshing.store(false, Ordering::Release);
                // A watcher that came as the last one left restarts the loop.
                if inner.next_tx.receiver_count() == 0
                    || inner.refreshing.swap(true, Ordering::AcqRel)
                {
                    break;
                }
            }
        });
    }
}

impl Drop for NatsPartition {
    fn drop(&mut self) {
        let mut open = self.inner.shared.open.lock();
        if open
            .get(&self.inner.flow_id)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.inner)))
        {
            open.remove(&self.inner.flow_id);
        }
    }
}

/// Records from an offset, page by page, up to the end known when the reader gets
/// there.
struct Pages {
    inner: Arc<Inner>,
    at: u64,
    page: VecDeque<Record>,
    failed: bool,
}

impl Iterator for Pages {
    type Item = Result<Record, PartitionError>;
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(r) = self.page.pop_front() {
            self.at = r.offset.0 + 1;
            return Some(Ok(r));
        }
        if self.failed || self.at >= self.inner.next() {
            return None;
        }
        match self.inner.fetch(self.at, NATS_READ_BATCH_MAX, usize::MAX) {
            Ok(records) => {
                self.page = records.into();
                let r = self.page.pop_front()?;
                self.at = r.offset.0 + 1;
                Some(Ok(r))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl Partition for NatsPartition {
    fn submit(&self, records: Vec<RecordInput>) -> Result<PendingAppend, PartitionError> {
        validate_batch(&records).map_err(|e| PartitionError::Failed(Arc::new(e)))?;
        let ts = {
            let mut last = self.inner.last_ts.lock();
            *last = (*last).max(self.inner.clock.now_ms());
            *last
        };
        let count = records.len();
        let bytes: usize = records.iter().map(|r| r.payload.len()).sum();
        let messages: Vec<_> = records
            .into_iter()
            .map(|r| (codec::headers_of(&r, ts), r.payload))
            .collect();
        let batch = Batch {
            messages,
            count,
            bytes,
            ts,
        };
        let inner = Arc::clone(&self.inner);
        match &self.inner.ordered {
            // The request log: one writer task, so entries keep their order and a
            // barrier passes after every append queued before it.
            Some(queue) => {
                let (done, settled) = oneshot::channel();
                queue
                    .try_send(Job::Append(batch, done))
                    .map_err(|_| PartitionError::Overloaded)?;
                Ok(PendingAppend::new(async move {
                    settled.await.unwrap_or_else(|_| {
                        Err(PartitionError::ReadOnly(
                            "the stream's writer stopped".into(),
                        ))
                    })
                }))
            }
            None => {
                let task = self.inner.shared.bridge.spawn(publish(inner, batch));
                Ok(PendingAppend::new(async move {
                    task.await.unwrap_or_else(|e| {
                        Err(PartitionError::Unreachable(format!(
                            "the append task failed: {e}"
                        )))
                    })
                }))
            }
        }
    }

    fn records_from(&self, from: Offset) -> RecordStream {
        let at = from.0.max(self.first_offset().0);
        Box::new(Pages {
            inner: Arc::clone(&self.inner),
            at,
            page: VecDeque::new(),
            failed: false,
        })
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
        let (first, next) = (self.first_offset().0, self.inner.next());
        if from.0 < first {
            return Err(PartitionError::Failed(Arc::new(
                LogError::OffsetOutOfRange {
                    requested: from,
                    first: Offset(first),
                    next: Offset(next),
                },
            )));
        }
        if from.0 >= next || max_records == 0 {
            return Ok(Vec::new());
        }
        let mut records = self.inner.fetch(from.0, max_records, max_bytes)?;
        let mut bytes = 0usize;
        let keep = records
            .iter()
            .take_while(|r| {
                let under = bytes < max_bytes;
                bytes = bytes.saturating_add(r.payload.len());
                under
            })
            .count()
            .max(1);
        records.truncate(keep);
        Ok(records)
    }

    fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Offset, PartitionError> {
        let (mut lo, mut hi) = (self.first_offset().0, self.inner.next());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let time = match self.inner.fetch(mid, 1, 1) {
                Ok(r) => r.first().map_or(i64::MAX, |r| r.timestamp_ms),
                // Expired under us: everything below the new first is gone.
                Err(_) if mid < self.first_offset().0 => {
                    lo = self.first_offset().0;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if time >= timestamp_ms {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(Offset(lo))
    }

    fn first_offset(&self) -> Offset {
        Offset(self.inner.first.load(Ordering::Acquire))
    }

    fn next_offset(&self) -> Offset {
        Offset(self.inner.next())
    }

    fn durable_next_offset(&self) -> Offset {
        self.next_offset()
    }

    fn subscribe(&self) -> watch::Receiver<Offset> {
        let rx = self.inner.next_tx.subscribe();
        self.refresh_while_watched();
        rx
    }

    fn apply_retention(&self, retention: Retention) -> Result<(), PartitionError> {
        // Compared with what the stream holds now, not with what this node last set:
        // another node may have changed it, and a removed limit must be cleared.
        let client = self.inner.shared.client.clone();
        let names = self.inner.names.clone();
        let (state, held) = self
            .inner
            .wait(async move { js::stream_config(&client, &names).await })?;
        let want = StreamSpec {
            retention,
            ..self.inner.spec.clone()
        };
        let state = match js::holds_retention(&held, &self.inner.names, &want) {
            true => state,
            false => {
                let client = self.inner.shared.client.clone();
                let names = self.inner.names.clone();
                self.inner
                    .wait(async move { js::set_retention(&client, &names, &want).await })?
            }
        };
        self.inner.adopt(state);
        Ok(())
    }

    fn health(&self) -> Option<String> {
        None
    }

    fn sync(&self) -> Result<(), PartitionError> {
        // Every acknowledged append is already stored by a JetStream quorum.
        Ok(())
    }

    fn writer_stats(&self) -> WriterStats {
        self.inner.stats.snapshot()
    }

    fn shared(&self) -> bool {
        true
    }

    fn barrier(&self) -> Result<(), PartitionError> {
        let Some(queue) = self.inner.ordered.clone() else {
            return Ok(());
        };
        self.inner.wait(async move {
            let (done, passed) = oneshot::channel();
            // A closed queue has no append left to wait for.
            if queue.send(Job::Barrier(done)).await.is_ok() {
                let _ = passed.await;
            }
            Ok(())
        })
    }

    fn refresh_end(&self) -> Result<(), PartitionError> {
        self.inner.state_now().map(|_| ())
    }

    fn others_end(&self) -> Offset {
        // Never waits: when the last answer is older than `NATS_END_REFRESH`, one ask
        // goes out in the background and a later call sees what it learned.
        let ask = {
            let mut at = self.inner.asked_at.lock();
            let stale = at.is_none_or(|t| t.elapsed() >= NATS_END_REFRESH);
            if stale {
                *at = Some(std::time::Instant::now());
            }
            stale
        };
        if ask {
            let inner = Arc::clone(&self.inner);
            self.inner.shared.bridge.spawn(async move {
                if let Ok(state) = js::stream_state(&inner.shared.client, &inner.names).await {
                    inner.adopt(state);
                }
            });
        }
        Offset(self.inner.others.load(Ordering::Acquire))
    }
}
