//! One round of probes of the platform: every controller (liveness,
//! readiness, latency), the scheduling lease, the nodes and locations, and
//! the database (connect, write, read back). Each becomes an
//! [`Observation`]; a component is down only after `down_after`
//! consecutive failures, so one lost packet is not an outage.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use sqlx::Connection;
use url::Url;

use crate::config::Config;
use crate::model::{Health, Millis, Observation};
use crate::platform::{Cluster, Node, Platform};

/// A controller as this round saw it.
#[derive(Clone, Debug)]
pub struct ControllerSeen {
    pub url: Url,
    /// Its name in the lease (`answered_by`), once it told us.
    pub name: Option<String>,
    pub health: Health,
    /// Answered `/healthz` this round.
    pub alive: bool,
}

/// Everything one round learned.
#[derive(Clone, Debug, Default)]
pub struct Round {
    pub observations: Vec<Observation>,
    pub controllers: Vec<ControllerSeen>,
    pub cluster: Option<Cluster>,
    pub nodes: Option<Vec<Node>>,
}

impl Round {
    /// The first controller (in configured order) that is up.
    pub fn healthy_controller(&self) -> Option<&ControllerSeen> {
        self.controllers.iter().find(|c| c.health == Health::Up)
    }
}

pub struct Prober {
    platform: Platform,
    timeout: Duration,
    /// Consecutive failures per component.
    failures: HashMap<String, u32>,
    /// Controllers' names by URL, remembered from their last answer.
    names: HashMap<Url, String>,
    /// Since when a heartbeating node has been running too few of its checks.
    slow_since: HashMap<String, Millis>,
}

/// A node running too few of its checks for this long is wedged.
const WEDGED_AFTER_MS: Millis = 20_000;

impl Prober {
    pub fn new(platform: Platform, timeout: Duration) -> Prober {
        Prober { platform, timeout, failures: HashMap::new(), names: HashMap::new(), slow_since: HashMap::new() }
    }

    pub async fn round(&mut self, config: &Config, now: Millis) -> Round {
        let (controllers, database) =
            tokio::join!(futures::future::join_all(config.controllers.iter().map(|u| self.controller(u))), async {
                match &config.database_url {
                    Some(url) => Some(database(url.expose_secret(), &config.name, self.timeout).await),
                    None => None,
                }
            });
        let mut round = Round::default();
        for (url, alive, ready, latency, detail, cluster) in controllers {
            let id = format!("controller:{}", authority(&url));
            let name = cluster.as_ref().map(|c| c.answered_by.clone());
            if let Some(name) = &name {
                self.names.insert(url.clone(), name.clone());
            }
            let name = name.or_else(|| self.names.get(&url).cloned());
            let health = if !alive {
                self.debounce(&id, config, Health::Down)
            } else {
                self.failures.remove(&id);
                if !ready || latency > config.slow { Health::Degraded } else { Health::Up }
            };
            let who = name.as_deref().map(|n| format!("{n}: ")).unwrap_or_default();
            let mut o = Observation::new("controller", &authority(&url), health, format!("{who}{detail}"));
            if alive {
                o = o.latency(latency.as_secs_f64() * 1000.0);
            }
            round.observations.push(o);
            round.controllers.push(ControllerSeen { url, name, health, alive });
            if round.cluster.is_none() {
                round.cluster = cluster;
            }
        }
        if let Some(db) = database {
            let o = match db {
                Ok(latency) => {
                    self.failures.remove("database");
                    let health = if latency > config.slow { Health::Degraded } else { Health::Up };
                    Observation::new(
                        "database",
                        "database",
                        health,
                        format!("wrote and read back in {} ms", latency.as_millis()),
                    )
                    .latency(latency.as_secs_f64() * 1000.0)
                }
                Err(e) => Observation::new("database", "database", self.debounce("database", config, Health::Down), e),
            };
            round.observations.push(o);
        }
        round.observations.push(self.scheduler(&round, config));
        if let Some(base) =
            round.healthy_controller().or(round.controllers.iter().find(|c| c.alive)).map(|c| c.url.clone())
        {
            match self.platform.nodes(&base).await {
                Ok(nodes) => {
                    self.judge_nodes(&nodes, config, now, &mut round.observations);
                    round.nodes = Some(nodes);
                }
                Err(e) => tracing::debug!(controller = %base, error = %e, "reading the nodes failed"),
            }
        }
        round
    }

