//! The store-level suite, run against every implementation of the partition seam: the
//! engine's `Log` (on SimStorage), the in-memory `MemoryPartition`, and cluster mode's
//! `NatsPartition` on a 3-node JetStream cluster (when nats-server is installed; .ci/run
//! requires it). The same flows, the same answers: nothing in the store (dedup,
//! offsets, consumers, reads by time, analytics, health) leans on what only one
//! backend does.

use std::sync::Arc;

use crate::common::nats::{unique_prefix, NatsCluster};
use crate::common::store::{config_on, event, new_flow, runtime};
use eventmesh::log::storage::SimStorage;
use eventmesh::log::{ManualClock, Offset};
use eventmesh::store::analytics::Window;
use eventmesh::store::partition::memory::MemoryBackend;
use eventmesh::store::partition::PartitionBackend;
use eventmesh::store::registry::SharedOffsets;
use eventmesh::store::{IngestOutcome, Page, SeekTo, Store, StoreError};

/// A way to open a store: the same data directory each time (a restart).
struct Backend {
    name: &'static str,
    sim: SimStorage,
    clock: Arc<ManualClock>,
    partitions: Option<Arc<dyn PartitionBackend>>,
    /// Cluster mode's shared consumer offsets (the nats backend only).
    offsets: Option<Arc<dyn SharedOffsets>>,
}

impl Backend {
    fn log() -> Self {
        Self {
            name: "log",
            sim: SimStorage::new(),
            clock: Arc::new(ManualClock::new(1_700_000_000_000)),
            partitions: None,
            offsets: None,
        }
    }

    fn memory() -> Self {
        Self {
            name: "memory",
            sim: SimStorage::new(),
            clock: Arc::new(ManualClock::new(1_700_000_000_000)),
            partitions: Some(Arc::new(MemoryBackend::default())),
            offsets: None,
        }
    }

    /// Cluster mode's backend on the shared test cluster; `None` without nats-server.
    fn nats(test: &str) -> Option<Self> {
        let cluster = NatsCluster::shared()?;
        let backend = cluster.backend(&unique_prefix(test));
        let offsets = backend.offsets().expect("the offsets bucket");
        Some(Self {
            name: "nats",
            sim: SimStorage::new(),
            clock: Arc::new(ManualClock::new(1_700_000_000_000)),
            partitions: Some(Arc::new(backend)),
            offsets: Some(Arc::new(offsets)),
        })
    }

    fn open(&self) -> Store {
        let config = eventmesh::store::StoreConfig {
            partitions: self.partitions.clone(),
            offsets: self.offsets.clone(),
            ..config_on(Arc::new(self.sim.clone()), Arc::clone(&self.clock))
        };
        Store::open(config).expect("open store")
    }
}

fn every(test: &str) -> Vec<Backend> {
    let mut all = vec![Backend::log(), Backend::memory()];
    all.extend(Backend::nats(test));
    all
}

#[test]
fn ingest_dedup_and_reads_answer_the_same_on_every_backend() {
    // Proves the seam carries ingest and dedup: stored offsets, a duplicate's first
    // offset, a reused key refused with nothing stored, a batch all or nothing, and a
    // page read against one snapshot of the end.
    let rt = runtime();
    for b in every("ingest_dedup_and_reads_answer_the_same_on_every_backend") {
        let store = b.open();
        let flow = new_flow(&store, "f");
        rt.block_on(async {
            let out = flow
                .ingest(&[event("{\"a\":1}", Some("k1")), event("{\"a\":2}", None)])
                .await
                .expect("ingest");
            assert_eq!(
                out,
                vec![
                    IngestOutcome::Stored { offset: Offset(0) },
                    IngestOutcome::Stored { offset: Offset(1) }
                ],
                "{}",
                b.name
            );
            let dup = flow
                .ingest(&[event("{\"a\":1}", Some("k1"))])
                .await
                .expect("ingest");
            assert_eq!(dup, vec![IngestOutcome::Duplicate { offset: Offset(0) }]);
            let reused = flow
                .ingest(&[event("{\"new\":1}", None), event("{\"a\":9}", Some("k1"))])
                .await;
            assert!(
                matches!(
                    reused,
                    Err(StoreError::IdempotencyKeyReused { offset: Offset(0) })
                ),
                "{}: {reused:?}",
                b.name
            );
            assert_eq!(
                flow.end(),
                Offset(2),
                "{}: nothing of the call stored",
                b.name
            );
        });
        let Page { events, next, end } = flow
            .read_events(Offset(0), 10, usize::MAX, None)
            .expect("read");
        assert_eq!(end, Offset(2), "{}", b.name);
        assert_eq!(next, Offset(2));
        let bodies: Vec<&[u8]> = events.iter().map(|e| e.payload.as_ref()).collect();
        assert_eq!(
            bodies,
            vec![&b"{\"a\":1}"[..], &b"{\"a\":2}"[..]],
            "{}",
            b.name
        );
        assert_eq!(events[0].idempotency_key.as_deref(), Some("k1"));
        assert_eq!(events[0].event_type, "order.created");
        let one = flow.event_at(Offset(1)).expect("read").expect("retained");
        assert_eq!(one.payload.as_ref(), b"{\"a\":2}");
        assert!(flow.event_at(Offset(2)).expect("read").is_none());
    }
}

