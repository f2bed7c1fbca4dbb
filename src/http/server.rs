//! The listener: TLS (optional), HTTP/1.1 and HTTP/2 on one port (hyper-util's auto
//! builder: ALPN `h2` over TLS, h2c with prior knowledge on plaintext), connection cap,
//! header and request deadlines, graceful shutdown, periodic maintenance.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::http::app::{App, HttpLimits};
use crate::http::connections::Connections;
use crate::http::limits;
use crate::http::response::Reply;
use crate::http::router::handle;
use crate::http::tls::{Tls, TlsError, TlsSource};
use crate::http::transport::{self, Conn, Protocol};
use crate::log::FsyncPolicy;
use crate::store::partition::nats::monitor::{self, Durability};
use crate::store::partition::nats::{NatsBackend, NatsConfig};
use crate::store::{FlowOpening, Store, StoreConfig, StoreError};

/// How often retention, compaction and checkpoints run.
pub const MAINTENANCE_PERIOD: Duration = Duration::from_secs(60);
/// How often analytics read the logs' new records (short runs, not one long burst).
pub const ANALYTICS_PERIOD: Duration = Duration::from_secs(1);
/// Longest wait for in-flight requests at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    pub admin_key: Option<String>,
    /// Where the installation secret lives; default `<data>/secret`.
    pub secret_file: Option<PathBuf>,
    pub fsync: FsyncPolicy,
    pub public_url: Option<String>,
    pub limits: HttpLimits,
    /// TLS on the listener; `None` is plaintext.
    pub tls: Option<TlsSource>,
    /// Cluster mode: flows' events on NATS JetStream. `None`: on this node's disk.
    pub cluster: Option<ClusterConfig>,
}

/// How to reach the NATS cluster, and where to check what its acks mean.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub nats: NatsConfig,
    pub monitor_urls: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the data directory: {0}")]
    Store(#[from] StoreError),
    #[error("cluster mode: {0}")]
    Cluster(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("{0}")]
    Runtime(String),
}

