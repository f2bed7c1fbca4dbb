//! Replay at open: every journal record from the checkpoint on is written again into
//! its log's segment, at its position, and the touched segments are fdatasynced.
//! Then the checkpoint moves to the journal's end. Only after that are the journaled
//! logs opened, and each runs its own recovery over whole bytes.
//!
//! Writing an entry again is harmless: it puts back the very bytes the log wrote. An
//! entry whose segment file is gone (retention deleted it, or its flow was deleted)
//! is skipped: segment files are created durably before any entry names them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::log::segment;
use crate::log::storage::{Storage, WritableFile};
use crate::log::{Log, LogError, Offset};

use super::checkpoint;
use super::entry::{self, Action};

/// Segment files replay keeps open at once; past it, it syncs and closes them all.
const REPLAY_OPEN_FILES_MAX: usize = 64;

/// What replay found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// The checkpoint it started from, and the journal's end.
    pub from: Offset,
    pub to: Offset,
    /// Journal records written back, and their bytes.
    pub entries: u64,
    pub bytes: u64,
    /// Records whose segment file no longer exists.
    pub skipped: u64,
    /// Segment files written to.
    pub files: usize,
    /// The checkpoint covered the whole journal: the last stop (or the last
    /// checkpoint before a crash, with nothing written since) left every segment synced.
    pub clean: bool,
}

fn sync_all(files: &mut HashMap<PathBuf, Box<dyn WritableFile>>) -> Result<(), LogError> {
    for (path, file) in files.iter_mut() {
        file.sync_data()
            .map_err(|e| LogError::io("fdatasync", path, e))?;
    }
    files.clear();
    Ok(())
}

/// Replays `journal` (whose logs live under `root`) from its checkpoint.
pub fn replay(storage: &dyn Storage, root: &Path, journal: &Log) -> Result<ReplayReport, LogError> {
    let dir = journal.dir().to_path_buf();
    let checkpointed = checkpoint::load(storage, &dir)?;
    let from = checkpointed
        .unwrap_or(Offset(0))
        .max(journal.first_offset());
    let mut report = ReplayReport {
        from,
        to: journal.next_offset(),
        clean: checkpointed == Some(journal.next_offset()),
        ..ReplayReport::default()
    };
    let mut open: HashMap<PathBuf, Box<dyn WritableFile>> = HashMap::new();
    let mut touched = std::collections::HashSet::new();
    for record in journal.scan_from(from) {
        let record = record?;
        let entry = entry::decode(&record.payload).ok_or_else(|| LogError::Corruption {
            file: dir.clone(),
            position: record.offset.0,
            reason: format!("journal record {} is not a journal entry", record.offset),
        })?;
        let path = segment::segment_path(&root.join(entry.dir), entry.base);
        if !open.contains_key(&path) {
            if !storage.exists(&path) {
                report.skipped += 1;
                continue;
            }
            if open.len() >= REPLAY_OPEN_FILES_MAX {
                sync_all(&mut open)?;
            }
            let file = storage
                .open_append(&path)
                .map_err(|e| LogError::io("open", &path, e))?;
            open.insert(path.clone(), file);
        }
        if let Some(file) = open.get_mut(&path) {
            match entry.action {
                Action::Write { pos, bytes } => {
                    file.write_at(pos, bytes)
                        .map_err(|e| LogError::io("replay into", &path, e))?;
                    report.bytes += bytes.len() as u64;
                }
                Action::Cut { len } => file
                    .truncate(len)
                    .map_err(|e| LogError::io("replay a cut of", &path, e))?,
            }
        }
        report.entries += 1;
        touched.insert(path);
    }
    sync_all(&mut open)?;
    report.files = touched.len();
    if report.to != from || report.entries > 0 {
        checkpoint::save(storage, &dir, report.to)?;
    }
    Ok(report)
}
