//! What proves a view comes from a peer watchdog: the secret the watchdogs
//! of one deployment share.
//!
//! A watchdog asking a peer for its view sends a fresh random nonce
//! ([`NONCE_HEADER`]); the peer answers with its view and, in
//! [`SIGNATURE_HEADER`], HMAC-SHA-256 under the shared secret of the nonce
//! and the exact bytes of the view (its `at` timestamp included). Only a
//! holder of the secret can make that signature, and only for that nonce,
//! so a view recorded earlier cannot be replayed and a view altered on the
//! way does not verify. The secret itself is never logged nor sent.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The asker's nonce: 128 random bits, hex.
pub const NONCE_HEADER: &str = "tocsin-peer-nonce";
/// The answer's signature: HMAC-SHA-256, hex.
pub const SIGNATURE_HEADER: &str = "tocsin-peer-signature";
/// Shorter secrets are refused: 32 characters of `openssl rand -hex 32`
/// are 128 bits.
pub const MIN_LEN: usize = 32;
/// Keeps a signature over a view from meaning anything else.
const CONTEXT: &[u8] = b"tocsin-watchdog-view-v1\0";

#[derive(Clone)]
pub struct PeerSecret(SecretString);

impl std::fmt::Debug for PeerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerSecret(***)")
    }
}

impl PeerSecret {
    /// The secret, or why it is not one.
    pub fn new(secret: SecretString) -> Result<PeerSecret, String> {
        let length = secret.expose_secret().chars().count();
        if length < MIN_LEN {
            return Err(format!(
                "is {length} characters long; use at least {MIN_LEN} random ones (e.g. `openssl rand -hex 32`)"
            ));
        }
        Ok(PeerSecret(secret))
    }

    fn mac(&self, nonce: &str, view: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.0.expose_secret().as_bytes()).expect("HMAC takes a key of any length");
        mac.update(CONTEXT);
        mac.update(nonce.as_bytes());
        mac.update(b"\0");
        mac.update(view);
        mac
    }

    /// The signature of `view` (its exact bytes) for the asker's `nonce`.
    pub fn sign(&self, nonce: &str, view: &[u8]) -> String {
        hex::encode(self.mac(nonce, view).finalize().into_bytes())
    }

    /// Whether `signature` is ours over `view` for `nonce` (in constant time).
    pub fn verify(&self, nonce: &str, view: &[u8], signature: &str) -> bool {
        match hex::decode(signature.trim()) {
            Ok(bytes) => self.mac(nonce, view).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }
}

/// A nonce as [`crate::model::fresh_nonce`] makes them: 32 hex digits.
pub fn is_nonce(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fresh_nonce;

    fn secret(text: &str) -> PeerSecret {
        PeerSecret::new(SecretString::from(text.to_string())).unwrap()
    }

    #[test]
    fn a_signature_holds_for_its_nonce_and_bytes_only() {
        let s = secret(&"s".repeat(32));
        let nonce = fresh_nonce();
        let view = br#"{"watchdog":"w2","at":1}"#;
        let signature = s.sign(&nonce, view);
        assert!(s.verify(&nonce, view, &signature));
        assert!(!s.verify(&fresh_nonce(), view, &signature), "a replay for another nonce");
        assert!(!s.verify(&nonce, br#"{"watchdog":"0","at":1}"#, &signature), "an altered view");
        assert!(!secret(&"t".repeat(32)).verify(&nonce, view, &signature), "another secret");
        assert!(!s.verify(&nonce, view, "not hex"));
        assert!(!s.verify(&nonce, view, ""));
    }

    #[test]
    fn a_short_secret_is_refused_and_none_is_shown() {
        let e = PeerSecret::new(SecretString::from("short".to_string())).unwrap_err();
        assert!(e.contains("5 characters long"), "{e}");
        let s = "x".repeat(40);
        assert!(!format!("{:?}", secret(&s)).contains(&s));
    }

    #[test]
    fn fresh_nonces_are_nonces_and_differ() {
        let (a, b) = (fresh_nonce(), fresh_nonce());
        assert!(is_nonce(&a) && is_nonce(&b) && a != b);
        assert!(!is_nonce("0") && !is_nonce(&"g".repeat(32)));
    }
}
