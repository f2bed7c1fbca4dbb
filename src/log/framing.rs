//! Container framing of format version 2: the segment header and the group header.
//! Pure: byte slices in, values out.
//!
//! A v2 segment starts with a 32-byte segment header, then holds commit groups: one
//! group is what one writer `write` call put down (one group commit). Each group is a
//! 48-byte group header followed by whole record frames (`record.rs`, unchanged).
//!
//! Every header carries the segment's random `salt` inside its checksum, so no byte
//! string a sender controls (a key, a type, a payload) can pass as one of ours: a
//! sender never learns the salt. Each group header also says how many bytes of the
//! segment were already durable (`synced`) when it was written. That is what lets
//! recovery tell a torn last write from damage to acknowledged bytes (`scan.rs`).
//!
//! Layouts (`docs/format.md`): like a frame, every header has its CRC at bytes 0-3 and
//! its magic at bytes 4-7, so bytes 4-7 alone say what starts at a boundary.

use crate::log::Offset;

/// `"EMS2"`: segment header, format version 2.
pub const SEGMENT_MAGIC: u32 = u32::from_le_bytes(*b"EMS2");
/// `"EMG2"`: group header, format version 2.
pub const GROUP_MAGIC: u32 = u32::from_le_bytes(*b"EMG2");
pub const SEGMENT_HEADER_BYTES: usize = 32;
pub const GROUP_HEADER_BYTES: usize = 48;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The magic at bytes 4-7 of `bytes`, if there are that many.
pub fn magic_at(bytes: &[u8]) -> Option<u32> {
    (bytes.len() >= 8).then(|| u32_at(bytes, 4))
}

/// The first 32 bytes of a v2 segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub base: Offset,
    /// Random per segment; inside every header checksum of the segment.
    pub salt: u64,
    /// No record of this segment is older: the partition's last append time when the
    /// segment was created, so times never go back across a roll or a reopen.
    pub ts_floor: i64,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut out = [0u8; SEGMENT_HEADER_BYTES];
        out[4..8].copy_from_slice(&SEGMENT_MAGIC.to_le_bytes());
        out[8..16].copy_from_slice(&self.base.0.to_le_bytes());
        out[16..24].copy_from_slice(&self.salt.to_le_bytes());
        out[24..32].copy_from_slice(&self.ts_floor.to_le_bytes());
        let crc = crc32fast::hash(&out[4..]);
        out[0..4].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a segment header; `None` if these bytes are not a whole,
    /// intact one.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let h = bytes.get(..SEGMENT_HEADER_BYTES)?;
        if u32_at(h, 4) != SEGMENT_MAGIC || u32_at(h, 0) != crc32fast::hash(&h[4..]) {
            return None;
        }
        Some(Self {
            base: Offset(u64_at(h, 8)),
            salt: u64_at(h, 16),
            ts_floor: u64_at(h, 24) as i64,
        })
    }
}

/// The header in front of each commit group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupHeader {
    pub salt: u64,
    pub first_offset: Offset,
    pub records: u32,
    /// Bytes of record frames after the header.
    pub body_len: u32,
    /// Bytes of the segment (from its start) that were durable when this group was
    /// written: never more than the group's own position.
    pub synced: u64,
    /// CRC-32 of the body.
    pub body_crc: u32,
}

