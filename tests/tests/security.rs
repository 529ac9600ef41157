//! Attacks on a real `tocsin serve`, each with the least privilege that
//! could try it, and what must hold afterwards: the attack is refused with
//! a clear 4xx and nothing it aimed at changed.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tocsin_e2e::sites::Api;
use tocsin_e2e::{Server, target};

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// A caller of the node protocol: a token and the key it sends.
struct NodeCaller {
    url: String,
    token: String,
    key: Option<String>,
    http: reqwest::Client,
}

impl NodeCaller {
    fn new(url: &str, token: &str, key: Option<&str>) -> NodeCaller {
        NodeCaller { url: url.to_string(), token: token.to_string(), key: key.map(str::to_string), http: http() }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.url)).bearer_auth(&self.token);
        if let Some(key) = &self.key {
            request = request.header("tocsin-node-key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the controller answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn enroll(&self, id: &str, location: &str) -> (u16, Value) {
        let hello = json!({"node_id": id, "name": id, "location": location, "version": "0.0.0-attacker"});
        self.call(Method::POST, "/api/v1/node/enroll", Some(hello)).await
    }

    async fn upload(&self, id: &str, runs: Vec<Value>) -> (u16, Value) {
        self.call(Method::POST, "/api/v1/node/results", Some(json!({"node_id": id, "runs": runs}))).await
    }
}

/// A run as a node reports it.
fn run(check_id: i64, slot: i64, epoch: i64, status: &str) -> Value {
    json!({
        "check_id": check_id, "slot": slot, "seq": 0, "attempt": "scheduled", "status": status,
        "error_code": null, "message": "forged", "metrics": [], "response_ms": 1.0,
        "node": "forger", "location": "nowhere", "epoch": epoch, "started_at": slot, "duration_ms": 1,
        "logs": [], "refusals": []
    })
}

async fn token(admin: &Api, role: &str) -> String {
    let made = admin.ok(Method::POST, "/api/v1/tokens", Some(json!({"name": format!("a {role}"), "role": role}))).await;
    made["token"].as_str().unwrap().to_string()
}

