//! The journal thread: rounds, syncs and checkpoints.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use crate::log::limits::{APPEND_BATCH_RECORDS_MAX, GROUP_COMMIT_BYTES_MAX};
use crate::log::writer::{CloseReplies, Writer, WriterMsg};
use crate::log::{FsyncPolicy, LogError, RecordInput};

use super::{checkpoint, entry, Attached, Core};

/// Bytes of entries handed to the journal's log in one append call.
const JOURNAL_BATCH_BYTES_MAX: usize = 32 * 1024 * 1024;

/// The journal thread's own state between rounds.
struct Rounds<'a> {
    core: &'a Core,
    /// The journal's own log's writer, driven here: no thread hop per round.
    journal: Writer,
    /// Logs written since the last checkpoint (their segments need an fdatasync). Held,
    /// not weakly: a log closed meanwhile is still synced by the checkpoint.
    dirty: HashMap<usize, Arc<Attached>>,
    /// Logs whose published groups are in the journal but not yet synced there.
    undurable: HashMap<usize, Weak<Attached>>,
    /// When the journal must be synced for an `Interval` log at the latest.
    sync_due: Option<Instant>,
    /// Journal bytes written since the last checkpoint, and when the first was.
    since_checkpoint: u64,
    dirty_since: Option<Instant>,
    /// Logs that still had work after their round.
    carry: Vec<Arc<Attached>>,
    /// Why no checkpoint may be taken until the next start: a log closed without
    /// making its segment durable, so only the journal holds its last groups.
    blocked: Option<LogError>,
    /// Cuts the journal could not take yet (a full disk), each with its log, which
    /// holds its appends until the cut is in (or a checkpoint makes it moot).
    pending_cuts: Vec<(Arc<Attached>, RecordInput)>,
    /// Logs by when they last wrote, oldest first: whose files the budget closes first.
    written: VecDeque<Weak<Attached>>,
}

/// A started round: its logs (and whether each wrote), what the journal was handed.
struct InFlight {
    touched: Vec<(Arc<Attached>, bool)>,
    queued: Queued,
    /// The logs whose segment could not take their groups.
    failed_writes: Vec<Arc<Attached>>,
    needs_sync: bool,
    ack_early: bool,
    now: Instant,
}

/// Writes the logs' staged groups into their segments; the logs that could not take
/// them. On the journal thread, between the journal's write and its fdatasync: a
/// journaled segment's write is a copy into its mapped reserve (`map_writes`), cheaper
/// than handing it to another thread (measured: 5% more events a second spread over
/// 1,000 flows, and 2 threads fewer).
fn write_segments(logs: &[Arc<Attached>]) -> Vec<Arc<Attached>> {
    logs.iter()
        .filter(|log| log.writer.lock().write_staged().is_err())
        .cloned()
        .collect()
}

/// A round's journal write, and whether its fdatasync is still owed.
struct Queued {
    written: Result<(), LogError>,
    wrote_any: bool,
    sync: bool,
}

impl Default for Queued {
    fn default() -> Self {
        Self {
            written: Ok(()),
            wrote_any: false,
            sync: false,
        }
    }
}

/// What woke the thread: logs with work, checkpoint requests, and whether to stop.
type Woken = (
    Vec<Arc<Attached>>,
    Vec<crossbeam_channel::Sender<Result<(), LogError>>>,
    bool,
);

fn key(log: &Arc<Attached>) -> usize {
    Arc::as_ptr(log) as usize
}

pub(super) fn run(core: &Core, journal: Writer) {
    let mut rounds = Rounds {
        core,
        journal,
        dirty: HashMap::new(),
        undurable: HashMap::new(),
        sync_due: None,
        since_checkpoint: 0,
        dirty_since: None,
        carry: Vec::new(),
        blocked: None,
        pending_cuts: Vec::new(),
        written: VecDeque::new(),
    };
    // Rounds run one after the other: the journal is written and synced on this
    // thread, so a round left in flight while the next is staged would only wait
    // longer for its fdatasync (measured: no gain).
    loop {
        let (mut ready, checkpoints, stopping) = rounds.wait(true);
        ready.append(&mut rounds.carry);
        if !ready.is_empty() {
            if let Some(round) = rounds.start(ready) {
                rounds.finish(round);
            }
        }
        let now = Instant::now();
        if rounds.sync_due.is_some_and(|due| due <= now) {
            rounds.sync_journal();
        }
        if !checkpoints.is_empty() || rounds.checkpoint_due(now) {
            let result = rounds.checkpoint();
            if let Err(e) = &result {
                tracing::error!(error = %e, "journal checkpoint failed; the journal is kept");
            }
            for reply in checkpoints {
                let _ = reply.send(result.clone());
            }
        }
        if stopping && rounds.carry.is_empty() {
            break;
        }
    }
    if let Err(e) = rounds.checkpoint() {
        tracing::error!(error = %e, "the journal's last checkpoint failed; it replays at the next start");
    }
    // A clean close of the journal's own log, as its writer thread would do.
    let _ = rounds.journal.close_now();
}

