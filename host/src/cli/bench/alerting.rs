//! `tocsin bench alerting`: how fast a confirmed failure reaches a gateway,
//! and how many notifications per second the outbox delivers through a
//! local webhook gateway, against the same gateway posted to directly.
//!
//! The controller's own pieces run in this process: ingest writes the
//! failing run (which opens the incident, starts the escalation and writes
//! the outbox row in one transaction) and the alerting worker delivers
//! through the built-in `webhook` notifier to a local sink.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tocsin_runtime::{Runtime, RuntimeConfig};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::{AlertingArgs, bench_db, other, owned_checks};
use crate::alerting::incidents::{self, Trigger};
use crate::alerting::links::Signer;
use crate::alerting::model::{Contact, ContactChannel, Gateway, Policy, Route, Step};
use crate::alerting::outbox::Deliverer;
use crate::alerting::{self, Rules, directory};
use crate::catalog::Catalog;
use crate::cli::CliError;
use crate::cluster::ClusterConfig;
use crate::ingest;
use crate::metrics::Metrics;
use crate::model::{CheckStatus, now_ms};
use crate::store::Db;
use crate::store::runs::NewRun;

/// A webhook endpoint that reports each notification's incident as it arrives.
async fn sink() -> Result<(String, mpsc::UnboundedReceiver<(String, Instant)>), CliError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let tx = tx.clone();
            async move {
                let at = Instant::now();
                let incident = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["incident"].as_str().map(str::to_string))
                    .unwrap_or_default();
                let _ = tx.send((incident, at));
                axum::Json(json!({"id": "m"}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(other)?;
    let url = format!("http://{}/hook", listener.local_addr().map_err(other)?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, rx))
}

async fn configure(db: &Db, sink: &str) -> Result<(), CliError> {
    let now = now_ms();
    let mut tx = db.writer().begin().await.map_err(other)?;
    let contact = Contact {
        name: "bench".into(),
        full_name: String::new(),
        channels: vec![ContactChannel { channel: "webhook".into(), address: sink.into() }],
    };
    directory::put(&mut tx, db.keys(), directory::CONTACTS, "bench", &contact, false, now).await.map_err(other)?;
    let gateway = Gateway {
        name: "sink".into(),
        plugin: "webhook".into(),
        config: json!({"url": sink}),
        allow: vec!["127.0.0.1".into()],
        timeout: Duration::from_secs(10),
    };
    directory::put(&mut tx, db.keys(), directory::GATEWAYS, "sink", &gateway, false, now).await.map_err(other)?;
    let route = Route { name: "web".into(), channel: "webhook".into(), sources: vec![], gateways: vec!["sink".into()] };
    directory::put(&mut tx, db.keys(), directory::ROUTES, "web", &route, false, now).await.map_err(other)?;
    let policy = Policy {
        name: "default".into(),
        steps: vec![Step { notify: vec!["bench".into()], timeout: Duration::from_secs(3600) }],
        repeat: 0,
        fallback: None,
    };
    directory::put(&mut tx, db.keys(), directory::POLICIES, "default", &policy, false, now).await.map_err(other)?;
    tx.commit().await.map_err(other)?;
    Ok(())
}