async fn wait_for(what: &str, timeout: Duration, mut probe: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !probe().await {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn only_a_node_acts_as_a_node_and_only_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let url = server.url.clone();
    tokio::runtime::Runtime::new().unwrap().block_on(async move {
        let admin = Api::new(&url, &server.token);
        let (viewer, editor, node_token) =
            (token(&admin, "viewer").await, token(&admin, "editor").await, token(&admin, "node").await);
        let ours = admin.ok(Method::GET, "/api/v1/nodes", None).await;
        let local = ours[0].clone();
        let (local_id, local_location) = (local["id"].as_str().unwrap(), local["location"].as_str().unwrap());

        // Tokens that are not node tokens: refused, and no node appears.
        for (role, token) in [("viewer", &viewer), ("editor", &editor), ("admin", &server.token)] {
            let impostor = NodeCaller::new(&url, token, Some("tcnk_a-key-that-is-long-enough-to-be-one-0000"));
            let (status, answer) = impostor.enroll(&format!("fake-{role}"), "nowhere").await;
            assert_eq!(status, 403, "an {role} token enrolls a node: {answer}");
            assert_eq!(impostor.upload(local_id, vec![]).await.0, 403, "an {role} token reports results");
        }
        let nodes = admin.ok(Method::GET, "/api/v1/nodes", None).await;
        assert_eq!(nodes.as_array().unwrap().len(), 1, "no impostor joined: {nodes}");

        // A node token enrolls a node; its key binds the id.
        let rogue = NodeCaller::new(&url, &node_token, Some("tcnk_the-rogue-nodes-own-key-0000000000000000"));
        let (status, answer) = rogue.enroll("rogue", "rogue-land").await;
        assert_eq!(status, 200, "{answer}");
        let keyless = NodeCaller::new(&url, &node_token, None);
        let other_key = NodeCaller::new(&url, &node_token, Some("tcnk_another-key-for-the-same-node-id-000000"));
        for (who, caller) in [("no key", &keyless), ("another key", &other_key)] {
            let (status, answer) = caller.enroll("rogue", "rogue-land").await;
            assert_eq!((status, answer["error"]["code"].as_str()), (403, Some("node_key_mismatch")), "{who}: {answer}");
        }
        let (status, answer) = keyless.enroll("keyless", "rogue-land").await;
        assert_eq!(status, 400, "a first enrollment without a key: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains("Tocsin-Node-Key"), "{answer}");

        // The same node token cannot speak for the controller's own node.
        let (status, answer) = rogue.enroll(local_id, local_location).await;
        assert_eq!(status, 403, "taking over the in-process node: {answer}");
        let beat = json!({"node_id": local_id, "running": 0, "buffered": 0, "assigned": 0});
        assert_eq!(rogue.call(Method::POST, "/api/v1/node/heartbeat", Some(beat)).await.0, 403);
        let work = format!("/api/v1/node/work?node={local_id}&version=0&wait_ms=0");
        assert_eq!(rogue.call(Method::GET, &work, None).await.0, 403);

        // Forged results for a check another node owns: every epoch it might
        // name is refused, and the check keeps its real state.
        let probed = target(Duration::ZERO);
        let web = json!({"name": "web", "plugin": "http", "target": probed.url, "interval": "10s",
                         "allow": ["127.0.0.1"], "locations": [local_location]});
        let web = admin.ok(Method::POST, "/api/v1/checks", Some(web)).await;
        let web_id = web["id"].as_i64().unwrap();
        wait_for("the real node reports web up", Duration::from_secs(60), async || {
            admin.get("/api/v1/checks/web").await.1["status"] == "up"
        })
        .await;
        let slot = now_ms() / 10_000 * 10_000;
        let forged: Vec<Value> = (0..20).map(|epoch| run(web_id, slot + 10_000, epoch, "down")).collect();
        let (status, reply) = rogue.upload("rogue", forged).await;
        assert_eq!(
            (status, reply["accepted"].as_u64(), reply["refused"].as_u64()),
            (200, Some(0), Some(20)),
            "{reply}"
        );
        let runs = admin.get("/api/v1/checks/web/runs?limit=100").await.1;
        let from_rogue: Vec<&Value> =
            runs["runs"].as_array().unwrap().iter().filter(|r| r["node"] != local["name"]).collect();
        assert!(from_rogue.is_empty(), "runs not from the owner: {from_rogue:?}");
        assert_eq!(admin.get("/api/v1/checks/web").await.1["status"], "up");

        // Its own check: its slots are kept, as itself, but not one that has
        // not come yet. (It beats, or it would be dead after 3 s.)
        let beat = json!({"node_id": "rogue", "running": 0, "buffered": 0, "assigned": 0});
        assert_eq!(rogue.enroll("rogue", "rogue-land").await.0, 200, "the rogue node comes back with its key");
        let own = json!({"name": "rogue-owned", "plugin": "http", "target": "https://example.com",
                         "interval": "10s", "locations": ["rogue-land"]});
        admin.ok(Method::POST, "/api/v1/checks", Some(own)).await;
        let mut assigned = Value::Null;
        wait_for("the rogue node is given its check", Duration::from_secs(30), async || {
            assert_eq!(rogue.call(Method::POST, "/api/v1/node/heartbeat", Some(beat.clone())).await.0, 200);
            let (_, work) = rogue.call(Method::GET, "/api/v1/node/work?node=rogue&version=0&wait_ms=0", None).await;
            assigned = work["checks"].as_array().and_then(|c| c.first()).cloned().unwrap_or(Value::Null);
            !assigned.is_null()
        })
        .await;
        let (id, epoch) = (assigned["id"].as_i64().unwrap(), assigned["epoch"].as_i64().unwrap());
        let now = now_ms() / 10_000 * 10_000;
        let ahead = run(id, now + 600_000, epoch, "up");
        assert_eq!(rogue.upload("rogue", vec![ahead]).await.1["accepted"], 0, "a slot ten minutes ahead");
        // Its first slot may lie a little ahead: it is kept once it has come.
        let first = assigned["from_slot"].as_i64().unwrap();
        wait_for("the rogue node's first slot comes", Duration::from_secs(30), async || {
            assert_eq!(rogue.call(Method::POST, "/api/v1/node/heartbeat", Some(beat.clone())).await.0, 200);
            now_ms() >= first
        })
        .await;
        let due = run(id, first, epoch, "up");
        assert_eq!(rogue.upload("rogue", vec![due]).await.1["accepted"], 1, "its own slot that has come");
        let kept = admin.get("/api/v1/checks/rogue-owned/runs?limit=10").await.1;
        let kept = &kept["runs"][0];
        assert_eq!((kept["node"].as_str(), kept["location"].as_str()), (Some("rogue"), Some("rogue-land")), "{kept}");

        // Too many runs in one upload: refused before any is read.
        let flood: Vec<Value> = (0..2001).map(|i| run(id, now - i * 10_000, epoch, "up")).collect();
        let (status, answer) = rogue.upload("rogue", flood).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("too_many_runs")), "{answer}");
    });
}

