//! Opening a partition directory: find the segments, trust or rebuild each sealed
//! segment's index, scan the last segment, cut a torn tail, refuse corruption.

use std::path::{Path, PathBuf};

use crate::error::LogError;
use crate::log::recovery::{self, corruption_error, DamageKind};
use crate::log::segment::{self, SegmentSummary, INDEX_SUFFIX, SEGMENT_SUFFIX};
use crate::log::shared::SealedSegment;
use crate::log::storage::{read_to_vec, write_atomic, Storage, WritableFile};
use crate::log::types::Offset;

/// What opening found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    /// Bytes of torn tail cut from the last segment (kept in a `.torn` side file).
    pub truncated_bytes: u64,
    /// Sealed segments whose index was missing or doubtful and was rebuilt by a scan.
    pub indexes_rebuilt: usize,
    /// Bytes read by scans (the last segment, plus any rebuilt segment).
    pub scanned_bytes: u64,
}

pub(crate) struct Recovered {
    pub sealed: Vec<SealedSegment>,
    pub active_path: PathBuf,
    pub active: SegmentSummary,
    pub file: Box<dyn WritableFile>,
    pub report: RecoveryReport,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LogError + 'a {
    move |e| LogError::io(op, path, e)
}

/// Lists the base offsets of the segment files in `dir`, sorted, after removing
/// leftovers that are never data: temp files and indexes without a segment.
pub(crate) fn segment_bases(
    storage: &dyn Storage,
    dir: &Path,
    tidy: bool,
) -> Result<Vec<Offset>, LogError> {
    let names = storage.list(dir).map_err(io("list", dir))?;
    let mut bases: Vec<Offset> = names
        .iter()
        .filter_map(|n| segment::parse_name(n, SEGMENT_SUFFIX))
        .collect();
    bases.sort_unstable();
    if tidy {
        let mut removed = false;
        for name in &names {
            let orphan_index = segment::parse_name(name, INDEX_SUFFIX)
                .is_some_and(|b| bases.binary_search(&b).is_err());
            if name.ends_with(".tmp") || orphan_index {
                let path = dir.join(name);
                storage.remove(&path).map_err(io("remove", &path))?;
                removed = true;
            }
        }
        if removed {
            storage.sync_dir(dir).map_err(io("fsync directory", dir))?;
        }
    }
    Ok(bases)
}

pub(crate) fn recover(storage: &dyn Storage, dir: &Path) -> Result<Recovered, LogError> {
    let bases = segment_bases(storage, dir, true)?;
    let mut report = RecoveryReport::default();
    let Some((&last_base, sealed_bases)) = bases.split_last() else {
        let path = segment::segment_path(dir, Offset(0));
        let file = storage.create(&path).map_err(io("create", &path))?;
        storage.sync_dir(dir).map_err(io("fsync directory", dir))?;
        report.segments = 1;
        return Ok(Recovered {
            sealed: Vec::new(),
            active_path: path,
            active: SegmentSummary::empty(Offset(0)),
            file,
            report,
        });
    };
    let mut sealed: Vec<SealedSegment> = Vec::with_capacity(sealed_bases.len());
    let mut prev: Option<(Offset, i64)> = None;
    for &base in sealed_bases {
        check_contiguous(dir, base, prev)?;
        let path = segment::segment_path(dir, base);
        let summary = load_sealed(
            storage,
            dir,
            base,
            prev.map_or(i64::MIN, |p| p.1),
            &mut report,
        )?;
        prev = Some((summary.next, summary.last_ts));
        sealed.push(SealedSegment::new(path, summary));
    }
    check_contiguous(dir, last_base, prev)?;
    let active_path = segment::segment_path(dir, last_base);
    let bytes = map_whole(storage, &active_path)?;
    report.scanned_bytes += bytes.len() as u64;
    let out = recovery::scan(&bytes, last_base, true, prev.map_or(i64::MIN, |p| p.1));
    let mut file = storage
        .open_append(&active_path)
        .map_err(io("open", &active_path))?;
    if let Some(damage) = &out.damage {
        if damage.kind == DamageKind::Corruption {
            return Err(corruption_error(&active_path, damage));
        }
        let cut = &bytes[out.summary.bytes as usize..];
        // Reserved zeros after the torn write are not part of it.
        let written = cut.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        keep_torn_bytes(storage, &active_path, &cut[..written])?;
        report.truncated_bytes = written as u64;
        drop(bytes);
        file.truncate(out.summary.bytes)
            .and_then(|()| file.sync_data())
            .map_err(io("truncate torn tail of", &active_path))?;
    } else if out.summary.bytes < bytes.len() as u64 {
        // Zeros reserved by the writer: drop them so the file ends at its data again
        // (the writer reserves afresh). Made durable by the fdatasync below.
        drop(bytes);
        file.truncate(out.summary.bytes)
            .map_err(io("truncate reserved space of", &active_path))?;
    }
    // What the scan read may be only in the page cache (say, after a failed fdatasync and
    // a restart): make it durable before anything new is acknowledged after it.
    file.sync_data()
        .map_err(io("fdatasync recovered tail of", &active_path))?;
    // The last segment's index is rebuilt by the scan above; an old file would be stale.
    let stale_index = segment::index_path(dir, last_base);
    if storage.exists(&stale_index) {
        storage
            .remove(&stale_index)
            .map_err(io("remove", &stale_index))?;
    }
    // A name created before a failed directory fsync may still be only in memory: make
    // every name we now rely on durable before anything is acknowledged in it.
    storage.sync_dir(dir).map_err(io("fsync directory", dir))?;
    report.segments = sealed.len() + 1;
    Ok(Recovered {
        sealed,
        active_path,
        active: out.summary,
        file,
        report,
    })
}

