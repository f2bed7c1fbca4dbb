//! The ingest path: check the call's idempotency keys against the index and the keys
//! in flight (a pure plan, under the dedup lock), submit the new events as one batch,
//! then settle: the index learns the keys only once the append is durable.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use super::{now_s, DedupState, Flow};
use crate::log::Offset;
use crate::store::dedup::{key_hash, DedupEntry, KeyHash};
use crate::store::error::StoreError;
use crate::store::event::{body_hash, EventInput};
use crate::store::limits::INGEST_INFLIGHT_PER_FLOW_MAX;
use crate::store::partition::{PartitionError, PendingAppend};

/// How often one ingest call plans again after another node stored one of its keys
/// first (cluster mode). Each time the index has learnt that node's record, so a
/// second conflict on the same call needs a third writer; past this it fails.
const INGEST_CONFLICT_RETRIES_MAX: u32 = 3;

/// What ingestion did with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Appended now, at this offset.
    Stored { offset: Offset },
    /// Its key was seen within the window: nothing appended; the first event's offset.
    Duplicate { offset: Offset },
    /// Its `Idempotency-Key` was seen with another body. `ingest` answers this as
    /// `StoreError::IdempotencyKeyReused` and appends nothing of the call.
    KeyReused { offset: Offset },
}

/// One ingest call counted in `Flow::inflight_appends` until it is dropped.
struct InflightGuard(Arc<AtomicUsize>);

impl InflightGuard {
    fn take(counter: &Arc<AtomicUsize>) -> Result<Self, StoreError> {
        if counter.fetch_add(1, Ordering::AcqRel) >= INGEST_INFLIGHT_PER_FLOW_MAX {
            counter.fetch_sub(1, Ordering::AcqRel);
            return Err(StoreError::Overloaded);
        }
        Ok(Self(Arc::clone(counter)))
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The fate of one event of the call.
enum Plan {
    Known(IngestOutcome),
    /// Appended now as the j-th record of the batch.
    New(usize),
    /// The same key as the j-th new record of this batch (a duplicate, or reused).
    SameAsNew {
        j: usize,
        reused: bool,
    },
}

/// A key of the batch: its hash, its record's place in the batch, its body hash.
type NewKey = (KeyHash, usize, u32);

/// What the check decided for a whole call.
#[derive(Default)]
struct Planned<'a> {
    plan: Vec<Plan>,
    /// The events to append, in order.
    new: Vec<&'a EventInput>,
    keys: Vec<NewKey>,
}

enum Checked<'a> {
    /// A key of the call is in flight: wait for it to settle, then plan again.
    Wait(watch::Receiver<bool>),
    Ready(Planned<'a>),
}

/// Decides each event's fate from the index and the keys in flight. Pure: it reads
/// `st` and changes nothing. A reused key (all or nothing) or one key used twice in the
/// call with different bodies is an error; nothing of the call is stored.
fn plan<'a>(
    st: &DedupState,
    events: &'a [EventInput],
    now_s: i64,
) -> Result<Checked<'a>, StoreError> {
    let mut wait = None;
    let mut p = Planned::default();
    for ev in events {
        let Some(key) = &ev.idempotency_key else {
            p.plan.push(Plan::New(p.new.len()));
            p.new.push(ev);
            continue;
        };
        let h = key_hash(key);
        if let Some(rx) = st.inflight.get(&h) {
            wait = Some(rx.clone());
            break;
        }
        let hash = body_hash(&ev.payload);
        let reused = |first_hash: u32| ev.strict_key && first_hash != hash;
        if let Some(e) = st.index.get(&h, now_s) {
            let offset = Offset(e.offset);
            p.plan.push(Plan::Known(if reused(e.body_hash) {
                IngestOutcome::KeyReused { offset }
            } else {
                IngestOutcome::Duplicate { offset }
            }));
        } else if let Some((_, j, first_hash)) = p.keys.iter().find(|(k, _, _)| *k == h) {
            p.plan.push(Plan::SameAsNew {
                j: *j,
                reused: reused(*first_hash),
            });
        } else {
            p.keys.push((h, p.new.len(), hash));
            p.plan.push(Plan::New(p.new.len()));
            p.new.push(ev);
        }
    }
    let reused = p.plan.iter().find_map(|p| match p {
        Plan::Known(IngestOutcome::KeyReused { offset }) => Some(*offset),
        _ => None,
    });
    if let Some(offset) = reused.filter(|_| wait.is_none()) {
        return Err(StoreError::IdempotencyKeyReused { offset });
    }
    if p.plan
        .iter()
        .any(|p| matches!(p, Plan::SameAsNew { reused: true, .. }))
    {
        return Err(StoreError::Invalid(
            "one Idempotency-Key is used twice in this call with different bodies".into(),
        ));
    }
    Ok(match wait {
        Some(rx) => Checked::Wait(rx),
        None => Checked::Ready(p),
    })
}

/// Each event's outcome, once the batch's first offset is known.
fn outcomes(plan: Vec<Plan>, first: Option<Offset>) -> Vec<IngestOutcome> {
    let at = |j: usize| Offset(first.map_or(0, |f| f.0) + j as u64);
    plan.into_iter()
        .map(|p| match p {
            Plan::Known(o) => o,
            Plan::New(j) => IngestOutcome::Stored { offset: at(j) },
            Plan::SameAsNew { j, reused: true } => IngestOutcome::KeyReused { offset: at(j) },
            Plan::SameAsNew { j, reused: false } => IngestOutcome::Duplicate { offset: at(j) },
        })
        .collect()
}

