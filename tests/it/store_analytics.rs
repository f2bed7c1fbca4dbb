//! Analytics from the logs: numbers match a known sequence, and are the same after a
//! restart (resuming from the checkpoint) and after an unclean stop.

use crate::common;

use std::sync::Arc;

use common::store::{event, request_entry as entry, runtime, ADMIN};
use eventmesh::log::ManualClock;
use eventmesh::store::analytics::Window;
use eventmesh::store::flow::Flow;
use eventmesh::store::{IngestOutcome, NewFlow, Store, StoreConfig};

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Store {
    let config = StoreConfig {
        admin_key: Some(ADMIN.into()),
        clock: clock.clone(),
        ..StoreConfig::new(dir)
    };
    Store::open(config).expect("open")
}

/// A new store with one flow in it.
fn open_with_flow(dir: &std::path::Path, clock: &Arc<ManualClock>) -> (Store, Arc<Flow>) {
    let store = open(dir, clock);
    let (rec, _) = store
        .create_flow(NewFlow {
            name: "a".into(),
            ..NewFlow::default()
        })
        .expect("flow");
    let flow = store.flow(&rec.id).expect("flow");
    (store, flow)
}

#[test]
fn numbers_match_the_sequence_sent_and_survive_restarts() {
    // Proves received/accepted/duplicates/rejected, rates, types and volume for a known
    // sequence, and identical numbers after a graceful restart and after an unclean one.
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let (store, flow) = open_with_flow(dir.path(), &clock);
    let flow_id = flow.id().to_owned();
    rt.block_on(async {
        for i in 0..6u32 {
            let mut ev = event(
                &format!("{{\"k\":{}}}", i % 4),
                Some(&format!("k{}", i % 4)),
            );
            ev.event_type = if i % 2 == 0 {
                "a.created".into()
            } else {
                "b.paid".into()
            };
            let out = flow.ingest(&[ev]).await.expect("ingest");
            let (stored, dup) = match out[0] {
                IngestOutcome::Stored { .. } => (1, 0),
                _ => (0, 1),
            };
            flow.record_request(&entry(200, stored, dup, 1000 + i * 100))
                .expect("log");
            clock.advance(30_000);
        }
        for status in [401u16, 401, 413] {
            flow.record_request(&entry(status, 0, 0, 200)).expect("log");
        }
    });
    let report = flow.analytics(Window::Hour).expect("analytics");
    assert_eq!(
        (report.received, report.accepted, report.duplicates),
        (9, 4, 2)
    );
    assert_eq!(report.rejected.get("401"), Some(&2));
    assert_eq!(report.rejected.get("413"), Some(&1));
    assert!((report.success_rate - 6.0 / 9.0).abs() < 1e-9);
    assert!((report.error_rate - 3.0 / 9.0).abs() < 1e-9);
    assert_eq!(report.event_types.get("a.created"), Some(&2));
    assert_eq!(report.event_types.get("b.paid"), Some(&2));
    assert_eq!(report.volume.iter().map(|v| v.count).sum::<u64>(), 4);
    assert!(
        report.latency_ms.p50 > 0.0 && report.latency_ms.p99 <= 2.0,
        "{:?}",
        report.latency_ms
    );
    let consumers_before = flow.consumers();

    // A graceful restart: the checkpoint is written, then resumed from.
    store.sync_all().expect("sync");
    drop(flow);
    drop(store);
    let store = open(dir.path(), &clock);
    let flow = store.flow(&flow_id).expect("flow");
    assert_eq!(flow.analytics(Window::Hour).expect("analytics"), report);
    assert_eq!(flow.consumers(), consumers_before);

    // New traffic after the checkpoint, then an unclean stop (no checkpoint): the numbers
    // come back the same because the checkpoint's offsets resume over the logs.
    flow.record_request(&entry(429, 0, 0, 50)).expect("log");
    let after = flow.analytics(Window::Hour).expect("analytics");
    assert_eq!(after.received, 10);
    std::mem::forget(flow);
    std::mem::forget(store);
    // The forgotten store still holds the lock, as a killed process's kernel would not:
    // drop the lock file's holder by opening a copy of the directory instead.
    let copy = tempfile::tempdir().expect("tempdir");
    copy_tree(dir.path(), copy.path());
    let store = open(copy.path(), &clock);
    let flow = store.flow(&flow_id).expect("flow");
    assert_eq!(flow.analytics(Window::Hour).expect("analytics"), after);
    assert_eq!(
        flow.analytics(Window::Week).expect("analytics").received,
        10
    );
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn request_log_entries_are_read_in_order_across_batches() {
    // Proves entries buffered and handed over in batches (256 at a time, the rest on
    // read) are all read back, newest first, each exactly once.
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let (_store, flow) = open_with_flow(dir.path(), &clock);
    let total = eventmesh::store::limits::REQUEST_LOG_BATCH_MAX as u32 * 2 + 7;
    for i in 0..total {
        flow.record_request(&entry(200, 1, 0, i)).expect("log");
    }
    let read = rt.block_on(flow.recent_requests(1000)).expect("read");
    let latencies: Vec<u32> = read.iter().map(|(_, e)| e.latency_us).collect();
    let expected: Vec<u32> = (0..total).rev().collect();
    assert_eq!(latencies, expected);
    // One more after the read is seen by the next read too.
    flow.record_request(&entry(429, 0, 0, 9999)).expect("log");
    let read = rt.block_on(flow.recent_requests(1)).expect("read");
    assert_eq!(read[0].1.status, 429);
}

#[test]
fn request_log_times_are_when_each_attempt_was_recorded_not_when_its_batch_was_written() {
    // Proves an entry's time is its answer's, though entries wait in memory for their
    // batch (up to REQUEST_LOG_FLUSH_PERIOD) before the writer stamps the record.
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let start = 1_700_000_039_900;
    let clock = Arc::new(ManualClock::new(start));
    let (_store, flow) = open_with_flow(dir.path(), &clock);
    flow.record_request(&entry(200, 1, 0, 10)).expect("log");
    clock.advance(150);
    flow.record_request(&entry(401, 0, 0, 20)).expect("log");
    clock.advance(5_000);
    // Written only now, by the read's hand-over, 5 s after both were recorded.
    let read = rt.block_on(flow.recent_requests(10)).expect("read");
    let times: Vec<(i64, u16)> = read.iter().map(|(t, e)| (*t, e.status)).collect();
    assert_eq!(times, vec![(start + 150, 401), (start, 200)]);
}
