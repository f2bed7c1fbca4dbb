//! Signed webhooks on the real binary: each scheme with fresh signatures made by the
//! test, tampering, rotation of the flow secret, and Slack's url_verification echo.
//! (The published vectors are checked with an injected clock in `http::signature`'s tests.)

use crate::common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::server::Server;
use eventmesh::http::signature::sign;
use eventmesh::store::meta::SignatureScheme;
use serde_json::json;

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn signed_send(
    s: &Server,
    webhook: &str,
    scheme: SignatureScheme,
    secret: &str,
    body: &str,
    at: i64,
) -> common::server::Response {
    let headers = sign(scheme, secret, body.as_bytes(), at, "msg_test_1");
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    s.send(webhook, &refs, body)
}

const SCHEMES: [(SignatureScheme, &str, &str); 6] = [
    (SignatureScheme::Eventmesh, "eventmesh", "em-secret-1"),
    (
        SignatureScheme::Github,
        "github",
        "It's a Secret to Everybody",
    ),
    (SignatureScheme::Stripe, "stripe", "whsec_test_secret"),
    (
        SignatureScheme::Standard,
        "standard",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ),
    (SignatureScheme::Shopify, "shopify", "hush"),
    (
        SignatureScheme::Slack,
        "slack",
        "8f742231b10e8888abcd99yyyzzz85a5",
    ),
];

#[test]
fn each_scheme_accepts_a_fresh_signature_without_a_key_and_refuses_tampering() {
    // Proves a valid signature alone admits the event (marked verified), while a changed
    // body, a wrong secret or a stale timestamp answers 401 invalid_signature.
    let s = Server::start(&[]);
    for (scheme, name, secret) in SCHEMES {
        let flow = s.flow(&json!({"name": name, "rateLimit": null, "signature": {"scheme": name, "secret": secret}}).to_string());
        let wh = flow["webhookId"].as_str().expect("webhookId");
        let body = format!("{{\"id\":\"evt_{name}\",\"type\":\"t.{name}\"}}");
        let r = signed_send(&s, wh, scheme, secret, &body, now_s());
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let headers = sign(scheme, secret, body.as_bytes(), now_s(), "msg_x");
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let tampered = s.send(wh, &refs, &body.replace("evt_", "evt-"));
        assert_eq!(
            (tampered.status, tampered.json()["error"].as_str()),
            (401, Some("invalid_signature")),
            "{name}"
        );
        let wrong = signed_send(&s, wh, scheme, "not-the-secret", &body, now_s());
        assert_eq!(wrong.status, 401, "{name} with a wrong secret");
        let none = s.send(wh, &[], &body);
        assert_eq!(none.status, 401, "{name} unsigned");
        if matches!(
            scheme,
            SignatureScheme::Stripe | SignatureScheme::Standard | SignatureScheme::Slack
        ) {
            let stale = signed_send(&s, wh, scheme, secret, &body, now_s() - 301);
            assert_eq!(stale.status, 401, "{name} 301 s old");
        }
        let fid = flow["id"].as_str().expect("id");
        let page = s
            .admin("GET", &format!("/api/flows/{fid}/events"), "")
            .json();
        assert_eq!(page["endOffset"], 1, "{name}: only the good one is stored");
    }
}

#[test]
fn a_new_secret_leaves_the_old_one_valid() {
    // Proves PATCHing the secret keeps the previous one verifying (senders switch slowly).
    let s = Server::start(&[]);
    let flow = s.flow(
        r#"{"name":"gh","rateLimit":null,"signature":{"scheme":"github","secret":"old-secret"}}"#,
    );
    let (wh, fid) = (
        flow["webhookId"].as_str().expect("wh"),
        flow["id"].as_str().expect("id"),
    );
    let r = s.admin(
        "PATCH",
        &format!("/api/flows/{fid}"),
        r#"{"signature":{"scheme":"github","secret":"new-secret"}}"#,
    );
    assert_eq!(r.status, 200);
    assert!(!r.text().contains("new-secret"));
    for secret in ["old-secret", "new-secret"] {
        assert_eq!(
            signed_send(&s, wh, SignatureScheme::Github, secret, "{}", now_s()).status,
            200,
            "{secret}"
        );
    }
    assert_eq!(
        signed_send(&s, wh, SignatureScheme::Github, "other", "{}", now_s()).status,
        401
    );
}

