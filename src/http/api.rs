//! The management API: workspaces, keys, flows, the request log and the playground.

use bytes::Bytes;
use http::StatusCode;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use crate::http::app::App;
use crate::http::auth::{readable_flow, readable_workspace, Caller};
use crate::http::request::{parse_body, query_param};
use crate::http::response::{api_error, bad_request, no_content, Reply};
use crate::rfc3339;
use crate::store::meta::{
    ApiKeyRecord, FlowRecord, RateLimit, RetentionConfig, Scope, SignatureScheme, Workspace,
};
use crate::store::{
    FlowPatch, NewFlow, NewKey, KEY_ROTATION_GRACE_SECONDS_DEFAULT, KEY_ROTATION_GRACE_SECONDS_MAX,
};

/// `Some(None)` for an explicit `null`, `Some(Some(v))` for a value, `None` when absent.
fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

pub fn flow_json(app: &App, f: &FlowRecord) -> Value {
    let unavailable = app.store.flow_unavailable(&f.id);
    json!({
        "id": f.id,
        "workspaceId": f.workspace_id,
        "name": f.name,
        "webhookId": f.webhook_id,
        "webhookUrl": app.webhook_url(&f.webhook_id),
        "signature": { "scheme": f.signature.scheme },
        "rateLimit": f.rate_limit,
        "dedupWindowSeconds": f.dedup_window_seconds,
        "retention": f.retention,
        "dedupKeyPointer": f.dedup_key_pointer,
        "stripSignatureHeaders": f.strip_signature_headers,
        "createdAt": rfc3339::format_ms(f.created_at_ms),
        "status": if unavailable.is_some() { "unavailable" } else { "ok" },
        "unavailableReason": unavailable,
    })
}

fn key_json(k: &ApiKeyRecord, plaintext: Option<&str>) -> Value {
    let mut v = json!({
        "id": k.id,
        "workspaceId": k.workspace_id,
        "name": k.name,
        "env": k.env,
        "scopes": k.scopes,
        "expiresAt": k.expires_at_ms.map(rfc3339::format_ms),
        "revoked": k.revoked_at_ms.is_some(),
        "createdAt": rfc3339::format_ms(k.created_at_ms),
    });
    if let (Some(p), Some(obj)) = (plaintext, v.as_object_mut()) {
        obj.insert("key".into(), Value::String(p.to_owned()));
    }
    v
}

