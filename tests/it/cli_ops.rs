//! The operator command line against a running test server: flows, keys, send,
//! replay, tail, and readable failures.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::server::{Server, ADMIN};
use serde_json::Value;

fn em(s: &Server, args: &[&str]) -> (bool, String, String) {
    let (code, out, err) = em_code(s, args);
    (code == 0, out, err)
}

#[test]
fn flows_keys_send_and_replay_from_the_command_line() {
    // Proves flow create/list/get/delete, key create/list/rotate/revoke, send, and replay
    // to NDJSON, all against a real server.
    let s = Server::start(&[]);
    let (ok, out, err) = em(
        &s,
        &["flow", "create", "--name", "cli", "--rate-limit", "off"],
    );
    assert!(ok, "{err}");
    let flow: Value = serde_json::from_str(&out).expect("flow JSON");
    let (fid, url) = (
        flow["id"].as_str().expect("id"),
        flow["webhookUrl"].as_str().expect("url"),
    );
    assert!(em(&s, &["flow", "list"]).1.contains(fid));
    assert!(em(&s, &["flow", "get", fid])
        .1
        .contains("\"rateLimit\": null"));
    let (ok, out, _) = em(
        &s,
        &["key", "create", "--name", "k", "--scopes", "ingest,read"],
    );
    assert!(ok);
    let key: Value = serde_json::from_str(&out).expect("key JSON");
    let plaintext = key["key"].as_str().expect("key");
    for i in 0..3 {
        let data = format!("{{\"event\":\"cli\",\"i\":{i}}}");
        let (ok, out, err) = em(&s, &["send", url, "--key", plaintext, "--data", &data]);
        assert!(ok, "{err}");
        assert!(out.starts_with("200 "), "{out}");
    }
    let (ok, out, _) = em(&s, &["replay", fid, "--from", "1"]);
    assert!(ok);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (
            lines[0]["offset"].as_u64(),
            lines[1]["payload"]["i"].as_u64()
        ),
        (Some(1), Some(2))
    );
    let kid = key["id"].as_str().expect("id");
    assert!(em(&s, &["key", "rotate", kid, "--grace-seconds", "0"]).0);
    assert!(
        !em(&s, &["send", url, "--key", plaintext]).0,
        "the old key stopped working"
    );
    assert!(em(&s, &["key", "revoke", kid]).0);
    let keys: Value = serde_json::from_str(&em(&s, &["key", "list", "--json"]).1).expect("json");
    assert_eq!(keys["keys"][0]["revoked"], true, "{keys}");
    let table = em(&s, &["key", "list"]).1;
    assert!(
        table.starts_with("id\tname\t"),
        "a table for people: {table}"
    );
    assert!(em(&s, &["flow", "delete", fid]).0);
    assert!(!em(&s, &["flow", "get", fid]).0);
}

#[test]
fn send_can_sign_for_a_signed_flow() {
    // Proves `send --scheme --secret` produces a signature the server accepts.
    let s = Server::start(&[]);
    let (_, out, _) = em(
        &s,
        &[
            "flow", "create", "--name", "gh", "--scheme", "github", "--secret", "s3cret",
        ],
    );
    let flow: Value = serde_json::from_str(&out).expect("flow");
    let url = flow["webhookUrl"].as_str().expect("url");
    assert!(
        em(
            &s,
            &["send", url, "--scheme", "github", "--secret", "s3cret"]
        )
        .0
    );
    let (ok, out, _) = em(
        &s,
        &["send", url, "--scheme", "github", "--secret", "wrong"],
    );
    assert!(!ok);
    assert!(out.contains("invalid_signature"), "{out}");
}

