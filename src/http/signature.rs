//! Webhook signature schemes: verifying a request's signature over its raw body
//! (`eventmesh`, `github`, `stripe`, Standard Webhooks, `shopify`, `slack`), and making
//! the headers a sender would send (tests, the playground, `eventmesh send`).
//!
//! Every header is bounded ([`SIGNATURE_HEADER_BYTES_MAX`], [`SIGNATURE_ENTRIES_MAX`])
//! and parsed before any HMAC work; MACs are compared in constant time. Errors never
//! carry secrets or signatures.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::http::limits::{
    SIGNATURE_ENTRIES_MAX, SIGNATURE_HEADER_BYTES_MAX, SIGNATURE_TOLERANCE_S,
};
use crate::store::ids::hex;
use crate::store::meta::SignatureScheme;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is missing")]
    Missing,
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature timestamp is outside the tolerance")]
    Stale,
    #[error("the signature does not match")]
    Mismatch,
}

type HmacSha256 = Hmac<Sha256>;

/// The header that carries a signature in each scheme (Standard Webhooks' under both of
/// its names): a request with none of them is unsigned.
pub const SIGNATURE_HEADERS: [&str; 7] = [
    H_EVENTMESH,
    H_GITHUB,
    H_STRIPE,
    H_STD_SIG,
    H_SVIX_SIG,
    H_SHOPIFY,
    H_SLACK_SIG,
];

// Each scheme's header names, lowercase.
pub const H_EVENTMESH: &str = "x-event-signature";
pub const H_GITHUB: &str = "x-hub-signature-256";
pub const H_STRIPE: &str = "stripe-signature";
pub const H_SHOPIFY: &str = "x-shopify-hmac-sha256";
pub const H_SLACK_SIG: &str = "x-slack-signature";
pub const H_SLACK_TS: &str = "x-slack-request-timestamp";
pub const H_STD_ID: &str = "webhook-id";
pub const H_STD_TS: &str = "webhook-timestamp";
pub const H_STD_SIG: &str = "webhook-signature";
pub const H_SVIX_ID: &str = "svix-id";
pub const H_SVIX_TS: &str = "svix-timestamp";
pub const H_SVIX_SIG: &str = "svix-signature";

/// Verifies the request's signature for `scheme` over the raw `body`, trying each of
/// `secrets` (current and, during a rotation, previous). `now_s` is Unix seconds (injected
/// so tests can use old vectors). Scheme None always returns Ok(()).
pub fn verify(
    scheme: SignatureScheme,
    secrets: &[&str],
    headers: &HeaderMap,
    body: &[u8],
    now_s: i64,
) -> Result<(), SignatureError> {
    let signed = match scheme {
        SignatureScheme::None => return Ok(()),
        SignatureScheme::Eventmesh => parse_eventmesh(headers)?,
        SignatureScheme::Github => parse_github(headers)?,
        SignatureScheme::Stripe => parse_stripe(headers, now_s)?,
        SignatureScheme::Standard => parse_standard(headers, now_s)?,
        SignatureScheme::Shopify => parse_shopify(headers)?,
        SignatureScheme::Slack => parse_slack(headers, now_s)?,
    };
    signed.check(secrets, body)
}

/// Makes the headers a sender of `scheme` would send for `body` with `secret` at `now_s`
/// (`msg_id` is used by `standard` as webhook-id). Returns (header name, value) pairs,
/// header names lowercase. Scheme None returns an empty Vec. Used by tests, the
/// playground and the `eventmesh send` / `bench http` commands.
///
/// A `standard` secret that is not base64 (after `whsec_`) is used as raw bytes, so the
/// result will not verify; the store rejects such secrets when a flow is configured.
pub fn sign(
    scheme: SignatureScheme,
    secret: &str,
    body: &[u8],
    now_s: i64,
    msg_id: &str,
) -> Vec<(String, String)> {
    let raw = secret.as_bytes();
    match scheme {
        SignatureScheme::None => Vec::new(),
        SignatureScheme::Eventmesh => {
            vec![pair(
                H_EVENTMESH,
                format!("sha256={}", hex(&mac(raw, &[body]))),
            )]
        }
        SignatureScheme::Github => {
            vec![pair(
                H_GITHUB,
                format!("sha256={}", hex(&mac(raw, &[body]))),
            )]
        }
        SignatureScheme::Stripe => sign_stripe(raw, body, now_s),
        SignatureScheme::Standard => sign_standard(secret, body, now_s, msg_id),
        SignatureScheme::Shopify => vec![pair(H_SHOPIFY, B64.encode(mac(raw, &[body])))],
        SignatureScheme::Slack => sign_slack(raw, body, now_s),
    }
}