/// Runs the server until SIGTERM or SIGINT, then drains, syncs and returns.
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let mut store_config = StoreConfig {
        fsync: config.fsync,
        admin_key: config.admin_key.clone(),
        secret_file: config.secret_file.clone(),
        flow_opening: FlowOpening::OnDemand,
        ..StoreConfig::new(&config.data_dir)
    };
    // Listen first, so that /healthz and /readyz (503 "recovering") answer while the
    // store recovers; the "listening on" line comes once everything is ready.
    let listener =
        Arc::new(
            TcpListener::bind(&config.listen)
                .await
                .map_err(|source| ServeError::Listen {
                    addr: config.listen.clone(),
                    source,
                })?,
        );
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: config.listen.clone(),
        source,
    })?;
    let nofile = raise_open_files_limit();
    let tls = match config.tls.clone() {
        Some(source) => {
            let tls = Tls::load(source)?;
            println!(
                "TLS certificate {} (SHA-256 fingerprint {})",
                tls.cert_path().display(),
                tls.fingerprint()
            );
            Some(Arc::new(tls))
        }
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let recovering = tokio::spawn(answer_while_recovering(Arc::clone(&listener), tls.clone()));
    let cluster = match config.cluster.clone() {
        Some(cluster) => {
            let (backend, durability) =
                tokio::task::spawn_blocking(move || connect_cluster(cluster))
                    .await
                    .map_err(|e| ServeError::Runtime(e.to_string()))??;
            let registry = backend
                .registry()
                .map_err(|e| ServeError::Cluster(e.to_string()))?;
            let backend_offsets = backend.offsets();
            store_config.partitions = Some(Arc::new(backend));
            store_config.registry = Some(Arc::new(registry));
            store_config.offsets = Some(Arc::new(
                backend_offsets.map_err(|e| ServeError::Cluster(e.to_string()))?,
            ));
            Some(durability)
        }
        None => None,
    };
    let opened = tokio::task::spawn_blocking(move || Store::open(store_config)).await;
    recovering.abort();
    let _ = recovering.await;
    let store = opened.map_err(|e| ServeError::Runtime(e.to_string()))??;
    warn_if_open_files_short(nofile, config.limits.connections_max);
    if let Some(key) = store.generated_admin_key() {
        println!("admin key (shown once; keep it): {key}");
    }
    let listener = Arc::try_unwrap(listener)
        .map_err(|_| ServeError::Runtime("the listener is still shared".into()))?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));
    let mut app = App::new(store, config.limits.clone(), public_url);
    if let Some(durability) = cluster {
        app = app.in_cluster(durability);
    }
    let app = Arc::new(app);
    let maintenance = tokio::spawn(maintain(Arc::clone(&app)));
    let opener = tokio::spawn(open_in_background(Arc::clone(&app)));
    let flusher = tokio::spawn(flush_request_logs(Arc::clone(&app)));
    let reloader = tls.clone().map(|tls| tokio::spawn(reload_on_sighup(tls)));
    // The handlers are in place before the "listening on" line: a SIGTERM sent as soon
    // as it is read drains and syncs rather than killing the process outright.
    let stop = shutdown_signal();
    println!("listening on {scheme}://{addr}");
    tracing::info!(%addr, fsync = %config.fsync, data_dir = %config.data_dir.display(), "listening on {scheme}://{addr}");
    accept_loop(&app, listener, addr, tls, stop).await;
    // The opener's slice and an upkeep pass under way end after their current flow
    // (at 10,000 flows on a cluster a full pass takes minutes), so the final sync
    // below sees every flow that is open and waits for no long pass.
    app.store.stop_background_work();
    maintenance.abort();
    let _ = opener.await;
    flusher.abort();
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    let store = app.store.clone();
    match tokio::task::spawn_blocking(move || store.sync_all()).await {
        Ok(Ok(())) => tracing::info!("synced; bye"),
        Ok(Err(e)) => tracing::error!(error = %e, "final sync failed"),
        Err(e) => tracing::error!(error = %e, "final sync task failed"),
    }
    Ok(())
}

/// Connects cluster mode's backend (version and `max_payload` checked) and reads what
/// an ack means from the servers' `/varz`, saying it once, plainly.
fn connect_cluster(cluster: ClusterConfig) -> Result<(NatsBackend, Durability), ServeError> {
    let urls = cluster.nats.urls.join(",");
    let replicas = cluster.nats.replicas;
    let backend =
        NatsBackend::connect(cluster.nats).map_err(|e| ServeError::Cluster(e.to_string()))?;
    let durability = monitor::check(&cluster.monitor_urls);
    let words = durability.describe();
    println!(
        "cluster mode: NATS JetStream at {urls} (nats-server {}), R{replicas} streams; a 2xx means {words}",
        backend.server_version()
    );
    match &durability {
        Durability::Fsynced => tracing::info!(durability = %words, "every NATS server runs sync_interval: always"),
        Durability::QuorumMemory { sync_interval_s } => tracing::warn!(
            "an ack means the event is in memory on a quorum of NATS servers and synced within {sync_interval_s} s, \
             not fsynced before the 2xx: set sync_interval: always on every server for that"
        ),
        Durability::Unverified { why } => tracing::warn!(
            "cannot verify what an ack means ({why}): give every server's --nats-monitor-url; \
             a 2xx means stored by a JetStream quorum under the servers' own sync setting"
        ),
    }
    Ok((backend, durability))
}

/// The client's address, put into every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// A response body that keeps its connection marked busy until it is dropped, and
/// passes on everything else (so `Content-Length` answers stay what they were).
struct GuardedBody {
    inner: crate::http::response::Body,
    _busy: crate::http::connections::BusyGuard,
}

