//! `tocsin-watchdog bench failover`: SIGKILL the controller holding the
//! scheduling lease and time the alarm and the failover.
//!
//! Each round starts two `tocsin serve` controllers on a fresh PostgreSQL
//! schema and two watchdogs (this binary) with a webhook gateway to a sink
//! in this process, kills the lease holder, and measures from the kill to
//! the sink receiving "Controller ... down" and to the surviving controller
//! holding the lease. The peer, in the same run: the same kill with no
//! watchdog, where the survivor takes the lease when it lapses.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use sqlx::Connection;

pub struct Args {
    pub rounds: u32,
    pub tocsin: Option<PathBuf>,
    pub database_url: String,
}

struct Proc {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> anyhow::Result<Proc> {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as _),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        Ok(Proc { child, log })
    }

    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The first log line containing `needle`, waiting up to `timeout`.
    async fn wait_for(&self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return Ok(line.to_string());
            }
            if Instant::now() > deadline {
                bail!("no {needle:?} within {timeout:?}; log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Controller {
    proc: Proc,
    url: String,
    name: String,
}

/// The secrets key the bench's controllers share (a throwaway database).
const BENCH_SECRETS_KEY: &str = "be4c4be4c4be4c4be4c4be4c4be4c4be4c4be4c4be4c4be4c4be4c4be4c4be4c";

async fn controller(tocsin: &Path, name: &str, dir: &Path, db: &str) -> anyhow::Result<Controller> {
    std::fs::create_dir_all(dir)?;
    let config = dir.join("controller.toml");
    std::fs::write(&config, "local_node = false\n")?;
    let mut cmd = Command::new(tocsin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--node-name", name, "--database-url", db, "--data-dir"])
        .arg(dir)
        .arg("--config")
        .arg(&config)
        // The controllers share one database, so one secrets key.
        .env("TOCSIN_SECRETS_KEY", BENCH_SECRETS_KEY)
        .env("RUST_LOG", "warn");
    let proc = Proc::spawn(cmd)?;
    let line = proc.wait_for("listening on http://", Duration::from_secs(120)).await?;
    let url = line.split("listening on ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or("").to_string();
    Ok(Controller { proc, url, name: name.to_string() })
}

async fn get(http: &reqwest::Client, url: &str, token: &str) -> Option<Value> {
    http.get(url).bearer_auth(token).send().await.ok()?.json().await.ok()
}

/// A webhook sink; returns its URL and when each alarm title arrived.
async fn sink() -> anyhow::Result<(String, Arc<Mutex<Vec<(Instant, String)>>>)> {
    let received: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let recorded = received.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |body: axum::Json<Value>| {
            let recorded = recorded.clone();
            async move {
                let title = body["title"].as_str().unwrap_or("").to_string();
                recorded.lock().unwrap_or_else(|p| p.into_inner()).push((Instant::now(), title));
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{addr}/"), received))
}

/// One kill: (time to alarm, time to failover).
async fn round(args: &Args, tocsin: &Path, watchdogs: bool) -> anyhow::Result<(Option<Duration>, Duration)> {
    let dir = tempfile::tempdir()?;
    let schema = format!("wdbench_{}", rand::random::<u32>());
    let mut admin = sqlx::PgConnection::connect(&args.database_url).await.context("connecting to PostgreSQL")?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&mut admin).await?;
    let sep = if args.database_url.contains('?') { '&' } else { '?' };
    let db = format!("{}{sep}options=-c%20search_path%3D{schema}", args.database_url);
    let http = crate::platform::http_client(Duration::from_secs(2), &tocsin_tls::ClientTls::machine());
    let result = async {
        let first = controller(tocsin, "c1", &dir.path().join("c1"), &db).await?;
        let token = first
            .proc
            .wait_for("export TOCSIN_TOKEN=", Duration::from_secs(10))
            .await?
            .trim()
            .trim_start_matches("export TOCSIN_TOKEN=")
            .to_string();
        let second = controller(tocsin, "c2", &dir.path().join("c2"), &db).await?;
        let mut controllers = vec![first, second];
        let (sink_url, alarms) = sink().await?;
        let mut procs = Vec::new();
        if watchdogs {
            let ports: Vec<u16> = (0..2)
                .map(|_| std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()))
                .collect::<Result<_, _>>()?;
            // Both watchdogs sign their views with one secret of this run.
            let peer_secret = crate::model::fresh_nonce();
            for (i, name) in ["w1", "w2"].iter().enumerate() {
                let config = dir.path().join(format!("{name}.toml"));
                std::fs::write(
                    &config,
                    format!(
                        "name = {name:?}\nlisten = \"127.0.0.1:{}\"\nstate = {:?}\ncontrollers = [{:?}, {:?}]\n\
                         token = {token:?}\npeers = [\"http://127.0.0.1:{}\"]\npeer_secret = {peer_secret:?}\n\n[[notify]]\nname = \"sink\"\n\
                         plugin = \"webhook\"\nconfig = {{ url = {sink_url:?} }}\n",
                        ports[i],
                        dir.path().join(format!("{name}.db")),
                        controllers[0].url,
                        controllers[1].url,
                        ports[1 - i],
                    ),
                )?;
                let mut cmd = Command::new(std::env::current_exe()?);
                cmd.arg("--config").arg(&config).env("RUST_LOG", "warn");
                let proc = Proc::spawn(cmd)?;
                proc.wait_for("listening on http://", Duration::from_secs(60)).await?;
                procs.push((proc, ports[i]));
            }
            // Both watchdogs see the lease held and each other.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let mut ready = true;
                for (_, port) in &procs {
                    let view =
                        get(&http, &format!("http://127.0.0.1:{port}/api/v1/view"), "").await.unwrap_or_default();
                    let comps = view["components"].as_array().cloned().unwrap_or_default();
                    ready &= comps.iter().any(|c| c["id"] == "scheduler" && c["health"] == "up")
                        && comps.iter().filter(|c| c["kind"] == "watchdog" && c["health"] == "up").count() == 2;
                }
                if ready {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("the watchdogs did not settle within 60s");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let holder = loop {
            let c = get(&http, &format!("{}/api/v1/cluster", controllers[0].url), &token).await.unwrap_or_default();
            if let Some(h) = c["scheduler"].as_str() {
                break h.to_string();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let victim = controllers.iter().position(|c| holder.starts_with(&format!("{}@", c.name))).unwrap_or(0);
        let survivor = controllers.remove(1 - victim.min(1));
        let mut victim = controllers.pop().context("the victim")?;
        let killed = Instant::now();
        victim.proc.child.kill()?;
        let prefix = format!("{}@", survivor.name);
        let failover = loop {
            let c = get(&http, &format!("{}/api/v1/cluster", survivor.url), &token).await.unwrap_or_default();
            if c["scheduler"].as_str().is_some_and(|h| h.starts_with(&prefix)) {
                break killed.elapsed();
            }
            if killed.elapsed() > Duration::from_secs(60) {
                bail!("the survivor did not take the lease within 60s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let alarm = if watchdogs {
            loop {
                let found = alarms
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .find(|(_, t)| t.contains("Controller") && t.ends_with("down"))
                    .map(|(at, _)| *at - killed);
                if let Some(d) = found {
                    break Some(d);
                }
                if killed.elapsed() > Duration::from_secs(60) {
                    bail!("no alarm within 60s");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } else {
            None
        };
        drop(procs);
        Ok((alarm, failover))
    }
    .await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&mut admin).await;
    result
}

pub async fn failover(args: Args) -> anyhow::Result<()> {
    let tocsin = match &args.tocsin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("tocsin"),
    };
    anyhow::ensure!(
        tocsin.is_file(),
        "{} not found: build it (cargo build --release -p tocsin -p tocsin-watchdog) or pass --tocsin",
        tocsin.display()
    );
    let mut with = Vec::new();
    let mut without = Vec::new();
    for i in 0..args.rounds {
        eprintln!("round {}/{}: with watchdogs", i + 1, args.rounds);
        with.push(round(&args, &tocsin, true).await?);
        eprintln!("round {}/{}: without (the lease lapses by itself)", i + 1, args.rounds);
        without.push(round(&args, &tocsin, false).await?);
    }
    let stats = |mut v: Vec<Duration>| {
        v.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        (ms(v[v.len() / 2]), ms(v[v.len() - 1]))
    };
    let (alarm_p50, alarm_max) = stats(with.iter().filter_map(|(a, _)| *a).collect());
    let (fo_p50, fo_max) = stats(with.iter().map(|(_, f)| *f).collect());
    let (peer_p50, peer_max) = stats(without.iter().map(|(_, f)| *f).collect());
    println!("lease holder SIGKILLed, {} rounds each, controllers with the default lease (10s)", args.rounds);
    println!("{:<52} {:>10} {:>10}", "", "p50 ms", "max ms");
    println!("{:<52} {:>10.0} {:>10.0}", "kill -> alarm at the webhook (2 watchdogs)", alarm_p50, alarm_max);
    println!("{:<52} {:>10.0} {:>10.0}", "kill -> survivor holds the lease (2 watchdogs)", fo_p50, fo_max);
    println!("{:<52} {:>10.0} {:>10.0}", "peer: kill -> survivor holds the lease (no watchdog)", peer_p50, peer_max);
    println!("failover with watchdogs takes {:.2}x the time of the lease lapsing by itself (p50)", fo_p50 / peer_p50);
    Ok(())
}
