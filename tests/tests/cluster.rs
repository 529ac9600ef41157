//! Probe nodes in many locations, as separate processes: killed, stopped,
//! restarted; controllers killed; PostgreSQL stopped; a node cut off from
//! the target in a network namespace. No scheduled slot may be missed and
//! no slot may count twice.
//!
//! These tests run one at a time (each starts a whole cluster and measures
//! timing), with checks every 10 s, heartbeat 1 s, dead after 3 s.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tocsin_e2e::cluster::*;
use tocsin_e2e::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const INTERVAL_MS: i64 = 10_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn fetch(url: &str) -> String {
    let out = std::process::Command::new("curl").args(["-s", "--max-time", "5", url]).output().expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn node_token(server: &str, admin: &str) -> String {
    json(server, admin, &["token", "create", "--role", "node", "--name", "probes"])["token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn add_checks(server: &str, token: &str, target: &str, names: &[String], extra: &[&str]) {
    for name in names {
        let mut args = vec![
            "check",
            "add",
            name,
            "--target",
            target,
            "--interval",
            "10s",
            "--allow",
            "127.0.0.1",
            "--set",
            "context_headers=true",
        ];
        args.extend(extra);
        let out = cli(server, token, &args);
        assert_eq!(out.code, 0, "{out:?}");
    }
}

/// Waits until every check has at least `n` scheduled runs.
fn wait_for_runs(server: &str, token: &str, names: &[String], n: usize, timeout: Duration) {
    wait_until("every check has runs", timeout, || names.iter().all(|c| slots_run(server, token, c).len() >= n));
}

/// Asserts that no slot of any check was missed from its first run until
/// one interval ago (the newest slot may still be running).
fn assert_no_missed_slots(server: &str, token: &str, names: &[String]) {
    let until = now_ms() - INTERVAL_MS - 2_000;
    for name in names {
        let runs = slots_run(server, token, name);
        let missed = missed_slots(&runs, INTERVAL_MS, until);
        assert!(missed.is_empty(), "check {name} missed slots {missed:?}; runs: {runs:?}");
        let mut slots: Vec<i64> = runs.iter().map(|(s, _)| *s).collect();
        slots.dedup();
        assert_eq!(slots.len(), runs.len(), "{name}: a slot has two accepted results: {runs:?}");
    }
}

fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("c{i}")).collect()
}

struct Setup {
    dir: tempfile::TempDir,
    controller: Controller,
    node_token: String,
    nodes: Vec<NodeProc>,
    target: RecordingTarget,
}

impl Setup {
    fn url(&self) -> &str {
        &self.controller.url
    }

    fn token(&self) -> &str {
        &self.controller.token
    }

    fn start_node(&self, name: &str, location: &str) -> NodeProc {
        node(name, location, &self.dir.path().join(name), &[self.url()], &self.node_token, None)
    }

    /// Every ERROR a process logged, apart from those `expected`.
    fn assert_clean_logs(&self, expected: &[&str]) {
        for proc in std::iter::once(&self.controller.proc).chain(self.nodes.iter().map(|n| &n.proc)) {
            assert_eq!(proc.unexpected_errors(expected), Vec::<String>::new(), "{} logged errors", proc.name);
        }
    }
}

/// A controller on SQLite and nodes a, b (eu) and c (us).
fn three_nodes() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let controller = controller("controller", &dir.path().join("controller"), "127.0.0.1:0", None);
    let node_token = node_token(&controller.url, &controller.token);
    let target = recording_target("127.0.0.1:0");
    let mut setup = Setup { dir, controller, node_token, nodes: Vec::new(), target };
    for (name, location) in [("a", "eu"), ("b", "eu"), ("c", "us")] {
        let node = setup.start_node(name, location);
        setup.nodes.push(node);
    }
    setup
}

