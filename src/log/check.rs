//! Offline verification of a partition: every record checksum, every index, the
//! offsets between segments. Changes nothing. Used by `eventmesh check`.

use std::path::{Path, PathBuf};

use crate::log::recovery::{read_whole, segment_bases};
use crate::log::scan::{self, Damage, DamageKind};
use crate::log::segment;
use crate::log::storage::{read_to_vec, Storage};
use crate::log::LogError;
use crate::log::Offset;

/// The state of a sealed segment's index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexState {
    /// Present and identical to the one a scan builds.
    Valid,
    /// Absent: open would rebuild it.
    Missing,
    /// Present but not trustworthy: open would rebuild it.
    Doubtful,
    /// The last segment has no index file; open scans it.
    Active,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentCheck {
    pub file: PathBuf,
    pub base: Offset,
    pub records: u64,
    pub bytes: u64,
    pub index: IndexState,
    pub damage: Option<Damage>,
}

/// The verdict over a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Clean,
    /// Only a torn tail and derived data to rebuild: open repairs it.
    Repairable,
    /// Damage recovery refuses.
    Corrupt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionCheck {
    pub dir: PathBuf,
    pub segments: Vec<SegmentCheck>,
    /// Offsets that do not run on from one segment to the next.
    pub gaps: Vec<String>,
}

impl PartitionCheck {
    pub fn verdict(&self) -> Verdict {
        let mut v = if self.gaps.is_empty() {
            Verdict::Clean
        } else {
            Verdict::Corrupt
        };
        for s in &self.segments {
            let this = match (&s.damage, s.index) {
                (Some(d), _) if d.kind == DamageKind::Corruption => Verdict::Corrupt,
                (Some(_), _) | (None, IndexState::Missing | IndexState::Doubtful) => {
                    Verdict::Repairable
                }
                _ => Verdict::Clean,
            };
            v = v.max(this);
        }
        v
    }

    pub fn records(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum()
    }
}

/// Checks the partition in `dir` without changing it.
pub fn check_partition(storage: &dyn Storage, dir: &Path) -> Result<PartitionCheck, LogError> {
    let bases = segment_bases(storage, dir, false)?;
    let mut out = PartitionCheck {
        dir: dir.to_path_buf(),
        segments: Vec::new(),
        gaps: Vec::new(),
    };
    let mut prev: Option<(Offset, i64)> = None;
    for (i, &base) in bases.iter().enumerate() {
        let is_last = i + 1 == bases.len();
        let file = segment::segment_path(dir, base);
        if let Some((next, _)) = prev {
            if next != base {
                out.gaps.push(format!(
                    "{} starts at offset {base} but the segment before ends at {next}",
                    file.display()
                ));
            }
        }
        let bytes = read_whole(storage, &file)?;
        let scan = scan::scan(&bytes, base, is_last);
        let index = if is_last {
            IndexState::Active
        } else {
            match read_to_vec(storage, &segment::index_path(dir, base)) {
                Err(_) => IndexState::Missing,
                Ok(ix) => match segment::decode_index(
                    &ix,
                    base,
                    bytes.len() as u64,
                    &segment::frame_in(&bytes),
                ) {
                    Some(summary) if summary == scan.summary => IndexState::Valid,
                    _ => IndexState::Doubtful,
                },
            }
        };
        prev = Some((scan.summary.next, scan.summary.last_ts));
        out.segments.push(SegmentCheck {
            file,
            base,
            records: scan.summary.next.0 - base.0,
            bytes: bytes.len() as u64,
            index,
            damage: scan.damage,
        });
    }
    Ok(out)
}
