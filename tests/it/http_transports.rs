//! Transports on the real binary: HTTPS with the self-signed certificate and with one
//! made here (reloaded on SIGHUP without dropping open connections), HTTP/2 as h2c with
//! prior knowledge (curl) and over TLS with ALPN (curl, rustls, Python httpx), HTTP/2
//! under the same limits as HTTP/1.1, and the rapid-reset flood (CVE-2023-44487).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::server::{await_listening_printing, serve_command, Server, ADMIN};

const H2_CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/h2_clients.py");

fn require_clients() -> bool {
    std::env::var_os("EVENTMESH_REQUIRE_CLIENTS").is_some()
}

/// Runs curl (no proxy) and returns the status (0 when no answer), body and HTTP version.
fn curl(args: &[&str]) -> (u16, String, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--noproxy",
            "*",
            "-o",
            "-",
            "-w",
            "\n%{http_code} %{http_version}",
        ])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').expect("curl's -w line");
    let (code, version) = tail.split_once(' ').expect("code and version");
    (
        code.parse().unwrap_or(0),
        body.to_string(),
        version.to_string(),
    )
}

/// POSTs a JSON `body` with curl (`flags` first) and the `X-API-Key: …` header given.
fn curl_post(flags: &[&str], url: &str, api_key: &str, body: &str) -> (u16, String, String) {
    let mut args = flags.to_vec();
    args.extend(["-X", "POST", url, "-H", api_key]);
    args.extend(["-H", "Content-Type: application/json", "-d", body]);
    curl(&args)
}

/// A server started here with stdout and, optionally, stderr (its log) read.
struct Started {
    server: Server,
    printed: Vec<String>,
    log: Option<mpsc::Receiver<String>>,
}

