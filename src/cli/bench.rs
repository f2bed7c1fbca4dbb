//! `eventmesh bench log` and `eventmesh bench raw`: whole-engine measurements.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;

use crate::log::{FsyncPolicy, Log, LogConfig, Offset, RecordInput};

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Events to append in all.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Payload bytes per event.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// always | never | interval=<ms>
    #[arg(long, default_value = "always", value_parser = super::parse_fsync)]
    fsync: FsyncPolicy,
    /// Concurrent writer threads.
    #[arg(long, default_value_t = 1)]
    writers: usize,
    /// Appends each writer keeps in flight (1: wait for each before the next).
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Records per append call (each call is one all-or-nothing batch).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Partition directory, kept afterwards; else a temporary one, removed.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RawArgs {
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// never: one buffered writer; always: each writer does write + fdatasync per event.
    #[arg(long, default_value = "never", value_parser = super::parse_fsync)]
    fsync: FsyncPolicy,
    #[arg(long, default_value_t = 1)]
    writers: usize,
    #[arg(long)]
    dir: Option<PathBuf>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn new_histogram() -> Result<Histogram<u64>, BoxError> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

fn bench_dir(dir: &Option<PathBuf>) -> Result<(PathBuf, Option<tempfile::TempDir>), BoxError> {
    match dir {
        Some(d) => Ok((d.clone(), None)),
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("eventmesh-bench")
                .tempdir_in(".")?;
            Ok((tmp.path().to_path_buf(), Some(tmp)))
        }
    }
}

fn progress(label: &str, done: u64, total: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    eprint!(
        "\r{label}: {done}/{total} events, {:.0} events/s   ",
        done as f64 / secs
    );
}

pub fn run_log(args: &LogArgs) -> Result<(), BoxError> {
    if args.writers == 0 || args.pipeline == 0 || args.batch == 0 || args.events == 0 {
        return Err("events, writers, pipeline and batch must be at least 1".into());
    }
    let (dir, _tmp) = bench_dir(&args.dir)?;
    let config = LogConfig {
        fsync: args.fsync,
        ..LogConfig::default()
    };
    let log = Arc::new(Log::open(&dir, config.clone())?);
    let payload = Bytes::from(vec![b'x'; args.size]);
    let calls_total = args.events.div_ceil(args.batch as u64);
    let next_call = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..args.writers {
        let (log, payload, next_call, done) = (
            Arc::clone(&log),
            payload.clone(),
            Arc::clone(&next_call),
            Arc::clone(&done),
        );
        let (batch, pipeline) = (args.batch, args.pipeline);
        handles.push(std::thread::spawn(
            move || -> Result<Histogram<u64>, BoxError> {
                let mut hist = new_histogram()?;
                let mut inflight = VecDeque::new();
                loop {
                    let more = next_call.fetch_add(1, Ordering::Relaxed) < calls_total;
                    if more {
                        let records = vec![RecordInput::new(payload.clone()); batch];
                        inflight.push_back((Instant::now(), log.submit(records)?));
                    }
                    while inflight.len() >= pipeline || (!more && !inflight.is_empty()) {
                        if let Some((t0, pending)) = inflight.pop_front() {
                            let outcome = pending.wait()?;
                            hist.record(t0.elapsed().as_micros().max(1) as u64)?;
                            done.fetch_add(u64::from(outcome.count), Ordering::Relaxed);
                        }
                    }
                    if !more {
                        return Ok(hist);
                    }
                }
            },
        ));
    }
    let total_events = calls_total * args.batch as u64;
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
        progress(
            "append",
            done.load(Ordering::Relaxed),
            total_events,
            started,
        );
    }
    let mut hist = new_histogram()?;
    for h in handles {
        let part = h.join().map_err(|_| "writer thread panicked")??;
        hist.add(part)?;
    }
    let append_secs = started.elapsed().as_secs_f64();
    eprintln!();

    let replay_started = Instant::now();
    let mut replayed = 0u64;
    let mut replay_bytes = 0u64;
    for rec in log.iter_from(Offset(0)) {
        let rec = rec?;
        replayed += 1;
        replay_bytes += rec.payload.len() as u64;
    }
    let replay_secs = replay_started.elapsed().as_secs_f64();
    if replayed != total_events {
        return Err(format!("replayed {replayed} events, appended {total_events}").into());
    }
    let log = Arc::into_inner(log).ok_or("log still shared")?;
    log.close()?;
    // Open does the same work after a clean close as after kill -9: it always scans
    // the last segment and checks the sealed segments' indexes.
    let open_started = Instant::now();
    let reopened = Log::open(&dir, config)?;
    let open_ms = open_started.elapsed().as_secs_f64() * 1000.0;
    let stats = reopened.stats();
    drop(reopened);

    let mb = (total_events * args.size as u64) as f64 / 1e6;
    let line = serde_json::json!({
        "bench": "log",
        "events": total_events,
        "size": args.size,
        "fsync": args.fsync.to_string(),
        "writers": args.writers,
        "pipeline": args.pipeline,
        "batch": args.batch,
        "seconds": append_secs,
        "eventsPerSec": total_events as f64 / append_secs,
        "mbPerSec": mb / append_secs,
        "p50Us": hist.value_at_quantile(0.50),
        "p99Us": hist.value_at_quantile(0.99),
        "p999Us": hist.value_at_quantile(0.999),
        "replayEventsPerSec": replayed as f64 / replay_secs,
        "replayMbPerSec": replay_bytes as f64 / 1e6 / replay_secs,
        "openMs": open_ms,
        "partitionBytes": stats.bytes,
        "segments": stats.segments,
    });
    println!("{line}");
    Ok(())
}

