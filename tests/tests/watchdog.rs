//! The watchdog against real controllers, nodes and PostgreSQL: a killed
//! lease holder, a stopped database, a wedged scheduler, a watchdog cut
//! off from its peers in a network namespace, and bad configs. Alarms go
//! through the watchdog's own webhook gateway to a sink in the test.
//!
//! One test at a time: each starts a cluster and waits on timings.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use tocsin_e2e::cluster::*;
use tocsin_e2e::watchdog::*;
use tocsin_e2e::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn node_token(server: &str, admin: &str) -> String {
    scoped_token(server, admin, "node")
}

/// A token of a scoped role: watchdogs get a `watchdog` token, which reads
/// and pulls their levers and nothing else.
fn scoped_token(server: &str, admin: &str, role: &str) -> String {
    json(server, admin, &["token", "create", "--role", role, "--name", role])["token"].as_str().unwrap().to_string()
}

fn api(server: &str, token: &str, method: &str, path: &str, body: Option<&str>) -> Value {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "--max-time", "5", "-X", method, "-H", &format!("Authorization: Bearer {token}")]);
    if let Some(body) = body {
        cmd.args(["-H", "Content-Type: application/json", "-d", body]);
    }
    let out = cmd.arg(format!("{server}{path}")).output().expect("curl");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn lease(server: &str, token: &str) -> (String, i64) {
    let c = api(server, token, "GET", "/api/v1/cluster", None);
    (c["scheduler"].as_str().unwrap_or("").to_string(), c["epoch"].as_i64().unwrap_or(0))
}

/// Audit entries of `action`, newest first.
fn audit(server: &str, token: &str, action: &str) -> Vec<Value> {
    let out = json(server, token, &["audit", "--limit", "100"]);
    let entries = out.as_array().cloned().or_else(|| out["entries"].as_array().cloned()).unwrap_or_default();
    entries.into_iter().filter(|e| e["action"] == action).collect()
}

fn assert_clean(procs: &[&Proc], expected: &[&str]) {
    for p in procs {
        assert_eq!(p.unexpected_errors(expected), Vec::<String>::new(), "{} logged errors", p.name);
    }
}

/// Two controllers on one PostgreSQL database and a node in `eu`.
struct Platform {
    dir: tempfile::TempDir,
    _db: TestDb,
    db_url: String,
    controllers: Vec<Controller>,
    token: String,
    watchdog_token: String,
    _node: NodeProc,
}

fn platform(rt: &tokio::runtime::Runtime) -> Platform {
    let db = rt.block_on(TestDb::new(Backend::Postgres));
    let dir = tempfile::tempdir().unwrap();
    let first = controller("c1", &dir.path().join("c1"), "127.0.0.1:0", Some(&db.url));
    let second = controller("c2", &dir.path().join("c2"), "127.0.0.1:0", Some(&db.url));
    let token = first.token.clone();
    let node_token = node_token(&first.url, &token);
    let node = node("n1", "eu", &dir.path().join("n1"), &[&first.url, &second.url], &node_token, None);
    let db_url = db.url.clone();
    let watchdog_token = scoped_token(&first.url, &token, "watchdog");
    Platform { dir, _db: db, db_url, controllers: vec![first, second], token, watchdog_token, _node: node }
}

impl Platform {
    fn urls(&self) -> Vec<String> {
        self.controllers.iter().map(|c| c.url.clone()).collect()
    }

    /// The index of the controller holding the lease, once one does.
    fn holder(&self) -> usize {
        let mut found = None;
        wait_until("a controller holds the scheduling lease", Duration::from_secs(30), || {
            let (holder, _) = lease(&self.controllers[0].url, &self.token);
            found = ["c1@", "c2@"].iter().position(|p| holder.starts_with(p));
            found.is_some()
        });
        found.unwrap()
    }

