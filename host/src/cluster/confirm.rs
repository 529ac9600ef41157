//! Confirmation: a failure seen from one location is retested at once from
//! others before it counts.
//!
//! A check's `confirm` says how many other locations must also see it fail.
//! The retests are runs of the same slot (seq 1, 2, ...) asked of one live
//! node per location. The check goes down when enough of them fail, or when
//! none of them could say it is up (no answer in time counts for nothing
//! either way). If another location sees it up, the failure is recorded as
//! seen from the first location only, and the check stays up: that is often
//! the probe's own network failing.

use sqlx::AnyConnection;

use super::ClusterConfig;
use crate::model::{CheckStatus, Millis};
use crate::store::{self, Db};

/// What is known of a check when one of its runs arrives.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CheckState {
    pub id: i64,
    pub name: String,
    pub status: String,
    pub confirm: i64,
    pub locations: String,
    pub timeout_ms: i64,
    /// The escalation policy of its incidents.
    pub policy: Option<String>,
}

impl CheckState {
    pub fn status(&self) -> CheckStatus {
        CheckStatus::parse(&self.status).unwrap_or(CheckStatus::Pending)
    }
}

/// Asks nodes in other locations to retest `(check, slot)`; returns the
/// locations asked (none when no other location has a live node).
pub async fn request(
    conn: &mut AnyConnection,
    db: &Db,
    config: &ClusterConfig,
    check: &CheckState,
    slot: Millis,
    seen_from: &str,
) -> store::Result<Vec<String>> {
    let now_sql = db.dialect().now_ms;
    let sql = format!(
        "SELECT id, location, {now_sql} FROM nodes \
         WHERE drained = 0 AND evicted = 0 AND last_heartbeat >= {now_sql} - $1 AND location <> $2 ORDER BY id"
    );
    let nodes: Vec<(String, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(config.dead_after_ms())
        .bind(seen_from)
        .fetch_all(&mut *conn)
        .await?;
    let allowed = store::split_list(&check.locations);
    // One node per location, chosen by a hash of the check so retests of a
    // check keep going to the same node while it lives.
    let mut best: Vec<(u64, String, String)> = Vec::new();
    for (id, location, _) in &nodes {
        if !allowed.is_empty() && !allowed.contains(location) {
            continue;
        }
        let score = rank(check.id, id);
        match best.iter_mut().find(|(_, _, l)| l == location) {
            Some(entry) if entry.0 < score => *entry = (score, id.clone(), location.clone()),
            Some(_) => {}
            None => best.push((score, id.clone(), location.clone())),
        }
    }
    best.sort_by_key(|b| std::cmp::Reverse(b.0));
    best.truncate(check.confirm.max(0) as usize);
    let now = nodes.first().map(|n| n.2).unwrap_or_else(crate::model::now_ms);
    for (i, (_, node, location)) in best.iter().enumerate() {
        sqlx::query(
            "INSERT INTO confirmations (check_id, slot, seq, node_id, location, requested_at, expires_at, state) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending') ON CONFLICT (check_id, slot, seq) DO NOTHING",
        )
        .bind(check.id)
        .bind(slot)
        .bind(i as i64 + 1)
        .bind(node)
        .bind(location)
        .bind(now)
        .bind(now + check.timeout_ms + 5_000)
        .execute(&mut *conn)
        .await?;
        sqlx::query("UPDATE nodes SET work_version = work_version + 1 WHERE id = $1")
            .bind(node)
            .execute(&mut *conn)
            .await?;
    }
    Ok(best.into_iter().map(|(_, _, location)| location).collect())
}

fn rank(check_id: i64, node: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest([&check_id.to_le_bytes()[..], node.as_bytes()].concat());
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Records a retest's answer.
pub async fn answer(
    conn: &mut AnyConnection,
    check_id: i64,
    slot: Millis,
    seq: i64,
    status: CheckStatus,
) -> store::Result<()> {
    sqlx::query(
        "UPDATE confirmations SET state = 'answered', status = $4 WHERE check_id = $1 AND slot = $2 AND seq = $3",
    )
    .bind(check_id)
    .bind(slot)
    .bind(seq)
    .bind(status.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Enough locations agree: the check is down.
    Confirmed { from: Vec<String> },
    /// Another location sees it up: the failure is local to where it was seen.
    Refuted { up_from: Vec<String> },
    /// Answers are still awaited.
    Pending,
}

/// Where the retests of `(check, slot)` stand.
pub async fn decide(conn: &mut AnyConnection, check_id: i64, slot: Millis, confirm: i64) -> store::Result<Decision> {
    let rows: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT location, state, status FROM confirmations WHERE check_id = $1 AND slot = $2")
            .bind(check_id)
            .bind(slot)
            .fetch_all(conn)
            .await?;
    let answered = |wanted: &[&str]| -> Vec<String> {
        rows.iter()
            .filter(|(_, state, status)| state == "answered" && status.as_deref().is_some_and(|s| wanted.contains(&s)))
            .map(|(location, _, _)| location.clone())
            .collect()
    };
    let down = answered(&["down"]);
    let up = answered(&["up", "degraded"]);
    let pending = rows.iter().filter(|(_, state, _)| state == "pending").count();
    Ok(if down.len() as i64 >= confirm || (pending == 0 && up.is_empty()) {
        Decision::Confirmed { from: down }
    } else if pending == 0 {
        Decision::Refuted { up_from: up }
    } else {
        Decision::Pending
    })
}

/// Marks retests that were not answered in time; returns the slots to
/// decide again.
pub async fn expire(db: &Db) -> store::Result<Vec<(i64, Millis)>> {
    let sql = format!(
        "UPDATE confirmations SET state = 'expired' WHERE state = 'pending' AND expires_at < {} RETURNING check_id, slot",
        db.dialect().now_ms
    );
    let mut slots: Vec<(i64, Millis)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(db.writer()).await?;
    slots.sort();
    slots.dedup();
    Ok(slots)
}
