//! The seam for a registry shared by several EventMesh nodes (cluster mode): flows,
//! workspaces and keys kept in one replicated place, so every node serves the same
//! flows. `StoreConfig::registry` is `None` on a single node; cluster mode's is NATS
//! KV (`partition/nats/registry.rs`). The store keeps writing its own files too: they
//! are this node's copy, brought up to date at start and by `watch`.
//!
//! Values are the same bytes the files hold: a flow as its `flow.json` (secrets sealed
//! under the installation secret, which every node must share: `--secret-file`), the
//! metadata as `meta.json`.

use std::fmt::Debug;
use std::sync::Arc;

/// What the registry held at start.
#[derive(Debug, Default, Clone)]
pub struct RegistrySnapshot {
    /// The metadata document, if any node has written one.
    pub meta: Option<Vec<u8>>,
    /// Every flow: (id, its flow document).
    pub flows: Vec<(String, Vec<u8>)>,
    /// A check value of the cluster's installation secret, if one was set.
    pub secret_check: Option<String>,
    /// Of the flow ids `load` was asked about, those another node deleted.
    pub deleted: Vec<String>,
}

/// A change another node made, with the registry's revision of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryChange {
    Meta {
        document: Vec<u8>,
        revision: u64,
    },
    Flow {
        id: String,
        document: Vec<u8>,
        revision: u64,
    },
    FlowDeleted {
        id: String,
        revision: u64,
    },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// Another node changed the entry since this one read it: re-read and retry.
    #[error("changed by another node at the same time; retry")]
    Conflict,
    #[error("the cluster registry failed: {0}")]
    Failed(String),
}

/// Called with each change another node makes, in the order they were made.
pub type ApplyChange = Arc<dyn Fn(RegistryChange) + Send + Sync>;

/// Flows, workspaces and keys shared by every node.
pub trait Registry: Send + Sync + Debug {
    /// Everything the registry holds now, and which of `local_ids` (the flows this
    /// node has) were deleted by another node.
    fn load(&self, local_ids: &[String]) -> Result<RegistrySnapshot, RegistryError>;
    /// Sets the secret check, only if none is set yet.
    fn init_secret_check(&self, check: &str) -> Result<(), RegistryError>;
    /// Replaces the metadata: `Conflict` if another node replaced it since this node
    /// last read or wrote it.
    fn put_meta(&self, document: &[u8]) -> Result<(), RegistryError>;
    /// The metadata as it is now (after a `Conflict`).
    fn reload_meta(&self) -> Result<Option<Vec<u8>>, RegistryError>;
    /// Writes a flow: with `create`, only if it does not exist; without, only if no
    /// other node changed it since this one last saw it (`Conflict` otherwise).
    fn put_flow(&self, id: &str, document: &[u8], create: bool) -> Result<(), RegistryError>;
    fn delete_flow(&self, id: &str) -> Result<(), RegistryError>;
    /// Whether this node has since written or read a newer revision of what `change`
    /// changes. The store asks under the lock its own writes of that thing hold, so a
    /// change that arrives late never overwrites a newer one.
    fn is_stale(&self, change: &RegistryChange) -> bool;
    /// Starts delivering other nodes' changes (made after `load`) to `apply`.
    fn watch(&self, apply: ApplyChange) -> Result<(), RegistryError>;
}

/// Consumers' committed offsets shared by every node (cluster mode): a commit on one
/// node is where a poll on any node reads from. `StoreConfig::offsets`.
pub trait SharedOffsets: Send + Sync + Debug {
    /// `name`'s committed offset in flow `flow`, as stored now.
    fn get(
        &self,
        flow: &str,
        name: &str,
    ) -> Result<Option<crate::store::consumers::ConsumerState>, RegistryError>;
    /// Every consumer of `flow`.
    fn list(
        &self,
        flow: &str,
    ) -> Result<Vec<(String, crate::store::consumers::ConsumerState)>, RegistryError>;
    /// Stores `state` for `name` with compare-and-set. With `forward_only` (a commit,
    /// not a seek), an offset below the stored one changes nothing: a late or retried
    /// commit never moves a consumer back. Returns what is stored after.
    fn commit(
        &self,
        flow: &str,
        name: &str,
        state: crate::store::consumers::ConsumerState,
        forward_only: bool,
    ) -> Result<crate::store::consumers::ConsumerState, RegistryError>;
    /// Forgets `name`; `false` if it was not there.
    fn delete(&self, flow: &str, name: &str) -> Result<bool, RegistryError>;
}