    /// One watchdog, w1, with no peers, running the canary in `eu`.
    fn canary_watchdog(&self, alarm_url: &str) -> WatchdogProc {
        watchdog(
            &self.dir.path().join("w1"),
            WatchdogSpec {
                name: "w1",
                port: tocsin_testkit::free_port(),
                controllers: self.urls(),
                token: &self.watchdog_token,
                database_url: Some(&self.db_url),
                peers: vec![],
                canary: vec!["eu"],
                alarm_url: Some(alarm_url),
                netns: None,
            },
        )
    }

    /// Watchdogs w1, w2, ... on the host, one on each of the first ports;
    /// every one of `ports` is a peer of each (the rest may be started
    /// elsewhere).
    fn watchdogs(&self, ports: &[u16], count: usize, canary: bool, alarm_url: &str) -> Vec<WatchdogProc> {
        let names = ["w1", "w2", "w3"];
        (0..count)
            .map(|i| {
                watchdog(
                    &self.dir.path().join(names[i]),
                    WatchdogSpec {
                        name: names[i],
                        port: ports[i],
                        controllers: self.urls(),
                        token: &self.watchdog_token,
                        database_url: canary.then_some(self.db_url.as_str()),
                        peers: peer_urls(ports, i),
                        canary: if canary { vec!["eu"] } else { vec![] },
                        alarm_url: Some(alarm_url),
                        netns: None,
                    },
                )
            })
            .collect()
    }
}

/// The other watchdogs' URLs, for watchdog `me`.
fn peer_urls(ports: &[u16], me: usize) -> Vec<String> {
    (0..ports.len()).filter(|j| *j != me).map(|j| format!("http://127.0.0.1:{}", ports[j])).collect()
}

fn all_up(w: &WatchdogProc, ids: &[&str]) -> bool {
    ids.iter().all(|id| w.health(id) == "up")
}

#[test]
fn killing_the_lease_holder_fails_over_and_raises_the_alarm() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut p = platform(&rt);
    let alarms = sink();
    let ports = [tocsin_testkit::free_port(), tocsin_testkit::free_port()];
    let watchdogs = p.watchdogs(&ports, 2, true, &alarms.url);
    let holder = p.holder();
    let other = 1 - holder;
    let holder_id = format!("controller:{}", p.controllers[holder].url.trim_start_matches("http://"));
    wait_until("both watchdogs see everything up, the canary included", Duration::from_secs(60), || {
        watchdogs.iter().all(|w| all_up(w, &[&holder_id, "database", "scheduler", "canary:eu", "location:eu"]))
    });
    let (_, epoch_before) = lease(&p.controllers[other].url, &p.token);

    p.controllers[holder].proc.kill();
    let killed = Instant::now();
    let other_url = p.controllers[other].url.clone();
    let other_name = if other == 0 { "c1@" } else { "c2@" };
    wait_until("the other controller holds the lease", Duration::from_secs(20), || {
        lease(&other_url, &p.token).0.starts_with(other_name)
    });
    let failover = killed.elapsed();
    // The controller's alarm: a peer started after this watchdog may have
    // been reported down before the kill.
    wait_until("the alarm arrives through the watchdog's own gateway", Duration::from_secs(20), || {
        alarms.first("Controller").is_some()
    });
    let alarm = alarms.first("Controller").unwrap().saturating_duration_since(killed);
    eprintln!("controller killed: alarm after {alarm:?}, lease moved after {failover:?}");
    assert!(
        alarms.titles().iter().any(|t| t.contains("[Tocsin watchdog w1] Controller") && t.ends_with("down")),
        "{:?}",
        alarms.titles()
    );
    assert!(
        !alarms.titles().iter().any(|t| t.contains("watchdog w2")),
        "one watchdog (the first by name) sends the alarms: {:?}",
        alarms.titles()
    );

    // The watchdogs revoked the lease, fenced by the epoch they saw, both agreeing.
    let revokes = audit(&other_url, &p.token, "lease.revoke");
    assert_eq!(revokes.len(), 1, "one revocation: {revokes:?}");
    let entry = revokes[0].to_string();
    assert!(entry.contains("w1") && entry.contains("w2"), "both watchdogs agreed: {entry}");
    let (_, epoch_after) = lease(&other_url, &p.token);
    assert!(epoch_after > epoch_before);

    // The status page shows it: the controller down with an incident, and the action.
    wait_until("the status page shows the outage", Duration::from_secs(10), || {
        let s = watchdogs[0].status().to_string();
        s.contains(&holder_id) && s.contains("revoke_lease") && s.contains("\"down\"")
    });
    let page = std::process::Command::new("curl").args(["-s", &watchdogs[0].url]).output().unwrap();
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(page.contains("outage") || page.contains("Outage"), "the banner says so");
    // The canary keeps passing on the new scheduler.
    wait_until("the canary passes again under the new lease holder", Duration::from_secs(30), || {
        watchdogs.iter().all(|w| w.health("canary:eu") == "up" && w.health("scheduler") == "up")
    });
    let mut procs: Vec<&Proc> = watchdogs.iter().map(|w| &w.proc).collect();
    procs.push(&p.controllers[other].proc);
    assert_clean(&procs, &["no gateway delivered"]);
}

