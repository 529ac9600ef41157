//! API tokens: stored as argon2 hashes, looked up by their public id.

use sqlx::AnyConnection;

use super::audit::{self, Change};
use super::{Db, Result, StoreError};
use crate::model::{Role, TokenInfo, now_ms};

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    name: String,
    role: String,
    hash: String,
    created_at: i64,
    created_by: String,
    revoked_at: Option<i64>,
}

impl Row {
    fn split(self) -> Result<(TokenInfo, String)> {
        let role = Role::parse(&self.role)
            .ok_or_else(|| StoreError::Corrupt(format!("token {}: role {:?}", self.id, self.role)))?;
        Ok((
            TokenInfo {
                id: self.id,
                name: self.name,
                role,
                created_at: self.created_at,
                created_by: self.created_by,
                revoked_at: self.revoked_at,
            },
            self.hash,
        ))
    }
}

pub async fn create(conn: &mut AnyConnection, info: &TokenInfo, hash: &str) -> Result<()> {
    sqlx::query("INSERT INTO tokens (id, name, role, hash, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&info.id)
        .bind(&info.name)
        .bind(info.role.as_str())
        .bind(hash)
        .bind(info.created_at)
        .bind(&info.created_by)
        .execute(&mut *conn)
        .await?;
    audit::record(
        conn,
        Change {
            actor: &info.created_by,
            action: "token.create",
            kind: "token",
            name: &info.id,
            before: None,
            after: audit::snapshot(info),
        },
    )
    .await
}

/// The token with public id `id` and its hash.
pub async fn find(db: &Db, id: &str) -> Result<Option<(TokenInfo, String)>> {
    let row: Option<Row> =
        sqlx::query_as("SELECT id, name, role, hash, created_at, created_by, revoked_at FROM tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(db.reader())
            .await?;
    row.map(Row::split).transpose()
}

pub async fn list(db: &Db) -> Result<Vec<TokenInfo>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, name, role, hash, created_at, created_by, revoked_at FROM tokens ORDER BY created_at",
    )
    .fetch_all(db.reader())
    .await?;
    rows.into_iter().map(|r| r.split().map(|(info, _)| info)).collect()
}

pub async fn count(db: &Db) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM tokens").fetch_one(db.reader()).await?)
}

pub async fn revoke(conn: &mut AnyConnection, id: &str, actor: &str) -> Result<TokenInfo> {
    let row: Option<Row> =
        sqlx::query_as("SELECT id, name, role, hash, created_at, created_by, revoked_at FROM tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    let (before, _) = row.ok_or_else(|| StoreError::NotFound(format!("token {id:?}")))?.split()?;
    if before.revoked_at.is_some() {
        return Ok(before);
    }
    let now = now_ms();
    sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2").bind(now).bind(id).execute(&mut *conn).await?;
    let after = TokenInfo { revoked_at: Some(now), ..before.clone() };
    audit::record(
        conn,
        Change {
            actor,
            action: "token.revoke",
            kind: "token",
            name: id,
            before: audit::snapshot(&before),
            after: audit::snapshot(&after),
        },
    )
    .await?;
    Ok(after)
}
