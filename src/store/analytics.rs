//! Analytics of one flow, derived from its logs by an internal consumer.
//!
//! The aggregator reads the request log (received, accepted, duplicates, rejected by
//! status, latency) and the event log (volume per minute, event types), each from its
//! own committed offset, into per-minute buckets kept for `ANALYTICS_RETAIN_MINUTES`.
//! Its state and both offsets are checkpointed together, atomically, so after a restart it
//! resumes where the checkpoint ends instead of rescanning; as the logs are the truth,
//! the numbers are the same before and after a crash.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::store::requests::RequestEntry;

/// Buckets are kept for the longest window, 7 days.
pub const ANALYTICS_RETAIN_MINUTES: i64 = 7 * 24 * 60;
/// Distinct event types counted per flow; later ones count as `"other"`.
pub const ANALYTICS_EVENT_TYPES_MAX: usize = 1000;
/// Latency histogram buckets: two per power of two of microseconds (up to about 71 minutes).
pub const LATENCY_BUCKETS: usize = 64;

/// The windows the API offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Hour,
    Day,
    Week,
}

impl Window {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "1h" => Some(Self::Hour),
            "24h" => Some(Self::Day),
            "7d" => Some(Self::Week),
            _ => None,
        }
    }
    pub fn minutes(self) -> i64 {
        match self {
            Self::Hour => 60,
            Self::Day => 24 * 60,
            Self::Week => ANALYTICS_RETAIN_MINUTES,
        }
    }
}

fn latency_bucket(us: u32) -> usize {
    if us <= 1 {
        return 0;
    }
    let log2 = 31 - us.leading_zeros() as usize;
    // Second half of the power of two when the next bit is set.
    let half = usize::from(log2 > 0 && (us >> (log2 - 1)) & 1 == 1);
    (log2 * 2 + half).min(LATENCY_BUCKETS - 1)
}

