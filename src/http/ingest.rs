//! `POST /webhooks/{webhookId}` (and `/batch`): the contract's checks, in its order,
//! then the store's atomic dedup-and-append. The playground calls the same function.
//!
//! In order: (1) unknown webhook, 404; (2) credentials, 401 `invalid_api_key`;
//! (3) signature, 401 `invalid_signature`; (4) rate limit, 429; (5) body, 413/415/400;
//! (6) idempotency, 200 duplicate or 422; (7) append, 200 queued (500/503 if not stored).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderValue, RETRY_AFTER};
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use crate::http::app::App;
use crate::http::auth::presented_key;
use crate::http::body_format::{self, BodyFormatError};
use crate::http::event_fields::{event_type, has_control, idempotency_key};
use crate::http::limits::PLAYGROUND_RATE_LIMIT;
use crate::http::request::BodyRead;
use crate::http::response::{flow_unavailable, ingest_error, Reply};
use crate::http::signature;
use crate::log::limits::RECORD_KEY_BYTES_MAX;
use crate::store::event::event_id;
use crate::store::flow::Flow;
use crate::store::ids::{is_token, WEBHOOK_ID_BYTES, WEBHOOK_PREFIX};
use crate::store::meta::{FlowRecord, Scope, SignatureScheme};
use crate::store::requests::RequestEntry;
use crate::store::{EventInput, IngestOutcome};

/// One ingestion attempt.
#[derive(Debug)]
pub struct IngestRequest<'a> {
    pub webhook_id: &'a str,
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub body: BodyRead,
    pub batch: bool,
    /// Sent by the playground: credentials were checked by `/api`, events are `test`.
    pub playground: bool,
    pub started: Instant,
    /// The client's address (the TCP peer), kept with the event.
    pub source_ip: Option<std::net::IpAddr>,
}

/// What an attempt did, for the request log.
#[derive(Debug, Default)]
struct Tally {
    events: u32,
    stored: u32,
    duplicates: u32,
    first_offset: Option<u64>,
    event_id: Option<String>,
    /// The attempt passed the credential and signature checks (every 2xx has).
    authenticated: bool,
}

fn reject(status: StatusCode, code: &str, message: impl Into<String>) -> Reply {
    Reply::error(status, code, message)
}

/// Runs one ingestion attempt and answers it. Every attempt on a known flow, rejected
/// ones too, is written to the flow's request log before the answer.
pub async fn ingest(app: &App, req: IngestRequest<'_>) -> Reply {
    // 1. The webhook: validated before any lookup.
    let flow = is_token(req.webhook_id, WEBHOOK_PREFIX, WEBHOOK_ID_BYTES)
        .then(|| app.store.flow_by_webhook(req.webhook_id))
        .flatten();
    let Some(flow) = flow else {
        let reply = match app.store.unavailable_by_webhook(req.webhook_id) {
            // Quarantined: nothing is stored, and the sender should retry later.
            Some((id, reason)) => flow_unavailable(&id, &reason),
            None => crate::http::auth::webhook_not_found(),
        };
        note(app, &reply, &req);
        return reply;
    };
    let mut tally = Tally::default();
    let reply = match checked(app, &flow, &req, &mut tally).await {
        Ok(reply) | Err(reply) => reply,
    };
    note(app, &reply, &req);
    let latency_us = u32::try_from(req.started.elapsed().as_micros()).unwrap_or(u32::MAX);
    let mut entry = RequestEntry {
        status: reply.status.as_u16(),
        error: reply.error_code().map(str::to_owned),
        message: None,
        latency_us,
        events: tally.events.max(1),
        stored: tally.stored,
        duplicates: tally.duplicates,
        first_offset: tally.first_offset,
        event_id: tally.event_id,
        test: req.playground,
        count: 1,
    };
    if let Some(m) = reply.message() {
        entry = entry.with_message(m);
    }
    // Rejections before the sender proved who it is are counted per reason and second,
    // so a flood of them cannot push the real senders' entries out of view.
    let recorded = if tally.authenticated {
        flow.record_request(&entry)
    } else {
        flow.record_unauthenticated(entry)
    };
    if let Err(e) = recorded {
        tracing::warn!(flow = %flow.id(), error = %e, "request log write failed");
    }
    reply
}

