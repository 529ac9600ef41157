//! Escalation: notify a policy's steps in order until someone accepts.
//!
//! The state of each escalation is a row (`escalations`): the policy as it
//! was when the incident opened, the step and pass under way, the deadline
//! of the step, who rejected. Every move is one transaction that checks the
//! row is still where the mover saw it, so a controller restarting (or two
//! controllers at once) neither repeats nor skips a step: a step whose
//! deadline passed while no controller ran is advanced once, when one runs.
//!
//! Steps: notify every contact of the step, wait its timeout; a step is
//! over when its time is up or every contact in it rejected. After the last
//! step the policy starts again, `repeat` times; then the fallback step, if
//! any; then the escalation is exhausted (the incident stays open).

use serde_json::json;
use sqlx::AnyConnection;

use super::incidents::record;
use super::model::{Contact, Policy, Step};
use super::{directory, outbox, suppress};
use crate::model::Millis;
use crate::store::{self, StoreError};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Row {
    pub incident_id: i64,
    pub policy: String,
    pub steps: String,
    pub repeat: i64,
    pub fallback: Option<String>,
    pub state: String,
    pub step: i64,
    pub pass: i64,
    pub deadline_at: Option<i64>,
    pub rejected: String,
}

impl Row {
    fn steps(&self) -> store::Result<Vec<Step>> {
        serde_json::from_str(&self.steps).map_err(|e| StoreError::Corrupt(format!("escalation steps: {e}")))
    }

    fn fallback(&self) -> store::Result<Option<Step>> {
        self.fallback
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("escalation fallback: {e}")))
    }

    /// The step under way (the fallback when `step` is past the list).
    fn current(&self) -> store::Result<Option<Step>> {
        let steps = self.steps()?;
        Ok(match steps.get(self.step as usize) {
            Some(step) => Some(step.clone()),
            None => self.fallback()?,
        })
    }
}

pub async fn load(conn: &mut AnyConnection, incident: i64) -> store::Result<Option<Row>> {
    Ok(sqlx::query_as("SELECT * FROM escalations WHERE incident_id = $1").bind(incident).fetch_optional(conn).await?)
}

/// Starts (or restarts, on reopening) the escalation of `incident` with
/// `policy`, or the policy named `default`.
pub async fn start(
    conn: &mut AnyConnection,
    incident: i64,
    policy: Option<&str>,
    source: &str,
    now: Millis,
) -> store::Result<()> {
    let name = policy.unwrap_or("default");
    let found: Option<Policy> = directory::get(conn, directory::POLICIES, name).await?;
    let Some(found) = found else {
        let why = match policy {
            Some(p) => format!("nobody is notified: the escalation policy {p:?} does not exist"),
            None => "nobody is notified: no escalation policy (create one named \"default\")".to_string(),
        };
        tracing::warn!(incident, "{why}");
        return record(conn, incident, "no_policy", None, json!({"message": why}), now).await;
    };
    let steps = serde_json::to_string(&found.steps).expect("steps serialize");
    let fallback = found.fallback.as_ref().map(|f| serde_json::to_string(f).expect("a step serializes"));
    let repeat = found.repeat as i64;
    let suppressed = suppress::why_suppressed(conn, source, now).await?;
    let state = if suppressed.is_some() { "suppressed" } else { "waiting" };
    sqlx::query("DELETE FROM escalations WHERE incident_id = $1").bind(incident).execute(&mut *conn).await?;
    sqlx::query(
        "INSERT INTO escalations (incident_id, policy, steps, repeat, fallback, state, step, pass, deadline_at, \
         rejected, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 0, 0, NULL, '[]', $7)",
    )
    .bind(incident)
    .bind(name)
    .bind(&steps)
    .bind(repeat)
    .bind(&fallback)
    .bind(state)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if let Some(why) = suppressed {
        return record(conn, incident, "suppressed", None, json!({"by": why}), now).await;
    }
    let row = load(conn, incident).await?.ok_or_else(|| StoreError::NotFound(format!("escalation {incident}")))?;
    notify_step(conn, &row, "triggered", now).await
}

