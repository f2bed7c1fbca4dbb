//! Prometheus text metrics. No label ever carries a secret, a key or a payload.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::log::stats::FSYNC_BUCKETS_US;
use crate::log::WriterStats;

/// Upper bounds (seconds) of the ingest latency histogram; one more bucket is +Inf.
pub const LATENCY_BUCKETS_S: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// One counter per HTTP status 100..=599, lock-free.
#[derive(Debug)]
struct StatusCounts([AtomicU64; 500]);

/// The store's gauges for one `/metrics` answer.
#[derive(Debug, Clone, Default)]
pub struct StoreGauges {
    pub flows: usize,
    pub dedup_keys: u64,
    pub flows_unavailable: usize,
    /// Flows whose logs are not open yet (they open on first use or in the background).
    pub flows_opening: usize,
    /// Poisoned logs of open flows, by kind (`events`, `requests`, `consumers`).
    pub logs_poisoned: Vec<(&'static str, usize)>,
    /// The journal's rounds, syncs and checkpoints, and the segment files its logs
    /// hold open for reading and for writing.
    pub journal: Option<JournalGauges>,
}

/// The journal's share of `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JournalGauges {
    pub rounds: u64,
    pub syncs: u64,
    pub checkpoints: u64,
    pub open_readers: usize,
    pub open_writers: usize,
}

impl Default for StatusCounts {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// Ingestion responses by status code (index: status - 100).
    by_status: StatusCounts,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_S.len() + 1],
    latency_us_total: AtomicU64,
    latency_count: AtomicU64,
    pub dedup_hits: AtomicU64,
    pub rate_limited: AtomicU64,
    pub events_stored: AtomicU64,
    pub connections_refused: AtomicU64,
    /// Accepts that failed because the process or system ran out of file descriptors.
    pub accept_fd_exhausted: AtomicU64,
}

