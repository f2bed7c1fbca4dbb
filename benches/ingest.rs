//! The ingest handler in process: `router::handle` for `POST /webhooks/{id}` with a
//! 256-byte JSON body and a valid API key, without sockets. Two stores:
//! - `disk_never`: a real directory, `--fsync never` (the handler and the write path);
//! - `disk_always`: a real directory, `--fsync always` (one request at a time, so every
//!   request pays a whole fdatasync: the worst case group commit exists to avoid).

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use eventmesh::http::router::handle;
use eventmesh::http::{App, HttpLimits};
use eventmesh::log::FsyncPolicy;
use eventmesh::store::meta::Scope;
use eventmesh::store::{NewFlow, NewKey, Store, StoreConfig};
use http_body_util::Full;

struct Harness {
    app: Arc<App>,
    path: String,
    key: String,
    _dir: tempfile::TempDir,
}

fn harness(kind: &str) -> Harness {
    let dir = tempfile::tempdir_in(".").expect("tempdir");
    let fsync = if kind == "disk_always" {
        FsyncPolicy::Always
    } else {
        FsyncPolicy::Never
    };
    let store = Store::open(StoreConfig {
        admin_key: Some("bench-admin-key-0123456789abcdef".into()),
        fsync,
        ..StoreConfig::new(dir.path().join("data"))
    })
    .expect("open store");
    let (flow, _) = store
        .create_flow(NewFlow {
            name: "bench".into(),
            rate_limit: Some(None),
            ..NewFlow::default()
        })
        .expect("flow");
    let (_, key) = store
        .create_key(NewKey {
            name: "bench".into(),
            scopes: Some(vec![Scope::Ingest]),
            ..NewKey::default()
        })
        .expect("key");
    let app = Arc::new(App::new(
        store,
        HttpLimits::default(),
        "http://bench".into(),
    ));
    Harness {
        app,
        path: format!("/webhooks/{}", flow.webhook_id),
        key,
        _dir: dir,
    }
}

fn ingest(c: &mut Criterion) {
    let body = Bytes::from(format!(
        "{{\"event\":\"order.created\",\"pad\":\"{}\"}}",
        "x".repeat(222)
    ));
    assert_eq!(body.len(), 256);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("ingest_handler_256B");
    group.throughput(Throughput::Elements(1));
    for kind in ["disk_never", "disk_always"] {
        let h = harness(kind);
        let request = || {
            http::Request::builder()
                .method("POST")
                .uri(h.path.as_str())
                .header("content-type", "application/json")
                .header("x-api-key", h.key.as_str())
                .body(Full::new(body.clone()))
                .expect("request")
        };
        let status = runtime
            .block_on(handle(Arc::clone(&h.app), request()))
            .status();
        assert_eq!(status, 200);
        group.bench_function(kind, |b| {
            b.iter(|| runtime.block_on(handle(Arc::clone(&h.app), request())))
        });
    }
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
