//! The flow store: everything the HTTP server needs, with no HTTP types.
//!
//! One data directory holds it all:
//!
//! ```text
//! <data>/LOCK                    held while open (a second process fails at once)
//! <data>/secret                  installation secret (32 random bytes): key hashes, sealing
//! <data>/meta.json               workspaces, API keys (hashed), flows: replaced atomically
//! <data>/flows/<flowId>/events/     the flow's partition (a Log)
//! <data>/flows/<flowId>/requests/   its request log (a Log)
//! <data>/flows/<flowId>/consumers/  its consumers' commits (a Log)
//! <data>/flows/<flowId>/analytics.ckpt  analytics state + offsets (derived)
//! ```
//!
//! Directory names are ids we generated, never text from a request.

pub mod analytics;
pub mod consumers;
pub mod dedup;
pub mod error;
pub mod event;
pub mod flow;
pub mod ids;
pub mod keys;
pub mod meta;
pub mod partition;
pub mod requests;
pub mod seal;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

pub use error::StoreError;
pub use event::{EventInput, StoredEvent};
pub use flow::{Flow, IngestOutcome};

use crate::log::storage::{read_to_vec, write_atomic, DirLock, StdStorage, Storage};
use crate::log::{Clock, FsyncPolicy, LogConfig, Offset, SystemClock};
use analytics::{Report, Window};
use consumers::ConsumerState;
use meta::{
    ApiKeyRecord, FlowRecord, Metadata, PreviousKey, PreviousSecret, RateLimit, RetentionConfig,
    Scope, SignatureConfig, SignatureScheme, Workspace,
};

/// Most flows one installation holds.
pub const FLOWS_MAX: usize = 10_000;
/// Most API keys one installation holds.
pub const KEYS_MAX: usize = 10_000;
/// Most workspaces one installation holds.
pub const WORKSPACES_MAX: usize = 1_000;
/// Longest name of a flow, key or workspace, in bytes.
pub const NAME_BYTES_MAX: usize = 128;
/// Default dedup window (24 h) and its limits (1 s to 30 days).
pub const DEDUP_WINDOW_SECONDS_DEFAULT: u64 = 86_400;
pub const DEDUP_WINDOW_SECONDS_MAX: u64 = 30 * 86_400;
/// Default rate limit of a new flow.
pub const RATE_LIMIT_DEFAULT: RateLimit = RateLimit {
    per_second: 100,
    burst: 100,
};
pub const RATE_LIMIT_PER_SECOND_MAX: u32 = 1_000_000;
/// A replaced signature secret stays valid this long.
pub const SECRET_ROTATION_GRACE_MS: i64 = 24 * 3600 * 1000;
/// Default grace period of a rotated API key.
pub const KEY_ROTATION_GRACE_SECONDS_DEFAULT: u64 = 3600;
/// Longest grace period of a rotated API key (30 days).
pub const KEY_ROTATION_GRACE_SECONDS_MAX: u64 = 30 * 86_400;
/// Shortest retention a flow may ask for.
pub const RETENTION_MIN_AGE_SECONDS: u64 = 60;
pub const RETENTION_MIN_BYTES: u64 = 1024 * 1024;
/// Longest JSON pointer for `dedupKeyPointer`, in bytes.
pub const DEDUP_KEY_POINTER_BYTES_MAX: usize = 256;
/// Longest long-poll wait.
pub const POLL_WAIT_MS_MAX: u64 = 30_000;

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
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            fsync: FsyncPolicy::Always,
            admin_key: None,
            segment_bytes: crate::limits::SEGMENT_BYTES_DEFAULT,
            secret_file: None,
            storage: Arc::new(StdStorage),
            clock: Arc::new(SystemClock),
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

/// Who a presented API key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAuth {
    pub key_id: String,
    pub workspace_id: String,
    pub scopes: Vec<Scope>,
}

/// Why a presented key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    Unknown,
    Revoked,
    Expired,
}

/// A new flow's settings, as the API gives them.
#[derive(Debug, Clone, Default)]
pub struct NewFlow {
    pub name: String,
    pub workspace_id: Option<String>,
    pub scheme: Option<SignatureScheme>,
    pub secret: Option<String>,
    /// `None`: the default; `Some(None)`: no limit.
    pub rate_limit: Option<Option<RateLimit>>,
    pub dedup_window_seconds: Option<u64>,
    pub retention: Option<RetentionConfig>,
    pub dedup_key_pointer: Option<String>,
}

