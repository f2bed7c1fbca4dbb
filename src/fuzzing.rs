//! Entry points shared by the cargo-fuzz targets in `fuzz/` and the stable test that
//! replays their corpus (`tests/fuzz_corpus.rs`). Each takes arbitrary bytes and must
//! never panic; each checks the invariants that hold for any input.
#![doc(hidden)]

use std::path::Path;
use std::sync::Arc;

use crate::log::check::check_partition;
use crate::log::record;
use crate::log::storage::SimStorage;
use crate::log::{Log, LogConfig, LogError, Offset};

/// Decodes one frame from arbitrary bytes.
pub fn record_decode(data: &[u8]) {
    if let Ok((frame, len)) = record::decode(data) {
        assert!(len <= data.len(), "a frame longer than its input");
        assert!(len >= record::FRAME_HEADER_BYTES);
        assert_eq!(
            frame.key.len()
                + frame.headers.len()
                + frame.payload.len()
                + record::FRAME_HEADER_BYTES,
            len
        );
        let _ = record::HeaderIter::new(frame.headers).count();
    }
}

/// Recovers a partition whose only segment holds arbitrary bytes: open either refuses
/// it with a corruption error or serves whole records, and `check` agrees with open.
pub fn segment_recovery(data: &[u8]) {
    let sim = SimStorage::new();
    let dir = Path::new("/p");
    sim.set_file_bytes(&dir.join("00000000000000000000.log"), data.to_vec());
    let verdict = check_partition(&sim, dir).map(|c| c.verdict());
    match Log::open_with(dir, LogConfig::default(), Arc::new(sim.clone())) {
        Ok(log) => {
            let records: Result<Vec<_>, LogError> = log.iter_from(Offset(0)).collect();
            let records =
                records.unwrap_or_else(|e| panic!("open accepted what it cannot read: {e}"));
            assert_eq!(records.len() as u64, log.next_offset().0);
            assert!(
                !matches!(verdict, Ok(crate::log::check::Verdict::Corrupt)),
                "check says corrupt, open accepted it"
            );
        }
        Err(LogError::Corruption { .. }) => {
            assert!(
                matches!(verdict, Ok(crate::log::check::Verdict::Corrupt)),
                "open refused what check calls {verdict:?}"
            );
        }
        Err(e) => panic!("open failed with a non-corruption error: {e}"),
    }
}
