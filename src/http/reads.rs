//! Reading a flow over HTTP: event pages, one event, consumers (poll, commit, seek,
//! list, delete), the SSE live tail, and analytics.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Frame;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::http::api::{parse_body, readable_flow, readable_workspace, store_reply};
use crate::http::app::App;
use crate::http::auth::{query_param, Caller};
use crate::http::response::{bad_request, bytes_response, not_found, Body, Reply};
use crate::log::Offset;
use crate::rfc3339;
use crate::store::analytics::Window;
use crate::store::{Flow, SeekTo, StoredEvent};

/// Most events one page or poll returns.
pub const PAGE_EVENTS_MAX: usize = 1000;
/// SSE frames buffered per client; a client this far behind is dropped (it can resume).
pub const SSE_BUFFER_FRAMES: usize = 1024;
/// SSE heartbeat period (the contract asks for at least every 15 s).
pub const SSE_HEARTBEAT: Duration = Duration::from_secs(10);
/// Events an SSE stream reads per batch from the log.
const SSE_READ_BATCH: usize = 256;

/// Appends one event as JSON to `out`, with the stored payload embedded as is (it was
/// validated as JSON at ingestion and is checksummed on disk). Written by hand: this is
/// the replay hot path.
pub fn write_event_json(out: &mut Vec<u8>, ev: &StoredEvent) {
    use std::io::Write;
    let text = |v: &str| serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into());
    let _ = write!(
        out,
        "{{\"offset\":{},\"eventId\":{},\"event\":{},\"receivedAt\":\"{}\",\"idempotencyKey\":{},\"test\":{},\"payload\":",
        ev.offset.0,
        text(&ev.event_id),
        text(&ev.event_type),
        rfc3339::format_ms(ev.received_at_ms),
        ev.idempotency_key.as_deref().map_or_else(|| "null".to_owned(), text),
        ev.test,
    );
    let first = ev.payload.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| b"{[\"-0123456789tfn".contains(b)) {
        out.extend_from_slice(&ev.payload);
    } else {
        // Never expected (bodies are validated), but never emit invalid JSON either.
        out.extend_from_slice(text(&String::from_utf8_lossy(&ev.payload)).as_bytes());
    }
    out.push(b'}');
}

/// One event as JSON bytes.
pub fn event_json(ev: &StoredEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(ev.payload.len() + 200);
    write_event_json(&mut out, ev);
    out
}

fn events_page(events: &[StoredEvent], extra: &[(&str, Value)]) -> Response<Body> {
    let mut out =
        Vec::with_capacity(events.iter().map(|e| e.payload.len() + 200).sum::<usize>() + 64);
    out.extend_from_slice(b"{\"events\":[");
    for (i, ev) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_event_json(&mut out, ev);
    }
    out.push(b']');
    for (k, v) in extra {
        out.extend_from_slice(format!(",\"{k}\":{v}").as_bytes());
    }
    out.push(b'}');
    bytes_response(
        StatusCode::OK,
        "application/json",
        Bytes::from(out),
        Vec::new(),
    )
}

fn limit_param(
    query: Option<&str>,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, Reply> {
    match query_param(query, name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| bad_request(format!("{name} must be 1..={max}"))),
    }
}

fn offset_param(query: Option<&str>, name: &str) -> Result<Option<Offset>, Reply> {
    query_param(query, name)
        .map(|v| {
            v.parse::<u64>()
                .map(Offset)
                .map_err(|_| bad_request(format!("{name} must be an offset")))
        })
        .transpose()
}

/// Routes the reading endpoints; `None` when the path is not one of them.
pub async fn route(
    app: &Arc<App>,
    caller: &Caller,
    method: &Method,
    segments: &[&str],
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<Response<Body>> {
    let result = match (method, segments) {
        (&Method::GET, ["flows", id, "events"]) => events(app, caller, id, query),
        (&Method::GET, ["flows", id, "events", offset]) => one_event(app, caller, id, offset),
        (&Method::POST, ["flows", id, "consumers", name, "poll"]) => {
            poll(app, caller, id, name, query).await
        }
        (&Method::POST, ["flows", id, "consumers", name, "commit"]) => {
            commit(app, caller, id, name, body).await
        }
        (&Method::POST, ["flows", id, "consumers", name, "seek"]) => {
            seek(app, caller, id, name, body).await
        }
        (&Method::GET, ["flows", id, "consumers"]) => consumers(app, caller, id),
        (&Method::DELETE, ["flows", id, "consumers", name]) => {
            delete_consumer(app, caller, id, name).await
        }
        (&Method::GET, ["flows", id, "stream"]) => stream(app, caller, id, query, headers),
        (&Method::GET, ["flows", id, "analytics"]) => analytics(app, caller, id, query).await,
        (&Method::GET, ["analytics"]) => workspace_analytics(app, caller, query).await,
        (_, ["flows", _, "events"] | ["flows", _, "events", _] | ["flows", _, "consumers"])
        | (_, ["flows", _, "consumers", _] | ["flows", _, "consumers", _, _])
        | (_, ["flows", _, "stream"] | ["flows", _, "analytics"] | ["analytics"]) => {
            Err(Reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this path does not take that method",
            ))
        }
        _ => return None,
    };
    Some(match result {
        Ok(r) => r,
        Err(reply) => reply.into_response(),
    })
}

