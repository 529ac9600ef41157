//! `tocsin bench ingest`: runs written per second, in batches as the
//! controller writes them.

use std::time::{Duration, Instant};

use super::{IngestArgs, other};
use crate::cli::CliError;
use crate::cluster::ClusterConfig;
use crate::ingest;
use crate::model::{CheckSpec, CheckStatus, Metric, now_ms};
use crate::store::cluster::Handover;
use crate::store::runs::NewRun;
use crate::store::{self, Db};

pub async fn ingest_bench(args: IngestArgs) -> Result<(), CliError> {
    let dir = tempfile::tempdir().map_err(other)?;
    let url =
        args.database_url.unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display()));
    let db = Db::connect(&url).await.map_err(other)?;
    eprintln!("creating {} checks on {:?}", args.checks, db.backend);
    let run_tag = format!("{:x}", rand::random::<u32>());
    let mut ids = Vec::with_capacity(args.checks);
    let mut tx = db.writer().begin().await.map_err(other)?;
    for i in 0..args.checks {
        let spec: CheckSpec = serde_json::from_value(serde_json::json!({
            "name": format!("bench-{run_tag}-{i}"), "plugin": "http", "target": "https://example.com", "paused": true
        }))
        .map_err(other)?;
        ids.push(store::checks::create(&mut tx, &spec, "bench").await.map_err(other)?.id);
    }
    // Owned by one node from the start of time, so every run is accepted.
    let handovers: Vec<Handover> =
        ids.iter().map(|&check_id| Handover { check_id, node: "bench-node".into(), from_slot: 0 }).collect();
    store::cluster::hand_over(&mut tx, &db, &handovers, now_ms()).await.map_err(other)?;
    tx.commit().await.map_err(other)?;
    let cluster = ClusterConfig::default();

    let metrics: Vec<Metric> =
        ["response_time", "dns_time", "connect_time", "tls_time", "first_byte_time", "status_code"]
            .iter()
            .map(|name| Metric { name: name.to_string(), value: 12.5, unit: "ms".into() })
            .collect();
    let base = now_ms() - (args.runs / args.checks.max(1)) as i64 * 60_000;
    let batch_size = ingest::BATCH;
    let started = Instant::now();
    let mut written = 0;
    let mut last_report = Instant::now();
    while written < args.runs {
        let batch: Vec<NewRun> = (written..(written + batch_size).min(args.runs))
            .map(|i| NewRun {
                check_id: ids[i % ids.len()],
                slot: base + (i / ids.len()) as i64 * 60_000,
                seq: 0,
                attempt: "scheduled".into(),
                status: if i % 50 == 0 { CheckStatus::Down } else { CheckStatus::Up },
                error_code: None,
                message: "200 in 12 ms".into(),
                metrics: metrics.clone(),
                response_ms: Some(12.5),
                node: "bench-node".into(),
                location: "bench".into(),
                epoch: 1,
                started_at: base + (i / ids.len()) as i64 * 60_000 + 3,
                duration_ms: 12,
                logs: Vec::new(),
                refusals: Vec::new(),
            })
            .collect();
        let stored = ingest::write(&db, &cluster, &crate::alerting::Rules::default(), &batch).await.map_err(other)?;
        if stored.accepted != batch.len() as u64 {
            return Err(other(format!("{} of {} runs were refused", stored.refused, batch.len())));
        }
        written += batch.len();
        if last_report.elapsed() > Duration::from_secs(2) {
            eprintln!("  {written} runs written ({:.0}/s)", written as f64 / started.elapsed().as_secs_f64());
            last_report = Instant::now();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ingest  backend={:?}  runs={}  checks={}  batch={}  seconds={:.2}  runs_per_second={:.0}",
        db.backend,
        args.runs,
        args.checks,
        batch_size,
        secs,
        args.runs as f64 / secs
    );
    Ok(())
}
