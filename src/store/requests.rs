//! The request log of one flow: every ingestion attempt, rejected ones too.
//!
//! A log of its own (`<flow>/requests/`), policy `interval=250ms`. The request does not
//! wait for its entry; readers pass a write barrier first. A crash can lose the last
//! moments' entries (see docs/durability.md). It has its own retention.
//!
//! Rejections of unauthenticated attempts (a wrong or missing API key, a bad signature,
//! a body too large to check) are not written one by one: anyone who knows a webhook URL
//! could push the real senders' entries out of view. They are counted per (status,
//! error code) and per second of the store clock: the first of each second is written,
//! the rest become one entry whose `count` says how many attempts it stands for
//! (`RejectionTally`).

use serde::{Deserialize, Serialize};

use bytes::Bytes;

use crate::log::{Record, RecordInput};
use crate::store::error::StoreError;

/// Request log retention: entries older than this are deleted (whole segments).
pub const REQUEST_LOG_MAX_AGE_MS: i64 = 7 * 24 * 3600 * 1000;
/// Request log retention: at most this many bytes per flow.
pub const REQUEST_LOG_MAX_BYTES: u64 = 256 * 1024 * 1024;
pub const REQUEST_LOG_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Longest error message kept in an entry, in bytes.
pub const REQUEST_MESSAGE_BYTES_MAX: usize = 256;
/// How often the server hands buffered entries over when fewer are waiting. An entry's
/// time in the request log is when it was written: at most about this much after its
/// answer.
pub const REQUEST_LOG_FLUSH_PERIOD: std::time::Duration = std::time::Duration::from_millis(250);
/// Record header holding an entry's `count` (u32 little-endian) when it is over 1.
/// A header, not a field, so entries written before it was added still decode.
pub const REQUEST_COUNT_HEADER: &str = "n";
/// Record header holding when the entry was recorded (its answer, or the close of a
/// count), in ms since the epoch (i64 little-endian). Entries are handed to the writer
/// in batches, up to `REQUEST_LOG_FLUSH_PERIOD` later, so the record's own time can be
/// that much late; entries written before the header was added have only that.
pub const REQUEST_TIME_HEADER: &str = "t";
/// Most (status, error code) pairs counted at once per flow; one more closes the oldest.
pub const REJECTION_REASONS_MAX: usize = 16;

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
    /// Attempts this entry stands for: 1, or the unauthenticated rejections of one
    /// reason in one second. Stored in the record header `REQUEST_COUNT_HEADER`.
    #[serde(skip)]
    pub count: u32,
}

impl RequestEntry {
    /// The entry as a request-log record recorded at `at_ms` (`REQUEST_TIME_HEADER`).
    pub fn to_record_at(&self, at_ms: i64) -> Result<RecordInput, StoreError> {
        let mut record = self.to_record()?;
        record.headers.push((
            REQUEST_TIME_HEADER.to_owned(),
            Bytes::copy_from_slice(&at_ms.to_le_bytes()),
        ));
        Ok(record)
    }

    /// When a request-log record's entry was recorded: its `REQUEST_TIME_HEADER`, or
    /// (written before the header existed) the record's own time.
    pub fn recorded_ms(record: &Record) -> i64 {
        record
            .header(REQUEST_TIME_HEADER)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(record.timestamp_ms, i64::from_le_bytes)
    }

    /// The entry as a request-log record.
    pub fn to_record(&self) -> Result<RecordInput, StoreError> {
        let payload = bincode::serde::encode_to_vec(self, bincode::config::standard())
            .map_err(|e| StoreError::Invalid(format!("cannot encode request entry: {e}")))?;
        let mut record = RecordInput::new(Bytes::from(payload));
        if self.count > 1 {
            record.headers.push((
                REQUEST_COUNT_HEADER.to_owned(),
                Bytes::copy_from_slice(&self.count.to_le_bytes()),
            ));
        }
        Ok(record)
    }

