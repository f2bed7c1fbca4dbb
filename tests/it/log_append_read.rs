//! Appending and reading one partition: offsets, batches, segments, time lookup, limits.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{assert_same, open_dir, read_all, rec, tiny};
use eventmesh::log::limits::{APPEND_BATCH_RECORDS_MAX, RECORD_PAYLOAD_BYTES_MAX};
use eventmesh::log::record::LimitError;
use eventmesh::log::{Log, LogConfig, LogError, ManualClock, Offset, RecordInput};

#[test]
fn offsets_start_at_zero_and_count_up_across_segments() {
    // Proves offsets are 0, 1, 2, … and that records round-trip byte for byte across rolls.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_dir(dir.path(), tiny(1024));
    for i in 0..200 {
        let out = log.append(rec(i)).expect("append");
        assert_eq!(out.first, Offset(i));
        assert_eq!(out.count, 1);
    }
    assert!(log.stats().segments > 5, "tiny segments must roll");
    let all = read_all(&log, Offset(0));
    assert_eq!(all.len(), 200);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.offset, Offset(i as u64));
        assert_same(r, &rec(i as u64));
    }
    assert_eq!(log.next_offset(), Offset(200));
    assert_eq!(log.first_offset(), Offset(0));
}

#[test]
fn reads_start_at_any_offset_and_stop_at_limits() {
    // Proves a bounded read starts at the asked offset (mid-segment too) and respects both limits.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_dir(dir.path(), tiny(4096));
    for i in 0..300 {
        log.append(rec(i)).expect("append");
    }
    for from in [0u64, 1, 57, 150, 299] {
        let got = log.read(Offset(from), 10, usize::MAX).expect("read");
        let want = (300 - from).min(10) as usize;
        assert_eq!(got.len(), want);
        assert_eq!(got[0].offset, Offset(from));
        assert_same(&got[0], &rec(from));
    }
    let one = log.read(Offset(5), 100, 1).expect("read");
    assert_eq!(one.len(), 1, "max_bytes stops after the first record");
    assert!(log
        .read(Offset(300), 10, usize::MAX)
        .expect("read at end")
        .is_empty());
}

#[test]
fn a_batch_gets_consecutive_offsets() {
    // Proves a batch is stored in order at consecutive offsets, after earlier records.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_dir(dir.path(), LogConfig::default());
    log.append(rec(0)).expect("append");
    let batch: Vec<_> = (1..=5).map(rec).collect();
    let out = log.append_batch(batch).expect("batch");
    assert_eq!(
        (out.first, out.count, out.last()),
        (Offset(1), 5, Offset(5))
    );
    let all = read_all(&log, Offset(0));
    assert_eq!(all.len(), 6);
    for (i, r) in all.iter().enumerate() {
        assert_same(r, &rec(i as u64));
    }
}

#[test]
fn limits_are_named_and_enforced() {
    // Proves each append limit answers its own error and stores nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_dir(dir.path(), LogConfig::default());
    let too_big = RecordInput::new(vec![0u8; RECORD_PAYLOAD_BYTES_MAX + 1]);
    assert!(matches!(
        log.append(too_big),
        Err(LogError::Limit(LimitError::PayloadTooLarge { .. }))
    ));
    let too_many = vec![RecordInput::new("x"); APPEND_BATCH_RECORDS_MAX + 1];
    assert!(matches!(
        log.append_batch(too_many),
        Err(LogError::Limit(LimitError::BatchLength { .. }))
    ));
    assert!(matches!(
        log.append_batch(vec![]),
        Err(LogError::Limit(LimitError::BatchLength { .. }))
    ));
    let mut bad_batch: Vec<_> = (0..3).map(rec).collect();
    bad_batch[2].key = Some(Bytes::new());
    assert!(matches!(
        log.append_batch(bad_batch),
        Err(LogError::Limit(LimitError::KeyLength { .. }))
    ));
    assert_eq!(
        log.next_offset(),
        Offset(0),
        "nothing of a refused batch is stored"
    );
    assert_eq!(log.append(rec(0)).expect("append").first, Offset(0));
}

#[test]
fn time_lookup_finds_the_first_record_at_or_after() {
    // Proves offset_for_timestamp over sealed and active segments, with times that repeat.
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_000));
    let config = LogConfig {
        clock: clock.clone(),
        ..tiny(2048)
    };
    let log = open_dir(dir.path(), config);
    for i in 0..100u64 {
        log.append(rec(i)).expect("append");
        if i % 2 == 1 {
            clock.advance(10); // two records per 10 ms step
        }
    }
    assert!(log.stats().segments > 2);
    assert_eq!(log.offset_for_timestamp(0).expect("lookup"), Offset(0));
    assert_eq!(log.offset_for_timestamp(1_000).expect("lookup"), Offset(0));
    assert_eq!(log.offset_for_timestamp(1_001).expect("lookup"), Offset(2));
    assert_eq!(log.offset_for_timestamp(1_250).expect("lookup"), Offset(50));
    assert_eq!(log.offset_for_timestamp(1_490).expect("lookup"), Offset(98));
    assert_eq!(
        log.offset_for_timestamp(99_999).expect("lookup"),
        Offset(100)
    );
}