impl Rounds<'_> {
    fn checkpoint_due(&self, now: Instant) -> bool {
        self.since_checkpoint >= self.core.config.checkpoint_bytes
            || self
                .dirty_since
                .is_some_and(|t| now.duration_since(t) >= self.core.config.checkpoint_interval)
    }

    /// Waits for work, a checkpoint request, a stop or a deadline (without `block`,
    /// returns at once). Once stopping, the ready list is closed to new work: later
    /// schedules are refused by the caller.
    fn wait(&mut self, block: bool) -> Woken {
        let mut wake = self.core.wake.lock();
        loop {
            if wake.stop {
                wake.stopped = true;
            }
            if wake.stopped
                || !wake.ready.is_empty()
                || !wake.checkpoints.is_empty()
                || !self.carry.is_empty()
            {
                let ready = std::mem::take(&mut wake.ready);
                let checkpoints = std::mem::take(&mut wake.checkpoints);
                return (ready, checkpoints, wake.stopped);
            }
            if !block {
                return (Vec::new(), Vec::new(), false);
            }
            let deadline = [
                self.sync_due,
                self.dirty_since
                    .map(|t| t + self.core.config.checkpoint_interval),
            ]
            .into_iter()
            .flatten()
            .min();
            match deadline {
                Some(at) => {
                    if self.core.signal.wait_until(&mut wake, at).timed_out() {
                        return (Vec::new(), Vec::new(), false);
                    }
                }
                None => self.core.signal.wait(&mut wake),
            }
        }
    }

    /// Starts a round over `ready`: stage every log, hand the round to the journal,
    /// and write the segments while the journal writes and syncs. `finish` answers it.
    fn start(&mut self, ready: Vec<Arc<Attached>>) -> Option<InFlight> {
        self.core.counters.rounds.fetch_add(1, Ordering::Relaxed);
        self.retry_cuts();
        let mut records: Vec<RecordInput> = Vec::new();
        let mut touched: Vec<(Arc<Attached>, bool)> = Vec::new();
        let mut needs_sync = false;
        let now = Instant::now();
        // At most the writer budget's worth of logs a round: each may reopen its file.
        let cap = self.core.budget.writers_max().max(1);
        let mut ready = ready.into_iter();
        for log in ready.by_ref().take(cap) {
            log.scheduled.store(false, Ordering::Release);
            let mut msgs = Vec::new();
            let mut bytes = 0usize;
            while bytes < GROUP_COMMIT_BYTES_MAX {
                match log.rx.try_recv() {
                    Ok(msg) => {
                        bytes += msg.bytes_hint();
                        msgs.push(msg);
                    }
                    Err(_) => break,
                }
            }
            if msgs.is_empty() {
                continue;
            }
            let wrote = {
                let mut writer = log.writer.lock();
                writer.commit(msgs);
                entry::encode(&log.dir, writer.staged(), &mut records);
                !writer.staged().is_empty()
            };
            if wrote {
                match log.policy {
                    FsyncPolicy::Always => needs_sync = true,
                    FsyncPolicy::Interval(every) => {
                        let due = now + every;
                        self.sync_due = Some(self.sync_due.map_or(due, |d| d.min(due)));
                    }
                    FsyncPolicy::Never => {}
                }
            }
            touched.push((log, wrote));
        }
        // The rest wait for the next round, still scheduled.
        self.carry.extend(ready);
        let ack_early = self.core.config.log.acks_before_sync();
        let queued = self.submit(records, needs_sync && !ack_early);
        // The segments are written now, before the journal's fdatasync (`finish`).
        let wrote: Vec<Arc<Attached>> = touched
            .iter()
            .filter(|(_, wrote)| *wrote)
            .map(|(log, _)| Arc::clone(log))
            .collect();
        // Room in the budget for the files this round reopens, closing others first.
        self.trim_writers(wrote.len(), &touched);
        // A round the journal did not take is not written to the segments at all.
        let failed_writes = match queued.written.is_ok() {
            true => write_segments(&wrote),
            false => Vec::new(),
        };
        if touched.is_empty() {
            return None;
        }
        Some(InFlight {
            touched,
            queued,
            failed_writes,
            needs_sync,
            ack_early,
            now,
        })
    }

    /// Waits for the journal's answer to a started round, then answers its logs.
    fn finish(&mut self, round: InFlight) {
        let InFlight {
            touched,
            queued,
            failed_writes,
            needs_sync,
            ack_early,
            now,
        } = round;
        let result = self.settle(queued);
        // A segment that could not take its groups was cut back: the journal, which
        // has them, must say so after them, or replay would put them back.
        let mut cuts = Vec::new();
        for log in &failed_writes {
            let (base, len) = log.writer.lock().cut_point();
            entry::encode_cut(&log.dir, base, len, &mut cuts);
        }
        // Only a journal that took the round holds the groups that were cut.
        if result.is_ok() {
            for (log, cut) in failed_writes.into_iter().zip(cuts) {
                log.writer.lock().hold(LogError::Io {
                    op: "journal the cut of a failed write to",
                    path: log.dir.clone().into(),
                    source: Arc::new(std::io::Error::other("waiting for the journal")),
                });
                self.pending_cuts.push((log, cut));
            }
            self.retry_cuts();
        }
        // A failed journal that may hold some of the round (a failed fdatasync, or a
        // later batch failing after an earlier one was written) is poisoned, and so is
        // every log of the round: none may diverge from what replay will write back.
        let ambiguous = result.is_err() && self.core.log.poisoned().is_some();
        let mut closes: CloseReplies = Vec::new();
        for (log, wrote) in &touched {
            let closed = log.writer.lock().complete(result.clone(), ambiguous);
            if !closed.is_empty() {
                log.release_claim();
            }
            closes.extend(closed);
            if *wrote {
                self.written.push_back(Arc::downgrade(log));
            }
            if *wrote && result.is_ok() {
                self.dirty.insert(key(log), Arc::clone(log));
                self.undurable.insert(key(log), Arc::downgrade(log));
                self.dirty_since.get_or_insert(now);
            }
        }
        if result.is_ok() && needs_sync {
            self.mark_durable();
        }
        if ack_early && needs_sync {
            // Deliberate bug for the crash tests: answered above, synced only now.
            let _ = self.sync_now();
        }
        for (log, _) in touched {
            if !log.rx.is_empty() && !log.scheduled.swap(true, Ordering::AcqRel) {
                self.carry.push(log);
            }
        }
        self.trim_writers(0, &[]);
        // The close replies go only now that this thread holds none of the logs.
        for (reply, closed) in closes {
            if let Err(e) = &closed {
                self.blocked.get_or_insert(e.clone());
            }
            let _ = reply.send(closed);
        }
    }

    /// Writes `records` to the journal's log now (no fdatasync yet); `settle` syncs.
    fn submit(&mut self, records: Vec<RecordInput>, sync: bool) -> Queued {
        if records.is_empty() {
            return Queued::default();
        }
        let mut batches: Vec<Vec<RecordInput>> = vec![Vec::new()];
        let mut bytes = 0usize;
        for record in records {
            let len = record.payload.len();
            let full = batches.last().is_some_and(|b| {
                !b.is_empty()
                    && (b.len() >= APPEND_BATCH_RECORDS_MAX
                        || bytes + len > JOURNAL_BATCH_BYTES_MAX)
            });
            if full {
                batches.push(Vec::new());
                bytes = 0;
            }
            bytes += len;
            self.since_checkpoint += len as u64;
            if let Some(batch) = batches.last_mut() {
                batch.push(record);
            }
        }
        let (written, wrote_any) = self.journal.append_now(batches);
        Queued {
            written,
            wrote_any,
            sync,
        }
    }

    /// Finishes what `submit` began: the fdatasync, if asked, and the journal's answer.
    fn settle(&mut self, queued: Queued) -> Result<(), LogError> {
        let Queued {
            written,
            wrote_any,
            sync,
        } = queued;
        if let Err(e) = written {
            if wrote_any {
                self.core
                    .log
                    .poison(format!("a journal round was written only in part: {e}"));
            }
            return Err(e);
        }
        match sync {
            true => self.sync_now(),
            false => Ok(()),
        }
    }

    /// fdatasyncs the journal.
    fn sync_now(&mut self) -> Result<(), LogError> {
        self.core.counters.syncs.fetch_add(1, Ordering::Relaxed);
        self.journal.control_now(|reply| WriterMsg::Sync { reply })
    }

    /// Closes the files of the logs that wrote longest ago while more are open than
    /// the budget allows (`budget.rs`). A log with work waiting keeps its file.
    /// With `room`, leaves that many more writers possible within the budget.
    /// The logs of `busy` (the round's own, staged) keep their files.
    fn trim_writers(&mut self, room: usize, busy: &[(Arc<Attached>, bool)]) {
        let budget = &self.core.budget;
        let max = budget.writers_max().saturating_sub(room);
        if budget.writers() <= max {
            return;
        }
        let busy: std::collections::HashSet<usize> = busy.iter().map(|(l, _)| key(l)).collect();
        let mut tries = self.written.len();
        while budget.writers() > max && tries > 0 {
            tries -= 1;
            let Some(weak) = self.written.pop_front() else {
                break;
            };
            let Some(log) = weak.upgrade() else { continue };
            if log.scheduled.load(Ordering::Acquire) || busy.contains(&key(&log)) {
                self.written.push_back(weak);
                continue;
            }
            let closed = log.writer.lock().close_file();
            if let Err(e) = closed {
                tracing::error!(log = %log.dir, error = %e, "closing an idle segment file failed");
            }
        }
        if self.written.len() > 4 * budget.writers_max() {
            self.written.retain(|w| w.strong_count() > 0);
            let mut seen = std::collections::HashSet::new();
            let mut kept: VecDeque<_> = self
                .written
                .drain(..)
                .rev()
                .filter(|w| seen.insert(w.as_ptr() as usize))
                .collect();
            kept.make_contiguous().reverse();
            self.written = kept;
        }
    }

    /// Journals the pending cuts, synced: a held log may seal its segment at the cut
    /// once released, which the journal does not record, so the cut must be durable
    /// first. On success the logs are released; else they stay held for the next try.
    fn retry_cuts(&mut self) {
        if self.pending_cuts.is_empty() {
            return;
        }
        let records = self.pending_cuts.iter().map(|(_, r)| r.clone()).collect();
        let queued = self.submit(records, true);
        match self.settle(queued) {
            Ok(()) => self.release_held(),
            Err(e) => {
                tracing::warn!(error = %e, logs = self.pending_cuts.len(), "the journal cannot take a cut yet; those logs hold their appends");
            }
        }
    }

    fn release_held(&mut self) {
        for (log, _) in self.pending_cuts.drain(..) {
            log.writer.lock().release();
        }
    }

    /// Syncs the journal for the `Interval` logs waiting on it.
    fn sync_journal(&mut self) {
        self.sync_due = None;
        match self.sync_now() {
            Ok(()) => self.mark_durable(),
            Err(e) => tracing::error!(error = %e, "journal fdatasync failed"),
        }
    }

    /// Everything published is now synced in the journal.
    fn mark_durable(&mut self) {
        self.sync_due = None;
        for log in self.undurable.drain().filter_map(|(_, w)| w.upgrade()) {
            log.writer.lock().mark_durable();
        }
    }

    /// Makes every segment written since the last checkpoint durable on its own, records
    /// the journal offset that covers, and deletes the journal before it.
    fn checkpoint(&mut self) -> Result<(), LogError> {
        if let Some(e) = self.core.log.poisoned().or_else(|| self.blocked.clone()) {
            return Err(e);
        }
        let upto = self.core.log.next_offset();
        let skip_sync = self.core.config.log.checkpoints_before_sync();
        let mut failed = None;
        let dirty = std::mem::take(&mut self.dirty);
        for (k, log) in dirty {
            let mut writer = log.writer.lock();
            let synced = match skip_sync {
                true => Ok(false),
                false => writer.sync_if_dirty(),
            };
            match synced {
                Ok(_) => writer.mark_durable(),
                Err(e) => {
                    failed.get_or_insert(e);
                    self.dirty.insert(k, Arc::clone(&log));
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        self.undurable.clear();
        self.since_checkpoint = 0;
        self.dirty_since = None;
        let dir = self.core.log.dir().to_path_buf();
        let storage = &*self.core.config.storage;
        if checkpoint::load(storage, &dir).ok().flatten() != Some(upto) {
            checkpoint::save(storage, &dir, upto)?;
        }
        self.core
            .counters
            .checkpoints
            .fetch_add(1, Ordering::Relaxed);
        // The segments are durable as they are, cuts and all, and replay starts past
        // every write a pending cut was for.
        self.release_held();
        // Seal the journal's segment so that all of it before `upto` can go.
        if self.core.log.next_offset() > self.core.log.first_offset() {
            self.journal
                .control_now(|reply| WriterMsg::Roll { reply })?;
        }
        self.core.log.delete_before(upto)?;
        Ok(())
    }
}
