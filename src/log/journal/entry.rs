//! One journal record: bytes written to a journaled log's segment, with where they go.
//!
//! Payload layout (little-endian): `version: u8 = 1`, `dir_len: u16`, `dir` (the log's
//! directory relative to the journal's root, UTF-8), `segment base: u64`,
//! `position: u64` (in the segment file), then the bytes. A group larger than
//! `JOURNAL_CHUNK_BYTES` is split into several records at consecutive positions.

use crate::log::writer::Staged;
use crate::log::{Offset, RecordInput};

/// Entry format version.
const ENTRY_VERSION: u8 = 1;
/// Bytes of one record's payload beyond the prefix (a group may take several).
pub const JOURNAL_CHUNK_BYTES: usize = 1024 * 1024;

/// A decoded entry, borrowing the record's payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub dir: &'a str,
    pub base: Offset,
    pub pos: u64,
    pub bytes: &'a [u8],
}

/// Appends the records that carry `staged` (written into the log at `dir`) to `out`.
pub(crate) fn encode(dir: &str, staged: &[Staged], out: &mut Vec<RecordInput>) {
    for group in staged {
        let mut pos = group.pos;
        for chunk in group.bytes.chunks(JOURNAL_CHUNK_BYTES) {
            let mut payload = Vec::with_capacity(1 + 2 + dir.len() + 16 + chunk.len());
            payload.push(ENTRY_VERSION);
            // A log directory's relative name is far below 64 KiB (`Journal::attach`).
            payload.extend_from_slice(&(dir.len() as u16).to_le_bytes());
            payload.extend_from_slice(dir.as_bytes());
            payload.extend_from_slice(&group.base.0.to_le_bytes());
            payload.extend_from_slice(&pos.to_le_bytes());
            payload.extend_from_slice(chunk);
            out.push(RecordInput::new(payload));
            pos += chunk.len() as u64;
        }
    }
}

/// Decodes one record's payload; `None` if it is not an entry of this version.
pub fn decode(payload: &[u8]) -> Option<Entry<'_>> {
    let (&version, rest) = payload.split_first()?;
    if version != ENTRY_VERSION {
        return None;
    }
    let len = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
    let rest = rest.get(2..)?;
    let dir = std::str::from_utf8(rest.get(..len)?).ok()?;
    let rest = rest.get(len..)?;
    let base = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let pos = u64::from_le_bytes(rest.get(8..16)?.try_into().ok()?);
    Some(Entry {
        dir,
        base: Offset(base),
        pos,
        bytes: rest.get(16..)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_group_splits_into_chunks_that_decode_to_consecutive_positions() {
        let bytes: Vec<u8> = (0..JOURNAL_CHUNK_BYTES * 2 + 10).map(|i| i as u8).collect();
        let mut out = Vec::new();
        let staged = vec![Staged::new(Offset(7), 100, bytes.clone())];
        encode("flows/f1/events", &staged, &mut out);
        assert_eq!(out.len(), 3);
        let mut joined = Vec::new();
        let mut expect_pos = 100;
        for record in &out {
            let e = decode(&record.payload).expect("decodes");
            assert_eq!(
                (e.dir, e.base, e.pos),
                ("flows/f1/events", Offset(7), expect_pos)
            );
            expect_pos += e.bytes.len() as u64;
            joined.extend_from_slice(e.bytes);
        }
        assert_eq!(joined, bytes);
    }

    #[test]
    fn truncated_or_foreign_payloads_do_not_decode() {
        let mut out = Vec::new();
        encode("a", &[Staged::new(Offset(0), 0, b"xyz".to_vec())], &mut out);
        let payload = out[0].payload.clone();
        for cut in 0..payload.len() - 3 {
            assert_eq!(decode(&payload[..cut]), None, "cut at {cut}");
        }
        let mut other = payload.to_vec();
        other[0] = 9;
        assert_eq!(decode(&other), None);
    }
}
