//! The flow store: everything the HTTP server needs, with no HTTP types.
//!
//! One data directory holds it all:
//!
//! ```text
//! <data>/LOCK                    held while open (a second process fails at once)
//! <data>/secret                  installation secret (32 random bytes): key hashes, sealing
//! <data>/meta.json               workspaces, API keys (hashed): replaced atomically
//! <data>/journal/                the write-ahead journal every flow's logs ride
//! <data>/flows/<flowId>/flow.json   the flow's settings (secrets sealed): replaced atomically
//! <data>/flows/<flowId>/events/     the flow's partition (a Log)
//! <data>/flows/<flowId>/requests/   its request log (a Log)
//! <data>/flows/<flowId>/consumers/  its consumers' commits (a Log)
//! <data>/flows/<flowId>/analytics.ckpt  analytics state + offsets (derived)
//! ```
//!
//! Directory names are ids we generated, never text from a request.

pub mod admin;
pub mod analytics;
mod cluster;
pub mod consumers;
pub mod dedup;
pub mod error;
pub mod event;
pub mod flow;
pub mod flow_file;
pub mod flows;
pub mod ids;
pub mod keys;
pub mod limits;
pub mod meta;
mod opening;
pub mod partition;
pub mod registry;
pub mod requests;
pub mod seal;
mod upkeep;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

pub use admin::{KeyAuth, KeyRefusal, NewKey};
pub use error::StoreError;
pub use event::{EventInput, StoredEvent};
pub use flow::{ConsumerView, Flow, FlowHealth, FlowStats, IngestOutcome, Page, Polled, SeekTo};
pub use flows::{FlowPatch, NewFlow};
pub use limits::*;

use crate::log::journal::{Journal, JournalConfig};
use crate::log::storage::{DirLock, StdStorage, Storage};
use crate::log::{Clock, FsyncPolicy, LogConfig, SystemClock};
use admin::{load_or_create_secret, restrict_secrets};
use meta::{FlowRecord, Metadata, Workspace};
use partition::{LogBackend, PartitionBackend};

const SECRET_FILE: &str = "secret";
const FLOWS_DIR: &str = "flows";

/// How the store is set up. Every field has a documented default (`StoreConfig::new`).
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    /// Durability of event appends. Default `Always`.
    pub fsync: FsyncPolicy,
    /// The admin key to use; default: keep the stored one, or generate one on first start.
    pub admin_key: Option<String>,
    /// Segment size of event logs. Default 128 MiB.
    pub segment_bytes: u64,
    /// Where the installation secret lives; default `<data>/secret`. Elsewhere, a copy
    /// of the data directory alone opens no flow secret (docs/durability.md).
    pub secret_file: Option<PathBuf>,
    pub storage: Arc<dyn Storage>,
    pub clock: Arc<dyn Clock>,
    /// Where flows' events live. Default `None`: a `Log` per flow on `storage`
    /// (`partition::LogBackend`).
    pub partitions: Option<Arc<dyn PartitionBackend>>,
    /// Whether every flow's logs ride one store-wide journal (`<data>/journal/`, one
    /// fdatasync per group of all flows; docs/design-journal.md). Default true. Off,
    /// each log has its own writer thread and fdatasyncs its own file.
    pub journal: bool,
    /// When each flow's logs are opened. Default `AtStart`; the server uses `OnDemand`.
    pub flow_opening: FlowOpening,
    /// Cluster mode: flows, workspaces and keys shared with other nodes (NATS KV).
    /// Default `None`: this node's files alone.
    pub registry: Option<Arc<dyn registry::Registry>>,
    /// Cluster mode: consumers' committed offsets shared with other nodes (NATS KV).
    /// Default `None`: each flow's consumer log on this node.
    pub offsets: Option<Arc<dyn registry::SharedOffsets>>,
}

