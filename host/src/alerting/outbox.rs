//! The outbox: every notification is a row written in the transaction of
//! the event that causes it, then delivered by [`Deliverer`]s.
//!
//! A row is claimed with a lease (`pending` -> `sending`); a controller
//! that dies mid-delivery leaves the lease to lapse and the row goes back
//! to `pending`, to be sent again with the same idempotency key (its id).
//! Delivery walks the route's gateways in precedence order: a failure that
//! says another gateway may work fails over at once; one that says retry
//! waits (exponential backoff) and tries the same gateway again, up to
//! [`ATTEMPTS_PER_GATEWAY`]; when every gateway has failed the route is
//! tried again from the first until `give_up_after`.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use sqlx::AnyConnection;
use tocsin_runtime::{Contact, Delivery, DeliveryCall, Event, Grant, Links, Notification};

use super::incidents::record;
use super::links::{Action, Claim, LinkKey, Signer};
use super::model::{Gateway, GatewayTotals, Route};
use super::{Rules, directory, suppress};
use crate::catalog::Catalog;
use crate::metrics::{GatewayLabels, Metrics, OutcomeLabels};
use crate::model::Millis;
use crate::store::{self, Db};

pub const ATTEMPTS_PER_GATEWAY: i64 = 3;
/// A row being delivered is leased this long; past it, another worker may
/// take it over.
const LEASE_MS: i64 = 90_000;

pub struct NewNotification {
    pub incident: i64,
    /// `triggered`, `escalated`, `acknowledged`, `resolved`.
    pub event: String,
    pub step: Option<i64>,
    pub pass: Option<i64>,
    pub contact: String,
    pub channel: String,
    pub address: String,
    pub source: String,
}

pub async fn enqueue(conn: &mut AnyConnection, n: &NewNotification, now: Millis) -> store::Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO outbox (incident_id, event, step, pass, contact, channel, address, source, state, \
         gateway_index, attempt, next_attempt_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, 0, $9, $9) RETURNING id",
    )
    .bind(n.incident)
    .bind(&n.event)
    .bind(n.step)
    .bind(n.pass)
    .bind(&n.contact)
    .bind(&n.channel)
    .bind(&n.address)
    .bind(&n.source)
    .bind(now)
    .fetch_one(conn)
    .await?)
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Row {
    pub id: i64,
    pub incident_id: i64,
    pub event: String,
    pub step: Option<i64>,
    pub pass: Option<i64>,
    pub contact: String,
    pub channel: String,
    pub address: String,
    pub source: String,
    pub state: String,
    pub gateway_index: i64,
    pub attempt: i64,
    pub next_attempt_at: i64,
    pub lease_until: Option<i64>,
    pub created_at: i64,
    pub response: Option<String>,
}

const COLUMNS: &str = "id, incident_id, event, step, pass, contact, channel, address, source, state, gateway_index, \
                       attempt, next_attempt_at, lease_until, created_at, response";

pub async fn get(conn: &mut AnyConnection, id: i64) -> store::Result<Option<Row>> {
    let sql = format!("SELECT {COLUMNS} FROM outbox WHERE id = $1");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(conn).await?)
}

/// Puts rows whose delivery lease lapsed (their worker died) back.
pub async fn recover(db: &Db, now: Millis) -> store::Result<u64> {
    let n = sqlx::query("UPDATE outbox SET state = 'pending' WHERE state = 'sending' AND lease_until < $1")
        .bind(now)
        .execute(db.writer())
        .await?
        .rows_affected();
    if n > 0 {
        tracing::warn!(notifications = n, "deliveries whose worker stopped are taken up again");
    }
    Ok(n)
}

/// Takes up to `limit` due rows.
pub async fn claim(db: &Db, now: Millis, limit: i64) -> store::Result<Vec<Row>> {
    // The outer `state = 'pending'` makes a row claimed by a concurrent
    // controller (PostgreSQL) drop out when its lock is released.
    let sql = format!(
        "UPDATE outbox SET state = 'sending', lease_until = $1 \
         WHERE state = 'pending' AND id IN \
           (SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= $2 ORDER BY id LIMIT $3) \
         RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(now + LEASE_MS)
        .bind(now)
        .bind(limit)
        .fetch_all(db.writer())
        .await?)
}