fn ok(reply: Reply) -> Result<Response<Body>, Reply> {
    Ok(reply.into_response())
}

fn events(
    app: &App,
    caller: &Caller,
    id: &str,
    query: Option<&str>,
) -> Result<Response<Body>, Reply> {
    let flow = readable_flow(app, caller, id)?;
    let limit = limit_param(query, "limit", 100, PAGE_EVENTS_MAX)?;
    let from = match (offset_param(query, "from")?, query_param(query, "since")) {
        (Some(_), Some(_)) => return Err(bad_request("give from or since, not both")),
        (Some(o), None) => o,
        (None, Some(t)) => {
            let ms = rfc3339::parse_ms(&t)
                .ok_or_else(|| bad_request("since must be an RFC 3339 time"))?;
            flow.events()
                .offset_for_timestamp(ms)
                .map_err(|e| store_reply(e.into()))?
        }
        (None, None) => flow.events().first_offset(),
    };
    let kind = query_param(query, "type");
    let (events, next) = flow
        .read_events(from, limit, kind.as_deref())
        .map_err(store_reply)?;
    let end = flow.events().next_offset().0;
    Ok(events_page(
        &events,
        &[("nextOffset", json!(next.0)), ("endOffset", json!(end))],
    ))
}

fn one_event(app: &App, caller: &Caller, id: &str, offset: &str) -> Result<Response<Body>, Reply> {
    let flow = readable_flow(app, caller, id)?;
    let offset = offset
        .parse::<u64>()
        .map_err(|_| bad_request("the offset must be a number"))?;
    match flow.event_at(Offset(offset)).map_err(store_reply)? {
        Some(ev) => Ok(bytes_response(
            StatusCode::OK,
            "application/json",
            Bytes::from(event_json(&ev)),
            Vec::new(),
        )),
        None => Err(not_found("event")),
    }
}

fn consumer_json(name: &str, committed: u64, flow: &Flow) -> Value {
    let first = flow.events().first_offset().0;
    let end = flow.events().next_offset().0;
    json!({ "name": name, "committedOffset": committed, "lag": end.saturating_sub(committed.max(first)) })
}

async fn poll(
    app: &App,
    caller: &Caller,
    id: &str,
    name: &str,
    query: Option<&str>,
) -> Result<Response<Body>, Reply> {
    let flow = readable_flow(app, caller, id)?;
    let max = limit_param(query, "max", 100, PAGE_EVENTS_MAX)?;
    let wait_ms = match query_param(query, "waitMs") {
        None => 0,
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|w| *w <= crate::store::POLL_WAIT_MS_MAX)
            .ok_or_else(|| bad_request("waitMs must be 0..=30000"))?,
    };
    let (events, next) = app
        .store
        .poll(&flow, name, max, wait_ms)
        .await
        .map_err(store_reply)?;
    let committed = flow.consumers.get(name).map(|s| s.offset);
    let end = flow.events().next_offset().0;
    Ok(events_page(
        &events,
        &[
            ("nextOffset", json!(next.0)),
            ("endOffset", json!(end)),
            ("committedOffset", json!(committed)),
        ],
    ))
}

#[derive(Debug, Deserialize)]
struct CommitBody {
    offset: u64,
}

async fn commit(
    app: &App,
    caller: &Caller,
    id: &str,
    name: &str,
    body: &Bytes,
) -> Result<Response<Body>, Reply> {
    let flow = readable_flow(app, caller, id)?;
    let b: CommitBody = parse_body(body)?;
    let state = app
        .store
        .commit(&flow, name, Offset(b.offset))
        .await
        .map_err(store_reply)?;
    ok(Reply::ok(consumer_json(name, state.offset, &flow)))
}

#[derive(Debug, Deserialize)]
struct SeekBody {
    to: Option<String>,
    offset: Option<u64>,
    timestamp: Option<String>,
}

