//! The `Storage` operations of the simulated disk: directories, files, renames, syncs,
//! each one a place a fault can strike.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::files::{SimHandle, SimLock, SimReadable, SimWritable};
use super::{settle, Due, Inode, OpKind, SimStorage, State};
use crate::log::storage::{DirLock, ReadableFile, Storage, WritableFile};

impl SimStorage {
    fn handle(&self, st: &State, inode: u64, path: &Path) -> SimHandle {
        SimHandle {
            state: Arc::clone(&self.state),
            inode,
            generation: st.generation,
            path: path.to_path_buf(),
        }
    }

    fn open_existing(&self, path: &Path) -> io::Result<(SimHandle, u64)> {
        let mut st = self.state.lock();
        let fault = st.op(OpKind::Open, path);
        let id = st.inode_of(path)?;
        settle(fault)?;
        let len = st.inodes.get(&id).map_or(0, |i| i.data.len() as u64);
        Ok((self.handle(&st, id, path), len))
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        let fault = st.op(OpKind::Mkdir, dir);
        if let Some(Due { after: false, kind }) = fault {
            return Err(kind.error());
        }
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .filter(|d| d.parent().is_some() && !st.dirs_live.contains(*d))
            .map(Path::to_path_buf)
            .collect();
        for d in missing {
            if st.dirs_made.contains(&d) || !st.live.keys().any(|p| p.starts_with(&d)) {
                st.dirs_made.insert(d.clone());
                st.dirs_live.insert(d);
            }
        }
        settle(fault)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        // Files directly in `dir`, and its subdirectories (made, or holding files).
        let st = self.state.lock();
        if !st.dir_exists(dir) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                dir.display().to_string(),
            ));
        }
        let mut names: BTreeSet<String> = st
            .live
            .keys()
            .filter_map(|p| p.strip_prefix(dir).ok()?.components().next())
            .filter_map(|c| c.as_os_str().to_str().map(str::to_owned))
            .collect();
        names.extend(
            st.dirs_live
                .iter()
                .filter(|d| d.parent() == Some(dir))
                .filter_map(|d| d.file_name()?.to_str().map(str::to_owned)),
        );
        Ok(names.into_iter().collect())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let mut st = self.state.lock();
        let fault = st.op(OpKind::Create, path);
        if let Some(Due { after: false, kind }) = fault {
            return Err(kind.error());
        }
        st.parent_exists(path)?;
        st.next_inode += 1;
        let id = st.next_inode;
        st.inodes.insert(id, Inode::default());
        st.live.insert(path.to_path_buf(), id);
        settle(fault)?;
        Ok(Box::new(SimWritable {
            handle: self.handle(&st, id, path),
            len: 0,
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let (handle, len) = self.open_existing(path)?;
        Ok(Box::new(SimWritable { handle, len }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        let (handle, _) = self.open_existing(path)?;
        Ok(Arc::new(SimReadable { handle }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        let fault = st.op(OpKind::Rename, from);
        if let Some(Due { after: false, kind }) = fault {
            return Err(kind.error());
        }
        let id = st.inode_of(from)?;
        st.parent_exists(to)?;
        st.live.remove(from);
        st.live.insert(to.to_path_buf(), id);
        settle(fault)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        let fault = st.op(OpKind::Remove, path);
        if let Some(Due { after: false, kind }) = fault {
            return Err(kind.error());
        }
        st.inode_of(path)?;
        st.live.remove(path);
        settle(fault)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        let fault = st.op(OpKind::Remove, dir);
        if let Some(Due { after: false, kind }) = fault {
            return Err(kind.error());
        }
        st.live.retain(|p, _| !p.starts_with(dir));
        st.dirs_live.retain(|d| !d.starts_with(dir));
        settle(fault)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        let fault = st.op(OpKind::SyncDir, dir);
        if let Some(Due { after: false, kind }) = fault {
            return Err(kind.error());
        }
        let in_dir = |p: &Path| p.parent() == Some(dir);
        st.durable.retain(|p, _| !in_dir(p));
        let live: Vec<(PathBuf, u64)> = st
            .live
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, id)| (p.clone(), *id))
            .collect();
        st.durable.extend(live);
        st.dirs_durable.retain(|d| !in_dir(d));
        let dirs: Vec<PathBuf> = st.dirs_live.iter().filter(|d| in_dir(d)).cloned().collect();
        st.dirs_durable.extend(dirs);
        settle(fault)
    }

    fn exists(&self, path: &Path) -> bool {
        let st = self.state.lock();
        st.live.contains_key(path)
            || st.dirs_live.contains(path)
            || (!st.dirs_made.contains(path) && st.live.keys().any(|p| p.starts_with(path)))
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
