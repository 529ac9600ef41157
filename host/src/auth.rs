//! API tokens: `tcn_<id>_<secret>`, 256 bits of secret, found by their
//! public id.
//!
//! A secret that long cannot be guessed, so it needs no slow hash: it is
//! stored as HMAC-SHA-256 keyed by the token's id and checked in constant
//! time, which costs microseconds, so every request reads the token's row
//! and a revocation holds on every controller at once. Tokens made before
//! this scheme keep their argon2 hash (tens of milliseconds and 19 MiB a
//! check); a success is remembered for a second. Wrong secrets of real
//! token ids are counted per source address; a source with too many is
//! turned away (429) for a while unless its token is valid, and before any
//! argon2 hash is computed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::phc::PasswordHash;
use hmac::{Hmac, Mac};
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::model::{NewToken, Role, TokenInfo, now_ms};
use crate::store::{self, Db, StoreError};

const PREFIX: &str = "tcn_";
/// How the fast hashes are marked in the `hash` column.
const HMAC_SCHEME: &str = "hmac-sha256:";
/// How long an argon2 (older token) success is remembered.
const CACHE_TTL: Duration = Duration::from_secs(1);
/// Failed attempts a source may make within [`FAILURE_WINDOW`] before it is
/// turned away until the window has passed.
const MAX_FAILURES: u32 = 20;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Sources tracked at once; the oldest are forgotten beyond this.
const MAX_SOURCES: usize = 10_000;

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

    /// Viewer < editor < admin. The scoped roles stand apart: only a node
    /// token acts as a node, and a node token does nothing else; an alerts
    /// token only raises alerts; a watchdog token reads what a viewer reads
    /// and pulls its own levers. No ranked role holds a scoped one (routes
    /// that take both name both, in the role matrix).
    pub fn has(&self, wanted: Role) -> bool {
        match (self.role, wanted) {
            (Role::Watchdog, Role::Viewer) => true,
            (mine, wanted) if mine.is_scoped() || wanted.is_scoped() => mine == wanted,
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
    #[error("too many failed authentications from this address: try again in {0} s")]
    Throttled(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthError {
    /// The `reason` label of `tocsin_auth_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::Invalid => "invalid",
            AuthError::Throttled(_) => "throttled",
            AuthError::Store(_) => "unavailable",
        }
    }
}

#[derive(Default)]
pub struct Authenticator {
    /// Older (argon2) tokens verified in the last second, by the SHA-256
    /// of their text. (Revocation is read from the row on every request.)
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    /// Failed attempts per source: how many, since when.
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

fn random(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && secret.len() >= 32).then_some((id, secret))
}

/// The stored form of a token's secret.
fn fast_hash(id: &str, secret: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(format!("tocsin token {id}").as_bytes()).expect("HMAC takes keys of any length");
    mac.update(secret.as_bytes());
    format!("{HMAC_SCHEME}{}", hex::encode(mac.finalize().into_bytes()))
}

impl Authenticator {
    /// Checks a bearer token from `source` and says who it belongs to. A
    /// source that failed too often is turned away when its token is not a
    /// valid fast-hash one, before any argon2 hash is computed.
    pub async fn verify(&self, db: &Db, token: Option<&str>, source: Option<IpAddr>) -> Result<Caller, AuthError> {
        let wait = source.and_then(|ip| self.throttled(ip));
        let verified = self.check(db, token, wait.is_some()).await;
        match (verified, source) {
            (Err(AuthError::Invalid), _) if let Some(wait) = wait => Err(AuthError::Throttled(wait.as_secs().max(1))),
            (Err(AuthError::Invalid), Some(ip)) => {
                self.failed(ip);
                Err(AuthError::Invalid)
            }
            (verified, _) => verified,
        }
    }

    /// `throttled`: refuse rather than compute an argon2 hash.
    async fn check(&self, db: &Db, token: Option<&str>, throttled: bool) -> Result<Caller, AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        let (id, secret) = parse(token).ok_or(AuthError::Malformed)?;
        let (info, hash) = store::tokens::find(db, id).await?.ok_or(AuthError::Invalid)?;
        if info.revoked_at.is_some() {
            return Err(AuthError::Invalid);
        }
        let caller = Caller { token_id: info.id, name: info.name, role: info.role };
        if hash.starts_with(HMAC_SCHEME) {
            let matches: bool = fast_hash(id, secret).as_bytes().ct_eq(hash.as_bytes()).into();
            return if matches { Ok(caller) } else { Err(AuthError::Invalid) };
        }
        // An older token: argon2, remembered briefly.
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(at) = self.verified.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(caller);
        }
        if throttled {
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
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, at| at.elapsed() < CACHE_TTL);
        cache.insert(key, Instant::now());
        Ok(caller)
    }

    /// How long `source` must still wait, if it failed too often.
    fn throttled(&self, source: IpAddr) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (count, since) = failures.get(&source)?;
        let left = FAILURE_WINDOW.checked_sub(since.elapsed())?;
        (*count >= MAX_FAILURES).then_some(left)
    }

    fn failed(&self, source: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_SOURCES {
            failures.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        }
        if failures.len() >= MAX_SOURCES {
            return;
        }
        let entry = failures.entry(source).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
        if entry.0 == MAX_FAILURES {
            tracing::warn!(%source, failures = entry.0, window = ?FAILURE_WINDOW, "too many failed authentications: turning the source away");
        }
    }
}

/// Makes a new token: its secret text and what to store.
pub fn mint(name: &str, role: Role, created_by: &str) -> (NewToken, String) {
    let id = random(12).to_lowercase();
    let secret = random(43);
    let token = format!("{PREFIX}{id}_{secret}");
    let hash = fast_hash(&id, &secret);
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
    let (new, hash) = mint("admin", Role::Admin, "tocsin serve (first start)");
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
        for scoped in [Role::Alerts, Role::Watchdog] {
            assert!(caller(scoped).has(scoped));
            for other in [Role::Node, Role::Editor, Role::Admin] {
                assert!(!caller(scoped).has(other), "{scoped} must not act as {other}");
                assert!(!caller(other).has(scoped), "{other} must not act as {scoped}");
            }
        }
        assert!(caller(Role::Watchdog).has(Role::Viewer) && !caller(Role::Alerts).has(Role::Viewer));
        assert!(caller(Role::Admin).has(Role::Editor) && caller(Role::Editor).has(Role::Viewer));
        assert!(!caller(Role::Viewer).has(Role::Editor) && !caller(Role::Editor).has(Role::Admin));
    }
}
