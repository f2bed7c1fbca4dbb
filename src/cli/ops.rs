//! Operator commands that talk to a running server: flows, keys, send, tail, replay.

use bytes::Bytes;
use clap::{Args, Subcommand};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::cli::client::{header, split_url, ClientError, Conn};
use crate::http::signature::sign;
use crate::store::meta::SignatureScheme;

#[derive(Debug, Args)]
pub struct Server {
    /// The server's base URL.
    #[arg(
        long,
        global = true,
        env = "EVENTMESH_URL",
        default_value = "http://127.0.0.1:3000"
    )]
    pub url: String,
    /// The admin key (or a workspace key with scope read, for reads).
    #[arg(
        long,
        global = true,
        env = "EVENTMESH_ADMIN_KEY",
        hide_env_values = true
    )]
    pub admin_key: Option<String>,
    /// A PEM file of the certificate (or CA) an https:// server is trusted by; default:
    /// the system's roots.
    #[arg(long, global = true, env = "EVENTMESH_CACERT")]
    pub cacert: Option<std::path::PathBuf>,
    /// Print the server's JSON answer on one line, for scripts (default: for people).
    #[arg(long, global = true)]
    pub json: bool,
}

/// The flow settings `flow create` and `flow update` share.
#[derive(Debug, Args)]
pub struct FlowLimitArgs {
    /// `<perSecond>/<burst>`, or `off`.
    #[arg(long)]
    rate_limit: Option<String>,
    /// Seconds a key is remembered (1 to 2,592,000).
    #[arg(long)]
    dedup_window_seconds: Option<u64>,
}

