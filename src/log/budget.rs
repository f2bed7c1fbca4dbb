//! The open-file budget of journaled logs: an idle log holds no file descriptor.
//!
//! A journaled log opens its active segment's files on demand and lets them go when the
//! budget runs short, so open files follow the budget, not the number of logs:
//! - *readers* (the active segment opened for reading) are closed oldest-opened first
//!   as soon as more than `readers_max` are open; a reader in progress keeps its own
//!   handle until it is done;
//! - *writers* (the active segment opened for writing) are closed by the journal thread
//!   after a round, least recently written first, once more than `writers_max` are
//!   open; a writer with unsynced bytes is fdatasynced before it is closed (a writeback
//!   error must not go unreported on a descriptor nobody holds).
//!
//! A reopen needs no scan: the writer keeps the segment's state in memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::log::shared::ActiveSegment;

/// The fewest handles of each kind a budget allows.
pub const FILES_MIN: usize = 1;

#[derive(Debug)]
pub struct FileBudget {
    readers_max: usize,
    writers_max: usize,
    readers: AtomicUsize,
    writers: AtomicUsize,
    /// Active segments with an open reader, oldest opened first (may hold stale ones).
    opened: Mutex<VecDeque<Weak<ActiveSegment>>>,
}

impl FileBudget {
    /// A budget of `files` open files, half for readers and half for writers.
    pub fn new(files: usize) -> Self {
        Self {
            readers_max: (files / 2).max(FILES_MIN),
            writers_max: (files / 2).max(FILES_MIN),
            readers: AtomicUsize::new(0),
            writers: AtomicUsize::new(0),
            opened: Mutex::new(VecDeque::new()),
        }
    }

    /// 70 % of the soft `RLIMIT_NOFILE` now in force (the rest is for connections,
    /// the journal, metadata and the runtime).
    pub fn from_open_files_limit() -> Self {
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(1024 * 1024);
        let files = usize::try_from(soft.saturating_mul(7) / 10).unwrap_or(usize::MAX);
        Self::new(files)
    }

    pub fn readers(&self) -> usize {
        self.readers.load(Ordering::Relaxed)
    }

    pub fn writers(&self) -> usize {
        self.writers.load(Ordering::Relaxed)
    }

    pub fn writers_max(&self) -> usize {
        self.writers_max
    }

    pub(crate) fn writer_opened(&self) {
        self.writers.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn writer_closed(&self) {
        self.writers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Notes `segment`'s new reader, closing the oldest others beyond the budget.
    pub(crate) fn reader_opened(&self, segment: &Arc<ActiveSegment>) {
        self.readers.fetch_add(1, Ordering::Relaxed);
        let mut opened = self.opened.lock();
        opened.push_back(Arc::downgrade(segment));
        while self.readers.load(Ordering::Relaxed) > self.readers_max {
            let Some(oldest) = opened.pop_front() else {
                break;
            };
            let Some(oldest) = oldest.upgrade() else {
                continue;
            };
            if Arc::ptr_eq(&oldest, segment) {
                opened.push_back(Arc::downgrade(&oldest));
                if opened.len() == 1 {
                    break;
                }
                continue;
            }
            oldest.close_reader();
        }
        // Drop the stale entries now and then, so the list stays near the budget.
        if opened.len() > 4 * self.readers_max {
            opened.retain(|w| w.strong_count() > 0);
        }
    }

    pub(crate) fn reader_closed(&self) {
        self.readers.fetch_sub(1, Ordering::Relaxed);
    }
}
