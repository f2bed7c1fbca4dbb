//! The writer's queue: a channel bounded by a count, not by a preallocated array.
//!
//! `crossbeam_channel::bounded(n)` allocates and touches all `n` slots up front: 8,192
//! slots of a writer message are 320 KiB per log, resident even when the log is idle
//! (a flow has three logs). This queue stores messages in an unbounded channel, which
//! grows in small blocks as messages arrive, and enforces the bound with a counter:
//! `try_send` answers `Full` at the bound, `send` waits for room.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use parking_lot::{Condvar, Mutex};

#[derive(Debug)]
struct Depth {
    /// Messages sent and not yet received; `None` once the receiver is gone.
    queued: Mutex<Option<usize>>,
    room: Condvar,
    max: usize,
}

/// Why a message was not queued; the message comes back.
#[derive(Debug)]
pub enum SendError<T> {
    Full(T),
    Disconnected(T),
}

pub struct QueueTx<T> {
    tx: Sender<T>,
    depth: Arc<Depth>,
}

pub struct QueueRx<T> {
    rx: Receiver<T>,
    depth: Arc<Depth>,
}

impl<T> std::fmt::Debug for QueueTx<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueTx")
            .field("depth", &self.depth)
            .finish()
    }
}

impl<T> std::fmt::Debug for QueueRx<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueRx")
            .field("depth", &self.depth)
            .finish()
    }
}

/// A queue of at most `max` messages.
pub fn queue<T>(max: usize) -> (QueueTx<T>, QueueRx<T>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let depth = Arc::new(Depth {
        queued: Mutex::new(Some(0)),
        room: Condvar::new(),
        max,
    });
    let depth2 = Arc::clone(&depth);
    (QueueTx { tx, depth }, QueueRx { rx, depth: depth2 })
}

impl<T> QueueTx<T> {
    /// Queues `msg` unless the queue is full or the receiver is gone.
    pub fn try_send(&self, msg: T) -> Result<(), SendError<T>> {
        {
            let mut queued = self.depth.queued.lock();
            match queued.as_mut() {
                None => return Err(SendError::Disconnected(msg)),
                Some(n) if *n >= self.depth.max => return Err(SendError::Full(msg)),
                Some(n) => *n += 1,
            }
        }
        self.push(msg)
    }

    /// Queues `msg`, waiting for room while the queue is full.
    pub fn send(&self, msg: T) -> Result<(), SendError<T>> {
        {
            let mut queued = self.depth.queued.lock();
            loop {
                match queued.as_mut() {
                    None => return Err(SendError::Disconnected(msg)),
                    Some(n) if *n >= self.depth.max => self.depth.room.wait(&mut queued),
                    Some(n) => {
                        *n += 1;
                        break;
                    }
                }
            }
        }
        self.push(msg)
    }

    fn push(&self, msg: T) -> Result<(), SendError<T>> {
        self.tx.send(msg).map_err(|e| {
            self.depth.release();
            SendError::Disconnected(e.into_inner())
        })
    }
}

impl Depth {
    fn release(&self) {
        if let Some(n) = self.queued.lock().as_mut() {
            *n = n.saturating_sub(1);
        }
        self.room.notify_one();
    }
}

impl<T> QueueRx<T> {
    fn took(&self, msg: T) -> T {
        self.depth.release();
        msg
    }

    pub fn recv(&self) -> Option<T> {
        self.rx.recv().ok().map(|m| self.took(m))
    }

    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.rx.try_recv().map(|m| self.took(m))
    }

    pub fn recv_timeout(&self, wait: Duration) -> Result<T, RecvTimeoutError> {
        self.rx.recv_timeout(wait).map(|m| self.took(m))
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl<T> Drop for QueueRx<T> {
    /// Senders waiting for room learn that no one will make it.
    fn drop(&mut self) {
        *self.depth.queued.lock() = None;
        self.depth.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_a_count_and_room_comes_back_as_messages_are_taken() {
        let (tx, rx) = queue::<u32>(2);
        assert!(tx.try_send(1).is_ok());
        assert!(tx.try_send(2).is_ok());
        assert!(matches!(tx.try_send(3), Err(SendError::Full(3))));
        assert_eq!(rx.recv(), Some(1));
        assert!(tx.try_send(3).is_ok());
        assert_eq!(rx.try_recv().ok(), Some(2));
        assert_eq!(rx.try_recv().ok(), Some(3));
        assert!(rx.is_empty());
    }

    #[test]
    fn a_sender_waiting_for_room_wakes_when_one_is_taken_or_the_receiver_goes() {
        let (tx, rx) = queue::<u32>(1);
        assert!(tx.send(1).is_ok());
        let tx = Arc::new(tx);
        let waiter = {
            let tx = Arc::clone(&tx);
            std::thread::spawn(move || tx.send(2).is_ok())
        };
        assert_eq!(rx.recv(), Some(1));
        assert!(waiter.join().expect("join"), "room came back");
        assert_eq!(rx.recv(), Some(2));
        assert!(tx.send(3).is_ok());
        let blocked = {
            let tx = Arc::clone(&tx);
            std::thread::spawn(move || matches!(tx.send(4), Err(SendError::Disconnected(4))))
        };
        drop(rx);
        assert!(blocked.join().expect("join"), "the receiver went away");
    }
}
