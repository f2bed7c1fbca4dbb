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

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The JSON object kept with the event: `{"headers":{…},"contentType":…,"sourceIp":…}`.
pub fn request_json(headers: &HeaderMap, source: Option<IpAddr>, strip_signatures: bool) -> Bytes {
    let mut out = String::with_capacity(512);
    out.push_str("{\"headers\":{");
    let mut kept = 0usize;
    let mut bytes = 0usize;
    let mut truncated = false;
    for name in headers.keys() {
        let n = name.as_str();
        if CREDENTIAL_HEADERS.contains(&n) || (strip_signatures && SIGNATURE_HEADERS.contains(&n)) {
            continue;
        }
        let value: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        let entry = format!("{}:{}", json_string(n), json_string(&value.join(", ")));
        if kept == STORED_HEADERS_MAX || bytes + entry.len() > STORED_HEADER_BYTES_MAX {
            truncated = true;
            break;
        }
        if kept > 0 {
            out.push(',');
        }
        out.push_str(&entry);
        kept += 1;
        bytes += entry.len();
    }
    out.push('}');
    if truncated {
        out.push_str(",\"headersTruncated\":true");
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .map(|mut ct| {
            if ct.len() > CONTENT_TYPE_BYTES_MAX {
                let mut end = CONTENT_TYPE_BYTES_MAX;
                while !ct.is_char_boundary(end) {
                    end -= 1;
                }
                ct.truncate(end);
            }
            ct
        });
    out.push_str(",\"contentType\":");
    out.push_str(&content_type.map_or_else(|| "null".into(), |c| json_string(&c)));
    out.push_str(",\"sourceIp\":");
    out.push_str(&source.map_or_else(|| "null".into(), |ip| json_string(&ip.to_string())));
    out.push('}');
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
