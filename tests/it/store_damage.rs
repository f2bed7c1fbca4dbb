//! Issue 13 on the store: directories are durable and a missing one is damage (never
//! recreated empty), a damaged flow is quarantined while the others serve, upkeep and
//! shutdown are isolated per flow, a failed flow creation leaves nothing behind, a
//! commit is never beyond the durable end, and a deleted flow's files wait for its
//! in-flight appends.

use crate::common;

use eventmesh::store::Page;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::store::{clock, config_on, event, new_flow_id, runtime, sim_store};
use eventmesh::log::storage::{CrashMode, FaultKind, OpKind, SimStorage, Storage};
use eventmesh::log::{FsyncPolicy, Offset};
use eventmesh::store::{NewFlow, Store, StoreError};

fn flow_dir(id: &str) -> PathBuf {
    Path::new("/data/flows").join(id)
}

#[test]
fn a_new_flow_survives_a_power_loss_right_after_it_is_created() {
    // Proves the directories (data dir, flows/, flows/<id>/, each log's) are made
    // durable before the flow is acknowledged: after a crash it opens, not quarantined.
    let sim = SimStorage::new();
    let clock = clock();
    let store = sim_store(&sim, &clock);
    let id = new_flow_id(&store, "f");
    drop(store);
    sim.crash(CrashMode::DropUnsynced);
    let store = sim_store(&sim, &clock);
    assert!(store.flow(&id).is_some(), "{:?}", store.unavailable_flows());
    assert!(store.unavailable_flows().is_empty());
}

#[test]
fn a_flow_whose_event_log_is_missing_is_damaged_and_never_recreated_empty() {
    // Proves a flow whose flow file is there but whose event log is gone is quarantined
    // (naming what is missing), and that opening does not make a new, empty log in its
    // place.
    let sim = SimStorage::new();
    let clock = clock();
    let store = sim_store(&sim, &clock);
    let lost = new_flow_id(&store, "lost");
    let kept = new_flow_id(&store, "kept");
    let rt = runtime();
    rt.block_on(async {
        let flow = store.flow(&lost).expect("flow");
        flow.ingest(&[event("{}", None)]).await.expect("ingest");
    });
    drop(store);
    let events = flow_dir(&lost).join("events");
    sim.remove_dir_all(&events).expect("remove");
    sim.sync_dir(&flow_dir(&lost)).expect("sync");
    let store = sim_store(&sim, &clock);
    assert!(store.flow(&lost).is_none());
    let reason = store.flow_unavailable(&lost).expect("quarantined");
    assert!(reason.contains("missing"), "{reason}");
    assert!(!sim.exists(&events), "not recreated");
    assert_eq!(
        store.flow_record(&lost).map(|r| r.name),
        Some("lost".to_owned()),
        "its settings are still listed"
    );
    assert!(store.flow(&kept).is_some(), "the other flow serves");
    assert!(matches!(
        store.missing_flow(&lost),
        StoreError::FlowUnavailable { .. }
    ));
    // An operator can still delete the damaged flow.
    store.delete_flow(&lost).expect("delete");
    assert!(store.unavailable_flows().is_empty());
}

#[test]
fn a_flow_whose_flow_file_is_missing_or_corrupt_is_quarantined_kept_and_deletable() {
    // Proves a flow directory without a readable flow.json (and with no creation
    // marker) is damage: quarantined with the file named, its events kept on disk, the
    // other flows serving, and an operator can delete it, which removes its files.
    let sim = SimStorage::new();
    let clock = clock();
    let store = sim_store(&sim, &clock);
    let gone = new_flow_id(&store, "gone");
    let garbled = new_flow_id(&store, "garbled");
    let kept = new_flow_id(&store, "kept");
    let rt = runtime();
    rt.block_on(async {
        for id in [&gone, &garbled] {
            let flow = store.flow(id).expect("flow");
            flow.ingest(&[event("{}", None)]).await.expect("ingest");
        }
    });
    drop(store);
    sim.remove(&flow_dir(&gone).join("flow.json"))
        .expect("remove");
    sim.sync_dir(&flow_dir(&gone)).expect("sync");
    let garbled_file = flow_dir(&garbled).join("flow.json");
    let mut bytes = sim.file_bytes(&garbled_file).expect("flow.json");
    bytes.truncate(bytes.len() / 2);
    sim.set_file_bytes(&garbled_file, bytes);
    let store = sim_store(&sim, &clock);
    for (id, file) in [(&gone, "flow.json is missing"), (&garbled, "flow.json")] {
        assert!(store.flow(id).is_none());
        let reason = store.flow_unavailable(id).expect("quarantined");
        assert!(
            reason.contains(file) && reason.contains(id.as_str()),
            "{reason}"
        );
        assert!(store.flow_record(id).is_none(), "no settings to list");
        assert!(
            sim.exists(&flow_dir(id).join("events/00000000000000000000.log")),
            "its events are kept"
        );
    }
    assert!(store.flow(&kept).is_some(), "the other flow serves");
    store.delete_flow(&gone).expect("delete");
    store.delete_flow(&garbled).expect("delete");
    assert!(store.unavailable_flows().is_empty());
    store.maintenance().expect("maintenance");
    assert!(!sim.exists(&flow_dir(&gone)));
    assert!(!sim.exists(&flow_dir(&garbled)));
    drop(store);
    let store = sim_store(&sim, &clock);
    assert!(store.unavailable_flows().is_empty());
    assert_eq!(
        store
            .flow_records(None)
            .iter()
            .map(|r| r.id.clone())
            .collect::<Vec<_>>(),
        vec![kept]
    );
}

