//! Helpers for the end-to-end tests in `tests/tests/`: a `tocsin serve`
//! process on an ephemeral port, the `tocsin` CLI pointed at it, and local
//! targets that record every hit.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use tocsin_testkit::process::{Proc, binary};
pub use tocsin_testkit::{Backend, PgCluster, TestDb};

pub mod browser;
pub mod cluster;
pub mod sites;
pub mod watchdog;

/// A running `tocsin serve`.
pub struct Server {
    pub proc: Proc,
    pub url: String,
    /// The admin token printed on first start (empty after a restart).
    pub token: String,
}

impl Server {
    /// Starts `tocsin serve` on a free port with its data in `data_dir`,
    /// sharing the tests' compiled-plugin cache (through `TOCSIN_CONFIG`,
    /// so `extra` may still name a `--config` of its own).
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        std::fs::create_dir_all(data_dir).unwrap();
        let config = data_dir.join("test-serve.toml");
        std::fs::write(&config, format!("[runtime]\ncache_dir = {:?}\n", tocsin_testkit::plugin_cache())).unwrap();
        let mut cmd = Command::new(binary("tocsin"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("TOCSIN_CONFIG", &config)
            .env("RUST_LOG", "info");
        let mut proc = Proc::spawn("serve", cmd);
        // http:// or https://
        let line = proc.wait_for("listening on http", Duration::from_secs(60));
        let url = line
            .split("listening on ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .expect("an address")
            .to_string();
        let token = proc
            .log()
            .lines()
            .find_map(|l| l.trim().strip_prefix("export TOCSIN_TOKEN=").map(str::to_string))
            .unwrap_or_default();
        Server { proc, url, token }
    }
}

/// What a CLI invocation printed and returned.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// Runs the `tocsin` CLI with `TOCSIN_SERVER` and `TOCSIN_TOKEN` set.
pub fn cli(server: &str, token: &str, args: &[&str]) -> Outcome {
    cli_with(server, token, &[], args)
}

/// [`cli`] with more environment (`TOCSIN_CA`, ...).
pub fn cli_with(server: &str, token: &str, env: &[(&str, &str)], args: &[&str]) -> Outcome {
    let out = Command::new(binary("tocsin"))
        .args(args)
        .env("TOCSIN_SERVER", server)
        .env("TOCSIN_TOKEN", token)
        .envs(env.iter().copied())
        .output()
        .expect("running tocsin");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Polls `condition` every 100 ms until it holds.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An HTTP target on 127.0.0.1 that answers `/` with 200 after `delay`,
/// and counts its hits. It runs on a thread of its own until the process
/// ends.
pub struct Target {
    pub url: String,
    pub hits: Arc<Mutex<Vec<Instant>>>,
}

pub fn target(delay: Duration) -> Target {
    let hits: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let recorded = hits.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/",
                axum::routing::get(move || {
                    let recorded = recorded.clone();
                    async move {
                        recorded.lock().unwrap().push(Instant::now());
                        tokio::time::sleep(delay).await;
                        "hello from the target"
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let addr = rx.recv().expect("the target's address");
    Target { url: format!("http://{addr}/"), hits }
}

/// A webhook gateway's endpoint that records every POST: its idempotency
/// key and JSON body.
pub struct Sink {
    pub url: String,
    pub received: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Sink {
    /// `tocsin gateway add NAME ...`: a webhook gateway posting here.
    pub fn gateway_add(&self, name: &str) -> Vec<String> {
        let url = format!("url={}", self.url);
        ["gateway", "add", name, "--plugin", "webhook", "--set", &url, "--allow", "127.0.0.1"]
            .map(String::from)
            .to_vec()
    }

    pub fn start() -> Sink {
        let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let log = received.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let app = axum::Router::new().route(
                    "/hook",
                    axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                        let log = log.clone();
                        async move {
                            let key = headers
                                .get("idempotency-key")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string();
                            log.lock().unwrap().push((key, serde_json::from_str(&body).unwrap_or(Value::Null)));
                            axum::Json(serde_json::json!({"id": "m"}))
                        }
                    }),
                );
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        Sink { url: format!("http://{addr}/hook"), received }
    }

    /// The contacts notified, in order.
    pub fn contacts(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b["contact"]["name"].as_str().unwrap_or("").to_string())
            .collect()
    }
}
