//! The state the writer thread publishes and readers read: the segment list, the
//! active segment's committed length, the map cache, and the poison flag.
//!
//! Readers see only published state, and the writer publishes a group only after it
//! is durable under the policy, so a reader never sees a record that could vanish.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::error::LogError;
use crate::limits::{OPEN_INDEXES_MAX, OPEN_MAPS_MAX};
use crate::log::recovery;
use crate::log::segment::{self, SegmentSummary, INDEX_SUFFIX};
use crate::log::storage::{read_to_vec, DirLock, ReadableFile, Storage};
use crate::log::types::{LogConfig, Offset};

/// A segment that is never written again. Its sparse index is not held here: readers
/// load it on demand through the [`IndexCache`], so memory does not grow with the log.
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
    pub reader: Arc<dyn ReadableFile>,
    pub summary: RwLock<SegmentSummary>,
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

/// Maps of sealed segments, at most `OPEN_MAPS_MAX`, least recently used evicted.
/// A reader keeps its own clone of a map, so eviction never pulls bytes from under it.
#[derive(Debug, Default)]
pub(crate) struct MapCache {
    entries: Vec<(Offset, Bytes, u64)>,
    clock: u64,
}

impl MapCache {
    pub fn get_or_map(
        &mut self,
        segment: &SealedSegment,
        storage: &dyn Storage,
    ) -> Result<Bytes, LogError> {
        self.clock += 1;
        let base = segment.summary.base;
        if let Some(entry) = self.entries.iter_mut().find(|e| e.0 == base) {
            entry.2 = self.clock;
            return Ok(entry.1.clone());
        }
        let bytes = storage
            .open_read(&segment.path)
            .and_then(|f| f.map(segment.summary.bytes))
            .map_err(|e| LogError::io("map", &segment.path, e))?;
        if self.entries.len() >= OPEN_MAPS_MAX {
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
        self.entries.push((base, bytes.clone(), self.clock));
        Ok(bytes)
    }

    pub fn evict(&mut self, base: Offset) {
        self.entries.retain(|e| e.0 != base);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Sparse indexes of sealed segments, at most `OPEN_INDEXES_MAX`, least recently used
/// evicted. An index is read from its `.index` file and checked against the segment's
/// bytes; when the file is missing or doubtful, the segment is scanned instead.
#[derive(Debug, Default)]
pub(crate) struct IndexCache {
    entries: Vec<(Offset, Arc<SegmentSummary>, u64)>,
    clock: u64,
}

impl IndexCache {
    pub fn get_or_load(
        &mut self,
        segment: &SealedSegment,
        bytes: &[u8],
        storage: &dyn Storage,
    ) -> Result<Arc<SegmentSummary>, LogError> {
        self.clock += 1;
        let base = segment.summary.base;
        if let Some(entry) = self.entries.iter_mut().find(|e| e.0 == base) {
            entry.2 = self.clock;
            return Ok(Arc::clone(&entry.1));
        }
        let summary = Arc::new(load_index(segment, bytes, storage)?);
        if self.entries.len() >= OPEN_INDEXES_MAX {
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
        self.entries.push((base, Arc::clone(&summary), self.clock));
        Ok(summary)
    }

    pub fn evict(&mut self, base: Offset) {
        self.entries.retain(|e| e.0 != base);
    }
}

fn load_index(
    segment: &SealedSegment,
    bytes: &[u8],
    storage: &dyn Storage,
) -> Result<SegmentSummary, LogError> {
    let base = segment.summary.base;
    let index_path = segment.path.with_extension(&INDEX_SUFFIX[1..]);
    if let Ok(file) = read_to_vec(storage, &index_path) {
        if let Some(summary) = segment::decode_index(&file, base, bytes) {
            if summary.next == segment.summary.next {
                return Ok(summary);
            }
        }
    }
    let out = recovery::scan(bytes, base, false, i64::MIN);
    match &out.damage {
        Some(damage) => Err(recovery::corruption_error(&segment.path, damage)),
        None => Ok(out.summary),
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub dir: PathBuf,
    pub storage: Arc<dyn Storage>,
    pub config: LogConfig,
    pub view: RwLock<View>,
    pub maps: Mutex<MapCache>,
    pub indexes: Mutex<IndexCache>,
    /// Set by the writer when a write could not be undone or an fsync failed.
    pub poisoned: Mutex<Option<String>>,
    /// The next offset, published after each durable group (for tails and long polls).
    pub next_tx: watch::Sender<Offset>,
    /// Serialises retention runs.
    pub retention: Mutex<()>,
    pub counters: crate::log::stats::WriterCounters,
    pub _lock: Box<dyn DirLock>,
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

    /// A sealed segment's sparse index, for a reader that holds its mapped `bytes`.
    pub fn sealed_index(
        &self,
        segment: &SealedSegment,
        bytes: &[u8],
    ) -> Result<Arc<SegmentSummary>, LogError> {
        self.indexes
            .lock()
            .get_or_load(segment, bytes, &*self.storage)
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
