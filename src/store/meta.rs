//! Metadata: workspaces, API keys, flows and their settings. One JSON document,
//! replaced atomically and durably (temp file, fdatasync, rename, directory fsync) on
//! every change, so a crash at any instant leaves either the old or the new document.
//!
//! Version 2 holds flow signing secrets sealed (`seal.rs`); in memory they are plain.
//! A version 1 document (plain secrets) is read as it is and sealed by the next save,
//! which `Store::open` makes at once.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::log::storage::{read_to_vec, write_atomic, Storage};
use crate::store::error::StoreError;
use crate::store::seal::Sealer;

pub const META_FILE: &str = "meta.json";
/// The version this release writes.
pub const META_VERSION: u32 = 2;
/// The version that stored flow secrets in plain text; still read.
pub const META_VERSION_PLAIN: u32 = 1;

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

/// Reads the metadata document as stored: in a version 2 document the flow secrets are
/// still sealed. For tools that need no secrets (`eventmesh check`).
pub fn load_document(
    storage: &dyn Storage,
    data_dir: &Path,
) -> Result<Option<Metadata>, StoreError> {
    let path = meta_path(data_dir);
    if !storage.exists(&path) {
        return Ok(None);
    }
    let bytes = read_to_vec(storage, &path).map_err(|e| StoreError::io("read", &path, e))?;
    let meta: Metadata = serde_json::from_slice(&bytes).map_err(|e| damaged(&path, e))?;
    if meta.version != META_VERSION && meta.version != META_VERSION_PLAIN {
        return Err(damaged(
            &path,
            format!(
                "metadata version {} is not {META_VERSION_PLAIN} or {META_VERSION}",
                meta.version
            ),
        ));
    }
    Ok(Some(meta))
}

/// Reads the metadata document with its flow secrets opened; `Ok(None)` when there is
/// none yet. A secret that does not open is an error naming the flow: the installation
/// secret is not the one this document was sealed with, or the document is damaged.
pub fn load(
    storage: &dyn Storage,
    data_dir: &Path,
    sealer: &Sealer,
) -> Result<Option<Metadata>, StoreError> {
    let Some(mut meta) = load_document(storage, data_dir)? else {
        return Ok(None);
    };
    if meta.version == META_VERSION_PLAIN {
        if !meta.flows.is_empty() {
            tracing::warn!(
                flows = meta.flows.len(),
                "meta.json holds flow signing secrets in plain text: the next save seals them"
            );
        }
        meta.version = META_VERSION;
        return Ok(Some(meta));
    }
    let path = meta_path(data_dir);
    each_secret(&mut meta, |context, secret| {
        *secret = sealer
            .open(secret, context)
            .map_err(|e| damaged(&path, format!("the signing secret {context}: {e}")))?;
        Ok(())
    })?;
    Ok(Some(meta))
}

/// Replaces the metadata document atomically and durably, with every flow secret sealed.
pub fn save(
    storage: &dyn Storage,
    data_dir: &Path,
    meta: &Metadata,
    sealer: &Sealer,
) -> Result<(), StoreError> {
    let path = meta_path(data_dir);
    let mut stored = meta.clone();
    stored.version = META_VERSION;
    each_secret(&mut stored, |context, secret| {
        *secret = sealer.seal(secret, context)?;
        Ok(())
    })?;
    let bytes =
        serde_json::to_vec_pretty(&stored).map_err(|e| StoreError::io("encode", &path, e))?;
    write_atomic(storage, &path, &bytes).map_err(|e| StoreError::io("write", &path, e))
}

/// Calls `f` on every flow signing secret (current and previous) with what its seal is
/// bound to: `<flowId>/secret` or `<flowId>/previous`.
fn each_secret(
    meta: &mut Metadata,
    mut f: impl FnMut(&str, &mut String) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    for flow in &mut meta.flows {
        let sig = &mut flow.signature;
        if let Some(secret) = sig.secret.as_mut() {
            f(&format!("{}/secret", flow.id), secret)?;
        }
        if let Some(previous) = sig.previous.as_mut() {
            f(&format!("{}/previous", flow.id), &mut previous.secret)?;
        }
    }
    Ok(())
}

fn damaged(path: &Path, message: impl ToString) -> StoreError {
    StoreError::Damaged {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}
