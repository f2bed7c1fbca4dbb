//! The dashboard end to end, in a real headless Chromium driven over WebDriver: sign in,
//! create a flow and a key, watch events arrive live (a real POST and the playground),
//! see a rejected request with its reason, check the analytics numbers against the API,
//! seek a consumer, and check keyboard use, labels, contrast, narrow screens and that
//! the page makes no request to any other origin.
//!
//! Screenshots of every page go to `target/e2e-artifacts/` (not committed).
//! Needs Debian's `chromium` and `chromium-driver`; `.ci/run` installs them.

/// `common::server::Server::request` speaks HTTP/1.1 here (tests/contract_h2.rs: h2).
const HTTP2: bool = false;
/// `common::server` starts local-backend servers here (tests/contract_cluster.rs: nats).
const CLUSTER: bool = false;

mod common;

use common::server::{Server, ADMIN};
use common::webdriver::{artefact_dir, browser_or_skip, Browser};
use serde_json::{json, Value};

const ENTER: &str = "\u{E007}";
const TAB: &str = "\u{E004}";

fn shot(b: &Browser, name: &str) {
    b.screenshot(&artefact_dir().join(format!("{name}.png")));
}

/// Every form control has a label, every button a name, and no text is below WCAG AA
/// contrast (4.5:1) against the background it sits on. Returns the problems found.
fn audit(b: &Browser) -> Vec<String> {
    let v = b.js(
        r#"
        const problems = [];
        for (const el of document.querySelectorAll("input, select, textarea")) {
          if (el.type === "hidden" || el.hidden) continue;
          const named = (el.labels && el.labels.length) || el.getAttribute("aria-label");
          if (!named) problems.push(`unlabelled ${el.tagName} ${el.name || ""}`);
        }
        for (const el of document.querySelectorAll("button, a[href]")) {
          if (!(el.textContent.trim() || el.getAttribute("aria-label"))) problems.push(`unnamed ${el.outerHTML.slice(0, 60)}`);
        }
        const rgb = (s) => (s.match(/[\d.]+/g) || []).map(Number);
        const lum = ([r, g, b]) => {
          const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
          return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
        };
        const background = (el) => {
          for (let e = el; e; e = e.parentElement) {
            const c = rgb(getComputedStyle(e).backgroundColor);
            if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
          }
          return [255, 255, 255];
        };
        for (const el of document.querySelectorAll("body *")) {
          if (!el.offsetParent && el.tagName !== "BODY") continue;
          const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
          if (!own || el.closest("svg") || el.disabled || el.closest("button:disabled")) continue;
          const fg = rgb(getComputedStyle(el).color).slice(0, 3);
          const bg = background(el);
          const [l1, l2] = [lum(fg), lum(bg)].sort((a, b) => b - a);
          const ratio = (l1 + 0.05) / (l2 + 0.05);
          if (ratio < 4.5) problems.push(`contrast ${ratio.toFixed(2)} for "${el.textContent.trim().slice(0, 30)}"`);
        }
        return problems;
        "#,
        json!([]),
    );
    v.as_array()
        .expect("list")
        .iter()
        .map(|p| p.as_str().unwrap_or_default().to_owned())
        .collect()
}

#[track_caller]
fn assert_accessible(b: &Browser, page: &str) {
    let problems = audit(b);
    assert!(problems.is_empty(), "{page}: {problems:#?}");
}

/// The page is no wider than the window: nothing scrolls sideways.
#[track_caller]
fn assert_no_sideways_scroll(b: &Browser) {
    let overflow = b.js(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
        json!([]),
    );
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "page scrolls sideways by {overflow}"
    );
}

/// Every resource the page loaded, and every API call it made, came from `base`.
fn assert_same_origin_only(b: &Browser, base: &str) {
    let urls = b.js(
        "return performance.getEntriesByType('resource').map((e) => e.name)",
        json!([]),
    );
    let urls = urls.as_array().expect("list");
    assert!(!urls.is_empty(), "the page loaded its modules");
    for u in urls {
        let u = u.as_str().unwrap_or_default();
        assert!(u.starts_with(base), "request to another origin: {u}");
    }
}

fn api(server: &Server, method: &str, path: &str, body: &str) -> Value {
    let r = server.admin(method, path, body);
    assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.text());
    if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    }
}

