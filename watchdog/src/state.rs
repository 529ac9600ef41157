//! The watchdog's own state in SQLite: each component's newest judgement,
//! 5-minute and daily rollups for the status page, its incidents with their
//! timelines, the actions it took and the alarms it sent.
//!
//! A round is written in one transaction, so the page never shows a state
//! without its incident, nor an incident without its state.

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlitePool, Transaction};

use crate::model::{Health, Millis, Observation};

pub const BUCKET_MS: Millis = 5 * 60_000;
pub const DAY_MS: Millis = 86_400_000;

#[derive(Clone)]
pub struct State {
    pool: SqlitePool,
}

/// A component whose health changed this round.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub from: Option<Health>,
    pub to: Health,
    pub detail: String,
    /// The incident it opened or belongs to.
    pub incident: Option<i64>,
}

impl State {
    pub async fn open(path: &Path) -> anyhow::Result<State> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(State { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Writes one round of observations; returns the components whose
    /// health changed (or that are new and not up).
    pub async fn record(&self, now: Millis, observations: &[Observation]) -> sqlx::Result<Vec<Transition>> {
        let mut tx = self.pool.begin().await?;
        let mut transitions = Vec::new();
        for o in observations {
            let before: Option<(String,)> = sqlx::query_as("SELECT state FROM components WHERE id = ?")
                .bind(&o.id)
                .fetch_optional(&mut *tx)
                .await?;
            let from = before.map(|(s,)| Health::parse(&s));
            let changed = from != Some(o.health);
            sqlx::query(
                "INSERT INTO components (id, kind, name, state, detail, latency_ms, since, seen_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) \
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state, detail = excluded.detail, \
                   latency_ms = excluded.latency_ms, seen_at = excluded.seen_at, \
                   since = CASE WHEN components.state = excluded.state THEN components.since ELSE excluded.since END",
            )
            .bind(&o.id)
            .bind(&o.kind)
            .bind(&o.name)
            .bind(o.health.as_str())
            .bind(&o.detail)
            .bind(o.latency_ms)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            rollup(&mut tx, o, now).await?;
            if changed && !(from.is_none() && o.health == Health::Up) {
                let incident = track_incident(&mut tx, o, from, now).await?;
                transitions.push(Transition {
                    id: o.id.clone(),
                    name: o.name.clone(),
                    kind: o.kind.clone(),
                    from,
                    to: o.health,
                    detail: o.detail.clone(),
                    incident,
                });
            }
        }
        tx.commit().await?;
        Ok(transitions)
    }

    /// Adds a line to incident `id` (open or just resolved).
    pub async fn note_incident(&self, id: i64, now: Millis, text: &str) -> sqlx::Result<()> {
        add_event(&mut *self.pool.acquire().await?, id, now, text).await
    }

    /// Adds a line to the open incident of `component`, if it has one.
    pub async fn note(&self, component: &str, now: Millis, text: &str) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO incident_events (incident_id, at, text) \
             SELECT id, ?2, ?3 FROM incidents WHERE component = ?1 AND resolved_at IS NULL",
        )
        .bind(component)
        .bind(now)
        .bind(text)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn record_action(
        &self,
        now: Millis,
        kind: &str,
        target: &str,
        evidence: &str,
        agreed_by: &[String],
        outcome: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO actions (at, kind, target, evidence, agreed_by, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(now)
        .bind(kind)
        .bind(target)
        .bind(evidence)
        .bind(agreed_by.join(","))
        .bind(outcome)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn record_alarm(
        &self,
        now: Millis,
        component: &str,
        event: &str,
        text: &str,
        gateway: Option<&str>,
        outcome: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO alarms (at, component, event, text, gateway, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(now)
        .bind(component)
        .bind(event)
        .bind(text)
        .bind(gateway)
        .bind(outcome)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets components not seen for a day (a removed node) and history older than `keep`.
    pub async fn prune(&self, now: Millis, keep_ms: Millis) -> sqlx::Result<()> {
        let horizon = now - keep_ms;
        sqlx::query("DELETE FROM buckets WHERE start < ?").bind(horizon).execute(&self.pool).await?;
        sqlx::query("DELETE FROM days WHERE day < ?").bind(horizon / DAY_MS).execute(&self.pool).await?;
        sqlx::query("DELETE FROM components WHERE seen_at < ?").bind(now - DAY_MS).execute(&self.pool).await?;
        sqlx::query(
            "DELETE FROM incident_events WHERE incident_id IN \
             (SELECT id FROM incidents WHERE resolved_at IS NOT NULL AND resolved_at < ?)",
        )
        .bind(horizon)
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM incidents WHERE resolved_at IS NOT NULL AND resolved_at < ?")
            .bind(horizon)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

async fn add_event(conn: &mut sqlx::SqliteConnection, id: i64, at: Millis, text: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO incident_events (incident_id, at, text) VALUES (?1, ?2, ?3)")
        .bind(id)
        .bind(at)
        .bind(text)
        .execute(conn)
        .await?;
    Ok(())
}

async fn rollup(tx: &mut Transaction<'_, sqlx::Sqlite>, o: &Observation, now: Millis) -> sqlx::Result<()> {
    let (up, degraded, down) = match o.health {
        Health::Up => (1, 0, 0),
        Health::Degraded => (0, 1, 0),
        Health::Down => (0, 0, 1),
    };
    sqlx::query(
        "INSERT INTO buckets (component, start, up, degraded, down, latency_sum, latency_n, latency_max) \
         VALUES (?1, ?2, ?3, ?4, ?5, COALESCE(?6, 0), ?7, ?6) \
         ON CONFLICT (component, start) DO UPDATE SET up = up + excluded.up, degraded = degraded + excluded.degraded, \
           down = down + excluded.down, latency_sum = latency_sum + excluded.latency_sum, \
           latency_n = latency_n + excluded.latency_n, \
           latency_max = MAX(COALESCE(latency_max, excluded.latency_max), COALESCE(excluded.latency_max, latency_max))",
    )
    .bind(&o.id)
    .bind(now - now.rem_euclid(BUCKET_MS))
    .bind(up)
    .bind(degraded)
    .bind(down)
    .bind(o.latency_ms)
    .bind(o.latency_ms.is_some() as i64)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO days (component, day, up, degraded, down) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (component, day) DO UPDATE SET up = up + excluded.up, degraded = degraded + excluded.degraded, \
           down = down + excluded.down",
    )
    .bind(&o.id)
    .bind(now.div_euclid(DAY_MS))
    .bind(up)
    .bind(degraded)
    .bind(down)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Opens an incident when a component leaves `up`, notes a change of
/// severity, and resolves it when the component is up again.
async fn track_incident(
    tx: &mut Transaction<'_, sqlx::Sqlite>,
    o: &Observation,
    from: Option<Health>,
    now: Millis,
) -> sqlx::Result<Option<i64>> {
    let open: Option<(i64,)> = sqlx::query_as("SELECT id FROM incidents WHERE component = ? AND resolved_at IS NULL")
        .bind(&o.id)
        .fetch_optional(&mut **tx)
        .await?;
    match (open, o.health) {
        (None, Health::Up) => Ok(None),
        (None, health) => {
            let title = format!(
                "{} {}",
                crate::page::name_for_people(&o.kind, &o.name),
                if health == Health::Down { "down" } else { "degraded" }
            );
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO incidents (component, title, severity, opened_at) VALUES (?1, ?2, ?3, ?4) RETURNING id",
            )
            .bind(&o.id)
            .bind(&title)
            .bind(health.as_str())
            .bind(now)
            .fetch_one(&mut **tx)
            .await?;
            add_event(tx, id, now, &format!("{}: {}", health.as_str(), o.detail)).await?;
            Ok(Some(id))
        }
        (Some((id,)), Health::Up) => {
            sqlx::query("UPDATE incidents SET resolved_at = ? WHERE id = ?")
                .bind(now)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            add_event(tx, id, now, &format!("recovered: {}", o.detail)).await?;
            Ok(Some(id))
        }
        (Some((id,)), health) => {
            if health == Health::Down && from != Some(Health::Down) {
                sqlx::query("UPDATE incidents SET severity = 'down', title = ?2 WHERE id = ?1")
                    .bind(id)
                    .bind(format!("{} down", crate::page::name_for_people(&o.kind, &o.name)))
                    .execute(&mut **tx)
                    .await?;
            }
            add_event(tx, id, now, &format!("{}: {}", health.as_str(), o.detail)).await?;
            Ok(Some(id))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_component_going_down_and_back_is_one_incident_with_its_timeline() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("s.db")).await.unwrap();
        let obs = |h| vec![Observation::new("controller", "c1", h, format!("{h:?}")).latency(3.0)];
        assert!(state.record(1_000, &obs(Health::Up)).await.unwrap().is_empty(), "a new healthy component is no news");
        let t = state.record(2_000, &obs(Health::Down)).await.unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].from, t[0].to), (Some(Health::Up), Health::Down));
        assert!(state.record(3_000, &obs(Health::Down)).await.unwrap().is_empty());
        let t = state.record(4_000, &obs(Health::Up)).await.unwrap();
        assert_eq!(t[0].incident, t[0].incident.and(Some(1)));
        let (title, resolved): (String, Option<i64>) =
            sqlx::query_as("SELECT title, resolved_at FROM incidents").fetch_one(state.pool()).await.unwrap();
        assert_eq!((title.as_str(), resolved), ("Controller c1 down", Some(4_000)));
        let events: Vec<(String,)> =
            sqlx::query_as("SELECT text FROM incident_events ORDER BY id").fetch_all(state.pool()).await.unwrap();
        assert_eq!(events.len(), 2);
        let (up, down, n): (i64, i64, i64) =
            sqlx::query_as("SELECT up, down, latency_n FROM buckets").fetch_one(state.pool()).await.unwrap();
        assert_eq!((up, down, n), (2, 2, 4));
    }
}
