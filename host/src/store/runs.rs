//! Runs: one row per check per scheduled slot (plus confirmation retests),
//! written in batches. A row that already exists for its (check, slot,
//! seq) is refused, so a result is never counted twice.

use sqlx::AnyConnection;

use std::collections::HashSet;

use super::{Col, Db, Dialect, Result};
use crate::model::{CheckStatus, Metric, Millis, Run};

/// A run as a node reports it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct NewRun {
    pub check_id: i64,
    pub slot: Millis,
    /// 0 for the slot's run, 1 and up for confirmation retests.
    pub seq: i64,
    /// `scheduled`, `confirmation` or `manual`.
    pub attempt: String,
    pub status: CheckStatus,
    pub error_code: Option<String>,
    pub message: String,
    pub metrics: Vec<Metric>,
    pub response_ms: Option<f64>,
    pub node: String,
    pub location: String,
    pub epoch: i64,
    pub started_at: Millis,
    pub duration_ms: i64,
    pub logs: Vec<tocsin_runtime::LogLine>,
    pub refusals: Vec<String>,
}

/// The columns of `runs`, as [`Dialect::json_rows`] expands them.
const COLUMNS: [(&str, Col); 16] = [
    ("check_id", Col::Int),
    ("slot", Col::Int),
    ("seq", Col::Int),
    ("attempt", Col::Text),
    ("status", Col::Text),
    ("error_code", Col::Text),
    ("message", Col::Text),
    ("metrics", Col::Text),
    ("response_ms", Col::Real),
    ("node", Col::Text),
    ("location", Col::Text),
    ("epoch", Col::Int),
    ("started_at", Col::Int),
    ("duration_ms", Col::Int),
    ("logs", Col::Text),
    ("refusals", Col::Text),
];

/// One row of the JSON array a batch is sent as.
#[derive(serde::Serialize)]
struct JsonRun<'a> {
    check_id: i64,
    slot: i64,
    seq: i64,
    attempt: &'a str,
    status: &'a str,
    error_code: Option<&'a str>,
    message: &'a str,
    metrics: String,
    response_ms: Option<f64>,
    node: &'a str,
    location: &'a str,
    epoch: i64,
    started_at: i64,
    duration_ms: i64,
    logs: Option<String>,
    refusals: Option<String>,
}

/// How far ahead of the database clock a slot may be (clock skew between a
/// node and the database). A slot further ahead has not come yet: its run
/// is refused, so nobody can fill future slots before the real run.
pub const MAX_SLOT_AHEAD_MS: i64 = 5_000;

/// Inserts the runs node `node_id` reports, skipping any whose (check, slot,
/// seq) already has a row. Returns, for each run, whether it was stored.
pub async fn insert(conn: &mut AnyConnection, dialect: &Dialect, node_id: &str, runs: &[NewRun]) -> Result<Vec<bool>> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<JsonRun> = runs
        .iter()
        .map(|r| JsonRun {
            check_id: r.check_id,
            slot: r.slot,
            seq: r.seq,
            attempt: &r.attempt,
            status: r.status.as_str(),
            error_code: r.error_code.as_deref(),
            message: &r.message,
            metrics: serde_json::to_string(&r.metrics).unwrap_or_else(|_| "[]".into()),
            response_ms: r.response_ms.filter(|v| v.is_finite()),
            node: &r.node,
            location: &r.location,
            epoch: r.epoch,
            started_at: r.started_at,
            duration_ms: r.duration_ms,
            logs: (!r.logs.is_empty()).then(|| serde_json::to_string(&r.logs).unwrap_or_default()),
            refusals: (!r.refusals.is_empty()).then(|| serde_json::to_string(&r.refusals).unwrap_or_default()),
        })
        .collect();
    let names: Vec<&str> = COLUMNS.iter().map(|(name, _)| *name).collect();
    let columns = names.join(", ");
    let from_rows = names.iter().map(|n| format!("r.{n}")).collect::<Vec<_>>().join(", ");
    // Fencing: a slot's run is accepted from the node that owns the check
    // for that slot under the epoch it names (the current owner for its
    // slots, the previous owner for the slots before the handover); a
    // retest only from the node it was asked of; no slot that has not come.
    let sql = format!(
        "INSERT INTO runs ({columns}) SELECT {from_rows} FROM {} \
         LEFT JOIN assignments a ON a.check_id = r.check_id \
         WHERE r.slot <= {now} + {MAX_SLOT_AHEAD_MS} AND ( \
            (r.seq = 0 AND ((r.epoch = a.epoch AND a.node_id = $2 AND r.slot >= a.from_slot) \
                            OR (r.epoch = a.prev_epoch AND a.prev_node = $2 AND r.slot < a.from_slot))) \
            OR (r.seq > 0 AND EXISTS (SELECT 1 FROM confirmations c WHERE c.check_id = r.check_id \
                                      AND c.slot = r.slot AND c.seq = r.seq AND c.node_id = $2))) \
         ON CONFLICT (check_id, slot, seq) DO NOTHING RETURNING check_id, slot, seq, epoch, node",
        dialect.json_rows(&COLUMNS),
        now = dialect.now_ms,
    );
    let batch = serde_json::to_string(&rows).map_err(|e| super::StoreError::Corrupt(format!("encoding runs: {e}")))?;
    let mut stored: HashSet<(i64, i64, i64, i64, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(batch).bind(node_id).fetch_all(conn).await?.into_iter().collect();
    // Each stored row answers for one run, even if the batch repeats it.
    Ok(runs.iter().map(|r| stored.remove(&(r.check_id, r.slot, r.seq, r.epoch, r.node.clone()))).collect())
}

