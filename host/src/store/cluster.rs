//! Queries of the distributed part: the scheduling lease, node liveness by
//! the database's clock, assignments with their fencing epochs, and the
//! work each node is given.

use sqlx::AnyConnection;

use super::{Col, Db, Dialect, Result};
use crate::model::Millis;

/// A lease as held: the fencing epoch and when it lapses (database clock).
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    pub holder: String,
    pub epoch: i64,
    pub expires_at: Millis,
}

/// Takes lease `name` for `holder` if it is free or lapsed, or renews it if
/// `holder` has it. The epoch grows each time the lease changes hands.
/// Returns the lease as it now stands, whoever holds it.
pub async fn acquire_lease(db: &Db, name: &str, holder: &str, ttl_ms: i64) -> Result<Lease> {
    let now = db.dialect().now_ms;
    let sql = format!(
        "INSERT INTO leases (name, holder, epoch, expires_at) VALUES ($1, $2, 1, {now} + $3) \
         ON CONFLICT (name) DO UPDATE SET \
           epoch = CASE WHEN leases.holder = excluded.holder THEN leases.epoch ELSE leases.epoch + 1 END, \
           holder = excluded.holder, expires_at = excluded.expires_at \
         WHERE leases.holder = excluded.holder OR leases.expires_at < {now}"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).bind(holder).bind(ttl_ms).execute(db.writer()).await?;
    lease(db, name).await.map(|l| l.expect("the lease row exists after an upsert"))
}

pub async fn lease(db: &Db, name: &str) -> Result<Option<Lease>> {
    lease_in(&mut *db.reader().acquire().await?, name).await
}

/// Inside a transaction: proves the lease is still held with `epoch` and
/// keeps others from taking it until the transaction ends.
pub async fn fence(conn: &mut AnyConnection, name: &str, holder: &str, epoch: i64) -> Result<bool> {
    let done = sqlx::query("UPDATE leases SET expires_at = expires_at WHERE name = $1 AND holder = $2 AND epoch = $3")
        .bind(name)
        .bind(holder)
        .bind(epoch)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives up a lease (clean shutdown), so another holder need not wait for
/// it to lapse.
pub async fn release_lease(db: &Db, name: &str, holder: &str) -> Result<()> {
    sqlx::query("UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// Takes lease `name` from whoever holds it, but only while it still has
/// `epoch`: the watchdog's lever for a wedged holder, which must not hit a
/// holder that took over since the watchdog looked. Hands it to `to` at
/// once (for `ttl_ms`, from the database clock), or to nobody (lapsed, for
/// the first to take). The epoch moves on either way, so the old holder's
/// fenced writes fail. Returns the lease as it was and as it now is, or
/// `None` when it no longer has `epoch` (nothing changed).
pub async fn revoke_lease(
    conn: &mut AnyConnection,
    dialect: &Dialect,
    name: &str,
    epoch: i64,
    to: Option<&str>,
    ttl_ms: i64,
) -> Result<Option<(Lease, Lease)>> {
    // Locks the row first, so what is read next is what is replaced.
    let held = sqlx::query("UPDATE leases SET expires_at = expires_at WHERE name = $1 AND epoch = $2")
        .bind(name)
        .bind(epoch)
        .execute(&mut *conn)
        .await?;
    if held.rows_affected() == 0 {
        return Ok(None);
    }
    let before = lease_in(conn, name).await?.expect("the lease row was just locked");
    let expires = if to.is_some() { format!("{} + $3", dialect.now_ms) } else { "0".to_string() };
    let sql = format!("UPDATE leases SET holder = $2, epoch = epoch + 1, expires_at = {expires} WHERE name = $1");
    let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).bind(to.unwrap_or(""));
    if to.is_some() { query.bind(ttl_ms) } else { query }.execute(&mut *conn).await?;
    let after = lease_in(conn, name).await?.expect("the lease row was just updated");
    Ok(Some((before, after)))
}

async fn lease_in(conn: &mut AnyConnection, name: &str) -> Result<Option<Lease>> {
    let row: Option<(String, i64, i64)> =
        sqlx::query_as("SELECT holder, epoch, expires_at FROM leases WHERE name = $1")
            .bind(name)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(holder, epoch, expires_at)| Lease { holder, epoch, expires_at }))
}

/// A node's row, with the database clock at the time it was read.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct NodeRow {
    pub id: String,
    pub name: String,
    pub location: String,
    pub version: String,
    pub drained: i64,
    /// Evicted by the watchdog or an operator: owns nothing until resumed.
    pub evicted: i64,
    pub registered_at: i64,
    pub last_heartbeat: i64,
    pub healthy_since: i64,
    pub work_version: i64,
    pub stats: String,
}