#[test]
fn the_dashboard_runs_the_product_end_to_end() {
    // Proves each page of the dashboard against the real server, through a real browser.
    if !browser_or_skip() {
        return;
    }
    let server = Server::start(&[]);
    let base = format!("http://{}", server.addr);
    let b = Browser::launch(1280, 800);

    // The page and its modules are served by the binary, with a same-origin-only policy.
    let page = server.request("GET", "/", &[], b"");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<title>EventMesh</title>"));
    assert!(page
        .header("content-security-policy")
        .is_some_and(|p| p.contains("connect-src 'self'")));

    // Sign-in: a wrong key is refused with a clear message; the admin key gets in.
    b.goto(&format!("{base}/"));
    b.wait_for("main h1", "EventMesh");
    assert_accessible(&b, "sign-in");
    shot(&b, "01-sign-in");
    b.type_into("input[name=key]", "not-a-key-of-this-server-0123");
    b.press(ENTER);
    b.wait_for("[role=alert]", "not accepted");
    b.type_into("input[name=key]", ADMIN);
    b.click("form button[type=submit]");
    b.wait_for("main h1", "Flows");
    b.wait_for("main .empty", "No flows yet");
    let stored = b.js("return sessionStorage.getItem('eventmesh.key')", json!([]));
    assert_eq!(stored, json!(ADMIN), "the key lives in session storage");
    let local = b.js("return localStorage.length", json!([]));
    assert_eq!(local, json!(0), "nothing in local storage");

    // Flows: create one through the form, with its rate limit, dedup window and retention.
    b.type_into("input[name=name]", "orders");
    b.type_into("input[name=dedupWindowSeconds]", "3600");
    b.type_into("input[name=maxAgeSeconds]", "604800");
    b.click("form button[type=submit]");
    let created = b.wait_for("[data-testid=flow-created]", "Flow orders created");
    let flows = api(&server, "GET", "/api/flows", "");
    let flow = flows["flows"][0].clone();
    assert_eq!(flow["name"], "orders");
    assert_eq!(flow["dedupWindowSeconds"], 3600);
    assert_eq!(flow["retention"]["maxAgeSeconds"], 604_800);
    assert_eq!(flow["rateLimit"]["perSecond"], 100);
    let webhook_url = flow["webhookUrl"].as_str().expect("url").to_owned();
    assert!(created.contains(&webhook_url), "{created}");
    b.wait_for(
        "[data-testid=flows-table] [data-testid=webhook-url]",
        &webhook_url,
    );
    assert_accessible(&b, "flows");
    shot(&b, "02-flows");
    let flow_id = flow["id"].as_str().expect("id").to_owned();
    let webhook_id = flow["webhookId"].as_str().expect("webhook id").to_owned();

    // Keys: create an ingest key; its plaintext is shown once, and only there.
    b.click("nav a[data-page=keys]");
    b.wait_for("main h1", "API keys");
    b.type_into("input[name=name]", "sender");
    b.click("form button[type=submit]");
    b.wait_for("[data-testid=key-created]", "Key sender created");
    let key = b.text("[data-testid=new-key]").trim().to_owned();
    assert!(key.starts_with("pk_live_"), "{key}");
    let keys = api(&server, "GET", "/api/keys", "");
    assert_eq!(keys["keys"][0]["name"], "sender");
    assert!(
        keys["keys"][0].get("key").is_none(),
        "the list never shows plaintext"
    );
    b.wait_for("[data-testid=keys-table]", "sender");
    assert_accessible(&b, "keys");
    shot(&b, "03-keys");
    // Rotate and revoke a second key through their dialogs.
    b.type_into("input[name=name]", "old-sender");
    b.click("form button[type=submit]");
    // The box of the first key is still shown until this one replaces it.
    b.wait_for("[data-testid=key-created]", "Key old-sender created");
    let old_key = b.text("[data-testid=new-key]").trim().to_owned();
    assert!(old_key.starts_with("pk_live_") && old_key != key);
    b.click("button[aria-label='Rotate key old-sender']");
    b.wait_for("dialog h2", "Rotate old-sender?");
    b.click("dialog button.danger");
    b.wait_for("[data-testid=key-created]", "New key for old-sender");
    let rotated = b.text("[data-testid=new-key]").trim().to_owned();
    assert!(rotated.starts_with("pk_live_") && rotated != old_key);
    b.click("button[aria-label='Revoke key old-sender']");
    b.wait_for("dialog h2", "Revoke old-sender?");
    b.click("dialog button.danger");
    b.wait_for("[data-testid=keys-table] tr", "revoked");
    for k in [&old_key, &rotated] {
        server
            .send(&webhook_id, &[("x-api-key", k)], "{}")
            .assert_error(401, "invalid_api_key");
    }

    // Events: open the live list, then a real POST appears in it without a reload.
    b.click("nav a[data-page=events]");
    b.wait_for("[data-testid=events-status]", "Live");
    b.wait_for("main .empty", "No events yet");
    let body = r#"{"event":"order.created","data":{"id":"ord_1","amount":4200}}"#;
    let sent = server.send(
        &webhook_id,
        &[("x-api-key", &key), ("idempotency-key", "ord_1")],
        body,
    );
    assert_eq!(sent.status, 200, "{}", sent.text());
    assert_eq!(sent.json()["offset"], 0);
    b.wait_for(
        "[data-testid=events-table] tr[data-offset='0']",
        "order.created",
    );
    // The same delivery again is a duplicate: answered, not stored, flagged on the event.
    let again = server.send(
        &webhook_id,
        &[("x-api-key", &key), ("idempotency-key", "ord_1")],
        body,
    );
    assert_eq!(again.json()["duplicate"], true);
    // A rejected attempt: a wrong key. It is in the request log with its reason.
    let refused = server.send(&webhook_id, &[("x-api-key", "pk_live_wrong")], body);
    refused.assert_error(401, "invalid_api_key");
    b.click("[data-testid=requests-refresh]");
    b.wait_for(
        "[data-testid=requests-table] tr[data-status='401']",
        "invalid_api_key",
    );
    // The duplicate's row names the offset of the event it matched (offset 0).
    let dup_row = b.wait_for(
        "[data-testid=requests-table] tbody tr:nth-child(2)",
        "duplicate",
    );
    assert!(dup_row.ends_with('0'), "{dup_row}");
    b.wait_for(
        "[data-testid=events-table] tr[data-offset='0']",
        "duplicate ×1",
    );
    // Keyboard: focus the row, press Enter, and the payload shows pretty-printed.
    b.js(
        "document.querySelector(\"tr[data-offset='0']\").focus()",
        json!([]),
    );
    b.press(ENTER);
    b.wait_for("[data-testid=payload]", "\"amount\": 4200");
    assert_accessible(&b, "events");
    shot(&b, "04-events");

    // Playground: send a test event; status, response and latency show.
    b.click("nav a[data-page=playground]");
    b.wait_for("main h1", "Playground");
    b.set_value(
        "textarea[name=payload]",
        r#"{"event": "order.refunded", "data": {"id": "ord_2"}}"#,
    );
    b.set_value("textarea[name=headers]", "Idempotency-Key: pg-1");
    b.click("form button[type=submit]");
    b.wait_for("[data-testid=playground-status]", "200");
    b.wait_for("[data-testid=playground-response]", "\"offset\": 1");
    let latency = b.text("[data-testid=playground-latency]");
    assert!(latency.ends_with(" ms"), "{latency}");
    assert_accessible(&b, "playground");
    shot(&b, "05a-playground");
    // Back to Events: the playground event is there, flagged as a test.
    b.click("nav a[data-page=events]");
    let row = b.wait_for("tr[data-offset='1']", "order.refunded");
    assert!(row.contains("test"), "{row}");
    // Jump to an offset: history from offset 1 holds only the second event.
    b.type_into("input[name=from]", "1");
    b.press(ENTER);
    b.wait_for("main h2", "Event history");
    b.wait_for("[data-testid=events-status]", "Offsets 1–1");
    let rows = b.js(
        "return document.querySelectorAll('[data-testid=events-table] tbody tr').length",
        json!([]),
    );
    assert_eq!(rows, json!(1));
    // Jump to a time: an hour ago, so history starts at the first event.
    b.js(
        "const d = new Date(Date.now() - 3600e3), p = (n) => String(n).padStart(2, '0');
         const el = document.querySelector('input[name=since]');
         el.value = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
         el.focus();",
        json!([]),
    );
    b.press(ENTER);
    b.wait_for("[data-testid=events-status]", "Offsets 0–1");
    // A live POST while the page is open appears again once we go back to live.
    b.click("main button[aria-pressed=false]");
    b.wait_for("[data-testid=events-status]", "Live");
    // Pretty-printed with CRLF, a bare CR and LF: the live list (SSE read by the
    // dashboard's own parser) must still show it whole.
    let third = server.send(
        &webhook_id,
        &[("x-api-key", &key)],
        "{\r\n  \"type\": \"order.paid\",\r  \"data\": {\n    \"id\": \"ord_3\"\n  }\r\n}",
    );
    assert_eq!(third.json()["offset"], 2);
    b.wait_for("tr[data-offset='2']", "order.paid");
    b.click("tr[data-offset='2']");
    b.wait_for("[data-testid=payload]", "ord_3");
    b.click("[data-testid=requests-refresh]");
    b.wait_for(
        "[data-testid=requests-table] tbody tr:first-child",
        "stored",
    );
    // A taller window for a picture of the whole page (the README's screenshot).
    b.set_size(1280, 1300);
    b.js("window.scrollTo(0, 0)", json!([]));
    shot(&b, "05-events-live");
    b.set_size(1280, 800);

    // Consumers: one polls and commits through the API; the page shows offset and lag,
    // and its seek control moves it.
    let polled = api(
        &server,
        "POST",
        &format!("/api/flows/{flow_id}/consumers/billing/poll?max=2"),
        "",
    );
    assert_eq!(polled["events"].as_array().map(Vec::len), Some(2));
    api(
        &server,
        "POST",
        &format!("/api/flows/{flow_id}/consumers/billing/commit"),
        r#"{"offset":2}"#,
    );
    b.click("nav a[data-page=consumers]");
    b.wait_for("tr[data-consumer=billing] [data-testid=committed]", "2");
    b.wait_for("tr[data-consumer=billing] [data-testid=lag]", "1");
    assert_accessible(&b, "consumers");
    shot(&b, "06-consumers");
    b.click("tr[data-consumer=billing] button[type=submit]"); // seek to "earliest"
    b.wait_for("tr[data-consumer=billing] [data-testid=lag]", "3");
    let list = api(
        &server,
        "GET",
        &format!("/api/flows/{flow_id}/consumers"),
        "",
    );
    assert_eq!(list[0]["committedOffset"], 0);

    // Analytics: the numbers on the page are the API's numbers. So far: 6 webhook
    // requests and 1 playground request; 3 stored, 1 duplicate, 3 refused with 401 (a
    // wrong key, then the revoked key and its rotated successor).
    let report = api(
        &server,
        "GET",
        &format!("/api/flows/{flow_id}/analytics?window=1h"),
        "",
    );
    assert_eq!(report["received"], 7);
    assert_eq!(report["accepted"], 3);
    assert_eq!(report["duplicates"], 1);
    assert_eq!(report["rejected"]["401"], 3);
    b.click("nav a[data-page=analytics]");
    b.wait_for("main h1", "Analytics");
    b.wait_for("[data-testid=stat-received]", "7");
    assert_eq!(b.text("[data-testid=stat-received]"), "7");
    assert_eq!(b.text("[data-testid=stat-accepted]"), "3");
    assert_eq!(b.text("[data-testid=stat-duplicates]"), "1");
    assert_eq!(b.text("[data-testid=stat-rejected]"), "3");
    assert_eq!(b.text("[data-testid=stat-success]"), "57.1%");
    assert_eq!(b.text("[data-testid=stat-error]"), "42.9%");
    b.wait_for("main section", "order.created");
    b.wait_for("main section", "HTTP 401");
    b.wait_for("main section", "billing");
    let bars = b.js(
        "return document.querySelectorAll('svg.chart rect.bar').length",
        json!([]),
    );
    assert!(
        bars.as_u64().unwrap_or(0) >= 60,
        "a bar per minute of the hour: {bars}"
    );
    assert_accessible(&b, "analytics");
    shot(&b, "07-analytics");
    b.click("main .segmented button:nth-child(3)");
    b.wait_for("main .segmented button[aria-pressed=true]", "7 days");
    b.wait_for("[data-testid=stat-received]", "7");

    // Keyboard: from the top of a freshly loaded page, Tab reaches the skip link, then
    // the navigation. (The key survives the reload: session storage is per tab.)
    b.call("POST", "refresh", json!({}));
    b.wait_for("[data-testid=stat-received]", "7");
    b.press(TAB);
    let focused = b.js("return document.activeElement.textContent", json!([]));
    assert_eq!(focused, json!("Skip to content"));
    b.press(TAB);
    b.press(TAB);
    let focused = b.js("return document.activeElement.textContent", json!([]));
    assert_eq!(focused, json!("Events"), "the nav is reachable by keyboard");
    b.press(ENTER);
    b.wait_for("main h1", "Events");
    // The skip link moves focus to the content, without leaving the page.
    b.call("POST", "refresh", json!({}));
    b.wait_for("[data-testid=events-status]", "Live");
    b.press(TAB);
    b.press(ENTER);
    let at = b.js(
        "return [document.activeElement.id, location.hash]",
        json!([]),
    );
    assert_eq!(at, json!(["main", "#/events"]));

    // A narrow screen: nothing scrolls sideways, and the nav stays usable.
    b.set_size(390, 844);
    b.click("nav a[data-page=flows]");
    b.wait_for("[data-testid=flows-table]", "orders");
    assert_no_sideways_scroll(&b);
    shot(&b, "08-flows-narrow");
    b.click("nav a[data-page=events]");
    b.wait_for("tr[data-offset='2']", "order.paid");
    assert_no_sideways_scroll(&b);
    shot(&b, "09-events-narrow");
    b.set_size(1280, 800);

    // Delete the flow through its confirmation dialog: its webhook answers 404 after.
    b.click("nav a[data-page=flows]");
    b.wait_for("[data-testid=flows-table]", "orders");
    b.click("button[aria-label='Delete flow orders']");
    b.wait_for("dialog h2", "Delete orders?");
    b.click("dialog button.danger");
    b.wait_for("main .empty", "No flows yet");
    server
        .send(&webhook_id, &[("x-api-key", &key)], body)
        .assert_error(404, "webhook_not_found");

    assert_same_origin_only(&b, &base);
}