fn note(app: &App, reply: &Reply, req: &IngestRequest<'_>) {
    let us = u64::try_from(req.started.elapsed().as_micros()).unwrap_or(u64::MAX);
    app.metrics.note_ingest(reply.status.as_u16(), us);
}

async fn checked(
    app: &App,
    flow: &Arc<Flow>,
    req: &IngestRequest<'_>,
    tally: &mut Tally,
) -> Result<Reply, Reply> {
    let record = flow.record();
    let now_ms = app.store.now_ms();
    // 2. Credentials.
    check_credentials(app, &record, req)?;
    // 3. Signature.
    let verified = check_signature(&record, req, now_ms)?;
    tally.authenticated = true;
    // 4. Rate limit (a batch counts its events; an unparsable or oversize one counts as
    // one). Only a batch needs parsing to be counted: a single event is parsed after the
    // limit, so a refused request costs no JSON work.
    let parse = || match &req.body {
        BodyRead::Complete(raw) => Some(
            decoded(app, req, raw)
                .and_then(|json| parse_events(app, req, &json, record.dedup_key_pointer.is_some())),
        ),
        BodyRead::TooLarge => None,
    };
    let early = req.batch.then(parse);
    let count = match &early {
        Some(Some(Ok(v))) => v.len().max(1),
        _ => 1,
    };
    check_rate(app, &record, req.playground, count, now_ms)?;
    // 5. Body: size, encoding, type and JSON.
    let Some(parsed) = early.unwrap_or_else(parse) else {
        return Err(too_large(app));
    };
    if req.batch {
        body_format::format(req.headers, true).map_err(body_error)?;
    }
    let values = parsed?;
    tally.events = u32::try_from(values.len()).unwrap_or(u32::MAX);
    // Slack's URL check is answered on any flow that accepted the request, whatever its
    // scheme, and is not stored.
    if !req.batch {
        if let Some(challenge) = slack_challenge(&values[0].1) {
            return Ok(Reply::ok(json!({ "challenge": challenge })));
        }
    }
    // 6. Idempotency keys and event types.
    let events = event_inputs(app, &record, req, values, verified)?;
    // 7. Append (durable under the configured policy before we answer).
    if app.draining() {
        return Err(reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the server is shutting down",
        ));
    }
    let outcomes = flow.ingest(&events).await.map_err(ingest_error)?;
    Ok(answer(app, flow, &outcomes, req.batch, tally))
}

/// Takes `count` from the flow's rate budget (the playground's own, for a test), or a
/// 429 with `Retry-After`.
fn check_rate(
    app: &App,
    record: &FlowRecord,
    playground: bool,
    count: usize,
    now_ms: i64,
) -> Result<(), Reply> {
    // The playground has a small budget of its own: testing never uses up the real
    // senders' rate limit, and cannot flood the flow either.
    let (bucket, limit) = match playground {
        true => (&app.playground_rate, Some(PLAYGROUND_RATE_LIMIT)),
        false => (&app.rate, record.rate_limit),
    };
    if let Some(limit) = limit {
        let n = u32::try_from(count).unwrap_or(u32::MAX);
        if let Err(retry_s) = bucket.take(&record.id, limit, n, now_ms) {
            app.metrics
                .rate_limited
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(reject(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "the flow's rate limit is exceeded",
            )
            .with_header(RETRY_AFTER, HeaderValue::from(retry_s)));
        }
    }
    Ok(())
}