impl FlowLimitArgs {
    /// Sets the given ones in a flow body.
    fn apply(&self, body: &mut Value) -> Result<(), ClientError> {
        if let Some(r) = &self.rate_limit {
            body["rateLimit"] = rate_limit_json(r)?;
        }
        if let Some(d) = self.dedup_window_seconds {
            body["dedupWindowSeconds"] = json!(d);
        }
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub enum FlowCmd {
    /// Create a flow; prints it (with its signature secret, shown this once).
    Create {
        /// 1 to 128 bytes.
        #[arg(long)]
        name: String,
        /// The workspace (default ws_default).
        #[arg(long)]
        workspace: Option<String>,
        /// none | eventmesh | github | stripe | standard | shopify | slack
        #[arg(long)]
        scheme: Option<String>,
        /// The signature secret (generated when omitted and a scheme is set).
        #[arg(long)]
        secret: Option<String>,
        #[command(flatten)]
        limits: FlowLimitArgs,
    },
    /// List the flows (of one workspace with --workspace).
    List {
        /// Only this workspace's flows.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Show one flow.
    Get {
        /// The flow's id (fl_…).
        id: String,
    },
    /// Change a flow's settings: only the flags given change.
    Update {
        /// The flow's id (fl_…).
        id: String,
        /// A new name (1 to 128 bytes).
        #[arg(long)]
        name: Option<String>,
        /// none | eventmesh | github | stripe | standard | shopify | slack
        #[arg(long)]
        scheme: Option<String>,
        /// A new signing secret (the previous one stays valid for 24 h).
        #[arg(long)]
        secret: Option<String>,
        #[command(flatten)]
        limits: FlowLimitArgs,
        /// A JSON pointer (`/data/id`) to the idempotency key; `""` clears it.
        #[arg(long)]
        dedup_key_pointer: Option<String>,
        /// Keep events at most this many seconds (`0`: no age limit).
        #[arg(long)]
        retention_max_age_seconds: Option<u64>,
        /// Keep at most this many bytes of events (`0`: no size limit).
        #[arg(long)]
        retention_max_bytes: Option<u64>,
        /// Leave signature headers out of the request kept with each event.
        #[arg(long)]
        strip_signature_headers: Option<bool>,
    },
    /// Delete a flow and all its events.
    Delete {
        /// The flow's id (fl_…).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Create an API key; prints it with its plaintext (shown this once).
    Create {
        /// 1 to 128 bytes.
        #[arg(long)]
        name: String,
        /// The workspace (default ws_default).
        #[arg(long)]
        workspace: Option<String>,
        /// Comma-separated: ingest, read.
        #[arg(long, default_value = "ingest")]
        scopes: String,
        /// live | test (the key's prefix, pk_live_ or pk_test_).
        #[arg(long, default_value = "live")]
        env: String,
        /// RFC 3339 expiry time.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List the API keys (never their secrets).
    List,
    /// New secret for a key; the old one stays valid for the grace period.
    Rotate {
        /// The key's id (key_…).
        id: String,
        /// Seconds the old secret stays valid.
        #[arg(long, default_value_t = 3600)]
        grace_seconds: u64,
    },
    /// Revoke a key at once.
    Revoke {
        /// The key's id (key_…).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The flow's webhook URL.
    pub webhook_url: String,
    /// JSON body to send.
    #[arg(
        long,
        default_value = r#"{"event":"test.event","data":{"hello":"world"}}"#
    )]
    pub data: String,
    /// API key (X-API-Key).
    #[arg(long, env = "EVENTMESH_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Sign as this scheme (with --secret).
    #[arg(long)]
    pub scheme: Option<String>,
    #[arg(long)]
    pub secret: Option<String>,
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    pub flow_id: String,
    /// Start at this offset (default: only new events).
    #[arg(long)]
    pub from: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    pub flow_id: String,
    #[arg(long, conflicts_with = "since")]
    pub from: Option<u64>,
    /// RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
}

pub type CliResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn scheme(s: &str) -> Result<SignatureScheme, ClientError> {
    serde_json::from_value(Value::String(s.to_owned()))
        .map_err(|_| ClientError::Usage(format!("unknown scheme {s:?}")))
}

impl Server {
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let (addr, base) = split_url(&self.url)?;
        let mut conn = Conn::open(&addr).await?;
        let mut headers = vec![header("content-type", "application/json")?];
        if let Some(k) = &self.admin_key {
            headers.push(header("authorization", &format!("Bearer {k}"))?);
        }
        let path = format!("{}{path}", base.trim_end_matches('/'));
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let (status, _, bytes) = conn.send(method, &path, &headers, body).await?;
        if !status.is_success() {
            return Err(ClientError::Status {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Http(format!("bad JSON from the server: {e}")))
    }
}

impl Server {
    /// Makes `--cacert` the trust of every connection, then gives `f` back to run.
    pub fn trusting<F>(&self, f: F) -> F {
        if let Some(path) = &self.cacert {
            crate::cli::client::trust(path);
        }
        f
    }

    /// Prints an answer: one line of JSON with `--json`; else a table for a list (one
    /// row per item, `columns` of it), pretty JSON for anything else.
    pub fn print(&self, v: &Value, list: Option<(&str, &[&str])>) {
        if self.json {
            println!("{v}");
            return;
        }
        if let Some((key, columns)) = list {
            if let Some(items) = v.get(key).and_then(Value::as_array).or(v.as_array()) {
                println!("{}", columns.join("\t"));
                for item in items {
                    let row: Vec<String> = columns
                        .iter()
                        .map(|c| match &item[*c] {
                            Value::String(s) => s.clone(),
                            Value::Null => "-".into(),
                            other => other.to_string(),
                        })
                        .collect();
                    println!("{}", row.join("\t"));
                }
                return;
            }
        }
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }
}

/// `<perSecond>/<burst>` or `off`, as the API's `rateLimit`.
fn rate_limit_json(r: &str) -> Result<Value, ClientError> {
    if r == "off" {
        return Ok(Value::Null);
    }
    let bad = || ClientError::Usage("--rate-limit is <perSecond>/<burst> or off".into());
    let (p, b) = r.split_once('/').ok_or_else(bad)?;
    let (p, b) = (
        p.parse::<u32>().map_err(|_| bad())?,
        b.parse::<u32>().map_err(|_| bad())?,
    );
    Ok(json!({ "perSecond": p, "burst": b }))
}

pub async fn flow(server: &Server, cmd: FlowCmd) -> CliResult {
    let v = match cmd {
        FlowCmd::Create {
            name,
            workspace,
            scheme: sch,
            secret,
            limits,
        } => {
            let mut body = json!({ "name": name });
            if let Some(w) = workspace {
                body["workspaceId"] = json!(w);
            }
            if let Some(s) = sch {
                scheme(&s)?;
                body["signature"] = json!({ "scheme": s, "secret": secret });
            }
            limits.apply(&mut body)?;
            server.call(Method::POST, "/api/flows", Some(body)).await?
        }
        FlowCmd::List { workspace } => {
            let query = workspace.map_or_else(String::new, |w| format!("?workspace={w}"));
            let v = server
                .call(Method::GET, &format!("/api/flows{query}"), None)
                .await?;
            server.print(
                &v,
                Some((
                    "flows",
                    &["id", "name", "workspaceId", "webhookUrl", "status"],
                )),
            );
            return Ok(());
        }
        FlowCmd::Update {
            id,
            name,
            scheme: sch,
            secret,
            limits,
            dedup_key_pointer,
            retention_max_age_seconds,
            retention_max_bytes,
            strip_signature_headers,
        } => {
            let mut body = json!({});
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if sch.is_some() || secret.is_some() {
                let mut sig = json!({});
                if let Some(s) = sch {
                    scheme(&s)?;
                    sig["scheme"] = json!(s);
                }
                if let Some(s) = secret {
                    sig["secret"] = json!(s);
                }
                body["signature"] = sig;
            }
            limits.apply(&mut body)?;
            if let Some(p) = dedup_key_pointer {
                body["dedupKeyPointer"] = json!(p);
            }
            if retention_max_age_seconds.is_some() || retention_max_bytes.is_some() {
                let zero_is_none = |v: Option<u64>| v.filter(|n| *n > 0);
                body["retention"] = json!({
                    "maxAgeSeconds": zero_is_none(retention_max_age_seconds),
                    "maxBytes": zero_is_none(retention_max_bytes),
                });
            }
            if let Some(strip) = strip_signature_headers {
                body["stripSignatureHeaders"] = json!(strip);
            }
            if body.as_object().is_some_and(serde_json::Map::is_empty) {
                return Err(ClientError::Usage(
                    "flow update: give at least one setting to change".into(),
                )
                .into());
            }
            server
                .call(Method::PATCH, &format!("/api/flows/{id}"), Some(body))
                .await?
        }
        FlowCmd::Get { id } => {
            server
                .call(Method::GET, &format!("/api/flows/{id}"), None)
                .await?
        }
        FlowCmd::Delete { id } => {
            server
                .call(Method::DELETE, &format!("/api/flows/{id}"), None)
                .await?;
            json!({ "deleted": id })
        }
    };
    server.print(&v, None);
    Ok(())
}

pub async fn key(server: &Server, cmd: KeyCmd) -> CliResult {
    let v = match cmd {
        KeyCmd::Create {
            name,
            workspace,
            scopes,
            env,
            expires_at,
        } => {
            let scopes: Vec<&str> = scopes
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            let body = json!({ "name": name, "workspaceId": workspace, "scopes": scopes, "env": env, "expiresAt": expires_at });
            server.call(Method::POST, "/api/keys", Some(body)).await?
        }
        KeyCmd::List => {
            let v = server.call(Method::GET, "/api/keys", None).await?;
            let columns = [
                "id",
                "name",
                "workspaceId",
                "env",
                "scopes",
                "revoked",
                "expiresAt",
            ];
            server.print(&v, Some(("keys", &columns)));
            return Ok(());
        }
        KeyCmd::Rotate { id, grace_seconds } => {
            let body = json!({ "graceSeconds": grace_seconds });
            server
                .call(Method::POST, &format!("/api/keys/{id}/rotate"), Some(body))
                .await?
        }
        KeyCmd::Revoke { id } => {
            server
                .call(Method::DELETE, &format!("/api/keys/{id}"), None)
                .await?;
            json!({ "revoked": id })
        }
    };
    server.print(&v, None);
    Ok(())
}

pub async fn send(args: SendArgs) -> CliResult {
    serde_json::from_str::<Value>(&args.data).map_err(|e| format!("--data is not JSON: {e}"))?;
    let (addr, path) = split_url(&args.webhook_url)?;
    let mut headers = vec![header("content-type", "application/json")?];
    if let Some(k) = &args.key {
        headers.push(header("x-api-key", k)?);
    }
    if let Some(k) = &args.idempotency_key {
        headers.push(header("idempotency-key", k)?);
    }
    if let Some(s) = &args.scheme {
        let secret = args.secret.as_deref().ok_or("--scheme needs --secret")?;
        let now_s = crate::log::Clock::now_ms(&crate::log::SystemClock).div_euclid(1000);
        for (n, v) in sign(
            scheme(s)?,
            secret,
            args.data.as_bytes(),
            now_s,
            &format!("msg_cli_{now_s}"),
        ) {
            headers.push(header(&n, &v)?);
        }
    }
    let mut conn = Conn::open(&addr).await?;
    let (status, _, body) = conn
        .send(Method::POST, &path, &headers, Bytes::from(args.data))
        .await?;
    println!("{} {}", status.as_u16(), String::from_utf8_lossy(&body));
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the server answered {status}").into())
    }
}

/// One parsed SSE event: (id, event type, data).
fn parse_sse(block: &str) -> Option<(Option<u64>, String, String)> {
    let mut id = None;
    let mut kind = "message".to_owned();
    let mut data = String::new();
    let mut has_data = false;
    for line in block.lines() {
        // One leading space after the colon is not part of the value (the SSE spec).
        let value = |v: &str| v.strip_prefix(' ').unwrap_or(v).to_owned();
        if let Some(v) = line.strip_prefix("id:") {
            id = value(v).trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("event:") {
            kind = value(v);
        } else if let Some(v) = line.strip_prefix("data:") {
            // Several data lines make one value, joined with LF.
            if has_data {
                data.push('\n');
            }
            data.push_str(&value(v));
            has_data = true;
        }
    }
    has_data.then_some((id, kind, data))
}

/// JSON text on one line: raw line breaks in JSON can only be whitespace between tokens
/// (inside a string they are escaped), so they become spaces and the value is the same.
/// That makes `replay` and `tail --json` NDJSON that `jq` and Python read line by line.
pub fn one_line(json: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !json.iter().any(|&b| b == b'\n' || b == b'\r') {
        return std::borrow::Cow::Borrowed(json);
    }
    std::borrow::Cow::Owned(
        json.iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
            .collect(),
    )
}

/// Writes one line to stdout; a closed pipe (`| head`) ends the command quietly.
fn emit(out: &mut impl std::io::Write, line: &[u8]) -> Result<bool, std::io::Error> {
    match out.write_all(line).and_then(|()| out.write_all(b"\n")) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    }
}

pub async fn tail(server: &Server, args: TailArgs) -> CliResult {
    use std::io::Write as _;
    let (addr, base) = split_url(&server.url)?;
    let mut last: Option<u64> = None;
    loop {
        let mut conn = Conn::open(&addr).await?;
        let mut headers = Vec::new();
        if let Some(k) = &server.admin_key {
            headers.push(header("authorization", &format!("Bearer {k}"))?);
        }
        if let Some(l) = last {
            headers.push(header("last-event-id", &l.to_string())?);
        }
        let from = args.from.map(|f| format!("?from={f}")).unwrap_or_default();
        let path = format!(
            "{}/api/flows/{}/stream{from}",
            base.trim_end_matches('/'),
            args.flow_id
        );
        let response = conn
            .start(Method::GET, &path, &headers, Bytes::new())
            .await?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            return Err(ClientError::Status {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            }
            .into());
        }
        let mut body = response.into_body();
        let mut buf = String::new();
        let mut overflowed = false;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            buf.push_str(&String::from_utf8_lossy(&data));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                match parse_sse(&block) {
                    Some((_, kind, _)) if kind == "overflow" => overflowed = true,
                    Some((id, kind, data)) => {
                        last = id.or(last);
                        let line = if server.json {
                            one_line(data.as_bytes()).into_owned()
                        } else {
                            let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                            format!(
                                "{} {} {} {}",
                                id.unwrap_or(0),
                                v["receivedAt"].as_str().unwrap_or(""),
                                kind,
                                v["payload"]
                            )
                            .into_bytes()
                        };
                        let mut out = std::io::stdout().lock();
                        if !emit(&mut out, &line)? || out.flush().is_err() {
                            return Ok(());
                        }
                    }
                    None => {}
                }
            }
        }
        if !overflowed {
            return Ok(());
        }
        eprintln!(
            "eventmesh tail: the stream was cut (too slow); resuming after {}",
            last.unwrap_or(0)
        );
    }
}

/// One page of events, with each event kept as its raw JSON text.
#[derive(serde::Deserialize)]
struct RawPage<'a> {
    #[serde(borrow)]
    events: Vec<&'a serde_json::value::RawValue>,
    #[serde(rename = "nextOffset")]
    next_offset: u64,
    #[serde(rename = "endOffset")]
    end_offset: u64,
}

