//! Cluster mode under faults: 3 nats-servers (`sync_interval: always`) and 2 real
//! `eventmesh serve --backend nats` processes. Four sender threads spread events with
//! unique idempotency keys over both nodes and keep a ledger of every 2xx. Each cycle,
//! in a seeded order and at seeded moments (counted in acks, never in time):
//! - `kill -9` one nats-server, then restart it;
//! - `kill -9` one EventMesh node, then restart it on its own data directory;
//! - `SIGSTOP` the flow stream's leader for 10 s, then `SIGCONT` it.
//!
//! After each cycle, on both nodes: every acknowledged event is present exactly once,
//! byte-equal, at its acknowledged offset; offsets are dense (none repeats); a resent key
//! is a duplicate with its original offset; the committed consumer offset never went
//! back. 5 cycles (EVENTMESH_CLUSTER_CYCLES to change; EVENTMESH_CLUSTER_SEED replays a
//! run). Without nats-server installed it prints SKIPPED, unless EVENTMESH_REQUIRE_NATS.

/// `common::server::Server::request` speaks HTTP/1.1 here.
const HTTP2: bool = false;
/// `common::server` starts local-backend servers here (tests/contract_cluster.rs: nats).
const CLUSTER: bool = false;

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ledger::{all_events, splitmix, Acked};
use common::nats::{unique_prefix, NatsCluster};
use common::server::{Client, Server};

/// The longest a cycle may go without a single ack before the test calls it a hang
/// (a guard against hanging CI, not a speed assertion: failover takes 4–9 s).
const PROGRESS_WITHIN: Duration = Duration::from_secs(120);

/// How long the stream leader stays stopped (the issue's figure).
const PAUSE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillNats,
    KillNode,
    PauseLeader,
}

/// The two EventMesh nodes, each on its own data directory, sharing the cluster, the
/// prefix, the installation secret and the admin key.
struct Nodes {
    args: Vec<String>,
    dirs: [PathBuf; 2],
    servers: [Option<Server>; 2],
    /// Where senders reach each node now (a restarted node listens on a new port).
    addrs: Arc<Mutex<[std::net::SocketAddr; 2]>>,
}

impl Nodes {
    fn start(root: &Path, cluster: &NatsCluster, prefix: &str) -> Self {
        let args = vec![
            "--backend".to_owned(),
            "nats".to_owned(),
            "--nats-url".to_owned(),
            cluster.urls().join(","),
            "--nats-monitor-url".to_owned(),
            cluster.monitor_urls().join(","),
            "--nats-prefix".to_owned(),
            prefix.to_owned(),
            "--secret-file".to_owned(),
            root.join("cluster.secret").display().to_string(),
        ];
        let dirs = [root.join("node0"), root.join("node1")];
        let first = Self::spawn(&dirs[0], &args);
        let addr = first.addr;
        Self {
            args,
            dirs,
            servers: [Some(first), None],
            addrs: Arc::new(Mutex::new([addr, addr])),
        }
    }

    fn spawn(dir: &Path, args: &[String]) -> Server {
        let extra: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::start_in(dir, &extra)
    }

    /// Starts node `n` (again): it reads the flows from the registry as it starts.
    fn restart(&mut self, n: usize) {
        self.kill9(n);
        let s = Self::spawn(&self.dirs[n], &self.args);
        self.addrs.lock().expect("addrs")[n] = s.addr;
        self.servers[n] = Some(s);
    }

    fn kill9(&mut self, n: usize) {
        if let Some(mut s) = self.servers[n].take() {
            s.kill9();
        }
    }

    fn node(&self, n: usize) -> &Server {
        self.servers[n].as_ref().expect("node runs")
    }
}

struct Check<'a> {
    fid: &'a str,
    wh: &'a str,
    key: &'a str,
    seed: u64,
    cycle: u32,
}