#[test]
fn a_stopped_database_raises_the_alarm_and_its_recovery() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let c = controller("c1", &dir.path().join("c1"), "127.0.0.1:0", Some(&pg.url));
    let alarms = sink();
    let w = watchdog(
        &dir.path().join("w1"),
        WatchdogSpec {
            name: "w1",
            port: tocsin_testkit::free_port(),
            controllers: vec![c.url.clone()],
            token: &c.token,
            database_url: Some(&pg.url),
            peers: vec![],
            canary: vec![],
            alarm_url: Some(&alarms.url),
            netns: None,
        },
    );
    wait_until("the watchdog sees the database up", Duration::from_secs(30), || w.health("database") == "up");
    pg.stop_immediate();
    let stopped = Instant::now();
    wait_until("the database alarm arrives", Duration::from_secs(20), || alarms.first("Database down").is_some());
    eprintln!("database stopped: alarm after {:?}", alarms.first("Database down").unwrap() - stopped);
    assert!(w.view().to_string().contains("cannot connect"), "the detail says why");
    pg.start_again();
    wait_until("the recovery is announced", Duration::from_secs(30), || alarms.first("Database recovered").is_some());
    let status = w.status().to_string();
    assert!(status.contains("Database down"), "the incident is on the status page: {status}");
}

#[test]
fn a_wedged_scheduler_is_caught_by_the_canary_and_loses_its_lease() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let p = platform(&rt);
    let alarms = sink();
    let w = p.canary_watchdog(&alarms.url);
    let holder = p.holder();
    let holder_url = p.controllers[holder].url.clone();
    wait_until("the canary passes", Duration::from_secs(60), || w.health("canary:eu") == "up");
    let wedged = api(
        &holder_url,
        &p.token,
        "PUT",
        "/api/v1/testing/failpoints/scheduler-wedged",
        Some(r#"{"action":"return"}"#),
    );
    assert_eq!(
        wedged["action"], "return",
        "the failpoint is set (target/debug/tocsin needs the `testing` feature: cargo test --workspace): {wedged}"
    );
    let started = Instant::now();
    let other_name = if holder == 0 { "c2@" } else { "c1@" };
    wait_until("the wedged holder loses the lease to the other controller", Duration::from_secs(40), || {
        lease(&holder_url, &p.token).0.starts_with(other_name)
    });
    eprintln!("scheduler wedged: lease moved after {:?}", started.elapsed());
    // It never stopped looking healthy.
    let health = std::process::Command::new("curl").args(["-s", &format!("{holder_url}/healthz")]).output().unwrap();
    assert!(String::from_utf8_lossy(&health.stdout).contains("ok"));
    let revokes = audit(&holder_url, &p.token, "lease.revoke");
    assert_eq!(revokes.len(), 1, "{revokes:?}");
    assert!(revokes[0].to_string().contains("canary"), "the evidence is the canary: {}", revokes[0]);
    wait_until("the canary passes under the new holder", Duration::from_secs(30), || w.health("canary:eu") == "up");
    assert!(alarms.first("Canary eu down").is_some(), "{:?}", alarms.titles());
}

