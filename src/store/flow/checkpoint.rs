//! A flow's derived state: the idempotency index and the analytics aggregate. Both are
//! rebuilt from the logs and may be saved as a checkpoint file to skip that work on the
//! next open. The log is the truth: a checkpoint that is damaged, or claims more than
//! the log holds, is ignored.
//!
//! One checkpoint file format for both: the CRC-32 (crc32fast) of the body (u32 LE), then the body,
//! bincode 2 (standard config) of the state. Written whole with `write_atomic`.

use std::collections::HashMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{now_s, Flow};
use crate::log::storage::{read_to_vec, write_atomic, Storage};
use crate::log::Offset;
use crate::store::analytics::{Aggregator, Report, Window};
use crate::store::dedup::{key_hash, DedupEntry, DedupIndex, KeyHash};
use crate::store::error::StoreError;
use crate::store::event::{record_body_hash, record_type};
use crate::store::limits::DEDUP_KEYS_PER_FLOW_MAX;
use crate::store::partition::Partition;
use crate::store::requests::RequestEntry;

const ANALYTICS_FILE: &str = "analytics.ckpt";
const DEDUP_FILE: &str = "dedup.ckpt";

/// Writes `state` to `path` as a checkpoint (CRC + bincode), atomically.
fn save<T: Serialize>(storage: &dyn Storage, path: &Path, state: &T) -> Result<(), StoreError> {
    let body = bincode::serde::encode_to_vec(state, bincode::config::standard())
        .map_err(|e| StoreError::Invalid(format!("cannot encode {}: {e}", path.display())))?;
    let mut bytes = crc32fast::hash(&body).to_le_bytes().to_vec();
    bytes.extend_from_slice(&body);
    write_atomic(storage, path, &bytes).map_err(|e| StoreError::io("write", path, e))
}

/// The checkpoint at `path`, if it is there, whole and decodable.
fn load<T: DeserializeOwned>(storage: &dyn Storage, path: &Path) -> Option<T> {
    let bytes = read_to_vec(storage, path).ok()?;
    let (crc, body) = bytes.split_at_checked(4)?;
    if crc32fast::hash(body).to_le_bytes() != crc {
        return None;
    }
    bincode::serde::decode_from_slice::<T, _>(body, bincode::config::standard())
        .ok()
        .map(|(state, _)| state)
}

/// The idempotency index as saved at a graceful shutdown: every key and the offset up
/// to which the log had been read into it.
#[derive(serde::Serialize, serde::Deserialize)]
struct DedupCheckpoint {
    covered: u64,
    entries: Vec<([u8; 16], u64, u32, u32)>,
}

/// Rebuilds the idempotency index on open: from the checkpoint of the last graceful
/// shutdown when there is a sound one (it keeps keys whose events retention has since
/// deleted), then from the keys in the log after what it covers. Also returns the
/// checkpoint's offset when it covers the whole log (the index is then as saved).
pub(super) fn rebuild_dedup(
    storage: &dyn Storage,
    dir: &Path,
    events: &dyn Partition,
    window_s: u64,
    now_ms: i64,
) -> Result<(DedupIndex, Option<u64>), StoreError> {
    let end = events.next_offset().0;
    let checkpoint =
        load::<DedupCheckpoint>(storage, &dir.join(DEDUP_FILE)).filter(|c| c.covered <= end);
    let Some(checkpoint) = checkpoint else {
        // An empty log with no checkpoint needs none: the next open finds it as now.
        let saved = (end == 0).then_some(0);
        return Ok((
            rebuild_dedup_from(events, window_s, now_ms, Offset(0))?,
            saved,
        ));
    };
    let saved = (checkpoint.covered == end).then_some(end);
    let mut entries = checkpoint.entries;
    entries.sort_by_key(|e| (e.3, e.1));
    let mut index = DedupIndex::new(window_s, DEDUP_KEYS_PER_FLOW_MAX);
    for (key, offset, body_hash, time_s) in entries {
        index.insert(
            key,
            DedupEntry {
                offset,
                body_hash,
                time_s,
            },
        );
    }
    index.expire(now_s(now_ms));
    add_keys_from(
        &mut index,
        events,
        window_s,
        now_ms,
        Offset(checkpoint.covered),
    )?;
    Ok((index, saved))
}

