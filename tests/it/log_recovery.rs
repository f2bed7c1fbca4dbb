//! Recovery on open: torn tails are cut, corruption is refused with file and byte,
//! derived indexes are rebuilt, and nothing acknowledged after damage is deleted.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{assert_same, open_dir, read_all, rec, tiny};
use eventmesh::log::check::{check_partition, Verdict};
use eventmesh::log::framing::{GROUP_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use eventmesh::log::storage::StdStorage;
use eventmesh::log::{Log, LogConfig, LogError, Offset};

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

/// Writes `n` records into a fresh partition and returns its directory and the byte
/// position where each record starts in the last segment.
fn build(n: u64, config: LogConfig) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_dir(dir.path(), config);
    for i in 0..n {
        log.append(rec(i)).expect("append");
    }
    log.close().expect("close");
    dir
}

fn assert_prefix(log: &Log, n: u64) {
    let all = read_all(log, Offset(0));
    assert_eq!(all.len() as u64, n, "records after recovery");
    for (i, r) in all.iter().enumerate() {
        assert_same(r, &rec(i as u64));
    }
}

fn verdict(dir: &Path) -> Verdict {
    check_partition(&StdStorage, dir).expect("check").verdict()
}

#[test]
fn a_cut_at_every_byte_of_the_last_records_recovers_the_whole_prefix() {
    // Proves torn-tail recovery at every cut point of the last three records.
    let dir = build(10, LogConfig::default());
    let seg = segments(dir.path()).pop().expect("segment");
    let full = fs::read(&seg).expect("read");
    let bounds: Vec<usize> = {
        // Format v2: the segment header, then one commit group (its header and the
        // record's frame) per append.
        let log = open_dir(dir.path(), LogConfig::default());
        let mut pos = SEGMENT_HEADER_BYTES;
        let mut v = vec![pos];
        for r in read_all(&log, Offset(0)) {
            pos += GROUP_HEADER_BYTES + eventmesh::log::record::encoded_len(&rec(r.offset.0));
            v.push(pos);
        }
        v
    };
    for cut in bounds[7]..full.len() {
        fs::write(&seg, &full[..cut]).expect("cut");
        let whole_records = bounds.iter().filter(|&&b| b <= cut).count() as u64 - 1;
        let expected_verdict = if bounds.contains(&cut) {
            Verdict::Clean
        } else {
            Verdict::Repairable
        };
        assert_eq!(verdict(dir.path()), expected_verdict, "check at cut {cut}");
        let log = open_dir(dir.path(), LogConfig::default());
        assert_prefix(&log, whole_records);
        // The cut bytes, less trailing zeros (zeros are never a write's last bytes here:
        // they read as reserved space).
        let torn = &full[bounds[whole_records as usize]..cut];
        let written = torn.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        assert_eq!(log.recovery_report().truncated_bytes, written as u64);
        // The log keeps working after the cut: the next append takes the next offset.
        assert_eq!(
            log.append(rec(whole_records)).expect("append").first,
            Offset(whole_records)
        );
        drop(log);
        assert_eq!(
            verdict(dir.path()),
            Verdict::Clean,
            "recovery leaves a clean partition"
        );
    }
}

#[test]
fn zero_pages_after_the_last_record_are_reserved_space_and_dropped() {
    // Proves zeros after the last record (space the writer reserves ahead) open as a
    // clean end: nothing reported torn, no side file, the file cut back to its data.
    let dir = build(20, LogConfig::default());
    let seg = segments(dir.path()).pop().expect("segment");
    let mut bytes = fs::read(&seg).expect("read");
    let clean_len = bytes.len();
    bytes.resize(clean_len + 8192, 0);
    fs::write(&seg, &bytes).expect("write");
    assert_eq!(verdict(dir.path()), Verdict::Clean);
    let log = open_dir(dir.path(), LogConfig::default());
    assert_prefix(&log, 20);
    assert_eq!(log.recovery_report().truncated_bytes, 0);
    assert_eq!(fs::metadata(&seg).expect("stat").len(), clean_len as u64);
    let mut side = seg.clone().into_os_string();
    side.push(".torn");
    assert!(
        !Path::new(&side).exists(),
        "no side file for reserved zeros"
    );
    assert_eq!(log.append(rec(20)).expect("append").first, Offset(20));
}