    /// Liveness, readiness, latency and the lease as one controller answers them.
    async fn controller(&self, url: &Url) -> (Url, bool, bool, Duration, String, Option<Cluster>) {
        let (alive, latency, mut detail) = match self.platform.probe(url, "healthz").await {
            Ok((200, latency)) => (true, latency, format!("answers in {} ms", latency.as_millis())),
            Ok((status, latency)) => (false, latency, format!("/healthz answered HTTP {status}")),
            Err(e) => (false, Duration::ZERO, format!("/healthz: {e}")),
        };
        if !alive {
            return (url.clone(), false, false, latency, detail, None);
        }
        let (ready, cluster) = tokio::join!(self.platform.probe(url, "readyz"), self.platform.cluster(url));
        let ready = match ready {
            Ok((200, _)) => true,
            Ok((status, _)) => {
                detail = format!("not ready (/readyz answered HTTP {status}): its database does not take writes");
                false
            }
            Err(e) => {
                detail = format!("/readyz: {e}");
                false
            }
        };
        let cluster = match cluster {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::debug!(controller = %url, error = %e, "reading the lease failed");
                None
            }
        };
        if let Some(c) = &cluster
            && c.scheduler.as_deref() == Some(c.answered_by.as_str())
        {
            detail.push_str(", holds the scheduling lease");
        }
        (url.clone(), true, ready, latency, detail, cluster)
    }

    fn scheduler(&mut self, round: &Round, config: &Config) -> Observation {
        let Some(cluster) = &round.cluster else {
            // With a controller alive, the lease is unknown, not lost: the
            // canary tells whether anything is scheduled.
            let (health, detail) = if round.controllers.iter().any(|c| c.alive) {
                (Health::Degraded, "no controller could say who holds the scheduling lease")
            } else {
                (Health::Down, "no controller answers, so none schedules")
            };
            return Observation::new("scheduler", "scheduler", self.debounce("scheduler", config, health), detail);
        };
        match &cluster.scheduler {
            Some(holder) => {
                self.failures.remove("scheduler");
                let holder_alive = round.controllers.iter().any(|c| c.alive && c.name.as_deref() == Some(holder));
                let left = (cluster.lease_expires_at - cluster.now) as f64 / 1000.0;
                let detail = format!("held by {holder} (epoch {}), renewed, {left:.1}s left", cluster.epoch);
                if holder_alive {
                    Observation::new("scheduler", "scheduler", Health::Up, detail)
                } else {
                    Observation::new(
                        "scheduler",
                        "scheduler",
                        Health::Degraded,
                        format!(
                            "held by {holder} (epoch {}), which does not answer; lapses in {left:.1}s",
                            cluster.epoch
                        ),
                    )
                }
            }
            None => Observation::new(
                "scheduler",
                "scheduler",
                self.debounce("scheduler", config, Health::Down),
                format!("no controller holds the scheduling lease (epoch {})", cluster.epoch),
            ),
        }
    }

    fn judge_nodes(&mut self, nodes: &[Node], config: &Config, now: Millis, out: &mut Vec<Observation>) {
        let mut locations: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
        for node in nodes {
            let slow = node.expected_last_minute >= 2
                && (node.runs_last_minute as f64) < config.failover.wedged_below * node.expected_last_minute as f64;
            let slow_for = if slow && node.state == "active" {
                now - *self.slow_since.entry(node.id.clone()).or_insert(now)
            } else {
                self.slow_since.remove(&node.id);
                0
            };
            let (health, detail) = match node.state.as_str() {
                "active" | "returning" if slow_for >= WEDGED_AFTER_MS => (
                    Health::Down,
                    format!(
                        "wedged: heartbeats but ran {} of {} expected runs in the last minute",
                        node.runs_last_minute, node.expected_last_minute
                    ),
                ),
                "active" | "returning" => (
                    Health::Up,
                    format!("{}, {} checks, {} runs in the last minute", node.state, node.load, node.runs_last_minute),
                ),
                "suspect" | "draining" => (Health::Degraded, format!("{}, {} checks", node.state, node.load)),
                other => (Health::Down, format!("{other}, {} checks", node.load)),
            };
            let entry = locations.entry(node.location.as_str()).or_default();
            entry.0 += 1;
            entry.1 += (health == Health::Up) as usize;
            out.push(Observation::new("node", &node.name, health, detail));
        }
        for (location, (all, up)) in locations {
            let health = match up {
                0 => Health::Down,
                n if n < all => Health::Degraded,
                _ => Health::Up,
            };
            out.push(Observation::new("location", location, health, format!("{up} of {all} nodes up")));
        }
    }

    /// Down only after `down_after` failures in a row; before that the
    /// component keeps being reported up.
    fn debounce(&mut self, id: &str, config: &Config, health: Health) -> Health {
        let n = self.failures.entry(id.to_string()).or_default();
        *n += 1;
        if *n >= config.down_after { health } else { Health::Up }
    }

    /// Whether `id` has failed at least `down_after` times in a row.
    pub fn is_down(&self, id: &str, config: &Config) -> bool {
        self.failures.get(id).is_some_and(|n| *n >= config.down_after)
    }
}

