//! Offline repair of a damaged partition, behind `eventmesh repair`.
//!
//! Recovery refuses corruption rather than guess. Repair is the operator's explicit
//! choice to go on without the damaged part: it keeps every record before the first
//! damage (a bad frame or group, a gap between segments, a torn tail) and sets aside
//! everything from there on, for inspection, never deleting it:
//! - the bytes of the damaged segment from the damage on go to `<segment>.log.aside`;
//! - every later segment is renamed to `<segment>.log.aside` (its index is removed,
//!   as it is derived).
//!
//! After a repair the partition opens; its end is the end of what was kept, and new
//! appends take offsets from there. Run it only while no server has the partition
//! open: it takes the partition's lock.

use std::path::{Path, PathBuf};

use crate::log::record;
use crate::log::recovery::{read_whole, segment_bases};
use crate::log::scan::{self, Damage, DamageKind};
use crate::log::segment;
use crate::log::storage::Storage;
use crate::log::LogError;
use crate::log::Offset;

/// Suffix of what repair set aside.
pub const ASIDE_SUFFIX: &str = ".aside";

/// What a repair found, and did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    pub dir: PathBuf,
    /// Records kept: every record before the first damage.
    pub kept_records: u64,
    /// Where the kept records end: the next offset after a repair.
    pub next_offset: Offset,
    /// The first damage: its segment file and what it is. `None`: nothing to repair.
    pub damage: Option<(PathBuf, Damage)>,
    /// Bytes cut from the damaged segment (kept in its `.aside` file).
    pub bytes_set_aside: u64,
    /// Whole later segments set aside.
    pub segments_set_aside: usize,
    /// Records set aside that still pass their checksum: those in the later segments,
    /// plus frames found after the damage in the damaged segment.
    pub records_set_aside: u64,
    /// Side files written (or that would be).
    pub side_files: Vec<PathBuf>,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LogError + 'a {
    move |e| LogError::io(op, path, e)
}

fn aside_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(ASIDE_SUFFIX);
    PathBuf::from(name)
}

/// Frames that pass their checksum anywhere in `bytes` (a count for the report).
fn frames_in(bytes: &[u8]) -> u64 {
    let mut n = 0;
    let mut at = 0;
    while at + record::FRAME_HEADER_BYTES <= bytes.len() {
        if bytes[at + 4..at + 8] == record::FRAME_MAGIC.to_le_bytes() {
            if let Ok((_, len)) = record::decode(&bytes[at..]) {
                n += 1;
                at += len;
                continue;
            }
        }
        at += 1;
    }
    n
}

/// Repairs the partition in `dir` (with `dry_run`, only reports what it would do).
pub fn repair_partition(
    storage: &dyn Storage,
    dir: &Path,
    dry_run: bool,
) -> Result<RepairReport, LogError> {
    let _lock = storage.lock_dir(dir).map_err(io("lock", dir))?;
    let bases = segment_bases(storage, dir, false)?;
    let mut report = RepairReport {
        dir: dir.to_path_buf(),
        kept_records: 0,
        next_offset: Offset(bases.first().map_or(0, |b| b.0)),
        damage: None,
        bytes_set_aside: 0,
        segments_set_aside: 0,
        records_set_aside: 0,
        side_files: Vec::new(),
    };
    // Find the first damage. `keep`: the segment that ends the kept records and how
    // many of its bytes stay; `aside_from`: the first segment set aside whole.
    let mut found: Option<(usize, Option<u64>, usize)> = None;
    for (i, &base) in bases.iter().enumerate() {
        let path = segment::segment_path(dir, base);
        if base != report.next_offset {
            report.damage = Some((
                path,
                Damage {
                    kind: DamageKind::Corruption,
                    position: 0,
                    reason: format!(
                        "segment starts at offset {base} but the one before ends at {}",
                        report.next_offset
                    ),
                },
            ));
            // A gap: the segment before it ends the kept records, whole.
            found = Some((i - 1, None, i));
            break;
        }
        let bytes = read_whole(storage, &path)?;
        let out = scan::scan(&bytes, base, i + 1 == bases.len());
        report.kept_records += out.summary.next.0 - base.0;
        report.next_offset = out.summary.next;
        if let Some(damage) = out.damage {
            report.bytes_set_aside = bytes.len() as u64 - out.summary.bytes;
            report.records_set_aside += frames_in(&bytes[out.summary.bytes as usize..]);
            found = Some((i, Some(out.summary.bytes), i + 1));
            report.damage = Some((path, damage));
            break;
        }
    }
    let Some((last_kept, cut_at, aside_from)) = found else {
        return Ok(report);
    };
    let kept_path = segment::segment_path(dir, bases[last_kept]);
    if cut_at.is_some() {
        report.side_files.push(aside_path(&kept_path));
    }
    for &base in &bases[aside_from..] {
        let path = segment::segment_path(dir, base);
        let bytes = read_whole(storage, &path)?;
        report.records_set_aside += frames_in(&bytes);
        report.segments_set_aside += 1;
        report.side_files.push(aside_path(&path));
    }
    if dry_run {
        return Ok(report);
    }
    if let Some(keep_bytes) = cut_at {
        // Keep the cut bytes, durably, before the segment is shortened.
        let bytes = read_whole(storage, &kept_path)?;
        let side = aside_path(&kept_path);
        let mut file = storage.create(&side).map_err(io("create", &side))?;
        file.append(&bytes[keep_bytes as usize..])
            .and_then(|()| file.sync_data())
            .map_err(io("write", &side))?;
        storage.sync_dir(dir).map_err(io("fsync directory", dir))?;
        let mut seg = storage
            .open_append(&kept_path)
            .map_err(io("open", &kept_path))?;
        seg.truncate(keep_bytes)
            .and_then(|()| seg.sync_data())
            .map_err(io("truncate", &kept_path))?;
    }
    for &base in &bases[aside_from..] {
        let path = segment::segment_path(dir, base);
        storage
            .rename(&path, &aside_path(&path))
            .map_err(io("rename", &path))?;
        let index = segment::index_path(dir, base);
        if storage.exists(&index) {
            storage.remove(&index).map_err(io("remove", &index))?;
        }
    }
    // The kept segment is now the last one: its old index would be stale.
    let index = segment::index_path(dir, bases[last_kept]);
    if storage.exists(&index) {
        storage.remove(&index).map_err(io("remove", &index))?;
    }
    storage.sync_dir(dir).map_err(io("fsync directory", dir))?;
    Ok(report)
}