    pub fn decode(record: &Record) -> Option<Self> {
        let (mut entry, _): (Self, _) =
            bincode::serde::decode_from_slice(&record.payload, bincode::config::standard()).ok()?;
        entry.count = record
            .header(REQUEST_COUNT_HEADER)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(1, u32::from_le_bytes)
            .max(1);
        Some(entry)
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

/// One reason's unauthenticated rejections within one second, being counted.
#[derive(Debug)]
struct OpenCount {
    second: i64,
    /// The first rejection of the second (written at once), as the template.
    first: RequestEntry,
    /// Rejections after the first in that second.
    repeats: u32,
    latency_us_sum: u64,
}

/// Unauthenticated rejections of one flow, counted per (status, error code) and second.
/// The first rejection of a reason in a second is written at once, as any entry is, so a
/// real sender with a wrong secret sees its attempt in order. The rest of that second
/// only add to a count, which becomes one entry (the first's message, their mean
/// latency, `count` = how many) when the second is over: at most two entries per reason
/// per second, however many attempts.
#[derive(Debug, Default)]
pub struct RejectionTally {
    open: Vec<OpenCount>,
}

impl RejectionTally {
    /// Counts one rejection at `now_ms`; returns the entries to write now, in order: a
    /// count it closed (the same reason's of an earlier second, or the oldest when
    /// `REJECTION_REASONS_MAX` are open), then `entry` itself if it is the first of its
    /// reason in this second.
    pub fn add(&mut self, entry: RequestEntry, now_ms: i64) -> Vec<RequestEntry> {
        let second = now_ms.div_euclid(1000);
        let mut out = Vec::new();
        let same = |o: &OpenCount| o.first.status == entry.status && o.first.error == entry.error;
        if let Some(i) = self.open.iter().position(same) {
            let open = &mut self.open[i];
            if open.second == second {
                open.repeats = open.repeats.saturating_add(1);
                open.latency_us_sum += u64::from(entry.latency_us);
                return out;
            }
            out.extend(Self::close(self.open.remove(i)));
        } else if self.open.len() >= REJECTION_REASONS_MAX {
            out.extend(Self::close(self.open.remove(0)));
        }
        let entry = RequestEntry { count: 1, ..entry };
        self.open.push(OpenCount {
            second,
            first: entry.clone(),
            repeats: 0,
            latency_us_sum: 0,
        });
        out.push(entry);
        out
    }

    /// Closes the counts of seconds before `now_ms`'s, or every count when `now_ms` is
    /// `None` (a reader, or shutdown, must see them all); returns the entries to write.
    pub fn take(&mut self, now_ms: Option<i64>) -> Vec<RequestEntry> {
        let current = now_ms.map(|ms| ms.div_euclid(1000));
        let (done, open): (Vec<_>, Vec<_>) = std::mem::take(&mut self.open)
            .into_iter()
            .partition(|o| current.is_none_or(|c| o.second < c));
        self.open = open;
        done.into_iter().filter_map(Self::close).collect()
    }

    /// Whether no count is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The entry of a count's repeats; `None` when there were none.
    fn close(open: OpenCount) -> Option<RequestEntry> {
        if open.repeats == 0 {
            return None;
        }
        let mean = open.latency_us_sum / u64::from(open.repeats);
        Some(RequestEntry {
            latency_us: u32::try_from(mean).unwrap_or(u32::MAX),
            count: open.repeats,
            ..open.first
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16, code: &str, latency_us: u32) -> RequestEntry {
        RequestEntry {
            status,
            error: Some(code.into()),
            message: Some(format!("{code} at {latency_us}")),
            latency_us,
            events: 1,
            stored: 0,
            duplicates: 0,
            first_offset: None,
            event_id: None,
            test: false,
            count: 1,
        }
    }

    #[test]
    fn rejections_are_counted_per_reason_and_second() {
        let mut t = RejectionTally::default();
        // The first of a second is written at once, the rest are counted.
        let first = t.add(rejected(401, "invalid_signature", 10), 1_000);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].count, 1);
        for i in 1..5 {
            assert!(t
                .add(
                    rejected(401, "invalid_signature", 10 + i),
                    1_000 + i64::from(i)
                )
                .is_empty());
        }
        let other = t.add(rejected(401, "invalid_api_key", 7), 1_500);
        assert_eq!(other.len(), 1, "another reason is written at once too");
        // The same second is still open.
        assert!(t.take(Some(1_999)).is_empty());
        // A new second of the same reason closes the old count, then is written itself.
        let out = t.add(rejected(401, "invalid_signature", 40), 2_000);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].count, 4);
        assert_eq!(out[0].latency_us, 12, "mean of 11..=14");
        assert_eq!(out[0].message.as_deref(), Some("invalid_signature at 10"));
        assert_eq!((out[1].count, out[1].latency_us), (1, 40));
        // The other reason's second is over and had no repeats: nothing to write.
        assert!(t.take(Some(2_000)).is_empty());
        // A repeat in the open second, then a reader takes it.
        assert!(t
            .add(rejected(401, "invalid_signature", 2), 2_100)
            .is_empty());
        let all = t.take(None);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].count, 1);
        assert!(t.take(None).is_empty());
    }

    #[test]
    fn the_count_lives_in_a_header_and_old_entries_read_as_one() {
        let mut e = rejected(401, "invalid_signature", 3);
        e.count = 1_000;
        let input = e.to_record().expect("encode");
        assert_eq!(input.headers.len(), 1);
        let (name, value) = &input.headers[0];
        // The log's header block: name length, name, value length (u16 LE), value.
        let mut block = vec![name.len() as u8];
        block.extend_from_slice(name.as_bytes());
        block.extend_from_slice(&(value.len() as u16).to_le_bytes());
        block.extend_from_slice(value);
        let mut record = Record {
            offset: crate::log::Offset(0),
            timestamp_ms: 0,
            flags: 0,
            key: None,
            headers_encoded: Bytes::from(block),
            payload: input.payload.clone(),
        };
        assert_eq!(RequestEntry::decode(&record).expect("decode").count, 1_000);
        // An entry from before the header existed reads as one attempt.
        record.headers_encoded = Bytes::new();
        assert_eq!(RequestEntry::decode(&record).expect("decode").count, 1);
        e.count = 1;
        let plain = e.to_record().expect("encode");
        assert!(plain.headers.is_empty(), "a single attempt has no header");
    }

    #[test]
    fn at_most_reasons_max_counts_are_open() {
        let mut t = RejectionTally::default();
        let mut written = 0;
        for round in 0..2 {
            for i in 0..(REJECTION_REASONS_MAX + 3) {
                let out = t.add(rejected(401, &format!("r{i}"), 1), round * 1_000);
                written += out.iter().map(|e| e.count).sum::<u32>();
            }
        }
        // More reasons than fit: the oldest counts close early, and no attempt is lost.
        assert_eq!(t.open.len(), REJECTION_REASONS_MAX);
        let counted: u32 = t.take(None).iter().map(|e| e.count).sum();
        assert_eq!(written + counted, 2 * (REJECTION_REASONS_MAX as u32 + 3));
    }
}
