//! `tocsin bench sync`: two sites on loopback, the backup following the
//! primary's change feed, measured from outside.
//!
//! Lag: changes are made on the primary at a steady rate while a poller
//! watches the backup's position; a change's lag is from the primary
//! answering its request to the backup holding it. Catch-up: the backup is
//! killed, `--catch-up` changes are made, and the restarted backup is timed
//! until it holds them all. The peer in the same run is the primary itself
//! taking those changes through its API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use super::alerting::percentile;
use super::local::{self, Controller};
use super::{SyncArgs, other};
use crate::cli::CliError;

const CONFIG: &str = "local_node = false\n";

/// Change `i`: contacts created, then edited over and over.
async fn change(primary: &Controller, i: usize) -> Result<(), CliError> {
    let name = format!("bench-{}", i % 100);
    let body = json!({"name": name, "full_name": format!("Change {i}"),
                      "channels": [{"channel": "email", "address": format!("c{i}@example.com")}]});
    let _: Value = if i < 100 {
        primary.admin.send(Method::POST, "/api/v1/contacts", &body).await?
    } else {
        primary.admin.send(Method::PUT, &format!("/api/v1/contacts/{name}"), &body).await?
    };
    Ok(())
}

async fn head(site: &Controller) -> Result<i64, CliError> {
    let status: Value = site.admin.get("/api/v1/sync/status").await?;
    status["site"]["head"].as_i64().ok_or_else(|| other(format!("no head in {status}")))
}

async fn backup(dir: &std::path::Path, db: Option<&str>, primary: &Controller) -> Result<Controller, CliError> {
    let token = primary.admin.token().unwrap_or_default().to_string();
    let extra = ["--site", "backup", "--follow", &primary.url, "--sync-token", &token];
    local::controller_with(&dir.join("backup"), CONFIG, db, &extra, Some(&token)).await
}

pub async fn sync(args: SyncArgs) -> Result<(), CliError> {
    let dir = tempfile::tempdir().map_err(other)?;
    let (p_db, b_db) = (args.primary_db.as_deref(), args.backup_db.as_deref());
    let primary = local::controller_with(
        &dir.path().join("primary"),
        CONFIG,
        p_db,
        &["--site", "primary", "--sync-allow", "127.0.0.1"],
        None,
    )
    .await?;
    let mut backup = backup(dir.path(), b_db, &primary).await?;
    let backend = if p_db.is_some() { "PostgreSQL" } else { "SQLite" };
    eprintln!("primary {} and backup {} ({backend})", primary.url, backup.url);

    // Lag under a steady rate.
    let base = head(&primary).await?;
    let seen: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let poller = {
        let (seen, stop, admin) = (seen.clone(), stop.clone(), backup.admin.clone());
        tokio::spawn(async move {
            let mut last = base;
            while !stop.is_cancelled() {
                if let Ok(status) = admin.get::<Value>("/api/v1/sync/status").await {
                    let now = status["site"]["head"].as_i64().unwrap_or(last);
                    let at = Instant::now();
                    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                    for seq in last + 1..=now {
                        seen.entry(seq).or_insert(at);
                    }
                    last = last.max(now);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let count = (args.rate * args.duration.as_secs_f64()).round() as usize;
    let every = Duration::from_secs_f64(1.0 / args.rate);
    let mut done = Vec::with_capacity(count);
    let start = Instant::now();
    for i in 0..count {
        tokio::time::sleep_until((start + every * i as u32).into()).await;
        change(&primary, i).await?;
        done.push(Instant::now());
    }
    let last = base + count as i64;
    local::poll("the backup to hold every change", Duration::from_secs(60), || {
        let seen = seen.clone();
        async move { Ok(seen.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&last)) }
    })
    .await?;
    stop.cancel();
    let _ = poller.await;
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut lags: Vec<f64> = done
        .iter()
        .enumerate()
        .filter_map(|(i, at)| {
            seen.get(&(base + 1 + i as i64)).map(|s| s.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    println!(
        "feed lag at {:.0} changes/s over {:?} ({} changes): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        args.rate,
        args.duration,
        lags.len(),
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        percentile(&lags, 1.0)
    );

    // Catch-up after an absence.
    backup.process.kill();
    let written = Instant::now();
    let mut shown = Instant::now();
    let mut stream = futures::stream::iter(0..args.catch_up).map(|i| change(&primary, count + i)).buffer_unordered(8);
    let mut made = 0;
    while let Some(result) = stream.next().await {
        result?;
        made += 1;
        if shown.elapsed() >= Duration::from_secs(2) {
            eprintln!("  {made} of {} changes made on the primary", args.catch_up);
            shown = Instant::now();
        }
    }
    let write_time = written.elapsed();
    let target = head(&primary).await?;
    let restarted = Instant::now();
    backup = self::backup(dir.path(), b_db, &primary).await?;
    let started_in = restarted.elapsed();
    let caught = Instant::now();
    let mut shown = Instant::now();
    loop {
        let now = head(&backup).await?;
        if now >= target {
            break;
        }
        if shown.elapsed() >= Duration::from_secs(2) {
            eprintln!("  backup at {now} of {target}");
            shown = Instant::now();
        }
        if caught.elapsed() > Duration::from_secs(600) {
            return Err(other(format!("the backup is at {now} of {target} after 10 minutes")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let catch_up = caught.elapsed();
    println!(
        "catch-up of {} changes: {:.2} s ({:.0} changes/s) after the backup was up (start took {:.2} s)",
        args.catch_up,
        catch_up.as_secs_f64(),
        args.catch_up as f64 / catch_up.as_secs_f64(),
        started_in.as_secs_f64()
    );
    println!(
        "peer: the primary took the same {} changes through its API in {:.2} s ({:.0} changes/s); catch-up / API = {:.2}",
        args.catch_up,
        write_time.as_secs_f64(),
        args.catch_up as f64 / write_time.as_secs_f64(),
        catch_up.as_secs_f64() / write_time.as_secs_f64()
    );
    Ok(())
}
