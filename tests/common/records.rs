//! Records and logs for the engine's tests: a record derived from a number, the
//! check that a stored record holds what was appended, and opening a test log.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use eventmesh::log::storage::SimStorage;
use eventmesh::log::{Log, LogConfig, Offset, Record, RecordInput};

/// A record whose payload, key and type header all derive from `i`.
pub fn rec(i: u64) -> RecordInput {
    RecordInput {
        payload: Bytes::from(format!(
            "{{\"n\":{i},\"pad\":\"{}\"}}",
            "p".repeat((i % 50) as usize)
        )),
        key: (!i.is_multiple_of(3)).then(|| Bytes::from(format!("key-{i}"))),
        headers: vec![("type".into(), Bytes::from(format!("t{}", i % 4)))],
        flags: (i % 2) as u16,
    }
}

/// Asserts a stored record holds exactly what `input` appended.
pub fn assert_same(stored: &Record, input: &RecordInput) {
    assert_eq!(
        stored.payload, input.payload,
        "payload of {}",
        stored.offset
    );
    assert_eq!(stored.key, input.key, "key of {}", stored.offset);
    assert_eq!(stored.flags, input.flags, "flags of {}", stored.offset);
    let headers: Vec<(String, Bytes)> = stored
        .headers()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                Bytes::copy_from_slice(v),
            )
        })
        .collect();
    assert_eq!(headers, input.headers, "headers of {}", stored.offset);
}

/// Every record from `from` to the end.
pub fn read_all(log: &Log, from: Offset) -> Vec<Record> {
    log.iter_from(from)
        .collect::<Result<Vec<_>, _>>()
        .expect("read the whole log")
}

pub fn tiny(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        ..LogConfig::default()
    }
}

pub fn open_sim(sim: &SimStorage, config: LogConfig) -> Log {
    Log::open_with("/p", config, Arc::new(sim.clone())).expect("open sim log")
}

pub fn open_dir(dir: &Path, config: LogConfig) -> Log {
    Log::open(dir, config).expect("open log")
}
