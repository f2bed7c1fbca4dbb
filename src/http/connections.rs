//! The open connections, so that at the connection cap the one idle the longest can be
//! closed to make room, instead of refusing everyone (a few thousand idle keep-alive
//! connections must not lock out `/healthz` and real senders).
//!
//! A connection is busy from the moment a request arrives until its response body is
//! done, so streams (SSE) and long polls are never taken for idle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::oneshot;

#[derive(Debug)]
struct Entry {
    activity: Arc<Activity>,
    close: Option<oneshot::Sender<()>>,
}

/// What one connection is doing.
#[derive(Debug)]
pub struct Activity {
    busy: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    /// Marks a request (and its response body) in flight until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::AcqRel);
        BusyGuard(Arc::clone(self))
    }
}

/// Held while a request and its response body are in flight.
#[derive(Debug)]
pub struct BusyGuard(Arc<Activity>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        *self.0.idle_since.lock() = Instant::now();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The registry of open connections.
#[derive(Debug, Default)]
pub struct Connections {
    open: Mutex<HashMap<u64, Entry>>,
    next: AtomicU64,
}

impl Connections {
    /// Registers a new connection: its id, its activity, and the signal that asks it to
    /// close.
    pub fn register(&self) -> (u64, Arc<Activity>, oneshot::Receiver<()>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity {
            busy: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        });
        let (tx, rx) = oneshot::channel();
        self.open.lock().insert(
            id,
            Entry {
                activity: Arc::clone(&activity),
                close: Some(tx),
            },
        );
        (id, activity, rx)
    }

    pub fn remove(&self, id: u64) {
        self.open.lock().remove(&id);
    }

    /// Asks the connection idle the longest (no request in flight) to close. `false`
    /// when every connection is busy.
    pub fn close_oldest_idle(&self) -> bool {
        let mut open = self.open.lock();
        let oldest = open
            .iter_mut()
            .filter(|(_, e)| e.close.is_some() && e.activity.busy.load(Ordering::Acquire) == 0)
            .min_by_key(|(_, e)| *e.activity.idle_since.lock());
        match oldest.and_then(|(_, e)| e.close.take()) {
            Some(tx) => tx.send(()).is_ok(),
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.open.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_idle_connection_is_closed_and_busy_ones_never() {
        let c = Connections::default();
        let (_, busy, mut busy_rx) = c.register();
        let (_, _, mut old_rx) = c.register();
        let (_, young, mut young_rx) = c.register();
        let _held = busy.begin();
        drop(young.begin()); // active a moment ago: younger than `old`
        assert!(c.close_oldest_idle());
        assert!(old_rx.try_recv().is_ok(), "the oldest idle one");
        assert!(busy_rx.try_recv().is_err());
        assert!(young_rx.try_recv().is_err());
        assert!(c.close_oldest_idle());
        assert!(young_rx.try_recv().is_ok());
        assert!(!c.close_oldest_idle(), "only a busy one is left");
    }
}
