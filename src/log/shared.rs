//! The state the writer thread publishes and readers read: the segment list, the
//! active segment's committed length, the map cache, and the poison flag.
//!
//! Readers see only published state, and the writer publishes a group only after it
//! is durable under the policy, so a reader never sees a record that could vanish.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::log::budget::FileBudget;
use crate::log::scan;
use crate::log::segment::{self, SegmentSummary};
use crate::log::storage::{read_to_vec, DirLock, ReadableFile, Storage};
use crate::log::LogError;
use crate::log::{LogConfig, Offset};

/// A segment that is never written again. Its sparse index is not held here: readers
/// load it on demand through `Inner::sealed_index`, so memory does not grow with the log.
#[derive(Debug)]
pub(crate) struct SealedSegment {
    pub path: PathBuf,
    /// Offsets, bytes and last time; `index` is always empty.
    pub summary: SegmentSummary,
}

impl SealedSegment {
    pub fn new(path: PathBuf, mut summary: SegmentSummary) -> Self {
        summary.index = Vec::new();
        Self { path, summary }
    }
}

/// The segment being appended to. Its summary covers only published records.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    pub path: PathBuf,
    pub base: Offset,
    /// Opened for reading on demand (`reader`); with a budget, closed when it runs short.
    reader: Mutex<Option<Arc<dyn ReadableFile>>>,
    budget: Option<Arc<FileBudget>>,
    pub summary: RwLock<SegmentSummary>,
}

impl ActiveSegment {
    pub fn new(
        path: PathBuf,
        base: Offset,
        summary: SegmentSummary,
        reader: Option<Arc<dyn ReadableFile>>,
        budget: Option<Arc<FileBudget>>,
    ) -> Arc<Self> {
        let segment = Arc::new(Self {
            path,
            base,
            reader: Mutex::new(None),
            budget,
            summary: RwLock::new(summary),
        });
        if let Some(reader) = reader {
            *segment.reader.lock() = Some(reader);
            if let Some(budget) = &segment.budget {
                budget.reader_opened(&segment);
            }
        }
        segment
    }

    /// The segment opened for reading, opening it if it is not.
    pub fn reader(
        self: &Arc<Self>,
        storage: &dyn Storage,
    ) -> std::io::Result<Arc<dyn ReadableFile>> {
        let opened = {
            let mut slot = self.reader.lock();
            if let Some(reader) = &*slot {
                return Ok(Arc::clone(reader));
            }
            let reader = storage.open_read(&self.path)?;
            *slot = Some(Arc::clone(&reader));
            reader
        };
        if let Some(budget) = &self.budget {
            budget.reader_opened(self);
        }
        Ok(opened)
    }

    /// Lets the reader go (a reader in progress keeps its own handle).
    pub fn close_reader(&self) {
        if self.reader.lock().take().is_some() {
            if let Some(budget) = &self.budget {
                budget.reader_closed();
            }
        }
    }
}

impl Drop for ActiveSegment {
    fn drop(&mut self) {
        if self.reader.get_mut().take().is_some() {
            if let Some(budget) = &self.budget {
                budget.reader_closed();
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct View {
    pub sealed: Vec<Arc<SealedSegment>>,
    pub active: Arc<ActiveSegment>,
}

impl View {
    pub fn first_offset(&self) -> Offset {
        self.sealed
            .first()
            .map_or(self.active.base, |s| s.summary.base)
    }
}

/// A small least-recently-used cache of per-segment values, keyed by base offset: the
/// maps of sealed segments (`OPEN_MAPS_MAX`) and their sparse indexes
/// (`OPEN_INDEXES_MAX`). Values are cheap clones (`Bytes`, `Arc`), so a reader keeps its
/// own and eviction never pulls anything from under it.
#[derive(Debug)]
pub(crate) struct SegmentLru<T> {
    entries: Vec<(Offset, T, u64)>,
    clock: u64,
    capacity: usize,
}

impl<T: Clone> SegmentLru<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Vec::new(),
            clock: 0,
            capacity,
        }
    }

    /// The value for `base`, loading it with `load` when absent.
    pub fn get_or_load(
        &mut self,
        base: Offset,
        load: impl FnOnce() -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        self.clock += 1;
        if let Some(entry) = self.entries.iter_mut().find(|e| e.0 == base) {
            entry.2 = self.clock;
            return Ok(entry.1.clone());
        }
        let value = load()?;
        if self.entries.len() >= self.capacity {
            if let Some(oldest) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.2)
                .map(|(i, _)| i)
            {
                self.entries.swap_remove(oldest);
            }
        }
        self.entries.push((base, value.clone(), self.clock));
        Ok(value)
    }

