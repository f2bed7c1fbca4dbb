//! Opening a partition directory: find the segments, trust or rebuild each sealed
//! segment's index, scan the last segment, cut a torn tail, refuse corruption. Also
//! the one way a segment file comes to exist (`create_segment`).
//!
//! Recovery reads with `pread`, never through a map, so an unreadable sector is an
//! error naming the file and byte (`LogError::Unreadable`), not a SIGBUS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::log::framing::{self, SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::log::record::{self, FRAME_HEADER_BYTES};
use crate::log::scan::{self, corruption_error, DamageKind, SegmentFormat};
use crate::log::segment::{self, SegmentSummary, INDEX_SUFFIX, SEGMENT_SUFFIX};
use crate::log::shared::SealedSegment;
use crate::log::storage::{
    read_full, read_to_vec, write_atomic, ReadableFile, Storage, WritableFile,
};
use crate::log::writer::WriterStart;
use crate::log::LogError;
use crate::log::{LogConfig, Offset};

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
    /// Segments whose first record is older than the segment before's last: accepted
    /// (a clock stepped back before times were carried across rolls), and logged.
    pub time_regressions: usize,
}

pub(crate) struct Recovered {
    pub sealed: Vec<SealedSegment>,
    pub active_path: PathBuf,
    pub active: SegmentSummary,
    pub file: Box<dyn WritableFile>,
    pub start: WriterStart,
    /// Sizes of the `.torn` side files, by segment base.
    pub torn: std::collections::BTreeMap<Offset, u64>,
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

/// A segment just created with its header, durably.
pub(crate) struct NewSegment {
    pub path: PathBuf,
    pub file: Box<dyn WritableFile>,
    pub reader: Arc<dyn ReadableFile>,
    pub header: SegmentHeader,
}

/// Creates segment `base` (format v2) durably: create, write its header, fdatasync,
/// fsync the directory (unless `sync_dir` is false: a deliberate bug for the tests),
/// open it for reading. If anything fails once the file exists, the file is removed
/// and the directory fsynced, so no stray segment can block a later open. The error's
/// flag says that even that failed: the caller must poison the log.
pub(crate) fn create_segment(
    storage: &dyn Storage,
    dir: &Path,
    base: Offset,
    ts_floor: i64,
    config: &LogConfig,
    sync_dir: bool,
) -> Result<NewSegment, (LogError, bool)> {
    let path = segment::segment_path(dir, base);
    let salt = framing::new_salt(config.salt_seed, base)
        .map_err(|e| (LogError::io("make a salt for", &path, e), false))?;
    // Removes the new file (if it came to exist) and makes that durable.
    let cleanup = |err: LogError| {
        let cleaned = match storage.remove(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => storage.sync_dir(dir),
        };
        (err, cleaned.is_err())
    };
    let header = SegmentHeader {
        base,
        salt,
        ts_floor,
    };
    let mut file = match storage.create(&path) {
        Ok(file) => file,
        // The file may exist even so (a create that failed after its effect).
        Err(e) => return Err(cleanup(LogError::io("create", &path, e))),
    };
    let made = file
        .append(&header.encode())
        .and_then(|()| file.sync_data())
        .map_err(|e| LogError::io("write header of", &path, e))
        .and_then(|()| match sync_dir {
            true => storage
                .sync_dir(dir)
                .map_err(|e| LogError::io("fsync directory", dir, e)),
            false => Ok(()),
        })
        .and_then(|()| {
            storage
                .open_read(&path)
                .map_err(|e| LogError::io("open", &path, e))
        });
    match made {
        Ok(reader) => Ok(NewSegment {
            path,
            file,
            reader,
            header,
        }),
        Err(err) => {
            drop(file);
            Err(cleanup(err))
        }
    }
}

/// Reads a whole file with positioned reads (never a map), so that an unreadable
/// sector is an error naming the file and the byte, not a SIGBUS.
pub(crate) fn read_whole(storage: &dyn Storage, path: &Path) -> Result<Vec<u8>, LogError> {
    let file = storage.open_read(path).map_err(io("open", path))?;
    let len = file.len().map_err(io("stat", path))?;
    let len = usize::try_from(len).map_err(|_| LogError::Corruption {
        file: path.to_path_buf(),
        position: 0,
        reason: format!("file of {len} bytes is too large"),
    })?;
    let mut buf = vec![0u8; len];
    let mut done = 0usize;
    while done < len {
        let end = (done + READ_CHUNK).min(len);
        let n = file
            .read_at(done as u64, &mut buf[done..end])
            .map_err(|e| LogError::Unreadable {
                file: path.to_path_buf(),
                position: done as u64,
                source: Arc::new(e),
            })?;
        if n == 0 {
            buf.truncate(done);
            break;
        }
        done += n;
    }
    Ok(buf)
}

const READ_CHUNK: usize = 1 << 20;

/// The offset and time of the frame at `pos` of `file`, read with `pread`.
fn frame_at_file(file: &dyn ReadableFile, pos: u64) -> Option<(Offset, i64)> {
    let mut head = [0u8; FRAME_HEADER_BYTES];
    if read_full(file, pos, &mut head).ok()? < FRAME_HEADER_BYTES {
        return None;
    }
    let len = record::peek_frame_len(&head).ok()?;
    let mut frame = vec![0u8; len];
    if read_full(file, pos, &mut frame).ok()? < len {
        return None;
    }
    let (view, _) = record::decode(&frame).ok()?;
    Some((view.offset, view.timestamp_ms))
}

/// Recovers the partition in `dir`. With `must_exist`, a partition with no segment
/// file at all is damage (its files went missing), never a new, empty partition.
pub(crate) fn recover(
    storage: &dyn Storage,
    dir: &Path,
    config: &LogConfig,
    must_exist: bool,
) -> Result<Recovered, LogError> {
    let bases = segment_bases(storage, dir, true)?;
    let mut report = RecoveryReport::default();
    let Some((&last_base, sealed_bases)) = bases.split_last() else {
        if must_exist {
            return Err(LogError::Missing {
                path: dir.to_path_buf(),
                reason: "the partition has no segment file; it is never recreated empty".into(),
            });
        }
        let seg =
            create_segment(storage, dir, Offset(0), i64::MIN, config, true).map_err(|(e, _)| e)?;
        report.segments = 1;
        return Ok(Recovered {
            sealed: Vec::new(),
            active_path: seg.path,
            active: SegmentSummary::fresh(Offset(0)),
            file: seg.file,
            start: WriterStart {
                salt: seg.header.salt,
                synced_len: SEGMENT_HEADER_BYTES as u64,
                last_ts: i64::MIN,
            },
            torn: Default::default(),
            report,
        });
    };
    let mut sealed: Vec<SealedSegment> = Vec::with_capacity(sealed_bases.len() + 1);
    let mut prev: Option<(Offset, i64)> = None;
    for &base in sealed_bases {
        check_contiguous(dir, base, prev)?;
        let path = segment::segment_path(dir, base);
        let summary = load_sealed(storage, dir, base, &mut report)?;
        note_time_order(&path, prev, &summary, &mut report);
        prev = Some((summary.next, summary.last_ts));
        sealed.push(SealedSegment::new(path, summary));
    }
    check_contiguous(dir, last_base, prev)?;
    let mut active_path = segment::segment_path(dir, last_base);
    let bytes = read_whole(storage, &active_path)?;
    report.scanned_bytes += bytes.len() as u64;
    let out = scan::scan(&bytes, last_base, true);
    let mut file = storage
        .open_append(&active_path)
        .map_err(io("open", &active_path))?;
    // Whether recovery changed anything in the directory that still needs syncing.
    let mut changed = false;
    if let Some(damage) = &out.damage {
        if damage.kind == DamageKind::Corruption {
            return Err(corruption_error(&active_path, damage));
        }
        let cut = &bytes[out.summary.bytes as usize..];
        // Reserved zeros after the torn write are not part of it.
        let written = cut.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        keep_torn_bytes(storage, &active_path, &cut[..written])?;
        report.truncated_bytes = written as u64;
        file.truncate(out.summary.bytes)
            .and_then(|()| file.sync_data())
            .map_err(io("truncate torn tail of", &active_path))?;
    } else if out.summary.bytes < bytes.len() as u64 {
        // Zeros reserved by the writer: drop them so the file ends at its data again
        // (the writer reserves afresh). Made durable by the fdatasync below.
        file.truncate(out.summary.bytes)
            .map_err(io("truncate reserved space of", &active_path))?;
        changed = true;
    }
    drop(bytes);
    // The last segment's index is rebuilt by the scan above; an old file would be stale.
    let stale_index = segment::index_path(dir, last_base);
    if storage.exists(&stale_index) {
        storage
            .remove(&stale_index)
            .map_err(io("remove", &stale_index))?;
        changed = true;
    }
    let floor = prev.map_or(i64::MIN, |p| p.1);
    let mut active = out.summary;
    note_time_order(&active_path, prev, &active, &mut report);
    let header = match out.format {
        SegmentFormat::V2(h) => h,
        SegmentFormat::Fresh => {
            // An empty file, or a header a crash tore: the roll that made it never
            // finished. Give it its header now.
            let h = SegmentHeader {
                base: last_base,
                salt: framing::new_salt(config.salt_seed, last_base)
                    .map_err(io("make a salt for", &active_path))?,
                ts_floor: floor,
            };
            file.truncate(0)
                .and_then(|()| file.append(&h.encode()))
                .map_err(io("write header of", &active_path))?;
            active = SegmentSummary::fresh(last_base);
            changed = true;
            h
        }
        SegmentFormat::V1 => {
            // Format v1 is read, never written: seal it and start a v2 segment. Its
            // bytes are whole (cut above) and made durable before the new name exists.
            file.sync_data()
                .map_err(io("fdatasync recovered tail of", &active_path))?;
            let index = segment::index_path(dir, last_base);
            let _ = write_atomic(storage, &index, &segment::encode_index(&active));
            let last_ts = active.last_ts.max(floor);
            let seg = create_segment(storage, dir, active.next, last_ts, config, true)
                .map_err(|(e, _)| e)?;
            sealed.push(SealedSegment::new(active_path, active));
            active_path = seg.path;
            active = SegmentSummary::fresh(seg.header.base);
            file = seg.file;
            changed = true;
            seg.header
        }
    };
    // What the scan read may be only in the page cache (say, after a failed fdatasync and
    // a restart): make it durable before anything new is acknowledged after it. A name
    // created before a failed directory fsync may still be only in memory: make every
    // name we now rely on durable too. Both are known durable already when the log
    // rides a journal that was stopped cleanly (its checkpoint covers its whole end:
    // every segment was synced, and no failure blocked it) and recovery changed nothing.
    let known_durable = !changed
        && config
            .journal
            .as_ref()
            .is_some_and(|journal| journal.opened_clean());
    if !known_durable {
        file.sync_data()
            .map_err(io("fdatasync recovered tail of", &active_path))?;
        storage.sync_dir(dir).map_err(io("fsync directory", dir))?;
    }
    report.segments = sealed.len() + 1;
    let synced_len = active.bytes;
    let last_ts = active.last_ts.max(floor).max(header.ts_floor);
    Ok(Recovered {
        sealed,
        active_path,
        active,
        file,
        start: WriterStart {
            salt: header.salt,
            synced_len,
            last_ts,
        },
        torn: torn_sizes(storage, dir)?,
        report,
    })
}

/// The `.torn` side files in `dir` and their sizes, by the base of their segment.
fn torn_sizes(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<std::collections::BTreeMap<Offset, u64>, LogError> {
    let mut out = std::collections::BTreeMap::new();
    for name in storage.list(dir).map_err(io("list", dir))? {
        if let Some(base) = segment::parse_name(&name, segment::TORN_SUFFIX) {
            let path = dir.join(&name);
            let len = storage
                .open_read(&path)
                .and_then(|f| f.len())
                .map_err(io("stat", &path))?;
            out.insert(base, len);
        }
    }
    Ok(out)
}

/// Times never go back inside a segment (the scan checks that). Across segments, a
/// partition written before the writer carried its time over a roll may step back:
/// accepted, counted and logged, never refused.
fn note_time_order(
    path: &Path,
    prev: Option<(Offset, i64)>,
    summary: &SegmentSummary,
    report: &mut RecoveryReport,
) {
    let (Some((_, before)), Some(first)) = (prev, summary.first_ts()) else {
        return;
    };
    if first < before {
        report.time_regressions += 1;
        tracing::warn!(
            segment = %path.display(),
            first_ms = first,
            previous_last_ms = before,
            "segment starts earlier than the one before it (a clock stepped back); accepted"
        );
    }
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

/// A sealed segment's summary: from its index file when that agrees with the segment
/// (checked with a few positioned reads), else from a full scan (which must find no
/// damage at all), rewriting the index.
fn load_sealed(
    storage: &dyn Storage,
    dir: &Path,
    base: Offset,
    report: &mut RecoveryReport,
) -> Result<SegmentSummary, LogError> {
    let path = segment::segment_path(dir, base);
    let index_path = segment::index_path(dir, base);
    if let Ok(index) = read_to_vec(storage, &index_path) {
        let file = storage.open_read(&path).map_err(io("open", &path))?;
        let len = file.len().map_err(io("stat", &path))?;
        let frame_at = |pos| frame_at_file(&*file, pos);
        if let Some(summary) = segment::decode_index(&index, base, len, &frame_at) {
            return Ok(summary);
        }
    }
    let bytes = read_whole(storage, &path)?;
    report.indexes_rebuilt += 1;
    report.scanned_bytes += bytes.len() as u64;
    let out = scan::scan(&bytes, base, false);
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