/// Sends the current step's notifications and sets its deadline.
async fn notify_step(conn: &mut AnyConnection, row: &Row, event: &str, now: Millis) -> store::Result<()> {
    let Some(step) = row.current()? else { return Ok(()) };
    let deadline = now + step.timeout.as_millis() as i64;
    sqlx::query("UPDATE escalations SET deadline_at = $2, state = 'waiting', updated_at = $3 WHERE incident_id = $1")
        .bind(row.incident_id)
        .bind(deadline)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    let label = step_label(row);
    record(conn, row.incident_id, "escalated", None, json!({"step": label, "notify": step.notify}), now).await?;
    let source: String = sqlx::query_scalar("SELECT source FROM incidents WHERE id = $1")
        .bind(row.incident_id)
        .fetch_one(&mut *conn)
        .await?;
    for target in &step.notify {
        let (contact, only) = match target.split_once(':') {
            Some((c, ch)) => (c, Some(ch)),
            None => (target.as_str(), None),
        };
        let found: Option<Contact> = directory::get(conn, directory::CONTACTS, contact).await?;
        let Some(found) = found else {
            let detail = json!({"contact": contact, "message": format!("contact {contact:?} no longer exists")});
            record(conn, row.incident_id, "contact_missing", None, detail, now).await?;
            continue;
        };
        let channels = found.channels;
        for ch in channels.iter().filter(|ch| only.is_none_or(|o| o == ch.channel)) {
            let n = outbox::NewNotification {
                incident: row.incident_id,
                event: event.to_string(),
                step: Some(row.step),
                pass: Some(row.pass),
                contact: contact.to_string(),
                channel: ch.channel.clone(),
                address: ch.address.clone(),
                source: source.clone(),
            };
            let id = outbox::enqueue(conn, &n, now).await?;
            let detail = json!({"notification": id, "contact": contact, "channel": ch.channel, "step": label});
            record(conn, row.incident_id, "notified", None, detail, now).await?;
        }
    }
    Ok(())
}

fn step_label(row: &Row) -> String {
    let steps = row.steps().map(|s| s.len()).unwrap_or(0) as i64;
    if row.step >= steps {
        "fallback".to_string()
    } else {
        format!("{} of {steps}, pass {}", row.step + 1, row.pass + 1)
    }
}

/// Why a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    TimedOut,
    AllRejected,
}

/// Moves on from the step `seen` (incident, step, pass) if the escalation
/// is still there; false when it had moved already.
pub async fn advance(conn: &mut AnyConnection, seen: &Row, why: Ended, now: Millis) -> store::Result<bool> {
    let steps = seen.steps()?.len() as i64;
    let has_fallback = seen.fallback.is_some();
    let on_fallback = seen.step >= steps;
    let (step, pass, state) = if on_fallback {
        (seen.step, seen.pass, "exhausted")
    } else if seen.step + 1 < steps {
        (seen.step + 1, seen.pass, "waiting")
    } else if seen.pass < seen.repeat {
        (0, seen.pass + 1, "waiting")
    } else if has_fallback {
        (steps, seen.pass, "waiting")
    } else {
        (seen.step, seen.pass, "exhausted")
    };
    let moved = sqlx::query(
        "UPDATE escalations SET step = $2, pass = $3, state = $4, rejected = '[]', deadline_at = NULL, updated_at = $5 \
         WHERE incident_id = $1 AND state = 'waiting' AND step = $6 AND pass = $7",
    )
    .bind(seen.incident_id)
    .bind(step)
    .bind(pass)
    .bind(state)
    .bind(now)
    .bind(seen.step)
    .bind(seen.pass)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if moved == 0 {
        return Ok(false);
    }
    let ended = match why {
        Ended::TimedOut => "timed_out",
        Ended::AllRejected => "all_rejected",
    };
    record(conn, seen.incident_id, "step_ended", None, json!({"step": step_label(seen), "why": ended}), now).await?;
    if state == "exhausted" {
        tracing::warn!(incident = seen.incident_id, "escalation exhausted: nobody accepted");
        let detail = json!({"message": "every step was notified and nobody accepted; the incident stays open"});
        return record(conn, seen.incident_id, "exhausted", None, detail, now).await.map(|()| true);
    }
    if step == 0 {
        record(conn, seen.incident_id, "looped", None, json!({"pass": pass + 1}), now).await?;
    }
    let row = load(conn, seen.incident_id).await?.ok_or_else(|| StoreError::NotFound("escalation".into()))?;
    notify_step(conn, &row, "escalated", now).await?;
    Ok(true)
}

