//! Response building: JSON bodies, the contract's error body, and the body type.

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use crate::store::partition::PartitionError;
use crate::store::StoreError;

/// Every response body: a full buffer or a stream (SSE), boxed.
pub type Body = BoxBody<Bytes, Infallible>;

/// A handler's answer before it becomes a hyper response.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: ReplyBody,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// A reply's JSON body: a value, or bytes already serialised from a typed struct (hot
/// paths that skip building a `Value` tree).
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyBody {
    Value(Value),
    Serialized(Bytes),
}

impl Reply {
    pub fn json(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body: ReplyBody::Value(body),
            headers: Vec::new(),
        }
    }

    pub fn ok(body: Value) -> Self {
        Self::json(StatusCode::OK, body)
    }

    /// 200 with a body serialised straight from a typed value (no `Value` tree).
    pub fn ok_serialize(body: &impl serde::Serialize) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => Self {
                status: StatusCode::OK,
                body: ReplyBody::Serialized(Bytes::from(bytes)),
                headers: Vec::new(),
            },
            Err(e) => Self::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("cannot serialise the answer: {e}"),
            ),
        }
    }

    /// The body as a JSON value, whichever way it is held.
    pub fn body_value(&self) -> Value {
        match &self.body {
            ReplyBody::Value(v) => v.clone(),
            ReplyBody::Serialized(bytes) => serde_json::from_slice(bytes).unwrap_or(Value::Null),
        }
    }

    /// The contract's error body: `{"error": code, "message": message}`.
    pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self::json(status, json!({"error": code, "message": message.into()}))
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The body when held as a value (error bodies always are).
    fn value(&self) -> Option<&Value> {
        match &self.body {
            ReplyBody::Value(v) => Some(v),
            ReplyBody::Serialized(_) => None,
        }
    }

    /// The error code, for a non-2xx reply.
    pub fn error_code(&self) -> Option<&str> {
        self.value()?.get("error").and_then(Value::as_str)
    }

    pub fn message(&self) -> Option<&str> {
        self.value()?.get("message").and_then(Value::as_str)
    }

    pub fn into_response(self) -> Response<Body> {
        if self.status == StatusCode::NO_CONTENT {
            return bytes_response(self.status, "application/json", Bytes::new(), self.headers);
        }
        let bytes = match self.body {
            ReplyBody::Serialized(bytes) => bytes,
            // Serialising a Value cannot fail.
            ReplyBody::Value(v) => Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
        };
        bytes_response(self.status, "application/json", bytes, self.headers)
    }
}

pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).boxed()
}

pub fn bytes_response(
    status: StatusCode,
    content_type: &'static str,
    bytes: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
) -> Response<Body> {
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in headers {
        h.insert(name, value);
    }
    response
}

pub fn no_content() -> Reply {
    Reply::json(StatusCode::NO_CONTENT, Value::Null)
}

pub fn not_found(what: &str) -> Reply {
    Reply::error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("{what} not found"),
    )
}

/// 503 for a quarantined flow: its logs could not be opened. `reason` names the file
/// and the byte position.
pub fn flow_unavailable(id: &str, reason: &str) -> Reply {
    Reply::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "flow_unavailable",
        format!(
            "flow {id} is unavailable: {reason}. Every other flow serves; see `eventmesh check` and `eventmesh repair`"
        ),
    )
}

/// What a failed store call was doing: it decides the words of the answer, never its
/// status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Ingesting events (`/webhooks/...`, the playground).
    Ingest,
    /// Any `/api` call.
    Api,
}

/// The one mapping from a store error to its answer.
pub fn store_error(e: StoreError, attempt: Attempt) -> Reply {
    let what = match attempt {
        Attempt::Ingest => "the event",
        Attempt::Api => "the change",
    };
    if e.is_read_only() {
        let message = match (&e, attempt) {
            (StoreError::Unavailable(m), Attempt::Api) => m.clone(),
            _ => format!("the flow is read-only after a storage failure; {what} was not stored"),
        };
        return Reply::error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
    }
    match e {
        StoreError::NotFound { what } => not_found(what),
        StoreError::Invalid(m) => match attempt {
            Attempt::Ingest => Reply::error(StatusCode::BAD_REQUEST, "invalid_payload", m),
            Attempt::Api => bad_request(m),
        },
        StoreError::Limit(m) => Reply::error(StatusCode::CONFLICT, "limit_reached", m),
        StoreError::Conflict(m) => Reply::error(StatusCode::CONFLICT, "conflict", m),
        StoreError::IdempotencyKeyReused { offset } => Reply::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            format!(
                "this Idempotency-Key was used with a different body (event at offset {offset})"
            ),
        ),
        StoreError::Overloaded => Reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the flow's write queue is full; retry shortly",
        )
        .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("1")),
        StoreError::FlowUnavailable { id, reason } => flow_unavailable(&id, &reason),
        StoreError::Partition(PartitionError::Unreachable(m)) => {
            tracing::warn!(error = %m, "the cluster did not confirm a write");
            Reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!(
                    "the cluster did not confirm {what} in time; retry (with the same \
                     Idempotency-Key, so it is stored once)"
                ),
            )
            .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("1"))
        }
        other => {
            tracing::error!(error = %other, "store call failed");
            Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_error",
                format!("{what} could not be stored"),
            )
        }
    }
}

/// A store error met by an `/api` call.
pub fn api_error(e: StoreError) -> Reply {
    store_error(e, Attempt::Api)
}

/// A store error met while ingesting.
pub fn ingest_error(e: StoreError) -> Reply {
    store_error(e, Attempt::Ingest)
}

pub fn bad_request(message: impl Into<String>) -> Reply {
    Reply::error(StatusCode::BAD_REQUEST, "invalid_request", message)
}

pub fn unauthorized() -> Reply {
    Reply::error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "valid credentials are required (Authorization: Bearer <key> or X-API-Key)",
    )
}

pub fn forbidden(message: impl Into<String>) -> Reply {
    Reply::error(StatusCode::FORBIDDEN, "forbidden", message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::partition::PartitionError;

    fn retry_after(r: &Reply) -> Option<&HeaderValue> {
        r.headers
            .iter()
            .find(|(n, _)| n == http::header::RETRY_AFTER)
            .map(|(_, v)| v)
    }

    #[test]
    fn ingest_and_api_answer_a_store_error_with_the_same_status() {
        // Proves the one mapping: an overloaded or failed log answers 503 (overload with
        // Retry-After) whether an event or a consumer commit met it; only words differ.
        for attempt in [Attempt::Ingest, Attempt::Api] {
            let r = store_error(StoreError::from(PartitionError::Overloaded), attempt);
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{attempt:?}");
            assert_eq!(r.error_code(), Some("unavailable"));
            assert_eq!(retry_after(&r).map(|v| v.as_bytes()), Some(&b"1"[..]));
            let poisoned = PartitionError::ReadOnly("fdatasync failed".into());
            let r = store_error(StoreError::from(poisoned), attempt);
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{attempt:?}");
            assert_eq!(r.error_code(), Some("unavailable"));
            let r = store_error(StoreError::Limit("10,000 flows".into()), attempt);
            assert_eq!(r.status, StatusCode::CONFLICT);
        }
        let r = store_error(StoreError::Invalid("no".into()), Attempt::Ingest);
        assert_eq!(r.error_code(), Some("invalid_payload"));
        let r = store_error(StoreError::Invalid("no".into()), Attempt::Api);
        assert_eq!(r.error_code(), Some("invalid_request"));
    }
}
