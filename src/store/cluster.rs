//! Cluster mode in the store: this node's files kept as a copy of the shared registry
//! (`registry.rs`). At start the registry wins: its metadata and flows are written
//! here, a flow another node deleted is removed here, and a flow only this node has
//! is quarantined (never deleted unasked). Each change this node makes goes to the
//! registry first (its commit point across nodes), then to the files; each change
//! another node makes arrives through `watch` and is applied here
//! (`Store::apply_registry_change`).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use crate::store::error::StoreError;
use crate::store::keys::KeyHasher;
use crate::store::meta::{self, FlowRecord, Metadata};
use crate::store::registry::{Registry, RegistryChange, RegistryError};
use crate::store::{create_dir_durably, flow_file, ids, Store, FLOWS_DIR};

/// What the check value of the installation secret is an HMAC of.
const SECRET_CHECK_CONTEXT: &str = "eventmesh cluster installation secret check v1";
/// How often a metadata change is tried again after another node's change won.
pub(super) const REGISTRY_CONFLICT_RETRIES: usize = 5;

impl From<RegistryError> for StoreError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Conflict => Self::Conflict(e.to_string()),
            RegistryError::Failed(m) => Self::Unavailable(format!("the cluster registry: {m}")),
        }
    }
}

/// Flows found here at start that the registry does not know: quarantined with this.
pub(super) fn not_in_registry(id: &str) -> String {
    format!(
        "flow {id} is in this node's data directory but not in the cluster registry: \
         another node never saw it (it was made in single-node mode, or the registry \
         lost it); delete it here, or copy its events into the cluster"
    )
}

/// Brings this node's metadata and flow files up to date with the registry, before
/// the store reads them. Returns the flows only this node has (to quarantine).
pub(super) fn sync_at_start(
    storage: &dyn crate::log::storage::Storage,
    data_dir: &Path,
    registry: &dyn Registry,
    hasher: &KeyHasher,
    meta: &mut Metadata,
    admin_key_given: bool,
) -> Result<Vec<String>, StoreError> {
    let flows_dir = data_dir.join(FLOWS_DIR);
    let local: Vec<String> = storage
        .list(&flows_dir)
        .map_err(|e| StoreError::io("list", &flows_dir, e))?
        .into_iter()
        .filter(|n| ids::is_token(n, ids::FLOW_PREFIX, ids::FLOW_ID_BYTES))
        .filter(|n| storage.exists(&flows_dir.join(n).join(flow_file::FLOW_FILE)))
        .collect();
    let snap = registry.load(&local)?;
    check_secret(registry, snap.secret_check.as_deref(), hasher)?;
    let registry_name = Path::new("cluster registry: meta");
    let fresh = snap.meta.is_none();
    match &snap.meta {
        Some(document) => {
            let mut theirs = meta::decode(document, registry_name)?;
            if admin_key_given && theirs.admin_key_hash != meta.admin_key_hash {
                // --admin-key sets the cluster's admin key.
                theirs.admin_key_hash = meta.admin_key_hash.clone();
                registry.put_meta(&meta::encode(&theirs)?)?;
            }
            *meta = theirs;
        }
        None => match registry.put_meta(&meta::encode(meta)?) {
            Ok(()) => {}
            // Another node seeded it first: take its metadata.
            Err(RegistryError::Conflict) => {
                if let Some(document) = registry.reload_meta()? {
                    *meta = meta::decode(&document, registry_name)?;
                }
            }
            Err(e) => return Err(e.into()),
        },
    }
    let known: HashSet<&str> = snap.flows.iter().map(|(id, _)| id.as_str()).collect();
    for (id, document) in &snap.flows {
        if !ids::is_token(id, ids::FLOW_PREFIX, ids::FLOW_ID_BYTES) {
            tracing::warn!(flow = %id, "the cluster registry holds a flow id that is not one of ours; skipped");
            continue;
        }
        write_flow_file(storage, &flows_dir.join(id), document)?;
    }
    let mut only_here = Vec::new();
    for id in local.iter().filter(|id| !known.contains(id.as_str())) {
        let dir = flows_dir.join(id);
        if snap.deleted.contains(id) {
            tracing::info!(flow = %id, "the flow was deleted on another node; its files here go");
            flow_file::mark_deleted(storage, &dir)?;
        } else if fresh {
            // A new registry: this node's flows seed it (single node → cluster).
            let document =
                crate::log::storage::read_to_vec(storage, &dir.join(flow_file::FLOW_FILE))
                    .map_err(|e| StoreError::io("read", &dir, e))?;
            registry.put_flow(id, &document, true)?;
        } else {
            only_here.push(id.clone());
        }
    }
    Ok(only_here)
}

/// Refuses a node whose installation secret is not the cluster's: its key hashes and
/// sealed flow secrets would match nothing the others wrote.
fn check_secret(
    registry: &dyn Registry,
    theirs: Option<&str>,
    hasher: &KeyHasher,
) -> Result<(), StoreError> {
    let ours = hasher.hash(SECRET_CHECK_CONTEXT);
    let theirs = match theirs {
        Some(t) => t.to_owned(),
        None => match registry.init_secret_check(&ours) {
            Ok(()) => return Ok(()),
            Err(RegistryError::Conflict) => registry
                .load(&[])?
                .secret_check
                .unwrap_or_else(|| ours.clone()),
            Err(e) => return Err(e.into()),
        },
    };
    match theirs == ours {
        true => Ok(()),
        false => Err(StoreError::Invalid(
            "this node's installation secret is not the cluster's: start every node with \
             the same --secret-file (32 bytes; key hashes and sealed flow secrets use it)"
                .into(),
        )),
    }
}