const NODE_COLUMNS: &str = "id, name, location, version, drained, evicted, registered_at, last_heartbeat, \
                            healthy_since, work_version, stats";

/// Every node, and the database clock now.
pub async fn nodes(db: &Db) -> Result<(Vec<NodeRow>, Millis)> {
    let now = db.now_ms().await?;
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY location, name");
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(db.reader()).await?;
    Ok((rows, now))
}

pub async fn node(db: &Db, id: &str) -> Result<Option<NodeRow>> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = $1");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(db.reader()).await?)
}

/// What a node enrolls with.
pub struct Enrollment<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub location: &'a str,
    pub version: &'a str,
    /// The hash of the node's key; kept when the node already has one.
    pub key_hash: &'a str,
}

/// Registers a node, or refreshes its details. A node that was gone starts
/// a new healthy period. A node keeps the key hash it was first given;
/// returns the one it holds now.
pub async fn enroll(db: &Db, node: &Enrollment<'_>, dead_after_ms: i64) -> Result<String> {
    let now = db.dialect().now_ms;
    let sql = format!(
        "INSERT INTO nodes (id, name, location, version, state, registered_at, last_heartbeat, healthy_since, key_hash) \
         VALUES ($1, $2, $3, $4, 'active', {now}, {now}, {now}, $6) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, location = excluded.location, version = excluded.version, \
           healthy_since = CASE WHEN nodes.last_heartbeat < excluded.last_heartbeat - $5 THEN excluded.healthy_since \
                                ELSE nodes.healthy_since END, \
           last_heartbeat = excluded.last_heartbeat, key_hash = COALESCE(nodes.key_hash, excluded.key_hash) \
         RETURNING key_hash"
    );
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(node.id)
        .bind(node.name)
        .bind(node.location)
        .bind(node.version)
        .bind(dead_after_ms)
        .bind(node.key_hash)
        .fetch_one(db.writer())
        .await?)
}

/// The key hash of node `id`: `None` for an unknown node, `Some(None)` for
/// one enrolled before nodes had keys.
pub async fn key_hash(db: &Db, id: &str) -> Result<Option<Option<String>>> {
    Ok(sqlx::query_scalar("SELECT key_hash FROM nodes WHERE id = $1").bind(id).fetch_optional(db.reader()).await?)
}

/// Records a heartbeat by the database's clock; returns the node's work
/// version, or `None` for a node that is not enrolled.
pub async fn heartbeat(db: &Db, id: &str, stats: &str, dead_after_ms: i64) -> Result<Option<i64>> {
    let now = db.dialect().now_ms;
    let sql = format!(
        "UPDATE nodes SET \
           healthy_since = CASE WHEN last_heartbeat < {now} - $3 THEN {now} ELSE healthy_since END, \
           last_heartbeat = {now}, stats = $2 \
         WHERE id = $1 RETURNING work_version"
    );
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(stats)
        .bind(dead_after_ms)
        .fetch_optional(db.writer())
        .await?)
}

/// Asks node `id` to give its checks away; false for an unknown node.
pub async fn drain(conn: &mut AnyConnection, id: &str) -> Result<bool> {
    set_flags(conn, id, "drained = 1").await
}

/// Takes every check from node `id` at once, as from a dead node.
pub async fn evict(conn: &mut AnyConnection, id: &str) -> Result<bool> {
    set_flags(conn, id, "evicted = 1").await
}

/// Lets a drained or evicted node take checks again.
pub async fn resume(conn: &mut AnyConnection, id: &str) -> Result<bool> {
    set_flags(conn, id, "drained = 0, evicted = 0").await
}

async fn set_flags(conn: &mut AnyConnection, id: &str, set: &'static str) -> Result<bool> {
    let sql = format!("UPDATE nodes SET {set} WHERE id = $1");
    let done = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).execute(conn).await?;
    Ok(done.rows_affected() == 1)
}

/// Forgets a node that owns nothing.
pub async fn remove_node(db: &Db, id: &str) -> Result<bool> {
    let done =
        sqlx::query("DELETE FROM nodes WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM assignments WHERE node_id = $1)")
            .bind(id)
            .execute(db.writer())
            .await?;
    Ok(done.rows_affected() == 1)
}

/// How many checks each node owns.
pub async fn loads(db: &Db) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as("SELECT node_id, COUNT(*) FROM assignments GROUP BY node_id").fetch_all(db.reader()).await?)
}

