//! `tocsin bench probes`: checks per second one node runs against one
//! target, at a given concurrency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tocsin_runtime::{CheckCall, Grant, RunContext, Runtime, RuntimeConfig};

use super::{ProbeArgs, other};
use crate::cli::CliError;

pub async fn probes(args: ProbeArgs) -> Result<(), CliError> {
    // Every probe gets a check slot; the notifiers' reserve is the 8 extra.
    let runtime = Runtime::new(RuntimeConfig {
        max_concurrent: args.concurrency as u32 + 8,
        notifier_slots: Some(8),
        ..RuntimeConfig::default()
    })
    .map_err(other)?;
    let artifact = tocsin_builtins::BUILTIN
        .iter()
        .find(|a| a.name == args.plugin)
        .ok_or_else(|| CliError::Usage(format!("{:?} is not a built-in check", args.plugin)))?;
    let plugin = runtime.load(artifact.wasm).await.map_err(other)?;
    let config: serde_json::Value =
        serde_json::from_str(&args.config).map_err(|e| CliError::Usage(format!("--config: {e}")))?;
    plugin.validate_config(&config).map_err(|e| CliError::Usage(e.to_string()))?;
    let allow: Vec<Grant> = args
        .allow
        .iter()
        .map(|g| g.parse().map_err(|e| CliError::Usage(format!("--allow: {e}"))))
        .collect::<Result<_, _>>()?;
    let call = CheckCall {
        target: args.target.clone(),
        config: config.to_string(),
        context: RunContext {
            check: "bench".into(),
            node: "bench".into(),
            location: "bench".into(),
            ..Default::default()
        },
        allow,
        timeout: Duration::from_secs(10),
    };
    // One run first: a misconfigured benchmark should say so, not measure errors.
    let first = plugin.check(call.clone()).await;
    match &first.outcome {
        Ok(o) => eprintln!("first run: {:?} {}", o.status, o.message),
        Err(e) => return Err(other(format!("the first run failed: {e}"))),
    }

    let (done, up, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let deadline = Instant::now() + args.duration;
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (plugin, call, done, up, failed) = (plugin.clone(), call.clone(), done.clone(), up.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let report = plugin.check(call.clone()).await;
                latencies.push(t.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
                match report.outcome {
                    Ok(o) if o.status == tocsin_runtime::Status::Up => up.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.map_err(other)?);
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "probes  plugin={}  concurrency={}  seconds={:.1}  probes={}  up={}  not_up={}  probes_per_second={:.0}  p50_ms={:.2}  p99_ms={:.2}",
        args.plugin,
        args.concurrency,
        secs,
        done.load(Ordering::Relaxed),
        up.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        done.load(Ordering::Relaxed) as f64 / secs,
        pct(0.5).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0
    );
    Ok(())
}
