//! A small W3C WebDriver client for the dashboard's end-to-end tests: Debian's
//! `chromedriver` driving headless `chromium`, over plain HTTP/1.1.
//!
//! Waiting is by condition, never by sleeping: `wait_for` runs an async script in the
//! page that resolves from a MutationObserver as soon as the condition holds, and the
//! session's script timeout bounds it.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::free_port;
use super::server::{parse_response, Response};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Longest wait for one page condition.
pub const WAIT_MS: u64 = 20_000;

pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

/// Whether the browser is installed. `.ci/run` installs it and sets
/// `EVENTMESH_REQUIRE_BROWSER=1`, so there a missing browser fails instead of skipping.
pub fn browser_or_skip() -> bool {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !present {
        assert!(
            std::env::var_os("EVENTMESH_REQUIRE_BROWSER").is_none(),
            "EVENTMESH_REQUIRE_BROWSER is set but {CHROMIUM} or {CHROMEDRIVER} is missing"
        );
        eprintln!(
            "SKIPPED: {CHROMIUM} and {CHROMEDRIVER} are not installed \
             (.ci/run installs Debian's chromium and chromium-driver)"
        );
    }
    present
}

impl Browser {
    /// Starts chromedriver and one headless Chromium session of `width`×`height`.
    pub fn launch(width: u32, height: u32) -> Self {
        let port = free_port();
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let stdout = driver.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        loop {
            let line = lines
                .next()
                .expect("chromedriver said it started before exiting")
                .expect("read chromedriver");
            if line.contains("started successfully") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let profile = tempfile::tempdir().expect("profile dir");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--lang=en-US".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let mut b = Self {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        let created = b.raw("POST", "/session", &caps);
        b.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        b.call(
            "POST",
            "timeouts",
            json!({"script": WAIT_MS, "pageLoad": 30_000, "implicit": 0}),
        );
        b
    }

    /// One WebDriver request: (HTTP status, the reply's `value`).
    fn send(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let mut s = TcpStream::connect(self.addr).expect("connect chromedriver");
        s.set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        s.write_all(head.as_bytes()).expect("write");
        s.write_all(body.as_bytes()).expect("write");
        let r = read_sized_response(&mut s);
        (r.status, r.json()["value"].clone())
    }

    fn raw(&self, method: &str, path: &str, body: &Value) -> Value {
        let (status, v) = self.send(method, path, body);
        assert!(
            status == 200,
            "webdriver {method} {path}: {status} {}",
            v["message"]
        );
        v
    }

    /// A session command; `path` is relative to the session.
    pub fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let full = format!("/session/{}/{path}", self.session);
        self.raw(method, &full, &body)
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "url", json!({ "url": url }));
    }

    pub fn set_size(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "window/rect",
            json!({"width": width, "height": height}),
        );
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn js(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "execute/sync",
            json!({"script": script, "args": args}),
        )
    }

    /// The element matching `css`, once there is one (pages render after their data
    /// arrives, so an element may appear a moment after the page's heading).
    fn element(&self, css: &str) -> String {
        self.wait_for(css, "");
        let v = self.call(
            "POST",
            "element",
            json!({"using": "css selector", "value": css}),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned()
    }

    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.call("POST", &format!("element/{id}/click"), json!({}));
    }

    /// Clears a field and types `text` into it, key by key.
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call("POST", &format!("element/{id}/clear"), json!({}));
        self.call(
            "POST",
            &format!("element/{id}/value"),
            json!({ "text": text }),
        );
    }

    /// Sets a field's value at once (for long text) and fires its input and change events.
    pub fn set_value(&self, css: &str, value: &str) {
        let ok = self.js(
            "const el = document.querySelector(arguments[0]); if (!el) return false;
             el.value = arguments[1];
             el.dispatchEvent(new Event('input', {bubbles: true}));
             el.dispatchEvent(new Event('change', {bubbles: true}));
             return true;",
            json!([css, value]),
        );
        assert_eq!(ok, json!(true), "no element {css}");
    }

    /// Presses one key (a WebDriver key code such as "\u{E007}" for Enter) on the focused element.
    pub fn press(&self, key: &str) {
        self.call(
            "POST",
            "actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]}),
        );
    }

    /// Waits until an element matching `css` has text containing `text`; returns that text.
    /// On timeout, saves a screenshot and fails with what the page showed.
    #[track_caller]
    pub fn wait_for(&self, css: &str, text: &str) -> String {
        let script = "
            const [css, text, done] = arguments;
            const check = () => {
              for (const el of document.querySelectorAll(css)) {
                if (el.textContent.includes(text)) return el.textContent;
              }
              return null;
            };
            const now = check();
            if (now !== null) { done({ok: now}); return; }
            const obs = new MutationObserver(() => {
              const r = check();
              if (r !== null) { obs.disconnect(); done({ok: r}); }
            });
            obs.observe(document.documentElement,
              {subtree: true, childList: true, characterData: true, attributes: true});";
        let full = format!("/session/{}/execute/async", self.session);
        let (_, v) = self.send(
            "POST",
            &full,
            &json!({"script": script, "args": [css, text]}),
        );
        if let Some(found) = v["ok"].as_str() {
            return found.to_owned();
        }
        let shown = self.js("return document.body.innerText", json!([]));
        let shot = artefact_dir().join("failure.png");
        self.screenshot(&shot);
        panic!(
            "waited {WAIT_MS} ms for {css:?} containing {text:?} ({}); the page showed:\n{}\n(screenshot: {})",
            v["message"],
            shown.as_str().unwrap_or_default(),
            shot.display()
        );
    }

    pub fn text(&self, css: &str) -> String {
        self.js(
            "const el = document.querySelector(arguments[0]); return el ? el.textContent : null;",
            json!([css]),
        )
        .as_str()
        .unwrap_or_else(|| panic!("no element {css}"))
        .to_owned()
    }

    /// Saves a PNG of the viewport.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let v = self.call("GET", "screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 screenshot"))
            .expect("decode screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("artefact dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A panic inside a drop during a panic aborts, so only a clean exit says goodbye;
        // otherwise Chromium exits when chromedriver's pipe to it closes.
        if !self.session.is_empty() && !std::thread::panicking() {
            let _ = self.send(
                "DELETE",
                &format!("/session/{}", self.session),
                &Value::Null,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Reads one response by its Content-Length: chromedriver keeps the connection open
/// even when asked to close it, so reading to the end would wait for its idle timeout.
fn read_sized_response(s: &mut TcpStream) -> Response {
    use std::io::Read;
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf).expect("read chromedriver");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(len) = len {
                if raw.len() >= end + 4 + len {
                    break;
                }
            }
        }
    }
    parse_response(&raw)
}

/// Where screenshots go: `target/e2e-artifacts/` (never committed).
pub fn artefact_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/e2e-artifacts")
}