/// When a store opens its flows' logs (their settings are always read at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowOpening {
    /// Every flow before `Store::open` returns: a damaged one is quarantined by then.
    /// Start-up grows with the flow count.
    AtStart,
    /// Each flow on its first use (a request waits for that flow alone), and the rest
    /// through `Store::open_pending`, which the server runs in the background. Start-up
    /// costs one small file per flow; a damaged flow is quarantined when it is opened.
    OnDemand,
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            fsync: FsyncPolicy::Always,
            admin_key: None,
            segment_bytes: crate::log::limits::SEGMENT_BYTES_DEFAULT,
            secret_file: None,
            storage: Arc::new(StdStorage),
            clock: Arc::new(SystemClock),
            partitions: None,
            journal: true,
            flow_opening: FlowOpening::AtStart,
            registry: None,
            offsets: None,
        }
    }

    /// The installation secret's file: `secret_file`, or `<data>/secret`.
    fn secret_path(&self) -> PathBuf {
        self.secret_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join(SECRET_FILE))
    }

    fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes,
            fsync: self.fsync,
            clock: Arc::clone(&self.clock),
            ..LogConfig::default()
        }
    }
}

#[derive(Debug)]
struct Inner {
    config: StoreConfig,
    /// Opens each flow's event partition (`config.partitions`, or the engine's `Log`).
    partitions: Arc<dyn PartitionBackend>,
    /// The installation secret keyed into HMAC, for key hashes.
    hasher: keys::KeyHasher,
    /// Seals flow secrets in the flow files.
    sealer: seal::Sealer,
    meta: Mutex<Metadata>,
    /// Every flow's settings (open or quarantined), as in its `flow.json`.
    records: RwLock<HashMap<String, FlowRecord>>,
    /// Held while a flow is created, changed or deleted: one such change at a time, so
    /// the count under `FLOWS_MAX` and each flow file's contents stay in step.
    flow_changes: Mutex<()>,
    flows: RwLock<HashMap<String, Arc<Flow>>>,
    /// Flows whose logs are being opened on demand, each with the lock its opener holds
    /// (`opening.rs`): a second request for the same flow waits on it, no other does.
    opening: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Flows not opened yet, for `open_pending` (the background opener), in id order.
    unopened: Mutex<std::collections::VecDeque<String>>,
    /// Set at shutdown: `open_pending` opens no more.
    stopping: std::sync::atomic::AtomicBool,
    /// Quarantined flows: their `flow.json` or their logs could not be opened.
    /// Flow id → why (the file and byte position). Every other flow serves.
    unavailable: RwLock<HashMap<String, String>>,
    /// Of those, the flows whose opening failed only because the backend did not
    /// answer in time (cluster mode: NATS without a leader): the next use opens them
    /// again instead of keeping them quarantined until restart.
    unavailable_for_now: Mutex<std::collections::HashSet<String>>,
    /// Deleted flows whose directories are still to be removed.
    pending_removal: Mutex<Vec<String>>,
    /// Deleted flows that a request may still hold: their files go only once the last
    /// holder lets go, so no append is in flight when they are unlinked.
    deleting: Mutex<HashMap<String, std::sync::Weak<Flow>>>,
    webhooks: RwLock<HashMap<String, String>>,
    generated_admin_key: Option<String>,
    /// Every flow's logs ride it (with `config.journal`); stopped once they are closed.
    journal: Option<Journal>,
    /// The configuration each flow's logs derive theirs from, the journal included.
    log_config: LogConfig,
    /// How many changes from other nodes were applied (cluster mode), watched.
    registry_applied: tokio::sync::watch::Sender<u64>,
    _lock: Box<dyn DirLock>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Close the flows' logs through the journal, then stop it (a last checkpoint).
        self.flows.get_mut().clear();
        if let Some(journal) = &self.journal {
            journal.stop();
        }
    }
}

