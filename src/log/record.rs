//! One record frame: encode, decode, checksum. Pure: no I/O, no allocation on decode.
//!
//! The byte layout is documented in `docs/format.md` ("Record frame"); the constants
//! here are that table. A test at the bottom pins it against a hand-made frame.

use crate::log::limits::{
    APPEND_BATCH_BYTES_MAX, APPEND_BATCH_RECORDS_MAX, RECORD_FRAME_BYTES_MAX,
    RECORD_HEADER_COUNT_MAX, RECORD_HEADER_NAME_BYTES_MAX, RECORD_HEADER_VALUE_BYTES_MAX,
    RECORD_KEY_BYTES_MAX, RECORD_PAYLOAD_BYTES_MAX,
};
use bytes::Bytes;

use crate::log::offset::Offset;

/// What a caller appends: the payload, an optional key, a few headers and its own flags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordInput {
    pub payload: Bytes,
    /// The idempotency key; `None` for none. May not be empty.
    pub key: Option<Bytes>,
    /// Small (name, value) pairs such as the event type.
    pub headers: Vec<(String, Bytes)>,
    /// The caller's own flag bits; only bits in `ATTR_USER_MASK` (0x00ff) are allowed.
    pub flags: u16,
}

impl RecordInput {
    /// A record with only a payload.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            payload: payload.into(),
            ..Self::default()
        }
    }
}

/// A stored record as read back. Its byte fields share the segment's buffer (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: Offset,
    /// Append time, Unix milliseconds. Never decreases along a partition.
    pub timestamp_ms: i64,
    /// The caller's flag bits as appended.
    pub flags: u16,
    pub key: Option<Bytes>,
    /// The encoded header block; read it with `headers()` or `header()`.
    pub headers_encoded: Bytes,
    pub payload: Bytes,
}

impl Record {
    /// The (name, value) headers in the order they were appended.
    pub fn headers(&self) -> HeaderIter<'_> {
        HeaderIter::new(&self.headers_encoded)
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// The record `input` becomes at `offset`, appended at `timestamp_ms`: what a read
    /// of its frame gives back, for partitions that keep records whole (in memory).
    /// `input` must have passed `validate`.
    pub fn from_input(offset: Offset, timestamp_ms: i64, input: &RecordInput) -> Self {
        let mut headers = Vec::with_capacity(headers_len(input));
        encode_headers_into(&mut headers, input);
        Self {
            offset,
            timestamp_ms,
            flags: input.flags & ATTR_USER_MASK,
            key: input.key.clone(),
            headers_encoded: Bytes::from(headers),
            payload: input.payload.clone(),
        }
    }

    pub(crate) fn user_flags(attributes: u16) -> u16 {
        attributes & ATTR_USER_MASK
    }
}

/// `"EMR1"`: a frame of format version 1. Never zero, so a zeroed page never decodes.
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"EMR1");
/// Bytes of the fixed frame header.
pub const FRAME_HEADER_BYTES: usize = 40;
/// Attribute bit set by the engine on every record of a batch but the last.
pub const ATTR_BATCH_CONTINUES: u16 = 1 << 15;
/// Attribute bits the caller may set (its own flags).
pub const ATTR_USER_MASK: u16 = 0x00ff;

const POS_CRC: usize = 0;
const POS_MAGIC: usize = 4;
const POS_FRAME_LEN: usize = 8;
const POS_OFFSET: usize = 12;
const POS_TIMESTAMP: usize = 20;
const POS_ATTRIBUTES: usize = 28;
const POS_KEY_LEN: usize = 30;
const POS_HEADERS_LEN: usize = 32;
const POS_PAYLOAD_LEN: usize = 36;

/// Why bytes are not a valid frame. `Incomplete` is the only one that more bytes could cure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("incomplete frame: {needed} bytes needed, {available} available")]
    Incomplete { needed: usize, available: usize },
    #[error("bad magic {found:#010x}")]
    BadMagic { found: u32 },
    #[error("bad frame length {frame_len}")]
    BadLength { frame_len: u64 },
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("malformed headers")]
    BadHeaders,
    #[error("unknown attribute bits {bits:#06x}")]
    BadAttributes { bits: u16 },
}

/// A decoded frame, borrowing from the bytes it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameView<'a> {
    pub offset: Offset,
    pub timestamp_ms: i64,
    pub attributes: u16,
    pub key: &'a [u8],
    pub headers: &'a [u8],
    pub payload: &'a [u8],
}