#[test]
fn a_creation_cut_short_by_a_crash_leaves_nothing_after_the_next_start() {
    // Proves a flow directory with its creation marker but no flow.json (a crash
    // between the logs and the flow file) is removed at the next start, not
    // quarantined: that flow never took an event.
    let sim = SimStorage::new();
    let clock = clock();
    let store = sim_store(&sim, &clock);
    let cut = new_flow_id(&store, "cut");
    let kept = new_flow_id(&store, "kept");
    drop(store);
    // As the crash would leave it: the marker back, the flow file not yet written.
    sim.remove(&flow_dir(&cut).join("flow.json"))
        .expect("remove");
    sim.set_file_bytes(&flow_dir(&cut).join("flow.creating"), Vec::new());
    sim.sync_dir(&flow_dir(&cut)).expect("sync");
    let store = sim_store(&sim, &clock);
    assert!(
        store.unavailable_flows().is_empty(),
        "{:?}",
        store.unavailable_flows()
    );
    assert!(store.flow_record(&cut).is_none());
    assert!(store.flow(&kept).is_some());
    store.maintenance().expect("maintenance");
    assert!(!sim.exists(&flow_dir(&cut)), "its directory is removed");
}

#[test]
fn a_corrupt_or_unreadable_flow_is_quarantined_and_the_others_serve() {
    // Proves one flow's damage never fails the store's open: a corrupt segment and an
    // unreadable one (EIO) each quarantine only their own flow, named by file and byte.
    let sim = SimStorage::new();
    let clock = clock();
    let store = sim_store(&sim, &clock);
    let corrupt = new_flow_id(&store, "corrupt");
    let eio = new_flow_id(&store, "eio");
    let healthy = new_flow_id(&store, "healthy");
    let rt = runtime();
    rt.block_on(async {
        for id in [&corrupt, &eio, &healthy] {
            let flow = store.flow(id).expect("flow");
            for i in 0..5 {
                flow.ingest(&[event(&format!("{{\"i\":{i}}}"), None)])
                    .await
                    .expect("ingest");
            }
        }
    });
    drop(store);
    let seg = flow_dir(&corrupt).join("events/00000000000000000000.log");
    let mut bytes = sim.file_bytes(&seg).expect("segment");
    bytes[32 + 48 + 20] ^= 0x04; // the first event's frame; four acknowledged after it
    sim.set_file_bytes(&seg, bytes);
    sim.fail_under(
        OpKind::Read,
        &flow_dir(&eio).join("events"),
        1,
        FaultKind::Eio,
        true,
    );
    let store = sim_store(&sim, &clock);
    let reason = store.flow_unavailable(&corrupt).expect("quarantined");
    assert!(
        reason.contains(&seg.display().to_string()) && reason.contains("at byte 32"),
        "{reason}"
    );
    let reason = store.flow_unavailable(&eio).expect("quarantined");
    assert!(
        reason.contains("cannot read") && reason.contains("at byte"),
        "{reason}"
    );
    let flow = store.flow(&healthy).expect("the healthy flow opens");
    rt.block_on(async {
        flow.ingest(&[event("{\"i\":5}", None)])
            .await
            .expect("ingest");
    });
    let Page {
        events, next: _, ..
    } = flow
        .read_events(Offset(0), 100, usize::MAX, None)
        .expect("read");
    assert_eq!(events.len(), 6);
}

