//! Replays every committed fuzz input (corpus and past crashes) on the stable toolchain.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for sub in ["corpus", "regressions"] {
        let dir = root.join(sub).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            let data = std::fs::read(&path).expect("read input");
            run(&data);
            n += 1;
        }
    }
    n
}

#[test]
fn record_decode_corpus_never_panics() {
    // Proves every committed input for record decoding passes its invariants.
    assert!(replay("record_decode", eventmesh::fuzzing::record_decode) >= 2);
}

#[test]
fn segment_recovery_corpus_never_panics() {
    // Proves every committed input for segment recovery passes its invariants.
    assert!(replay("segment_recovery", eventmesh::fuzzing::segment_recovery) >= 3);
}

#[test]
fn signature_header_corpus_never_panics() {
    // Proves every committed input for signature-header parsing passes its invariants.
    assert!(replay("signature_headers", eventmesh::fuzzing::signature_headers) >= 3);
}

#[test]
fn http_request_corpus_never_panics() {
    // Proves every committed input for the whole request handler gets an answer.
    assert!(replay("http_request", eventmesh::fuzzing::http_request) >= 4);
}
