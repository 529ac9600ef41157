//! Writes a batch of results and moves each check's state with it, in one
//! transaction.
//!
//! A slot's run is accepted once, only from the node that owned the check
//! for that slot, and only once the slot has come (see
//! `store::runs::insert`). An accepted run that says the check is up,
//! degraded or in error sets its state at once; one that says down asks
//! other locations to confirm first (see `cluster::confirm`), and the check
//! goes down when they do.

use std::collections::HashMap;

use crate::alerting::Rules;
use crate::alerting::incidents::{self, CheckChange};
use crate::cluster::ClusterConfig;
use crate::cluster::confirm::{self, CheckState, Decision};
use crate::model::{CheckStatus, Millis};
use crate::store::checks::Update;
use crate::store::runs::NewRun;
use crate::store::{self, Db};

/// The most results written in one transaction.
pub const BATCH: usize = 2000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub accepted: u64,
    /// Duplicates, and results fenced off as stale.
    pub refused: u64,
}

/// Writes the runs node `node_id` reports.
pub async fn write(
    db: &Db,
    config: &ClusterConfig,
    rules: &Rules,
    node_id: &str,
    batch: &[NewRun],
) -> store::Result<Written> {
    let mut tx = db.writer().begin().await?;
    let accepted = store::runs::insert(&mut tx, db.dialect(), node_id, batch).await?;
    let stored: Vec<&NewRun> = batch.iter().zip(&accepted).filter(|(_, ok)| **ok).map(|(run, _)| run).collect();
    let ids: Vec<i64> = stored.iter().map(|r| r.check_id).collect();
    let states: HashMap<i64, CheckState> =
        store::checks::states(&mut tx, db.dialect(), &ids).await?.into_iter().map(|s| (s.id, s)).collect();

    let mut updates: HashMap<i64, Update> = HashMap::new();
    let mut update = |u: Update| match updates.get(&u.check_id) {
        Some(old) if old.at > u.at => {}
        _ => {
            updates.insert(u.check_id, u);
        }
    };

    // The newest scheduled run of each check sets or holds its state.
    let mut newest: HashMap<i64, &NewRun> = HashMap::new();
    for run in stored.iter().filter(|r| r.seq == 0) {
        let entry = newest.entry(run.check_id).or_insert(run);
        if run.slot > entry.slot {
            *entry = run;
        }
    }
    for run in newest.values() {
        let Some(state) = states.get(&run.check_id) else { continue };
        let mut u = Update {
            check_id: run.check_id,
            status: Some(run.status),
            message: run.message.clone(),
            at: run.started_at,
            slot: Some(run.slot),
        };
        if run.status == CheckStatus::Down && state.status() != CheckStatus::Down && state.confirm > 0 {
            let asked = confirm::request(&mut tx, db, config, state, run.slot, &run.location).await?;
            if asked.is_empty() {
                u.message = format!("{} (seen from {}; no other location is up to confirm)", run.message, run.location);
            } else {
                u.status = None;
                u.message =
                    format!("{} (seen from {}; confirming from {})", run.message, run.location, asked.join(", "));
                tracing::info!(check = %state.name, slot = run.slot, from = %run.location, asked = ?asked, "failure seen; asking other locations");
            }
        }
        update(u);
    }

    // Retests: decide each slot they answer.
    for run in stored.iter().filter(|r| r.seq > 0) {
        confirm::answer(&mut tx, run.check_id, run.slot, run.seq, run.status).await?;
    }
    let mut answered: Vec<(i64, Millis)> = stored.iter().filter(|r| r.seq > 0).map(|r| (r.check_id, r.slot)).collect();
    answered.sort();
    answered.dedup();
    for (check_id, slot) in answered {
        let Some(state) = states.get(&check_id) else { continue };
        let latest = stored
            .iter()
            .filter(|r| r.check_id == check_id && r.slot == slot && r.seq > 0)
            .max_by_key(|r| r.started_at);
        let Some(latest) = latest else { continue };
        if let Some(u) = decided(&mut tx, state, slot, latest.started_at, &latest.message).await? {
            update(u);
        }
    }

    let updates: Vec<Update> = updates.into_values().collect();
    store::checks::record(&mut tx, db.dialect(), &updates).await?;
    let changes = check_changes(&states, &updates);
    incidents::on_check_changes(&mut tx, db.dialect(), rules, &changes, crate::model::now_ms()).await?;
    tx.commit().await?;
    let accepted = stored.len() as u64;
    Ok(Written { accepted, refused: batch.len() as u64 - accepted })
}

