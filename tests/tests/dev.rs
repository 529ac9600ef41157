//! `tocsin dev` as a newcomer runs it: one command starts a controller, two
//! nodes in two locations and a watchdog; the sample checks run from both
//! locations, an incident opens, the status page answers; Ctrl-C stops it
//! all and leaves no process behind. A child that dies stops the rest, and
//! a taken port is refused before anything starts.
//!
//! One at a time: each starts five processes.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tocsin_e2e::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const SAMPLE_CHECKS: [&str; 4] = ["controller-api", "controller-port", "flaky", "closed-port"];

/// A running `tocsin dev`, once it printed its banner.
struct Dev {
    proc: Proc,
    server: String,
    token: String,
    /// The CA of the directory's throwaway certificates (`TOCSIN_CA`).
    ca: String,
    status_page: String,
    /// (name, pid) of each child, as the banner lists them.
    children: Vec<(String, u32)>,
}

fn start(dir: &Path) -> Dev {
    // Both binaries must be there; `binary` says how to build a missing one.
    binary("tocsin-watchdog");
    let cache = tocsin_testkit::plugin_cache();
    let mut cmd = Command::new(binary("tocsin"));
    cmd.args(["dev", "--port-base", "0", "--dir"]).arg(dir).arg("--plugin-cache").arg(cache);
    let mut proc = Proc::spawn("dev", cmd);
    // A debug build with a cold plugin cache compiles the built-in plugins first.
    proc.wait_for("Ctrl-C stops everything", Duration::from_secs(300));
    let log = proc.log();
    let export = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("export TOCSIN_SERVER="))
        .expect("the banner has an export line")
        .to_string();
    let (server, rest) = export.split_once(" TOCSIN_TOKEN=").expect("server and token");
    let (token, ca) = rest.split_once(" TOCSIN_CA=").expect("the CA to trust");
    let status_page = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("status page"))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the banner names the status page")
        .to_string();
    let children = log
        .lines()
        .skip_while(|l| !l.trim().starts_with("PROCESS"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, rest) = l.trim().split_at(12);
            (name.trim().to_string(), rest.split_whitespace().next().unwrap().parse().unwrap())
        })
        .collect();
    Dev { proc, server: server.to_string(), token: token.to_string(), ca: ca.to_string(), status_page, children }
}

impl Dev {
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = cli_with(&self.server, &self.token, &[("TOCSIN_CA", &self.ca)], &all);
        assert_eq!(out.code, 0, "tocsin {args:?}: {out:?}");
        out.json()
    }

    fn pids(&self) -> HashSet<u32> {
        self.children.iter().map(|(_, pid)| *pid).collect()
    }
}

/// The processes whose parent is `parent`, with their start times (so a
/// reused pid is not taken for one of them).
fn children_of(parent: u32) -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            // After the command name: state, ppid, ..., starttime is the 20th.
            let started = fields.get(19)?.to_string();
            (fields.get(1)?.parse::<u32>().ok()? == parent).then_some((pid, started))
        })
        .collect()
}

fn alive(pid: u32, started: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|stat| {
        let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
        fields.get(19) == Some(&started) && fields.first() != Some(&"Z")
    })
}

/// ERROR lines in the children's logs.
fn logged_errors(dir: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    for entry in std::fs::read_dir(dir.join("logs")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        errors.extend(
            text.lines()
                .filter(|l| l.contains(" ERROR ") || l.contains("\"level\":\"ERROR\""))
                .map(|l| format!("{}: {l}", path.display())),
        );
    }
    errors
}

