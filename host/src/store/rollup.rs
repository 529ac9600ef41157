//! Hourly aggregates of runs, and pruning, so the database does not grow
//! without bound: raw runs are kept for the run retention, hours for the
//! much longer history retention.

use super::{Db, Result};
use crate::model::{Millis, RunHour};

pub const HOUR_MS: i64 = 3_600_000;

/// How far back each pass recomputes: late results (a node that buffered
/// them while no controller answered) still land in their hour.
const RECOMPUTE_MS: i64 = 3 * HOUR_MS;

/// Recomputes the aggregates of the hours touched recently.
pub async fn roll_up(db: &Db, now: Millis) -> Result<u64> {
    let from = (now - RECOMPUTE_MS).div_euclid(HOUR_MS) * HOUR_MS;
    let done = sqlx::query(
        "INSERT INTO run_hours (check_id, hour, runs, up, degraded, down, errors, \
                                response_avg_ms, response_min_ms, response_max_ms) \
         SELECT check_id, (slot / 3600000) * 3600000, COUNT(*), \
                SUM(CASE WHEN status = 'up' THEN 1 ELSE 0 END), \
                SUM(CASE WHEN status = 'degraded' THEN 1 ELSE 0 END), \
                SUM(CASE WHEN status = 'down' THEN 1 ELSE 0 END), \
                SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END), \
                AVG(response_ms), MIN(response_ms), MAX(response_ms) \
         FROM runs WHERE slot >= $1 AND seq = 0 \
         GROUP BY check_id, (slot / 3600000) * 3600000 \
         ON CONFLICT (check_id, hour) DO UPDATE SET \
           runs = excluded.runs, up = excluded.up, degraded = excluded.degraded, down = excluded.down, \
           errors = excluded.errors, response_avg_ms = excluded.response_avg_ms, \
           response_min_ms = excluded.response_min_ms, response_max_ms = excluded.response_max_ms",
    )
    .bind(from)
    .execute(db.writer())
    .await?;
    Ok(done.rows_affected())
}

/// Deletes runs with slots before `runs_before` and hours before
/// `hours_before`, in bounded batches so writers are never blocked long.
pub async fn prune(db: &Db, runs_before: Millis, hours_before: Millis) -> Result<u64> {
    let mut pruned = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM runs WHERE (check_id, slot, seq) IN \
             (SELECT check_id, slot, seq FROM runs WHERE slot < $1 LIMIT 5000)",
        )
        .bind(runs_before)
        .execute(db.writer())
        .await?;
        pruned += done.rows_affected();
        if done.rows_affected() < 5000 {
            break;
        }
    }
    let hours = sqlx::query("DELETE FROM run_hours WHERE hour < $1").bind(hours_before).execute(db.writer()).await?;
    Ok(pruned + hours.rows_affected())
}

#[derive(sqlx::FromRow)]
struct Row {
    hour: i64,
    runs: i64,
    up: i64,
    degraded: i64,
    down: i64,
    errors: i64,
    response_avg_ms: Option<f64>,
    response_min_ms: Option<f64>,
    response_max_ms: Option<f64>,
}

/// The hourly series of a check, hours in `[from, to)`.
pub async fn series(db: &Db, check_id: i64, from: Millis, to: Millis) -> Result<Vec<RunHour>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT hour, runs, up, degraded, down, errors, response_avg_ms, response_min_ms, response_max_ms \
         FROM run_hours WHERE check_id = $1 AND hour >= $2 AND hour < $3 ORDER BY hour",
    )
    .bind(check_id)
    .bind(from.div_euclid(HOUR_MS) * HOUR_MS)
    .bind(to)
    .fetch_all(db.reader())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| RunHour {
            hour: r.hour,
            availability: availability(r.up + r.degraded, r.runs - r.errors),
            runs: r.runs,
            up: r.up,
            degraded: r.degraded,
            down: r.down,
            errors: r.errors,
            response_avg_ms: r.response_avg_ms,
            response_min_ms: r.response_min_ms,
            response_max_ms: r.response_max_ms,
        })
        .collect())
}

/// Share of judged runs (errors say nothing about the target) that were up
/// or degraded.
pub fn availability(good: i64, judged: i64) -> Option<f64> {
    (judged > 0).then(|| good as f64 / judged as f64)
}
