//! The start-up pass over stored secrets: every controller runs it before
//! it serves, so what is stored is sealed under the current secrets key.
//!
//! It opens every sealed secret (a controller given the wrong key stops
//! here, naming the object and the key it needs, having changed nothing),
//! seals what an older version stored in clear or under an older key
//! (each row by a conditional update, so two controllers starting at once
//! do not fight), moves an older version's link key into `link_keys`, and
//! drops the feed entries written before sealing, which hold secrets in
//! clear (a follower that had not read them recovers from a snapshot).

use serde_json::Value;

use super::{Db, Result, StoreError};
use crate::secrets::Keyring;

/// The meta row that says the feed holds no secret in clear.
const FEED_SEALED: &str = "feed_sealed";

/// What the pass did, for the start-up log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Checks and gateways whose secrets were sealed (again).
    pub sealed: usize,
    /// Link keys moved from an older version or sealed again.
    pub link_keys: usize,
    /// Feed entries dropped because they held secrets in clear.
    pub feed_dropped: usize,
}

/// The tables whose rows hold a plugin config, and where in the row:
/// `(table, column, key)` with `key` the field of the column's JSON that
/// is the config (`None`: the column is the config).
const CONFIGS: &[(&str, &str, Option<&str>)] = &[("checks", "config", None), ("gateways", "spec", Some("config"))];

/// The plugin config a feed entry or snapshot object carries, if its kind
/// has one (a check's `config` column, a gateway's `spec.config`), parsed.
pub fn config_in(kind: &str, body: &Value) -> Option<Value> {
    let (column, key) = match kind {
        "check" => ("config", None),
        "gateway" => ("spec", Some("config")),
        _ => return None,
    };
    config_of(body.get(column)?.as_str()?, key)
}

/// Fails unless every sealed secret in `body` (a `kind` object as the feed
/// carries it) opens with this site's keys: what a backup site checks
/// before it stores what its source sent, so a wrong key is a clear error
/// and not a store of values nobody here can open.
pub fn check_opens(keys: &Keyring, kind: &str, name: &str, body: Option<&Value>) -> Result<()> {
    match body.and_then(|b| config_in(kind, b)) {
        Some(config) => keys.check_opens(&config).map_err(|e| StoreError::Secrets(format!("{kind} {name}"), e)),
        None => Ok(()),
    }
}

fn config_of(text: &str, key: Option<&str>) -> Option<Value> {
    let column: Value = serde_json::from_str(text).ok()?;
    match key {
        Some(key) => column.get(key).cloned(),
        None => Some(column),
    }
}

/// The pass; an error means this controller must not run.
pub async fn run(db: &Db) -> Result<Report> {
    let keys = db.keys();
    let mut report = Report::default();
    for (table, column, key) in CONFIGS {
        let sql = format!("SELECT name, {column} FROM {table} ORDER BY name");
        let rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(db.reader()).await?;
        for (name, text) in rows {
            let Some(config) = config_of(&text, *key) else { continue };
            let what = || format!("{} {name}", table.trim_end_matches('s'));
            let clear = keys.open_config(&config).map_err(|e| StoreError::Secrets(what(), e))?;
            if !keys.needs_reseal(&config).map_err(|e| StoreError::Secrets(what(), e))? {
                continue;
            }
            let sealed = keys.seal_config(&clear);
            let new = match key {
                Some(key) => {
                    let mut column: Value = serde_json::from_str(&text).expect("parsed above");
                    column[*key] = sealed;
                    column.to_string()
                }
                None => sealed.to_string(),
            };
            let sql = format!("UPDATE {table} SET {column} = $1 WHERE name = $2 AND {column} = $3");
            let updated =
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&new).bind(&name).bind(&text).execute(db.writer()).await?;
            report.sealed += updated.rows_affected() as usize;
        }
    }
    report.link_keys = link_keys(db, keys).await?;
    report.feed_dropped = clear_feed(db).await?;
    Ok(report)
}

/// Moves an older version's clear link key (meta `link_key`) into
/// `link_keys` as key 1, sealed, and seals again a key under an older
/// secrets key.
async fn link_keys(db: &Db, keys: &Keyring) -> Result<usize> {
    let mut moved = 0;
    let mut tx = db.writer().begin().await?;
    let legacy: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
        .bind(crate::alerting::links::LEGACY_KEY)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(legacy) = legacy {
        let any: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM link_keys").fetch_one(&mut *tx).await?;
        if any == 0 {
            sqlx::query("INSERT INTO link_keys (id, sealed, created_at) VALUES (1, $1, $2)")
                .bind(keys.seal(legacy.trim()))
                .bind(crate::model::now_ms())
                .execute(&mut *tx)
                .await?;
            moved += 1;
        }
        sqlx::query("DELETE FROM meta WHERE key = $1")
            .bind(crate::alerting::links::LEGACY_KEY)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT id, sealed FROM link_keys").fetch_all(db.reader()).await?;
    for (id, sealed) in rows {
        let what = || format!("link key {id}");
        let clear = keys.open(&sealed).map_err(|e| StoreError::Secrets(what(), e))?;
        if sealed.starts_with(&format!("{}{}:", crate::secrets::PREFIX, keys.current())) {
            continue;
        }
        let updated = sqlx::query("UPDATE link_keys SET sealed = $1 WHERE id = $2 AND sealed = $3")
            .bind(keys.seal(&clear))
            .bind(id)
            .bind(&sealed)
            .execute(db.writer())
            .await?;
        moved += updated.rows_affected() as usize;
    }
    Ok(moved)
}

/// Drops the feed entries up to the newest one that holds a secret in
/// clear (entries are kept contiguous: a site holds its feed from some
/// seq on). Entries sealed under any key stay. Once done, every entry is
/// written sealed, so later starts skip it.
async fn clear_feed(db: &Db) -> Result<usize> {
    if db.meta(FEED_SEALED).await?.is_some() {
        return Ok(0);
    }
    let rows: Vec<(i64, String, String, Option<String>)> = sqlx::query_as(
        "SELECT seq, kind, name, body FROM changes WHERE kind IN ('check', 'gateway') ORDER BY seq DESC",
    )
    .fetch_all(db.reader())
    .await?;
    let newest_clear = rows.into_iter().find_map(|(seq, kind, _name, body)| {
        let body: Value = serde_json::from_str(body.as_deref()?).ok()?;
        let config = config_in(&kind, &body)?;
        Keyring::holds_clear_secret(&config).then_some(seq)
    });
    let dropped = match newest_clear {
        Some(seq) => sqlx::query("DELETE FROM changes WHERE seq <= $1").bind(seq).execute(db.writer()).await?,
        None => Default::default(),
    };
    db.set_meta(FEED_SEALED, &crate::model::now_ms().to_string()).await?;
    Ok(dropped.rows_affected() as usize)
}
