//! The dashboard: a single-page app of plain HTML, CSS and JavaScript modules, built into
//! the binary with `include_bytes!` and served at `/` and `/assets/*`. It needs no build
//! step, no CDN and no outbound request: its Content-Security-Policy allows only this
//! origin. It talks to the same `/api` as every other client, with the key the user
//! signs in with (kept in the tab's session storage).

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CACHE_CONTROL};
use hyper::{Response, StatusCode};

use crate::http::response::{bytes_response, Body};

/// One built-in file: its URL path, media type and bytes.
#[derive(Debug)]
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            bytes: include_bytes!(concat!("assets/", $file)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the dashboard serves.
pub const ASSETS: &[Asset] = &[
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!("/assets/app.css", "app.css", "text/css; charset=utf-8"),
    asset!("/assets/favicon.svg", "favicon.svg", "image/svg+xml"),
    asset!("/assets/app.js", "app.js", JS),
    asset!("/assets/api.js", "api.js", JS),
    asset!("/assets/ui.js", "ui.js", JS),
    asset!("/assets/charts.js", "charts.js", JS),
    asset!("/assets/page-flows.js", "page-flows.js", JS),
    asset!("/assets/page-events.js", "page-events.js", JS),
    asset!("/assets/page-analytics.js", "page-analytics.js", JS),
    asset!("/assets/page-playground.js", "page-playground.js", JS),
    asset!("/assets/page-consumers.js", "page-consumers.js", JS),
    asset!("/assets/page-keys.js", "page-keys.js", JS),
];

/// Only this origin, for scripts, styles, images and API calls; no frames, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The built-in file at `path` (`/index.html` is `/`).
pub fn asset(path: &str) -> Option<&'static Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

/// Answers a GET or HEAD of a dashboard path; `None` when the path is not one.
pub fn serve(path: &str, head: bool) -> Option<Response<Body>> {
    let a = asset(path)?;
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from_static(a.bytes)
    };
    let headers = vec![
        (
            HeaderName::from_static("content-security-policy"),
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ),
        (
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("no-referrer"),
        ),
        (
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ),
        // Small files, and a new binary must never run with an old script.
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    Some(bytes_response(
        StatusCode::OK,
        a.content_type,
        body,
        headers,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_pages_import_is_served() {
        // Proves no page imports a file that is not built in (a 404 would blank the app).
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = std::str::from_utf8(a.bytes).expect("utf-8");
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let start = line.find("\"./").expect("relative import") + 3;
                let end = start + line[start..].find('"').expect("closing quote");
                let path = format!("/assets/{}", &line[start..end]);
                assert!(asset(&path).is_some(), "{} imports {path}", a.path);
            }
        }
    }

    #[test]
    fn the_page_loads_only_built_in_files() {
        // Proves index.html names no outside URL and every file it names is built in.
        let html = std::str::from_utf8(asset("/").expect("index").bytes).expect("utf-8");
        assert!(!html.contains("http://") && !html.contains("https://"));
        for part in html.split("\"/assets/").skip(1) {
            let name = &part[..part.find('"').expect("closing quote")];
            assert!(asset(&format!("/assets/{name}")).is_some(), "{name}");
        }
        assert!(asset("/assets/nope.js").is_none());
        let response = serve("/assets/app.js", false).expect("served");
        assert_eq!(
            response.headers()["content-security-policy"],
            CONTENT_SECURITY_POLICY
        );
    }
}