/// The limit an append input breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("payload is {bytes} bytes, the limit is {max}")]
    PayloadTooLarge { bytes: usize, max: usize },
    #[error("key is {bytes} bytes, the limit is {max} (and it may not be empty)")]
    KeyLength { bytes: usize, max: usize },
    #[error("{count} headers, the limit is {max}")]
    TooManyHeaders { count: usize, max: usize },
    #[error("header name of {bytes} bytes, the limit is {max} (and it may not be empty)")]
    HeaderNameLength { bytes: usize, max: usize },
    #[error("header value of {bytes} bytes, the limit is {max}")]
    HeaderValueLength { bytes: usize, max: usize },
    #[error("user flags {flags:#06x} outside the user mask {mask:#06x}")]
    UserFlags { flags: u16, mask: u16 },
    #[error("batch of {count} records, the limit is {max} (and it may not be empty)")]
    BatchLength { count: usize, max: usize },
    #[error("batch of {bytes} encoded bytes, the limit is {max}")]
    BatchBytes { bytes: usize, max: usize },
}

/// Checks `input` against every record limit. Returns the encoded frame length.
pub fn validate(input: &RecordInput) -> Result<usize, LimitError> {
    if input.payload.len() > RECORD_PAYLOAD_BYTES_MAX {
        return Err(LimitError::PayloadTooLarge {
            bytes: input.payload.len(),
            max: RECORD_PAYLOAD_BYTES_MAX,
        });
    }
    if let Some(key) = &input.key {
        if key.is_empty() || key.len() > RECORD_KEY_BYTES_MAX {
            return Err(LimitError::KeyLength {
                bytes: key.len(),
                max: RECORD_KEY_BYTES_MAX,
            });
        }
    }
    if input.headers.len() > RECORD_HEADER_COUNT_MAX {
        return Err(LimitError::TooManyHeaders {
            count: input.headers.len(),
            max: RECORD_HEADER_COUNT_MAX,
        });
    }
    for (name, value) in &input.headers {
        if name.is_empty() || name.len() > RECORD_HEADER_NAME_BYTES_MAX {
            return Err(LimitError::HeaderNameLength {
                bytes: name.len(),
                max: RECORD_HEADER_NAME_BYTES_MAX,
            });
        }
        if value.len() > RECORD_HEADER_VALUE_BYTES_MAX {
            return Err(LimitError::HeaderValueLength {
                bytes: value.len(),
                max: RECORD_HEADER_VALUE_BYTES_MAX,
            });
        }
    }
    if input.flags & !ATTR_USER_MASK != 0 {
        return Err(LimitError::UserFlags {
            flags: input.flags,
            mask: ATTR_USER_MASK,
        });
    }
    Ok(encoded_len(input))
}

/// Checks one append call: 1 to `APPEND_BATCH_RECORDS_MAX` records, each valid, of at
/// most `APPEND_BATCH_BYTES_MAX` encoded bytes together. Returns those bytes.
pub fn validate_batch(records: &[RecordInput]) -> Result<usize, LimitError> {
    if records.is_empty() || records.len() > APPEND_BATCH_RECORDS_MAX {
        return Err(LimitError::BatchLength {
            count: records.len(),
            max: APPEND_BATCH_RECORDS_MAX,
        });
    }
    let mut total = 0usize;
    for r in records {
        total += validate(r)?;
    }
    if total > APPEND_BATCH_BYTES_MAX {
        return Err(LimitError::BatchBytes {
            bytes: total,
            max: APPEND_BATCH_BYTES_MAX,
        });
    }
    Ok(total)
}

fn headers_len(input: &RecordInput) -> usize {
    input
        .headers
        .iter()
        .map(|(name, value)| 1 + name.len() + 2 + value.len())
        .sum()
}

/// The header block of `input`: per header a name length (u8), the name, a value
/// length (u16 LE) and the value. `input` must have passed `validate`.
fn encode_headers_into(buf: &mut Vec<u8>, input: &RecordInput) {
    for (name, value) in &input.headers {
        buf.push(name.len() as u8);
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(&(value.len() as u16).to_le_bytes());
        buf.extend_from_slice(value);
    }
}

/// Length of the frame `input` encodes to. Assumes `validate` passed.
pub fn encoded_len(input: &RecordInput) -> usize {
    FRAME_HEADER_BYTES
        + input.key.as_ref().map_or(0, |k| k.len())
        + headers_len(input)
        + input.payload.len()
}