/// The state change, if any, that the retests of `(check, slot)` decide.
async fn decided(
    conn: &mut sqlx::AnyConnection,
    state: &CheckState,
    slot: Millis,
    at: Millis,
    message: &str,
) -> store::Result<Option<Update>> {
    let base = Update { check_id: state.id, status: None, message: String::new(), at, slot: None };
    Ok(match confirm::decide(conn, state.id, slot, state.confirm).await? {
        Decision::Pending => None,
        Decision::Confirmed { from } => {
            tracing::info!(check = %state.name, slot, from = ?from, "failure confirmed");
            let from = if from.is_empty() {
                "no other location answered".to_string()
            } else {
                format!("confirmed from {}", from.join(", "))
            };
            Some(Update { status: Some(CheckStatus::Down), message: format!("{message} ({from})"), ..base })
        }
        Decision::Refuted { up_from } => {
            tracing::info!(check = %state.name, slot, up_from = ?up_from, "failure not confirmed: seen from one location only");
            // The target answers from elsewhere: up, unless it already
            // counts as up or degraded.
            let status = match state.status() {
                CheckStatus::Up | CheckStatus::Degraded => None,
                _ => Some(CheckStatus::Up),
            };
            Some(Update {
                status,
                message: format!("failure seen from one location only; up from {}", up_from.join(", ")),
                ..base
            })
        }
    })
}

/// Decides the slots whose retests expired unanswered.
pub async fn decide_expired(db: &Db, rules: &Rules) -> store::Result<()> {
    let slots = confirm::expire(db).await?;
    if slots.is_empty() {
        return Ok(());
    }
    let mut tx = db.writer().begin().await?;
    let ids: Vec<i64> = slots.iter().map(|(id, _)| *id).collect();
    let states: HashMap<i64, CheckState> =
        store::checks::states(&mut tx, db.dialect(), &ids).await?.into_iter().map(|s| (s.id, s)).collect();
    let mut updates = Vec::new();
    for (check_id, slot) in slots {
        let Some(state) = states.get(&check_id) else { continue };
        let message: Option<String> =
            sqlx::query_scalar("SELECT message FROM runs WHERE check_id = $1 AND slot = $2 AND seq = 0")
                .bind(check_id)
                .bind(slot)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(u) =
            decided(&mut tx, state, slot, crate::model::now_ms(), message.as_deref().unwrap_or("down")).await?
        {
            updates.push(u);
        }
    }
    store::checks::record(&mut tx, db.dialect(), &updates).await?;
    let changes = check_changes(&states, &updates);
    incidents::on_check_changes(&mut tx, db.dialect(), rules, &changes, crate::model::now_ms()).await?;
    tx.commit().await?;
    Ok(())
}

/// How the updates move each check, for incidents.
fn check_changes(states: &HashMap<i64, CheckState>, updates: &[Update]) -> Vec<CheckChange> {
    updates
        .iter()
        .filter_map(|u| {
            let state = states.get(&u.check_id)?;
            Some(CheckChange {
                check_id: u.check_id,
                name: state.name.clone(),
                before: state.status(),
                after: u.status,
                message: u.message.clone(),
                policy: state.policy.clone(),
            })
        })
        .collect()
}