/// Writes a registry flow document as the flow's `flow.json`, making its directory if
/// this node has none yet (its logs are made when the flow opens). Unchanged files are
/// not rewritten.
fn write_flow_file(
    storage: &dyn crate::log::storage::Storage,
    dir: &Path,
    document: &[u8],
) -> Result<(), StoreError> {
    create_dir_durably(storage, dir)?;
    let path = dir.join(flow_file::FLOW_FILE);
    if crate::log::storage::read_to_vec(storage, &path).is_ok_and(|have| have == document) {
        return Ok(());
    }
    flow_file::write(storage, dir, document)
}

impl Store {
    fn registry(&self) -> Option<&Arc<dyn Registry>> {
        self.inner.config.registry.as_ref()
    }

    /// The registry's copy of a flow first (cluster mode): the commit point across
    /// nodes. A no-op on a single node.
    pub(super) fn registry_put_flow(
        &self,
        record: &FlowRecord,
        create: bool,
    ) -> Result<(), StoreError> {
        let Some(registry) = self.registry() else {
            return Ok(());
        };
        let document = flow_file::encode(record, &self.inner.sealer)?;
        Ok(registry.put_flow(&record.id, &document, create)?)
    }

    pub(super) fn registry_delete_flow(&self, id: &str) -> Result<(), StoreError> {
        match self.registry() {
            Some(registry) => Ok(registry.delete_flow(id)?),
            None => Ok(()),
        }
    }

    /// Saves changed metadata to the registry (cluster mode). `Conflict` when another
    /// node's change came first (`registry_fresh_meta` then gives what to retry on).
    pub(super) fn registry_put_meta(&self, next: &Metadata) -> Result<(), StoreError> {
        match self.registry() {
            Some(registry) => Ok(registry.put_meta(&meta::encode(next)?)?),
            None => Ok(()),
        }
    }

    /// The metadata as the registry has it now (after a conflict), if any.
    pub(super) fn registry_fresh_meta(&self) -> Result<Option<Metadata>, StoreError> {
        let Some(registry) = self.registry() else {
            return Ok(None);
        };
        match registry.reload_meta()? {
            Some(document) => Ok(Some(meta::decode(
                &document,
                Path::new("cluster registry: meta"),
            )?)),
            None => Ok(None),
        }
    }

    /// Starts applying other nodes' changes (cluster mode; a no-op otherwise).
    pub(super) fn watch_registry(&self) -> Result<(), StoreError> {
        let Some(registry) = self.registry() else {
            return Ok(());
        };
        let weak = Arc::downgrade(&self.inner);
        registry.watch(Arc::new(move |change| {
            if let Some(inner) = weak.upgrade() {
                let store = Store { inner };
                if let Err(e) = store.apply_registry_change(change) {
                    tracing::warn!(error = %e, "a change from another node could not be applied here");
                }
                store.inner.registry_applied.send_modify(|n| *n += 1);
            }
        }))?;
        Ok(())
    }

    /// Counts the changes from other nodes applied so far (cluster mode): wait on it
    /// to see another node's change here.
    pub fn registry_changes_applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.registry_applied.subscribe()
    }

    /// Applies a change another node made: this node's files and registry follow.
    pub fn apply_registry_change(&self, change: RegistryChange) -> Result<(), StoreError> {
        let Some(registry) = self.registry() else {
            return Ok(());
        };
        match &change {
            RegistryChange::Meta { document, .. } => {
                let theirs = meta::decode(document, Path::new("cluster registry: meta"))?;
                let mut meta = self.inner.meta.lock();
                if *meta != theirs && !registry.is_stale(&change) {
                    meta::save(self.storage(), self.data_dir(), &theirs)?;
                    *meta = theirs;
                }
                Ok(())
            }
            RegistryChange::Flow { id, document, .. } => {
                self.adopt_flow(registry, &change, id, document)
            }
            RegistryChange::FlowDeleted { id, .. } => {
                let _changing = self.inner.flow_changes.lock();
                if self.inner.records.read().contains_key(id) && !registry.is_stale(&change) {
                    self.forget_flow(id)?;
                }
                Ok(())
            }
        }
    }

    /// A flow another node created or changed: its file here, then the registry.
    fn adopt_flow(
        &self,
        registry: &Arc<dyn Registry>,
        change: &RegistryChange,
        id: &str,
        document: &[u8],
    ) -> Result<(), StoreError> {
        if !ids::is_token(id, ids::FLOW_PREFIX, ids::FLOW_ID_BYTES) {
            return Ok(());
        }
        let dir = self.data_dir().join(FLOWS_DIR).join(id);
        let record = flow_file::decode(
            document,
            &dir.join(flow_file::FLOW_FILE),
            &self.inner.sealer,
        )?;
        let _changing = self.inner.flow_changes.lock();
        if self.inner.records.read().get(id) == Some(&record) || registry.is_stale(change) {
            return Ok(());
        }
        write_flow_file(self.storage(), &dir, document)?;
        let old = self
            .inner
            .records
            .write()
            .insert(id.to_owned(), record.clone());
        let mut webhooks = self.inner.webhooks.write();
        if let Some(old) = old.filter(|o| o.webhook_id != record.webhook_id) {
            webhooks.remove(&old.webhook_id);
        }
        webhooks.insert(record.webhook_id.clone(), id.to_owned());
        drop(webhooks);
        if let Some(flow) = self.inner.flows.read().get(id) {
            flow.set_record(record);
        }
        Ok(())
    }
}
