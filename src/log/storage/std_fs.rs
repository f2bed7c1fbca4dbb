//! The real file system. This file holds the crate's only `unsafe`: the mmaps of files
//! (sealed segments read, active segments written into their reserved zeros).
#![allow(unsafe_code)]

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::{DirLock, ReadableFile, Storage, WritableFile};

/// Mode of every file the engine and the store create: owner read and write only.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory they create: owner only.
pub const DIR_MODE: u32 = 0o700;

/// `std::fs` with mmap reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdStorage;

#[derive(Debug)]
struct StdWritable {
    file: File,
    /// Logical end: where the next append is written.
    len: u64,
    /// Physical end: `len` plus reserved zeros.
    allocated: u64,
    /// Whether writes may go through `map` (`WritableFile::map_writes`).
    mapped_writes: bool,
    /// A shared writable map of the file's first bytes (never past its end), through
    /// which writes into space the file already has are copies, not `pwrite`s.
    map: Option<WriteMap>,
}

/// Most write maps open at once in the process; past it, writes are `pwrite`s. Each map
/// is one kernel mapping (`vm.max_map_count` is 65,530 by default), and the readers'
/// maps of sealed segments count there too.
pub const WRITE_MAPS_MAX: usize = 8192;
static WRITE_MAPS: AtomicUsize = AtomicUsize::new(0);

/// One writable map, counted against `WRITE_MAPS_MAX` while it lives.
#[derive(Debug)]
struct WriteMap {
    map: memmap2::MmapMut,
}

impl WriteMap {
    /// Maps the first `len` bytes of `file`, if the process has a map to spare.
    fn new(file: &File, len: u64) -> Option<Self> {
        let len = usize::try_from(len).ok().filter(|&n| n > 0)?;
        if WRITE_MAPS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < WRITE_MAPS_MAX).then_some(n + 1)
            })
            .is_err()
        {
            return None;
        }
        // SAFETY: the caller maps no byte past the file's current end (it asked the file
        // its length just before). The file only shrinks through `StdWritable::truncate`,
        // which drops this map first; nothing else in the process truncates a segment
        // while its writer has it open (recovery runs before, `repair` never beside a
        // running store, which holds the directory lock). Stores through the map and
        // reads through other descriptors share the page cache, and `fdatasync` writes
        // back pages dirtied through it.
        match unsafe { memmap2::MmapOptions::new().len(len).map_mut(file) } {
            Ok(map) => Some(Self { map }),
            Err(e) => {
                WRITE_MAPS.fetch_sub(1, Ordering::AcqRel);
                tracing::debug!(error = %e, "a segment could not be mapped for writing; pwrite it is");
                None
            }
        }
    }
}

impl Drop for WriteMap {
    fn drop(&mut self) {
        WRITE_MAPS.fetch_sub(1, Ordering::AcqRel);
    }
}

impl StdWritable {
    fn new(file: File, len: u64) -> Self {
        Self {
            file,
            len,
            allocated: len,
            mapped_writes: false,
            map: None,
        }
    }

    /// Copies `buf` to `pos` through the map, if it lies in space the file already has
    /// (its reserved zeros): no syscall, and no inode update per write. False if it
    /// does not, or no map can be had; the caller then writes with `pwrite`.
    fn write_mapped(&mut self, pos: u64, buf: &[u8]) -> bool {
        let Some(end) = pos.checked_add(buf.len() as u64) else {
            return false;
        };
        if !self.mapped_writes || buf.is_empty() || end > self.allocated {
            return false;
        }
        let mapped = self.map.as_ref().map_or(0, |m| m.map.len() as u64);
        if mapped < end {
            self.map = None;
            // Never past the file's real end, whatever `allocated` believes.
            let Ok(file_len) = self.file.metadata().map(|m| m.len()) else {
                return false;
            };
            self.map = WriteMap::new(&self.file, self.allocated.min(file_len));
        }
        let (Some(map), Ok(start), Ok(end)) = (
            self.map.as_mut(),
            usize::try_from(pos),
            usize::try_from(end),
        ) else {
            return false;
        };
        match map.map.get_mut(start..end) {
            Some(dst) => {
                dst.copy_from_slice(buf);
                true
            }
            None => false,
        }
    }
}

