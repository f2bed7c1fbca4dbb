//! Metadata: workspaces, API keys, flows and their settings. One JSON document,
//! replaced atomically and durably (temp file, fdatasync, rename, directory fsync) on
//! every change, so a crash at any instant leaves either the old or the new document.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::log::storage::{read_to_vec, write_atomic, Storage};
use crate::store::error::StoreError;

pub const META_FILE: &str = "meta.json";
pub const META_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Ingest,
    Read,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub created_at_ms: i64,
}

/// A key's previous secret, still valid during a rotation's grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviousKey {
    pub hash: String,
    pub valid_until_ms: i64,
}

/// An API key as stored: only a hash of the secret, never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRecord {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    /// `live` or `test`.
    pub env: String,
    pub scopes: Vec<Scope>,
    /// HMAC-SHA256 of the whole key under the installation secret, hex.
    pub hash: String,
    pub previous: Option<PreviousKey>,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
    pub created_at_ms: i64,
}

/// The signature schemes a flow can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureScheme {
    None,
    Eventmesh,
    Github,
    Stripe,
    Standard,
    Shopify,
    Slack,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviousSecret {
    pub secret: String,
    pub valid_until_ms: i64,
}

/// A flow's signature settings. The secret is stored (verification needs it) but never
/// returned by the API after creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureConfig {
    pub scheme: SignatureScheme,
    pub secret: Option<String>,
    pub previous: Option<PreviousSecret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionConfig {
    pub max_age_seconds: Option<u64>,
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowRecord {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub webhook_id: String,
    pub signature: SignatureConfig,
    /// `None`: no rate limit.
    pub rate_limit: Option<RateLimit>,
    pub dedup_window_seconds: u64,
    pub retention: RetentionConfig,
    /// A JSON pointer into the body whose value is the idempotency key.
    pub dedup_key_pointer: Option<String>,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub version: u32,
    /// Hash of the admin key (same scheme as API keys).
    pub admin_key_hash: String,
    pub workspaces: Vec<Workspace>,
    pub keys: Vec<ApiKeyRecord>,
    pub flows: Vec<FlowRecord>,
    /// Flows deleted from the registry whose files are still to be removed.
    pub deleted_flows: Vec<String>,
}

pub fn meta_path(data_dir: &Path) -> PathBuf {
    data_dir.join(META_FILE)
}

/// Reads the metadata document; `Ok(None)` when there is none yet.
pub fn load(storage: &dyn Storage, data_dir: &Path) -> Result<Option<Metadata>, StoreError> {
    let path = meta_path(data_dir);
    if !storage.exists(&path) {
        return Ok(None);
    }
    let bytes = read_to_vec(storage, &path).map_err(|e| StoreError::io("read", &path, e))?;
    let meta: Metadata = serde_json::from_slice(&bytes).map_err(|e| StoreError::Damaged {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    if meta.version != META_VERSION {
        return Err(StoreError::Damaged {
            path: path.display().to_string(),
            message: format!("metadata version {} is not {META_VERSION}", meta.version),
        });
    }
    Ok(Some(meta))
}

/// Replaces the metadata document atomically and durably.
pub fn save(storage: &dyn Storage, data_dir: &Path, meta: &Metadata) -> Result<(), StoreError> {
    let path = meta_path(data_dir);
    let bytes = serde_json::to_vec_pretty(meta).map_err(|e| StoreError::io("encode", &path, e))?;
    write_atomic(storage, &path, &bytes).map_err(|e| StoreError::io("write", &path, e))
}
