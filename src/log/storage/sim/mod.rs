//! An in-memory file system that can lose power and fail on purpose.
//!
//! Each file (inode) keeps `data` (what reads see) and `synced` (what survives a crash).
//! Each directory entry, of a file or of a directory, is live at once but durable only
//! after `sync_dir` of its parent; a directory made by `create_dir_all` survives a crash
//! only if its own entry is durable, and so do the names inside it.
//! `crash` keeps the durable names and the synced bytes, plus, by `CrashMode`, some of
//! what was written but not synced: a torn prefix, or any subset of its 512-byte
//! sectors. Handles from before a crash fail with EIO, as a dead process's would.
//! Faults fail the Nth operation of a kind with EIO or ENOSPC, before its effect or
//! (with `fail_after`) after it: the create happened, the caller still hears an error.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

mod files;
mod fs;

/// Bytes of one simulated disk sector: the unit a power loss keeps or loses.
pub const SECTOR_BYTES: usize = 512;

/// Kinds of operations a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    Append,
    Preallocate,
    SyncData,
    SyncDir,
    Create,
    Rename,
    Remove,
    Truncate,
    /// Opening an existing file (`open_read`, `open_append`).
    Open,
    /// Making directories (`create_dir_all`).
    Mkdir,
    /// Reading (`read_at`, `map`): an unreadable sector.
    Read,
}

/// The error a fault returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// EIO. On an append, half of the buffer is written first (a short write).
    Eio,
    /// ENOSPC. On an append, half of the buffer is written first (a short write).
    Enospc,
}

impl FaultKind {
    fn error(self) -> io::Error {
        match self {
            Self::Eio => io::Error::from_raw_os_error(5),
            Self::Enospc => io::Error::from_raw_os_error(28),
        }
    }
}

/// What a crash does to bytes written but not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Keep exactly the synced bytes.
    DropUnsynced,
    /// Keep, by the seed, either a prefix of the unsynced bytes (maybe with its last
    /// sector zeroed or garbled), or any subset of their 512-byte sectors, in no order:
    /// a later sector may survive where an earlier one did not.
    Torn { seed: u64 },
}

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Debug)]
struct Fault {
    op: OpKind,
    remaining: u64,
    kind: FaultKind,
    sticky: bool,
    /// Let the operation take effect, then fail it.
    after: bool,
    /// Only operations on paths under this one count (any path when `None`).
    under: Option<PathBuf>,
}

/// A fault due now: its error, and whether the operation takes effect first.
#[derive(Debug, Clone, Copy)]
pub(super) struct Due {
    kind: FaultKind,
    after: bool,
}

#[derive(Debug, Default)]
struct State {
    generation: u64,
    next_inode: u64,
    inodes: HashMap<u64, Inode>,
    live: BTreeMap<PathBuf, u64>,
    durable: BTreeMap<PathBuf, u64>,
    /// Directories made by `create_dir_all` that exist now.
    dirs_live: BTreeSet<PathBuf>,
    /// Those whose entry in their parent is durable.
    dirs_durable: BTreeSet<PathBuf>,
    /// Every directory ever made; any other directory is part of the fixed root.
    dirs_made: BTreeSet<PathBuf>,
    locks: HashSet<PathBuf>,
    faults: Vec<Fault>,
    faults_fired: u64,
    ops: HashMap<OpKind, u64>,
    /// Set between a crash and `thaw`: every operation fails, so that what the dead
    /// process still runs (threads being stopped, destructors) changes nothing.
    frozen: bool,
}

impl State {
    /// Counts the operation on `path` and returns a fault due now.
    fn op(&mut self, op: OpKind, path: &Path) -> Option<Due> {
        if self.frozen {
            return Some(Due {
                kind: FaultKind::Eio,
                after: false,
            });
        }
        *self.ops.entry(op).or_default() += 1;
        let mut fired = None;
        let applies =
            |f: &Fault| f.op == op && f.under.as_ref().is_none_or(|u| path.starts_with(u));
        for fault in self.faults.iter_mut().filter(|f| applies(f)) {
            if fault.remaining > 1 {
                fault.remaining -= 1;
            } else if fault.remaining == 1 || fault.sticky {
                fault.remaining = 0;
                fired = Some(Due {
                    kind: fault.kind,
                    after: fault.after,
                });
            }
        }
        self.faults.retain(|f| f.remaining > 0 || f.sticky);
        if fired.is_some() {
            self.faults_fired += 1;
        }
        fired
    }

