//! Cluster mode's partition, two nodes at once: two `NatsBackend` connections (two
//! EventMesh nodes) on one flow's stream of the shared 3-node test cluster. What one
//! node stores, the other reads at the same offsets; a key one node stored is a
//! conflict for the other (nothing stored twice), including the race where both send
//! it at once; and a node learns the other's end without reading the stream.
//! Skipped without nats-server (required in .ci/run).

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use eventmesh::log::{LogConfig, Offset, RecordInput};
use eventmesh::store::partition::{Partition, PartitionBackend, PartitionError};

use crate::common::nats::{unique_prefix, NatsCluster};
use crate::common::store::runtime;

fn keyed(body: &str, key: &str) -> RecordInput {
    RecordInput {
        payload: Bytes::from(body.to_owned()),
        key: Some(Bytes::from(key.to_owned())),
        headers: vec![("type".into(), Bytes::from_static(b"t"))],
        flags: 1,
    }
}

/// Two nodes' handles on one new flow's stream, or `None` without nats-server.
fn two_nodes(test: &str) -> Option<(Arc<dyn Partition>, Arc<dyn Partition>)> {
    let cluster = NatsCluster::shared()?;
    let prefix = unique_prefix(test);
    let dir = PathBuf::from("/nodes/fl_shared");
    let a = cluster
        .backend(&prefix)
        .open(&dir, LogConfig::default(), true)
        .expect("node A creates the stream");
    let b = cluster
        .backend(&prefix)
        .open(&dir, LogConfig::default(), false)
        .expect("node B opens it");
    Some((a, b))
}

#[test]
fn what_one_node_stores_the_other_reads_byte_equal_at_the_same_offsets() {
    // Proves the offset mapping (sequence - 1) and the message form are the same on
    // every node: node B reads node A's batch whole, and its own append follows it.
    let Some((a, b)) = two_nodes("reads") else {
        return;
    };
    let rt = runtime();
    let batch = vec![keyed("{\"n\":1}", "k1"), keyed("{\"n\":2}", "k2")];
    let out = rt
        .block_on(a.submit(batch.clone()).expect("submit"))
        .expect("stored");
    assert_eq!((out.first, out.count), (Offset(0), 2));
    // B learns A's end from A's tick; wait for it, not for time.
    let mut end = b.subscribe();
    rt.block_on(end.wait_for(|e| *e >= Offset(2)))
        .expect("B sees the end move");
    let read = b.read(Offset(0), 10, usize::MAX).expect("B reads");
    assert_eq!(read.len(), 2);
    for (i, r) in read.iter().enumerate() {
        assert_eq!(r.offset, Offset(i as u64));
        assert_eq!(r.payload, batch[i].payload);
        assert_eq!(r.key, batch[i].key);
        assert_eq!(r.flags, 1);
        assert_eq!(r.header("type"), Some(&b"t"[..]));
        assert_eq!(r.timestamp_ms, out.timestamp_ms);
    }
    let own = rt
        .block_on(
            b.submit(vec![RecordInput::new(&b"{}"[..])])
                .expect("submit"),
        )
        .expect("stored");
    assert_eq!(own.first, Offset(2), "B's append follows A's");
    let all: Vec<_> = a
        .records_from(Offset(0))
        .map(|r| r.expect("record").offset)
        .collect();
    assert_eq!(all, vec![Offset(0), Offset(1), Offset(2)]);
    assert_eq!(
        a.offset_for_timestamp(out.timestamp_ms).expect("by time"),
        Offset(0)
    );
}

