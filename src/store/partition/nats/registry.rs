//! Cluster mode's registry: flows, workspaces and keys in one replicated NATS KV
//! bucket, `<prefix>_META` (docs/cluster.md). Keys: `meta` (the metadata document),
//! `secret` (the installation secret's check value), `flow.<id>` (a flow document).
//! Writes are compare-and-set against the revision this node last saw, so two nodes
//! changing one thing at once never lose one change silently: one gets `Conflict`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;

use super::js::{self, StreamNames};
use super::{with_backoff, Shared};
use crate::store::registry::{
    ApplyChange, Registry, RegistryChange, RegistryError, RegistrySnapshot,
};

const META_KEY: &str = "meta";
const SECRET_KEY: &str = "secret";
const FLOW_KEY_PREFIX: &str = "flow.";

/// The registry on one KV bucket.
#[derive(Debug)]
pub struct NatsRegistry {
    shared: Arc<Shared>,
    kv: kv::Store,
    bucket_stream: StreamNames,
    /// The revision of each key this node last saw (its own writes, `load`, the watch).
    revisions: Arc<Mutex<HashMap<String, u64>>>,
    /// The bucket's last revision when `load` read it: the watch starts after it.
    loaded_at: AtomicU64,
    /// This node's writes under way, by key: the watch judges an entry of such a key
    /// only once they are done and their revisions noted, so that its own write never
    /// comes back to it as another node's change.
    writing: Arc<Writing>,
}

/// Writes under way by key, and a signal each time one ends.
#[derive(Debug, Default)]
struct Writing {
    keys: Mutex<HashMap<String, usize>>,
    ended: tokio::sync::Notify,
}

impl Writing {
    fn start(self: &Arc<Self>, key: &str) -> WriteUnderWay {
        *self.keys.lock().entry(key.to_owned()).or_insert(0) += 1;
        WriteUnderWay {
            writing: Arc::clone(self),
            key: key.to_owned(),
        }
    }

    /// Returns once no write of `key` by this node is under way.
    async fn settled(&self, key: &str) {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if !self.keys.lock().contains_key(key) {
                return;
            }
            ended.await;
        }
    }
}

/// One write under way; ends when dropped (done or failed).
struct WriteUnderWay {
    writing: Arc<Writing>,
    key: String,
}

impl Drop for WriteUnderWay {
    fn drop(&mut self) {
        let mut keys = self.writing.keys.lock();
        if let Some(n) = keys.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                keys.remove(&self.key);
            }
        }
        drop(keys);
        self.writing.ended.notify_waiters();
    }
}

pub(super) fn failed(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Failed(e.to_string())
}

/// Runs a KV call until it succeeds, conflicts, or `NATS_PUBLISH_RETRY_FOR` passes
/// (a leader change answers 503 for a moment).
pub(super) async fn retrying<T, F, Fut>(attempt: F) -> Result<T, RegistryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RegistryError>>,
{
    with_backoff(attempt, |e| matches!(e, RegistryError::Failed(_))).await
}

/// Runs a KV call on the NATS runtime and waits for it from sync code.
pub(super) fn wait_kv<T: Send + 'static>(
    shared: &Shared,
    future: impl std::future::Future<Output = Result<T, RegistryError>> + Send + 'static,
) -> Result<T, RegistryError> {
    shared
        .bridge
        .wait(async move { Ok(future.await) })
        .map_err(failed)?
}

/// Opens (or makes) KV bucket `bucket`, one revision a key, replicated as the flows'
/// streams are.
pub(super) fn open_bucket(shared: &Shared, bucket: &str) -> Result<kv::Store, RegistryError> {
    let replicas = shared.config.replicas;
    let client = shared.client.clone();
    let name = bucket.to_owned();
    shared
        .bridge
        .wait(async move {
            // Made on the NATS runtime: the context spawns a task of its own.
            let js = async_nats::jetstream::new(client);
            Ok(retrying(|| async {
                match js.get_key_value(name.clone()).await {
                    Ok(kv) => Ok(kv),
                    Err(_) => js
                        .create_key_value(kv::Config {
                            bucket: name.clone(),
                            history: 1,
                            num_replicas: replicas,
                            storage: async_nats::jetstream::stream::StorageType::File,
                            ..Default::default()
                        })
                        .await
                        .map_err(failed),
                }
            })
            .await)
        })
        .map_err(failed)?
}