/// The flow store. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Opens the data directory (creating it on first start) and every flow in it.
    pub fn open(config: StoreConfig) -> Result<Self, StoreError> {
        let storage = Arc::clone(&config.storage);
        let dir = config.data_dir.clone();
        create_dir_durably(&*storage, &dir)?;
        let lock = storage
            .lock_dir(&dir)
            .map_err(|e| StoreError::io("lock", &dir, e))?;
        let secret_path = config.secret_path();
        let hasher = keys::KeyHasher::new(&load_or_create_secret(&*storage, &dir, &secret_path)?);
        let sealer = seal::Sealer::new(&hasher);
        restrict_secrets(&*storage, &dir, &secret_path);
        let (doc, generated_admin_key) = match meta::load(&*storage, &dir, &sealer)? {
            Some(doc) => (doc, None),
            None => first_metadata(&config, &hasher)?,
        };
        let meta::Document {
            mut meta,
            flows: legacy_flows,
            deleted_flows: legacy_deleted,
        } = doc;
        if let Some(k) = &config.admin_key {
            keys::check_admin_key(k).map_err(StoreError::Invalid)?;
            meta.admin_key_hash = hasher.hash(k);
        }
        create_dir_durably(&*storage, &dir.join(FLOWS_DIR))?;
        // A version 1 or 2 document's flows become flow files before the document is
        // saved without them: a crash in between redoes it from the old document.
        migrate_flows(&*storage, &dir, &legacy_flows, &legacy_deleted, &sealer)?;
        // Cluster mode: the registry's metadata and flows win over this node's files.
        let only_here = match &config.registry {
            Some(registry) => cluster::sync_at_start(
                &*storage,
                &dir,
                &**registry,
                &hasher,
                &mut meta,
                config.admin_key.is_some(),
            )?,
            None => Vec::new(),
        };
        meta::save(&*storage, &dir, &meta)?;
        let partitions = config
            .partitions
            .clone()
            .unwrap_or_else(|| Arc::new(LogBackend::new(Arc::clone(&storage))));
        let journal = match config.journal {
            true => Some(open_journal(&config)?),
            false => None,
        };
        let log_config = LogConfig {
            journal: journal.clone(),
            ..config.log_config()
        };
        let mut opened = read_flows(&config, &sealer)?;
        for id in only_here {
            if let Some(record) = opened.records.remove(&id) {
                opened.webhooks.remove(&record.webhook_id);
                opened.unopened.retain(|u| *u != id);
                quarantine(&mut opened, id.clone(), cluster::not_in_registry(&id));
            }
        }
        let at_start = config.flow_opening == FlowOpening::AtStart;
        let store = Self {
            inner: Arc::new(Inner {
                config,
                partitions,
                hasher,
                sealer,
                meta: Mutex::new(meta),
                records: RwLock::new(opened.records),
                flow_changes: Mutex::new(()),
                flows: RwLock::new(HashMap::new()),
                opening: Mutex::new(HashMap::new()),
                unopened: Mutex::new(opened.unopened.into()),
                stopping: std::sync::atomic::AtomicBool::new(false),
                unavailable: RwLock::new(opened.unavailable),
                unavailable_for_now: Mutex::new(std::collections::HashSet::new()),
                pending_removal: Mutex::new(opened.removals),
                deleting: Mutex::new(HashMap::new()),
                webhooks: RwLock::new(opened.webhooks),
                generated_admin_key,
                journal,
                log_config,
                registry_applied: tokio::sync::watch::Sender::new(0),
                _lock: lock,
            }),
        };
        if at_start {
            store.open_all_now();
        }
        store.remove_deleted_flows()?;
        store.watch_registry()?;
        Ok(store)
    }

    /// The admin key generated on this first start, to print once.
    pub fn generated_admin_key(&self) -> Option<&str> {
        self.inner.generated_admin_key.as_deref()
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.config.data_dir
    }

    pub fn now_ms(&self) -> i64 {
        self.inner.config.clock.now_ms()
    }

    fn storage(&self) -> &dyn Storage {
        &*self.inner.config.storage
    }

    /// Applies `change` to a copy of the metadata, saves it durably, then adopts it.
    /// In cluster mode the registry takes it first; if another node's change came
    /// first, the change is made again on that node's metadata.
    fn mutate<T>(
        &self,
        mut change: impl FnMut(&mut Metadata) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut meta = self.inner.meta.lock();
        let mut tries = 0;
        loop {
            let mut next = meta.clone();
            let out = change(&mut next)?;
            match self.registry_put_meta(&next) {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) if tries < cluster::REGISTRY_CONFLICT_RETRIES => {
                    tries += 1;
                    if let Some(fresh) = self.registry_fresh_meta()? {
                        meta::save(self.storage(), self.data_dir(), &fresh)?;
                        *meta = fresh;
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
            meta::save(self.storage(), self.data_dir(), &next)?;
            *meta = next;
            return Ok(out);
        }
    }

    /// The journal's counters and the files its logs hold (none without a journal).
    pub fn journal_stats(&self) -> Option<crate::log::journal::JournalStats> {
        self.inner.journal.as_ref().map(|j| j.stats())
    }

    pub fn metadata(&self) -> Metadata {
        self.inner.meta.lock().clone()
    }
}

/// The metadata of a new data directory: the default workspace and the admin key (the
/// configured one, or one generated now and returned to print once).
fn first_metadata(
    config: &StoreConfig,
    hasher: &keys::KeyHasher,
) -> Result<(meta::Document, Option<String>), StoreError> {
    let (admin, generated) = match &config.admin_key {
        Some(k) => (k.clone(), None),
        None => {
            let k = keys::new_admin_key()?;
            (k.clone(), Some(k))
        }
    };
    let meta = Metadata {
        version: meta::META_VERSION,
        admin_key_hash: hasher.hash(&admin),
        workspaces: vec![Workspace {
            id: ids::DEFAULT_WORKSPACE_ID.into(),
            name: "default".into(),
            created_at_ms: config.clock.now_ms(),
        }],
        keys: Vec::new(),
    };
    let doc = meta::Document {
        meta,
        flows: Vec::new(),
        deleted_flows: Vec::new(),
    };
    Ok((doc, generated))
}

/// Writes a version 1 or 2 document's flows as flow files (their directories made if
/// missing: such a flow is then quarantined, as it was), and marks its deleted flows'
/// directories for removal. Idempotent.
fn migrate_flows(
    storage: &dyn Storage,
    dir: &Path,
    flows: &[FlowRecord],
    deleted: &[String],
    sealer: &seal::Sealer,
) -> Result<(), StoreError> {
    for flow in flows {
        if !ids::is_token(&flow.id, ids::FLOW_PREFIX, ids::FLOW_ID_BYTES) {
            return Err(StoreError::Damaged {
                path: meta::meta_path(dir).display().to_string(),
                message: format!("flow id {:?} is not one of ours", flow.id),
            });
        }
        let flow_dir = dir.join(FLOWS_DIR).join(&flow.id);
        create_dir_durably(storage, &flow_dir)?;
        flow_file::save(storage, &flow_dir, flow, sealer)?;
    }
    for id in deleted {
        let flow_dir = dir.join(FLOWS_DIR).join(id);
        if ids::is_token(id, ids::FLOW_PREFIX, ids::FLOW_ID_BYTES) && storage.exists(&flow_dir) {
            flow_file::mark_deleted(storage, &flow_dir)?;
        }
    }
    if !flows.is_empty() {
        tracing::info!(
            flows = flows.len(),
            "flows moved from meta.json into their flow files"
        );
    }
    Ok(())
}

/// The flows found at start.
struct OpenedFlows {
    records: HashMap<String, FlowRecord>,
    /// Quarantined: flow id → why.
    unavailable: HashMap<String, String>,
    /// Webhook id → flow id.
    webhooks: HashMap<String, String>,
    /// Directories of deleted flows, to remove.
    removals: Vec<String>,
    /// Flows with settings, by id: their logs are not open yet (`opening.rs`).
    unopened: Vec<String>,
}

/// Reads every flow directory's flow file under `<data>/flows/`; the flows' logs are
/// opened by `opening.rs` (all at once with `FlowOpening::AtStart`). One damaged flow
/// never stops the others: it is quarantined.
fn read_flows(config: &StoreConfig, sealer: &seal::Sealer) -> Result<OpenedFlows, StoreError> {
    let storage = &*config.storage;
    let flows_dir = config.data_dir.join(FLOWS_DIR);
    let mut ids: Vec<String> = storage
        .list(&flows_dir)
        .map_err(|e| StoreError::io("list", &flows_dir, e))?
        .into_iter()
        .filter(|name| ids::is_token(name, ids::FLOW_PREFIX, ids::FLOW_ID_BYTES))
        .collect();
    ids.sort();
    let found = in_parallel(&ids, |id| {
        flow_file::find(storage, &flows_dir.join(id), sealer)
    });
    let mut out = OpenedFlows {
        records: HashMap::new(),
        unavailable: HashMap::new(),
        webhooks: HashMap::new(),
        removals: Vec::new(),
        unopened: Vec::new(),
    };
    for (id, found) in ids.into_iter().zip(found) {
        match found {
            Some(flow_file::Found::Flow(record)) => {
                out.webhooks.insert(record.webhook_id.clone(), id.clone());
                out.records.insert(id.clone(), *record);
                out.unopened.push(id);
            }
            Some(flow_file::Found::Damaged(why)) => quarantine(&mut out, id, why),
            Some(flow_file::Found::Deleted) => {
                tracing::info!(flow = %id, "a deleted flow's directory is removed");
                out.removals.push(id);
            }
            Some(flow_file::Found::Unfinished) => {
                let why = format!(
                    "{} is missing (damage: it is not a creation cut short); its files are \
                     kept (DELETE the flow to remove them)",
                    flows_dir.join(&id).join(flow_file::FLOW_FILE).display()
                );
                quarantine(&mut out, id, why);
            }
            None => quarantine(&mut out, id, "a flow-opening thread panicked".into()),
        }
    }
    Ok(out)
}

/// Quarantines flow `id` found damaged at start.
fn quarantine(out: &mut OpenedFlows, id: String, why: String) {
    log_quarantined(&id, &why);
    out.unavailable.insert(id, why);
}

/// The one log line of a flow put in quarantine, at start or when it opens.
fn log_quarantined(id: &str, why: &str) {
    tracing::error!(
        flow = %id,
        error = %why,
        "flow quarantined: its files cannot be opened; it answers 503 until repaired"
    );
}

/// Threads that read (and with `AtStart` open) the flows at start; they end once done.
const OPEN_THREADS: usize = 16;

/// `f` over every item on up to `OPEN_THREADS` threads, results in order. Opening is
/// mostly waiting for the disk (a flow file, a scan of each log's last segment, syncs
/// after an unclean stop), and the device serves many such requests together. `None`
/// for the items of a thread that panicked.
fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<Option<R>> {
    let per = items.len().div_ceil(OPEN_THREADS).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let parts: Vec<_> = items
            .chunks(per)
            .map(|chunk| {
                let handle = scope.spawn(move || chunk.iter().map(f).collect::<Vec<_>>());
                (chunk.len(), handle)
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|(len, part)| match part.join() {
                Ok(done) => done.into_iter().map(Some).collect::<Vec<_>>(),
                Err(_) => (0..len).map(|_| None).collect(),
            })
            .collect()
    })
}