impl hyper::body::Body for GuardedBody {
    type Data = bytes::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Longest wait, at the connection cap, for an evicted idle connection's slot.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// Open files the server needs apart from connections and the journaled logs' budget.
const FDS_BASE: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (the usual soft limit, 1,024, is
/// far below what connections need). Returns the soft limit now in force.
fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::info!(from = ?limit.current, to = ?limit.maximum, "raised the open-files limit");
                return limit.maximum;
            }
            Err(e) => tracing::warn!(error = %e, "could not raise the open-files limit"),
        }
    }
    limit.current
}

/// Warns once at start when the open-files limit cannot hold every connection the cap
/// allows. The flows' logs need no descriptor of their own: they share a budget of 70 %
/// of the limit (`log::budget`), whatever their number.
fn warn_if_open_files_short(soft: Option<u64>, connections_max: usize) {
    let Some(soft) = soft else { return };
    let need = connections_max as u64 + FDS_BASE;
    let left = soft - soft * 7 / 10;
    if need > left {
        tracing::warn!(
            limit = soft,
            for_connections = left,
            connections_max,
            "the open-files limit leaves fewer descriptors than --max-connections (70 % of it is the flows' file budget); accepts will back off when they run out (raise `ulimit -n`, or lower --max-connections)"
        );
    }
}

/// EMFILE (the process) or ENFILE (the system): out of file descriptors.
fn is_fd_exhaustion(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24))
}

/// The accept loop's wait after running out of file descriptors.
#[derive(Debug, Default)]
struct FdBackoff {
    wait: Duration,
    last_log: Option<std::time::Instant>,
}

impl FdBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    fn reset(&mut self) {
        self.wait = Duration::ZERO;
    }

    /// The next wait (5 ms, doubling to 1 s); logs at most once a second.
    fn next(&mut self, e: &std::io::Error) -> Duration {
        self.wait = if self.wait.is_zero() {
            Self::FIRST
        } else {
            (self.wait * 2).min(Self::MAX)
        };
        if self
            .last_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            tracing::warn!(error = %e, wait_ms = self.wait.as_millis() as u64, "accept failed: out of file descriptors; backing off");
            self.last_log = Some(std::time::Instant::now());
        }
        self.wait
    }
}

async fn accept_loop(
    app: &Arc<App>,
    listener: TcpListener,
    addr: SocketAddr,
    tls: Option<Arc<Tls>>,
    stop: impl std::future::Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(app.limits.connections_max));
    let conns = Arc::new(Connections::default());
    let mut stop = std::pin::pin!(stop);
    let mut backoff = FdBackoff::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok((stream, peer)) => {
                        backoff.reset();
                        (stream, peer)
                    }
                    Err(e) if is_fd_exhaustion(&e) => {
                        // Out of file descriptors: a tight retry would spin a core. Back
                        // off (5 ms doubling to 1 s, as Go's net/http does), log at most
                        // once a second, count it.
                        app.metrics
                            .accept_fd_exhausted
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let wait = backoff.next(&e);
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = &mut stop => break,
                        }
                        continue;
                    }
                    Err(_) => continue,
                };
                let mut permit = Arc::clone(&permits).try_acquire_owned().ok();
                if permit.is_none() && conns.close_oldest_idle() {
                    // At the cap: the connection idle the longest makes room. Its task
                    // ends at once and gives its permit back.
                    let freed = tokio::time::timeout(
                        EVICTION_WAIT,
                        Arc::clone(&permits).acquire_owned(),
                    );
                    permit = freed.await.ok().and_then(Result::ok);
                }
                match permit {
                    Some(permit) => spawn_connection(app, (stream, peer), tls.as_deref(), &graceful, permit, &conns),
                    None => {
                        app.metrics.connections_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        // Over TLS a plaintext answer would be noise: the connection is
                        // closed (a handshake per refusal would cost the CPU the cap saves).
                        if tls.is_none() {
                            tokio::spawn(refuse(stream));
                        }
                    }
                }
            }
            () = &mut stop => break,
        }
    }
    tracing::info!(%addr, "shutting down: no new connections; draining");
    app.start_draining();
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within the grace period");
    }
}