/// The route for a channel and source: one naming a matching source wins
/// over one for any source; then by name.
pub async fn route_for(conn: &mut AnyConnection, channel: &str, source: &str) -> store::Result<Option<Route>> {
    let routes: Vec<Route> = directory::list(conn, directory::ROUTES).await?;
    let routes = routes.into_iter().filter(|r| r.channel == channel);
    let mut fallback = None;
    for route in routes {
        if route.sources.is_empty() {
            fallback.get_or_insert(route);
        } else if suppress::matches(&route.sources, source) {
            return Ok(Some(route));
        }
    }
    Ok(fallback)
}

/// Delivers claimed rows through the gateways' notifier plugins.
pub struct Deliverer {
    pub db: Db,
    pub catalog: Catalog,
    pub signer: Signer,
    pub rules: Rules,
    pub metrics: Arc<Metrics>,
}

/// What one attempt came to.
enum Outcome {
    Delivered { message_id: String, detail: String },
    Failed { message: String, retry: bool, failover: bool },
}

impl Deliverer {
    pub async fn deliver(&self, row: Row) {
        if let Err(e) = self.try_deliver(&row).await {
            // The lease lapses and another pass takes the row again.
            tracing::warn!(notification = row.id, error = %e, "delivering a notification failed; it will be retried");
        }
    }

    async fn try_deliver(&self, row: &Row) -> store::Result<()> {
        let mut conn = self.db.reader().acquire().await?;
        let incident: Option<(String, String, String, String)> =
            sqlx::query_as("SELECT state, title, message, severity FROM incidents WHERE id = $1")
                .bind(row.incident_id)
                .fetch_optional(&mut *conn)
                .await?;
        let Some((state, title, message, severity)) = incident else {
            return self.finish(row, "cancelled", None, "the incident no longer exists").await;
        };
        if state != "triggered" && matches!(row.event.as_str(), "triggered" | "escalated") {
            return self.finish(row, "cancelled", None, &format!("the incident was {state} meanwhile")).await;
        }
        let Some(route) = route_for(&mut conn, &row.channel, &row.source).await? else {
            let why = format!("no route delivers the {} channel (add one: tocsin route add)", row.channel);
            return self.finish(row, "failed", None, &why).await;
        };
        if route.gateways.is_empty() {
            return self.finish(row, "failed", None, &format!("route {} has no gateways", route.name)).await;
        }
        let index = (row.gateway_index as usize) % route.gateways.len();
        let gateway = &route.gateways[index];
        let found: Option<Gateway> =
            directory::get_opened(&mut conn, self.db.keys(), directory::GATEWAYS, gateway).await?;
        drop(conn);
        let started = Instant::now();
        let outcome = match found {
            None => {
                Outcome::Failed { message: format!("gateway {gateway} does not exist"), retry: false, failover: true }
            }
            Some(g) => {
                let key = self.signer.current().await?;
                let notification = self.notification(row, &key, &title, &message, &severity);
                self.call(&g, notification).await
            }
        };
        let latency_ms = started.elapsed().as_millis() as i64;
        self.metrics
            .notification_seconds
            .get_or_create(&GatewayLabels { gateway: gateway.clone() })
            .observe(started.elapsed().as_secs_f64());
        self.settle(row, &route, index, gateway, outcome, latency_ms).await
    }

    async fn call(&self, gateway: &Gateway, notification: Notification) -> Outcome {
        let plugin = match self.catalog.get(&self.db, &gateway.plugin).await {
            Ok(p) => p,
            Err(e) => return Outcome::Failed { message: e.to_string(), retry: false, failover: true },
        };
        let mut grants: Vec<Grant> = gateway.allow.iter().filter_map(|g| g.parse().ok()).collect();
        grants.extend(tocsin_runtime::implied_grants(&gateway.config));
        grants.extend(tocsin_runtime::implied_grants(&tocsin_runtime::schema_defaults(&plugin.info().config_schema)));
        let report = plugin
            .deliver(DeliveryCall {
                config: gateway.config.to_string(),
                notification,
                allow: grants,
                timeout: gateway.timeout,
            })
            .await;
        match report.outcome {
            Ok(Delivery::Delivered { message_id, detail }) => Outcome::Delivered { message_id, detail },
            Ok(Delivery::Failed { message, retry, failover }) => Outcome::Failed { message, retry, failover },
            // A plugin that traps or times out may work elsewhere.
            Err(e) => Outcome::Failed { message: e.to_string(), retry: true, failover: true },
        }
    }

