//! One write-ahead journal for many logs (design: `docs/design-journal.md`).
//!
//! A journaled `Log` has no writer thread of its own. Its appends queue as before, and
//! the journal's one thread serves every journaled log in rounds:
//!
//! 1. For each log with work: run its writer over what is queued. Groups are encoded
//!    and written into the log's active segment as usual, without an fdatasync, and
//!    held as *staged*.
//! 2. Append every staged group of the round to the journal (itself a `Log`, in
//!    `<root>/journal/`) as entries (`entry.rs`), and fdatasync it once if any log of
//!    the round wants `Always` (consumer logs always do; event logs under the default
//!    `--fsync always`).
//! 3. Publish each log's groups and answer their waiters.
//!
//! So one fdatasync covers every flow. A checkpoint (`round.rs`) fdatasyncs the
//! segments written since the last one, records the journal offset they cover, and
//! deletes the journal before it. Opening replays the journal from the checkpoint
//! (`replay.rs`) before any journaled log is opened.

pub mod checkpoint;
pub mod entry;
mod replay;
mod round;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::log::budget::FileBudget;
use crate::log::queue::QueueRx;
use crate::log::storage::Storage;
use crate::log::writer::{Writer, WriterMsg};
use crate::log::{FsyncPolicy, Log, LogConfig, LogError};

pub use replay::ReplayReport;

/// The journal's directory under its root.
pub const JOURNAL_DIR: &str = "journal";
/// Segment size of the journal's own log.
pub const JOURNAL_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// A checkpoint is due once this much journal was written since the last one.
pub const CHECKPOINT_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;
/// A checkpoint is due this long after the first write since the last one.
pub const CHECKPOINT_INTERVAL_DEFAULT: Duration = Duration::from_secs(30);

/// How the journal is set up.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// The directory every journaled log lives under; the journal is `<root>/journal`.
    pub root: PathBuf,
    pub storage: Arc<dyn Storage>,
    /// The journal's own log: its clock, salt seed and (tests) mutation are used; its
    /// segment size is `JOURNAL_SEGMENT_BYTES` and its syncs are the journal's.
    pub log: LogConfig,
    pub checkpoint_bytes: u64,
    pub checkpoint_interval: Duration,
    /// The open files the journaled logs may hold. Default 70 % of the soft
    /// `RLIMIT_NOFILE` when the journal opens.
    pub files: Option<usize>,
}

impl JournalConfig {
    pub fn new(root: impl Into<PathBuf>, storage: Arc<dyn Storage>, log: LogConfig) -> Self {
        Self {
            root: root.into(),
            storage,
            log,
            checkpoint_bytes: CHECKPOINT_BYTES_DEFAULT,
            checkpoint_interval: CHECKPOINT_INTERVAL_DEFAULT,
            files: None,
        }
    }
}

/// A journaled log's hold on its directory: at most one per directory at a time, in
/// place of a lock file. Released when the log is gone.
pub(crate) struct Claim {
    dir: String,
    registry: Arc<Mutex<HashSet<String>>>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.dir);
    }
}

/// A journaled log, as the journal thread sees it.
pub(crate) struct Attached {
    /// The log's directory relative to the journal's root.
    pub dir: String,
    /// Released when the log's `Close` is served, so the directory may be reopened at
    /// once even while a checkpoint still holds this log to sync it.
    claim: Mutex<Option<Claim>>,
    pub writer: Mutex<Writer>,
    pub rx: QueueRx<WriterMsg>,
    pub policy: FsyncPolicy,
    /// True while the log waits in the journal's ready list (or a round holds it).
    scheduled: AtomicBool,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached").field("dir", &self.dir).finish()
    }
}

impl Attached {
    /// Lets the directory go: the log is closed.
    pub(crate) fn release_claim(&self) {
        self.claim.lock().take();
    }

    /// Answers everything queued with `Closed` (the journal is gone).
    fn refuse_queued(&self) {
        let mut writer = self.writer.lock();
        while let Ok(msg) = self.rx.try_recv() {
            writer.refuse(msg);
        }
    }
}

#[derive(Default)]
struct Wake {
    ready: Vec<Arc<Attached>>,
    checkpoints: Vec<crossbeam_channel::Sender<Result<(), LogError>>>,
    /// `stop` was called; `stopped`: the thread takes no new work.
    stop: bool,
    stopped: bool,
}

/// Counters of the journal thread.
#[derive(Debug, Default)]
struct Counters {
    rounds: AtomicU64,
    syncs: AtomicU64,
    checkpoints: AtomicU64,
}

/// What the journal has done since it opened, and the files its logs hold now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalStats {
    pub rounds: u64,
    pub syncs: u64,
    pub checkpoints: u64,
    /// Active segments of journaled logs open for reading and for writing.
    pub open_readers: usize,
    pub open_writers: usize,
    /// The journal's own log: its fdatasyncs are the ones a 2xx waits for.
    pub log: crate::log::WriterStats,
}

struct Core {
    config: JournalConfig,
    log: Log,
    wake: Mutex<Wake>,
    signal: Condvar,
    counters: Counters,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The directories of the logs riding the journal now (`Claim`).
    claims: Arc<Mutex<HashSet<String>>>,
    budget: Arc<FileBudget>,
    /// Replay found the journal wholly checkpointed (`ReplayReport::clean`).
    clean: bool,
}

/// The store-wide journal. Cheap to clone: clones share it.
#[derive(Clone)]
pub struct Journal {
    core: Arc<Core>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("root", &self.core.config.root)
            .finish()
    }
}

