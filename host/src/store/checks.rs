//! Checks: their definitions and current state.

use std::time::Duration;

use sqlx::AnyConnection;

use super::audit::{self, Change};
use super::{Col, Db, Dialect, Result, StoreError, is_unique_violation, join_list, split_list};
use crate::model::{Check, CheckSpec, CheckStatus, Millis, now_ms};
use crate::secrets::Keyring;

const COLUMNS: &str = "id, name, description, plugin, plugin_version, target, config, interval_ms, timeout_ms, \
                       locations, tags, allow, paused, confirm, policy, status, status_since, last_run_at, \
                       last_message, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    name: String,
    description: String,
    plugin: String,
    plugin_version: Option<String>,
    target: String,
    config: String,
    interval_ms: i64,
    timeout_ms: i64,
    locations: String,
    tags: String,
    allow: String,
    paused: i64,
    confirm: i64,
    policy: Option<String>,
    status: String,
    status_since: i64,
    last_run_at: Option<i64>,
    last_message: String,
    created_at: i64,
    updated_at: i64,
}

impl Row {
    /// The check with its config's secrets opened.
    fn into_check(self, keys: &Keyring) -> Result<Check> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("check {}: {what}", self.name));
        let sealed = serde_json::from_str(&self.config).map_err(|e| corrupt(&format!("config: {e}")))?;
        let config = keys.open_config(&sealed).map_err(|e| StoreError::Secrets(format!("check {}", self.name), e))?;
        let status = CheckStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?;
        let plugin = match &self.plugin_version {
            Some(v) => format!("{}@{v}", self.plugin),
            None => self.plugin.clone(),
        };
        Ok(Check {
            id: self.id,
            spec: CheckSpec {
                name: self.name,
                description: self.description,
                plugin,
                target: self.target,
                config,
                interval: Duration::from_millis(self.interval_ms as u64),
                timeout: Duration::from_millis(self.timeout_ms as u64),
                locations: split_list(&self.locations),
                tags: split_list(&self.tags),
                allow: split_list(&self.allow),
                paused: self.paused != 0,
                confirm: self.confirm as u32,
                policy: self.policy,
            },
            status,
            status_since: self.status_since,
            last_run_at: self.last_run_at,
            last_message: self.last_message,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// `http@1.0.0` -> (`http`, Some(`1.0.0`)).
pub fn split_plugin(plugin: &str) -> (&str, Option<&str>) {
    match plugin.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (plugin, None),
    }
}

pub async fn get(db: &Db, name: &str) -> Result<Check> {
    get_in(&mut *db.reader().acquire().await?, db.keys(), name).await
}

async fn get_in(conn: &mut AnyConnection, keys: &Keyring, name: &str) -> Result<Check> {
    let sql = format!("SELECT {COLUMNS} FROM checks WHERE name = $1");
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(conn).await?;
    row.ok_or_else(|| StoreError::NotFound(format!("check {name:?}")))?.into_check(keys)
}

/// Filters for [`list`]; `None` means any.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub status: Option<CheckStatus>,
    pub plugin: Option<String>,
    pub location: Option<String>,
    pub tag: Option<String>,
    /// Only checks named after this (pagination).
    pub after: Option<String>,
    pub limit: Option<i64>,
}

pub async fn list(db: &Db, filter: &Filter) -> Result<Vec<Check>> {
    let mut sql = format!("SELECT {COLUMNS} FROM checks WHERE 1 = 1");
    let mut binds: Vec<String> = Vec::new();
    let mut bind = |sql: &mut String, clause: &str, value: String| {
        binds.push(value);
        sql.push_str(&clause.replace('?', &format!("${}", binds.len())));
    };
    if let Some(status) = filter.status {
        bind(&mut sql, " AND status = ?", status.as_str().to_string());
    }
    if let Some(plugin) = &filter.plugin {
        bind(&mut sql, " AND plugin = ?", plugin.clone());
    }
    if let Some(location) = &filter.location {
        bind(&mut sql, " AND locations LIKE ?", format!("%,{location},%"));
    }
    if let Some(tag) = &filter.tag {
        bind(&mut sql, " AND tags LIKE ?", format!("%,{tag},%"));
    }
    if let Some(after) = &filter.after {
        bind(&mut sql, " AND name > ?", after.clone());
    }
    sql.push_str(" ORDER BY name");
    if let Some(limit) = filter.limit {
        sql.push_str(&format!(" LIMIT {}", limit.max(0)));
    }
    let mut query = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql));
    for value in binds {
        query = query.bind(value);
    }
    query.fetch_all(db.reader()).await?.into_iter().map(|r| r.into_check(db.keys())).collect()
}

/// Every check that is not paused, for scheduling.
pub async fn active(db: &Db) -> Result<Vec<Check>> {
    let sql = format!("SELECT {COLUMNS} FROM checks WHERE paused = 0 ORDER BY id");
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(db.reader()).await?;
    rows.into_iter().map(|r| r.into_check(db.keys())).collect()
}

