//! The small I/O trait all engine file access goes through.
//!
//! `StdStorage` is the real file system (and the only place with `unsafe`, for mmap).
//! `SimStorage` is an in-memory file system that can lose power: it keeps what was
//! fsynced, drops or tears the rest, and fails the Nth operation on demand. It is built only with the `testing` feature
//! (tests and the fuzz crate turn it on), never into the release binary.

#[cfg(any(test, feature = "testing"))]
mod sim;
mod std_fs;

use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

#[cfg(any(test, feature = "testing"))]
pub use sim::{CrashMode, FaultKind, OpKind, SimStorage, SECTOR_BYTES};
pub use std_fs::StdStorage;

/// A file opened for appending. Writes go to its logical end, `len()`, which may lie
/// before the physical end when zeroed space was reserved with `preallocate`.
pub trait WritableFile: Send + Debug {
    /// Writes all of `buf` at the logical end of the file.
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Writes all of `buf` at `pos` (a `pwrite`), as journal replay does; the logical
    /// end moves to `pos + buf.len()` if that is further.
    fn write_at(&mut self, pos: u64, buf: &[u8]) -> io::Result<()>;
    /// After reopening a file that may hold reserved zeros: its logical end is `len`.
    fn resume_at(&mut self, len: u64);
    /// Writes zeros from the physical end up to `upto` bytes (no-op if the file is
    /// already that long). The logical end does not move. Not durable until `sync_data`.
    fn preallocate(&mut self, upto: u64) -> io::Result<()>;
    /// fdatasync: the data and the length are durable once this returns Ok.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes (logical and physical); later appends start there.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// The logical length: where the next append lands.
    fn len(&self) -> u64;
    /// The physical length: the logical one plus any zeroed space reserved after it.
    fn allocated(&self) -> u64;
    /// From now on, writes into the reserved zeros may be copies through a shared map
    /// instead of `pwrite`s. For files synced seldom (a journaled log's segments, synced
    /// at checkpoints): a copy costs no syscall and no inode update. Not for files synced
    /// every group: each sync write-protects the mapped pages again, and the next write
    /// faults. A no-op where the storage has no maps.
    fn map_writes(&mut self) {}
    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A file opened for reading, shareable between threads.
pub trait ReadableFile: Send + Sync + Debug {
    /// Reads at `pos` into `buf`; returns the bytes read (0 at the end).
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// A read-only view of bytes `[0, len)`, which must lie inside the file.
    /// The real implementation maps the file; the view stays valid after the file is deleted.
    fn map(&self, len: u64) -> io::Result<Bytes>;
    /// The current length of the file.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty now.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A held lock on a directory; dropping it releases the lock.
pub trait DirLock: Send + Sync + Debug {}

/// The file system as the engine sees it.
pub trait Storage: Send + Sync + Debug + 'static {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the entries of `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates an empty file (an existing one is truncated).
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Opens an existing file for appending.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything below it.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// fsync of the directory itself, so created, renamed and removed names are durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    /// Takes away group and other permissions (files 0600, directories 0700 at most).
    /// `Ok(true)` if it changed anything. Storage without permissions does nothing.
    fn restrict(&self, _path: &Path) -> io::Result<bool> {
        Ok(false)
    }
    /// Takes an exclusive lock on `dir` (held by a lock file), or fails at once.
    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn DirLock>>;
}

/// Reads at `pos` until `buf` is full or the file ends; returns the bytes read.
pub fn read_full(file: &dyn ReadableFile, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(pos + done as u64, &mut buf[done..])?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// Reads a whole (small) file.
pub fn read_to_vec(storage: &dyn Storage, path: &Path) -> io::Result<Vec<u8>> {
    let file = storage.open_read(path)?;
    let len = usize::try_from(file.len()?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = file.read_at(done as u64, &mut buf[done..])?;
        if n == 0 {
            buf.truncate(done);
            break;
        }
        done += n;
    }
    Ok(buf)
}

/// Writes a small file atomically and durably: temp file, fdatasync, rename, fsync the directory.
pub fn write_atomic(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    let mut file = storage.create(tmp)?;
    file.append(bytes)?;
    file.sync_data()?;
    drop(file);
    storage.rename(tmp, path)?;
    storage.sync_dir(dir)
}
