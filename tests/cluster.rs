//! A cluster for end-to-end tests: controllers without local nodes, probe
//! nodes as separate processes (optionally in a network namespace), and a
//! target that records every hit as (check, slot, node).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::{Proc, binary, cli};

/// Fast timings, so failures show within seconds: heartbeat 1 s, dead
/// after 3 s, handback after 5 s, lease 6 s.
pub fn controller_config(dir: &Path) -> PathBuf {
    let path = dir.join("controller.toml");
    let cache = tocsin_testkit::plugin_cache();
    std::fs::write(
        &path,
        format!(
            "local_node = false\nmin_interval = \"1s\"\n\n[cluster]\nheartbeat = \"1s\"\ndead_after = \"3s\"\n\
             handback_after = \"5s\"\nlease_ttl = \"6s\"\nload_factor = 1.25\ncatch_up_slots = 3\n\n\
             [runtime]\ncache_dir = {cache:?}\nmax_concurrent = 64\n"
        ),
    )
    .unwrap();
    path
}

pub struct Controller {
    pub proc: Proc,
    pub url: String,
    /// The admin token printed on first start (empty if the database had one).
    pub token: String,
}

/// Starts `tocsin serve` without a local node on `listen` (port 0 for any).
/// The secrets key of every controller and site the tests start.
pub const SECRETS_KEY: &str = "5ec4e75ec4e75ec4e75ec4e75ec4e75ec4e75ec4e75ec4e75ec4e75ec4e75ec4";

pub fn controller(name: &str, dir: &Path, listen: &str, database_url: Option<&str>) -> Controller {
    controller_with(name, dir, listen, database_url, &[])
}

/// As [`controller`], with more `tocsin serve` flags.
pub fn controller_with(name: &str, dir: &Path, listen: &str, database_url: Option<&str>, extra: &[&str]) -> Controller {
    std::fs::create_dir_all(dir).unwrap();
    let mut cmd = Command::new(binary("tocsin"));
    cmd.args(["serve", "--listen", listen, "--node-name", name, "--data-dir"])
        .arg(dir)
        .arg("--config")
        .arg(controller_config(dir))
        // Controllers sharing a database, and sites following each other,
        // share the secrets key.
        .env("TOCSIN_SECRETS_KEY", SECRETS_KEY)
        .env("RUST_LOG", "info");
    if let Some(url) = database_url {
        cmd.args(["--database-url", url]);
    }
    cmd.args(extra);
    let mut proc = Proc::spawn(name, cmd);
    let line = proc.wait_for("listening on http://", Duration::from_secs(90));
    let url = line.split("listening on ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap().to_string();
    let token = proc
        .log()
        .lines()
        .find_map(|l| l.trim().strip_prefix("export TOCSIN_TOKEN=").map(str::to_string))
        .unwrap_or_default();
    Controller { proc, url, token }
}

pub struct NodeProc {
    pub proc: Proc,
    pub name: String,
    pub dir: PathBuf,
    pub metrics_url: String,
}

impl NodeProc {
    pub fn id(&self) -> String {
        std::fs::read_to_string(self.dir.join("node-id")).unwrap().trim().to_string()
    }
}

/// Starts `tocsin node`; in network namespace `netns` if given.
pub fn node(
    name: &str,
    location: &str,
    dir: &Path,
    controllers: &[&str],
    token: &str,
    netns: Option<&str>,
) -> NodeProc {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("node.toml");
    let cache = tocsin_testkit::plugin_cache();
    std::fs::write(&config, format!("catch_up_slots = 3\n\n[runtime]\ncache_dir = {cache:?}\nmax_concurrent = 32\n"))
        .unwrap();
    let mut cmd = match netns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns]).arg(binary("tocsin"));
            cmd
        }
        None => Command::new(binary("tocsin")),
    };
    cmd.args([
        "node",
        "--location",
        location,
        "--name",
        name,
        "--listen",
        "127.0.0.1:0",
        "--controller",
        &controllers.join(","),
    ])
    .arg("--data-dir")
    .arg(dir)
    .arg("--config")
    .arg(&config)
    .env("TOCSIN_TOKEN", token)
    .env("RUST_LOG", "info");
    let mut proc = Proc::spawn(name, cmd);
    let line = proc.wait_for("listening on http://", Duration::from_secs(90));
    let metrics_url = line.split("listening on ").nth(1).and_then(|s| s.split(';').next()).unwrap().to_string();
    NodeProc { proc, name: name.to_string(), dir: dir.to_path_buf(), metrics_url }
}

