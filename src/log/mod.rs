//! The storage engine: one partition is one `Log` in one directory.
//!
//! It knows nothing of HTTP, JSON or flows. Appends go through the group-commit writer
//! thread (`writer.rs`); reads go through `RecordIter` (`reader.rs`) over published
//! state (`shared.rs`); opening runs recovery (`recovery.rs`, over the pure
//! segment scan in `scan.rs`); all file
//! access goes through `storage::Storage`.

pub mod budget;
pub mod check;
pub mod clock;
pub mod config;
pub mod error;
pub mod framing;
pub mod journal;
pub mod limits;
pub mod offset;
mod queue;
mod reader;
pub mod record;
mod recovery;
pub mod repair;
pub mod scan;
pub mod segment;
mod shared;
pub mod stats;
pub mod storage;
mod writer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{oneshot, watch};

#[cfg(any(test, feature = "testing"))]
pub use clock::ManualClock;
pub use clock::{Clock, SystemClock};
#[cfg(any(test, feature = "testing"))]
pub use config::Mutation;
pub use config::{ConfigError, FsyncPolicy, LogConfig, Retention};
pub use error::LogError;
pub use offset::{AppendOutcome, Offset};
pub use reader::RecordIter;
pub use record::{Record, RecordInput};
pub use recovery::RecoveryReport;
pub use stats::WriterStats;

use crate::log::limits::{
    OPEN_INDEXES_MAX, OPEN_MAPS_MAX, READ_RECORDS_MAX, WRITER_QUEUE_DEPTH_MAX,
};
use queue::{QueueTx, SendError};
use shared::{ActiveSegment, Inner, SealedSegment, SegmentLru, View};
use storage::{StdStorage, Storage};
use writer::{Writer, WriterMsg};

/// One partition: an ordered, durable, append-only sequence of records.
#[derive(Debug)]
pub struct Log {
    inner: Arc<Inner>,
    tx: Option<QueueTx<WriterMsg>>,
    writer: Option<JoinHandle<()>>,
    /// Set when the log rides a journal: the journal's thread is its writer.
    journal: Option<(journal::Journal, Arc<journal::Attached>)>,
    recovery: RecoveryReport,
    /// Set once anything was sent to the writer. Until then the log is as its open left
    /// it (recovery and journal replay sync what they change), so `sync`, `barrier`
    /// and a journaled log's close answer at once: an idle flow costs its journal no
    /// round at shutdown.
    used: AtomicBool,
}

/// An append handed to the writer. Wait for it (`wait`) or await it.
#[derive(Debug)]
pub struct PendingAppend {
    rx: oneshot::Receiver<Result<AppendOutcome, LogError>>,
}

impl PendingAppend {
    /// Blocks until the append is durable under the policy (or failed). Not for async code.
    pub fn wait(self) -> Result<AppendOutcome, LogError> {
        self.rx.blocking_recv().unwrap_or(Err(LogError::Closed))
    }
}

impl Future for PendingAppend {
    type Output = Result<AppendOutcome, LogError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(LogError::Closed)))
    }
}

/// Sizes and positions of a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStats {
    pub first_offset: Offset,
    pub next_offset: Offset,
    pub segments: usize,
    pub bytes: u64,
    pub open_maps: usize,
}

/// What a retention run deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub first_offset: Offset,
}

impl Log {
    /// Opens (or creates) the partition in `dir` on the real file system.
    pub fn open(dir: impl Into<PathBuf>, config: LogConfig) -> Result<Self, LogError> {
        Self::open_with(dir, config, Arc::new(StdStorage))
    }

