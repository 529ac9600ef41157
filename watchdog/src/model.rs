//! What the watchdog judges: components, their health, and what one
//! watchdog tells its peers.

use serde::{Deserialize, Serialize};

pub type Millis = i64;

pub fn now_ms() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// 128 random bits as 32 hex digits, from the thread's CSPRNG: what a peer
/// must sign, what a canary generation's probes must carry.
pub fn fresh_nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Up,
    Degraded,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Degraded => "degraded",
            Health::Down => "down",
        }
    }

    pub fn parse(s: &str) -> Health {
        match s {
            "up" => Health::Up,
            "degraded" => Health::Degraded,
            _ => Health::Down,
        }
    }
}

/// One component as judged in one round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// `controller:<name>`, `scheduler`, `database`, `location:<loc>`,
    /// `node:<name>`, `canary:<loc>`, `watchdog:<name>`.
    pub id: String,
    pub kind: String,
    pub name: String,
    pub health: Health,
    /// What a person needs to know, e.g. "connection refused" or "held by c1, epoch 4".
    pub detail: String,
    pub latency_ms: Option<f64>,
}

impl Observation {
    pub fn new(kind: &str, name: &str, health: Health, detail: impl Into<String>) -> Self {
        let id = if name.is_empty() || kind == name { kind.to_string() } else { format!("{kind}:{name}") };
        Observation { id, kind: kind.into(), name: name.into(), health, detail: detail.into(), latency_ms: None }
    }

    pub fn latency(mut self, ms: f64) -> Self {
        self.latency_ms = Some(ms);
        self
    }
}

/// A change to the platform one watchdog believes is needed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Proposal {
    /// Take the node's checks away at once.
    EvictNode { node_id: String, node: String },
    /// Take the scheduling lease from `holder` (fenced by `epoch`) and hand it to `to`.
    RevokeLease { holder: String, epoch: i64, to: String },
}

impl Proposal {
    pub fn kind(&self) -> &'static str {
        match self {
            Proposal::EvictNode { .. } => "evict_node",
            Proposal::RevokeLease { .. } => "revoke_lease",
        }
    }

    pub fn target(&self) -> String {
        match self {
            Proposal::EvictNode { node, .. } => format!("node {node}"),
            Proposal::RevokeLease { holder, epoch, to } => {
                format!("scheduling lease of {holder} (epoch {epoch}) to {to}")
            }
        }
    }
}

/// A proposal with why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Motion {
    pub proposal: Proposal,
    pub evidence: String,
}

/// What a watchdog publishes to its peers each round.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct View {
    pub watchdog: String,
    pub at: Millis,
    pub components: Vec<Observation>,
    pub motions: Vec<Motion>,
}
