//! A model checker for one partition on the simulated disk: a plain `Vec` of the
//! records that must be there, against the real `Log`, across crashes and reopens.
//!
//! - `durable[o]` is the record acknowledged (or recovered) at offset `o`.
//! - `maybe` are append calls that failed: each may be stored whole or not at all,
//!   and the stored ones keep their order (a crash keeps a prefix of what was written;
//!   a failed write is undone).
//!
//! After every reopen: every acknowledged record from the first retained offset is
//! present byte for byte at its offset, then some of the maybes in order, then nothing.

use std::sync::Arc;

use bytes::Bytes;
use eventmesh::log::framing::{GroupHeader, SegmentHeader};
use eventmesh::log::record;
use eventmesh::log::storage::{CrashMode, FaultKind, OpKind, SimStorage};
use eventmesh::log::{Log, LogConfig, Mutation, Offset, RecordInput, Retention};

#[derive(Debug, Clone)]
pub enum Op {
    Append {
        size: u16,
    },
    Batch {
        n: u8,
        size: u16,
    },
    Read {
        from_permille: u16,
    },
    Roll,
    Retain {
        max_bytes: u32,
    },
    Crash {
        torn_seed: Option<u64>,
    },
    Reopen,
    Fault {
        op: u8,
        nth: u8,
        enospc: bool,
    },
    /// A fault that lets its operation take effect, then reports EIO.
    FaultAfter {
        op: u8,
        nth: u8,
    },
}

pub struct Harness {
    pub sim: SimStorage,
    log: Option<Log>,
    config: LogConfig,
    model: Model,
    next_id: u64,
    pub acked: u64,
    pub crashes: u64,
}

/// What one partition must hold: the acknowledged records from `first` on, then
/// perhaps some of the failed calls (`maybe`), in order.
#[derive(Default)]
pub struct Model {
    durable: Vec<RecordInput>,
    first: u64,
    maybe: Vec<Vec<RecordInput>>,
}

/// Bytes that decode as a valid record frame, group header and segment header: what a
/// sender could plant in a key, a type or a payload.
fn planted(id: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut frame = Vec::new();
    record::encode_into(&mut frame, Offset(id + 1), 1, false, &RecordInput::new("x"));
    out.extend_from_slice(
        &GroupHeader {
            salt: id,
            first_offset: Offset(id + 1),
            records: 1,
            body_len: frame.len() as u32,
            synced: u64::MAX / 2,
            body_crc: crc32fast::hash(&frame),
        }
        .encode(),
    );
    out.extend_from_slice(&frame);
    out.extend_from_slice(
        &SegmentHeader {
            base: Offset(0),
            salt: id,
            ts_floor: 0,
        }
        .encode(),
    );
    out
}

pub fn make(id: u64, size: u16) -> RecordInput {
    let mut payload = format!("{{\"id\":{id}}}").into_bytes();
    payload.resize(payload.len() + size as usize, b'.');
    // Every third record carries planted frames and headers in its key, type and
    // payload: a torn write must still never read as corruption.
    let plant = id.is_multiple_of(3);
    if plant {
        payload.extend_from_slice(&planted(id));
    }
    let key = match (plant, id.is_multiple_of(2)) {
        (true, _) => Some(Bytes::from(planted(id))),
        (false, true) => Some(Bytes::from(format!("k{id}"))),
        (false, false) => None,
    };
    let kind = match plant {
        true => Bytes::from(planted(id)),
        false => Bytes::from(format!("t{}", id % 3)),
    };
    RecordInput {
        payload: Bytes::from(payload),
        key,
        headers: vec![("type".into(), kind)],
        flags: (id % 4) as u16,
    }
}

pub fn same(a: &eventmesh::log::Record, b: &RecordInput) -> bool {
    a.payload == b.payload && a.key == b.key && a.flags == b.flags
}

/// A random step of the model: appends, reads, rolls, retention, crashes, faults.
pub fn op_strategy() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        10 => (0u16..300).prop_map(|size| Op::Append { size }),
        4 => (1u8..8, 0u16..200).prop_map(|(n, size)| Op::Batch { n, size }),
        3 => (0u16..1000).prop_map(|from_permille| Op::Read { from_permille }),
        2 => Just(Op::Roll),
        1 => (500u32..6000).prop_map(|max_bytes| Op::Retain { max_bytes }),
        2 => proptest::option::of(any::<u64>()).prop_map(|torn_seed| Op::Crash { torn_seed }),
        1 => Just(Op::Reopen),
        1 => (0u8..9, 1u8..4, any::<bool>()).prop_map(|(op, nth, enospc)| Op::Fault { op, nth, enospc }),
        1 => (0u8..9, 1u8..4).prop_map(|(op, nth)| Op::FaultAfter { op, nth }),
    ]
}