    /// Opens (or creates) the partition in `dir` on `storage`, running recovery. A new
    /// directory is made durable in its parent before anything is written in it.
    pub fn open_with(
        dir: impl Into<PathBuf>,
        config: LogConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<Self, LogError> {
        Self::open_inner(dir.into(), config, storage, false, false).map(|(log, _)| log)
    }

    /// Opens (or creates) a log whose writer the caller drives on its own thread (the
    /// journal's log): no writer thread, and nothing queued through `Log` is served.
    pub(crate) fn open_inline(
        dir: impl Into<PathBuf>,
        config: LogConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<(Self, Writer), LogError> {
        let (log, writer) = Self::open_inner(dir.into(), config, storage, false, true)?;
        let writer = writer.ok_or(LogError::Closed)?;
        Ok((log, writer))
    }

    /// Opens a partition that must already exist: a missing directory, or one with no
    /// segment file, is reported as damage (`Corruption`), never created afresh.
    pub fn open_existing_with(
        dir: impl Into<PathBuf>,
        config: LogConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<Self, LogError> {
        Self::open_inner(dir.into(), config, storage, true, false).map(|(log, _)| log)
    }

    fn open_inner(
        dir: PathBuf,
        config: LogConfig,
        storage: Arc<dyn Storage>,
        must_exist: bool,
        inline: bool,
    ) -> Result<(Self, Option<Writer>), LogError> {
        config.validate()?;
        if must_exist {
            if !storage.exists(&dir) {
                return Err(LogError::Missing {
                    path: dir,
                    reason: "the partition directory is gone; it is never recreated empty".into(),
                });
            }
        } else if !storage.exists(&dir) {
            storage
                .create_dir_all(&dir)
                .map_err(|e| LogError::io("create directory", &dir, e))?;
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            storage
                .sync_dir(parent)
                .map_err(|e| LogError::io("fsync directory", parent, e))?;
        }
        // A journaled log is registered with its journal instead of locking its
        // directory: one descriptor fewer per log, and still one writer per directory.
        let (lock, claim) = match &config.journal {
            Some(journal) => (None, Some(journal.claim(&dir)?)),
            None => (
                Some(
                    storage
                        .lock_dir(&dir)
                        .map_err(|e| LogError::io("lock", &dir, e))?,
                ),
                None,
            ),
        };
        let recovered = recovery::recover(&*storage, &dir, &config, must_exist)?;
        // A journaled log counts against the journal's file budget and opens its
        // active segment for reading on demand; any other keeps it open.
        let budget = config.journal.as_ref().map(|j| j.budget());
        let reader = match budget {
            Some(_) => None,
            None => Some(
                storage
                    .open_read(&recovered.active_path)
                    .map_err(|e| LogError::io("open", &recovered.active_path, e))?,
            ),
        };
        let active = ActiveSegment::new(
            recovered.active_path,
            recovered.active.base,
            recovered.active.clone(),
            reader,
            budget.clone(),
        );
        let (next_tx, _) = watch::channel(recovered.active.next);
        let inner = Arc::new(Inner {
            dir,
            storage,
            config,
            view: RwLock::new(View {
                sealed: recovered.sealed.into_iter().map(Arc::new).collect(),
                active: Arc::clone(&active),
            }),
            maps: Mutex::new(SegmentLru::new(OPEN_MAPS_MAX)),
            indexes: Mutex::new(SegmentLru::new(OPEN_INDEXES_MAX)),
            poisoned: Mutex::new(None),
            next_tx,
            durable_next: std::sync::atomic::AtomicU64::new(recovered.active.next.0),
            torn: Mutex::new(recovered.torn),
            retention: Mutex::new(()),
            counters: stats::WriterCounters::default(),
            budget,
            _lock: lock,
        });
        let (tx, rx) = queue::queue(WRITER_QUEUE_DEPTH_MAX);
        let journal = inner.config.journal.clone();
        let writer = Writer::new(
            Arc::clone(&inner),
            recovered.file,
            active,
            recovered.start,
            journal.is_some(),
        );
        if let (Some(journal), Some(claim)) = (journal, claim) {
            // An idle journaled log holds no descriptor: its file reopens on demand.
            let mut writer = writer;
            writer.close_file()?;
            let attached = journal.attach(claim, writer, rx, inner.config.fsync);
            let log = Self {
                inner,
                tx: Some(tx),
                writer: None,
                journal: Some((journal, attached)),
                recovery: recovered.report,
                used: AtomicBool::new(false),
            };
            return Ok((log, None));
        }
        if inline {
            let log = Self {
                inner,
                tx: None,
                writer: None,
                journal: None,
                recovery: recovered.report,
                used: AtomicBool::new(false),
            };
            return Ok((log, Some(writer)));
        }
        let handle = std::thread::Builder::new()
            .name("eventmesh-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| LogError::io("spawn writer for", &inner.dir, e))?;
        let log = Self {
            inner,
            tx: Some(tx),
            writer: Some(handle),
            journal: None,
            recovery: recovered.report,
            used: AtomicBool::new(false),
        };
        Ok((log, None))
    }

    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// What recovery found and did when this log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    fn sender(&self) -> Result<&QueueTx<WriterMsg>, LogError> {
        // Written once, then only read: every append does not dirty a line that all
        // the threads appending to this log share.
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Release);
        }
        self.tx.as_ref().ok_or(LogError::Closed)
    }

    /// Nothing was ever sent to the writer: the log is as opened, and durable.
    fn untouched(&self) -> bool {
        !self.used.load(Ordering::Acquire) && self.tx.is_some()
    }

    /// Tells the journal, if the log rides one, that something was queued.
    fn wake(&self) {
        if let Some((journal, attached)) = &self.journal {
            journal.schedule(attached);
        }
    }

    /// Why appends are refused: the log's own poison, else its journal's.
    fn refusal(&self) -> Option<LogError> {
        self.inner.poisoned().or_else(|| {
            self.journal
                .as_ref()
                .and_then(|(journal, _)| journal.poisoned())
        })
    }

    /// Hands a batch to the writer without blocking. A full queue answers `Overloaded`.
    pub fn try_submit(&self, records: Vec<RecordInput>) -> Result<PendingAppend, LogError> {
        if let Some(e) = self.refusal() {
            return Err(e);
        }
        let (reply, rx) = oneshot::channel();
        match self
            .sender()?
            .try_send(WriterMsg::Append { records, reply })
        {
            Ok(()) => {
                self.wake();
                Ok(PendingAppend { rx })
            }
            Err(SendError::Full(_)) => Err(LogError::Overloaded),
            Err(SendError::Disconnected(_)) => Err(LogError::Closed),
        }
    }

    /// Hands a batch to the writer, waiting for queue space if it is full.
    pub fn submit(&self, records: Vec<RecordInput>) -> Result<PendingAppend, LogError> {
        if let Some(e) = self.refusal() {
            return Err(e);
        }
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(WriterMsg::Append { records, reply })
            .map_err(|_| LogError::Closed)?;
        self.wake();
        Ok(PendingAppend { rx })
    }

    /// Appends one record; returns once it is durable under the policy.
    pub fn append(&self, record: RecordInput) -> Result<AppendOutcome, LogError> {
        self.submit(vec![record])?.wait()
    }

    /// Appends records as one batch, stored all or nothing, at consecutive offsets.
    pub fn append_batch(&self, records: Vec<RecordInput>) -> Result<AppendOutcome, LogError> {
        self.submit(records)?.wait()
    }

    fn control(&self, make: impl FnOnce(writer::Reply<()>) -> WriterMsg) -> Result<(), LogError> {
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(make(reply))
            .map_err(|_| LogError::Closed)?;
        self.wake();
        rx.blocking_recv().unwrap_or(Err(LogError::Closed))
    }

    /// fdatasync now, whatever the policy.
    pub fn sync(&self) -> Result<(), LogError> {
        if self.untouched() {
            return self.inner.poisoned().map_or(Ok(()), Err);
        }
        self.control(|reply| WriterMsg::Sync { reply })
    }

    /// Waits until everything queued before this call is written and readable (no
    /// forced fdatasync). Blocking: not for async code (use `barrier_async`).
    pub fn barrier(&self) -> Result<(), LogError> {
        if self.untouched() {
            return Ok(());
        }
        self.control(|reply| WriterMsg::Barrier { reply })
    }

    /// `barrier`, awaitable.
    pub async fn barrier_async(&self) -> Result<(), LogError> {
        if self.untouched() {
            return Ok(());
        }
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .try_send(WriterMsg::Barrier { reply })
            .map_err(|_| LogError::Overloaded)?;
        self.wake();
        rx.await.unwrap_or(Err(LogError::Closed))
    }

    /// Seals the active segment now, if it holds records.
    pub fn roll(&self) -> Result<(), LogError> {
        self.control(|reply| WriterMsg::Roll { reply })
    }

    /// Records from `from` onwards.
    pub fn iter_from(&self, from: Offset) -> RecordIter {
        RecordIter::new(Arc::clone(&self.inner), from, true)
    }

    /// Records from `from` onwards, for a one-pass scan: each sealed segment is mapped
    /// only while the iterator is in it and never enters the map cache, so a long scan
    /// (analytics, the dedup rebuild) leaves no mapped pages behind.
    pub fn scan_from(&self, from: Offset) -> RecordIter {
        RecordIter::new(Arc::clone(&self.inner), from, false)
    }

    /// Up to `max_records` records from `from`, stopping early once `max_bytes` of payload
    /// are gathered (at least one record is returned when one exists).
    pub fn read(
        &self,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, LogError> {
        let first = self.first_offset();
        if from < first {
            return Err(LogError::OffsetOutOfRange {
                requested: from,
                first,
                next: self.next_offset(),
            });
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for rec in self.iter_from(from).take(max_records.min(READ_RECORDS_MAX)) {
            let rec = rec?;
            bytes += rec.payload.len();
            out.push(rec);
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// The first offset whose append time is at or after `timestamp_ms`
    /// (`next_offset` when there is none).
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Offset, LogError> {
        let (sealed, active) = self.inner.snapshot();
        let start = match sealed.iter().find(|s| s.summary.last_ts >= timestamp_ms) {
            Some(seg) => {
                let mapped = self.inner.sealed_map(seg);
                match mapped {
                    Ok(bytes) => {
                        self.inner
                            .sealed_index(seg, &bytes)?
                            .locate_time(timestamp_ms)
                            .1
                    }
                    // Retention deleted it since the snapshot: scan from what is left.
                    Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => {
                        self.first_offset()
                    }
                    Err(e) => return Err(e),
                }
            }
            None => {
                let s = active.summary.read();
                if s.is_empty() || s.last_ts < timestamp_ms {
                    return Ok(s.next);
                }
                s.locate_time(timestamp_ms).1
            }
        };
        for rec in self.iter_from(start) {
            let rec = rec?;
            if rec.timestamp_ms >= timestamp_ms {
                return Ok(rec.offset);
            }
        }
        Ok(self.next_offset())
    }

    /// The first retained offset.
    pub fn first_offset(&self) -> Offset {
        self.inner.first_offset()
    }

    /// One past the last acknowledged record.
    pub fn next_offset(&self) -> Offset {
        self.inner.next_offset()
    }

    /// One past the last record known durable: `next_offset` under `--fsync always`,
    /// possibly behind it under `interval` and `never` until the next fdatasync.
    pub fn durable_next_offset(&self) -> Offset {
        Offset(
            self.inner
                .durable_next
                .load(std::sync::atomic::Ordering::Acquire),
        )
    }

    /// Watches the next offset: changes after each durable group (for tails and long polls).
    pub fn subscribe(&self) -> watch::Receiver<Offset> {
        self.inner.next_tx.subscribe()
    }

    /// The writer's counters (groups, records, bytes, fsyncs and their latency).
    pub fn writer_stats(&self) -> WriterStats {
        self.inner.counters.snapshot()
    }

    /// Refuses appends from now until the log is reopened.
    pub(crate) fn poison(&self, reason: String) {
        self.inner.poison(reason);
    }

    /// Why the log refuses appends, if it does.
    pub fn poisoned(&self) -> Option<LogError> {
        self.refusal()
    }

    pub fn stats(&self) -> LogStats {
        let view = self.inner.view.read();
        let active = view.active.summary.read();
        LogStats {
            first_offset: view.first_offset(),
            next_offset: active.next,
            segments: view.sealed.len() + 1,
            bytes: view.sealed.iter().map(|s| s.summary.bytes).sum::<u64>() + active.bytes,
            open_maps: self.inner.maps.lock().len(),
        }
    }

    /// Deletes whole sealed segments, oldest first, while they break `retention`.
    /// The active segment is never deleted. Readers already holding a deleted segment
    /// keep reading it; new reads below the new first offset get `OffsetOutOfRange`.
    pub fn apply_retention(&self, retention: Retention) -> Result<RetentionReport, LogError> {
        let now = self.inner.config.clock.now_ms();
        self.delete_front_while(|total, oldest| {
            retention.max_bytes.is_some_and(|max| total > max)
                || retention
                    .max_age_ms
                    .is_some_and(|age| oldest.last_ts < now.saturating_sub(age))
        })
    }

    /// Deletes the sealed segments that hold only records before `offset`, oldest
    /// first, as retention does (a compaction that superseded them).
    pub fn delete_before(&self, offset: Offset) -> Result<RetentionReport, LogError> {
        self.delete_front_while(|_, oldest| oldest.next <= offset)
    }

    /// Deletes the oldest sealed segment while `due(total bytes, its summary)` says so.
    fn delete_front_while(
        &self,
        due: impl Fn(u64, &segment::SegmentSummary) -> bool,
    ) -> Result<RetentionReport, LogError> {
        let _serial = self.inner.retention.lock();
        let mut report = RetentionReport::default();
        loop {
            let victim: Option<Arc<SealedSegment>> = {
                let mut view = self.inner.view.write();
                let side: u64 = self.inner.torn.lock().values().sum();
                let total: u64 = view.sealed.iter().map(|s| s.summary.bytes).sum::<u64>()
                    + view.active.summary.read().bytes
                    + side;
                let due = view
                    .sealed
                    .first()
                    .is_some_and(|oldest| due(total, &oldest.summary));
                due.then(|| view.sealed.remove(0))
            };
            let Some(seg) = victim else { break };
            self.inner.maps.lock().evict(seg.summary.base);
            self.inner.indexes.lock().evict(seg.summary.base);
            let storage = &*self.inner.storage;
            if let Err(e) = storage.remove(&seg.path) {
                // If the file is still there, put it back, or a later run would delete
                // the segments after it and leave a gap that open refuses. (A remove
                // that failed after its effect did delete it: carry on.)
                if storage.exists(&seg.path) {
                    let err = LogError::io("remove", &seg.path, e);
                    self.inner.view.write().sealed.insert(0, seg);
                    return Err(err);
                }
            }
            let index = segment::index_path(&self.inner.dir, seg.summary.base);
            if storage.exists(&index) {
                storage
                    .remove(&index)
                    .map_err(|e| LogError::io("remove", &index, e))?;
            }
            // What recovery once cut from this segment goes with it.
            if self.inner.torn.lock().remove(&seg.summary.base).is_some() {
                let side = segment::torn_path(&self.inner.dir, seg.summary.base);
                match storage.remove(&side) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(LogError::io("remove", &side, e));
                    }
                    _ => {}
                }
            }
            storage
                .sync_dir(&self.inner.dir)
                .map_err(|e| LogError::io("fsync directory", &self.inner.dir, e))?;
            report.segments_deleted += 1;
            report.bytes_deleted += seg.summary.bytes;
        }
        report.first_offset = self.first_offset();
        Ok(report)
    }

    /// Stops the writer after it has drained its queue and synced, and reports the
    /// first error it met, if the log is poisoned.
    pub fn close(mut self) -> Result<(), LogError> {
        self.shutdown();
        match self.inner.poisoned() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn shutdown(&mut self) {
        let untouched = self.untouched();
        if let Some((journal, attached)) = self.journal.take() {
            if untouched {
                // Nothing to settle; the journal holds no reference to it (it never
                // wrote), so dropping `attached` releases its claim on the directory.
                drop(attached);
                self.tx.take();
                return;
            }
            // The journal's thread is this log's writer: ask it to settle and close
            // the log, and wait (on a blocking channel: this may run in async code).
            let (reply, closed) = crossbeam_channel::bounded(1);
            let sent = self
                .tx
                .as_ref()
                .is_some_and(|tx| tx.send(WriterMsg::Close { reply }).is_ok());
            if sent {
                journal.schedule(&attached);
                drop(attached);
                if let Ok(Err(e)) = closed.recv() {
                    self.inner.poison(format!("closing failed: {e}"));
                }
            }
        }
        self.tx.take();
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.shutdown();
    }
}