#[test]
fn a_read_key_sees_its_workspace_and_cannot_change_it() {
    // Proves sign-in with a workspace key of scope read: flows and events are visible,
    // admin-only pages say so instead of failing.
    if !browser_or_skip() {
        return;
    }
    let server = Server::start(&[]);
    let base = format!("http://{}", server.addr);
    let flow = server.flow(r#"{"name":"payments","rateLimit":null}"#);
    let (_, read_key) = server.key(r#"{"name":"viewer","scopes":["read"]}"#);
    let (_, ingest_key) = server.key(r#"{"name":"sender","scopes":["ingest"]}"#);
    // An event whose type is "error": the live list must show it like any other (the
    // SSE frame says `event: error`, which is the sender's type, not a server notice).
    let webhook_id = flow["webhookId"].as_str().expect("webhook id");
    let sent = server.send(
        webhook_id,
        &[("x-api-key", &ingest_key)],
        r#"{"type":"error"}"#,
    );
    assert_eq!(sent.status, 200, "{}", sent.text());
    let b = Browser::launch(1280, 800);
    b.goto(&format!("{base}/"));
    b.type_into("input[name=key]", &read_key);
    b.press(ENTER);
    b.wait_for("main h1", "Flows");
    b.wait_for("[data-testid=flows-table]", "payments");
    b.wait_for("main", "needs the admin key");
    b.wait_for("nav .who", "read key");
    b.click("nav a[data-page=events]");
    b.wait_for("[data-testid=events-table] tr[data-offset='0']", "error");
    b.click("nav a[data-page=keys]");
    b.wait_for("main .empty", "needs the admin key");
    // Signing out forgets the key.
    b.click("nav .who button");
    b.wait_for("main h1", "EventMesh");
    let stored = b.js("return sessionStorage.getItem('eventmesh.key')", json!([]));
    assert_eq!(stored, Value::Null);
}

#[test]
fn a_quarantined_flow_is_marked_on_the_flows_page() {
    // Proves the Flows page tells a damaged flow apart: with one flow's event log gone,
    // the server starts, the page lists both flows and marks the damaged one
    // "unavailable" with the reason, and the healthy one is unmarked.
    if !browser_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let mut server = Server::start_in(&dir, &[]);
    let lost = server.flow(r#"{"name":"lost","rateLimit":null}"#);
    server.flow(r#"{"name":"fine","rateLimit":null}"#);
    assert!(server.terminate().success());
    let lost_id = lost["id"].as_str().expect("id");
    std::fs::remove_dir_all(dir.join("flows").join(lost_id).join("events")).expect("remove");
    let server = Server::start_opened(&dir, &[]);
    let base = format!("http://{}", server.addr);
    let b = Browser::launch(1280, 800);
    b.goto(&format!("{base}/"));
    b.type_into("input[name=key]", ADMIN);
    b.press(ENTER);
    b.wait_for("[data-testid=flows-table]", "fine");
    b.wait_for(
        &format!("tr[data-flow-id='{lost_id}'] [data-testid=flow-unavailable]"),
        "unavailable",
    );
    b.wait_for(&format!("tr[data-flow-id='{lost_id}']"), "missing");
    let marks = b.js(
        "return document.querySelectorAll('[data-testid=flow-unavailable]').length",
        json!([]),
    );
    assert_eq!(marks, json!(1), "only the damaged flow is marked");
    b.js(
        "document.querySelector('[data-testid=flows-table]').scrollIntoView()",
        json!([]),
    );
    shot(&b, "10-flow-unavailable");
}
