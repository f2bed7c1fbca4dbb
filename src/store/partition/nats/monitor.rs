//! What an ack means on this cluster, read from the servers' monitoring endpoints
//! (`/varz`): fsynced on a quorum only when every server runs `sync_interval: always`
//! (docs/cluster.md, "Durability").

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::Deserialize;

/// How long one `/varz` request may take.
const MONITOR_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of a `/varz` answer read.
const MONITOR_BODY_BYTES_MAX: usize = 1024 * 1024;

/// The promise a 2xx makes in cluster mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durability {
    /// Every server fsyncs each Raft append before it counts toward the quorum.
    Fsynced,
    /// Some server syncs only every `sync_interval_s`: an ack means "in memory on a
    /// quorum", on disk within that time.
    QuorumMemory { sync_interval_s: u64 },
    /// No monitoring URL was given (or one did not answer): EventMesh cannot tell.
    Unverified { why: String },
}

impl Durability {
    /// The words `/readyz` and the start-up log use.
    pub fn describe(&self) -> String {
        match self {
            Self::Fsynced => "fsynced on a quorum".into(),
            Self::QuorumMemory { sync_interval_s } => {
                format!("in memory on a quorum, synced within {sync_interval_s} s")
            }
            Self::Unverified { .. } => "unverified".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Varz {
    #[serde(default)]
    server_name: String,
    #[serde(default)]
    jetstream: Option<VarzJetStream>,
}

#[derive(Debug, Deserialize)]
struct VarzJetStream {
    #[serde(default)]
    config: Option<VarzJsConfig>,
}

#[derive(Debug, Deserialize)]
struct VarzJsConfig {
    /// Left out when false.
    #[serde(default)]
    sync_always: bool,
    /// Nanoseconds.
    #[serde(default)]
    sync_interval: u64,
}

/// One server's setting: `Ok(None)` for `always`, `Ok(Some(seconds))` otherwise.
fn sync_setting(varz: &[u8]) -> Result<(String, Option<u64>), String> {
    let v: Varz = serde_json::from_slice(varz).map_err(|e| format!("unreadable /varz: {e}"))?;
    let config = v
        .jetstream
        .and_then(|j| j.config)
        .ok_or_else(|| format!("{} has no JetStream", v.server_name))?;
    Ok((
        v.server_name,
        (!config.sync_always).then_some(config.sync_interval / 1_000_000_000),
    ))
}

/// A plain HTTP/1.0 GET (so the answer is not chunked; the monitoring port speaks no
/// TLS by default).
fn get(url: &str) -> Result<Vec<u8>, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: a monitoring URL is http://host:port"))?;
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) => (h, format!("/{p}")),
        None => (rest, "/".into()),
    };
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    let mut conn =
        TcpStream::connect_timeout(&addr, MONITOR_TIMEOUT).map_err(|e| format!("{url}: {e}"))?;
    conn.set_read_timeout(Some(MONITOR_TIMEOUT))
        .and_then(|_| conn.set_write_timeout(Some(MONITOR_TIMEOUT)))
        .map_err(|e| format!("{url}: {e}"))?;
    let path = if path == "/" {
        "/varz".to_owned()
    } else {
        path
    };
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")
        .map_err(|e| format!("{url}: {e}"))?;
    let mut raw = Vec::new();
    conn.take(MONITOR_BODY_BYTES_MAX as u64)
        .read_to_end(&mut raw)
        .map_err(|e| format!("{url}: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{url}: not an HTTP answer"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!(
            "{url}: answered {}",
            head.lines().next().unwrap_or("")
        ));
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Err(format!("{url}: a chunked answer (not from nats-server)"));
    }
    Ok(raw[split + 4..].to_vec())
}

/// Reads `/varz` of every monitoring URL and says what an ack means. A server that
/// does not answer makes it `Unverified`: a claim is made only when every server
/// was seen.
pub fn check(monitor_urls: &[String]) -> Durability {
    if monitor_urls.is_empty() {
        return Durability::Unverified {
            why: "no --nats-monitor-url was given".into(),
        };
    }
    let mut slowest = None;
    for url in monitor_urls {
        let url = format!("{}/varz", url.trim_end_matches('/'));
        match get(&url).and_then(|body| sync_setting(&body)) {
            Ok((_, None)) => {}
            Ok((_, Some(s))) => slowest = Some(slowest.map_or(s, |m: u64| m.max(s))),
            Err(why) => return Durability::Unverified { why },
        }
    }
    match slowest {
        None => Durability::Fsynced,
        Some(sync_interval_s) => Durability::QuorumMemory { sync_interval_s },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varz_says_always_only_when_sync_always_is_there() {
        // Proves the reading of the measured /varz shapes: `sync_always: true` is
        // fsynced; the field left out (the default) is the 2-minute interval.
        let always = br#"{"server_name":"n1","jetstream":{"config":{"sync_interval":120000000000,"sync_always":true}}}"#;
        assert_eq!(sync_setting(always), Ok(("n1".into(), None)));
        let default =
            br#"{"server_name":"n2","jetstream":{"config":{"sync_interval":120000000000}}}"#;
        assert_eq!(sync_setting(default), Ok(("n2".into(), Some(120))));
        assert!(sync_setting(br#"{"server_name":"n3"}"#).is_err());
        assert_eq!(
            Durability::QuorumMemory {
                sync_interval_s: 120
            }
            .describe(),
            "in memory on a quorum, synced within 120 s"
        );
        assert!(matches!(check(&[]), Durability::Unverified { .. }));
    }
}
