//! The ingestion endpoint end to end on the real binary: every status path of the
//! contract in its order, key placement, scopes, workspaces, batches, dedup across a
//! kill -9, the playground, the request log, metrics, readiness and shutdown.

use crate::common;

use common::server::{serve_command, Server, ADMIN};
use serde_json::{json, Value};

fn wh(flow: &Value) -> String {
    flow["webhookId"].as_str().expect("webhookId").to_owned()
}

#[test]
fn every_status_path_answers_in_the_contract_order() {
    // Proves 404 → 401 → 429 → 413/415/400 → 422/duplicate → 200, each with its JSON body.
    let s = Server::start(&[]);
    let flow = s.flow(r#"{"name":"orders","rateLimit":{"perSecond":1,"burst":3}}"#);
    let (_, key) = s.key(r#"{"name":"k"}"#);
    let id = wh(&flow);
    let k = [("x-api-key", key.as_str())];

    let r = s.send("wh_00000000000000000000000000000000", &k, "{}");
    r.assert_error(404, "webhook_not_found");
    let r = s.send("..%2f..%2fetc", &k, "{}");
    assert_eq!(r.status, 404);
    let r = s.send(&id, &[], "not json");
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (401, Some("invalid_api_key")),
        "credentials before body"
    );
    let r = s.send(&id, &[("x-api-key", "pk_live_000000000000_bad")], "{}");
    r.assert_error(401, "invalid_api_key");

    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(1024 * 1024));
    let r = s.send(&id, &k, &big);
    r.assert_error(413, "payload_too_large");
    let r = s.request(
        "POST",
        &format!("/webhooks/{id}"),
        &[("x-api-key", &key), ("content-type", "text/plain")],
        b"<not json/>",
    );
    r.assert_error(415, "unsupported_media_type");
    // Four events never fit a burst of 3, whatever the clock: the rate limit answers
    // before the body's content type is even looked at.
    let r = s.request(
        "POST",
        &format!("/webhooks/{id}/batch"),
        &[("x-api-key", &key), ("content-type", "text/plain")],
        b"[{},{},{},{}]",
    );
    r.assert_error(429, "rate_limited");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(retry >= 1);

    s.admin(
        "PATCH",
        &format!("/api/flows/{}", flow["id"].as_str().expect("id")),
        r#"{"rateLimit":null}"#,
    );
    let r = s.send(&id, &k, "{bad json");
    r.assert_error(400, "invalid_payload");
    let r = s.send(
        &id,
        &[("x-api-key", &key), ("idempotency-key", "i-1")],
        r#"{"event":"a","n":1}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let first = r.json();
    assert_eq!(
        (first["status"].as_str(), first["duplicate"].as_bool()),
        (Some("queued"), Some(false))
    );
    let r = s.send(
        &id,
        &[("x-api-key", &key), ("idempotency-key", "i-1")],
        r#"{"event":"a","n":1}"#,
    );
    let dup = r.json();
    assert_eq!(
        (r.status, dup["status"].as_str(), dup["duplicate"].as_bool()),
        (200, Some("duplicate"), Some(true))
    );
    assert_eq!(
        (dup["offset"].clone(), dup["eventId"].clone()),
        (first["offset"].clone(), first["eventId"].clone())
    );
    let r = s.send(
        &id,
        &[("x-api-key", &key), ("idempotency-key", "i-1")],
        r#"{"event":"a","n":2}"#,
    );
    r.assert_error(422, "idempotency_key_reused");
}

#[test]
fn a_key_may_come_in_any_of_the_four_places_and_must_fit_the_flow() {
    // Proves X-API-Key, Bearer, ?api_key= and ?access_token= all work; another workspace's
    // key, a read-only key and a revoked key do not.
    let s = Server::start(&[]);
    let id = wh(&s.flow(r#"{"name":"f","rateLimit":null}"#));
    let (kid, key) = s.key(r#"{"name":"k"}"#);
    let ok = |r: common::server::Response| assert_eq!(r.status, 200, "{}", r.text());
    ok(s.send(&id, &[("x-api-key", &key)], "{}"));
    ok(s.send(&id, &[("authorization", &format!("Bearer {key}"))], "{}"));
    ok(s.request(
        "POST",
        &format!("/webhooks/{id}?api_key={key}"),
        &[("content-type", "application/json")],
        b"{}",
    ));
    ok(s.request(
        "POST",
        &format!("/webhooks/{id}?access_token={key}"),
        &[("content-type", "application/json")],
        b"{}",
    ));

    let ws = s
        .admin("POST", "/api/workspaces", r#"{"name":"other"}"#)
        .json();
    let (_, foreign) = s.key(&json!({"name":"f","workspaceId":ws["id"]}).to_string());
    let (_, read_only) = s.key(r#"{"name":"r","scopes":["read"]}"#);
    for bad in [&foreign, &read_only] {
        let r = s.send(&id, &[("x-api-key", bad)], "{}");
        r.assert_error(401, "invalid_api_key");
    }
    let r = s.admin("DELETE", &format!("/api/keys/{kid}"), "");
    assert_eq!(r.status, 204);
    assert_eq!(
        s.send(&id, &[("x-api-key", &key)], "{}").status,
        401,
        "revocation is immediate"
    );
}

#[test]
fn rotation_keeps_the_old_key_for_its_grace_and_the_new_one_works() {
    // Proves POST /api/keys/{id}/rotate returns a new key and leaves the old one valid.
    let s = Server::start(&[]);
    let id = wh(&s.flow(r#"{"name":"f","rateLimit":null}"#));
    let (kid, old) = s.key(r#"{"name":"k"}"#);
    let r = s.admin(
        "POST",
        &format!("/api/keys/{kid}/rotate"),
        r#"{"graceSeconds":3600}"#,
    );
    assert_eq!(r.status, 200);
    let new = r.json()["key"].as_str().expect("key").to_owned();
    assert_ne!(new, old);
    assert_eq!(s.send(&id, &[("x-api-key", &new)], "{}").status, 200);
    assert_eq!(s.send(&id, &[("x-api-key", &old)], "{}").status, 200);
    let r = s.admin(
        "POST",
        &format!("/api/keys/{kid}/rotate"),
        r#"{"graceSeconds":0}"#,
    );
    let newest = r.json()["key"].as_str().expect("key").to_owned();
    assert_eq!(
        s.send(&id, &[("x-api-key", &new)], "{}").status,
        401,
        "no grace"
    );
    assert_eq!(s.send(&id, &[("x-api-key", &newest)], "{}").status, 200);
    let listed = s.admin("GET", "/api/keys", "").text();
    assert!(
        !listed.contains(&newest) && !listed.contains(&old),
        "keys are never listed in plaintext"
    );
}

#[test]
fn a_batch_is_stored_whole_in_order_or_not_at_all() {
    // Proves JSON-array and NDJSON batches, per-event results, raw bytes per element,
    // and that a bad element stores nothing.
    let s = Server::start(&[]);
    let flow = s.flow(r#"{"name":"b","rateLimit":null}"#);
    let (id, fid) = (wh(&flow), flow["id"].as_str().expect("id").to_owned());
    let (_, key) = s.key(r#"{"name":"k"}"#);
    let h = [
        ("x-api-key", key.as_str()),
        ("content-type", "application/json"),
    ];
    let r = s.request(
        "POST",
        &format!("/webhooks/{id}/batch"),
        &h,
        br#"[{"event":"a"}, {"event":"b",  "x":1},{"event":"c"}]"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let offsets: Vec<u64> = r.json()["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|x| x["offset"].as_u64().expect("offset"))
        .collect();
    assert_eq!(offsets, vec![0, 1, 2]);
    let nd = [
        ("x-api-key", key.as_str()),
        ("content-type", "application/x-ndjson"),
    ];
    let r = s.request(
        "POST",
        &format!("/webhooks/{id}/batch"),
        &nd,
        b"{\"event\":\"d\"}\n{\"event\":\"e\"}\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s.request(
        "POST",
        &format!("/webhooks/{id}/batch"),
        &nd,
        b"{\"event\":\"f\"}\nnot json\n",
    );
    assert_eq!(r.status, 400);
    let too_many = format!("[{}]", vec!["{}"; 1001].join(","));
    let r = s.request(
        "POST",
        &format!("/webhooks/{id}/batch"),
        &h,
        too_many.as_bytes(),
    );
    assert_eq!(r.status, 413);
    let page = s
        .admin(
            "GET",
            &format!("/api/flows/{fid}/events?from=0&limit=100"),
            "",
        )
        .json();
    assert_eq!(page["endOffset"], 5, "nothing of the refused batches");
    assert_eq!(page["events"][1]["payload"], json!({"event":"b","x":1}));
    assert_eq!(page["events"][4]["event"], "e");
}

#[test]
fn a_batch_takes_one_rate_token_per_event() {
    // Proves the rate limit counts the events of a batch.
    let s = Server::start(&[]);
    let id = wh(&s.flow(r#"{"name":"b","rateLimit":{"perSecond":1,"burst":3}}"#));
    let (_, key) = s.key(r#"{"name":"k"}"#);
    let h = [
        ("x-api-key", key.as_str()),
        ("content-type", "application/json"),
    ];
    let r = s.request(
        "POST",
        &format!("/webhooks/{id}/batch"),
        &h,
        b"[{},{},{},{}]",
    );
    assert_eq!(r.status, 429, "4 events do not fit a burst of 3");
    let r = s.request("POST", &format!("/webhooks/{id}/batch"), &h, b"[{},{},{}]");
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn dedup_and_every_event_survive_kill_9() {
    // Proves an acknowledged key answers duplicate with its original offset after
    // SIGKILL and restart, and the events read back byte for byte.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let mut s = Server::start_in(&dir, &[]);
    let flow = s.flow(r#"{"name":"k9","rateLimit":null}"#);
    let (id, fid) = (wh(&flow), flow["id"].as_str().expect("id").to_owned());
    let (_, key) = s.key(r#"{"name":"k"}"#);
    let mut acked = Vec::new();
    for i in 0..30 {
        let body = format!("{{\"event\":\"e\",\"i\":{i},\"s\":\"\\u00e9 é\"}}");
        let r = s.send(
            &id,
            &[("x-api-key", &key), ("idempotency-key", &format!("k{i}"))],
            &body,
        );
        assert_eq!(r.status, 200);
        acked.push((r.json()["offset"].as_u64().expect("offset"), body));
    }
    s.kill9();
    let s = Server::start_in(&dir, &[]);
    for (offset, body) in &acked {
        let i = offset;
        let r = s.send(
            &id,
            &[("x-api-key", &key), ("idempotency-key", &format!("k{i}"))],
            body,
        );
        assert_eq!(
            (
                r.status,
                r.json()["duplicate"].as_bool(),
                r.json()["offset"].as_u64()
            ),
            (200, Some(true), Some(*offset))
        );
        let ev = s
            .admin("GET", &format!("/api/flows/{fid}/events/{offset}"), "")
            .json();
        assert_eq!(
            ev["payload"],
            serde_json::from_str::<Value>(body).expect("json")
        );
    }
}

#[test]
fn reads_respect_scopes_and_workspaces() {
    // Proves a read key reads its workspace's flows, another workspace's key gets 404,
    // and an ingest-only key gets 403.
    let s = Server::start(&[]);
    let ws = s
        .admin("POST", "/api/workspaces", r#"{"name":"acme"}"#)
        .json();
    let flow = s.flow(&json!({"name":"a","workspaceId":ws["id"]}).to_string());
    let fid = flow["id"].as_str().expect("id");
    let (_, reader) =
        s.key(&json!({"name":"r","workspaceId":ws["id"],"scopes":["read"]}).to_string());
    let (_, ingest_only) =
        s.key(&json!({"name":"i","workspaceId":ws["id"],"scopes":["ingest"]}).to_string());
    let (_, foreign) = s.key(r#"{"name":"d","scopes":["read"]}"#);
    let get = |key: &str, path: &str| s.request("GET", path, &[("x-api-key", key)], b"");
    assert_eq!(get(&reader, &format!("/api/flows/{fid}")).status, 200);
    assert_eq!(
        get(&reader, &format!("/api/flows/{fid}/events")).status,
        200
    );
    assert_eq!(get(&foreign, &format!("/api/flows/{fid}")).status, 404);
    assert_eq!(
        get(&foreign, &format!("/api/flows/{fid}/events")).status,
        404
    );
    assert_eq!(
        get(&ingest_only, &format!("/api/flows/{fid}/events")).status,
        403
    );
    let listed = get(&foreign, "/api/flows").json();
    assert_eq!(
        listed["flows"].as_array().map(Vec::len),
        Some(0),
        "another workspace's flows are invisible"
    );
    assert_eq!(
        s.request(
            "POST",
            "/api/flows",
            &[("x-api-key", &reader)],
            b"{\"name\":\"x\"}"
        )
        .status,
        403
    );
    assert_eq!(s.request("GET", "/api/flows", &[], b"").status, 401);
}

#[test]
fn flows_hide_their_secret_and_a_deleted_flow_is_gone_at_once() {
    // Proves the secret is returned only at creation, and DELETE makes the webhook 404.
    let s = Server::start(&[]);
    let flow = s.flow(r#"{"name":"g","signature":{"scheme":"github","secret":"topsecret-value"}}"#);
    assert_eq!(flow["signature"]["secret"], "topsecret-value");
    let fid = flow["id"].as_str().expect("id");
    let got = s.admin("GET", &format!("/api/flows/{fid}"), "");
    assert!(!got.text().contains("topsecret-value"));
    assert!(!s
        .admin("GET", "/api/flows", "")
        .text()
        .contains("topsecret-value"));
    assert_eq!(
        s.admin("DELETE", &format!("/api/flows/{fid}"), "").status,
        204
    );
    let r = s.send(&wh(&flow), &[], "{}");
    r.assert_error(404, "webhook_not_found");
    assert_eq!(s.admin("GET", &format!("/api/flows/{fid}"), "").status, 404);
}

#[test]
fn the_playground_runs_the_ingestion_path_in_process() {
    // Proves the playground stores a test event through the same checks (signing for a
    // signed flow), reports status, response and latency, and never dials the URL's host.
    let s = Server::start(&[]);
    let flow = s.flow(r#"{"name":"p","signature":{"scheme":"stripe"}}"#);
    let fid = flow["id"].as_str().expect("id");
    let url = format!("http://10.255.255.1:9/webhooks/{}", wh(&flow));
    let body =
        json!({"webhookUrl": url, "payload": {"type":"charge.succeeded","id":"evt_9"}}).to_string();
    let r = s.admin("POST", "/api/playground/test", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["statusCode"], 200);
    assert_eq!(v["response"]["status"], "queued");
    assert!(v["latencyMs"].as_f64().is_some());
    let ev = s
        .admin("GET", &format!("/api/flows/{fid}/events/0"), "")
        .json();
    assert_eq!(
        (ev["test"].as_bool(), ev["event"].as_str()),
        (Some(true), Some("charge.succeeded"))
    );
    let again = s.admin("POST", "/api/playground/test", &body).json();
    assert_eq!(
        again["response"]["duplicate"], true,
        "stripe's body id is the idempotency key"
    );
    let bad = s.admin(
        "POST",
        "/api/playground/test",
        &json!({"webhookUrl":"http://x/webhooks/wh_nope","payload":{}}).to_string(),
    );
    assert_eq!(bad.status, 404);
}

#[test]
fn the_request_log_keeps_rejected_attempts_with_their_reasons() {
    // Proves GET /api/flows/{id}/requests lists accepted and rejected attempts, newest first.
    let s = Server::start(&[]);
    let flow = s.flow(r#"{"name":"r","rateLimit":null}"#);
    let (id, fid) = (wh(&flow), flow["id"].as_str().expect("id").to_owned());
    let (_, key) = s.key(r#"{"name":"k"}"#);
    s.send(&id, &[], "{}");
    s.send(&id, &[("x-api-key", &key)], "oops");
    s.send(&id, &[("x-api-key", &key)], "{}");
    let log = s
        .admin("GET", &format!("/api/flows/{fid}/requests?limit=10"), "")
        .json();
    let list = log["requests"].as_array().expect("requests");
    let statuses: Vec<u64> = list
        .iter()
        .map(|e| e["status"].as_u64().expect("status"))
        .collect();
    assert_eq!(statuses, vec![200, 400, 401]);
    assert_eq!(list[1]["error"], "invalid_payload");
    assert_eq!(list[2]["error"], "invalid_api_key");
    assert_eq!(list[0]["offset"], 0);
}

#[test]
fn metrics_count_requests_and_show_no_secrets() {
    // Proves /metrics is Prometheus text with ingest counts, and holds no key or payload.
    let s = Server::start(&[]);
    let id = wh(&s.flow(r#"{"name":"m","rateLimit":null}"#));
    let (_, key) = s.key(r#"{"name":"k"}"#);
    s.send(
        &id,
        &[("x-api-key", &key)],
        r#"{"marker":"payload-secret-123"}"#,
    );
    s.send(&id, &[], "{}");
    let m = s.request("GET", "/metrics", &[], b"");
    assert_eq!(m.status, 200);
    let text = m.text();
    assert!(
        text.contains("eventmesh_ingest_requests_total{status=\"200\"} 1"),
        "{text}"
    );
    assert!(text.contains("eventmesh_ingest_requests_total{status=\"401\"} 1"));
    assert!(text.contains("eventmesh_fsync_seconds_count"));
    // The 2xx waited for the journal's fdatasync, and /metrics counts it.
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    // Differs by design in cluster mode: the event is fsynced by the NATS servers, not
    // by this node's journal, and /readyz says so instead.
    let local_syncs = if crate::CLUSTER { 0.0 } else { 1.0 };
    assert!(
        value("eventmesh_journal_syncs_total") >= local_syncs,
        "{text}"
    );
    assert!(
        value("eventmesh_fsync_seconds_count") >= local_syncs,
        "{text}"
    );
    assert!(
        text.contains("eventmesh_open_segment_files{use=\"write\"}"),
        "{text}"
    );
    assert!(text.contains("eventmesh_events_appended_total 1"));
    for secret in [key.as_str(), ADMIN, "payload-secret-123"] {
        assert!(!text.contains(secret));
    }
    assert_eq!(s.request("GET", "/healthz", &[], b"").status, 200);
    let ready = s.request("GET", "/readyz", &[], b"").json();
    assert_eq!(ready["status"], "ready");
    match crate::CLUSTER {
        true => assert_eq!(
            (ready["backend"].as_str(), ready["durability"].as_str()),
            (Some("nats"), Some("fsynced on a quorum")),
            "{ready}"
        ),
        false => assert_eq!(ready["backend"], "local", "{ready}"),
    }
}

#[test]
fn sigterm_drains_syncs_and_exits_zero_and_a_second_process_is_refused() {
    // Proves graceful shutdown (exit 0, data intact after) and the data-directory lock.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let mut s = Server::start_in(&dir, &["--fsync", "never"]);
    let flow = s.flow(r#"{"name":"t","rateLimit":null}"#);
    let (_, key) = s.key(r#"{"name":"k"}"#);
    for _ in 0..5 {
        assert_eq!(s.send(&wh(&flow), &[("x-api-key", &key)], "{}").status, 200);
    }
    let second = serve_command(&dir).output().expect("run a second server");
    common::server::assert_failed_saying(&second, "lock");
    let status = s.terminate();
    assert!(status.success(), "{status:?}");
    let s = Server::start_in(&dir, &[]);
    assert_eq!(s.end_offset(&flow), 5);
}

#[test]
fn keys_come_from_every_source_the_contract_lists() {
    // Proves the idempotency key sources: dedupKeyPointer, CloudEvents ce-source+ce-id,
    // X-GitHub-Delivery, X-Shopify-Webhook-Id; and the event type from headers.
    let s = Server::start(&[]);
    let flow = s.flow(r#"{"name":"src","rateLimit":null,"dedupKeyPointer":"/data/id"}"#);
    let (id, fid) = (wh(&flow), flow["id"].as_str().expect("id").to_owned());
    let (_, key) = s.key(r#"{"name":"k"}"#);
    let k = ("x-api-key", key.as_str());
    let dup = |r: common::server::Response| r.json()["duplicate"].as_bool();
    assert_eq!(
        dup(s.send(&id, &[k], r#"{"data":{"id":"o-1"},"v":1}"#)),
        Some(false)
    );
    assert_eq!(
        dup(s.send(&id, &[k], r#"{"data":{"id":"o-1"},"v":2}"#)),
        Some(true),
        "JSON pointer key"
    );
    let ce = [
        k,
        ("ce-source", "/shop"),
        ("ce-id", "42"),
        ("ce-type", "com.shop.order"),
    ];
    assert_eq!(dup(s.send(&id, &ce, "{}")), Some(false));
    assert_eq!(dup(s.send(&id, &ce, "{}")), Some(true), "ce-source + ce-id");
    let gh = [k, ("x-github-delivery", "d-1"), ("x-github-event", "push")];
    assert_eq!(dup(s.send(&id, &gh, "{}")), Some(false));
    assert_eq!(dup(s.send(&id, &gh, "{}")), Some(true), "X-GitHub-Delivery");
    let shop = [
        k,
        ("x-shopify-webhook-id", "s-1"),
        ("x-shopify-topic", "orders/create"),
    ];
    assert_eq!(dup(s.send(&id, &shop, "{}")), Some(false));
    assert_eq!(
        dup(s.send(&id, &shop, "{}")),
        Some(true),
        "X-Shopify-Webhook-Id"
    );
    let page = s
        .admin("GET", &format!("/api/flows/{fid}/events"), "")
        .json();
    let types: Vec<&str> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event"].as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        vec!["unknown", "com.shop.order", "push", "orders/create"]
    );
}

#[test]
fn control_characters_in_event_types_and_idempotency_keys_get_400() {
    // Proves the hygiene rule: a type or key with U+0000-U+001F or U+007F is refused
    // with invalid_payload and nothing is stored; clean ones are stored.
    let s = Server::start(&[]);
    let flow = s.flow(r#"{"name":"ctl","rateLimit":null,"dedupKeyPointer":"/id"}"#);
    let (_, key) = s.key(r#"{"name":"k"}"#);
    let id = wh(&flow);
    let k = [("x-api-key", key.as_str())];
    for body in [
        r#"{"type":"order\u0000created"}"#,
        r#"{"type":"a\nb"}"#,
        r#"{"event":"x\u007f"}"#,
        r#"{"type":"ok","id":"key\u001fwith-unit-separator"}"#,
    ] {
        let r = s.send(&id, &k, body);
        r.assert_error(400, "invalid_payload");
        assert!(r.json()["message"]
            .as_str()
            .expect("message")
            .contains("control"));
    }
    let tab = [("x-api-key", key.as_str()), ("idempotency-key", "a\tb")];
    s.send(&id, &tab, r#"{"type":"ok"}"#)
        .assert_error(400, "invalid_payload");
    assert_eq!(s.end_offset(&flow), 0, "nothing was stored");
    let r = s.send(&id, &k, r#"{"type":"order.created","id":"k-1"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.end_offset(&flow), 1);
}

#[test]
fn the_playground_needs_ingest_rights_has_its_own_budget_and_hides_other_workspaces() {
    // Proves issue 14's playground rules: a read-only key gets 403 and stores nothing; a
    // key of another workspace gets the same 404 as an unknown webhook; an ingest key of
    // the flow's workspace may test; the playground's own budget runs out without
    // touching the real sender's rate limit.
    let s = Server::start(&[]);
    let flow = s.flow(r#"{"name":"p","rateLimit":{"perSecond":1,"burst":1}}"#);
    let id = wh(&flow);
    let ws = s
        .admin("POST", "/api/workspaces", r#"{"name":"other"}"#)
        .json();
    let other = ws["id"].as_str().expect("ws");
    let (_, read) = s.key(r#"{"name":"r","scopes":["read"]}"#);
    let (_, ingest) = s.key(r#"{"name":"i","scopes":["ingest"]}"#);
    let (_, stranger) = s.key(&format!(
        r#"{{"name":"x","workspaceId":"{other}","scopes":["ingest","read"]}}"#
    ));
    let body = |n: u32| {
        json!({"webhookUrl": format!("http://h/webhooks/{id}"), "payload": {"n": n}}).to_string()
    };
    let call = |key: &str, n: u32| {
        s.request(
            "POST",
            "/api/playground/test",
            &[("x-api-key", key), ("content-type", "application/json")],
            body(n).as_bytes(),
        )
    };
    call(&read, 0).assert_error(403, "forbidden");
    let hidden = call(&stranger, 0);
    hidden.assert_error(404, "webhook_not_found");
    let unknown = s.request(
        "POST",
        "/api/playground/test",
        &[("x-api-key", &stranger), ("content-type", "application/json")],
        json!({"webhookUrl": "http://h/webhooks/wh_00000000000000000000000000000000", "payload": {}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(hidden.text(), unknown.text(), "the same 404 either way");
    assert_eq!(s.end_offset(&flow), 0, "nothing stored");
    // Ten tests fit the playground's burst, though the flow's own burst is 1.
    for n in 0..10 {
        let r = call(&ingest, n);
        assert_eq!(r.json()["statusCode"], 200, "test {n}: {}", r.text());
    }
    let r = call(&ingest, 10);
    assert_eq!(
        r.json()["statusCode"],
        429,
        "the playground's own budget ran out"
    );
    // The real sender's bucket was never touched.
    let r = s.send(&id, &[("x-api-key", &ingest)], r#"{"real":true}"#);
    assert_eq!(r.status, 200, "{}", r.text());
}