async fn seek(
    app: &App,
    caller: &Caller,
    id: &str,
    name: &str,
    body: &Bytes,
) -> Result<Response<Body>, Reply> {
    let flow = readable_flow(app, caller, id)?;
    let b: SeekBody = parse_body(body)?;
    let to = match (b.to.as_deref(), b.offset, b.timestamp) {
        (Some("earliest"), None, None) => SeekTo::Earliest,
        (Some("latest"), None, None) => SeekTo::Latest,
        (None, Some(o), None) => SeekTo::Offset(Offset(o)),
        (None, None, Some(t)) => SeekTo::Timestamp(
            rfc3339::parse_ms(&t).ok_or_else(|| bad_request("timestamp must be an RFC 3339 time"))?,
        ),
        _ => {
            return Err(bad_request(
                "seek takes {\"to\":\"earliest\"|\"latest\"}, {\"offset\":n} or {\"timestamp\":\"RFC3339\"}",
            ))
        }
    };
    let state = app.store.seek(&flow, name, to).await.map_err(store_reply)?;
    ok(Reply::ok(consumer_json(name, state.offset, &flow)))
}

fn consumers(app: &App, caller: &Caller, id: &str) -> Result<Response<Body>, Reply> {
    let flow = readable_flow(app, caller, id)?;
    let list: Vec<Value> = app
        .store
        .consumers(&flow)
        .into_iter()
        .map(|c| {
            json!({
                "name": c.name,
                "committedOffset": c.committed_offset,
                "lag": c.lag,
                "updatedAt": rfc3339::format_ms(c.updated_at_ms),
            })
        })
        .collect();
    ok(Reply::ok(Value::Array(list)))
}

async fn delete_consumer(
    app: &App,
    caller: &Caller,
    id: &str,
    name: &str,
) -> Result<Response<Body>, Reply> {
    let flow = readable_flow(app, caller, id)?;
    if app
        .store
        .delete_consumer(&flow, name)
        .await
        .map_err(store_reply)?
    {
        ok(crate::http::response::no_content())
    } else {
        Err(not_found("consumer"))
    }
}

fn window_param(query: Option<&str>) -> Result<Window, Reply> {
    let w = query_param(query, "window").unwrap_or_else(|| "24h".into());
    Window::parse(&w).ok_or_else(|| bad_request("window must be 1h, 24h or 7d"))
}

async fn analytics(
    app: &Arc<App>,
    caller: &Caller,
    id: &str,
    query: Option<&str>,
) -> Result<Response<Body>, Reply> {
    let flow = readable_flow(app, caller, id)?;
    let window = window_param(query)?;
    let report = {
        let flow = Arc::clone(&flow);
        tokio::task::spawn_blocking(move || flow.analytics(window))
            .await
            .map_err(|_| {
                Reply::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "analytics task failed",
                )
            })?
            .map_err(store_reply)?
    };
    let mut v = serde_json::to_value(&report).unwrap_or(Value::Null);
    let consumers: Vec<Value> = app
        .store
        .consumers(&flow)
        .into_iter()
        .map(|c| json!({"name": c.name, "lag": c.lag}))
        .collect();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("consumers".into(), Value::Array(consumers));
        for p in ["volume"] {
            if let Some(Value::Array(points)) = obj.get_mut(p) {
                for point in points {
                    if let Some(ms) = point.get("minute").and_then(Value::as_i64) {
                        point["minute"] = Value::String(rfc3339::format_ms(ms));
                    }
                }
            }
        }
    }
    ok(Reply::ok(v))
}

