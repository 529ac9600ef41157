//! Runs the assigned checks at their slots and reports every run.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tocsin_runtime::{Attempt, CheckCall, Grant, Plugin, RunContext, Status};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::link::Confirmation;
use super::schedule::{AssignedCheck, Assignment, Schedule};
use crate::metrics::{ErrorLabels, Metrics, PluginLabels, RunLabels};
use crate::model::{CheckStatus, Metric, Millis, now_ms};
use crate::store::runs::NewRun;

/// Who a node is and where.
#[derive(Clone, Debug)]
pub struct Identity {
    pub id: String,
    pub name: String,
    pub location: String,
}

/// Where a node gets the plugin a check names.
pub trait PluginSource: Send + Sync {
    fn plugin<'a>(&'a self, check: &'a AssignedCheck) -> BoxFuture<'a, Result<Plugin, String>>;
}

pub struct Agent {
    pub identity: Identity,
    pub plugins: Arc<dyn PluginSource>,
    pub results: mpsc::Sender<NewRun>,
    pub metrics: Arc<Metrics>,
    /// How many past slots a check may catch up.
    pub catch_up_slots: i64,
}

impl Agent {
    /// Runs its assignment's slots and the confirmations it is asked for
    /// until `shutdown`, then waits for the runs in flight.
    pub async fn run(
        self,
        mut assignment: watch::Receiver<Arc<Assignment>>,
        mut confirmations: mpsc::Receiver<Confirmation>,
        shutdown: CancellationToken,
    ) {
        let agent = Arc::new(self);
        let mut schedule = Schedule::new(agent.catch_up_slots);
        schedule.update(&assignment.borrow_and_update(), now_ms());
        tracing::info!(node = %agent.identity.name, location = %agent.identity.location, checks = schedule.len(), "node started");
        let mut running = JoinSet::new();
        loop {
            let wait = schedule.next_due().map(|t| Duration::from_millis((t - now_ms()).max(0) as u64));
            tokio::select! {
                _ = sleep_or_forever(wait) => {
                    for (check, slot) in schedule.pop_due(now_ms()) {
                        running.spawn(agent.clone().execute(check, slot, 0, Attempt::Scheduled));
                    }
                }
                changed = assignment.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let current = assignment.borrow_and_update();
                    schedule.update(&current, now_ms());
                    tracing::debug!(version = current.version, checks = schedule.len(), "assignment changed");
                }
                Some(confirm) = confirmations.recv() => {
                    let check = Arc::new(confirm.check);
                    running.spawn(agent.clone().execute(check, confirm.slot, confirm.seq, Attempt::Confirmation));
                }
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        // A run never outlasts its timeout (at most a minute).
        let drained =
            tokio::time::timeout(Duration::from_secs(65), async { while running.join_next().await.is_some() {} });
        if drained.await.is_err() {
            tracing::warn!(abandoned = running.len(), "runs still in flight at shutdown were abandoned");
        }
        tracing::info!(node = %agent.identity.name, "node stopped");
    }

    async fn execute(self: Arc<Self>, check: Arc<AssignedCheck>, slot: Millis, seq: i64, attempt: Attempt) {
        let started_at = now_ms();
        if attempt == Attempt::Scheduled {
            self.metrics.start_lateness_seconds.observe((started_at - slot).max(0) as f64 / 1000.0);
        }
        let mut run = match self.plugins.plugin(&check).await {
            Ok(plugin) => self.invoke(&plugin, &check, slot, attempt, started_at).await,
            Err(e) => {
                tracing::error!(check = %check.name, plugin = %check.plugin, error = %e, "plugin unavailable");
                self.run_record(&check, slot, started_at, CheckStatus::Error, Some("plugin_unavailable".into()), e)
            }
        };
        run.seq = seq;
        run.attempt = attempt_name(attempt).to_string();
        if self.results.send(run).await.is_err() {
            tracing::warn!(check = %check.name, slot, "result dropped: the result sink is closed (shutting down)");
        }
    }

    async fn invoke(
        &self,
        plugin: &Plugin,
        check: &AssignedCheck,
        slot: Millis,
        attempt: Attempt,
        started_at: Millis,
    ) -> NewRun {
        let call = CheckCall {
            target: check.target.clone(),
            config: check.config.clone(),
            context: RunContext {
                check: check.name.clone(),
                node: self.identity.name.clone(),
                location: self.identity.location.clone(),
                attempt,
                slot_ms: slot,
            },
            allow: check.allow.iter().filter_map(|g| g.parse::<Grant>().ok()).collect(),
            timeout: Duration::from_millis(check.timeout_ms as u64),
        };
        let report = plugin.check(call).await;
        let plugin_id = plugin.info().id();
        self.metrics
            .run_seconds
            .get_or_create(&PluginLabels { plugin: plugin_id.clone() })
            .observe(report.elapsed.as_secs_f64());
        let mut run = match report.outcome {
            Ok(outcome) => {
                let status = match outcome.status {
                    Status::Up => CheckStatus::Up,
                    Status::Degraded => CheckStatus::Degraded,
                    Status::Down => CheckStatus::Down,
                };
                let mut run = self.run_record(check, slot, started_at, status, None, outcome.message);
                run.response_ms = outcome.metrics.iter().find(|m| m.name == "response_time").map(|m| m.value);
                run.metrics = outcome
                    .metrics
                    .into_iter()
                    .map(|m| Metric { name: m.name, value: m.value, unit: m.unit })
                    .collect();
                run
            }
            Err(e) => {
                let code = e.kind.code().to_string();
                self.metrics
                    .plugin_errors
                    .get_or_create(&ErrorLabels { plugin: plugin_id.clone(), code: code.clone() })
                    .inc();
                tracing::info!(check = %check.name, plugin = %plugin_id, code = %code, error = %e, "run ended in a plugin error");
                self.run_record(check, slot, started_at, CheckStatus::Error, Some(code), e.to_string())
            }
        };
        run.duration_ms = report.elapsed.as_millis() as i64;
        run.logs = report.logs;
        run.refusals = report.refusals;
        self.metrics.runs.get_or_create(&RunLabels { plugin: plugin_id, status: run.status.to_string() }).inc();
        run
    }

    fn run_record(
        &self,
        check: &AssignedCheck,
        slot: Millis,
        started_at: Millis,
        status: CheckStatus,
        error_code: Option<String>,
        message: String,
    ) -> NewRun {
        NewRun {
            check_id: check.id,
            slot,
            seq: 0,
            attempt: attempt_name(Attempt::Scheduled).to_string(),
            status,
            error_code,
            message,
            metrics: Vec::new(),
            response_ms: None,
            node: self.identity.name.clone(),
            location: self.identity.location.clone(),
            epoch: check.epoch,
            started_at,
            duration_ms: now_ms() - started_at,
            logs: Vec::new(),
            refusals: Vec::new(),
        }
    }
}

fn attempt_name(attempt: Attempt) -> &'static str {
    match attempt {
        Attempt::Scheduled => "scheduled",
        Attempt::Confirmation => "confirmation",
        Attempt::Manual => "manual",
    }
}

async fn sleep_or_forever(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
