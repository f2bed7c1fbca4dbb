//! `eventmesh bench fsync`: what durable appends spread over many files cost on this
//! machine, before any EventMesh code: the study behind docs/design-journal.md.
//!
//! `--threads` writers each append `--size` bytes and fdatasync, again and again, for
//! `--seconds`. `--layout` says how the files are laid out:
//!
//! - `grow`: empty files, appended to (each sync also commits the new length);
//! - `fallocate`: space reserved with `fallocate` (unwritten extents: the first write
//!   to each block converts it, which is metadata too);
//! - `prewritten`: the region written with zeros and synced first, so an append only
//!   overwrites blocks already written inside the file size (a sync is data + flush);
//! - `journal`: one prewritten file and one writer thread that takes every append
//!   waiting, writes them at once and fdatasyncs once (group commit across all senders).
//!
//! With `--files` above `--threads`, each writer moves round-robin over its own files, so
//! consecutive syncs of one writer hit different files, as flows spread over files do.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use crossbeam_channel::{Receiver, Sender};
use hdrhistogram::Histogram;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Layout {
    Grow,
    Fallocate,
    Prewritten,
    Journal,
}

#[derive(Debug, Args)]
pub struct FsyncArgs {
    /// Files the appends are spread over (ignored by `journal`: one file).
    #[arg(long, default_value_t = 1000)]
    files: usize,
    /// Concurrent writers (each with one append in flight).
    #[arg(long, default_value_t = 64)]
    threads: usize,
    #[arg(long, value_enum, default_value_t = Layout::Prewritten)]
    layout: Layout,
    /// Bytes per append.
    #[arg(long, default_value_t = 256)]
    size: usize,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Directory for the files, removed afterwards; default a temporary one here.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// One file and where its next append goes.
struct Target {
    file: File,
    region: u64,
    pos: parking_lot::Mutex<u64>,
}

/// Bytes each file's appends cycle through: room for the whole run on a few files, a
/// bounded preparation on many.
fn region_bytes(files: usize) -> u64 {
    let total: u64 = 512 * 1024 * 1024;
    (total / files.max(1) as u64).clamp(256 * 1024, 256 * 1024 * 1024)
}

fn prepare(path: &Path, layout: Layout, region: u64) -> Result<File, BoxError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    match layout {
        Layout::Grow => {}
        Layout::Fallocate => {
            rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, region)?;
        }
        Layout::Prewritten | Layout::Journal => {
            let zeros = vec![0u8; 1 << 20];
            let mut at = 0;
            while at < region {
                let n = (region - at).min(zeros.len() as u64) as usize;
                file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
        }
    }
    file.sync_all()?;
    Ok(file)
}

/// Appends once to `t` and syncs it; the append wraps inside the region (grow: never).
fn append_and_sync(t: &Target, payload: &[u8], grow: bool) -> std::io::Result<()> {
    let at = {
        let mut pos = t.pos.lock();
        if !grow && *pos + payload.len() as u64 > t.region {
            *pos = 0;
        }
        let at = *pos;
        *pos += payload.len() as u64;
        at
    };
    t.file.write_all_at(payload, at)?;
    t.file.sync_data()
}

fn new_histogram() -> Result<Histogram<u64>, BoxError> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

/// Each writer: append + fdatasync over its own files until `stop`.
fn run_files(
    args: &FsyncArgs,
    targets: Arc<Vec<Target>>,
    stop: Arc<AtomicBool>,
) -> Result<(u64, Histogram<u64>), BoxError> {
    let mut handles = Vec::new();
    for w in 0..args.threads {
        let (targets, stop) = (Arc::clone(&targets), Arc::clone(&stop));
        let (payload, threads) = (vec![b'x'; args.size], args.threads);
        let grow = args.layout == Layout::Grow;
        handles.push(std::thread::spawn(
            move || -> Result<(u64, Histogram<u64>), BoxError> {
                let mut hist = new_histogram()?;
                let (mut i, mut ops) = (w % targets.len(), 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    append_and_sync(&targets[i], &payload, grow)?;
                    hist.record(t0.elapsed().as_micros().max(1) as u64)?;
                    ops += 1;
                    i += threads;
                    if i >= targets.len() {
                        i = w % targets.len();
                    }
                }
                Ok((ops, hist))
            },
        ));
    }
    collect(handles)
}

