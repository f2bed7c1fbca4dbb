//! Flow signing secrets sealed at rest.
//!
//! All six signature schemes are HMAC-SHA256: to check a signature the server must
//! compute it, so it needs the secret itself, and a hash of it would not do. Secrets are
//! therefore encrypted in `meta.json`, not hashed: XChaCha20-Poly1305 under a key derived
//! from the installation secret (HMAC-SHA256 of a fixed label), with a fresh random
//! 24-byte nonce per seal and the flow id and field as associated data, so a sealed
//! value moved to another flow or field does not open.
//!
//! Stored form: `sealed:v1:` then base64 (standard, padded) of nonce ‖ ciphertext ‖ tag.
//! What this protects: a `meta.json` read without the installation secret (a backup, a
//! support bundle, a copy pasted somewhere) reveals no sender's secret. Whoever can read
//! the installation secret too can open them; `--secret-file` keeps it out of the data
//! directory (docs/durability.md, "Secrets at rest").

use crate::store::error::StoreError;
use crate::store::ids::random_bytes;
use crate::store::keys::KeyHasher;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The prefix of a sealed value.
pub const SEALED_PREFIX: &str = "sealed:v1:";
const KEY_LABEL: &[u8] = b"eventmesh meta.json flow secrets v1";
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;

/// Seals and opens flow secrets with the key derived from the installation secret.
#[derive(Clone)]
pub struct Sealer(XChaCha20Poly1305);

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

/// Why a sealed value did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsealError {
    #[error("it is not a sealed value (no {SEALED_PREFIX} prefix)")]
    NotSealed,
    #[error("its base64 is malformed or too short")]
    Malformed,
    #[error("it does not open with this installation secret (another secret, or damaged)")]
    WrongKey,
}

impl Sealer {
    /// The sealer whose key is the HMAC of a fixed label under the installation
    /// secret (the same keyed HMAC that hashes API keys).
    pub fn new(hasher: &KeyHasher) -> Self {
        // `mac` is `None` only if HMAC refused the key, which it never does.
        let key = hasher.mac(KEY_LABEL).unwrap_or_default();
        Self(XChaCha20Poly1305::new(&key.into()))
    }

    /// Seals `secret`, bound to `context` (for example `flow_x/secret`).
    pub fn seal(&self, secret: &str, context: &str) -> Result<String, StoreError> {
        let nonce_bytes = random_bytes(NONCE_BYTES)?;
        let nonce = XNonce::from_slice(&nonce_bytes);
        let sealed = self
            .0
            .encrypt(
                nonce,
                Payload {
                    msg: secret.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Unavailable("sealing a flow secret failed".into()))?;
        let mut out = nonce_bytes;
        out.extend_from_slice(&sealed);
        Ok(format!(
            "{SEALED_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    /// Opens a value [`Sealer::seal`] made for the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<String, UnsealError> {
        let text = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(UnsealError::NotSealed)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| UnsealError::Malformed)?;
        if bytes.len() < NONCE_BYTES + TAG_BYTES {
            return Err(UnsealError::Malformed);
        }
        let (nonce, body) = bytes.split_at(NONCE_BYTES);
        let plain = self
            .0
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| UnsealError::WrongKey)?;
        String::from_utf8(plain).map_err(|_| UnsealError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_context() {
        let sealer = Sealer::new(&KeyHasher::new(&[7u8; 32]));
        let sealed = sealer.seal("whsec_abc", "flow_1/secret").unwrap();
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(sealer.open(&sealed, "flow_1/secret").unwrap(), "whsec_abc");
        // Another flow's or field's context, another installation: no.
        assert_eq!(
            sealer.open(&sealed, "flow_2/secret"),
            Err(UnsealError::WrongKey)
        );
        assert_eq!(
            sealer.open(&sealed, "flow_1/previous"),
            Err(UnsealError::WrongKey)
        );
        assert_eq!(
            Sealer::new(&KeyHasher::new(&[8u8; 32])).open(&sealed, "flow_1/secret"),
            Err(UnsealError::WrongKey)
        );
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce_and_damage_is_detected() {
        let sealer = Sealer::new(&KeyHasher::new(&[1u8; 32]));
        let a = sealer.seal("s", "c").unwrap();
        let b = sealer.seal("s", "c").unwrap();
        assert_ne!(a, b);
        assert_eq!(sealer.open("whsec_plain", "c"), Err(UnsealError::NotSealed));
        assert_eq!(
            sealer.open("sealed:v1:!!", "c"),
            Err(UnsealError::Malformed)
        );
        assert_eq!(
            sealer.open("sealed:v1:AAAA", "c"),
            Err(UnsealError::Malformed)
        );
        // Flip one character of the ciphertext.
        let mut chars: Vec<char> = a.chars().collect();
        let i = chars.len() - 5;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let flipped: String = chars.into_iter().collect();
        assert_eq!(sealer.open(&flipped, "c"), Err(UnsealError::WrongKey));
    }
}