pub fn run_raw(args: &RawArgs) -> Result<(), BoxError> {
    if args.writers == 0 || args.events == 0 {
        return Err("events and writers must be at least 1".into());
    }
    let (dir, _tmp) = bench_dir(&args.dir)?;
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("raw.bin");
    let payload = vec![b'x'; args.size];
    let started = Instant::now();
    let mut hist = new_histogram()?;
    match args.fsync {
        FsyncPolicy::Never => {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, File::create(&path)?);
            for _ in 0..args.events {
                out.write_all(&payload)?;
            }
            out.flush()?;
        }
        _ => {
            File::create(&path)?;
            let next = Arc::new(AtomicU64::new(0));
            let mut handles = Vec::new();
            for _ in 0..args.writers {
                let (path, payload, next, events) = (
                    path.clone(),
                    payload.clone(),
                    Arc::clone(&next),
                    args.events,
                );
                handles.push(std::thread::spawn(
                    move || -> Result<Histogram<u64>, BoxError> {
                        let mut hist = new_histogram()?;
                        let mut file = OpenOptions::new().append(true).open(&path)?;
                        while next.fetch_add(1, Ordering::Relaxed) < events {
                            let t0 = Instant::now();
                            file.write_all(&payload)?;
                            file.sync_data()?;
                            hist.record(t0.elapsed().as_micros().max(1) as u64)?;
                        }
                        Ok(hist)
                    },
                ));
            }
            for h in handles {
                hist.add(h.join().map_err(|_| "writer thread panicked")??)?;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let line = serde_json::json!({
        "bench": "raw",
        "events": args.events,
        "size": args.size,
        "fsync": args.fsync.to_string(),
        "writers": args.writers,
        "seconds": secs,
        "eventsPerSec": args.events as f64 / secs,
        "mbPerSec": (args.events * args.size as u64) as f64 / 1e6 / secs,
        "p50Us": hist.value_at_quantile(0.50),
        "p99Us": hist.value_at_quantile(0.99),
        "p999Us": hist.value_at_quantile(0.999),
    });
    println!("{line}");
    Ok(())
}

#[derive(Debug, Args)]
pub struct OpenArgs {
    /// The partition directory to open.
    #[arg(long)]
    dir: PathBuf,
}

pub fn run_open(args: &OpenArgs) -> Result<(), BoxError> {
    let started = Instant::now();
    let log = Log::open(&args.dir, LogConfig::default())?;
    let open_ms = started.elapsed().as_secs_f64() * 1000.0;
    let stats = log.stats();
    let report = log.recovery_report().clone();
    let line = serde_json::json!({
        "bench": "open",
        "openMs": open_ms,
        "partitionBytes": stats.bytes,
        "segments": stats.segments,
        "nextOffset": stats.next_offset.0,
        "truncatedBytes": report.truncated_bytes,
        "indexesRebuilt": report.indexes_rebuilt,
        "scannedBytes": report.scanned_bytes,
    });
    println!("{line}");
    Ok(())
}

#[derive(Debug, Args)]
pub struct DedupArgs {
    /// Keys to insert into one flow's index (all within the window).
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
}

/// Resident memory of this process, in bytes (Linux).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

pub fn run_dedup(args: &DedupArgs) -> Result<(), BoxError> {
    use crate::store::dedup::{key_hash, DedupEntry, DedupIndex};
    let keys = usize::try_from(args.keys)?;
    // Hash the keys first, so the measurement covers only the index.
    let hashes: Vec<_> = (0..keys)
        .map(|i| key_hash(&format!("evt-key-{i}")))
        .collect();
    let before = rss_bytes();
    let started = Instant::now();
    let mut index = DedupIndex::new(86_400, keys + 1);
    for (i, h) in hashes.iter().enumerate() {
        let entry = DedupEntry {
            offset: i as u64,
            body_hash: i as u32,
            time_s: 1_700_000_000 + (i / 1000) as u32,
        };
        index.insert(*h, entry);
    }
    let insert_ns = started.elapsed().as_nanos() as f64 / keys as f64;
    let after = rss_bytes();
    let now_s = 1_700_000_000 + (keys / 1000) as i64;
    let started = Instant::now();
    let mut found = 0u64;
    for h in &hashes {
        found += u64::from(index.get(h, now_s).is_some());
    }
    let lookup_ns = started.elapsed().as_nanos() as f64 / keys as f64;
    if found != keys as u64 || index.len() != keys {
        return Err(format!("found {found} of {keys} keys").into());
    }
    let line = serde_json::json!({
        "bench": "dedup",
        "keys": keys,
        "bytesPerKey": (after.saturating_sub(before)) as f64 / keys as f64,
        "indexBytes": after.saturating_sub(before),
        "insertNs": insert_ns,
        "lookupNs": lookup_ns,
    });
    println!("{line}");
    Ok(())
}