/// A batch handed to the partition.
struct Submitted {
    pending: PendingAppend,
    /// Turns true when the batch settles; `None` when it has no keys (nothing waits).
    done_tx: Option<watch::Sender<bool>>,
    guard: InflightGuard,
}

enum Step<'a> {
    Wait(watch::Receiver<bool>),
    Go(Planned<'a>, Option<Submitted>),
}

impl Flow {
    /// Checks the events' keys against the index and appends the new ones as one
    /// all-or-nothing batch, durable under the partition's policy. Two concurrent calls
    /// with one key store one event: the second waits for the first and learns its offset.
    pub async fn ingest(&self, events: &[EventInput]) -> Result<Vec<IngestOutcome>, StoreError> {
        let mut conflicts = 0;
        loop {
            // Cluster mode: other nodes' records first (a no-op for a local log).
            self.catch_up_dedup()?;
            let now_ms = self.clock.now_ms();
            let step = {
                let mut st = self.dedup.lock();
                st.index.expire(now_s(now_ms));
                match plan(&st, events, now_s(now_ms))? {
                    Checked::Wait(rx) => Step::Wait(rx),
                    Checked::Ready(planned) => {
                        let submitted = self.submit(&mut st, &planned)?;
                        Step::Go(planned, submitted)
                    }
                }
            };
            let (planned, submitted) = match step {
                Step::Wait(mut rx) => {
                    let _ = rx.wait_for(|settled| *settled).await;
                    continue;
                }
                Step::Go(planned, submitted) => (planned, submitted),
            };
            let first = match submitted {
                None => None,
                Some(Submitted {
                    pending,
                    done_tx: None,
                    guard,
                }) => {
                    let out = pending.await;
                    drop(guard);
                    Some(out?.first)
                }
                Some(Submitted {
                    pending,
                    done_tx: Some(done_tx),
                    guard,
                }) => match self.settle(pending, done_tx, planned.keys, guard).await {
                    Ok(first) => Some(first),
                    // Another node stored one of the keys first: nothing of this
                    // call was stored; learn its record and plan again.
                    Err(StoreError::Partition(PartitionError::Conflict))
                        if conflicts < INGEST_CONFLICT_RETRIES_MAX =>
                    {
                        conflicts += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            return Ok(outcomes(planned.plan, first));
        }
    }

    /// Hands the plan's new events to the partition (under the dedup lock, so their
    /// keys are in flight before anyone else looks).
    fn submit(
        &self,
        st: &mut DedupState,
        planned: &Planned<'_>,
    ) -> Result<Option<Submitted>, StoreError> {
        if planned.new.is_empty() {
            return Ok(None);
        }
        let guard = InflightGuard::take(&self.inflight_appends)?;
        let records = planned.new.iter().map(|e| e.to_record()).collect();
        let pending = self.events.submit(records)?;
        // Without keys nothing waits on this append, and a cancelled request leaves
        // nothing behind: no settle task is needed.
        let done_tx = (!planned.keys.is_empty()).then(|| {
            let (done_tx, done_rx) = watch::channel(false);
            for (h, _, _) in &planned.keys {
                st.inflight.insert(*h, done_rx.clone());
            }
            done_tx
        });
        Ok(Some(Submitted {
            pending,
            done_tx,
            guard,
        }))
    }

    /// Waits for an append in a task of its own, so a cancelled request can never leave a
    /// key in flight forever or skip recording a stored key in the index.
    async fn settle(
        &self,
        pending: PendingAppend,
        done_tx: watch::Sender<bool>,
        keys: Vec<NewKey>,
        guard: InflightGuard,
    ) -> Result<Offset, StoreError> {
        let dedup = Arc::clone(&self.dedup);
        let task = tokio::spawn(async move {
            let result = pending.await;
            drop(guard);
            {
                let mut st = dedup.lock();
                for (h, _, _) in &keys {
                    st.inflight.remove(h);
                }
                if let Ok(out) = &result {
                    st.note_settled(out.first.0, out.first.0 + u64::from(out.count));
                    let time_s = u32::try_from(now_s(out.timestamp_ms)).unwrap_or(u32::MAX);
                    for (h, j, body_hash) in keys {
                        let entry = DedupEntry {
                            offset: out.first.0 + j as u64,
                            body_hash,
                            time_s,
                        };
                        st.index.insert(h, entry);
                    }
                }
            }
            let _ = done_tx.send(true);
            result
        });
        match task.await {
            Ok(result) => Ok(result?.first),
            Err(e) => Err(StoreError::Unavailable(format!("append task failed: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_calls_past_the_inflight_limit_are_refused_until_one_finishes() {
        // Proves the per-flow bound on appends awaiting durability: the call past it is
        // refused as Overloaded (503 + Retry-After), and a finished call frees a slot.
        let counter = Arc::new(AtomicUsize::new(0));
        let mut held: Vec<InflightGuard> = (0..INGEST_INFLIGHT_PER_FLOW_MAX)
            .map(|_| InflightGuard::take(&counter).expect("under the limit"))
            .collect();
        assert!(matches!(
            InflightGuard::take(&counter),
            Err(StoreError::Overloaded)
        ));
        assert_eq!(
            counter.load(Ordering::Acquire),
            INGEST_INFLIGHT_PER_FLOW_MAX
        );
        held.pop();
        let again = InflightGuard::take(&counter).expect("a slot was freed");
        drop(again);
        drop(held);
        assert_eq!(counter.load(Ordering::Acquire), 0);
    }
}
