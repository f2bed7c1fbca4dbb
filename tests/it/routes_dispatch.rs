//! The route table drives dispatch: in process, through `router::handle`, every route
//! of `ROUTES` reaches a handler with its own method, and any other method on its path
//! answers 405 with the table's methods in `Allow`.

use std::sync::Arc;

use bytes::Bytes;
use eventmesh::http::router::{handle, ROUTES};
use eventmesh::http::{App, HttpLimits};
use eventmesh::log::storage::SimStorage;
use eventmesh::store::{Store, StoreConfig};
use http_body_util::{BodyExt, Full};

use crate::common::ADMIN;

fn app() -> Arc<App> {
    let config = StoreConfig {
        admin_key: Some(ADMIN.into()),
        storage: Arc::new(SimStorage::new()),
        ..StoreConfig::new("/routes")
    };
    let store = Store::open(config).expect("store");
    Arc::new(App::new(
        store,
        HttpLimits::default(),
        "http://routes".into(),
    ))
}

/// A route's path with every `{param}` filled in (`{file}` with a real asset).
fn sample(template: &str) -> String {
    template
        .split('/')
        .map(|p| match p {
            "{file}" => "app.js",
            p if p.starts_with('{') => "x1",
            p => p,
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn call(app: &Arc<App>, method: &str, path: &str) -> (u16, String, Option<String>) {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("request");
    let response = handle(Arc::clone(app), request).await;
    let status = response.status().as_u16();
    let allow = response
        .headers()
        .get(http::header::ALLOW)
        .map(|v| v.to_str().expect("text").to_owned());
    // An SSE stream never ends: its first frame is enough.
    let body = match response.into_body().frame().await {
        Some(Ok(frame)) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    };
    (status, String::from_utf8_lossy(&body).into_owned(), allow)
}

#[test]
fn every_route_reaches_its_handler_and_other_methods_get_405_with_allow() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let app = app();
        for route in ROUTES {
            let path = sample(route.path);
            let (status, body, _) = call(&app, route.method, &path).await;
            assert!(
                status != 405 && !body.contains("route not found"),
                "{} {} did not reach a handler: {status} {body}",
                route.method,
                route.path
            );
            let mut allowed: Vec<&str> = ROUTES
                .iter()
                .filter(|r| r.path == route.path)
                .map(|r| r.method)
                .collect();
            allowed.sort_unstable();
            let (status, body, allow) = call(&app, "PUT", &path).await;
            assert_eq!(status, 405, "PUT {path}: {body}");
            assert!(body.contains("method_not_allowed"), "{body}");
            assert_eq!(
                allow.as_deref(),
                Some(allowed.join(", ").as_str()),
                "{path}"
            );
        }
        let (status, body, _) = call(&app, "GET", "/api/nowhere").await;
        assert_eq!(status, 404);
        assert!(body.contains("route not found"), "{body}");
    });
}
