//! Failover by quorum. Each round a watchdog turns what it saw into
//! motions (evict this node, hand the scheduling lease from that controller
//! to this one) and publishes them in its view. A motion is carried out
//! only when a majority of all configured watchdogs (not of those that
//! answer) made the same motion, and only by the first of them by name, so
//! a watchdog cut off from its peers never acts and two never race.
//!
//! What they change is fenced by the lease epoch: a revocation names the
//! epoch it saw and the controller refuses it once the lease moved on.

use std::collections::HashMap;

use crate::canary::Canary;
use crate::config::Config;
use crate::model::{Health, Millis, Motion, Proposal, View};
use crate::probe::Round;

/// The motions this watchdog makes, from its own round alone.
pub fn motions(round: &Round, canary: &Canary, config: &Config, now: Millis) -> Vec<Motion> {
    let mut out = Vec::new();
    if config.failover.revoke_lease
        && let Some(cluster) = &round.cluster
        && let Some(holder) = &cluster.scheduler
    {
        // The holder's controller: the one that answered with its name, or,
        // when none did, those down whose name we never learned.
        let answering = round.controllers.iter().any(|c| c.alive && c.name.as_deref() == Some(holder));
        let holder_seen: Vec<_> = round
            .controllers
            .iter()
            .filter(|c| c.name.as_deref() == Some(holder) || (!answering && c.name.is_none() && !c.alive))
            .collect();
        let successor = round
            .controllers
            .iter()
            .find(|c| c.health == Health::Up && c.name.as_deref().is_some_and(|n| n != holder))
            .and_then(|c| c.name.clone());
        let dead = !holder_seen.is_empty() && holder_seen.iter().all(|c| c.health == Health::Down);
        let wedged = !dead
            && config.canary.as_ref().is_some_and(|settings| {
                canary.stalled(settings, now) && locations_have_nodes(round, &settings.locations)
            });
        if let Some(to) = successor
            && (dead || wedged)
        {
            let evidence = if dead {
                let urls: Vec<String> = holder_seen.iter().map(|c| c.url.to_string()).collect();
                format!(
                    "{holder} holds the scheduling lease (epoch {}) but does not answer at {}",
                    cluster.epoch,
                    urls.join(", ")
                )
            } else {
                format!(
                    "{holder} holds the scheduling lease (epoch {}) and answers /healthz, but the canary's last change \
                     reached no location within {}",
                    cluster.epoch,
                    humantime::format_duration(config.canary.as_ref().map(|c| c.deadline).unwrap_or_default())
                )
            };
            out.push(Motion {
                proposal: Proposal::RevokeLease { holder: holder.clone(), epoch: cluster.epoch, to },
                evidence,
            });
        }
    }
    if config.failover.evict_nodes
        && let Some(nodes) = &round.nodes
    {
        for node in nodes {
            let id = format!("node:{}", node.name);
            let down = round.observations.iter().find(|o| o.id == id && o.health == Health::Down);
            if let Some(seen) = down
                && node.state != "evicted"
                && node.load > 0
            {
                let detail = &seen.detail;
                out.push(Motion {
                    proposal: Proposal::EvictNode { node_id: node.id.clone(), node: node.name.clone() },
                    evidence: format!(
                        "node {} in {} still owns {} checks: {detail}",
                        node.name, node.location, node.load
                    ),
                });
            }
        }
    }
    out
}

fn locations_have_nodes(round: &Round, locations: &[String]) -> bool {
    locations
        .iter()
        .all(|l| round.observations.iter().any(|o| o.id == format!("location:{l}") && o.health != Health::Down))
}

/// Two motions are the same act when they target the same thing; watchdogs
/// may prefer different successors, the one acting uses its own.
pub fn same(a: &Proposal, b: &Proposal) -> bool {
    match (a, b) {
        (Proposal::EvictNode { node_id: x, .. }, Proposal::EvictNode { node_id: y, .. }) => x == y,
        (Proposal::RevokeLease { holder: h1, epoch: e1, .. }, Proposal::RevokeLease { holder: h2, epoch: e2, .. }) => {
            h1 == h2 && e1 == e2
        }
        _ => false,
    }
}

/// The watchdogs (this one included) that made `motion`, sorted by name.
pub fn agreeing(motion: &Motion, me: &str, views: &[View]) -> Vec<String> {
    let mut names: Vec<String> = views
        .iter()
        .filter(|v| v.motions.iter().any(|m| same(&m.proposal, &motion.proposal)))
        .map(|v| v.watchdog.clone())
        .collect();
    names.push(me.to_string());
    names.sort();
    names.dedup();
    names
}

/// What a watchdog should do about one of its motions.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Too few agree: do nothing.
    NoQuorum { agreeing: Vec<String> },
    /// Enough agree, and another of them (named) acts.
    Other(String),
    /// Enough agree and this watchdog is the one to act.
    Act { agreeing: Vec<String> },
}

pub fn verdict(motion: &Motion, me: &str, views: &[View], quorum: usize) -> Verdict {
    let agreeing = agreeing(motion, me, views);
    if agreeing.len() < quorum {
        return Verdict::NoQuorum { agreeing };
    }
    if agreeing[0] == me { Verdict::Act { agreeing } } else { Verdict::Other(agreeing[0].clone()) }
}

/// Keeps a watchdog from repeating an act while its effect propagates.
#[derive(Default)]
pub struct Cooldown {
    done: HashMap<Proposal, Millis>,
}

impl Cooldown {
    pub const MS: Millis = 15_000;

    pub fn ready(&mut self, proposal: &Proposal, now: Millis) -> bool {
        self.done.retain(|_, at| now - *at < Self::MS);
        !self.done.contains_key(proposal)
    }

    pub fn acted(&mut self, proposal: &Proposal, now: Millis) {
        self.done.insert(proposal.clone(), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revoke(holder: &str, epoch: i64, to: &str) -> Motion {
        Motion {
            proposal: Proposal::RevokeLease { holder: holder.into(), epoch, to: to.into() },
            evidence: String::new(),
        }
    }

    fn view(name: &str, motions: Vec<Motion>) -> View {
        View { watchdog: name.into(), at: 0, components: vec![], motions }
    }

    #[test]
    fn a_lone_watchdog_of_three_never_acts() {
        let m = revoke("c1", 4, "c2");
        assert_eq!(verdict(&m, "w3", &[], 2), Verdict::NoQuorum { agreeing: vec!["w3".into()] });
        // Peers that answer but do not see it do not count either.
        let peers = [view("w1", vec![]), view("w2", vec![revoke("c1", 3, "c2")])];
        assert!(matches!(verdict(&m, "w3", &peers, 2), Verdict::NoQuorum { .. }));
    }

    #[test]
    fn a_majority_acts_through_its_first_member_only() {
        let m = revoke("c1", 4, "c2");
        let peers = [view("w1", vec![revoke("c1", 4, "c3")]), view("w3", vec![])];
        assert_eq!(verdict(&m, "w2", &peers, 2), Verdict::Other("w1".into()));
        let peers = [view("w2", vec![revoke("c1", 4, "c2")]), view("w3", vec![])];
        assert_eq!(verdict(&m, "w1", &peers, 2), Verdict::Act { agreeing: vec!["w1".into(), "w2".into()] });
    }
}
