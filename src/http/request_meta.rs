//! The request an event came in, as kept with the event (record header `rq`): its
//! headers without credentials, its content type as sent, and its source address.
//!
//! Left out: `Authorization`, `Proxy-Authorization`, `X-API-Key` and `Cookie`
//! (credentials; the `api_key`/`access_token` query values are never kept, as the query
//! is not), and, when the flow asks (`stripSignatureHeaders`), the signature headers.
//! A header sent more than once is kept once, its values joined by `", "` (RFC 9110,
//! 5.3). At most `STORED_HEADERS_MAX` headers and `STORED_HEADER_BYTES_MAX` bytes are
//! kept, in the order they came; past either, the rest are dropped and
//! `headersTruncated` is `true`.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::HeaderMap;

use crate::http::limits::{STORED_HEADERS_MAX, STORED_HEADER_BYTES_MAX};
use crate::http::signature::SIGNATURE_HEADERS;

/// Headers that carry credentials: never stored.
const CREDENTIAL_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "cookie",
];
/// Longest content type kept, in bytes (a longer one is cut at a character boundary).
const CONTENT_TYPE_BYTES_MAX: usize = 1024;

/// Appends `s` as a JSON string (quoted, escaped).
fn push_json_string(out: &mut Vec<u8>, s: &str) {
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// The JSON object kept with the event: `{"headers":{…},"contentType":…,"sourceIp":…}`.
/// Written straight into one buffer: this runs once per ingest request.
pub fn request_json(headers: &HeaderMap, source: Option<IpAddr>, strip_signatures: bool) -> Bytes {
    let mut out: Vec<u8> = Vec::with_capacity(64 + headers.len() * 48);
    out.extend_from_slice(b"{\"headers\":{");
    let start = out.len();
    let mut kept = 0usize;
    let mut truncated = false;
    for name in headers.keys() {
        let n = name.as_str();
        if CREDENTIAL_HEADERS.contains(&n) || (strip_signatures && SIGNATURE_HEADERS.contains(&n)) {
            continue;
        }
        let before = out.len();
        if kept > 0 {
            out.push(b',');
        }
        push_json_string(&mut out, n);
        out.push(b':');
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(one), None) => {
                push_json_string(&mut out, &String::from_utf8_lossy(one.as_bytes()))
            }
            (first, second) => {
                let joined: Vec<String> = first
                    .into_iter()
                    .chain(second)
                    .chain(values)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect();
                push_json_string(&mut out, &joined.join(", "));
            }
        }
        if kept == STORED_HEADERS_MAX || out.len() - start > STORED_HEADER_BYTES_MAX {
            out.truncate(before);
            truncated = true;
            break;
        }
        kept += 1;
    }
    out.push(b'}');
    if truncated {
        out.extend_from_slice(b",\"headersTruncated\":true");
    }
    out.extend_from_slice(b",\"contentType\":");
    match headers.get(CONTENT_TYPE) {
        Some(v) => {
            let ct = String::from_utf8_lossy(v.as_bytes());
            let mut end = ct.len().min(CONTENT_TYPE_BYTES_MAX);
            while !ct.is_char_boundary(end) {
                end -= 1;
            }
            push_json_string(&mut out, &ct[..end]);
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"sourceIp\":");
    match source {
        Some(ip) => push_json_string(&mut out, &ip.to_string()),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(n.as_bytes()).expect("name"),
                http::HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn credentials_are_left_out_and_repeats_joined() {
        let h = map(&[
            ("content-type", "application/json; charset=utf-8"),
            ("authorization", "Bearer secret"),
            ("x-api-key", "pk_live_x"),
            ("cookie", "s=1"),
            ("x-github-event", "push"),
            ("x-hub-signature-256", "sha256=ab"),
            ("accept", "a"),
            ("accept", "b"),
        ]);
        let ip: IpAddr = "203.0.113.7".parse().expect("ip");
        let v: Value = serde_json::from_slice(&request_json(&h, Some(ip), false)).expect("json");
        assert_eq!(
            v,
            json!({
                "headers": {
                    "content-type": "application/json; charset=utf-8",
                    "x-github-event": "push",
                    "x-hub-signature-256": "sha256=ab",
                    "accept": "a, b"
                },
                "contentType": "application/json; charset=utf-8",
                "sourceIp": "203.0.113.7"
            })
        );
        let v: Value = serde_json::from_slice(&request_json(&h, None, true)).expect("json");
        assert!(v["headers"].get("x-hub-signature-256").is_none(), "{v}");
        assert_eq!(v["sourceIp"], Value::Null);
    }

    #[test]
    fn headers_past_the_bounds_are_dropped_and_said_so() {
        let names: Vec<String> = (0..100).map(|i| format!("x-h-{i}")).collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        let v: Value =
            serde_json::from_slice(&request_json(&map(&pairs), None, false)).expect("json");
        assert_eq!(
            v["headers"].as_object().map(|o| o.len()),
            Some(STORED_HEADERS_MAX)
        );
        assert_eq!(v["headersTruncated"], true);
        let big = "x".repeat(3000);
        let pairs = [
            ("x-a", big.as_str()),
            ("x-b", big.as_str()),
            ("x-c", big.as_str()),
        ];
        let kept = request_json(&map(&pairs), None, false);
        let v: Value = serde_json::from_slice(&kept).expect("json");
        assert_eq!(v["headers"].as_object().map(|o| o.len()), Some(2));
        assert_eq!(v["headersTruncated"], true);
        let v: Value = serde_json::from_slice(&request_json(&map(&[("x-a", "1")]), None, false))
            .expect("json");
        assert!(v.get("headersTruncated").is_none());
    }
}