fn workspace_json(w: &Workspace) -> Value {
    json!({ "id": w.id, "name": w.name, "createdAt": rfc3339::format_ms(w.created_at_ms) })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkspaceBody {
    name: String,
}

pub fn create_workspace(app: &App, caller: &Caller, body: &Bytes) -> Result<Reply, Reply> {
    caller.require_admin()?;
    let b: WorkspaceBody = parse_body(body)?;
    let ws = app.store.create_workspace(&b.name).map_err(api_error)?;
    Ok(Reply::json(StatusCode::CREATED, workspace_json(&ws)))
}

pub fn list_workspaces(app: &App, caller: &Caller) -> Result<Reply, Reply> {
    let all: Vec<Value> = app
        .store
        .workspaces()
        .iter()
        .filter(|w| caller.workspace().is_none_or(|mine| mine == w.id))
        .map(workspace_json)
        .collect();
    Ok(Reply::ok(json!({ "workspaces": all })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
struct KeyBody {
    workspace_id: Option<String>,
    name: String,
    scopes: Option<Vec<Scope>>,
    env: Option<String>,
    expires_at: Option<String>,
}

pub fn create_key(app: &App, caller: &Caller, body: &Bytes) -> Result<Reply, Reply> {
    caller.require_admin()?;
    let b: KeyBody = parse_body(body)?;
    let expires_at_ms = match &b.expires_at {
        None => None,
        Some(t) => Some(
            rfc3339::parse_ms(t)
                .ok_or_else(|| bad_request("expiresAt must be an RFC 3339 time"))?,
        ),
    };
    if expires_at_ms.is_some_and(|t| t <= app.store.now_ms()) {
        return Err(bad_request("expiresAt must be in the future"));
    }
    let (rec, key) = app
        .store
        .create_key(NewKey {
            workspace_id: b.workspace_id,
            name: b.name,
            scopes: b.scopes,
            env: b.env,
            expires_at_ms,
        })
        .map_err(api_error)?;
    Ok(Reply::json(StatusCode::CREATED, key_json(&rec, Some(&key))))
}

pub fn list_keys(app: &App, caller: &Caller) -> Result<Reply, Reply> {
    caller.require_admin()?;
    let keys: Vec<Value> = app.store.keys().iter().map(|k| key_json(k, None)).collect();
    Ok(Reply::ok(json!({ "keys": keys })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
struct RotateBody {
    grace_seconds: Option<u64>,
}

pub fn rotate_key(app: &App, caller: &Caller, id: &str, body: &Bytes) -> Result<Reply, Reply> {
    caller.require_admin()?;
    let b: RotateBody = parse_body(body)?;
    let grace = b
        .grace_seconds
        .unwrap_or(KEY_ROTATION_GRACE_SECONDS_DEFAULT);
    if grace > KEY_ROTATION_GRACE_SECONDS_MAX {
        return Err(bad_request(format!(
            "graceSeconds must be 0..={KEY_ROTATION_GRACE_SECONDS_MAX} (30 days)"
        )));
    }
    let (rec, key) = app.store.rotate_key(id, grace).map_err(api_error)?;
    Ok(Reply::ok(key_json(&rec, Some(&key))))
}

pub fn revoke_key(app: &App, caller: &Caller, id: &str) -> Result<Reply, Reply> {
    caller.require_admin()?;
    app.store.revoke_key(id).map_err(api_error)?;
    Ok(no_content())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureBody {
    scheme: SignatureScheme,
    secret: Option<String>,
}

/// `rateLimit` as a request gives it: the stored type with unknown fields refused.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
struct RateLimitBody {
    per_second: u32,
    burst: u32,
}

impl From<RateLimitBody> for RateLimit {
    fn from(b: RateLimitBody) -> Self {
        Self {
            per_second: b.per_second,
            burst: b.burst,
        }
    }
}

/// `retention` as a request gives it: the stored type with unknown fields refused.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
struct RetentionBody {
    max_age_seconds: Option<u64>,
    max_bytes: Option<u64>,
}

impl From<RetentionBody> for RetentionConfig {
    fn from(b: RetentionBody) -> Self {
        Self {
            max_age_seconds: b.max_age_seconds,
            max_bytes: b.max_bytes,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
struct FlowBody {
    name: Option<String>,
    workspace_id: Option<String>,
    signature: Option<SignatureBody>,
    #[serde(default, deserialize_with = "double_option")]
    rate_limit: Option<Option<RateLimitBody>>,
    dedup_window_seconds: Option<u64>,
    retention: Option<RetentionBody>,
    #[serde(default, deserialize_with = "double_option")]
    dedup_key_pointer: Option<Option<String>>,
    strip_signature_headers: Option<bool>,
}

pub fn create_flow(app: &App, caller: &Caller, body: &Bytes) -> Result<Reply, Reply> {
    caller.require_admin()?;
    let b: FlowBody = parse_body(body)?;
    let (scheme, secret) = b
        .signature
        .map_or((None, None), |s| (Some(s.scheme), s.secret));
    let (rec, secret) = app
        .store
        .create_flow(NewFlow {
            name: b.name.ok_or_else(|| bad_request("name is required"))?,
            workspace_id: b.workspace_id,
            scheme,
            secret,
            rate_limit: b.rate_limit.map(|r| r.map(RateLimit::from)),
            dedup_window_seconds: b.dedup_window_seconds,
            retention: b.retention.map(RetentionConfig::from),
            dedup_key_pointer: b.dedup_key_pointer.flatten(),
            strip_signature_headers: b.strip_signature_headers,
        })
        .map_err(api_error)?;
    let mut v = flow_json(app, &rec);
    if let (Some(secret), Some(sig)) = (
        secret,
        v.get_mut("signature").and_then(Value::as_object_mut),
    ) {
        // Shown this once.
        sig.insert("secret".into(), Value::String(secret));
    }
    Ok(Reply::json(StatusCode::CREATED, v))
}

pub fn list_flows(app: &App, caller: &Caller, query: Option<&str>) -> Result<Reply, Reply> {
    let ws = readable_workspace(caller, query)?;
    let flows: Vec<Value> = app
        .store
        .flow_records(ws.as_deref())
        .iter()
        .map(|f| flow_json(app, f))
        .collect();
    Ok(Reply::ok(json!({ "flows": flows })))
}

pub fn get_flow(app: &App, caller: &Caller, id: &str) -> Result<Reply, Reply> {
    let flow = readable_flow(app, caller, id)?;
    let rec = flow.record();
    Ok(Reply::ok(flow_json(app, &rec)))
}

pub fn patch_flow(app: &App, caller: &Caller, id: &str, body: &Bytes) -> Result<Reply, Reply> {
    caller.require_admin()?;
    let b: FlowBody = parse_body(body)?;
    if b.workspace_id.is_some() {
        return Err(bad_request("a flow cannot move to another workspace"));
    }
    let (scheme, secret) = b
        .signature
        .map_or((None, None), |s| (Some(s.scheme), s.secret));
    let rec = app
        .store
        .update_flow(
            id,
            FlowPatch {
                name: b.name,
                scheme,
                secret,
                rate_limit: b.rate_limit.map(|r| r.map(RateLimit::from)),
                dedup_window_seconds: b.dedup_window_seconds,
                retention: b.retention.map(RetentionConfig::from),
                dedup_key_pointer: b.dedup_key_pointer,
                strip_signature_headers: b.strip_signature_headers,
            },
        )
        .map_err(api_error)?;
    Ok(Reply::ok(flow_json(app, &rec)))
}

pub fn delete_flow(app: &App, caller: &Caller, id: &str) -> Result<Reply, Reply> {
    caller.require_admin()?;
    app.store.delete_flow(id).map_err(api_error)?;
    app.rate.forget(id);
    Ok(no_content())
}

pub async fn requests(
    app: &App,
    caller: &Caller,
    id: &str,
    query: Option<&str>,
) -> Result<Reply, Reply> {
    let flow = readable_flow(app, caller, id)?;
    let limit = match query_param(query, "limit") {
        None => 100,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| bad_request("limit must be 1..=1000"))?,
    };
    let entries = flow.recent_requests(limit).await.map_err(api_error)?;
    let list: Vec<Value> = entries
        .into_iter()
        .map(|(at, e)| {
            json!({
                "receivedAt": rfc3339::format_ms(at),
                "status": e.status,
                "error": e.error,
                "message": e.message,
                "latencyMs": f64::from(e.latency_us) / 1000.0,
                "events": e.events,
                "stored": e.stored,
                "duplicates": e.duplicates,
                "offset": e.first_offset,
                "eventId": e.event_id,
                "test": e.test,
                "count": e.count,
            })
        })
        .collect();
    Ok(Reply::ok(json!({ "requests": list })))
}
