#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| eventmesh::fuzzing::http_request(data));