impl Metrics {
    /// Records one ingestion attempt's answer and latency.
    pub fn note_ingest(&self, status: u16, latency_us: u64) {
        if let Some(c) = usize::from(status)
            .checked_sub(100)
            .and_then(|i| self.by_status.0.get(i))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let secs = latency_us as f64 / 1e6;
        let i = LATENCY_BUCKETS_S
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS_S.len());
        self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.latency_us_total
            .fetch_add(latency_us, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text, with the engine's counters summed over every flow.
    pub fn render(&self, engine: &WriterStats, store: &StoreGauges) -> String {
        let StoreGauges {
            flows,
            dedup_keys,
            flows_unavailable,
            flows_opening,
            ref logs_poisoned,
            journal,
        } = *store;
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP eventmesh_ingest_requests_total Ingestion requests by HTTP status."
        );
        let _ = writeln!(out, "# TYPE eventmesh_ingest_requests_total counter");
        for (i, c) in self.by_status.0.iter().enumerate() {
            let n = load(c);
            if n > 0 {
                let status = i + 100;
                let _ = writeln!(
                    out,
                    "eventmesh_ingest_requests_total{{status=\"{status}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP eventmesh_ingest_latency_seconds Time from request start to answer."
        );
        let _ = writeln!(out, "# TYPE eventmesh_ingest_latency_seconds histogram");
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS_S.iter().enumerate() {
            cumulative += load(&self.latency_buckets[i]);
            let _ = writeln!(
                out,
                "eventmesh_ingest_latency_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += load(&self.latency_buckets[LATENCY_BUCKETS_S.len()]);
        let _ = writeln!(
            out,
            "eventmesh_ingest_latency_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "eventmesh_ingest_latency_seconds_sum {}",
            load(&self.latency_us_total) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "eventmesh_ingest_latency_seconds_count {}",
            load(&self.latency_count)
        );
        let counters = [
            (
                "eventmesh_events_appended_total",
                "Events appended to flow logs.",
                engine.records,
            ),
            (
                "eventmesh_bytes_appended_total",
                "Frame bytes appended to flow logs.",
                engine.bytes,
            ),
            (
                "eventmesh_group_commits_total",
                "Group commits (one write each).",
                engine.groups,
            ),
            (
                "eventmesh_dedup_hits_total",
                "Events answered as duplicates.",
                load(&self.dedup_hits),
            ),
            (
                "eventmesh_rate_limited_total",
                "Requests answered 429.",
                load(&self.rate_limited),
            ),
            (
                "eventmesh_connections_refused_total",
                "Connections refused over the cap.",
                load(&self.connections_refused),
            ),
            (
                "eventmesh_accept_fd_exhausted_total",
                "Accepts that failed with EMFILE or ENFILE (the accept loop backs off).",
                load(&self.accept_fd_exhausted),
            ),
        ];
        for (name, help, value) in counters {
            write_metric(&mut out, name, help, "counter", value);
        }
        let _ = writeln!(
            out,
            "# HELP eventmesh_group_commit_records Records per group commit (sum and count)."
        );
        let _ = writeln!(out, "# TYPE eventmesh_group_commit_records summary");
        let _ = writeln!(out, "eventmesh_group_commit_records_sum {}", engine.records);
        let _ = writeln!(
            out,
            "eventmesh_group_commit_records_count {}",
            engine.groups
        );
        let _ = writeln!(
            out,
            "# HELP eventmesh_fsync_seconds fdatasync latency of flow logs and of the journal."
        );
        let _ = writeln!(out, "# TYPE eventmesh_fsync_seconds histogram");
        let mut cumulative = 0;
        for (i, bound_us) in FSYNC_BUCKETS_US.iter().enumerate() {
            cumulative += engine.fsync_buckets[i];
            let _ = writeln!(
                out,
                "eventmesh_fsync_seconds_bucket{{le=\"{}\"}} {cumulative}",
                *bound_us as f64 / 1e6
            );
        }
        cumulative += engine.fsync_buckets[FSYNC_BUCKETS_US.len()];
        let _ = writeln!(
            out,
            "eventmesh_fsync_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "eventmesh_fsync_seconds_sum {}",
            engine.fsync_us_total as f64 / 1e6
        );
        let _ = writeln!(out, "eventmesh_fsync_seconds_count {}", engine.fsyncs);
        let _ = writeln!(out, "# HELP eventmesh_flows Flows in the registry.");
        let _ = writeln!(out, "# TYPE eventmesh_flows gauge");
        let _ = writeln!(out, "eventmesh_flows {flows}");
        let _ = writeln!(
            out,
            "# HELP eventmesh_dedup_keys Keys held by idempotency indexes."
        );
        let _ = writeln!(out, "# TYPE eventmesh_dedup_keys gauge");
        let _ = writeln!(out, "eventmesh_dedup_keys {dedup_keys}");
        let _ = writeln!(
            out,
            "# HELP eventmesh_flows_unavailable Flows quarantined because their logs could not be opened."
        );
        let _ = writeln!(out, "# TYPE eventmesh_flows_unavailable gauge");
        let _ = writeln!(out, "eventmesh_flows_unavailable {flows_unavailable}");
        let _ = writeln!(
            out,
            "# HELP eventmesh_flows_opening Flows whose logs are not open yet: each opens on first use or in the background after start."
        );
        let _ = writeln!(out, "# TYPE eventmesh_flows_opening gauge");
        let _ = writeln!(out, "eventmesh_flows_opening {flows_opening}");
        let _ = writeln!(
            out,
            "# HELP eventmesh_logs_poisoned Logs of open flows that refuse appends until restart, by kind."
        );
        let _ = writeln!(out, "# TYPE eventmesh_logs_poisoned gauge");
        for (log, n) in logs_poisoned {
            let _ = writeln!(out, "eventmesh_logs_poisoned{{log=\"{log}\"}} {n}");
        }
        if let Some(j) = journal {
            for (name, help, kind, value) in [
                (
                    "eventmesh_journal_rounds_total",
                    "Journal rounds (a group of every flow's appends).",
                    "counter",
                    j.rounds,
                ),
                (
                    "eventmesh_journal_syncs_total",
                    "fdatasyncs of the store-wide journal.",
                    "counter",
                    j.syncs,
                ),
                (
                    "eventmesh_journal_checkpoints_total",
                    "Journal checkpoints taken.",
                    "counter",
                    j.checkpoints,
                ),
            ] {
                write_metric(&mut out, name, help, kind, value);
            }
            let _ = writeln!(
                out,
                "# HELP eventmesh_open_segment_files Active segment files the journaled logs hold open, by use (bounded by the file budget)."
            );
            let _ = writeln!(out, "# TYPE eventmesh_open_segment_files gauge");
            let _ = writeln!(
                out,
                "eventmesh_open_segment_files{{use=\"read\"}} {}",
                j.open_readers
            );
            let _ = writeln!(
                out,
                "eventmesh_open_segment_files{{use=\"write\"}} {}",
                j.open_writers
            );
        }
        out
    }
}

/// One metric with its HELP and TYPE lines, in the Prometheus text format.
fn write_metric(
    out: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    value: impl std::fmt::Display,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}
