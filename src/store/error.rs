//! Errors of the flow store. The HTTP layer maps each variant to one status.

use crate::log::LogError;
use crate::store::partition::PartitionError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist (or is not visible to the caller).
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// The request asks for something invalid; the message says what.
    #[error("{0}")]
    Invalid(String),
    /// An `Idempotency-Key` seen before (at `offset`) came with another body.
    #[error(
        "the idempotency key was used before with a different body (event at offset {offset})"
    )]
    IdempotencyKeyReused { offset: crate::log::Offset },
    /// Another node changed the same thing at the same moment (cluster mode): retry.
    #[error("{0}")]
    Conflict(String),
    /// A named limit was reached.
    #[error("{0}")]
    Limit(String),
    /// Too many calls wait on this flow's log (its write queue, or
    /// `INGEST_INFLIGHT_PER_FLOW_MAX`): nothing of the call was stored; retry shortly.
    #[error("the flow's write queue is full")]
    Overloaded,
    /// A log or partition failed; for appends, nothing of the call was acknowledged.
    #[error(transparent)]
    Partition(PartitionError),
    /// Metadata or a state file could not be read or written.
    #[error("{op} {path}: {message}")]
    Io {
        op: &'static str,
        path: String,
        message: String,
    },
    /// A state file exists but cannot be decoded.
    #[error("{path} is damaged: {message}")]
    Damaged { path: String, message: String },
    /// The store is shutting down or read-only.
    #[error("the store is not accepting writes: {0}")]
    Unavailable(String),
    /// The flow is quarantined: its logs could not be opened. `reason` names the file
    /// and the byte position.
    #[error("flow {id} is unavailable: {reason}")]
    FlowUnavailable { id: String, reason: String },
}

impl From<PartitionError> for StoreError {
    fn from(e: PartitionError) -> Self {
        match e {
            PartitionError::Overloaded => Self::Overloaded,
            other => Self::Partition(other),
        }
    }
}

/// The flow's own logs (request log, consumers) fail the same way its partition does.
impl From<LogError> for StoreError {
    fn from(e: LogError) -> Self {
        PartitionError::from(e).into()
    }
}

impl StoreError {
    /// The flow takes no writes now and will not until a restart or repair: its log
    /// failed (poisoned), is closed, or the store is shutting down.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Self::Partition(PartitionError::ReadOnly(_)) | Self::Unavailable(_)
        )
    }

    pub(crate) fn io(op: &'static str, path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Self::Io {
            op,
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}