/// The events to store, each with its idempotency key (and whether it is strict) and
/// its type; a key too long, or a key or type with control characters, is a 400.
fn event_inputs(
    app: &App,
    record: &FlowRecord,
    req: &IngestRequest<'_>,
    values: Vec<(Bytes, Value)>,
    verified: bool,
) -> Result<Vec<EventInput>, Reply> {
    let mut events = Vec::with_capacity(values.len());
    let verified = verified.then(|| record.signature.scheme.name().to_owned());
    let request = crate::http::request_meta::request_json(
        req.headers,
        req.source_ip,
        record.strip_signature_headers,
    );
    for (i, (raw, value)) in values.into_iter().enumerate() {
        let (key, strict) = idempotency_key(record, req.headers, &value, req.batch.then_some(i));
        if key.as_ref().is_some_and(|k| k.len() > RECORD_KEY_BYTES_MAX) {
            return Err(reject(
                StatusCode::BAD_REQUEST,
                "invalid_payload",
                format!("the idempotency key is longer than {RECORD_KEY_BYTES_MAX} bytes"),
            ));
        }
        let event_type = event_type(&value, req.headers, app.limits.event_type_bytes_max);
        // Hygiene only (the log's format is safe against any bytes): no control
        // characters in the two strings that name an event.
        if key.as_deref().is_some_and(has_control) || has_control(&event_type) {
            return Err(invalid_payload(
                "event types and idempotency keys may not hold control characters (U+0000-U+001F, U+007F)",
            ));
        }
        events.push(EventInput {
            payload: raw,
            event_type,
            idempotency_key: key,
            strict_key: strict,
            verified: verified.clone(),
            test: req.playground,
            request: Some(request.clone()),
        });
    }
    Ok(events)
}

fn too_large(app: &App) -> Reply {
    reject(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "the body is larger than {} bytes",
            app.limits.body_bytes_max
        ),
    )
}

fn check_credentials(app: &App, record: &FlowRecord, req: &IngestRequest<'_>) -> Result<(), Reply> {
    let invalid = |m: &str| reject(StatusCode::UNAUTHORIZED, "invalid_api_key", m);
    if req.playground {
        return Ok(());
    }
    match presented_key(req.headers, req.query) {
        Some(key) => match app.store.authenticate(&key) {
            Ok(auth)
                if auth.workspace_id == record.workspace_id
                    && auth.scopes.contains(&Scope::Ingest) =>
            {
                Ok(())
            }
            Ok(_) | Err(_) => Err(invalid("the API key is not valid for this webhook")),
        },
        None if record.signature.scheme != SignatureScheme::None => Ok(()),
        None => Err(invalid(
            "an API key is required (X-API-Key, Authorization: Bearer, or ?api_key=)",
        )),
    }
}

/// The flow's secrets that verify now: the current one and, during a rotation, the previous.
fn secrets(record: &FlowRecord, now_ms: i64) -> Vec<String> {
    let mut out: Vec<String> = record.signature.secret.iter().cloned().collect();
    if let Some(p) = &record.signature.previous {
        if p.valid_until_ms > now_ms {
            out.push(p.secret.clone());
        }
    }
    out
}

fn check_signature(
    record: &FlowRecord,
    req: &IngestRequest<'_>,
    now_ms: i64,
) -> Result<bool, Reply> {
    if record.signature.scheme == SignatureScheme::None {
        return Ok(false);
    }
    let BodyRead::Complete(body) = &req.body else {
        // The signature covers the whole body, which was too large to read.
        return Err(reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is over the size limit, so its signature cannot be checked",
        ));
    };
    let secrets = secrets(record, now_ms);
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    signature::verify(
        record.signature.scheme,
        &refs,
        req.headers,
        body,
        now_ms.div_euclid(1000),
    )
    .map(|()| true)
    .map_err(|e| reject(StatusCode::UNAUTHORIZED, "invalid_signature", e.to_string()))
}