/// A hit on the target: which check, slot and node probed it.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub check: String,
    pub slot: i64,
    pub node: String,
    pub attempt: String,
}

pub struct RecordingTarget {
    pub url: String,
    pub hits: Arc<Mutex<Vec<Hit>>>,
}

/// An HTTP target on `addr` (e.g. `127.0.0.1:0`) that records the
/// `X-Tocsin-*` headers of every request.
pub fn recording_target(addr: &str) -> RecordingTarget {
    let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
    let recorded = hits.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let addr = addr.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/",
                axum::routing::get(move |headers: axum::http::HeaderMap| {
                    let recorded = recorded.clone();
                    async move {
                        let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                        recorded.lock().unwrap().push(Hit {
                            check: h("x-tocsin-check"),
                            slot: h("x-tocsin-slot").parse().unwrap_or(0),
                            node: h("x-tocsin-node"),
                            attempt: h("x-tocsin-attempt"),
                        });
                        "ok"
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    RecordingTarget { url: format!("http://{addr}/"), hits }
}

/// `tocsin ... -o json` against `server`, which must succeed.
pub fn json(server: &str, token: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = cli(server, token, &all);
    assert_eq!(out.code, 0, "tocsin {args:?}: {}", out.stderr);
    out.json()
}

/// The scheduled runs (seq 0) of `check`, oldest first, as (slot ms, node).
pub fn slots_run(server: &str, token: &str, check: &str) -> Vec<(i64, String)> {
    let runs = json(server, token, &["runs", check, "--limit", "1000"]);
    let mut slots: Vec<(i64, String)> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["seq"] == 0)
        .map(|r| (parse_time(r["slot"].as_str().unwrap()), r["node"].as_str().unwrap().to_string()))
        .collect();
    slots.sort();
    slots
}

pub fn parse_time(s: &str) -> i64 {
    let t = humantime::parse_rfc3339_weak(s).unwrap_or_else(|e| panic!("{s:?} is not a time: {e}"));
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Slots of `check` with no run between its first run and `until`: every
/// slot must have exactly one.
pub fn missed_slots(runs: &[(i64, String)], interval_ms: i64, until: i64) -> Vec<i64> {
    let Some(&(first, _)) = runs.first() else { return vec![] };
    let have: std::collections::HashSet<i64> = runs.iter().map(|(s, _)| *s).collect();
    (0..).map(|i| first + i * interval_ms).take_while(|s| *s <= until).filter(|s| !have.contains(s)).collect()
}

/// A node's owned checks, by name, from `tocsin node list`.
pub fn loads(server: &str, token: &str) -> HashMap<String, (i64, String)> {
    json(server, token, &["node", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                (n["load"].as_i64().unwrap(), n["state"].as_str().unwrap().to_string()),
            )
        })
        .collect()
}

/// The value of a counter or gauge in Prometheus text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// A network namespace with a veth pair to the host: the host side is
/// `10.231.<n>.1`, the namespace side `10.231.<n>.2`. Removed on drop.
pub struct Netns {
    pub name: String,
    pub host_ip: String,
    host_if: String,
}

impl Netns {
    pub fn new(n: u8) -> Netns {
        let name = format!("tocsin-e2e-{n}");
        let (host_if, ns_if) = (format!("tcs{n}h"), format!("tcs{n}n"));
        let host_ip = format!("10.231.{n}.1");
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let _ = Command::new("ip").args(["link", "del", &host_if]).status();
        let ns_addr = format!("10.231.{n}.2/30");
        let host_addr = format!("{host_ip}/30");
        for args in [
            vec!["netns", "add", &name],
            vec!["link", "add", &host_if, "type", "veth", "peer", "name", &ns_if],
            vec!["link", "set", &ns_if, "netns", &name],
            vec!["addr", "add", &host_addr, "dev", &host_if],
            vec!["link", "set", &host_if, "up"],
            vec!["netns", "exec", &name, "ip", "addr", "add", &ns_addr, "dev", &ns_if],
            vec!["netns", "exec", &name, "ip", "link", "set", &ns_if, "up"],
            vec!["netns", "exec", &name, "ip", "link", "set", "lo", "up"],
        ] {
            let status = Command::new("ip").args(&args).status().expect("running ip (iproute2)");
            assert!(status.success(), "ip {args:?} failed: this test needs root and iproute2");
        }
        Netns { name, host_ip, host_if }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).status();
    }
}
