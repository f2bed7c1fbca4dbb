//! Named consumers of one flow and their committed offsets (the next offset to read,
//! as in Kafka).
//!
//! Kept in a small log of their own (`<flow>/consumers/`), one record per commit, seek
//! or delete, appended with fdatasync before the call returns. Open replays it. When it
//! grows past `CONSUMER_LOG_COMPACT_BYTES`, the current state is written as one batch in a
//! fresh segment and the older segments are deleted (compaction by snapshot).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::log::storage::Storage;
use crate::log::{FsyncPolicy, Log, LogConfig, Offset, RecordInput};
use crate::store::error::StoreError;
use crate::store::limits::{CONSUMERS_PER_FLOW_MAX, CONSUMER_NAME_BYTES_MAX};

/// The consumer log is compacted once it is larger than this.
pub const CONSUMER_LOG_COMPACT_BYTES: u64 = 4 * 1024 * 1024;
const CONSUMER_LOG_SEGMENT_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerState {
    /// The next offset to read.
    pub offset: u64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum ConsumerOp {
    Commit {
        name: String,
        offset: u64,
        at_ms: i64,
    },
    Delete {
        name: String,
    },
}

fn encode(op: &ConsumerOp) -> Result<RecordInput, StoreError> {
    let bytes = bincode::serde::encode_to_vec(op, bincode::config::standard())
        .map_err(|e| StoreError::Invalid(format!("cannot encode consumer op: {e}")))?;
    Ok(RecordInput::new(Bytes::from(bytes)))
}

pub fn validate_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= CONSUMER_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "a consumer name is 1 to {CONSUMER_NAME_BYTES_MAX} letters, digits, '.', '_' or '-'"
        )))
    }
}

/// Cluster mode: the offsets live in the shared store, this node keeps a copy of what
/// it last read (answered when the shared store cannot be reached).
#[derive(Debug)]
pub struct SharedConsumers {
    pub offsets: Arc<dyn crate::store::registry::SharedOffsets>,
    pub flow: String,
}

#[derive(Debug)]
pub struct Consumers {
    log: Log,
    shared: Option<SharedConsumers>,
    /// Each consumer's state and the offset (in this consumer log) of the op that set it,
    /// so concurrent commits settle in log order, as a replay would.
    state: Mutex<BTreeMap<String, (ConsumerState, u64)>>,
    /// Commits share it; compaction takes it alone.
    compaction: tokio::sync::RwLock<()>,
}

impl Consumers {
    /// The consumer log's configuration: every commit is fdatasynced before it is
    /// answered, whatever `--fsync` says.
    pub fn log_config(base: &LogConfig) -> LogConfig {
        LogConfig {
            segment_bytes: CONSUMER_LOG_SEGMENT_BYTES,
            segment_age: None,
            fsync: FsyncPolicy::Always,
            ..base.clone()
        }
    }

    /// Opens the consumer log in `dir` with `config` (`log_config`); with `create`,
    /// makes it (a new flow), else it must exist.
    pub fn open(
        dir: &Path,
        storage: Arc<dyn Storage>,
        config: LogConfig,
        create: bool,
        shared: Option<SharedConsumers>,
    ) -> Result<Self, StoreError> {
        let log = match create {
            true => Log::open_with(dir, config, storage)?,
            false => Log::open_existing_with(dir, config, storage)?,
        };
        let mut state = BTreeMap::new();
        for record in log.iter_from(log.first_offset()) {
            let record = record?;
            let (op, _): (ConsumerOp, usize) =
                bincode::serde::decode_from_slice(&record.payload, bincode::config::standard())
                    .map_err(|e| StoreError::Damaged {
                        path: dir.display().to_string(),
                        message: format!("consumer record {}: {e}", record.offset),
                    })?;
            match op {
                ConsumerOp::Commit {
                    name,
                    offset,
                    at_ms,
                } => {
                    let s = ConsumerState {
                        offset,
                        updated_at_ms: at_ms,
                    };
                    state.insert(name, (s, record.offset.0));
                }
                ConsumerOp::Delete { name } => {
                    state.remove(&name);
                }
            }
        }
        Ok(Self {
            log,
            shared,
            state: Mutex::new(state),
            compaction: tokio::sync::RwLock::new(()),
        })
    }