#[test]
fn the_data_directory_is_private_and_metrics_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Server::start(&data, &[]);
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory");
    for file in ["tocsin.db", "node-id"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }

    tokio::runtime::Runtime::new().unwrap().block_on(async move {
        let http = http();
        let metrics = async || http.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
        // The first odd request adds its series; the next 300 add none.
        let odd = |i: usize| Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
        http.request(odd(0), format!("{}/healthz", server.url)).send().await.unwrap();
        let before = metrics().await;
        for i in 1..=300 {
            http.request(odd(i), format!("{}/healthz", server.url)).send().await.unwrap();
        }
        let after = metrics().await;
        assert!(!after.contains("INVENTED"), "an invented method became a label");
        assert!(after.contains("method=\"other\""), "invented methods are counted as other");
        let series = |text: &str| text.lines().filter(|l| l.contains("/healthz")).count();
        assert_eq!(series(&after), series(&before), "300 odd requests added series:\n{after}");
    });
}

#[test]
fn gateway_secrets_stay_with_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let url = server.url.clone();
    tokio::runtime::Runtime::new().unwrap().block_on(async move {
        let admin = Api::new(&url, &server.token);
        let viewer = Api::new(&url, &token(&admin, "viewer").await);
        const PATH: &str = "/services/T0001/B0002/s3cretWebhookPath";
        const HEADER: &str = "Bearer s3cret-header-value";
        let config = json!({"url": format!("https://hooks.slack.com{PATH}"), "headers": {"Authorization": HEADER}});
        let hook = json!({"name": "hook", "plugin": "webhook", "config": config});
        admin.ok(Method::POST, "/api/v1/gateways", Some(hook)).await;

        // Whoever reads it sees where it goes, not how to use it.
        for (who, api) in [("viewer", &viewer), ("admin", &admin)] {
            for path in ["/api/v1/gateways/hook", "/api/v1/gateways"] {
                let (status, shown) = api.get(path).await;
                assert_eq!(status, 200, "{who} {path}: {shown}");
                let text = shown.to_string();
                assert!(!text.contains("s3cret"), "{who} reads a secret at {path}: {text}");
                assert!(text.contains("https://hooks.slack.com/***"), "{who} sees the destination: {text}");
            }
        }
        let audit = admin.ok(Method::GET, "/api/v1/audit?limit=100", None).await.to_string();
        assert!(!audit.contains("s3cret"), "the audit trail holds a secret: {audit}");

        // The hidden form keeps the secret only for the same destination.
        let (status, answer) = admin.get("/api/v1/gateways/hook").await;
        assert_eq!(status, 200);
        let mut moved = answer.clone();
        moved["config"]["url"] = json!("https://attacker.example/***");
        let (status, refused) = admin.call(Method::PUT, "/api/v1/gateways/hook", Some(moved)).await;
        assert_eq!(status, 400, "sending a stored secret to a new host: {refused}");
        assert!(refused["error"]["message"].as_str().unwrap().contains("same destination"), "{refused}");
        let mut renamed_header = answer.clone();
        renamed_header["config"]["headers"] = json!({"X-Leak": "***"});
        let (status, refused) = admin.call(Method::PUT, "/api/v1/gateways/hook", Some(renamed_header)).await;
        assert_eq!(status, 400, "a stored header under a new name: {refused}");
        let (status, kept) = admin.call(Method::PUT, "/api/v1/gateways/hook", Some(answer)).await;
        assert_eq!(status, 200, "sent back as read, it is kept: {kept}");
    });
}

