//! The real file system. This file holds the crate's only `unsafe`: the mmap of a file.
#![allow(unsafe_code)]

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
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
}

/// Zeros written by `preallocate`, a block at a time.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

impl WritableFile for StdWritable {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
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
        let file = OpenOptions::new().write(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(Box::new(StdWritable {
            file,
            len,
            allocated: len,
        }))
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
