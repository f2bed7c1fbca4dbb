//! Ingestion through the flow store: idempotency (atomic check-and-append, windows,
//! key reuse, restarts, power loss), batches all or nothing.

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;

use common::store::{clock, event, runtime, sim_store};
use eventmesh::log::storage::{CrashMode, SimStorage};
use eventmesh::log::Offset;
use eventmesh::store::{IngestOutcome, NewFlow, StoreError};
use proptest::prelude::*;

#[test]
fn a_key_seen_in_the_window_is_a_duplicate_with_the_first_offset() {
    // Proves dedup: same key → duplicate with the first offset; other key → new; after the window → new.
    let rt = runtime();
    let sim = SimStorage::new();
    let clock = clock();
    let store = sim_store(&sim, &clock);
    let (rec, _) = store
        .create_flow(NewFlow {
            name: "f".into(),
            dedup_window_seconds: Some(60),
            ..NewFlow::default()
        })
        .expect("flow");
    let flow = store.flow(&rec.id).expect("flow");
    rt.block_on(async {
        let first = flow
            .ingest(&[event("{\"a\":1}", Some("k1"))])
            .await
            .expect("ingest");
        assert_eq!(first, vec![IngestOutcome::Stored { offset: Offset(0) }]);
        let again = flow
            .ingest(&[event("{\"a\":1}", Some("k1"))])
            .await
            .expect("ingest");
        assert_eq!(again, vec![IngestOutcome::Duplicate { offset: Offset(0) }]);
        let other = flow
            .ingest(&[event("{\"a\":2}", Some("k2"))])
            .await
            .expect("ingest");
        assert_eq!(other, vec![IngestOutcome::Stored { offset: Offset(1) }]);
        let reused = flow.ingest(&[event("{\"a\":3}", Some("k1"))]).await;
        assert!(
            matches!(
                reused,
                Err(StoreError::IdempotencyKeyReused { offset: Offset(0) })
            ),
            "{reused:?}"
        );
        let mut loose = event("{\"a\":3}", Some("k1"));
        loose.strict_key = false;
        assert_eq!(
            flow.ingest(&[loose]).await.expect("ingest"),
            vec![IngestOutcome::Duplicate { offset: Offset(0) }],
            "keys not from Idempotency-Key never answer 422"
        );
        clock.advance(61_000);
        let later = flow
            .ingest(&[event("{\"a\":1}", Some("k1"))])
            .await
            .expect("ingest");
        assert_eq!(
            later,
            vec![IngestOutcome::Stored { offset: Offset(2) }],
            "the window has passed"
        );
    });
    assert_eq!(flow.end(), Offset(3));
}

#[test]
fn a_batch_is_all_or_nothing_and_dedups_within_itself() {
    // Proves a batch stores its new events at consecutive offsets, points in-batch
    // duplicates at their first copy, and stores nothing when a key is reused.
    let rt = runtime();
    let sim = SimStorage::new();
    let store = sim_store(&sim, &clock());
    let (rec, _) = store
        .create_flow(NewFlow {
            name: "f".into(),
            ..NewFlow::default()
        })
        .expect("flow");
    let flow = store.flow(&rec.id).expect("flow");
    rt.block_on(async {
        flow.ingest(&[event("{}", Some("old"))])
            .await
            .expect("ingest");
        let out = flow
            .ingest(&[
                event("{\"n\":1}", None),
                event("{\"n\":2}", Some("a")),
                event("{\"n\":2}", Some("a")),
                event("{}", Some("old")),
            ])
            .await
            .expect("batch");
        assert_eq!(
            out,
            vec![
                IngestOutcome::Stored { offset: Offset(1) },
                IngestOutcome::Stored { offset: Offset(2) },
                IngestOutcome::Duplicate { offset: Offset(2) },
                IngestOutcome::Duplicate { offset: Offset(0) },
            ]
        );
        let bad = flow
            .ingest(&[
                event("{\"n\":3}", None),
                event("{\"other\":1}", Some("old")),
            ])
            .await;
        assert!(matches!(bad, Err(StoreError::IdempotencyKeyReused { .. })));
    });
    assert_eq!(flow.end(), Offset(3), "nothing of the refused batch");
}

#[test]
fn concurrent_appends_with_overlapping_keys_store_each_key_once() {
    // Proves check-and-append is atomic: 8 tasks × 200 sends over 50 keys store 50 events,
    // and every answer for a key names the same offset.
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = eventmesh::store::StoreConfig {
        admin_key: Some(common::store::ADMIN.into()),
        ..eventmesh::store::StoreConfig::new(dir.path())
    };
    let store = eventmesh::store::Store::open(config).expect("open");
    let (rec, _) = store
        .create_flow(NewFlow {
            name: "f".into(),
            rate_limit: Some(None),
            ..NewFlow::default()
        })
        .expect("flow");
    let flow = store.flow(&rec.id).expect("flow");
    let answers = rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let flow = Arc::clone(&flow);
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                for i in 0..200u64 {
                    let k = format!("key-{}", (i * 7 + t * 13) % 50);
                    let body = format!("{{\"k\":\"{k}\"}}");
                    let out = flow
                        .ingest(&[event(&body, Some(&k))])
                        .await
                        .expect("ingest");
                    seen.push((k, out[0]));
                }
                seen
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        all
    });
    let mut offsets: HashMap<String, Offset> = HashMap::new();
    let mut stored = 0;
    for (k, out) in answers {
        let offset = match out {
            IngestOutcome::Stored { offset } => {
                stored += 1;
                offset
            }
            IngestOutcome::Duplicate { offset } => offset,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(
            *offsets.entry(k.clone()).or_insert(offset),
            offset,
            "key {k}"
        );
    }
    assert_eq!(stored, 50);
    assert_eq!(flow.end(), Offset(50));
}

