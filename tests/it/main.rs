//! The integration tests, as one crate (one harness to compile and link, not one per
//! file). Each module is one area; `common` holds the shared helpers. Three suites stay
//! binaries of their own: `crash_kill9.rs` (kills the server), `faults_os.rs` (strace
//! fault injection) and `dashboard_e2e.rs` (a real browser), so that they can be run,
//! and fail, apart.

/// `common::server::Server::request` speaks HTTP/1.1 here (tests/contract_h2.rs: h2).
const HTTP2: bool = false;
/// `common::server` starts local-backend servers here (tests/contract_cluster.rs: nats).
const CLUSTER: bool = false;

#[path = "../common/mod.rs"]
mod common;

mod cli_check;
mod cli_ops;
mod cluster_partition;
mod cluster_store;
mod codemap;
mod faults_disk;
mod fuzz_corpus;
mod http_body_formats;
mod http_hardening;
mod http_ingest;
mod http_readers;
mod http_reads;
mod http_signatures;
mod http_transports;
mod journal_model;
mod log_append_read;
mod log_damage;
mod log_faults;
mod log_golden;
mod log_model;
mod log_recovery;
mod log_retention;
mod openapi_routes;
mod routes_dispatch;
mod storage_std;
mod store_analytics;
mod store_backends;
mod store_consumers;
mod store_damage;
mod store_ingest;
mod store_many_flows;
mod store_meta;
mod store_opening;
mod store_retention;
