//! Open files of the simulated disk: handles that fail with EIO after a crash, the
//! writable and readable files, and directory locks.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use std::path::Path;

use super::{dead, settle, write_at, Due, OpKind, State};
use crate::log::storage::{DirLock, ReadableFile, WritableFile};

#[derive(Debug)]
pub(super) struct SimHandle {
    pub(super) state: Arc<Mutex<State>>,
    pub(super) inode: u64,
    pub(super) generation: u64,
    /// The name it was opened by (for path-scoped faults).
    pub(super) path: PathBuf,
}

impl SimHandle {
    fn with<T>(&self, f: impl FnOnce(&mut State, u64, &Path) -> io::Result<T>) -> io::Result<T> {
        let mut st = self.state.lock();
        if st.generation != self.generation {
            return Err(dead());
        }
        f(&mut st, self.inode, &self.path)
    }
}

#[derive(Debug)]
pub(super) struct SimWritable {
    pub(super) handle: SimHandle,
    /// Logical end: where the next append is written.
    pub(super) len: u64,
}

impl WritableFile for SimWritable {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write_at(self.len, buf)
    }

    fn write_at(&mut self, pos: u64, buf: &[u8]) -> io::Result<()> {
        let at = usize::try_from(pos).unwrap_or(usize::MAX);
        self.handle.with(|st, id, path| {
            let fault = st.op(OpKind::Append, path);
            let inode = st.inodes.entry(id).or_default();
            match fault {
                Some(Due { after: false, kind }) => {
                    write_at(&mut inode.data, at, &buf[..buf.len() / 2]);
                    Err(kind.error())
                }
                due => {
                    write_at(&mut inode.data, at, buf);
                    settle(due)
                }
            }
        })?;
        self.len = self.len.max(pos + buf.len() as u64);
        Ok(())
    }

    fn resume_at(&mut self, len: u64) {
        self.len = len;
    }

    fn preallocate(&mut self, upto: u64) -> io::Result<()> {
        let upto = usize::try_from(upto).unwrap_or(usize::MAX);
        self.handle.with(|st, id, path| {
            let fault = st.op(OpKind::Preallocate, path);
            let inode = st.inodes.entry(id).or_default();
            if inode.data.len() >= upto {
                return settle(fault);
            }
            match fault {
                Some(Due { after: false, kind }) => {
                    let half = inode.data.len() + (upto - inode.data.len()) / 2;
                    inode.data.resize(half, 0);
                    Err(kind.error())
                }
                due => {
                    inode.data.resize(upto, 0);
                    settle(due)
                }
            }
        })
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.handle.with(|st, id, path| {
            let fault = st.op(OpKind::SyncData, path);
            if let Some(Due { after: false, kind }) = fault {
                return Err(kind.error());
            }
            let inode = st.inodes.entry(id).or_default();
            inode.synced = inode.data.clone();
            settle(fault)
        })
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.handle.with(|st, id, path| {
            let fault = st.op(OpKind::Truncate, path);
            if let Some(Due { after: false, kind }) = fault {
                return Err(kind.error());
            }
            let inode = st.inodes.entry(id).or_default();
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            inode.data.resize(len, 0);
            settle(fault)
        })?;
        self.len = len;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn allocated(&self) -> u64 {
        self.handle
            .with(|st, id, _| Ok(st.inodes.get(&id).map_or(0, |i| i.data.len() as u64)))
            .unwrap_or(self.len)
    }
}

#[derive(Debug)]
pub(super) struct SimReadable {
    pub(super) handle: SimHandle,
}

impl ReadableFile for SimReadable {
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.handle.with(|st, id, path| {
            settle(st.op(OpKind::Read, path))?;
            let data = st.inodes.get(&id).map_or(&[][..], |i| &i.data[..]);
            let pos = usize::try_from(pos).unwrap_or(usize::MAX).min(data.len());
            let n = buf.len().min(data.len() - pos);
            buf[..n].copy_from_slice(&data[pos..pos + n]);
            Ok(n)
        })
    }

    fn map(&self, len: u64) -> io::Result<Bytes> {
        self.handle.with(|st, id, path| {
            settle(st.op(OpKind::Read, path))?;
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
            .with(|st, id, _| Ok(st.inodes.get(&id).map_or(0, |i| i.data.len() as u64)))
    }
}

#[derive(Debug)]
pub(super) struct SimLock {
    pub(super) state: Arc<Mutex<State>>,
    pub(super) dir: PathBuf,
    pub(super) generation: u64,
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