#[test]
fn consumers_times_and_lag_answer_the_same_on_every_backend() {
    // Proves offsets by time, polls, commits, seeks and lag go through the seam.
    let rt = runtime();
    for b in every("consumers_times_and_lag_answer_the_same_on_every_backend") {
        let store = b.open();
        let flow = new_flow(&store, "f");
        rt.block_on(async {
            for i in 0..5 {
                flow.ingest(&[event(&format!("{{\"i\":{i}}}"), None)])
                    .await
                    .expect("ingest");
                b.clock.advance(1000);
            }
            assert_eq!(
                flow.offset_at(1_700_000_002_000).expect("time"),
                Offset(2),
                "{}",
                b.name
            );
            assert_eq!(flow.offset_at(1_800_000_000_000).expect("time"), Offset(5));
            let polled = flow
                .poll("c", 2, usize::MAX, 0, tokio::sync::watch::channel(false).1)
                .await
                .expect("poll");
            assert_eq!(polled.committed, None);
            assert_eq!(polled.page.events.len(), 2);
            assert_eq!(polled.page.next, Offset(2));
            assert_eq!(polled.page.end, Offset(5));
            let view = flow.commit("c", polled.page.next).await.expect("commit");
            assert_eq!((view.committed_offset, view.lag), (2, 3), "{}", b.name);
            let view = flow
                .seek("c", SeekTo::Timestamp(1_700_000_004_000))
                .await
                .expect("seek");
            assert_eq!((view.committed_offset, view.lag), (4, 1), "{}", b.name);
            let beyond = flow.commit("c", Offset(6)).await;
            assert!(matches!(beyond, Err(StoreError::Invalid(_))), "{beyond:?}");
            let listed = flow.consumers();
            assert_eq!(listed.len(), 1);
            assert_eq!((listed[0].name.as_str(), listed[0].lag), ("c", 1));
        });
        let report = flow.analytics(Window::Hour).expect("analytics");
        assert_eq!(
            report.event_types.get("order.created"),
            Some(&5),
            "{}",
            b.name
        );
    }
}

#[test]
fn a_restart_keeps_events_and_dedup_on_every_backend() {
    // Proves open goes through the seam too: after a restart the events are there and
    // the idempotency index, rebuilt from the partition, still knows the key.
    let rt = runtime();
    for b in every("a_restart_keeps_events_and_dedup_on_every_backend") {
        let id = {
            let store = b.open();
            let flow = new_flow(&store, "f");
            rt.block_on(flow.ingest(&[event("{\"a\":1}", Some("k1"))]))
                .expect("ingest");
            flow.id().to_owned()
        };
        let store = b.open();
        let flow = store.flow(&id).expect("the flow reopens");
        assert_eq!(flow.end(), Offset(1), "{}", b.name);
        let again = rt
            .block_on(flow.ingest(&[event("{\"a\":1}", Some("k1"))]))
            .expect("ingest");
        assert_eq!(
            again,
            vec![IngestOutcome::Duplicate { offset: Offset(0) }],
            "{}",
            b.name
        );
    }
}

#[test]
fn a_partition_that_refuses_appends_makes_its_flow_read_only_and_no_other() {
    // Proves health crosses the seam: a backend's refusal is a 503-class read-only
    // error for that flow's ingest, `health()` says why, and the other flow still takes
    // events. (The Log's own poisoning is proven in tests of the engine and the server.)
    let rt = runtime();
    let backend = Arc::new(MemoryBackend::default());
    let b = Backend {
        partitions: Some(backend.clone()),
        ..Backend::memory()
    };
    let store = b.open();
    let (broken, healthy) = (new_flow(&store, "broken"), new_flow(&store, "healthy"));
    backend
        .partition(broken.dir())
        .expect("its partition")
        .fail_appends("quorum lost");
    let refused = rt.block_on(broken.ingest(&[event("{}", None)]));
    let err = refused.expect_err("refused");
    assert!(err.is_read_only(), "{err:?}");
    let health = broken.health();
    assert!(!health.writable);
    assert_eq!(health.refusing, vec![("events", "quorum lost".to_owned())]);
    assert_eq!(broken.end(), Offset(0));
    let ok = rt
        .block_on(healthy.ingest(&[event("{}", None)]))
        .expect("the other flow takes events");
    assert_eq!(ok, vec![IngestOutcome::Stored { offset: Offset(0) }]);
    assert!(healthy.health().writable);
}

#[test]
fn a_flow_whose_backend_did_not_answer_opens_again_on_its_next_use() {
    // Proves an opening that failed only because the backend did not answer in time
    // (cluster mode: no stream leader during a failover) is not a quarantine until
    // restart: the flow is reported unavailable, saying it will be opened again, and
    // its next use opens it with its events. A damaged flow stays quarantined
    // (tests/it/store_damage.rs).
    let rt = runtime();
    let backend = Arc::new(MemoryBackend::default());
    let b = Backend {
        partitions: Some(backend.clone()),
        ..Backend::memory()
    };
    let id = {
        let store = b.open();
        let flow = new_flow(&store, "f");
        rt.block_on(flow.ingest(&[event("{}", Some("k"))]))
            .expect("ingest");
        store.sync_all().expect("sync");
        flow.id().to_owned()
    };
    // The store opens every flow as it starts (`FlowOpening::AtStart`): that one fails.
    backend.refuse_opens(1);
    let store = b.open();
    let why = store.flow_unavailable(&id).expect("reported unavailable");
    assert!(why.contains("opened again on the next request"), "{why}");
    let flow = store.flow(&id).expect("opened on its next use");
    assert_eq!(store.flow_unavailable(&id), None);
    assert_eq!(flow.end(), Offset(1));
    let again = rt
        .block_on(flow.ingest(&[event("{}", Some("k"))]))
        .expect("ingest");
    assert_eq!(again, vec![IngestOutcome::Duplicate { offset: Offset(0) }]);
}
