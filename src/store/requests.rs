//! The request log of one flow: every ingestion attempt, rejected ones too.
//!
//! A log of its own (`<flow>/requests/`), policy `interval=250ms`. The request does not
//! wait for its entry; readers pass a write barrier first. A crash can lose the last
//! moments' entries (see docs/durability.md). It has its own retention.

use serde::{Deserialize, Serialize};

use crate::log::Record;
use crate::store::error::StoreError;

/// Request log retention: entries older than this are deleted (whole segments).
pub const REQUEST_LOG_MAX_AGE_MS: i64 = 7 * 24 * 3600 * 1000;
/// Request log retention: at most this many bytes per flow.
pub const REQUEST_LOG_MAX_BYTES: u64 = 256 * 1024 * 1024;
pub const REQUEST_LOG_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Longest error message kept in an entry, in bytes.
pub const REQUEST_MESSAGE_BYTES_MAX: usize = 256;
/// Entries buffered per flow before they are handed to the request log's writer in one
/// batch (one queue message and one write instead of one each).
pub const REQUEST_LOG_BATCH_MAX: usize = 256;
/// How often the server hands buffered entries over when fewer are waiting. An entry's
/// time in the request log is when it was written: at most about this much after its
/// answer.
pub const REQUEST_LOG_FLUSH_PERIOD: std::time::Duration = std::time::Duration::from_millis(20);
/// Most entries one request-log read returns.
pub const REQUEST_LOG_READ_MAX: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestEntry {
    /// The HTTP status answered.
    pub status: u16,
    /// The error code answered (`invalid_signature`, …), for non-2xx.
    pub error: Option<String>,
    /// The error message answered, cut to `REQUEST_MESSAGE_BYTES_MAX`.
    pub message: Option<String>,
    pub latency_us: u32,
    /// Events the request carried (1 for a single event, n for a batch).
    pub events: u32,
    /// Events newly stored.
    pub stored: u32,
    /// Events answered as duplicates.
    pub duplicates: u32,
    /// Offset of the first event stored or matched.
    pub first_offset: Option<u64>,
    pub event_id: Option<String>,
    pub test: bool,
}

impl RequestEntry {
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .map_err(|e| StoreError::Invalid(format!("cannot encode request entry: {e}")))
    }

    pub fn decode(record: &Record) -> Option<Self> {
        bincode::serde::decode_from_slice(&record.payload, bincode::config::standard())
            .ok()
            .map(|(e, _)| e)
    }

    /// Cuts the message to its limit on a character boundary.
    pub fn with_message(mut self, message: &str) -> Self {
        let mut end = message.len().min(REQUEST_MESSAGE_BYTES_MAX);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        self.message = Some(message[..end].to_owned());
        self
    }
}
