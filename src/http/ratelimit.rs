//! Token buckets, one per flow: `per_second` tokens a second, up to `burst`.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::store::meta::RateLimit;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last_ms: i64,
    limit: RateLimit,
}

/// Rate limiters of every flow.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Takes `n` tokens from `flow_id`'s bucket at `now_ms`. `Err(seconds)`: too many;
    /// retry after that many whole seconds (at least 1). Nothing is taken on refusal.
    pub fn take(&self, flow_id: &str, limit: RateLimit, n: u32, now_ms: i64) -> Result<(), u64> {
        let mut buckets = self.buckets.lock();
        let bucket = buckets.entry(flow_id.to_owned()).or_insert(Bucket {
            tokens: f64::from(limit.burst),
            last_ms: now_ms,
            limit,
        });
        if bucket.limit != limit {
            // The flow's limit changed: start the new limit full.
            *bucket = Bucket {
                tokens: f64::from(limit.burst),
                last_ms: now_ms,
                limit,
            };
        }
        let elapsed_s = (now_ms - bucket.last_ms).max(0) as f64 / 1000.0;
        bucket.tokens =
            (bucket.tokens + elapsed_s * f64::from(limit.per_second)).min(f64::from(limit.burst));
        bucket.last_ms = now_ms;
        let want = f64::from(n);
        if bucket.tokens >= want {
            bucket.tokens -= want;
            return Ok(());
        }
        if want > f64::from(limit.burst) {
            // Can never fit: answer the time to refill the whole bucket.
            return Err((f64::from(limit.burst) / f64::from(limit.per_second))
                .ceil()
                .max(1.0) as u64);
        }
        let missing = want - bucket.tokens;
        Err((missing / f64::from(limit.per_second)).ceil().max(1.0) as u64)
    }

    pub fn forget(&self, flow_id: &str) {
        self.buckets.lock().remove(flow_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit {
        per_second: 10,
        burst: 5,
    };

    #[test]
    fn a_burst_passes_then_the_rate_refills() {
        let r = RateLimiter::default();
        for _ in 0..5 {
            assert_eq!(r.take("f", LIMIT, 1, 0), Ok(()));
        }
        assert_eq!(r.take("f", LIMIT, 1, 0), Err(1));
        assert_eq!(
            r.take("f", LIMIT, 1, 100),
            Ok(()),
            "100 ms refills one token"
        );
        assert_eq!(r.take("f", LIMIT, 1, 100), Err(1));
        assert_eq!(
            r.take("other", LIMIT, 1, 100),
            Ok(()),
            "buckets are per flow"
        );
    }

    #[test]
    fn a_batch_takes_one_token_per_event() {
        let r = RateLimiter::default();
        assert_eq!(r.take("f", LIMIT, 3, 0), Ok(()));
        assert_eq!(r.take("f", LIMIT, 3, 0), Err(1));
        assert_eq!(r.take("f", LIMIT, 2, 0), Ok(()));
        assert_eq!(r.take("f", LIMIT, 6, 0), Err(1), "more than the burst");
    }
}
