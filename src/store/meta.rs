//! Metadata: workspaces and API keys. One JSON document, replaced atomically and
//! durably (temp file, fdatasync, rename, directory fsync) on every change, so a crash
//! at any instant leaves either the old or the new document. Each flow's settings are a
//! file of its own (`flow_file.rs`), so the document stays small however many flows.
//!
//! Version 3 holds no flows. Versions 1 (plain secrets) and 2 (sealed secrets) held
//! every flow, and the flows deleted but not yet removed: they are still read, and
//! `Store::open` moves their flows into flow files before it saves version 3.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::log::storage::{read_to_vec, write_atomic, Storage};
use crate::store::error::StoreError;
use crate::store::flow_file::each_secret;
use crate::store::seal::Sealer;

pub const META_FILE: &str = "meta.json";
/// The version this release writes.
pub const META_VERSION: u32 = 3;
/// The version that held every flow, secrets sealed; still read.
pub const META_VERSION_SEALED_FLOWS: u32 = 2;
/// The version that held every flow, secrets in plain text; still read.
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

impl SignatureScheme {
    /// Its name, as in the API (`"github"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Eventmesh => "eventmesh",
            Self::Github => "github",
            Self::Stripe => "stripe",
            Self::Standard => "standard",
            Self::Shopify => "shopify",
            Self::Slack => "slack",
        }
    }
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
    /// Leave the signature headers out of the request kept with each event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strip_signature_headers: bool,
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
}

/// A metadata document as stored, with what versions 1 and 2 held besides.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    #[serde(flatten)]
    pub meta: Metadata,
    /// Versions 1 and 2: every flow (in a version 3 document, none).
    #[serde(default)]
    pub flows: Vec<FlowRecord>,
    /// Versions 1 and 2: flows deleted whose files were still to be removed.
    #[serde(default)]
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
) -> Result<Option<Document>, StoreError> {
    let path = meta_path(data_dir);
    if !storage.exists(&path) {
        return Ok(None);
    }
    let bytes = read_to_vec(storage, &path).map_err(|e| StoreError::io("read", &path, e))?;
    let doc: Document = serde_json::from_slice(&bytes).map_err(|e| damaged(&path, e))?;
    let version = doc.meta.version;
    if !(META_VERSION_PLAIN..=META_VERSION).contains(&version) {
        return Err(damaged(
            &path,
            format!("metadata version {version} is not {META_VERSION_PLAIN} to {META_VERSION}"),
        ));
    }
    Ok(Some(doc))
}

/// Reads the metadata document with its flow secrets opened; `Ok(None)` when there is
/// none yet. A secret that does not open is an error naming the flow: the installation
/// secret is not the one this document was sealed with, or the document is damaged.
pub fn load(
    storage: &dyn Storage,
    data_dir: &Path,
    sealer: &Sealer,
) -> Result<Option<Document>, StoreError> {
    let Some(mut doc) = load_document(storage, data_dir)? else {
        return Ok(None);
    };
    if doc.meta.version == META_VERSION_PLAIN {
        if !doc.flows.is_empty() {
            tracing::warn!(
                flows = doc.flows.len(),
                "meta.json holds flow signing secrets in plain text: the start seals them into flow files"
            );
        }
        return Ok(Some(doc));
    }
    let path = meta_path(data_dir);
    for flow in &mut doc.flows {
        each_secret(flow, |context, secret| {
            *secret = sealer
                .open(secret, context)
                .map_err(|e| damaged(&path, format!("the signing secret {context}: {e}")))?;
            Ok(())
        })?;
    }
    Ok(Some(doc))
}

/// Replaces the metadata document atomically and durably, as version `META_VERSION`.
pub fn save(storage: &dyn Storage, data_dir: &Path, meta: &Metadata) -> Result<(), StoreError> {
    let path = meta_path(data_dir);
    let bytes = encode(meta)?;
    write_atomic(storage, &path, &bytes).map_err(|e| StoreError::io("write", &path, e))
}

/// The metadata as a version 3 document: `meta.json`'s bytes.
pub fn encode(meta: &Metadata) -> Result<Vec<u8>, StoreError> {
    let mut stored = meta.clone();
    stored.version = META_VERSION;
    serde_json::to_vec_pretty(&stored)
        .map_err(|e| StoreError::io("encode", Path::new(META_FILE), e))
}

/// A version 3 document (a cluster registry's copy); `what` names its source.
pub fn decode(document: &[u8], what: &Path) -> Result<Metadata, StoreError> {
    let meta: Metadata = serde_json::from_slice(document).map_err(|e| damaged(what, e))?;
    if meta.version != META_VERSION {
        return Err(damaged(
            what,
            format!("metadata version {} is not {META_VERSION}", meta.version),
        ));
    }
    Ok(meta)
}

fn damaged(path: &Path, message: impl ToString) -> StoreError {
    StoreError::Damaged {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}
