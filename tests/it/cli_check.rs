//! `eventmesh check`: exit 0 when clean, 2 for a torn tail (naming file and byte),
//! 1 for corruption (naming file and byte), and it changes nothing.

use crate::common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{open_dir, rec, tiny};

fn check(dir: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eventmesh"))
        .arg("check")
        .arg(dir)
        .output()
        .expect("run eventmesh check");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn build(root: &Path) -> std::path::PathBuf {
    // A data directory with one partition one level down, as the server lays it out.
    let part = root.join("flows").join("f1");
    let log = open_dir(&part, tiny(2048));
    for i in 0..100 {
        log.append(rec(i)).expect("append");
    }
    log.close().expect("close");
    part
}

fn last_segment(dir: &Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segs.sort();
    segs.pop().expect("a segment")
}

#[test]
fn a_clean_data_directory_exits_zero() {
    // Proves check finds the partition under a data directory and reports it clean.
    let root = tempfile::tempdir().expect("tempdir");
    build(root.path());
    let (code, text) = check(root.path());
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("100 records") && text.contains("clean"),
        "{text}"
    );
}

#[test]
fn a_torn_tail_is_named_with_file_and_byte_and_left_alone() {
    // Proves check tells a torn tail apart, names where it is, and does not repair it.
    let root = tempfile::tempdir().expect("tempdir");
    let part = build(root.path());
    let seg = last_segment(&part);
    let mut bytes = fs::read(&seg).expect("read");
    let len = bytes.len();
    // Not zeros: zeros after the last record are reserved space, a clean end.
    bytes.extend_from_slice(&[0x45u8; 100]);
    fs::write(&seg, &bytes).expect("write");
    let (code, text) = check(&part);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("TORN TAIL"), "{text}");
    assert!(
        text.contains(&format!("{} at byte {len}", seg.display())),
        "{text}"
    );
    assert_eq!(
        fs::read(&seg).expect("read").len(),
        len + 100,
        "check changes nothing"
    );
}

#[test]
fn mid_log_corruption_is_named_with_file_and_byte() {
    // Proves check tells corruption apart (recovery refuses it) and names file and byte.
    let root = tempfile::tempdir().expect("tempdir");
    let part = build(root.path());
    let mut segs: Vec<_> = fs::read_dir(&part)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segs.sort();
    let victim = &segs[0];
    let mut bytes = fs::read(victim).expect("read");
    bytes[45] ^= 0x10;
    fs::write(victim, &bytes).expect("write");
    let (code, text) = check(root.path());
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("CORRUPTION"), "{text}");
    assert!(
        // Byte 45 lies in the first commit group, which starts after the 32-byte
        // segment header (format v2): the damage is named at the group's start.
        text.contains(&format!("{} at byte 32", victim.display())),
        "{text}"
    );
}

#[test]
fn a_directory_without_partitions_is_an_error() {
    // Proves check does not call an empty or wrong directory clean.
    let root = tempfile::tempdir().expect("tempdir");
    let (code, text) = check(root.path());
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("no partitions"), "{text}");
}

#[test]
fn journal_records_past_the_checkpoint_are_named_repair_waits_and_a_start_writes_them_back() {
    // Proves `check` says when the journal holds records the server has not yet
    // written back (after kill -9), and that after a start and a clean stop it is gone.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let mut s = common::server::Server::start_in(&dir, &[]);
    let flow = s.flow(r#"{"name":"j","rateLimit":null}"#);
    let wh = flow["webhookId"].as_str().expect("wh").to_owned();
    let (_, key) = s.key(r#"{"name":"k","scopes":["ingest"]}"#);
    for i in 0..3 {
        let r = s.send(&wh, &[("x-api-key", &key)], &format!("{{\"n\":{i}}}"));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    s.kill9();
    drop(s);
    let (code, text) = check(&dir);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("journal: ") && l.contains("records past its checkpoint")),
        "{text}"
    );
    // Repair refuses to set aside what the next start writes back.
    let fid = flow["id"].as_str().expect("id");
    let events = dir.join("flows").join(fid).join("events");
    let repair = |dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_eventmesh"))
            .arg("repair")
            .arg(dir)
            .arg("--dry-run")
            .output()
            .expect("run repair")
    };
    let out = repair(&events);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("past its checkpoint"));
    let mut s = common::server::Server::start_in(&dir, &[]);
    assert!(s.terminate().success());
    let (code, text) = check(&dir);
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("records past its checkpoint"), "{text}");
    assert_eq!(repair(&events).status.code(), Some(0));
}
