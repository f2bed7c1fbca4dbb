//! Routes a request to its handler. Reads bodies with a size limit and a deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;

use crate::http::api;
use crate::http::app::App;
use crate::http::auth::{api_caller, Caller};
use crate::http::dashboard;
use crate::http::ingest::{ingest, BodyRead, IngestRequest};
use crate::http::metrics::StoreGauges;
use crate::http::reads;
use crate::http::response::{bytes_response, not_found, Body, Reply};
use crate::log::WriterStats;

/// Every route the server answers, as (method, path template). `docs/openapi.yaml` must
/// list each one; a test checks it.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/assets/{file}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/webhooks/{webhookId}"),
    ("POST", "/webhooks/{webhookId}/batch"),
    ("POST", "/api/workspaces"),
    ("GET", "/api/workspaces"),
    ("POST", "/api/keys"),
    ("GET", "/api/keys"),
    ("POST", "/api/keys/{keyId}/rotate"),
    ("DELETE", "/api/keys/{keyId}"),
    ("POST", "/api/flows"),
    ("GET", "/api/flows"),
    ("GET", "/api/flows/{flowId}"),
    ("PATCH", "/api/flows/{flowId}"),
    ("DELETE", "/api/flows/{flowId}"),
    ("GET", "/api/flows/{flowId}/requests"),
    ("POST", "/api/playground/test"),
    ("GET", "/api/flows/{flowId}/events"),
    ("GET", "/api/flows/{flowId}/events/{offset}"),
    ("POST", "/api/flows/{flowId}/consumers/{name}/poll"),
    ("POST", "/api/flows/{flowId}/consumers/{name}/commit"),
    ("POST", "/api/flows/{flowId}/consumers/{name}/seek"),
    ("GET", "/api/flows/{flowId}/consumers"),
    ("DELETE", "/api/flows/{flowId}/consumers/{name}"),
    ("GET", "/api/flows/{flowId}/stream"),
    ("GET", "/api/flows/{flowId}/analytics"),
    ("GET", "/api/analytics"),
];

/// Bytes of an oversize body read and thrown away before answering 413, so that the
/// client, still sending, reads our answer instead of a connection reset.
pub const OVERSIZE_DRAIN_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Reads a body up to `limit` bytes within `deadline`. Over the limit: `TooLarge`
/// (the rest is drained, up to `OVERSIZE_DRAIN_BYTES_MAX`, and discarded); past the
/// deadline: a 408 reply.
async fn read_body<B>(
    mut body: B,
    limit: usize,
    declared: Option<u64>,
    deadline: Duration,
) -> Result<BodyRead, Reply>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let read = async {
        let mut buf = bytes::BytesMut::new();
        let mut seen = 0u64;
        // A declared length over the limit is answered at once, unread: a client that
        // sends it slowly must not hold the connection until the body deadline. The
        // answer closes the connection (`handle`), since the body was not read.
        if declared.is_some_and(|n| n > limit as u64) {
            return Ok(BodyRead::TooLarge);
        }
        let mut too_large = false;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| ())?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen += data.len() as u64;
            if seen > limit as u64 {
                too_large = true;
                buf = bytes::BytesMut::new();
            }
            if seen > OVERSIZE_DRAIN_BYTES_MAX {
                break;
            }
            if !too_large {
                buf.extend_from_slice(&data);
            }
        }
        Ok(if too_large {
            BodyRead::TooLarge
        } else {
            BodyRead::Complete(buf.freeze())
        })
    };
    match tokio::time::timeout(deadline, read).await {
        Err(_) => Err(Reply::error(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the body did not arrive in time",
        )),
        Ok(Ok(b)) => Ok(b),
        Ok(Err(())) => Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body could not be read",
        )),
    }
}

fn method_not_allowed() -> Reply {
    Reply::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not take that method",
    )
}

