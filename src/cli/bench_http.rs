//! `eventmesh bench http`: a load generator on hyper's client.
//!
//! Closed loop (each connection sends as soon as its last answer came) or open loop at
//! `--rate` events/s. Open-loop latency is measured from each event's intended send
//! time, not from when a busy connection got round to it, so queueing delay is counted
//! (coordinated omission corrected). Every event carries a unique Idempotency-Key and,
//! with `--scheme`/`--secret`, a fresh signature.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use http::Method;
use parking_lot::Mutex;

use crate::cli::client::{header, split_url, Conn, Endpoint};
use crate::http::signature::sign;
use crate::store::meta::SignatureScheme;

#[derive(Debug, Args)]
pub struct HttpArgs {
    /// The flow's webhook URL.
    #[arg(long, required_unless_present = "urls_file")]
    url: Option<String>,
    /// A file of webhook URLs (one per line, one host): event i goes to line i mod n,
    /// so the load spreads evenly over many flows.
    #[arg(long, conflicts_with = "url")]
    urls_file: Option<std::path::PathBuf>,
    /// API key (X-API-Key); omit for a signature-only flow.
    #[arg(long, env = "EVENTMESH_KEY", hide_env_values = true)]
    key: Option<String>,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Body bytes per event (a JSON object padded to this size).
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Open loop at this many events/s; omit for closed loop.
    #[arg(long)]
    rate: Option<u64>,
    /// Sign each event with this scheme (needs --secret).
    #[arg(long)]
    scheme: Option<String>,
    #[arg(long)]
    secret: Option<String>,
    /// Send no Idempotency-Key (measures the path without dedup).
    #[arg(long)]
    no_idempotency_key: bool,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn body_of(size: usize, i: u64) -> Vec<u8> {
    let head = format!("{{\"event\":\"bench.event\",\"i\":{i},\"pad\":\"");
    let pad = size.saturating_sub(head.len() + 2);
    let mut b = head.into_bytes();
    b.extend(std::iter::repeat_n(b'x', pad));
    b.extend_from_slice(b"\"}");
    b
}

#[derive(Default)]
struct Shared {
    hist: Mutex<Option<Histogram<u64>>>,
    statuses: Mutex<BTreeMap<u16, u64>>,
    errors: AtomicU64,
    done: AtomicU64,
    bytes: AtomicU64,
}

pub fn run(args: &HttpArgs) -> Result<(), BoxError> {
    if args.connections == 0 || args.duration == 0 || args.size < 40 || args.rate == Some(0) {
        return Err("connections, duration and rate must be positive, and size at least 40".into());
    }
    let scheme = match &args.scheme {
        None => None,
        Some(s) => Some(serde_json::from_value::<SignatureScheme>(
            serde_json::Value::String(s.clone()),
        )?),
    };
    if scheme.is_some() && args.secret.is_none() {
        return Err("--scheme needs --secret".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(drive(args, scheme))
}

/// The server's address and each target flow's path.
fn targets(args: &HttpArgs) -> Result<(Endpoint, Vec<String>), BoxError> {
    let urls: Vec<String> = match (&args.url, &args.urls_file) {
        (Some(u), _) => vec![u.clone()],
        (None, Some(f)) => std::fs::read_to_string(f)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        (None, None) => Vec::new(),
    };
    let mut addr = None;
    let mut paths = Vec::with_capacity(urls.len());
    for u in &urls {
        let (a, p) = split_url(u)?;
        if addr.get_or_insert_with(|| a.clone()) != &a {
            return Err("every URL must name the same server".into());
        }
        paths.push(p);
    }
    Ok((addr.ok_or("no webhook URL given")?, paths))
}

async fn drive(args: &HttpArgs, scheme: Option<SignatureScheme>) -> Result<(), BoxError> {
    let (addr, paths) = targets(args)?;
    let paths = Arc::new(paths);
    let shared = Arc::new(Shared {
        hist: Mutex::new(Some(Histogram::new_with_bounds(1, 120_000_000, 3)?)),
        ..Shared::default()
    });
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let run_id = format!("{:x}", crate::log::Clock::now_ms(&crate::log::SystemClock));
    let started = Instant::now();
    let end = started + Duration::from_secs(args.duration);
    // Open loop: a pacer thread (std sleeps are precise to tens of µs; tokio's timer
    // ticks in whole ms) hands out event numbers at their intended times.
    let tickets = args.rate.map(|rate| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            for i in 0u64.. {
                let due = started + Duration::from_nanos(i.saturating_mul(1_000_000_000) / rate);
                if due >= end || stop.load(Ordering::Relaxed) {
                    return;
                }
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if tx.send(i).is_err() {
                    return;
                }
            }
        });
        Arc::new(tokio::sync::Mutex::new(rx))
    });
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let mut conn = Conn::open(&addr).await?;
        let (shared, next, stop) = (Arc::clone(&shared), Arc::clone(&next), Arc::clone(&stop));
        let (paths, key, secret, run_id) = (
            Arc::clone(&paths),
            args.key.clone(),
            args.secret.clone(),
            run_id.clone(),
        );
        let (size, rate, with_key) = (args.size, args.rate, !args.no_idempotency_key);
        let tickets = tickets.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                // Open loop: event i was due at start + i/rate; latency counts from then.
                let (i, intended) = match (&tickets, rate) {
                    (Some(t), Some(r)) => {
                        let Some(i) = t.lock().await.recv().await else {
                            return;
                        };
                        (
                            i,
                            started + Duration::from_nanos(i.saturating_mul(1_000_000_000) / r),
                        )
                    }
                    _ => (next.fetch_add(1, Ordering::Relaxed), Instant::now()),
                };
                if intended >= end || stop.load(Ordering::Relaxed) {
                    return;
                }
                let body = body_of(size, i);
                let mut headers = Vec::with_capacity(6);
                let mut add = |n: &str, v: &str| {
                    if let Ok(h) = header(n, v) {
                        headers.push(h);
                    }
                };
                add("content-type", "application/json");
                if let Some(k) = &key {
                    add("x-api-key", k);
                }
                if with_key {
                    add("idempotency-key", &format!("bench-{run_id}-{i}"));
                }
                if let (Some(s), Some(secret)) = (scheme, &secret) {
                    let now_s =
                        crate::log::Clock::now_ms(&crate::log::SystemClock).div_euclid(1000);
                    for (n, v) in sign(s, secret, &body, now_s, &format!("msg_{run_id}_{i}")) {
                        add(&n, &v);
                    }
                }
                let len = body.len() as u64;
                let path = &paths[(i % paths.len() as u64) as usize];
                let result = conn
                    .send(Method::POST, path, &headers, Bytes::from(body))
                    .await;
                let latency_us = u64::try_from(intended.elapsed().as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                match result {
                    Ok((status, _, _)) => {
                        *shared.statuses.lock().entry(status.as_u16()).or_default() += 1;
                        if status.is_success() {
                            shared.bytes.fetch_add(len, Ordering::Relaxed);
                            if let Some(h) = shared.hist.lock().as_mut() {
                                let _ = h.record(latency_us.min(120_000_000));
                            }
                        }
                        shared.done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }));
    }
    let mut last = (Instant::now(), 0u64);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let done = shared.done.load(Ordering::Relaxed);
        let rate = (done - last.1) as f64 / last.0.elapsed().as_secs_f64();
        last = (Instant::now(), done);
        eprint!(
            "\rbench http: {done} answered, {rate:.0}/s, {} errors   ",
            shared.errors.load(Ordering::Relaxed)
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    eprintln!();
    let secs = started.elapsed().as_secs_f64();
    let hist = shared.hist.lock().take().ok_or("no histogram")?;
    let ok = hist.len();
    let statuses: BTreeMap<String, u64> = shared
        .statuses
        .lock()
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    let line = serde_json::json!({
        "bench": "http",
        "connections": args.connections,
        "flows": paths.len(),
        "size": args.size,
        "rate": args.rate,
        "signed": args.scheme,
        "seconds": secs,
        "ok": ok,
        "statuses": statuses,
        "errors": shared.errors.load(Ordering::Relaxed),
        "eventsPerSec": ok as f64 / secs,
        "mbPerSec": shared.bytes.load(Ordering::Relaxed) as f64 / 1e6 / secs,
        "p50Us": hist.value_at_quantile(0.50),
        "p99Us": hist.value_at_quantile(0.99),
        "p999Us": hist.value_at_quantile(0.999),
        "maxUs": hist.max(),
        "coordinatedOmissionCorrected": args.rate.is_some(),
    });
    println!("{line}");
    Ok(())
}