/// A contact rejected notification `row.step/pass`: when everyone in that
/// step (still under way) has, the step ends.
pub async fn rejected(
    conn: &mut AnyConnection,
    incident: i64,
    contact: &str,
    step: Option<i64>,
    pass: Option<i64>,
    now: Millis,
) -> store::Result<()> {
    let Some(row) = load(conn, incident).await? else { return Ok(()) };
    if row.state != "waiting" || Some(row.step) != step || Some(row.pass) != pass {
        return Ok(());
    }
    let mut who: Vec<String> = serde_json::from_str(&row.rejected).unwrap_or_default();
    if !who.iter().any(|w| w == contact) {
        who.push(contact.to_string());
    }
    let everyone: Vec<String> = row
        .current()?
        .map(|s| s.notify.iter().map(|t| t.split(':').next().unwrap_or(t).to_string()).collect())
        .unwrap_or_default();
    if everyone.iter().all(|c| who.contains(c)) {
        advance(conn, &row, Ended::AllRejected, now).await?;
    } else {
        sqlx::query("UPDATE escalations SET rejected = $2, updated_at = $3 WHERE incident_id = $1")
            .bind(incident)
            .bind(serde_json::to_string(&who).unwrap_or_default())
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Stops an escalation (the incident was resolved).
pub async fn stop(conn: &mut AnyConnection, incident: i64, now: Millis) -> store::Result<()> {
    sqlx::query(
        "UPDATE escalations SET state = 'stopped', updated_at = $2 WHERE incident_id = $1 AND state <> 'accepted'",
    )
    .bind(incident)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Escalations whose step is over at `now`, and suppressed ones to look at
/// again.
pub async fn due(db: &store::Db, now: Millis) -> store::Result<(Vec<Row>, Vec<(i64, String)>)> {
    let due: Vec<Row> = sqlx::query_as(
        "SELECT * FROM escalations WHERE state = 'waiting' AND deadline_at <= $1 ORDER BY deadline_at LIMIT 500",
    )
    .bind(now)
    .fetch_all(db.reader())
    .await?;
    let held: Vec<(i64, String)> = sqlx::query_as(
        "SELECT e.incident_id, i.source FROM escalations e JOIN incidents i ON i.id = e.incident_id \
         WHERE e.state = 'suppressed' AND i.state = 'triggered'",
    )
    .fetch_all(db.reader())
    .await?;
    Ok((due, held))
}

/// Starts notifying a suppressed escalation whose window or silence is over.
pub async fn release(conn: &mut AnyConnection, incident: i64, now: Millis) -> store::Result<()> {
    let Some(row) = load(conn, incident).await? else { return Ok(()) };
    let claimed =
        sqlx::query("UPDATE escalations SET state = 'waiting' WHERE incident_id = $1 AND state = 'suppressed'")
            .bind(incident)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    if claimed == 0 {
        return Ok(());
    }
    let detail = json!({"message": "no window or silence holds it back any more"});
    record(conn, incident, "unsuppressed", None, detail, now).await?;
    notify_step(conn, &row, "triggered", now).await
}