#[test]
fn slack_url_verification_is_echoed_and_not_stored() {
    // Proves the challenge comes back and nothing is appended.
    let s = Server::start(&[]);
    let secret = "slack-signing-secret";
    let flow =
        s.flow(&json!({"name":"s","signature":{"scheme":"slack","secret":secret}}).to_string());
    let body = r#"{"type":"url_verification","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","token":"x"}"#;
    let r = signed_send(
        &s,
        flow["webhookId"].as_str().expect("wh"),
        SignatureScheme::Slack,
        secret,
        body,
        now_s(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
    assert_eq!(s.end_offset(&flow), 0);
}

#[test]
fn standard_webhooks_ids_deduplicate_retries() {
    // Proves webhook-id (and svix-id) is the idempotency key: a retry is a duplicate.
    let s = Server::start(&[]);
    let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let flow = s.flow(
        &json!({"name":"sw","rateLimit":null,"signature":{"scheme":"standard","secret":secret}})
            .to_string(),
    );
    let wh = flow["webhookId"].as_str().expect("wh");
    let first = signed_send(
        &s,
        wh,
        SignatureScheme::Standard,
        secret,
        r#"{"a":1}"#,
        now_s(),
    )
    .json();
    let again = signed_send(
        &s,
        wh,
        SignatureScheme::Standard,
        secret,
        r#"{"a":1}"#,
        now_s(),
    )
    .json();
    assert_eq!(
        (first["duplicate"].as_bool(), again["duplicate"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(first["offset"], again["offset"]);
}

#[test]
fn flow_secrets_are_sealed_at_rest_and_open_only_with_their_installation_secret() {
    // Proves no file holds a sender's signing secret in plain text (current or
    // previous: they are sealed in the flow's flow.json, and meta.json holds no flows),
    // that a plain version 1 document from an older release is moved into a sealed flow
    // file at start and keeps verifying, and that the installation secret can live outside the
    // data directory but is never silently made anew.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let meta_path = dir.join("meta.json");
    let mut s = Server::start_in(&dir, &[]);
    let flow = s.flow(
        r#"{"name":"gh","rateLimit":null,"signature":{"scheme":"github","secret":"old-sekrit-4711"}}"#,
    );
    let id = flow["id"].as_str().expect("id").to_string();
    let wh = flow["webhookId"].as_str().expect("webhook").to_string();
    let r = s.admin(
        "PATCH",
        &format!("/api/flows/{id}"),
        r#"{"signature":{"scheme":"github","secret":"new-sekrit-4712"}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(s.terminate().success());
    let flow_path = dir.join("flows").join(&id).join("flow.json");
    let meta = std::fs::read_to_string(&meta_path).expect("meta.json");
    let meta_doc: serde_json::Value = serde_json::from_str(&meta).expect("json");
    assert_eq!(meta_doc["version"], 3);
    assert!(meta_doc.get("flows").is_none(), "{meta}");
    let stored = std::fs::read_to_string(&flow_path).expect("flow.json");
    assert!(!stored.contains("sekrit-471"), "{stored}");
    let flow_doc: serde_json::Value = serde_json::from_str(&stored).expect("json");
    assert_eq!(flow_doc["version"], 1);
    assert_eq!(flow_doc["id"], id.as_str());
    let sig = &flow_doc["signature"];
    assert!(sig["secret"].as_str().expect("s").starts_with("sealed:v1:"));
    assert!(sig["previous"]["secret"]
        .as_str()
        .expect("p")
        .starts_with("sealed:v1:"));
    let verifies = |s: &Server, secret: &str| {
        signed_send(s, &wh, SignatureScheme::Github, secret, "{}", now_s()).status
    };
    let mut s = Server::start_in(&dir, &[]);
    assert_eq!(verifies(&s, "new-sekrit-4712"), 200);
    assert_eq!(verifies(&s, "old-sekrit-4711"), 200);
    assert_eq!(verifies(&s, "wrong"), 401);
    assert!(s.terminate().success());

    // An older release's document: version 1, every flow in meta.json, secrets in
    // plain text. The start moves the flow into its flow file, sealed.
    let mut record = flow_doc.clone();
    record.as_object_mut().expect("object").remove("version");
    record["signature"]["secret"] = json!("new-sekrit-4712");
    record["signature"]["previous"]["secret"] = json!("old-sekrit-4711");
    let mut plain = meta_doc.clone();
    plain["version"] = json!(1);
    plain["flows"] = json!([record]);
    plain["deletedFlows"] = json!([]);
    std::fs::write(&meta_path, plain.to_string()).expect("write v1");
    std::fs::remove_file(&flow_path).expect("remove flow.json");
    let mut s = Server::start_in(&dir, &[]);
    assert_eq!(verifies(&s, "new-sekrit-4712"), 200);
    assert_eq!(verifies(&s, "old-sekrit-4711"), 200);
    assert!(s.terminate().success());
    let migrated = std::fs::read_to_string(&meta_path).expect("meta.json");
    assert!(!migrated.contains("sekrit-471"), "{migrated}");
    let migrated: serde_json::Value = serde_json::from_str(&migrated).expect("json");
    assert_eq!(migrated["version"], 3);
    assert!(migrated.get("flows").is_none());
    let resealed = std::fs::read_to_string(&flow_path).expect("flow.json");
    assert!(!resealed.contains("sekrit-471"), "{resealed}");
    assert!(resealed.contains("sealed:v1:"));

    // The installation secret moved out of the data directory.
    let outside = tmp.path().join("eventmesh.secret");
    let failed = common::server::serve_command(&dir)
        .args(["--secret-file".as_ref(), outside.as_os_str()])
        .output()
        .expect("run");
    common::server::assert_failed_saying(&failed, "move that file there");
    std::fs::rename(dir.join("secret"), &outside).expect("move secret");
    let outside_arg = outside.to_str().expect("utf-8 path");
    let mut s = Server::start_in(&dir, &["--secret-file", outside_arg]);
    assert_eq!(verifies(&s, "new-sekrit-4712"), 200);
    assert!(s.terminate().success());
    assert!(!dir.join("secret").exists());
    // Without it, the server refuses to start rather than make a new secret.
    let refused = common::server::serve_command(&dir).output().expect("run");
    common::server::assert_failed_saying(&refused, "installation secret");
    assert!(!dir.join("secret").exists());
}