/// The value at quantile `p` (0 to 1) of `sorted`.
pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub async fn alerting_bench(args: AlertingArgs) -> Result<(), CliError> {
    let (_dir, db) = bench_db(args.database_url).await?;
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(std::env::temp_dir().join("tocsin-bench-plugin-cache")),
        ..RuntimeConfig::default()
    })
    .map_err(other)?;
    let catalog = Catalog::new(runtime).await.map_err(other)?;
    let (sink_url, mut arrivals) = sink().await?;
    configure(&db, &sink_url).await?;
    let rules = Rules { public_url: "http://127.0.0.1:7400".into(), ..Rules::default() };
    let wake = Arc::new(Notify::new());
    let deliverer = Arc::new(Deliverer {
        db: db.clone(),
        catalog,
        signer: Signer::load(&db).await.map_err(other)?,
        rules: rules.clone(),
        metrics: Arc::new(Metrics::default()),
    });
    let cancel = CancellationToken::new();
    let worker = tokio::spawn(alerting::run(
        db.clone(),
        deliverer,
        wake.clone(),
        crate::sync::SiteWatch::lone(),
        cancel.clone(),
    ));

    // 1. Latency: one failing check at a time, from the ingest of its
    // failed run to the gateway's request.
    eprintln!("latency: {} confirmed failures, one at a time ({:?})", args.failures, db.backend);
    let ids = owned_checks(&db, args.failures, 0).await?;
    let cluster = ClusterConfig::default();
    let mut latencies = Vec::with_capacity(args.failures);
    for (i, &check_id) in ids.iter().enumerate() {
        let slot = now_ms() - 1000;
        let run = NewRun {
            check_id,
            slot,
            seq: 0,
            attempt: "scheduled".into(),
            status: CheckStatus::Down,
            error_code: None,
            message: "503 Service Unavailable".into(),
            metrics: vec![],
            response_ms: None,
            node: "bench-node".into(),
            location: "bench".into(),
            epoch: 1,
            started_at: slot + 3,
            duration_ms: 3,
            logs: vec![],
            refusals: vec![],
        };
        let started = Instant::now();
        ingest::write(&db, &cluster, &rules, "bench-node", &[run]).await.map_err(other)?;
        wake.notify_one();
        let (_, at) = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
            .await
            .map_err(|_| other(format!("failure {i}: no notification within 30 s")))?
            .ok_or_else(|| other("the sink stopped"))?;
        latencies.push(at.duration_since(started).as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);

    // 2. Throughput: many incidents at once (inbound alerts, 500 per
    // transaction), until the gateway has every notification.
    eprintln!("throughput: {} notifications through the outbox", args.notifications);
    let started = Instant::now();
    for chunk in (0..args.notifications).collect::<Vec<_>>().chunks(500) {
        let mut tx = db.writer().begin().await.map_err(other)?;
        for &i in chunk {
            let t = Trigger {
                dedup_key: format!("bench:{i}"),
                source: "bench".into(),
                check_id: None,
                title: format!("alert {i}"),
                message: String::new(),
                severity: "critical".into(),
                policy: None,
            };
            incidents::trigger(&mut tx, &rules, &t, now_ms()).await.map_err(other)?;
        }
        tx.commit().await.map_err(other)?;
        wake.notify_one();
    }
    let mut seen: HashMap<String, Instant> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen.len() < args.notifications {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, arrivals.recv()).await {
            Ok(Some((incident, at))) => {
                seen.entry(incident).or_insert(at);
            }
            _ => return Err(other(format!("only {} of {} notifications arrived", seen.len(), args.notifications))),
        }
        if seen.len().is_multiple_of(1000) {
            eprintln!("  {} delivered", seen.len());
        }
    }
    let outbox_secs = started.elapsed().as_secs_f64();
    cancel.cancel();
    let _ = worker.await;

    // 3. The peer: the same gateway, posted to directly with the same
    // concurrency the outbox uses.
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut posts = tokio::task::JoinSet::new();
    let per_worker = args.notifications.div_ceil(32);
    for w in 0..32 {
        let (http, url) = (http.clone(), sink_url.clone());
        posts.spawn(async move {
            for i in 0..per_worker {
                let body = json!({"incident": format!("direct-{w}-{i}")});
                let _ = http.post(&url).json(&body).send().await;
            }
        });
    }
    while posts.join_next().await.is_some() {}
    let direct_secs = started.elapsed().as_secs_f64();
    let direct = (per_worker * 32) as f64 / direct_secs;
    let outbox = args.notifications as f64 / outbox_secs;

    println!("confirmed failure -> first gateway request ({} failures, {:?}):", args.failures, db.backend);
    println!(
        "  p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    println!("outbox throughput through the webhook gateway ({} notifications):", args.notifications);
    println!("  {outbox:.0} notifications/s (incident, escalation, outbox row, delivery, record: all durable)");
    println!("  peer: direct POSTs to the same gateway, 32 at a time: {direct:.0}/s; ratio {:.2}", outbox / direct);
    Ok(())
}
