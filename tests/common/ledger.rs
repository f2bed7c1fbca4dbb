//! What the kill -9 and cluster fault suites share: the ledger of acknowledged events,
//! the seeded generator that picks each run's moments, and a read of a whole flow.

use serde_json::Value;

use super::server::Server;

/// One event a sender got a 2xx for: where it was stored, under which key, with which
/// body.
pub struct Acked {
    pub offset: u64,
    pub key: String,
    pub body: String,
}

/// SplitMix64: the next number of the seeded sequence in `x`.
pub fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Every event of flow `fid`, page by page from offset 0 (admin key).
pub fn all_events(s: &Server, fid: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let r = s.admin(
            "GET",
            &format!("/api/flows/{fid}/events?from={from}&limit=1000"),
            "",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let page = r.json();
        let events = page["events"].as_array().cloned().unwrap_or_default();
        if events.is_empty() {
            return out;
        }
        from = page["nextOffset"].as_u64().expect("nextOffset");
        out.extend(events);
    }
}
