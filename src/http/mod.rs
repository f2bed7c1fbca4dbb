//! The HTTP front end on hyper 1.x (no framework): the server, its routes, credentials,
//! signatures, rate limits and metrics. It calls the flow store and nothing below it.

pub mod api;
pub mod app;
pub mod auth;
pub mod body_format;
pub mod connections;
pub mod dashboard;
pub mod event_fields;
pub mod ingest;
pub mod json_check;
pub mod limits;
pub mod metrics;
pub mod playground;
pub mod ratelimit;
pub mod reads;
pub mod request;
pub mod request_meta;
pub mod response;
pub mod router;
pub mod routes;
pub mod server;
pub mod signature;
pub mod tls;
pub mod transport;

pub use app::{App, HttpLimits};
pub use server::{serve, ClusterConfig, ServeConfig, ServeError};