/// Arms the fault `op` names on `sim`; false if `op` is no fault.
pub fn arm_fault(sim: &SimStorage, op: &Op) -> bool {
    match *op {
        Op::FaultAfter { op, nth } => sim.fail_after(
            FAULT_OPS[usize::from(op) % FAULT_OPS.len()],
            u64::from(nth.max(1)),
        ),
        Op::Fault { op, nth, enospc } => {
            let kind = if enospc {
                FaultKind::Enospc
            } else {
                FaultKind::Eio
            };
            sim.fail(
                FAULT_OPS[usize::from(op) % FAULT_OPS.len()],
                u64::from(nth.max(1)),
                kind,
                false,
            );
        }
        _ => return false,
    }
    true
}

pub const FAULT_OPS: [OpKind; 9] = [
    OpKind::Append,
    OpKind::SyncData,
    OpKind::SyncDir,
    OpKind::Create,
    OpKind::Truncate,
    OpKind::Rename,
    OpKind::Remove,
    OpKind::Open,
    OpKind::Preallocate,
];

impl Harness {
    pub fn new(segment_bytes: u64, mutation: Mutation) -> Self {
        let config = LogConfig {
            segment_bytes,
            mutation,
            ..LogConfig::default()
        };
        let mut h = Self {
            sim: SimStorage::new(),
            log: None,
            config,
            model: Model::default(),
            next_id: 0,
            acked: 0,
            crashes: 0,
        };
        h.log = Some(h.open());
        h
    }

    fn open(&self) -> Log {
        // A fault may hit recovery itself; an operator would restart, so we do too.
        for _ in 0..3 {
            match Log::open_with("/p", self.config.clone(), Arc::new(self.sim.clone())) {
                Ok(log) => return log,
                Err(_) => self.sim.clear_faults(),
            }
        }
        Log::open_with("/p", self.config.clone(), Arc::new(self.sim.clone()))
            .unwrap_or_else(|e| panic!("open after clearing faults: {e}"))
    }

    fn log(&self) -> &Log {
        self.log.as_ref().expect("log is open between steps")
    }

    fn ids(&mut self, n: usize, size: u16) -> Vec<RecordInput> {
        (0..n)
            .map(|_| {
                self.next_id += 1;
                make(self.next_id, size)
            })
            .collect()
    }

    fn append(&mut self, records: Vec<RecordInput>) -> Result<(), String> {
        let n = records.len() as u64;
        let result = self.log().append_batch(records.clone());
        if self.model.settle(records, result)? {
            self.acked += n;
        }
        Ok(())
    }

    /// Runs one step; `Err` describes a broken promise.
    pub fn step(&mut self, op: &Op) -> Result<(), String> {
        match *op {
            Op::Append { size } => {
                let r = self.ids(1, size);
                self.append(r)?;
            }
            Op::Batch { n, size } => {
                let r = self.ids(usize::from(n.max(1)), size);
                self.append(r)?;
            }
            Op::Read { from_permille } => {
                self.model
                    .check_read(&self.sim, self.log(), from_permille)?
            }
            Op::Roll => {
                let _ = self.log().roll();
            }
            Op::Retain { max_bytes } => {
                // Even a failed run may have taken segments out of the view.
                let _ = self.log().apply_retention(Retention {
                    max_bytes: Some(u64::from(max_bytes)),
                    max_age_ms: None,
                });
                self.model.first = self.log().first_offset().0;
            }
            Op::Crash { torn_seed } => {
                self.sim.crash(match torn_seed {
                    Some(seed) => CrashMode::Torn { seed },
                    None => CrashMode::DropUnsynced,
                });
                self.crashes += 1;
                drop(self.log.take());
                self.log = Some(self.open());
                let log = self.log.as_ref().expect("log is open between steps");
                self.model.verify(log)?;
            }
            Op::Reopen => {
                let _ = self.log.take().map(Log::close);
                self.log = Some(self.open());
                let log = self.log.as_ref().expect("log is open between steps");
                self.model.verify(log)?;
            }
            Op::FaultAfter { .. } | Op::Fault { .. } => {
                arm_fault(&self.sim, op);
            }
        }
        Ok(())
    }

