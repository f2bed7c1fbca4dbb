//! Many flows within a small open-files limit, on the real binary: the flows' logs share
//! a file budget (70 % of the limit), so a store with far more logs than the limit
//! starts, serves every flow, and never holds more descriptors than the limit allows.

use std::process::{Command, Stdio};

use crate::common;
use common::server::{await_listening, serve_args, Server};

/// Open descriptors of process `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .expect("/proc/<pid>/fd")
}

/// Starts the server with its open-files limit (soft and hard) at `limit`.
fn start_limited(dir: &std::path::Path, limit: u32) -> Server {
    let mut cmd = format!(
        "ulimit -n {limit} && exec '{}'",
        env!("CARGO_BIN_EXE_eventmesh")
    );
    for arg in serve_args(dir) {
        cmd.push_str(&format!(" '{}'", arg.to_string_lossy()));
    }
    let mut child = Command::new("bash")
        .args(["-c", &cmd])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bash");
    let addr = await_listening(&mut child);
    Server::adopt(child, addr, dir)
}

#[test]
fn three_hundred_flows_start_and_serve_under_an_open_files_limit_of_256() {
    // Proves the file budget: 300 flows are 900 logs, far more than 256 descriptors. The
    // server restarts under `ulimit -n 256`, takes an event into every flow, reads each
    // back, and holds fewer than 256 descriptors throughout (it used to hold 9 a flow,
    // and refused to start).
    const FLOWS: usize = 300;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let (flows, key) = {
        let s = Server::start_in(&dir, &[]);
        let flows: Vec<(String, String)> = (0..FLOWS)
            .map(|i| {
                let f = s.flow(&format!(r#"{{"name":"f{i}","rateLimit":null}}"#));
                (
                    f["id"].as_str().expect("id").to_owned(),
                    f["webhookId"].as_str().expect("wh").to_owned(),
                )
            })
            .collect();
        let (_, key) = s.key(r#"{"name":"k","scopes":["ingest","read"]}"#);
        (flows, key)
    };
    let mut s = start_limited(&dir, 256);
    let pid = s.child.id();
    assert_eq!(s.request("GET", "/readyz", &[], b"").status, 200);
    let mut most = fds(pid);
    for (i, (_, wh)) in flows.iter().enumerate() {
        let r = s.send(wh, &[("x-api-key", &key)], &format!("{{\"n\":{i}}}"));
        assert_eq!(r.status, 200, "flow {i}: {}", r.text());
        assert_eq!(r.json()["offset"].as_u64(), Some(0), "flow {i}");
        most = most.max(fds(pid));
    }
    for (i, (fid, _)) in flows.iter().enumerate() {
        let page = s
            .admin("GET", &format!("/api/flows/{fid}/events"), "")
            .json();
        assert_eq!(
            page["events"][0]["payload"]["n"].as_u64(),
            Some(i as u64),
            "flow {i}"
        );
        most = most.max(fds(pid));
    }
    assert!(most < 256, "held {most} descriptors under a limit of 256");
    assert!(s.terminate().success());
}
