//! `tocsin bench schedule`: one controller scheduling many checks over
//! simulated nodes, and how late their runs start.
//!
//! The controller is a real `tocsin serve` process (no local node), so its
//! CPU time and memory are its own. The nodes are simulated in this
//! process: each is the real node runner (enrolment, heartbeats, long-poll
//! for work, slots, uploads over HTTP) sharing one plugin runtime, with a
//! buffer that notes every run it is handed before passing it on. Checks
//! are `tcp` checks against a local listener, so a run costs what a real
//! one costs minus the network.
//!
//! Start lateness is the node's own measure: when the plugin started minus
//! the slot it ran for. A slot is missed when no run for it reached a
//! buffer by the end of the window plus a grace period.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use tocsin_runtime::{Runtime, RuntimeConfig};
use tokio_util::sync::CancellationToken;

use super::local::{self, poll};
use super::{ScheduleArgs, other};
use crate::catalog::Catalog;
use crate::cli::CliError;
use crate::metrics::Metrics;
use crate::model::{Check, Millis, now_ms};
use crate::node::Identity;
use crate::node::buffer::{Buffer, BufferResult, MemoryBuffer};
use crate::node::http_link::HttpLink;
use crate::node::plugins::NodePlugins;
use crate::node::runner::{self, NodeSetup};
use crate::slots;
use crate::store::runs::NewRun;

/// A run as the benchmark remembers it: (check, slot, start lateness).
type Seen = (i64, Millis, i64);

/// A node's buffer that remembers every scheduled run it is handed.
struct Recording {
    inner: MemoryBuffer,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Buffer for Recording {
    fn push(&self, runs: Vec<NewRun>) -> BoxFuture<'_, BufferResult<()>> {
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.extend(runs.iter().filter(|r| r.seq == 0).map(|r| (r.check_id, r.slot, r.started_at - r.slot)));
        }
        self.inner.push(runs)
    }
    fn peek(&self, max: usize) -> BoxFuture<'_, BufferResult<Vec<(i64, NewRun)>>> {
        self.inner.peek(max)
    }
    fn ack(&self, ids: Vec<i64>) -> BoxFuture<'_, BufferResult<()>> {
        self.inner.ack(ids)
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn dropped(&self) -> u64 {
        self.inner.dropped()
    }
}