/// Zeros written by `preallocate`, a block at a time.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

impl WritableFile for StdWritable {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.write_mapped(self.len, buf) {
            self.len += buf.len() as u64;
            return Ok(());
        }
        // Positional: the file may hold reserved zeros past the logical end.
        let result = self.file.write_all_at(buf, self.len);
        match &result {
            Ok(()) => {
                self.len += buf.len() as u64;
                self.allocated = self.allocated.max(self.len);
            }
            // A short write may have extended the file; learn its real length.
            Err(_) => {
                self.allocated = self.file.metadata().map_or(self.allocated, |m| m.len());
            }
        }
        result
    }
    fn write_at(&mut self, pos: u64, buf: &[u8]) -> io::Result<()> {
        if self.write_mapped(pos, buf) {
            self.len = self.len.max(pos + buf.len() as u64);
            return Ok(());
        }
        let result = self.file.write_all_at(buf, pos);
        if result.is_ok() {
            self.len = self.len.max(pos + buf.len() as u64);
        }
        self.allocated = self.file.metadata().map_or(self.allocated, |m| m.len());
        result
    }
    fn resume_at(&mut self, len: u64) {
        self.len = len;
        self.allocated = self.allocated.max(len);
    }
    fn preallocate(&mut self, upto: u64) -> io::Result<()> {
        while self.allocated < upto {
            let n = usize::try_from(upto - self.allocated)
                .unwrap_or(usize::MAX)
                .min(ZEROS.len());
            if let Err(e) = self.file.write_all_at(&ZEROS[..n], self.allocated) {
                self.allocated = self.file.metadata().map_or(self.allocated, |m| m.len());
                return Err(e);
            }
            self.allocated += n as u64;
        }
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        // No map may outlive the bytes it covers.
        self.map = None;
        self.file.set_len(len)?;
        self.len = len;
        self.allocated = len;
        Ok(())
    }
    fn len(&self) -> u64 {
        self.len
    }
    fn allocated(&self) -> u64 {
        self.allocated
    }
    fn map_writes(&mut self) {
        self.mapped_writes = true;
    }
}

#[derive(Debug)]
struct StdReadable {
    file: File,
}

impl ReadableFile for StdReadable {
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read_at(buf, pos)
    }

    fn map(&self, len: u64) -> io::Result<Bytes> {
        let file_len = self.file.metadata()?.len();
        if len > file_len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("map of {len} bytes asked of a {file_len}-byte file"),
            ));
        }
        if len == 0 {
            return Ok(Bytes::new());
        }
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "map too large"))?;
        // SAFETY: we map only sealed segments, which the engine never writes or truncates
        // again (recovery truncates only the active segment, before any map of it exists),
        // and we map no byte past the file's current end, so no access can fault on a hole
        // or a shrunk file. Deleting the file (retention) leaves the mapping valid.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(&self.file)? };
        Ok(Bytes::from_owner(map))
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

#[derive(Debug)]
struct StdDirLock {
    _file: File,
}

impl DirLock for StdDirLock {}

impl Storage for StdStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        // Owner only: the directories hold events, signing secrets and key hashes.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(FILE_MODE)
            .open(path)?;
        drop(file);
        self.open_append(path)
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        // Read as well as write: a shared writable map needs both.
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(Box::new(StdWritable::new(file, len)))
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        Ok(Arc::new(StdReadable {
            file: File::open(path)?,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn restrict(&self, path: &Path) -> io::Result<bool> {
        let meta = fs::metadata(path)?;
        let want = if meta.is_dir() { DIR_MODE } else { FILE_MODE };
        let mode = meta.permissions().mode() & 0o777;
        if mode & !want == 0 {
            return Ok(false);
        }
        fs::set_permissions(path, fs::Permissions::from_mode(mode & want))?;
        Ok(true)
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn DirLock>> {
        let path: PathBuf = dir.join("LOCK");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(FILE_MODE)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(StdDirLock { _file: file })),
            Err(TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "{} is locked by another process (is another eventmesh running on it?)",
                    dir.display()
                ),
            )),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}
