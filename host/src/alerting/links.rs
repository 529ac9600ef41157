//! Signed response links: what lets a person accept or reject from an SMS,
//! a chat message, an email or a key press on a call, without a token.
//!
//! A link names one notification (outbox row), the action, and an expiry,
//! signed with HMAC-SHA256 under a link key kept in the database (so every
//! controller accepts every controller's links), sealed there with the
//! secrets key. It is single-use because the notification takes one
//! response (`outbox.response`), not because the link is remembered.
//!
//! Link keys rotate: a link is `<key id>.<claim>.<tag>` and is checked
//! against the key it names, read from the database at each answer, so a
//! rotation on any controller holds on all of them, links sent before it
//! still work until they expire, and a link of a dropped key is refused.
//! Links of older versions (`<claim>.<tag>`) name no key: they are key 1,
//! the key those versions kept.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::model::Millis;
use crate::store::{self, Db, StoreError};

/// The meta row where versions before link key rotation kept their key.
pub const LEGACY_KEY: &str = "link_key";
/// The id a key of older versions, and their links, take.
const LEGACY_ID: i64 = 1;

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
    #[error("the link was signed with a key that no longer exists (retired): ask for a new notification")]
    UnknownKey,
    #[error("the link expired")]
    Expired,
    #[error("the link cannot be checked now (the database is unavailable); try again")]
    Unavailable,
}

/// One link key.
#[derive(Clone)]
pub struct LinkKey {
    pub id: i64,
    key: Vec<u8>,
}

impl LinkKey {
    pub fn new(id: i64, key: Vec<u8>) -> LinkKey {
        LinkKey { id, key }
    }

    /// What the tag covers: the key id too, except in a link of an older
    /// version (which had none).
    fn mac(&self, signed: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(signed.as_bytes());
        mac
    }

    pub fn sign(&self, claim: &Claim) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claim).expect("a claim serializes"));
        let signed = format!("{}.{payload}", self.id);
        let tag = URL_SAFE_NO_PAD.encode(self.mac(&signed).finalize().into_bytes());
        format!("{signed}.{tag}")
    }

    /// The claim of `link`, if this key signed it.
    pub fn verify(&self, link: &str, now: Millis) -> Result<Claim, LinkError> {
        if key_of(link)? != self.id {
            return Err(LinkError::Forged);
        }
        let (signed, tag) = link.rsplit_once('.').ok_or(LinkError::Malformed)?;
        let payload = signed.rsplit('.').next().unwrap_or(signed);
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| LinkError::Malformed)?;
        // Constant time: the comparison must not tell how much of a guess was right.
        self.mac(signed).verify_slice(&tag).map_err(|_| LinkError::Forged)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| LinkError::Malformed)?;
        let claim: Claim = serde_json::from_slice(&bytes).map_err(|_| LinkError::Malformed)?;
        if claim.expires_at < now {
            return Err(LinkError::Expired);
        }
        Ok(claim)
    }
}

/// The id of the key a link names.
pub fn key_of(link: &str) -> Result<i64, LinkError> {
    match link.split('.').collect::<Vec<_>>()[..] {
        [_, _] => Ok(LEGACY_ID),
        [id, _, _] => id.parse().map_err(|_| LinkError::Malformed),
        _ => Err(LinkError::Malformed),
    }
}

/// A link key as the API shows it (never the key).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyInfo {
    pub id: i64,
    /// Unix milliseconds.
    pub created_at: Millis,
}

/// What a rotation did.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Rotation {
    /// The new key, which signs every link from now on.
    pub id: i64,
    /// The keys dropped: their links no longer work.
    pub dropped: Vec<i64>,
    /// The keys kept, newest first.
    pub keys: Vec<KeyInfo>,
}

/// Signs and checks links with the link keys in the database.
#[derive(Clone)]
pub struct Signer {
    db: Db,
}

impl Signer {
    /// Makes the first link key when there is none (the first controller
    /// to start; the start-up pass has moved an older version's key).
    pub async fn load(db: &Db) -> store::Result<Signer> {
        let sealed = db.keys().seal(&hex::encode(rand::random::<[u8; 32]>()));
        sqlx::query(
            "INSERT INTO link_keys (id, sealed, created_at) SELECT $1, $2, $3 \
             WHERE NOT EXISTS (SELECT 1 FROM link_keys)",
        )
        .bind(LEGACY_ID)
        .bind(sealed)
        .bind(crate::model::now_ms())
        .execute(db.writer())
        .await
        .or_else(|e| if store::is_unique_violation(&e) { Ok(Default::default()) } else { Err(e) })?;
        Ok(Signer { db: db.clone() })
    }

    /// The newest key, which signs new links.
    pub async fn current(&self) -> store::Result<LinkKey> {
        let row: Option<(i64, String)> = sqlx::query_as("SELECT id, sealed FROM link_keys ORDER BY id DESC LIMIT 1")
            .fetch_optional(self.db.reader())
            .await?;
        let (id, sealed) = row.ok_or_else(|| StoreError::Corrupt("there is no link key".into()))?;
        open_key(&self.db, id, &sealed)
    }

