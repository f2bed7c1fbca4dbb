//! I/O faults through the storage trait: a failed fsync poisons the log and is never
//! retried; a failed write is undone and the log goes on; reads keep working.

use crate::common;

use eventmesh::log::framing::{GROUP_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use std::path::Path;

use common::{assert_same, open_sim, read_all, rec, tiny};
use eventmesh::log::check::{check_partition, Verdict};
use eventmesh::log::storage::{CrashMode, FaultKind, OpKind, SimStorage};
use eventmesh::log::{LogConfig, LogError, Offset};

#[test]
fn a_failed_fsync_fails_its_group_and_every_later_append_until_reopen() {
    // Proves fsyncgate handling: the failing group gets the error, no later append is
    // acknowledged, fdatasync is not retried, reads still work, reopen loses nothing acked.
    let sim = SimStorage::new();
    let log = open_sim(&sim, LogConfig::default());
    for i in 0..5 {
        log.append(rec(i)).expect("append");
    }
    let syncs_before = sim.op_count(OpKind::SyncData);
    sim.fail(OpKind::SyncData, 1, FaultKind::Eio, false);
    let err = log.append(rec(5)).expect_err("fsync failure");
    assert!(
        err.to_string().contains("fdatasync") && err.to_string().contains("os error 5"),
        "{err}"
    );
    for i in 6..9 {
        assert!(matches!(log.append(rec(i)), Err(LogError::Poisoned { .. })));
    }
    assert!(log.poisoned().is_some());
    assert_eq!(
        sim.op_count(OpKind::SyncData),
        syncs_before + 1,
        "no fsync retry"
    );
    assert_eq!(
        read_all(&log, Offset(0)).len(),
        5,
        "reads serve what was acknowledged"
    );
    sim.crash(CrashMode::DropUnsynced);
    drop(log);
    let log = open_sim(&sim, LogConfig::default());
    let all = read_all(&log, Offset(0));
    assert_eq!(all.len(), 5);
    for (i, r) in all.iter().enumerate() {
        assert_same(r, &rec(i as u64));
    }
    assert_eq!(
        log.append(rec(5)).expect("append after reopen").first,
        Offset(5)
    );
}

#[test]
fn a_full_disk_fails_the_write_and_appends_resume_when_space_returns() {
    // Proves ENOSPC on a write (with a short write) is undone: no half record stays,
    // the log is not poisoned, and the next append takes the same offset.
    let sim = SimStorage::new();
    let log = open_sim(&sim, LogConfig::default());
    log.append(rec(0)).expect("append");
    sim.fail(OpKind::Append, 1, FaultKind::Enospc, false);
    let err = log.append(rec(1)).expect_err("disk full");
    assert!(err.to_string().contains("No space left"), "{err}");
    assert!(log.poisoned().is_none());
    assert_eq!(
        log.append(rec(2))
            .expect("append after space returns")
            .first,
        Offset(1)
    );
    let all = read_all(&log, Offset(0));
    assert_same(&all[1], &rec(2));
    drop(log);
    let report = check_partition(&sim, Path::new("/p")).expect("check");
    assert_eq!(report.verdict(), Verdict::Clean);
    assert_eq!(report.records(), 2);
}

#[test]
fn a_failed_segment_create_fails_the_append_and_the_log_goes_on() {
    // Proves a roll that cannot create its new segment answers an error and retries the
    // roll on the next append.
    let sim = SimStorage::new();
    let log = open_sim(&sim, tiny(512));
    let mut n = 0;
    while log.stats().segments == 1 {
        log.append(rec(n)).expect("append");
        n += 1;
    }
    let before = log.next_offset();
    // Fill the new active segment until the next append must roll, then fail the create
    // (a roll creates the index's temp file first, then the new segment).
    let mut i = 0;
    loop {
        assert!(i < 100, "the segment never rolled");
        sim.fail(OpKind::Create, 2, FaultKind::Enospc, false);
        match log.append(rec(1000 + i)) {
            Ok(_) => {
                sim.clear_faults();
                i += 1;
            }
            Err(e) => {
                assert_eq!(e.io_kind(), Some(std::io::ErrorKind::StorageFull), "{e}");
                break;
            }
        }
    }
    let next = log.next_offset();
    assert!(next > before);
    assert_eq!(log.append(rec(5000)).expect("append").first, next);
}

#[test]
fn reserved_zeros_survive_a_crash_and_open_as_a_clean_end() {
    // Proves the writer reserves zeroed space past its data (so fdatasync need not write
    // the length), that a power loss keeps it, and that open reads it as the end of the
    // data: every acknowledged record, nothing reported torn, appends go on.
    let sim = SimStorage::new();
    let log = open_sim(&sim, LogConfig::default());
    for i in 0..10 {
        log.append(rec(i)).expect("append");
    }
    sim.crash(CrashMode::DropUnsynced);
    drop(log);
    let seg = Path::new("/p/00000000000000000000.log");
    let bytes = sim.file_bytes(seg).expect("segment");
    // Format v2: a segment header, then one commit group (header + frame) per append.
    let group = |i| GROUP_HEADER_BYTES + eventmesh::log::record::encoded_len(&rec(i));
    let data: usize = SEGMENT_HEADER_BYTES + (0..10).map(group).sum::<usize>();
    // The first append found no room and reserved the zeros after itself; the other
    // nine were written into them.
    let first = (SEGMENT_HEADER_BYTES + group(0)) as u64;
    assert_eq!(
        bytes.len() as u64,
        first + eventmesh::log::limits::SEGMENT_RESERVE_MIN_BYTES,
        "the file holds its data and the reserved zeros"
    );
    assert!(bytes[data..].iter().all(|&b| b == 0));
    let log = open_sim(&sim, LogConfig::default());
    assert_eq!(log.recovery_report().truncated_bytes, 0);
    assert_eq!(
        sim.file_bytes(Path::new("/p/00000000000000000000.log.torn")),
        None,
        "nothing was treated as a torn write"
    );
    let all = read_all(&log, Offset(0));
    assert_eq!(all.len(), 10);
    for (i, r) in all.iter().enumerate() {
        assert_same(r, &rec(i as u64));
    }
    assert_eq!(log.append(rec(10)).expect("append").first, Offset(10));
}

#[test]
fn a_failed_reservation_is_undone_like_a_failed_write() {
    // Proves a failure while writing the reserved zeros fails that group, leaves no
    // partial zeros or records behind, and the next append takes the same offset.
    let sim = SimStorage::new();
    let log = open_sim(&sim, LogConfig::default());
    sim.fail(OpKind::Preallocate, 1, FaultKind::Enospc, false);
    let err = log.append(rec(0)).expect_err("disk full while reserving");
    assert!(err.to_string().contains("No space left"), "{err}");
    assert!(log.poisoned().is_none());
    let left = sim
        .file_bytes(Path::new("/p/00000000000000000000.log"))
        .expect("segment");
    assert_eq!(left.len(), SEGMENT_HEADER_BYTES, "only the segment header");
    assert_eq!(&left[4..8], b"EMS2");
    assert_eq!(log.append(rec(1)).expect("append").first, Offset(0));
    drop(log);
    let report = check_partition(&sim, Path::new("/p")).expect("check");
    assert_eq!(report.verdict(), Verdict::Clean);
    assert_eq!(report.records(), 1);
}