impl Check<'_> {
    /// Every acknowledged event once, byte-equal, at its offset; dense offsets; resends
    /// answered duplicate with the original offset; the commit not gone back. Returns
    /// the number of events stored.
    fn verify(&self, s: &Server, ledger: &[Acked], commit_floor: u64, rng: &mut u64) -> usize {
        let (seed, cycle) = (self.seed, self.cycle);
        let events = all_events(s, self.fid);
        for (i, ev) in events.iter().enumerate() {
            assert_eq!(
                ev["offset"].as_u64(),
                Some(i as u64),
                "seed {seed} cycle {cycle}: offsets dense, none repeated"
            );
        }
        let mut keys = HashSet::new();
        for ev in &events {
            let k = ev["idempotencyKey"]
                .as_str()
                .expect("every event has a key");
            assert!(
                keys.insert(k.to_owned()),
                "seed {seed} cycle {cycle}: key {k} stored twice"
            );
        }
        for a in ledger {
            let ev = events.get(a.offset as usize).unwrap_or_else(|| {
                panic!(
                    "seed {seed} cycle {cycle}: acknowledged offset {} lost ({} stored)",
                    a.offset,
                    events.len()
                )
            });
            assert_eq!(
                ev["idempotencyKey"].as_str(),
                Some(a.key.as_str()),
                "seed {seed} cycle {cycle}: offset {}",
                a.offset
            );
            // The bodies are compact JSON with their keys in order, so the stored
            // payload printed compactly is the body byte for byte.
            assert_eq!(
                serde_json::to_string(&ev["payload"]).expect("json"),
                a.body,
                "seed {seed} cycle {cycle}: offset {} byte-equal",
                a.offset
            );
        }
        let picks = (0..5).map(|_| (splitmix(rng) as usize) % ledger.len().max(1));
        for i in picks.chain(ledger.len().saturating_sub(3)..ledger.len()) {
            let Some(a) = ledger.get(i) else { continue };
            let r = s.send(
                self.wh,
                &[("x-api-key", self.key), ("idempotency-key", &a.key)],
                &a.body,
            );
            assert_eq!(r.status, 200, "seed {seed} cycle {cycle}: {}", r.text());
            let v = r.json();
            assert_eq!(
                (v["duplicate"].as_bool(), v["offset"].as_u64()),
                (Some(true), Some(a.offset)),
                "seed {seed} cycle {cycle}: resend of {}",
                a.key
            );
        }
        let r = s.admin("GET", &format!("/api/flows/{}/consumers", self.fid), "");
        let consumers = r.json();
        if commit_floor > 0 {
            let committed = consumers[0]["committedOffset"].as_u64().expect("committed");
            assert!(
                committed >= commit_floor,
                "seed {seed} cycle {cycle}: commit went back ({committed} < {commit_floor})"
            );
            assert!(
                committed <= events.len() as u64,
                "seed {seed} cycle {cycle}: commit past the end"
            );
        }
        events.len()
    }
}

/// Commits the consumer at the ledger's highest acknowledged offset + 1 through node
/// `n`; returns the offset when the commit was answered 200.
fn commit(nodes: &Nodes, n: usize, fid: &str, key: &str, ledger: &Mutex<Vec<Acked>>) -> u64 {
    let end = ledger
        .lock()
        .expect("ledger")
        .iter()
        .map(|a| a.offset + 1)
        .max()
        .unwrap_or(0);
    let r = nodes.node(n).request(
        "POST",
        &format!("/api/flows/{fid}/consumers/faults/commit"),
        &[("x-api-key", key), ("content-type", "application/json")],
        format!("{{\"offset\":{end}}}").as_bytes(),
    );
    match r.status {
        200 => end,
        _ => 0,
    }
}