pub async fn count(db: &Db) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM checks").fetch_one(db.reader()).await?)
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds a spec's fourteen columns as `$1` to `$14`, in the order of
/// `create` and `update`; the config's secrets sealed.
fn bind_spec<'q>(query: AnyQuery<'q>, spec: &'q CheckSpec, keys: &Keyring) -> AnyQuery<'q> {
    let (plugin, version) = split_plugin(&spec.plugin);
    query
        .bind(&spec.name)
        .bind(&spec.description)
        .bind(plugin)
        .bind(version)
        .bind(&spec.target)
        .bind(keys.seal_config(&spec.config).to_string())
        .bind(spec.interval.as_millis() as i64)
        .bind(spec.timeout.as_millis() as i64)
        .bind(join_list(&spec.locations))
        .bind(join_list(&spec.tags))
        .bind(join_list(&spec.allow))
        .bind(spec.paused as i64)
        .bind(spec.confirm as i64)
        .bind(&spec.policy)
}

/// Creates a check whose spec the caller has validated.
pub async fn create(conn: &mut AnyConnection, keys: &Keyring, spec: &CheckSpec, actor: &str) -> Result<Check> {
    let now = now_ms();
    let inserted = bind_spec(
        sqlx::query(
            "INSERT INTO checks (name, description, plugin, plugin_version, target, config, interval_ms, timeout_ms, \
         locations, tags, allow, paused, confirm, policy, status, status_since, last_message, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'pending', $15, '', $15, $15)",
        ),
        spec,
        keys,
    )
    .bind(now)
    .execute(&mut *conn)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::Conflict(format!("a check named {:?} already exists", spec.name)));
        }
        other => other?,
    };
    let check = get_in(conn, keys, &spec.name).await?;
    audit::record(
        conn,
        Change {
            actor,
            action: "check.create",
            kind: "check",
            name: &spec.name,
            before: None,
            after: audit::snapshot(&check.spec),
        },
    )
    .await?;
    audit_non_public_grants(conn, actor, &spec.name, &[], &spec.allow).await?;
    Ok(check)
}

/// Replaces the definition of check `name` (which `spec` may rename).
pub async fn update(
    conn: &mut AnyConnection,
    keys: &Keyring,
    name: &str,
    spec: &CheckSpec,
    actor: &str,
) -> Result<Check> {
    let before = get_in(conn, keys, name).await?;
    let updated = bind_spec(
        sqlx::query(
        "UPDATE checks SET name = $1, description = $2, plugin = $3, plugin_version = $4, target = $5, config = $6, \
         interval_ms = $7, timeout_ms = $8, locations = $9, tags = $10, allow = $11, paused = $12, confirm = $13, \
         policy = $14, updated_at = $15 WHERE id = $16",
        ),
        spec,
        keys,
    )
    .bind(now_ms())
    .bind(before.id)
    .execute(&mut *conn)
    .await;
    match updated {
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::Conflict(format!("a check named {:?} already exists", spec.name)));
        }
        other => other?,
    };
    let after = get_in(conn, keys, &spec.name).await?;
    audit::record(
        conn,
        Change {
            actor,
            action: "check.update",
            kind: "check",
            name: &spec.name,
            before: audit::snapshot(&before.spec),
            after: audit::snapshot(&after.spec),
        },
    )
    .await?;
    audit_non_public_grants(conn, actor, &spec.name, &before.spec.allow, &spec.allow).await?;
    Ok(after)
}

/// A grant that opens a check to non-public addresses (loopback, private,
/// link-local...) gets an audit entry of its own, `check.grant`, so that
/// who opened what stands out from routine edits. Only new grants count.
async fn audit_non_public_grants(
    conn: &mut AnyConnection,
    actor: &str,
    name: &str,
    before: &[String],
    after: &[String],
) -> Result<()> {
    let granted: Vec<serde_json::Value> = after
        .iter()
        .filter(|entry| !before.contains(entry))
        .filter_map(|entry| match entry.parse::<tocsin_runtime::Grant>() {
            Ok(tocsin_runtime::Grant::Net(net)) => tocsin_runtime::reaches_non_public(&net)
                .map(|why| serde_json::json!({"allow": entry, "reaches": why.to_string()})),
            _ => None,
        })
        .collect();
    if granted.is_empty() {
        return Ok(());
    }
    // The check's own entry is already in the change feed: this one is
    // the trail's alone.
    let change = Change {
        actor,
        action: "check.grant",
        kind: "check",
        name,
        before: None,
        after: Some(serde_json::json!({ "non_public": granted })),
    };
    audit::insert(conn, change).await
}