    fn inode_of(&self, path: &Path) -> io::Result<u64> {
        self.live
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.display().to_string()))
    }

    /// Whether `dir` exists now: made and not removed, or part of the fixed root.
    fn dir_exists(&self, dir: &Path) -> bool {
        self.dirs_live.contains(dir) || !self.dirs_made.contains(dir)
    }

    /// A new name in `path`'s directory needs that directory to exist.
    fn parent_exists(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(dir) if !self.dir_exists(dir) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory {}", dir.display()),
            )),
            _ => Ok(()),
        }
    }

    /// Whether every made directory on the way to `path` survives a crash.
    fn survives(&self, path: &Path) -> bool {
        path.ancestors()
            .skip(1)
            .all(|d| !self.dirs_made.contains(d) || self.dirs_durable.contains(d))
    }
}

/// The simulated file system. Clones share one disk.
#[derive(Debug, Clone, Default)]
pub struct SimStorage {
    state: Arc<Mutex<State>>,
}

fn dead() -> io::Error {
    io::Error::other("simulated process died (crash)")
}

/// A small deterministic generator (splitmix64) so a seed replays the same crash.
fn splitmix(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What survives of one file's unsynced writes under `CrashMode::Torn`.
fn torn(inode: &Inode, rng: &mut u64) -> Vec<u8> {
    let mut data = inode.synced.clone();
    // Unsynced writes run from the first byte where the two differ (past the synced
    // length for appends, inside reserved zeros for overwrites).
    let start = inode
        .data
        .iter()
        .zip(&inode.synced)
        .take_while(|(a, b)| a == b)
        .count();
    let unsynced = inode.data.get(start..).unwrap_or(&[]);
    if unsynced.is_empty() {
        return data;
    }
    if splitmix(rng).is_multiple_of(2) {
        // A prefix, its last sector sometimes zeroed or garbled.
        let keep = (splitmix(rng) % (unsynced.len() as u64 + 1)) as usize;
        write_at(&mut data, start, &unsynced[..keep]);
        let end = start + keep;
        let tail = (splitmix(rng) % SECTOR_BYTES as u64) as usize;
        let from = end.saturating_sub(tail).max(start);
        match splitmix(rng) % 3 {
            0 => data[from..end].iter_mut().for_each(|b| *b = 0),
            1 => data[from..end]
                .iter_mut()
                .for_each(|b| *b = splitmix(rng) as u8),
            _ => {}
        }
        return data;
    }
    // Any subset of the sectors the unsynced range touches, each whole or not at all.
    // A sector not kept holds what was synced there (zeros past the synced length).
    let keep_one_in = 1 + splitmix(rng) % 3;
    let first_sector = start / SECTOR_BYTES;
    let end = inode.data.len();
    let mut sector = first_sector;
    while sector * SECTOR_BYTES < end {
        let lo = (sector * SECTOR_BYTES).max(start);
        let hi = ((sector + 1) * SECTOR_BYTES).min(end);
        if splitmix(rng).is_multiple_of(keep_one_in) {
            write_at(&mut data, lo, &inode.data[lo..hi]);
        }
        sector += 1;
    }
    data
}

impl SimStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Fails the `nth` (1-based, counted from now) operation of kind `op`; with `sticky`,
    /// every later one too.
    pub fn fail(&self, op: OpKind, nth: u64, kind: FaultKind, sticky: bool) {
        self.push_fault(op, nth, kind, sticky, false, None);
    }

    /// Like `fail`, but the operation takes effect first (a file is created, a name
    /// renamed, bytes written in full) and only then reports EIO.
    pub fn fail_after(&self, op: OpKind, nth: u64) {
        self.push_fault(op, nth, FaultKind::Eio, false, true, None);
    }

    /// Like `fail`, counting only operations on paths under `under` (a file, or a
    /// directory such as one flow's): the other paths never see the fault.
    pub fn fail_under(&self, op: OpKind, under: &Path, nth: u64, kind: FaultKind, sticky: bool) {
        self.push_fault(op, nth, kind, sticky, false, Some(under.to_path_buf()));
    }

    fn push_fault(
        &self,
        op: OpKind,
        nth: u64,
        kind: FaultKind,
        sticky: bool,
        after: bool,
        under: Option<PathBuf>,
    ) {
        self.state.lock().faults.push(Fault {
            op,
            remaining: nth.max(1),
            kind,
            sticky,
            after,
            under,
        });
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// How many injected faults have fired.
    pub fn faults_fired(&self) -> u64 {
        self.state.lock().faults_fired
    }

    /// How many operations of `op` have run.
    pub fn op_count(&self, op: OpKind) -> u64 {
        self.state.lock().ops.get(&op).copied().unwrap_or(0)
    }

    /// Power loss: only durable names (in directories that survive) and synced bytes
    /// (plus, by `mode`, some unsynced ones) survive. Every handle opened before fails
    /// from now on; locks are released.
    pub fn crash(&self, mode: CrashMode) {
        let mut st = self.state.lock();
        st.generation += 1;
        st.locks.clear();
        st.faults.clear();
        let dirs: BTreeSet<PathBuf> = st
            .dirs_durable
            .iter()
            .filter(|d| st.survives(d))
            .cloned()
            .collect();
        st.dirs_durable = dirs.clone();
        st.dirs_live = dirs;
        let durable: BTreeMap<PathBuf, u64> = st
            .durable
            .iter()
            .filter(|(p, _)| st.survives(p))
            .map(|(p, id)| (p.clone(), *id))
            .collect();
        st.durable = durable.clone();
        st.live = durable;
        let keep: HashSet<u64> = st.durable.values().copied().collect();
        st.inodes.retain(|id, _| keep.contains(id));
        let mut ids: Vec<u64> = st.inodes.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(inode) = st.inodes.get_mut(&id) else {
                continue;
            };
            let data = match mode {
                CrashMode::DropUnsynced => inode.synced.clone(),
                CrashMode::Torn { seed } => {
                    let mut rng = seed ^ id.wrapping_mul(0x2545_f491_4f6c_dd1d);
                    torn(inode, &mut rng)
                }
            };
            inode.synced = data.clone();
            inode.data = data;
        }
    }

    /// Power loss, and the dead process stays dead: like `crash`, but every operation
    /// fails until `thaw`, so the threads and destructors of the objects opened before
    /// can be stopped without writing anything.
    pub fn crash_frozen(&self, mode: CrashMode) {
        self.crash(mode);
        self.state.lock().frozen = true;
    }

    /// Ends `crash_frozen`: the next process may use the disk.
    pub fn thaw(&self) {
        self.state.lock().frozen = false;
    }

    /// The bytes a file holds now (what reads see), for tests.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.state.lock();
        let id = st.live.get(path)?;
        st.inodes.get(id).map(|i| i.data.clone())
    }

    /// Overwrites a file's bytes, synced and all, as a disk fault or an operator would.
    pub fn set_file_bytes(&self, path: &Path, bytes: Vec<u8>) {
        let mut st = self.state.lock();
        let id = match st.live.get(path) {
            Some(id) => *id,
            None => {
                st.next_inode += 1;
                let id = st.next_inode;
                st.live.insert(path.to_path_buf(), id);
                st.durable.insert(path.to_path_buf(), id);
                id
            }
        };
        let inode = st.inodes.entry(id).or_default();
        inode.synced = bytes.clone();
        inode.data = bytes;
    }
}

