//! The journal's checkpoint file, `<journal>/checkpoint`: every journal record before
//! its offset is durable in its log's own segment, so replay starts there.
//!
//! Layout: `magic "EMJCKPT1"`, `offset: u64 LE`, `crc32 of the first 16 bytes: u32 LE`.
//! Written with `write_atomic` (temp file, fsync, rename, directory fsync).

use std::path::{Path, PathBuf};

use crate::log::storage::{read_to_vec, write_atomic, Storage};
use crate::log::{LogError, Offset};

const MAGIC: &[u8; 8] = b"EMJCKPT1";
const FILE: &str = "checkpoint";

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The checkpointed offset; `None` if there is no checkpoint file yet. A file that is
/// there but does not check is damage, never read as "no checkpoint".
pub fn load(storage: &dyn Storage, dir: &Path) -> Result<Option<Offset>, LogError> {
    let path = path(dir);
    if !storage.exists(&path) {
        return Ok(None);
    }
    let bytes = read_to_vec(storage, &path).map_err(|e| LogError::io("read", &path, e))?;
    let valid = bytes.len() == 20
        && &bytes[..8] == MAGIC
        && crc32fast::hash(&bytes[..16]).to_le_bytes() == bytes[16..20];
    if !valid {
        return Err(LogError::Corruption {
            file: path,
            position: 0,
            reason: "the journal checkpoint does not check (magic, length or CRC)".into(),
        });
    }
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&bytes[8..16]);
    Ok(Some(Offset(u64::from_le_bytes(offset))))
}

/// Records `offset` as the checkpoint, durably.
pub fn save(storage: &dyn Storage, dir: &Path, offset: Offset) -> Result<(), LogError> {
    let mut bytes = Vec::with_capacity(20);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&offset.0.to_le_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let path = path(dir);
    write_atomic(storage, &path, &bytes).map_err(|e| LogError::io("write", &path, e))
}
