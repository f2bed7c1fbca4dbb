//! The engine's vocabulary: offsets, append inputs, stored records, configuration.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::limits::{SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_LIMIT, SEGMENT_BYTES_MIN};
use crate::log::record::{HeaderIter, ATTR_USER_MASK};

/// The position of a record in its partition: 0, 1, 2, … never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub u64);

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

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

    pub(crate) fn user_flags(attributes: u16) -> u16 {
        attributes & ATTR_USER_MASK
    }
}

/// The offsets an append was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Offset of the first record of the call.
    pub first: Offset,
    /// Number of records stored (all of the call's).
    pub count: u32,
    /// The append time stamped on every record of the call.
    pub timestamp_ms: i64,
}

impl AppendOutcome {
    /// Offset of the last record of the call.
    pub fn last(&self) -> Offset {
        Offset(self.first.0 + u64::from(self.count.saturating_sub(1)))
    }
}

/// When the writer makes appended bytes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fdatasync before any append of the group is acknowledged (the default).
    Always,
    /// Acknowledge after the write; fdatasync at most this long after it.
    /// A crash may lose what was acknowledged within the interval.
    Interval(Duration),
    /// Never fdatasync on the append path (only at roll and close).
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            _ => {
                let ms = s
                    .strip_prefix("interval=")
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|ms| (1..=60_000).contains(ms))
                    .ok_or_else(|| {
                        format!("fsync must be always, never or interval=<1..60000 ms>, not {s:?}")
                    })?;
                Ok(Self::Interval(Duration::from_millis(ms)))
            }
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Always => write!(f, "always"),
            Self::Never => write!(f, "never"),
            Self::Interval(d) => write!(f, "interval={}", d.as_millis()),
        }
    }
}

/// Deliberate bugs for proving that the crash tests bite. Never set outside tests.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mutation {
    #[default]
    None,
    /// Acknowledge a group before its fdatasync.
    AckBeforeSync,
    /// Skip the directory fsync after creating a segment.
    NoDirSync,
}

/// Source of append times, injectable for tests.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Unix time in milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        Self(AtomicI64::new(now_ms))
    }
    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// How one partition behaves. Every field has a documented default.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Seal the active segment once it would grow past this many bytes. Default 128 MiB.
    pub segment_bytes: u64,
    /// Seal the active segment once its first record is this old (checked on append). Default none.
    pub segment_age: Option<Duration>,
    /// Durability of acknowledged appends. Default `Always`.
    pub fsync: FsyncPolicy,
    /// Source of append times. Default the system clock.
    pub clock: Arc<dyn Clock>,
    /// Derive segment salts from this seed instead of the OS's randomness, so the same
    /// appends write the same bytes (the golden fixture). Default none: never set it in
    /// production, since a predictable salt lets a sender forge group headers.
    #[doc(hidden)]
    pub salt_seed: Option<u64>,
    #[doc(hidden)]
    pub mutation: Mutation,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_age: None,
            fsync: FsyncPolicy::Always,
            clock: Arc::new(SystemClock),
            salt_seed: None,
            mutation: Mutation::None,
        }
    }
}

/// A configuration value that makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid log config: {0}")]
pub struct ConfigError(pub String);

impl LogConfig {
    /// Rejects nonsense; never clamps silently.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_LIMIT).contains(&self.segment_bytes) {
            return Err(ConfigError(format!(
                "segment_bytes {} outside {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_LIMIT}",
                self.segment_bytes
            )));
        }
        if self.segment_age.is_some_and(|a| a.is_zero()) {
            return Err(ConfigError("segment_age must be positive".into()));
        }
        if let FsyncPolicy::Interval(d) = self.fsync {
            if d.is_zero() {
                return Err(ConfigError("fsync interval must be positive".into()));
            }
        }
        Ok(())
    }
}

/// Which whole sealed segments retention may delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Delete a sealed segment once its newest record is older than this.
    pub max_age_ms: Option<i64>,
    /// Delete the oldest sealed segments while the partition is larger than this.
    pub max_bytes: Option<u64>,
}
