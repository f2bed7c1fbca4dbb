//! Every bound of the HTTP front end, as a named constant with its unit, and the
//! defaults of `HttpLimits` (the serve flags take theirs from here). Where a bound
//! depends on another layer's, a `const` assertion below ties them.

use std::time::Duration;

use crate::log::limits::{APPEND_BATCH_RECORDS_MAX, RECORD_PAYLOAD_BYTES_MAX};
use crate::store::limits::EVENT_REQUEST_BYTES_MAX;
use crate::store::meta::RateLimit;

/// Default largest request body, in bytes (the contract's 1 MiB).
pub const BODY_BYTES_DEFAULT: usize = 1024 * 1024;
/// Default most events in one batch.
pub const BATCH_EVENTS_DEFAULT: usize = 1000;
/// Default seconds a client has to send its request headers.
pub const HEADER_READ_TIMEOUT_S_DEFAULT: u64 = 10;
/// Default seconds a client has to send its request body.
pub const BODY_READ_TIMEOUT_S_DEFAULT: u64 = 30;
/// Default longest time to answer one request, body included (then 503).
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);
/// Default most open connections.
pub const CONNECTIONS_DEFAULT: usize = 4096;
/// Default most request headers.
pub const HEADERS_DEFAULT: usize = 100;
/// Default largest header section, in bytes.
pub const HEADER_BYTES_DEFAULT: usize = 64 * 1024;
/// Most concurrent HTTP/2 streams one connection may open (more are refused with
/// RST_STREAM REFUSED_STREAM; Go's net/http and nginx use 100 and 128).
pub const H2_STREAMS_MAX: u32 = 100;
/// Streams a client may reset before the server has answered them, pending at once,
/// before the connection gets GOAWAY ENHANCE_YOUR_CALM: the guard against the
/// rapid-reset flood (CVE-2023-44487), in which a client opens and cancels streams
/// faster than the server can refuse them.
pub const H2_PENDING_RESETS_MAX: usize = 20;
/// Streams the server may reset for a client's protocol errors before it closes the
/// connection (a client that keeps provoking errors is a flood of another kind).
pub const H2_ERROR_RESETS_MAX: usize = 256;
/// An idle HTTP/2 connection is pinged this often, and closed if the ping goes
/// unanswered for as long.
pub const H2_KEEPALIVE: Duration = Duration::from_secs(20);
/// Longest TLS handshake; then the connection is closed. (The header deadline applies
/// after it.)
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most request headers kept with a stored event (after credentials are left out);
/// the rest are dropped and the event says `headersTruncated: true`.
pub const STORED_HEADERS_MAX: usize = 64;
/// Most bytes of request headers kept with a stored event, counted as stored (JSON,
/// names and values with their quotes and escapes).
pub const STORED_HEADER_BYTES_MAX: usize = 8 * 1024;
/// Default longest event type kept, in bytes.
pub const EVENT_TYPE_BYTES_DEFAULT: usize = 256;

/// Longest query string looked at (for keys and parameters), in bytes.
pub const QUERY_BYTES_MAX: usize = 8192;
/// Bytes of an oversize body read and thrown away before answering 413, so that the
/// client, still sending, reads our answer instead of a connection reset.
pub const OVERSIZE_DRAIN_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Most events one page or poll returns.
pub const PAGE_EVENTS_MAX: usize = 1000;
/// Default payload budget of one page or poll (`maxBytes`); one event is always returned.
pub const PAGE_BYTES_DEFAULT: usize = 4 * 1024 * 1024;
/// Largest `maxBytes` a page or poll may ask for.
pub const PAGE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// SSE frames queued per client before the stream waits for the client to drain them:
/// a stream reads from the log at its client's pace, so a slow subscriber holds at
/// most this many frames (plus one read batch) in memory.
pub const SSE_BUFFER_FRAMES: usize = 1;
/// SSE heartbeat period (the contract asks for at least every 15 s).
pub const SSE_HEARTBEAT: Duration = Duration::from_secs(10);
/// Events an SSE stream reads per batch from the log.
pub const SSE_READ_BATCH: usize = 256;
/// Payload bytes an SSE stream reads per batch (at least one event).
pub const SSE_READ_BYTES: usize = 1024 * 1024;

/// Deepest nesting of objects and arrays together in an ingested body. Readers get a
/// body inside an envelope (an events page adds 3 levels, an SSE event 1), and
/// serde_json reads at most 128 levels by default: 100 leaves room for them.
pub const JSON_DEPTH_MAX: usize = 100;
/// Longest number in an ingested body, in characters (sign, digits, point, exponent).
pub const JSON_NUMBER_CHARS_MAX: usize = 100;

/// Largest |now - signed timestamp| accepted, in seconds.
pub const SIGNATURE_TOLERANCE_S: i64 = 300;
/// Most comma/space-separated entries looked at in one signature header; more is
/// Malformed (so a header with 1,000 entries costs nothing).
pub const SIGNATURE_ENTRIES_MAX: usize = 16;
/// Longest signature header value looked at, in bytes; longer is Malformed.
pub const SIGNATURE_HEADER_BYTES_MAX: usize = 4096;

/// The playground's own rate budget per flow.
pub const PLAYGROUND_RATE_LIMIT: RateLimit = RateLimit {
    per_second: 2,
    burst: 10,
};

// A body is stored as one event: the default must fit what one record holds (a larger
// `--body-limit` is refused by `HttpLimits::validate`).
const _: () = assert!(BODY_BYTES_DEFAULT <= RECORD_PAYLOAD_BYTES_MAX);
// A batch is one all-or-nothing append call.
const _: () = assert!(BATCH_EVENTS_DEFAULT <= APPEND_BATCH_RECORDS_MAX);
// An oversize body is drained past the limit, never less than the default limit.
const _: () = assert!(OVERSIZE_DRAIN_BYTES_MAX >= BODY_BYTES_DEFAULT as u64);
const _: () = assert!(PAGE_BYTES_DEFAULT <= PAGE_BYTES_MAX);
const _: () = assert!(SSE_READ_BYTES <= PAGE_BYTES_MAX && SSE_READ_BATCH <= PAGE_EVENTS_MAX);
// The SSE heartbeat must beat within the contract's 15 s.
const _: () = assert!(SSE_HEARTBEAT.as_secs() < 15);
// The kept request (headers, content type and source address, as JSON) is one record
// header: the headers' bound leaves room for the rest (a content type of at most 4 KiB
// counted the same way, and the address).
const _: () = assert!(STORED_HEADER_BYTES_MAX + 4096 + 256 <= EVENT_REQUEST_BYTES_MAX);
