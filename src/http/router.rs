//! Answers a request: looks it up in the route table (`routes.rs`), authenticates
//! `/api` calls, reads the body with its limit and deadline, and dispatches to the
//! handler. Handlers are peers in their own files; this is the only place that knows
//! them all.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::json;

use crate::http::app::App;
use crate::http::auth::{api_caller, Caller};
use crate::http::ingest::{ingest, IngestRequest};
use crate::http::metrics::StoreGauges;
use crate::http::request::{read_body, BodyRead};
use crate::http::response::{bytes_response, not_found, Body, Reply};
use crate::http::routes::{lookup, Handler, Lookup};
use crate::http::{api, dashboard, playground, reads};
use crate::log::WriterStats;

pub use crate::http::routes::ROUTES;

/// A 405 with the methods the route table has for the path in `Allow`.
fn method_not_allowed(allow: &[&str]) -> Response<Body> {
    let mut r = Reply::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not take that method",
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
        r.headers_mut().insert(http::header::ALLOW, v);
    }
    r
}

/// Answers one request.
pub async fn handle<B>(app: Arc<App>, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    if req.version() < http::Version::HTTP_2 {
        return handle_request(app, req).await;
    }
    // HTTP/2: what the answer left unread is drained before it goes out (see
    // `drain_rest`); HTTP/1.1 closes the connection instead, where it must.
    let (parts, body) = req.into_parts();
    let body = crate::http::request::SharedBody::new(body);
    let deadline = app.limits.body_read_timeout;
    let response = handle_request(app, Request::from_parts(parts, body.clone())).await;
    crate::http::request::drain_rest(body, deadline).await;
    response
}

async fn handle_request<B>(app: Arc<App>, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
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
    // HTTP/1.x closes the connection after these answers; HTTP/2 has no such header
    // (the stream ends, the connection serves on).
    let http1 = req.version() < http::Version::HTTP_2;
    let header_count = req.headers().len();
    if header_bytes > app.limits.header_bytes_max || header_count > app.limits.headers_max {
        // The documented bounds on the whole header section, whatever hyper's read
        // buffer (HTTP/1.1) or header-list limit (HTTP/2) let through.
        let mut r = Reply::error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request_header_fields_too_large",
            format!(
                "the request has {header_count} headers taking {header_bytes} bytes; the \
                 limits are {} headers and {} bytes",
                app.limits.headers_max, app.limits.header_bytes_max
            ),
        )
        .into_response();
        if http1 {
            r.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        return r;
    }
    let declared_too_large = declared.is_some_and(|n| n > app.limits.body_bytes_max as u64);
    let mut response = answer(app, req, declared).await;
    if http1 && declared_too_large && response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
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
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let found = lookup(&parts.method, &segments);
    if segments.first() != Some(&"api") {
        return match found {
            Lookup::Found { handler, params } => {
                let open = OpenRequest {
                    parts: &parts,
                    path: &path,
                    params: &params,
                    declared,
                    started,
                };
                open_route(&app, handler, open, body).await
            }
            Lookup::MethodNotAllowed { allow } => method_not_allowed(&allow),
            Lookup::NotFound => not_found("route").into_response(),
        };
    }
    // /api: authenticate first, then read the body, then answer what the table says.
    let caller = match api_caller(&app.store, &parts.headers) {
        Ok(c) => c,
        Err(reply) => return reply.into_response(),
    };
    let limits = &app.limits;
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
    match found {
        Lookup::Found { handler, params } => {
            let call = ApiCall {
                caller: &caller,
                params: &params,
                query: parts.uri.query(),
                parts: &parts,
                body: &body,
            };
            api_dispatch(&app, handler, call).await
        }
        Lookup::MethodNotAllowed { allow } => method_not_allowed(&allow),
        Lookup::NotFound => not_found("route").into_response(),
    }
}

/// A request to a route outside `/api` (no key: webhooks check their own).
struct OpenRequest<'a> {
    parts: &'a Parts,
    path: &'a str,
    params: &'a [&'a str],
    declared: Option<u64>,
    started: Instant,
}

async fn open_route<B>(
    app: &Arc<App>,
    handler: Handler,
    req: OpenRequest<'_>,
    body: B,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    match handler {
        Handler::Dashboard | Handler::Asset => {
            dashboard::serve(req.path, req.parts.method == Method::HEAD)
                .unwrap_or_else(|| not_found("route").into_response())
        }
        Handler::Healthz => Reply::ok(json!({"status": "ok"})).into_response(),
        Handler::Readyz => readyz(app).into_response(),
        Handler::Metrics => metrics(app),
        Handler::Ingest | Handler::IngestBatch => {
            let limits = &app.limits;
            let body = match read_body(
                body,
                limits.body_bytes_max,
                req.declared,
                limits.body_read_timeout,
            )
            .await
            {
                Ok(b) => b,
                Err(reply) => return reply.into_response(),
            };
            let request = IngestRequest {
                webhook_id: req.params.first().copied().unwrap_or(""),
                headers: &req.parts.headers,
                query: req.parts.uri.query(),
                body,
                batch: handler == Handler::IngestBatch,
                playground: false,
                started: req.started,
                source_ip: req
                    .parts
                    .extensions
                    .get::<crate::http::server::Peer>()
                    .map(|p| p.0.ip()),
            };
            ingest(app, request).await.into_response()
        }
        // The table keeps every other handler under /api: `answer` sends those to
        // `api_dispatch`.
        _ => not_found("route").into_response(),
    }
}

