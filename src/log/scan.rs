//! Scanning segments: the tail check on open, index rebuilds, and `eventmesh check`.
//!
//! Two formats are read (`docs/format.md`):
//! - **v2** (written today): a segment header, then commit groups, each a group header
//!   and whole frames. A group is all or nothing. At the first group that is not whole
//!   and intact, the scan decides from what is on disk:
//!   - torn tail: no intact group header after it claims that bytes at or past its
//!     start had been made durable, so it is a write that never finished (power loss
//!     may have kept any subset of its sectors); recovery cuts it;
//!   - corruption: a later group header proves those bytes were synced (and so may have
//!     been acknowledged), or the damage is in a sealed segment, or an intact header is
//!     misplaced; recovery refuses it and names the file and byte.
//!
//!   Headers carry the segment's random salt inside their checksum, so bytes a sender
//!   planted in a payload never pass as a header; frames are never searched for.
//! - **v1** (read only): bare frames. At the first bad byte: torn tail if no frame that
//!   passes its checksum starts anywhere after it, else corruption. An unfinished batch
//!   (its last frame says "batch continues") is part of the torn tail.
//!
//! In both, zeros from the first bad byte to the end of the file are space the writer
//! reserved ahead of its appends: the data ends there, cleanly, in any segment. Times
//! never go back inside a segment; across segments the caller only warns.

use std::path::{Path, PathBuf};

use crate::log::framing::{
    self, GroupHeader, SegmentHeader, GROUP_HEADER_BYTES, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC,
};
use crate::log::record::{self, ATTR_BATCH_CONTINUES, FRAME_HEADER_BYTES, FRAME_MAGIC};
use crate::log::segment::SegmentSummary;
use crate::log::LogError;
use crate::log::Offset;

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

impl Damage {
    /// Damage at byte `pos`: a torn tail when `torn`, else corruption.
    fn at(torn: bool, pos: usize, reason: String) -> Self {
        Self {
            kind: if torn {
                DamageKind::TornTail
            } else {
                DamageKind::Corruption
            },
            position: pos as u64,
            reason,
        }
    }
}

/// Which format a segment's bytes are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentFormat {
    /// Bare frames (format v1): read, never written any more.
    V1,
    /// A segment header and commit groups (format v2).
    V2(SegmentHeader),
    /// No header and no data: an empty file, or a header torn by a crash during a roll
    /// with nothing after it. Open writes a fresh header (last segment only).
    Fresh,
}

/// The result of scanning one segment's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// The valid prefix: whole records of whole batches (v1) or groups (v2).
    pub summary: SegmentSummary,
    pub damage: Option<Damage>,
    pub format: SegmentFormat,
}

/// Scans `bytes`, the contents of the segment with base offset `base`. `is_last` says
/// whether it is the partition's last segment (the only one that may have a torn tail).
pub fn scan(bytes: &[u8], base: Offset, is_last: bool) -> ScanOutcome {
    if framing::magic_at(bytes) == Some(SEGMENT_MAGIC) {
        return match SegmentHeader::decode(bytes) {
            Some(h) if h.base == base => scan_v2(bytes, h, is_last),
            found => header_damage(bytes, base, is_last, found),
        };
    }
    let out = scan_v1(bytes, base, is_last);
    let nothing_whole = out.summary.bytes == 0
        && out
            .damage
            .as_ref()
            .is_none_or(|d| d.kind == DamageKind::TornTail);
    if is_last && nothing_whole {
        // An empty file, or the first write (a segment header, or a v1 frame) torn:
        // there is no record to keep.
        return ScanOutcome {
            format: SegmentFormat::Fresh,
            ..out
        };
    }
    out
}

/// A segment that starts like a v2 one but whose header does not check out.
fn header_damage(
    bytes: &[u8],
    base: Offset,
    is_last: bool,
    found: Option<SegmentHeader>,
) -> ScanOutcome {
    // The header is synced before anything is written after it, so a torn header with
    // nothing but zeros after it is a roll that a crash interrupted.
    let after = bytes.get(SEGMENT_HEADER_BYTES..).unwrap_or(&[]);
    let torn = is_last && found.is_none() && after.iter().all(|&b| b == 0);
    ScanOutcome {
        summary: SegmentSummary::empty(base),
        damage: Some(Damage {
            kind: if torn {
                DamageKind::TornTail
            } else {
                DamageKind::Corruption
            },
            position: 0,
            reason: match found {
                Some(h) => format!("segment header names base {}, not {base}", h.base),
                None => "segment header is damaged".into(),
            },
        }),
        format: if torn {
            SegmentFormat::Fresh
        } else {
            SegmentFormat::V1
        },
    }
}