pub fn authority(url: &Url) -> String {
    match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    }
}

/// Connects afresh, writes this watchdog's row and reads it back.
async fn database(url: &str, watchdog: &str, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let attempt = async {
        let mut conn = sqlx::AnyConnection::connect(url).await.map_err(|e| format!("cannot connect: {e}"))?;
        let token = rand::random::<u64>().to_string();
        sqlx::query(
            "INSERT INTO watchdog_probes (watchdog, token, written_at) VALUES ($1, $2, $3) \
             ON CONFLICT (watchdog) DO UPDATE SET token = excluded.token, written_at = excluded.written_at",
        )
        .bind(watchdog)
        .bind(&token)
        .bind(crate::model::now_ms())
        .execute(&mut conn)
        .await
        .map_err(|e| format!("cannot write: {e}"))?;
        let back: String = sqlx::query_scalar("SELECT token FROM watchdog_probes WHERE watchdog = $1")
            .bind(watchdog)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| format!("cannot read back: {e}"))?;
        let _ = conn.close().await;
        if back != token {
            return Err(format!("read back {back:?} after writing {token:?}"));
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no answer within {}", humantime::format_duration(timeout))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::Canary;

    fn config() -> Config {
        toml::from_str(
            "name = \"w1\"\nlisten = \"127.0.0.1:0\"\ncontrollers = [\"http://127.0.0.1:1\"]\ntoken = \"t\"\n",
        )
        .unwrap()
    }

    fn node(state: &str, runs: i64) -> Node {
        Node {
            id: "id-1".into(),
            name: "n1".into(),
            location: "eu".into(),
            state: state.into(),
            load: 3,
            runs_last_minute: runs,
            expected_last_minute: 60,
        }
    }

    #[test]
    fn a_node_that_heartbeats_but_runs_nothing_is_wedged_and_evicted() {
        let config = config();
        let mut prober = Prober::new(
            Platform::new(config.token.clone(), Duration::from_secs(1), &tocsin_tls::ClientTls::machine()),
            Duration::from_secs(1),
        );
        let judge = |prober: &mut Prober, n: Node, now| {
            let mut out = Vec::new();
            prober.judge_nodes(&[n], &config, now, &mut out);
            out
        };
        assert_eq!(judge(&mut prober, node("active", 58), 0)[0].health, Health::Up);
        // Too few runs, but not for long yet: still up.
        assert_eq!(judge(&mut prober, node("active", 5), 1_000)[0].health, Health::Up);
        let seen = judge(&mut prober, node("active", 5), 1_000 + WEDGED_AFTER_MS);
        assert_eq!(seen[0].health, Health::Down);
        assert!(seen[0].detail.contains("wedged: heartbeats but ran 5 of 60"), "{}", seen[0].detail);
        assert_eq!(seen[1].id, "location:eu");
        assert_eq!(seen[1].health, Health::Down);

        let round = Round { observations: seen, nodes: Some(vec![node("active", 5)]), ..Round::default() };
        let motions = crate::decide::motions(&round, &Canary::default(), &config, 0);
        assert_eq!(
            motions.iter().map(|m| m.proposal.clone()).collect::<Vec<_>>(),
            vec![crate::model::Proposal::EvictNode { node_id: "id-1".into(), node: "n1".into() }]
        );
        // Once evicted it is not evicted again.
        let round = Round { nodes: Some(vec![node("evicted", 0)]), ..round };
        assert!(crate::decide::motions(&round, &Canary::default(), &config, 0).is_empty());
    }
}