/// Rebuilds the idempotency index from the keys of the records in the window (and at or
/// after `not_before`).
fn rebuild_dedup_from(
    events: &dyn Partition,
    window_s: u64,
    now_ms: i64,
    not_before: Offset,
) -> Result<DedupIndex, StoreError> {
    let mut index = DedupIndex::new(window_s, DEDUP_KEYS_PER_FLOW_MAX);
    add_keys_from(&mut index, events, window_s, now_ms, not_before)?;
    Ok(index)
}

fn add_keys_from(
    index: &mut DedupIndex,
    events: &dyn Partition,
    window_s: u64,
    now_ms: i64,
    not_before: Offset,
) -> Result<(), StoreError> {
    let window_ms = i64::try_from(window_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let from = events
        .offset_for_timestamp(now_ms.saturating_sub(window_ms))?
        .max(not_before)
        .max(events.first_offset());
    for record in events.scan_from(from) {
        add_key(index, &record?);
    }
    Ok(())
}

/// Adds a stored record's idempotency key (if it has one) to the index.
fn add_key(index: &mut DedupIndex, record: &crate::log::Record) {
    if let Some(key) = &record.key {
        let key = String::from_utf8_lossy(key);
        index.insert(
            key_hash(&key),
            DedupEntry {
                offset: record.offset.0,
                body_hash: record_body_hash(record),
                time_s: u32::try_from(now_s(record.timestamp_ms)).unwrap_or(u32::MAX),
            },
        );
    }
}

/// Loads the analytics checkpoint if it is whole and not ahead of the logs (a log
/// that lost its tail); otherwise starts empty and the first catch-up rescans.
pub(super) fn load_analytics(
    storage: &dyn Storage,
    dir: &Path,
    events: &dyn Partition,
    requests_end: Offset,
) -> Aggregator {
    match load::<Aggregator>(storage, &dir.join(ANALYTICS_FILE)).map(Aggregator::restore) {
        Some(mut a)
            if a.requests_next <= requests_end.0 && a.events_next <= events.next_offset().0 =>
        {
            a.saved = Some((a.requests_next, a.events_next));
            a
        }
        // Empty logs (a new flow) need no checkpoint: the next open starts as empty.
        _ if requests_end.0 == 0 && events.next_offset().0 == 0 => {
            let mut empty = Aggregator::default();
            empty.saved = Some((0, 0));
            empty
        }
        _ => Aggregator::default(),
    }
}

impl Flow {
    /// Changes the dedup window (a patch); the index keeps its entries.
    pub(super) fn set_dedup_window(&self, window_s: u64) {
        if self.dedup.lock().index.window_s() == i64::try_from(window_s).unwrap_or(i64::MAX) {
            return;
        }
        // Read the log's keys for the new window without holding the ingest lock (a
        // full-window scan can take seconds), then merge in what memory holds now: keys
        // stored during the scan, and keys whose events retention already deleted.
        let now_ms = self.clock.now_ms();
        let scanned = rebuild_dedup_from(&*self.events, window_s, now_ms, Offset(0));
        let mut st = self.dedup.lock();
        let mut all: HashMap<KeyHash, DedupEntry> = match &scanned {
            Ok(ix) => ix.entries().map(|(k, e)| (*k, *e)).collect(),
            Err(e) => {
                tracing::warn!(flow = %self.id, error = %e, "dedup rebuild for a new window failed; keeping the keys in memory");
                HashMap::new()
            }
        };
        for (k, e) in st.index.entries() {
            all.entry(*k).or_insert(*e);
        }
        let mut entries: Vec<(KeyHash, DedupEntry)> = all.into_iter().collect();
        entries.sort_by_key(|(_, e)| (e.time_s, e.offset));
        let mut fresh = DedupIndex::new(window_s, DEDUP_KEYS_PER_FLOW_MAX);
        for (k, e) in entries {
            fresh.insert(k, e);
        }
        fresh.expire(now_s(now_ms));
        st.index = fresh;
        st.saved_covered = None;
    }

    /// Saves the idempotency index with the offset it covers. Call it only when no
    /// append is in flight (graceful shutdown). Skipped when the saved checkpoint
    /// already covers the log's end and the window did not change since: an idle flow
    /// writes nothing (a stop with 100,000 flows is not 100,000 atomic writes).
    pub(super) fn checkpoint_dedup(&self) -> Result<(), StoreError> {
        let end = self.events.next_offset().0;
        let checkpoint = {
            let st = self.dedup.lock();
            // A shared partition may hold other nodes' records the index has not read.
            let covered = match self.events.shared() {
                true => end.min(st.seen),
                false => end,
            };
            if st.saved_covered == Some(covered) {
                return Ok(());
            }
            DedupCheckpoint {
                covered,
                entries: st
                    .index
                    .entries()
                    .map(|(k, e)| (*k, e.offset, e.body_hash, e.time_s))
                    .collect(),
            }
        };
        save(&*self.storage, &self.dir.join(DEDUP_FILE), &checkpoint)?;
        self.dedup.lock().saved_covered = Some(checkpoint.covered);
        Ok(())
    }

    /// Reads the records other writers appended to a shared partition (cluster mode)
    /// since the index last looked, up to `Partition::others_end`, and adds their
    /// keys: the flow's own dedup window then holds across nodes. Nothing to do for a
    /// partition only this node writes.
    pub(super) fn catch_up_dedup(&self) -> Result<(), StoreError> {
        if !self.events.shared() {
            return Ok(());
        }
        // One catch-up at a time: the calls waiting behind it find it done, instead of
        // each reading the same records again.
        let _one = self.catching_up.lock();
        let from = self.dedup.lock().seen;
        // Only up to what other nodes may have written: this node's own appends are
        // in the index already (reading them back cost a round trip per ingest).
        let end = self.events.others_end().0;
        if from >= end {
            return Ok(());
        }
        let mut records = Vec::new();
        for record in self.events.scan_from(Offset(from)) {
            let record = record?;
            if record.offset.0 >= end {
                break;
            }
            records.push(record);
        }
        let mut st = self.dedup.lock();
        for record in &records {
            add_key(&mut st.index, record);
        }
        let read_to = records.last().map_or(from, |r| r.offset.0 + 1);
        st.note_read(read_to);
        st.index.expire(now_s(self.clock.now_ms()));
        Ok(())
    }

    /// Reads both logs up to their ends into the aggregator, then reports `window`.
    /// Read-your-writes: every request-log entry recorded before the call is counted.
    pub fn analytics(&self, window: Window) -> Result<Report, StoreError> {
        let mut agg = self.analytics.lock();
        self.flush_all_requests()?;
        self.requests.barrier()?;
        // Shared logs (cluster mode): count what every node appended up to now.
        for log in [&self.requests, &self.events] {
            if log.shared() {
                log.refresh_end()?;
            }
        }
        self.catch_up(&mut agg)?;
        Ok(agg.report(window, self.clock.now_ms()))
    }

    /// Reads what both logs have published past the aggregator's offsets. Nothing new
    /// (an idle flow): returns at once, without a scan.
    fn catch_up(&self, agg: &mut Aggregator) -> Result<(), StoreError> {
        if self.requests.next_offset().0 <= agg.requests_next
            && self.events.next_offset().0 <= agg.events_next
        {
            return Ok(());
        }
        let from = Offset(agg.requests_next.max(self.requests.first_offset().0));
        for record in self.requests.scan_from(from) {
            let record = record?;
            if let Some(entry) = RequestEntry::decode(&record) {
                agg.add_request(RequestEntry::recorded_ms(&record), &entry);
            }
            agg.requests_next = record.offset.0 + 1;
        }
        let from = Offset(agg.events_next.max(self.events.first_offset().0));
        for record in self.events.scan_from(from) {
            let record = record?;
            agg.add_event(record.timestamp_ms, &record_type(&record));
            agg.events_next = record.offset.0 + 1;
        }
        agg.prune(self.clock.now_ms());
        Ok(())
    }

    /// Reads both logs up to their ends into the aggregator (small when done often).
    pub fn catch_up_analytics(&self) -> Result<(), StoreError> {
        let mut agg = self.analytics.lock();
        self.catch_up(&mut agg)
    }

    /// Catches analytics up and writes its checkpoint (state and offsets together),
    /// unless the saved one already holds every record read (an idle flow).
    pub fn checkpoint_analytics(&self) -> Result<(), StoreError> {
        let mut agg = self.analytics.lock();
        self.catch_up(&mut agg)?;
        let read = (agg.requests_next, agg.events_next);
        if agg.saved == Some(read) {
            return Ok(());
        }
        save(&*self.storage, &self.dir.join(ANALYTICS_FILE), &*agg)?;
        agg.saved = Some(read);
        Ok(())
    }
}