#[test]
fn every_acknowledged_event_survives_nats_and_node_faults_under_load() {
    let Some(mut cluster) = NatsCluster::start(3) else {
        return;
    };
    let seed: u64 = std::env::var("EVENTMESH_CLUSTER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0018);
    let cycles: u32 = std::env::var("EVENTMESH_CLUSTER_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    eprintln!(
        "cluster_faults: seed {seed}, {cycles} cycles (EVENTMESH_CLUSTER_SEED={seed} replays it)"
    );
    let mut rng = seed;
    let tmp = tempfile::tempdir().expect("tempdir");
    let prefix = unique_prefix("faults");
    let mut nodes = Nodes::start(tmp.path(), &cluster, &prefix);
    let flow = nodes.node(0).flow(r#"{"name":"faults","rateLimit":null}"#);
    let (fid, wh) = (
        flow["id"].as_str().expect("id").to_owned(),
        flow["webhookId"].as_str().expect("wh").to_owned(),
    );
    let stream = format!("{prefix}_EV_{fid}");
    let (_, key) = nodes
        .node(0)
        .key(r#"{"name":"k","scopes":["ingest","read"]}"#);
    // The second node starts after the flow and key exist, so it reads both from the
    // registry as it starts (no waiting on the watch).
    nodes.restart(1);
    let ledger: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let next_id = Arc::new(AtomicU64::new(0));
    let mut commit_floor = 0u64;
    let mut unknown = 0u64;
    let mut stored = 0;
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<()>();
        let mut senders = Vec::new();
        for t in 0..4u64 {
            let (ledger, next_id, stop, tx, wh, key, addrs) = (
                Arc::clone(&ledger),
                Arc::clone(&next_id),
                Arc::clone(&stop),
                tx.clone(),
                wh.clone(),
                key.clone(),
                Arc::clone(&nodes.addrs),
            );
            let mut pick = seed ^ (u64::from(cycle) << 8) ^ t;
            senders.push(std::thread::spawn(move || {
                let mut unknown = 0u64;
                let mut n = (splitmix(&mut pick) % 2) as usize;
                while !stop.load(Ordering::SeqCst) {
                    let id = next_id.fetch_add(1, Ordering::SeqCst);
                    let k = format!("f{cycle}-t{t}-{id}");
                    let body = format!(
                        "{{\"event\":\"fault\",\"id\":{id},\"pad\":\"{}\"}}",
                        "p".repeat((id % 300) as usize)
                    );
                    let addr = addrs.lock().expect("addrs")[n];
                    let answer = Client { addr }.try_send(
                        &wh,
                        &[("x-api-key", &key), ("idempotency-key", &k)],
                        &body,
                    );
                    match answer {
                        Some(r) if r.status == 200 => {
                            let offset = r.json()["offset"].as_u64().expect("offset");
                            ledger.lock().expect("ledger").push(Acked {
                                offset,
                                key: k,
                                body,
                            });
                            let _ = tx.send(());
                            n = (splitmix(&mut pick) % 2) as usize;
                        }
                        // Cut, or 503 while NATS fails over: the outcome is unknown
                        // (stored at most once, under its unique key). Try the other node.
                        _ => {
                            unknown += 1;
                            n = 1 - n;
                        }
                    }
                }
                unknown
            }));
        }
        drop(tx);
        let wait_acks = |count: u64, what: &str| {
            for _ in 0..count {
                rx.recv_timeout(PROGRESS_WITHIN).unwrap_or_else(|_| {
                    panic!("seed {seed} cycle {cycle}: no ack within {PROGRESS_WITHIN:?} {what}")
                });
            }
        };
        wait_acks(20 + splitmix(&mut rng) % 60, "before the faults");
        let mut faults = [Fault::KillNats, Fault::KillNode, Fault::PauseLeader];
        for i in (1..faults.len()).rev() {
            faults.swap(i, (splitmix(&mut rng) as usize) % (i + 1));
        }
        for fault in faults {
            let n = (splitmix(&mut rng) % 2) as usize;
            commit_floor = commit_floor.max(commit(&nodes, n, &fid, &key, &ledger));
            match fault {
                Fault::KillNats => {
                    let i = (splitmix(&mut rng) as usize) % cluster.len();
                    eprintln!("cluster_faults: cycle {cycle}: kill -9 nats-server n{i}");
                    cluster.kill9(i);
                    wait_acks(5 + splitmix(&mut rng) % 30, "with a nats-server dead");
                    cluster.restart(i);
                }
                Fault::KillNode => {
                    eprintln!("cluster_faults: cycle {cycle}: kill -9 EventMesh node {n}");
                    nodes.kill9(n);
                    wait_acks(5 + splitmix(&mut rng) % 30, "with a node dead");
                    nodes.restart(n);
                }
                Fault::PauseLeader => {
                    let leader = cluster.stream_leader(&stream, &[]);
                    eprintln!("cluster_faults: cycle {cycle}: SIGSTOP stream leader n{leader}");
                    cluster.signal(leader, true);
                    // The fault's length, not a wait for anything to happen.
                    std::thread::sleep(PAUSE);
                    cluster.signal(leader, false);
                    cluster.wait_healthy(leader);
                }
            }
            wait_acks(10 + splitmix(&mut rng) % 30, "after a fault");
        }
        let n = (splitmix(&mut rng) % 2) as usize;
        commit_floor = commit_floor.max(commit(&nodes, n, &fid, &key, &ledger));
        stop.store(true, Ordering::SeqCst);
        for h in senders {
            unknown += h.join().expect("sender");
        }
        let check = Check {
            fid: &fid,
            wh: &wh,
            key: &key,
            seed,
            cycle,
        };
        let l = ledger.lock().expect("ledger");
        let on_0 = check.verify(nodes.node(0), &l, commit_floor, &mut rng);
        let on_1 = check.verify(nodes.node(1), &l, commit_floor, &mut rng);
        assert_eq!(
            on_0, on_1,
            "seed {seed} cycle {cycle}: both nodes read the same"
        );
        stored = on_0;
    }
    let acked = ledger.lock().expect("ledger").len();
    assert!(acked > 0, "events were acknowledged");
    eprintln!(
        "cluster_faults: seed {seed}: {cycles} cycles, {acked} acknowledged, {stored} stored, \
         0 lost, {unknown} answers unknown (cut or 503)"
    );
}
