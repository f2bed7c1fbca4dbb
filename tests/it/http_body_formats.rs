//! Body formats on the real binary, as real senders send them: a gzip body signed over
//! the bytes sent (as GitHub signs), deflate and br, a GitHub form delivery signed with
//! octokit's own `sign`, other forms, Amazon SNS's text/plain JSON, Slack's retries and
//! its URL check on a flow of any scheme, a zip bomb (413), an unknown coding (415).

use std::io::Write;
use std::process::{Command, Stdio};

use eventmesh::http::signature::sign;
use eventmesh::store::meta::SignatureScheme;
use serde_json::{json, Value};

use crate::common::server::{Response, Server};

const OCTOKIT_SIGN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/octokit_sign.mjs"
);

fn require_clients() -> bool {
    std::env::var_os("EVENTMESH_REQUIRE_CLIENTS").is_some()
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn post(s: &Server, flow: &Value, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let path = format!(
        "/webhooks/{}",
        flow["webhookId"].as_str().expect("webhookId")
    );
    s.request("POST", &path, headers, body)
}

/// Every stored event of the flow, as the events API returns them.
fn events(s: &Server, flow: &Value) -> Vec<Value> {
    let path = format!("/api/flows/{}/events", flow["id"].as_str().expect("id"));
    let r = s.admin("GET", &path, "");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["events"].as_array().expect("events").clone()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("write");
    e.finish().expect("finish")
}

/// A JSON request's headers signed as GitHub signs `signed` (the bytes as sent), plus `extra`.
fn github_json(secret: &str, signed: &[u8], extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = sign(SignatureScheme::Github, secret, signed, now_s(), "");
    h.push(("content-type".into(), "application/json".into()));
    h.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    h
}

fn refs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
}

