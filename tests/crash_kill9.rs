//! kill -9 under load: the real binary (`--fsync always`), four sender threads keeping a
//! ledger of every 2xx, SIGKILL at a seeded moment (after a seeded number of acks),
//! restart, verify; 20 cycles (EVENTMESH_CRASH_CYCLES to change; EVENTMESH_CRASH_SEED to
//! replay a run). After each restart: every acknowledged event is present exactly once,
//! byte-equal, at its acknowledged offset; offsets are dense; a resent key answers
//! duplicate with its original offset; the committed consumer offset has not gone back
//! or past the end; `eventmesh check` finds no corruption. A second test spreads the
//! events over 100 flows, all riding the one journal, and checks every flow.

/// `common::server::Server::request` speaks HTTP/1.1 here (tests/contract_h2.rs: h2).
const HTTP2: bool = false;
/// `common::server` starts local-backend servers here (tests/contract_cluster.rs: nats).
const CLUSTER: bool = false;

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use common::ledger::{all_events, splitmix, Acked};
use common::server::Server;
use serde_json::Value;

fn check_exit(dir: &std::path::Path) -> i32 {
    let out = Command::new(env!("CARGO_BIN_EXE_eventmesh"))
        .arg("check")
        .arg(dir)
        .output()
        .expect("run check");
    out.status.code().unwrap_or(-1)
}

#[allow(clippy::too_many_arguments)]
fn verify(
    s: &Server,
    fid: &str,
    wh: &str,
    key: &str,
    ledger: &[Acked],
    commit_floor: u64,
    seed: u64,
    cycle: u32,
) {
    // The resends come first: each flow opens on its first request after the restart
    // (on demand), and its idempotency index must hold every acknowledged key then.
    for a in ledger.iter().rev().take(5) {
        let r = s.send(
            wh,
            &[("x-api-key", key), ("idempotency-key", &a.key)],
            &a.body,
        );
        let v = r.json();
        assert_eq!(
            (v["duplicate"].as_bool(), v["offset"].as_u64()),
            (Some(true), Some(a.offset)),
            "seed {seed}: resend"
        );
    }
    let events = all_events(s, fid);
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(
            ev["offset"].as_u64(),
            Some(i as u64),
            "seed {seed} cycle {cycle}: offsets dense"
        );
    }
    let mut keys = HashSet::new();
    for ev in &events {
        if let Some(k) = ev["idempotencyKey"].as_str() {
            assert!(
                keys.insert(k.to_owned()),
                "seed {seed} cycle {cycle}: key {k} stored twice"
            );
        }
    }
    for a in ledger {
        let ev = events.get(a.offset as usize).unwrap_or_else(|| {
            panic!(
                "seed {seed} cycle {cycle}: acknowledged offset {} lost",
                a.offset
            )
        });
        assert_eq!(
            ev["idempotencyKey"].as_str(),
            Some(a.key.as_str()),
            "seed {seed} cycle {cycle}"
        );
        assert_eq!(
            ev["payload"],
            serde_json::from_str::<Value>(&a.body).expect("json"),
            "seed {seed} cycle {cycle}"
        );
    }
    let consumers = s
        .admin("GET", &format!("/api/flows/{fid}/consumers"), "")
        .json();
    if commit_floor > 0 {
        let committed = consumers[0]["committedOffset"].as_u64().expect("committed");
        assert!(
            committed >= commit_floor,
            "seed {seed} cycle {cycle}: commit went back"
        );
        assert!(
            committed <= events.len() as u64,
            "seed {seed} cycle {cycle}: commit past the end"
        );
    }
}