    /// Every consumer with its state.
    pub fn list(&self) -> Vec<(String, ConsumerState)> {
        if let Some(shared) = &self.shared {
            match shared.offsets.list(&shared.flow) {
                Ok(all) => {
                    let mut state = self.state.lock();
                    state.clear();
                    state.extend(all.iter().map(|(n, s)| (n.clone(), (*s, 0))));
                }
                Err(e) => {
                    tracing::warn!(flow = %shared.flow, error = %e, "consumer offsets: the cluster did not answer; this node's last copy is shown");
                }
            }
        }
        self.state
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.0))
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<ConsumerState> {
        if let Some(shared) = &self.shared {
            match shared.offsets.get(&shared.flow, name) {
                Ok(Some(s)) => {
                    self.state.lock().insert(name.to_owned(), (s, 0));
                }
                Ok(None) => {
                    self.state.lock().remove(name);
                }
                Err(e) => {
                    tracing::warn!(flow = %shared.flow, consumer = name, error = %e, "consumer offsets: the cluster did not answer; reading from this node's last copy (events may come again)");
                }
            }
        }
        self.state.lock().get(name).map(|v| v.0)
    }

    /// Durably sets `name`'s committed offset (the caller has checked the range). With
    /// `forward_only` (a commit, not a seek) in cluster mode, an offset below the stored
    /// one changes nothing (commits from several nodes never move a consumer back); on
    /// a single node every commit is kept as given.
    pub async fn commit(
        &self,
        name: &str,
        offset: Offset,
        at_ms: i64,
        forward_only: bool,
    ) -> Result<ConsumerState, StoreError> {
        validate_name(name)?;
        if let Some(shared) = &self.shared {
            let new = ConsumerState {
                offset: offset.0,
                updated_at_ms: at_ms,
            };
            let stored = shared
                .offsets
                .commit(&shared.flow, name, new, forward_only)?;
            self.state.lock().insert(name.to_owned(), (stored, 0));
            return Ok(stored);
        }
        {
            let state = self.state.lock();
            if !state.contains_key(name) && state.len() >= CONSUMERS_PER_FLOW_MAX {
                return Err(StoreError::Limit(format!(
                    "a flow has at most {CONSUMERS_PER_FLOW_MAX} consumers"
                )));
            }
        }
        let op = ConsumerOp::Commit {
            name: name.to_owned(),
            offset: offset.0,
            at_ms,
        };
        let _shared = self.compaction.read().await;
        let at = self.log.try_submit(vec![encode(&op)?])?.await?.first.0;
        let new = ConsumerState {
            offset: offset.0,
            updated_at_ms: at_ms,
        };
        let mut state = self.state.lock();
        let entry = state.entry(name.to_owned()).or_insert((new, at));
        if entry.1 <= at {
            *entry = (new, at);
        }
        Ok(entry.0)
    }

    /// Durably forgets `name`. `false` if it did not exist.
    pub async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        if let Some(shared) = &self.shared {
            self.state.lock().remove(name);
            return Ok(shared.offsets.delete(&shared.flow, name)?);
        }
        if !self.state.lock().contains_key(name) {
            return Ok(false);
        }
        let op = ConsumerOp::Delete {
            name: name.to_owned(),
        };
        let _shared = self.compaction.read().await;
        let at = self.log.try_submit(vec![encode(&op)?])?.await?.first.0;
        let mut state = self.state.lock();
        let removed = state.get(name).is_some_and(|v| v.1 < at);
        if removed {
            state.remove(name);
        }
        Ok(removed)
    }

    /// Rewrites the state as one batch in a fresh segment and drops older segments,
    /// once the log has grown past `CONSUMER_LOG_COMPACT_BYTES`. Blocks commits while it
    /// runs; call it from a blocking context.
    pub fn compact_if_large(&self) -> Result<bool, StoreError> {
        if self.log.stats().bytes <= CONSUMER_LOG_COMPACT_BYTES {
            return Ok(false);
        }
        let _exclusive = self.compaction.blocking_write();
        let snapshot: Vec<RecordInput> = {
            let state = self.state.lock();
            state
                .iter()
                .map(|(name, (s, _))| {
                    encode(&ConsumerOp::Commit {
                        name: name.clone(),
                        offset: s.offset,
                        at_ms: s.updated_at_ms,
                    })
                })
                .collect::<Result<_, _>>()?
        };
        self.log.roll()?;
        let snapshot_start = self.log.next_offset();
        for chunk in snapshot.chunks(crate::log::limits::APPEND_BATCH_RECORDS_MAX) {
            self.log.append_batch(chunk.to_vec())?;
        }
        self.log.roll()?;
        // The snapshot supersedes every segment before it.
        self.log.delete_before(snapshot_start)?;
        Ok(true)
    }

    /// Moves every consumer committed past `end` back to `end`, durably (blocking). A
    /// commit is never answered past the event log's end, but `eventmesh repair` can cut
    /// the log below one: the consumer then reads the events appended from the new end
    /// on, and skips none. Returns how many consumers moved.
    pub fn reset_past(&self, end: Offset, now_ms: i64) -> Result<usize, StoreError> {
        let past: Vec<String> = self
            .state
            .lock()
            .iter()
            .filter(|(_, (s, _))| s.offset > end.0)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &past {
            let op = ConsumerOp::Commit {
                name: name.clone(),
                offset: end.0,
                at_ms: now_ms,
            };
            let at = self.log.append(encode(&op)?)?.first.0;
            let state = ConsumerState {
                offset: end.0,
                updated_at_ms: now_ms,
            };
            self.state.lock().insert(name.clone(), (state, at));
        }
        Ok(past.len())
    }

    /// Why the consumer log refuses commits, if it does.
    pub fn poisoned(&self) -> Option<crate::log::LogError> {
        self.log.poisoned()
    }

    /// fdatasync of the consumer log (its commits are synced already; this reports a
    /// poisoned log at shutdown).
    pub fn sync(&self) -> Result<(), StoreError> {
        Ok(self.log.sync()?)
    }

    pub fn close(self) -> Result<(), StoreError> {
        Ok(self.log.close()?)
    }
}