/// The node owning the most checks, once the plan has settled: every node
/// active (past `handback_after`, so handbacks are done) and the loads the
/// same on two reads a coordinator tick apart. Hashing may leave a node
/// with nothing, so "every node owns checks" is not the test.
fn busiest(setup: &Setup) -> usize {
    let mut last = HashMap::new();
    wait_until("the plan settles", Duration::from_secs(40), || {
        let now = loads(setup.url(), setup.token());
        let settled = now.values().all(|(_, state)| state == "active") && now == last;
        last = now;
        if !settled {
            std::thread::sleep(Duration::from_millis(500));
        }
        settled
    });
    (0..setup.nodes.len()).max_by_key(|&i| last[&setup.nodes[i].name].0).unwrap()
}

#[test]
fn a_killed_node_misses_no_slot_and_gets_its_checks_back() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut setup = three_nodes();
    let checks = names(6);
    add_checks(setup.url(), setup.token(), &setup.target.url, &checks, &[]);
    wait_for_runs(setup.url(), setup.token(), &checks, 2, Duration::from_secs(60));
    let victim = busiest(&setup);
    let victim_name = setup.nodes[victim].name.clone();
    let theirs: Vec<String> = checks
        .iter()
        .filter(|c| slots_run(setup.url(), setup.token(), c).last().is_some_and(|(_, n)| *n == victim_name))
        .cloned()
        .collect();
    assert!(!theirs.is_empty());

    let killed_at = now_ms();
    let started = Instant::now();
    setup.nodes[victim].proc.kill();
    wait_until("the dead node's checks move", Duration::from_secs(15), || {
        loads(setup.url(), setup.token())[&victim_name].0 == 0
    });
    let moved = started.elapsed();
    assert!(moved <= Duration::from_secs(5), "checks moved {moved:?} after SIGKILL, with a 3 s dead timeout");
    // Each runs again from its new owner, at its next slot at the latest.
    wait_until("the dead node's checks have new owners that ran them", Duration::from_secs(30), || {
        theirs.iter().all(|c| {
            slots_run(setup.url(), setup.token(), c)
                .iter()
                .any(|(slot, n)| *slot >= killed_at - INTERVAL_MS && *n != victim_name)
        })
    });
    let loads_now = loads(setup.url(), setup.token());
    assert_eq!(loads_now[&victim_name], (0, "dead".to_string()));
    assert_eq!(loads_now.values().map(|(l, _)| l).sum::<i64>(), 6, "every check has an owner");
    std::thread::sleep(Duration::from_secs(12));
    assert_no_missed_slots(setup.url(), setup.token(), &checks);

    // It comes back: after 5 s of health, at a slot boundary, its checks
    // return to it.
    let restarted_at = now_ms();
    let back = setup.start_node(&victim_name, if victim_name == "c" { "us" } else { "eu" });
    setup.nodes[victim] = back;
    wait_until("the returning node runs its checks again", Duration::from_secs(40), || {
        theirs.iter().all(|c| {
            slots_run(setup.url(), setup.token(), c).iter().any(|(slot, n)| *slot > restarted_at && *n == victim_name)
        })
    });
    std::thread::sleep(Duration::from_secs(5));
    assert_no_missed_slots(setup.url(), setup.token(), &checks);
    setup.assert_clean_logs(&[]);
}

#[test]
fn a_stopped_node_is_fenced_off_when_it_wakes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let setup = three_nodes();
    let checks = names(6);
    add_checks(setup.url(), setup.token(), &setup.target.url, &checks, &[]);
    wait_for_runs(setup.url(), setup.token(), &checks, 2, Duration::from_secs(60));
    let victim = busiest(&setup);
    let victim_name = setup.nodes[victim].name.clone();

    let refused_before = metric(&fetch(&format!("{}/metrics", setup.url())), "tocsin_runs_refused_total");
    setup.nodes[victim].proc.signal("STOP");
    wait_until("the stopped node is dead", Duration::from_secs(15), || {
        loads(setup.url(), setup.token())[&victim_name].1 == "dead"
    });
    std::thread::sleep(Duration::from_secs(6));
    setup.nodes[victim].proc.signal("CONT");
    // Awake, it runs the slots it missed and reports them: too late, from
    // an owner whose epoch is stale.
    wait_until("its late results are refused", Duration::from_secs(20), || {
        metric(&fetch(&format!("{}/metrics", setup.url())), "tocsin_runs_refused_total") > refused_before
    });
    std::thread::sleep(Duration::from_secs(12));
    assert_no_missed_slots(setup.url(), setup.token(), &checks);
    setup.assert_clean_logs(&[]);
}

