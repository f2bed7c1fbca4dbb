//! A flow store on SimStorage with a manual clock, and events to ingest into it.

use std::sync::Arc;

use bytes::Bytes;
use eventmesh::log::storage::{SimStorage, Storage};
use eventmesh::log::ManualClock;
use eventmesh::store::{EventInput, Flow, NewFlow, Store, StoreConfig};

pub use super::ADMIN;

pub fn config_on(storage: Arc<dyn Storage>, clock: Arc<ManualClock>) -> StoreConfig {
    StoreConfig {
        admin_key: Some(ADMIN.into()),
        segment_bytes: 64 * 1024,
        storage,
        clock,
        ..StoreConfig::new("/data")
    }
}

/// The store clock the store tests start at.
pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(1_700_000_000_000))
}

/// The id of a new flow called `name` with the defaults (`new_flow`).
pub fn new_flow_id(store: &Store, name: &str) -> String {
    new_flow(store, name).id().to_owned()
}

pub fn sim_store(sim: &SimStorage, clock: &Arc<ManualClock>) -> Store {
    Store::open(config_on(Arc::new(sim.clone()), Arc::clone(clock))).expect("open store")
}

pub fn event(body: &str, key: Option<&str>) -> EventInput {
    EventInput {
        payload: Bytes::copy_from_slice(body.as_bytes()),
        event_type: "order.created".into(),
        idempotency_key: key.map(str::to_owned),
        strict_key: true,
        verified: None,
        request: None,
        test: false,
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A new flow called `name` with the defaults, open.
pub fn new_flow(store: &Store, name: &str) -> Arc<Flow> {
    let (rec, _) = store
        .create_flow(NewFlow {
            name: name.into(),
            ..NewFlow::default()
        })
        .expect("create flow");
    store.flow(&rec.id).expect("the new flow is open")
}

/// A request-log entry as the ingest handler writes one: `status`, with an error code
/// for a non-2xx, one event of which `stored` were stored and `duplicates` matched.
pub fn request_entry(
    status: u16,
    stored: u32,
    duplicates: u32,
    latency_us: u32,
) -> eventmesh::store::requests::RequestEntry {
    eventmesh::store::requests::RequestEntry {
        status,
        error: (status >= 400).then(|| "invalid_signature".into()),
        message: None,
        latency_us,
        events: 1,
        stored,
        duplicates,
        first_offset: None,
        event_id: None,
        test: false,
        count: 1,
    }
}