/// Writes `buf` into `data` at `pos`, overwriting and extending as a `pwrite` would.
pub(super) fn write_at(data: &mut Vec<u8>, pos: usize, buf: &[u8]) {
    let end = pos + buf.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[pos..end].copy_from_slice(buf);
}

/// The result of an operation that a fault may fail before or after its effect.
pub(super) fn settle(due: Option<Due>) -> io::Result<()> {
    due.map_or(Ok(()), |d| Err(d.kind.error()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::storage::Storage;

    #[test]
    fn crash_keeps_synced_bytes_and_durable_names_only() {
        let sim = SimStorage::new();
        let dir = Path::new("/d");
        let mut a = sim.create(&dir.join("a")).expect("create");
        a.append(b"hello").expect("append");
        a.sync_data().expect("sync");
        sim.sync_dir(dir).expect("sync dir");
        a.append(b" world").expect("append");
        let mut b = sim.create(&dir.join("b")).expect("create b");
        b.append(b"lost").expect("append b");
        b.sync_data().expect("sync b");
        sim.crash(CrashMode::DropUnsynced);
        assert_eq!(sim.file_bytes(&dir.join("a")), Some(b"hello".to_vec()));
        assert_eq!(
            sim.file_bytes(&dir.join("b")),
            None,
            "name never made durable"
        );
        assert!(a.append(b"x").is_err(), "old handles are dead");
    }

    #[test]
    fn fault_fires_on_the_nth_operation_only() {
        let sim = SimStorage::new();
        let mut f = sim.create(Path::new("/d/f")).expect("create");
        sim.fail(OpKind::SyncData, 2, FaultKind::Eio, false);
        assert!(f.sync_data().is_ok());
        assert_eq!(f.sync_data().map_err(|e| e.raw_os_error()), Err(Some(5)));
        assert!(f.sync_data().is_ok());
        assert_eq!(sim.faults_fired(), 1);
    }

    #[test]
    fn a_directory_survives_only_once_its_parent_is_synced() {
        let sim = SimStorage::new();
        let root = Path::new("/r");
        let dir = root.join("flows/f1");
        sim.create_dir_all(&dir).expect("mkdir");
        let mut f = sim.create(&dir.join("x")).expect("create");
        f.append(b"data").expect("append");
        f.sync_data().expect("sync");
        sim.sync_dir(&dir).expect("sync dir");
        sim.crash(CrashMode::DropUnsynced);
        assert!(
            !sim.exists(&dir),
            "flows/ and flows/f1 were never made durable"
        );
        assert_eq!(sim.file_bytes(&dir.join("x")), None);
        sim.create_dir_all(&dir).expect("mkdir");
        sim.sync_dir(Path::new("/")).expect("sync /");
        sim.sync_dir(root).expect("sync /r");
        sim.sync_dir(&root.join("flows")).expect("sync flows");
        let mut f = sim.create(&dir.join("x")).expect("create");
        f.append(b"data").expect("append");
        f.sync_data().expect("sync");
        sim.sync_dir(&dir).expect("sync dir");
        sim.crash(CrashMode::DropUnsynced);
        assert_eq!(sim.file_bytes(&dir.join("x")), Some(b"data".to_vec()));
        sim.remove_dir_all(&dir).expect("rm");
        assert!(
            sim.create(&dir.join("y")).is_err(),
            "no directory to create in"
        );
    }

    #[test]
    fn a_fault_after_the_effect_leaves_the_effect() {
        let sim = SimStorage::new();
        sim.fail_after(OpKind::Create, 1);
        assert!(sim.create(Path::new("/d/f")).is_err());
        assert!(sim.exists(Path::new("/d/f")), "the file was created anyway");
    }

    #[test]
    fn a_torn_crash_can_keep_a_later_sector_and_lose_an_earlier_one() {
        // Some seed must keep sector 2 of an unsynced write while sector 1 reads as the
        // zeros that were synced there (reserved space).
        let found = (0..200u64).any(|seed| {
            let sim = SimStorage::new();
            let mut f = sim.create(Path::new("/d/f")).expect("create");
            f.preallocate(4 * SECTOR_BYTES as u64).expect("reserve");
            f.sync_data().expect("sync");
            sim.sync_dir(Path::new("/d")).expect("sync dir");
            f.append(&vec![7u8; 3 * SECTOR_BYTES]).expect("append");
            sim.crash(CrashMode::Torn { seed });
            let b = sim.file_bytes(Path::new("/d/f")).expect("file");
            b[SECTOR_BYTES] == 0 && b[2 * SECTOR_BYTES] == 7
        });
        assert!(found);
    }
}