fn sign_stripe(key: &[u8], body: &[u8], now_s: i64) -> Vec<(String, String)> {
    let t = now_s.to_string();
    let parts: [&[u8]; 3] = [t.as_bytes(), b".", body];
    let sig = hex(&mac(key, &parts));
    vec![pair(H_STRIPE, format!("t={t},v1={sig}"))]
}

fn sign_standard(secret: &str, body: &[u8], now_s: i64, msg_id: &str) -> Vec<(String, String)> {
    let ts = now_s.to_string();
    let key = standard_key(secret).unwrap_or_else(|| secret.as_bytes().to_vec());
    let parts: [&[u8]; 5] = [msg_id.as_bytes(), b".", ts.as_bytes(), b".", body];
    let sig = B64.encode(mac(&key, &parts));
    vec![
        pair(H_STD_ID, msg_id.to_string()),
        pair(H_STD_TS, ts),
        pair(H_STD_SIG, format!("v1,{sig}")),
    ]
}

fn sign_slack(key: &[u8], body: &[u8], now_s: i64) -> Vec<(String, String)> {
    let ts = now_s.to_string();
    let parts: [&[u8]; 4] = [b"v0:", ts.as_bytes(), b":", body];
    let sig = hex(&mac(key, &parts));
    vec![pair(H_SLACK_SIG, format!("v0={sig}")), pair(H_SLACK_TS, ts)]
}

fn pair(name: &str, value: String) -> (String, String) {
    (name.to_string(), value)
}

/// HMAC-SHA256 of the concatenated `parts` (empty only if the key were refused, which
/// HMAC never does).
fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    tag(key, parts).unwrap_or_default()
}

fn tag(key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
    let mut m = HmacSha256::new_from_slice(key).ok()?;
    for part in parts {
        m.update(part);
    }
    Some(m.finalize().into_bytes().to_vec())
}

/// Standard Webhooks key: base64 of the secret after an optional `whsec_` prefix.
fn standard_key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    B64.decode(encoded).ok()
}

/// How a secret becomes the HMAC key.
#[derive(Clone, Copy)]
enum KeyForm {
    /// The secret's bytes as they are.
    Raw,
    /// Standard Webhooks: base64-decoded after `whsec_`.
    StandardBase64,
}

impl KeyForm {
    fn key(self, secret: &str) -> Option<Vec<u8>> {
        match self {
            KeyForm::Raw => Some(secret.as_bytes().to_vec()),
            KeyForm::StandardBase64 => standard_key(secret),
        }
    }
}

/// A parsed request: what was signed before the body, and the candidate MACs decoded
/// from the header (entries that failed to decode are left out: they cannot match).
struct Signed {
    prefix: String,
    candidates: Vec<Vec<u8>>,
    key: KeyForm,
}

impl Signed {
    fn raw(prefix: String, candidates: Vec<Vec<u8>>) -> Self {
        Signed {
            prefix,
            candidates,
            key: KeyForm::Raw,
        }
    }

