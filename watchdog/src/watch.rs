//! The watch loop: every `interval`, probe everything, hear the peers,
//! record what was seen, alarm on what changed, act on what a quorum
//! agrees on, and move the canary on.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::decide::{self, Cooldown, Verdict};
use crate::metrics::{ActionLabels, ComponentLabels, OutcomeLabels};
use crate::model::{Health, Millis, Motion, Observation, Proposal, View, now_ms};
use crate::notify::{Alarm, Notifier};
use crate::peer_secret::PeerSecret;
use crate::peers::Peers;
use crate::platform::Platform;
use crate::probe::{Prober, Round};
use crate::server::Shared;
use crate::state::Transition;

pub struct Watch {
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    pub notifier: Notifier,
    /// Where probe nodes reach this watchdog (the canary's target).
    pub public_url: String,
    platform: Platform,
    prober: Prober,
    peers: Peers,
    cooldown: Cooldown,
    pruned_at: Millis,
}

impl Watch {
    /// `tls`: whom it trusts when it calls the controllers and its peers.
    pub fn new(
        config: Arc<Config>,
        shared: Arc<Shared>,
        notifier: Notifier,
        public_url: String,
        peer_secret: Option<PeerSecret>,
        tls: &tocsin_tls::ClientTls,
    ) -> Watch {
        // Long enough for a busy controller on a small machine (a 1 s bound
        // was seen to fail under load in CI), short enough that a hung one
        // delays a round by seconds, not minutes.
        let timeout = config.interval.clamp(std::time::Duration::from_secs(2), std::time::Duration::from_secs(5));
        let platform = Platform::new(config.token.clone(), timeout, tls);
        let peer_timeout = timeout;
        Watch {
            prober: Prober::new(platform.clone(), timeout),
            platform,
            peers: Peers::new(peer_timeout, tls, peer_secret, &config.name, shared.metrics.peer_views_refused.clone()),
            config,
            shared,
            notifier,
            public_url,
            cooldown: Cooldown::default(),
            pruned_at: 0,
        }
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = cancel.cancelled() => break,
            }
            let started = Instant::now();
            self.round().await;
            self.shared.metrics.round_seconds.observe(started.elapsed().as_secs_f64());
        }
    }

    async fn round(&mut self) {
        let now = now_ms();
        let config = self.config.clone();
        let (mut round, (views, peer_observations)) =
            tokio::join!(self.prober.round(&config, now), self.peers.round(&config.peers, config.down_after, now));
        self.shared.metrics.peers_up.set(views.len() as i64);
        if let Some(settings) = &config.canary {
            if let Some(base) = round.healthy_controller().map(|c| c.url.clone()) {
                self.shared.canary.read_results(&self.platform, &base, &config.name, &settings.locations).await;
            }
            round.observations.extend(self.shared.canary.judge(settings, now));
        }
        round.observations.extend(peer_observations);
        round.observations.push(Observation::new(
            "watchdog",
            &config.name,
            Health::Up,
            format!("this watchdog; {} of {} peers answer", views.len(), config.peers.len()),
        ));
        let motions = decide::motions(&round, &self.shared.canary, &config, now);
        *self.shared.view.write().expect("view lock") = View {
            watchdog: config.name.clone(),
            at: now,
            components: round.observations.clone(),
            motions: motions.clone(),
        };
        for o in &round.observations {
            let value = match o.health {
                Health::Up => 2,
                Health::Degraded => 1,
                Health::Down => 0,
            };
            self.shared
                .metrics
                .component_health
                .get_or_create(&ComponentLabels { component: o.id.clone(), kind: o.kind.clone() })
                .set(value);
        }

        let transitions = match self.shared.state.record(now, &round.observations).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "recording the round in the watchdog's state failed");
                Vec::new()
            }
        };
        for t in &transitions {
            let from = t.from.map(Health::as_str).unwrap_or("new");
            tracing::info!(component = %t.id, from, to = t.to.as_str(), detail = %t.detail, "component changed");
        }
        if self.sends_alarms(&views) {
            for t in transitions.iter().filter(|t| t.id != format!("watchdog:{}", config.name)) {
                self.alarm(t, now).await;
            }
        }
        for motion in motions {
            self.consider(motion, &views, &round, now).await;
        }
        if let Some(settings) = &config.canary {
            self.move_canary(settings, &round, now).await;
        }
        if now - self.pruned_at > 3_600_000 {
            self.pruned_at = now;
            if let Err(e) = self.shared.state.prune(now, config.keep.as_millis() as i64).await {
                tracing::warn!(error = %e, "pruning the watchdog's history failed");
            }
        }
        // Last, so the page shows this round's alarms and actions too.
        self.shared.page.refresh(&self.shared.state, now, &config.name).await;
    }

    /// One watchdog sends the alarms: the first by name of those that hear
    /// each other. One cut off from the rest sends its own. `views` are
    /// only those peers proved (`peers`): an unproven view named "0" would
    /// otherwise come first and silence every alarm.
    fn sends_alarms(&self, views: &[View]) -> bool {
        views.iter().all(|v| v.watchdog > self.config.name)
    }

    async fn alarm(&self, t: &Transition, now: Millis) {
        if self.notifier.is_empty() {
            return;
        }
        let who = crate::page::name_for_people(&t.kind, &t.name);
        let (event, title) = match t.to {
            Health::Up => ("recovered", format!("{who} recovered")),
            Health::Degraded => ("degraded", format!("{who} degraded")),
            Health::Down => ("down", format!("{who} down")),
        };
        let alarm = Alarm {
            key: format!("watchdog-{}-incident-{}", self.config.name, t.incident.unwrap_or(0)),
            resolved: t.to == Health::Up,
            title: format!("[Tocsin watchdog {}] {title}", self.config.name),
            message: format!("{title}: {}", t.detail),
            link: format!("{}/#incident-{}", self.public_url, t.incident.unwrap_or(0)),
        };
        let (attempts, delivered) = self.notifier.send(&self.config.name, &alarm).await;
        let outcome = if delivered { "delivered" } else { "failed" };
        self.shared.metrics.alarms.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc();
        if !delivered {
            tracing::error!(component = %t.id, attempts = ?attempts, "no gateway delivered the alarm");
        }
        let via = attempts.last().map(|(g, _)| g.clone());
        let summary = attempts.iter().map(|(g, o)| format!("{g}: {o}")).collect::<Vec<_>>().join("; ");
        let note = format!("alarm \"{title}\" {outcome} ({summary})");
        if let Err(e) =
            self.shared.state.record_alarm(now, &t.id, event, &alarm.message, via.as_deref(), &summary).await
        {
            tracing::warn!(error = %e, "recording an alarm failed");
        }
        if let Err(e) = self.note(&t.id, t.incident, now, &note).await {
            tracing::warn!(error = %e, "recording an alarm in its incident failed");
        }
    }

    /// A line in an incident, open or just resolved.
    async fn note(&self, component: &str, incident: Option<i64>, now: Millis, text: &str) -> sqlx::Result<()> {
        match incident {
            Some(id) => self.shared.state.note_incident(id, now, text).await,
            None => self.shared.state.note(component, now, text).await,
        }
    }

    async fn consider(&mut self, motion: Motion, views: &[View], round: &Round, now: Millis) {
        let name = self.config.name.clone();
        match decide::verdict(&motion, &name, views, self.config.quorum()) {
            Verdict::NoQuorum { agreeing } => {
                tracing::info!(
                    action = motion.proposal.kind(),
                    target = %motion.proposal.target(),
                    evidence = %motion.evidence,
                    agreeing = %agreeing.join(","),
                    quorum = self.config.quorum(),
                    "not acting: too few watchdogs agree"
                );
            }
            Verdict::Other(actor) => {
                tracing::debug!(action = motion.proposal.kind(), actor = %actor, "a quorum agrees; another watchdog acts");
            }
            Verdict::Act { agreeing } => {
                if !self.cooldown.ready(&motion.proposal, now) {
                    return;
                }
                self.cooldown.acted(&motion.proposal, now);
                self.act(&motion, &agreeing, round, now).await;
            }
        }
    }

    async fn act(&mut self, motion: &Motion, agreeing: &[String], round: &Round, now: Millis) {
        let reason = format!("watchdog {}: {}", self.config.name, motion.evidence);
        let (component, result) = match &motion.proposal {
            Proposal::RevokeLease { epoch, to, .. } => {
                let base = round
                    .controllers
                    .iter()
                    .find(|c| c.name.as_deref() == Some(to.as_str()) && c.alive)
                    .or(round.healthy_controller())
                    .map(|c| c.url.clone());
                let result = match base {
                    Some(base) => self
                        .platform
                        .revoke_lease(&base, *epoch, to, &reason, agreeing)
                        .await
                        .map(|c| {
                            format!(
                                "done: the lease is held by {} (epoch {})",
                                c.scheduler.unwrap_or_default(),
                                c.epoch
                            )
                        })
                        .map_err(|e| e.to_string()),
                    None => Err("no controller answers".to_string()),
                };
                ("scheduler".to_string(), result)
            }
            Proposal::EvictNode { node_id, node } => {
                let result = match round.healthy_controller() {
                    Some(c) => self
                        .platform
                        .evict(&c.url, node_id, &reason, agreeing)
                        .await
                        .map(|()| format!("done: node {node} evicted, its checks move now"))
                        .map_err(|e| e.to_string()),
                    None => Err("no controller answers".to_string()),
                };
                (format!("node:{node}"), result)
            }
        };
        let outcome = match &result {
            Ok(done) => done.clone(),
            Err(e) => format!("refused: {e}"),
        };
        let kind = motion.proposal.kind();
        let target = motion.proposal.target();
        match &result {
            Ok(_) => tracing::warn!(action = kind, target = %target, evidence = %motion.evidence,
                agreed_by = %agreeing.join(","), outcome = %outcome, "failover action taken"),
            Err(_) => tracing::warn!(action = kind, target = %target, evidence = %motion.evidence,
                agreed_by = %agreeing.join(","), outcome = %outcome, "failover action failed"),
        }
        self.shared
            .metrics
            .actions
            .get_or_create(&ActionLabels {
                kind: kind.into(),
                outcome: if result.is_ok() { "done".into() } else { "failed".into() },
            })
            .inc();
        let state = &self.shared.state;
        if let Err(e) = state.record_action(now, kind, &target, &motion.evidence, agreeing, &outcome).await {
            tracing::warn!(error = %e, "recording a failover action failed");
        }
        let note = format!("failover: {target}, agreed by {}: {outcome}", agreeing.join(", "));
        if let Err(e) = state.note(&component, now, &note).await {
            tracing::warn!(error = %e, "recording a failover action in its incident failed");
        }
    }

    /// Sets a new generation when the current one has reached every
    /// location (or none was set yet) and `rotate` has passed. A
    /// generation that never arrives is left in place: that is the alarm.
    async fn move_canary(&mut self, settings: &crate::config::Canary, round: &Round, now: Millis) {
        let due = match self.shared.canary.generation() {
            None => true,
            Some((_, set_at)) => {
                now - set_at >= settings.rotate.as_millis() as i64
                    && !self.shared.canary.stalled(settings, now)
                    && self.shared.canary.delivered_everywhere(settings)
            }
        };
        if !due {
            return;
        }
        // Healthy controllers first, each in configured order.
        let mut alive: Vec<_> = round.controllers.iter().filter(|c| c.alive).collect();
        alive.sort_by_key(|c| c.health != Health::Up);
        let controllers: Vec<url::Url> = alive.into_iter().map(|c| c.url.clone()).collect();
        if controllers.is_empty() {
            return;
        }
        // A failure is logged (once per reason) and shown by the canary itself.
        let _ = self
            .shared
            .canary
            .rotate(&self.platform, &controllers, settings, &self.config.name, &self.public_url, now)
            .await;
    }
}