pub async fn replay(server: &Server, args: ReplayArgs) -> CliResult {
    use std::io::Write;
    let mut query = match (&args.from, &args.since) {
        (Some(f), _) => format!("from={f}"),
        (None, Some(s)) => format!("since={s}"),
        (None, None) => "from=0".to_owned(),
    };
    let (addr, base) = split_url(&server.url)?;
    let mut conn = Conn::open(&addr).await?;
    let mut headers = Vec::new();
    if let Some(k) = &server.admin_key {
        headers.push(header("authorization", &format!("Bearer {k}"))?);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut stop_at: Option<u64> = None;
    loop {
        let path = format!(
            "{}/api/flows/{}/events?{query}&limit=1000",
            base.trim_end_matches('/'),
            args.flow_id
        );
        let (status, _, body) = conn
            .send(Method::GET, &path, &headers, Bytes::new())
            .await?;
        if !status.is_success() {
            return Err(ClientError::Status {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            }
            .into());
        }
        let page: RawPage<'_> = serde_json::from_slice(&body)?;
        for ev in &page.events {
            if !emit(&mut out, &one_line(ev.get().as_bytes()))? {
                return Ok(());
            }
        }
        // Replay up to the end as it was when the replay started.
        let end = *stop_at.get_or_insert(page.end_offset);
        if page.next_offset >= end || page.events.is_empty() {
            return match out.flush() {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            };
        }
        query = format!("from={}", page.next_offset);
    }
}