/// Opens flow `record`'s files under `<data>/flows/<id>/` (made, with `create`).
fn open_flow(
    config: &StoreConfig,
    base: &LogConfig,
    partitions: &dyn PartitionBackend,
    record: &FlowRecord,
    create: bool,
) -> Result<Flow, StoreError> {
    Flow::open(
        record.clone(),
        config.data_dir.join(FLOWS_DIR).join(&record.id),
        Arc::clone(&config.storage),
        partitions,
        base,
        flow::Creating {
            flow: create,
            // Cluster mode: a flow another node made has no local logs here yet.
            local_logs: create || config.registry.is_some(),
        },
        config.offsets.clone(),
    )
}

/// Opens the store-wide journal in `<data>/journal/` and replays it into the flows'
/// logs, before any of them is opened.
fn open_journal(config: &StoreConfig) -> Result<Journal, StoreError> {
    let (journal, report) = Journal::open(JournalConfig::new(
        &config.data_dir,
        Arc::clone(&config.storage),
        config.log_config(),
    ))?;
    if report.entries > 0 {
        tracing::info!(
            entries = report.entries,
            bytes = report.bytes,
            segments = report.files,
            skipped = report.skipped,
            "journal replayed into the flows' logs"
        );
    }
    Ok(journal)
}

/// Resolves once `stop` turns true; never, if its sender is gone without that.
pub async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Creates `dir` if it is missing and makes its name durable in its parent.
fn create_dir_durably(storage: &dyn Storage, dir: &Path) -> Result<(), StoreError> {
    if storage.exists(dir) {
        return Ok(());
    }
    storage
        .create_dir_all(dir)
        .map_err(|e| StoreError::io("create", dir, e))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    storage
        .sync_dir(parent)
        .map_err(|e| StoreError::io("fsync directory", parent, e))
}
