//! The server's shared state and its limits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::http::limits::{
    BATCH_EVENTS_DEFAULT, BODY_BYTES_DEFAULT, BODY_READ_TIMEOUT_S_DEFAULT, CONNECTIONS_DEFAULT,
    EVENT_TYPE_BYTES_DEFAULT, HEADERS_DEFAULT, HEADER_BYTES_DEFAULT, HEADER_READ_TIMEOUT_S_DEFAULT,
    REQUEST_TIMEOUT_DEFAULT,
};
use crate::http::metrics::Metrics;
use crate::http::ratelimit::RateLimiter;
use crate::store::Store;

/// Every HTTP limit, named, with its default.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request body, in bytes (contract default 1 MiB).
    pub body_bytes_max: usize,
    /// Most events in one batch.
    pub batch_events_max: usize,
    /// Longest time to receive a request's headers (then the connection is closed).
    pub header_read_timeout: Duration,
    /// Longest time to receive a request's body (then 408).
    pub body_read_timeout: Duration,
    /// Longest time to answer one request, body included (then 503).
    pub request_timeout: Duration,
    /// Most open connections; more are answered 503 and closed.
    pub connections_max: usize,
    /// Most request headers.
    pub headers_max: usize,
    /// Largest header section, in bytes (hyper's read buffer; more is 431).
    pub header_bytes_max: usize,
    /// Longest event type kept, in bytes (longer is cut).
    pub event_type_bytes_max: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            body_bytes_max: BODY_BYTES_DEFAULT,
            batch_events_max: BATCH_EVENTS_DEFAULT,
            header_read_timeout: Duration::from_secs(HEADER_READ_TIMEOUT_S_DEFAULT),
            body_read_timeout: Duration::from_secs(BODY_READ_TIMEOUT_S_DEFAULT),
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            connections_max: CONNECTIONS_DEFAULT,
            headers_max: HEADERS_DEFAULT,
            header_bytes_max: HEADER_BYTES_DEFAULT,
            event_type_bytes_max: EVENT_TYPE_BYTES_DEFAULT,
        }
    }
}

impl HttpLimits {
    /// Refuses limits that cannot work: zero sizes, counts or timeouts, and a body limit
    /// over what one stored event may hold (`RECORD_PAYLOAD_BYTES_MAX`: a larger body
    /// would get through the front door and then fail as a 500).
    pub fn validate(&self) -> Result<(), String> {
        let max = crate::log::limits::RECORD_PAYLOAD_BYTES_MAX;
        if self.body_bytes_max == 0 || self.body_bytes_max > max {
            return Err(format!(
                "the body limit must be 1 to {max} bytes (the most one stored event holds)"
            ));
        }
        if self.batch_events_max == 0
            || self.connections_max == 0
            || self.headers_max == 0
            || self.header_bytes_max == 0
            || self.event_type_bytes_max == 0
        {
            return Err("limits must be positive".into());
        }
        let timeouts = [
            self.header_read_timeout,
            self.body_read_timeout,
            self.request_timeout,
        ];
        if timeouts.iter().any(Duration::is_zero) {
            return Err("timeouts must be positive".into());
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct App {
    pub store: Store,
    pub limits: HttpLimits,
    pub metrics: Metrics,
    pub rate: RateLimiter,
    /// The playground's own buckets (`PLAYGROUND_RATE_LIMIT` per flow).
    pub playground_rate: RateLimiter,
    /// Base of webhook URLs shown to users (`http://<listen>` unless set).
    pub public_url: String,
    draining: AtomicBool,
    /// Turns true at shutdown: SSE streams end and long polls answer at once.
    stop: tokio::sync::watch::Sender<bool>,
    /// Cluster mode: what a 2xx means on this NATS cluster (`/readyz` says it).
    pub cluster: Option<crate::store::partition::nats::monitor::Durability>,
}

impl App {
    /// The same app in cluster mode, whose acks mean `durability`.
    pub fn in_cluster(
        mut self,
        durability: crate::store::partition::nats::monitor::Durability,
    ) -> Self {
        self.cluster = Some(durability);
        self
    }

    pub fn new(store: Store, limits: HttpLimits, public_url: String) -> Self {
        Self {
            store,
            limits,
            metrics: Metrics::default(),
            rate: RateLimiter::default(),
            playground_rate: RateLimiter::default(),
            public_url,
            draining: AtomicBool::new(false),
            stop: tokio::sync::watch::Sender::new(false),
            cluster: None,
        }
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.stop.send_replace(true);
    }

    /// Turns true when the server starts shutting down: long-lived readers end then.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn webhook_url(&self, webhook_id: &str) -> String {
        format!(
            "{}/webhooks/{webhook_id}",
            self.public_url.trim_end_matches('/')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_that_cannot_work_are_refused() {
        assert_eq!(HttpLimits::default().validate(), Ok(()));
        let max = crate::log::limits::RECORD_PAYLOAD_BYTES_MAX;
        let with = |f: &dyn Fn(&mut HttpLimits)| {
            let mut l = HttpLimits::default();
            f(&mut l);
            l.validate()
        };
        assert_eq!(with(&|l| l.body_bytes_max = max), Ok(()));
        assert!(with(&|l| l.body_bytes_max = max + 1)
            .expect_err("over the record limit")
            .contains("the most one stored event holds"));
        assert!(with(&|l| l.body_bytes_max = 0).is_err());
        assert!(with(&|l| l.connections_max = 0).is_err());
        assert!(with(&|l| l.body_read_timeout = Duration::ZERO).is_err());
    }
}
