//! The model checker with the journal in it: several partitions riding one journal on
//! the simulated disk, each checked against its own `Model` after every crash and
//! reopen. Crashes cut the journal and the partitions wherever they stand: mid-round,
//! between the partition write and the journal's fdatasync, mid-checkpoint.

use std::path::Path;
use std::sync::Arc;

use eventmesh::log::journal::{Journal, JournalConfig};
use eventmesh::log::storage::{CrashMode, SimStorage, Storage};
use eventmesh::log::{Log, LogConfig, Mutation, Offset, RecordInput, Retention};

use super::model::{arm_fault, make, Model, Op};

/// The data directory the journal and its partitions live under.
pub const ROOT: &str = "/d";
/// How many partitions ride the journal.
pub const LOGS: usize = 3;

/// One step: `Op` aimed at partition `log` (crash, reopen and faults are global), or a
/// checkpoint.
#[derive(Debug, Clone)]
pub enum Step {
    On(u8, Op),
    Checkpoint,
}

pub struct JournalHarness {
    pub sim: SimStorage,
    journal: Option<Journal>,
    logs: Vec<Log>,
    models: Vec<Model>,
    mutation: Mutation,
    segment_bytes: u64,
    next_id: u64,
    pub acked: u64,
    pub crashes: u64,
}

impl JournalHarness {
    pub fn new(segment_bytes: u64, mutation: Mutation) -> Self {
        let mut h = Self {
            sim: SimStorage::new(),
            journal: None,
            logs: Vec::new(),
            models: (0..LOGS).map(|_| Model::default()).collect(),
            mutation,
            segment_bytes,
            next_id: 0,
            acked: 0,
            crashes: 0,
        };
        // The data directory is made durable first, as the store does.
        let storage: &dyn Storage = &h.sim;
        storage
            .create_dir_all(Path::new(ROOT))
            .and_then(|()| storage.sync_dir(Path::new("/")))
            .expect("make the root");
        h.open();
        h
    }

    fn config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes,
            mutation: self.mutation,
            ..LogConfig::default()
        }
    }

    fn try_open(&self) -> Result<(Journal, Vec<Log>), String> {
        let storage: Arc<SimStorage> = Arc::new(self.sim.clone());
        // A budget of one reader and one writer for three logs: every step closes and
        // reopens files.
        let config = JournalConfig {
            files: Some(2),
            ..JournalConfig::new(ROOT, storage.clone(), self.config())
        };
        let (journal, _) = Journal::open(config).map_err(|e| e.to_string())?;
        let mut logs = Vec::new();
        for i in 0..LOGS {
            let config = LogConfig {
                journal: Some(journal.clone()),
                ..self.config()
            };
            match Log::open_with(format!("{ROOT}/p{i}"), config, storage.clone()) {
                Ok(log) => logs.push(log),
                Err(e) => {
                    drop(logs);
                    journal.stop();
                    return Err(e.to_string());
                }
            }
        }
        Ok((journal, logs))
    }

    fn open(&mut self) {
        // A fault may hit recovery itself; an operator would restart, so we do too.
        for _ in 0..3 {
            match self.try_open() {
                Ok((journal, logs)) => {
                    self.journal = Some(journal);
                    self.logs = logs;
                    return;
                }
                Err(_) => self.sim.clear_faults(),
            }
        }
        let (journal, logs) = self
            .try_open()
            .unwrap_or_else(|e| panic!("open after clearing faults: {e}"));
        self.journal = Some(journal);
        self.logs = logs;
    }

    /// Drops every partition (closing it through the journal), then stops the journal.
    fn close(&mut self) {
        self.logs.clear();
        if let Some(journal) = self.journal.take() {
            journal.stop();
        }
    }

    fn reopen_and_verify(&mut self) -> Result<(), String> {
        self.close();
        self.open();
        for (i, model) in self.models.iter_mut().enumerate() {
            model
                .verify(&self.logs[i])
                .map_err(|e| format!("partition {i}: {e}"))?;
        }
        Ok(())
    }

    fn records(&mut self, n: usize, size: u16) -> Vec<RecordInput> {
        (0..n)
            .map(|_| {
                self.next_id += 1;
                make(self.next_id, size)
            })
            .collect()
    }

    fn append(&mut self, log: usize, records: Vec<RecordInput>) -> Result<(), String> {
        let n = records.len() as u64;
        let result = self.logs[log].append_batch(records.clone());
        if self.models[log]
            .settle(records, result)
            .map_err(|e| format!("partition {log}: {e}"))?
        {
            self.acked += n;
        }
        Ok(())
    }

    /// Runs one step; `Err` describes a broken promise.
    pub fn step(&mut self, step: &Step) -> Result<(), String> {
        let (log, op) = match step {
            Step::Checkpoint => {
                if let Some(journal) = &self.journal {
                    let _ = journal.checkpoint();
                }
                return Ok(());
            }
            Step::On(log, op) => (usize::from(*log) % LOGS, op),
        };
        match *op {
            Op::Append { size } => {
                let r = self.records(1, size);
                self.append(log, r)?;
            }
            Op::Batch { n, size } => {
                let r = self.records(usize::from(n.max(1)), size);
                self.append(log, r)?;
            }
            Op::Read { from_permille } => self.models[log]
                .check_read(&self.sim, &self.logs[log], from_permille)
                .map_err(|e| format!("partition {log}: {e}"))?,
            Op::Roll => {
                let _ = self.logs[log].roll();
            }
            Op::Retain { max_bytes } => {
                let _ = self.logs[log].apply_retention(Retention {
                    max_bytes: Some(u64::from(max_bytes)),
                    max_age_ms: None,
                });
                self.models[log].retained_from(self.logs[log].first_offset().0);
            }
            Op::Crash { torn_seed } => {
                self.sim.crash_frozen(match torn_seed {
                    Some(seed) => CrashMode::Torn { seed },
                    None => CrashMode::DropUnsynced,
                });
                self.crashes += 1;
                // The dead process's objects go without touching the disk.
                self.close();
                self.sim.thaw();
                self.reopen_and_verify()?;
            }
            Op::Reopen => self.reopen_and_verify()?,
            Op::FaultAfter { .. } | Op::Fault { .. } => {
                arm_fault(&self.sim, op);
            }
        }
        Ok(())
    }

    /// The journal's checkpointed offset is readable and the partitions' ends, for tests.
    pub fn ends(&self) -> Vec<Offset> {
        self.logs.iter().map(Log::next_offset).collect()
    }

    pub fn journal(&self) -> &Journal {
        self.journal
            .as_ref()
            .expect("the journal is open between steps")
    }

    /// Crashes (dropping everything unsynced) and verifies: the end of every run.
    pub fn finish(&mut self) -> Result<(), String> {
        self.step(&Step::On(0, Op::Crash { torn_seed: None }))?;
        self.close();
        Ok(())
    }
}

impl Drop for JournalHarness {
    fn drop(&mut self) {
        self.close();
    }
}
