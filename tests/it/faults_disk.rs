//! Damage made on disk while the server is stopped: a torn tail is cut and the server
//! starts with every whole event; a flow with mid-log corruption or a missing event log
//! is quarantined (503 naming the file and byte) while every other flow serves, and
//! `eventmesh repair` brings it back.

use crate::common;

use std::process::Command;

use common::server::Server;

fn setup() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    String,
    std::path::PathBuf,
) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let mut s = Server::start_in(&dir, &[]);
    let flow = s.flow(r#"{"name":"disk","rateLimit":null}"#);
    let (_, key) = s.key(r#"{"name":"k"}"#);
    for i in 0..20 {
        assert_eq!(
            s.send(
                flow["webhookId"].as_str().expect("wh"),
                &[("x-api-key", &key)],
                &format!("{{\"i\":{i}}}")
            )
            .status,
            200
        );
    }
    assert!(s.terminate().success());
    let fid = flow["id"].as_str().expect("id").to_owned();
    let seg = dir
        .join("flows")
        .join(&fid)
        .join("events")
        .join("00000000000000000000.log");
    (tmp, dir, fid, seg)
}

#[test]
fn a_torn_tail_is_cut_and_the_server_starts_with_every_whole_event() {
    // Proves recovery at the binary level: garbage after the last record (as a crash
    // mid-write leaves) is cut; all 20 events are served.
    let (_tmp, dir, fid, seg) = setup();
    let mut bytes = std::fs::read(&seg).expect("read");
    let clean = bytes.len();
    let half_header = bytes[..30].to_vec(); // the start of a frame: a torn write
    bytes.extend_from_slice(&half_header);
    std::fs::write(&seg, &bytes).expect("write");
    let check = Command::new(env!("CARGO_BIN_EXE_eventmesh"))
        .arg("check")
        .arg(&dir)
        .output()
        .expect("check");
    assert_eq!(check.status.code(), Some(2), "check calls it a torn tail");
    let s = Server::start_in(&dir, &[]);
    let page = s
        .admin("GET", &format!("/api/flows/{fid}/events?limit=100"), "")
        .json();
    assert_eq!(page["endOffset"], 20);
    assert_eq!(
        std::fs::metadata(&seg).expect("stat").len(),
        clean as u64,
        "the torn bytes were cut"
    );
}

/// Where each commit group of a v2 segment starts (after the 32-byte segment header;
/// a group is its 48-byte header plus `body_len`, bytes 28-31 of the header).
fn group_starts(segment: &[u8]) -> Vec<usize> {
    let mut at = 32;
    let mut out = Vec::new();
    while at + 48 <= segment.len() && &segment[at + 4..at + 8] == b"EMG2" {
        out.push(at);
        let body = u32::from_le_bytes(segment[at + 28..at + 32].try_into().expect("4 bytes"));
        at += 48 + body as usize;
    }
    out
}

fn eventmesh(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eventmesh"))
        .args(args)
        .output()
        .expect("run eventmesh");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn a_damaged_flow_is_quarantined_the_others_serve_and_repair_brings_it_back() {
    // Proves one damaged flow never takes the server down: with a corrupt segment in one
    // flow and a missing event log in another, the server starts, the healthy flow
    // ingests and reads, both damaged flows answer 503 flow_unavailable naming the file
    // and byte, /readyz stays 200 and lists them, /metrics counts them, `check` names
    // them, and `repair` brings the corrupt one back with every event before the damage.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let mut s = Server::start_in(&dir, &[]);
    let (_, key) = s.key(r#"{"name":"k","scopes":["ingest","read"]}"#);
    let h = [("x-api-key", key.as_str())];
    let mut flows = Vec::new();
    for name in ["corrupt", "missing", "healthy"] {
        let flow = s.flow(&format!(r#"{{"name":"{name}","rateLimit":null}}"#));
        for i in 0..20 {
            let wh = flow["webhookId"].as_str().expect("wh");
            assert_eq!(s.send(wh, &h, &format!("{{\"i\":{i}}}")).status, 200);
        }
        flows.push(flow);
    }
    assert!(s.terminate().success());
    let id = |f: &serde_json::Value| f["id"].as_str().expect("id").to_owned();
    let wh = |f: &serde_json::Value| f["webhookId"].as_str().expect("wh").to_owned();
    let events_dir = |f: &serde_json::Value| dir.join("flows").join(id(f)).join("events");
    // A flipped byte in the 10th event's group: acknowledged events follow it.
    let seg = events_dir(&flows[0]).join("00000000000000000000.log");
    let mut bytes = std::fs::read(&seg).expect("read");
    let tenth = group_starts(&bytes)[9];
    bytes[tenth + 60] ^= 0x20;
    std::fs::write(&seg, &bytes).expect("write");
    std::fs::remove_dir_all(events_dir(&flows[1])).expect("remove");

    // Flows open in the background after start: once all are, both damaged ones are
    // quarantined.
    let mut s = Server::start_opened(&dir, &[]);
    let ready = s.request("GET", "/readyz", &[], b"");
    assert_eq!(ready.status, 200, "{}", ready.text());
    let listed: Vec<String> = ready.json()["unavailableFlows"]
        .as_array()
        .expect("list")
        .iter()
        .map(|f| f["id"].as_str().expect("id").to_owned())
        .collect();
    let mut want = vec![id(&flows[0]), id(&flows[1])];
    want.sort();
    assert_eq!(listed, want);
    let metrics = s.request("GET", "/metrics", &[], b"").text();
    assert!(
        metrics.contains("eventmesh_flows_unavailable 2"),
        "{metrics}"
    );
    // The healthy flow serves.
    assert_eq!(s.send(&wh(&flows[2]), &h, r#"{"i":20}"#).status, 200);
    let page = s
        .admin(
            "GET",
            &format!("/api/flows/{}/events?limit=100", id(&flows[2])),
            "",
        )
        .json();
    assert_eq!(page["events"].as_array().expect("events").len(), 21);
    // The damaged ones answer 503 naming the file and the byte.
    let r = s.send(&wh(&flows[0]), &h, r#"{"i":20}"#);
    r.assert_error(503, "flow_unavailable");
    let msg = r.json()["message"].as_str().expect("message").to_owned();
    assert!(
        msg.contains(&seg.display().to_string()) && msg.contains("at byte"),
        "{msg}"
    );
    let r = s.admin("GET", &format!("/api/flows/{}/events", id(&flows[0])), "");
    r.assert_error(503, "flow_unavailable");
    let r = s.admin("GET", &format!("/api/flows/{}/events", id(&flows[1])), "");
    r.assert_error(503, "flow_unavailable");
    assert!(
        r.json()["message"]
            .as_str()
            .expect("message")
            .contains("missing"),
        "{}",
        r.text()
    );
    let listing = s.admin("GET", "/api/flows", "").json();
    let statuses: Vec<&str> = listing["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .map(|f| f["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses, ["unavailable", "unavailable", "ok"]);
    assert!(s.terminate().success());

    let (code, text) = eventmesh(&["check".as_ref(), dir.as_os_str()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!("flow {} is unavailable", id(&flows[0]))),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "flow {} (\"missing\") is unavailable",
            id(&flows[1])
        )),
        "{text}"
    );

    let ev = events_dir(&flows[0]);
    let (code, text) = eventmesh(&["repair".as_ref(), ev.as_os_str(), "--dry-run".as_ref()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("would keep 9 records"), "{text}");
    assert_eq!(
        std::fs::read(&seg).expect("read"),
        bytes,
        "a dry run changes nothing"
    );
    let (code, text) = eventmesh(&["repair".as_ref(), ev.as_os_str()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("kept 9 records"), "{text}");
    // 11 events are set aside; the damaged one no longer passes its checksum.
    assert!(text.contains("10 record(s) that still pass"), "{text}");
    let aside = std::fs::read(ev.join("00000000000000000000.log.aside")).expect("side file");
    assert_eq!(
        aside,
        bytes[tenth..],
        "everything from the damage on is kept aside"
    );

    let s = Server::start_in(&dir, &[]);
    let page = s
        .admin(
            "GET",
            &format!("/api/flows/{}/events?limit=100", id(&flows[0])),
            "",
        )
        .json();
    let got: Vec<i64> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["payload"]["i"].as_i64().expect("i"))
        .collect();
    assert_eq!(
        got,
        (0..9).collect::<Vec<_>>(),
        "every event before the damage"
    );
    let r = s.send(&wh(&flows[0]), &h, r#"{"i":99}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["offset"], 9);
}
