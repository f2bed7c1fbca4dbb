//! Scanning segments: the tail check on open, index rebuilds, and `eventmesh check`.
//!
//! A scan walks frames from byte 0, checking each checksum, that offsets run on from
//! the file name's base, and that times never go back. At the first bad byte it decides:
//! - torn tail: the bad bytes are at the very end of the last segment and no valid
//!   frame follows them, so they are a write that never finished; recovery cuts them;
//! - corruption: anything else (a valid frame after the damage, a misplaced frame,
//!   damage in a sealed segment); recovery refuses it and names file and byte.
//!
//! Zeros from the first bad byte to the end of the file are space the writer reserved
//! ahead of its appends (so that fdatasync need not write the file's new length): the
//! data ends there, cleanly, in any segment.
//!
//! A batch is all or nothing: if the last valid frame says "batch continues", the
//! scan treats the whole unfinished batch as part of the torn tail.

use std::path::{Path, PathBuf};

use crate::error::LogError;
use crate::log::record::{self, ATTR_BATCH_CONTINUES, FRAME_HEADER_BYTES, FRAME_MAGIC};
use crate::log::segment::SegmentSummary;
use crate::log::types::Offset;

/// Which kind of damage a scan found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// An unfinished write at the end of the last segment: recovery truncates it.
    TornTail,
    /// Anything else: recovery refuses to open the partition.
    Corruption,
}

/// Where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub kind: DamageKind,
    /// Byte position in the segment file where valid data ends.
    pub position: u64,
    pub reason: String,
}

/// The result of scanning one segment's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// The valid prefix: whole records of whole batches.
    pub summary: SegmentSummary,
    pub damage: Option<Damage>,
}

/// Scans `bytes`, the contents of the segment with base offset `base`. `is_last` says
/// whether it is the partition's last segment (the only one that may have a torn tail).
/// `min_ts` is the last time of the segment before, since times never go back.
pub fn scan(bytes: &[u8], base: Offset, is_last: bool, min_ts: i64) -> ScanOutcome {
    let mut summary = SegmentSummary::empty(base);
    // The state at the end of the last whole batch: (next, bytes, last_ts, index entries).
    let mut whole = (summary.next, summary.bytes, summary.last_ts, 0usize);
    let mut pos = 0usize;
    let mut damage = None;
    while pos < bytes.len() {
        let found = record::decode(&bytes[pos..]);
        let problem = match found {
            Ok((frame, _)) if frame.offset != summary.next => Some(format!(
                "record has offset {}, expected {}",
                frame.offset, summary.next
            )),
            Ok((frame, _)) if frame.timestamp_ms < summary.last_ts.max(min_ts) => Some(format!(
                "record {} has time {} before the previous record's {}",
                frame.offset,
                frame.timestamp_ms,
                summary.last_ts.max(min_ts)
            )),
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        };
        match (found, problem) {
            (Ok((frame, len)), None) => {
                summary.note_record(pos as u64, len as u64, frame.timestamp_ms);
                pos += len;
                if frame.attributes & ATTR_BATCH_CONTINUES == 0 {
                    whole = (
                        summary.next,
                        summary.bytes,
                        summary.last_ts,
                        summary.index.len(),
                    );
                }
            }
            (_, Some(_)) if bytes[pos..].iter().all(|&b| b == 0) => {
                // Zeros the writer reserved ahead of its appends (see `preallocate`):
                // the end of the data, not damage.
                break;
            }
            (found, Some(reason)) => {
                let misplaced = found.is_ok();
                let torn = is_last && !misplaced && !valid_frame_after(bytes, pos);
                damage = Some(Damage {
                    kind: if torn {
                        DamageKind::TornTail
                    } else {
                        DamageKind::Corruption
                    },
                    position: pos as u64,
                    reason,
                });
                break;
            }
            (Err(_), None) => unreachable!("an Err always has a reason"),
        }
    }
    if whole.1 < summary.bytes {
        // The last batch never finished. At the end of the last segment that is a torn
        // write; a sealed segment is always whole, so there it is corruption.
        let earlier = damage.take();
        damage = Some(match earlier {
            Some(d) if d.kind == DamageKind::Corruption => d,
            _ => Damage {
                kind: if is_last {
                    DamageKind::TornTail
                } else {
                    DamageKind::Corruption
                },
                position: whole.1,
                reason: format!("batch starting at offset {} has no last record", whole.0),
            },
        });
    }
    summary.next = whole.0;
    summary.bytes = whole.1;
    summary.last_ts = whole.2;
    summary.index.truncate(whole.3);
    ScanOutcome { summary, damage }
}