    fn notification(&self, row: &Row, key: &LinkKey, title: &str, message: &str, severity: &str) -> Notification {
        let base = self.rules.public_url.trim_end_matches('/');
        let expires_at = crate::model::now_ms() + self.rules.link_ttl.as_millis() as i64;
        let link = |action| key.sign(&Claim { notification: row.id, action, expires_at });
        let event = match row.event.as_str() {
            "escalated" => Event::Escalated,
            "acknowledged" => Event::Acknowledged,
            "resolved" => Event::Resolved,
            "test" => Event::Test,
            _ => Event::Triggered,
        };
        let respond = matches!(event, Event::Triggered | Event::Escalated);
        Notification {
            id: format!("tocsin-{}", row.id),
            incident: row.incident_id.to_string(),
            event,
            severity: severity.to_string(),
            title: title.to_string(),
            message: message.to_string(),
            source: row.source.clone(),
            contact: Contact { name: row.contact.clone(), channel: row.channel.clone(), address: row.address.clone() },
            links: Links {
                incident_url: Some(format!("{base}/api/v1/incidents/{}", row.incident_id)),
                accept_url: respond.then(|| format!("{base}/respond/{}", link(Action::Accept))),
                reject_url: respond.then(|| format!("{base}/respond/{}", link(Action::Reject))),
                callback_url: (respond && row.channel == "voice")
                    .then(|| format!("{base}/api/v1/callbacks/twilio/{}", link(Action::Call))),
            },
        }
    }