#[test]
fn tail_prints_events_as_they_arrive() {
    // Proves `tail --from 0 --json` prints stored then live events, one JSON line each.
    let s = Server::start(&[]);
    let flow = s.flow(r#"{"name":"t","rateLimit":null}"#);
    let (_, key) = s.key(r#"{"name":"k"}"#);
    let wh = flow["webhookId"].as_str().expect("wh");
    s.send(wh, &[("x-api-key", &key)], r#"{"n":0}"#);
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventmesh"))
        .args([
            "tail",
            flow["id"].as_str().expect("id"),
            "--from",
            "0",
            "--json",
        ])
        .env("EVENTMESH_URL", format!("http://{}", s.addr))
        .env("EVENTMESH_ADMIN_KEY", ADMIN)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn tail");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first: Value =
        serde_json::from_str(&lines.next().expect("a line").expect("read")).expect("json");
    assert_eq!(first["payload"]["n"], 0);
    s.send(wh, &[("x-api-key", &key)], r#"{"n":1}"#);
    let second: Value =
        serde_json::from_str(&lines.next().expect("a line").expect("read")).expect("json");
    assert_eq!(
        (second["offset"].as_u64(), second["payload"]["n"].as_u64()),
        (Some(1), Some(1))
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn failures_exit_non_zero_with_a_readable_message() {
    // Proves an unreachable server and a bad argument fail clearly, and --help explains.
    let out = Command::new(env!("CARGO_BIN_EXE_eventmesh"))
        .args(["flow", "list", "--url", "http://127.0.0.1:1"])
        .output()
        .expect("run");
    common::server::assert_failed_saying(&out, "cannot connect");
    let out = Command::new(env!("CARGO_BIN_EXE_eventmesh"))
        .args(["send", "not-a-url"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let help = Command::new(env!("CARGO_BIN_EXE_eventmesh"))
        .arg("--help")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&help.stdout);
    for cmd in [
        "serve", "check", "bench", "flow", "key", "send", "tail", "replay",
    ] {
        assert!(text.contains(cmd), "--help mentions {cmd}");
    }
}

#[test]
fn bench_http_spreads_events_over_the_flows_of_a_urls_file() {
    // Proves `bench http --urls-file`: every event goes to the next flow in turn, so
    // each of three flows holds events afterwards, and the summary names the count.
    let s = Server::start(&[]);
    let mut urls = Vec::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let name = format!("spread{i}");
        let (ok, out, err) = em(
            &s,
            &["flow", "create", "--name", &name, "--rate-limit", "off"],
        );
        assert!(ok, "{err}");
        let flow: Value = serde_json::from_str(&out).expect("flow JSON");
        urls.push(flow["webhookUrl"].as_str().expect("url").to_owned());
        ids.push(flow["id"].as_str().expect("id").to_owned());
    }
    let (_, out, _) = em(&s, &["key", "create", "--name", "b", "--scopes", "ingest"]);
    let key: Value = serde_json::from_str(&out).expect("key JSON");
    let file = tempfile::NamedTempFile::new().expect("urls file");
    std::fs::write(file.path(), urls.join("\n")).expect("write urls");
    let path = file.path().to_str().expect("path");
    let (ok, out, err) = em(
        &s,
        &[
            "bench",
            "http",
            "--urls-file",
            path,
            "--key",
            key["key"].as_str().expect("key"),
            "--connections",
            "2",
            "--duration",
            "1",
            "--size",
            "64",
        ],
    );
    assert!(ok, "{err}");
    let summary: Value =
        serde_json::from_str(out.lines().last().expect("a summary line")).expect("JSON");
    assert_eq!(summary["flows"], 3);
    assert_eq!(summary["errors"], 0);
    for id in &ids {
        let (ok, out, err) = em(&s, &["replay", id]);
        assert!(ok, "{err}");
        assert!(out.lines().count() >= 1, "flow {id} got no event: {out:?}");
    }
    let (ok, _, err) = em(
        &s,
        &["bench", "http", "--url", &urls[0], "--urls-file", path],
    );
    assert!(!ok, "--url and --urls-file together must be refused");
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn bench_fsync_reports_what_it_measured_for_each_layout() {
    // Proves `bench fsync` runs every layout and says which it ran: one JSON line with
    // the layout, the file count (one for the journal) and the appends it made.
    for (layout, files) in [
        ("grow", 3),
        ("fallocate", 3),
        ("prewritten", 3),
        ("journal", 1),
    ] {
        let dir = tempfile::tempdir().expect("dir");
        let out = Command::new(env!("CARGO_BIN_EXE_eventmesh"))
            .args([
                "bench",
                "fsync",
                "--layout",
                layout,
                "--files",
                "3",
                "--threads",
                "2",
            ])
            .args(["--seconds", "1", "--size", "64", "--dir"])
            .arg(dir.path())
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
        assert_eq!(line["layout"], layout);
        assert_eq!(line["files"], files);
        assert!(
            line["appendsPerSec"].as_f64().expect("rate") > 0.0,
            "{line}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("dir").count(),
            0,
            "its files are removed afterwards"
        );
    }
}

/// Runs the CLI; returns (exit code, stdout, stderr).
fn em_code(s: &Server, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eventmesh"))
        .args(args)
        .env("EVENTMESH_URL", format!("http://{}", s.addr))
        .env("EVENTMESH_ADMIN_KEY", ADMIN)
        .output()
        .expect("run eventmesh");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(s: &Server, args: &[&str]) -> Value {
    let (code, out, err) = em_code(s, args);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

#[test]
fn the_cli_covers_workspaces_flow_updates_consumers_and_events_with_exit_codes() {
    let s = Server::start(&[]);
    let ws = json_of(&s, &["workspace", "create", "--name", "team", "--json"]);
    let wid = ws["id"].as_str().expect("id");
    assert!(em(&s, &["workspace", "list"]).1.contains(wid));
    let flow = json_of(
        &s,
        &[
            "flow",
            "create",
            "--name",
            "f",
            "--workspace",
            wid,
            "--json",
        ],
    );
    let fid = flow["id"].as_str().expect("id");
    assert_eq!(flow["workspaceId"], wid);
    let updated = json_of(
        &s,
        &[
            "flow",
            "update",
            fid,
            "--name",
            "renamed",
            "--scheme",
            "github",
            "--secret",
            "cli-secret",
            "--rate-limit",
            "10/20",
            "--dedup-key-pointer",
            "/id",
            "--dedup-window-seconds",
            "600",
            "--strip-signature-headers",
            "true",
            "--retention-max-age-seconds",
            "3600",
            "--json",
        ],
    );
    assert_eq!(updated["name"], "renamed");
    assert_eq!(updated["signature"]["scheme"], "github");
    assert_eq!(
        updated["rateLimit"],
        serde_json::json!({"perSecond": 10, "burst": 20})
    );
    assert_eq!(updated["dedupKeyPointer"], "/id");
    assert_eq!(updated["dedupWindowSeconds"], 600);
    assert_eq!(updated["stripSignatureHeaders"], true);
    assert_eq!(updated["retention"]["maxAgeSeconds"], 3600);
    // The new secret is the one a signed send must use.
    let url = updated["webhookUrl"].as_str().expect("url");
    let data = r#"{"id":"evt-1","n":1}"#;
    let (code, out, err) = em_code(
        &s,
        &[
            "send",
            url,
            "--scheme",
            "github",
            "--secret",
            "cli-secret",
            "--data",
            data,
        ],
    );
    assert_eq!(code, 0, "{out} {err}");
    let event = json_of(&s, &["events", "get", fid, "0", "--json"]);
    assert_eq!(event["payload"], serde_json::json!({"id": "evt-1", "n": 1}));
    assert_eq!(
        event["idempotencyKey"], "evt-1",
        "the pointer set by the update"
    );
    assert_eq!(event["verified"], "github");

    // Consumers: poll, commit, list, seek, delete.
    let page = json_of(
        &s,
        &["consumer", "poll", fid, "c1", "--max", "10", "--json"],
    );
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["nextOffset"], 1);
    let committed = json_of(&s, &["consumer", "commit", fid, "c1", "1", "--json"]);
    assert_eq!(committed["committedOffset"], 1, "{committed}");
    let list = json_of(&s, &["consumer", "list", fid, "--json"]);
    assert_eq!(list[0]["name"], "c1", "{list}");
    assert_eq!(list[0]["committedOffset"], 1);
    assert!(em(&s, &["consumer", "list", fid]).1.contains("c1\t1\t0"));
    let seeked = json_of(&s, &["consumer", "seek", fid, "c1", "earliest", "--json"]);
    assert_eq!(seeked["committedOffset"], 0, "{seeked}");
    assert_eq!(em_code(&s, &["consumer", "delete", fid, "c1"]).0, 0);

    // Exit codes: 3 not found, 4 auth, 2 bad usage or a refused request, 5 unreachable.
    assert_eq!(em_code(&s, &["consumer", "delete", fid, "c1"]).0, 3);
    assert_eq!(em_code(&s, &["events", "get", fid, "99"]).0, 3);
    assert_eq!(em_code(&s, &["flow", "get", "fl_0000000000000000"]).0, 3);
    let (code, _, err) = em_code(
        &s,
        &[
            "flow",
            "list",
            "--admin-key",
            "not-the-admin-key-at-all-000000",
        ],
    );
    assert_eq!(code, 4, "{err}");
    let (code, _, err) = em_code(&s, &["flow", "update", fid]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("at least one setting"), "{err}");
    assert_eq!(
        em_code(&s, &["flow", "update", fid, "--rate-limit", "fast"]).0,
        2
    );
    assert_eq!(
        em_code(&s, &["consumer", "commit", fid, "c2", "99"]).0,
        2,
        "past the end"
    );
    assert_eq!(em_code(&s, &["flow", "list", "--no-such-flag"]).0, 2);
    assert_eq!(
        em_code(&s, &["flow", "list", "--url", "http://127.0.0.1:1"]).0,
        5
    );
}

#[test]
fn every_subcommand_and_flag_has_a_help_line_and_completions_are_generated() {
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_eventmesh"))
            .args(args)
            .arg("--help")
            .output()
            .expect("run");
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let groups: [(&str, &[&str]); 5] = [
        ("flow", &["create", "list", "get", "update", "delete"]),
        ("key", &["create", "list", "rotate", "revoke"]),
        ("workspace", &["create", "list"]),
        ("consumer", &["list", "poll", "commit", "seek", "delete"]),
        ("events", &["get"]),
    ];
    for (group, subs) in groups {
        let text = help(&[group]);
        for sub in subs {
            let line = text
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{sub} ")))
                .unwrap_or_else(|| panic!("{group} --help lists {sub}: {text}"));
            assert!(
                line.split_whitespace().count() > 1,
                "{group} {sub} has a help line"
            );
            // Every flag and argument of the subcommand says what it is.
            let sub_help = help(&[group, sub]);
            // An entry is a line indented 2 (`  -x, --flag`) or 6 (`      --flag`) spaces;
            // its text is on the same line after two spaces, or on the next, indented more.
            let lines: Vec<&str> = sub_help.lines().collect();
            for (i, l) in lines.iter().enumerate() {
                let entry = l.starts_with("  ") && {
                    let t = l.trim_start();
                    t.starts_with('-') || t.starts_with('<') || t.starts_with('[')
                };
                if !entry {
                    continue;
                }
                let inline = l.trim().contains("  ");
                let next = lines.get(i + 1).is_some_and(|n| {
                    n.len() - n.trim_start().len() > l.len() - l.trim_start().len()
                        && !n.trim().is_empty()
                        && !n.trim_start().starts_with('-')
                });
                assert!(
                    inline || next,
                    "{group} {sub}: {l:?} has no help text:\n{sub_help}"
                );
            }
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_eventmesh"))
        .args(["completions", "bash"])
        .output()
        .expect("run");
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        script.contains("_eventmesh") && script.contains("consumer"),
        "{script}"
    );
}
