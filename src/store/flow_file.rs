//! A flow's settings at rest: `<data>/flows/<flowId>/flow.json`, one small JSON document
//! per flow, replaced atomically and durably (temp file, fdatasync, rename, directory
//! fsync). Creating, changing or deleting a flow writes only its own file, so the cost
//! of a change does not grow with the number of flows (`meta.json` holds the rest).
//!
//! The file is a flow's commit point. A creation first makes the directory with a
//! `flow.creating` marker in it, then the flow's logs, and writes `flow.json` last (then
//! the marker goes); it removes the directory if anything fails. A directory with the
//! marker and no `flow.json` is a creation a crash cut short: it never took an event (a
//! flow takes none before its file is in), so the next start removes it. A directory
//! with neither is damage: it is quarantined, never removed unasked, since nothing says
//! its files hold nothing. A deletion writes `flow.deleted` first and then removes
//! `flow.json`: a directory with that marker is removed whatever else it holds.
//!
//! Signing secrets are sealed as in `meta.json` (`seal.rs`), bound to `<flowId>/secret`
//! and `<flowId>/previous`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::log::storage::{read_to_vec, write_atomic, Storage};
use crate::store::error::StoreError;
use crate::store::meta::FlowRecord;
use crate::store::seal::Sealer;

pub const FLOW_FILE: &str = "flow.json";
/// Written by a deletion before `flow.json` goes: the directory is to be removed.
pub const FLOW_DELETED_FILE: &str = "flow.deleted";
/// Written by a creation before anything else: until `flow.json` is in, the directory
/// is a creation in progress, which a start removes.
pub const FLOW_CREATING_FILE: &str = "flow.creating";
/// The version this release writes.
pub const FLOW_FILE_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct FlowDocument {
    version: u32,
    #[serde(flatten)]
    flow: FlowRecord,
}

/// What a flow directory holds, as found at start.
#[derive(Debug)]
pub enum Found {
    /// Its settings, secrets opened.
    Flow(Box<FlowRecord>),
    /// `flow.json` is there but cannot be read, parsed or opened: the flow is
    /// quarantined with this reason; its files are left as they are.
    Damaged(String),
    /// Marked deleted, or a creation a crash cut short: remove the directory.
    Deleted,
    /// No `flow.json` and no creation marker: damage. Quarantined, kept.
    Unfinished,
}

/// Writes `record` as its directory's `flow.json`, secrets sealed.
pub fn save(
    storage: &dyn Storage,
    flow_dir: &Path,
    record: &FlowRecord,
    sealer: &Sealer,
) -> Result<(), StoreError> {
    let bytes = encode(record, sealer)?;
    write(storage, flow_dir, &bytes)
}

/// Writes a flow document (`encode`'s bytes, or a cluster registry's) as `flow.json`.
pub fn write(storage: &dyn Storage, flow_dir: &Path, document: &[u8]) -> Result<(), StoreError> {
    let path = flow_dir.join(FLOW_FILE);
    write_atomic(storage, &path, document).map_err(|e| StoreError::io("write", &path, e))
}

/// `record` as a flow document: the bytes of its `flow.json`, secrets sealed.
pub fn encode(record: &FlowRecord, sealer: &Sealer) -> Result<Vec<u8>, StoreError> {
    let mut flow = record.clone();
    each_secret(&mut flow, |context, secret| {
        *secret = sealer.seal(secret, context)?;
        Ok(())
    })?;
    let doc = FlowDocument {
        version: FLOW_FILE_VERSION,
        flow,
    };
    serde_json::to_vec_pretty(&doc).map_err(|e| StoreError::io("encode", Path::new(FLOW_FILE), e))
}

/// A flow document's flow, secrets opened; `what` names where it came from in errors.
pub fn decode(document: &[u8], what: &Path, sealer: &Sealer) -> Result<FlowRecord, StoreError> {
    let mut flow = parse(document, what)?;
    each_secret(&mut flow, |context, secret| {
        *secret = sealer
            .open(secret, context)
            .map_err(|e| damaged(what, format!("the signing secret {context}: {e}")))?;
        Ok(())
    })?;
    Ok(flow)
}

fn parse(bytes: &[u8], path: &Path) -> Result<FlowRecord, StoreError> {
    let doc: FlowDocument = serde_json::from_slice(bytes).map_err(|e| damaged(path, e))?;
    if doc.version != FLOW_FILE_VERSION {
        return Err(damaged(
            path,
            format!(
                "flow file version {} is not {FLOW_FILE_VERSION}",
                doc.version
            ),
        ));
    }
    Ok(doc.flow)
}