fn start(dir: &Path, args: &[&str], read_log: bool) -> Started {
    let mut child = serve_command(dir)
        .args(args)
        .env("RUST_LOG", if read_log { "info" } else { "warn" })
        .stdout(Stdio::piped())
        .stderr(if read_log {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("spawn eventmesh serve");
    let log = read_log.then(|| {
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        rx
    });
    let (addr, printed) = await_listening_printing(&mut child);
    Started {
        server: Server::adopt(child, addr, dir),
        printed,
        log,
    }
}

/// Waits for a log line containing `text` (the deadline only guards against a hang).
fn await_log(log: &mpsc::Receiver<String>, text: &str) {
    loop {
        let line = log
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the server never logged {text:?}"));
        if line.contains(text) {
            return;
        }
    }
}

/// The SHA-256 of a PEM file's first certificate, as `AB:CD:…`.
fn pem_fingerprint(pem: &str) -> String {
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An admin POST of JSON over curl (with `transport`'s flags): the 201 body.
fn admin_post(base: &str, transport: &[&str], path: &str, body: &str) -> Value {
    let auth = format!("Authorization: Bearer {ADMIN}");
    let url = format!("{base}{path}");
    let mut args: Vec<&str> = transport.to_vec();
    args.extend([
        "-X",
        "POST",
        &url,
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
    ]);
    args.extend(["-d", body]);
    let (status, text, _) = curl(&args);
    assert_eq!(status, 201, "{text}");
    serde_json::from_str(&text).expect("json")
}

/// Creates a flow and an ingest+read key over curl; returns (flow, key).
fn flow_and_key(base: &str, transport: &[&str]) -> (Value, String) {
    let flow = admin_post(base, transport, "/api/flows", r#"{"name":"transports"}"#);
    let key = admin_post(
        base,
        transport,
        "/api/keys",
        r#"{"name":"k","scopes":["ingest","read"]}"#,
    );
    (flow, key["key"].as_str().expect("key").to_string())
}

#[test]
fn https_with_the_self_signed_certificate_serves_curl_on_http1_and_h2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let started = start(&dir, &["--tls-self-signed"], false);
    let cert = dir.join("tls/self-signed-cert.pem");
    let pem = std::fs::read_to_string(&cert).expect("the certificate is in the data directory");
    let fingerprint = pem_fingerprint(&pem);
    let line = format!(
        "TLS certificate {} (SHA-256 fingerprint {fingerprint})",
        cert.display()
    );
    assert!(started.printed.contains(&line), "{:?}", started.printed);
    let base = format!("https://localhost:{}", started.server.addr.port());
    let cacert = cert.to_str().expect("utf-8 path");
    let tls = ["--cacert", cacert];
    let (flow, key) = flow_and_key(&base, &tls);
    let hook = flow["webhookUrl"].as_str().expect("webhookUrl");
    assert!(hook.starts_with("https://"), "{hook}");
    let api_key = format!("X-API-Key: {key}");
    let (status, body, version) = curl_post(
        &["--cacert", cacert, "--http1.1"],
        hook,
        &api_key,
        r#"{"over":"https"}"#,
    );
    assert_eq!((status, version.as_str()), (200, "1.1"), "{body}");
    let events = format!(
        "{base}/api/flows/{}/events",
        flow["id"].as_str().expect("id")
    );
    let (status, body, version) = curl(&["--cacert", cacert, "--http2", &events, "-H", &api_key]);
    assert_eq!((status, version.as_str()), (200, "2"), "{body}");
    let page: Value = serde_json::from_str(&body).expect("page");
    assert_eq!(page["events"][0]["payload"]["over"], "https");
    // Plaintext HTTP to the TLS port gets no answer; an unknown certificate is refused.
    let plain = format!("http://127.0.0.1:{}/healthz", started.server.addr.port());
    assert_eq!(curl(&[&plain]).0, 0);
    assert_eq!(
        curl(&[&format!("{base}/healthz")]).0,
        0,
        "curl trusts no self-signed cert by default"
    );
    // TLS 1.2 alone works too (1.3 was used above).
    let (status, _, _) = curl(&[
        "--cacert",
        cacert,
        "--tlsv1.2",
        "--tls-max",
        "1.2",
        &format!("{base}/healthz"),
    ]);
    assert_eq!(status, 200);
    // The operator commands speak HTTPS too, trusting --cacert (or EVENTMESH_CACERT).
    let cli = |args: &[&str], env_cacert: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_eventmesh"));
        c.args(args)
            .env("EVENTMESH_ADMIN_KEY", ADMIN)
            .env_remove("EVENTMESH_CACERT");
        if env_cacert {
            c.env("EVENTMESH_CACERT", cacert);
        }
        c.output().expect("run eventmesh")
    };
    let out = cli(
        &["flow", "list", "--url", &base, "--cacert", cacert, "--json"],
        false,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(listed["flows"][0]["id"], flow["id"]);
    let out = cli(
        &["send", hook, "--key", &key, "--data", r#"{"via":"cli"}"#],
        true,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("200 "));
    let out = cli(&["flow", "list", "--url", &base], false);
    assert_eq!(
        out.status.code(),
        Some(5),
        "an untrusted certificate fails the connection"
    );
    // The certificate is made once: a restart uses the same one.
    let mut server = started.server;
    assert!(server.terminate().success());
    let again = start(&dir, &["--tls-self-signed"], false);
    assert!(again.printed.contains(&line), "{:?}", again.printed);
}

fn make_cert(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    let cert = dir.join(format!("{name}-cert.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    std::fs::write(&cert, made.cert.pem()).expect("write cert");
    std::fs::write(&key, made.key_pair.serialize_pem()).expect("write key");
    (cert, key, made.cert.der().to_vec())
}

type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS connection trusting only `der`, offering `alpn`.
async fn connect(
    addr: std::net::SocketAddr,
    der: &[u8],
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der.to_vec()))
        .expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// One keep-alive HTTP/1.1 GET on an open connection: the status and body.
async fn get(stream: &mut TlsStream, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "the connection closed mid-response");
        raw.extend_from_slice(&buf[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("content-length");
        if raw.len() >= end + 4 + length {
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .expect("status");
            return (
                status,
                String::from_utf8_lossy(&raw[end + 4..end + 4 + length]).into(),
            );
        }
    }
}

#[test]
fn a_certificate_made_here_is_served_and_reloaded_on_sighup_without_dropping_connections() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a_cert, a_key, a_der) = make_cert(tmp.path(), "a");
    let (b_cert, b_key, b_der) = make_cert(tmp.path(), "b");
    let cert = tmp.path().join("cert.pem");
    let key = tmp.path().join("key.pem");
    std::fs::copy(&a_cert, &cert).expect("copy");
    std::fs::copy(&a_key, &key).expect("copy");
    let started = start(
        &tmp.path().join("data"),
        &[
            "--tls-cert",
            cert.to_str().expect("utf-8"),
            "--tls-key",
            key.to_str().expect("utf-8"),
        ],
        true,
    );
    let log = started.log.as_ref().expect("log");
    let addr = started.server.addr;
    let pid = started.server.child.id().to_string();
    let hup = || {
        let ok = Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
    };
    // curl, trusting only the certificate in force, before and after the reload.
    let curl_trusting = |pem: &Path| {
        let url = format!("https://localhost:{}/healthz", addr.port());
        curl(&["--cacert", pem.to_str().expect("utf-8"), &url])
    };
    let (status, body, _) = curl_trusting(&a_cert);
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    assert_eq!(curl_trusting(&b_cert).0, 0, "B is not served yet");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // ALPN: h2 first, HTTP/1.1 offered alone gets HTTP/1.1.
        let h2 = connect(addr, &a_der, &[b"h2", b"http/1.1"])
            .await
            .expect("tls");
        assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let mut kept = connect(addr, &a_der, &[b"http/1.1"]).await.expect("tls");
        assert_eq!(kept.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(get(&mut kept, "/healthz").await.0, 200);

        std::fs::copy(&b_cert, &cert).expect("copy");
        std::fs::copy(&b_key, &key).expect("copy");
        hup();
        await_log(log, "reloaded the TLS certificate");
        assert!(
            connect(addr, &a_der, &[]).await.is_err(),
            "new handshakes get the new certificate"
        );
        assert_eq!(
            curl_trusting(&b_cert).0,
            200,
            "curl gets the new certificate"
        );
        assert_eq!(curl_trusting(&a_cert).0, 0);
        let mut fresh = connect(addr, &b_der, &[])
            .await
            .expect("the new certificate");
        assert_eq!(get(&mut fresh, "/healthz").await.0, 200);
        // The connection opened before the reload still serves.
        let (status, body) = get(&mut kept, "/healthz").await;
        assert_eq!((status, body.contains("ok")), (200, true), "{body}");

        // A reload that fails keeps the certificate in force.
        std::fs::write(&cert, "not a certificate").expect("write");
        hup();
        await_log(log, "TLS reload failed");
        let mut after = connect(addr, &b_der, &[])
            .await
            .expect("the old certificate stays");
        assert_eq!(get(&mut after, "/healthz").await.0, 200);
        assert_eq!(get(&mut kept, "/healthz").await.0, 200);
    });
}

#[test]
fn h2c_with_prior_knowledge_serves_curl_under_the_same_limits() {
    let s = Server::start(&["--body-limit", "1024"]);
    let base = format!("http://{}", s.addr);
    let (flow, key) = flow_and_key(&base, &["--http2-prior-knowledge"]);
    let hook = flow["webhookUrl"].as_str().expect("webhookUrl");
    let api_key = format!("X-API-Key: {key}");
    let send = |body: &str, extra: &[&str]| {
        let mut flags = vec!["--http2-prior-knowledge"];
        flags.extend_from_slice(extra);
        curl_post(&flags, hook, &api_key, body)
    };
    let (status, body, version) = send(r#"{"over":"h2c"}"#, &[]);
    assert_eq!((status, version.as_str()), (200, "2"), "{body}");
    let events = format!(
        "{base}/api/flows/{}/events",
        flow["id"].as_str().expect("id")
    );
    let (status, body, version) = curl(&["--http2-prior-knowledge", &events, "-H", &api_key]);
    assert_eq!((status, version.as_str()), (200, "2"), "{body}");
    let page: Value = serde_json::from_str(&body).expect("page");
    assert_eq!(page["events"][0]["payload"]["over"], "h2c");
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1));

    // The body limit holds on h2.
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2000));
    let (status, body, version) = send(&big, &[]);
    assert_eq!((status, version.as_str()), (413, "2"), "{body}");
    assert!(body.contains("payload_too_large"), "{body}");
    // So does the header count (100 by default).
    let many: Vec<String> = (0..120).map(|i| format!("X-Extra-{i}: {i}")).collect();
    let mut extra = Vec::new();
    for h in &many {
        extra.extend(["-H", h.as_str()]);
    }
    let (status, body, _) = send(r#"{"n":1}"#, &extra);
    assert_eq!(status, 431, "{body}");
    assert!(body.contains("request_header_fields_too_large"), "{body}");
    // Nothing of the refused requests was stored.
    let (_, body, _) = curl(&["--http2-prior-knowledge", &events, "-H", &api_key]);
    let page: Value = serde_json::from_str(&body).expect("page");
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1), "{body}");
}