    /// Ok if any secret's MAC equals any candidate (compared in constant time).
    fn check(&self, secrets: &[&str], body: &[u8]) -> Result<(), SignatureError> {
        let mut matched = false;
        for secret in secrets {
            let Some(key) = self.key.key(secret) else {
                continue;
            };
            let Some(expected) = tag(&key, &[self.prefix.as_bytes(), body]) else {
                continue;
            };
            for candidate in &self.candidates {
                matched |= bool::from(expected.as_slice().ct_eq(candidate.as_slice()));
            }
        }
        if matched {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

fn parse_eventmesh(headers: &HeaderMap) -> Result<Signed, SignatureError> {
    let value = required(headers, H_EVENTMESH)?;
    let hex_part = value.strip_prefix("sha256=").unwrap_or(value);
    Ok(Signed::raw(
        String::new(),
        hex_decode(hex_part).into_iter().collect(),
    ))
}

fn parse_github(headers: &HeaderMap) -> Result<Signed, SignatureError> {
    let value = required(headers, H_GITHUB)?;
    let hex_part = value
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    Ok(Signed::raw(
        String::new(),
        hex_decode(hex_part).into_iter().collect(),
    ))
}

fn parse_shopify(headers: &HeaderMap) -> Result<Signed, SignatureError> {
    let value = required(headers, H_SHOPIFY)?;
    Ok(Signed::raw(
        String::new(),
        B64.decode(value).ok().into_iter().collect(),
    ))
}

fn parse_slack(headers: &HeaderMap, now_s: i64) -> Result<Signed, SignatureError> {
    let value = required(headers, H_SLACK_SIG)?;
    let ts = header(headers, H_SLACK_TS)?.ok_or(SignatureError::Malformed)?;
    let hex_part = value.strip_prefix("v0=").ok_or(SignatureError::Malformed)?;
    fresh(parse_ts(ts)?, now_s)?;
    let candidates = hex_decode(hex_part).into_iter().collect();
    Ok(Signed::raw(format!("v0:{ts}:"), candidates))
}

/// `t=<unix>,v1=<hex>[,v1=…]`; other keys are ignored. No `t` or no `v1` is Malformed.
fn parse_stripe(headers: &HeaderMap, now_s: i64) -> Result<Signed, SignatureError> {
    let value = required(headers, H_STRIPE)?;
    let mut t = None;
    let mut saw_v1 = false;
    let mut candidates: Vec<Vec<u8>> = Vec::new();
    for entry in split_entries(value, ',')? {
        let Some((k, v)) = entry.split_once('=') else {
            continue;
        };
        match k.trim() {
            "t" if t.is_none() => t = Some(v.trim()),
            "v1" => {
                saw_v1 = true;
                candidates.extend(hex_decode(v.trim()));
            }
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if !saw_v1 {
        return Err(SignatureError::Malformed);
    }
    fresh(parse_ts(t)?, now_s)?;
    Ok(Signed::raw(format!("{t}."), candidates))
}

/// Standard Webhooks (or the `svix-*` aliases): space-separated `v1,<base64>` entries;
/// other versions are ignored. No well-formed `<version>,<sig>` entry is Malformed.
fn parse_standard(headers: &HeaderMap, now_s: i64) -> Result<Signed, SignatureError> {
    let value = header_either(headers, H_STD_SIG, H_SVIX_SIG)?.ok_or(SignatureError::Missing)?;
    let id = header_either(headers, H_STD_ID, H_SVIX_ID)?.ok_or(SignatureError::Malformed)?;
    let ts = header_either(headers, H_STD_TS, H_SVIX_TS)?.ok_or(SignatureError::Malformed)?;
    let mut well_formed = false;
    let mut candidates: Vec<Vec<u8>> = Vec::new();
    for entry in split_entries(value, ' ')? {
        let Some((version, sig)) = entry.split_once(',') else {
            continue;
        };
        well_formed = true;
        if version == "v1" {
            candidates.extend(B64.decode(sig).ok());
        }
    }
    if !well_formed || id.is_empty() {
        return Err(SignatureError::Malformed);
    }
    fresh(parse_ts(ts)?, now_s)?;
    Ok(Signed {
        prefix: format!("{id}.{ts}."),
        candidates,
        key: KeyForm::StandardBase64,
    })
}

/// A header's value as trimmed text: None if absent; Malformed if too long or not UTF-8.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, SignatureError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    if value.len() > SIGNATURE_HEADER_BYTES_MAX {
        return Err(SignatureError::Malformed);
    }
    std::str::from_utf8(value.as_bytes())
        .map(|s| Some(s.trim()))
        .map_err(|_| SignatureError::Malformed)
}

/// The signature header itself: absent is Missing.
fn required<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, SignatureError> {
    header(headers, name)?.ok_or(SignatureError::Missing)
}

/// `first`, else `alias` when `first` is absent.
fn header_either<'a>(
    headers: &'a HeaderMap,
    first: &str,
    alias: &str,
) -> Result<Option<&'a str>, SignatureError> {
    match header(headers, first)? {
        Some(value) => Ok(Some(value)),
        None => header(headers, alias),
    }
}

/// Splits on `sep`, counting every piece (empty ones too) against
/// [`SIGNATURE_ENTRIES_MAX`] and stopping as soon as it is exceeded; returns the
/// non-empty pieces, trimmed.
fn split_entries(value: &str, sep: char) -> Result<Vec<&str>, SignatureError> {
    let mut entries = Vec::new();
    for (i, piece) in value.split(sep).enumerate() {
        if i >= SIGNATURE_ENTRIES_MAX {
            return Err(SignatureError::Malformed);
        }
        let piece = piece.trim();
        if !piece.is_empty() {
            entries.push(piece);
        }
    }
    Ok(entries)
}

/// A Unix timestamp in seconds: 1 to 18 ASCII digits.
fn parse_ts(s: &str) -> Result<i64, SignatureError> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::Malformed);
    }
    s.parse::<i64>().map_err(|_| SignatureError::Malformed)
}

