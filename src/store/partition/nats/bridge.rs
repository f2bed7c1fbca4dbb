//! The NATS backend's own small runtime, and the one way sync code waits on it.
//!
//! `Partition`'s reads are plain calls while every JetStream call is a network round
//! trip. The client's connection task and every request run on this runtime; a sync
//! caller spawns its future here and waits on a channel (inside `block_in_place` on a
//! multi-thread runtime, so its executor keeps its other tasks). Nothing ever waits
//! *on* this runtime's own threads, so a wait cannot deadlock it.

use std::future::Future;
use std::sync::Arc;

use super::NATS_RUNTIME_THREADS;
use crate::store::partition::PartitionError;

/// A handle to the NATS runtime; clones share it. The runtime stops when the last
/// handle is dropped.
#[derive(Debug, Clone)]
pub struct Bridge {
    handle: tokio::runtime::Handle,
    _runtime: Arc<Owned>,
}

/// The runtime, shut down without blocking when the last handle goes (a drop inside
/// an async context may not block).
#[derive(Debug)]
struct Owned(Option<tokio::runtime::Runtime>);

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Bridge {
    pub fn new() -> Result<Self, PartitionError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(NATS_RUNTIME_THREADS)
            .max_blocking_threads(1)
            .thread_name("eventmesh-nats")
            .enable_all()
            .build()
            .map_err(|e| PartitionError::Failed(Arc::new(e)))?;
        Ok(Self {
            handle: runtime.handle().clone(),
            _runtime: Arc::new(Owned(Some(runtime))),
        })
    }

    /// Runs `future` on the NATS runtime (a task that outlives the caller's).
    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// Runs `future` on the NATS runtime and waits for it from sync code, wherever
    /// that code runs (a plain thread, or a task of any runtime).
    pub fn wait<T, F>(&self, future: F) -> Result<T, PartitionError>
    where
        F: Future<Output = Result<T, PartitionError>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(future.await);
        });
        let recv = move || rx.recv();
        let got = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(recv)
            }
            _ => recv(),
        };
        got.unwrap_or_else(|_| {
            Err(PartitionError::Unreachable(
                "the NATS runtime stopped before answering".into(),
            ))
        })
    }
}