/// A flow change; each `Some` field is set.
#[derive(Debug, Clone, Default)]
pub struct FlowPatch {
    pub name: Option<String>,
    pub scheme: Option<SignatureScheme>,
    pub secret: Option<String>,
    pub rate_limit: Option<Option<RateLimit>>,
    pub dedup_window_seconds: Option<u64>,
    pub retention: Option<RetentionConfig>,
    pub dedup_key_pointer: Option<Option<String>>,
}

/// A new API key's settings.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub workspace_id: Option<String>,
    pub name: String,
    pub scopes: Option<Vec<Scope>>,
    pub env: Option<String>,
    pub expires_at_ms: Option<i64>,
}

/// Where a seek moves a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    Earliest,
    Latest,
    Offset(Offset),
    Timestamp(i64),
}

/// A consumer with its lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerView {
    pub name: String,
    pub committed_offset: u64,
    pub lag: u64,
    pub updated_at_ms: i64,
}

#[derive(Debug)]
struct Inner {
    config: StoreConfig,
    /// The installation secret keyed into HMAC, for key hashes.
    hasher: keys::KeyHasher,
    /// Seals flow secrets in `meta.json`.
    sealer: seal::Sealer,
    meta: Mutex<Metadata>,
    flows: RwLock<HashMap<String, Arc<Flow>>>,
    /// Quarantined flows: listed in the metadata, but their logs could not be opened.
    /// Flow id → why (the file and byte position). Every other flow serves.
    unavailable: RwLock<HashMap<String, String>>,
    /// Deleted flows that a request may still hold: their files go only once the last
    /// holder lets go, so no append is in flight when they are unlinked.
    deleting: Mutex<HashMap<String, std::sync::Weak<Flow>>>,
    webhooks: RwLock<HashMap<String, String>>,
    generated_admin_key: Option<String>,
    _lock: Box<dyn DirLock>,
}

/// The flow store. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

