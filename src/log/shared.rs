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
use crate::limits::OPEN_MAPS_MAX;
use crate::log::segment::SegmentSummary;
use crate::log::storage::{DirLock, ReadableFile, Storage};
use crate::log::types::{LogConfig, Offset};

/// A segment that is never written again.
#[derive(Debug)]
pub(crate) struct SealedSegment {
    pub path: PathBuf,
    pub summary: SegmentSummary,
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

#[derive(Debug)]
pub(crate) struct Inner {
    pub dir: PathBuf,
    pub storage: Arc<dyn Storage>,
    pub config: LogConfig,
    pub view: RwLock<View>,
    pub maps: Mutex<MapCache>,
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
