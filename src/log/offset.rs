//! Positions in a partition and what an append was given.

use std::fmt;

/// The position of a record in its partition: 0, 1, 2, … never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub u64);

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
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