/// Reads a flow directory's `flow.json` as stored (secrets still sealed); `Ok(None)` if
/// it has none. For tools that need no secrets (`eventmesh check`).
pub fn load_document(
    storage: &dyn Storage,
    flow_dir: &Path,
) -> Result<Option<FlowRecord>, StoreError> {
    let path = flow_dir.join(FLOW_FILE);
    // Read at once, not checked first: start-up reads one of these per flow.
    let bytes = match read_to_vec(storage, &path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("read", &path, e)),
    };
    let flow = parse(&bytes, &path)?;
    let expected = flow_dir.file_name().and_then(|n| n.to_str());
    if expected != Some(flow.id.as_str()) {
        return Err(damaged(
            &path,
            format!("it names flow {:?}, not its directory", flow.id),
        ));
    }
    Ok(Some(flow))
}

/// What `flow_dir` holds: its flow (secrets opened), or why not.
pub fn find(storage: &dyn Storage, flow_dir: &Path, sealer: &Sealer) -> Found {
    if storage.exists(&flow_dir.join(FLOW_DELETED_FILE)) {
        return Found::Deleted;
    }
    let mut flow = match load_document(storage, flow_dir) {
        Ok(Some(flow)) => flow,
        Ok(None) if storage.exists(&flow_dir.join(FLOW_CREATING_FILE)) => return Found::Deleted,
        Ok(None) => return Found::Unfinished,
        Err(e) => return Found::Damaged(e.to_string()),
    };
    let path = flow_dir.join(FLOW_FILE);
    let opened = each_secret(&mut flow, |context, secret| {
        *secret = sealer
            .open(secret, context)
            .map_err(|e| damaged(&path, format!("the signing secret {context}: {e}")))?;
        Ok(())
    });
    match opened {
        Ok(()) => Found::Flow(Box::new(flow)),
        Err(e) => Found::Damaged(e.to_string()),
    }
}

/// Makes `flow_dir` with its creation marker in it. Not synced: if a crash loses the
/// marker but keeps the directory, the start quarantines it instead of removing it.
pub fn begin_creation(storage: &dyn Storage, flow_dir: &Path) -> Result<(), StoreError> {
    storage
        .create_dir_all(flow_dir)
        .map_err(|e| StoreError::io("create directory", flow_dir, e))?;
    let marker = flow_dir.join(FLOW_CREATING_FILE);
    storage
        .create(&marker)
        .map(drop)
        .map_err(|e| StoreError::io("create", &marker, e))
}

/// Ends a creation once `flow.json` is in: its marker goes (a marker left beside
/// `flow.json` means nothing).
pub fn end_creation(storage: &dyn Storage, flow_dir: &Path) {
    let marker = flow_dir.join(FLOW_CREATING_FILE);
    if let Err(e) = storage.remove(&marker) {
        tracing::warn!(path = %marker.display(), error = %e, "could not remove a creation marker");
    }
}

/// Marks `flow_dir` deleted, durably: the marker first, then `flow.json` goes. From the
/// marker's fsync on, the flow is gone, whatever happens before its files are removed.
pub fn mark_deleted(storage: &dyn Storage, flow_dir: &Path) -> Result<(), StoreError> {
    let marker = flow_dir.join(FLOW_DELETED_FILE);
    write_atomic(storage, &marker, b"").map_err(|e| StoreError::io("write", &marker, e))?;
    let path = flow_dir.join(FLOW_FILE);
    match storage.remove(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            // The marker is in: the flow is deleted all the same.
            tracing::warn!(path = %path.display(), error = %e, "could not remove a deleted flow's file");
        }
        _ => {}
    }
    Ok(())
}

/// Calls `f` on the flow's signing secrets (current and previous) with what each seal
/// is bound to: `<flowId>/secret` or `<flowId>/previous`.
pub(crate) fn each_secret(
    flow: &mut FlowRecord,
    mut f: impl FnMut(&str, &mut String) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let sig = &mut flow.signature;
    if let Some(secret) = sig.secret.as_mut() {
        f(&format!("{}/secret", flow.id), secret)?;
    }
    if let Some(previous) = sig.previous.as_mut() {
        f(&format!("{}/previous", flow.id), &mut previous.secret)?;
    }
    Ok(())
}

fn damaged(path: &Path, message: impl ToString) -> StoreError {
    StoreError::Damaged {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}