#[test]
fn wrong_secrets_are_cheap_to_refuse_and_turned_away() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let url = server.url.clone();
    tokio::runtime::Runtime::new().unwrap().block_on(async move {
        let admin = Api::new(&url, &server.token);
        let viewer = token(&admin, "viewer").await;
        // The real id of a real token, with guessed secrets.
        let id = viewer.split('_').nth(1).unwrap().to_string();
        let flood = {
            let (url, id) = (url.clone(), id.clone());
            tokio::spawn(async move {
                let client = http();
                let mut statuses = Vec::new();
                for i in 0..2_000 {
                    let guess = format!("tcn_{id}_{i:0>43}");
                    let answer = client.get(format!("{url}/api/v1/checks")).bearer_auth(guess).send().await.unwrap();
                    statuses.push(answer.status().as_u16());
                }
                statuses
            })
        };
        // Meanwhile, the real token is answered, and quickly.
        let valid = Api::new(&url, &viewer);
        let mut took = Vec::new();
        while !flood.is_finished() && took.len() < 200 {
            let started = Instant::now();
            assert_eq!(valid.get("/api/v1/checks").await.0, 200, "the valid token during the flood");
            took.push(started.elapsed());
        }
        let statuses = flood.await.unwrap();
        took.sort();
        let median = took[took.len() / 2];
        eprintln!(
            "valid requests during the flood: {} answered, median {median:?}, slowest {:?}",
            took.len(),
            took.last().unwrap()
        );
        assert!(took.len() >= 5, "too few valid requests during the flood to judge: {}", took.len());
        assert!(median < Duration::from_millis(100), "a valid request took {median:?} (median) during the flood");
        assert_eq!(&statuses[..20], &[401; 20], "the first wrong secrets are told the token is unknown");
        assert!(statuses[20..].iter().all(|s| *s == 429), "then the source is turned away");
        let metrics = http().get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
        let counted = |reason: &str| {
            let prefix = format!("tocsin_auth_failures_total{{reason=\"{reason}\"}} ");
            metrics.lines().find_map(|l| l.strip_prefix(prefix.as_str())).and_then(|v| v.parse::<f64>().ok())
        };
        assert_eq!(
            (counted("invalid"), counted("throttled")),
            (Some(20.0), Some(1980.0)),
            "refused authentications are counted"
        );
    });
}

/// The scoped tokens an integration is given do their one job and nothing
/// else: an alert source raises alerts and cannot even read; a watchdog
/// reads and pulls its levers, but mints no token, touches no user's check
/// and changes no gateway.
#[test]
fn scoped_tokens_do_their_one_job() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let url = server.url.clone();
    tokio::runtime::Runtime::new().unwrap().block_on(async move {
        let admin = Api::new(&url, &server.token);
        let probed = target(Duration::ZERO);
        let web =
            json!({"name": "web", "plugin": "http", "target": probed.url, "interval": "10s", "allow": ["127.0.0.1"]});
        admin.ok(Method::POST, "/api/v1/checks", Some(web.clone())).await;
        let alerts = Api::new(&url, &token(&admin, "alerts").await);
        let watchdog = Api::new(&url, &token(&admin, "watchdog").await);
        let alert = json!({"source": "billing", "key": "backlog", "summary": "queue backlog"});
        let (status, answer) = alerts.post("/api/v1/alerts", alert).await;
        assert!((200..300).contains(&status), "an alerts token raises an alert: {status} {answer}");
        let audit_before = admin.ok(Method::GET, "/api/v1/audit?limit=1000", None).await.as_array().unwrap().len();
        let mut moved = web.clone();
        moved["target"] = json!("http://127.0.0.1:9/");
        for (who, api, method, path, body) in [
            ("alerts", &alerts, Method::GET, "/api/v1/checks", None),
            ("alerts", &alerts, Method::GET, "/api/v1/incidents", None),
            ("alerts", &alerts, Method::PUT, "/api/v1/checks/web", Some(moved.clone())),
            ("alerts", &alerts, Method::POST, "/api/v1/silences", Some(json!({}))),
            ("watchdog", &watchdog, Method::PUT, "/api/v1/checks/web", Some(moved.clone())),
            ("watchdog", &watchdog, Method::DELETE, "/api/v1/checks/web", None),
            ("watchdog", &watchdog, Method::POST, "/api/v1/tokens", Some(json!({"name": "x", "role": "admin"}))),
            ("watchdog", &watchdog, Method::DELETE, "/api/v1/gateways/x", None),
            (
                "watchdog",
                &watchdog,
                Method::POST,
                "/api/v1/alerts",
                Some(json!({"source": "w", "key": "k", "summary": "s"})),
            ),
        ] {
            let (status, answer) = api.call(method.clone(), path, body).await;
            assert_eq!(status, 403, "{who}: {method} {path}: {answer}");
        }
        let (status, nodes) = watchdog.get("/api/v1/nodes").await;
        assert_eq!((status, nodes.as_array().map(Vec::len)), (200, Some(1)), "a watchdog reads: {nodes}");
        let check = admin.ok(Method::GET, "/api/v1/checks/web", None).await;
        assert_eq!(check["target"], web["target"], "the check is untouched");
        let audit = admin.ok(Method::GET, "/api/v1/audit?limit=1000", None).await;
        assert_eq!(audit.as_array().unwrap().len(), audit_before, "nothing was changed: {audit}");
    });
}