/// Whether a frame that passes its checksum starts anywhere after `pos`.
fn valid_frame_after(bytes: &[u8], pos: usize) -> bool {
    let magic = FRAME_MAGIC.to_le_bytes();
    let mut at = pos + 1;
    while at + FRAME_HEADER_BYTES <= bytes.len() {
        if bytes[at + 4..at + 8] == magic && record::decode(&bytes[at..]).is_ok() {
            return true;
        }
        at += 1;
    }
    false
}

/// Turns a scan's damage into the error recovery answers with.
pub fn corruption_error(file: &Path, damage: &Damage) -> LogError {
    LogError::Corruption {
        file: PathBuf::from(file),
        position: damage.position,
        reason: damage.reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::types::RecordInput;

    fn segment(n: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        for i in 0..n {
            let rec = RecordInput::new(format!("payload {i}"));
            record::encode_into(&mut buf, Offset(10 + i), 100 + i as i64, false, &rec);
        }
        buf
    }

    #[test]
    fn clean_segment_has_no_damage() {
        let bytes = segment(5);
        let out = scan(&bytes, Offset(10), true, i64::MIN);
        assert_eq!(out.damage, None);
        assert_eq!(out.summary.next, Offset(15));
        assert_eq!(out.summary.bytes, bytes.len() as u64);
        assert_eq!(out.summary.last_ts, 104);
    }

    #[test]
    fn cut_last_record_is_a_torn_tail_at_its_start() {
        let bytes = segment(3);
        let two = segment(2).len();
        for cut in two + 1..bytes.len() {
            let out = scan(&bytes[..cut], Offset(10), true, i64::MIN);
            let d = out.damage.expect("damage");
            assert_eq!(d.kind, DamageKind::TornTail, "cut at {cut}");
            assert_eq!(d.position, two as u64);
            assert_eq!(out.summary.next, Offset(12));
        }
    }

    #[test]
    fn damage_with_a_valid_record_after_it_is_corruption() {
        let mut bytes = segment(3);
        bytes[FRAME_HEADER_BYTES + 2] ^= 0xff; // inside the first payload
        let out = scan(&bytes, Offset(10), true, i64::MIN);
        let d = out.damage.expect("damage");
        assert_eq!(d.kind, DamageKind::Corruption);
        assert_eq!(d.position, 0);
    }

    #[test]
    fn a_tail_in_a_sealed_segment_is_corruption() {
        let bytes = segment(3);
        let out = scan(&bytes[..bytes.len() - 1], Offset(10), false, i64::MIN);
        assert_eq!(out.damage.map(|d| d.kind), Some(DamageKind::Corruption));
    }

    #[test]
    fn unfinished_batch_is_cut_whole() {
        let mut bytes = segment(1);
        let first = bytes.len();
        for i in 0..3u64 {
            record::encode_into(
                &mut bytes,
                Offset(11 + i),
                200,
                true,
                &RecordInput::new("b"),
            );
        }
        let out = scan(&bytes, Offset(10), true, i64::MIN);
        let d = out.damage.expect("damage");
        assert_eq!(d.kind, DamageKind::TornTail);
        assert_eq!(d.position, first as u64);
        assert_eq!(out.summary.next, Offset(11));
    }

    #[test]
    fn reserved_zeros_after_the_last_record_are_a_clean_end() {
        let mut bytes = segment(3);
        let len = bytes.len();
        bytes.resize(len + 4096, 0);
        for is_last in [true, false] {
            let out = scan(&bytes, Offset(10), is_last, i64::MIN);
            assert_eq!(out.damage, None);
            assert_eq!(out.summary.bytes, len as u64);
            assert_eq!(out.summary.next, Offset(13));
        }
        // A torn record in the reserved space is still a torn tail, cut at its start.
        bytes[len + 100] = 1;
        let out = scan(&bytes, Offset(10), true, i64::MIN);
        assert_eq!(
            out.damage.map(|d| (d.kind, d.position)),
            Some((DamageKind::TornTail, len as u64))
        );
    }

    #[test]
    fn misplaced_record_is_corruption() {
        let bytes = segment(2);
        let out = scan(&bytes, Offset(11), true, i64::MIN);
        assert_eq!(out.damage.map(|d| d.kind), Some(DamageKind::Corruption));
    }
}
