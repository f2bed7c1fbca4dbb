//! Flows: create (files first, then the registry), update, delete (the registry at
//! once, the files once nothing holds them), lookups by id and webhook, quarantine,
//! and the validation of every setting a caller gives.

use std::path::Path;
use std::sync::Arc;

use crate::store::error::StoreError;
use crate::store::limits::{
    DEDUP_KEY_POINTER_BYTES_MAX, DEDUP_WINDOW_SECONDS_DEFAULT, DEDUP_WINDOW_SECONDS_MAX, FLOWS_MAX,
    NAME_BYTES_MAX, RATE_LIMIT_DEFAULT, RATE_LIMIT_PER_SECOND_MAX, RETENTION_MIN_AGE_SECONDS,
    RETENTION_MIN_BYTES, SECRET_BYTES_MAX, SECRET_ROTATION_GRACE_MS,
};
use crate::store::meta::{
    FlowRecord, PreviousSecret, RateLimit, RetentionConfig, SignatureConfig, SignatureScheme,
};
use crate::store::{flow_file, ids, open_flow, Flow, Store, FLOWS_DIR};

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
    pub strip_signature_headers: Option<bool>,
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
    pub strip_signature_headers: Option<bool>,
}

pub(super) fn validate_name(what: &str, name: &str) -> Result<(), StoreError> {
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
    if secret.is_empty() || secret.len() > SECRET_BYTES_MAX {
        return Err(StoreError::Invalid(format!(
            "a signature secret is 1 to {SECRET_BYTES_MAX} bytes"
        )));
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
    /// A new flow's record from the caller's settings, each validated, defaults filled
    /// in, ids generated; and its signature secret.
    fn new_flow_record(&self, new: NewFlow) -> Result<(FlowRecord, Option<String>), StoreError> {
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
            strip_signature_headers: new.strip_signature_headers.unwrap_or(false),
            created_at_ms: self.now_ms(),
        };
        Ok((record, secret))
    }

    /// Creates a flow; returns it and its signature secret (shown this once).
    pub fn create_flow(&self, new: NewFlow) -> Result<(FlowRecord, Option<String>), StoreError> {
        let (record, secret) = self.new_flow_record(new)?;
        if !self.workspace_exists(&record.workspace_id) {
            return Err(StoreError::NotFound { what: "workspace" });
        }
        let _changing = self.inner.flow_changes.lock();
        if self.inner.records.read().len() >= FLOWS_MAX {
            return Err(StoreError::Limit(format!("at most {FLOWS_MAX} flows")));
        }
        // Open the files first and write the flow file last (its commit point): a flow
        // is in the registry only once it can take events. If anything fails, nothing
        // of it is left behind, and a crash before the flow file leaves a directory
        // marked as a creation, which the next start removes (`flow_file.rs`).
        let dir = self.data_dir().join(FLOWS_DIR).join(&record.id);
        let created = flow_file::begin_creation(self.storage(), &dir)
            .and_then(|()| {
                open_flow(
                    &self.inner.config,
                    &self.inner.log_config,
                    &*self.inner.partitions,
                    &record,
                    true,
                )
            })
            .map(Arc::new)
            .and_then(|flow| {
                // Cluster mode: the registry is the commit point across nodes.
                self.registry_put_flow(&record, true)?;
                flow_file::save(self.storage(), &dir, &record, &self.inner.sealer).map(|()| flow)
            });
        let flow = match created {
            Ok(flow) => flow,
            Err(e) => {
                if self.inner.config.registry.is_some() {
                    // Best effort: a stream made for a flow that never was.
                    let _ = self.registry_delete_flow(&record.id);
                    let _ = self.inner.partitions.remove(&dir);
                }
                self.remove_flow_dir(&dir);
                return Err(e);
            }
        };
        flow_file::end_creation(self.storage(), &dir);
        self.inner
            .records
            .write()
            .insert(record.id.clone(), record.clone());
        self.inner
            .webhooks
            .write()
            .insert(record.webhook_id.clone(), record.id.clone());
        self.inner.flows.write().insert(record.id.clone(), flow);
        Ok((record, secret))
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
        let mut records: Vec<FlowRecord> = self
            .inner
            .records
            .read()
            .values()
            .filter(|f| workspace_id.is_none_or(|w| f.workspace_id == w))
            .cloned()
            .collect();
        records.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        records
    }

    /// How many flows there are (open and quarantined with settings).
    pub fn flow_count(&self) -> usize {
        self.inner.records.read().len()
    }

    /// One flow's settings (open, or quarantined with a readable flow file).
    pub fn flow_record(&self, id: &str) -> Option<FlowRecord> {
        self.inner.records.read().get(id).cloned()
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
        let _changing = self.inner.flow_changes.lock();
        let mut next = self
            .inner
            .records
            .read()
            .get(id)
            .cloned()
            .ok_or(StoreError::NotFound { what: "flow" })?;
        let updated = {
            let rec = &mut next;
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
            if let Some(strip) = patch.strip_signature_headers {
                rec.strip_signature_headers = strip;
            }
            next
        };
        let dir = self.data_dir().join(FLOWS_DIR).join(id);
        self.registry_put_flow(&updated, false)?;
        flow_file::save(self.storage(), &dir, &updated, &self.inner.sealer)?;
        self.inner
            .records
            .write()
            .insert(id.to_owned(), updated.clone());
        flow.set_record(updated.clone());
        Ok(updated)
    }

    /// Removes a flow from the registry at once (its webhook answers 404 from then on),
    /// then its files, once no request holds it any more.
    /// A quarantined flow whose flow file cannot be read can be deleted too.
    pub fn delete_flow(&self, id: &str) -> Result<(), StoreError> {
        let _changing = self.inner.flow_changes.lock();
        if !self.inner.records.read().contains_key(id)
            && !self.inner.unavailable.read().contains_key(id)
        {
            return Err(StoreError::NotFound { what: "flow" });
        }
        self.registry_delete_flow(id)?;
        self.forget_flow(id)
    }

    /// Deletes flow `id` here (the registry already has, in cluster mode): out of the
    /// registry at once, its files once nothing holds them. With `flow_changes` held.
    pub(super) fn forget_flow(&self, id: &str) -> Result<(), StoreError> {
        let webhook = self
            .inner
            .records
            .read()
            .get(id)
            .map(|r| r.webhook_id.clone());
        let dir = self.data_dir().join(FLOWS_DIR).join(id);
        flow_file::mark_deleted(self.storage(), &dir)?;
        self.inner.records.write().remove(id);
        if let Some(webhook) = webhook {
            self.inner.webhooks.write().remove(&webhook);
        }
        self.inner.unavailable.write().remove(id);
        self.inner.unavailable_for_now.lock().remove(id);
        self.inner.pending_removal.lock().push(id.to_owned());
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
    pub(super) fn remove_deleted_flows(&self) -> Result<(), StoreError> {
        let pending = self.inner.pending_removal.lock().clone();
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
            // A remote partition (cluster mode) goes first; if it cannot, both wait.
            if let Err(e) = self.inner.partitions.remove(&dir) {
                tracing::warn!(flow = %id, error = %e, "the deleted flow's partition could not be removed yet");
                continue;
            }
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
        self.inner
            .pending_removal
            .lock()
            .retain(|id| !removed.contains(id));
        self.storage()
            .sync_dir(&flows_dir)
            .map_err(|e| StoreError::io("fsync directory", &flows_dir, e))
    }

    /// Deleted flows whose directories are still to be removed.
    pub fn deleted_flows_pending(&self) -> Vec<String> {
        self.inner.pending_removal.lock().clone()
    }
}
