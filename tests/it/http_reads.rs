//! Reading a flow over HTTP on the real binary: replay by offset, time and type;
//! consumers (poll, commit, seek, long-poll); the SSE tail and its resume; analytics
//! numbers; and all of it after kill -9.

use crate::common;

use std::io::{BufRead, BufReader, Write};

use common::server::Server;
use serde_json::{json, Value};

struct Fixture {
    s: Server,
    wh: String,
    fid: String,
    key: String,
}

fn fixture(dir: Option<&std::path::Path>) -> Fixture {
    let s = match dir {
        Some(d) => Server::start_in(d, &[]),
        None => Server::start(&[]),
    };
    let flow = s.flow(r#"{"name":"reads","rateLimit":null}"#);
    let (_, key) = s.key(r#"{"name":"k","scopes":["ingest","read"]}"#);
    Fixture {
        wh: flow["webhookId"].as_str().expect("wh").into(),
        fid: flow["id"].as_str().expect("id").into(),
        key,
        s,
    }
}

impl Fixture {
    fn send(&self, body: &str) -> Value {
        let r = self.s.send(&self.wh, &[("x-api-key", &self.key)], body);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }
    fn get(&self, path: &str) -> Value {
        let r = self.s.request(
            "GET",
            &format!("/api/flows/{}{path}", self.fid),
            &[("x-api-key", &self.key)],
            b"",
        );
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        r.json()
    }
    fn post(&self, path: &str, body: &str) -> common::server::Response {
        self.s.request(
            "POST",
            &format!("/api/flows/{}{path}", self.fid),
            &[
                ("x-api-key", &self.key),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        )
    }
}

#[test]
fn replay_by_offset_by_time_and_by_type_returns_the_bytes_sent() {
    // Proves events pages from an offset, from a time and filtered by type, with payloads
    // equal to what was sent (whitespace and key order kept), and one event by offset.
    let f = fixture(None);
    let bodies: Vec<String> = (0..25)
        .map(|i| format!("{{ \"type\" : \"t{}\",  \"i\":{i}, \"z\":[1, 2] }}", i % 3))
        .collect();
    for b in &bodies {
        f.send(b);
    }
    let page = f.get("/events?from=5&limit=10");
    assert_eq!(
        (page["nextOffset"].as_u64(), page["endOffset"].as_u64()),
        (Some(15), Some(25))
    );
    let events = page["events"].as_array().expect("events");
    assert_eq!(events.len(), 10);
    for ev in events {
        let o = ev["offset"].as_u64().expect("offset") as usize;
        assert_eq!(
            ev["payload"],
            serde_json::from_str::<Value>(&bodies[o]).expect("json")
        );
        assert_eq!(ev["event"], format!("t{}", o % 3));
    }
    let one = f.s.request(
        "GET",
        &format!("/api/flows/{}/events/7", f.fid),
        &[("x-api-key", &f.key)],
        b"",
    );
    let raw = one.text();
    assert!(
        raw.contains(&bodies[7]),
        "the stored bytes are embedded as sent: {raw}"
    );
    let typed = f.get("/events?from=0&limit=100&type=t1");
    let offsets: Vec<u64> = typed["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["offset"].as_u64().expect("o"))
        .collect();
    assert_eq!(
        offsets,
        (0..25).filter(|i| i % 3 == 1).collect::<Vec<u64>>()
    );
    let at = f.get("/events/12")["receivedAt"]
        .as_str()
        .expect("time")
        .to_owned();
    let since = f.get(&format!("/events?since={at}&limit=1"));
    let first_at = since["events"][0]["offset"].as_u64().expect("offset");
    assert!(
        first_at <= 12,
        "the first event at or after that time is at most 12"
    );
    assert_eq!(
        since["events"][0]["receivedAt"],
        f.get(&format!("/events/{first_at}"))["receivedAt"]
    );
    assert_eq!(
        f.s.request(
            "GET",
            &format!("/api/flows/{}/events/99", f.fid),
            &[("x-api-key", &f.key)],
            b""
        )
        .status,
        404
    );
}

#[test]
fn poll_commit_and_seek_over_http() {
    // Proves poll reads from the commit without moving it, commit is range-checked,
    // seek targets work, and the consumer list shows lag.
    let f = fixture(None);
    for i in 0..10 {
        f.send(&format!("{{\"i\":{i}}}"));
    }
    let p = f.post("/consumers/c1/poll?max=4", "").json();
    assert_eq!(p["events"].as_array().map(Vec::len), Some(4));
    assert_eq!(
        (p["nextOffset"].as_u64(), p["committedOffset"].is_null()),
        (Some(4), true)
    );
    assert_eq!(
        f.post("/consumers/c1/poll?max=4", "").json()["events"][0]["offset"],
        0,
        "poll never moves the commit"
    );
    let c = f.post("/consumers/c1/commit", r#"{"offset":4}"#);
    assert_eq!((c.status, c.json()["lag"].as_u64()), (200, Some(6)));
    assert_eq!(
        f.post("/consumers/c1/poll?max=1", "").json()["events"][0]["offset"],
        4
    );
    assert_eq!(
        f.post("/consumers/c1/commit", r#"{"offset":11}"#).status,
        400
    );
    assert_eq!(
        f.post("/consumers/c1/seek", r#"{"to":"latest"}"#).json()["committedOffset"],
        10
    );
    assert_eq!(
        f.post("/consumers/c1/seek", r#"{"offset":2}"#).json()["committedOffset"],
        2
    );
    assert_eq!(
        f.post("/consumers/c1/seek", r#"{"to":"sideways"}"#).status,
        400
    );
    // A commit below the committed offset differs by design. On one node a commit is
    // kept as given; in cluster mode commits only move forward (compare-and-set in the
    // offsets bucket), so that a slow node's late commit never undoes a newer one. A
    // seek moves back in both.
    let _ = f.post("/consumers/c1/seek", r#"{"offset":5}"#);
    let back = f.post("/consumers/c1/commit", r#"{"offset":2}"#);
    let kept = if crate::CLUSTER { 5 } else { 2 };
    assert_eq!(
        (back.status, back.json()["committedOffset"].as_u64()),
        (200, Some(kept))
    );
    assert_eq!(
        f.post("/consumers/c1/seek", r#"{"offset":2}"#).json()["committedOffset"],
        2
    );
    let list = f.get("/consumers");
    assert_eq!(
        list,
        json!([{"name":"c1","committedOffset":2,"lag":8,"updatedAt":list[0]["updatedAt"]}])
    );
    let del = f.s.request(
        "DELETE",
        &format!("/api/flows/{}/consumers/c1", f.fid),
        &[("x-api-key", &f.key)],
        b"",
    );
    assert_eq!(del.status, 204);
    assert_eq!(f.get("/consumers"), json!([]));
}

#[test]
fn a_long_poll_returns_as_soon_as_an_event_is_appended() {
    // Proves waitMs wakes on the append: the poll (allowed 30 s) returns the new event.
    let f = fixture(None);
    let mut conn = f.s.connect();
    let req = format!(
        "POST /api/flows/{}/consumers/w/poll?waitMs=30000 HTTP/1.1\r\nhost: a\r\nconnection: close\r\nx-api-key: {}\r\ncontent-length: 0\r\n\r\n",
        f.fid, f.key
    );
    conn.write_all(req.as_bytes()).expect("write");
    // The poll is parked on the server; this append wakes it.
    f.send(r#"{"late":true}"#);
    let r = common::server::read_response(&mut conn);
    let v = r.json();
    let events = v["events"].as_array().expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["payload"], json!({"late": true}));
}

fn sse_events(reader: &mut impl BufRead, n: usize) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    let (mut id, mut data) = (None, None);
    let mut line = String::new();
    while out.len() < n {
        line.clear();
        if reader.read_line(&mut line).expect("read sse") == 0 {
            break;
        }
        let l = line.trim_end();
        if let Some(v) = l.strip_prefix("id: ") {
            id = v.parse().ok();
        } else if let Some(v) = l.strip_prefix("data: ") {
            data = serde_json::from_str(v).ok();
        } else if l.is_empty() {
            if let (Some(i), Some(d)) = (id.take(), data.take()) {
                out.push((i, d));
            }
        }
    }
    out
}

#[test]
fn the_sse_tail_sends_history_then_live_events_and_resumes_from_last_event_id() {
    // Proves the stream: from an offset, then live, ids are offsets, and a reconnect with
    // Last-Event-ID resumes right after it.
    let f = fixture(None);
    for i in 0..3 {
        f.send(&format!("{{\"type\":\"x\",\"i\":{i}}}"));
    }
    let open = |extra: &str, query: &str| {
        let mut c = f.s.connect();
        let req = format!(
            "GET /api/flows/{}/stream{query} HTTP/1.1\r\nhost: a\r\nx-api-key: {}\r\n{extra}\r\n",
            f.fid, f.key
        );
        c.write_all(req.as_bytes()).expect("write");
        BufReader::new(c)
    };
    let mut reader = open("", "?from=1");
    let history = sse_events(&mut reader, 2);
    assert_eq!(
        history.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(history[0].1["payload"]["i"], 1);
    f.send(r#"{"type":"x","i":3}"#);
    let live = sse_events(&mut reader, 1);
    assert_eq!(
        (live[0].0, live[0].1["payload"]["i"].as_u64()),
        (3, Some(3))
    );
    drop(reader);
    let mut resumed = open("last-event-id: 1\r\n", "");
    let again = sse_events(&mut resumed, 2);
    assert_eq!(
        again.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![2, 3]
    );
}

#[test]
fn analytics_and_commits_match_what_was_sent_and_survive_kill_9() {
    // Proves analytics counts a known sequence of accepted, duplicate and rejected
    // requests, and that the numbers and committed offsets are the same after SIGKILL.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let mut f = fixture(Some(&dir));
    for i in 0..6 {
        let r = f.s.send(
            &f.wh,
            &[
                ("x-api-key", &f.key),
                ("idempotency-key", &format!("k{}", i % 4)),
            ],
            &format!("{{\"event\":\"e{}\",\"k\":{}}}", i % 2, i % 4),
        );
        assert_eq!(r.status, 200);
    }
    f.s.send(&f.wh, &[], "{}");
    f.s.send(&f.wh, &[("x-api-key", &f.key)], "not json");
    assert_eq!(f.post("/consumers/a/commit", r#"{"offset":3}"#).status, 200);
    let before = f.get("/analytics?window=1h");
    assert_eq!(
        (
            before["received"].as_u64(),
            before["accepted"].as_u64(),
            before["duplicates"].as_u64()
        ),
        (Some(8), Some(4), Some(2))
    );
    assert_eq!(before["rejected"], json!({"400": 1, "401": 1}));
    assert_eq!(before["eventTypes"], json!({"e0": 2, "e1": 2}));
    assert_eq!(before["consumers"], json!([{"name":"a","lag":1}]));
    assert_eq!(
        before["volume"]
            .as_array()
            .expect("volume")
            .iter()
            .map(|v| v["count"].as_u64().expect("n"))
            .sum::<u64>(),
        4
    );
    // A volume point's minute is an RFC 3339 time at a whole minute, like every API time.
    let minute = before["volume"][0]["minute"]
        .as_str()
        .expect("a time string");
    assert!(
        minute.ends_with(":00.000Z") && minute.len() == 24,
        "{minute}"
    );
    f.s.kill9();
    let f2 = Fixture {
        s: Server::start_in(&dir, &[]),
        wh: f.wh.clone(),
        fid: f.fid.clone(),
        key: f.key.clone(),
    };
    let after = f2.get("/analytics?window=1h");
    assert_eq!(after, before);
    assert_eq!(f2.get("/consumers")[0]["committedOffset"], 3);
    let week = f2.get("/analytics?window=7d");
    assert_eq!(week["received"], 8);
    let summary = f2.s.admin("GET", "/api/analytics?window=24h", "").json();
    assert_eq!(summary["received"], 8);
    assert_eq!(
        f2.s.request(
            "GET",
            &format!("/api/flows/{}/analytics?window=2h", f2.fid),
            &[("x-api-key", &f2.key)],
            b""
        )
        .status,
        400
    );
}
