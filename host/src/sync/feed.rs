//! The change feed: every configuration change as an entry with a sequence
//! number, written in the change's own transaction.
//!
//! Sequence numbers come from the `site` row (`head + 1`), not from an
//! identity column: the row stays locked until the change commits, so
//! entries are numbered in commit order with no gaps, and a follower that
//! has read up to `n` has missed nothing below it. The same update refuses
//! the change when the site is passive, which is what keeps a backup site
//! from taking changes of its own.
//!
//! Each entry also carries its link in a hash chain over the whole feed
//! ([`link`]). A position is (seq, chain): two sites that took changes on
//! their own never share one, even at the same seq and epoch, so a reader
//! that diverged is always told.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::entities::Table;
use crate::model::now_ms;
use crate::store::{Db, Result, StoreError};

/// One configuration change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Entry {
    pub seq: i64,
    /// The site epoch it was written in.
    pub epoch: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub actor: String,
    /// `check.create`, `token.revoke`, ...
    pub action: String,
    /// `check`, `token`, `plugin`, `contact`, ...
    pub kind: String,
    pub name: String,
    /// The object after the change; none when it was deleted.
    #[schema(value_type = Option<Object>)]
    pub body: Option<Value>,
    /// sha256 (hex) over the previous entry's chain and this entry.
    pub chain: String,
}

/// The chain link of an entry that follows `previous` (empty for the first).
pub fn link(previous: &str, entry: &Entry) -> String {
    let body = entry.body.as_ref().map(Value::to_string).unwrap_or_default();
    let mut hash = Sha256::new();
    for part in [
        previous,
        &entry.seq.to_string(),
        &entry.epoch.to_string(),
        &entry.at.to_string(),
        &entry.actor,
        &entry.action,
        &entry.kind,
        &entry.name,
        &body,
    ] {
        hash.update(part.len().to_le_bytes());
        hash.update(part.as_bytes());
    }
    hex::encode(hash.finalize())
}

/// Records the change just made to object `name` of `table`, inside its
/// transaction. Fails with [`StoreError::Passive`] on a passive site.
pub async fn capture(conn: &mut AnyConnection, table: &Table, name: &str, actor: &str, action: &str) -> Result<()> {
    let body = table.export(conn, name).await?;
    let position: Option<(i64, i64, String)> = sqlx::query_as(
        "UPDATE site SET head = head + 1, head_epoch = epoch WHERE id = 1 AND role = 'active' \
         RETURNING head, epoch, head_chain",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some((seq, epoch, previous)) = position else {
        let source: Option<String> =
            sqlx::query_scalar("SELECT source FROM site WHERE id = 1").fetch_optional(&mut *conn).await?.flatten();
        return Err(StoreError::Passive(match source {
            Some(url) => format!("this site is passive: it follows {url}; make changes on the active site"),
            None => "this site is passive; make changes on the active site (or promote this one)".into(),
        }));
    };
    let mut entry = Entry {
        seq,
        epoch,
        at: now_ms(),
        actor: actor.to_string(),
        action: action.to_string(),
        kind: table.kind.to_string(),
        name: name.to_string(),
        body,
        chain: String::new(),
    };
    entry.chain = link(&previous, &entry);
    sqlx::query("UPDATE site SET head_chain = $1 WHERE id = 1").bind(&entry.chain).execute(&mut *conn).await?;
    insert(conn, &entry).await
}

/// Writes `entry` as it is (a follower keeps its source's numbering).
pub async fn insert(conn: &mut AnyConnection, entry: &Entry) -> Result<()> {
    sqlx::query(
        "INSERT INTO changes (seq, epoch, at, actor, action, kind, name, body, chain) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(entry.seq)
    .bind(entry.epoch)
    .bind(entry.at)
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(&entry.kind)
    .bind(&entry.name)
    .bind(entry.body.as_ref().map(Value::to_string))
    .bind(&entry.chain)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Row {
    seq: i64,
    epoch: i64,
    at: i64,
    actor: String,
    action: String,
    kind: String,
    name: String,
    body: Option<String>,
    chain: String,
}

impl Row {
    fn into_entry(self) -> Result<Entry> {
        let body =
            match self.body {
                Some(text) => Some(serde_json::from_str(&text).map_err(|e| {
                    StoreError::Corrupt(format!("change {} ({} {}): {e}", self.seq, self.kind, self.name))
                })?),
                None => None,
            };
        Ok(Entry {
            seq: self.seq,
            epoch: self.epoch,
            at: self.at,
            actor: self.actor,
            action: self.action,
            kind: self.kind,
            name: self.name,
            body,
            chain: self.chain,
        })
    }
}

/// Entries after `after`, oldest first.
pub async fn page(db: &Db, after: i64, limit: i64) -> Result<Vec<Entry>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, epoch, at, actor, action, kind, name, body, chain FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    rows.into_iter().map(Row::into_entry).collect()
}

/// The chain link of entry `seq`, if this site has it.
pub async fn chain_of(db: &Db, seq: i64) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT chain FROM changes WHERE seq = $1").bind(seq).fetch_optional(db.reader()).await?)
}

/// The oldest entry this site holds (a recovered site holds none before
/// the point it recovered to).
pub async fn first_seq(db: &Db) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT MIN(seq) FROM changes").fetch_one(db.reader()).await?)
}

/// Feeds every object that exists into the feed once, so a database from
/// before the feed existed can be followed from the start.
pub async fn baseline(db: &Db) -> Result<usize> {
    if db.meta("feed_baseline").await?.is_some() {
        return Ok(0);
    }
    let mut tx = db.writer().begin().await?;
    // Claimed first: a second controller starting at the same moment waits
    // here for the first to commit, then finds the claim taken.
    let claimed = sqlx::query("INSERT INTO meta (key, value) VALUES ('feed_baseline', $1)")
        .bind(now_ms().to_string())
        .execute(&mut *tx)
        .await;
    match claimed {
        Err(e) if crate::store::is_unique_violation(&e) => return Ok(0),
        other => other?,
    };
    let mut count = 0;
    let role: String = sqlx::query_scalar("SELECT role FROM site WHERE id = 1").fetch_one(&mut *tx).await?;
    let empty: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM changes").fetch_one(&mut *tx).await?;
    if role == "active" && empty == 0 {
        for table in super::entities::TABLES {
            for (name, _) in table.export_all(&mut tx).await? {
                capture(&mut tx, table, &name, "tocsin (baseline)", "baseline").await?;
                count += 1;
            }
        }
    }
    tx.commit().await?;
    Ok(count)
}