    /// Records the attempt and decides what happens to the row next.
    async fn settle(
        &self,
        row: &Row,
        route: &Route,
        index: usize,
        gateway: &str,
        outcome: Outcome,
        latency_ms: i64,
    ) -> store::Result<()> {
        let now = crate::model::now_ms();
        let mut tx = self.db.writer().begin().await?;
        let still_ours: Option<i64> =
            sqlx::query_scalar("SELECT id FROM outbox WHERE id = $1 AND state = 'sending' AND lease_until = $2")
                .bind(row.id)
                .bind(row.lease_until)
                .fetch_optional(&mut *tx)
                .await?;
        if still_ours.is_none() {
            tracing::warn!(notification = row.id, "the lease lapsed during delivery; another worker has the row");
            return Ok(());
        }
        let count = |outcome: &str| {
            self.metrics
                .notifications
                .get_or_create(&OutcomeLabels { gateway: gateway.to_string(), outcome: outcome.to_string() })
                .inc();
        };
        match outcome {
            Outcome::Delivered { message_id, detail } => {
                sqlx::query(
                    "UPDATE outbox SET state = 'delivered', delivered_at = $2, gateway = $3, message_id = $4, \
                     attempt = attempt + 1 WHERE id = $1",
                )
                .bind(row.id)
                .bind(now)
                .bind(gateway)
                .bind(&message_id)
                .execute(&mut *tx)
                .await?;
                attempt(&mut tx, row.id, gateway, now, "delivered", Some(&message_id), None, latency_ms).await?;
                let d = json!({"notification": row.id, "contact": row.contact, "channel": row.channel,
                               "gateway": gateway, "message_id": message_id, "detail": detail});
                record(&mut tx, row.incident_id, "delivered", None, d, now).await?;
                count("delivered");
                tracing::info!(notification = row.id, gateway, contact = %row.contact, channel = %row.channel, latency_ms, "notification delivered");
            }
            Outcome::Failed { message, retry, failover } => {
                let tries = row.attempt + 1;
                let next_gateway = index + 1 < route.gateways.len();
                let age = now - row.created_at;
                let (kind, index, tries, wait) = if failover && next_gateway {
                    ("failed_over", index + 1, 0, 0)
                } else if retry && tries < ATTEMPTS_PER_GATEWAY {
                    ("failed", index, tries, backoff(tries))
                } else if next_gateway {
                    ("failed_over", index + 1, 0, 0)
                } else if age < self.rules.give_up_after.as_millis() as i64 {
                    ("failed", 0, 0, backoff(tries + 2))
                } else {
                    ("given_up", index, tries, 0)
                };
                let state = if kind == "given_up" { "failed" } else { "pending" };
                sqlx::query(
                    "UPDATE outbox SET state = $2, gateway_index = $3, attempt = $4, next_attempt_at = $5, \
                     last_error = $6, lease_until = NULL WHERE id = $1",
                )
                .bind(row.id)
                .bind(state)
                .bind(index as i64)
                .bind(tries)
                .bind(now + wait)
                .bind(&message)
                .execute(&mut *tx)
                .await?;
                attempt(&mut tx, row.id, gateway, now, kind, None, Some(&message), latency_ms).await?;
                let next = route.gateways.get(index).filter(|_| kind == "failed_over");
                let d = json!({"notification": row.id, "contact": row.contact, "channel": row.channel,
                               "gateway": gateway, "error": message, "next_gateway": next, "retry_in_ms": wait});
                let event = if kind == "failed_over" { "failed_over" } else { "delivery_failed" };
                record(&mut tx, row.incident_id, event, None, d, now).await?;
                count(kind);
                tracing::warn!(notification = row.id, gateway, error = %message, outcome = kind, "notification not delivered");
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Ends a row without a gateway attempt.
    async fn finish(&self, row: &Row, state: &str, gateway: Option<&str>, why: &str) -> store::Result<()> {
        let now = crate::model::now_ms();
        let mut tx = self.db.writer().begin().await?;
        sqlx::query("UPDATE outbox SET state = $2, last_error = $3, gateway = $4 WHERE id = $1 AND state = 'sending'")
            .bind(row.id)
            .bind(state)
            .bind(why)
            .bind(gateway)
            .execute(&mut *tx)
            .await?;
        let kind = if state == "cancelled" { "notification_cancelled" } else { "delivery_failed" };
        let d = json!({"notification": row.id, "contact": row.contact, "channel": row.channel, "error": why});
        record(&mut tx, row.incident_id, kind, None, d, now).await?;
        tx.commit().await?;
        if state == "failed" {
            tracing::error!(notification = row.id, error = why, "a notification cannot be delivered");
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
async fn attempt(
    conn: &mut AnyConnection,
    outbox: i64,
    gateway: &str,
    at: Millis,
    outcome: &str,
    message_id: Option<&str>,
    error: Option<&str>,
    latency_ms: i64,
) -> store::Result<()> {
    sqlx::query(
        "INSERT INTO deliveries (outbox_id, gateway, at, outcome, message_id, error, latency_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(outbox)
    .bind(gateway)
    .bind(at)
    .bind(outcome)
    .bind(message_id)
    .bind(error)
    .bind(latency_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// 2 s, 4 s, 8 s, ... up to a minute, with a little jitter so that many
/// failed rows do not come back in one burst.
fn backoff(tries: i64) -> i64 {
    let base = 1000i64 << tries.clamp(1, 6);
    base.min(60_000) + rand::random_range(0..250)
}

/// Per-gateway totals, every gateway listed.
pub async fn totals(db: &Db) -> store::Result<Vec<GatewayTotals>> {
    Ok(sqlx::query_as(
        "SELECT g.name AS gateway, \
           COALESCE(SUM(CASE WHEN d.outcome = 'delivered' THEN 1 ELSE 0 END), 0) AS sent, \
           COALESCE(SUM(CASE WHEN d.outcome = 'failed' THEN 1 ELSE 0 END), 0) AS failed, \
           COALESCE(SUM(CASE WHEN d.outcome = 'failed_over' THEN 1 ELSE 0 END), 0) AS failed_over, \
           COALESCE(SUM(CASE WHEN d.outcome = 'given_up' THEN 1 ELSE 0 END), 0) AS given_up, \
           AVG(CASE WHEN d.outcome = 'delivered' THEN CAST(d.latency_ms AS DOUBLE PRECISION) END) AS latency_avg_ms, \
           MAX(CASE WHEN d.outcome = 'delivered' THEN d.latency_ms END) AS latency_max_ms \
         FROM gateways g LEFT JOIN deliveries d ON d.gateway = g.name GROUP BY g.name ORDER BY g.name",
    )
    .fetch_all(db.reader())
    .await?)
}
