//! One journal record: bytes written to a journaled log's segment, with where they go.
//!
//! Payload layout (little-endian): `kind: u8`, `dir_len: u16`, `dir` (the log's
//! directory relative to the journal's root, UTF-8), `segment base: u64`, then
//! - kind 1, a write: `position: u64` (in the segment file), then the bytes. A group
//!   larger than `JOURNAL_CHUNK_BYTES` is split into several records at consecutive
//!   positions;
//! - kind 2, a cut: `length: u64`. The segment was cut back to that length after a
//!   write the journal already held could not be made in the segment (a full disk,
//!   say), so replay must cut it there too before the writes that follow.

use crate::log::writer::Staged;
use crate::log::{Offset, RecordInput};

/// Entry kinds.
const KIND_WRITE: u8 = 1;
const KIND_CUT: u8 = 2;
/// Bytes of one record's payload beyond the prefix (a group may take several).
pub const JOURNAL_CHUNK_BYTES: usize = 1024 * 1024;

/// A decoded entry, borrowing the record's payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub dir: &'a str,
    pub base: Offset,
    pub action: Action<'a>,
}

/// What replay does to the segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<'a> {
    Write { pos: u64, bytes: &'a [u8] },
    Cut { len: u64 },
}

fn prefix(kind: u8, dir: &str, base: Offset, extra: usize) -> Vec<u8> {
    let mut payload = Vec::with_capacity(1 + 2 + dir.len() + 16 + extra);
    payload.push(kind);
    // A log directory's relative name is at most 4 KiB (`Journal::relative`).
    payload.extend_from_slice(&(dir.len() as u16).to_le_bytes());
    payload.extend_from_slice(dir.as_bytes());
    payload.extend_from_slice(&base.0.to_le_bytes());
    payload
}

/// Appends the record that cuts segment `base` of the log at `dir` to `len` bytes.
pub(crate) fn encode_cut(dir: &str, base: Offset, len: u64, out: &mut Vec<RecordInput>) {
    let mut payload = prefix(KIND_CUT, dir, base, 0);
    payload.extend_from_slice(&len.to_le_bytes());
    out.push(RecordInput::new(payload));
}

/// Appends the records that carry `staged` (written into the log at `dir`) to `out`.
pub(crate) fn encode(dir: &str, staged: &[Staged], out: &mut Vec<RecordInput>) {
    for group in staged {
        let mut pos = group.pos;
        for chunk in group.bytes.chunks(JOURNAL_CHUNK_BYTES) {
            let mut payload = prefix(KIND_WRITE, dir, group.base, chunk.len());
            payload.extend_from_slice(&pos.to_le_bytes());
            payload.extend_from_slice(chunk);
            out.push(RecordInput::new(payload));
            pos += chunk.len() as u64;
        }
    }
}

/// Decodes one record's payload; `None` if it is not an entry of a known kind.
pub fn decode(payload: &[u8]) -> Option<Entry<'_>> {
    let (&kind, rest) = payload.split_first()?;
    let len = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
    let rest = rest.get(2..)?;
    let dir = std::str::from_utf8(rest.get(..len)?).ok()?;
    let rest = rest.get(len..)?;
    let base = Offset(u64::from_le_bytes(rest.get(..8)?.try_into().ok()?));
    let word = u64::from_le_bytes(rest.get(8..16)?.try_into().ok()?);
    let action = match kind {
        KIND_WRITE => Action::Write {
            pos: word,
            bytes: rest.get(16..)?,
        },
        KIND_CUT if rest.len() == 16 => Action::Cut { len: word },
        _ => return None,
    };
    Some(Entry { dir, base, action })
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
            let Action::Write { pos, bytes } = e.action else {
                panic!("a write: {e:?}")
            };
            assert_eq!(
                (e.dir, e.base, pos),
                ("flows/f1/events", Offset(7), expect_pos)
            );
            expect_pos += bytes.len() as u64;
            joined.extend_from_slice(bytes);
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

    #[test]
    fn a_cut_round_trips() {
        let mut out = Vec::new();
        encode_cut("flows/x/requests", Offset(40), 4096, &mut out);
        let e = decode(&out[0].payload).expect("decodes");
        assert_eq!(
            e,
            Entry {
                dir: "flows/x/requests",
                base: Offset(40),
                action: Action::Cut { len: 4096 }
            }
        );
    }
}