#[test]
fn garbage_after_the_last_record_is_cut() {
    // Proves appended random garbage counts as a torn tail (reserved zeros after it are
    // not kept), and that the cut bytes are kept in a side file.
    for (name, tail) in [
        (
            "garbage",
            (0..3000u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
        ),
        ("one byte", vec![0x45]),
    ] {
        let dir = build(20, LogConfig::default());
        let seg = segments(dir.path()).pop().expect("segment");
        let mut bytes = fs::read(&seg).expect("read");
        let clean_len = bytes.len();
        bytes.extend_from_slice(&tail);
        fs::write(&seg, &bytes).expect("write");
        let log = open_dir(dir.path(), LogConfig::default());
        assert_prefix(&log, 20);
        assert_eq!(
            log.recovery_report().truncated_bytes,
            tail.len() as u64,
            "{name}"
        );
        assert_eq!(
            fs::metadata(&seg).expect("stat").len(),
            clean_len as u64,
            "{name}"
        );
        let mut side = seg.clone().into_os_string();
        side.push(".torn");
        assert_eq!(fs::read(side).expect("side file"), tail, "{name}");
    }
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_refused_and_nothing_is_deleted() {
    // Proves mid-log corruption fails the open with file and position, and leaves every file as it was.
    let dir = build(200, tiny(2048));
    let segs = segments(dir.path());
    assert!(segs.len() > 3);
    let victim = &segs[1];
    let mut bytes = fs::read(victim).expect("read");
    bytes[100] ^= 0x01; // inside the first record (after the segment and group headers)
    fs::write(victim, &bytes).expect("write");
    // The index still agrees with the file length, so open trusts it; make open scan.
    fs::remove_file(victim.with_extension("index")).expect("remove index");
    let before: Vec<(PathBuf, Vec<u8>)> = segs
        .iter()
        .map(|p| (p.clone(), fs::read(p).expect("read")))
        .collect();
    let err = Log::open(dir.path(), tiny(2048)).expect_err("corruption refused");
    match &err {
        LogError::Corruption { file, position, .. } => {
            assert_eq!(file, victim);
            assert_eq!(
                *position, SEGMENT_HEADER_BYTES as u64,
                "the damaged group starts right after the segment header"
            );
        }
        other => panic!("expected corruption, got {other}"),
    }
    assert_eq!(verdict(dir.path()), Verdict::Corrupt);
    for (path, bytes) in before {
        assert_eq!(
            fs::read(&path).expect("read"),
            bytes,
            "{} unchanged",
            path.display()
        );
    }
}

#[test]
fn corruption_in_a_sealed_segment_is_caught_on_read_when_its_index_is_trusted() {
    // Proves that a read verifies checksums even where open trusted the index.
    // Segments of 16 KiB have several index entries; open checks only the last one's frame.
    let dir = build(400, tiny(16384));
    let segs = segments(dir.path());
    assert!(segs.len() >= 2);
    let victim = &segs[0];
    let mut bytes = fs::read(victim).expect("read");
    // 64 bytes in the middle: more than a group header, so a record frame is hit; open
    // checks the frames at the first and last index entries only.
    let mid = bytes.len() / 2;
    bytes[mid..mid + 64].iter_mut().for_each(|b| *b ^= 0x80);
    fs::write(victim, &bytes).expect("write");
    let log = open_dir(dir.path(), tiny(16384));
    let err = log
        .iter_from(Offset(0))
        .find_map(Result::err)
        .expect("a read error");
    assert!(
        matches!(&err, LogError::Corruption { file, .. } if file == victim),
        "{err}"
    );
}

#[test]
fn a_zeroed_block_in_the_middle_of_the_last_segment_is_corruption() {
    // Proves damage with valid records after it is not mistaken for a torn tail.
    let dir = build(100, LogConfig::default());
    let seg = segments(dir.path()).pop().expect("segment");
    let mut bytes = fs::read(&seg).expect("read");
    bytes[1000..1512].iter_mut().for_each(|b| *b = 0);
    fs::write(&seg, &bytes).expect("write");
    let err = Log::open(dir.path(), LogConfig::default()).expect_err("refused");
    assert!(
        matches!(&err, LogError::Corruption { file, position, .. } if *file == seg && *position < 1000),
        "{err}"
    );
    assert_eq!(
        fs::read(&seg).expect("read"),
        bytes,
        "nothing was truncated"
    );
}

#[test]
fn a_missing_or_garbled_index_is_rebuilt_from_the_log() {
    // Proves indexes are derived: deleted or damaged, open rebuilds them and reads are right.
    let dir = build(300, tiny(4096));
    let segs = segments(dir.path());
    fs::remove_file(segs[0].with_extension("index")).expect("remove");
    let idx = segs[1].with_extension("index");
    let mut ix = fs::read(&idx).expect("read index");
    let n = ix.len();
    ix[n - 5] ^= 0xff;
    fs::write(&idx, &ix).expect("write index");
    assert_eq!(verdict(dir.path()), Verdict::Repairable);
    let log = open_dir(dir.path(), tiny(4096));
    assert_eq!(log.recovery_report().indexes_rebuilt, 2);
    assert_prefix(&log, 300);
    assert_eq!(
        log.offset_for_timestamp(i64::MIN).expect("lookup"),
        Offset(0)
    );
    drop(log);
    assert_eq!(
        verdict(dir.path()),
        Verdict::Clean,
        "rebuilt indexes are written back"
    );
}

#[test]
fn a_missing_middle_segment_is_refused() {
    // Proves a gap between segments is corruption, not silently skipped.
    let dir = build(200, tiny(2048));
    let segs = segments(dir.path());
    fs::remove_file(&segs[2]).expect("remove");
    let err = Log::open(dir.path(), tiny(2048)).expect_err("gap refused");
    assert!(matches!(err, LogError::Corruption { .. }), "{err}");
}

#[test]
fn leftover_temp_files_are_ignored_and_removed() {
    // Proves a crash mid-way through an index write leaves nothing that is taken as data.
    let dir = build(50, tiny(2048));
    let tmp = dir.path().join("00000000000000000000.index.tmp");
    fs::write(&tmp, b"half an index").expect("write tmp");
    let log = open_dir(dir.path(), tiny(2048));
    assert_prefix(&log, 50);
    assert!(!tmp.exists());
}
