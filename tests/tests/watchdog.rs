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
    json(server, admin, &["token", "create", "--role", "node", "--name", "probes"])["token"]
        .as_str()
        .unwrap()
        .to_string()
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
    Platform { dir, _db: db, db_url, controllers: vec![first, second], token, _node: node }
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
                        token: &self.token,
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
    wait_until("the alarm arrives through the watchdog's own gateway", Duration::from_secs(20), || {
        alarms.first("down").is_some()
    });
    let alarm = alarms.first("down").unwrap() - killed;
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
    let w = watchdog(
        &p.dir.path().join("w1"),
        WatchdogSpec {
            name: "w1",
            port: tocsin_testkit::free_port(),
            controllers: p.urls(),
            token: &p.token,
            database_url: Some(&p.db_url),
            peers: vec![],
            canary: vec!["eu"],
            alarm_url: Some(&alarms.url),
            netns: None,
        },
    );
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
            token: &p.token,
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