#[test]
fn a_failed_flow_creation_leaves_no_directory_behind() {
    // Proves creating a flow is all or nothing on disk: a failure while opening its
    // logs, or while saving the metadata, removes what was made.
    let sim = SimStorage::new();
    let clock = clock();
    let store = sim_store(&sim, &clock);
    let before = sim.list(Path::new("/data/flows")).expect("list");
    for (op, nth) in [
        (OpKind::Create, 2),
        (OpKind::Rename, 1),
        (OpKind::SyncDir, 3),
    ] {
        sim.fail(op, nth, FaultKind::Eio, false);
        assert!(
            store
                .create_flow(NewFlow {
                    name: "doomed".into(),
                    ..NewFlow::default()
                })
                .is_err(),
            "{op:?}"
        );
        sim.clear_faults();
        assert_eq!(
            sim.list(Path::new("/data/flows")).expect("list"),
            before,
            "{op:?}: nothing left behind"
        );
        assert!(store.flow_records(None).is_empty());
    }
    new_flow_id(&store, "fine");
}

#[test]
fn one_flows_failing_upkeep_leaves_retention_and_checkpoints_running_for_the_others() {
    // Proves upkeep is isolated per flow: a flow whose checkpoint cannot be written, and
    // whose consumer log is poisoned, does not stop retention or checkpoints of another
    // flow; shutdown syncs every flow it can; the poisoned log is reported.
    let sim = SimStorage::new();
    let clock = clock();
    let store = sim_store(&sim, &clock);
    let bad = new_flow_id(&store, "bad");
    let good = new_flow_id(&store, "good");
    let rt = runtime();
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(16 * 1024));
    rt.block_on(async {
        for id in [&bad, &good] {
            let flow = store.flow(id).expect("flow");
            // 1.6 MB in 64 KiB segments: over the 1 MiB retention set below.
            for _ in 0..100 {
                flow.ingest(&[event(&big, None)]).await.expect("ingest");
            }
        }
        // Poison the bad flow's consumer log: its commit's write fails, and so does
        // the truncate that would undo it. (Its fdatasync is the journal's.)
        for op in [OpKind::Append, OpKind::Truncate] {
            sim.fail_under(
                op,
                &flow_dir(&bad).join("consumers"),
                1,
                FaultKind::Eio,
                false,
            );
        }
        let flow = store.flow(&bad).expect("flow");
        assert!(flow.commit("c", Offset(1)).await.is_err());
    });
    let poisoned = store.poisoned_logs();
    assert_eq!(poisoned.len(), 1, "{poisoned:?}");
    assert_eq!(
        (poisoned[0].0.as_str(), poisoned[0].1),
        (bad.as_str(), "consumers")
    );
    for id in [&bad, &good] {
        store
            .update_flow(
                id,
                eventmesh::store::FlowPatch {
                    retention: Some(eventmesh::store::meta::RetentionConfig {
                        max_age_seconds: None,
                        max_bytes: Some(1024 * 1024),
                    }),
                    ..Default::default()
                },
            )
            .expect("retention");
    }
    // Every write of the bad flow's analytics checkpoint fails.
    sim.fail_under(
        OpKind::Create,
        &flow_dir(&bad).join("analytics.ckpt.tmp"),
        1,
        FaultKind::Eio,
        true,
    );
    let good_flow = store.flow(&good).expect("flow");
    let first_before = good_flow.first();
    assert!(store.maintenance().is_err(), "the failure is reported");
    assert!(
        good_flow.first() > first_before,
        "the good flow's retention ran"
    );
    assert!(
        sim.exists(&flow_dir(&good).join("analytics.ckpt")),
        "the good flow's checkpoint was written"
    );
    assert!(store.sync_all().is_err(), "the failure is reported");
    assert!(
        sim.exists(&flow_dir(&good).join("dedup.ckpt")),
        "the good flow was synced at shutdown"
    );
}

