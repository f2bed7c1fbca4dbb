//! Flows opened on demand (`FlowOpening::OnDemand`, the server's mode): at start only
//! the flow files are read; a flow's logs open on its first use (its idempotency index
//! rebuilt first), a damaged one is quarantined then and the others serve, concurrent
//! first uses open a flow once, and `open_pending` opens the rest.

use crate::common;

use std::path::Path;
use std::sync::{Arc, Barrier};

use common::store::{clock, config_on, event, new_flow_id, runtime, sim_store};
use eventmesh::log::storage::{CrashMode, OpKind, SimStorage, Storage};
use eventmesh::log::{ManualClock, Offset};
use eventmesh::store::{FlowOpening, IngestOutcome, Store};

fn on_demand(sim: &SimStorage, clock: &Arc<ManualClock>) -> Store {
    Store::open(eventmesh::store::StoreConfig {
        flow_opening: FlowOpening::OnDemand,
        ..config_on(Arc::new(sim.clone()), Arc::clone(clock))
    })
    .expect("open on demand")
}

/// The ids of the open flows, sorted.
fn open_ids(store: &Store) -> Vec<String> {
    let mut ids: Vec<String> = store
        .open_flows()
        .iter()
        .map(|f| f.id().to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_flow_opens_on_first_use_with_its_keys_and_a_damaged_one_is_quarantined_then() {
    // Proves lazy opening keeps every guarantee of opening at start: nothing is open
    // after `Store::open`; the first use of a flow opens it with its idempotency index
    // rebuilt across a crash (a resend is a duplicate at its first offset); a flow whose
    // event log is gone is quarantined on its first use, naming what is missing, while
    // the others serve; `open_pending` then opens the rest and none is left.
    let rt = runtime();
    let sim = SimStorage::new();
    let clock = clock();
    let store = sim_store(&sim, &clock);
    let keyed = new_flow_id(&store, "keyed");
    let lost = new_flow_id(&store, "lost");
    let idle = new_flow_id(&store, "idle");
    rt.block_on(async {
        let flow = store.flow(&keyed).expect("flow");
        for i in 0..5 {
            let out = flow
                .ingest(&[event(&format!("{{\"i\":{i}}}"), Some(&format!("k{i}")))])
                .await
                .expect("ingest");
            assert!(matches!(out[0], IngestOutcome::Stored { offset } if offset == Offset(i)));
        }
    });
    sim.crash(CrashMode::DropUnsynced);
    drop(store);
    let events = Path::new("/data/flows").join(&lost).join("events");
    sim.remove_dir_all(&events).expect("remove");
    sim.sync_dir(&Path::new("/data/flows").join(&lost))
        .expect("sync");

    let store = on_demand(&sim, &clock);
    assert_eq!(store.flow_count(), 3);
    assert!(store.open_flows().is_empty(), "no flow is opened at start");
    assert_eq!(store.flows_not_open(), 3);
    assert!(
        store.unavailable_flows().is_empty(),
        "not known before it opens"
    );

    let flow = store.flow(&keyed).expect("opens on first use");
    assert_eq!(flow.end(), Offset(5));
    assert_eq!(flow.stats().dedup_keys, 5);
    let again = rt
        .block_on(flow.ingest(&[event("{\"i\":3}", Some("k3"))]))
        .expect("resend");
    assert!(
        matches!(again[0], IngestOutcome::Duplicate { offset } if offset == Offset(3)),
        "{again:?}"
    );
    assert_eq!(store.flows_not_open(), 2);

    assert!(store.flow(&lost).is_none());
    let reason = store
        .flow_unavailable(&lost)
        .expect("quarantined on first use");
    assert!(reason.contains("missing"), "{reason}");
    assert!(!sim.exists(&events), "not recreated");
    assert_eq!(store.flows_not_open(), 1);

    assert_eq!(
        store.open_pending(std::time::Instant::now() + std::time::Duration::from_secs(3600)),
        0
    );
    assert_eq!(store.flows_not_open(), 0);
    let mut want = vec![keyed.clone(), idle.clone()];
    want.sort();
    assert_eq!(open_ids(&store), want);
    assert_eq!(
        store
            .unavailable_flows()
            .into_iter()
            .map(|(id, _)| id)
            .collect::<Vec<_>>(),
        vec![lost]
    );
}

#[test]
fn concurrent_first_uses_of_a_flow_open_it_once() {
    // Proves the per-flow gate: eight threads asking at once for each of two unopened
    // flows all get the same open flow (one opening each, never two logs on one
    // directory, which the second would refuse).
    let sim = SimStorage::new();
    let clock = clock();
    let store = sim_store(&sim, &clock);
    let ids = [new_flow_id(&store, "a"), new_flow_id(&store, "b")];
    drop(store);
    let store = on_demand(&sim, &clock);
    let barrier = Arc::new(Barrier::new(16));
    let got: Vec<(usize, Arc<eventmesh::store::Flow>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let (store, barrier, ids) = (&store, Arc::clone(&barrier), &ids);
                scope.spawn(move || {
                    barrier.wait();
                    (t % 2, store.flow(&ids[t % 2]).expect("opens"))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for (which, flow) in &got {
        assert_eq!(flow.id(), ids[*which]);
        let first = &got.iter().find(|(w, _)| w == which).expect("one").1;
        assert!(Arc::ptr_eq(flow, first), "one open flow per id");
    }
    assert!(store.unavailable_flows().is_empty());
    assert_eq!(store.flows_not_open(), 0);
}

#[test]
fn a_flow_deleted_before_it_was_opened_is_gone_and_never_opened() {
    // Proves deletion needs no opening: an unopened flow is deleted (its files go),
    // its first use afterwards finds nothing, and the background opener skips it.
    let sim = SimStorage::new();
    let clock = clock();
    let store = sim_store(&sim, &clock);
    let gone = new_flow_id(&store, "gone");
    let kept = new_flow_id(&store, "kept");
    drop(store);
    let store = on_demand(&sim, &clock);
    store.delete_flow(&gone).expect("delete");
    assert!(store.flow(&gone).is_none());
    assert!(
        store.flow_unavailable(&gone).is_none(),
        "not quarantined: gone"
    );
    assert!(!sim.exists(&Path::new("/data/flows").join(&gone)));
    assert_eq!(
        store.open_pending(std::time::Instant::now() + std::time::Duration::from_secs(3600)),
        0
    );
    assert_eq!(open_ids(&store), vec![kept]);
}

#[test]
fn idle_flows_cost_no_write_no_sync_and_no_journal_round_at_upkeep_and_shutdown() {
    // Proves a stop with many idle flows is quick: after a clean restart, upkeep and
    // shutdown syncs rewrite no checkpoint (no rename), sync nothing and run no journal
    // round for flows that took nothing; one flow that takes an event then writes its
    // two checkpoints (idempotency index and analytics), and only those; a flow that
    // never took anything has none.
    let rt = runtime();
    let sim = SimStorage::new();
    let clock = clock();
    let store = sim_store(&sim, &clock);
    let ids: Vec<String> = (0..20)
        .map(|i| new_flow_id(&store, &format!("f{i}")))
        .collect();
    rt.block_on(async {
        let flow = store.flow(&ids[0]).expect("flow");
        flow.ingest(&[event("{}", Some("k"))])
            .await
            .expect("ingest");
    });
    store.sync_all().expect("sync");
    drop(store);

    let store = sim_store(&sim, &clock);
    assert_eq!(store.open_flows().len(), 20);
    let (renames, syncs) = (sim.op_count(OpKind::Rename), sim.op_count(OpKind::SyncData));
    let rounds = store.journal_stats().expect("journal").rounds;
    store.flush_request_logs();
    store.catch_up_analytics().expect("catch up");
    store.maintenance().expect("maintenance");
    store.sync_all().expect("sync");
    assert_eq!(
        sim.op_count(OpKind::Rename),
        renames,
        "no checkpoint rewritten"
    );
    assert_eq!(sim.op_count(OpKind::SyncData), syncs, "nothing synced");
    assert_eq!(store.journal_stats().expect("journal").rounds, rounds);

    rt.block_on(async {
        let flow = store.flow(&ids[3]).expect("flow");
        flow.ingest(&[event("{}", Some("k"))])
            .await
            .expect("ingest");
    });
    store.sync_all().expect("sync");
    assert_eq!(
        sim.op_count(OpKind::Rename),
        renames + 2,
        "the busy flow's two checkpoints"
    );
    for name in ["dedup.ckpt", "analytics.ckpt"] {
        assert!(sim.exists(&Path::new("/data/flows").join(&ids[3]).join(name)));
        // A flow that never took anything never needed one.
        assert!(!sim.exists(&Path::new("/data/flows").join(&ids[7]).join(name)));
    }
}
