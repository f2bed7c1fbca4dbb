//! Opening flows on demand (`FlowOpening::OnDemand`): at start only the flow files are
//! read; a flow's logs (and its idempotency index and analytics) open on its first use,
//! and `open_pending` opens the rest in the background. Start-up then costs a small
//! file per flow, not a recovery per flow.
//!
//! A request for a flow that is still opening waits for that flow alone: each opening
//! holds its own lock, so other flows, open or opening, are never held up. A flow that
//! fails to open is quarantined then, as at start.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::store::partition::PartitionError;
use crate::store::{in_parallel, log_quarantined, open_flow, Flow, Store, StoreError};

impl Store {
    /// The open flow `id`, opening it first if it is not yet (blocking, for that flow
    /// alone). `None` if there is no such flow, or it is quarantined (now or on this
    /// opening: `flow_unavailable` says why).
    pub fn flow(&self, id: &str) -> Option<Arc<Flow>> {
        if let Some(flow) = self.inner.flows.read().get(id) {
            return Some(Arc::clone(flow));
        }
        if !self.inner.records.read().contains_key(id) || self.quarantined(id) {
            return None;
        }
        blocking(|| self.open_on_demand(id))
    }

    /// Opens flow `id`, or waits for the request that is opening it.
    fn open_on_demand(&self, id: &str) -> Option<Arc<Flow>> {
        let gate = Arc::clone(self.inner.opening.lock().entry(id.to_owned()).or_default());
        let opened = {
            let _opener = gate.lock();
            self.open_once(id)
        };
        let mut opening = self.inner.opening.lock();
        if opening.get(id).is_some_and(|g| Arc::ptr_eq(g, &gate)) {
            opening.remove(id);
        }
        opened
    }

    /// With the flow's gate held: whoever held it first has opened (or quarantined) it.
    fn open_once(&self, id: &str) -> Option<Arc<Flow>> {
        if let Some(flow) = self.inner.flows.read().get(id) {
            return Some(Arc::clone(flow));
        }
        if self.quarantined(id) {
            return None;
        }
        let record = self.inner.records.read().get(id).cloned()?;
        let started = Instant::now();
        let inner = &self.inner;
        // A panic while opening one flow quarantines it, as at start; it never takes
        // the opener (or the request) down with it.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            open_flow(
                &inner.config,
                &inner.log_config,
                &*inner.partitions,
                &record,
                false,
            )
        }))
        .unwrap_or_else(|_| {
            Err(StoreError::Invalid(
                "opening the flow panicked (a bug): it is quarantined until restart".into(),
            ))
        });
        // Locks in the store's one order: records, then flows, then unavailable. The
        // records lock is held across the adoption, so a deletion (which removes the
        // record first) either sees the flow adopted or keeps it out.
        let records = inner.records.read();
        match opened {
            Ok(flow) => {
                // Deleted while it opened: it is not adopted (its files go once dropped).
                if !records.contains_key(id) {
                    return None;
                }
                let flow = Arc::new(flow);
                inner.flows.write().insert(id.to_owned(), Arc::clone(&flow));
                if inner.unavailable_for_now.lock().remove(id) {
                    inner.unavailable.write().remove(id);
                    tracing::info!(flow = %id, "flow opened after its backend answered again");
                }
                tracing::debug!(flow = %id, micros = started.elapsed().as_micros() as u64, "flow opened");
                Some(flow)
            }
            Err(e) => {
                let for_now = matches!(
                    e,
                    StoreError::Partition(PartitionError::Unreachable(_)) | StoreError::Overloaded
                );
                match for_now {
                    true => tracing::warn!(flow = %id, error = %e,
                        "the flow's backend did not answer: it opens again on its next use"),
                    false => log_quarantined(id, &e.to_string()),
                }
                if records.contains_key(id) {
                    let reason = match for_now {
                        true => format!("{e} (opened again on the next request)"),
                        false => e.to_string(),
                    };
                    inner.unavailable.write().insert(id.to_owned(), reason);
                    let mut for_now_set = inner.unavailable_for_now.lock();
                    match for_now {
                        true => for_now_set.insert(id.to_owned()),
                        false => for_now_set.remove(id),
                    };
                }
                None
            }
        }
    }

    /// Whether flow `id` stays quarantined: it failed to open, and not just because
    /// its backend did not answer for a while (`unavailable_for_now`).
    fn quarantined(&self, id: &str) -> bool {
        // One lock at a time.
        let listed = self.inner.unavailable.read().contains_key(id);
        listed && !self.inner.unavailable_for_now.lock().contains(id)
    }

    /// Opens flows not opened yet, in id order, until `deadline` passes or none is
    /// left; returns how many are left. The background opener's step (blocking).
    pub fn open_pending(&self, deadline: Instant) -> usize {
        loop {
            if self.stopping() {
                return self.inner.unopened.lock().len();
            }
            let next = self.inner.unopened.lock().pop_front();
            let Some(id) = next else { return 0 };
            // Opened on demand, deleted or quarantined since: `flow` skips it.
            let _ = self.flow(&id);
            if Instant::now() >= deadline {
                return self.inner.unopened.lock().len();
            }
        }
    }

    /// Opens every flow not open yet, on `OPEN_THREADS` threads, before returning
    /// (`FlowOpening::AtStart`): a damaged flow is quarantined by then.
    pub(super) fn open_all_now(&self) {
        let ids: Vec<String> = self.inner.unopened.lock().drain(..).collect();
        in_parallel(&ids, |id| drop(self.flow(id)));
    }

    /// Stops the background work (shutdown): `open_pending` opens no more flows and
    /// a slice under way ends after the flow it is opening; an upkeep pass
    /// (`maintenance`, `catch_up_analytics`) under way ends after its current flow.
    /// Flows still open on first use.
    pub fn stop_background_work(&self) {
        self.inner.stopping.store(true, Ordering::Release);
    }

    /// Whether `stop_background_work` was called.
    pub fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Acquire)
    }

    /// Flows with settings whose logs are neither open nor quarantined: they open on
    /// first use or when the background opener reaches them.
    pub fn flows_not_open(&self) -> usize {
        let records = self.inner.records.read();
        let open = self.inner.flows.read().len();
        let quarantined = self
            .inner
            .unavailable
            .read()
            .keys()
            .filter(|id| records.contains_key(*id))
            .count();
        records.len().saturating_sub(open + quarantined)
    }
}

/// Runs `f`, which blocks, telling the async runtime first when called on one of its
/// worker threads (so the worker's other tasks move to another thread meanwhile).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
