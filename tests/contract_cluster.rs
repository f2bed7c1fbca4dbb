//! The HTTP contract suites again, on cluster mode: the same test files as in `tests/it`
//! and `tests/contract_h2.rs` (ingestion in contract order, body formats, signatures,
//! reads, consumers, SSE, analytics, reader bounds), not a copy, with every server
//! started as `eventmesh serve --backend nats` on one shared 3-node nats-server cluster
//! (`sync_interval: always`), each under a stream prefix of its own. Where cluster mode
//! differs by design, the test branches on `crate::CLUSTER` and says why. Without
//! nats-server installed the tests run on the local backend and print SKIPPED, unless
//! EVENTMESH_REQUIRE_NATS=1 (set by .ci/run).

/// `common::server::Server::request` speaks HTTP/1.1 here.
const HTTP2: bool = false;
/// `common::server` starts every server on the shared NATS cluster here.
const CLUSTER: bool = true;

mod common;

#[path = "it/http_body_formats.rs"]
mod http_body_formats;
#[path = "it/http_ingest.rs"]
mod http_ingest;
#[path = "it/http_readers.rs"]
mod http_readers;
#[path = "it/http_reads.rs"]
mod http_reads;
#[path = "it/http_signatures.rs"]
mod http_signatures;