/// Serves one connection in a task of its own, under the graceful-shutdown watch; the
/// permit (the connection's place under the cap) is released when it ends. Over TLS the
/// handshake runs in that task, under `TLS_HANDSHAKE_TIMEOUT`.
fn spawn_connection(
    app: &Arc<App>,
    (stream, peer): (TcpStream, SocketAddr),
    tls: Option<&Tls>,
    graceful: &GracefulShutdown,
    permit: tokio::sync::OwnedSemaphorePermit,
    conns: &Arc<Connections>,
) {
    let _ = stream.set_nodelay(true);
    let app = Arc::clone(app);
    let acceptor = tls.map(Tls::acceptor);
    let (id, activity, close) = conns.register();
    let conns = Arc::clone(conns);
    // The watch is taken now, so that a shutdown that starts during the handshake
    // still waits for this connection's requests.
    let watcher = graceful.watcher();
    tokio::spawn(async move {
        let served = async {
            let first_bytes = app.limits.header_read_timeout;
            let opened =
                transport::open(stream, acceptor, limits::TLS_HANDSHAKE_TIMEOUT, first_bytes);
            if let Some((conn, protocol)) = opened.await {
                serve_io(app, conn, protocol, Peer(peer), activity, watcher).await;
            }
        };
        tokio::select! {
            () = served => {}
            // Closed to make room at the cap: dropping the connection closes it.
            _ = close => {}
        }
        conns.remove(id);
        drop(permit);
    });
}

/// The connection builder for `protocol`: HTTP/1.1 and HTTP/2 with the same limits,
/// and HTTP/2's own.
fn connection_builder(limits: &HttpLimits, protocol: Protocol) -> auto::Builder<TokioExecutor> {
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut builder = match protocol {
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_only(),
    };
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.header_bytes_max)
        .max_headers(limits.headers_max)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits::H2_STREAMS_MAX)
        .max_header_list_size(u32::try_from(limits.header_bytes_max).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(limits::H2_PENDING_RESETS_MAX)
        .max_local_error_reset_streams(limits::H2_ERROR_RESETS_MAX)
        .keep_alive_interval(limits::H2_KEEPALIVE)
        .keep_alive_timeout(limits::H2_KEEPALIVE);
    builder
}

/// Serves one connection in `protocol` until it ends.
async fn serve_io(
    app: Arc<App>,
    conn: Conn,
    protocol: Protocol,
    peer: Peer,
    activity: Arc<crate::http::connections::Activity>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let builder = connection_builder(&app.limits, protocol);
    let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(peer);
        let app = Arc::clone(&app);
        let deadline = app.limits.request_timeout;
        // Busy until the response body is done (a stream or a long poll is never idle).
        let busy = activity.begin();
        async move {
            let response = match tokio::time::timeout(deadline, handle(app, req)).await {
                Ok(r) => r,
                Err(_) => Reply::error(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "request_timeout",
                    "the request took too long",
                )
                .into_response(),
            };
            let response = response.map(|inner| GuardedBody { inner, _busy: busy }.boxed());
            Ok::<_, Infallible>(response)
        }
    });
    let _ = watcher
        .watch(builder.serve_connection(TokioIo::new(conn), service))
        .await;
}

/// Serves `/healthz` (200) and everything else 503 `recovering` until aborted.
async fn answer_while_recovering(listener: Arc<TcpListener>, tls: Option<Arc<Tls>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = tls.as_ref().map(|tls| tls.acceptor());
        let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
            let reply = if req.uri().path() == "/healthz" {
                Reply::ok(serde_json::json!({"status": "ok"}))
            } else {
                Reply::error(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "recovering: the store is opening; retry shortly",
                )
                .with_header(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("1"),
                )
            };
            Ok::<_, Infallible>(reply.into_response())
        });
        tokio::spawn(async move {
            const DEADLINE: Duration = Duration::from_secs(10);
            let opened = transport::open(stream, acceptor, limits::TLS_HANDSHAKE_TIMEOUT, DEADLINE);
            let Some((conn, protocol)) = opened.await else {
                return;
            };
            let mut builder = connection_builder(&HttpLimits::default(), protocol);
            builder.http1().keep_alive(false);
            let _ = builder.serve_connection(TokioIo::new(conn), service).await;
        });
    }
}