/// Appends the frame of `input` at `offset` to `buf`. `input` must have passed `validate`.
pub fn encode_into(
    buf: &mut Vec<u8>,
    offset: Offset,
    timestamp_ms: i64,
    batch_continues: bool,
    input: &RecordInput,
) {
    let start = buf.len();
    let key: &[u8] = input.key.as_deref().unwrap_or(&[]);
    let hlen = headers_len(input);
    let frame_len = FRAME_HEADER_BYTES + key.len() + hlen + input.payload.len();
    debug_assert!(
        frame_len <= RECORD_FRAME_BYTES_MAX,
        "validate() bounds the frame"
    );
    let attributes = (input.flags & ATTR_USER_MASK)
        | if batch_continues {
            ATTR_BATCH_CONTINUES
        } else {
            0
        };
    buf.reserve(frame_len);
    buf.extend_from_slice(&[0u8; 4]);
    buf.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
    // The casts below are bounded by validate(): frame_len <= RECORD_FRAME_BYTES_MAX < u32::MAX,
    // key.len() <= RECORD_KEY_BYTES_MAX < u16::MAX, header names and values likewise.
    buf.extend_from_slice(&(frame_len as u32).to_le_bytes());
    buf.extend_from_slice(&offset.0.to_le_bytes());
    buf.extend_from_slice(&timestamp_ms.to_le_bytes());
    buf.extend_from_slice(&attributes.to_le_bytes());
    buf.extend_from_slice(&(key.len() as u16).to_le_bytes());
    buf.extend_from_slice(&(hlen as u32).to_le_bytes());
    buf.extend_from_slice(&(input.payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(key);
    encode_headers_into(buf, input);
    buf.extend_from_slice(&input.payload);
    let crc = crc32fast::hash(&buf[start + POS_MAGIC..]);
    buf[start + POS_CRC..start + POS_CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

fn u16_at(b: &[u8], pos: usize) -> u16 {
    u16::from_le_bytes([b[pos], b[pos + 1]])
}
fn u32_at(b: &[u8], pos: usize) -> u32 {
    u32::from_le_bytes([b[pos], b[pos + 1], b[pos + 2], b[pos + 3]])
}
fn u64_at(b: &[u8], pos: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[pos..pos + 8]);
    u64::from_le_bytes(a)
}

/// Reads only the fixed header's length field, checked against the limits, so a
/// scanner can tell "not enough bytes yet" from "this can never be a frame".
pub fn peek_frame_len(bytes: &[u8]) -> Result<usize, FrameError> {
    if bytes.len() < FRAME_HEADER_BYTES {
        return Err(FrameError::Incomplete {
            needed: FRAME_HEADER_BYTES,
            available: bytes.len(),
        });
    }
    let magic = u32_at(bytes, POS_MAGIC);
    if magic != FRAME_MAGIC {
        return Err(FrameError::BadMagic { found: magic });
    }
    let frame_len = u32_at(bytes, POS_FRAME_LEN) as usize;
    let key_len = u16_at(bytes, POS_KEY_LEN) as usize;
    let headers_len = u32_at(bytes, POS_HEADERS_LEN) as usize;
    let payload_len = u32_at(bytes, POS_PAYLOAD_LEN) as usize;
    let parts =
        FRAME_HEADER_BYTES as u64 + key_len as u64 + headers_len as u64 + payload_len as u64;
    if frame_len as u64 != parts || frame_len > RECORD_FRAME_BYTES_MAX {
        return Err(FrameError::BadLength {
            frame_len: frame_len as u64,
        });
    }
    Ok(frame_len)
}

/// Decodes the frame at the start of `bytes`, verifying its checksum.
/// Returns the frame and its length in bytes.
pub fn decode(bytes: &[u8]) -> Result<(FrameView<'_>, usize), FrameError> {
    let frame_len = peek_frame_len(bytes)?;
    if bytes.len() < frame_len {
        return Err(FrameError::Incomplete {
            needed: frame_len,
            available: bytes.len(),
        });
    }
    let frame = &bytes[..frame_len];
    let stored = u32_at(frame, POS_CRC);
    let computed = crc32fast::hash(&frame[POS_MAGIC..]);
    if stored != computed {
        return Err(FrameError::Checksum { stored, computed });
    }
    let attributes = u16_at(frame, POS_ATTRIBUTES);
    let unknown = attributes & !(ATTR_USER_MASK | ATTR_BATCH_CONTINUES);
    if unknown != 0 {
        return Err(FrameError::BadAttributes { bits: unknown });
    }
    let key_end = FRAME_HEADER_BYTES + u16_at(frame, POS_KEY_LEN) as usize;
    let headers_end = key_end + u32_at(frame, POS_HEADERS_LEN) as usize;
    let headers = &frame[key_end..headers_end];
    check_headers(headers)?;
    let view = FrameView {
        offset: Offset(u64_at(frame, POS_OFFSET)),
        timestamp_ms: u64_at(frame, POS_TIMESTAMP) as i64,
        attributes,
        key: &frame[FRAME_HEADER_BYTES..key_end],
        headers,
        payload: &frame[headers_end..],
    };
    Ok((view, frame_len))
}

fn check_headers(mut rest: &[u8]) -> Result<(), FrameError> {
    let mut count = 0;
    while !rest.is_empty() {
        let (_, _, tail) = split_header(rest).ok_or(FrameError::BadHeaders)?;
        rest = tail;
        count += 1;
        if count > RECORD_HEADER_COUNT_MAX {
            return Err(FrameError::BadHeaders);
        }
    }
    Ok(())
}

/// Splits one encoded header off the front: (name, value, rest).
fn split_header(b: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let name_len = *b.first()? as usize;
    let name = b.get(1..1 + name_len)?;
    let at = 1 + name_len;
    let value_len = u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]) as usize;
    let value = b.get(at + 2..at + 2 + value_len)?;
    Some((name, value, &b[at + 2 + value_len..]))
}

/// Iterates the (name, value) pairs of an encoded header block that `decode` accepted.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    rest: &'a [u8],
}

