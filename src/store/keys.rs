//! API keys and the admin key: issuing, hashing, verifying.
//!
//! A key is `pk_<env>_<id>_<secret>`: the id (public) finds the record; the whole key is
//! hashed with HMAC-SHA256 under the installation secret (`<data>/secret`, 32 random
//! bytes), and only that hash is stored. Verification compares hashes in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::store::error::StoreError;
use crate::store::ids::{hex, random_bytes, KEY_ID_BYTES};
use crate::store::limits::{ADMIN_KEY_MIN_CHARS, KEY_TEXT_MAX_CHARS};
use crate::store::meta::ApiKeyRecord;

/// Bytes of randomness in a key's secret part (256 bits).
pub const KEY_SECRET_BYTES: usize = 32;

/// Checks an admin key an operator sets: one bound for setting the key and for
/// presenting it, since a longer key could be set but would never match.
pub fn check_admin_key(key: &str) -> Result<(), String> {
    if (ADMIN_KEY_MIN_CHARS..=KEY_TEXT_MAX_CHARS).contains(&key.len()) {
        Ok(())
    } else {
        Err(format!(
            "the admin key must be {ADMIN_KEY_MIN_CHARS} to {KEY_TEXT_MAX_CHARS} characters"
        ))
    }
}

/// HMAC-SHA256 keyed once with the installation secret: each hash then starts from the
/// keyed state instead of hashing the key pads again (two fewer SHA-256 blocks).
#[derive(Clone)]
pub struct KeyHasher(Option<Hmac<Sha256>>);

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(..)")
    }
}

impl KeyHasher {
    pub fn new(installation_secret: &[u8]) -> Self {
        // HMAC accepts keys of any length, so new_from_slice cannot fail here.
        Self(Hmac::<Sha256>::new_from_slice(installation_secret).ok())
    }

    /// Hashes key text under the installation secret.
    pub fn hash(&self, key: &str) -> String {
        self.mac(key.as_bytes())
            .map(|m| hex(&m))
            .unwrap_or_default()
    }

    /// HMAC-SHA256 of `data` under the installation secret (also the sealer's key
    /// derivation, `seal.rs`).
    pub fn mac(&self, data: &[u8]) -> Option<[u8; 32]> {
        let mut mac = self.0.as_ref()?.clone();
        mac.update(data);
        Some(mac.finalize().into_bytes().into())
    }
}

/// Constant-time equality of two hex hashes.
pub fn hashes_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A new key for `env` (`live` or `test`): (id, plaintext key).
pub fn new_key(env: &str) -> Result<(String, String), StoreError> {
    let id_hex = hex(&random_bytes(KEY_ID_BYTES)?);
    let secret = hex(&random_bytes(KEY_SECRET_BYTES)?);
    Ok((
        format!("key_{id_hex}"),
        format!("pk_{env}_{id_hex}_{secret}"),
    ))
}

/// A new secret for an existing key id (rotation): the plaintext key.
pub fn rotated_key(record: &ApiKeyRecord) -> Result<String, StoreError> {
    let id_hex = record.id.trim_start_matches("key_");
    let secret = hex(&random_bytes(KEY_SECRET_BYTES)?);
    Ok(format!("pk_{}_{id_hex}_{secret}", record.env))
}

/// A new admin key: `ek_admin_` + 32 random bytes in hex.
pub fn new_admin_key() -> Result<String, StoreError> {
    Ok(format!("ek_admin_{}", hex(&random_bytes(32)?)))
}

/// The key id embedded in presented key text, if the text has a key's shape.
pub fn key_id_of(text: &str) -> Option<String> {
    if text.len() > KEY_TEXT_MAX_CHARS {
        return None;
    }
    let rest = text
        .strip_prefix("pk_live_")
        .or_else(|| text.strip_prefix("pk_test_"))?;
    let (id, secret) = rest.split_once('_')?;
    let ok = id.len() == KEY_ID_BYTES * 2
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && !secret.is_empty();
    ok.then(|| format!("key_{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_carries_its_id_and_hashes_differently_per_installation() {
        let (id, key) = new_key("live").expect("key");
        assert!(key.starts_with("pk_live_"));
        assert_eq!(key_id_of(&key), Some(id));
        let a = KeyHasher::new(b"install-a");
        assert_ne!(a.hash(&key), KeyHasher::new(b"install-b").hash(&key));
        // The keyed state is reused, not consumed: after another hash, the same answer
        // as a fresh hasher.
        let first = a.hash(&key);
        assert_ne!(a.hash("pk_live_x"), first);
        assert_eq!(a.hash(&key), first);
        assert_eq!(KeyHasher::new(b"install-a").hash(&key), first);
        assert!(hashes_match(&first, &a.hash(&key)));
        assert!(!hashes_match(&first, &a.hash("pk_live_x")));
    }

    #[test]
    fn key_hashes_are_hmac_sha256_in_hex() {
        // RFC 4231, test case 2: stored hashes stay readable across versions.
        assert_eq!(
            KeyHasher::new(b"Jefe").hash("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn text_without_a_key_shape_has_no_id() {
        for bad in [
            "",
            "pk_live_",
            "pk_live_zzzzzzzzzzzz_s",
            "sk_live_0123456789ab_s",
            "pk_prod_0123456789ab_s",
        ] {
            assert_eq!(key_id_of(bad), None, "{bad}");
        }
        assert_eq!(key_id_of(&"pk_live_0123456789ab_".repeat(20)), None);
    }
}
