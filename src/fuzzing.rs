//! Entry points shared by the cargo-fuzz targets in `fuzz/` and the stable test that
//! replays their corpus (`tests/it/fuzz_corpus.rs`). Each takes arbitrary bytes and must
//! never panic; each checks the invariants that hold for any input.
#![doc(hidden)]

use std::path::Path;
use std::sync::Arc;

use crate::log::check::check_partition;
use crate::log::record;
use crate::log::storage::SimStorage;
use crate::log::{Log, LogConfig, LogError, Offset};

/// Decodes one frame from arbitrary bytes.
pub fn record_decode(data: &[u8]) {
    if let Ok((frame, len)) = record::decode(data) {
        assert!(len <= data.len(), "a frame longer than its input");
        assert!(len >= record::FRAME_HEADER_BYTES);
        assert_eq!(
            frame.key.len()
                + frame.headers.len()
                + frame.payload.len()
                + record::FRAME_HEADER_BYTES,
            len
        );
        let _ = record::HeaderIter::new(frame.headers).count();
    }
}

/// Recovers a partition whose only segment holds arbitrary bytes: open either refuses
/// it with a corruption error or serves whole records, and `check` agrees with open.
pub fn segment_recovery(data: &[u8]) {
    let sim = SimStorage::new();
    let dir = Path::new("/p");
    sim.set_file_bytes(&dir.join("00000000000000000000.log"), data.to_vec());
    let verdict = check_partition(&sim, dir).map(|c| c.verdict());
    match Log::open_with(dir, LogConfig::default(), Arc::new(sim.clone())) {
        Ok(log) => {
            let records: Result<Vec<_>, LogError> = log.iter_from(Offset(0)).collect();
            let records =
                records.unwrap_or_else(|e| panic!("open accepted what it cannot read: {e}"));
            assert_eq!(records.len() as u64, log.next_offset().0);
            assert!(
                !matches!(verdict, Ok(crate::log::check::Verdict::Corrupt)),
                "check says corrupt, open accepted it"
            );
        }
        Err(LogError::Corruption { .. }) => {
            assert!(
                matches!(verdict, Ok(crate::log::check::Verdict::Corrupt)),
                "open refused what check calls {verdict:?}"
            );
        }
        Err(e) => panic!("open failed with a non-corruption error: {e}"),
    }
}

/// Verifies arbitrary signature headers over an arbitrary body, for every scheme.
/// The input is split at the first NUL: header value, then body.
pub fn signature_headers(data: &[u8]) {
    use crate::http::signature::verify;
    use crate::store::meta::SignatureScheme;
    let (value, body) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(value) = http::HeaderValue::from_bytes(value) else {
        return;
    };
    let names = crate::http::signature::SIGNATURE_HEADERS;
    let mut headers = http::HeaderMap::new();
    for n in names {
        headers.insert(n, value.clone());
    }
    headers.insert("webhook-id", http::HeaderValue::from_static("msg_1"));
    headers.insert("webhook-timestamp", value.clone());
    headers.insert("x-slack-request-timestamp", value);
    for scheme in [
        SignatureScheme::Eventmesh,
        SignatureScheme::Github,
        SignatureScheme::Stripe,
        SignatureScheme::Standard,
        SignatureScheme::Shopify,
        SignatureScheme::Slack,
    ] {
        // No input can verify without the secret (short of forging HMAC-SHA256).
        let r = verify(
            scheme,
            &["fuzz-secret", "whsec_ZnV6ego="],
            &headers,
            body,
            1_700_000_000,
        );
        assert!(r.is_err(), "{scheme:?} verified an arbitrary header");
    }
}

struct HttpHarness {
    runtime: tokio::runtime::Runtime,
    app: Arc<crate::http::App>,
    webhook_id: String,
    key: String,
}

fn http_harness() -> Option<&'static HttpHarness> {
    static HARNESS: std::sync::OnceLock<Option<HttpHarness>> = std::sync::OnceLock::new();
    HARNESS
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            let config = crate::store::StoreConfig {
                admin_key: Some("fuzz-admin-key-0123456789abcdef".into()),
                storage: Arc::new(SimStorage::new()),
                ..crate::store::StoreConfig::new("/fuzz")
            };
            let store = crate::store::Store::open(config).ok()?;
            let (flow, _) = store
                .create_flow(crate::store::NewFlow {
                    name: "fuzz".into(),
                    rate_limit: Some(None),
                    ..crate::store::NewFlow::default()
                })
                .ok()?;
            let (_, key) = store
                .create_key(crate::store::NewKey {
                    name: "fuzz".into(),
                    scopes: Some(vec![
                        crate::store::meta::Scope::Ingest,
                        crate::store::meta::Scope::Read,
                    ]),
                    ..crate::store::NewKey::default()
                })
                .ok()?;
            let app = Arc::new(crate::http::App::new(
                store,
                crate::http::HttpLimits::default(),
                "http://fuzz".into(),
            ));
            Some(HttpHarness {
                runtime,
                app,
                webhook_id: flow.webhook_id,
                key,
            })
        })
        .as_ref()
}

/// Runs an arbitrary request through the whole handler. The input is text lines:
/// `METHOD PATH`, then `name: value` headers, a blank line, then the body. `$WH` in the
/// path and `$KEY` in a header stand for a real webhook id and key, so the fuzzer
/// reaches past the first checks. The handler must answer every input with a status.
pub fn http_request(data: &[u8]) {
    use http_body_util::Full;
    let Some(h) = http_harness() else {
        return;
    };
    let split = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(data.len());
    let head = String::from_utf8_lossy(&data[..split])
        .replace("$WH", &h.webhook_id)
        .replace("$KEY", &h.key);
    let body = data.get(split + 2..).unwrap_or(&[]).to_vec();
    let mut lines = head.lines();
    let first = lines.next().unwrap_or("");
    let (method, path) = first.split_once(' ').unwrap_or(("POST", first));
    let mut builder = http::Request::builder()
        .method(method)
        .uri(if path.starts_with('/') { path } else { "/" });
    for line in lines {
        if let Some((n, v)) = line.split_once(':') {
            builder = builder.header(n.trim(), v.trim());
        }
    }
    let Ok(request) = builder.body(Full::new(bytes::Bytes::from(body))) else {
        return;
    };
    let response = h
        .runtime
        .block_on(crate::http::router::handle(Arc::clone(&h.app), request));
    let status = response.status().as_u16();
    assert!((200..600).contains(&status), "status {status}");
}
