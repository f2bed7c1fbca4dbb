//! Consumers: poll from the committed offset, commit, seek, lag, long-poll, durability.

use crate::common;

use eventmesh::store::Page;
use std::sync::Arc;
use std::time::Duration;

use common::store::{event, runtime, sim_store};
use eventmesh::log::storage::{CrashMode, SimStorage};
use eventmesh::log::{ManualClock, Offset};
use eventmesh::store::{NewFlow, SeekTo, StoreError};

fn setup(
    n: u64,
) -> (
    SimStorage,
    Arc<ManualClock>,
    eventmesh::store::Store,
    String,
    tokio::runtime::Runtime,
) {
    let rt = runtime();
    let sim = SimStorage::new();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let store = sim_store(&sim, &clock);
    let (rec, _) = store
        .create_flow(NewFlow {
            name: "f".into(),
            ..NewFlow::default()
        })
        .expect("flow");
    let flow = store.flow(&rec.id).expect("flow");
    rt.block_on(async {
        for i in 0..n {
            flow.ingest(&[event(&format!("{{\"i\":{i}}}"), None)])
                .await
                .expect("ingest");
            clock.advance(1000);
        }
    });
    (sim, clock, store, rec.id, rt)
}

/// A stop signal that never fires (the server is not shutting down).
fn never() -> tokio::sync::watch::Receiver<bool> {
    tokio::sync::watch::channel(false).1
}

#[test]
fn poll_reads_from_the_committed_offset_and_never_moves_it() {
    // Proves at-least-once: poll returns from the commit; only commit moves it; lag follows.
    let (_sim, _clock, store, id, rt) = setup(10);
    let flow = store.flow(&id).expect("flow");
    rt.block_on(async {
        let Page { events, next, .. } = flow
            .poll("c1", 3, usize::MAX, 0, never())
            .await
            .expect("poll")
            .page;
        assert_eq!(
            events.iter().map(|e| e.offset.0).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(next, Offset(3));
        let Page {
            events: again,
            next: _,
            ..
        } = flow
            .poll("c1", 3, usize::MAX, 0, never())
            .await
            .expect("poll")
            .page;
        assert_eq!(again[0].offset, Offset(0), "no hidden position");
        flow.commit("c1", next).await.expect("commit");
        let Page {
            events: after,
            next: _,
            ..
        } = flow
            .poll("c1", 3, usize::MAX, 0, never())
            .await
            .expect("poll")
            .page;
        assert_eq!(after[0].offset, Offset(3));
        assert_eq!(after[0].payload.as_ref(), b"{\"i\":3}");
        let views = flow.consumers();
        assert_eq!(
            (
                views[0].name.as_str(),
                views[0].committed_offset,
                views[0].lag
            ),
            ("c1", 3, 7)
        );
        let beyond = flow.commit("c1", Offset(11)).await;
        assert!(matches!(beyond, Err(StoreError::Invalid(_))), "{beyond:?}");
        flow.commit("c1", Offset(10))
            .await
            .expect("commit at the end");
        assert_eq!(flow.consumers()[0].lag, 0);
    });
}

#[test]
fn seek_moves_to_earliest_latest_an_offset_or_a_time() {
    // Proves each seek target, including time lookup.
    let (_sim, _clock, store, id, rt) = setup(10);
    let flow = store.flow(&id).expect("flow");
    rt.block_on(async {
        assert_eq!(
            flow.seek("s", SeekTo::Latest)
                .await
                .expect("seek")
                .committed_offset,
            10
        );
        assert_eq!(
            flow.seek("s", SeekTo::Earliest)
                .await
                .expect("seek")
                .committed_offset,
            0
        );
        assert_eq!(
            flow.seek("s", SeekTo::Offset(Offset(4)))
                .await
                .expect("seek")
                .committed_offset,
            4
        );
        let t = flow
            .seek("s", SeekTo::Timestamp(1_700_000_006_500))
            .await
            .expect("seek");
        assert_eq!(t.committed_offset, 7, "first event at or after the time");
        assert!(flow.delete_consumer("s").await.expect("delete"));
        assert!(flow.consumers().is_empty());
        assert!(!flow.delete_consumer("s").await.expect("delete again"));
    });
}

#[test]
fn a_long_poll_wakes_when_an_event_arrives() {
    // Proves waitMs wakes on append (not on a timer): the poll ends with the new event
    // although it may wait up to 30 s.
    let (_sim, _clock, store, id, rt) = setup(0);
    let flow = store.flow(&id).expect("flow");
    rt.block_on(async {
        let poller = {
            let flow = Arc::clone(&flow);
            tokio::spawn(async move { flow.poll("w", 10, usize::MAX, 30_000, never()).await })
        };
        // The poller is subscribed before or after this append; either way it sees it.
        tokio::task::yield_now().await;
        flow.ingest(&[event("{\"late\":true}", None)])
            .await
            .expect("ingest");
        let events = tokio::time::timeout(Duration::from_secs(60), poller)
            .await
            .expect("the poll ended")
            .expect("task")
            .expect("poll")
            .page
            .events;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].payload.as_ref(), b"{\"late\":true}");
    });
}

#[test]
fn commits_survive_power_loss_and_invalid_names_are_refused() {
    // Proves a commit is durable once answered, and names are validated.
    let (sim, clock, store, id, rt) = setup(5);
    let flow = store.flow(&id).expect("flow");
    rt.block_on(async {
        flow.commit("a.b-c_1", Offset(4)).await.expect("commit");
        for bad in ["", "has space", "../x", &"n".repeat(129)] {
            assert!(flow.commit(bad, Offset(1)).await.is_err(), "{bad:?}");
        }
    });
    drop(flow);
    sim.crash(CrashMode::DropUnsynced);
    drop(store);
    let store = sim_store(&sim, &clock);
    let flow = store.flow(&id).expect("flow");
    let views = flow.consumers();
    assert_eq!(views.len(), 1);
    assert_eq!((views[0].committed_offset, views[0].lag), (4, 1));
}

#[test]
fn the_consumer_log_compacts_and_keeps_every_consumer() {
    // Proves compaction by snapshot: after many commits the log shrinks and every
    // consumer's last commit is still there after a restart.
    let (sim, clock, store, id, rt) = setup(3);
    let flow = store.flow(&id).expect("flow");
    rt.block_on(async {
        for i in 0..70_000u64 {
            flow.commit(&format!("c{}-{}", i % 7, "n".repeat(40)), Offset(i % 4))
                .await
                .expect("commit");
        }
    });
    store.maintenance().expect("maintenance");
    let dir = std::path::Path::new("/data/flows")
        .join(&id)
        .join("consumers");
    let segments = eventmesh::log::storage::Storage::list(&sim, &dir)
        .expect("list")
        .iter()
        .filter(|n| n.ends_with(".log"))
        .count();
    assert!(segments <= 3, "{segments} segments after compaction");
    drop(flow);
    sim.crash(CrashMode::DropUnsynced);
    drop(store);
    let store = sim_store(&sim, &clock);
    let flow = store.flow(&id).expect("flow");
    let views = flow.consumers();
    assert_eq!(views.len(), 7);
    for v in views {
        let i: u64 = v.name[1..2].parse().expect("number");
        let last = (0..70_000u64)
            .rev()
            .find(|n| n % 7 == i)
            .expect("last commit");
        assert_eq!(v.committed_offset, last % 4, "{}", v.name);
    }
}
