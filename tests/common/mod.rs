//! Helpers shared by the integration tests (tests/it) and the suites kept apart
//! (crash_kill9.rs, faults_os.rs, dashboard_e2e.rs).
#![allow(dead_code)]

/// The admin key every test server and store is started with.
pub const ADMIN: &str = "test-admin-key-0123456789abcdef";

pub mod journal_model;
pub mod ledger;
pub mod model;
pub mod nats;
pub mod records;
pub mod server;
pub mod store;
pub mod webdriver;

#[allow(unused_imports)]
pub use records::*;

/// A TCP port free on loopback now (the OS's pick; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