fn run_httpx(base: &str, cacert: &str, flow: &Value, key: &str) -> Option<Value> {
    let out = Command::new("python3")
        .args([
            H2_CLIENTS,
            "httpx",
            base,
            cacert,
            flow["webhookId"].as_str().expect("webhookId"),
            flow["id"].as_str().expect("id"),
            key,
        ])
        .output()
        .expect("run python3");
    if out.status.code() == Some(3) && !require_clients() {
        eprintln!("SKIPPED: httpx[http2] is not installed (pip install 'httpx[http2]')");
        return None;
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("json"))
}

#[test]
fn httpx_speaks_h2_over_tls_and_h2c_for_ingest_reads_and_sse() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let tls = start(&dir, &["--tls-self-signed"], false);
    let cert = dir.join("tls/self-signed-cert.pem");
    let cacert = cert.to_str().expect("utf-8");
    let base = format!("https://localhost:{}", tls.server.addr.port());
    let plain = Server::start(&[]);
    let plain_base = format!("http://{}", plain.addr);
    for (base, cacert, curl_args) in [
        (base.as_str(), cacert, vec!["--cacert", cacert]),
        (plain_base.as_str(), "-", vec!["--http2-prior-knowledge"]),
    ] {
        let (flow, key) = flow_and_key(base, &curl_args);
        let Some(got) = run_httpx(base, cacert, &flow, &key) else {
            return;
        };
        assert_eq!(got["ingest"]["version"], "HTTP/2", "{got}");
        assert_eq!(got["ingest"]["status"], 200, "{got}");
        assert_eq!(got["ingest"]["body"]["offset"], 0, "{got}");
        assert_eq!(got["read"]["version"], "HTTP/2", "{got}");
        assert_eq!(
            got["read"]["payloads"],
            serde_json::json!([{"via": "httpx-h2"}])
        );
        assert_eq!(got["sse"]["version"], "HTTP/2", "{got}");
        assert_eq!(got["sse"]["status"], 200, "{got}");
        assert_eq!(
            got["sse"]["payload"],
            serde_json::json!({"via": "httpx-h2"})
        );
    }
}