fn fresh(ts: i64, now_s: i64) -> Result<(), SignatureError> {
    if now_s.abs_diff(ts) > SIGNATURE_TOLERANCE_S.unsigned_abs() {
        Err(SignatureError::Stale)
    } else {
        Ok(())
    }
}

/// Hex (either case) to bytes; None if not hex or of odd length.
fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|p| Some((nibble(p[0])? << 4) | nibble(p[1])?))
        .collect()
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderName, HeaderValue};

    const GITHUB_HEX: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    const STRIPE_SECRET: &str = "whsec_test_secret";
    const STRIPE_BODY: &[u8] = br#"{"id":"evt_1","object":"event","type":"charge.succeeded"}"#;
    const STRIPE_HEX: &str = "ac1ab887a13a43f7e22e9eb21eab375b1f40446fa99ade9b6a94fca7f66acd38";
    const STD1_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const STD1_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const STD1_TS: &str = "1614265330";
    const STD1_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const STD1_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const SLACK_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    /// Clock for schemes that sign no timestamp.
    const ANY_NOW: i64 = 1_700_000_000;

    struct Vector {
        name: &'static str,
        scheme: SignatureScheme,
        secret: &'static str,
        body: &'static [u8],
        /// The signed timestamp, for schemes that sign one.
        ts: Option<i64>,
        headers: Vec<(&'static str, String)>,
        /// The signature header (lowercase), for the "missing" test.
        sig_header: &'static str,
    }

    impl Vector {
        fn now(&self) -> i64 {
            self.ts.unwrap_or(ANY_NOW)
        }
        fn header_map(&self) -> HeaderMap {
            let pairs: Vec<(&str, &str)> =
                self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            headers(&pairs)
        }
        fn verify_with(
            &self,
            secrets: &[&str],
            body: &[u8],
            now_s: i64,
        ) -> Result<(), SignatureError> {
            verify(self.scheme, secrets, &self.header_map(), body, now_s)
        }
        fn wrong_secret(&self) -> &'static str {
            match self.scheme {
                // Valid base64, so the wrong key is really tried.
                SignatureScheme::Standard => "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                _ => "not the secret",
            }
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn vectors() -> Vec<Vector> {
        vec![
            Vector {
                name: "github",
                scheme: SignatureScheme::Github,
                secret: "It's a Secret to Everybody",
                body: b"Hello, World!",
                ts: None,
                headers: vec![("X-Hub-Signature-256", format!("sha256={GITHUB_HEX}"))],
                sig_header: "x-hub-signature-256",
            },
            Vector {
                name: "eventmesh bare hex",
                scheme: SignatureScheme::Eventmesh,
                secret: "It's a Secret to Everybody",
                body: b"Hello, World!",
                ts: None,
                headers: vec![("X-Event-Signature", GITHUB_HEX.to_string())],
                sig_header: "x-event-signature",
            },
            Vector {
                name: "eventmesh sha256=",
                scheme: SignatureScheme::Eventmesh,
                secret: "It's a Secret to Everybody",
                body: b"Hello, World!",
                ts: None,
                headers: vec![("X-Event-Signature", format!("sha256={GITHUB_HEX}"))],
                sig_header: "x-event-signature",
            },
            Vector {
                name: "standard 1",
                scheme: SignatureScheme::Standard,
                secret: STD1_SECRET,
                body: STD1_BODY,
                ts: Some(1_614_265_330),
                headers: vec![
                    ("webhook-id", STD1_ID.to_string()),
                    ("webhook-timestamp", STD1_TS.to_string()),
                    ("webhook-signature", STD1_SIG.to_string()),
                ],
                sig_header: "webhook-signature",
            },
            Vector {
                name: "standard 2",
                scheme: SignatureScheme::Standard,
                secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                body: br#"{"email":"test@example.com","username":"test_user"}"#,
                ts: Some(1_649_367_553),
                headers: vec![
                    ("webhook-id", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk".to_string()),
                    ("webhook-timestamp", "1649367553".to_string()),
                    (
                        "webhook-signature",
                        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=".to_string(),
                    ),
                ],
                sig_header: "webhook-signature",
            },
            Vector {
                name: "stripe",
                scheme: SignatureScheme::Stripe,
                secret: STRIPE_SECRET,
                body: STRIPE_BODY,
                ts: Some(1_700_000_000),
                headers: vec![("Stripe-Signature", format!("t=1700000000,v1={STRIPE_HEX}"))],
                sig_header: "stripe-signature",
            },
            Vector {
                name: "shopify",
                scheme: SignatureScheme::Shopify,
                secret: "hush",
                body: br#"{"id":1}"#,
                ts: None,
                headers: vec![(
                    "X-Shopify-Hmac-Sha256",
                    "VnKUjZsLuN5iZWjn5EntcBVCF9kMN43LglzCE1/GSeY=".to_string(),
                )],
                sig_header: "x-shopify-hmac-sha256",
            },
            Vector {
                name: "slack",
                scheme: SignatureScheme::Slack,
                secret: "8f742231b10e8888abcd99yyyzzz85a5",
                body: SLACK_BODY,
                ts: Some(1_531_420_618),
                headers: vec![
                    (
                        "X-Slack-Signature",
                        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
                            .to_string(),
                    ),
                    ("X-Slack-Request-Timestamp", "1531420618".to_string()),
                ],
                sig_header: "x-slack-signature",
            },
        ]
    }

    fn stripe_headers(value: &str) -> HeaderMap {
        headers(&[("stripe-signature", value)])
    }

    fn std1_headers(signature: &str) -> HeaderMap {
        headers(&[
            ("webhook-id", STD1_ID),
            ("webhook-timestamp", STD1_TS),
            ("webhook-signature", signature),
        ])
    }

    /// Verifies with scheme `standard`, the spec's secret, at the vector's time.
    fn verify_std1(headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
        verify(
            SignatureScheme::Standard,
            &[STD1_SECRET],
            headers,
            body,
            1_614_265_330,
        )
    }

    #[test]
    fn every_published_vector_verifies_at_its_timestamp() {
        for v in vectors() {
            assert_eq!(
                v.verify_with(&[v.secret], v.body, v.now()),
                Ok(()),
                "{}",
                v.name
            );
        }
    }

    #[test]
    fn one_changed_body_byte_is_a_mismatch() {
        for v in vectors() {
            for i in [0, v.body.len() / 2, v.body.len() - 1] {
                let mut body = v.body.to_vec();
                body[i] ^= 0x01;
                let got = v.verify_with(&[v.secret], &body, v.now());
                assert_eq!(got, Err(SignatureError::Mismatch), "{} byte {i}", v.name);
            }
        }
    }

    #[test]
    fn a_timestamp_301_s_away_is_stale_and_300_s_is_not() {
        let mut timestamped = 0;
        for v in vectors() {
            let Some(ts) = v.ts else { continue };
            timestamped += 1;
            for now in [ts + 301, ts - 301] {
                let got = v.verify_with(&[v.secret], v.body, now);
                assert_eq!(got, Err(SignatureError::Stale), "{} now {now}", v.name);
            }
            for now in [ts + 300, ts - 300] {
                assert_eq!(
                    v.verify_with(&[v.secret], v.body, now),
                    Ok(()),
                    "{}",
                    v.name
                );
            }
        }
        assert_eq!(timestamped, 4);
    }

    #[test]
    fn a_wrong_secret_is_a_mismatch() {
        for v in vectors() {
            let got = v.verify_with(&[v.wrong_secret()], v.body, v.now());
            assert_eq!(got, Err(SignatureError::Mismatch), "{}", v.name);
        }
    }

    #[test]
    fn no_secrets_is_a_mismatch() {
        for v in vectors() {
            let got = v.verify_with(&[], v.body, v.now());
            assert_eq!(got, Err(SignatureError::Mismatch), "{}", v.name);
        }
    }

    #[test]
    fn a_missing_signature_header_is_missing() {
        for v in vectors() {
            let mut map = v.header_map();
            assert!(map.remove(v.sig_header).is_some(), "{}", v.name);
            let got = verify(v.scheme, &[v.secret], &map, v.body, v.now());
            assert_eq!(got, Err(SignatureError::Missing), "{}", v.name);
        }
    }

    #[test]
    fn rotation_accepts_the_right_secret_in_second_place() {
        for v in vectors() {
            let got = v.verify_with(&[v.wrong_secret(), v.secret], v.body, v.now());
            assert_eq!(got, Ok(()), "{}", v.name);
        }
    }

    #[test]
    fn sign_then_verify_round_trips_for_every_scheme() {
        use crate::store::ids::random_bytes;
        let now = 1_750_000_000;
        let schemes = [
            SignatureScheme::None,
            SignatureScheme::Eventmesh,
            SignatureScheme::Github,
            SignatureScheme::Stripe,
            SignatureScheme::Standard,
            SignatureScheme::Shopify,
            SignatureScheme::Slack,
        ];
        for scheme in schemes {
            let fresh_secret = || match scheme {
                SignatureScheme::Standard => {
                    format!("whsec_{}", B64.encode(random_bytes(24).unwrap()))
                }
                _ => hex(&random_bytes(32).unwrap()),
            };
            let secret = fresh_secret();
            let other = fresh_secret();
            let body = format!(
                r#"{{"event":"test","n":"{}"}}"#,
                hex(&random_bytes(8).unwrap())
            );
            let signed = sign(scheme, &secret, body.as_bytes(), now, "msg_roundtrip");
            for (name, _) in &signed {
                assert_eq!(name, &name.to_ascii_lowercase(), "{scheme:?}");
            }
            let pairs: Vec<(&str, &str)> = signed
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let map = headers(&pairs);
            let ok = verify(scheme, &[secret.as_str()], &map, body.as_bytes(), now);
            assert_eq!(ok, Ok(()), "{scheme:?}");
            let wrong = verify(scheme, &[other.as_str()], &map, body.as_bytes(), now);
            if scheme == SignatureScheme::None {
                assert!(signed.is_empty());
                assert_eq!(wrong, Ok(()));
            } else {
                assert_eq!(wrong, Err(SignatureError::Mismatch), "{scheme:?}");
            }
        }
    }

    #[test]
    fn sign_standard_uses_msg_id_and_timestamp_headers() {
        let signed = sign(
            SignatureScheme::Standard,
            STD1_SECRET,
            STD1_BODY,
            1_614_265_330,
            STD1_ID,
        );
        let get = |n: &str| signed.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get("webhook-id").as_deref(), Some(STD1_ID));
        assert_eq!(get("webhook-timestamp").as_deref(), Some(STD1_TS));
        assert_eq!(get("webhook-signature").as_deref(), Some(STD1_SIG));
    }

    #[test]
    fn scheme_none_always_verifies() {
        let got = verify(SignatureScheme::None, &[], &HeaderMap::new(), b"x", 0);
        assert_eq!(got, Ok(()));
    }

    #[test]
    fn svix_aliases_verify() {
        let map = headers(&[
            ("svix-id", STD1_ID),
            ("svix-timestamp", STD1_TS),
            ("svix-signature", STD1_SIG),
        ]);
        let got = verify_std1(&map, STD1_BODY);
        assert_eq!(got, Ok(()));
        let mut wrong = STD1_BODY.to_vec();
        wrong[0] ^= 1;
        let got = verify_std1(&map, &wrong);
        assert_eq!(got, Err(SignatureError::Mismatch));
    }

    #[test]
    fn standard_ignores_other_versions_and_bad_entries() {
        let value = format!(
            "v2,AAAA v1,!!notbase64 v1,{} {STD1_SIG}",
            B64.encode([0u8; 32])
        );
        let got = verify_std1(&std1_headers(&value), STD1_BODY);
        assert_eq!(got, Ok(()));
        // The right MAC under another version does not count.
        let v2_only = STD1_SIG.replacen("v1,", "v2,", 1);
        let got = verify_std1(&std1_headers(&v2_only), STD1_BODY);
        assert_eq!(got, Err(SignatureError::Mismatch));
    }

    #[test]
    fn standard_without_id_or_timestamp_is_malformed() {
        for missing in ["webhook-id", "webhook-timestamp"] {
            let mut map = std1_headers(STD1_SIG);
            map.remove(missing);
            let got = verify_std1(&map, STD1_BODY);
            assert_eq!(got, Err(SignatureError::Malformed), "{missing}");
        }
        let got = verify_std1(&std1_headers("nonsense"), STD1_BODY);
        assert_eq!(got, Err(SignatureError::Malformed));
    }

    #[test]
    fn stripe_passes_when_only_the_last_of_several_v1_matches() {
        let value = format!(
            "t=1700000000,v1={},v1=nothex,v0={STRIPE_HEX},v1={STRIPE_HEX}",
            "0".repeat(64)
        );
        let got = verify(
            SignatureScheme::Stripe,
            &[STRIPE_SECRET],
            &stripe_headers(&value),
            STRIPE_BODY,
            1_700_000_000,
        );
        assert_eq!(got, Ok(()));
    }

    #[test]
    fn stripe_with_only_v0_is_rejected() {
        let value = format!("t=1700000000,v0={STRIPE_HEX}");
        let got = verify(
            SignatureScheme::Stripe,
            &[STRIPE_SECRET],
            &stripe_headers(&value),
            STRIPE_BODY,
            1_700_000_000,
        );
        assert!(
            matches!(
                got,
                Err(SignatureError::Malformed | SignatureError::Mismatch)
            ),
            "{got:?}"
        );
    }

    #[test]
    fn stripe_without_t_is_malformed() {
        let value = format!("v1={STRIPE_HEX}");
        let got = verify(
            SignatureScheme::Stripe,
            &[STRIPE_SECRET],
            &stripe_headers(&value),
            STRIPE_BODY,
            1_700_000_000,
        );
        assert_eq!(got, Err(SignatureError::Malformed));
    }

    #[test]
    fn stripe_key_is_the_whole_secret_not_base64_decoded() {
        // "whsec_test_secret" read the Standard Webhooks way would be another key.
        let value = format!("t=1700000000,v1={STRIPE_HEX}");
        let map = stripe_headers(&value);
        let got = verify(
            SignatureScheme::Stripe,
            &["test_secret"],
            &map,
            STRIPE_BODY,
            1_700_000_000,
        );
        assert_eq!(got, Err(SignatureError::Mismatch));
    }

    #[test]
    fn a_header_with_1000_entries_is_malformed() {
        let stripe = format!("t=1700000000{}", format!(",v1={STRIPE_HEX}").repeat(999));
        let got = verify(
            SignatureScheme::Stripe,
            &[STRIPE_SECRET],
            &stripe_headers(&stripe),
            STRIPE_BODY,
            1_700_000_000,
        );
        assert_eq!(got, Err(SignatureError::Malformed));
        // 1,000 entries that fit under the byte limit.
        let short = format!("t=1700000000{}", ",v=0".repeat(999));
        assert!(short.len() <= SIGNATURE_HEADER_BYTES_MAX);
        let got = verify(
            SignatureScheme::Stripe,
            &[STRIPE_SECRET],
            &stripe_headers(&short),
            STRIPE_BODY,
            1_700_000_000,
        );
        assert_eq!(got, Err(SignatureError::Malformed));
        let standard = [STD1_SIG; 1000].join(" ");
        let got = verify_std1(&std1_headers(&standard), STD1_BODY);
        assert_eq!(got, Err(SignatureError::Malformed));
        let short = ["v"; 1000].join(" ");
        assert!(short.len() <= SIGNATURE_HEADER_BYTES_MAX);
        let got = verify_std1(&std1_headers(&short), STD1_BODY);
        assert_eq!(got, Err(SignatureError::Malformed));
    }

    #[test]
    fn entries_over_the_limit_are_malformed_even_in_a_short_header() {
        // 17 entries, well under the byte limit, the right one last.
        let over = format!("t=1700000000{},v1={STRIPE_HEX}", ",v1=00".repeat(15));
        assert!(over.len() < SIGNATURE_HEADER_BYTES_MAX);
        let got = verify(
            SignatureScheme::Stripe,
            &[STRIPE_SECRET],
            &stripe_headers(&over),
            STRIPE_BODY,
            1_700_000_000,
        );
        assert_eq!(got, Err(SignatureError::Malformed));
        // Exactly 16 entries is still looked at.
        let at = format!("t=1700000000{},v1={STRIPE_HEX}", ",v1=00".repeat(14));
        let got = verify(
            SignatureScheme::Stripe,
            &[STRIPE_SECRET],
            &stripe_headers(&at),
            STRIPE_BODY,
            1_700_000_000,
        );
        assert_eq!(got, Ok(()));
    }

    #[test]
    fn a_header_over_the_byte_limit_is_malformed() {
        let value = format!(
            "sha256={GITHUB_HEX}{}",
            " ".repeat(SIGNATURE_HEADER_BYTES_MAX)
        );
        let map = headers(&[("x-event-signature", value.as_str())]);
        let got = verify(
            SignatureScheme::Eventmesh,
            &["It's a Secret to Everybody"],
            &map,
            b"Hello, World!",
            ANY_NOW,
        );
        assert_eq!(got, Err(SignatureError::Malformed));
    }

    #[test]
    fn a_non_utf8_header_is_malformed() {
        let mut map = HeaderMap::new();
        map.insert(
            "x-event-signature",
            HeaderValue::from_bytes(&[b'a', 0xff, b'b']).unwrap(),
        );
        let got = verify(SignatureScheme::Eventmesh, &["s"], &map, b"{}", ANY_NOW);
        assert_eq!(got, Err(SignatureError::Malformed));
    }

    #[test]
    fn github_without_sha256_prefix_is_malformed() {
        let map = headers(&[("x-hub-signature-256", GITHUB_HEX)]);
        let got = verify(
            SignatureScheme::Github,
            &["It's a Secret to Everybody"],
            &map,
            b"Hello, World!",
            ANY_NOW,
        );
        assert_eq!(got, Err(SignatureError::Malformed));
    }

    #[test]
    fn uppercase_hex_is_accepted_and_bad_hex_does_not_match() {
        let secret = ["It's a Secret to Everybody"];
        let upper_hex = GITHUB_HEX.to_ascii_uppercase();
        let upper = headers(&[("x-event-signature", upper_hex.as_str())]);
        let got = verify(
            SignatureScheme::Eventmesh,
            &secret,
            &upper,
            b"Hello, World!",
            ANY_NOW,
        );
        assert_eq!(got, Ok(()));
        let bad = headers(&[("x-event-signature", "zz")]);
        let got = verify(
            SignatureScheme::Eventmesh,
            &secret,
            &bad,
            b"Hello, World!",
            ANY_NOW,
        );
        assert_eq!(got, Err(SignatureError::Mismatch));
    }

    #[test]
    fn slack_without_or_with_bad_timestamp_is_malformed() {
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        let secret = ["8f742231b10e8888abcd99yyyzzz85a5"];
        let no_ts = headers(&[("x-slack-signature", sig)]);
        let got = verify(
            SignatureScheme::Slack,
            &secret,
            &no_ts,
            SLACK_BODY,
            1_531_420_618,
        );
        assert_eq!(got, Err(SignatureError::Malformed));
        let bad_ts = headers(&[
            ("x-slack-signature", sig),
            ("x-slack-request-timestamp", "-1531420618"),
        ]);
        let got = verify(
            SignatureScheme::Slack,
            &secret,
            &bad_ts,
            SLACK_BODY,
            1_531_420_618,
        );
        assert_eq!(got, Err(SignatureError::Malformed));
    }

    #[test]
    fn error_messages_carry_no_secret_or_signature() {
        for e in [
            SignatureError::Missing,
            SignatureError::Malformed,
            SignatureError::Stale,
            SignatureError::Mismatch,
        ] {
            let text = e.to_string();
            assert!(text.starts_with("the signature"), "{text}");
            assert!(!text.contains('='), "{text}");
        }
    }
}
