//! The audit trail: who changed what, from what to what, and when. Entries
//! are written inside the transaction of the change they describe, and
//! their sequence numbers order the configuration change feed.

use serde::Serialize;
use sqlx::AnyConnection;

use super::{Db, Result};
use crate::model::{AuditEntry, now_ms};

/// A change about to be recorded.
pub struct Change<'a> {
    pub actor: &'a str,
    /// `check.create`, `plugin.delete`, ...
    pub action: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// The JSON of an object for an audit entry, its config's secrets hidden:
/// the trail shows that a secret changed, never what it is.
pub fn snapshot<T: Serialize>(value: &T) -> Option<serde_json::Value> {
    let mut value = serde_json::to_value(value).ok()?;
    crate::redact::hide_in(&mut value);
    Some(value)
}

/// Writes the audit entry and, for configuration, the change feed's entry
/// (which refuses the change on a passive site).
pub async fn record(conn: &mut AnyConnection, change: Change<'_>) -> Result<()> {
    let (actor, action, kind, name) = (change.actor, change.action, change.kind, change.name);
    insert(conn, change).await?;
    if let Some(table) = crate::sync::entities::Table::for_audit(kind) {
        crate::sync::feed::capture(conn, table, name, actor, action).await?;
    }
    Ok(())
}

/// Writes the audit entry alone (a follower applying its source's change).
pub async fn insert(conn: &mut AnyConnection, change: Change<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit (at, actor, action, object_kind, object_name, before, after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(now_ms())
    .bind(change.actor)
    .bind(change.action)
    .bind(change.kind)
    .bind(change.name)
    .bind(change.before.map(|v| v.to_string()))
    .bind(change.after.map(|v| v.to_string()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Row {
    seq: i64,
    at: i64,
    actor: String,
    action: String,
    object_kind: String,
    object_name: String,
    before: Option<String>,
    after: Option<String>,
}

impl Row {
    fn into_entry(self) -> AuditEntry {
        let parse = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
        AuditEntry {
            seq: self.seq,
            at: self.at,
            actor: self.actor,
            action: self.action,
            object_kind: self.object_kind,
            object_name: self.object_name,
            before: parse(self.before),
            after: parse(self.after),
        }
    }
}

/// Entries after `after_seq`, oldest first: the change feed.
pub async fn list(db: &Db, after_seq: i64, limit: i64) -> Result<Vec<AuditEntry>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, at, actor, action, object_kind, object_name, before, after \
         FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after_seq)
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    Ok(rows.into_iter().map(Row::into_entry).collect())
}

/// The newest entries before `before_seq` (or the very newest), newest first.
pub async fn recent(db: &Db, before_seq: Option<i64>, limit: i64) -> Result<Vec<AuditEntry>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, at, actor, action, object_kind, object_name, before, after \
         FROM audit WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
    )
    .bind(before_seq.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    Ok(rows.into_iter().map(Row::into_entry).collect())
}