#[test]
fn a_commit_past_the_durable_end_waits_for_the_events_to_be_synced() {
    // Proves that under `--fsync never` (and `interval`) a consumer commit never points
    // past what a power cut would leave: the commit makes the events durable first.
    let sim = SimStorage::new();
    let clock = clock();
    let config = eventmesh::store::StoreConfig {
        fsync: FsyncPolicy::Never,
        ..config_on(Arc::new(sim.clone()), Arc::clone(&clock))
    };
    let store = Store::open(config.clone()).expect("open");
    let id = new_flow_id(&store, "lazy");
    let flow = store.flow(&id).expect("flow");
    let rt = runtime();
    rt.block_on(async {
        for i in 0..5 {
            flow.ingest(&[event(&format!("{{\"i\":{i}}}"), None)])
                .await
                .expect("ingest");
        }
        assert_eq!(
            flow.durable_end(),
            Offset(0),
            "acknowledged, not yet durable"
        );
        flow.commit("c", Offset(5)).await.expect("commit");
    });
    assert_eq!(flow.durable_end(), Offset(5));
    drop(flow);
    drop(store);
    sim.crash(CrashMode::DropUnsynced);
    let store = Store::open(config).expect("reopen");
    let flow = store.flow(&id).expect("flow");
    let end = flow.end();
    let committed = flow.consumers()[0].committed_offset;
    assert_eq!(
        (committed, end),
        (5, Offset(5)),
        "the commit is within the log"
    );
}

#[test]
fn a_deleted_flows_files_wait_until_no_request_holds_it() {
    // Proves delete_flow never unlinks files under an append in flight: while a request
    // still holds the flow, its directory stays; once it lets go, upkeep removes it.
    let sim = SimStorage::new();
    let clock = clock();
    let store = sim_store(&sim, &clock);
    let id = new_flow_id(&store, "gone");
    let held = store.flow(&id).expect("flow");
    store.delete_flow(&id).expect("delete");
    assert!(store.flow(&id).is_none(), "out of the registry at once");
    assert!(sim.exists(&flow_dir(&id)), "files kept while held");
    let rt = runtime();
    rt.block_on(async {
        held.ingest(&[event("{}", None)])
            .await
            .expect("in-flight append completes");
    });
    drop(held);
    store.maintenance().expect("maintenance");
    assert!(!sim.exists(&flow_dir(&id)), "removed once released");
    assert!(store.deleted_flows_pending().is_empty());
}

#[test]
fn after_a_repair_a_consumer_committed_past_the_new_end_reads_from_it() {
    // Proves the repair story end to end on the store: the flow is quarantined, repair
    // keeps the records before the damage, the flow opens again, and a consumer whose
    // commit lay past the new end gets the next event appended there (none is skipped).
    let sim = SimStorage::new();
    let clock = clock();
    let store = sim_store(&sim, &clock);
    let id = new_flow_id(&store, "r");
    let rt = runtime();
    rt.block_on(async {
        let flow = store.flow(&id).expect("flow");
        for i in 0..5 {
            flow.ingest(&[event(&format!("{{\"i\":{i}}}"), None)])
                .await
                .expect("ingest");
        }
        flow.commit("c", Offset(5)).await.expect("commit");
    });
    drop(store);
    let events = flow_dir(&id).join("events");
    let seg = events.join("00000000000000000000.log");
    let mut bytes = sim.file_bytes(&seg).expect("segment");
    let group = (bytes.len() - 32) / 5; // five groups of one same-sized event each
    bytes[32 + 2 * group + 60] ^= 0x01; // inside the third event
    sim.set_file_bytes(&seg, bytes);
    let store = sim_store(&sim, &clock);
    assert!(store.flow_unavailable(&id).is_some());
    drop(store);
    let report = eventmesh::log::repair::repair_partition(&sim, &events, false).expect("repair");
    assert_eq!((report.kept_records, report.next_offset), (2, Offset(2)));
    let store = sim_store(&sim, &clock);
    let flow = store.flow(&id).expect("the flow serves again");
    rt.block_on(async {
        let stored = flow
            .ingest(&[event("{\"i\":99}", None)])
            .await
            .expect("ingest");
        assert_eq!(
            stored,
            vec![eventmesh::store::IngestOutcome::Stored { offset: Offset(2) }]
        );
        let Page {
            events: got, next, ..
        } = flow
            .poll("c", 10, usize::MAX, 0, tokio::sync::watch::channel(false).1)
            .await
            .expect("poll")
            .page;
        assert_eq!(
            got.iter().map(|e| e.offset).collect::<Vec<_>>(),
            vec![Offset(2)]
        );
        assert_eq!(next, Offset(3));
    });
}
