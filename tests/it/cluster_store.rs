//! Cluster mode's registry: two EventMesh nodes (two stores, each with its own data
//! directory) on one NATS cluster share flows, workspaces and keys through the KV
//! bucket. A change on one node reaches the other through the watch (waited for by
//! `registry_changes_applied`, never by time); a restarted node starts from the
//! registry; a node with another installation secret is refused; changes made on both
//! nodes at once are all kept; and ingest on either node deduplicates against the
//! other's events, and a consumer's commit on one node is where a poll on the other
//! reads, never moved back by a late commit. Skipped without nats-server (required in
//! .ci/run).

use std::path::PathBuf;
use std::sync::Arc;

use eventmesh::log::storage::{write_atomic, SimStorage, Storage};
use eventmesh::log::{ManualClock, Offset};
use eventmesh::store::analytics::Window;
use eventmesh::store::meta::RetentionConfig;
use eventmesh::store::partition::nats::NatsBackend;
use eventmesh::store::requests::RequestEntry;
use eventmesh::store::{
    Flow, FlowPatch, IngestOutcome, NewFlow, NewKey, Store, StoreConfig, StoreError,
};

use crate::common::nats::{unique_prefix, NatsCluster};
use crate::common::store::{config_on, event, request_entry, runtime};

const SECRET_FILE: &str = "/secret";

/// One EventMesh node: its own disk, the cluster's backend and registry.
struct Node {
    prefix: String,
    sim: SimStorage,
    clock: Arc<ManualClock>,
    backend: Arc<NatsBackend>,
}

impl Node {
    fn new(cluster: &NatsCluster, prefix: &str, secret: [u8; 32]) -> Self {
        let sim = SimStorage::new();
        write_atomic(&sim, std::path::Path::new(SECRET_FILE), &secret).expect("secret");
        Self {
            prefix: prefix.to_owned(),
            sim,
            clock: Arc::new(ManualClock::new(1_700_000_000_000)),
            backend: Arc::new(cluster.backend(prefix)),
        }
    }

    fn try_open(&self) -> Result<Store, StoreError> {
        let registry = self.backend.registry().expect("the registry bucket");
        Store::open(StoreConfig {
            partitions: Some(self.backend.clone()),
            registry: Some(Arc::new(registry)),
            offsets: Some(Arc::new(
                self.backend.offsets().expect("the offsets bucket"),
            )),
            secret_file: Some(PathBuf::from(SECRET_FILE)),
            ..config_on(Arc::new(self.sim.clone()), Arc::clone(&self.clock))
        })
    }

    fn open(&self) -> Store {
        self.try_open().expect("open the node's store")
    }
}

/// Two nodes on a prefix of their own, or `None` without nats-server.
fn two_nodes(test: &str) -> Option<(Node, Node)> {
    let cluster = NatsCluster::shared()?;
    let prefix = unique_prefix(test);
    Some((
        Node::new(cluster, &prefix, [7; 32]),
        Node::new(cluster, &prefix, [7; 32]),
    ))
}

/// Waits until `store` has applied `n` more changes from other nodes than `before`.
fn applied(store: &Store, before: u64, n: u64) {
    let mut rx = store.registry_changes_applied();
    runtime()
        .block_on(rx.wait_for(|count| *count >= before + n))
        .expect("the watch delivers");
}

/// A new flow made on `sa`, open on both nodes once `sb` has applied it.
fn flow_on_both(sa: &Store, sb: &Store) -> (Arc<Flow>, Arc<Flow>) {
    let before = *sb.registry_changes_applied().borrow();
    let (flow, _) = sa
        .create_flow(NewFlow {
            name: "f".into(),
            ..NewFlow::default()
        })
        .expect("create");
    applied(sb, before, 1);
    (
        sa.flow(&flow.id).expect("on A"),
        sb.flow(&flow.id).expect("on B"),
    )
}