#[test]
fn every_acknowledged_event_survives_repeated_kill_9_under_load() {
    let seed: u64 = std::env::var("EVENTMESH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026);
    let cycles: u32 = std::env::var("EVENTMESH_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    eprintln!("crash_kill9: seed {seed}, {cycles} cycles (EVENTMESH_CRASH_SEED={seed} replays it)");
    let mut rng = seed;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let mut s = Server::start_in(&dir, &["--fsync", "always"]);
    let flow = s.flow(r#"{"name":"crash","rateLimit":null}"#);
    let (fid, wh) = (
        flow["id"].as_str().expect("id").to_owned(),
        flow["webhookId"].as_str().expect("wh").to_owned(),
    );
    let (_, key) = s.key(r#"{"name":"k","scopes":["ingest","read"]}"#);
    let ledger: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let next_id = Arc::new(AtomicU64::new(0));
    let mut commit_floor = 0u64;
    let mut unknown = 0u64;
    for cycle in 0..cycles {
        if cycle > 0 {
            s = Server::start_in(&dir, &["--fsync", "always"]);
            let l = ledger.lock().expect("ledger");
            verify(&s, &fid, &wh, &key, &l, commit_floor, seed, cycle);
        }
        let target = 20 + splitmix(&mut rng) % 150;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<()>();
        let addr = s.addr;
        let mut senders = Vec::new();
        for t in 0..4u64 {
            let (ledger, next_id, stop, tx, wh, key) = (
                Arc::clone(&ledger),
                Arc::clone(&next_id),
                Arc::clone(&stop),
                tx.clone(),
                wh.clone(),
                key.clone(),
            );
            senders.push(std::thread::spawn(move || {
                let client = common::server::Client { addr };
                let mut lost = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let id = next_id.fetch_add(1, Ordering::SeqCst);
                    let k = format!("c{cycle}-t{t}-{id}");
                    let body = format!(
                        "{{\"event\":\"crash\",\"id\":{id},\"pad\":\"{}\"}}",
                        "p".repeat((id % 300) as usize)
                    );
                    match client.try_send(
                        &wh,
                        &[("x-api-key", &key), ("idempotency-key", &k)],
                        &body,
                    ) {
                        Some(r) if r.status == 200 => {
                            let offset = r.json()["offset"].as_u64().expect("offset");
                            ledger.lock().expect("ledger").push(Acked {
                                offset,
                                key: k,
                                body,
                            });
                            let _ = tx.send(());
                        }
                        // The server died (or is dying): this answer is unknown; stop.
                        _ => {
                            lost += 1;
                            break;
                        }
                    }
                }
                lost
            }));
        }
        drop(tx);
        for _ in 0..target {
            rx.recv().expect("acks arrive while the server runs");
        }
        // Commit a consumer offset at a known acknowledged point, then crash.
        let end = ledger
            .lock()
            .expect("ledger")
            .iter()
            .map(|a| a.offset + 1)
            .max()
            .unwrap_or(0);
        let c = s.request(
            "POST",
            &format!("/api/flows/{fid}/consumers/crash/commit"),
            &[("x-api-key", &key), ("content-type", "application/json")],
            format!("{{\"offset\":{end}}}").as_bytes(),
        );
        if c.status == 200 {
            commit_floor = end;
        }
        for _ in 0..(splitmix(&mut rng) % 40) {
            let _ = rx.recv();
        }
        s.kill9();
        stop.store(true, Ordering::SeqCst);
        for h in senders {
            unknown += h.join().expect("sender");
        }
        let code = check_exit(&dir);
        assert!(
            code == 0 || code == 2,
            "seed {seed} cycle {cycle}: check found corruption (exit {code})"
        );
    }
    let mut s = Server::start_in(&dir, &["--fsync", "always"]);
    let l = ledger.lock().expect("ledger");
    verify(&s, &fid, &wh, &key, &l, commit_floor, seed, cycles);
    assert!(s.terminate().success());
    assert_eq!(check_exit(&dir), 0, "clean after a graceful stop");
    eprintln!(
        "crash_kill9: seed {seed}: {cycles} cycles, {} acknowledged events, 0 lost, {unknown} requests cut by the kill",
        l.len()
    );
}

#[test]
fn every_acknowledged_event_spread_over_100_flows_survives_kill_9() {
    // Proves the store-wide journal under kill -9: events spread over 100 flows (each
    // sender moves from flow to flow), SIGKILL at a seeded moment, restart, and every
    // flow holds every acknowledged event of its own, once, at its offset.
    const FLOWS: usize = 100;
    let seed: u64 = std::env::var("EVENTMESH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0100);
    let cycles = 5u32;
    let mut rng = seed;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let mut s = Server::start_in(&dir, &["--fsync", "always"]);
    let flows: Vec<(String, String)> = (0..FLOWS)
        .map(|i| {
            let f = s.flow(&format!(r#"{{"name":"spread-{i}","rateLimit":null}}"#));
            (
                f["id"].as_str().expect("id").to_owned(),
                f["webhookId"].as_str().expect("wh").to_owned(),
            )
        })
        .collect();
    let (_, key) = s.key(r#"{"name":"k","scopes":["ingest","read"]}"#);
    let ledgers: Arc<Vec<Mutex<Vec<Acked>>>> =
        Arc::new((0..FLOWS).map(|_| Mutex::new(Vec::new())).collect());
    let next_id = Arc::new(AtomicU64::new(0));
    let mut acked_total = 0;
    for cycle in 0..=cycles {
        if cycle > 0 {
            s = Server::start_in(&dir, &["--fsync", "always"]);
            for (i, (fid, wh)) in flows.iter().enumerate() {
                let l = ledgers[i].lock().expect("ledger");
                verify(&s, fid, wh, &key, &l, 0, seed, cycle);
            }
        }
        if cycle == cycles {
            break;
        }
        let target = 100 + splitmix(&mut rng) % 300;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<()>();
        let addr = s.addr;
        let mut senders = Vec::new();
        for t in 0..4u64 {
            let (ledgers, next_id, stop, tx, key) = (
                Arc::clone(&ledgers),
                Arc::clone(&next_id),
                Arc::clone(&stop),
                tx.clone(),
                key.clone(),
            );
            let webhooks: Vec<String> = flows.iter().map(|(_, wh)| wh.clone()).collect();
            senders.push(std::thread::spawn(move || {
                let client = common::server::Client { addr };
                while !stop.load(Ordering::SeqCst) {
                    let id = next_id.fetch_add(1, Ordering::SeqCst);
                    let flow = (id as usize) % FLOWS;
                    let k = format!("s{cycle}-t{t}-{id}");
                    let body = format!(
                        "{{\"event\":\"spread\",\"id\":{id},\"pad\":\"{}\"}}",
                        "p".repeat((id % 200) as usize)
                    );
                    match client.try_send(
                        &webhooks[flow],
                        &[("x-api-key", &key), ("idempotency-key", &k)],
                        &body,
                    ) {
                        Some(r) if r.status == 200 => {
                            let offset = r.json()["offset"].as_u64().expect("offset");
                            ledgers[flow].lock().expect("ledger").push(Acked {
                                offset,
                                key: k,
                                body,
                            });
                            let _ = tx.send(());
                        }
                        _ => break,
                    }
                }
            }));
        }
        drop(tx);
        for _ in 0..target {
            rx.recv().expect("acks arrive while the server runs");
        }
        s.kill9();
        stop.store(true, Ordering::SeqCst);
        for h in senders {
            h.join().expect("sender");
        }
        acked_total = ledgers
            .iter()
            .map(|l| l.lock().expect("ledger").len())
            .sum();
    }
    assert!(s.terminate().success());
    assert_eq!(check_exit(&dir), 0, "clean after a graceful stop");
    let flows_with_events = ledgers
        .iter()
        .filter(|l| !l.lock().expect("ledger").is_empty())
        .count();
    assert_eq!(flows_with_events, FLOWS, "every flow took events");
    eprintln!("crash_kill9 spread: seed {seed}: {cycles} cycles, {acked_total} acknowledged events over {FLOWS} flows, 0 lost");
}
