//! What an ingested body is, before it is an event: its `Content-Encoding` undone
//! (gzip, deflate, br; bounded, so the decoded size counts against the body limit),
//! and its `Content-Type` turned into the JSON that is stored:
//!
//! - JSON (`application/json`, `*/*+json`, any parameters): stored as sent.
//! - `application/x-www-form-urlencoded`: a `payload` field holding JSON is the event
//!   (GitHub's form option, Slack interactivity); else the fields as a JSON object,
//!   a repeated field as an array of its values, in order.
//! - `text/plain` whose body is JSON (Amazon SNS): stored as JSON.
//! - NDJSON, for batches.
//!
//! Signatures are checked over the bytes as received, before any of this (ingest.rs).

use std::io::Read;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::HeaderMap;
use serde_json::{Map, Value};

/// A body's content coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    /// HTTP's `deflate` is the zlib format (RFC 9110, 8.4.1.2); a raw deflate stream,
    /// which some senders send instead, is read too.
    Deflate,
    Brotli,
}

/// What a body is, by its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Ndjson,
    Form,
    /// `text/plain`: accepted when the body is JSON.
    Text,
}

/// Why a body cannot become an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyFormatError {
    /// 415 `unsupported_encoding`.
    #[error("the Content-Encoding {0:?} is not supported (gzip, deflate, br or identity)")]
    UnsupportedEncoding(String),
    /// 413: decoded, the body is over the limit.
    #[error("decoded, the body is larger than {0} bytes")]
    TooLarge(usize),
    /// 400 `invalid_payload`: the coding is broken.
    #[error("the {0} body cannot be decoded: {1}")]
    Undecodable(&'static str, String),
    /// 415 `unsupported_media_type`.
    #[error("{0}")]
    UnsupportedType(String),
    /// 400 `invalid_payload`: the form's `payload` field is not JSON.
    #[error("the form's payload field is not valid JSON: {0}")]
    FormPayload(String),
}

/// The body's content coding; more than one coding, or an unknown one, is refused.
pub fn encoding(headers: &HeaderMap) -> Result<Encoding, BodyFormatError> {
    let mut found = Encoding::Identity;
    for value in headers.get_all(CONTENT_ENCODING) {
        let text = value
            .to_str()
            .map_err(|_| BodyFormatError::UnsupportedEncoding("(not text)".into()))?;
        for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let this = match coding.to_ascii_lowercase().as_str() {
                "identity" => continue,
                "gzip" | "x-gzip" => Encoding::Gzip,
                "deflate" => Encoding::Deflate,
                "br" => Encoding::Brotli,
                _ => return Err(BodyFormatError::UnsupportedEncoding(coding.into())),
            };
            if found != Encoding::Identity {
                return Err(BodyFormatError::UnsupportedEncoding(text.into()));
            }
            found = this;
        }
    }
    Ok(found)
}

/// Undoes `encoding`, reading at most `limit + 1` decoded bytes: a body that decodes to
/// more than `limit` is `TooLarge`, however far it would have expanded.
pub fn decode(encoding: Encoding, raw: &Bytes, limit: usize) -> Result<Bytes, BodyFormatError> {
    let name = match encoding {
        Encoding::Identity => return Ok(raw.clone()),
        Encoding::Gzip => "gzip",
        Encoding::Deflate => "deflate",
        Encoding::Brotli => "br",
    };
    let bounded = |reader: &mut dyn Read| -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        reader
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| e.to_string())?;
        Ok(out)
    };
    let decoded = match encoding {
        Encoding::Gzip => bounded(&mut flate2::read::MultiGzDecoder::new(&raw[..])),
        Encoding::Deflate => bounded(&mut flate2::read::ZlibDecoder::new(&raw[..]))
            .or_else(|_| bounded(&mut flate2::read::DeflateDecoder::new(&raw[..]))),
        Encoding::Brotli => bounded(&mut brotli::Decompressor::new(&raw[..], 4096)),
        Encoding::Identity => Ok(raw.to_vec()),
    }
    .map_err(|e| BodyFormatError::Undecodable(name, e))?;
    if decoded.len() > limit {
        return Err(BodyFormatError::TooLarge(limit));
    }
    Ok(Bytes::from(decoded))
}

/// The body's format by its `Content-Type` (its parameters, such as `charset`, are
/// ignored); `batch` admits NDJSON and refuses forms and text.
pub fn format(headers: &HeaderMap, batch: bool) -> Result<Format, BodyFormatError> {
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let format = match ct.as_str() {
        "application/json" => Some(Format::Json),
        t if t.contains('/') && t.ends_with("+json") => Some(Format::Json),
        "application/x-ndjson" | "application/ndjson" if batch => Some(Format::Ndjson),
        "application/x-www-form-urlencoded" if !batch => Some(Format::Form),
        "text/plain" if !batch => Some(Format::Text),
        _ => None,
    };
    format.ok_or_else(|| {
        BodyFormatError::UnsupportedType(if batch {
            "a batch's Content-Type must be application/json (or */*+json) or NDJSON".into()
        } else {
            "the Content-Type must be application/json (or */*+json), \
             application/x-www-form-urlencoded, or text/plain holding JSON"
                .into()
        })
    })
}

/// The JSON to store for a single (non-batch) body of `format`. JSON and text pass
/// through (text is checked to be JSON here; JSON is validated by the caller); a form
/// becomes its `payload` field or the object of its fields.
pub fn to_json(format: Format, body: Bytes) -> Result<Bytes, BodyFormatError> {
    match format {
        Format::Json | Format::Ndjson => Ok(body),
        Format::Text => {
            let is_json = std::str::from_utf8(&body)
                .ok()
                .is_some_and(|t| serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok());
            if is_json {
                Ok(body)
            } else {
                Err(BodyFormatError::UnsupportedType(
                    "a text/plain body is accepted only when it is JSON".into(),
                ))
            }
        }
        Format::Form => form_to_json(&body),
    }
}

