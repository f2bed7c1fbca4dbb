//! Every bound of the flow store, as a named constant with its unit. The engine's own
//! are in `log::limits`, HTTP's in `http::limits`; where one bound depends on another
//! layer's, a `const` assertion below ties them, so changing one cannot break the other.

use crate::log::limits::{APPEND_BATCH_RECORDS_MAX, RECORD_HEADER_VALUE_BYTES_MAX};
use crate::store::meta::RateLimit;

/// Most flows one installation holds.
pub const FLOWS_MAX: usize = 100_000;
/// Most API keys one installation holds.
pub const KEYS_MAX: usize = 10_000;
/// Most workspaces one installation holds.
pub const WORKSPACES_MAX: usize = 1_000;
/// Longest name of a flow, key or workspace, in bytes.
pub const NAME_BYTES_MAX: usize = 128;
/// Default dedup window (24 h) and its limits (1 s to 30 days).
pub const DEDUP_WINDOW_SECONDS_DEFAULT: u64 = 86_400;
pub const DEDUP_WINDOW_SECONDS_MAX: u64 = 30 * 86_400;
/// Most keys one flow's idempotency index holds; past it the oldest go early (counted).
pub const DEDUP_KEYS_PER_FLOW_MAX: usize = 10_000_000;
/// Default rate limit of a new flow.
pub const RATE_LIMIT_DEFAULT: RateLimit = RateLimit {
    per_second: 100,
    burst: 100,
};
pub const RATE_LIMIT_PER_SECOND_MAX: u32 = 1_000_000;
/// A replaced signature secret stays valid this long.
pub const SECRET_ROTATION_GRACE_MS: i64 = 24 * 3600 * 1000;
/// Longest signature secret, in bytes.
pub const SECRET_BYTES_MAX: usize = 512;
/// Default grace period of a rotated API key.
pub const KEY_ROTATION_GRACE_SECONDS_DEFAULT: u64 = 3600;
/// Longest grace period of a rotated API key (30 days).
pub const KEY_ROTATION_GRACE_SECONDS_MAX: u64 = 30 * 86_400;
/// Shortest admin key a caller may set, in characters.
pub const ADMIN_KEY_MIN_CHARS: usize = 24;
/// Longest key text that is even hashed, in characters (longer: refused at once).
pub const KEY_TEXT_MAX_CHARS: usize = 256;
/// Shortest retention a flow may ask for.
pub const RETENTION_MIN_AGE_SECONDS: u64 = 60;
pub const RETENTION_MIN_BYTES: u64 = 1024 * 1024;
/// Longest JSON pointer for `dedupKeyPointer`, in bytes.
pub const DEDUP_KEY_POINTER_BYTES_MAX: usize = 256;
/// Longest long-poll wait.
pub const POLL_WAIT_MS_MAX: u64 = 30_000;
/// Most ingest calls of one flow waiting for their append to be durable. One more is
/// answered 503 with `Retry-After` at once, so that under overload the excess is refused
/// quickly and the accepted requests' queueing stays bounded (at about this many divided
/// by the group-commit rate: ~30 ms at 35 K events/s) instead of growing.
pub const INGEST_INFLIGHT_PER_FLOW_MAX: usize = 1024;
/// Most named consumers per flow.
pub const CONSUMERS_PER_FLOW_MAX: usize = 1000;
/// Longest consumer name, in bytes (letters, digits, `.`, `_`, `-`).
pub const CONSUMER_NAME_BYTES_MAX: usize = 128;
/// Most request-log entries handed to its writer as one batch.
pub const REQUEST_LOG_BATCH_MAX: usize = 256;
/// Most request-log entries one read returns.
pub const REQUEST_LOG_READ_MAX: usize = 1000;

// A consumer-log compaction writes every consumer as one batch.
/// Largest request object kept with an event (record header `rq`), in bytes.
pub const EVENT_REQUEST_BYTES_MAX: usize = RECORD_HEADER_VALUE_BYTES_MAX;

const _: () = assert!(CONSUMERS_PER_FLOW_MAX <= APPEND_BATCH_RECORDS_MAX);
// A request-log hand-over is one append call.
const _: () = assert!(REQUEST_LOG_BATCH_MAX <= APPEND_BATCH_RECORDS_MAX);
// The admin key must fit the key text that is hashed at all.
const _: () = assert!(ADMIN_KEY_MIN_CHARS <= KEY_TEXT_MAX_CHARS);
// A dedupKeyPointer is stored as a record header value.
const _: () = assert!(DEDUP_KEY_POINTER_BYTES_MAX <= RECORD_HEADER_VALUE_BYTES_MAX);
