//! Processes for the cluster benchmarks: a controller and nodes started
//! from this same binary on loopback ports, each with its output in a log
//! file, and what the kernel says about their CPU time and memory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::other;
use crate::cli::{CliError, Client};

pub struct Child {
    pub name: String,
    pub log: PathBuf,
    child: std::process::Child,
}

impl Child {
    fn spawn(name: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Child, CliError> {
        std::fs::create_dir_all(dir).map_err(other)?;
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).map_err(other)?;
        let exe = std::env::current_exe().map_err(other)?;
        let mut cmd = Command::new(exe);
        cmd.args(args).stdin(Stdio::null()).stdout(file.try_clone().map_err(other)?).stderr(file);
        cmd.env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| other(format!("starting {name}: {e}")))?;
        Ok(Child { name: name.to_string(), log, child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the line containing `needle`; fails with the log's tail if
    /// the process exits or `timeout` passes first.
    async fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String, CliError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.output().lines().find(|l| l.contains(needle)) {
                return Ok(line.to_string());
            }
            let exited = self.child.try_wait().map_err(other)?;
            if exited.is_some() || Instant::now() > deadline {
                let out = self.output();
                let tail: Vec<&str> = out.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
                return Err(other(format!(
                    "{} did not print {needle:?} ({}); its log {} ends:\n{}",
                    self.name,
                    if exited.is_some() { "it exited" } else { "timed out" },
                    self.log.display(),
                    tail.join("\n")
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// CPU seconds (user + system, all threads) since the process started.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are
        // the 14th and 15th of the whole line.
        let fields: Vec<&str> =
            stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
        let ticks: f64 =
            fields.get(11..13).map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()).unwrap_or(0.0);
        ticks / clock_ticks()
    }

    /// Resident memory now and at its peak, in bytes.
    pub fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        (kib("VmRSS:"), kib("VmHWM:"))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

pub struct Controller {
    pub process: Child,
    pub url: String,
    pub admin: Client,
}

/// Starts `tocsin serve` without a local node; `config` is its TOML.
pub async fn controller(dir: &Path, config: &str, database_url: Option<&str>) -> Result<Controller, CliError> {
    controller_with(dir, config, database_url, &[], None).await
}

/// As [`controller`], with more flags; `token` is the admin token to use
/// when the controller prints none (a passive site, a restart).
pub async fn controller_with(
    dir: &Path,
    config: &str,
    database_url: Option<&str>,
    extra: &[&str],
    token: Option<&str>,
) -> Result<Controller, CliError> {
    let config_path = dir.join("controller.toml");
    std::fs::create_dir_all(dir).map_err(other)?;
    std::fs::write(&config_path, config).map_err(other)?;
    let data = dir.join("controller");
    let (data, config_path) = (data.display().to_string(), config_path.display().to_string());
    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", &data, "--config", &config_path];
    if let Some(url) = database_url {
        args.extend(["--database-url", url]);
    }
    args.extend(extra);
    let mut process = Child::spawn("controller", dir, &args, &[])?;
    let line = process.wait_for("listening on http://", Duration::from_secs(60)).await?;
    let url = line.split("listening on ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or("").to_string();
    let admin_token = process
        .output()
        .lines()
        .find_map(|l| l.trim().strip_prefix("export TOCSIN_TOKEN=").map(str::to_string))
        .or(token.map(str::to_string))
        .ok_or_else(|| other("the controller printed no admin token: is its database new?"))?;
    let admin = Client::new(vec![url.clone()], Some(admin_token), &tocsin_tls::ClientTls::machine())?;
    Ok(Controller { process, url, admin })
}

impl Controller {
    pub async fn node_token(&self) -> Result<String, CliError> {
        let created: serde_json::Value = self
            .admin
            .send(reqwest::Method::POST, "/api/v1/tokens", &serde_json::json!({"name": "bench nodes", "role": "node"}))
            .await?;
        created["token"].as_str().map(str::to_string).ok_or_else(|| other("no token in the answer"))
    }

    /// Each node's id, name, state and load.
    pub async fn nodes(&self) -> Result<Vec<crate::model::Node>, CliError> {
        self.admin.get("/api/v1/nodes").await
    }

    /// The sum of a counter's samples in the controller's `/metrics`.
    pub async fn counter(&self, prefix: &str) -> Result<f64, CliError> {
        let text = reqwest::get(format!("{}/metrics", self.url)).await.map_err(other)?.text().await.map_err(other)?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }
}

/// Starts `tocsin node` in `dir/<name>`; a restart with the same name
/// reuses its identity and buffer.
pub async fn node(dir: &Path, name: &str, location: &str, controller: &str, token: &str) -> Result<Child, CliError> {
    let data = dir.join(name).display().to_string();
    let args = [
        "node",
        "--controller",
        controller,
        "--location",
        location,
        "--name",
        name,
        "--data-dir",
        &data,
        "--listen",
        "127.0.0.1:0",
    ];
    let mut process = Child::spawn(name, dir, &args, &[("TOCSIN_TOKEN", token)])?;
    process.wait_for("listening on http://", Duration::from_secs(60)).await?;
    Ok(process)
}

/// Polls `done` every 50 ms until it is true or `timeout` passes.
pub async fn poll<F, Fut>(what: &str, timeout: Duration, mut done: F) -> Result<Duration, CliError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, CliError>>,
{
    let started = Instant::now();
    while started.elapsed() < timeout {
        if done().await? {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(other(format!("timed out after {timeout:?} waiting until {what}")))
}