fn validate_name(what: &str, name: &str) -> Result<(), StoreError> {
    if name.trim().is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(StoreError::Invalid(format!(
            "{what} name must be 1 to {NAME_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

fn validate_rate_limit(r: Option<RateLimit>) -> Result<(), StoreError> {
    if let Some(r) = r {
        if r.per_second == 0 || r.per_second > RATE_LIMIT_PER_SECOND_MAX || r.burst == 0 {
            return Err(StoreError::Invalid(format!(
                "rateLimit needs perSecond 1..={RATE_LIMIT_PER_SECOND_MAX} and burst >= 1, or null for no limit"
            )));
        }
    }
    Ok(())
}

fn validate_window(s: u64) -> Result<(), StoreError> {
    if s == 0 || s > DEDUP_WINDOW_SECONDS_MAX {
        return Err(StoreError::Invalid(format!(
            "dedupWindowSeconds must be 1..={DEDUP_WINDOW_SECONDS_MAX}"
        )));
    }
    Ok(())
}

fn validate_retention(r: &RetentionConfig) -> Result<(), StoreError> {
    if r.max_age_seconds
        .is_some_and(|a| a < RETENTION_MIN_AGE_SECONDS)
        || r.max_bytes.is_some_and(|b| b < RETENTION_MIN_BYTES)
    {
        return Err(StoreError::Invalid(format!(
            "retention needs maxAgeSeconds >= {RETENTION_MIN_AGE_SECONDS} and maxBytes >= {RETENTION_MIN_BYTES}"
        )));
    }
    Ok(())
}

fn validate_pointer(p: &str) -> Result<(), StoreError> {
    if !(p.is_empty() || p.starts_with('/')) || p.len() > DEDUP_KEY_POINTER_BYTES_MAX {
        return Err(StoreError::Invalid(format!(
            "dedupKeyPointer must be a JSON pointer (\"/a/b\") of at most {DEDUP_KEY_POINTER_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

/// A signature secret for `scheme`, generated when the caller gives none.
fn new_secret(scheme: SignatureScheme) -> Result<String, StoreError> {
    use base64::Engine;
    Ok(match scheme {
        SignatureScheme::Standard => format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(ids::random_bytes(24)?)
        ),
        _ => ids::hex(&ids::random_bytes(32)?),
    })
}

fn validate_secret(scheme: SignatureScheme, secret: &str) -> Result<(), StoreError> {
    use base64::Engine;
    if secret.is_empty() || secret.len() > 512 {
        return Err(StoreError::Invalid(
            "a signature secret is 1 to 512 bytes".into(),
        ));
    }
    if scheme == SignatureScheme::Standard {
        let key = secret.strip_prefix("whsec_").unwrap_or(secret);
        if base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_err()
        {
            return Err(StoreError::Invalid(
                "a Standard Webhooks secret is whsec_ followed by base64".into(),
            ));
        }
    }
    Ok(())
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
        let now = config.clock.now_ms();
        let mut generated_admin_key = None;
        let mut meta = match meta::load(&*storage, &dir, &sealer)? {
            Some(m) => m,
            None => {
                let admin = match &config.admin_key {
                    Some(k) => k.clone(),
                    None => {
                        let k = keys::new_admin_key()?;
                        generated_admin_key = Some(k.clone());
                        k
                    }
                };
                Metadata {
                    version: meta::META_VERSION,
                    admin_key_hash: hasher.hash(&admin),
                    workspaces: vec![Workspace {
                        id: ids::DEFAULT_WORKSPACE_ID.into(),
                        name: "default".into(),
                        created_at_ms: now,
                    }],
                    keys: Vec::new(),
                    flows: Vec::new(),
                    deleted_flows: Vec::new(),
                }
            }
        };
        if let Some(k) = &config.admin_key {
            keys::check_admin_key(k).map_err(StoreError::Invalid)?;
            meta.admin_key_hash = hasher.hash(k);
        }
        meta::save(&*storage, &dir, &meta, &sealer)?;
        let flows_dir = dir.join(FLOWS_DIR);
        create_dir_durably(&*storage, &flows_dir)?;
        let mut flows = HashMap::new();
        let mut unavailable = HashMap::new();
        let mut webhooks = HashMap::new();
        for record in &meta.flows {
            webhooks.insert(record.webhook_id.clone(), record.id.clone());
            let opened = Flow::open(
                record.clone(),
                flows_dir.join(&record.id),
                Arc::clone(&storage),
                &config.log_config(),
                false,
            );
            match opened {
                Ok(flow) => {
                    flows.insert(record.id.clone(), Arc::new(flow));
                }
                // One damaged flow never stops the others: it is quarantined.
                Err(e) => {
                    tracing::error!(
                        flow = %record.id,
                        error = %e,
                        "flow quarantined: its logs cannot be opened; it answers 503 until repaired"
                    );
                    unavailable.insert(record.id.clone(), e.to_string());
                }
            }
        }
        let store = Self {
            inner: Arc::new(Inner {
                config,
                hasher,
                sealer,
                meta: Mutex::new(meta),
                flows: RwLock::new(flows),
                unavailable: RwLock::new(unavailable),
                deleting: Mutex::new(HashMap::new()),
                webhooks: RwLock::new(webhooks),
                generated_admin_key,
                _lock: lock,
            }),
        };
        store.remove_deleted_flows()?;
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
    fn mutate<T>(
        &self,
        change: impl FnOnce(&mut Metadata) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut meta = self.inner.meta.lock();
        let mut next = meta.clone();
        let out = change(&mut next)?;
        meta::save(self.storage(), self.data_dir(), &next, &self.inner.sealer)?;
        *meta = next;
        Ok(out)
    }

    pub fn metadata(&self) -> Metadata {
        self.inner.meta.lock().clone()
    }

    // ---- credentials -------------------------------------------------------------

    /// Whether `presented` is the admin key (constant-time comparison of hashes).
    pub fn is_admin(&self, presented: &str) -> bool {
        if presented.len() > keys::KEY_TEXT_MAX_CHARS {
            return false;
        }
        let hash = self.inner.hasher.hash(presented);
        keys::hashes_match(&hash, &self.inner.meta.lock().admin_key_hash)
    }

    /// Checks a presented API key.
    pub fn authenticate(&self, presented: &str) -> Result<KeyAuth, KeyRefusal> {
        let id = keys::key_id_of(presented).ok_or(KeyRefusal::Unknown)?;
        let hash = self.inner.hasher.hash(presented);
        let now = self.now_ms();
        let meta = self.inner.meta.lock();
        let record = meta
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(KeyRefusal::Unknown)?;
        let current = keys::hashes_match(&hash, &record.hash);
        let previous = record
            .previous
            .as_ref()
            .is_some_and(|p| p.valid_until_ms > now && keys::hashes_match(&hash, &p.hash));
        if !(current || previous) {
            return Err(KeyRefusal::Unknown);
        }
        if record.revoked_at_ms.is_some() {
            return Err(KeyRefusal::Revoked);
        }
        if record.expires_at_ms.is_some_and(|e| e <= now) {
            return Err(KeyRefusal::Expired);
        }
        Ok(KeyAuth {
            key_id: record.id.clone(),
            workspace_id: record.workspace_id.clone(),
            scopes: record.scopes.clone(),
        })
    }

    pub fn create_workspace(&self, name: &str) -> Result<Workspace, StoreError> {
        validate_name("workspace", name)?;
        let ws = Workspace {
            id: ids::token(ids::WORKSPACE_PREFIX, ids::WORKSPACE_ID_BYTES)?,
            name: name.to_owned(),
            created_at_ms: self.now_ms(),
        };
        self.mutate(|m| {
            if m.workspaces.len() >= WORKSPACES_MAX {
                return Err(StoreError::Limit(format!(
                    "at most {WORKSPACES_MAX} workspaces"
                )));
            }
            m.workspaces.push(ws.clone());
            Ok(ws)
        })
    }

    pub fn workspaces(&self) -> Vec<Workspace> {
        self.inner.meta.lock().workspaces.clone()
    }

    pub fn workspace_exists(&self, id: &str) -> bool {
        self.inner.meta.lock().workspaces.iter().any(|w| w.id == id)
    }

    /// Issues a key: (record, plaintext). The plaintext is never stored.
    pub fn create_key(&self, new: NewKey) -> Result<(ApiKeyRecord, String), StoreError> {
        validate_name("key", &new.name)?;
        let env = new.env.unwrap_or_else(|| "live".into());
        if env != "live" && env != "test" {
            return Err(StoreError::Invalid("env must be live or test".into()));
        }
        let scopes = new.scopes.unwrap_or_else(|| vec![Scope::Ingest]);
        if scopes.is_empty() {
            return Err(StoreError::Invalid("a key needs at least one scope".into()));
        }
        let workspace_id = new
            .workspace_id
            .unwrap_or_else(|| ids::DEFAULT_WORKSPACE_ID.into());
        let (id, plaintext) = keys::new_key(&env)?;
        let record = ApiKeyRecord {
            id,
            workspace_id,
            name: new.name,
            env,
            scopes,
            hash: self.inner.hasher.hash(&plaintext),
            previous: None,
            expires_at_ms: new.expires_at_ms,
            revoked_at_ms: None,
            created_at_ms: self.now_ms(),
        };
        let stored = self.mutate(|m| {
            if !m.workspaces.iter().any(|w| w.id == record.workspace_id) {
                return Err(StoreError::NotFound { what: "workspace" });
            }
            if m.keys.len() >= KEYS_MAX {
                return Err(StoreError::Limit(format!("at most {KEYS_MAX} API keys")));
            }
            m.keys.push(record.clone());
            Ok(record)
        })?;
        Ok((stored, plaintext))
    }

    pub fn keys(&self) -> Vec<ApiKeyRecord> {
        self.inner.meta.lock().keys.clone()
    }

    /// A new secret for key `id`; the old one stays valid for `grace_seconds`.
    pub fn rotate_key(
        &self,
        id: &str,
        grace_seconds: u64,
    ) -> Result<(ApiKeyRecord, String), StoreError> {
        let now = self.now_ms();
        let hasher = &self.inner.hasher;
        self.mutate(|m| {
            let record = m
                .keys
                .iter_mut()
                .find(|k| k.id == id && k.revoked_at_ms.is_none())
                .ok_or(StoreError::NotFound { what: "key" })?;
            let plaintext = keys::rotated_key(record)?;
            let grace_ms = i64::try_from(grace_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
            record.previous = Some(PreviousKey {
                hash: std::mem::replace(&mut record.hash, hasher.hash(&plaintext)),
                valid_until_ms: now.saturating_add(grace_ms),
            });
            Ok((record.clone(), plaintext))
        })
    }

    /// Revokes key `id` at once.
    pub fn revoke_key(&self, id: &str) -> Result<(), StoreError> {
        let now = self.now_ms();
        self.mutate(|m| {
            let record = m
                .keys
                .iter_mut()
                .find(|k| k.id == id && k.revoked_at_ms.is_none())
                .ok_or(StoreError::NotFound { what: "key" })?;
            record.revoked_at_ms = Some(now);
            Ok(())
        })
    }

    // ---- flows -------------------------------------------------------------------

    /// Creates a flow; returns it and its signature secret (shown this once).
    pub fn create_flow(&self, new: NewFlow) -> Result<(FlowRecord, Option<String>), StoreError> {
        validate_name("flow", &new.name)?;
        let scheme = new.scheme.unwrap_or(SignatureScheme::None);
        let secret = match (scheme, new.secret) {
            (SignatureScheme::None, _) => None,
            (s, Some(secret)) => {
                validate_secret(s, &secret)?;
                Some(secret)
            }
            (s, None) => Some(new_secret(s)?),
        };
        let rate_limit = new.rate_limit.unwrap_or(Some(RATE_LIMIT_DEFAULT));
        validate_rate_limit(rate_limit)?;
        let dedup_window_seconds = new
            .dedup_window_seconds
            .unwrap_or(DEDUP_WINDOW_SECONDS_DEFAULT);
        validate_window(dedup_window_seconds)?;
        let retention = new.retention.unwrap_or_default();
        validate_retention(&retention)?;
        if let Some(p) = &new.dedup_key_pointer {
            validate_pointer(p)?;
        }
        let record = FlowRecord {
            id: ids::token(ids::FLOW_PREFIX, ids::FLOW_ID_BYTES)?,
            workspace_id: new
                .workspace_id
                .unwrap_or_else(|| ids::DEFAULT_WORKSPACE_ID.into()),
            name: new.name,
            webhook_id: ids::token(ids::WEBHOOK_PREFIX, ids::WEBHOOK_ID_BYTES)?,
            signature: SignatureConfig {
                scheme,
                secret: secret.clone(),
                previous: None,
            },
            rate_limit,
            dedup_window_seconds,
            retention,
            dedup_key_pointer: new.dedup_key_pointer.filter(|p| !p.is_empty()),
            created_at_ms: self.now_ms(),
        };
        if !self.workspace_exists(&record.workspace_id) {
            return Err(StoreError::NotFound { what: "workspace" });
        }
        if self.inner.meta.lock().flows.len() >= FLOWS_MAX {
            return Err(StoreError::Limit(format!("at most {FLOWS_MAX} flows")));
        }
        // Open the files first: a flow is in the registry only once it can take events.
        // If that or the metadata save fails, nothing of it is left behind.
        let dir = self.data_dir().join(FLOWS_DIR).join(&record.id);
        let created = Flow::open(
            record.clone(),
            dir.clone(),
            Arc::clone(&self.inner.config.storage),
            &self.inner.config.log_config(),
            true,
        )
        .map(Arc::new)
        .and_then(|flow| {
            self.mutate(|m| {
                if m.flows.len() >= FLOWS_MAX {
                    return Err(StoreError::Limit(format!("at most {FLOWS_MAX} flows")));
                }
                m.flows.push(record.clone());
                Ok(())
            })
            .map(|()| flow)
        });
        let flow = match created {
            Ok(flow) => flow,
            Err(e) => {
                self.remove_flow_dir(&dir);
                return Err(e);
            }
        };
        self.inner
            .webhooks
            .write()
            .insert(record.webhook_id.clone(), record.id.clone());
        self.inner.flows.write().insert(record.id.clone(), flow);
        Ok((record, secret))
    }

    pub fn flow(&self, id: &str) -> Option<Arc<Flow>> {
        self.inner.flows.read().get(id).cloned()
    }

    /// Why flow `id` is quarantined (its logs could not be opened), if it is.
    pub fn flow_unavailable(&self, id: &str) -> Option<String> {
        self.inner.unavailable.read().get(id).cloned()
    }

    /// The quarantined flow behind a webhook id: (flow id, why).
    pub fn unavailable_by_webhook(&self, webhook_id: &str) -> Option<(String, String)> {
        let id = self.inner.webhooks.read().get(webhook_id).cloned()?;
        let reason = self.flow_unavailable(&id)?;
        Some((id, reason))
    }

    /// Every quarantined flow: (flow id, why), sorted by id.
    pub fn unavailable_flows(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .inner
            .unavailable
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort();
        v
    }

    /// The error for flow `id` when it is not open: quarantined, or not found.
    pub fn missing_flow(&self, id: &str) -> StoreError {
        match self.flow_unavailable(id) {
            Some(reason) => StoreError::FlowUnavailable {
                id: id.to_owned(),
                reason,
            },
            None => StoreError::NotFound { what: "flow" },
        }
    }

    /// The flow behind a webhook id (the ingestion path's first lookup).
    pub fn flow_by_webhook(&self, webhook_id: &str) -> Option<Arc<Flow>> {
        let id = self.inner.webhooks.read().get(webhook_id).cloned()?;
        self.flow(&id)
    }

    /// Every flow's settings, optionally of one workspace, oldest first.
    pub fn flow_records(&self, workspace_id: Option<&str>) -> Vec<FlowRecord> {
        self.inner
            .meta
            .lock()
            .flows
            .iter()
            .filter(|f| workspace_id.is_none_or(|w| f.workspace_id == w))
            .cloned()
            .collect()
    }

    pub fn update_flow(&self, id: &str, patch: FlowPatch) -> Result<FlowRecord, StoreError> {
        let flow = self.flow(id).ok_or_else(|| self.missing_flow(id))?;
        if let Some(n) = &patch.name {
            validate_name("flow", n)?;
        }
        if let Some(r) = patch.rate_limit {
            validate_rate_limit(r)?;
        }
        if let Some(w) = patch.dedup_window_seconds {
            validate_window(w)?;
        }
        if let Some(r) = &patch.retention {
            validate_retention(r)?;
        }
        if let Some(Some(p)) = &patch.dedup_key_pointer {
            validate_pointer(p)?;
        }
        let now = self.now_ms();
        let updated = self.mutate(|m| {
            let rec = m
                .flows
                .iter_mut()
                .find(|f| f.id == id)
                .ok_or(StoreError::NotFound { what: "flow" })?;
            if let Some(n) = patch.name {
                rec.name = n;
            }
            let scheme = patch.scheme.unwrap_or(rec.signature.scheme);
            if let Some(secret) = patch.secret {
                validate_secret(scheme, &secret)?;
                // Senders switch secrets slowly: the old one verifies for 24 h more.
                if let Some(old) = rec.signature.secret.replace(secret) {
                    rec.signature.previous = Some(PreviousSecret {
                        secret: old,
                        valid_until_ms: now + SECRET_ROTATION_GRACE_MS,
                    });
                }
            }
            if scheme != rec.signature.scheme {
                rec.signature.scheme = scheme;
                if scheme == SignatureScheme::None {
                    rec.signature.secret = None;
                    rec.signature.previous = None;
                } else if rec.signature.secret.is_none() {
                    return Err(StoreError::Invalid(format!(
                        "scheme {scheme:?} needs a secret"
                    )));
                }
            }
            if let Some(r) = patch.rate_limit {
                rec.rate_limit = r;
            }
            if let Some(w) = patch.dedup_window_seconds {
                rec.dedup_window_seconds = w;
            }
            if let Some(r) = patch.retention {
                rec.retention = r;
            }
            if let Some(p) = patch.dedup_key_pointer {
                rec.dedup_key_pointer = p.filter(|p| !p.is_empty());
            }
            Ok(rec.clone())
        })?;
        flow.set_dedup_window(updated.dedup_window_seconds);
        *flow.record.write() = Arc::new(updated.clone());
        Ok(updated)
    }

    /// Removes a flow from the registry at once (its webhook answers 404 from then on),
    /// then its files, once no request holds it any more.
    pub fn delete_flow(&self, id: &str) -> Result<(), StoreError> {
        let webhook = self.mutate(|m| {
            let at = m
                .flows
                .iter()
                .position(|f| f.id == id)
                .ok_or(StoreError::NotFound { what: "flow" })?;
            let rec = m.flows.remove(at);
            m.deleted_flows.push(rec.id);
            Ok(rec.webhook_id)
        })?;
        self.inner.webhooks.write().remove(&webhook);
        self.inner.unavailable.write().remove(id);
        if let Some(flow) = self.inner.flows.write().remove(id) {
            self.inner
                .deleting
                .lock()
                .insert(id.to_owned(), Arc::downgrade(&flow));
        }
        self.remove_deleted_flows()
    }

    /// Removes a flow directory that holds nothing acknowledged (a creation that failed),
    /// durably. Best effort: a leftover is no flow, and the next start ignores it.
    fn remove_flow_dir(&self, dir: &Path) {
        let flows_dir = self.data_dir().join(FLOWS_DIR);
        let removed = match self.storage().remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => self.storage().sync_dir(&flows_dir),
        };
        if let Err(e) = removed {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove a failed flow's directory");
        }
    }

    /// Deletes the files of deleted flows that nothing holds open any more.
    fn remove_deleted_flows(&self) -> Result<(), StoreError> {
        let pending = self.inner.meta.lock().deleted_flows.clone();
        let flows_dir = self.data_dir().join(FLOWS_DIR);
        let mut removed = Vec::new();
        for id in pending {
            // A request still holding the flow may have an append in flight: its files
            // wait until the last holder is done (the next maintenance retries).
            let held = {
                let mut deleting = self.inner.deleting.lock();
                let held = deleting.get(&id).is_some_and(|w| w.strong_count() > 0);
                if !held {
                    deleting.remove(&id);
                }
                held
            };
            if held
                || self.inner.flows.read().contains_key(&id)
                || !ids::is_token(&id, ids::FLOW_PREFIX, ids::FLOW_ID_BYTES)
            {
                continue;
            }
            let dir = flows_dir.join(&id);
            match self.storage().remove_dir_all(&dir) {
                Ok(()) => removed.push(id),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => removed.push(id),
                // Still open somewhere (a request in flight): the next maintenance retries.
                Err(_) => {}
            }
        }
        if removed.is_empty() {
            return Ok(());
        }
        self.storage()
            .sync_dir(&flows_dir)
            .map_err(|e| StoreError::io("fsync directory", &flows_dir, e))?;
        self.mutate(|m| {
            m.deleted_flows.retain(|id| !removed.contains(id));
            Ok(())
        })
    }

    // ---- consumers ---------------------------------------------------------------

    fn committed(&self, flow: &Flow, name: &str) -> Offset {
        let first = flow.events().first_offset();
        flow.consumers
            .get(name)
            .map_or(first, |s| Offset(s.offset).max(first))
    }

    /// Events from `name`'s committed offset (a new consumer starts at the earliest
    /// retained event). With `wait_ms`, waits up to that long for an event to arrive.
    /// Nothing is committed: the caller commits what it has processed.
    /// At most `max` events and `max_bytes` of payload (at least one event). A wait
    /// ends early when `stop` turns true (shutdown): the poll then answers at once.
    pub async fn poll(
        &self,
        flow: &Flow,
        name: &str,
        max: usize,
        max_bytes: usize,
        wait_ms: u64,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(Vec<StoredEvent>, Offset), StoreError> {
        consumers::validate_name(name)?;
        let from = self.committed(flow, name);
        let mut rx = flow.events().subscribe();
        if wait_ms > 0 && flow.events().next_offset() <= from && !*stop.borrow() {
            let wait = Duration::from_millis(wait_ms.min(POLL_WAIT_MS_MAX));
            let arrived = rx.wait_for(|next| *next > from);
            tokio::select! {
                _ = tokio::time::timeout(wait, arrived) => {}
                () = stopped(&mut stop) => {}
            }
        }
        flow.read_events(from, max, max_bytes, None)
    }

    /// Durably commits `offset` (the next to read) for `name`. Beyond the end is invalid.
    pub async fn commit(
        &self,
        flow: &Flow,
        name: &str,
        offset: Offset,
    ) -> Result<ConsumerState, StoreError> {
        let end = flow.events().next_offset();
        if offset > end {
            return Err(StoreError::Invalid(format!(
                "offset {offset} is beyond the end of the flow ({end})"
            )));
        }
        // Under `--fsync interval` or `never`, events can be acknowledged before they are
        // on disk. A commit (always synced) must never point past what a power cut would
        // leave: wait for the event log's fdatasync first.
        if offset > flow.durable_end() {
            let events = Arc::clone(flow.events());
            tokio::task::spawn_blocking(move || events.sync())
                .await
                .map_err(|e| StoreError::Unavailable(format!("sync task failed: {e}")))??;
        }
        flow.consumers.commit(name, offset, self.now_ms()).await
    }

    pub async fn seek(
        &self,
        flow: &Flow,
        name: &str,
        to: SeekTo,
    ) -> Result<ConsumerState, StoreError> {
        let events = flow.events();
        let offset = match to {
            SeekTo::Earliest => events.first_offset(),
            SeekTo::Latest => events.next_offset(),
            SeekTo::Offset(o) => o,
            SeekTo::Timestamp(ts) => events.offset_for_timestamp(ts)?,
        };
        self.commit(flow, name, offset).await
    }

    pub fn consumers(&self, flow: &Flow) -> Vec<ConsumerView> {
        let first = flow.events().first_offset().0;
        let end = flow.events().next_offset().0;
        flow.consumers
            .list()
            .into_iter()
            .map(|(name, s)| ConsumerView {
                name,
                committed_offset: s.offset,
                lag: end.saturating_sub(s.offset.max(first)),
                updated_at_ms: s.updated_at_ms,
            })
            .collect()
    }

    pub async fn delete_consumer(&self, flow: &Flow, name: &str) -> Result<bool, StoreError> {
        flow.consumers.delete(name).await
    }

    pub fn analytics(&self, flow: &Flow, window: Window) -> Result<Report, StoreError> {
        flow.analytics(window)
    }

    // ---- upkeep ------------------------------------------------------------------

    /// Every open flow, copied out so no lock is held while each one works.
    fn open_flows(&self) -> Vec<Arc<Flow>> {
        self.inner.flows.read().values().cloned().collect()
    }

    /// Periodic work: retention, consumer-log compaction, analytics checkpoints, and
    /// deleting the files of deleted flows. Blocking: run it off the async executor.
    /// Each flow's steps are isolated: a failure is logged and counted, and the other
    /// flows (and that flow's other steps) still run. Returns the first failure.
    pub fn maintenance(&self) -> Result<(), StoreError> {
        let mut first = Ok(());
        for flow in self.open_flows() {
            let steps = [
                ("retention", flow.apply_retention()),
                (
                    "consumer compaction",
                    flow.consumers.compact_if_large().map(drop),
                ),
                ("analytics checkpoint", flow.checkpoint_analytics()),
            ];
            for (step, result) in steps {
                if let Err(e) = result {
                    tracing::warn!(flow = %flow.id, step, error = %e, "upkeep step failed");
                    first = first.and(Err(e));
                }
            }
        }
        first.and(self.remove_deleted_flows())
    }

    /// Brings every flow's analytics up to date. Run it often (every second): each run
    /// then reads only the last moments' records, instead of one long burst of CPU.
    /// A flow that fails is logged and skipped; the others still run.
    pub fn catch_up_analytics(&self) -> Result<(), StoreError> {
        let mut first = Ok(());
        for flow in self.open_flows() {
            if let Err(e) = flow.catch_up_analytics() {
                tracing::debug!(flow = %flow.id, error = %e, "analytics catch-up failed");
                first = first.and(Err(e));
            }
        }
        first
    }

    /// Hands every flow's buffered request-log entries to its writer (see
    /// `Flow::flush_requests`). Non-blocking.
    pub fn flush_request_logs(&self) {
        for flow in self.open_flows() {
            if let Err(e) = flow.flush_requests() {
                tracing::warn!(flow = %flow.id, error = %e, "request log entries dropped");
            }
        }
    }

    /// Syncs every flow and writes the analytics checkpoints (graceful shutdown). Every
    /// flow it can sync is synced, whatever failed before; the first error is returned.
    pub fn sync_all(&self) -> Result<(), StoreError> {
        let mut first = Ok(());
        for flow in self.open_flows() {
            let result = flow.sync().and(flow.checkpoint_analytics());
            if let Err(e) = result {
                tracing::warn!(flow = %flow.id, error = %e, "flow could not be synced at shutdown");
                first = first.and(Err(e));
            }
        }
        first
    }

    /// The logs of open flows that refuse appends: (flow id, log, why).
    pub fn poisoned_logs(&self) -> Vec<(String, &'static str, String)> {
        let mut out = Vec::new();
        for flow in self.open_flows() {
            for (log, reason) in flow.poisoned_logs() {
                out.push((flow.id.clone(), log, reason));
            }
        }
        out.sort();
        out
    }
}

/// Takes group and other permissions away from the data directory (so nothing under it
/// can be reached by other users), the installation secret and the metadata (flow
/// signing secrets), logging each change: data directories made by older releases had
/// 0755 directories and 0644 files.
fn restrict_secrets(storage: &dyn Storage, dir: &Path, secret: &Path) {
    for path in [
        dir.to_path_buf(),
        secret.to_path_buf(),
        dir.join(meta::META_FILE),
        dir.join(FLOWS_DIR),
    ] {
        match storage.restrict(&path) {
            Ok(true) => {
                tracing::warn!(path = %path.display(), "permissions tightened to owner only")
            }
            Ok(false) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not tighten permissions")
            }
        }
    }
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

/// Reads the installation secret at `path` (`StoreConfig::secret_path`), creating it
/// on first start. Once `meta.json` exists a missing secret is an error, never made
/// anew: a new secret would match no API key and open no flow secret.
fn load_or_create_secret(
    storage: &dyn Storage,
    dir: &Path,
    path: &Path,
) -> Result<Vec<u8>, StoreError> {
    let default = dir.join(SECRET_FILE);
    if storage.exists(path) {
        let bytes = read_to_vec(storage, path).map_err(|e| StoreError::io("read", path, e))?;
        if bytes.len() == 32 {
            return Ok(bytes);
        }
        return Err(StoreError::Damaged {
            path: path.display().to_string(),
            message: format!("the installation secret has {} bytes, not 32", bytes.len()),
        });
    }
    if path != default.as_path() && storage.exists(&default) {
        return Err(StoreError::Invalid(format!(
            "the secret file {} does not exist but {} does: move that file there",
            path.display(),
            default.display()
        )));
    }
    if storage.exists(&meta::meta_path(dir)) {
        return Err(StoreError::Invalid(format!(
            "the installation secret {} is missing but {} exists: restore that secret (or \
             pass --secret-file where it is); a new one would match no API key and open no \
             flow secret",
            path.display(),
            meta::meta_path(dir).display()
        )));
    }
    let secret = ids::random_bytes(32)?;
    write_atomic(storage, path, &secret).map_err(|e| StoreError::io("write", path, e))?;
    Ok(secret)
}
