//! A flow's request log: every attempt's outcome, buffered and handed to the request
//! log's writer in batches (the request never waits on it), unauthenticated floods
//! counted per reason and second, and read back newest first.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Flow;
use crate::log::{Offset, RecordInput};
use crate::store::error::StoreError;
use crate::store::limits::{REQUEST_LOG_BATCH_MAX, REQUEST_LOG_READ_MAX};
use crate::store::requests::RequestEntry;

impl Flow {
    /// Queues one request-log entry for the request log's writer and returns at once
    /// (the request never waits on it). Readers of the request log (`recent_requests`,
    /// analytics) first pass a barrier, so they see every entry queued before them. A
    /// `kill -9` can lose the entries still queued (at most the last moments' attempts);
    /// `/metrics` counts them all.
    pub fn record_request(&self, entry: &RequestEntry) -> Result<(), StoreError> {
        let record = entry.to_record_at(self.clock.now_ms())?;
        let mut buf = self.request_buf.lock();
        buf.push(record);
        self.requests_pending.store(true, Ordering::Release);
        if buf.len() >= REQUEST_LOG_BATCH_MAX {
            self.hand_over_requests(&mut buf)?;
        }
        Ok(())
    }

    /// Records the rejection of an unauthenticated attempt: the first of its reason in
    /// a second of the store clock as any entry, the rest of that second as one counted
    /// entry written once the second is over or a reader looks (`RejectionTally`).
    pub fn record_unauthenticated(&self, entry: RequestEntry) -> Result<(), StoreError> {
        let mut tally = self.rejections.lock();
        for closed in tally.add(entry, self.clock.now_ms()) {
            self.record_request(&closed)?;
        }
        self.requests_pending.store(true, Ordering::Release);
        Ok(())
    }

    /// Hands the buffered request-log entries, and the counts of rejections of seconds
    /// that are over, to the writer. The server calls it every `REQUEST_LOG_FLUSH_PERIOD`.
    /// A flow with nothing buffered and no count open returns at once (the server has
    /// every flow's called four times a second).
    pub fn flush_requests(&self) -> Result<(), StoreError> {
        if !self.requests_pending.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        self.flush_requests_upto(Some(self.clock.now_ms()))
    }

    /// As `flush_requests`, with every count still open: readers of the request log and
    /// shutdown call it, so they see every attempt answered before them.
    pub(super) fn flush_all_requests(&self) -> Result<(), StoreError> {
        self.flush_requests_upto(None)
    }

    fn flush_requests_upto(&self, now_ms: Option<i64>) -> Result<(), StoreError> {
        let mut tally = self.rejections.lock();
        let mut buf = self.request_buf.lock();
        let at_ms = self.clock.now_ms();
        for closed in tally.take(now_ms) {
            buf.push(closed.to_record_at(at_ms)?);
        }
        if !tally.is_empty() {
            // A count still open is written once its second is over: flush again then.
            self.requests_pending.store(true, Ordering::Release);
        }
        self.hand_over_requests(&mut buf)
    }

    fn hand_over_requests(&self, buf: &mut Vec<RecordInput>) -> Result<(), StoreError> {
        if buf.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(buf);
        // Queued under the buffer's lock, so entries keep their order. The answer is
        // not awaited: dropping it is fine, the writer still writes.
        drop(self.requests.submit(batch)?);
        Ok(())
    }

    /// The newest `limit` request-log entries, newest first, with their times.
    pub async fn recent_requests(
        &self,
        limit: usize,
    ) -> Result<Vec<(i64, RequestEntry)>, StoreError> {
        self.flush_all_requests()?;
        // Off the executor: the barrier waits on the writer, and a shared request log
        // (cluster mode) asks for the end the other nodes reached.
        let requests = Arc::clone(&self.requests);
        tokio::task::spawn_blocking(move || {
            requests.barrier()?;
            if requests.shared() {
                requests.refresh_end()?;
            }
            Ok::<(), crate::store::partition::PartitionError>(())
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("the request log's reader stopped: {e}")))??;
        let limit = limit.clamp(1, REQUEST_LOG_READ_MAX);
        let next = self.requests.next_offset().0;
        let from = next
            .saturating_sub(limit as u64)
            .max(self.requests.first_offset().0);
        let mut out: Vec<(i64, RequestEntry)> = self
            .requests
            .read(Offset(from), limit, usize::MAX)?
            .iter()
            .filter_map(|r| RequestEntry::decode(r).map(|e| (RequestEntry::recorded_ms(r), e)))
            .collect();
        out.reverse();
        Ok(out)
    }
}