impl NatsRegistry {
    /// Opens (or makes) the bucket, replicated as the flows' streams are.
    pub(crate) fn open(shared: Arc<Shared>) -> Result<Self, RegistryError> {
        let bucket = format!("{}_META", shared.config.prefix);
        let kv = open_bucket(&shared, &bucket)?;
        Ok(Self {
            bucket_stream: StreamNames {
                stream: format!("KV_{bucket}"),
                subject: format!("$KV.{bucket}.>"),
            },
            shared,
            kv,
            revisions: Arc::new(Mutex::new(HashMap::new())),
            writing: Arc::default(),
            loaded_at: AtomicU64::new(0),
        })
    }

    fn wait<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = Result<T, RegistryError>> + Send + 'static,
    ) -> Result<T, RegistryError> {
        wait_kv(&self.shared, future)
    }

    /// The entry of `key` now, its revision noted.
    fn entry(&self, key: &str) -> Result<Option<kv::Entry>, RegistryError> {
        let kv = self.kv.clone();
        let key = key.to_owned();
        let revisions = Arc::clone(&self.revisions);
        self.wait(async move {
            let entry = retrying(|| async { kv.entry(key.clone()).await.map_err(failed) }).await?;
            if let Some(e) = &entry {
                revisions.lock().insert(key.clone(), e.revision);
            }
            Ok(entry)
        })
    }

    /// Writes `value` at `key`: `create` only if absent, else compare-and-set against
    /// the revision this node saw (a plain put when it saw none).
    fn write(&self, key: &str, value: &[u8], create: bool) -> Result<(), RegistryError> {
        let kv = self.kv.clone();
        let key = key.to_owned();
        let value = Bytes::copy_from_slice(value);
        let seen = self.revisions.lock().get(&key).copied();
        let revisions = Arc::clone(&self.revisions);
        let under_way = self.writing.start(&key);
        self.wait(async move {
            let _under_way = under_way;
            let revision = retrying(|| async {
                let create_it = || async {
                    kv.create(&key, value.clone())
                        .await
                        .map_err(|e| match e.kind() {
                            kv::CreateErrorKind::AlreadyExists => RegistryError::Conflict,
                            _ => failed(e),
                        })
                };
                match seen.filter(|_| !create) {
                    Some(rev) => {
                        kv.update(&key, value.clone(), rev)
                            .await
                            .map_err(|e| match e.kind() {
                                kv::UpdateErrorKind::WrongLastRevision => RegistryError::Conflict,
                                _ => failed(e),
                            })
                    }
                    None => create_it().await,
                }
            })
            .await?;
            revisions.lock().insert(key, revision);
            Ok(())
        })
    }
}

fn value_if_put(entry: Option<kv::Entry>) -> Option<Vec<u8>> {
    entry
        .filter(|e| e.operation == kv::Operation::Put)
        .map(|e| e.value.to_vec())
}

impl Registry for NatsRegistry {
    fn load(&self, local_ids: &[String]) -> Result<RegistrySnapshot, RegistryError> {
        let client = self.shared.client.clone();
        let names = self.bucket_stream.clone();
        let last = self
            .shared
            .bridge
            .wait(async move { js::stream_state(&client, &names).await })
            .map_err(failed)?
            .last_seq;
        let kv = self.kv.clone();
        let keys: Vec<String> = self.wait(async move {
            let mut keys = retrying(|| async { kv.keys().await.map_err(failed) }).await?;
            let mut out = Vec::new();
            while let Some(k) = keys.next().await {
                out.push(k.map_err(failed)?);
            }
            Ok(out)
        })?;
        let mut snap = RegistrySnapshot::default();
        for key in keys {
            let Some(value) = value_if_put(self.entry(&key)?) else {
                continue;
            };
            match key.as_str() {
                META_KEY => snap.meta = Some(value),
                SECRET_KEY => snap.secret_check = Some(String::from_utf8_lossy(&value).into()),
                _ => {
                    if let Some(id) = key.strip_prefix(FLOW_KEY_PREFIX) {
                        snap.flows.push((id.to_owned(), value));
                    }
                }
            }
        }
        for id in local_ids {
            if snap.flows.iter().any(|(f, _)| f == id) {
                continue;
            }
            let entry = self.entry(&format!("{FLOW_KEY_PREFIX}{id}"))?;
            if entry.is_some_and(|e| e.operation != kv::Operation::Put) {
                snap.deleted.push(id.clone());
            }
        }
        self.loaded_at.store(last, Ordering::Release);
        Ok(snap)
    }

