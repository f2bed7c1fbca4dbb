//! An in-memory file system that can lose power and fail on purpose.
//!
//! Each file (inode) keeps `data` (what reads see) and `synced` (what survives a crash).
//! Each directory entry is live at once but durable only after `sync_dir`.
//! `crash` keeps the durable names and the synced bytes, plus, by `CrashMode`, a torn
//! prefix of what was written but not synced. Handles from before a crash fail with EIO,
//! as a dead process's would. Faults fail the Nth operation of a kind with EIO or ENOSPC.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use super::{DirLock, ReadableFile, Storage, WritableFile};

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
    /// Keep a prefix of the unsynced bytes chosen by the seed, and maybe zero or garble its end.
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
}

#[derive(Debug, Default)]
struct State {
    generation: u64,
    next_inode: u64,
    inodes: HashMap<u64, Inode>,
    live: BTreeMap<PathBuf, u64>,
    durable: BTreeMap<PathBuf, u64>,
    locks: HashSet<PathBuf>,
    faults: Vec<Fault>,
    faults_fired: u64,
    ops: HashMap<OpKind, u64>,
}

impl State {
    /// Counts the operation and returns the error of a fault due now.
    fn op(&mut self, op: OpKind) -> Option<FaultKind> {
        *self.ops.entry(op).or_default() += 1;
        let mut fired = None;
        for fault in self.faults.iter_mut().filter(|f| f.op == op) {
            if fault.remaining > 1 {
                fault.remaining -= 1;
            } else if fault.remaining == 1 || fault.sticky {
                fault.remaining = 0;
                fired = Some(fault.kind);
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

impl SimStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Fails the `nth` (1-based, counted from now) operation of kind `op`; with `sticky`,
    /// every later one too.
    pub fn fail(&self, op: OpKind, nth: u64, kind: FaultKind, sticky: bool) {
        self.state.lock().faults.push(Fault {
            op,
            remaining: nth.max(1),
            kind,
            sticky,
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

    /// Power loss: only durable names and synced bytes (plus, by `mode`, a torn unsynced
    /// prefix) survive. Every handle opened before fails from now on; locks are released.
    pub fn crash(&self, mode: CrashMode) {
        let mut st = self.state.lock();
        st.generation += 1;
        st.locks.clear();
        st.faults.clear();
        st.live = st.durable.clone();
        let keep: HashSet<u64> = st.durable.values().copied().collect();
        st.inodes.retain(|id, _| keep.contains(id));
        let mut ids: Vec<u64> = st.inodes.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(inode) = st.inodes.get_mut(&id) else {
                continue;
            };
            let mut data = inode.synced.clone();
            if let CrashMode::Torn { seed } = mode {
                let mut rng = seed ^ id.wrapping_mul(0x2545_f491_4f6c_dd1d);
                // Unsynced writes run from the first byte where the two differ (past the
                // synced length for appends, inside reserved zeros for overwrites).
                let start = inode
                    .data
                    .iter()
                    .zip(&inode.synced)
                    .take_while(|(a, b)| a == b)
                    .count();
                let unsynced = inode.data.get(start..).unwrap_or(&[]);
                if !unsynced.is_empty() {
                    let keep = (splitmix(&mut rng) % (unsynced.len() as u64 + 1)) as usize;
                    write_at(&mut data, start, &unsynced[..keep]);
                    let end = start + keep;
                    // Sometimes the last sector of the kept part is zeroed or garbled.
                    let tail = (splitmix(&mut rng) % 512) as usize;
                    let from = end.saturating_sub(tail).max(start);
                    match splitmix(&mut rng) % 3 {
                        0 => data[from..end].iter_mut().for_each(|b| *b = 0),
                        1 => data[from..end]
                            .iter_mut()
                            .for_each(|b| *b = splitmix(&mut rng) as u8),
                        _ => {}
                    }
                }
            }
            inode.synced = data.clone();
            inode.data = data;
        }
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

#[derive(Debug)]
struct SimHandle {
    state: Arc<Mutex<State>>,
    inode: u64,
    generation: u64,
}

impl SimHandle {
    fn with<T>(&self, f: impl FnOnce(&mut State, u64) -> io::Result<T>) -> io::Result<T> {
        let mut st = self.state.lock();
        if st.generation != self.generation {
            return Err(dead());
        }
        f(&mut st, self.inode)
    }
}

#[derive(Debug)]
struct SimWritable {
    handle: SimHandle,
    /// Logical end: where the next append is written.
    len: u64,
}

/// Writes `buf` into `data` at `pos`, overwriting and extending as a `pwrite` would.
fn write_at(data: &mut Vec<u8>, pos: usize, buf: &[u8]) {
    let end = pos + buf.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[pos..end].copy_from_slice(buf);
}

impl WritableFile for SimWritable {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let pos = usize::try_from(self.len).unwrap_or(usize::MAX);
        self.handle.with(|st, id| {
            let fault = st.op(OpKind::Append);
            let inode = st.inodes.entry(id).or_default();
            match fault {
                Some(kind) => {
                    write_at(&mut inode.data, pos, &buf[..buf.len() / 2]);
                    Err(kind.error())
                }
                None => {
                    write_at(&mut inode.data, pos, buf);
                    Ok(())
                }
            }
        })?;
        self.len += buf.len() as u64;
        Ok(())
    }

    fn preallocate(&mut self, upto: u64) -> io::Result<()> {
        let upto = usize::try_from(upto).unwrap_or(usize::MAX);
        self.handle.with(|st, id| {
            let fault = st.op(OpKind::Preallocate);
            let inode = st.inodes.entry(id).or_default();
            if inode.data.len() >= upto {
                return fault.map_or(Ok(()), |k| Err(k.error()));
            }
            match fault {
                Some(kind) => {
                    let half = inode.data.len() + (upto - inode.data.len()) / 2;
                    inode.data.resize(half, 0);
                    Err(kind.error())
                }
                None => {
                    inode.data.resize(upto, 0);
                    Ok(())
                }
            }
        })
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.handle.with(|st, id| {
            if let Some(kind) = st.op(OpKind::SyncData) {
                return Err(kind.error());
            }
            let inode = st.inodes.entry(id).or_default();
            inode.synced = inode.data.clone();
            Ok(())
        })
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.handle.with(|st, id| {
            if let Some(kind) = st.op(OpKind::Truncate) {
                return Err(kind.error());
            }
            let inode = st.inodes.entry(id).or_default();
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            inode.data.resize(len, 0);
            Ok(())
        })?;
        self.len = len;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn allocated(&self) -> u64 {
        self.handle
            .with(|st, id| Ok(st.inodes.get(&id).map_or(0, |i| i.data.len() as u64)))
            .unwrap_or(self.len)
    }
}

#[derive(Debug)]
struct SimReadable {
    handle: SimHandle,
}

impl ReadableFile for SimReadable {
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.handle.with(|st, id| {
            let data = st.inodes.get(&id).map_or(&[][..], |i| &i.data[..]);
            let pos = usize::try_from(pos).unwrap_or(usize::MAX).min(data.len());
            let n = buf.len().min(data.len() - pos);
            buf[..n].copy_from_slice(&data[pos..pos + n]);
            Ok(n)
        })
    }

    fn map(&self, len: u64) -> io::Result<Bytes> {
        self.handle.with(|st, id| {
            let data = st.inodes.get(&id).map_or(&[][..], |i| &i.data[..]);
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len > data.len() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "map past the end of the file",
                ));
            }
            Ok(Bytes::copy_from_slice(&data[..len]))
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.handle
            .with(|st, id| Ok(st.inodes.get(&id).map_or(0, |i| i.data.len() as u64)))
    }
}

#[derive(Debug)]
struct SimLock {
    state: Arc<Mutex<State>>,
    dir: PathBuf,
    generation: u64,
}

impl DirLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut st = self.state.lock();
        if st.generation == self.generation {
            st.locks.remove(&self.dir);
        }
    }
}

impl SimStorage {
    fn handle(&self, st: &State, inode: u64) -> SimHandle {
        SimHandle {
            state: Arc::clone(&self.state),
            inode,
            generation: st.generation,
        }
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        // Files directly in `dir`, and the subdirectories that hold files.
        let st = self.state.lock();
        let mut names: Vec<String> = st
            .live
            .keys()
            .filter_map(|p| p.strip_prefix(dir).ok()?.components().next())
            .filter_map(|c| c.as_os_str().to_str().map(str::to_owned))
            .collect();
        names.dedup();
        Ok(names)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let mut st = self.state.lock();
        if let Some(kind) = st.op(OpKind::Create) {
            return Err(kind.error());
        }
        st.next_inode += 1;
        let id = st.next_inode;
        st.inodes.insert(id, Inode::default());
        st.live.insert(path.to_path_buf(), id);
        Ok(Box::new(SimWritable {
            handle: self.handle(&st, id),
            len: 0,
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let st = self.state.lock();
        let id = st.inode_of(path)?;
        let len = st.inodes.get(&id).map_or(0, |i| i.data.len() as u64);
        Ok(Box::new(SimWritable {
            handle: self.handle(&st, id),
            len,
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        let st = self.state.lock();
        let id = st.inode_of(path)?;
        Ok(Arc::new(SimReadable {
            handle: self.handle(&st, id),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        if let Some(kind) = st.op(OpKind::Rename) {
            return Err(kind.error());
        }
        let id = st.inode_of(from)?;
        st.live.remove(from);
        st.live.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        if let Some(kind) = st.op(OpKind::Remove) {
            return Err(kind.error());
        }
        st.inode_of(path)?;
        st.live.remove(path);
        Ok(())
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        if let Some(kind) = st.op(OpKind::Remove) {
            return Err(kind.error());
        }
        st.live.retain(|p, _| !p.starts_with(dir));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        if let Some(kind) = st.op(OpKind::SyncDir) {
            return Err(kind.error());
        }
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        st.durable.retain(|p, _| !in_dir(p));
        let live: Vec<(PathBuf, u64)> = st
            .live
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, id)| (p.clone(), *id))
            .collect();
        st.durable.extend(live);
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        self.state.lock().live.contains_key(path)
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn DirLock>> {
        let mut st = self.state.lock();
        if !st.locks.insert(dir.to_path_buf()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked by another process", dir.display()),
            ));
        }
        Ok(Box::new(SimLock {
            state: Arc::clone(&self.state),
            dir: dir.to_path_buf(),
            generation: st.generation,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
