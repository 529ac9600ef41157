//! The life of an incident: opened by a confirmed failure or an inbound
//! alert, updated while it fires, acknowledged when someone accepts,
//! resolved by recovery (after `recover_after` good runs in a row), by an
//! inbound `resolved`, or by hand. A new failure with the same key within
//! `reopen_window` of the resolution reopens the same incident.
//!
//! Everything here runs inside the caller's transaction, so an incident,
//! its timeline, its escalation and the notifications it causes are written
//! together or not at all.

use std::collections::HashMap;

use serde_json::json;
use sqlx::AnyConnection;

use super::Rules;
use super::{escalation, outbox};
use crate::model::{CheckStatus, Millis};
use crate::store::{self, Col, Dialect};

/// What opens or updates an incident.
#[derive(Clone, Debug)]
pub struct Trigger {
    pub dedup_key: String,
    pub source: String,
    pub check_id: Option<i64>,
    pub title: String,
    pub message: String,
    pub severity: String,
    pub policy: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    New,
    Reopened,
    /// It was open already: updated.
    Existing,
}

pub async fn record(
    conn: &mut AnyConnection,
    incident: i64,
    kind: &str,
    actor: Option<&str>,
    detail: serde_json::Value,
    now: Millis,
) -> store::Result<()> {
    sqlx::query("INSERT INTO incident_events (incident_id, at, kind, actor, detail) VALUES ($1, $2, $3, $4, $5)")
        .bind(incident)
        .bind(now)
        .bind(kind)
        .bind(actor)
        .bind(detail.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Opens, reopens or updates the incident of `t.dedup_key`.
pub async fn trigger(
    conn: &mut AnyConnection,
    rules: &Rules,
    t: &Trigger,
    now: Millis,
) -> store::Result<(i64, Opened)> {
    let last: Option<(i64, String, Option<i64>)> =
        sqlx::query_as("SELECT id, state, resolved_at FROM incidents WHERE dedup_key = $1 ORDER BY id DESC LIMIT 1")
            .bind(&t.dedup_key)
            .fetch_optional(&mut *conn)
            .await?;
    let reopen_after = now - rules.reopen_window.as_millis() as i64;
    match last {
        Some((id, state, _)) if state != "resolved" => {
            sqlx::query("UPDATE incidents SET message = $2, good_runs = 0, updated_at = $3 WHERE id = $1")
                .bind(id)
                .bind(&t.message)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            Ok((id, Opened::Existing))
        }
        Some((id, _, Some(resolved_at))) if resolved_at >= reopen_after => {
            sqlx::query(
                "UPDATE incidents SET state = 'triggered', message = $2, good_runs = 0, updated_at = $3, \
                 acknowledged_at = NULL, owner = NULL, resolved_at = NULL, resolved_by = NULL, \
                 reopened = reopened + 1 WHERE id = $1",
            )
            .bind(id)
            .bind(&t.message)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            record(conn, id, "reopened", None, json!({"message": t.message}), now).await?;
            tracing::info!(incident = id, source = %t.source, "incident reopened");
            escalation::start(conn, id, t.policy.as_deref(), &t.source, now).await?;
            Ok((id, Opened::Reopened))
        }
        _ => {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO incidents (dedup_key, source, check_id, title, message, severity, policy, state, \
                 opened_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'triggered', $8, $8) RETURNING id",
            )
            .bind(&t.dedup_key)
            .bind(&t.source)
            .bind(t.check_id)
            .bind(&t.title)
            .bind(&t.message)
            .bind(&t.severity)
            .bind(&t.policy)
            .bind(now)
            .fetch_one(&mut *conn)
            .await?;
            record(conn, id, "opened", None, json!({"title": t.title, "message": t.message}), now).await?;
            tracing::info!(incident = id, source = %t.source, title = %t.title, "incident opened");
            escalation::start(conn, id, t.policy.as_deref(), &t.source, now).await?;
            Ok((id, Opened::New))
        }
    }
}

/// Resolves an open incident and stops its escalation; false when it was
/// not open.
pub async fn resolve(conn: &mut AnyConnection, id: i64, by: &str, reason: &str, now: Millis) -> store::Result<bool> {
    let done = sqlx::query(
        "UPDATE incidents SET state = 'resolved', resolved_at = $2, resolved_by = $3, updated_at = $2 \
         WHERE id = $1 AND state <> 'resolved'",
    )
    .bind(id)
    .bind(now)
    .bind(by)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if done == 0 {
        return Ok(false);
    }
    record(conn, id, "resolved", Some(by), json!({"reason": reason}), now).await?;
    escalation::stop(conn, id, now).await?;
    tell_resolved(conn, id, now).await?;
    tracing::info!(incident = id, by, reason, "incident resolved");
    Ok(true)
}

/// Tells whoever was reached about the incident that it is over, on the
/// channels that reached them (not by phone call: nobody wants a call to
/// say all is well). A PagerDuty gateway resolves its own incident so.
async fn tell_resolved(conn: &mut AnyConnection, id: i64, now: Millis) -> store::Result<()> {
    let reached: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT DISTINCT contact, channel, address, source FROM outbox \
         WHERE incident_id = $1 AND state = 'delivered' AND event <> 'resolved' AND channel <> 'voice' \
         ORDER BY contact, channel",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    for (contact, channel, address, source) in reached {
        let n = outbox::NewNotification {
            incident: id,
            event: "resolved".into(),
            step: None,
            pass: None,
            contact: contact.clone(),
            channel: channel.clone(),
            address,
            source,
        };
        let notification = outbox::enqueue(conn, &n, now).await?;
        let detail = json!({"notification": notification, "contact": contact, "channel": channel, "event": "resolved"});
        record(conn, id, "notified", None, detail, now).await?;
    }
    Ok(())
}