#[test]
fn dedup_survives_a_restart_by_rebuilding_from_the_log() {
    // Proves the index is rebuilt from the keys in the log: a resend after reopen is a duplicate.
    let rt = runtime();
    let sim = SimStorage::new();
    let clock = clock();
    let store = sim_store(&sim, &clock);
    let (rec, _) = store
        .create_flow(NewFlow {
            name: "f".into(),
            ..NewFlow::default()
        })
        .expect("flow");
    rt.block_on(async {
        let flow = store.flow(&rec.id).expect("flow");
        for i in 0..20 {
            flow.ingest(&[event(&format!("{{\"i\":{i}}}"), Some(&format!("k{i}")))])
                .await
                .expect("ingest");
        }
    });
    sim.crash(CrashMode::DropUnsynced);
    drop(store);
    let store = sim_store(&sim, &clock);
    let flow = store.flow(&rec.id).expect("flow");
    assert_eq!(flow.stats().dedup_keys, 20);
    rt.block_on(async {
        let out = flow
            .ingest(&[event("{\"i\":7}", Some("k7"))])
            .await
            .expect("ingest");
        assert_eq!(out, vec![IngestOutcome::Duplicate { offset: Offset(7) }]);
        let reused = flow.ingest(&[event("{\"i\":8000}", Some("k8"))]).await;
        assert!(matches!(
            reused,
            Err(StoreError::IdempotencyKeyReused { offset: Offset(8) })
        ));
    });
}

#[derive(Debug, Clone)]
enum Step {
    Send { key: u8 },
    Commit { permille: u16 },
    Crash { torn: Option<u64> },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0u8..12).prop_map(|key| Step::Send { key }),
        2 => (0u16..=1000).prop_map(|permille| Step::Commit { permille }),
        1 => proptest::option::of(any::<u64>()).prop_map(|torn| Step::Crash { torn }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn no_acknowledged_key_is_ever_stored_twice_and_commits_stay_in_range(steps in proptest::collection::vec(step(), 1..40)) {
        // Proves, across power losses: 0 duplicates of an acknowledged key (a resend is
        // a duplicate with the first offset), and a committed offset is never lost, never
        // moves back, and never runs past the log's end.
        let rt = runtime();
        let sim = SimStorage::new();
        let clock = clock();
        let mut store = sim_store(&sim, &clock);
        let (rec, _) = store.create_flow(NewFlow { name: "m".into(), ..NewFlow::default() }).expect("flow");
        let mut acked: HashMap<u8, Offset> = HashMap::new();
        let mut committed: Option<Offset> = None;
        for s in &steps {
            let flow = store.flow(&rec.id).expect("flow");
            match *s {
                Step::Send { key } => {
                    let body = format!("{{\"key\":{key}}}");
                    let out = rt.block_on(flow.ingest(&[event(&body, Some(&format!("k{key}")))])).expect("ingest");
                    let offset = match out[0] {
                        IngestOutcome::Stored { offset } => {
                            prop_assert!(!acked.contains_key(&key), "key {} stored twice", key);
                            offset
                        }
                        IngestOutcome::Duplicate { offset } => {
                            prop_assert_eq!(acked.get(&key), Some(&offset), "duplicate of key {} names another offset", key);
                            offset
                        }
                        other => return Err(TestCaseError::fail(format!("{other:?}"))),
                    };
                    acked.insert(key, offset);
                }
                Step::Commit { permille } => {
                    let end = flow.end().0;
                    let to = Offset(end * u64::from(permille) / 1000);
                    rt.block_on(flow.commit("c", to)).expect("commit");
                    committed = Some(to);
                }
                Step::Crash { torn } => {
                    drop(flow);
                    sim.crash(torn.map_or(CrashMode::DropUnsynced, |seed| CrashMode::Torn { seed }));
                    drop(store);
                    store = sim_store(&sim, &clock);
                    let flow = store.flow(&rec.id).expect("flow after crash");
                    let end = flow.end();
                    prop_assert!(end.0 >= acked.len() as u64, "acknowledged events lost");
                    let listed = flow.consumers();
                    match committed {
                        None => prop_assert!(listed.is_empty()),
                        Some(c) => {
                            prop_assert_eq!(listed.len(), 1);
                            prop_assert_eq!(listed[0].committed_offset, c.0, "commit lost or moved");
                            prop_assert!(c <= end, "commit past the end");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn changing_the_dedup_window_keeps_the_keys_already_seen() {
    // Proves a PATCH of dedupWindowSeconds rebuilds the index for the new window
    // without forgetting keys: a resend after the change is still a duplicate.
    let rt = runtime();
    let sim = SimStorage::new();
    let clock = clock();
    let store = sim_store(&sim, &clock);
    let (rec, _) = store
        .create_flow(NewFlow {
            name: "w".into(),
            dedup_window_seconds: Some(60),
            ..NewFlow::default()
        })
        .expect("flow");
    let flow = store.flow(&rec.id).expect("flow");
    rt.block_on(flow.ingest(&[event("{\"a\":1}", Some("k1"))]))
        .expect("ingest");
    clock.advance(50_000);
    let patch = eventmesh::store::FlowPatch {
        dedup_window_seconds: Some(3600),
        ..Default::default()
    };
    store.update_flow(&rec.id, patch).expect("patch");
    clock.advance(50_000);
    let again = rt
        .block_on(flow.ingest(&[event("{\"a\":1}", Some("k1"))]))
        .expect("ingest");
    assert_eq!(
        again,
        vec![IngestOutcome::Duplicate { offset: Offset(0) }],
        "100 s old, inside the new 1 h window"
    );
}
