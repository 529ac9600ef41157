//! Alerting: incidents, escalation until someone accepts, and
//! notifications that always get out.
//!
//! ```text
//!  ingest (check went down, confirmed) ─┐
//!  POST /api/v1/alerts, Alertmanager ───┼─▶ incidents ─▶ escalation ─▶ outbox rows
//!  API / CLI (ack, resolve) ────────────┘        (one transaction)        │
//!                                                                         ▼
//!  links, key presses, API ─▶ respond ─▶ escalation       worker ─▶ gateways (notifier plugins)
//! ```
//!
//! - [`incidents`]: open, update, reopen, acknowledge, resolve; the timeline.
//! - [`escalation`]: the durable state machine of a policy's steps.
//! - [`outbox`]: notifications, claimed with a lease and delivered through
//!   a route's gateways with failover and retries.
//! - [`links`]: signed, expiring, single-use accept/reject links.
//! - [`suppress`]: maintenance windows and silences.
//! - [`twilio`]: proof that a key-press callback comes from Twilio.
//! - [`directory`]: contacts, policies, gateways, routes: validation.
//!
//! Architecture Invariant: a notification exists only as an outbox row
//! written in the same transaction as the incident change that causes it;
//! nothing is sent from memory. A crash loses nothing; a notification in
//! flight during a crash is sent again with the same idempotency key.

pub mod directory;
pub mod escalation;
pub mod incidents;
pub mod links;
pub mod model;
pub mod outbox;
pub mod respond;
pub mod suppress;
pub mod twilio;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::model::now_ms;
use crate::store::Db;

/// How incidents and notifications behave.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    /// Good runs in a row that resolve a check's incident.
    pub recover_after: u32,
    /// A failure this soon after its incident was resolved reopens it.
    #[serde(with = "crate::model::wire::duration")]
    pub reopen_window: Duration,
    /// How long accept/reject links work.
    #[serde(with = "crate::model::wire::duration")]
    pub link_ttl: Duration,
    /// A notification no gateway could deliver is retried this long.
    #[serde(with = "crate::model::wire::duration")]
    pub give_up_after: Duration,
    /// Where links and callbacks point (set by `serve` from `public_url`).
    #[serde(skip)]
    pub public_url: String,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            recover_after: 2,
            reopen_window: Duration::from_secs(30 * 60),
            link_ttl: Duration::from_secs(24 * 3600),
            give_up_after: Duration::from_secs(3600),
            public_url: String::new(),
        }
    }
}

/// How many notifications one controller delivers at once.
const CONCURRENT_DELIVERIES: usize = 32;
const POLL: Duration = Duration::from_millis(200);
/// How often leases that lapsed (their worker died) are looked for: a
/// write, so not on every round; leases last 90 s anyway.
const RECOVER: Duration = Duration::from_secs(5);

/// Advances escalations whose step is over, releases suppressed ones, and
/// delivers the outbox, until `cancel`.
pub async fn run(
    db: Db,
    deliverer: Arc<outbox::Deliverer>,
    wake: Arc<Notify>,
    site: crate::sync::SiteWatch,
    cancel: CancellationToken,
) {
    let mut deliveries = tokio::task::JoinSet::new();
    let mut escalated = tokio::time::Instant::now() - POLL;
    let mut recovered = tokio::time::Instant::now() - RECOVER;
    let mut woken = true;
    loop {
        // A passive site sends nothing: its incidents, if any, are from
        // before it stepped down, and the active site alerts now.
        if !site.is_serving() {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => continue,
                _ = cancel.cancelled() => break,
            }
        }
        // Escalations on every round of the clock or when woken, not after
        // each delivery: a burst of notifications must not cost two
        // queries per row.
        if woken || escalated.elapsed() >= POLL {
            if let Err(e) = escalate(&db).await {
                tracing::warn!(error = %e, "advancing escalations failed");
            }
            escalated = tokio::time::Instant::now();
        }
        if recovered.elapsed() >= RECOVER {
            if let Err(e) = outbox::recover(&db, now_ms()).await {
                tracing::warn!(error = %e, "recovering lapsed deliveries failed");
            }
            recovered = tokio::time::Instant::now();
        }
        // Claim in batches, not one row per finished delivery.
        let room = CONCURRENT_DELIVERIES.saturating_sub(deliveries.len()) as i64;
        if room >= CONCURRENT_DELIVERIES as i64 / 4 || deliveries.is_empty() {
            match outbox::claim(&db, now_ms(), room).await {
                Ok(rows) => {
                    for row in rows {
                        let d = deliverer.clone();
                        deliveries.spawn(async move { d.deliver(row).await });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading the outbox failed"),
            }
        }
        woken = false;
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = wake.notified() => woken = true,
            // A slot is free: take the next row at once.
            Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
            _ = cancel.cancelled() => break,
        }
    }
    // Deliveries in flight finish (bounded by their gateway timeouts);
    // what is cut short is sent again after its lease lapses.
    let _ =
        tokio::time::timeout(Duration::from_secs(30), async { while deliveries.join_next().await.is_some() {} }).await;
}

async fn escalate(db: &Db) -> crate::store::Result<()> {
    let now = now_ms();
    let (due, held) = escalation::due(db, now).await?;
    for row in due {
        let mut tx = db.writer().begin().await?;
        escalation::advance(&mut tx, &row, escalation::Ended::TimedOut, now).await?;
        tx.commit().await?;
    }
    // Still held back is the common answer: read it without taking the
    // (on SQLite, only) writer.
    let mut reader = db.reader().acquire().await?;
    for (incident, source) in held {
        if suppress::why_suppressed(&mut reader, &source, now).await?.is_none() {
            let mut tx = db.writer().begin().await?;
            escalation::release(&mut tx, incident, now).await?;
            tx.commit().await?;
        }
    }
    Ok(())
}