    pub fn evict(&mut self, base: Offset) {
        self.entries.retain(|e| e.0 != base);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Maps a sealed segment up to its sealed length.
pub(crate) fn map_sealed(
    storage: &dyn Storage,
    segment: &SealedSegment,
) -> Result<Bytes, LogError> {
    storage
        .open_read(&segment.path)
        .and_then(|f| f.map(segment.summary.bytes))
        .map_err(|e| LogError::io("map", &segment.path, e))
}

/// A sealed segment's sparse index: from its `.index` file when that agrees with the
/// segment's `bytes`, else from a scan of them.
fn load_index(
    storage: &dyn Storage,
    dir: &Path,
    segment: &SealedSegment,
    bytes: &[u8],
) -> Result<SegmentSummary, LogError> {
    let base = segment.summary.base;
    if let Ok(file) = read_to_vec(storage, &segment::index_path(dir, base)) {
        if let Some(summary) =
            segment::decode_index(&file, base, bytes.len() as u64, &segment::frame_in(bytes))
        {
            if summary.next == segment.summary.next {
                return Ok(summary);
            }
        }
    }
    let out = scan::scan(bytes, base, false);
    match &out.damage {
        Some(damage) => Err(scan::corruption_error(&segment.path, damage)),
        None => Ok(out.summary),
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub dir: PathBuf,
    pub storage: Arc<dyn Storage>,
    pub config: LogConfig,
    pub view: RwLock<View>,
    pub maps: Mutex<SegmentLru<Bytes>>,
    pub indexes: Mutex<SegmentLru<Arc<SegmentSummary>>>,
    /// Set by the writer when a write could not be undone or an fsync failed.
    pub poisoned: Mutex<Option<String>>,
    /// The next offset, published after each durable group (for tails and long polls).
    pub next_tx: watch::Sender<Offset>,
    /// One past the last record known durable (fdatasync returned OK). Equal to the
    /// published end under `Always`; behind it under `Interval` and `Never`.
    pub durable_next: std::sync::atomic::AtomicU64,
    /// Bytes of `.torn` side files by segment base: they count against retention and
    /// go with their segment.
    pub torn: Mutex<std::collections::BTreeMap<Offset, u64>>,
    /// Serialises retention runs.
    pub retention: Mutex<()>,
    pub counters: crate::log::stats::WriterCounters,
    /// The open-file budget this log's active segment counts against (journaled logs).
    pub budget: Option<Arc<FileBudget>>,
    /// The directory's lock; none for a journaled log (the journal's registry holds
    /// its directory instead, at no file descriptor).
    pub _lock: Option<Box<dyn DirLock>>,
}

impl Inner {
    pub fn snapshot(&self) -> (Vec<Arc<SealedSegment>>, Arc<ActiveSegment>) {
        let view = self.view.read();
        (view.sealed.clone(), Arc::clone(&view.active))
    }

    pub fn next_offset(&self) -> Offset {
        self.view.read().active.summary.read().next
    }

    pub fn first_offset(&self) -> Offset {
        self.view.read().first_offset()
    }

    /// A sealed segment's map, through the map cache.
    pub fn sealed_map(&self, segment: &SealedSegment) -> Result<Bytes, LogError> {
        self.maps
            .lock()
            .get_or_load(segment.summary.base, || map_sealed(&*self.storage, segment))
    }

    /// A sealed segment's sparse index, for a reader that holds its mapped `bytes`.
    pub fn sealed_index(
        &self,
        segment: &SealedSegment,
        bytes: &[u8],
    ) -> Result<Arc<SegmentSummary>, LogError> {
        self.indexes.lock().get_or_load(segment.summary.base, || {
            load_index(&*self.storage, &self.dir, segment, bytes).map(Arc::new)
        })
    }

    pub fn poison(&self, reason: String) {
        let mut p = self.poisoned.lock();
        if p.is_none() {
            *p = Some(reason);
        }
    }

    pub fn poisoned(&self) -> Option<LogError> {
        self.poisoned
            .lock()
            .as_ref()
            .map(|reason| LogError::Poisoned {
                reason: reason.clone(),
            })
    }
}