/// Scheduled runs (seq 0) of slots after `since`, by the node (its name,
/// as runs record it) and location that ran them.
pub async fn runs_since(db: &Db, since: Millis) -> Result<Vec<(String, String, i64)>> {
    Ok(sqlx::query_as("SELECT node, location, COUNT(*) FROM runs WHERE slot > $1 AND seq = 0 GROUP BY node, location")
        .bind(since)
        .fetch_all(db.reader())
        .await?)
}

/// How many scheduled runs a minute each node owes: for each active check
/// it owns, the whole number of its intervals in a minute.
pub async fn expected_per_minute(db: &Db) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT a.node_id, CAST(SUM(60000 / c.interval_ms) AS BIGINT) \
         FROM assignments a JOIN checks c ON c.id = a.check_id WHERE c.paused = 0 GROUP BY a.node_id",
    )
    .fetch_all(db.reader())
    .await?)
}

/// Every node's work version, for the long-polls of `/node/work`.
pub async fn work_versions(db: &Db) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as("SELECT id, work_version FROM nodes").fetch_all(db.reader()).await?)
}

/// An assignment row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Owner {
    pub check_id: i64,
    pub node_id: String,
    pub epoch: i64,
}

pub async fn owners(db: &Db) -> Result<Vec<Owner>> {
    Ok(sqlx::query_as("SELECT check_id, node_id, epoch FROM assignments").fetch_all(db.reader()).await?)
}

/// A change of owner, with the slot the new owner starts at.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Handover {
    pub check_id: i64,
    /// The new owner.
    pub node: String,
    pub from_slot: Millis,
}

/// Applies handovers in one statement each way: a check with a row gets a
/// new owner and epoch (the old ones kept as previous), a check without
/// one gets its first. Bumps the work version of every node concerned.
pub async fn hand_over(conn: &mut AnyConnection, db: &Db, handovers: &[Handover], now: Millis) -> Result<()> {
    if handovers.is_empty() {
        return Ok(());
    }
    let rows = serde_json::to_string(handovers).expect("handovers serialize");
    let d = db.dialect();
    let source = d.json_rows(&[("check_id", Col::Int), ("node", Col::Text), ("from_slot", Col::Int)]);
    // Nodes losing a check: their work changes too.
    let sql = format!(
        "UPDATE nodes SET work_version = work_version + 1 WHERE id IN \
         (SELECT a.node_id FROM {source} JOIN assignments a ON a.check_id = r.check_id)"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&rows).execute(&mut *conn).await?;
    let sql = format!(
        "UPDATE assignments SET prev_node = node_id, prev_epoch = epoch, node_id = r.node, epoch = epoch + 1, \
           from_slot = r.from_slot, changed_at = $2 \
         FROM {source} WHERE assignments.check_id = r.check_id"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&rows).bind(now).execute(&mut *conn).await?;
    let sql = format!(
        "INSERT INTO assignments (check_id, node_id, epoch, from_slot, changed_at) \
         SELECT r.check_id, r.node, 1, r.from_slot, $2 FROM {source} WHERE true \
         ON CONFLICT (check_id) DO NOTHING"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&rows).bind(now).execute(&mut *conn).await?;
    let sql = format!("UPDATE nodes SET work_version = work_version + 1 WHERE id IN (SELECT r.node FROM {source})");
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&rows).execute(&mut *conn).await?;
    Ok(())
}

/// Drops assignments of checks that no longer exist, bumping the work
/// version of the nodes that were running them so they stop.
pub async fn drop_orphans(conn: &mut AnyConnection) -> Result<u64> {
    const ORPHANS: &str = "FROM assignments a WHERE NOT EXISTS (SELECT 1 FROM checks c WHERE c.id = a.check_id)";
    let sql = format!(
        "UPDATE nodes SET work_version = work_version + 1 \
         WHERE id IN (SELECT a.node_id {ORPHANS}) OR id IN (SELECT a.prev_node {ORPHANS})"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *conn).await?;
    let done = sqlx::query(
        "DELETE FROM assignments WHERE NOT EXISTS (SELECT 1 FROM checks c WHERE c.id = assignments.check_id)",
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Bumps the work version of every node that owns, or is handing over, a
/// check changed after `since` (`updated_at`), so it fetches the new
/// definition. Returns how many nodes.
pub async fn bump_owners(conn: &mut AnyConnection, since: Millis) -> Result<u64> {
    const CHANGED: &str = "FROM assignments a JOIN checks c ON c.id = a.check_id WHERE c.updated_at > $1";
    let sql = format!(
        "UPDATE nodes SET work_version = work_version + 1 \
         WHERE id IN (SELECT a.node_id {CHANGED}) OR id IN (SELECT a.prev_node {CHANGED})"
    );
    let done = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(since).execute(conn).await?;
    Ok(done.rows_affected())
}

/// The newest accepted slot of the given checks.
pub async fn last_slots(db: &Db, ids: &[i64]) -> Result<Vec<(i64, Option<i64>)>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(10_000) {
        let source = db.dialect().json_rows(&[("id", Col::Int)]);
        let sql = format!("SELECT c.id, c.last_slot FROM {source} JOIN checks c ON c.id = r.id");
        let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(
                serde_json::to_string(&chunk.iter().map(|id| serde_json::json!({ "id": id })).collect::<Vec<_>>())
                    .unwrap(),
            )
            .fetch_all(db.reader())
            .await?;
        out.extend(rows);
    }
    Ok(out)
}

/// One check of a node's work, as the database has it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct WorkRow {
    pub id: i64,
    pub name: String,
    pub plugin: String,
    pub plugin_version: Option<String>,
    pub sha256: Option<String>,
    pub target: String,
    pub config: String,
    pub interval_ms: i64,
    pub timeout_ms: i64,
    pub allow: String,
    pub node_id: String,
    pub epoch: i64,
    pub from_slot: i64,
    pub prev_epoch: Option<i64>,
    pub last_slot: Option<i64>,
}

