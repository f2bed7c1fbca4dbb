//! `POST /api/playground/test`: runs a payload through a flow's ingestion path in
//! process (signed with the flow's secret when the caller sent no signature), with its
//! own rate budget. No outbound connection is ever made, whatever the URL says.

use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::app::App;
use crate::http::auth::{webhook_not_found, Caller};
use crate::http::ingest::{ingest, IngestRequest};
use crate::http::request::{parse_body, BodyRead};
use crate::http::response::{bad_request, flow_unavailable, Reply};
use crate::http::signature;
use crate::store::meta::SignatureScheme;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
struct PlaygroundBody {
    webhook_url: String,
    payload: Value,
    #[serde(default)]
    headers: serde_json::Map<String, Value>,
}

/// The webhook id in a webhook URL (`…/webhooks/<id>`, query and trailing parts ignored).
fn webhook_id_of(url: &str) -> Option<&str> {
    let rest = &url[url.find("/webhooks/")? + "/webhooks/".len()..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|id| !id.is_empty())
}

/// Runs a payload through the ingestion path of the named webhook, in process: no
/// outbound connection is ever made, whatever the URL's host says.
pub async fn playground(app: &App, caller: &Caller, body: &Bytes) -> Result<Reply, Reply> {
    let b: PlaygroundBody = parse_body(body)?;
    let started = Instant::now();
    let webhook_id = webhook_id_of(&b.webhook_url)
        .ok_or_else(|| bad_request("webhookUrl must contain /webhooks/<id>"))?;
    let flow = app.store.flow_by_webhook(webhook_id).ok_or_else(|| {
        match app.store.unavailable_by_webhook(webhook_id) {
            Some((id, reason)) => flow_unavailable(&id, &reason),
            None => webhook_not_found(),
        }
    })?;
    let record = flow.record();
    caller.may_test(&record.workspace_id)?;
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in &b.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad_request(format!("bad header name {name:?}")))?;
        let text = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        let value = HeaderValue::from_str(&text)
            .map_err(|_| bad_request(format!("bad value for header {name}")))?;
        headers.insert(name, value);
    }
    let payload = Bytes::from(serde_json::to_vec(&b.payload).unwrap_or_default());
    let scheme = record.signature.scheme;
    if scheme != SignatureScheme::None && !has_signature(&headers) {
        // A test sender cannot compute signatures: sign with the flow's current secret.
        if let Some(secret) = &record.signature.secret {
            let now_s = app.store.now_ms().div_euclid(1000);
            let msg_id = format!("msg_playground_{}", started.elapsed().as_nanos());
            for (name, value) in signature::sign(scheme, secret, &payload, now_s, &msg_id) {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(&value),
                ) {
                    headers.insert(n, v);
                }
            }
        }
    }
    let reply = ingest(
        app,
        IngestRequest {
            webhook_id,
            headers: &headers,
            query: None,
            body: if payload.len() > app.limits.body_bytes_max {
                BodyRead::TooLarge
            } else {
                BodyRead::Complete(payload)
            },
            batch: false,
            playground: true,
            started,
            source_ip: None,
        },
    )
    .await;
    Ok(Reply::ok(json!({
        "statusCode": reply.status.as_u16(),
        "response": reply.body_value(),
        "latencyMs": started.elapsed().as_secs_f64() * 1000.0,
    })))
}

fn has_signature(headers: &HeaderMap) -> bool {
    signature::SIGNATURE_HEADERS
        .iter()
        .any(|h| headers.contains_key(*h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_id_is_taken_from_any_url_shape() {
        assert_eq!(
            webhook_id_of("https://x.dev/webhooks/wh_1?a=b"),
            Some("wh_1")
        );
        assert_eq!(webhook_id_of("/webhooks/wh_2/batch"), Some("wh_2"));
        assert_eq!(webhook_id_of("http://169.254.169.254/latest"), None);
        assert_eq!(webhook_id_of("/webhooks/"), None);
    }
}
