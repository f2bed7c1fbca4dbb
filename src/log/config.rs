//! How one partition behaves: durability, segment sizes, retention.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::log::clock::{Clock, SystemClock};
use crate::log::limits::{SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_LIMIT, SEGMENT_BYTES_MIN};

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

/// Deliberate bugs for proving that the crash tests bite. Only in `testing` builds.
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mutation {
    #[default]
    None,
    /// Acknowledge a group before its fdatasync.
    AckBeforeSync,
    /// Skip the directory fsync after creating a segment.
    NoDirSync,
    /// A journal checkpoint that records its offset (and deletes the journal before
    /// it) without first fdatasyncing the segments it covers.
    CheckpointBeforeSync,
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
    /// The store-wide journal this log rides, if any (`journal.rs`): then it has no
    /// writer thread, and a 2xx follows the journal's fdatasync. Default none.
    pub journal: Option<crate::log::journal::Journal>,
    #[cfg(any(test, feature = "testing"))]
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
            journal: None,
            #[cfg(any(test, feature = "testing"))]
            mutation: Mutation::None,
        }
    }
}

/// A configuration value that makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid log config: {0}")]
pub struct ConfigError(pub String);

impl LogConfig {
    /// Whether the writer acknowledges before its fdatasync (a deliberate bug, `testing`).
    pub(crate) fn acks_before_sync(&self) -> bool {
        #[cfg(any(test, feature = "testing"))]
        return self.mutation == Mutation::AckBeforeSync;
        #[cfg(not(any(test, feature = "testing")))]
        false
    }

    /// Whether a new segment's directory entry goes unsynced (a deliberate bug, `testing`).
    pub(crate) fn skips_dir_sync(&self) -> bool {
        #[cfg(any(test, feature = "testing"))]
        return self.mutation == Mutation::NoDirSync;
        #[cfg(not(any(test, feature = "testing")))]
        false
    }

    /// Whether a journal checkpoint skips the segments' fdatasync (a deliberate bug, `testing`).
    pub(crate) fn checkpoints_before_sync(&self) -> bool {
        #[cfg(any(test, feature = "testing"))]
        return self.mutation == Mutation::CheckpointBeforeSync;
        #[cfg(not(any(test, feature = "testing")))]
        false
    }

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