    fn init_secret_check(&self, check: &str) -> Result<(), RegistryError> {
        self.write(SECRET_KEY, check.as_bytes(), true)
    }

    fn put_meta(&self, document: &[u8]) -> Result<(), RegistryError> {
        self.write(META_KEY, document, false)
    }

    fn reload_meta(&self) -> Result<Option<Vec<u8>>, RegistryError> {
        Ok(value_if_put(self.entry(META_KEY)?))
    }

    fn put_flow(&self, id: &str, document: &[u8], create: bool) -> Result<(), RegistryError> {
        self.write(&format!("{FLOW_KEY_PREFIX}{id}"), document, create)
    }

    fn delete_flow(&self, id: &str) -> Result<(), RegistryError> {
        let kv = self.kv.clone();
        let key = format!("{FLOW_KEY_PREFIX}{id}");
        self.wait(async move { retrying(|| async { kv.delete(&key).await.map_err(failed) }).await })
    }

    fn is_stale(&self, change: &RegistryChange) -> bool {
        let (key, revision) = match change {
            RegistryChange::Meta { revision, .. } => (META_KEY.to_owned(), *revision),
            RegistryChange::Flow { id, revision, .. }
            | RegistryChange::FlowDeleted { id, revision } => {
                (format!("{FLOW_KEY_PREFIX}{id}"), *revision)
            }
        };
        self.revisions
            .lock()
            .get(&key)
            .is_some_and(|seen| *seen >= revision)
    }

    fn watch(&self, apply: ApplyChange) -> Result<(), RegistryError> {
        let kv = self.kv.clone();
        let from = self.loaded_at.load(Ordering::Acquire) + 1;
        let mut changes = self.wait(async move {
            retrying(|| async { kv.watch_all_from_revision(from).await.map_err(failed) }).await
        })?;
        let revisions = Arc::clone(&self.revisions);
        let writing = Arc::clone(&self.writing);
        self.shared.bridge.spawn(async move {
            while let Some(entry) = changes.next().await {
                let Ok(entry) = entry else {
                    tracing::warn!("the cluster registry's watch failed; changes by other nodes stop arriving until restart");
                    break;
                };
                // A write of this key by this node may be what came back: wait until
                // its revision is noted.
                writing.settled(&entry.key).await;
                // This node's own writes, and what it read since, come back too.
                if revisions
                    .lock()
                    .get(&entry.key)
                    .is_some_and(|r| *r >= entry.revision)
                {
                    continue;
                }
                let put = entry.operation == kv::Operation::Put;
                let revision = entry.revision;
                let change = match (entry.key.as_str(), put) {
                    (META_KEY, true) => RegistryChange::Meta {
                        document: entry.value.to_vec(),
                        revision,
                    },
                    (key, _) if key.starts_with(FLOW_KEY_PREFIX) => {
                        let id = key[FLOW_KEY_PREFIX.len()..].to_owned();
                        match put {
                            true => RegistryChange::Flow {
                                id,
                                document: entry.value.to_vec(),
                                revision,
                            },
                            false => RegistryChange::FlowDeleted { id, revision },
                        }
                    }
                    _ => continue,
                };
                let apply = Arc::clone(&apply);
                // Applying writes files and may open a flow: off the async threads,
                // one change at a time, in order.
                let _ = tokio::task::spawn_blocking(move || apply(change)).await;
                // Only now does a write here compare against this revision: a change
                // made on the content before it was applied then conflicts (and is made
                // again on the new content) instead of overwriting it.
                let mut seen = revisions.lock();
                let rev = seen.entry(entry.key).or_insert(0);
                *rev = (*rev).max(entry.revision);
            }
        });
        Ok(())
    }
}
