//! One segment: its file names, its summary (offsets, bytes, times) and its sparse index.
//!
//! The index file is derived data (layout in `docs/format.md`, "Index file"): it is
//! written when a segment is sealed and trusted on open only if it agrees with the
//! segment file; otherwise the segment is scanned and the index rebuilt.

use std::path::{Path, PathBuf};

use crate::log::limits::INDEX_INTERVAL_BYTES;
use crate::log::record;
use crate::log::Offset;

/// Width of the segment file name's decimal base offset.
pub const SEGMENT_NAME_DIGITS: usize = 20;
pub const SEGMENT_SUFFIX: &str = ".log";
pub const INDEX_SUFFIX: &str = ".index";
/// `"EMX1"`: index file, format version 1.
pub const INDEX_MAGIC: u32 = u32::from_le_bytes(*b"EMX1");
pub const INDEX_HEADER_BYTES: usize = 48;
pub const INDEX_ENTRY_BYTES: usize = 16;

/// One sparse index entry: the record at `base + rel_offset` starts at `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub rel_offset: u32,
    pub position: u32,
    pub timestamp_ms: i64,
}

/// What is known of a segment's valid contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    pub base: Offset,
    /// One past the last record.
    pub next: Offset,
    /// Bytes of valid records.
    pub bytes: u64,
    /// Append time of the last record (`i64::MIN` when empty).
    pub last_ts: i64,
    pub index: Vec<IndexEntry>,
}

impl SegmentSummary {
    pub fn empty(base: Offset) -> Self {
        Self {
            base,
            next: base,
            bytes: 0,
            last_ts: i64::MIN,
            index: Vec::new(),
        }
    }

    /// A new v2 segment: no records yet, only its segment header.
    pub fn fresh(base: Offset) -> Self {
        Self {
            bytes: crate::log::framing::SEGMENT_HEADER_BYTES as u64,
            ..Self::empty(base)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.next == self.base
    }

    /// Append time of the first record.
    pub fn first_ts(&self) -> Option<i64> {
        self.index.first().map(|e| e.timestamp_ms)
    }

    /// Records a record at `position`, adding an index entry when due.
    pub fn note_record(&mut self, position: u64, frame_len: u64, timestamp_ms: i64) {
        let due = match self.index.last() {
            None => true,
            Some(last) => position - u64::from(last.position) >= INDEX_INTERVAL_BYTES,
        };
        if due {
            // Segment sizes are capped at SEGMENT_BYTES_LIMIT (1 GiB), and offsets in one
            // segment are fewer than its bytes, so both fit in u32.
            self.index.push(IndexEntry {
                rel_offset: (self.next.0 - self.base.0) as u32,
                position: position as u32,
                timestamp_ms,
            });
        }
        self.next = Offset(self.next.0 + 1);
        self.bytes = position + frame_len;
        self.last_ts = timestamp_ms;
    }

    /// The latest index entry at or before `offset`: (position, offset there).
    pub fn locate(&self, offset: Offset) -> (u64, Offset) {
        let rel = offset.0.saturating_sub(self.base.0);
        let i = self
            .index
            .partition_point(|e| u64::from(e.rel_offset) <= rel);
        match i.checked_sub(1).and_then(|i| self.index.get(i)) {
            Some(e) => (
                u64::from(e.position),
                Offset(self.base.0 + u64::from(e.rel_offset)),
            ),
            None => (0, self.base),
        }
    }

    /// The latest index entry whose time is before `ts`: where a scan for the first
    /// record at or after `ts` starts.
    pub fn locate_time(&self, ts: i64) -> (u64, Offset) {
        let i = self.index.partition_point(|e| e.timestamp_ms < ts);
        match i.checked_sub(1).and_then(|i| self.index.get(i)) {
            Some(e) => (
                u64::from(e.position),
                Offset(self.base.0 + u64::from(e.rel_offset)),
            ),
            None => (0, self.base),
        }
    }
}

pub fn segment_file_name(base: Offset) -> String {
    format!(
        "{:0width$}{SEGMENT_SUFFIX}",
        base.0,
        width = SEGMENT_NAME_DIGITS
    )
}

pub fn index_file_name(base: Offset) -> String {
    format!(
        "{:0width$}{INDEX_SUFFIX}",
        base.0,
        width = SEGMENT_NAME_DIGITS
    )
}

pub fn segment_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(segment_file_name(base))
}

pub fn index_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(index_file_name(base))
}

/// Suffix of the side file that keeps what a torn-tail recovery cut from a segment.
pub const TORN_SUFFIX: &str = ".log.torn";

pub fn torn_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!(
        "{:0width$}{TORN_SUFFIX}",
        base.0,
        width = SEGMENT_NAME_DIGITS
    ))
}

/// The base offset a file name of `suffix` names, if it is one of ours.
pub fn parse_name(name: &str, suffix: &str) -> Option<Offset> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Offset)
}

