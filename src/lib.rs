//! EventMesh: a durable append-only event log with a webhook front door.
//!
//! Data flows one way: HTTP ([`http`]) → flow store ([`store`]) → [`log`] → segment files.
//! Each layer knows only the one below it. See `docs/ARCHITECTURE.md`.
//!
//! - [`log`]: the storage engine, one partition per `Log`; knows nothing of HTTP or flows.
//! - [`store`]: flows on the log: metadata, keys, idempotency, consumers, request log, analytics.
//! - [`http`]: the hyper server: ingestion, the API, signatures, rate limits, metrics.
//! - [`cli`]: the `eventmesh` subcommands.
//!
//! Each layer names its bounds in its own `limits` module (`log::limits`,
//! `store::limits`, `http::limits`).

// Library code never unwraps: failures are typed errors (tests may unwrap; clippy.toml).
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod cli;
#[cfg(any(test, feature = "testing"))]
pub mod fuzzing;
pub mod http;
pub mod log;
pub mod rfc3339;
pub mod store;