impl<'a> HeaderIter<'a> {
    pub fn new(encoded: &'a [u8]) -> Self {
        Self { rest: encoded }
    }
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let (name, value, rest) = split_header(self.rest)?;
        self.rest = rest;
        Some((name, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn input() -> RecordInput {
        RecordInput {
            payload: Bytes::from_static(b"{\"a\":1}"),
            key: Some(Bytes::from_static(b"k1")),
            headers: vec![("type".into(), Bytes::from_static(b"user.created"))],
            flags: 0x3,
        }
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let mut buf = Vec::new();
        encode_into(&mut buf, Offset(42), 1_700_000_000_123, true, &input());
        assert_eq!(buf.len(), encoded_len(&input()));
        let (view, len) = decode(&buf).expect("valid frame");
        assert_eq!(len, buf.len());
        assert_eq!(view.offset, Offset(42));
        assert_eq!(view.timestamp_ms, 1_700_000_000_123);
        assert_eq!(view.attributes, 0x3 | ATTR_BATCH_CONTINUES);
        assert_eq!(view.key, b"k1");
        assert_eq!(view.payload, b"{\"a\":1}");
        let headers: Vec<_> = HeaderIter::new(view.headers).collect();
        assert_eq!(headers, vec![(&b"type"[..], &b"user.created"[..])]);
    }

    #[test]
    fn layout_is_pinned() {
        // Proves the header layout of docs/format.md: fields at fixed positions, little-endian.
        let mut buf = Vec::new();
        let rec = RecordInput {
            payload: Bytes::from_static(b"xy"),
            key: None,
            headers: vec![],
            flags: 0,
        };
        encode_into(&mut buf, Offset(7), 9, false, &rec);
        assert_eq!(&buf[4..8], b"EMR1");
        assert_eq!(&buf[8..12], &42u32.to_le_bytes());
        assert_eq!(&buf[12..20], &7u64.to_le_bytes());
        assert_eq!(&buf[20..28], &9i64.to_le_bytes());
        assert_eq!(&buf[36..40], &2u32.to_le_bytes());
        assert_eq!(&buf[40..], b"xy");
        assert_eq!(&buf[0..4], &crc32fast::hash(&buf[4..]).to_le_bytes());
    }

    #[test]
    fn every_bit_flip_and_every_truncation_is_detected() {
        let mut buf = Vec::new();
        encode_into(&mut buf, Offset(3), 5, false, &input());
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err(), "truncation at {cut} passed");
        }
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode(&bad).is_err(),
                    "flip of bit {bit} in byte {byte} passed"
                );
            }
        }
    }

    #[test]
    fn zeroed_bytes_never_decode() {
        assert!(matches!(
            decode(&[0u8; 4096]),
            Err(FrameError::BadMagic { found: 0 })
        ));
    }

    #[test]
    fn limits_are_enforced() {
        let mut big = input();
        big.payload = Bytes::from(vec![0u8; RECORD_PAYLOAD_BYTES_MAX + 1]);
        assert!(matches!(
            validate(&big),
            Err(LimitError::PayloadTooLarge { .. })
        ));
        let mut empty_key = input();
        empty_key.key = Some(Bytes::new());
        assert!(matches!(
            validate(&empty_key),
            Err(LimitError::KeyLength { .. })
        ));
        let mut flags = input();
        flags.flags = ATTR_BATCH_CONTINUES;
        assert!(matches!(
            validate(&flags),
            Err(LimitError::UserFlags { .. })
        ));
        let mut many = input();
        many.headers = (0..=RECORD_HEADER_COUNT_MAX)
            .map(|i| (format!("h{i}"), Bytes::new()))
            .collect();
        assert!(matches!(
            validate(&many),
            Err(LimitError::TooManyHeaders { .. })
        ));
    }
}
