//! Sites of one deployment prove to each other that they are: each holds
//! the same peer secret (`TOCSIN_SYNC_PEER_SECRET`), and a site asking
//! another's standing sends a fresh challenge that the answer must sign
//! (HMAC-SHA-256 over the challenge and the standing it reports). Without
//! that, whoever answers at a peer's address could report a higher epoch
//! and make an active site step down, and then receive its sync token.

use hmac::{Hmac, Mac};
use rand::Rng;
use rand::distr::Alphanumeric;
use subtle::ConstantTimeEq;

use super::Site;
use crate::config::Secret;

/// The shortest peer secret taken: 256 bits of hex, or more.
pub const MIN_SECRET: usize = 32;
const CHALLENGE_LEN: std::ops::RangeInclusive<usize> = 16..=128;

/// A fresh challenge: 256 bits, URL-safe.
pub fn challenge() -> String {
    rand::rng().sample_iter(&Alphanumeric).take(43).map(char::from).collect()
}

/// Whether `text` may be a challenge (bounded, URL-safe).
pub fn is_challenge(text: &str) -> bool {
    CHALLENGE_LEN.contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The proof that the site reporting `site` holds `secret`.
pub fn sign(secret: &Secret, challenge: &str, site: &Site) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.expose().as_bytes()).expect("any key length");
    // Every field a peer acts on, separated so that none can run into another.
    for part in ["tocsin sync status v1", challenge, &site.name, site.role.as_str(), &site.epoch.to_string()] {
        mac.update(part.as_bytes());
        mac.update(b"\n");
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `proof` is the proof of `site` for `challenge` (constant time).
pub fn verify(secret: &Secret, challenge: &str, site: &Site, proof: &str) -> bool {
    sign(secret, challenge, site).as_bytes().ct_eq(proof.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Role;

    fn site(role: Role, epoch: i64) -> Site {
        Site {
            name: "b".into(),
            role,
            epoch,
            head: 0,
            head_epoch: 0,
            head_chain: String::new(),
            source: None,
            changed_at: 0,
        }
    }

    #[test]
    fn a_proof_holds_for_its_challenge_and_standing_only() {
        let secret = Secret::new("x".repeat(MIN_SECRET));
        let challenge = challenge();
        assert!(is_challenge(&challenge));
        let proof = sign(&secret, &challenge, &site(Role::Active, 2));
        assert!(verify(&secret, &challenge, &site(Role::Active, 2), &proof));
        assert!(!verify(&secret, &challenge, &site(Role::Active, 3), &proof), "another epoch");
        assert!(!verify(&secret, &challenge, &site(Role::Passive, 2), &proof), "another role");
        assert!(!verify(&secret, "another-challenge-123", &site(Role::Active, 2), &proof), "a replayed answer");
        assert!(!verify(&Secret::new("y".repeat(MIN_SECRET)), &challenge, &site(Role::Active, 2), &proof));
        assert!(!is_challenge("short") && !is_challenge("has space in it here") && !is_challenge(&"a".repeat(129)));
    }
}