#[test]
fn a_flow_and_a_key_made_on_one_node_serve_on_the_other() {
    // Proves the registry carries flows and keys both ways: node B sees A's flow (same
    // id, webhook and settings) and authenticates A's key, live through the watch; a
    // flow B changes is changed on A; and a deleted flow is gone on both.
    let Some((a, b)) = two_nodes("shared") else {
        return;
    };
    let (sa, sb) = (a.open(), b.open());
    let before = *sb.registry_changes_applied().borrow();
    let (flow, _) = sa
        .create_flow(NewFlow {
            name: "orders".into(),
            ..NewFlow::default()
        })
        .expect("create on A");
    applied(&sb, before, 1);
    assert_eq!(sb.flow_record(&flow.id), Some(flow.clone()));
    assert_eq!(
        sb.flow_by_webhook(&flow.webhook_id)
            .map(|f| f.id().to_owned()),
        Some(flow.id.clone()),
        "B opens A's flow by its webhook"
    );
    let before = *sb.registry_changes_applied().borrow();
    let (_, key) = sa
        .create_key(NewKey {
            name: "shop".into(),
            ..NewKey::default()
        })
        .expect("key on A");
    applied(&sb, before, 1);
    assert!(sb.authenticate(&key).is_ok(), "A's key works on B");
    let before = *sa.registry_changes_applied().borrow();
    let patched = sb
        .update_flow(
            &flow.id,
            eventmesh::store::FlowPatch {
                name: Some("orders-eu".into()),
                ..Default::default()
            },
        )
        .expect("patch on B");
    applied(&sa, before, 1);
    assert_eq!(sa.flow_record(&flow.id), Some(patched));
    let before = *sb.registry_changes_applied().borrow();
    sa.delete_flow(&flow.id).expect("delete on A");
    applied(&sb, before, 1);
    assert_eq!(sb.flow_record(&flow.id), None);
    assert!(sb.flow_by_webhook(&flow.webhook_id).is_none());
}

#[test]
fn a_restarted_node_starts_from_the_registry() {
    // Proves start-up follows the registry: a node that was down while another
    // created and deleted flows comes back with the created one (its events readable
    // there), without the deleted one (its local files removed), and its keys.
    let Some((a, b)) = two_nodes("restart") else {
        return;
    };
    let rt = runtime();
    let gone = {
        let sb = b.open();
        sb.create_flow(NewFlow {
            name: "gone".into(),
            ..NewFlow::default()
        })
        .expect("create on B")
        .0
    };
    let sa = a.open();
    let (flow, _) = sa
        .create_flow(NewFlow {
            name: "new".into(),
            ..NewFlow::default()
        })
        .expect("create on A while B is down");
    let f = sa.flow(&flow.id).expect("open");
    rt.block_on(f.ingest(&[event("{\"n\":1}", Some("k1"))]))
        .expect("ingest on A");
    sa.delete_flow(&gone.id).expect("delete B's flow on A");
    let sb = b.open();
    assert!(sb.flow_record(&gone.id).is_none(), "deleted while down");
    assert!(
        !b.sim.exists(&PathBuf::from("/data/flows").join(&gone.id)),
        "its files went"
    );
    let on_b = sb.flow(&flow.id).expect("A's new flow opens on B");
    assert_eq!(on_b.end(), Offset(1));
    let dup = rt
        .block_on(on_b.ingest(&[event("{\"n\":1}", Some("k1"))]))
        .expect("ingest on B");
    assert_eq!(dup, vec![IngestOutcome::Duplicate { offset: Offset(0) }]);
}

#[test]
fn a_node_with_another_installation_secret_is_refused() {
    // Proves the secret check: key hashes and sealed secrets from the other nodes
    // would match nothing, so the node does not start, and says why.
    let Some(cluster) = NatsCluster::shared() else {
        return;
    };
    let prefix = unique_prefix("secret");
    let a = Node::new(cluster, &prefix, [1; 32]);
    let _sa = a.open();
    let b = Node::new(cluster, &prefix, [2; 32]);
    let err = b.try_open().expect_err("another secret");
    assert!(err.to_string().contains("--secret-file"), "{err}");
}

#[test]
fn changes_made_on_both_nodes_at_once_are_all_kept() {
    // Proves compare-and-set on the metadata: keys created alternately on both nodes,
    // each before the other's change may have arrived, all exist on both after.
    let Some(cluster) = NatsCluster::shared() else {
        return;
    };
    let prefix = unique_prefix("cas");
    let (a, b) = (
        Node::new(cluster, &prefix, [7; 32]),
        Node::new(cluster, &prefix, [7; 32]),
    );
    let (sa, sb) = (a.open(), b.open());
    let mut made = Vec::new();
    for i in 0..6 {
        let store = if i % 2 == 0 { &sa } else { &sb };
        let (record, _) = store
            .create_key(NewKey {
                name: format!("k{i}"),
                ..NewKey::default()
            })
            .expect("create key");
        made.push(record.id);
    }
    // Whatever the watches have delivered by now, a third node reads all six.
    let c = Node::new(cluster, &prefix, [7; 32]);
    let mut on_c: Vec<String> = c.open().keys().into_iter().map(|k| k.id).collect();
    on_c.sort();
    made.sort();
    assert_eq!(on_c, made);
    drop((sa, sb));
}