/// Encodes the index file of a sealed segment.
pub fn encode_index(summary: &SegmentSummary) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_HEADER_BYTES + summary.index.len() * INDEX_ENTRY_BYTES);
    out.extend_from_slice(&INDEX_MAGIC.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&summary.base.0.to_le_bytes());
    out.extend_from_slice(&summary.next.0.to_le_bytes());
    out.extend_from_slice(&summary.bytes.to_le_bytes());
    out.extend_from_slice(&summary.last_ts.to_le_bytes());
    // At most SEGMENT_BYTES_LIMIT / INDEX_INTERVAL_BYTES + 1 entries: fits in u32.
    out.extend_from_slice(&(summary.index.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    for e in &summary.index {
        out.extend_from_slice(&e.rel_offset.to_le_bytes());
        out.extend_from_slice(&e.position.to_le_bytes());
        out.extend_from_slice(&e.timestamp_ms.to_le_bytes());
    }
    let crc = crc32fast::hash(&out[8..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// What the frame at a byte position of a segment says: its offset and time, if a
/// frame that passes its checksum starts there.
pub type FrameAt<'a> = dyn Fn(u64) -> Option<(Offset, i64)> + 'a;

/// `FrameAt` over a segment's bytes held in memory.
pub fn frame_in(segment: &[u8]) -> impl Fn(u64) -> Option<(Offset, i64)> + '_ {
    move |pos| {
        let at = usize::try_from(pos).ok()?;
        let (frame, _) = record::decode(segment.get(at..)?).ok()?;
        Some((frame.offset, frame.timestamp_ms))
    }
}

/// Decodes an index file and checks it against the segment it claims to describe:
/// its base, the segment file's length `segment_len`, monotonic entries inside the
/// file, and the frames at the first and last entries (read through `frame_at`).
/// `None` means "doubtful: rebuild from the log".
pub fn decode_index(
    bytes: &[u8],
    base: Offset,
    segment_len: u64,
    frame_at: &FrameAt<'_>,
) -> Option<SegmentSummary> {
    if le_u32(bytes, 0)? != INDEX_MAGIC || le_u32(bytes, 4)? != crc32fast::hash(bytes.get(8..)?) {
        return None;
    }
    let summary_base = Offset(le_u64(bytes, 8)?);
    let next = Offset(le_u64(bytes, 16)?);
    let seg_bytes = le_u64(bytes, 24)?;
    let last_ts = le_u64(bytes, 32)? as i64;
    let count = le_u32(bytes, 40)? as usize;
    if summary_base != base
        || seg_bytes != segment_len
        || next <= base
        || bytes.len() != INDEX_HEADER_BYTES + count * INDEX_ENTRY_BYTES
    {
        return None;
    }
    let mut index = Vec::with_capacity(count);
    for i in 0..count {
        let at = INDEX_HEADER_BYTES + i * INDEX_ENTRY_BYTES;
        index.push(IndexEntry {
            rel_offset: le_u32(bytes, at)?,
            position: le_u32(bytes, at + 4)?,
            timestamp_ms: le_u64(bytes, at + 8)? as i64,
        });
    }
    let ordered = index.windows(2).all(|w| {
        w[0].rel_offset < w[1].rel_offset
            && w[0].position < w[1].position
            && w[0].timestamp_ms <= w[1].timestamp_ms
    });
    let first = index.first()?;
    let last = index.last()?;
    let inside = u64::from(last.rel_offset) < next.0 - base.0
        && u64::from(last.position) < seg_bytes
        && last.timestamp_ms <= last_ts;
    if !(ordered && first.rel_offset == 0 && inside) {
        return None;
    }
    for e in [first, last] {
        let (offset, ts) = frame_at(u64::from(e.position))?;
        if offset.0 != base.0 + u64::from(e.rel_offset) || ts != e.timestamp_ms {
            return None;
        }
    }
    Some(SegmentSummary {
        base,
        next,
        bytes: seg_bytes,
        last_ts,
        index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_twenty_digit_base_offsets() {
        assert_eq!(segment_file_name(Offset(42)), "00000000000000000042.log");
        assert_eq!(
            parse_name("00000000000000000042.log", SEGMENT_SUFFIX),
            Some(Offset(42))
        );
        assert_eq!(parse_name("42.log", SEGMENT_SUFFIX), None);
        assert_eq!(parse_name("0000000000000000004x.log", SEGMENT_SUFFIX), None);
        assert_eq!(
            parse_name("00000000000000000042.index", SEGMENT_SUFFIX),
            None
        );
    }

    #[test]
    fn locate_finds_the_latest_entry_at_or_before() {
        let mut s = SegmentSummary::empty(Offset(100));
        for i in 0..10u64 {
            s.note_record(i * 3000, 3000, 10 + i as i64);
        }
        // Entries every >= 4096 bytes: positions 0, 6000, 12000, 18000, 24000.
        assert_eq!(s.index.len(), 5);
        assert_eq!(s.locate(Offset(100)), (0, Offset(100)));
        assert_eq!(s.locate(Offset(103)), (6000, Offset(102)));
        assert_eq!(s.locate(Offset(109)), (24000, Offset(108)));
        assert_eq!(s.locate_time(13), (6000, Offset(102)));
        assert_eq!(s.locate_time(0), (0, Offset(100)));
    }
}