#[test]
fn a_gzip_body_signed_over_the_bytes_sent_is_verified_and_stored_decoded() {
    let s = Server::start(&[]);
    let secret = "gh-gzip-secret";
    let flow = s.flow(
        &json!({"name":"gz","rateLimit":null,"signature":{"scheme":"github","secret":secret}})
            .to_string(),
    );
    let json_body = br#"{"action":"opened","number":7}"#;
    let sent = gzip(json_body);
    let h = github_json(secret, &sent, &[("content-encoding", "gzip")]);
    let r = post(&s, &flow, &refs(&h), &sent);
    assert_eq!(
        (r.status, r.json()["offset"].clone()),
        (200, json!(0)),
        "{}",
        r.text()
    );
    // A signature over the decoded bytes is not the sender's: refused.
    let wrong = github_json(secret, json_body, &[("content-encoding", "gzip")]);
    post(&s, &flow, &refs(&wrong), &sent).assert_error(401, "invalid_signature");
    // deflate (zlib) and br, signed the same way.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(br#"{"coding":"deflate"}"#).expect("write");
    let deflated = z.finish().expect("finish");
    let mut br = Vec::new();
    brotli::CompressorWriter::new(&mut br, 4096, 5, 22)
        .write_all(br#"{"coding":"br"}"#)
        .expect("br");
    for (coding, bytes) in [("deflate", deflated), ("br", br)] {
        let h = github_json(secret, &bytes, &[("content-encoding", coding)]);
        let r = post(&s, &flow, &refs(&h), &bytes);
        assert_eq!(r.status, 200, "{coding}: {}", r.text());
    }
    let payloads: Vec<Value> = events(&s, &flow)
        .iter()
        .map(|e| e["payload"].clone())
        .collect();
    assert_eq!(
        payloads,
        vec![
            json!({"action":"opened","number":7}),
            json!({"coding":"deflate"}),
            json!({"coding":"br"})
        ]
    );
}

/// octokit's `sign` over `body`, or `None` when node or the package is missing.
fn octokit_sign(secret: &str, body: &[u8]) -> Option<String> {
    let mut child = Command::new("node")
        .args([OCTOKIT_SIGN, secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body)
        .expect("write");
    let out = child.wait_with_output().expect("node");
    if out.status.code() == Some(3) {
        return None;
    }
    assert!(out.status.success());
    Some(String::from_utf8(out.stdout).expect("utf-8"))
}

#[test]
fn a_github_form_delivery_signed_with_octokit_is_stored_as_its_payload() {
    let s = Server::start(&[]);
    let secret = "octokit-form-secret";
    let flow = s.flow(
        &json!({"name":"form","rateLimit":null,"signature":{"scheme":"github","secret":secret}})
            .to_string(),
    );
    let payload = r#"{"ref":"refs/heads/main","commits":[{"id":"a1"}],"note":"a & b = c+d"}"#;
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", payload)
        .finish();
    let Some(signature) = octokit_sign(secret, body.as_bytes()) else {
        assert!(
            !require_clients(),
            "@octokit/webhooks-methods is not installed"
        );
        eprintln!("SKIPPED: node or @octokit/webhooks-methods is missing (npm install --prefix tests/clients @octokit/webhooks-methods)");
        return;
    };
    assert!(signature.starts_with("sha256="), "{signature}");
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("x-hub-signature-256", signature.as_str()),
        ("x-github-event", "push"),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ];
    let first = post(&s, &flow, &headers, body.as_bytes());
    assert_eq!(first.status, 200, "{}", first.text());
    let again = post(&s, &flow, &headers, body.as_bytes());
    assert_eq!(
        again.json()["duplicate"],
        true,
        "a redelivery is a duplicate"
    );
    let stored = events(&s, &flow);
    assert_eq!(stored.len(), 1);
    let want: Value = serde_json::from_str(payload).expect("json");
    assert_eq!(stored[0]["payload"], want);
    assert_eq!(stored[0]["event"], "push");
    // A tampered form fails the signature, which covers the raw form body.
    let tampered = body.replace("main", "evil");
    post(&s, &flow, &headers, tampered.as_bytes()).assert_error(401, "invalid_signature");
}

#[test]
fn other_forms_and_sns_text_plain_json_are_stored_as_json_and_the_rest_gets_415() {
    let s = Server::start(&[]);
    let flow = s.flow(r#"{"name":"any","rateLimit":null}"#);
    let (_, key) = s.key(r#"{"name":"k","scopes":["ingest"]}"#);
    let form = [
        ("x-api-key", key.as_str()),
        (
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        ),
    ];
    let r = post(&s, &flow, &form, b"name=Ada+Lovelace&tag=a&tag=b&empty=");
    assert_eq!(r.status, 200, "{}", r.text());
    let sns = r#"{"Type":"Notification","MessageId":"22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324","Message":"hi"}"#;
    let text = [
        ("x-api-key", key.as_str()),
        ("content-type", "text/plain; charset=UTF-8"),
    ];
    let r = post(&s, &flow, &text, sns.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    post(&s, &flow, &text, b"hello, not json").assert_error(415, "unsupported_media_type");
    let xml = [
        ("x-api-key", key.as_str()),
        ("content-type", "application/xml"),
    ];
    post(&s, &flow, &xml, b"<a/>").assert_error(415, "unsupported_media_type");
    let bad_payload = [
        ("x-api-key", key.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    post(&s, &flow, &bad_payload, b"payload=%7Bnot").assert_error(400, "invalid_payload");
    let payloads: Vec<Value> = events(&s, &flow)
        .iter()
        .map(|e| e["payload"].clone())
        .collect();
    assert_eq!(
        payloads,
        vec![
            json!({"name":"Ada Lovelace","tag":["a","b"],"empty":""}),
            serde_json::from_str::<Value>(sns).expect("json"),
        ]
    );
}

#[test]
fn a_slack_retry_is_a_duplicate_and_url_verification_is_answered_on_any_flow() {
    let s = Server::start(&[]);
    let secret = "slack-signing-secret-2";
    let slack = s.flow(
        &json!({"name":"slack","rateLimit":null,"signature":{"scheme":"slack","secret":secret}})
            .to_string(),
    );
    let body = r#"{"token":"x","team_id":"T1","type":"event_callback","event_id":"Ev08MFMKH6","event":{"type":"app_mention","text":"hi"}}"#;
    let send = |retry: Option<&str>| {
        let mut h = sign(SignatureScheme::Slack, secret, body.as_bytes(), now_s(), "");
        h.push(("content-type".into(), "application/json".into()));
        if let Some(n) = retry {
            h.push(("x-slack-retry-num".into(), n.into()));
            h.push(("x-slack-retry-reason".into(), "http_timeout".into()));
        }
        post(&s, &slack, &refs(&h), body.as_bytes())
    };
    let first = send(None);
    assert_eq!(
        (first.status, first.json()["duplicate"].clone()),
        (200, json!(false))
    );
    for n in ["1", "2"] {
        let retry = send(Some(n));
        assert_eq!(retry.status, 200, "{}", retry.text());
        assert_eq!(retry.json()["duplicate"], true, "retry {n}");
        assert_eq!(retry.json()["offset"], first.json()["offset"]);
    }
    assert_eq!(events(&s, &slack).len(), 1);

    // A flow with no Slack scheme (an API key) answers Slack's URL check too.
    let plain = s.flow(r#"{"name":"plain","rateLimit":null}"#);
    let (_, key) = s.key(r#"{"name":"k","scopes":["ingest"]}"#);
    let check = r#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let h = [
        ("x-api-key", key.as_str()),
        ("content-type", "application/json"),
    ];
    let r = post(&s, &plain, &h, check.as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
    assert!(events(&s, &plain).is_empty(), "the check is not stored");
    // Without the key, it is refused like any request.
    let r = post(
        &s,
        &plain,
        &[("content-type", "application/json")],
        check.as_bytes(),
    );
    r.assert_error(401, "invalid_api_key");
}

#[test]
fn a_zip_bomb_gets_413_an_unknown_coding_415_and_a_broken_one_400() {
    let s = Server::start(&[]);
    let flow = s.flow(r#"{"name":"bomb","rateLimit":null}"#);
    let (_, key) = s.key(r#"{"name":"k","scopes":["ingest"]}"#);
    // 64 MiB of JSON whitespace around {} compresses to about 64 KiB: under the 1 MiB
    // body limit as sent, far over it decoded.
    let mut inflated = vec![b' '; 64 * 1024 * 1024];
    inflated[0] = b'{';
    let last = inflated.len() - 1;
    inflated[last] = b'}';
    let bomb = gzip(&inflated);
    assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());
    let gz = [
        ("x-api-key", key.as_str()),
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ];
    post(&s, &flow, &gz, &bomb).assert_error(413, "payload_too_large");
    post(&s, &flow, &gz, b"not gzip at all").assert_error(400, "invalid_payload");
    let zstd = [
        ("x-api-key", key.as_str()),
        ("content-type", "application/json"),
        ("content-encoding", "zstd"),
    ];
    post(&s, &flow, &zstd, b"{}").assert_error(415, "unsupported_encoding");
    assert!(events(&s, &flow).is_empty());
    // A body just under the limit decoded is stored.
    let mut fits = vec![b' '; 1024 * 1024 - 16];
    fits[0] = b'[';
    fits[1] = b'1';
    let end = fits.len() - 1;
    fits[end] = b']';
    let r = post(&s, &flow, &gz, &gzip(&fits));
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn each_event_keeps_its_request_without_credentials_and_reads_return_it() {
    let s = Server::start(&[]);
    let keyed = s.flow(r#"{"name":"keyed","rateLimit":null}"#);
    let (_, key) = s.key(r#"{"name":"k","scopes":["ingest"]}"#);
    let path = format!(
        "/webhooks/{}?api_key={key}",
        keyed["webhookId"].as_str().expect("webhookId")
    );
    let auth = format!("Bearer {key}");
    let r = s.request(
        "POST",
        &path,
        &[
            ("content-type", "text/plain; charset=UTF-8"),
            ("authorization", &auth),
            ("x-api-key", &key),
            ("cookie", "session=1"),
            ("x-amz-sns-message-type", "Notification"),
            ("user-agent", "Amazon Simple Notification Service Agent"),
        ],
        br#"{"Type":"Notification"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let ev = &events(&s, &keyed)[0];
    assert_eq!(ev["verified"], Value::Null);
    assert_eq!(ev["contentType"], "text/plain; charset=UTF-8");
    assert_eq!(ev["sourceIp"], "127.0.0.1");
    let headers = ev["headers"].as_object().expect("headers");
    assert_eq!(headers["x-amz-sns-message-type"], "Notification");
    assert_eq!(
        headers["user-agent"],
        "Amazon Simple Notification Service Agent"
    );
    for secret in ["authorization", "x-api-key", "cookie"] {
        assert!(!headers.contains_key(secret), "{secret} kept: {ev}");
    }
    assert!(
        !ev.to_string().contains(&key),
        "the key appears nowhere: {ev}"
    );

    // A signed flow says which scheme verified; one that asks leaves the signature out.
    let secret = "gh-kept-secret";
    for strip in [false, true] {
        let flow = s.flow(
            &json!({"name":"gh","rateLimit":null,"stripSignatureHeaders":strip,
                    "signature":{"scheme":"github","secret":secret}})
            .to_string(),
        );
        assert_eq!(flow["stripSignatureHeaders"], strip);
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        let h = github_json(secret, body, &[("x-github-event", "ping")]);
        let r = post(&s, &flow, &refs(&h), body);
        assert_eq!(r.status, 200, "{}", r.text());
        let ev = &events(&s, &flow)[0];
        assert_eq!(ev["verified"], "github", "{ev}");
        assert_eq!(ev["headers"]["x-github-event"], "ping");
        assert_eq!(
            ev["headers"].get("x-hub-signature-256").is_some(),
            !strip,
            "strip {strip}: {ev}"
        );
    }
}