#[test]
fn a_watchdog_cut_off_from_its_peers_never_acts_and_the_majority_does() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut p = platform(&rt);
    let holder = p.holder();
    let other = 1 - holder;
    let ns = Netns::new(41);
    // From its namespace w3 reaches the controller that does not hold the
    // lease, through a relay on the veth, and nothing else: not the lease
    // holder, not its peers.
    let other_port = p.controllers[other].url.rsplit(':').next().unwrap().to_string();
    relay(&format!("{}:{other_port}", ns.host_ip), &format!("127.0.0.1:{other_port}"));
    let holder_port = p.controllers[holder].url.rsplit(':').next().unwrap().to_string();
    let ports = [tocsin_testkit::free_port(), tocsin_testkit::free_port(), tocsin_testkit::free_port()];
    let alarms = sink();
    let majority = p.watchdogs(&ports, 2, false, &alarms.url);
    let isolated = watchdog(
        &p.dir.path().join("w3"),
        WatchdogSpec {
            name: "w3",
            port: ports[2],
            controllers: vec![
                format!("http://{}:{holder_port}", ns.host_ip),
                format!("http://{}:{other_port}", ns.host_ip),
            ],
            token: &p.watchdog_token,
            database_url: None,
            peers: peer_urls(&ports, 2),
            canary: vec![],
            alarm_url: None,
            netns: Some(&ns.name),
        },
    );
    let (_, epoch) = lease(&p.controllers[other].url, &p.token);
    // w3 believes the lease holder is dead and wants its lease revoked...
    let refusals = || isolated.proc.log().matches("not acting: too few watchdogs agree").count();
    wait_until("the isolated watchdog wants to act but has no quorum", Duration::from_secs(30), || refusals() >= 5);
    // ...but it never acts, and the majority sees nothing wrong.
    assert_eq!(lease(&p.controllers[other].url, &p.token).1, epoch, "the lease was not touched");
    assert!(!isolated.proc.log().contains("failover action"), "the isolated watchdog acted");
    wait_until("the majority sees w3 as down", Duration::from_secs(10), || {
        majority.iter().all(|w| w.health(&format!("watchdog:127.0.0.1:{}", ports[2])) == "down")
    });

    // The lease holder dies for real: the majority acts.
    p.controllers[holder].proc.kill();
    let other_url = p.controllers[other].url.clone();
    let other_name = if other == 0 { "c1@" } else { "c2@" };
    wait_until("the majority hands the lease over", Duration::from_secs(20), || {
        lease(&other_url, &p.token).0.starts_with(other_name)
    });
    let revokes = audit(&other_url, &p.token, "lease.revoke");
    assert_eq!(revokes.len(), 1, "{revokes:?}");
    let entry = revokes[0].to_string();
    assert!(entry.contains("w1") && entry.contains("w2") && !entry.contains("w3"), "agreed by w1 and w2: {entry}");
    assert!(majority[0].proc.log().contains("failover action taken"));
    assert!(!isolated.proc.log().contains("failover action"), "the isolated watchdog acted");
}