#[test]
fn dev_runs_the_whole_system_and_ctrl_c_stops_it() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let mut dev = start(&dir);
    assert!(dev.token.starts_with("tcn_"), "{}", dev.proc.log());
    // The controller and the watchdog serve HTTPS, with the directory's CA.
    assert!(dev.server.starts_with("https://") && dev.status_page.starts_with("https://"), "{}", dev.proc.log());
    assert_eq!(Path::new(&dev.ca), dir.canonicalize().unwrap().join("tls/ca.pem"));
    let names: Vec<&str> = dev.children.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["controller", "node home", "node away", "watchdog"]);
    let children = children_of(dev.proc.pid());
    assert_eq!(
        children.iter().map(|(pid, _)| *pid).collect::<HashSet<_>>(),
        dev.pids(),
        "the banner lists exactly the children"
    );

    wait_until("two live nodes, in home and away", Duration::from_secs(30), || {
        let nodes = dev.json(&["node", "list"]);
        let mut live: Vec<(String, String)> = nodes
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["state"] == "active" || n["state"] == "returning")
            .map(|n| (n["name"].as_str().unwrap().to_string(), n["location"].as_str().unwrap().to_string()))
            .collect();
        live.sort();
        live == [("away".to_string(), "away".to_string()), ("home".to_string(), "home".to_string())]
    });

    let locations = |check: &str| -> HashSet<String> {
        dev.json(&["runs", check, "--limit", "100"])
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["location"].as_str().unwrap().to_string())
            .collect()
    };
    wait_until("every sample check has run, and from both locations together", Duration::from_secs(60), || {
        let all: Vec<HashSet<String>> = SAMPLE_CHECKS.iter().map(|c| locations(c)).collect();
        all.iter().all(|l| !l.is_empty()) && all.iter().flatten().collect::<HashSet<_>>().len() == 2
    });
    // The closed port's failure is retested from the other location: both see it.
    wait_until("closed-port is down, confirmed from both locations", Duration::from_secs(60), || {
        locations("closed-port").len() == 2 && dev.json(&["check", "show", "closed-port"])["status"] == "down"
    });
    wait_until("an incident is open for closed-port", Duration::from_secs(30), || {
        dev.json(&["incident", "list"])
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["source"] == "check:closed-port" && i["state"] != "resolved")
    });
    wait_until("its notification is printed by tocsin dev", Duration::from_secs(30), || {
        dev.proc.log().lines().any(|l| l.contains("] alert (triggered): closed-port is down"))
    });
    for check in ["controller-api", "controller-port"] {
        assert_eq!(dev.json(&["check", "show", check])["status"], "up", "{check}");
    }

    let page = Command::new("curl")
        .args(["-s", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code} %{content_type}", "--cacert", &dev.ca])
        .arg(&dev.status_page)
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(page.starts_with("200 text/html"), "the status page: {page}");

    dev.proc.signal("INT");
    let status = dev.proc.wait(Duration::from_secs(60));
    assert!(status.success(), "Ctrl-C ends tocsin dev with 0: {status:?}\n{}", dev.proc.log());
    let still: Vec<u32> = children.iter().filter(|(pid, started)| alive(*pid, started)).map(|(p, _)| *p).collect();
    assert_eq!(still, Vec::<u32>::new(), "children left behind");
    let log = dev.proc.log();
    for name in ["watchdog", "node away", "node home", "controller"] {
        assert!(log.contains(&format!("stopping {name}… stopped in")), "{name} stopped cleanly:\n{log}");
    }
    assert!(log.contains("stopped; everything is kept in"), "{log}");
    assert_eq!(logged_errors(&dir), Vec::<String>::new());
}

#[test]
fn a_child_that_dies_stops_the_rest_and_is_named() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let mut dev = start(&dir);
    let children = children_of(dev.proc.pid());
    let (_, away) = dev.children.iter().find(|(n, _)| n == "node away").unwrap().clone();
    let killed = Command::new("kill").args(["-KILL", &away.to_string()]).status().unwrap();
    assert!(killed.success());
    let status = dev.proc.wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{}", dev.proc.log());
    let log = dev.proc.log();
    assert!(
        log.contains("error: node away exited unexpectedly (signal: 9 (SIGKILL))")
            && log.contains(&format!("{}", dir.join("logs/node-away.log").display())),
        "the error names the child and its log:\n{log}"
    );
    let still: Vec<u32> = children.iter().filter(|(pid, started)| alive(*pid, started)).map(|(p, _)| *p).collect();
    assert_eq!(still, Vec::<u32>::new(), "children left behind");
}

#[test]
fn a_taken_port_or_a_foreign_directory_is_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(binary("tocsin"))
        .args(["dev", "--port-base", &port.to_string(), "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("port {port} on 127.0.0.1, for the controller, is taken"))
            && stderr.contains("--port-base"),
        "{stderr}"
    );
    assert!(!dir.exists(), "nothing was created");

    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("precious.txt"), "mine").unwrap();
    let out = Command::new(binary("tocsin"))
        .args(["dev", "--fresh", "--port-base", "0", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("was not made by `tocsin dev`"), "{stderr}");
    assert!(dir.join("precious.txt").exists(), "--fresh never wipes a directory it did not make");
}
