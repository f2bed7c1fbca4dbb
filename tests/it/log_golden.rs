//! The committed golden partitions must keep opening with the same contents: format v1
//! (bare frames, written by earlier releases) and format v2 (segment and group headers,
//! written today). Today's encoder must still write the v2 one byte for byte: the format
//! cannot drift silently.
//! Regenerate v2 (only with a format version bump): EVENTMESH_WRITE_GOLDEN=1 cargo test --test log_golden

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use common::{assert_same, read_all};
use eventmesh::log::{Log, LogConfig, ManualClock, Offset, RecordInput};

fn fixture(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/golden-v{version}"))
}

fn golden_records() -> Vec<Vec<RecordInput>> {
    let one = |i: u64| RecordInput {
        payload: Bytes::from(format!("{{\"event\":\"order.created\",\"n\":{i}}}")),
        key: i
            .is_multiple_of(2)
            .then(|| Bytes::from(format!("idem-{i}"))),
        headers: vec![
            ("type".into(), Bytes::from_static(b"order.created")),
            ("src".into(), Bytes::from(format!("s{i}"))),
        ],
        flags: (i % 3) as u16,
    };
    let mut calls: Vec<Vec<RecordInput>> = (0..12).map(|i| vec![one(i)]).collect();
    calls.push((12..15).map(one).collect());
    calls.push(vec![RecordInput::new(Bytes::new())]);
    calls
}

fn config() -> (LogConfig, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let config = LogConfig {
        segment_bytes: 512,
        clock: clock.clone(),
        // Fixed salts, so the same appends write the same bytes.
        salt_seed: Some(0x5eed),
        ..LogConfig::default()
    };
    (config, clock)
}

fn write_partition(dir: &Path) {
    let (config, clock) = config();
    let log = Log::open(dir, config).expect("open");
    for call in golden_records() {
        log.append_batch(call).expect("append");
        clock.advance(1_000);
    }
    log.close().expect("close");
    let _ = std::fs::remove_file(dir.join("LOCK"));
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry"))
        .filter(|e| e.file_name() != "LOCK")
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect();
    v.sort();
    v
}

/// Opens a copy of a fixture and checks every record, field for field.
fn assert_golden_opens(fixture: &Path) {
    let copy = tempfile::tempdir().expect("tempdir");
    for (name, bytes) in files(fixture) {
        std::fs::write(copy.path().join(name), bytes).expect("copy");
    }
    let (config, _) = config();
    let log = Log::open(copy.path(), config).expect("open golden");
    let expected: Vec<RecordInput> = golden_records().into_iter().flatten().collect();
    let all = read_all(&log, Offset(0));
    assert_eq!(all.len(), expected.len());
    assert!(
        log.stats().segments >= 3,
        "the fixture spans several segments"
    );
    for (r, want) in all.iter().zip(&expected) {
        assert_same(r, want);
    }
    assert_eq!(all[0].timestamp_ms, 1_700_000_000_000);
    assert_eq!(
        all[14].timestamp_ms, 1_700_000_012_000,
        "a batch shares one time"
    );
    assert_eq!(
        log.offset_for_timestamp(1_700_000_005_000).expect("lookup"),
        Offset(5)
    );
    // A reopened old partition takes appends (in today's format) after its records.
    let next = log.append(RecordInput::new("after")).expect("append");
    assert_eq!(next.first, Offset(expected.len() as u64));
}

#[test]
fn the_golden_partition_opens_with_every_record_intact() {
    // Proves files written by format v1 still open and read back field for field.
    assert_golden_opens(&fixture(1));
}

#[test]
fn the_v2_golden_partition_opens_with_every_record_intact() {
    // Proves files written by format v2 open and read back field for field.
    if std::env::var_os("EVENTMESH_WRITE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(fixture(2));
        write_partition(&fixture(2));
    }
    assert_golden_opens(&fixture(2));
}

#[test]
fn todays_encoder_writes_the_golden_bytes() {
    // Proves the encoder has not drifted: the same appends produce identical files.
    let dir = tempfile::tempdir().expect("tempdir");
    write_partition(dir.path());
    assert!(files(dir.path()) == files(&fixture(2)), "the bytes drifted");
}
