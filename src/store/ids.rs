//! Random identifiers and secrets. Every id that names a file is made here, from the
//! OS's random source, never from request text.

use crate::store::error::StoreError;

/// `n` random bytes from the OS.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, StoreError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf)
        .map_err(|e| StoreError::Unavailable(format!("no randomness: {e}")))?;
    Ok(buf)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// `prefix` followed by `bytes` random bytes in hex (so 2 × bytes characters).
pub fn token(prefix: &str, bytes: usize) -> Result<String, StoreError> {
    Ok(format!("{prefix}{}", hex(&random_bytes(bytes)?)))
}

/// Whether `s` is an id we could have generated with `prefix` (hex after the prefix).
pub fn is_token(s: &str, prefix: &str, bytes: usize) -> bool {
    s.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == bytes * 2
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Flow ids: `fl_` + 8 random bytes. They name the flow's directory.
pub const FLOW_PREFIX: &str = "fl_";
pub const FLOW_ID_BYTES: usize = 8;
/// Webhook ids: `wh_` + 16 random bytes (128 bits): unguessable.
pub const WEBHOOK_PREFIX: &str = "wh_";
pub const WEBHOOK_ID_BYTES: usize = 16;
/// Workspace ids: `ws_` + 8 random bytes; the default workspace is `ws_default`.
pub const WORKSPACE_PREFIX: &str = "ws_";
pub const WORKSPACE_ID_BYTES: usize = 8;
pub const DEFAULT_WORKSPACE_ID: &str = "ws_default";
/// API key ids: `key_` + 6 random bytes; the id is also embedded in the key itself.
pub const KEY_ID_BYTES: usize = 6;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_promised_shape_and_differ() {
        let a = token(WEBHOOK_PREFIX, WEBHOOK_ID_BYTES).expect("token");
        let b = token(WEBHOOK_PREFIX, WEBHOOK_ID_BYTES).expect("token");
        assert_ne!(a, b);
        assert!(is_token(&a, WEBHOOK_PREFIX, WEBHOOK_ID_BYTES));
        assert!(!is_token("wh_../../etc", WEBHOOK_PREFIX, WEBHOOK_ID_BYTES));
        assert!(!is_token(
            &a[..a.len() - 1],
            WEBHOOK_PREFIX,
            WEBHOOK_ID_BYTES
        ));
        assert_eq!(hex(&[0x0f, 0xa0]), "0fa0");
    }
}
