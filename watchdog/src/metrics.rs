//! Prometheus metrics of the watchdog, at `/metrics`: what it judges each
//! component, how long a round takes, and the alarms and actions it sent.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    pub component: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

/// Why something was refused; a fixed set of values (`&'static str`), so
/// no sender can grow `/metrics`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub kind: String,
    pub outcome: String,
}

pub struct Metrics {
    pub registry: Registry,
    /// 1 up, 0.5 degraded, 0 down: as a gauge in thousandths.
    pub component_health: Family<ComponentLabels, Gauge>,
    pub round_seconds: Histogram,
    pub alarms: Family<OutcomeLabels, Counter>,
    pub actions: Family<ActionLabels, Counter>,
    pub peers_up: Gauge,
    /// Peer views that counted for nothing (unsigned, bad signature, ...).
    pub peer_views_refused: Family<ReasonLabels, Counter>,
    /// Canary hits that counted for nothing (unknown location, wrong nonce).
    pub canary_hits_refused: Family<ReasonLabels, Counter>,
    /// Status page renders (HTML and JSON together): one per round at most.
    pub page_renders: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tocsin_watchdog");
        let component_health = Family::<ComponentLabels, Gauge>::default();
        registry.register(
            "component_health",
            "What this watchdog judges each component: 2 up, 1 degraded, 0 down",
            component_health.clone(),
        );
        let round_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        registry.register("round_seconds", "Time to probe everything once", round_seconds.clone());
        let alarms = Family::<OutcomeLabels, Counter>::default();
        registry.register("alarms", "Alarms sent through the watchdog's own gateways", alarms.clone());
        let actions = Family::<ActionLabels, Counter>::default();
        registry.register("actions", "Failover actions carried out after a quorum agreed", actions.clone());
        let peers_up = Gauge::default();
        registry.register("peers_up", "Peer watchdogs that answered in the last round", peers_up.clone());
        let peer_views_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "peer_views_refused",
            "Views from peer URLs that counted for nothing, by reason",
            peer_views_refused.clone(),
        );
        let canary_hits_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "canary_hits_refused",
            "Hits on the canary target that counted for nothing, by reason",
            canary_hits_refused.clone(),
        );
        let page_renders = Counter::default();
        registry.register("page_renders", "Renders of the status page and its JSON", page_renders.clone());
        Metrics {
            registry,
            component_health,
            round_seconds,
            alarms,
            actions,
            peers_up,
            peer_views_refused,
            canary_hits_refused,
            page_renders,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("metrics encode to a String");
        out
    }
}
