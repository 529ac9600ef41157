//! `tocsin bench ingest`: runs written per second, in batches as the
//! controller writes them.

use std::time::{Duration, Instant};

use super::{IngestArgs, bench_db, other, owned_checks};
use crate::cli::CliError;
use crate::cluster::ClusterConfig;
use crate::ingest;
use crate::model::{CheckStatus, Metric, now_ms};
use crate::store::runs::NewRun;

pub async fn ingest_bench(args: IngestArgs) -> Result<(), CliError> {
    let (_dir, db) = bench_db(args.database_url).await?;
    eprintln!("creating {} checks on {:?}", args.checks, db.backend);
    let ids = owned_checks(&db, args.checks, 1).await?;
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
        let stored = ingest::write(&db, &cluster, &crate::alerting::Rules::default(), "bench-node", &batch)
            .await
            .map_err(other)?;
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