impl GroupHeader {
    pub fn encode(&self) -> [u8; GROUP_HEADER_BYTES] {
        let mut out = [0u8; GROUP_HEADER_BYTES];
        out[4..8].copy_from_slice(&GROUP_MAGIC.to_le_bytes());
        out[8..16].copy_from_slice(&self.salt.to_le_bytes());
        out[16..24].copy_from_slice(&self.first_offset.0.to_le_bytes());
        out[24..28].copy_from_slice(&self.records.to_le_bytes());
        out[28..32].copy_from_slice(&self.body_len.to_le_bytes());
        out[32..40].copy_from_slice(&self.synced.to_le_bytes());
        out[40..44].copy_from_slice(&self.body_crc.to_le_bytes());
        let crc = crc32fast::hash(&out[4..]);
        out[0..4].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a group header written under `salt`; `None` unless the magic, the salt
    /// and the header checksum all match (the body is not checked here).
    pub fn decode(bytes: &[u8], salt: u64) -> Option<Self> {
        let h = bytes.get(..GROUP_HEADER_BYTES)?;
        if u32_at(h, 4) != GROUP_MAGIC
            || u64_at(h, 8) != salt
            || u32_at(h, 0) != crc32fast::hash(&h[4..])
            || u32_at(h, 44) != 0
        {
            return None;
        }
        Some(Self {
            salt,
            first_offset: Offset(u64_at(h, 16)),
            records: u32_at(h, 24),
            body_len: u32_at(h, 28),
            synced: u64_at(h, 32),
            body_crc: u32_at(h, 40),
        })
    }

    /// Whole group length in bytes, header included.
    pub fn total_len(&self) -> u64 {
        GROUP_HEADER_BYTES as u64 + u64::from(self.body_len)
    }
}

/// The greatest `synced` claim of any intact group header (under `salt`) that starts
/// after byte `after` of `bytes`: proof that bytes below it had been made durable.
/// Looks at every byte position: only our writer can make a header that passes.
pub fn durable_claim_after(bytes: &[u8], after: usize, salt: u64) -> u64 {
    let magic = GROUP_MAGIC.to_le_bytes();
    let mut best = 0u64;
    let mut at = after + 1;
    while at + GROUP_HEADER_BYTES <= bytes.len() {
        if bytes[at + 4..at + 8] == magic {
            if let Some(h) = GroupHeader::decode(&bytes[at..], salt) {
                // A claim past the header's own position was never written by us.
                if h.synced <= at as u64 {
                    best = best.max(h.synced);
                }
            }
        }
        at += 1;
    }
    best
}

/// A salt for a new segment: random, or derived from `seed` (tests that need the same
/// bytes every run, such as the golden fixture).
pub fn new_salt(seed: Option<u64>, base: Offset) -> std::io::Result<u64> {
    match seed {
        Some(seed) => {
            // splitmix64 of seed and base: fixed, and different per segment.
            let mut z = seed ^ base.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            Ok(z ^ (z >> 31))
        }
        None => {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
            Ok(u64::from_le_bytes(b))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_are_pinned() {
        let s = SegmentHeader {
            base: Offset(4096),
            salt: 0x0102_0304_0506_0708,
            ts_floor: -5,
        };
        let b = s.encode();
        assert_eq!(&b[4..8], b"EMS2");
        assert_eq!(&b[8..16], &4096u64.to_le_bytes());
        assert_eq!(&b[0..4], &crc32fast::hash(&b[4..]).to_le_bytes());
        assert_eq!(SegmentHeader::decode(&b), Some(s));
        let g = GroupHeader {
            salt: s.salt,
            first_offset: Offset(4100),
            records: 3,
            body_len: 999,
            synced: 512,
            body_crc: 77,
        };
        let b = g.encode();
        assert_eq!(&b[4..8], b"EMG2");
        assert_eq!(&b[32..40], &512u64.to_le_bytes());
        assert_eq!(GroupHeader::decode(&b, s.salt), Some(g));
        assert_eq!(GroupHeader::decode(&b, s.salt ^ 1), None, "another salt");
    }

    #[test]
    fn every_bit_flip_of_a_header_is_detected() {
        let g = GroupHeader {
            salt: 9,
            first_offset: Offset(1),
            records: 1,
            body_len: 40,
            synced: 32,
            body_crc: 5,
        }
        .encode();
        for byte in 0..g.len() {
            for bit in 0..8 {
                let mut bad = g;
                bad[byte] ^= 1 << bit;
                assert_eq!(GroupHeader::decode(&bad, 9), None, "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn durable_claims_come_only_from_intact_headers_with_the_salt() {
        let mut bytes = vec![0u8; 300];
        let h = |synced| GroupHeader {
            salt: 7,
            first_offset: Offset(0),
            records: 1,
            body_len: 0,
            synced,
            body_crc: 0,
        };
        bytes[100..148].copy_from_slice(&h(90).encode());
        bytes[200..248].copy_from_slice(&GroupHeader { salt: 8, ..h(190) }.encode());
        assert_eq!(durable_claim_after(&bytes, 50, 7), 90);
        assert_eq!(durable_claim_after(&bytes, 100, 7), 0, "strictly after");
        assert_eq!(durable_claim_after(&bytes, 50, 8), 190);
    }
}
