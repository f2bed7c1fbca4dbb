//! A record as one JetStream message and back: the body is the payload, unchanged;
//! the rest rides in ASCII headers (docs/cluster.md, "What a message carries"). Pure.

use async_nats::HeaderMap;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::log::{Offset, Record, RecordInput};

pub const MSG_ID: &str = "Nats-Msg-Id";
pub const TIME: &str = "Em-Time";
pub const FLAGS: &str = "Em-Flags";
pub const KEY: &str = "Em-Key";
pub const HEADERS: &str = "Em-Headers";

/// Why a message is not a record EventMesh wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message at stream sequence {sequence} is not an EventMesh record: {reason}")]
pub struct NotARecord {
    pub sequence: u64,
    pub reason: String,
}

/// The `Nats-Msg-Id` of a record key: hex SHA-256, so any key bytes make a valid
/// header value of one fixed length.
pub fn message_id(key: &[u8]) -> String {
    let digest = Sha256::digest(key);
    crate::store::ids::hex(&digest)
}

/// The headers of `input` appended at `timestamp_ms` (it passed `validate_batch`).
pub fn headers_of(input: &RecordInput, timestamp_ms: i64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(TIME, timestamp_ms.to_string());
    if let Some(key) = &input.key {
        h.insert(MSG_ID, message_id(key));
        h.insert(KEY, B64.encode(key));
    }
    let record = Record::from_input(Offset(0), timestamp_ms, input);
    if record.flags != 0 {
        h.insert(FLAGS, record.flags.to_string());
    }
    if !record.headers_encoded.is_empty() {
        h.insert(HEADERS, B64.encode(&record.headers_encoded));
    }
    h
}

/// The record stored at stream sequence `sequence` (offset `sequence - 1`).
pub fn record_of(
    sequence: u64,
    headers: Option<&HeaderMap>,
    payload: Bytes,
) -> Result<Record, NotARecord> {
    let bad = |reason: &str| NotARecord {
        sequence,
        reason: reason.to_owned(),
    };
    let headers = headers.ok_or_else(|| bad("it has no headers"))?;
    let text = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
    let timestamp_ms = text(TIME)
        .ok_or_else(|| bad("no Em-Time header"))?
        .parse::<i64>()
        .map_err(|_| bad("Em-Time is not a number"))?;
    let flags = match text(FLAGS) {
        Some(f) => f
            .parse::<u16>()
            .map_err(|_| bad("Em-Flags is not a number"))?,
        None => 0,
    };
    let decode = |name: &str| -> Result<Option<Bytes>, NotARecord> {
        text(name)
            .map(|v| {
                B64.decode(v.as_bytes())
                    .map(Bytes::from)
                    .map_err(|_| bad("a header is not base64"))
            })
            .transpose()
    };
    let offset = sequence
        .checked_sub(1)
        .ok_or_else(|| bad("sequence 0 is not a message"))?;
    Ok(Record {
        offset: Offset(offset),
        timestamp_ms,
        flags,
        key: decode(KEY)?,
        headers_encoded: decode(HEADERS)?.unwrap_or_default(),
        payload,
    })
}

/// The headers of a raw NATS header block (`NATS/1.0\r\nName: value\r\n…`), as
/// `STREAM.MSG.GET` returns it. Lines that are not `name: value` are skipped.
pub fn parse_header_block(block: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    let text = String::from_utf8_lossy(block);
    for line in text.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if !name.is_empty() {
                h.append(name, value.trim());
            }
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_the_message_form_byte_for_byte() {
        // Proves what a node writes is what any node reads back: payload, key, flags,
        // headers and time, at offset sequence - 1, with the key's id in Nats-Msg-Id.
        let input = RecordInput {
            payload: Bytes::from_static(b"{\"a\":1}\r\n\x00\xff"),
            key: Some(Bytes::from_static(b"order-1 \xe2\x82\xac")),
            headers: vec![("type".into(), Bytes::from_static(b"order.created"))],
            flags: 3,
        };
        let h = headers_of(&input, 1_700_000_000_123);
        assert_eq!(
            h.get(MSG_ID).map(|v| v.as_str().len()),
            Some(64),
            "a fixed-length id"
        );
        let got = record_of(8, Some(&h), input.payload.clone()).expect("a record");
        assert_eq!(
            got,
            Record::from_input(Offset(7), 1_700_000_000_123, &input)
        );
        let plain = RecordInput::new(Bytes::from_static(b"x"));
        let h = headers_of(&plain, 5);
        assert!(h.get(MSG_ID).is_none() && h.get(KEY).is_none());
        assert_eq!(
            record_of(1, Some(&h), plain.payload.clone()).expect("a record"),
            Record::from_input(Offset(0), 5, &plain)
        );
    }

    #[test]
    fn a_raw_header_block_reads_as_the_same_headers() {
        // Proves the leader-read path (STREAM.MSG.GET gives a raw block) finds the
        // same record as the direct-get path (headers already parsed).
        let input = RecordInput {
            payload: Bytes::from_static(b"p"),
            key: Some(Bytes::from_static(b"k")),
            headers: vec![],
            flags: 0,
        };
        let h = headers_of(&input, 42);
        let mut block = b"NATS/1.0\r\n".to_vec();
        for name in [MSG_ID, TIME, KEY] {
            let v = h
                .get(name)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            block.extend_from_slice(format!("{name}: {v}\r\n").as_bytes());
        }
        block.extend_from_slice(b"\r\n");
        let parsed = parse_header_block(&block);
        assert_eq!(
            record_of(3, Some(&parsed), input.payload.clone()).expect("a record"),
            Record::from_input(Offset(2), 42, &input)
        );
    }

    #[test]
    fn a_message_without_our_headers_is_named_not_a_record() {
        // Proves a foreign message on the subject is an error naming its sequence.
        let err = record_of(4, None, Bytes::new()).expect_err("no headers");
        assert_eq!(err.sequence, 4);
        let mut h = HeaderMap::new();
        h.insert(TIME, "soon");
        let err = record_of(4, Some(&h), Bytes::new()).expect_err("bad time");
        assert!(err.reason.contains("Em-Time"), "{err}");
    }
}