#[test]
fn a_bad_config_is_refused_at_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = |text: &str| {
        let path = dir.path().join("w.toml");
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(binary("tocsin-watchdog"))
            .arg("--config")
            .arg(&path)
            .arg("check-config")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let good = "name = \"w1\"\nlisten = \"127.0.0.1:0\"\ncontrollers = [\"http://127.0.0.1:1\"]\ntoken = \"t\"\n";
    let (code, err) = run(good);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run(&format!("{good}colour = \"red\"\n"));
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown field `colour`"), "{err}");
    let (code, err) = run(&good.replace("http://127.0.0.1:1", "http//127.0.0.1:1"));
    assert_eq!(code, Some(2));
    assert!(err.contains("controllers"), "{err}");
    let (code, err) = run(&good.replace("127.0.0.1:1", "no-such-controller.invalid:8080"));
    assert_eq!(code, Some(2));
    assert!(err.contains("no-such-controller.invalid:8080 is unreachable"), "{err}");
    let (code, err) =
        run(&format!("{good}[[notify]]\nname = \"hook\"\nplugin = \"webhook\"\nconfig = {{ url = 42 }}\n"));
    assert_eq!(code, Some(2));
    assert!(err.contains("notify \"hook\""), "{err}");
    let (code, err) = run(&format!("{good}[[notify]]\nname = \"x\"\nplugin = \"carrier-pigeon\"\n"));
    assert_eq!(code, Some(2));
    assert!(err.contains("no built-in notifier named \"carrier-pigeon\""), "{err}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// One plain HTTP/1.1 GET with `headers`; the status code (0 when nothing answers).
fn get_status(base: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    use std::io::{Read, Write};
    let authority = base.trim_start_matches("http://");
    let Ok(mut stream) = std::net::TcpStream::connect(authority) else { return 0 };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn scrape(w: &WatchdogProc) -> String {
    let out =
        std::process::Command::new("curl").args(["-s", "--max-time", "5", &format!("{}/metrics", w.url)]).output();
    String::from_utf8_lossy(&out.expect("curl").stdout).into_owned()
}

/// A watchdog alone with a controller that does not answer, and `peers`.
fn watching_a_dead_controller(
    dir: &std::path::Path,
    peers: Vec<String>,
    alarm_url: Option<&str>,
) -> (WatchdogProc, String) {
    let dead = format!("http://127.0.0.1:{}", tocsin_testkit::free_port());
    let w = watchdog(
        dir,
        WatchdogSpec {
            name: "w1",
            port: tocsin_testkit::free_port(),
            controllers: vec![dead.clone()],
            token: "tcn_not-needed-for-a-dead-controller",
            database_url: None,
            peers,
            canary: vec![],
            alarm_url,
            netns: None,
        },
    );
    (w, format!("controller:{}", dead.trim_start_matches("http://")))
}

/// The attack of issue 13: whoever answers at a peer's URL (or is reached
/// as one) serves an unsigned view named "0". Names order the watchdogs, so
/// "0" would be the one that sends the alarms, and it sends none.
#[test]
fn a_forged_peer_view_named_0_does_not_silence_the_alarms() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let alarms = sink();
    let forged = fake_peer(|_| {
        let view = serde_json::json!({"watchdog": "0", "at": now_ms(), "components": [], "motions": []});
        (200, vec![], view.to_string())
    });
    let (w, controller) =
        watching_a_dead_controller(&dir.path().join("w1"), vec![forged.url.clone()], Some(&alarms.url));
    let asked = || forged.asked.load(std::sync::atomic::Ordering::SeqCst);
    wait_until("the watchdog asks the impostor and sees the controller down", Duration::from_secs(30), || {
        asked() >= 3 && w.health(&controller) == "down"
    });
    wait_until("the alarm arrives all the same", Duration::from_secs(20), || alarms.first("down").is_some());
    assert!(alarms.titles().iter().any(|t| t.starts_with("[Tocsin watchdog w1] Controller")), "{:?}", alarms.titles());
    // The forged view counted for nothing: refused, counted, logged, and
    // its URL is a peer that does not answer.
    let refused = metric(&scrape(&w), "tocsin_watchdog_peer_views_refused_total{reason=\"unsigned\"}");
    assert!(refused >= 1.0, "refused views are counted: {}", scrape(&w));
    assert!(w.proc.log().contains("peer view refused"), "and logged");
    let impostor = format!("watchdog:{}", forged.url.trim_start_matches("http://"));
    wait_until("the impostor's URL counts as a peer that does not answer", Duration::from_secs(10), || {
        w.health(&impostor) == "down"
    });
    assert!(!w.status().to_string().contains("\"watchdog:0\""), "no watchdog named 0 anywhere");
}

/// Forged canary hits (stale generations, other locations, guessed nonces)
/// do not make a healthy platform look wedged, which would revoke a
/// healthy lease; the real canary keeps working. (That hits on the newest
/// generation without its nonce do not hide a wedged scheduler is
/// `canary::tests`: the nonce is all that counts, and viewers see it hidden.)
#[test]
fn forged_canary_hits_do_not_revoke_a_healthy_lease() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let p = platform(&rt);
    let alarms = sink();
    let w = p.canary_watchdog(&alarms.url);
    let holder = p.holder();
    let holder_url = p.controllers[holder].url.clone();
    wait_until("the canary passes", Duration::from_secs(60), || w.health("canary:eu") == "up");
    let (_, epoch) = lease(&holder_url, &p.token);
    // What anyone with a viewer token learns of the canary.
    let viewer = json(&holder_url, &p.token, &["token", "create", "--role", "viewer", "--name", "attacker"])["token"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = api(&holder_url, &viewer, "GET", "/api/v1/checks/watchdog-w1-canary-eu", None);
    let target = shown["target"].as_str().expect("the canary check's target").to_string();
    let base = target.split("/canary/").next().unwrap().to_string();

    // Attack 1: hits of stale generations, of other locations and with
    // guessed nonces, for longer than the deadline and a rotation.
    let flood_until = Instant::now() + Duration::from_secs(12);
    let mut forged = 0;
    while Instant::now() < flood_until {
        for path in ["/canary/w1/eu/0", "/canary/w1/eu/1", "/canary/w1/elsewhere/1", "/canary/w1/eu/99999999999999"] {
            for _ in 0..5 {
                get_status(
                    &base,
                    path,
                    &[("X-Tocsin-Location", "eu"), ("X-Tocsin-Canary", "00000000000000000000000000000000")],
                );
                forged += 1;
            }
        }
        assert_ne!(w.health("canary:eu"), "down", "forged hits made the canary fail: {}", w.view());
    }
    assert_eq!(lease(&holder_url, &p.token).1, epoch, "forged hits made the watchdog revoke a healthy lease");
    assert!(audit(&holder_url, &p.token, "lease.revoke").is_empty());
    assert!(alarms.first("Canary eu down").is_none(), "{:?}", alarms.titles());
    let refused = metric(&scrape(&w), "tocsin_watchdog_canary_hits_refused_total");
    assert!(refused >= 10.0, "forged hits are counted ({forged} sent): {refused}");
    // The nonce travels in a header, which readers of the check see hidden.
    let headers = shown["config"]["headers"].as_object().cloned().unwrap_or_default();
    assert!(!headers.is_empty() && headers.values().all(|v| v == "***"), "the nonce is hidden from viewers: {shown}");

    // The real canary still works: its probes keep being counted.
    let probed = |w: &WatchdogProc| {
        w.view()["components"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["id"] == "canary:eu"))
            .and_then(|c| c["detail"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    wait_until("a real probe of a newer generation arrives after the flood", Duration::from_secs(30), || {
        w.health("canary:eu") == "up" && probed(&w).contains("the last change arrived")
    });
}

/// The scheduler wedges, and an attacker with a viewer token hits the
/// canary target with the newest generation the API shows (and the header
/// as shown) to make the change look delivered: the watchdog still catches
/// the wedge and moves the lease.
#[test]
fn forged_canary_hits_do_not_hide_a_wedged_scheduler() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let p = platform(&rt);
    let alarms = sink();
    let w = p.canary_watchdog(&alarms.url);
    let holder = p.holder();
    let holder_url = p.controllers[holder].url.clone();
    wait_until("the canary passes", Duration::from_secs(60), || w.health("canary:eu") == "up");
    let viewer = json(&holder_url, &p.token, &["token", "create", "--role", "viewer", "--name", "attacker"])["token"]
        .as_str()
        .unwrap()
        .to_string();
    let wedged = api(
        &holder_url,
        &p.token,
        "PUT",
        "/api/v1/testing/failpoints/scheduler-wedged",
        Some(r#"{"action":"return"}"#),
    );
    assert_eq!(
        wedged["action"], "return",
        "the failpoint is set (target/debug/tocsin needs the `testing` feature): {wedged}"
    );
    let other_name = if holder == 0 { "c2@" } else { "c1@" };
    wait_until("the wedged holder loses the lease despite the forged hits", Duration::from_secs(60), || {
        let shown = api(&holder_url, &viewer, "GET", "/api/v1/checks/watchdog-w1-canary-eu", None);
        if let Some(target) = shown["target"].as_str()
            && let Some((base, rest)) = target.split_once("/canary/")
        {
            let mut headers = vec![("X-Tocsin-Location".to_string(), "eu".to_string())];
            for (name, value) in shown["config"]["headers"].as_object().into_iter().flatten() {
                headers.push((name.clone(), value.as_str().unwrap_or_default().to_string()));
            }
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            for _ in 0..5 {
                get_status(base, &format!("/canary/{rest}"), &headers);
            }
        }
        lease(&holder_url, &p.token).0.starts_with(other_name)
    });
    let revokes = audit(&holder_url, &p.token, "lease.revoke");
    assert_eq!(revokes.len(), 1, "{revokes:?}");
    assert!(revokes[0].to_string().contains("canary"), "the evidence is the canary: {}", revokes[0]);
    assert!(alarms.first("Canary eu down").is_some(), "{:?}", alarms.titles());
    wait_until("the real canary passes under the new holder", Duration::from_secs(30), || {
        w.health("canary:eu") == "up"
    });
}

/// Reading the status page does not render it: a round renders it once
/// and every request is served the stored bytes.
#[test]
fn the_status_page_is_rendered_once_per_round_however_often_it_is_read() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (w, controller) = watching_a_dead_controller(&dir.path().join("w1"), vec![], None);
    wait_until("a round was recorded", Duration::from_secs(30), || !w.health(&controller).is_empty());
    let counts = || {
        let text = scrape(&w);
        assert!(text.contains("tocsin_watchdog_page_renders_total"), "renders are counted: {text}");
        (metric(&text, "tocsin_watchdog_page_renders_total"), metric(&text, "tocsin_watchdog_round_seconds_count"))
    };
    let (renders_before, rounds_before) = counts();
    // Requests for at least three rounds.
    let mut requests = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while requests < 200 || counts().1 < rounds_before + 3.0 {
        assert!(Instant::now() < deadline, "three rounds did not pass within 30s");
        for path in ["/", "/api/v1/status"] {
            assert_eq!(get_status(&w.url, path, &[]), 200, "{path}");
            requests += 1;
        }
    }
    let (renders_after, rounds_after) = counts();
    let renders = renders_after - renders_before;
    let rounds = rounds_after - rounds_before;
    eprintln!("{requests} requests over {rounds} rounds: {renders} renders");
    assert!(renders <= rounds + 1.0, "{requests} requests over {rounds} rounds rendered the page {renders} times");
    assert!(renders >= rounds - 1.0, "each round renders the page: {renders} renders in {rounds} rounds");
    // The page still follows the rounds.
    let generated = |w: &WatchdogProc| w.status()["generated_at"].as_str().unwrap_or_default().to_string();
    let first = generated(&w);
    wait_until("the page changes with the next round", Duration::from_secs(10), || {
        let now = generated(&w);
        !now.is_empty() && now != first
    });
}