#[test]
fn a_key_one_node_stored_is_a_conflict_for_the_other_and_nothing_is_stored_twice() {
    // Proves the race layer (Nats-Msg-Id): a single event and an atomic batch holding
    // a key the other node stored both come back Conflict with nothing stored, and
    // the conflicting node's end then covers the other's record (so the store's
    // catch-up finds it).
    let Some((a, b)) = two_nodes("conflict") else {
        return;
    };
    let rt = runtime();
    rt.block_on(a.submit(vec![keyed("{\"x\":1}", "k")]).expect("submit"))
        .expect("stored");
    let single = rt.block_on(b.submit(vec![keyed("{\"x\":1}", "k")]).expect("submit"));
    assert!(
        matches!(single, Err(PartitionError::Conflict)),
        "{single:?}"
    );
    assert!(b.next_offset() >= Offset(1));
    let batch = rt.block_on(
        b.submit(vec![keyed("{\"y\":1}", "new"), keyed("{\"x\":1}", "k")])
            .expect("submit"),
    );
    assert!(matches!(batch, Err(PartitionError::Conflict)), "{batch:?}");
    let stored: Vec<_> = a
        .records_from(Offset(0))
        .map(|r| r.expect("record").payload)
        .collect();
    assert_eq!(
        stored,
        vec![Bytes::from_static(b"{\"x\":1}")],
        "one copy, no batch"
    );
}

#[test]
fn the_same_key_sent_to_both_nodes_at_once_is_stored_once() {
    // Proves two nodes racing on one key store one event, whichever wins: across 20
    // keys sent to both at the same moment, exactly one append per key succeeds and
    // the other is a Conflict, and the stream holds 20 records.
    let Some((a, b)) = two_nodes("race") else {
        return;
    };
    let rt = runtime();
    let mut stored = 0;
    rt.block_on(async {
        for i in 0..20 {
            let key = format!("race-{i}");
            let pa = a.submit(vec![keyed("{}", &key)]).expect("submit");
            let pb = b.submit(vec![keyed("{}", &key)]).expect("submit");
            let (ra, rb) = tokio::join!(pa, pb);
            for r in [&ra, &rb] {
                match r {
                    Ok(_) => stored += 1,
                    Err(PartitionError::Conflict) => {}
                    Err(e) => panic!("{key}: {e}"),
                }
            }
            assert!(ra.is_ok() != rb.is_ok(), "{key}: exactly one stored");
        }
    });
    assert_eq!(stored, 20);
    let keys: Vec<_> = a
        .records_from(Offset(0))
        .map(|r| r.expect("record").key.expect("keyed"))
        .collect();
    assert_eq!(keys.len(), 20);
    let mut distinct = keys.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 20, "no key twice");
}

#[test]
fn a_request_log_stream_with_its_retention_set_opens_again_and_keeps_its_entries() {
    // Proves the request-log stream (R1, made by whichever node opens the flow first)
    // opens again after a retention pass changed its limits (JetStream refuses the
    // create with err 10058 then: the stream is checked as it stands), with the entry
    // another node appended, and that a barrier passes after the entries queued.
    let Some(cluster) = NatsCluster::shared() else {
        return;
    };
    let prefix = unique_prefix("rqopen");
    let dir = PathBuf::from("/nodes/fl_rq");
    let (node_a, node_b) = (cluster.backend(&prefix), cluster.backend(&prefix));
    let rt = runtime();
    let a = node_a
        .open_requests(&dir, LogConfig::default(), true)
        .expect("a stream backend")
        .expect("A makes the stream");
    let pending = a
        .submit(vec![RecordInput::new(&b"entry"[..])])
        .expect("queued");
    a.barrier().expect("the barrier passes");
    assert_eq!(rt.block_on(pending).expect("stored").first, Offset(0));
    a.apply_retention(eventmesh::log::Retention {
        max_age_ms: Some(7 * 24 * 3600 * 1000),
        max_bytes: Some(256 << 20),
    })
    .expect("limits set");
    let b = node_b
        .open_requests(&dir, LogConfig::default(), true)
        .expect("a stream backend")
        .expect("B opens the stream as it stands");
    let read = b.read(Offset(0), 10, usize::MAX).expect("B reads");
    assert_eq!(read.len(), 1);
    assert_eq!(&read[0].payload[..], b"entry");
}