#[test]
fn ingest_on_either_node_deduplicates_against_the_other() {
    // Proves the flow's own dedup window spans nodes: a key stored through A is a
    // duplicate with A's offset on B, and a different body under it is refused on B.
    let Some((a, b)) = two_nodes("dedup") else {
        return;
    };
    let rt = runtime();
    let (sa, sb) = (a.open(), b.open());
    let (fa, fb) = flow_on_both(&sa, &sb);
    rt.block_on(async {
        let first = fa
            .ingest(&[event("{}", None), event("{\"x\":1}", Some("k"))])
            .await
            .expect("A");
        assert_eq!(first[1], IngestOutcome::Stored { offset: Offset(1) });
        let dup = fb
            .ingest(&[event("{\"x\":1}", Some("k"))])
            .await
            .expect("B");
        assert_eq!(dup, vec![IngestOutcome::Duplicate { offset: Offset(1) }]);
        let reused = fb.ingest(&[event("{\"x\":2}", Some("k"))]).await;
        assert!(
            matches!(
                reused,
                Err(StoreError::IdempotencyKeyReused { offset: Offset(1) })
            ),
            "{reused:?}"
        );
        let next = fb.ingest(&[event("{}", Some("k2"))]).await.expect("B");
        assert_eq!(next, vec![IngestOutcome::Stored { offset: Offset(2) }]);
    });
}

#[test]
fn a_commit_on_one_node_is_where_a_poll_on_the_other_reads_and_never_goes_back() {
    // Proves consumer offsets are shared and forward-only under commits: B polls from
    // A's commit; a late, lower commit (a retry from another node) leaves the offset
    // where it was on both nodes; an explicit seek does move it back; a deleted
    // consumer is gone on both.
    let Some((a, b)) = two_nodes("offsets") else {
        return;
    };
    let rt = runtime();
    let (sa, sb) = (a.open(), b.open());
    let (fa, fb) = flow_on_both(&sa, &sb);
    let no_stop = || tokio::sync::watch::channel(false).1;
    rt.block_on(async {
        for i in 0..5 {
            fa.ingest(&[event(&format!("{{\"i\":{i}}}"), None)])
                .await
                .expect("ingest");
        }
        let view = fa.commit("billing", Offset(3)).await.expect("commit on A");
        assert_eq!(view.committed_offset, 3);
        let polled = fb
            .poll("billing", 10, usize::MAX, 0, no_stop())
            .await
            .expect("poll on B");
        assert_eq!(polled.committed, Some(3));
        assert_eq!(
            polled.page.events.first().map(|e| e.offset),
            Some(Offset(3))
        );
        let late = fb
            .commit("billing", Offset(1))
            .await
            .expect("late commit on B");
        assert_eq!(late.committed_offset, 3, "a lower commit changes nothing");
        let listed = fa.consumers();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].committed_offset, listed[0].lag), (3, 2));
        let back = fb
            .seek("billing", eventmesh::store::SeekTo::Earliest)
            .await
            .expect("seek on B");
        assert_eq!(back.committed_offset, 0, "a seek moves back");
        let polled = fa
            .poll("billing", 1, usize::MAX, 0, no_stop())
            .await
            .expect("poll on A");
        assert_eq!(polled.committed, Some(0));
        assert!(fb.delete_consumer("billing").await.expect("delete on B"));
        assert!(fa.consumers().is_empty());
    });
}

#[test]
fn the_request_log_and_analytics_are_the_same_on_either_node() {
    // Proves the request log lives in the flow's shared stream: what each node
    // answered is in the log read from either node, and the analytics computed from
    // the streams give the same numbers on both (A stores 2 events and answers a 401,
    // B answers a duplicate and a 413).
    let Some((a, b)) = two_nodes("requests") else {
        return;
    };
    let rt = runtime();
    let (sa, sb) = (a.open(), b.open());
    let (fa, fb) = flow_on_both(&sa, &sb);
    rt.block_on(async {
        let first = event("{\"n\":1}", Some("k1"));
        let mut second = event("{\"n\":2}", Some("k2"));
        second.event_type = "order.paid".into();
        fa.ingest(std::slice::from_ref(&first)).await.expect("A");
        fa.ingest(&[second]).await.expect("A");
        let dup = fb.ingest(&[first]).await.expect("B");
        assert_eq!(dup, vec![IngestOutcome::Duplicate { offset: Offset(0) }]);
    });
    fa.record_request(&request_entry(200, 1, 0, 1500))
        .expect("A log");
    fa.record_request(&request_entry(200, 1, 0, 1500))
        .expect("A log");
    fa.record_request(&request_entry(401, 0, 0, 1500))
        .expect("A log");
    fb.record_request(&request_entry(200, 0, 1, 1500))
        .expect("B log");
    fb.record_request(&request_entry(413, 0, 0, 1500))
        .expect("B log");
    // A read hands the node's own buffered entries over first (B's are still in B's
    // buffer here), then reads the stream to its end.
    assert_eq!(fa.analytics(Window::Hour).expect("A").received, 3);
    let on_b = fb.analytics(Window::Hour).expect("B");
    let on_a = fa.analytics(Window::Hour).expect("A again");
    assert_eq!(
        (on_b.received, on_b.accepted, on_b.duplicates),
        (5, 2, 1),
        "{on_b:?}"
    );
    assert_eq!(on_b.rejected.get("401"), Some(&1));
    assert_eq!(on_b.rejected.get("413"), Some(&1));
    assert_eq!(on_b.event_types.get("order.created"), Some(&1));
    assert_eq!(on_b.event_types.get("order.paid"), Some(&1));
    assert_eq!(on_b.volume.iter().map(|v| v.count).sum::<u64>(), 2);
    assert_eq!(on_a, on_b, "the same numbers on either node");
    let log_a = rt.block_on(fa.recent_requests(10)).expect("A's log");
    let log_b = rt.block_on(fb.recent_requests(10)).expect("B's log");
    let statuses = |log: &[(i64, RequestEntry)]| {
        let mut s: Vec<u16> = log.iter().map(|(_, e)| e.status).collect();
        s.sort_unstable();
        s
    };
    assert_eq!(statuses(&log_a), vec![200, 200, 200, 401, 413]);
    assert_eq!(log_a, log_b, "one request log, read from either node");
}

