//! The HTTP contract suites again, over HTTP/2: the same test files as in `tests/it`
//! (ingestion in contract order, body formats, signatures, reads, consumers, SSE,
//! analytics), not a
//! copy, with `common::server::Server::request` speaking h2c with prior knowledge. What
//! a test does over its own raw socket (a long poll's, an SSE stream's) stays HTTP/1.1.

/// `common::server::Server::request` speaks HTTP/2 in this binary.
const HTTP2: bool = true;
/// `common::server` starts local-backend servers here (tests/contract_cluster.rs: nats).
const CLUSTER: bool = false;

mod common;

#[path = "it/http_body_formats.rs"]
mod http_body_formats;
#[path = "it/http_ingest.rs"]
mod http_ingest;
#[path = "it/http_reads.rs"]
mod http_reads;
#[path = "it/http_signatures.rs"]
mod http_signatures;
