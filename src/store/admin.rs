//! Credentials and tenancy: the admin key, API keys (issue, rotate, revoke,
//! authenticate) and workspaces, and the installation secret they are hashed with.

use std::path::Path;

use crate::log::storage::{read_to_vec, write_atomic, Storage};
use crate::store::error::StoreError;
use crate::store::limits::{KEYS_MAX, KEY_TEXT_MAX_CHARS, WORKSPACES_MAX};
use crate::store::meta::{self, ApiKeyRecord, Metadata, PreviousKey, Scope, Workspace};
use crate::store::{flows::validate_name, ids, keys, Store, FLOWS_DIR, SECRET_FILE};

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

/// A new API key's settings.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub workspace_id: Option<String>,
    pub name: String,
    pub scopes: Option<Vec<Scope>>,
    pub env: Option<String>,
    pub expires_at_ms: Option<i64>,
}

impl Store {
    /// Whether `presented` is the admin key (constant-time comparison of hashes).
    pub fn is_admin(&self, presented: &str) -> bool {
        if presented.len() > KEY_TEXT_MAX_CHARS {
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
            Ok(ws.clone())
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
            Ok(record.clone())
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
            let record = live_key(m, id)?;
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
            let record = live_key(m, id)?;
            record.revoked_at_ms = Some(now);
            Ok(())
        })
    }
}

/// The key `id` if it exists and is not revoked.
fn live_key<'m>(m: &'m mut Metadata, id: &str) -> Result<&'m mut ApiKeyRecord, StoreError> {
    m.keys
        .iter_mut()
        .find(|k| k.id == id && k.revoked_at_ms.is_none())
        .ok_or(StoreError::NotFound { what: "key" })
}

/// Takes group and other permissions away from the data directory (so nothing under it
/// can be reached by other users), the installation secret and the metadata (flow
/// signing secrets), logging each change: data directories made by older releases had
/// 0755 directories and 0644 files.
pub(super) fn restrict_secrets(storage: &dyn Storage, dir: &Path, secret: &Path) {
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

/// Reads the installation secret at `path` (`StoreConfig::secret_path`), creating it
/// on first start. Once `meta.json` exists a missing secret is an error, never made
/// anew: a new secret would match no API key and open no flow secret.
pub(super) fn load_or_create_secret(
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