/// The methods `ROUTES` lists for `path`, for the `Allow` header of a 405.
pub fn allowed_methods(path: &str) -> Vec<&'static str> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut out: Vec<&'static str> = ROUTES
        .iter()
        .filter(|(_, template)| {
            let parts: Vec<&str> = template.trim_start_matches('/').split('/').collect();
            parts.len() == segments.len()
                && parts.iter().zip(&segments).all(|(t, s)| {
                    (t.starts_with('{') && t.ends_with('}') && !s.is_empty()) || t == s
                })
        })
        .map(|(method, _)| *method)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Answers one request. A 405 carries `Allow`, taken from `ROUTES`.
pub async fn handle<B>(app: Arc<App>, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let path = req.uri().path().to_owned();
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri().path_and_query().map_or(0, |p| p.as_str().len())
        + 16;
    if header_bytes > app.limits.header_bytes_max {
        // The documented bound on the whole header section, whatever hyper's read
        // buffer let through.
        let mut r = Reply::error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request_header_fields_too_large",
            format!(
                "the request's headers take {header_bytes} bytes; the limit is {}",
                app.limits.header_bytes_max
            ),
        )
        .into_response();
        r.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        return r;
    }
    let declared_too_large = declared.is_some_and(|n| n > app.limits.body_bytes_max as u64);
    let mut response = answer(app, req, declared).await;
    if declared_too_large && response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        let allow = allowed_methods(&path).join(", ");
        if let Ok(v) = http::HeaderValue::from_str(&allow) {
            response.headers_mut().insert(http::header::ALLOW, v);
        }
    }
    response
}

/// `declared`: the request's Content-Length, parsed once by `handle`.
async fn answer<B>(app: Arc<App>, req: Request<B>, declared: Option<u64>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = parts.method.clone();
    let limits = app.limits.clone();

    if method == Method::GET || method == Method::HEAD {
        if let Some(response) = dashboard::serve(&path, method == Method::HEAD) {
            return response;
        }
    }
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["healthz"]) => return Reply::ok(json!({"status": "ok"})).into_response(),
        (Method::GET, ["readyz"]) => return readyz(&app).into_response(),
        (Method::GET, ["metrics"]) => return metrics(&app),
        (_, ["webhooks", id]) | (_, ["webhooks", id, "batch"]) => {
            if method != Method::POST {
                return method_not_allowed().into_response();
            }
            let batch = segments.len() == 3;
            let body = match read_body(
                body,
                limits.body_bytes_max,
                declared,
                limits.body_read_timeout,
            )
            .await
            {
                Ok(b) => b,
                Err(reply) => return reply.into_response(),
            };
            let request = IngestRequest {
                webhook_id: id,
                headers: &parts.headers,
                query: query.as_deref(),
                body,
                batch,
                playground: false,
                started,
            };
            return ingest(&app, request).await.into_response();
        }
        (_, ["api", ..]) => {}
        _ => return not_found("route").into_response(),
    }

    // /api: authenticate first, then read the body.
    let caller = match api_caller(&app.store, &parts.headers) {
        Ok(c) => c,
        Err(reply) => return reply.into_response(),
    };
    let body = match read_body(
        body,
        limits.body_bytes_max,
        declared,
        limits.body_read_timeout,
    )
    .await
    {
        Ok(BodyRead::Complete(b)) => b,
        Ok(BodyRead::TooLarge) => {
            return Reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body is too large",
            )
            .into_response()
        }
        Err(reply) => return reply.into_response(),
    };
    if let Some(response) = reads::route(
        &app,
        &caller,
        &method,
        &segments[1..],
        query.as_deref(),
        &parts.headers,
        &body,
    )
    .await
    {
        return response;
    }
    let result = api_route(
        &app,
        &caller,
        &method,
        &segments[1..],
        query.as_deref(),
        &body,
    )
    .await;
    match result {
        Ok(reply) | Err(reply) => reply.into_response(),
    }
}

