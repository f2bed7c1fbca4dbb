//! The cluster's own ceiling for `docs/performance.md`: JetStream publishes with no
//! EventMesh in between. `connections` tasks each publish a `size`-byte message with a
//! unique `Nats-Msg-Id` to a fresh stream of `replicas` replicas and wait for its ack
//! (as each EventMesh ingest does), for `seconds`. Prints one JSON line: acks/s, p50
//! and p99 in µs, errors. Deletes the stream after.
//!
//! cargo run --release --example js_publish -- nats://127.0.0.1:4221,... [connections]
//!     [seconds] [size] [replicas]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use hdrhistogram::Histogram;
use parking_lot::Mutex;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let urls = args.first().ok_or("give the NATS URLs")?;
    let number = |i: usize, default: u64| -> Result<u64, BoxError> {
        Ok(args.get(i).map_or(Ok(default), |s| s.parse())?)
    };
    let (connections, seconds, size, replicas) = (
        number(1, 64)?,
        number(2, 8)?,
        number(3, 256)?,
        number(4, 3)?,
    );
    let addrs = urls
        .split(',')
        .map(|u| u.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    let client = async_nats::connect(addrs).await?;
    let js = jetstream::new(client);
    let name = format!("JSBENCH_{}", std::process::id());
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("jsbench.{}", std::process::id())],
        num_replicas: usize::try_from(replicas)?,
        duplicate_window: Duration::from_secs(120),
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let subject = format!("jsbench.{}", std::process::id());
    let body = bytes::Bytes::from(vec![b'x'; usize::try_from(size)?]);
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1,
        120_000_000,
        3,
    )?));
    let (next, errors, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (js, subject, body, hist, next, errors, stop) = (
            js.clone(),
            subject.clone(),
            body.clone(),
            Arc::clone(&hist),
            Arc::clone(&next),
            Arc::clone(&errors),
            Arc::clone(&stop),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let id = next.fetch_add(1, Ordering::Relaxed);
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", format!("m{id}").as_str());
                let t = Instant::now();
                let acked = match js
                    .publish_with_headers(subject.clone(), headers, body.clone())
                    .await
                {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                };
                match acked {
                    true => {
                        let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                        let _ = hist.lock().record(us.max(1));
                    }
                    false => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let took = started.elapsed().as_secs_f64();
    let line = {
        let h = hist.lock();
        serde_json::json!({
            "acksPerSec": (h.len() as f64 / took).round(),
            "p50Us": h.value_at_quantile(0.5),
            "p99Us": h.value_at_quantile(0.99),
            "errors": errors.load(Ordering::Relaxed),
            "connections": connections, "size": size, "replicas": replicas,
        })
    };
    println!("{line}");
    js.delete_stream(&name).await?;
    Ok(())
}