/// The (exclusive) upper bound, in microseconds, of a latency bucket.
fn bucket_upper_us(i: usize) -> f64 {
    let log2 = (i / 2) as i32;
    let base = 2f64.powi(log2);
    if i.is_multiple_of(2) {
        base * 1.5
    } else {
        base * 2.0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Minute {
    pub received: u32,
    pub accepted: u32,
    pub duplicates: u32,
    pub rejected: Vec<(u16, u32)>,
    pub latency: Vec<u32>,
    /// Events stored this minute.
    pub events: u32,
    /// (type id, count).
    pub types: Vec<(u32, u32)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregator {
    /// Next offset to read in the request log.
    pub requests_next: u64,
    /// Next offset to read in the event log.
    pub events_next: u64,
    pub type_names: Vec<String>,
    #[serde(skip)]
    type_ids: HashMap<String, u32>,
    pub minutes: BTreeMap<i64, Minute>,
    /// `(requests_next, events_next)` of the checkpoint on disk, if it is known to hold
    /// them: then nothing new was read and a checkpoint may be skipped.
    #[serde(skip)]
    pub saved: Option<(u64, u64)>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumePoint {
    /// The minute, as Unix milliseconds of its start.
    pub minute: i64,
    pub count: u64,
}

/// A window's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub received: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: BTreeMap<String, u64>,
    pub success_rate: f64,
    pub error_rate: f64,
    pub latency_ms: Percentiles,
    pub volume: Vec<VolumePoint>,
    pub event_types: BTreeMap<String, u64>,
}

fn minute_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(60_000)
}

impl Aggregator {
    /// Rebuilds lookup tables after decoding a checkpoint.
    pub fn restore(mut self) -> Self {
        self.type_ids = self
            .type_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
        self
    }

    fn minute(&mut self, ts_ms: i64) -> &mut Minute {
        self.minutes.entry(minute_of(ts_ms)).or_default()
    }

    /// Counts one request-log entry: `entry.count` attempts (more than one for a second
    /// of unauthenticated rejections, all at its mean latency).
    pub fn add_request(&mut self, ts_ms: i64, entry: &RequestEntry) {
        let n = entry.count.max(1);
        let m = self.minute(ts_ms);
        m.received = m.received.saturating_add(n);
        if (200..300).contains(&entry.status) {
            if entry.stored > 0 {
                m.accepted = m.accepted.saturating_add(n);
            } else {
                m.duplicates = m.duplicates.saturating_add(n);
            }
        } else {
            match m.rejected.iter_mut().find(|(s, _)| *s == entry.status) {
                Some((_, k)) => *k = k.saturating_add(n),
                None => m.rejected.push((entry.status, n)),
            }
        }
        if m.latency.len() != LATENCY_BUCKETS {
            m.latency = vec![0; LATENCY_BUCKETS];
        }
        let b = &mut m.latency[latency_bucket(entry.latency_us)];
        *b = b.saturating_add(n);
    }

    pub fn add_event(&mut self, ts_ms: i64, event_type: &str) {
        let id = match self.type_ids.get(event_type) {
            Some(id) => *id,
            None if self.type_names.len() < ANALYTICS_EVENT_TYPES_MAX => {
                let id = self.type_names.len() as u32;
                self.type_names.push(event_type.to_owned());
                self.type_ids.insert(event_type.to_owned(), id);
                id
            }
            None => match self.type_ids.get("other") {
                Some(id) => *id,
                None => {
                    let id = self.type_names.len() as u32;
                    self.type_names.push("other".into());
                    self.type_ids.insert("other".into(), id);
                    id
                }
            },
        };
        let m = self.minute(ts_ms);
        m.events += 1;
        match m.types.iter_mut().find(|(t, _)| *t == id) {
            Some((_, n)) => *n += 1,
            None => m.types.push((id, 1)),
        }
    }

    /// Drops minutes older than the longest window.
    pub fn prune(&mut self, now_ms: i64) {
        let oldest = minute_of(now_ms) - ANALYTICS_RETAIN_MINUTES;
        self.minutes = self.minutes.split_off(&oldest);
    }

    /// The numbers of the `window` ending at `now_ms` (whole minutes, this one included).
    pub fn report(&self, window: Window, now_ms: i64) -> Report {
        let last = minute_of(now_ms);
        let first = last - window.minutes() + 1;
        let mut r = Report {
            received: 0,
            accepted: 0,
            duplicates: 0,
            rejected: BTreeMap::new(),
            success_rate: 0.0,
            error_rate: 0.0,
            latency_ms: Percentiles {
                p50: 0.0,
                p95: 0.0,
                p99: 0.0,
            },
            volume: Vec::new(),
            event_types: BTreeMap::new(),
        };
        let mut latency = vec![0u64; LATENCY_BUCKETS];
        for (&minute, m) in self.minutes.range(first..=last) {
            r.received += u64::from(m.received);
            r.accepted += u64::from(m.accepted);
            r.duplicates += u64::from(m.duplicates);
            for (status, n) in &m.rejected {
                *r.rejected.entry(status.to_string()).or_default() += u64::from(*n);
            }
            for (i, n) in m.latency.iter().enumerate() {
                latency[i] += u64::from(*n);
            }
            if m.events > 0 {
                r.volume.push(VolumePoint {
                    minute: minute * 60_000,
                    count: u64::from(m.events),
                });
            }
            for (id, n) in &m.types {
                if let Some(name) = self.type_names.get(*id as usize) {
                    *r.event_types.entry(name.clone()).or_default() += u64::from(*n);
                }
            }
        }
        if r.received > 0 {
            let ok = (r.accepted + r.duplicates) as f64;
            r.success_rate = ok / r.received as f64;
            r.error_rate = 1.0 - r.success_rate;
        }
        r.latency_ms = Percentiles {
            p50: percentile(&latency, 0.50),
            p95: percentile(&latency, 0.95),
            p99: percentile(&latency, 0.99),
        };
        r
    }
}

/// The bucket bound (ms) below which fraction `q` of the samples fall.
fn percentile(hist: &[u64], q: f64) -> f64 {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let target = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in hist.iter().enumerate() {
        seen += n;
        if seen >= target {
            return bucket_upper_us(i) / 1000.0;
        }
    }
    bucket_upper_us(hist.len() - 1) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(status: u16, stored: u32, latency_us: u32) -> RequestEntry {
        RequestEntry {
            status,
            error: None,
            message: None,
            latency_us,
            events: 1,
            stored,
            duplicates: u32::from(stored == 0 && status == 200),
            first_offset: None,
            event_id: None,
            test: false,
            count: 1,
        }
    }

    #[test]
    fn latency_buckets_bound_their_values() {
        for us in [1u32, 2, 3, 5, 100, 1000, 1500, 65_535, 1_000_000] {
            let i = latency_bucket(us);
            // Bucket i holds [upper(i - 1), upper(i)).
            assert!(f64::from(us) < bucket_upper_us(i), "{us} in bucket {i}");
            if i > 0 {
                assert!(
                    f64::from(us) >= bucket_upper_us(i - 1),
                    "{us} belongs lower than {i}"
                );
            }
        }
    }

    #[test]
    fn a_window_counts_what_happened_in_it() {
        let mut a = Aggregator::default();
        let now = 10 * 3_600_000;
        a.add_request(now - 2 * 3_600_000, &req(200, 1, 500)); // outside 1h, inside 24h
        a.add_request(now - 60_000, &req(200, 1, 800));
        a.add_request(now - 60_000, &req(200, 0, 300));
        a.add_request(now, &req(401, 0, 100));
        a.add_event(now - 60_000, "order.created");
        a.add_event(now, "order.created");
        let hour = a.report(Window::Hour, now);
        assert_eq!((hour.received, hour.accepted, hour.duplicates), (3, 1, 1));
        assert_eq!(hour.rejected.get("401"), Some(&1));
        assert!((hour.success_rate - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(hour.event_types.get("order.created"), Some(&2));
        assert_eq!(hour.volume.len(), 2);
        assert_eq!(a.report(Window::Day, now).received, 4);
        assert!(
            hour.latency_ms.p99 >= 0.8 && hour.latency_ms.p99 <= 1.1,
            "{:?}",
            hour.latency_ms
        );
    }
}
