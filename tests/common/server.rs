//! Starts the real `eventmesh serve` binary on 127.0.0.1:0 with a temporary data
//! directory, and speaks plain HTTP/1.1 to it over a TCP socket.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub use super::ADMIN;

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Asserts the status and the contract's error code in the JSON body.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.json()["error"].as_str()),
            (status, Some(code)),
            "{}",
            self.text()
        );
    }
}

impl Server {
    pub fn start(extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let mut s = Self::start_in(&dir, extra);
        s._tmp = Some(tmp);
        s
    }

    /// Starts on `dir` (kept by the caller), waiting for the "listening on" line.
    pub fn start_in(dir: &Path, extra: &[&str]) -> Self {
        Self::spawn_in(dir, extra, None)
    }

    /// As `start_in`, and then waits until the server has opened every flow (its
    /// "every flow is open" line): a damaged flow is quarantined by then.
    pub fn start_opened(dir: &Path, extra: &[&str]) -> Self {
        Self::spawn_in(dir, extra, Some("every flow is open"))
    }

    fn spawn_in(dir: &Path, extra: &[&str], then: Option<&str>) -> Self {
        let mut child = serve_command(dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn eventmesh serve");
        let (addr, _) = await_lines(&mut child, then);
        Self::adopt(child, addr, dir)
    }

    /// Wraps a server process started some other way (say, under strace).
    pub fn adopt(child: Child, addr: SocketAddr, dir: &Path) -> Self {
        Self {
            child,
            addr,
            dir: dir.to_path_buf(),
            _tmp: None,
        }
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        s
    }

    /// Sends one request (Connection: close) and reads the whole response; over h2c
    /// in the test binary that asks for HTTP/2 (`crate::HTTP2`).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        if crate::HTTP2 {
            return h2_request(self.addr, method, path, headers, body);
        }
        let mut s = self.connect();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).expect("write head");
        // The server may answer (413) and close before the whole body is sent.
        let _ = s.write_all(body);
        read_response(&mut s)
    }

    pub fn admin(&self, method: &str, path: &str, body: &str) -> Response {
        let auth = format!("Bearer {ADMIN}");
        self.request(
            method,
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        )
    }

    /// Creates a flow with `body` (JSON) and returns the flow object.
    pub fn flow(&self, body: &str) -> Value {
        let r = self.admin("POST", "/api/flows", body);
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()
    }

    /// Creates an API key and returns (id, key).
    pub fn key(&self, body: &str) -> (String, String) {
        let r = self.admin("POST", "/api/keys", body);
        assert_eq!(r.status, 201, "{}", r.text());
        let v = r.json();
        (
            v["id"].as_str().expect("id").into(),
            v["key"].as_str().expect("key").into(),
        )
    }

    /// The flow's end offset (events stored), read through the events API.
    pub fn end_offset(&self, flow: &Value) -> u64 {
        let fid = flow["id"].as_str().expect("flow id");
        let page = self
            .admin("GET", &format!("/api/flows/{fid}/events"), "")
            .json();
        page["endOffset"].as_u64().expect("endOffset")
    }

    pub fn send(&self, webhook_id: &str, headers: &[(&str, &str)], body: &str) -> Response {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        self.request(
            "POST",
            &format!("/webhooks/{webhook_id}"),
            &h,
            body.as_bytes(),
        )
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("wait")
    }
}

/// The arguments of `eventmesh serve` on an ephemeral port of 127.0.0.1, with the test
/// admin key and `dir` as data directory; in a binary with `CLUSTER`, on the shared NATS
/// cluster (`--backend nats`, a prefix of `dir`'s own).
pub fn serve_args(dir: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["serve", "--listen", "127.0.0.1:0", "--admin-key", ADMIN]
        .iter()
        .map(OsString::from)
        .collect();
    args.push("--data-dir".into());
    args.push(dir.into());
    if crate::CLUSTER {
        args.extend(super::nats::cluster_serve_args(dir));
    }
    args
}

/// Asserts that a finished command failed and that its stderr says `text`.
pub fn assert_failed_saying(out: &std::process::Output, text: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it succeeded; stderr: {stderr}");
    assert!(stderr.contains(text), "stderr lacks {text:?}: {stderr}");
}

/// `eventmesh serve` with `serve_args(dir)`.
pub fn serve_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eventmesh"));
    command.args(serve_args(dir));
    command
}

/// Reads a started server's stdout (piped) until its "listening on" line and returns the
/// address; then keeps draining stdout so the child never blocks on a full pipe.
pub fn await_listening(child: &mut Child) -> SocketAddr {
    await_listening_printing(child).0
}

/// As `await_listening`, and also returns the lines printed before (over TLS, the
/// certificate's path and fingerprint). Plain HTTP and HTTPS alike.
pub fn await_listening_printing(child: &mut Child) -> (SocketAddr, Vec<String>) {
    await_lines(child, None)
}

/// Reads until the "listening on" line and then, with `then`, until a line holding
/// that; returns the address and the lines before it; then drains stdout.
fn await_lines(child: &mut Child, then: Option<&str>) -> (SocketAddr, Vec<String>) {
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut before = Vec::new();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server printed its address before exiting")
            .expect("read stdout");
        let rest = line
            .split("listening on http://")
            .nth(1)
            .or_else(|| line.split("listening on https://").nth(1));
        if let Some(rest) = rest {
            break rest.trim().parse().expect("address");
        }
        before.push(line);
    };
    if let Some(then) = then {
        loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("the server exited before printing {then:?}"))
                .expect("read stdout");
            if line.contains(then) {
                break;
            }
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (addr, before)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a whole HTTP/1.1 response until the server closes the connection.
pub fn read_response(s: &mut TcpStream) -> Response {
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}

/// A client usable from other threads, that reports a cut connection as `None`.
pub struct Client {
    pub addr: SocketAddr,
}

impl Client {
    pub fn try_send(
        &self,
        webhook_id: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Option<Response> {
        let mut s = TcpStream::connect(self.addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
        let mut head = format!(
            "POST /webhooks/{webhook_id} HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).ok()?;
        s.write_all(body.as_bytes()).ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).ok()?;
        raw.windows(4)
            .any(|w| w == b"\r\n\r\n")
            .then(|| parse_response(&raw))
    }
}

/// One request on a new HTTP/2 connection (h2c, prior knowledge), with hyper's client.
pub fn h2_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    use http_body_util::BodyExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .expect("h2 handshake");
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let req = req
            .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
                body,
            )))
            .expect("request");
        let answer = async {
            let resp = sender.send_request(req).await.expect("h2 request");
            assert_eq!(resp.version(), http::Version::HTTP_2);
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let body = resp
                .into_body()
                .collect()
                .await
                .expect("h2 body")
                .to_bytes()
                .to_vec();
            Response {
                status,
                headers,
                body,
            }
        };
        tokio::time::timeout(Duration::from_secs(60), answer)
            .await
            .expect("an h2 answer within 60 s")
    })
}