#[test]
fn a_thousand_slow_checks_do_not_delay_an_alert() {
    const CHECKS: usize = 1000;
    const BOUND: Duration = Duration::from_secs(5);
    let dir = tempfile::tempdir().unwrap();
    // A node with fewer sandbox slots (250) than its checks want: each of
    // the thousand holds one for 9 of every 10 s (its network calls end a
    // second before its timeout).
    let config = dir.path().join("small-node.toml");
    let cache = tocsin_testkit::plugin_cache();
    std::fs::write(&config, format!("[runtime]\ncache_dir = {cache:?}\nmax_concurrent = 250\n")).unwrap();
    let server = Server::start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    let (url, admin_token) = (server.url.clone(), server.token.clone());
    // A port that takes connections and never answers: every probe of it
    // lasts its whole timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/", silent.local_addr().unwrap());
    let sink = tocsin_e2e::Sink::start();
    let cli = |args: &[&str]| {
        let out = tocsin_e2e::cli(&url, &admin_token, args);
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
    };
    cli(&["contact", "add", "ada", "--channel", "webhook=http://example.com/ada"]);
    cli(&sink.gateway_add("hook").iter().map(String::as_str).collect::<Vec<_>>());
    cli(&["route", "add", "web", "--channel", "webhook", "--gateway", "hook"]);
    cli(&["policy", "add", "oncall", "--step", "ada@10m"]);

    tokio::runtime::Runtime::new().unwrap().block_on(async move {
        let admin = Api::new(&url, &admin_token);
        let checks: Vec<Value> = (0..CHECKS)
            .map(|i| {
                json!({"name": format!("slow-{i}"), "plugin": "http", "target": silent_url, "interval": "10s",
                       "timeout": "10s", "allow": ["127.0.0.1"], "confirm": 0})
            })
            .collect();
        admin.ok(Method::POST, "/api/v1/apply", Some(json!({"checks": checks}))).await;
        let applied = Instant::now();
        let metric = async |name: &str| -> f64 {
            let text = http().get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
            text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
        };
        wait_for("the slow checks fill the sandbox", Duration::from_secs(40), async || {
            metric("tocsin_wasm_invocations_running ").await >= 225.0
        })
        .await;
        // The crowd builds for one interval, so every check has had its
        // first slot: the load the alert must get through, not a wait for
        // something to happen.
        tokio::time::sleep_until((applied + Duration::from_secs(12)).into()).await;

        let raised = Instant::now();
        let alert = json!({"source": "shop", "key": "checkout", "summary": "checkout fails", "policy": "oncall"});
        let answer = admin.ok(Method::POST, "/api/v1/alerts", Some(alert)).await;
        assert_eq!(answer["result"], "opened", "{answer}");
        let arrived = || sink.received.lock().unwrap().iter().any(|(_, b)| b["title"] == "checkout fails");
        let deadline = raised + Duration::from_secs(30);
        while !arrived() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let took = raised.elapsed();
        let running = metric("tocsin_wasm_invocations_running ").await;
        eprintln!("the alert reached the receiver: {}, after {took:?}; {running} invocations running", arrived());
        assert!(arrived(), "the alert never reached the receiver (waited {took:?}) while {CHECKS} slow checks ran");
        assert!(took < BOUND, "the alert took {took:?} to reach the receiver; the bound is {BOUND:?}");

        // Checks that found no slot in time failed, typed and counted,
        // instead of queueing without end; none took a notifier's slot.
        wait_for("checks that got no slot are counted", Duration::from_secs(30), async || {
            metric("tocsin_wasm_slot_timeouts_total{kind=\"check\"} ").await > 0.0
        })
        .await;
        assert_eq!(metric("tocsin_wasm_slot_capacity{kind=\"check\"} ").await, 225.0);
        assert!(metric("tocsin_wasm_slot_running{kind=\"check\"} ").await <= 225.0);
        assert_eq!(metric("tocsin_wasm_slot_timeouts_total{kind=\"notifier\"} ").await, 0.0);
        let errors = metric("tocsin_plugin_errors_total{plugin=\"http@0.1.0\",code=\"no_slot\"} ").await;
        assert!(errors > 0.0, "no_slot runs are reported like other run errors");
        drop(silent);
    });
    assert_eq!(server.proc.unexpected_errors(&[]), Vec::<String>::new());
}