pub async fn set_paused(
    conn: &mut AnyConnection,
    keys: &Keyring,
    name: &str,
    paused: bool,
    actor: &str,
) -> Result<Check> {
    let before = get_in(conn, keys, name).await?;
    let spec = CheckSpec { paused, ..before.spec.clone() };
    if before.spec.paused == paused {
        return Ok(before);
    }
    sqlx::query("UPDATE checks SET paused = $1, updated_at = $2 WHERE id = $3")
        .bind(paused as i64)
        .bind(now_ms())
        .bind(before.id)
        .execute(&mut *conn)
        .await?;
    audit::record(
        conn,
        Change {
            actor,
            action: if paused { "check.pause" } else { "check.resume" },
            kind: "check",
            name,
            before: audit::snapshot(&before.spec),
            after: audit::snapshot(&spec),
        },
    )
    .await?;
    get_in(conn, keys, name).await
}

/// Deletes a check with its runs and history.
pub async fn delete(conn: &mut AnyConnection, keys: &Keyring, name: &str, actor: &str) -> Result<Check> {
    let before = get_in(conn, keys, name).await?;
    for sql in [
        "DELETE FROM runs WHERE check_id = $1",
        "DELETE FROM run_hours WHERE check_id = $1",
        "DELETE FROM checks WHERE id = $1",
    ] {
        sqlx::query(sql).bind(before.id).execute(&mut *conn).await?;
    }
    audit::record(
        conn,
        Change {
            actor,
            action: "check.delete",
            kind: "check",
            name,
            before: audit::snapshot(&before.spec),
            after: None,
        },
    )
    .await?;
    Ok(before)
}

/// How many checks use a plugin version (`None`: the built-in, unpinned).
pub async fn count_using(db: &Db, plugin: &str, version: Option<&str>) -> Result<i64> {
    let count = match version {
        Some(v) => {
            sqlx::query_scalar("SELECT COUNT(*) FROM checks WHERE plugin = $1 AND plugin_version = $2")
                .bind(plugin)
                .bind(v)
                .fetch_one(db.reader())
                .await?
        }
        None => {
            sqlx::query_scalar("SELECT COUNT(*) FROM checks WHERE plugin = $1 AND plugin_version IS NULL")
                .bind(plugin)
                .fetch_one(db.reader())
                .await?
        }
    };
    Ok(count)
}

/// A change to a check's state from a run.
pub struct Update {
    pub check_id: i64,
    /// `None`: the state holds (a failure awaiting confirmation).
    pub status: Option<CheckStatus>,
    pub message: String,
    pub at: Millis,
    /// The slot of a scheduled run, which becomes the check's last slot.
    pub slot: Option<Millis>,
}

/// Applies updates in one statement: `status_since` moves only when the
/// status changes, and an older update never overwrites a newer one.
pub async fn record(conn: &mut AnyConnection, dialect: &Dialect, updates: &[Update]) -> Result<()> {
    if updates.is_empty() {
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = updates
        .iter()
        .map(|u| {
            serde_json::json!({"id": u.check_id, "status": u.status.map(|s| s.as_str()), "at": u.at,
                               "message": u.message, "slot": u.slot})
        })
        .collect();
    let source = dialect.json_rows(&[
        ("id", Col::Int),
        ("status", Col::Text),
        ("at", Col::Int),
        ("message", Col::Text),
        ("slot", Col::Int),
    ]);
    let sql = format!(
        "UPDATE checks SET \
           status_since = CASE WHEN r.status IS NULL OR checks.status = r.status THEN checks.status_since ELSE r.at END, \
           status = COALESCE(r.status, checks.status), last_run_at = r.at, last_message = r.message, \
           last_slot = CASE WHEN r.slot IS NOT NULL AND (checks.last_slot IS NULL OR r.slot > checks.last_slot) \
                            THEN r.slot ELSE checks.last_slot END \
         FROM {source} \
         WHERE checks.id = r.id AND (checks.last_run_at IS NULL OR checks.last_run_at <= r.at)"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(serde_json::Value::Array(rows).to_string()).execute(conn).await?;
    Ok(())
}

/// What ingest needs to know of the checks in a batch.
pub async fn states(
    conn: &mut AnyConnection,
    dialect: &Dialect,
    ids: &[i64],
) -> Result<Vec<crate::cluster::confirm::CheckState>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let rows: Vec<serde_json::Value> = ids.iter().map(|id| serde_json::json!({ "id": id })).collect();
    let sql = format!(
        "SELECT c.id, c.name, c.status, c.confirm, c.locations, c.timeout_ms, c.policy FROM {} \
         JOIN checks c ON c.id = r.id",
        dialect.json_rows(&[("id", Col::Int)])
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(serde_json::Value::Array(rows).to_string())
        .fetch_all(conn)
        .await?)
}

/// How many checks are in each status.
pub async fn count_by_status(db: &Db) -> Result<Vec<(CheckStatus, i64)>> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM checks GROUP BY status").fetch_all(db.reader()).await?;
    Ok(rows.into_iter().filter_map(|(s, n)| Some((CheckStatus::parse(&s)?, n))).collect())
}