    /// The claim of `link`, checked against the key it names.
    pub async fn verify(&self, link: &str, now: Millis) -> Result<Claim, LinkError> {
        let id = key_of(link)?;
        let sealed: Option<String> = sqlx::query_scalar("SELECT sealed FROM link_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.reader())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "reading a link key failed");
                LinkError::Unavailable
            })?;
        let sealed = sealed.ok_or(LinkError::UnknownKey)?;
        let key = open_key(&self.db, id, &sealed).map_err(|e| {
            tracing::error!(key = id, error = %e, "a link key does not open");
            LinkError::Unavailable
        })?;
        key.verify(link, now)
    }

    /// Adds a key that signs every link from now on. Keys no link can still
    /// use (superseded more than `link_ttl` ago) are dropped, and with
    /// `retire` every older key at once (a key that leaked: its links stop
    /// working). Audited in the same transaction.
    pub async fn rotate(db: &Db, link_ttl: std::time::Duration, retire: bool, actor: &str) -> store::Result<Rotation> {
        let mut tx = db.writer().begin().await?;
        let before = list(&mut tx).await?;
        let now = crate::model::now_ms();
        let id = before.first().map_or(LEGACY_ID, |k| k.id + 1);
        sqlx::query("INSERT INTO link_keys (id, sealed, created_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(db.keys().seal(&hex::encode(rand::random::<[u8; 32]>())))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if store::is_unique_violation(&e) {
                    StoreError::Conflict("another rotation of the link key ran at the same time; try again".into())
                } else {
                    e.into()
                }
            })?;
        // A key's links were all signed before its successor came, and
        // each expires `link_ttl` after it was signed.
        let horizon = now - link_ttl.as_millis() as i64;
        let mut dropped = Vec::new();
        let mut successor_since = now;
        for key in &before {
            if retire || successor_since < horizon {
                sqlx::query("DELETE FROM link_keys WHERE id = $1").bind(key.id).execute(&mut *tx).await?;
                dropped.push(key.id);
            }
            successor_since = key.created_at;
        }
        let keys = list(&mut tx).await?;
        let ids = |keys: &[KeyInfo]| serde_json::json!({ "keys": keys.iter().map(|k| k.id).collect::<Vec<_>>() });
        let change = store::audit::Change {
            actor,
            action: if retire { "link_key.rotate_and_retire" } else { "link_key.rotate" },
            kind: "link key",
            name: &id.to_string(),
            before: Some(ids(&before)),
            after: Some(ids(&keys)),
        };
        store::audit::record(&mut tx, change).await?;
        tx.commit().await?;
        tracing::info!(key = id, dropped = ?dropped, actor, "link key rotated");
        Ok(Rotation { id, dropped, keys })
    }
}

/// The link keys, newest first.
async fn list(conn: &mut AnyConnection) -> store::Result<Vec<KeyInfo>> {
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT id, created_at FROM link_keys ORDER BY id DESC").fetch_all(conn).await?;
    Ok(rows.into_iter().map(|(id, created_at)| KeyInfo { id, created_at }).collect())
}

fn open_key(db: &Db, id: i64, sealed: &str) -> store::Result<LinkKey> {
    let text = db.keys().open(sealed).map_err(|e| StoreError::Secrets(format!("link key {id}"), e))?;
    let key = hex::decode(text).map_err(|e| StoreError::Corrupt(format!("link key {id}: {e}")))?;
    Ok(LinkKey::new(id, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_and_refuse_tampering_and_age() {
        let key = LinkKey::new(2, b"k".to_vec());
        let claim = Claim { notification: 7, action: Action::Accept, expires_at: 1000 };
        let link = key.sign(&claim);
        assert_eq!(key_of(&link), Ok(2));
        assert_eq!(key.verify(&link, 999), Ok(claim.clone()));
        assert_eq!(key.verify(&link, 1001), Err(LinkError::Expired));
        assert_eq!(LinkKey::new(2, b"other".to_vec()).verify(&link, 0), Err(LinkError::Forged));
        assert_eq!(LinkKey::new(3, b"k".to_vec()).verify(&link, 0), Err(LinkError::Forged), "the id is signed");
        let forged = key.sign(&Claim { action: Action::Reject, ..claim });
        let spliced = format!("{}.{}", forged.rsplit_once('.').unwrap().0, link.rsplit_once('.').unwrap().1);
        assert_eq!(key.verify(&spliced, 0), Err(LinkError::Forged));
        assert_eq!(key_of("nonsense"), Err(LinkError::Malformed));
        assert_eq!(key_of("x.y.z"), Err(LinkError::Malformed));
    }

    #[test]
    fn links_of_older_versions_are_key_one() {
        // The form versions before rotation sent: `<claim>.<tag>`, the tag
        // over the claim alone.
        let key = LinkKey::new(1, b"k".to_vec());
        let claim = Claim { notification: 7, action: Action::Accept, expires_at: 1000 };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claim).unwrap());
        let tag = URL_SAFE_NO_PAD.encode(key.mac(&payload).finalize().into_bytes());
        let old = format!("{payload}.{tag}");
        assert_eq!(key_of(&old), Ok(1));
        assert_eq!(key.verify(&old, 0), Ok(claim));
    }
}