#[test]
fn times_never_go_back_even_when_the_clock_does() {
    // Proves append times are non-decreasing along a partition, across a reopen.
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(5_000));
    let config = LogConfig {
        clock: clock.clone(),
        ..LogConfig::default()
    };
    let log = open_dir(dir.path(), config.clone());
    log.append(rec(0)).expect("append");
    clock.set(1_000);
    let out = log.append(rec(1)).expect("append");
    assert_eq!(out.timestamp_ms, 5_000);
    drop(log);
    let log = open_dir(dir.path(), config);
    assert_eq!(log.append(rec(2)).expect("append").timestamp_ms, 5_000);
}

#[test]
fn segments_roll_by_age() {
    // Proves a segment older than segment_age is sealed on the next append.
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(0));
    let config = LogConfig {
        clock: clock.clone(),
        segment_age: Some(Duration::from_secs(60)),
        ..LogConfig::default()
    };
    let log = open_dir(dir.path(), config);
    log.append(rec(0)).expect("append");
    log.append(rec(1)).expect("append");
    assert_eq!(log.stats().segments, 1);
    clock.advance(60_000);
    log.append(rec(2)).expect("append");
    assert_eq!(log.stats().segments, 2);
    assert_eq!(read_all(&log, Offset(0)).len(), 3);
}

#[test]
fn a_second_open_of_one_directory_is_refused() {
    // Proves the lock file keeps a second opener (process or handle) out.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_dir(dir.path(), LogConfig::default());
    let err = Log::open(dir.path(), LogConfig::default()).expect_err("second open");
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::WouldBlock), "{err}");
    drop(log);
    Log::open(dir.path(), LogConfig::default()).expect("open after the first closed");
}

#[test]
fn concurrent_writers_get_distinct_offsets_and_all_records_are_stored() {
    // Proves group commit under 16 threads: every append gets its own offset, none lost.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(open_dir(dir.path(), tiny(64 * 1024)));
    let handles: Vec<_> = (0..16u64)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..100u64)
                    .map(|i| {
                        let n = t * 1000 + i;
                        (log.append(rec(n)).expect("append").first, n)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut placed: Vec<(Offset, u64)> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    placed.sort();
    assert_eq!(placed.len(), 1600);
    for (i, (offset, _)) in placed.iter().enumerate() {
        assert_eq!(*offset, Offset(i as u64), "offsets are dense and unique");
    }
    let all = read_all(&log, Offset(0));
    for (offset, n) in placed {
        assert_same(&all[offset.0 as usize], &rec(n));
    }
}

#[test]
fn a_reader_sees_each_acknowledged_record_at_once() {
    // Proves acknowledged records in the active segment are readable immediately.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_dir(dir.path(), LogConfig::default());
    let mut iter = log.iter_from(Offset(0));
    assert!(iter.next().is_none());
    for i in 0..50 {
        log.append(rec(i)).expect("append");
        let got = iter.next().expect("a record").expect("read");
        assert_same(&got, &rec(i));
        assert!(iter.next().is_none(), "nothing past the acknowledged end");
    }
}

#[test]
fn subscribers_learn_the_new_end_after_each_append() {
    // Proves the watch channel moves to the next offset after an acknowledged append.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_dir(dir.path(), LogConfig::default());
    let rx = log.subscribe();
    assert_eq!(*rx.borrow(), Offset(0));
    log.append_batch(vec![rec(0), rec(1)]).expect("append");
    assert_eq!(*rx.borrow(), Offset(2));
}

#[test]
fn large_records_span_read_chunks_in_the_active_segment() {
    // Proves a record bigger than the active segment's read chunk is read whole.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_dir(dir.path(), LogConfig::default());
    let big = RecordInput::new(vec![7u8; 3 * 1024 * 1024]);
    for _ in 0..3 {
        log.append(RecordInput::new("small")).expect("append");
        log.append(big.clone()).expect("append");
    }
    let all = read_all(&log, Offset(0));
    assert_eq!(all.len(), 6);
    assert_eq!(all[5].payload, big.payload);
    assert_eq!(all[4].payload, Bytes::from_static(b"small"));
}

#[test]
fn config_nonsense_is_rejected() {
    // Proves validate() refuses a segment size outside its limits.
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Log::open(dir.path(), tiny(10)).expect_err("tiny segment");
    assert!(matches!(err, LogError::Config(_)), "{err}");
}

#[test]
fn sealed_indexes_load_on_demand_and_fall_back_to_a_scan() {
    // Proves sealed segments' sparse indexes are read from their files when a read needs
    // them (not held in memory), and that a missing or damaged index file costs a scan,
    // never a wrong answer.
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_000));
    let config = LogConfig {
        clock: clock.clone(),
        ..tiny(64 * 1024)
    };
    let log = open_dir(dir.path(), config);
    for i in 0..3000u64 {
        log.append(rec(i)).expect("append");
        clock.advance(1);
    }
    assert!(log.stats().segments > 3, "several sealed segments");
    let mut indexes: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "index"))
        .collect();
    indexes.sort();
    assert!(indexes.len() >= 3, "sealed segments have index files");
    std::fs::remove_file(&indexes[1]).expect("delete an index");
    let mut damaged = std::fs::read(&indexes[2]).expect("read index");
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    std::fs::write(&indexes[2], damaged).expect("damage an index");
    for start in (0..3000u64).step_by(37) {
        let got = log
            .read(Offset(start), 1, usize::MAX)
            .expect("read mid-log");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].offset, Offset(start));
        assert_same(&got[0], &rec(start));
        assert_eq!(
            log.offset_for_timestamp(1_000 + start as i64)
                .expect("lookup"),
            Offset(start)
        );
    }
}
