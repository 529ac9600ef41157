//! Signed response links: what lets a person accept or reject from an SMS,
//! a chat message, an email or a key press on a call, without a token.
//!
//! A link names one notification (outbox row), the action, and an expiry,
//! signed with HMAC-SHA256 under a key kept in the database (so every
//! controller accepts every controller's links). It is single-use because
//! the notification takes one response (`outbox.response`), not because
//! the link is remembered.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::model::Millis;
use crate::store::{self, Db};

const KEY: &str = "link_key";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Accept,
    Reject,
    /// A voice callback: the key pressed says which.
    Call,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// The notification (outbox id).
    #[serde(rename = "n")]
    pub notification: i64,
    #[serde(rename = "a")]
    pub action: Action,
    /// Unix milliseconds.
    #[serde(rename = "x")]
    pub expires_at: Millis,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is malformed")]
    Malformed,
    #[error("the link's signature is wrong (forged or altered)")]
    Forged,
    #[error("the link expired")]
    Expired,
}

#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl Signer {
    pub fn new(key: Vec<u8>) -> Signer {
        Signer { key }
    }

    /// The key in the database, created by the first controller to start.
    pub async fn load(db: &Db) -> store::Result<Signer> {
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(KEY)
            .bind(&fresh)
            .execute(db.writer())
            .await?;
        let stored = db.meta(KEY).await?.ok_or_else(|| store::StoreError::Corrupt("the link key vanished".into()))?;
        let key = hex::decode(stored).map_err(|e| store::StoreError::Corrupt(format!("link key: {e}")))?;
        Ok(Signer { key })
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(payload.as_bytes());
        mac
    }

    pub fn sign(&self, claim: &Claim) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claim).expect("a claim serializes"));
        let tag = URL_SAFE_NO_PAD.encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    pub fn verify(&self, token: &str, now: Millis) -> Result<Claim, LinkError> {
        let (payload, tag) = token.split_once('.').ok_or(LinkError::Malformed)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| LinkError::Malformed)?;
        // Constant time: the comparison must not tell how much of a guess was right.
        self.mac(payload).verify_slice(&tag).map_err(|_| LinkError::Forged)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| LinkError::Malformed)?;
        let claim: Claim = serde_json::from_slice(&bytes).map_err(|_| LinkError::Malformed)?;
        if claim.expires_at < now {
            return Err(LinkError::Expired);
        }
        Ok(claim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_and_refuse_tampering_and_age() {
        let signer = Signer::new(b"k".to_vec());
        let claim = Claim { notification: 7, action: Action::Accept, expires_at: 1000 };
        let token = signer.sign(&claim);
        assert_eq!(signer.verify(&token, 999), Ok(claim.clone()));
        assert_eq!(signer.verify(&token, 1001), Err(LinkError::Expired));
        assert_eq!(Signer::new(b"other".to_vec()).verify(&token, 0), Err(LinkError::Forged));
        let forged = signer.sign(&Claim { action: Action::Reject, ..claim });
        let spliced = format!("{}.{}", forged.split('.').next().unwrap(), token.split('.').nth(1).unwrap());
        assert_eq!(signer.verify(&spliced, 0), Err(LinkError::Forged));
        assert_eq!(signer.verify("nonsense", 0), Err(LinkError::Malformed));
    }
}
