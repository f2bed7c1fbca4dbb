//! Upkeep across every open flow: retention, consumer-log compaction, analytics
//! catch-up and checkpoints, request-log hand-over, shutdown sync. Each flow's steps
//! are isolated: one flow's failure is logged and counted, and the others still run.

use std::sync::Arc;

use crate::store::error::StoreError;
use crate::store::{Flow, Store};

impl Store {
    /// Every open flow, in no order, copied out so no lock is held while each one works.
    pub fn open_flows(&self) -> Vec<Arc<Flow>> {
        self.inner.flows.read().values().cloned().collect()
    }

    /// Periodic work: retention, consumer-log compaction, analytics checkpoints, and
    /// deleting the files of deleted flows. Blocking: run it off the async executor.
    /// Each flow's steps are isolated: a failure is logged and counted, and the other
    /// flows (and that flow's other steps) still run. Returns the first failure. Once
    /// `stop_background_work` is called the pass ends after its current flow.
    pub fn maintenance(&self) -> Result<(), StoreError> {
        let mut first = Ok(());
        for flow in self.open_flows() {
            if self.stopping() {
                break;
            }
            let steps = [
                ("retention", flow.apply_retention()),
                ("consumer compaction", flow.compact_consumers()),
                ("analytics checkpoint", flow.checkpoint_analytics()),
            ];
            for (step, result) in steps {
                if let Err(e) = result {
                    tracing::warn!(flow = %flow.id(), step, error = %e, "upkeep step failed");
                    first = first.and(Err(e));
                }
            }
        }
        first.and(self.remove_deleted_flows())
    }

    /// Brings every flow's analytics up to date. Run it often (every second): each run
    /// then reads only the last moments' records, instead of one long burst of CPU.
    /// A flow that fails is logged and skipped; the others still run.
    pub fn catch_up_analytics(&self) -> Result<(), StoreError> {
        let mut first = Ok(());
        for flow in self.open_flows() {
            if self.stopping() {
                break;
            }
            if let Err(e) = flow.catch_up_analytics() {
                tracing::debug!(flow = %flow.id(), error = %e, "analytics catch-up failed");
                first = first.and(Err(e));
            }
        }
        first
    }

    /// Hands every flow's buffered request-log entries to its writer (see
    /// `Flow::flush_requests`). Non-blocking.
    pub fn flush_request_logs(&self) {
        for flow in self.open_flows() {
            if let Err(e) = flow.flush_requests() {
                tracing::warn!(flow = %flow.id(), error = %e, "request log entries dropped");
            }
        }
    }

    /// Syncs every flow and writes the analytics checkpoints (graceful shutdown). Every
    /// flow it can sync is synced, whatever failed before; the first error is returned.
    pub fn sync_all(&self) -> Result<(), StoreError> {
        let mut first = Ok(());
        for flow in self.open_flows() {
            let result = flow.sync().and(flow.checkpoint_analytics());
            if let Err(e) = result {
                tracing::warn!(flow = %flow.id(), error = %e, "flow could not be synced at shutdown");
                first = first.and(Err(e));
            }
        }
        first
    }

    /// The logs of open flows that refuse appends: (flow id, log, why).
    pub fn poisoned_logs(&self) -> Vec<(String, &'static str, String)> {
        let mut out = Vec::new();
        for flow in self.open_flows() {
            for (log, reason) in flow.health().refusing {
                out.push((flow.id().to_owned(), log, reason));
            }
        }
        out.sort();
        out
    }
}