/// Answers a connection over the cap with 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    let body = br#"{"error":"too_many_connections","message":"the server is at its connection limit; retry"}"#;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(body).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Hands buffered request-log entries to their writers every `REQUEST_LOG_FLUSH_PERIOD`.
async fn flush_request_logs(app: Arc<App>) {
    let mut tick = tokio::time::interval(crate::store::requests::REQUEST_LOG_FLUSH_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        app.store.flush_request_logs();
    }
}

/// Opens the flows no request has opened yet, a slice at a time, until every flow is
/// open; then prints (and logs) how long it took and how many are quarantined.
async fn open_in_background(app: Arc<App>) {
    const SLICE: Duration = Duration::from_millis(200);
    let started = std::time::Instant::now();
    loop {
        if app.store.stopping() {
            return;
        }
        let store = app.store.clone();
        let step = move || store.open_pending(std::time::Instant::now() + SLICE);
        match tokio::task::spawn_blocking(step).await {
            Ok(0) => break,
            Ok(_) => {}
            // A flow's opening panicking is caught and quarantined in the store; this
            // is the task itself failing: go on with the rest.
            Err(e) => tracing::warn!(error = %e, "a background flow-opening step failed"),
        }
    }
    if app.store.stopping() {
        return;
    }
    let (flows, quarantined) = (app.store.flow_count(), app.store.unavailable_flows().len());
    let seconds = started.elapsed().as_secs_f64();
    println!("every flow is open: {flows} flows, {quarantined} quarantined, in {seconds:.2} s");
    tracing::info!(flows, quarantined, seconds, "every flow is open");
}

async fn maintain(app: Arc<App>) {
    let mut tick = tokio::time::interval(ANALYTICS_PERIOD);
    tick.tick().await;
    let mut last_full = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        let store = app.store.clone();
        let full = last_full.elapsed() >= MAINTENANCE_PERIOD;
        if full {
            last_full = tokio::time::Instant::now();
        }
        let work = move || {
            if full {
                store.maintenance()
            } else {
                store.catch_up_analytics()
            }
        };
        match tokio::task::spawn_blocking(work).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "maintenance failed"),
            Err(e) => tracing::warn!(error = %e, "maintenance task failed"),
        }
    }
}

/// Rereads the TLS certificate and key on each SIGHUP; a failed reload keeps the old.
async fn reload_on_sighup(tls: Arc<Tls>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot watch SIGHUP: the TLS certificate will not be reloaded");
        return;
    };
    while hup.recv().await.is_some() {
        let tls = Arc::clone(&tls);
        match tokio::task::spawn_blocking(move || tls.reload()).await {
            Ok(Ok(fingerprint)) => {
                tracing::info!(%fingerprint, "SIGHUP: reloaded the TLS certificate")
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "SIGHUP: TLS reload failed; the old certificate stays")
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: TLS reload task failed"),
        }
    }
}

/// Registers the SIGTERM and SIGINT handlers now (not at the first poll, as
/// `tokio::signal::ctrl_c` would) and returns a future that ends at the first of them.
/// A handler that cannot be registered leaves that signal's default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    async move {
        tokio::select! {
            () = next_of(term.as_mut()) => {},
            () = next_of(int.as_mut()) => {},
        }
    }
}

/// Ends at the signal's next delivery; never, for a handler that was not registered.
async fn next_of(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => drop(s.recv().await),
        None => std::future::pending::<()>().await,
    }
}
