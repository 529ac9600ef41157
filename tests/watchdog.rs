//! Watchdogs for end-to-end tests: `tocsin-watchdog` processes with their
//! config written from a few parameters, a webhook sink that records the
//! alarms they send, and a one-way TCP relay that lets a watchdog in a
//! network namespace reach some ports of the host and nothing else.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Proc, binary};

/// The peer secret every test watchdog shares (through the environment,
/// as a deployment would pass it).
pub const PEER_SECRET: &str = "test-peer-secret-0123456789abcdef0123456789abcdef";

pub struct WatchdogProc {
    pub proc: Proc,
    pub name: String,
    /// Where the status page and the API are (inside its namespace, if any).
    pub url: String,
}

/// What a watchdog's config says besides its name and port.
pub struct WatchdogSpec<'a> {
    pub name: &'a str,
    pub port: u16,
    pub controllers: Vec<String>,
    pub token: &'a str,
    pub database_url: Option<&'a str>,
    pub peers: Vec<String>,
    /// Canary locations (none: no canary).
    pub canary: Vec<&'a str>,
    pub alarm_url: Option<&'a str>,
    pub netns: Option<&'a str>,
}

pub fn watchdog(dir: &Path, spec: WatchdogSpec) -> WatchdogProc {
    std::fs::create_dir_all(dir).unwrap();
    let list = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    let mut text = format!(
        "name = {:?}\nlisten = \"127.0.0.1:{}\"\nstate = {:?}\ninterval = \"1s\"\ndown_after = 2\n\
         controllers = [{}]\ntoken = {:?}\npeers = [{}]\n",
        spec.name,
        spec.port,
        dir.join("state.db"),
        list(&spec.controllers),
        spec.token,
        list(&spec.peers),
    );
    if let Some(db) = spec.database_url {
        text.push_str(&format!("database_url = {db:?}\n"));
    }
    if !spec.canary.is_empty() {
        let locations = spec.canary.iter().map(|l| format!("{l:?}")).collect::<Vec<_>>().join(", ");
        text.push_str(&format!(
            "\n[canary]\nlocations = [{locations}]\ninterval = \"1s\"\nrotate = \"3s\"\ndeadline = \"6s\"\n"
        ));
    }
    if let Some(url) = spec.alarm_url {
        text.push_str(&format!(
            "\n[[notify]]\nname = \"ops-hook\"\nplugin = \"webhook\"\nconfig = {{ url = {url:?} }}\n"
        ));
    }
    let config = dir.join("watchdog.toml");
    std::fs::write(&config, text).unwrap();
    let mut cmd = match spec.netns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns]).arg(binary("tocsin-watchdog"));
            cmd
        }
        None => Command::new(binary("tocsin-watchdog")),
    };
    cmd.arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info,tocsin_watchdog=debug")
        .env("TOCSIN_WATCHDOG_PEER_SECRET", PEER_SECRET);
    let mut proc = Proc::spawn(spec.name, cmd);
    proc.wait_for("listening on http://", Duration::from_secs(60));
    WatchdogProc { proc, name: spec.name.to_string(), url: format!("http://127.0.0.1:{}", spec.port) }
}

impl WatchdogProc {
    /// `/api/v1/status` (or `Value::Null` when it does not answer).
    pub fn status(&self) -> Value {
        get_json(&format!("{}/api/v1/status", self.url))
    }

    /// The view it shows its peers: every component it judged last round.
    pub fn view(&self) -> Value {
        get_json(&format!("{}/api/v1/view", self.url))
    }

    /// Health of component `id` ("up", "degraded", "down") in its last round.
    pub fn health(&self, id: &str) -> String {
        self.view()["components"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["id"] == id))
            .and_then(|c| c["health"].as_str())
            .unwrap_or("")
            .to_string()
    }
}

pub fn get_json(url: &str) -> Value {
    let out = Command::new("curl").args(["-s", "--max-time", "5", url]).output().expect("curl");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A webhook receiver recording every JSON body posted to it, with when.
pub struct Sink {
    pub url: String,
    pub received: Arc<Mutex<Vec<(Instant, Value)>>>,
}

pub fn sink() -> Sink {
    let received: Arc<Mutex<Vec<(Instant, Value)>>> = Arc::default();
    let recorded = received.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/alarm",
                axum::routing::post(move |body: axum::body::Bytes| {
                    let recorded = recorded.clone();
                    async move {
                        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        recorded.lock().unwrap().push((Instant::now(), value));
                        "{}"
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let addr = rx.recv().expect("the sink's address");
    Sink { url: format!("http://{addr}/alarm"), received }
}

impl Sink {
    /// Titles of the alarms received so far.
    pub fn titles(&self) -> Vec<String> {
        self.received.lock().unwrap().iter().map(|(_, v)| v["title"].as_str().unwrap_or("").to_string()).collect()
    }

    /// When the first alarm whose title contains `needle` arrived.
    pub fn first(&self, needle: &str) -> Option<Instant> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .find(|(_, v)| v["title"].as_str().is_some_and(|t| t.contains(needle)))
            .map(|(at, _)| *at)
    }
}

/// Something that answers at a peer watchdog's URL: `answer` gets the
/// request's headers and returns the status, headers and body of the
/// answer to `GET /api/v1/view`. Counts the requests it answered.
pub struct FakePeer {
    pub url: String,
    pub asked: Arc<std::sync::atomic::AtomicUsize>,
}

pub fn fake_peer<F>(answer: F) -> FakePeer
where
    F: Fn(&http::HeaderMap) -> (u16, Vec<(String, String)>, String) + Send + Sync + 'static,
{
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = asked.clone();
    let answer = Arc::new(answer);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/api/v1/view",
                axum::routing::get(move |headers: http::HeaderMap| {
                    let answer = answer.clone();
                    let counted = counted.clone();
                    async move {
                        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let (status, extra, body) = answer(&headers);
                        let mut response = http::Response::builder().status(status);
                        for (name, value) in extra {
                            response = response.header(name, value);
                        }
                        response.header("content-type", "application/json").body(axum::body::Body::from(body)).unwrap()
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let addr = rx.recv().expect("the fake peer's address");
    FakePeer { url: format!("http://{addr}"), asked }
}

/// Relays connections to `listen` (an address of the host side of a
/// namespace's veth) to `to` on the host's loopback, until the process ends.
pub fn relay(listen: &str, to: &str) {
    let listener = TcpListener::bind(listen).unwrap_or_else(|e| panic!("relay on {listen}: {e}"));
    let to = to.to_string();
    std::thread::spawn(move || {
        for inbound in listener.incoming().map_while(Result::ok) {
            let Ok(outbound) = TcpStream::connect(&to) else { continue };
            let (Ok(in2), Ok(out2)) = (inbound.try_clone(), outbound.try_clone()) else { continue };
            std::thread::spawn(move || pipe(inbound, outbound));
            std::thread::spawn(move || pipe(out2, in2));
        }
    });
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}
