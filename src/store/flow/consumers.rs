//! A flow's named consumers: poll, commit, seek, list, delete. Their offsets live in
//! the flow's consumer log (`store::consumers`); lag is computed here alone (`lag`).

use std::sync::Arc;
use std::time::Duration;

use super::{Flow, Page};
use crate::log::Offset;
use crate::store::consumers::validate_name;
use crate::store::error::StoreError;
use crate::store::limits::POLL_WAIT_MS_MAX;
use crate::store::stopped;

/// Where a seek moves a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    Earliest,
    Latest,
    Offset(Offset),
    Timestamp(i64),
}

/// A consumer with its lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerView {
    pub name: String,
    pub committed_offset: u64,
    pub lag: u64,
    pub updated_at_ms: i64,
}

/// What a poll read: a page from the consumer's committed offset, and that offset
/// (`None` for a consumer that never committed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    pub page: Page,
    pub committed: Option<u64>,
}

/// How far a consumer that will read `committed` next is behind `end`, when the flow
/// retains `first..end`: the events it has yet to read (retention may have taken some).
pub fn lag(committed: u64, first: Offset, end: Offset) -> u64 {
    end.0.saturating_sub(committed.max(first.0))
}

impl Flow {
    fn view(&self, name: String, committed: u64, updated_at_ms: i64) -> ConsumerView {
        ConsumerView {
            name,
            committed_offset: committed,
            lag: lag(committed, self.first(), self.end()),
            updated_at_ms,
        }
    }

    /// Where `name` reads next: its commit, or the earliest retained event.
    fn committed(&self, name: &str) -> Offset {
        let first = self.first();
        self.consumers
            .get(name)
            .map_or(first, |s| Offset(s.offset).max(first))
    }

    /// Events from `name`'s committed offset (a new consumer starts at the earliest
    /// retained event). With `wait_ms`, waits up to that long for an event to arrive.
    /// Nothing is committed: the caller commits what it has processed.
    /// At most `max` events and `max_bytes` of payload (at least one event). A wait
    /// ends early when `stop` turns true (shutdown): the poll then answers at once.
    pub async fn poll(
        &self,
        name: &str,
        max: usize,
        max_bytes: usize,
        wait_ms: u64,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Polled, StoreError> {
        validate_name(name)?;
        let from = self.committed(name);
        let mut rx = self.tail();
        if wait_ms > 0 && self.end() <= from && !*stop.borrow() {
            let wait = Duration::from_millis(wait_ms.min(POLL_WAIT_MS_MAX));
            let arrived = rx.wait_for(|next| *next > from);
            tokio::select! {
                _ = tokio::time::timeout(wait, arrived) => {}
                () = stopped(&mut stop) => {}
            }
        }
        let page = self.read_events(from, max, max_bytes, None)?;
        let committed = self.consumers.get(name).map(|s| s.offset);
        Ok(Polled { page, committed })
    }

    /// Durably commits `offset` (the next to read) for `name`. Beyond the end is invalid.
    /// In cluster mode a commit below the stored offset changes nothing (a late commit
    /// from another node never moves the consumer back; `seek` does that).
    pub async fn commit(&self, name: &str, offset: Offset) -> Result<ConsumerView, StoreError> {
        self.commit_to(name, offset, true).await
    }

    async fn commit_to(
        &self,
        name: &str,
        offset: Offset,
        forward_only: bool,
    ) -> Result<ConsumerView, StoreError> {
        let end = self.end();
        if offset > end {
            return Err(StoreError::Invalid(format!(
                "offset {offset} is beyond the end of the flow ({end})"
            )));
        }
        // Under `--fsync interval` or `never`, events can be acknowledged before they are
        // on disk. A commit (always synced) must never point past what a power cut would
        // leave: wait for the event log's fdatasync first.
        if offset > self.durable_end() {
            let events = Arc::clone(&self.events);
            tokio::task::spawn_blocking(move || events.sync())
                .await
                .map_err(|e| StoreError::Unavailable(format!("sync task failed: {e}")))??;
        }
        let state = self
            .consumers
            .commit(name, offset, self.clock.now_ms(), forward_only)
            .await?;
        Ok(self.view(name.to_owned(), state.offset, state.updated_at_ms))
    }

    pub async fn seek(&self, name: &str, to: SeekTo) -> Result<ConsumerView, StoreError> {
        let offset = match to {
            SeekTo::Earliest => self.first(),
            SeekTo::Latest => self.end(),
            SeekTo::Offset(o) => o,
            SeekTo::Timestamp(ts) => self.offset_at(ts)?,
        };
        self.commit_to(name, offset, false).await
    }

    /// Every consumer of the flow with its lag, by name.
    pub fn consumers(&self) -> Vec<ConsumerView> {
        self.consumers
            .list()
            .into_iter()
            .map(|(name, s)| self.view(name, s.offset, s.updated_at_ms))
            .collect()
    }

    /// Deletes consumer `name`; `false` when there was none.
    pub async fn delete_consumer(&self, name: &str) -> Result<bool, StoreError> {
        self.consumers.delete(name).await
    }
}