#[test]
fn secrets_are_sealed_on_disk_and_a_wrong_key_stops_the_controller() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &[]);
    let url = server.url.clone();
    let token = server.token.clone();
    const WEBHOOK_PATH: &str = "/services/T0001/B0002/onDiskWebhookS3cret";
    const HEADER: &str = "Bearer onDiskHeaderS3cret";
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let admin = Api::new(&url, &token);
        let config =
            json!({"url": format!("https://hooks.slack.com{WEBHOOK_PATH}"), "headers": {"Authorization": HEADER}});
        admin
            .ok(Method::POST, "/api/v1/gateways", Some(json!({"name": "hook", "plugin": "webhook", "config": config})))
            .await;
        let check = json!({"name": "api", "plugin": "http", "target": "https://example.com/",
            "config": {"headers": {"Authorization": HEADER}}, "paused": true});
        admin.ok(Method::POST, "/api/v1/checks", Some(check)).await;
    });
    let key_file = data.join("secrets-key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key file is private");
    let key = std::fs::read_to_string(&key_file).unwrap();
    server.proc.terminate(Duration::from_secs(20));

    // The database's bytes (with its WAL) hold no secret and no key.
    let mut bytes = Vec::new();
    for file in ["tocsin.db", "tocsin.db-wal"] {
        bytes.extend(std::fs::read(data.join(file)).unwrap_or_default());
    }
    let text = String::from_utf8_lossy(&bytes);
    for secret in ["onDiskWebhookS3cret", "onDiskHeaderS3cret", key.trim()] {
        assert!(!text.contains(secret), "the database file holds {secret:?} in clear");
    }
    assert!(text.contains("enc:v1:"), "the secrets are in it, sealed");

    // Another key: the controller says so and stops, changing nothing.
    let wrong = dir.path().join("wrong-key");
    std::fs::write(&wrong, "0101010101010101010101010101010101010101010101010101010101010101\n").unwrap();
    let mut cmd = std::process::Command::new(tocsin_e2e::binary("tocsin"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--secrets-key-file")
        .arg(&wrong)
        .env("RUST_LOG", "info");
    let mut refused = tocsin_e2e::Proc::spawn("serve-wrong-key", cmd);
    refused.wait_for("same secrets key", Duration::from_secs(60));
    let status = refused.wait(Duration::from_secs(60));
    assert!(!status.success(), "a controller with the wrong key ran: {}", refused.log());
    let log = refused.log();
    assert!(log.contains("which this controller does not have") && log.contains("same secrets key"), "{log}");
    assert!(!log.contains("listening on"), "{log}");

    // The right key (the data directory's file) opens them again.
    let server = Server::start(&data, &[]);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let admin = Api::new(&server.url, &token);
        let shown = admin.ok(Method::GET, "/api/v1/gateways/hook", None).await;
        assert_eq!(shown["config"]["url"], "https://hooks.slack.com/***", "{shown}");
    });
}