async fn api_route(
    app: &App,
    caller: &Caller,
    method: &Method,
    segments: &[&str],
    query: Option<&str>,
    body: &Bytes,
) -> Result<Reply, Reply> {
    match (method, segments) {
        (&Method::POST, ["workspaces"]) => api::create_workspace(app, caller, body),
        (&Method::GET, ["workspaces"]) => api::list_workspaces(app, caller),
        (&Method::POST, ["keys"]) => api::create_key(app, caller, body),
        (&Method::GET, ["keys"]) => api::list_keys(app, caller),
        (&Method::POST, ["keys", id, "rotate"]) => api::rotate_key(app, caller, id, body),
        (&Method::DELETE, ["keys", id]) => api::revoke_key(app, caller, id),
        (&Method::POST, ["flows"]) => api::create_flow(app, caller, body),
        (&Method::GET, ["flows"]) => api::list_flows(app, caller, query),
        (&Method::GET, ["flows", id]) => api::get_flow(app, caller, id),
        (&Method::PATCH, ["flows", id]) => api::patch_flow(app, caller, id, body),
        (&Method::DELETE, ["flows", id]) => api::delete_flow(app, caller, id),
        (&Method::GET, ["flows", id, "requests"]) => api::requests(app, caller, id, query).await,
        (&Method::POST, ["playground", "test"]) => api::playground(app, caller, body).await,
        (
            _,
            ["workspaces"]
            | ["keys"]
            | ["keys", _]
            | ["keys", _, "rotate"]
            | ["flows"]
            | ["flows", _],
        )
        | (_, ["flows", _, "requests"] | ["playground", "test"]) => Err(method_not_allowed()),
        _ => Err(not_found("route")),
    }
}

fn readyz(app: &App) -> Reply {
    if app.draining() {
        return Reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "shutting down",
        );
    }
    // One damaged flow never makes the node unready: it is listed, and /readyz stays
    // 200 while any flow can take events. Only when none can is the node unready.
    let flows = app.store.flow_records(None);
    let unavailable = app.store.unavailable_flows();
    let poisoned = app.store.poisoned_logs();
    let writable = flows.iter().any(|f| {
        app.store
            .flow(&f.id)
            .is_some_and(|flow| flow.events().poisoned().is_none())
    });
    let listed = json!({
        "unavailableFlows": unavailable
            .iter()
            .map(|(id, reason)| json!({"id": id, "reason": reason}))
            .collect::<Vec<_>>(),
        "poisonedLogs": poisoned
            .iter()
            .map(|(id, log, reason)| json!({"flowId": id, "log": log, "reason": reason}))
            .collect::<Vec<_>>(),
    });
    let (status, mut body) = if !flows.is_empty() && !writable {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "error": "unavailable",
                "message": "read-only: no flow can take events (storage failed or damaged); restart to recover",
            }),
        )
    } else if unavailable.is_empty() && poisoned.is_empty() {
        (StatusCode::OK, json!({"status": "ready"}))
    } else {
        (StatusCode::OK, json!({"status": "degraded"}))
    };
    if let (Some(obj), serde_json::Value::Object(more)) = (body.as_object_mut(), listed) {
        obj.extend(more);
    }
    Reply::json(status, body)
}

fn metrics(app: &App) -> Response<Body> {
    let mut engine = WriterStats::default();
    let records = app.store.flow_records(None);
    let mut gauges = StoreGauges {
        flows: records.len(),
        flows_unavailable: app.store.unavailable_flows().len(),
        ..StoreGauges::default()
    };
    for f in &records {
        if let Some(flow) = app.store.flow(&f.id) {
            engine.add(&flow.events().writer_stats());
            gauges.dedup_keys += flow.dedup_stats().0 as u64;
        }
    }
    let poisoned = app.store.poisoned_logs();
    gauges.logs_poisoned = ["events", "requests", "consumers"]
        .into_iter()
        .map(|kind| (kind, poisoned.iter().filter(|p| p.1 == kind).count()))
        .collect();
    let text = app.metrics.render(&engine, &gauges);
    bytes_response(
        StatusCode::OK,
        "text/plain; version=0.0.4",
        Bytes::from(text),
        Vec::new(),
    )
}