async fn workspace_analytics(
    app: &Arc<App>,
    caller: &Caller,
    query: Option<&str>,
) -> Result<Response<Body>, Reply> {
    let window = window_param(query)?;
    let ws = readable_workspace(caller, query)?;
    let flows: Vec<Arc<Flow>> = app
        .store
        .flow_records(ws.as_deref())
        .iter()
        .filter_map(|f| app.store.flow(&f.id))
        .collect();
    let reports = tokio::task::spawn_blocking(move || {
        flows
            .iter()
            .map(|f| {
                (
                    f.id.clone(),
                    f.record.read().name.clone(),
                    f.analytics(window),
                )
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|_| {
        Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "analytics task failed",
        )
    })?;
    let (mut received, mut accepted, mut duplicates) = (0u64, 0u64, 0u64);
    let mut rejected = serde_json::Map::new();
    let mut per_flow = Vec::new();
    for (id, name, report) in reports {
        let r = report.map_err(store_reply)?;
        received += r.received;
        accepted += r.accepted;
        duplicates += r.duplicates;
        for (status, n) in &r.rejected {
            let total = rejected.get(status).and_then(Value::as_u64).unwrap_or(0) + n;
            rejected.insert(status.clone(), json!(total));
        }
        per_flow.push(json!({
            "flowId": id, "name": name, "received": r.received, "accepted": r.accepted,
            "duplicates": r.duplicates, "successRate": r.success_rate, "latencyMs": r.latency_ms,
        }));
    }
    let success = if received > 0 {
        (accepted + duplicates) as f64 / received as f64
    } else {
        0.0
    };
    ok(Reply::ok(json!({
        "received": received, "accepted": accepted, "duplicates": duplicates, "rejected": rejected,
        "successRate": success, "errorRate": if received > 0 { 1.0 - success } else { 0.0 },
        "flows": per_flow,
    })))
}

/// A response body fed by a channel: the SSE stream.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn sse_frame(ev: &StoredEvent) -> Bytes {
    let mut out = format!(
        "id: {}\nevent: {}\ndata: ",
        ev.offset.0,
        ev.event_type.replace(['\n', '\r'], " ")
    )
    .into_bytes();
    out.extend_from_slice(&event_json(ev));
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Sends `frame` unless the client is this far behind; `false` ends the stream.
fn offer(tx: &mpsc::Sender<Bytes>, frame: Bytes) -> bool {
    if tx.capacity() <= 1 {
        // A slow client: never buffer without bound. Say why, and end; it can resume
        // with Last-Event-ID.
        let _ = tx.try_send(Bytes::from_static(
            b": overflow: the client is too slow; reconnect with Last-Event-ID to resume\nevent: overflow\ndata: {}\n\n",
        ));
        return false;
    }
    tx.try_send(frame).is_ok()
}

fn stream(
    app: &Arc<App>,
    caller: &Caller,
    id: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response<Body>, Reply> {
    let flow = readable_flow(app, caller, id)?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .map(|last| Offset(last + 1));
    let from = match resume {
        Some(o) => o,
        None => offset_param(query, "from")?.unwrap_or_else(|| flow.events().next_offset()),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(SSE_BUFFER_FRAMES);
    let _ = tx.try_send(Bytes::from_static(b": stream open\n\n"));
    tokio::spawn(tail(flow, from, tx));
    let mut response = Response::new(ChannelBody { rx }.boxed());
    let h = response.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    Ok(response)
}

/// Feeds one SSE client: history from `from`, then live events, with heartbeats.
async fn tail(flow: Arc<Flow>, mut from: Offset, tx: mpsc::Sender<Bytes>) {
    let mut end = flow.events().subscribe();
    let mut heartbeat = tokio::time::interval(SSE_HEARTBEAT);
    heartbeat.tick().await;
    loop {
        if tx.is_closed() {
            return;
        }
        let flow2 = Arc::clone(&flow);
        let read =
            tokio::task::spawn_blocking(move || flow2.read_events(from, SSE_READ_BATCH, None))
                .await;
        let Ok(Ok((events, next))) = read else {
            let _ = tx.try_send(Bytes::from_static(
                b"event: error\ndata: {\"error\":\"read_failed\"}\n\n",
            ));
            return;
        };
        for ev in &events {
            if !offer(&tx, sse_frame(ev)) {
                return;
            }
        }
        from = next.max(from);
        if !events.is_empty() {
            continue;
        }
        tokio::select! {
            changed = end.changed() => if changed.is_err() { return },
            _ = heartbeat.tick() => {
                if !offer(&tx, Bytes::from_static(b": heartbeat\n\n")) {
                    return;
                }
            }
            () = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_whose_buffer_is_full_gets_an_overflow_event_and_the_stream_ends() {
        // The SSE producer never waits for a slow client: once its buffer is nearly
        // full, the stream sends one overflow event and stops.
        let (tx, mut rx) = mpsc::channel::<Bytes>(3);
        assert!(offer(&tx, Bytes::from_static(b"one")));
        assert!(offer(&tx, Bytes::from_static(b"two")));
        assert!(
            !offer(&tx, Bytes::from_static(b"three")),
            "the buffer is nearly full"
        );
        assert_eq!(rx.try_recv().ok(), Some(Bytes::from_static(b"one")));
        assert_eq!(rx.try_recv().ok(), Some(Bytes::from_static(b"two")));
        let last = rx.try_recv().expect("the overflow notice");
        assert!(
            String::from_utf8_lossy(&last).contains("\nevent: overflow\n"),
            "{last:?}"
        );
        assert!(rx.try_recv().is_err(), "nothing after the notice");
    }

    #[test]
    fn an_sse_frame_carries_the_offset_the_type_and_the_event() {
        let ev = StoredEvent {
            offset: Offset(7),
            event_id: "evt_x_7".into(),
            event_type: "a\nb".into(),
            received_at_ms: 0,
            idempotency_key: None,
            test: false,
            verified: false,
            payload: Bytes::from_static(b"{\"k\":1}"),
        };
        let frame = String::from_utf8(sse_frame(&ev).to_vec()).expect("utf-8");
        assert!(frame.starts_with("id: 7\nevent: a b\ndata: {"), "{frame}");
        assert!(frame.ends_with("\"payload\":{\"k\":1}}\n\n"), "{frame}");
    }
}
