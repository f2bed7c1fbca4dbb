//! Damage made on disk while the server is stopped: a torn tail is cut and the server
//! starts with every whole event; mid-log corruption is refused with a message naming
//! the file and the byte, `eventmesh check` calls it corruption, and nothing is deleted.

mod common;

use std::process::Command;

use common::server::{serve_command, Server};

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

#[test]
fn mid_log_corruption_is_refused_with_file_and_byte_and_nothing_is_deleted() {
    // Proves a flipped byte with valid records after it stops the server with a clear
    // error, and leaves the segment exactly as it was.
    let (_tmp, dir, _fid, seg) = setup();
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes[60] ^= 0x20;
    std::fs::write(&seg, &bytes).expect("write");
    let out = serve_command(&dir).output().expect("run serve");
    assert!(!out.status.success(), "the server refuses corrupt data");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&seg.display().to_string()) && err.contains("at byte 0"),
        "{err}"
    );
    let check = Command::new(env!("CARGO_BIN_EXE_eventmesh"))
        .arg("check")
        .arg(&dir)
        .output()
        .expect("check");
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stdout).contains("CORRUPTION"));
    assert_eq!(
        std::fs::read(&seg).expect("read"),
        bytes,
        "nothing was truncated or deleted"
    );
}