#[test]
fn the_other_controller_takes_over_the_scheduling_lease() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new(Backend::Postgres));
    let dir = tempfile::tempdir().unwrap();
    let mut first = controller("controller-1", &dir.path().join("c1"), "127.0.0.1:0", Some(&db.url));
    let second = controller("controller-2", &dir.path().join("c2"), "127.0.0.1:0", Some(&db.url));
    let admin = first.token.clone();
    assert!(!admin.is_empty() && second.token.is_empty(), "one admin token, from the first start");
    let node_token = node_token(&first.url, &admin);
    let target = recording_target("127.0.0.1:0");
    let controllers = [first.url.as_str(), second.url.as_str()];
    let _nodes: Vec<NodeProc> = [("a", "eu"), ("b", "eu"), ("c", "us")]
        .iter()
        .map(|(name, location)| node(name, location, &dir.path().join(name), &controllers, &node_token, None))
        .collect();
    let checks = names(6);
    add_checks(&first.url, &admin, &target.url, &checks, &[]);
    wait_for_runs(&second.url, &admin, &checks, 2, Duration::from_secs(60));

    let cluster = fetch_cluster(&first.url, &admin);
    let (dying, surviving, survivor_name) = if cluster.starts_with("controller-1@") {
        (&mut first, &second, "controller-2@")
    } else {
        panic!("the first controller started first and should hold the lease: {cluster}");
    };
    let killed = Instant::now();
    dying.proc.kill();
    wait_until("the surviving controller holds the lease", Duration::from_secs(15), || {
        fetch_cluster(&surviving.url, &admin).starts_with(survivor_name)
    });
    let takeover = killed.elapsed();
    eprintln!("lease taken over {takeover:?} after SIGKILL of the holder");
    assert!(takeover <= Duration::from_secs(6 + 2), "took {takeover:?} with a 6 s lease");
    std::thread::sleep(Duration::from_secs(15));
    assert_no_missed_slots(&surviving.url, &admin, &checks);
}

/// Who holds the scheduling lease, as a controller sees it.
fn fetch_cluster(url: &str, token: &str) -> String {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("{url}/api/v1/cluster"),
        ])
        .output()
        .expect("curl");
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    state["scheduler"].as_str().unwrap_or("").to_string()
}

#[test]
fn nodes_buffer_while_postgresql_is_down_and_nothing_is_lost() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let controller = controller("controller", &dir.path().join("controller"), "127.0.0.1:0", Some(&pg.url));
    let node_token = node_token(&controller.url, &controller.token);
    let target = recording_target("127.0.0.1:0");
    let setup = Setup { dir, controller, node_token, nodes: Vec::new(), target };
    let nodes: Vec<NodeProc> =
        [("a", "eu"), ("b", "eu"), ("c", "us")].iter().map(|(n, l)| setup.start_node(n, l)).collect();
    let checks = names(6);
    add_checks(setup.url(), setup.token(), &setup.target.url, &checks, &[]);
    wait_for_runs(setup.url(), setup.token(), &checks, 2, Duration::from_secs(60));

    let failovers =
        || metric(&fetch(&format!("{}/metrics", setup.url())), "tocsin_check_moves_total{reason=\"failover\"}");
    let failovers_before = failovers();
    pg.stop_immediate();
    let buffered = |n: &NodeProc| metric(&fetch(&format!("{}/metrics", n.metrics_url)), "tocsin_results_buffered");
    wait_until("nodes buffer results while the database is down", Duration::from_secs(20), || {
        nodes.iter().any(|n| buffered(n) > 0.0)
    });
    std::thread::sleep(Duration::from_secs(10));
    pg.start_again();
    wait_until("the buffers drain once it is back", Duration::from_secs(30), || {
        nodes.iter().all(|n| buffered(n) == 0.0)
    });
    std::thread::sleep(Duration::from_secs(12));
    assert_no_missed_slots(setup.url(), setup.token(), &checks);
    assert_eq!(failovers(), failovers_before, "no node was judged dead for the database's silence");
    let controller_errors = setup.controller.proc.unexpected_errors(&["database", "writing results", "failed"]);
    assert_eq!(controller_errors, Vec::<String>::new());
    for n in &nodes {
        assert_eq!(n.proc.unexpected_errors(&[]), Vec::<String>::new(), "{}", n.name);
    }
}

