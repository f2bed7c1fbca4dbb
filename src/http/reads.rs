//! Reading a flow over HTTP: event pages, one event, consumers (poll, commit, seek,
//! list, delete), the SSE live tail, and analytics.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Frame;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::http::app::App;
use crate::http::auth::{readable_flow, readable_workspace, Caller};
use crate::http::limits::{
    PAGE_BYTES_DEFAULT, PAGE_BYTES_MAX, PAGE_EVENTS_MAX, SSE_BUFFER_FRAMES, SSE_HEARTBEAT,
    SSE_READ_BATCH, SSE_READ_BYTES,
};
use crate::http::request::{limit_param, offset_param, parse_body, query_param};
use crate::http::response::{api_error, bad_request, bytes_response, not_found, Body, Reply};
use crate::log::Offset;
use crate::rfc3339;
use crate::store::analytics::Window;
use crate::store::{ConsumerView, Flow, Page, SeekTo, StoredEvent};

/// Appends one event as JSON to `out`, with the stored payload embedded as is (it was
/// validated as JSON at ingestion and is checksummed on disk). Written by hand: this is
/// the replay hot path.
pub fn write_event_json(out: &mut Vec<u8>, ev: &StoredEvent) {
    use std::io::Write;
    let text = |v: &str| serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into());
    let _ = write!(
        out,
        "{{\"offset\":{},\"eventId\":{},\"event\":{},\"receivedAt\":\"{}\",\"idempotencyKey\":{},\"test\":{},\"verified\":{},",
        ev.offset.0,
        text(&ev.event_id),
        text(&ev.event_type),
        rfc3339::format_ms(ev.received_at_ms),
        ev.idempotency_key.as_deref().map_or_else(|| "null".to_owned(), text),
        ev.test,
        ev.verified.as_deref().map_or_else(|| "null".to_owned(), text),
    );
    // The kept request's fields (`headers`, `contentType`, `sourceIp`), spliced from
    // the stored object; null for an event stored before the request was kept.
    match ev.request.as_deref() {
        Some(obj) if obj.len() >= 2 && obj.starts_with(b"{") && obj.ends_with(b"}") => {
            out.extend_from_slice(&obj[1..obj.len() - 1]);
            out.push(b',');
        }
        _ => out.extend_from_slice(b"\"headers\":null,\"contentType\":null,\"sourceIp\":null,"),
    }
    out.extend_from_slice(b"\"payload\":");
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

fn ok(reply: Reply) -> Result<Response<Body>, Reply> {
    Ok(reply.into_response())
}

pub fn events(
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
            flow.offset_at(ms).map_err(api_error)?
        }
        (None, None) => flow.first(),
    };
    let kind = query_param(query, "type");
    let max_bytes = limit_param(query, "maxBytes", PAGE_BYTES_DEFAULT, PAGE_BYTES_MAX)?;
    let page = flow
        .read_events(from, limit, max_bytes, kind.as_deref())
        .map_err(api_error)?;
    Ok(events_page(
        &page.events,
        &[
            ("nextOffset", json!(page.next.0)),
            ("endOffset", json!(page.end.0)),
        ],
    ))
}

pub fn one_event(
    app: &App,
    caller: &Caller,
    id: &str,
    offset: &str,
) -> Result<Response<Body>, Reply> {
    let flow = readable_flow(app, caller, id)?;
    let offset = offset
        .parse::<u64>()
        .map_err(|_| bad_request("the offset must be a number"))?;
    match flow.event_at(Offset(offset)).map_err(api_error)? {
        Some(ev) => Ok(bytes_response(
            StatusCode::OK,
            "application/json",
            Bytes::from(event_json(&ev)),
            Vec::new(),
        )),
        None => Err(not_found("event")),
    }
}

fn consumer_json(c: &ConsumerView) -> Value {
    json!({ "name": c.name, "committedOffset": c.committed_offset, "lag": c.lag })
}