fn form_to_json(body: &[u8]) -> Result<Bytes, BodyFormatError> {
    let fields: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let payloads: Vec<&String> = fields
        .iter()
        .filter(|(k, _)| k == "payload")
        .map(|(_, v)| v)
        .collect();
    if let [payload] = payloads[..] {
        serde_json::from_str::<serde::de::IgnoredAny>(payload)
            .map_err(|e| BodyFormatError::FormPayload(e.to_string()))?;
        return Ok(Bytes::from(payload.clone().into_bytes()));
    }
    let mut object = Map::new();
    for (k, v) in fields {
        match object.get_mut(&k) {
            None => {
                object.insert(k, Value::String(v));
            }
            Some(Value::Array(values)) => values.push(Value::String(v)),
            Some(first) => {
                let first = std::mem::take(first);
                object.insert(k, Value::Array(vec![first, Value::String(v)]));
            }
        }
    }
    serde_json::to_vec(&Value::Object(object))
        .map(Bytes::from)
        .map_err(|e| BodyFormatError::FormPayload(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(n.as_bytes()).expect("name"),
                http::HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("write");
        Bytes::from(e.finish().expect("finish"))
    }

    #[test]
    fn each_coding_decodes_and_unknown_or_stacked_ones_are_refused() {
        let json = br#"{"a":1}"#;
        assert_eq!(
            decode(Encoding::Gzip, &gzip(json), 100).expect("gzip"),
            &json[..]
        );
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(json).expect("write");
        let zlib = Bytes::from(z.finish().expect("finish"));
        assert_eq!(
            decode(Encoding::Deflate, &zlib, 100).expect("zlib"),
            &json[..]
        );
        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        d.write_all(json).expect("write");
        let raw = Bytes::from(d.finish().expect("finish"));
        assert_eq!(
            decode(Encoding::Deflate, &raw, 100).expect("raw deflate"),
            &json[..]
        );
        let mut br = Vec::new();
        brotli::CompressorWriter::new(&mut br, 4096, 5, 22)
            .write_all(json)
            .expect("br");
        assert_eq!(
            decode(Encoding::Brotli, &Bytes::from(br), 100).expect("br"),
            &json[..]
        );
        assert_eq!(
            encoding(&headers(&[("content-encoding", "GZIP")])),
            Ok(Encoding::Gzip)
        );
        assert_eq!(encoding(&headers(&[])), Ok(Encoding::Identity));
        assert!(matches!(
            encoding(&headers(&[("content-encoding", "zstd")])),
            Err(BodyFormatError::UnsupportedEncoding(c)) if c == "zstd"
        ));
        assert!(encoding(&headers(&[("content-encoding", "gzip, br")])).is_err());
        assert!(matches!(
            decode(Encoding::Gzip, &Bytes::from_static(b"not gzip"), 100),
            Err(BodyFormatError::Undecodable("gzip", _))
        ));
    }

    #[test]
    fn a_body_that_decodes_past_the_limit_is_too_large() {
        let bomb = gzip(&vec![b' '; 10 * 1024 * 1024]);
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        assert_eq!(
            decode(Encoding::Gzip, &bomb, 1024 * 1024),
            Err(BodyFormatError::TooLarge(1024 * 1024))
        );
        let exact = gzip(&[b'x'; 1000]);
        assert_eq!(
            decode(Encoding::Gzip, &exact, 1000).map(|b| b.len()),
            Ok(1000)
        );
        assert!(decode(Encoding::Gzip, &exact, 999).is_err());
    }

    #[test]
    fn forms_become_their_payload_or_an_object_of_their_fields() {
        let payload = Bytes::from_static(b"payload=%7B%22action%22%3A%22opened%22%7D");
        assert_eq!(
            to_json(Format::Form, payload).expect("payload"),
            &br#"{"action":"opened"}"#[..]
        );
        let fields = Bytes::from_static(b"a=1&b=two+words&a=3&c=");
        let v: Value =
            serde_json::from_slice(&to_json(Format::Form, fields).expect("fields")).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"a": ["1", "3"], "b": "two words", "c": ""})
        );
        assert!(matches!(
            to_json(Format::Form, Bytes::from_static(b"payload=not-json")),
            Err(BodyFormatError::FormPayload(_))
        ));
    }

    #[test]
    fn text_is_accepted_only_as_json_and_types_are_matched_loosely() {
        let sns = Bytes::from_static(br#"{"Type":"Notification"}"#);
        assert_eq!(to_json(Format::Text, sns.clone()).expect("json"), sns);
        assert!(to_json(Format::Text, Bytes::from_static(b"hello")).is_err());
        let f = |ct: &str, batch| format(&headers(&[("content-type", ct)]), batch);
        assert_eq!(
            f("application/json; charset=utf-8", false),
            Ok(Format::Json)
        );
        assert_eq!(f("application/cloudevents+json", false), Ok(Format::Json));
        assert_eq!(f("text/plain; charset=UTF-8", false), Ok(Format::Text));
        assert_eq!(
            f("application/x-www-form-urlencoded", false),
            Ok(Format::Form)
        );
        assert_eq!(f("application/x-ndjson", true), Ok(Format::Ndjson));
        assert!(f("application/x-ndjson", false).is_err());
        assert!(f("application/x-www-form-urlencoded", true).is_err());
        assert!(f("application/xml", false).is_err());
    }
}