/// What one writer thread did: its appends and their latencies.
type WriterResult = Result<(u64, Histogram<u64>), BoxError>;

fn collect(handles: Vec<std::thread::JoinHandle<WriterResult>>) -> WriterResult {
    let mut hist = new_histogram()?;
    let mut ops = 0;
    for h in handles {
        let (n, part) = h.join().map_err(|_| "writer thread panicked")??;
        ops += n;
        hist.add(part)?;
    }
    Ok((ops, hist))
}

/// The journal's one writer: takes every append waiting, writes them together, syncs
/// once, acknowledges them all. Returns how many syncs it made.
fn journal_writer(target: Target, rx: Receiver<(Vec<u8>, Sender<()>)>) -> std::io::Result<u64> {
    let mut syncs = 0;
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        group.extend(rx.try_iter());
        let bytes: Vec<u8> = group.iter().flat_map(|(b, _)| b.iter().copied()).collect();
        append_and_sync(&target, &bytes, false)?;
        syncs += 1;
        for (_, ack) in group {
            let _ = ack.send(());
        }
    }
    Ok(syncs)
}

fn run_journal(
    args: &FsyncArgs,
    target: Target,
    stop: Arc<AtomicBool>,
) -> Result<(u64, Histogram<u64>, u64), BoxError> {
    let (tx, rx) = crossbeam_channel::unbounded::<(Vec<u8>, Sender<()>)>();
    let writer = std::thread::spawn(move || journal_writer(target, rx));
    let mut handles = Vec::new();
    for _ in 0..args.threads {
        let (tx, stop, size) = (tx.clone(), Arc::clone(&stop), args.size);
        handles.push(std::thread::spawn(
            move || -> Result<(u64, Histogram<u64>), BoxError> {
                let mut hist = new_histogram()?;
                let mut ops = 0;
                let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    tx.send((vec![b'x'; size], ack_tx.clone()))?;
                    ack_rx.recv()?;
                    hist.record(t0.elapsed().as_micros().max(1) as u64)?;
                    ops += 1;
                }
                Ok((ops, hist))
            },
        ));
    }
    drop(tx);
    let (ops, hist) = collect(handles)?;
    let syncs = writer.join().map_err(|_| "journal writer panicked")??;
    Ok((ops, hist, syncs))
}

pub fn run(args: &FsyncArgs) -> Result<(), BoxError> {
    if args.files == 0 || args.threads == 0 || args.size == 0 || args.seconds == 0 {
        return Err("files, threads, size and seconds must be at least 1".into());
    }
    let tmp = tempfile::Builder::new()
        .prefix("eventmesh-bench-fsync")
        .tempdir_in(args.dir.as_deref().unwrap_or(Path::new(".")))?;
    let files = if args.layout == Layout::Journal {
        1
    } else {
        args.files
    };
    let region = region_bytes(files);
    let mut targets = Vec::with_capacity(files);
    for i in 0..files {
        let file = prepare(&tmp.path().join(format!("f{i}")), args.layout, region)?;
        targets.push(Target {
            file,
            region,
            pos: parking_lot::Mutex::new(0),
        });
    }
    File::open(tmp.path())?.sync_all()?;
    let stop = Arc::new(AtomicBool::new(false));
    let timer = {
        let (stop, secs) = (Arc::clone(&stop), args.seconds);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(secs));
            stop.store(true, Ordering::Relaxed);
        })
    };
    let started = Instant::now();
    let (ops, hist, syncs) = if args.layout == Layout::Journal {
        let target = targets.pop().ok_or("no journal file")?;
        run_journal(args, target, Arc::clone(&stop))?
    } else {
        // Every append of the file layouts is its own fdatasync.
        let (ops, hist) = run_files(args, Arc::new(targets), Arc::clone(&stop))?;
        (ops, hist, ops)
    };
    let secs = started.elapsed().as_secs_f64();
    let _ = timer.join();
    let line = serde_json::json!({
        "bench": "fsync",
        "layout": format!("{:?}", args.layout).to_lowercase(),
        "files": files,
        "threads": args.threads,
        "size": args.size,
        "seconds": secs,
        "appendsPerSec": ops as f64 / secs,
        "fdatasyncsPerSec": syncs as f64 / secs,
        "p50Us": hist.value_at_quantile(0.50),
        "p99Us": hist.value_at_quantile(0.99),
    });
    println!("{line}");
    Ok(())
}