fn check_contiguous(dir: &Path, base: Offset, prev: Option<(Offset, i64)>) -> Result<(), LogError> {
    match prev {
        Some((next, _)) if next != base => Err(LogError::Corruption {
            file: segment::segment_path(dir, base),
            position: 0,
            reason: format!("segment starts at offset {base} but the one before ends at {next}"),
        }),
        _ => Ok(()),
    }
}

fn map_whole(storage: &dyn Storage, path: &Path) -> Result<bytes::Bytes, LogError> {
    let file = storage.open_read(path).map_err(io("open", path))?;
    let len = file.len().map_err(io("stat", path))?;
    file.map(len).map_err(io("map", path))
}

/// A sealed segment's summary: from its index file when that agrees with the segment,
/// else from a full scan (which must find no damage at all), rewriting the index.
fn load_sealed(
    storage: &dyn Storage,
    dir: &Path,
    base: Offset,
    min_ts: i64,
    report: &mut RecoveryReport,
) -> Result<SegmentSummary, LogError> {
    let path = segment::segment_path(dir, base);
    let bytes = map_whole(storage, &path)?;
    let index_path = segment::index_path(dir, base);
    if let Ok(index) = read_to_vec(storage, &index_path) {
        if let Some(summary) = segment::decode_index(&index, base, &bytes) {
            if summary.first_ts().is_some_and(|t| t >= min_ts) {
                return Ok(summary);
            }
        }
    }
    report.indexes_rebuilt += 1;
    report.scanned_bytes += bytes.len() as u64;
    let out = recovery::scan(&bytes, base, false, min_ts);
    if let Some(damage) = &out.damage {
        return Err(corruption_error(&path, damage));
    }
    if out.summary.is_empty() {
        return Err(LogError::Corruption {
            file: path,
            position: 0,
            reason: "a sealed segment holds no records".into(),
        });
    }
    // Best effort: a missing index only costs the next open a scan.
    let _ = write_atomic(storage, &index_path, &segment::encode_index(&out.summary));
    Ok(out.summary)
}

/// Saves the bytes a torn-tail truncation cuts, durably, beside the segment.
fn keep_torn_bytes(storage: &dyn Storage, segment: &Path, cut: &[u8]) -> Result<(), LogError> {
    let mut name = segment.as_os_str().to_owned();
    name.push(".torn");
    let path = PathBuf::from(name);
    let mut file = storage.create(&path).map_err(io("create", &path))?;
    file.append(cut)
        .and_then(|()| file.sync_data())
        .map_err(io("write", &path))?;
    let dir = segment.parent().unwrap_or(Path::new("."));
    storage.sync_dir(dir).map_err(io("fsync directory", dir))
}
