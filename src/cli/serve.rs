//! `eventmesh serve`: flags and environment, then the server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::http::tls::TlsSource;
use crate::http::{limits, serve, ClusterConfig, HttpLimits, ServeConfig};
use crate::log::FsyncPolicy;
use crate::store::partition::nats::NatsConfig;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "EVENTMESH_LISTEN", default_value = "127.0.0.1:3000")]
    listen: String,
    /// Data directory (created if missing).
    #[arg(long, env = "EVENTMESH_DATA_DIR", default_value = "./eventmesh-data")]
    data_dir: PathBuf,
    /// Admin key (24 to 256 characters); default: generated on first start and printed once.
    #[arg(long, env = "EVENTMESH_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// The installation secret (32 bytes; key hashes and the seal on flow secrets);
    /// default `<data-dir>/secret`. Kept elsewhere, a copy of the data directory alone
    /// reveals no sender's signing secret. Created on first start.
    #[arg(long, env = "EVENTMESH_SECRET_FILE")]
    secret_file: Option<PathBuf>,
    /// always | interval=<ms> | never. `always`: a 2xx means the event was fdatasync'ed.
    #[arg(long, env = "EVENTMESH_FSYNC", default_value = "always", value_parser = super::parse_fsync)]
    fsync: FsyncPolicy,
    /// Base URL shown in webhook URLs (default http://<listen>).
    #[arg(long, env = "EVENTMESH_PUBLIC_URL")]
    public_url: Option<String>,
    /// Largest request body, in bytes: at most 8 MiB (the most one stored event holds).
    #[arg(long, env = "EVENTMESH_BODY_LIMIT", default_value_t = limits::BODY_BYTES_DEFAULT)]
    body_limit: usize,
    /// Most open connections; more are answered 503.
    #[arg(long, env = "EVENTMESH_MAX_CONNECTIONS", default_value_t = limits::CONNECTIONS_DEFAULT)]
    max_connections: usize,
    /// Seconds a client has to send its request headers.
    #[arg(
        long = "header-timeout",
        env = "EVENTMESH_HEADER_TIMEOUT",
        default_value_t = limits::HEADER_READ_TIMEOUT_S_DEFAULT
    )]
    header_timeout_s: u64,
    /// Seconds a client has to send its request body.
    #[arg(
        long = "body-timeout",
        env = "EVENTMESH_BODY_TIMEOUT",
        default_value_t = limits::BODY_READ_TIMEOUT_S_DEFAULT
    )]
    body_timeout_s: u64,
    /// TLS certificate chain (PEM), leaf first; with --tls-key. Reloaded on SIGHUP.
    #[arg(
        long,
        env = "EVENTMESH_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1); with --tls-cert.
    #[arg(long, env = "EVENTMESH_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// TLS with a self-signed certificate for local trials, made once in
    /// <data-dir>/tls/ (its path and SHA-256 fingerprint are printed at start).
    #[arg(long, env = "EVENTMESH_TLS_SELF_SIGNED")]
    tls_self_signed: bool,
    /// Where flows' events live: `local` (this node's disk) or `nats` (cluster mode:
    /// NATS JetStream streams, docs/cluster.md).
    #[arg(long, env = "EVENTMESH_BACKEND", default_value = "local", value_parser = ["local", "nats"])]
    backend: String,
    /// NATS servers for `--backend nats`, comma-separated (nats://h1:4222,nats://h2:4222).
    #[arg(long, env = "EVENTMESH_NATS_URL", value_delimiter = ',')]
    nats_url: Vec<String>,
    /// The servers' monitoring endpoints, comma-separated (http://h1:8222,...): checked
    /// at start for `sync_interval: always`, the setting under which a 2xx means
    /// fsynced on a quorum. Without them the durability is reported "unverified".
    #[arg(long, env = "EVENTMESH_NATS_MONITOR_URL", value_delimiter = ',')]
    nats_monitor_url: Vec<String>,
    /// Replicas of each flow's stream in cluster mode.
    #[arg(long, env = "EVENTMESH_REPLICAS", default_value_t = 3)]
    replicas: usize,
    /// Names this deployment's streams and subjects, so deployments can share a cluster.
    #[arg(long, env = "EVENTMESH_NATS_PREFIX", default_value = "EM", value_parser = parse_prefix)]
    nats_prefix: String,
}

/// A stream-name-safe prefix: letters, digits and `_`, 1 to 32 characters.
fn parse_prefix(s: &str) -> Result<String, String> {
    match !s.is_empty() && s.len() <= 32 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        true => Ok(s.to_owned()),
        false => Err("1 to 32 letters, digits or '_'".into()),
    }
}

pub fn run(args: ServeArgs) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    if let Some(Err(e)) = args
        .admin_key
        .as_deref()
        .map(crate::store::keys::check_admin_key)
    {
        eprintln!("eventmesh serve: {e}");
        return ExitCode::from(2);
    }
    let limits = HttpLimits {
        body_bytes_max: args.body_limit,
        connections_max: args.max_connections,
        header_read_timeout: std::time::Duration::from_secs(args.header_timeout_s),
        body_read_timeout: std::time::Duration::from_secs(args.body_timeout_s),
        ..HttpLimits::default()
    };
    if let Err(e) = limits.validate() {
        eprintln!("eventmesh serve: {e}");
        return ExitCode::from(2);
    }
    let tls = match (args.tls_cert, args.tls_key, args.tls_self_signed) {
        (Some(cert), Some(key), _) => Some(TlsSource::Files { cert, key }),
        (_, _, true) => Some(TlsSource::SelfSigned {
            data_dir: args.data_dir.clone(),
            host: listen_host(&args.listen),
        }),
        _ => None,
    };
    let cluster = match args.backend.as_str() {
        "nats" if args.nats_url.is_empty() => {
            eprintln!("eventmesh serve: --backend nats needs --nats-url nats://host:port,...");
            return ExitCode::from(2);
        }
        "nats" => Some(ClusterConfig {
            nats: NatsConfig {
                urls: args.nats_url,
                replicas: args.replicas,
                prefix: args.nats_prefix,
                ..NatsConfig::new(Vec::new())
            },
            monitor_urls: args.nats_monitor_url,
        }),
        _ => None,
    };
    let config = ServeConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        admin_key: args.admin_key,
        secret_file: args.secret_file,
        fsync: args.fsync,
        public_url: args.public_url,
        limits,
        tls,
        cluster,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eventmesh serve: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eventmesh serve: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The host part of a listen address (`127.0.0.1:3000` → `127.0.0.1`, `[::1]:3000` →
/// `::1`), named in a self-signed certificate.
fn listen_host(listen: &str) -> String {
    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}
