//! Cluster mode's consumer offsets: one replicated NATS KV bucket, `<prefix>_OFFSETS`,
//! key `<flow id>.<consumer>`, value `{"offset","updatedAtMs"}`. Every write is
//! compare-and-set against the revision just read, so two nodes committing for one
//! consumer at once never lose or reorder one silently, and a commit (not a seek)
//! below the stored offset changes nothing: committed offsets never go back.

use std::sync::Arc;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;

use super::registry::{failed, open_bucket, retrying, wait_kv};
use super::Shared;
use crate::store::consumers::ConsumerState;
use crate::store::registry::{RegistryError, SharedOffsets};

/// How often a commit is tried again after another node's write to the same consumer
/// came between its read and its write.
const OFFSET_CAS_RETRIES: usize = 20;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    offset: u64,
    updated_at_ms: i64,
}

fn decode(entry: &kv::Entry) -> Option<ConsumerState> {
    if entry.operation != kv::Operation::Put {
        return None;
    }
    let s: Stored = serde_json::from_slice(&entry.value).ok()?;
    Some(ConsumerState {
        offset: s.offset,
        updated_at_ms: s.updated_at_ms,
    })
}

/// Consumer offsets on one KV bucket.
#[derive(Debug)]
pub struct NatsOffsets {
    shared: Arc<Shared>,
    kv: kv::Store,
}

impl NatsOffsets {
    pub(crate) fn open(shared: Arc<Shared>) -> Result<Self, RegistryError> {
        let bucket = format!("{}_OFFSETS", shared.config.prefix);
        let kv = open_bucket(&shared, &bucket)?;
        Ok(Self { shared, kv })
    }

    fn wait<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = Result<T, RegistryError>> + Send + 'static,
    ) -> Result<T, RegistryError> {
        wait_kv(&self.shared, future)
    }
}

fn key(flow: &str, name: &str) -> String {
    format!("{flow}.{name}")
}

impl SharedOffsets for NatsOffsets {
    fn get(&self, flow: &str, name: &str) -> Result<Option<ConsumerState>, RegistryError> {
        let kv = self.kv.clone();
        let key = key(flow, name);
        self.wait(async move {
            let entry = retrying(|| async { kv.entry(key.clone()).await.map_err(failed) }).await?;
            Ok(entry.as_ref().and_then(decode))
        })
    }

    fn list(&self, flow: &str) -> Result<Vec<(String, ConsumerState)>, RegistryError> {
        let kv = self.kv.clone();
        let prefix = format!("{flow}.");
        self.wait(async move {
            let mut keys = retrying(|| async { kv.keys().await.map_err(failed) }).await?;
            let mut mine = Vec::new();
            while let Some(k) = keys.next().await {
                let k = k.map_err(failed)?;
                if let Some(name) = k.strip_prefix(&prefix) {
                    mine.push((name.to_owned(), k.clone()));
                }
            }
            let mut out = Vec::new();
            for (name, k) in mine {
                let entry =
                    retrying(|| async { kv.entry(k.clone()).await.map_err(failed) }).await?;
                if let Some(state) = entry.as_ref().and_then(decode) {
                    out.push((name, state));
                }
            }
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(out)
        })
    }

    fn commit(
        &self,
        flow: &str,
        name: &str,
        state: ConsumerState,
        forward_only: bool,
    ) -> Result<ConsumerState, RegistryError> {
        let kv = self.kv.clone();
        let key = key(flow, name);
        self.wait(async move {
            let value = serde_json::to_vec(&Stored {
                offset: state.offset,
                updated_at_ms: state.updated_at_ms,
            })
            .map_err(failed)?;
            let value = Bytes::from(value);
            for _ in 0..OFFSET_CAS_RETRIES {
                let entry =
                    retrying(|| async { kv.entry(key.clone()).await.map_err(failed) }).await?;
                let current = entry.as_ref().and_then(decode);
                if let Some(cur) = current.filter(|c| forward_only && c.offset > state.offset) {
                    return Ok(cur);
                }
                let written = match &entry {
                    Some(e) => {
                        kv.update(&key, value.clone(), e.revision)
                            .await
                            .map_err(|e| match e.kind() {
                                kv::UpdateErrorKind::WrongLastRevision => RegistryError::Conflict,
                                _ => failed(e),
                            })
                    }
                    None => kv
                        .create(&key, value.clone())
                        .await
                        .map_err(|e| match e.kind() {
                            kv::CreateErrorKind::AlreadyExists => RegistryError::Conflict,
                            _ => failed(e),
                        }),
                };
                match written {
                    Ok(_) => return Ok(state),
                    // Another write came between: read again and decide again.
                    Err(RegistryError::Conflict) => continue,
                    // Passing failures: the retrying reads above wait them out.
                    Err(RegistryError::Failed(why)) => {
                        tracing::debug!(error = %why, "offset commit retried");
                        tokio::time::sleep(super::NATS_PUBLISH_BACKOFF_MIN).await;
                    }
                }
            }
            Err(RegistryError::Conflict)
        })
    }

    fn delete(&self, flow: &str, name: &str) -> Result<bool, RegistryError> {
        let kv = self.kv.clone();
        let key = key(flow, name);
        self.wait(async move {
            let entry = retrying(|| async { kv.entry(key.clone()).await.map_err(failed) }).await?;
            if entry.as_ref().and_then(decode).is_none() {
                return Ok(false);
            }
            retrying(|| async { kv.delete(&key).await.map_err(failed) }).await?;
            Ok(true)
        })
    }
}
