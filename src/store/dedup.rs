//! The idempotency index of one flow: key → (offset, body hash, time), within the
//! flow's dedup window.
//!
//! Memory: keys are kept as 16-byte SHA-256 prefixes, values as 16 bytes, so an entry is
//! 32 bytes in a hash table (about 37 to 75 bytes per key with the table's slack; see
//! `docs/performance.md`). Entries live in time buckets (1/16 of the window each); a
//! whole bucket is dropped once all of it is older than the window, so expiry costs no
//! per-key bookkeeping. Lookups check the entry's own time, so the window is exact.
//! Beyond `DEDUP_KEYS_PER_FLOW_MAX` keys the oldest bucket is dropped early: the window
//! shrinks rather than memory growing, and `evicted_early` counts the keys so lost.
//!
//! The index is derived: on open it is rebuilt from the keys stored in the flow's log
//! records within the window (the log is the truth).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use sha2::{Digest, Sha256};

/// The window is cut into this many buckets.
pub const DEDUP_BUCKETS: i64 = 16;

/// The first 16 bytes of SHA-256 of an idempotency key.
pub type KeyHash = [u8; 16];

pub fn key_hash(key: &str) -> KeyHash {
    let digest = Sha256::digest(key.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// What the index remembers of a stored event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupEntry {
    pub offset: u64,
    pub body_hash: u32,
    /// Append time in seconds since the Unix epoch.
    pub time_s: u32,
}

/// The keys are SHA-256 output already: their first 8 bytes are a good hash.
#[derive(Debug, Default)]
pub struct PrehashedKey(u64);

impl Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (i * 8);
        }
    }
}

type Map = HashMap<KeyHash, DedupEntry, BuildHasherDefault<PrehashedKey>>;

#[derive(Debug)]
struct Bucket {
    start_s: i64,
    map: Map,
}

#[derive(Debug)]
pub struct DedupIndex {
    window_s: i64,
    bucket_s: i64,
    buckets: VecDeque<Bucket>,
    len: usize,
    max_keys: usize,
    pub evicted_early: u64,
}

impl DedupIndex {
    pub fn new(window_s: u64, max_keys: usize) -> Self {
        let window_s = i64::try_from(window_s).unwrap_or(i64::MAX).max(1);
        Self {
            window_s,
            bucket_s: (window_s / DEDUP_BUCKETS).max(1),
            buckets: VecDeque::new(),
            len: 0,
            max_keys: max_keys.max(1),
            evicted_early: 0,
        }
    }

    pub fn window_s(&self) -> i64 {
        self.window_s
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entry for `key` if it was stored within the window ending at `now_s`.
    pub fn get(&self, key: &KeyHash, now_s: i64) -> Option<DedupEntry> {
        let oldest = now_s - self.window_s;
        self.buckets
            .iter()
            .rev()
            .find_map(|b| b.map.get(key))
            .filter(|e| i64::from(e.time_s) >= oldest)
            .copied()
    }

    /// Remembers `key`. Times arrive in non-decreasing order (append order).
    pub fn insert(&mut self, key: KeyHash, entry: DedupEntry) {
        let t = i64::from(entry.time_s);
        let start = t - t.rem_euclid(self.bucket_s);
        // A bucket also closes once it holds its share of the bound, so even a burst
        // inside one bucket's time stays bounded (at most max_keys plus one share).
        let share = (self.max_keys / DEDUP_BUCKETS as usize).max(1);
        if self
            .buckets
            .back()
            .is_none_or(|b| b.start_s < start || b.map.len() >= share)
        {
            self.buckets.push_back(Bucket {
                start_s: start,
                map: Map::default(),
            });
        }
        if let Some(bucket) = self.buckets.back_mut() {
            if bucket.map.insert(key, entry).is_none() {
                self.len += 1;
            }
        }
        while self.len > self.max_keys && self.buckets.len() > 1 {
            if let Some(oldest) = self.buckets.pop_front() {
                self.len -= oldest.map.len();
                self.evicted_early += oldest.map.len() as u64;
            }
        }
    }

    /// Every entry, oldest bucket first (for the checkpoint).
    pub fn entries(&self) -> impl Iterator<Item = (&KeyHash, &DedupEntry)> {
        self.buckets.iter().flat_map(|b| b.map.iter())
    }

    /// Drops buckets entirely older than the window ending at `now_s`.
    pub fn expire(&mut self, now_s: i64) {
        let oldest = now_s - self.window_s;
        while let Some(front) = self.buckets.front() {
            if front.start_s + self.bucket_s > oldest {
                break;
            }
            self.len -= front.map.len();
            self.buckets.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(offset: u64, time_s: u32) -> DedupEntry {
        DedupEntry {
            offset,
            body_hash: 7,
            time_s,
        }
    }

    #[test]
    fn a_key_is_found_exactly_within_the_window() {
        let mut ix = DedupIndex::new(1600, 100);
        ix.insert(key_hash("a"), e(1, 1000));
        assert_eq!(ix.get(&key_hash("a"), 1000), Some(e(1, 1000)));
        assert_eq!(ix.get(&key_hash("a"), 2600), Some(e(1, 1000)));
        assert_eq!(
            ix.get(&key_hash("a"), 2601),
            None,
            "one second past the window"
        );
        assert_eq!(ix.get(&key_hash("b"), 1000), None);
    }

    #[test]
    fn expiry_drops_whole_old_buckets_only() {
        let mut ix = DedupIndex::new(1600, 100);
        ix.insert(key_hash("a"), e(1, 1000));
        ix.insert(key_hash("b"), e(2, 2000));
        ix.expire(2600);
        assert_eq!(ix.len(), 2, "the bucket of a still overlaps the window");
        ix.expire(2800);
        assert_eq!(ix.len(), 1);
        assert_eq!(ix.get(&key_hash("b"), 2800), Some(e(2, 2000)));
    }

    #[test]
    fn past_the_bound_the_oldest_bucket_goes_first() {
        let mut ix = DedupIndex::new(1600, 2);
        ix.insert(key_hash("a"), e(1, 0));
        ix.insert(key_hash("b"), e(2, 200));
        ix.insert(key_hash("c"), e(3, 400));
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.evicted_early, 1);
        assert_eq!(ix.get(&key_hash("a"), 400), None);
        assert!(ix.get(&key_hash("c"), 400).is_some());
    }
}
