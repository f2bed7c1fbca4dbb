//! A flow's retention frees disk by whole segments; consumers below it read from the start.

use crate::common;

use eventmesh::store::Page;
use std::sync::Arc;

use common::store::{event, runtime, ADMIN};
use eventmesh::log::{ManualClock, Offset};
use eventmesh::store::meta::RetentionConfig;
use eventmesh::store::{NewFlow, Store, StoreConfig};

fn du(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").metadata().expect("stat").len())
        .sum()
}

#[test]
fn max_bytes_retention_deletes_old_segments_and_frees_disk() {
    // Proves maintenance applies the flow's maxBytes: disk shrinks, the first offset moves
    // up, and a consumer committed below it reads from the first retained event.
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let config = StoreConfig {
        admin_key: Some(ADMIN.into()),
        segment_bytes: 64 * 1024,
        clock,
        ..StoreConfig::new(dir.path())
    };
    let store = Store::open(config).expect("open");
    let retention = RetentionConfig {
        max_age_seconds: None,
        max_bytes: Some(1024 * 1024),
    };
    let (rec, _) = store
        .create_flow(NewFlow {
            name: "r".into(),
            retention: Some(retention),
            ..NewFlow::default()
        })
        .expect("flow");
    let flow = store.flow(&rec.id).expect("flow");
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(1000));
    rt.block_on(async {
        flow.commit("slow", Offset(0)).await.expect("commit");
        for _ in 0..3000 {
            flow.ingest(&[event(&body, None)]).await.expect("ingest");
        }
    });
    let events_dir = dir.path().join("flows").join(&rec.id).join("events");
    let before = du(&events_dir);
    assert!(before > 3_000_000);
    store.maintenance().expect("maintenance");
    let after = du(&events_dir);
    assert!(after <= 1024 * 1024 + 128 * 1024, "{after} bytes left");
    let first = flow.first();
    assert!(first > Offset(1500), "first retained offset {first}");
    rt.block_on(async {
        let Page {
            events, next: _, ..
        } = flow
            .poll(
                "slow",
                1,
                usize::MAX,
                0,
                tokio::sync::watch::channel(false).1,
            )
            .await
            .expect("poll")
            .page;
        assert_eq!(events[0].offset, first);
    });
    let lag = flow.consumers()[0].lag;
    assert_eq!(lag, 3000 - first.0);
}

#[test]
fn keys_of_events_deleted_by_retention_survive_a_graceful_restart() {
    // Proves the dedup checkpoint: after retention deleted the first events, a restart
    // still knows their keys (a resend is a duplicate with the original offset).
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = || StoreConfig {
        admin_key: Some(ADMIN.into()),
        segment_bytes: 64 * 1024,
        clock: Arc::new(ManualClock::new(1_700_000_000_000)),
        ..StoreConfig::new(dir.path())
    };
    let store = Store::open(config()).expect("open");
    let retention = RetentionConfig {
        max_age_seconds: None,
        max_bytes: Some(1024 * 1024),
    };
    let (rec, _) = store
        .create_flow(NewFlow {
            name: "d".into(),
            retention: Some(retention),
            ..NewFlow::default()
        })
        .expect("flow");
    let flow = store.flow(&rec.id).expect("flow");
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(1000));
    rt.block_on(async {
        for i in 0..3000 {
            flow.ingest(&[event(&body, Some(&format!("key-{i}")))])
                .await
                .expect("ingest");
        }
    });
    store.maintenance().expect("maintenance");
    assert!(
        flow.first() > Offset(1000),
        "retention deleted the first events"
    );
    store.sync_all().expect("graceful shutdown");
    drop(flow);
    drop(store);
    let store = Store::open(config()).expect("reopen");
    let flow = store.flow(&rec.id).expect("flow");
    let again = rt
        .block_on(flow.ingest(&[event(&body, Some("key-5"))]))
        .expect("ingest");
    assert_eq!(
        again,
        vec![eventmesh::store::IngestOutcome::Duplicate { offset: Offset(5) }]
    );
    assert_eq!(flow.stats().dedup_keys, 3000);
}
