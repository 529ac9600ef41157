//! API tokens: `tcn_<id>_<secret>`, 256 bits of secret, stored as an argon2
//! hash and found by their public id.
//!
//! Argon2 is slow by design (tens of milliseconds), so a verified token is
//! remembered for a minute under the SHA-256 of its full text. Revoking a
//! token forgets it at once on this controller; other controllers forget it
//! within that minute.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};

use crate::model::{NewToken, Role, TokenInfo, now_ms};
use crate::store::{self, Db, StoreError};

const PREFIX: &str = "tcn_";
const CACHE_TTL: Duration = Duration::from_secs(60);

/// Who is calling: the token's id, name and role.
#[derive(Clone, Debug)]
pub struct Caller {
    pub token_id: String,
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// How the audit trail names this caller.
    pub fn actor(&self) -> String {
        format!("{} ({})", self.name, self.token_id)
    }

    /// Viewer < editor < admin; the node role stands apart from them: only
    /// a node token acts as a node, and a node token does nothing else.
    pub fn has(&self, wanted: Role) -> bool {
        match (self.role, wanted) {
            (Role::Node, _) | (_, Role::Node) => self.role == wanted,
            (mine, wanted) => mine >= wanted,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no token: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("the token is malformed: Tocsin tokens look like tcn_<id>_<secret>")]
    Malformed,
    #[error("the token is unknown or revoked")]
    Invalid,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Default)]
pub struct Authenticator {
    verified: Mutex<HashMap<[u8; 32], (Caller, Instant)>>,
}

fn random(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && secret.len() >= 32).then_some((id, secret))
}

impl Authenticator {
    /// Checks a bearer token and says who it belongs to.
    pub async fn verify(&self, db: &Db, token: Option<&str>) -> Result<Caller, AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        let (id, secret) = parse(token).ok_or(AuthError::Malformed)?;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((caller, at)) = self.verified.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(caller.clone());
        }
        let (info, hash) = store::tokens::find(db, id).await?.ok_or(AuthError::Invalid)?;
        if info.revoked_at.is_some() {
            return Err(AuthError::Invalid);
        }
        let secret = secret.to_string();
        let matches = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|h| Argon2::default().verify_password(secret.as_bytes(), &h).is_ok())
        })
        .await
        .unwrap_or(false);
        if !matches {
            return Err(AuthError::Invalid);
        }
        let caller = Caller { token_id: info.id, name: info.name, role: info.role };
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
        cache.insert(key, (caller.clone(), Instant::now()));
        Ok(caller)
    }

    /// Forgets any verification of token `id` (after revoking it).
    pub fn forget(&self, id: &str) {
        self.verified.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, (caller, _)| caller.token_id != id);
    }
}

/// Makes a new token: its secret text and what to store.
pub async fn mint(name: &str, role: Role, created_by: &str) -> (NewToken, String) {
    let id = random(12).to_lowercase();
    let secret = random(43);
    let token = format!("{PREFIX}{id}_{secret}");
    let hash = tokio::task::spawn_blocking(move || {
        Argon2::default().hash_password(secret.as_bytes()).expect("argon2 with default parameters hashes").to_string()
    })
    .await
    .expect("hashing does not panic");
    let info = TokenInfo {
        id,
        name: name.to_string(),
        role,
        created_at: now_ms(),
        created_by: created_by.to_string(),
        revoked_at: None,
    };
    (NewToken { token, info }, hash)
}

/// On a database with no tokens at all, creates the first admin token and
/// returns its text (to be printed once).
pub async fn first_admin(db: &Db) -> Result<Option<String>, StoreError> {
    if store::tokens::count(db).await? > 0 {
        return Ok(None);
    }
    let (new, hash) = mint("admin", Role::Admin, "tocsin serve (first start)").await;
    let mut tx = db.writer().begin().await?;
    // Another controller may have made one meanwhile.
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tokens").fetch_one(&mut *tx).await?;
    if count > 0 {
        return Ok(None);
    }
    store::tokens::create(&mut tx, &new.info, &hash).await?;
    tx.commit().await?;
    Ok(Some(new.token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shape() {
        assert_eq!(
            parse("tcn_abcdefghijkl_0123456789012345678901234567890123456789012"),
            Some(("abcdefghijkl", "0123456789012345678901234567890123456789012"))
        );
        assert_eq!(parse("tcn_short_x"), None);
        assert_eq!(parse("Bearer whatever"), None);
    }

    #[test]
    fn only_a_node_token_acts_as_a_node() {
        let caller = |role| Caller { token_id: "t".into(), name: "t".into(), role };
        for role in [Role::Viewer, Role::Editor, Role::Admin] {
            assert!(!caller(role).has(Role::Node), "{role} must not act as a node");
            assert!(!caller(Role::Node).has(role), "a node token must not act as {role}");
        }
        assert!(caller(Role::Node).has(Role::Node));
        assert!(caller(Role::Admin).has(Role::Editor) && caller(Role::Editor).has(Role::Viewer));
        assert!(!caller(Role::Viewer).has(Role::Editor) && !caller(Role::Editor).has(Role::Admin));
    }
}