/// The JSON the body stands for: its content coding undone (bounded by the body limit)
/// and its content type turned into JSON (`body_format`), or the 413/415/400 answer.
/// A batch is JSON or NDJSON, which pass through as they are: its type is checked apart,
/// after the rate limit (`checked`), as it always was.
fn decoded(app: &App, req: &IngestRequest<'_>, raw: &Bytes) -> Result<Bytes, Reply> {
    let encoding = body_format::encoding(req.headers).map_err(body_error)?;
    let format = if req.batch {
        body_format::Format::Json
    } else {
        body_format::format(req.headers, false).map_err(body_error)?
    };
    let body = body_format::decode(encoding, raw, app.limits.body_bytes_max).map_err(body_error)?;
    body_format::to_json(format, body).map_err(body_error)
}

fn body_error(e: BodyFormatError) -> Reply {
    use BodyFormatError as E;
    match e {
        E::UnsupportedEncoding(_) => reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            e.to_string(),
        ),
        E::TooLarge(_) => reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            e.to_string(),
        ),
        E::UnsupportedType(_) => reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            e.to_string(),
        ),
        E::Undecodable(..) | E::FormPayload(_) => invalid_payload(e.to_string()),
    }
}

fn invalid_payload(message: impl Into<String>) -> Reply {
    reject(StatusCode::BAD_REQUEST, "invalid_payload", message)
}

/// The top-level fields ingestion looks at. Deserialising into this validates the
/// whole document (unknown fields are checked and skipped) without building a tree.
#[derive(serde::Deserialize)]
struct TopFields {
    event: Option<Value>,
    #[serde(rename = "type")]
    kind: Option<Value>,
    id: Option<Value>,
    challenge: Option<Value>,
    event_id: Option<Value>,
}

/// Validates one JSON document and returns what ingestion needs of it: the whole
/// tree when a JSON pointer must be followed, else only the top-level fields above
/// (no allocation for the rest of the body).
fn parse_doc(raw: &[u8], whole: bool) -> Result<Value, String> {
    // JSON is UTF-8: check it all first (skipped strings are not checked by serde_json).
    let text = std::str::from_utf8(raw).map_err(|e| e.to_string())?;
    // One validator for every flow: depth, surrogates, number range (json_check.rs).
    crate::http::json_check::check(raw).map_err(|e| e.to_string())?;
    // Only an object may take the struct path: serde would also read a struct from an array.
    let object = text.trim_start().starts_with('{');
    if !whole && object {
        if let Ok(top) = serde_json::from_str::<TopFields>(text) {
            let mut v = serde_json::Map::new();
            for (k, field) in [
                ("event", top.event),
                ("type", top.kind),
                ("id", top.id),
                ("challenge", top.challenge),
                ("event_id", top.event_id),
            ] {
                if let Some(field) = field {
                    v.insert(k.into(), field);
                }
            }
            return Ok(Value::Object(v));
        }
    }
    // Not an object, a repeated field, or a pointer to follow: the full parse decides.
    serde_json::from_str::<Value>(text).map_err(|e| e.to_string())
}

/// The events of the body: one for a single event, each element of a batch (a JSON
/// array, or NDJSON lines), as (raw bytes stored, parsed fields).
fn parse_events(
    app: &App,
    req: &IngestRequest<'_>,
    body: &Bytes,
    whole: bool,
) -> Result<Vec<(Bytes, Value)>, Reply> {
    let parse = |raw: &[u8]| {
        parse_doc(raw, whole)
            .map_err(|e| invalid_payload(format!("the body is not valid JSON: {e}")))
    };
    if !req.batch {
        let value = parse(body)?;
        return Ok(vec![(body.clone(), value)]);
    }
    let trimmed = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&[][..], |i| &body[i..]);
    let items: Vec<(Bytes, Value)> = if trimmed.first() == Some(&b'[') {
        // Each element is stored as its own bytes from the array, untouched.
        let raws: Vec<&serde_json::value::RawValue> = serde_json::from_slice(body)
            .map_err(|e| invalid_payload(format!("the batch is not a valid JSON array: {e}")))?;
        raws.into_iter()
            .map(|raw| {
                let bytes = body.slice_ref(raw.get().as_bytes());
                parse(&bytes).map(|v| (bytes, v))
            })
            .collect::<Result<_, _>>()?
    } else {
        let mut out = Vec::new();
        let mut start = 0;
        for (i, line) in body.split(|b| *b == b'\n').enumerate() {
            let end = start + line.len();
            let raw = body.slice(start..end);
            start = end + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let value = parse_doc(&raw, whole).map_err(|e| {
                invalid_payload(format!("NDJSON line {} is not valid JSON: {e}", i + 1))
            })?;
            out.push((raw, value));
        }
        out
    };
    if items.is_empty() {
        return Err(invalid_payload("the batch holds no events"));
    }
    if items.len() > app.limits.batch_events_max {
        return Err(reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "a batch holds at most {} events",
                app.limits.batch_events_max
            ),
        ));
    }
    Ok(items)
}

