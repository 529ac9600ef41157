//! Prometheus metrics of a `tocsin` process, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub plugin: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub plugin: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

/// `check` or `notifier`: the two kinds of plugin call, whose sandbox slots
/// are counted apart.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GatewayLabels {
    pub gateway: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub gateway: String,
    pub outcome: String,
}

pub struct Metrics {
    registry: Registry,
    pub runs: Family<RunLabels, Counter>,
    pub run_seconds: Family<PluginLabels, Histogram, fn() -> Histogram>,
    pub start_lateness_seconds: Histogram,
    pub plugin_errors: Family<ErrorLabels, Counter>,
    pub runs_stored: Counter,
    pub runs_refused: Counter,
    pub ingest_queue: Gauge,
    pub ingest_batch_seconds: Histogram,
    pub wasm_running: Gauge,
    pub wasm_slots: Gauge,
    pub wasm_kind_running: Family<KindLabels, Gauge>,
    pub wasm_kind_slots: Family<KindLabels, Gauge>,
    pub wasm_slot_waits: Family<KindLabels, Counter>,
    pub wasm_slot_timeouts: Family<KindLabels, Counter>,
    pub plugin_cache_rejected: Counter,
    /// Serialises [`Metrics::observe_runtime`], which turns the runtime's
    /// totals into counter increments.
    runtime_seen: std::sync::Mutex<()>,
    pub checks: Family<StatusLabels, Gauge>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_seconds: Family<PluginLabels, Histogram, fn() -> Histogram>,
    pub moves: Family<ReasonLabels, Counter>,
    /// Refused authentications: `missing`, `malformed`, `invalid`, `throttled`.
    pub auth_failures: Family<ReasonLabels, Counter>,
    pub nodes: Family<StatusLabels, Gauge>,
    pub results_buffered: Gauge,
    pub results_dropped: Gauge,
    pub notifications: Family<OutcomeLabels, Counter>,
    pub notification_seconds: Family<GatewayLabels, Histogram, fn() -> Histogram>,
    pub outbox_pending: Gauge,
    pub incidents_open: Gauge,
    pub site_active: Gauge,
    pub sync_applied: Counter,
    pub sync_lag_entries: Gauge,
    pub sync_lag_seconds: Histogram,
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tocsin");
        let m = Metrics {
            runs: Family::default(),
            run_seconds: Family::new_with_constructor(latency),
            start_lateness_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            plugin_errors: Family::default(),
            runs_stored: Counter::default(),
            runs_refused: Counter::default(),
            ingest_queue: Gauge::default(),
            ingest_batch_seconds: latency(),
            wasm_running: Gauge::default(),
            wasm_slots: Gauge::default(),
            wasm_kind_running: Family::default(),
            wasm_kind_slots: Family::default(),
            wasm_slot_waits: Family::default(),
            wasm_slot_timeouts: Family::default(),
            plugin_cache_rejected: Counter::default(),
            runtime_seen: std::sync::Mutex::new(()),
            checks: Family::default(),
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(latency),
            moves: Family::default(),
            auth_failures: Family::default(),
            nodes: Family::default(),
            results_buffered: Gauge::default(),
            results_dropped: Gauge::default(),
            notifications: Family::default(),
            notification_seconds: Family::new_with_constructor(latency),
            outbox_pending: Gauge::default(),
            incidents_open: Gauge::default(),
            site_active: Gauge::default(),
            sync_applied: Counter::default(),
            sync_lag_entries: Gauge::default(),
            sync_lag_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            registry: Registry::default(),
        };
        registry.register("runs", "Runs finished, by plugin and status", m.runs.clone());
        registry.register("run_duration_seconds", "Time a run took, by plugin", m.run_seconds.clone());
        registry.register(
            "run_start_lateness_seconds",
            "How long after its slot a run started",
            m.start_lateness_seconds.clone(),
        );
        registry.register(
            "plugin_errors",
            "Runs that ended in a plugin error, by plugin and code",
            m.plugin_errors.clone(),
        );
        registry.register("runs_stored", "Runs written to the database", m.runs_stored.clone());
        registry.register("runs_refused", "Results refused because their slot already had one", m.runs_refused.clone());
        registry.register("ingest_queue_depth", "Results waiting to be written", m.ingest_queue.clone());
        registry.register(
            "ingest_batch_duration_seconds",
            "Time to write one batch of results",
            m.ingest_batch_seconds.clone(),
        );
        registry.register("wasm_invocations_running", "Plugin invocations running now", m.wasm_running.clone());
        registry.register("wasm_invocation_slots", "Plugin invocations that can run at once", m.wasm_slots.clone());
        registry.register(
            "wasm_slot_running",
            "Plugin invocations running now, by kind (check, notifier)",
            m.wasm_kind_running.clone(),
        );
        registry.register(
            "wasm_slot_capacity",
            "Sandbox slots each kind may take (notifiers: their reserve plus the checks' share)",
            m.wasm_kind_slots.clone(),
        );
        registry.register(
            "wasm_slot_waits",
            "Plugin calls that found no free sandbox slot and waited, by kind",
            m.wasm_slot_waits.clone(),
        );
        registry.register(
            "wasm_slot_timeouts",
            "Plugin calls that got no sandbox slot within slot_wait and failed (no_slot), by kind",
            m.wasm_slot_timeouts.clone(),
        );
        registry.register(
            "plugin_cache_rejected",
            "Cached compiled plugins that failed their authentication and were compiled again",
            m.plugin_cache_rejected.clone(),
        );
        registry.register("checks", "Checks by current status", m.checks.clone());
        registry.register("http_requests", "API requests, by method, route and status", m.http_requests.clone());
        registry.register("http_request_duration_seconds", "API request latency, by route", m.http_seconds.clone());
        registry.register("check_moves", "Checks moved between nodes, by reason", m.moves.clone());
        registry.register("auth_failures", "Refused authentications, by reason", m.auth_failures.clone());
        registry.register("nodes", "Probe nodes by state", m.nodes.clone());
        registry.register(
            "results_buffered",
            "Results a node holds until a controller takes them",
            m.results_buffered.clone(),
        );
        registry.register(
            "results_dropped",
            "Results a node dropped because its buffer was full",
            m.results_dropped.clone(),
        );
        registry.register(
            "notifications",
            "Delivery attempts, by gateway and outcome (delivered, failed, failed_over, given_up)",
            m.notifications.clone(),
        );
        registry.register(
            "notification_duration_seconds",
            "Time one delivery attempt took, by gateway",
            m.notification_seconds.clone(),
        );
        registry.register("outbox_pending", "Notifications waiting to be delivered", m.outbox_pending.clone());
        registry.register("incidents_open", "Incidents triggered or acknowledged", m.incidents_open.clone());
        registry.register(
            "site_active",
            "1 when this controller's site is active, 0 when it follows another",
            m.site_active.clone(),
        );
        registry.register("sync_applied", "Feed entries applied from the source site", m.sync_applied.clone());
        registry.register(
            "sync_lag_entries",
            "Entries the source holds that this site has not applied",
            m.sync_lag_entries.clone(),
        );
        registry.register(
            "sync_lag_seconds",
            "From a change committing at the source to it being applied here",
            m.sync_lag_seconds.clone(),
        );
        let build = Family::<VersionLabels, Gauge>::default();
        build.get_or_create(&VersionLabels { version: env!("CARGO_PKG_VERSION").to_string() }).set(1);
        registry.register("build_info", "The running version", build);
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Copies the plugin runtime's slot and cache figures in, before an
    /// encode.
    pub fn observe_runtime(&self, stats: &tocsin_runtime::RuntimeStats) {
        let _one_at_a_time = self.runtime_seen.lock().unwrap_or_else(|p| p.into_inner());
        self.wasm_running.set(stats.running as i64);
        self.wasm_slots.set(stats.slots as i64);
        for (kind, slots) in [("check", &stats.checks), ("notifier", &stats.notifiers)] {
            let labels = KindLabels { kind: kind.to_string() };
            self.wasm_kind_running.get_or_create(&labels).set(slots.running as i64);
            self.wasm_kind_slots.get_or_create(&labels).set(slots.slots as i64);
            let waits = self.wasm_slot_waits.get_or_create(&labels);
            waits.inc_by(slots.waited.saturating_sub(waits.get()));
            let timeouts = self.wasm_slot_timeouts.get_or_create(&labels);
            timeouts.inc_by(slots.timed_out.saturating_sub(timeouts.get()));
        }
        self.plugin_cache_rejected.inc_by(stats.cache_rejected.saturating_sub(self.plugin_cache_rejected.get()));
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}