#[test]
fn an_h2_rapid_reset_flood_is_cut_off_and_leaves_the_server_serving() {
    let s = Server::start(&[]);
    let flow = s.flow(r#"{"name":"flood"}"#);
    let (_, key) = s.key(r#"{"name":"k","scopes":["ingest"]}"#);
    let out = Command::new("python3")
        .args([
            H2_CLIENTS,
            "flood",
            "127.0.0.1",
            &s.addr.port().to_string(),
            "20000",
        ])
        .output()
        .expect("run python3");
    if out.status.code() == Some(3) && !require_clients() {
        eprintln!("SKIPPED: h2 is not installed (pip install 'httpx[http2]')");
        return;
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).expect("json");
    // The server ended the flooding connection: GOAWAY ENHANCE_YOUR_CALM (0xb).
    assert_eq!(got["goaway"], 11, "{got}");
    assert_eq!(got["closed"], true, "{got}");
    // And serves everyone else, on HTTP/1.1 and on h2.
    let r = s.send(
        flow["webhookId"].as_str().expect("webhookId"),
        &[("x-api-key", &key)],
        r#"{"after":"flood"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (status, _, version) = curl(&[
        "--http2-prior-knowledge",
        &format!("http://{}/healthz", s.addr),
    ]);
    assert_eq!((status, version.as_str()), (200, "2"));
}

#[test]
fn a_client_that_stops_inside_its_first_bytes_is_closed_at_the_header_deadline() {
    // Proves the protocol choice (h2c preface or HTTP/1.1) has a deadline: "P" could
    // begin either, and a client that sends it and stops is closed, not held for ever.
    use std::io::{Read, Write};
    let s = Server::start(&["--header-timeout", "1"]);
    for first in [&b"P"[..], b"PRI * HTTP/2.0\r\n"] {
        let mut c = s.connect();
        c.write_all(first).expect("write");
        let mut rest = Vec::new();
        let n = c
            .read_to_end(&mut rest)
            .expect("the server closes the connection");
        assert_eq!(n, 0, "closed without an answer: {rest:?}");
    }
    assert_eq!(s.request("GET", "/healthz", &[], b"").status, 200);
}