#[derive(sqlx::FromRow)]
struct Row {
    name: String,
    slot: i64,
    seq: i64,
    attempt: String,
    status: String,
    error_code: Option<String>,
    message: String,
    metrics: String,
    response_ms: Option<f64>,
    node: String,
    location: String,
    started_at: i64,
    duration_ms: i64,
    logs: Option<String>,
    refusals: Option<String>,
}

impl Row {
    fn into_run(self) -> Run {
        Run {
            check: self.name,
            slot: self.slot,
            seq: self.seq,
            attempt: self.attempt,
            status: CheckStatus::parse(&self.status).unwrap_or(CheckStatus::Error),
            error_code: self.error_code,
            message: self.message,
            metrics: serde_json::from_str(&self.metrics).unwrap_or_default(),
            response_ms: self.response_ms,
            node: self.node,
            location: self.location,
            started_at: self.started_at,
            duration_ms: self.duration_ms,
            logs: self.logs.and_then(|l| serde_json::from_str(&l).ok()).unwrap_or_default(),
            refusals: self.refusals.and_then(|r| serde_json::from_str(&r).ok()).unwrap_or_default(),
        }
    }
}

const SELECT: &str = "SELECT c.name, r.slot, r.seq, r.attempt, r.status, r.error_code, r.message, r.metrics, r.response_ms, \
                      r.node, r.location, r.started_at, r.duration_ms, r.logs, r.refusals \
                      FROM runs r JOIN checks c ON c.id = r.check_id";

/// A page of a check's runs, newest first: slots in `[from, to)`, and
/// before `(before_slot, before_seq)` when paging on.
pub async fn list(
    db: &Db,
    check_id: i64,
    from: Millis,
    to: Millis,
    before: Option<(Millis, i64)>,
    limit: i64,
) -> Result<Vec<Run>> {
    let (before_slot, before_seq) = before.unwrap_or((i64::MAX, i64::MAX));
    let sql = format!(
        "{SELECT} WHERE r.check_id = $1 AND r.slot >= $2 AND r.slot < $3 \
         AND (r.slot < $4 OR (r.slot = $4 AND r.seq < $5)) ORDER BY r.slot DESC, r.seq DESC LIMIT $6"
    );
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(check_id)
        .bind(from)
        .bind(to)
        .bind(before_slot)
        .bind(before_seq)
        .bind(limit)
        .fetch_all(db.reader())
        .await?;
    Ok(rows.into_iter().map(Row::into_run).collect())
}

/// The newest slot's run of every check that has one.
pub async fn latest(db: &Db) -> Result<Vec<Run>> {
    let sql = format!(
        "{SELECT} WHERE r.seq = 0 AND r.slot = (SELECT MAX(slot) FROM runs m WHERE m.check_id = c.id AND m.seq = 0) \
         ORDER BY c.name"
    );
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(db.reader()).await?;
    Ok(rows.into_iter().map(Row::into_run).collect())
}

pub async fn count(db: &Db, check_id: i64) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE check_id = $1")
        .bind(check_id)
        .fetch_one(db.reader())
        .await?)
}
