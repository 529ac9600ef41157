//! Uploaded plugins: immutable once stored, addressed by name and version,
//! their bytes kept for nodes and restarts. Built-in plugins are not here:
//! they ship inside the binary (see `catalog`).

use sqlx::AnyConnection;

use super::audit::{self, Change};
use super::{Db, Result, StoreError, is_unique_violation};
use crate::model::{PluginRecord, now_ms};

#[derive(sqlx::FromRow)]
struct Row {
    name: String,
    version: String,
    kind: String,
    sha256: String,
    description: String,
    config_schema: String,
    size: i64,
    created_at: i64,
}

impl Row {
    fn into_record(self) -> PluginRecord {
        PluginRecord {
            config_schema: serde_json::from_str(&self.config_schema).unwrap_or(serde_json::Value::Null),
            name: self.name,
            version: self.version,
            kind: self.kind,
            sha256: self.sha256,
            description: self.description,
            size: self.size,
            builtin: false,
            created_at: Some(self.created_at),
        }
    }
}

const COLUMNS: &str = "name, version, kind, sha256, description, config_schema, size, created_at";

/// Stores a plugin. The same name and version again is fine with the same
/// bytes (returns `false`: nothing new) and a conflict with other bytes.
pub async fn insert(conn: &mut AnyConnection, record: &PluginRecord, wasm: &[u8], actor: &str) -> Result<bool> {
    let existing: Option<String> = sqlx::query_scalar("SELECT sha256 FROM plugins WHERE name = $1 AND version = $2")
        .bind(&record.name)
        .bind(&record.version)
        .fetch_optional(&mut *conn)
        .await?;
    match existing {
        Some(sha) if sha == record.sha256 => return Ok(false),
        Some(sha) => {
            return Err(StoreError::Conflict(format!(
                "plugin {}@{} already exists with other bytes (sha256 {sha}); plugins are immutable, so publish a new version",
                record.name, record.version
            )));
        }
        None => {}
    }
    let inserted = sqlx::query(
        "INSERT INTO plugins (name, version, kind, sha256, description, config_schema, size, wasm, created_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&record.name)
    .bind(&record.version)
    .bind(&record.kind)
    .bind(&record.sha256)
    .bind(&record.description)
    .bind(record.config_schema.to_string())
    .bind(wasm.len() as i64)
    .bind(wasm.to_vec())
    .bind(now_ms())
    .bind(actor)
    .execute(&mut *conn)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::Conflict(format!(
                "plugin {}@{} was stored concurrently",
                record.name, record.version
            )));
        }
        other => other?,
    };
    audit::record(
        conn,
        Change {
            actor,
            action: "plugin.create",
            kind: "plugin",
            name: &format!("{}@{}", record.name, record.version),
            before: None,
            after: audit::snapshot(&serde_json::json!({
                "name": record.name, "version": record.version, "kind": record.kind, "sha256": record.sha256
            })),
        },
    )
    .await?;
    Ok(true)
}

pub async fn list(db: &Db) -> Result<Vec<PluginRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM plugins ORDER BY name, created_at");
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(db.reader()).await?;
    Ok(rows.into_iter().map(Row::into_record).collect())
}

pub async fn get(db: &Db, name: &str, version: &str) -> Result<PluginRecord> {
    let sql = format!("SELECT {COLUMNS} FROM plugins WHERE name = $1 AND version = $2");
    let row: Option<Row> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(name).bind(version).fetch_optional(db.reader()).await?;
    row.map(Row::into_record).ok_or_else(|| StoreError::NotFound(format!("plugin {name}@{version}")))
}

pub async fn versions(db: &Db, name: &str) -> Result<Vec<PluginRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM plugins WHERE name = $1");
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(name).fetch_all(db.reader()).await?;
    Ok(rows.into_iter().map(Row::into_record).collect())
}

pub async fn wasm(db: &Db, name: &str, version: &str) -> Result<Vec<u8>> {
    let bytes: Option<Vec<u8>> = sqlx::query_scalar("SELECT wasm FROM plugins WHERE name = $1 AND version = $2")
        .bind(name)
        .bind(version)
        .fetch_optional(db.reader())
        .await?;
    bytes.ok_or_else(|| StoreError::NotFound(format!("plugin {name}@{version}")))
}

/// Deletes a plugin version that no check uses.
/// The bytes of the plugin with this sha256, for nodes.
pub async fn wasm_by_sha(db: &Db, sha256: &str) -> Result<Vec<u8>> {
    let bytes: Option<Vec<u8>> = sqlx::query_scalar("SELECT wasm FROM plugins WHERE sha256 = $1 LIMIT 1")
        .bind(sha256)
        .fetch_optional(db.reader())
        .await?;
    bytes.ok_or_else(|| StoreError::NotFound(format!("plugin with sha256 {sha256}")))
}

pub async fn delete(conn: &mut AnyConnection, name: &str, version: &str, actor: &str) -> Result<()> {
    let users: Vec<String> =
        sqlx::query_scalar("SELECT name FROM checks WHERE plugin = $1 AND plugin_version = $2 ORDER BY name LIMIT 6")
            .bind(name)
            .bind(version)
            .fetch_all(&mut *conn)
            .await?;
    if !users.is_empty() {
        let more = if users.len() > 5 { ", ..." } else { "" };
        return Err(StoreError::Conflict(format!(
            "plugin {name}@{version} is used by checks {}{more}; delete or move them first",
            users[..users.len().min(5)].join(", ")
        )));
    }
    let sql = format!("SELECT {COLUMNS} FROM plugins WHERE name = $1 AND version = $2");
    let row: Option<Row> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(name).bind(version).fetch_optional(&mut *conn).await?;
    let record = row.map(Row::into_record).ok_or_else(|| StoreError::NotFound(format!("plugin {name}@{version}")))?;
    sqlx::query("DELETE FROM plugins WHERE name = $1 AND version = $2")
        .bind(name)
        .bind(version)
        .execute(&mut *conn)
        .await?;
    let id = format!("{name}@{version}");
    audit::record(
        conn,
        Change {
            actor,
            action: "plugin.delete",
            kind: "plugin",
            name: &id,
            before: audit::snapshot(&serde_json::json!({
                "name": record.name, "version": record.version, "kind": record.kind, "sha256": record.sha256
            })),
            after: None,
        },
    )
    .await
}
