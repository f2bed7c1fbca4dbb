//! What a request says about its events, by the contract's rules: the idempotency key
//! (from `Idempotency-Key`, a sender's delivery id, CloudEvents, the flow's JSON pointer,
//! or Stripe's or Slack's event id) and the event type (body fields or a sender's headers).

use http::header::HeaderName;
use http::HeaderMap;
use serde_json::Value;

use crate::http::request::header_str;
use crate::store::meta::{FlowRecord, SignatureScheme};

// Header names parsed once: a lookup by `&str` parses the name on every call.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Delivery ids of common senders, in the order they are tried.
const DELIVERY_ID_HEADERS: [HeaderName; 4] = [
    HeaderName::from_static("webhook-id"),
    HeaderName::from_static("svix-id"),
    HeaderName::from_static("x-github-delivery"),
    HeaderName::from_static("x-shopify-webhook-id"),
];
const CE_SOURCE: HeaderName = HeaderName::from_static("ce-source");
const CE_ID: HeaderName = HeaderName::from_static("ce-id");
/// Event type headers of common senders, in the order they are tried.
const EVENT_TYPE_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-github-event"),
    HeaderName::from_static("x-shopify-topic"),
    HeaderName::from_static("ce-type"),
];

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The idempotency key, first present of the contract's sources, and whether it came
/// from `Idempotency-Key` (the only source whose reuse with another body is a 422).
/// In a batch, a key from a header names the whole request, so element `i` gets `key#i`.
pub fn idempotency_key(
    record: &FlowRecord,
    headers: &HeaderMap,
    value: &Value,
    batch_index: Option<usize>,
) -> (Option<String>, bool) {
    let per_element = |k: &str| match batch_index {
        Some(i) => format!("{k}#{i}"),
        None => k.to_owned(),
    };
    if let Some(k) = header_str(headers, &IDEMPOTENCY_KEY) {
        return (Some(per_element(k)), true);
    }
    let from_headers = DELIVERY_ID_HEADERS
        .iter()
        .find_map(|h| header_str(headers, h));
    if let Some(k) = from_headers {
        return (Some(per_element(k)), false);
    }
    if let (Some(source), Some(id)) = (header_str(headers, &CE_SOURCE), header_str(headers, &CE_ID))
    {
        return (Some(per_element(&format!("{source} {id}"))), false);
    }
    if let Some(pointer) = &record.dedup_key_pointer {
        if let Some(k) = value.pointer(pointer).and_then(scalar) {
            return (Some(k), false);
        }
    }
    // Senders' own event ids: Stripe's `id`, Slack's `event_id` (the same on each of
    // Slack's retries, which carry `X-Slack-Retry-Num`).
    let own_id = match record.signature.scheme {
        SignatureScheme::Stripe => Some("id"),
        SignatureScheme::Slack => Some("event_id"),
        _ => None,
    };
    if let Some(k) = own_id.and_then(|field| value.get(field)).and_then(scalar) {
        return (Some(k), false);
    }
    (None, false)
}

/// Whether `s` holds a C0 control character or DEL.
pub fn has_control(s: &str) -> bool {
    s.chars().any(|c| c <= '\u{1f}' || c == '\u{7f}')
}

/// The event type: body `event`, body `type`, `X-GitHub-Event`, `X-Shopify-Topic`,
/// `ce-type`, else `unknown`; cut to `max` bytes.
pub fn event_type(value: &Value, headers: &HeaderMap, max: usize) -> String {
    let found = ["event", "type"]
        .iter()
        .find_map(|k| {
            value
                .get(*k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        })
        .or_else(|| {
            EVENT_TYPE_HEADERS
                .iter()
                .find_map(|h| header_str(headers, h).map(str::to_owned))
        })
        .unwrap_or_else(|| "unknown".into());
    let mut end = found.len().min(max);
    while !found.is_char_boundary(end) {
        end -= 1;
    }
    found[..end].to_owned()
}
