//! Issue 13 on the engine: a torn last write is never taken for corruption (sectors kept
//! in any order, frames planted in records), real damage to acknowledged bytes still is,
//! clocks that step back never make a log unopenable, a failed roll leaves nothing that
//! blocks an open, `.torn` files go with their segment, and an unreadable sector is an
//! error naming the file and byte.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use common::{assert_same, open_sim, read_all, rec};
use eventmesh::log::framing::{
    GroupHeader, SegmentHeader, GROUP_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use eventmesh::log::record;
use eventmesh::log::storage::{CrashMode, FaultKind, OpKind, SimStorage, Storage, SECTOR_BYTES};
use eventmesh::log::{Log, LogConfig, LogError, ManualClock, Offset, RecordInput, Retention};

const SEG0: &str = "/p/00000000000000000000.log";

/// A record whose key, type and payload each hold bytes that decode as valid frames
/// and headers (a v1 frame at a plausible offset, a group header, a segment header): a
/// sender can plant such bytes.
fn planted(i: u64) -> RecordInput {
    let mut frame = Vec::new();
    record::encode_into(&mut frame, Offset(i + 1), 1, false, &RecordInput::new("x"));
    let group = GroupHeader {
        salt: i,
        first_offset: Offset(i + 1),
        records: 1,
        body_len: frame.len() as u32,
        synced: 1 << 40,
        body_crc: crc32fast::hash(&frame),
    }
    .encode();
    let seg = SegmentHeader {
        base: Offset(0),
        salt: i,
        ts_floor: 0,
    }
    .encode();
    let mut payload = b"{\"planted\":\"".to_vec();
    for _ in 0..8 {
        payload.extend_from_slice(&group);
        payload.extend_from_slice(&frame);
        payload.extend_from_slice(&seg);
    }
    payload.extend_from_slice(b"\"}");
    RecordInput {
        payload: Bytes::from(payload),
        key: Some(Bytes::from(frame.clone())),
        headers: vec![(
            "type".into(),
            Bytes::from([&group[..], &frame[..]].concat()),
        )],
        flags: 0,
    }
}

#[test]
fn planted_frames_and_any_kept_sectors_never_read_as_corruption() {
    // Proves the v2 rule: whatever subset of a torn write's sectors survives, and
    // whatever frames its records carry, open cuts a torn tail, keeps every
    // acknowledged record and reports no corruption. (Format v1 refused these.)
    let mut torn_seen = 0;
    for seed in 0..300u64 {
        let sim = SimStorage::new();
        let log = open_sim(&sim, LogConfig::default());
        let acked: Vec<RecordInput> = (0..4).map(planted).collect();
        for r in &acked {
            log.append(r.clone()).expect("append");
        }
        // The last write: a big batch into reserved zeros, never synced.
        sim.fail(OpKind::SyncData, 1, FaultKind::Eio, false);
        let batch: Vec<RecordInput> = (10..14).map(planted).collect();
        assert!(log.append_batch(batch).is_err());
        sim.crash(CrashMode::Torn { seed });
        drop(log);
        let log = Log::open_with("/p", LogConfig::default(), Arc::new(sim.clone()))
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let all = read_all(&log, Offset(0));
        assert!(
            all.len() == 4 || all.len() == 8,
            "seed {seed}: {} records",
            all.len()
        );
        for (r, want) in all.iter().zip(&acked) {
            assert_same(r, want);
        }
        if log.recovery_report().truncated_bytes > 0 {
            torn_seen += 1;
        }
    }
    assert!(
        torn_seen > 100,
        "the crashes tore the last write ({torn_seen})"
    );
}

#[test]
fn a_later_sector_kept_with_an_earlier_one_lost_is_a_torn_tail() {
    // Proves the case that made v1 refuse a partition: a group written into reserved
    // zeros comes back with its second sector and without its first.
    let sim = SimStorage::new();
    let log = open_sim(&sim, LogConfig::default());
    for i in 0..3 {
        log.append(rec(i)).expect("append");
    }
    let before = sim.file_bytes(Path::new(SEG0)).expect("segment");
    sim.fail(OpKind::SyncData, 1, FaultKind::Eio, false);
    let big: Vec<RecordInput> = (0..20).map(planted).collect();
    assert!(log.append_batch(big).is_err());
    let written = sim.file_bytes(Path::new(SEG0)).expect("segment");
    drop(log);
    // Keep every sector of the write but the first one it touched.
    let start = before
        .iter()
        .zip(&written)
        .take_while(|(a, b)| a == b)
        .count();
    let first_sector_end = (start / SECTOR_BYTES + 1) * SECTOR_BYTES;
    let mut disk = written.clone();
    disk[start..first_sector_end].copy_from_slice(&before[start..first_sector_end]);
    assert_ne!(disk, before, "later sectors of the write are on disk");
    sim.set_file_bytes(Path::new(SEG0), disk);
    let log = open_sim(&sim, LogConfig::default());
    assert_eq!(log.next_offset(), Offset(3));
    assert!(
        log.recovery_report().truncated_bytes > 0,
        "cut as a torn tail"
    );
    for (i, r) in read_all(&log, Offset(0)).iter().enumerate() {
        assert_same(r, &rec(i as u64));
    }
}

#[test]
fn a_flip_in_acknowledged_bytes_with_acknowledged_groups_after_it_is_refused() {
    // Proves the rule still bites: damage in a group that a later group's header shows
    // was synced is corruption, named by file and byte, and nothing is cut.
    let sim = SimStorage::new();
    let log = open_sim(&sim, LogConfig::default());
    for i in 0..6 {
        log.append(planted(i)).expect("append");
    }
    drop(log);
    let mut bytes = sim.file_bytes(Path::new(SEG0)).expect("segment");
    let second = SEGMENT_HEADER_BYTES + GROUP_HEADER_BYTES + record::encoded_len(&planted(0));
    bytes[second + GROUP_HEADER_BYTES + 100] ^= 0x01;
    sim.set_file_bytes(Path::new(SEG0), bytes.clone());
    let err = Log::open_with("/p", LogConfig::default(), Arc::new(sim.clone()))
        .expect_err("corruption refused");
    match err {
        LogError::Corruption { file, position, .. } => {
            assert_eq!(file, Path::new(SEG0));
            assert_eq!(position, second as u64);
        }
        other => panic!("expected corruption, got {other}"),
    }
    assert_eq!(
        sim.file_bytes(Path::new(SEG0)),
        Some(bytes),
        "nothing was cut"
    );
}

#[test]
fn a_clock_that_steps_back_never_makes_any_of_a_flows_logs_unopenable() {
    // Proves, for the events, request and consumer logs with their real settings: times
    // never go back across a roll, across a reopen, and across a reopen whose active
    // segment is empty; every reopen succeeds.
    let clock = Arc::new(ManualClock::new(1_000_000));
    let base = LogConfig {
        clock: clock.clone(),
        ..LogConfig::default()
    };
    for (name, config) in eventmesh::store::flow::log_configs(&base) {
        clock.set(1_000_000);
        let sim = SimStorage::new();
        let open = || {
            Log::open_with("/p", config.clone(), Arc::new(sim.clone()))
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let log = open();
        log.append(rec(0)).expect("append");
        log.sync().expect("sync");
        log.roll().expect("roll");
        clock.set(500_000); // back across a roll
        log.append(rec(1)).expect("append");
        log.sync().expect("sync");
        log.close().expect("close");
        clock.set(400_000); // back across a reopen
        let log = open();
        log.append(rec(2)).expect("append");
        log.sync().expect("sync");
        log.roll().expect("roll");
        log.close().expect("close");
        clock.set(100_000); // back across a reopen with an empty active segment
        let log = open();
        log.append(rec(3)).expect("append");
        log.sync().expect("sync");
        log.close().expect("close");
        let log = open();
        let times: Vec<i64> = read_all(&log, Offset(0))
            .iter()
            .map(|r| r.timestamp_ms)
            .collect();
        assert_eq!(times, vec![1_000_000; 4], "{name}: times never go back");
        assert_eq!(log.recovery_report().time_regressions, 0, "{name}");
    }
}

#[test]
fn out_of_order_times_across_segments_written_earlier_open_with_a_warning() {
    // Proves an existing partition whose segments step back in time (written before
    // times were carried across rolls) opens instead of being refused.
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(5_000));
    let config = LogConfig {
        clock: clock.clone(),
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config.clone()).expect("open");
    log.append(rec(0)).expect("append");
    log.roll().expect("roll");
    log.append(rec(1)).expect("append");
    log.close().expect("close");
    // Rewrite the second segment as an old build would have: its record earlier.
    let second = dir.path().join("00000000000000000001.log");
    let mut frame = Vec::new();
    record::encode_into(&mut frame, Offset(1), 1_000, false, &rec(1));
    std::fs::write(&second, frame).expect("write v1 segment");
    let log = Log::open(dir.path(), config).expect("opens");
    assert_eq!(log.recovery_report().time_regressions, 1);
    assert_eq!(read_all(&log, Offset(0)).len(), 2);
    assert_eq!(log.append(rec(2)).expect("append").first, Offset(2));
}

/// Arms one fault on the simulated disk.
type Arm = Box<dyn Fn(&SimStorage)>;

#[test]
fn a_roll_that_fails_after_creating_the_segment_leaves_nothing_behind() {
    // Proves a failed roll removes its new segment (durably), so appends go on in the
    // old one and every later open works, for a failure at each step after the create.
    // A roll: cut the reserved zeros (truncate, fdatasync), write the old segment's
    // index (temp file: create, write, fdatasync, rename, directory fsync; failures
    // ignored), then create the new segment, write and sync its header, fsync the
    // directory and open it for reading. Each fault below hits one step of the last part.
    let next = Path::new("/p/00000000000000000001.log");
    let eio = FaultKind::Eio;
    let faults: [(&str, Arm); 5] = [
        // The index's temp file is the first create of the roll.
        (
            "create fails after its effect",
            Box::new(|s| s.fail_after(OpKind::Create, 2)),
        ),
        (
            "header write fails",
            Box::new(move |s| s.fail_under(OpKind::Append, next, 1, eio, false)),
        ),
        (
            "header sync fails",
            Box::new(move |s| s.fail_under(OpKind::SyncData, next, 1, eio, false)),
        ),
        // The index's rename is made durable by the first directory fsync.
        (
            "directory fsync fails",
            Box::new(|s| s.fail(OpKind::SyncDir, 2, FaultKind::Eio, false)),
        ),
        (
            "open for reading fails",
            Box::new(move |s| s.fail_under(OpKind::Open, next, 1, eio, false)),
        ),
    ];
    for (what, arm) in faults {
        let sim = SimStorage::new();
        let log = open_sim(&sim, LogConfig::default());
        log.append(rec(0)).expect("append");
        arm(&sim);
        assert!(log.roll().is_err(), "{what}: the roll fails");
        sim.clear_faults();
        assert!(
            !sim.exists(Path::new("/p/00000000000000000001.log")),
            "{what}: the new segment is gone"
        );
        assert!(log.poisoned().is_none(), "{what}: the log goes on");
        assert_eq!(
            log.append(rec(1)).expect("append").first,
            Offset(1),
            "{what}"
        );
        sim.crash(CrashMode::DropUnsynced);
        drop(log);
        let log = open_sim(&sim, LogConfig::default());
        assert_eq!(read_all(&log, Offset(0)).len(), 2, "{what}");
    }
}

#[test]
fn a_roll_whose_cleanup_fails_too_poisons_the_log_and_still_reopens() {
    // Proves the other branch: if the stray segment cannot be removed, the log refuses
    // appends (so nothing lands in the old segment past the stray one's base), and the
    // next open takes the stray segment as the fresh last one.
    let sim = SimStorage::new();
    let log = open_sim(&sim, LogConfig::default());
    log.append(rec(0)).expect("append");
    let next = Path::new("/p/00000000000000000001.log");
    sim.fail_under(OpKind::Open, next, 1, FaultKind::Eio, false);
    sim.fail_under(OpKind::Remove, next, 1, FaultKind::Eio, false);
    assert!(log.roll().is_err());
    assert!(log.poisoned().is_some());
    assert!(log.append(rec(1)).is_err());
    drop(log);
    let log = open_sim(&sim, LogConfig::default());
    assert_eq!(read_all(&log, Offset(0)).len(), 1);
    assert_eq!(log.append(rec(1)).expect("append").first, Offset(1));
}

#[test]
fn torn_side_files_count_against_retention_and_go_with_their_segment() {
    // Proves `.torn` files are not an unbounded leak: their bytes count toward
    // `max_bytes`, and they are deleted when their segment is.
    let sim = SimStorage::new();
    let log = open_sim(&sim, LogConfig::default());
    log.append(rec(0)).expect("append");
    drop(log);
    let mut bytes = sim.file_bytes(Path::new(SEG0)).expect("segment");
    // Garbage right after the data (in place of the reserved zeros): a torn write.
    bytes.truncate(SEGMENT_HEADER_BYTES + GROUP_HEADER_BYTES + record::encoded_len(&rec(0)));
    bytes.extend_from_slice(&[0x45; 3000]);
    sim.set_file_bytes(Path::new(SEG0), bytes);
    let log = open_sim(&sim, LogConfig::default());
    let torn = Path::new("/p/00000000000000000000.log.torn");
    assert_eq!(sim.file_bytes(torn).map(|b| b.len()), Some(3000));
    log.roll().expect("roll");
    log.append(rec(1)).expect("append");
    // The data alone is under 2,000 bytes; with the torn file it is over.
    let data = log.stats().bytes;
    assert!(data < 2000, "{data}");
    let report = log
        .apply_retention(Retention {
            max_bytes: Some(2000),
            max_age_ms: None,
        })
        .expect("retention");
    assert_eq!(report.segments_deleted, 1);
    assert!(!sim.exists(torn), "the side file went with its segment");
    assert_eq!(log.first_offset(), Offset(1));
}

#[test]
fn an_unreadable_sector_during_recovery_is_an_error_naming_the_file_and_byte() {
    // Proves recovery reads with pread: EIO is an error, never a crash (SIGBUS).
    let sim = SimStorage::new();
    let log = open_sim(&sim, LogConfig::default());
    log.append(rec(0)).expect("append");
    drop(log);
    sim.fail_under(OpKind::Read, Path::new(SEG0), 1, FaultKind::Eio, true);
    let err =
        Log::open_with("/p", LogConfig::default(), Arc::new(sim.clone())).expect_err("EIO refused");
    match &err {
        LogError::Unreadable { file, position, .. } => {
            assert_eq!(file, Path::new(SEG0));
            assert_eq!(*position, 0);
        }
        other => panic!("expected Unreadable, got {other}"),
    }
    assert!(err.to_string().contains(SEG0) && err.to_string().contains("at byte 0"));
}