/// An authenticated `/api` call with its body read.
struct ApiCall<'a> {
    caller: &'a Caller,
    params: &'a [&'a str],
    query: Option<&'a str>,
    parts: &'a Parts,
    body: &'a Bytes,
}

/// An `/api` handler's answer, as a response (a refusal is an answer too).
fn reply(r: Result<Reply, Reply>) -> Response<Body> {
    match r {
        Ok(reply) | Err(reply) => reply.into_response(),
    }
}

/// A reading handler's answer, which may be a stream (SSE) or preserialised bytes.
fn respond(r: Result<Response<Body>, Reply>) -> Response<Body> {
    r.unwrap_or_else(Reply::into_response)
}

/// One arm per `/api` handler of the route table.
async fn api_dispatch(app: &Arc<App>, handler: Handler, call: ApiCall<'_>) -> Response<Body> {
    let (caller, query, body) = (call.caller, call.query, call.body);
    let p = |i: usize| call.params.get(i).copied().unwrap_or("");
    match handler {
        Handler::CreateWorkspace => reply(api::create_workspace(app, caller, body)),
        Handler::ListWorkspaces => reply(api::list_workspaces(app, caller)),
        Handler::CreateKey => reply(api::create_key(app, caller, body)),
        Handler::ListKeys => reply(api::list_keys(app, caller)),
        Handler::RotateKey => reply(api::rotate_key(app, caller, p(0), body)),
        Handler::RevokeKey => reply(api::revoke_key(app, caller, p(0))),
        Handler::CreateFlow => reply(api::create_flow(app, caller, body)),
        Handler::ListFlows => reply(api::list_flows(app, caller, query)),
        Handler::GetFlow => reply(api::get_flow(app, caller, p(0))),
        Handler::PatchFlow => reply(api::patch_flow(app, caller, p(0), body)),
        Handler::DeleteFlow => reply(api::delete_flow(app, caller, p(0))),
        Handler::FlowRequests => reply(api::requests(app, caller, p(0), query).await),
        Handler::Playground => reply(playground::playground(app, caller, body).await),
        Handler::Events => respond(reads::events(app, caller, p(0), query)),
        Handler::Event => respond(reads::one_event(app, caller, p(0), p(1))),
        Handler::Poll => respond(reads::poll(app, caller, p(0), p(1), query).await),
        Handler::Commit => respond(reads::commit(app, caller, p(0), p(1), body).await),
        Handler::Seek => respond(reads::seek(app, caller, p(0), p(1), body).await),
        Handler::Consumers => respond(reads::consumers(app, caller, p(0))),
        Handler::DeleteConsumer => respond(reads::delete_consumer(app, caller, p(0), p(1)).await),
        Handler::Stream => respond(reads::stream(app, caller, p(0), query, &call.parts.headers)),
        Handler::FlowAnalytics => respond(reads::analytics(app, caller, p(0), query).await),
        Handler::WorkspaceAnalytics => {
            respond(reads::workspace_analytics(app, caller, query).await)
        }
        // The table keeps these outside /api: `answer` sends them to `open_route`.
        Handler::Dashboard
        | Handler::Asset
        | Handler::Healthz
        | Handler::Readyz
        | Handler::Metrics
        | Handler::Ingest
        | Handler::IngestBatch => not_found("route").into_response(),
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
    let has_flows = app.store.flow_count() > 0;
    let unavailable = app.store.unavailable_flows();
    let poisoned = app.store.poisoned_logs();
    // A flow not open yet (it opens on first use) counts as one that can take events.
    let not_open = app.store.flows_not_open();
    let writable = not_open > 0
        || app
            .store
            .open_flows()
            .iter()
            .any(|flow| flow.health().writable);
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
    let (status, mut body) = if has_flows && !writable {
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
        if not_open > 0 {
            obj.insert("flowsOpening".into(), json!(not_open));
        }
        match &app.cluster {
            Some(durability) => {
                obj.insert("backend".into(), json!("nats"));
                obj.insert("durability".into(), json!(durability.describe()));
            }
            None => {
                obj.insert("backend".into(), json!("local"));
            }
        }
    }
    Reply::json(status, body)
}

fn metrics(app: &App) -> Response<Body> {
    let mut engine = WriterStats::default();
    let mut gauges = StoreGauges {
        flows: app.store.flow_count(),
        flows_unavailable: app.store.unavailable_flows().len(),
        flows_opening: app.store.flows_not_open(),
        ..StoreGauges::default()
    };
    for flow in app.store.open_flows() {
        let stats = flow.stats();
        engine.add(&stats.writer);
        gauges.dedup_keys += stats.dedup_keys as u64;
    }
    if let Some(j) = app.store.journal_stats() {
        engine.add_fsyncs(&j.log);
        gauges.journal = Some(crate::http::metrics::JournalGauges {
            rounds: j.rounds,
            syncs: j.syncs,
            checkpoints: j.checkpoints,
            open_readers: j.open_readers,
            open_writers: j.open_writers,
        });
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