pub async fn poll(
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
    let max_bytes = limit_param(query, "maxBytes", PAGE_BYTES_DEFAULT, PAGE_BYTES_MAX)?;
    let polled = flow
        .poll(name, max, max_bytes, wait_ms, app.stopping())
        .await
        .map_err(api_error)?;
    Ok(events_page(
        &polled.page.events,
        &[
            ("nextOffset", json!(polled.page.next.0)),
            ("endOffset", json!(polled.page.end.0)),
            ("committedOffset", json!(polled.committed)),
        ],
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitBody {
    offset: u64,
}

pub async fn commit(
    app: &App,
    caller: &Caller,
    id: &str,
    name: &str,
    body: &Bytes,
) -> Result<Response<Body>, Reply> {
    let flow = readable_flow(app, caller, id)?;
    let b: CommitBody = parse_body(body)?;
    let view = flow
        .commit(name, Offset(b.offset))
        .await
        .map_err(api_error)?;
    ok(Reply::ok(consumer_json(&view)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeekBody {
    to: Option<String>,
    offset: Option<u64>,
    timestamp: Option<String>,
}

pub async fn seek(
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
    let view = flow.seek(name, to).await.map_err(api_error)?;
    ok(Reply::ok(consumer_json(&view)))
}

pub fn consumers(app: &App, caller: &Caller, id: &str) -> Result<Response<Body>, Reply> {
    let flow = readable_flow(app, caller, id)?;
    let list: Vec<Value> = flow
        .consumers()
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

pub async fn delete_consumer(
    app: &App,
    caller: &Caller,
    id: &str,
    name: &str,
) -> Result<Response<Body>, Reply> {
    let flow = readable_flow(app, caller, id)?;
    if flow.delete_consumer(name).await.map_err(api_error)? {
        ok(crate::http::response::no_content())
    } else {
        Err(not_found("consumer"))
    }
}

fn window_param(query: Option<&str>) -> Result<Window, Reply> {
    let w = query_param(query, "window").unwrap_or_else(|| "24h".into());
    Window::parse(&w).ok_or_else(|| bad_request("window must be 1h, 24h or 7d"))
}

pub async fn analytics(
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
            .map_err(api_error)?
    };
    let mut v = serde_json::to_value(&report).unwrap_or(Value::Null);
    let consumers: Vec<Value> = flow
        .consumers()
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

pub async fn workspace_analytics(
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
                    f.id().to_owned(),
                    f.record().name.clone(),
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
        let r = report.map_err(api_error)?;
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

/// One SSE frame. The event JSON goes out as one `data:` line per line of it (a
/// pretty-printed body has line breaks, CR, LF or CRLF), so no `data:` line holds a CR
/// or LF; SSE clients join the lines with LF, which is JSON whitespace like the breaks
/// it stands for (a JSON body has no raw line break inside a string).
fn sse_frame(ev: &StoredEvent) -> Bytes {
    let mut out = Vec::with_capacity(ev.payload.len() + 256);
    out.extend_from_slice(
        format!(
            "id: {}\nevent: {}\n",
            ev.offset.0,
            ev.event_type.replace(['\n', '\r'], " ")
        )
        .as_bytes(),
    );
    let data = out.len();
    out.extend_from_slice(b"data: ");
    write_event_json(&mut out, ev);
    // Compact bodies (the usual case) need no second pass or copy.
    if out[data..].iter().any(|&b| b == b'\n' || b == b'\r') {
        let json = out.split_off(data + b"data: ".len());
        out.truncate(data);
        let mut rest = &json[..];
        loop {
            let cut = rest.iter().position(|&b| b == b'\n' || b == b'\r');
            let (line, after) = match cut {
                Some(i) => {
                    let crlf = rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n');
                    (&rest[..i], Some(&rest[i + if crlf { 2 } else { 1 }..]))
                }
                None => (rest, None),
            };
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line);
            match after {
                Some(a) => {
                    out.push(b'\n');
                    rest = a;
                }
                None => break,
            }
        }
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

pub fn stream(
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
        None => offset_param(query, "from")?.unwrap_or_else(|| flow.end()),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(SSE_BUFFER_FRAMES);
    let _ = tx.try_send(Bytes::from_static(b": stream open\n\n"));
    tokio::spawn(tail(flow, from, tx, app.stopping()));
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

/// Sends `frame` once the client has room for it: the stream goes at the client's
/// pace. `false`: the client went away, or the server is stopping.
async fn deliver(
    tx: &mpsc::Sender<Bytes>,
    frame: Bytes,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        sent = tx.send(frame) => sent.is_ok(),
        () = crate::store::stopped(stop) => false,
    }
}

/// Feeds one SSE client: history from `from`, then live events, with heartbeats. The
/// events are read from the log as the client drains them (a read batch of at most
/// `SSE_READ_BYTES`, and `SSE_BUFFER_FRAMES` queued frames), so a subscriber that does
/// not read holds no copy of the log in memory. Ends at once when the server stops.
async fn tail(
    flow: Arc<Flow>,
    mut from: Offset,
    tx: mpsc::Sender<Bytes>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut end = flow.tail();
    let mut heartbeat = tokio::time::interval(SSE_HEARTBEAT);
    heartbeat.tick().await;
    loop {
        if tx.is_closed() || *stop.borrow() {
            return;
        }
        let flow2 = Arc::clone(&flow);
        let read = tokio::task::spawn_blocking(move || {
            flow2.read_events(from, SSE_READ_BATCH, SSE_READ_BYTES, None)
        })
        .await;
        let Ok(Ok(Page { events, next, .. })) = read else {
            let _ = tx.try_send(Bytes::from_static(
                b"event: error\ndata: {\"error\":\"read_failed\"}\n\n",
            ));
            return;
        };
        let got = !events.is_empty();
        for ev in events {
            if !deliver(&tx, sse_frame(&ev), &mut stop).await {
                return;
            }
        }
        from = next.max(from);
        if got {
            continue;
        }
        let beat = tokio::select! {
            changed = end.changed() => if changed.is_err() { return } else { false },
            _ = heartbeat.tick() => true,
            () = tx.closed() => return,
            () = crate::store::stopped(&mut stop) => return,
        };
        if beat && !deliver(&tx, Bytes::from_static(b": heartbeat\n\n"), &mut stop).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_data_line_of_a_frame_holds_a_line_break_whatever_the_body() {
        // Proves the SSE framing: a pretty-printed body (LF, CRLF, bare CR) becomes one
        // data line per line, and the lines joined with LF are the same JSON.
        let body = "{\r\n  \"a\": 1,\n  \"b\": [\r    2\r\n  ]\n}";
        let ev = StoredEvent {
            offset: Offset(3),
            event_id: "evt_x_3".into(),
            event_type: "t".into(),
            received_at_ms: 0,
            idempotency_key: None,
            test: false,
            verified: None,
            request: None,
            payload: Bytes::from(body),
        };
        let frame = String::from_utf8(sse_frame(&ev).to_vec()).expect("utf-8");
        assert!(frame.ends_with("\n\n"), "{frame:?}");
        assert!(!frame.contains('\r'), "{frame:?}");
        let data: Vec<&str> = frame
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        assert_eq!(data.len(), 6, "{frame:?}");
        let joined = data.join("\n");
        let parsed: Value = serde_json::from_str(&joined).expect("the joined data is JSON");
        assert_eq!(parsed["payload"], json!({"a": 1, "b": [2]}));
        assert_eq!(parsed["offset"], 3);
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
            verified: None,
            request: None,
            payload: Bytes::from_static(b"{\"k\":1}"),
        };
        let frame = String::from_utf8(sse_frame(&ev).to_vec()).expect("utf-8");
        assert!(frame.starts_with("id: 7\nevent: a b\ndata: {"), "{frame}");
        assert!(frame.ends_with("\"payload\":{\"k\":1}}\n\n"), "{frame}");
    }
}