pub async fn schedule(args: ScheduleArgs) -> Result<(), CliError> {
    if args.nodes == 0 || args.checks == 0 {
        return Err(CliError::Usage("--nodes and --checks must be at least 1".into()));
    }
    let dir = tempfile::tempdir().map_err(other)?;
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(other)?;
    let target_addr = target.local_addr().map_err(other)?;
    tokio::spawn(async move {
        // A tcp check only needs the connection to be accepted.
        while let Ok((stream, _)) = target.accept().await {
            drop(stream);
        }
    });

    let controller = local::controller(dir.path(), "local_node = false\n", args.database_url.as_deref()).await?;
    eprintln!(
        "controller {} (pid {}), log {}",
        controller.url,
        controller.process.pid(),
        controller.process.log.display()
    );
    let token = controller.node_token().await?;

    // The simulated nodes start first, so checks are assigned as they are
    // created, the way a live cluster receives them.
    let runtime = Runtime::new(RuntimeConfig { max_concurrent: 4096, ..RuntimeConfig::default() }).map_err(other)?;
    let catalog = Catalog::new(runtime.clone()).await.map_err(other)?;
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let cancel = CancellationToken::new();
    let mut nodes = Vec::new();
    let machine = tocsin_tls::ClientTls::machine();
    for i in 0..args.nodes {
        let key_file = dir.path().join(format!("node-key-{i}"));
        let link =
            Arc::new(HttpLink::new(vec![controller.url.clone()], token.clone(), &key_file, &machine).map_err(other)?);
        let plugins = Arc::new(NodePlugins {
            catalog: catalog.clone(),
            link: link.clone(),
            dir: dir.path().join("plugins"),
            loaded: Default::default(),
        });
        let runtime = runtime.clone();
        let setup = NodeSetup {
            identity: Identity {
                id: format!("sim-{i}-{:08x}", rand::random::<u32>()),
                name: format!("sim-{i}"),
                location: "bench".into(),
            },
            link,
            plugins,
            buffer: Arc::new(Recording { inner: MemoryBuffer::default(), seen: seen.clone() }),
            metrics: Arc::new(Metrics::default()),
            catch_up_slots: 3,
            state_file: None,
            running: Arc::new(move || runtime.stats().running as u64),
        };
        nodes.push(tokio::spawn(runner::run(setup, cancel.clone())));
    }
    poll("every simulated node enrolled", Duration::from_secs(30), || async {
        Ok(controller.nodes().await?.len() == args.nodes)
    })
    .await?;

    let mut intervals = HashMap::<i64, i64>::new();
    let started = Instant::now();
    let interval = crate::model::wire::format_duration(args.interval);
    let created = futures::stream::iter(0..args.checks)
        .map(|i| {
            let body = serde_json::json!({
                "name": format!("bench-{i}"), "plugin": "tcp", "target": target_addr.to_string(),
                "interval": interval, "allow": ["127.0.0.1"],
            });
            let admin = &controller.admin;
            async move { admin.send::<Check, _>(reqwest::Method::POST, "/api/v1/checks", &body).await }
        })
        .buffer_unordered(16);
    futures::pin_mut!(created);
    let mut done = 0;
    while let Some(check) = created.next().await {
        let check = check?;
        intervals.insert(check.id, check.spec.interval.as_millis() as i64);
        done += 1;
        if done % 10_000 == 0 || done == args.checks {
            eprintln!("created {done}/{} checks ({:.0}/s)", args.checks, done as f64 / started.elapsed().as_secs_f64());
        }
    }
    let assigned = poll("every check has an owner", Duration::from_secs(300), || async {
        Ok(controller.nodes().await?.iter().map(|n| n.load).sum::<i64>() == args.checks as i64)
    })
    .await?;
    eprintln!("every check owned {:.1} s after the last was created", assigned.as_secs_f64());
    let loads: Vec<i64> = controller.nodes().await?.iter().map(|n| n.load).collect();

    // Time for every node to have its work and settle, then the window.
    let warmup = args.interval.min(Duration::from_secs(15)) + Duration::from_secs(5);
    eprintln!("warming up for {warmup:?}, then measuring for {:?}", args.window);
    tokio::time::sleep(warmup).await;
    let (t0, cpu0, stored0) =
        (now_ms(), controller.process.cpu_seconds(), controller.counter("tocsin_runs_stored_total").await?);
    let mut rss_max = 0;
    let window_end = Instant::now() + args.window;
    while Instant::now() < window_end {
        rss_max = rss_max.max(controller.process.rss().0);
        tokio::time::sleep(Duration::from_secs(1).min(window_end - Instant::now())).await;
    }
    let (t1, cpu1, stored1) =
        (now_ms(), controller.process.cpu_seconds(), controller.counter("tocsin_runs_stored_total").await?);
    let (rss, rss_peak) = controller.process.rss();
    // Runs for the window's last slots still have to start and finish.
    tokio::time::sleep(Duration::from_secs(5)).await;
    cancel.cancel();
    for node in nodes {
        let _ = node.await;
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()));
    let in_window: Vec<&Seen> = seen.iter().filter(|(_, slot, _)| (t0..t1).contains(slot)).collect();
    let distinct: HashSet<(i64, Millis)> = in_window.iter().map(|(c, s, _)| (*c, *s)).collect();
    let expected: usize = intervals
        .iter()
        .map(|(&id, &every)| {
            let mut n = 0;
            let mut slot = slots::next_at_or_after(id, every, t0);
            while slot < t1 {
                n += 1;
                slot += every;
            }
            n
        })
        .sum();
    let mut lateness: Vec<i64> = in_window.iter().map(|(_, _, late)| *late).collect();
    lateness.sort_unstable();
    let pct = |p: f64| {
        lateness.get(((lateness.len() as f64 * p) as usize).min(lateness.len().saturating_sub(1))).copied().unwrap_or(0)
    };
    let window_s = (t1 - t0) as f64 / 1000.0;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "checks           {} at {} over {} simulated nodes (load {}..{})",
        args.checks,
        interval,
        args.nodes,
        loads.iter().min().unwrap_or(&0),
        loads.iter().max().unwrap_or(&0)
    );
    println!(
        "window           {window_s:.0} s: {expected} slots due, {} run, {} missed, {} run twice",
        distinct.len(),
        expected.saturating_sub(distinct.len()),
        in_window.len() - distinct.len()
    );
    println!(
        "start lateness   p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
        pct(0.5),
        pct(0.99),
        pct(0.999),
        lateness.last().unwrap_or(&0)
    );
    println!(
        "controller CPU   {:.1} % of one core ({:.1} s in {window_s:.0} s)",
        100.0 * (cpu1 - cpu0) / window_s,
        cpu1 - cpu0
    );
    println!(
        "controller RSS   {:.0} MiB now, {:.0} MiB at most in the window, {:.0} MiB peak since start",
        mib(rss),
        mib(rss_max),
        mib(rss_peak)
    );
    println!("runs stored      {:.0} ({:.0}/s)", stored1 - stored0, (stored1 - stored0) / window_s);
    if expected > distinct.len() {
        return Err(other(format!("{} slots were missed", expected - distinct.len())));
    }
    Ok(())
}
