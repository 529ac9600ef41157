//! `tocsin bench`: measurements an operator can repeat on their own
//! hardware. `ingest` writes runs the way the controller does; `probes` runs
//! a built-in check against a target as fast as a given concurrency allows;
//! `schedule` and `failover` start a controller (and for `failover`, nodes)
//! from this binary on loopback and measure the cluster from outside.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::CliError;
use crate::model::{CheckSpec, now_ms};
use crate::store::cluster::Handover;
use crate::store::{self, Db};

mod alerting;
mod failover;
mod ingest;
mod local;
mod probes;
mod schedule;
mod sync;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Runs written per second, in batches as the controller writes them.
    Ingest(IngestArgs),
    /// Checks per second a node runs against one target.
    Probes(ProbeArgs),
    /// Start lateness of many checks over simulated nodes on one controller.
    Schedule(ScheduleArgs),
    /// Time from a node's SIGKILL to its checks running elsewhere.
    Failover(FailoverArgs),
    /// Time from a confirmed failure to the gateway, and outbox throughput.
    Alerting(AlertingArgs),
    /// Change feed lag between two sites, and a returning backup's catch-up.
    Sync(SyncArgs),
}

#[derive(Args)]
pub struct SyncArgs {
    /// The primary site's database; default: SQLite in a temporary directory.
    #[arg(long)]
    pub(super) primary_db: Option<String>,
    /// The backup site's database; default: SQLite in a temporary directory.
    #[arg(long)]
    pub(super) backup_db: Option<String>,
    /// Changes per second while lag is measured.
    #[arg(long, default_value_t = 20.0)]
    pub(super) rate: f64,
    #[arg(long, default_value = "20s", value_parser = crate::model::wire::parse_duration)]
    pub(super) duration: Duration,
    /// Changes made while the backup is down, then timed as it catches up.
    #[arg(long, default_value_t = 10_000)]
    pub(super) catch_up: usize,
}

#[derive(Args)]
pub struct AlertingArgs {
    /// The database; default: SQLite in a temporary directory.
    #[arg(long)]
    pub(super) database_url: Option<String>,
    /// Confirmed failures timed one at a time.
    #[arg(long, default_value_t = 200)]
    pub(super) failures: usize,
    /// Notifications pushed through the outbox at once.
    #[arg(long, default_value_t = 5000)]
    pub(super) notifications: usize,
}

#[derive(Args)]
pub struct IngestArgs {
    /// Where to write: `sqlite://...` or `postgres://...`; default: a new SQLite file.
    #[arg(long)]
    pub(super) database_url: Option<String>,
    /// How many runs to write.
    #[arg(long, default_value_t = 200_000)]
    pub(super) runs: usize,
    /// Over how many checks.
    #[arg(long, default_value_t = 1000)]
    pub(super) checks: usize,
}

#[derive(Args)]
pub struct ProbeArgs {
    /// `http` or `tcp`.
    #[arg(long, default_value = "http")]
    pub(super) plugin: String,
    /// The target, as a check would name it.
    #[arg(long)]
    pub(super) target: String,
    /// Checks in flight at once.
    #[arg(long, default_value_t = 64)]
    pub(super) concurrency: usize,
    #[arg(long, default_value = "10s", value_parser = crate::model::wire::parse_duration)]
    pub(super) duration: Duration,
    /// Grants, as for a check (`127.0.0.1`).
    #[arg(long = "allow")]
    pub(super) allow: Vec<String>,
    /// The plugin's configuration as JSON.
    #[arg(long, default_value = "{}")]
    pub(super) config: String,
}

#[derive(Args)]
pub struct ScheduleArgs {
    /// The controller's database; default: SQLite in a temporary directory.
    #[arg(long)]
    pub(super) database_url: Option<String>,
    #[arg(long, default_value_t = 100_000)]
    pub(super) checks: usize,
    /// Simulated nodes, in this process.
    #[arg(long, default_value_t = 10)]
    pub(super) nodes: usize,
    /// Every check's interval.
    #[arg(long, default_value = "60s", value_parser = crate::model::wire::parse_duration)]
    pub(super) interval: Duration,
    /// How long to measure, once every check has an owner.
    #[arg(long, default_value = "120s", value_parser = crate::model::wire::parse_duration)]
    pub(super) window: Duration,
}

#[derive(Args)]
pub struct FailoverArgs {
    /// The controller's database; default: SQLite in a temporary directory.
    #[arg(long)]
    pub(super) database_url: Option<String>,
    /// `tocsin node` processes.
    #[arg(long, default_value_t = 5)]
    pub(super) nodes: usize,
    #[arg(long, default_value_t = 500)]
    pub(super) checks: usize,
    /// Every check's interval.
    #[arg(long, default_value = "2s", value_parser = crate::model::wire::parse_duration)]
    pub(super) interval: Duration,
    /// Nodes killed, one after another (each is restarted before the next).
    #[arg(long, default_value_t = 3)]
    pub(super) rounds: usize,
}

pub async fn run(cmd: BenchCommand) -> Result<(), CliError> {
    match cmd {
        BenchCommand::Ingest(args) => ingest::ingest_bench(args).await,
        BenchCommand::Probes(args) => probes::probes(args).await,
        BenchCommand::Schedule(args) => schedule::schedule(args).await,
        BenchCommand::Failover(args) => failover::failover(args).await,
        BenchCommand::Alerting(args) => alerting::alerting_bench(args).await,
        BenchCommand::Sync(args) => sync::sync(args).await,
    }
}

pub(super) fn other(e: impl std::fmt::Display) -> CliError {
    CliError::Other(e.to_string())
}

/// The database at `url`, or a new SQLite file in a temporary directory
/// (kept as long as the returned guard).
pub(super) async fn bench_db(url: Option<String>) -> Result<(tempfile::TempDir, Db), CliError> {
    let dir = tempfile::tempdir().map_err(other)?;
    let url = url.unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display()));
    // A bench's secrets are sealed with a key of its own, as a controller's are.
    let keys = crate::secrets::Keyring::from_keys([crate::secrets::Keyring::generate().as_str()]).map_err(other)?;
    Ok((dir, Db::connect(&url, keys).await.map_err(other)?))
}

/// `count` paused checks with `confirm` retests, owned by `bench-node` from
/// the start of time so that every run a bench writes for them is accepted.
pub(super) async fn owned_checks(db: &Db, count: usize, confirm: u32) -> Result<Vec<i64>, CliError> {
    let run_tag = format!("{:x}", rand::random::<u32>());
    let mut ids = Vec::with_capacity(count);
    let mut tx = db.writer().begin().await.map_err(other)?;
    for i in 0..count {
        let spec: CheckSpec = serde_json::from_value(serde_json::json!({
            "name": format!("bench-{run_tag}-{i}"), "plugin": "http", "target": "https://example.com",
            "paused": true, "confirm": confirm
        }))
        .map_err(other)?;
        ids.push(store::checks::create(&mut tx, db.keys(), &spec, "bench").await.map_err(other)?.id);
    }
    let handovers: Vec<Handover> =
        ids.iter().map(|&check_id| Handover { check_id, node: "bench-node".into(), from_slot: 0 }).collect();
    store::cluster::hand_over(&mut tx, db, &handovers, now_ms()).await.map_err(other)?;
    tx.commit().await.map_err(other)?;
    Ok(ids)
}
