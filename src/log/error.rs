//! Typed errors. Callers match on variants; nobody parses strings.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::log::config::ConfigError;
use crate::log::offset::Offset;
use crate::log::record::LimitError;

/// Everything the storage engine can fail with. Cheap to clone: one failed group
/// commit hands the same error to every waiter.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("corruption in {file} at byte {position}: {reason}")]
    Corruption {
        file: PathBuf,
        position: u64,
        reason: String,
    },
    /// A directory or file that must exist does not (a partition of a known flow).
    #[error("{path} is missing: {reason}")]
    Missing { path: PathBuf, reason: String },
    /// A read failed (EIO on a bad sector, say): the file and the byte it failed at.
    #[error("cannot read {file} at byte {position}: {source}")]
    Unreadable {
        file: PathBuf,
        position: u64,
        #[source]
        source: Arc<io::Error>,
    },
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the log refuses appends until it is reopened: {reason}")]
    Poisoned { reason: String },
    #[error("the log is closed")]
    Closed,
    #[error("the writer queue is full")]
    Overloaded,
    #[error("offset {requested} is outside the retained range {first}..{next}")]
    OffsetOutOfRange {
        requested: Offset,
        first: Offset,
        next: Offset,
    },
}

impl LogError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// The OS error kind, for an I/O failure.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Self::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}
