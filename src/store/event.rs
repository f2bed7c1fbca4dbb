//! How an event is kept in a flow's partition: the raw body as the payload, the
//! idempotency key as the record key, and small headers (type, body hash, the scheme
//! that verified it, and the request it came in: headers, content type, source).

use bytes::Bytes;

use crate::log::{Offset, Record, RecordInput};

/// Record flag: a signature was verified for this event.
pub const FLAG_VERIFIED: u16 = 1 << 0;
/// Record flag: the event came through the playground.
pub const FLAG_TEST: u16 = 1 << 1;
/// Header holding the event type.
pub const HEADER_TYPE: &str = "type";
/// Header holding the CRC-32 of the body (for idempotency-key reuse checks on rebuild).
pub const HEADER_BODY_HASH: &str = "bh";
/// Header holding the name of the signature scheme that verified the event.
pub const HEADER_VERIFIED_BY: &str = "vs";
/// Header holding the request the event came in, as one JSON object with the fields
/// `headers` (object), `contentType` and `sourceIp` (and `headersTruncated` when the
/// headers were cut to their bound), built by the HTTP layer.
pub const HEADER_REQUEST: &str = "rq";

/// One event to ingest, after the HTTP layer has checked and classified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventInput {
    pub payload: Bytes,
    pub event_type: String,
    pub idempotency_key: Option<String>,
    /// The key came from `Idempotency-Key`: the same key with another body is refused.
    pub strict_key: bool,
    /// The signature scheme that verified the request, if one did.
    pub verified: Option<String>,
    pub test: bool,
    /// The request, as the JSON object kept in header `rq` (shared by a batch's events).
    pub request: Option<Bytes>,
}

/// The body hash kept with each event (CRC-32, little-endian).
pub fn body_hash(payload: &[u8]) -> u32 {
    crc32fast::hash(payload)
}

impl EventInput {
    pub fn to_record(&self) -> RecordInput {
        let flags = if self.verified.is_some() {
            FLAG_VERIFIED
        } else {
            0
        } | if self.test { FLAG_TEST } else { 0 };
        let mut headers = vec![
            (
                HEADER_TYPE.into(),
                Bytes::copy_from_slice(self.event_type.as_bytes()),
            ),
            (
                HEADER_BODY_HASH.into(),
                Bytes::copy_from_slice(&body_hash(&self.payload).to_le_bytes()),
            ),
        ];
        if let Some(scheme) = &self.verified {
            headers.push((
                HEADER_VERIFIED_BY.into(),
                Bytes::copy_from_slice(scheme.as_bytes()),
            ));
        }
        if let Some(request) = &self.request {
            headers.push((HEADER_REQUEST.into(), request.clone()));
        }
        RecordInput {
            payload: self.payload.clone(),
            key: self
                .idempotency_key
                .as_ref()
                .map(|k| Bytes::copy_from_slice(k.as_bytes())),
            headers,
            flags,
        }
    }
}

/// An event as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub offset: Offset,
    pub event_id: String,
    pub event_type: String,
    pub received_at_ms: i64,
    pub idempotency_key: Option<String>,
    pub test: bool,
    /// The scheme that verified it: its name, `"unknown"` for an event stored before
    /// the name was kept, or `None` when no signature was verified.
    pub verified: Option<String>,
    /// The request it came in (header `rq`), `None` for events stored before it was kept.
    pub request: Option<Bytes>,
    pub payload: Bytes,
}

/// The event id of `offset` in the flow `flow_id`: stable, derived, never stored.
pub fn event_id(flow_id: &str, offset: Offset) -> String {
    format!("evt_{}_{}", flow_id.trim_start_matches("fl_"), offset.0)
}

/// The type header of a stored record.
pub fn record_type(record: &Record) -> String {
    record
        .header(HEADER_TYPE)
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// The body hash header of a stored record (computed from the payload if absent).
pub fn record_body_hash(record: &Record) -> u32 {
    record
        .header(HEADER_BODY_HASH)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or_else(|| body_hash(&record.payload), u32::from_le_bytes)
}

impl StoredEvent {
    pub fn from_record(flow_id: &str, record: Record) -> Self {
        Self {
            offset: record.offset,
            event_id: event_id(flow_id, record.offset),
            event_type: record_type(&record),
            received_at_ms: record.timestamp_ms,
            idempotency_key: record
                .key
                .as_ref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            test: record.flags & FLAG_TEST != 0,
            verified: (record.flags & FLAG_VERIFIED != 0).then(|| {
                record.header(HEADER_VERIFIED_BY).map_or_else(
                    || "unknown".into(),
                    |s| String::from_utf8_lossy(s).into_owned(),
                )
            }),
            // A view into the record's header block, not a copy (replay's hot path).
            request: record
                .header(HEADER_REQUEST)
                .map(|v| record.headers_encoded.slice_ref(v)),
            payload: record.payload,
        }
    }
}