fn slack_challenge(value: &Value) -> Option<String> {
    (value.get("type")?.as_str()? == "url_verification")
        .then(|| value.get("challenge")?.as_str().map(str::to_owned))
        .flatten()
}

/// One event's answer. Fields in the order `json!` would give (alphabetical), so the
/// bytes are the same as before this was typed.
#[derive(serde::Serialize)]
struct Accepted {
    duplicate: bool,
    #[serde(rename = "eventId")]
    event_id: String,
    offset: u64,
    status: &'static str,
}

#[derive(serde::Serialize)]
struct BatchAccepted {
    results: Vec<Accepted>,
}

fn answer(
    app: &App,
    flow: &Flow,
    outcomes: &[IngestOutcome],
    batch: bool,
    tally: &mut Tally,
) -> Reply {
    let results: Vec<Accepted> = outcomes
        .iter()
        .map(|o| {
            let (offset, duplicate) = match *o {
                IngestOutcome::Stored { offset } => {
                    tally.stored += 1;
                    (offset, false)
                }
                IngestOutcome::Duplicate { offset } | IngestOutcome::KeyReused { offset } => {
                    tally.duplicates += 1;
                    (offset, true)
                }
            };
            let id = event_id(flow.id(), offset);
            if tally.first_offset.is_none() {
                tally.first_offset = Some(offset.0);
                tally.event_id = Some(id.clone());
            }
            Accepted {
                duplicate,
                event_id: id,
                offset: offset.0,
                status: if duplicate { "duplicate" } else { "queued" },
            }
        })
        .collect();
    app.metrics.dedup_hits.fetch_add(
        u64::from(tally.duplicates),
        std::sync::atomic::Ordering::Relaxed,
    );
    app.metrics.events_stored.fetch_add(
        u64::from(tally.stored),
        std::sync::atomic::Ordering::Relaxed,
    );
    if batch {
        return Reply::ok_serialize(&BatchAccepted { results });
    }
    match results.into_iter().next() {
        Some(one) => Reply::ok_serialize(&one),
        None => Reply::ok(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::response::ReplyBody;

    #[test]
    fn typed_answers_serialise_as_the_value_answers_did() {
        // The typed hot path must send the same bytes `json!` built, and the playground
        // must read the same value back.
        let one = Accepted {
            duplicate: false,
            event_id: "evt_ab_5".into(),
            offset: 5,
            status: "queued",
        };
        let reply = Reply::ok_serialize(&one);
        let expected =
            json!({"status": "queued", "eventId": "evt_ab_5", "offset": 5, "duplicate": false});
        assert_eq!(
            reply.body,
            ReplyBody::Serialized(serde_json::to_vec(&expected).expect("json").into())
        );
        assert_eq!(reply.body_value(), expected);
        assert_eq!(reply.error_code(), None);
        let batch = Reply::ok_serialize(&BatchAccepted { results: vec![one] });
        assert_eq!(batch.body_value(), json!({ "results": [expected] }));
    }
}
