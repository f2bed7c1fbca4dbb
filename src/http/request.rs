//! What every handler reads from a request: the body (bounded, with a deadline),
//! a JSON body, query parameters (percent-decoded, bounded) and header values.
//! Handlers are peers: each takes these helpers from here, none from another handler.

use std::time::Duration;

use bytes::Bytes;
use http::header::{AsHeaderName, AUTHORIZATION};
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::http::limits::{OVERSIZE_DRAIN_BYTES_MAX, QUERY_BYTES_MAX};
use crate::http::response::{bad_request, Reply};
use crate::log::Offset;

/// The request body as read: whole, or cut off at the size limit.
#[derive(Debug, Clone)]
pub enum BodyRead {
    Complete(Bytes),
    TooLarge,
}

/// Reads a body up to `limit` bytes within `deadline`. Over the limit: `TooLarge`
/// (the rest is drained, up to `OVERSIZE_DRAIN_BYTES_MAX`, and discarded); past the
/// deadline: a 408 reply.
pub async fn read_body<B>(
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
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| ())?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen += data.len() as u64;
            if seen > limit as u64 {
                discard(&mut body, seen).await?;
                return Ok(BodyRead::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
        Ok(BodyRead::Complete(buf.freeze()))
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

/// A request body that the router keeps a handle on after the handler is done with it,
/// so that on HTTP/2 what the handler left unread is read and discarded before the
/// answer goes out (`drain_rest`).
#[derive(Debug)]
pub struct SharedBody<B>(std::sync::Arc<parking_lot::Mutex<B>>);

impl<B> Clone for SharedBody<B> {
    fn clone(&self) -> Self {
        Self(std::sync::Arc::clone(&self.0))
    }
}

impl<B> SharedBody<B> {
    pub fn new(body: B) -> Self {
        Self(std::sync::Arc::new(parking_lot::Mutex::new(body)))
    }
}

impl<B> hyper::body::Body for SharedBody<B>
where
    B: hyper::body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut *self.0.lock()).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.lock().is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.0.lock().size_hint()
    }
}

/// Reads and discards what is left of a body, up to `OVERSIZE_DRAIN_BYTES_MAX` and
/// within `deadline`. On HTTP/2 an answer sent before the request's end makes the server
/// reset the stream, which clients such as curl 7.x report as a framing error instead of
/// showing the answer; draining first lets the request end and the answer arrive whole.
pub async fn drain_rest<B>(mut body: SharedBody<B>, deadline: Duration)
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    if hyper::body::Body::is_end_stream(&body) {
        return;
    }
    let _ = tokio::time::timeout(deadline, discard(&mut body, 0)).await;
}

/// Reads and throws away the rest of `body`, `seen` bytes of it already read, until it
/// ends or passes `OVERSIZE_DRAIN_BYTES_MAX`; `Err` if a frame cannot be read.
async fn discard<B>(body: &mut B, mut seen: u64) -> Result<(), ()>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    while seen <= OVERSIZE_DRAIN_BYTES_MAX {
        let Some(frame) = body.frame().await else {
            return Ok(());
        };
        if let Some(data) = frame.map_err(|_| ())?.data_ref() {
            seen += data.len() as u64;
        }
    }
    Ok(())
}

/// Parses a JSON request body into `T`, or a 400 reply.
pub fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, Reply> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        &body[..]
    };
    serde_json::from_slice(body).map_err(|e| bad_request(format!("invalid JSON body: {e}")))
}

/// A header's value as trimmed, non-empty text (`None` if absent, empty or not text).
pub fn header_str<K: AsHeaderName>(headers: &HeaderMap, name: K) -> Option<&str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Decodes `%XX` and `+` in a query value; `None` if it is not valid UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The value of query parameter `name`, decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let query = query.filter(|q| q.len() <= QUERY_BYTES_MAX)?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v)).flatten()
    })
}

pub fn limit_param(
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

pub fn offset_param(query: Option<&str>, name: &str) -> Result<Option<Offset>, Reply> {
    query_param(query, name)
        .map(|v| {
            v.parse::<u64>()
                .map(Offset)
                .map_err(|_| bad_request(format!("{name} must be an offset")))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_refuses_bad_escapes_and_bad_utf8() {
        assert_eq!(percent_decode("a%20b+c"), Some("a b c".into()));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_decode("%4"), Some("%4".into()));
    }
}
