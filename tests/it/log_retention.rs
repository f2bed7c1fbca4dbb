//! Retention deletes whole sealed segments by size and age, frees the disk, never
//! touches the active segment, and leaves readers of deleted segments working.

use crate::common;

use std::sync::Arc;

use common::{assert_same, open_dir, read_all, rec, tiny};
use eventmesh::log::{LogConfig, LogError, ManualClock, Offset, Retention};

fn disk_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").metadata().expect("stat").len())
        .sum()
}

#[test]
fn size_retention_deletes_the_oldest_whole_segments_and_frees_disk() {
    // Proves max_bytes deletes whole segments from the front until the rest fits.
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_dir(dir.path(), tiny(4096));
    for i in 0..500 {
        log.append(rec(i)).expect("append");
    }
    let before = log.stats();
    let disk_before = disk_bytes(dir.path());
    let report = log
        .apply_retention(Retention {
            max_bytes: Some(10_000),
            max_age_ms: None,
        })
        .expect("retention");
    let after = log.stats();
    assert!(report.segments_deleted > 0);
    assert!(after.bytes <= 10_000 + 4096, "{} bytes left", after.bytes);
    assert_eq!(after.segments, before.segments - report.segments_deleted);
    assert_eq!(report.first_offset, after.first_offset);
    assert!(disk_bytes(dir.path()) <= disk_before - report.bytes_deleted);
    let rest = read_all(&log, after.first_offset);
    assert_eq!(rest.len() as u64, 500 - after.first_offset.0);
    for r in &rest {
        assert_same(r, &rec(r.offset.0));
    }
    assert!(matches!(
        log.read(Offset(0), 1, usize::MAX),
        Err(LogError::OffsetOutOfRange { first, .. }) if first == after.first_offset
    ));
    // The start survives a reopen.
    drop(log);
    let log = open_dir(dir.path(), tiny(4096));
    assert_eq!(log.first_offset(), after.first_offset);
}

#[test]
fn age_retention_deletes_segments_whose_newest_record_is_too_old() {
    // Proves max_age_ms measures a segment by its newest record, and never deletes the active one.
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(0));
    let config = LogConfig {
        clock: clock.clone(),
        ..tiny(2048)
    };
    let log = open_dir(dir.path(), config);
    for i in 0..100 {
        log.append(rec(i)).expect("append");
    }
    log.roll().expect("roll");
    clock.set(10_000);
    for i in 100..110 {
        log.append(rec(i)).expect("append");
    }
    let age = Retention {
        max_age_ms: Some(5_000),
        max_bytes: None,
    };
    let report = log.apply_retention(age).expect("retention");
    assert_eq!(
        log.first_offset(),
        Offset(100),
        "every segment of time 0 went"
    );
    assert!(report.segments_deleted >= 2);
    clock.set(1_000_000);
    log.apply_retention(age).expect("retention");
    assert_eq!(log.first_offset(), Offset(100), "the active segment stays");
    assert_eq!(read_all(&log, Offset(100)).len(), 10);
}

#[test]
fn a_reader_of_a_deleted_segment_keeps_reading_it() {
    // Proves a map held by a reader outlives the file's deletion (no SIGBUS, same bytes).
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_dir(dir.path(), tiny(8192));
    for i in 0..300 {
        log.append(rec(i)).expect("append");
    }
    let mut iter = log.iter_from(Offset(0));
    let first = iter.next().expect("a record").expect("read");
    assert_same(&first, &rec(0));
    log.apply_retention(Retention {
        max_bytes: Some(1),
        max_age_ms: None,
    })
    .expect("retention");
    assert!(log.first_offset() > Offset(10));
    // The rest of the first segment comes from the reader's map; then a clean error.
    let mut seen = 1;
    let mut end_error = None;
    for r in iter {
        match r {
            Ok(r) => {
                assert_same(&r, &rec(r.offset.0));
                seen += 1;
            }
            Err(e) => {
                end_error = Some(e);
                break;
            }
        }
    }
    assert!(seen > 10, "read {seen} records from the deleted segment");
    assert!(
        matches!(end_error, Some(LogError::OffsetOutOfRange { .. }) | None),
        "{end_error:?}"
    );
}
