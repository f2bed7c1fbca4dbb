//! Operating-system faults on the real binary. A failed fdatasync, injected with strace,
//! answers 5xx and never 2xx, after which nothing is acknowledged until restart, /readyz
//! says 503, and a restart loses nothing acknowledged. A full disk (a small tmpfs)
//! answers 500, reads keep working, and ingestion resumes once space is freed. A
//! SIGTERM that arrives while the "listening on" line is being printed drains and exits 0.
//! `.ci/run` installs strace; mounting needs root. A test whose tool is missing says so
//! on stderr and stops early: it proves nothing on such a machine.

/// `common::server::Server::request` speaks HTTP/1.1 here (tests/contract_h2.rs: h2).
const HTTP2: bool = false;
/// `common::server` starts local-backend servers here (tests/contract_cluster.rs: nats).
const CLUSTER: bool = false;

mod common;

use std::process::{Command, Stdio};

use common::server::{await_listening, serve_args, Client, Server};

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Starts `eventmesh serve` under strace with `strace_args` (the server's own output
/// on stdout, strace's to /dev/null) and waits for its "listening on" line.
fn spawn_under_strace(
    dir: &std::path::Path,
    strace_args: &[&std::ffi::OsStr],
) -> (std::process::Child, std::net::SocketAddr) {
    let mut child = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null"])
        .args(strace_args)
        .arg(env!("CARGO_BIN_EXE_eventmesh"))
        .args(serve_args(dir))
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn strace");
    let addr = await_listening(&mut child);
    (child, addr)
}

/// Starts `eventmesh serve` under strace, failing the `nth` fdatasync of `file` with EIO.
fn start_under_strace(
    dir: &std::path::Path,
    file: &std::path::Path,
    nth: u32,
) -> (std::process::Child, std::net::SocketAddr) {
    let inject = format!("inject=fdatasync:error=EIO:when={nth}");
    let args: [&std::ffi::OsStr; 5] = [
        "-e".as_ref(),
        "trace=fdatasync".as_ref(),
        "-P".as_ref(),
        file.as_os_str(),
        "-e".as_ref(),
    ];
    let mut all = args.to_vec();
    all.push(inject.as_ref());
    spawn_under_strace(dir, &all)
}

/// The pid of the server that strace (`strace_child`) traces: a signal to strace
/// itself would only detach it.
fn traced_pid(strace_child: &std::process::Child) -> String {
    let out = Command::new("pgrep")
        .args(["-P", &strace_child.id().to_string()])
        .output()
        .expect("pgrep");
    let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(pids.len(), 1, "one traced server: {pids:?}");
    pids[0].clone()
}

#[test]
fn a_failed_fdatasync_answers_5xx_and_nothing_more_is_acknowledged_until_restart() {
    if !have("strace") {
        eprintln!("SKIPPED: strace is not installed (.ci/run installs it)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let (fid, wh, key) = {
        let s = Server::start_in(&dir, &[]);
        let flow = s.flow(r#"{"name":"eio","rateLimit":null}"#);
        let (_, key) = s.key(r#"{"name":"k","scopes":["ingest","read"]}"#);
        (
            flow["id"].as_str().expect("id").to_owned(),
            flow["webhookId"].as_str().expect("wh").to_owned(),
            key,
        )
    };
    // Every flow's appends are made durable by the store-wide journal: its active
    // segment (the newest) is the file that a 2xx waits on. strace counts per thread:
    // the journal log's writer thread is the only one that fdatasyncs that segment
    // after open. Its first fdatasync (the first append) passes; its second fails.
    let journal = dir.join("journal");
    let mut segments: Vec<_> = std::fs::read_dir(&journal)
        .expect("the journal directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    let segment = segments.pop().expect("an active journal segment");
    let (child, addr) = start_under_strace(&dir, &segment, 2);
    let c = Client { addr };
    let h = [("x-api-key", key.as_str())];
    let first = c.try_send(&wh, &h, r#"{"n":1}"#).expect("answer");
    assert_eq!(first.status, 200, "{}", first.text());
    let failed = c.try_send(&wh, &h, r#"{"n":2}"#).expect("answer");
    assert!(
        failed.status >= 500,
        "the failed group gets 5xx, got {}",
        failed.status
    );
    for n in 3..8 {
        let r = c
            .try_send(&wh, &h, &format!("{{\"n\":{n}}}"))
            .expect("answer");
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (503, Some("unavailable")),
            "no 2xx until restart"
        );
    }
    let mut probe = Server::adopt(child, addr, &dir);
    assert_eq!(probe.request("GET", "/readyz", &[], b"").status, 503);
    let events = probe.admin("GET", &format!("/api/flows/{fid}/events"), "");
    assert_eq!(events.status, 200, "reads keep working");
    // SIGKILL the traced server itself (killing strace alone would let it run on).
    let pid = traced_pid(&probe.child);
    let _ = Command::new("kill").args(["-KILL", &pid]).status();
    probe.kill9();
    drop(probe);
    let s = Server::start_in(&dir, &[]);
    let page = s
        .admin("GET", &format!("/api/flows/{fid}/events"), "")
        .json();
    let payloads: Vec<i64> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["payload"]["n"].as_i64().expect("n"))
        .collect();
    assert_eq!(
        payloads.first(),
        Some(&1),
        "the acknowledged event is there"
    );
    assert!(
        payloads.len() <= 2,
        "nothing after the failure was stored: {payloads:?}"
    );
    assert_eq!(s.request("GET", "/readyz", &[], b"").status, 200);
    assert_eq!(
        s.send(&wh, &h, r#"{"n":9}"#).status,
        200,
        "a restart recovers"
    );
}

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_answers_500_keeps_reads_and_resumes_when_space_is_freed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mnt = tmp.path().join("small");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    }
    let _mount = Mount(mnt.clone());
    let dir = mnt.join("data");
    let s = Server::start_in(&dir, &[]);
    let flow = s.flow(r#"{"name":"full","rateLimit":null}"#);
    let (fid, wh) = (
        flow["id"].as_str().expect("id").to_owned(),
        flow["webhookId"].as_str().expect("wh").to_owned(),
    );
    let (_, key) = s.key(r#"{"name":"k"}"#);
    let filler = mnt.join("filler");
    // Leave about 300 KB free.
    let free = fs_free(&mnt);
    std::fs::write(
        &filler,
        vec![0u8; (free.saturating_sub(300 * 1024)) as usize],
    )
    .expect("fill");
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(8000));
    let mut acked = 0;
    let mut refused = None;
    for _ in 0..200 {
        let r = s.send(&wh, &[("x-api-key", &key)], &body);
        if r.status == 200 {
            acked += 1;
        } else {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("the disk filled up");
    assert_eq!(
        (refused.status, refused.json()["error"].as_str()),
        (500, Some("storage_error")),
        "{}",
        refused.text()
    );
    let page = s
        .admin("GET", &format!("/api/flows/{fid}/events?limit=1000"), "")
        .json();
    assert_eq!(
        page["endOffset"].as_u64(),
        Some(acked),
        "reads keep working, nothing half-stored"
    );
    std::fs::remove_file(&filler).expect("free space");
    let r = s.send(&wh, &[("x-api-key", &key)], &body);
    assert_eq!(
        r.status,
        200,
        "ingestion resumes once space is freed: {}",
        r.text()
    );
    assert_eq!(r.json()["offset"].as_u64(), Some(acked));
}

fn fs_free(path: &std::path::Path) -> u64 {
    let out = Command::new("df")
        .arg("-B1")
        .arg("--output=avail")
        .arg(path)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("free bytes")
}

#[test]
fn a_sigterm_while_the_listening_line_is_being_printed_drains_and_exits_zero() {
    // Proves the SIGTERM handler is in place before "listening on" is printed, so a
    // supervisor that stops the server as soon as it reads that line gets a drained,
    // synced exit 0 and not a death by the signal's default action (that race once
    // failed CI). strace holds every `write` for 300 ms after it completes, so the
    // server sits just past its println while the signal arrives.
    if !have("strace") {
        eprintln!("SKIPPED: strace is not installed (.ci/run installs it)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let args: [&std::ffi::OsStr; 4] = [
        "-e".as_ref(),
        "trace=write".as_ref(),
        "-e".as_ref(),
        "inject=write:delay_exit=300ms".as_ref(),
    ];
    let (child, addr) = spawn_under_strace(&dir, &args);
    let pid = traced_pid(&child);
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut server = Server::adopt(child, addr, &dir);
    // strace exits with its tracee's status, or dies by the signal that killed it.
    let exit = server.child.wait().expect("wait");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}