/// The checks node `id` owns, and those it is handing over (owned by
/// another from a slot still to come), their configs opened: a node needs
/// the secrets to run the checks.
pub async fn work(db: &Db, id: &str, now: Millis) -> Result<Vec<WorkRow>> {
    let rows: Vec<WorkRow> = sqlx::query_as(
        "SELECT c.id, c.name, c.plugin, c.plugin_version, p.sha256, c.target, c.config, c.interval_ms, c.timeout_ms, \
                c.allow, a.node_id, a.epoch, a.from_slot, a.prev_epoch, c.last_slot \
         FROM assignments a JOIN checks c ON c.id = a.check_id \
         LEFT JOIN plugins p ON p.name = c.plugin AND p.version = c.plugin_version \
         WHERE c.paused = 0 AND (a.node_id = $1 OR (a.prev_node = $1 AND a.from_slot > $2)) \
         ORDER BY c.id",
    )
    .bind(id)
    .bind(now)
    .fetch_all(db.reader())
    .await?;
    rows.into_iter().map(|r| Ok(WorkRow { config: open_config(db, &r.name, &r.config)?, ..r })).collect()
}

/// A check's stored config (text) with its secrets opened.
fn open_config(db: &Db, check: &str, config: &str) -> Result<String> {
    let sealed: serde_json::Value =
        serde_json::from_str(config).map_err(|e| super::StoreError::Corrupt(format!("check {check}: config: {e}")))?;
    let clear = db.keys().open_config(&sealed).map_err(|e| super::StoreError::Secrets(format!("check {check}"), e))?;
    Ok(clear.to_string())
}

/// A confirmation retest a node must run.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ConfirmRow {
    pub check_id: i64,
    pub slot: i64,
    pub seq: i64,
}

pub async fn pending_confirmations(db: &Db, node: &str) -> Result<Vec<ConfirmRow>> {
    Ok(sqlx::query_as(
        "SELECT check_id, slot, seq FROM confirmations WHERE node_id = $1 AND state = 'pending' ORDER BY slot",
    )
    .bind(node)
    .fetch_all(db.reader())
    .await?)
}

/// A check's definition for a node that retests it without owning it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CheckDef {
    pub id: i64,
    pub name: String,
    pub plugin: String,
    pub plugin_version: Option<String>,
    pub sha256: Option<String>,
    pub target: String,
    pub config: String,
    pub interval_ms: i64,
    pub timeout_ms: i64,
    pub allow: String,
}

pub async fn check_defs(db: &Db, ids: &[i64]) -> Result<Vec<CheckDef>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<serde_json::Value> = ids.iter().map(|id| serde_json::json!({ "id": id })).collect();
    let sql = format!(
        "SELECT c.id, c.name, c.plugin, c.plugin_version, p.sha256, c.target, c.config, c.interval_ms, c.timeout_ms, c.allow \
         FROM {} JOIN checks c ON c.id = r.id LEFT JOIN plugins p ON p.name = c.plugin AND p.version = c.plugin_version",
        db.dialect().json_rows(&[("id", Col::Int)])
    );
    let defs: Vec<CheckDef> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(serde_json::Value::Array(rows).to_string())
        .fetch_all(db.reader())
        .await?;
    defs.into_iter().map(|d| Ok(CheckDef { config: open_config(db, &d.name, &d.config)?, ..d })).collect()
}