/// One intact, whole group at the start of `rest`: its frames as (position in the
/// group, length, time), or why not. `misplaced` is set when the header is intact (so
/// ours) but does not belong here.
fn check_group(
    rest: &[u8],
    h: &GroupHeader,
    summary: &SegmentSummary,
    misplaced: &mut bool,
) -> Result<Vec<(usize, usize, i64)>, String> {
    if h.first_offset != summary.next {
        *misplaced = true;
        return Err(format!(
            "group starts at offset {}, expected {}",
            h.first_offset, summary.next
        ));
    }
    let len = usize::try_from(h.total_len()).unwrap_or(usize::MAX);
    let Some(group) = rest.get(..len) else {
        return Err(format!(
            "group of {len} bytes, only {} in the file",
            rest.len()
        ));
    };
    let body = &group[GROUP_HEADER_BYTES..];
    if crc32fast::hash(body) != h.body_crc {
        return Err("group checksum mismatch".into());
    }
    let mut frames = Vec::with_capacity(h.records as usize);
    let mut at = GROUP_HEADER_BYTES;
    let mut expect = summary.next;
    let mut last_ts = summary.last_ts;
    let mut continues = false;
    while at < len {
        let (frame, flen) = record::decode(&group[at..]).map_err(|e| e.to_string())?;
        if frame.offset != expect || frame.timestamp_ms < last_ts {
            return Err(format!(
                "record {} (time {}) out of place in its group",
                frame.offset, frame.timestamp_ms
            ));
        }
        frames.push((at, flen, frame.timestamp_ms));
        continues = frame.attributes & ATTR_BATCH_CONTINUES != 0;
        expect = Offset(expect.0 + 1);
        last_ts = frame.timestamp_ms;
        at += flen;
    }
    if frames.len() != h.records as usize || frames.is_empty() || continues {
        return Err(format!(
            "group holds {} records, its header says {}",
            frames.len(),
            h.records
        ));
    }
    Ok(frames)
}

fn scan_v2(bytes: &[u8], header: SegmentHeader, is_last: bool) -> ScanOutcome {
    let mut summary = SegmentSummary::empty(header.base);
    summary.bytes = SEGMENT_HEADER_BYTES as u64;
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut damage = None;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let mut misplaced = false;
        let checked = match GroupHeader::decode(rest, header.salt) {
            Some(h) if h.synced > pos as u64 => {
                misplaced = true;
                Err(format!("group claims {} bytes synced before it", h.synced))
            }
            Some(h) => check_group(rest, &h, &summary, &mut misplaced).map(|f| (h, f)),
            None => Err("no intact group header".into()),
        };
        match checked {
            Ok((h, frames)) => {
                for (at, len, ts) in frames {
                    summary.note_record((pos + at) as u64, len as u64, ts);
                }
                pos += h.total_len() as usize;
                summary.bytes = pos as u64;
            }
            Err(_) if rest.iter().all(|&b| b == 0) => break,
            Err(reason) => {
                let claim = framing::durable_claim_after(bytes, pos, header.salt);
                let torn = is_last && !misplaced && claim <= pos as u64;
                let reason = if claim > pos as u64 {
                    format!("{reason}; a later group shows {claim} bytes were synced")
                } else {
                    reason
                };
                damage = Some(Damage::at(torn, pos, reason));
                break;
            }
        }
    }
    ScanOutcome {
        summary,
        damage,
        format: SegmentFormat::V2(header),
    }
}

fn scan_v1(bytes: &[u8], base: Offset, is_last: bool) -> ScanOutcome {
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
            Ok((frame, _)) if frame.timestamp_ms < summary.last_ts => Some(format!(
                "record {} has time {} before the previous record's {}",
                frame.offset, frame.timestamp_ms, summary.last_ts
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
                damage = Some(Damage::at(torn, pos, reason));
                break;
            }
            // An Err always has a reason.
            (Err(_), None) => break,
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
    ScanOutcome {
        summary,
        damage,
        format: SegmentFormat::V1,
    }
}

/// Whether a frame that passes its checksum starts anywhere after `pos` (v1 only).
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
    use crate::log::RecordInput;

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
        let out = scan(&bytes, Offset(10), true);
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
            let out = scan(&bytes[..cut], Offset(10), true);
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
        let out = scan(&bytes, Offset(10), true);
        let d = out.damage.expect("damage");
        assert_eq!(d.kind, DamageKind::Corruption);
        assert_eq!(d.position, 0);
    }

    #[test]
    fn a_tail_in_a_sealed_segment_is_corruption() {
        let bytes = segment(3);
        let out = scan(&bytes[..bytes.len() - 1], Offset(10), false);
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
        let out = scan(&bytes, Offset(10), true);
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
            let out = scan(&bytes, Offset(10), is_last);
            assert_eq!(out.damage, None);
            assert_eq!(out.summary.bytes, len as u64);
            assert_eq!(out.summary.next, Offset(13));
        }
        // A torn record in the reserved space is still a torn tail, cut at its start.
        bytes[len + 100] = 1;
        let out = scan(&bytes, Offset(10), true);
        assert_eq!(
            out.damage.map(|d| (d.kind, d.position)),
            Some((DamageKind::TornTail, len as u64))
        );
    }

    #[test]
    fn misplaced_record_is_corruption() {
        let bytes = segment(2);
        let out = scan(&bytes, Offset(11), true);
        assert_eq!(out.damage.map(|d| d.kind), Some(DamageKind::Corruption));
    }
}