/// Someone owns it now; the escalation stops. False when it was not
/// waiting for anyone (resolved, or acknowledged already).
pub async fn acknowledge(conn: &mut AnyConnection, id: i64, who: &str, via: &str, now: Millis) -> store::Result<bool> {
    let done = sqlx::query(
        "UPDATE incidents SET state = 'acknowledged', acknowledged_at = $2, owner = $3, updated_at = $2 \
         WHERE id = $1 AND state = 'triggered'",
    )
    .bind(id)
    .bind(now)
    .bind(who)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if done == 0 {
        return Ok(false);
    }
    record(conn, id, "accepted", Some(who), json!({"via": via}), now).await?;
    sqlx::query("UPDATE escalations SET state = 'accepted', updated_at = $2 WHERE incident_id = $1")
        .bind(id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    tracing::info!(incident = id, owner = who, via, "incident accepted");
    Ok(true)
}

/// A check's state as a batch of results moves it.
#[derive(Clone, Debug)]
pub struct CheckChange {
    pub check_id: i64,
    pub name: String,
    pub before: CheckStatus,
    /// `None`: the state holds (a failure awaiting confirmation).
    pub after: Option<CheckStatus>,
    pub message: String,
    pub policy: Option<String>,
}

/// Opens incidents for checks that went down, counts good runs towards
/// recovery for those that have one open, and resolves the recovered.
pub async fn on_check_changes(
    conn: &mut AnyConnection,
    dialect: &Dialect,
    rules: &Rules,
    changes: &[CheckChange],
    now: Millis,
) -> store::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = changes.iter().map(|c| json!({"id": c.check_id})).collect();
    let sql = format!(
        "SELECT i.id, i.check_id, i.good_runs FROM {} JOIN incidents i ON i.check_id = r.id \
         WHERE i.state <> 'resolved'",
        dialect.json_rows(&[("id", Col::Int)])
    );
    let open: HashMap<i64, (i64, i64)> = sqlx::query_as::<_, (i64, i64, i64)>(sqlx::AssertSqlSafe(sql))
        .bind(serde_json::Value::Array(rows).to_string())
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|(id, check, good)| (check, (id, good)))
        .collect();
    for change in changes {
        let incident = open.get(&change.check_id).copied();
        match (change.after, incident) {
            (Some(CheckStatus::Down), None) if change.before != CheckStatus::Down => {
                let t = Trigger {
                    dedup_key: format!("check:{}", change.check_id),
                    source: format!("check:{}", change.name),
                    check_id: Some(change.check_id),
                    title: format!("{} is down", change.name),
                    message: change.message.clone(),
                    severity: "critical".into(),
                    policy: change.policy.clone(),
                };
                trigger(conn, rules, &t, now).await?;
            }
            (Some(CheckStatus::Down), Some((id, good))) if good > 0 => {
                sqlx::query("UPDATE incidents SET good_runs = 0, updated_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                record(conn, id, "failing_again", None, json!({"message": change.message}), now).await?;
            }
            (Some(CheckStatus::Up | CheckStatus::Degraded), Some((id, good))) => {
                let good = good + 1;
                if good >= rules.recover_after as i64 {
                    let reason = format!("recovered: {good} good runs in a row");
                    resolve(conn, id, "tocsin", &reason, now).await?;
                } else {
                    sqlx::query("UPDATE incidents SET good_runs = $2, updated_at = $3 WHERE id = $1")
                        .bind(id)
                        .bind(good)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                    record(conn, id, "recovering", None, json!({"good_runs": good, "message": change.message}), now)
                        .await?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}