#[test]
fn a_flows_retention_reaches_its_stream_and_removing_it_clears_the_limits() {
    // Proves retention maps to the stream's max_age and max_bytes, and that removing
    // the setting clears them on the stream too, from the other node.
    let Some((a, b)) = two_nodes("retention") else {
        return;
    };
    let cluster = NatsCluster::shared().expect("the shared cluster");
    let (sa, sb) = (a.open(), b.open());
    let (flow, _) = sa
        .create_flow(NewFlow {
            name: "kept".into(),
            retention: Some(RetentionConfig {
                max_age_seconds: Some(3600),
                max_bytes: Some(1 << 30),
            }),
            ..NewFlow::default()
        })
        .expect("create");
    sa.flow(&flow.id)
        .expect("on A")
        .apply_retention()
        .expect("retention");
    let stream = format!("{}_EV_{}", a.prefix, flow.id);
    let config = &cluster.stream_info(&stream)["config"];
    assert_eq!(
        (config["max_age"].as_u64(), config["max_bytes"].as_i64()),
        (Some(3_600_000_000_000), Some(1 << 30)),
        "{config}"
    );
    let before = *sb.registry_changes_applied().borrow();
    sa.update_flow(
        &flow.id,
        FlowPatch {
            retention: Some(RetentionConfig::default()),
            ..FlowPatch::default()
        },
    )
    .expect("remove the retention");
    applied(&sb, before, 1);
    // B's pass clears them, whenever B opened the flow: it compares the setting with
    // what the stream holds, not with what it last set itself.
    sb.flow(&flow.id)
        .expect("on B")
        .apply_retention()
        .expect("retention");
    let config = &cluster.stream_info(&stream)["config"];
    assert_eq!(
        (config["max_age"].as_u64(), config["max_bytes"].as_i64()),
        (Some(0), Some(-1)),
        "{config}"
    );
}

#[test]
fn a_request_logs_limit_is_a_message_count_that_reserves_no_store_space() {
    // Proves the request log's 256 MiB bound reaches its stream as max_msgs (and a
    // message-size cap), never as max_bytes: JetStream reserves a stream's max_bytes
    // against the server's max_store, and at 256 MiB a flow a 57 GB store was used up
    // by a few hundred flows, after which every retention pass failed (err 10047). A
    // second pass (which finds them in place) keeps them.
    let Some((a, _b)) = two_nodes("rqlimit") else {
        return;
    };
    let cluster = NatsCluster::shared().expect("the shared cluster");
    let sa = a.open();
    let (flow, _) = sa
        .create_flow(NewFlow {
            name: "rq".into(),
            ..NewFlow::default()
        })
        .expect("create");
    let flow = sa.flow(&flow.id).expect("open");
    flow.apply_retention().expect("retention");
    let stream = format!("{}_RQ_{}", a.prefix, flow.id());
    let info = cluster.stream_info(&stream);
    let limits = |info: &serde_json::Value| {
        let c = &info["config"];
        (
            c["max_age"].as_u64(),
            c["max_bytes"].as_i64(),
            c["max_msgs"].as_i64(),
            c["max_msg_size"].as_i64(),
        )
    };
    let week_ns = 7 * 24 * 3600 * 1_000_000_000u64;
    assert_eq!(
        limits(&info),
        (Some(week_ns), Some(-1), Some(1 << 20), Some(4096)),
        "{info}"
    );
    flow.apply_retention().expect("a second pass");
    let again = cluster.stream_info(&stream);
    assert_eq!(limits(&again), limits(&info), "{again}");
}
