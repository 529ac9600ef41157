//! The controller's side of distribution: node liveness by the database's
//! clock, the scheduling lease, and the coordinator that keeps every check
//! owned by a live node.
//!
//! Any number of controllers may run; only the holder of the `scheduler`
//! lease plans assignments, and its writes are fenced by the lease epoch.
//! Every controller serves nodes: their heartbeats, work (long-polled) and
//! results go to whichever controller answers.

pub mod assign;
pub mod bulletin;
pub mod confirm;
pub mod coordinator;
pub mod serving;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::Millis;
use crate::store::cluster::NodeRow;

/// Timings and bounds of the cluster, shared by controllers and nodes.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// How often nodes report.
    #[serde(with = "crate::model::wire::duration")]
    pub heartbeat: Duration,
    /// A node silent this long (database clock) is dead: its checks move.
    #[serde(with = "crate::model::wire::duration")]
    pub dead_after: Duration,
    /// A node must be healthy this long before checks move back to it.
    #[serde(with = "crate::model::wire::duration")]
    pub handback_after: Duration,
    /// The scheduling lease: how long it lasts, renewed every third of it.
    #[serde(with = "crate::model::wire::duration")]
    pub lease_ttl: Duration,
    /// A node may hold this many times its fair share of checks.
    pub load_factor: f64,
    /// How many past slots a new owner runs at once when it takes over a
    /// check whose recent slots have no result.
    pub catch_up_slots: i64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            heartbeat: Duration::from_secs(1),
            dead_after: Duration::from_secs(3),
            handback_after: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(10),
            load_factor: 1.25,
            catch_up_slots: 3,
        }
    }
}

impl ClusterConfig {
    pub fn dead_after_ms(&self) -> i64 {
        self.dead_after.as_millis() as i64
    }
}

/// What a node is doing, judged by the database's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Heartbeating; owns checks.
    Active,
    /// Alive but not yet trusted with checks taken from others.
    Returning,
    /// Missed a heartbeat or two.
    Suspect,
    /// Silent past the dead timeout; owns nothing any more.
    Dead,
    /// Asked to give its checks away.
    Draining,
    /// Evicted by the watchdog or an operator: owns nothing until resumed,
    /// however well it heartbeats.
    Evicted,
}

impl NodeState {
    pub fn of(node: &NodeRow, now: Millis, config: &ClusterConfig) -> NodeState {
        let silent = now - node.last_heartbeat;
        // Before Dead: an evicted node stays out when it comes back, so
        // that is what an operator needs to see.
        if node.evicted != 0 {
            NodeState::Evicted
        } else if silent > config.dead_after_ms() {
            NodeState::Dead
        } else if node.drained != 0 {
            NodeState::Draining
        } else if silent > 2 * config.heartbeat.as_millis() as i64 {
            NodeState::Suspect
        } else if now - node.healthy_since < config.handback_after.as_millis() as i64 {
            NodeState::Returning
        } else {
            NodeState::Active
        }
    }
}

/// The name of the scheduling lease.
pub const SCHEDULER_LEASE: &str = "scheduler";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_evicted_node_is_evicted_whatever_else_it_is() {
        let config = ClusterConfig::default();
        let node = NodeRow {
            id: "n".into(),
            name: "n".into(),
            location: "here".into(),
            version: "0".into(),
            drained: 1,
            evicted: 1,
            registered_at: 0,
            last_heartbeat: 0,
            healthy_since: 0,
            work_version: 0,
            stats: "{}".into(),
        };
        assert_eq!(NodeState::of(&node, 60_000, &config), NodeState::Evicted, "silent and drained too");
        assert_eq!(NodeState::of(&node, 500, &config), NodeState::Evicted, "heartbeating");
        let resumed = NodeRow { drained: 0, evicted: 0, ..node };
        assert_eq!(NodeState::of(&resumed, 60_000, &config), NodeState::Dead);
    }
}