#[test]
fn a_node_cut_off_from_the_target_is_overruled_by_another_location() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let netns = Netns::new(1);
    let dir = tempfile::tempdir().unwrap();
    // The controller listens where the namespace can reach it; the target
    // only on the host's loopback, which the namespace cannot.
    let controller = controller("controller", &dir.path().join("controller"), &format!("{}:0", netns.host_ip), None);
    let node_token = node_token(&controller.url, &controller.token);
    let target = recording_target("127.0.0.1:0");
    let cut_off =
        node("edge", "isolated", &dir.path().join("edge"), &[&controller.url], &node_token, Some(&netns.name));
    let healthy = node("a", "eu", &dir.path().join("a"), &[&controller.url], &node_token, None);
    // A failure can be retested only once another location has a node: a
    // check run from edge before `a` enrolled would have none.
    wait_until("both nodes are enrolled", Duration::from_secs(30), || {
        loads(&controller.url, &controller.token).len() == 2
    });
    let checks = names(8);
    add_checks(
        &controller.url,
        &controller.token,
        &target.url,
        &checks,
        &["--location", "isolated", "--location", "eu"],
    );
    wait_for_runs(&controller.url, &controller.token, &checks, 3, Duration::from_secs(60));

    let runs_of = |check: &str| json(&controller.url, &controller.token, &["runs", check, "--limit", "100"]);
    let from_edge: Vec<&String> = checks
        .iter()
        .filter(|c| slots_run(&controller.url, &controller.token, c).iter().any(|(_, n)| n == "edge"))
        .collect();
    assert!(!from_edge.is_empty(), "some checks run from the cut-off node");
    for check in &from_edge {
        // The newest failure's retest may still be on its way: take a
        // failure whose retest has arrived, waiting for one if need be.
        let failure_and_retest = || {
            let runs = runs_of(check);
            let runs = runs.as_array().unwrap().clone();
            runs.iter()
                .filter(|r| r["seq"] == 0 && r["node"] == "edge" && r["status"] == "down")
                .find_map(|down| runs.iter().find(|r| r["seq"] == 1 && r["slot"] == down["slot"]).cloned())
        };
        wait_until(
            &format!("{check}: a failure seen from the cut-off node is retested"),
            Duration::from_secs(30),
            || failure_and_retest().is_some(),
        );
        let retest = failure_and_retest().unwrap_or_else(|| panic!("{check}: no retest of a failure from edge"));
        assert_eq!(
            (retest["node"].as_str(), retest["status"].as_str(), retest["attempt"].as_str()),
            (Some("a"), Some("up"), Some("confirmation"))
        );
        let shown = json(&controller.url, &controller.token, &["check", "show", check]);
        assert_eq!(shown["status"], "up", "{check}: the check stays up: {shown}");
        // The newest run may be a newer failure whose retest is still on its
        // way ("... confirming from eu"): the check stays up meanwhile too.
        let message = shown["last_message"].as_str().unwrap();
        assert!(
            message.contains("seen from one location only")
                || message.contains("confirming from eu")
                || message.starts_with("200"),
            "{shown}"
        );
    }
    let hits = target.hits.lock().unwrap().clone();
    assert!(hits.iter().all(|h| h.node != "edge"), "the namespace cannot reach the target");
    assert!(hits.iter().any(|h| h.attempt == "confirmation"), "retests reached it from eu");
    for p in [&controller.proc, &cut_off.proc, &healthy.proc] {
        assert_eq!(p.unexpected_errors(&[]), Vec::<String>::new(), "{}", p.name);
    }
}