    /// Crashes (dropping everything unsynced) and verifies: the end of every run.
    pub fn finish(&mut self) -> Result<(), String> {
        self.step(&Op::Crash { torn_seed: None })
    }
}

impl Model {
    /// Adopts the answer to an append of `records`: true if it was acknowledged.
    pub fn settle(
        &mut self,
        records: Vec<RecordInput>,
        result: Result<eventmesh::log::AppendOutcome, eventmesh::log::LogError>,
    ) -> Result<bool, String> {
        match result {
            Ok(out) => {
                // Appends that failed before a successful one were undone (a failed write
                // is rewound; a failed fsync refuses every later append until reopen).
                self.maybe.clear();
                if out.first.0 != self.durable.len() as u64 {
                    return Err(format!(
                        "append got offset {}, expected {}",
                        out.first,
                        self.durable.len()
                    ));
                }
                self.durable.extend(records);
                Ok(true)
            }
            Err(_) => {
                self.maybe.push(records);
                Ok(false)
            }
        }
    }

    /// Notes that retention moved the first offset.
    pub fn retained_from(&mut self, first: u64) {
        self.first = first;
    }

    pub fn check_read(
        &self,
        sim: &SimStorage,
        log: &Log,
        from_permille: u16,
    ) -> Result<(), String> {
        let end = self.durable.len() as u64;
        if self.first >= end || !self.maybe.is_empty() {
            return Ok(());
        }
        let from = self.first + (end - self.first) * u64::from(from_permille.min(999)) / 1000;
        let fired = sim.faults_fired();
        let got = match log.read(Offset(from), 20, usize::MAX) {
            Ok(got) => got,
            // An injected fault on the read itself (opening a segment): an error, never
            // wrong data.
            Err(eventmesh::log::LogError::Io { .. }) if sim.faults_fired() > fired => return Ok(()),
            // A concurrent retention failure can leave the view ahead of the model; reads
            // of what retention took are a clean error, never wrong data.
            Err(eventmesh::log::LogError::OffsetOutOfRange { .. }) => return Ok(()),
            Err(e) => return Err(format!("read from {from}: {e}")),
        };
        let want = (end - from).min(20) as usize;
        if got.len() != want {
            return Err(format!(
                "read from {from}: {} records, expected {want}",
                got.len()
            ));
        }
        for r in &got {
            if !same(r, &self.durable[r.offset.0 as usize]) {
                return Err(format!("read: record {} differs", r.offset));
            }
        }
        Ok(())
    }

    /// Checks the reopened log against the model, then adopts what it holds.
    pub fn verify(&mut self, log: &Log) -> Result<(), String> {
        let first = log.first_offset().0;
        if first > self.first {
            return Err(format!(
                "first offset {first} is past the model's {}",
                self.first
            ));
        }
        let actual: Vec<_> = log
            .iter_from(Offset(first))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("reading after reopen: {e}"))?;
        for (o, r) in (first..).zip(&actual) {
            if r.offset.0 != o {
                return Err(format!("offset {} where {o} was due", r.offset));
            }
        }
        let known = self.durable.len();
        if actual.len() + (first as usize) < known {
            return Err(format!(
                "acknowledged records lost: log ends at {}, {known} were acknowledged",
                first as usize + actual.len()
            ));
        }
        for (i, r) in actual
            .iter()
            .enumerate()
            .take(known.saturating_sub(first as usize))
        {
            if !same(r, &self.durable[first as usize + i]) {
                return Err(format!("record {} is not the one acknowledged", r.offset));
            }
        }
        let mut tail = &actual[known.saturating_sub(first as usize)..];
        let mut kept = Vec::new();
        for batch in &self.maybe {
            if tail.len() >= batch.len() && tail.iter().zip(batch).all(|(a, b)| same(a, b)) {
                tail = &tail[batch.len()..];
                kept.extend(batch.iter().cloned());
            }
        }
        if !tail.is_empty() {
            return Err(format!(
                "{} phantom records at offset {}",
                tail.len(),
                tail[0].offset
            ));
        }
        self.durable.extend(kept);
        self.maybe.clear();
        self.first = first;
        Ok(())
    }
}