impl Journal {
    /// Opens the journal in `<root>/journal` (creating it), replays it into the logs
    /// under `root`, and starts its thread. Open it before any log that rides it.
    pub fn open(config: JournalConfig) -> Result<(Self, ReplayReport), LogError> {
        let dir = config.root.join(JOURNAL_DIR);
        let log_config = LogConfig {
            segment_bytes: JOURNAL_SEGMENT_BYTES,
            segment_age: None,
            // Never on its own: the journal thread syncs it, once per round that needs it.
            fsync: FsyncPolicy::Never,
            journal: None,
            ..config.log.clone()
        };
        // The journal's own log locks `<root>/journal`: one journal per root. Its
        // writer runs on the journal thread, not a thread of its own.
        let (log, writer) = Log::open_inline(&dir, log_config, Arc::clone(&config.storage))?;
        let report = replay::replay(&*config.storage, &config.root, &log)?;
        let budget = Arc::new(match config.files {
            Some(files) => FileBudget::new(files),
            None => FileBudget::from_open_files_limit(),
        });
        let core = Arc::new(Core {
            config,
            log,
            wake: Mutex::new(Wake::default()),
            signal: Condvar::new(),
            counters: Counters::default(),
            thread: Mutex::new(None),
            claims: Arc::new(Mutex::new(HashSet::new())),
            budget,
            clean: report.clean,
        });
        let worker = Arc::clone(&core);
        let handle = std::thread::Builder::new()
            .name("eventmesh-journal".into())
            .spawn(move || round::run(&worker, writer))
            .map_err(|e| LogError::io("spawn the journal thread for", core.log.dir(), e))?;
        *core.thread.lock() = Some(handle);
        Ok((Self { core }, report))
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        self.core.log.dir()
    }

    /// Claims `dir` for one journaled log: refused while another log holds it.
    pub(crate) fn claim(&self, dir: &Path) -> Result<Claim, LogError> {
        let rel = self.relative(dir)?;
        let mut claims = self.core.claims.lock();
        if !claims.insert(rel.clone()) {
            return Err(LogError::io(
                "lock",
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "another log of this journal has the directory open",
                ),
            ));
        }
        Ok(Claim {
            dir: rel,
            registry: Arc::clone(&self.core.claims),
        })
    }

    /// `dir` relative to the journal's root, as entries name it.
    fn relative(&self, dir: &Path) -> Result<String, LogError> {
        let outside = || {
            LogError::Config(crate::log::ConfigError(format!(
                "{} is not under the journal's root {}",
                dir.display(),
                self.core.config.root.display()
            )))
        };
        let rel = dir
            .strip_prefix(&self.core.config.root)
            .map_err(|_| outside())?;
        let rel = rel.to_str().ok_or_else(outside)?;
        if rel.is_empty() || rel.len() > 4096 {
            return Err(outside());
        }
        Ok(rel.to_string())
    }

    pub(crate) fn attach(
        &self,
        claim: Claim,
        writer: Writer,
        rx: QueueRx<WriterMsg>,
        policy: FsyncPolicy,
    ) -> Arc<Attached> {
        Arc::new(Attached {
            dir: claim.dir.clone(),
            claim: Mutex::new(Some(claim)),
            writer: Mutex::new(writer),
            rx,
            policy,
            scheduled: AtomicBool::new(false),
        })
    }

    /// Puts `log` on the ready list after something was queued for it. If the journal
    /// has stopped, what is queued is answered `Closed` here.
    pub(crate) fn schedule(&self, log: &Arc<Attached>) {
        if log.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        {
            let mut wake = self.core.wake.lock();
            if !wake.stopped {
                wake.ready.push(Arc::clone(log));
                self.core.signal.notify_one();
                return;
            }
        }
        log.scheduled.store(false, Ordering::Release);
        log.refuse_queued();
    }

    /// Whether the journal opened wholly checkpointed: every segment of its logs was
    /// synced and nothing was written since, so their recovery need not sync again.
    pub fn opened_clean(&self) -> bool {
        self.core.clean
    }

    /// The open-file budget of the logs that ride the journal.
    pub fn budget(&self) -> Arc<FileBudget> {
        Arc::clone(&self.core.budget)
    }

    /// Why the journal refuses appends, if it does.
    pub fn poisoned(&self) -> Option<LogError> {
        self.core.log.poisoned()
    }

    /// Runs a checkpoint now (after the rounds already queued) and waits for it.
    pub fn checkpoint(&self) -> Result<(), LogError> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        {
            let mut wake = self.core.wake.lock();
            if wake.stopped {
                return Err(LogError::Closed);
            }
            wake.checkpoints.push(reply);
            self.core.signal.notify_one();
        }
        rx.recv().unwrap_or(Err(LogError::Closed))
    }

    pub fn stats(&self) -> JournalStats {
        let c = &self.core.counters;
        JournalStats {
            rounds: c.rounds.load(Ordering::Relaxed),
            syncs: c.syncs.load(Ordering::Relaxed),
            checkpoints: c.checkpoints.load(Ordering::Relaxed),
            open_readers: self.core.budget.readers(),
            open_writers: self.core.budget.writers(),
            log: self.core.log.writer_stats(),
        }
    }

    /// Serves what is queued, runs a last checkpoint and stops the thread. Logs that
    /// still ride the journal get `Closed` from then on. Idempotent.
    pub fn stop(&self) {
        {
            let mut wake = self.core.wake.lock();
            wake.stop = true;
            self.core.signal.notify_one();
        }
        let handle = self.core.thread.lock().take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}
