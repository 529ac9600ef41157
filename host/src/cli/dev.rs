//! `tocsin dev`: the whole system on this machine, in one command, to see
//! it work (or to work on it) within a minute.
//!
//! It starts, as child processes on 127.0.0.1:
//!
//! - a controller (`tocsin serve`, SQLite in the dev directory) without a
//!   node of its own, so that probing happens where it does in production:
//!   in separate processes;
//! - two probe nodes (`tocsin node`) in two locations, `home` and `away`, so
//!   a failure is confirmed from a second location before a check is down;
//! - a watchdog (`tocsin-watchdog`, found next to this binary) with a canary
//!   in both locations, which serves the status page;
//!
//! and serves itself a target that flips between up and down, a port that
//! refuses connections, and a webhook sink through which the controller's
//! notifications and the watchdog's alarms are printed here. Then it adds,
//! as the admin token the controller printed on its first start, sample
//! checks of all that, an escalation policy that notifies the sink, and
//! tokens for the nodes and the watchdog, and prints where everything is.
//!
//! The controller and the watchdog serve HTTPS, as they should anywhere
//! else, with a certificate for 127.0.0.1 and localhost signed by a CA made
//! for this directory (`tls/ca.pem`): the nodes, the watchdog and the
//! commands the banner suggests are given that CA to trust (`--ca`,
//! `TOCSIN_CA`), and so are the plugins (`extra_roots`), so the sample check
//! of the controller's API and the canary verify it too.
//!
//! Everything lives in one directory (`--dir`, default `./tocsin-dev`):
//! configs, databases, tokens, the CA and each process's log. A second start
//! keeps it; `--fresh` starts over. Ctrl-C stops the children in order (see
//! `children`); a child that dies by itself stops the rest, and `tocsin
//! dev` fails naming it and its log.

mod children;
mod targets;

use std::ffi::OsStr;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};

use self::children::{Children, Halt, find_line, tail};
use self::targets::Targets;
use super::{CliError, Client};
use crate::model::wire::{format_duration, parse_duration};

#[derive(Args)]
pub struct DevArgs {
    /// Where configs, databases, tokens and logs live; kept between starts.
    #[arg(long, default_value = "tocsin-dev")]
    dir: PathBuf,
    /// Delete the directory's contents first (only a directory `tocsin dev` made).
    #[arg(long)]
    fresh: bool,
    /// The controller's port; the nodes take the next two, the sample targets the two
    /// after, the watchdog the tenth. 0: any free ports.
    #[arg(long, default_value_t = 7400)]
    port_base: u16,
    /// How often the `flaky` sample target flips between up and down.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    flap_every: Duration,
    /// Where compiled plugins are cached (default: in the directory); one
    /// shared by several directories saves compiling them again.
    #[arg(long)]
    plugin_cache: Option<PathBuf>,
}

/// What a taken port's error says.
const PORT_HINT: &str = "is another `tocsin dev` or `tocsin serve` running? Stop it, or choose other ports \
                         with --port-base (0: any free ones)";
/// The file that marks a directory as made by `tocsin dev` (and so safe to wipe).
const MARKER: &str = ".tocsin-dev";
const LOCATIONS: [&str; 2] = ["home", "away"];
const INTERVAL: &str = "5s";

struct Ports {
    controller: u16,
    nodes: [u16; 2],
    targets: u16,
    closed: u16,
    watchdog: u16,
}

impl Ports {
    fn from_base(base: u16) -> Result<Ports, CliError> {
        if base == 0 {
            return Ok(Ports { controller: 0, nodes: [0, 0], targets: 0, closed: 0, watchdog: 0 });
        }
        let at = |offset: u16| {
            base.checked_add(offset)
                .ok_or_else(|| CliError::Usage(format!("--port-base {base} leaves no room for +{offset}")))
        };
        Ok(Ports { controller: base, nodes: [at(1)?, at(2)?], targets: at(3)?, closed: at(4)?, watchdog: at(10)? })
    }

    /// The ports the children will bind must be free now: say which is not
    /// before anything starts.
    fn check_free(&self) -> Result<(), CliError> {
        let named = [
            (self.controller, "the controller"),
            (self.nodes[0], "node home"),
            (self.nodes[1], "node away"),
            (self.watchdog, "the watchdog"),
        ];
        for (port, what) in named.into_iter().filter(|(port, _)| *port != 0) {
            if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                return Err(CliError::Other(format!(
                    "port {port} on 127.0.0.1, for {what}, is taken ({e}): {PORT_HINT}"
                )));
            }
        }
        Ok(())
    }
}

/// The directory and the binaries, settled before anything starts.
struct Layout {
    /// Absolute.
    dir: PathBuf,
    /// As given, for messages: `tocsin-dev/logs/controller.log` is easier to
    /// copy than an absolute path.
    shown: PathBuf,
    tocsin: PathBuf,
    watchdog: PathBuf,
    plugin_cache: PathBuf,
    /// Whether the controller's database is new (its first start prints the admin token).
    new: bool,
}

impl Layout {
    fn new(args: &DevArgs) -> Result<Layout, CliError> {
        let usage = |m: String| CliError::Usage(m);
        let tocsin = std::env::current_exe().map_err(|e| CliError::Other(format!("where is this binary? {e}")))?;
        let watchdog = tocsin.with_file_name("tocsin-watchdog");
        if !watchdog.is_file() {
            return Err(CliError::Other(format!(
                "{} is missing: `tocsin dev` starts the watchdog from next to {}. Build it with \
                 `cargo build -p tocsin-watchdog` (with --release for a release build), or install both with \
                 `cargo install --path host && cargo install --path watchdog`",
                watchdog.display(),
                tocsin.display()
            )));
        }
        let shown = args.dir.clone();
        let marker = shown.join(MARKER);
        let exists = shown.exists();
        if exists {
            let empty = std::fs::read_dir(&shown)
                .map_err(|e| usage(format!("--dir {}: {e}", shown.display())))?
                .next()
                .is_none();
            if !empty && !marker.is_file() {
                return Err(usage(format!(
                    "--dir {} is not empty and was not made by `tocsin dev` (it has no {MARKER}): choose another --dir",
                    shown.display()
                )));
            }
            if args.fresh && !empty {
                for entry in std::fs::read_dir(&shown).map_err(|e| CliError::Other(e.to_string()))? {
                    let path = entry.map_err(|e| CliError::Other(e.to_string()))?.path();
                    let removed =
                        if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                    removed.map_err(|e| CliError::Other(format!("--fresh: removing {}: {e}", path.display())))?;
                }
            }
        }
        for sub in ["", "logs", "tokens", "nodes", "watchdog", "tls"] {
            std::fs::create_dir_all(shown.join(sub))
                .map_err(|e| CliError::Other(format!("creating {}: {e}", shown.join(sub).display())))?;
        }
        std::fs::write(&marker, "Made by `tocsin dev`, which may delete everything here when given --fresh.\n")
            .map_err(|e| CliError::Other(format!("{}: {e}", marker.display())))?;
        let dir = shown.canonicalize().map_err(|e| CliError::Other(format!("{}: {e}", shown.display())))?;
        let new = !dir.join("controller/tocsin.db").exists();
        if !new && !dir.join("tokens/admin").is_file() {
            return Err(usage(format!(
                "{} has a controller database but no tokens/admin (its admin token, printed only on its first \
                 start): start over with --fresh",
                shown.display()
            )));
        }
        let plugin_cache = args.plugin_cache.clone().unwrap_or_else(|| dir.join("plugin-cache"));
        Ok(Layout { dir, shown, tocsin, watchdog, plugin_cache, new })
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }

    fn shown_log(&self, name: &str) -> String {
        self.shown.join("logs").join(format!("{name}.log")).display().to_string()
    }

    fn write(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Writes a file only its owner may read.
    fn write_secret(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(name);
        save_secret(&path, text)?;
        Ok(path)
    }
}

/// Whether a progress line ("starting the controller… ") waits for its end.
static LINE_OPEN: AtomicBool = AtomicBool::new(false);

/// "starting the controller… ready in 0.8s".
#[derive(Default)]
struct Progress {
    since: Option<Instant>,
}

impl Progress {
    fn start(&mut self, what: &str) {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{what}… ");
        let _ = out.flush();
        LINE_OPEN.store(true, Ordering::SeqCst);
        self.since = Some(Instant::now());
    }

    fn done(&mut self, what: &str) {
        let secs = self.since.map(|s| s.elapsed().as_secs_f64()).unwrap_or_default();
        println!("{what} in {secs:.1}s");
        LINE_OPEN.store(false, Ordering::SeqCst);
    }
}

/// Ends an open progress line, so that what follows starts on its own.
fn end_line() {
    if LINE_OPEN.swap(false, Ordering::SeqCst) {
        println!();
    }
}

/// A line on stdout with the local time, for what happens while running.
fn say(line: &str) {
    end_line();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[{}] {line}", chrono::Local::now().format("%H:%M:%S"));
    let _ = out.flush();
}

/// The files of the directory's throwaway CA and the certificate it signed
/// for the controller and the watchdog.
struct Tls {
    /// What clients are told to trust.
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Tls {
    /// The CA and certificate kept in `tls/`, or new ones when any is missing
    /// (a directory from before `tocsin dev` served TLS).
    fn ensure(layout: &Layout) -> anyhow::Result<Tls> {
        let dir = layout.dir.join("tls");
        let tls = Tls { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server-key.pem") };
        if [&tls.ca, &tls.cert, &tls.key].iter().all(|p| p.is_file()) {
            return Ok(tls);
        }
        let ca = tocsin_tls::LocalCa::new("tocsin dev CA (throwaway)")?;
        let issued = ca.issue(&["127.0.0.1", "localhost"])?;
        save_secret(&tls.key, &issued.key_pem)?;
        layout.write("tls/server.pem", &issued.cert_pem)?;
        layout.write("tls/ca.pem", &ca.cert_pem())?;
        Ok(tls)
    }

    /// The `[tls]` section of the controller's and the watchdog's configs.
    fn section(&self) -> String {
        format!(
            "[tls]
cert = {}
key = {}
ca = {}
",
            toml_str(&self.cert.display().to_string()),
            toml_str(&self.key.display().to_string()),
            toml_str(&self.ca.display().to_string())
        )
    }
}

/// What the running system is, for the banner.
struct Running {
    ca: PathBuf,
    api: String,
    status_page: String,
    admin_token: String,
    checks: Vec<(String, String, String, String)>,
}

pub async fn run(args: DevArgs) -> Result<(), CliError> {
    super::serve::init_logging(super::serve::LogFormat::Text);
    let started = Instant::now();
    let ports = Ports::from_base(args.port_base)?;
    ports.check_free()?;
    let layout = Layout::new(&args)?;
    let mut children = Children::new().map_err(|e| CliError::Other(format!("{e:#}")))?;
    let targets = targets::start(ports.targets, ports.closed, args.flap_every)
        .await
        .map_err(|e| CliError::Other(format!("{e:#}")))?;
    println!(
        "tocsin dev: a controller, probe nodes in {} and a watchdog on 127.0.0.1, all in {} ({})",
        LOCATIONS.join(" and "),
        layout.shown.display(),
        if layout.new { "new" } else { "kept from last time; --fresh starts over" }
    );
    let mut progress = Progress::default();
    let halt = match start(&layout, &ports, &targets, &args, &mut children, &mut progress).await {
        Ok(running) => {
            banner(&layout, &children, &running, &args, started);
            children.watch().await
        }
        Err(halt) => halt,
    };
    end_line();
    let outcome = match halt {
        Halt::Asked => {
            // After the terminal's "^C".
            if std::io::stdout().is_terminal() {
                println!();
            }
            println!("stopping (Ctrl-C again kills at once)");
            Ok(())
        }
        Halt::Died { name, status, log } => {
            eprintln!("{name} exited unexpectedly ({status}); the end of its log, {}:", log.display());
            eprintln!("{}", tail(&log, 15));
            Err(format!("{name} exited unexpectedly ({status}); its log: {}", log.display()))
        }
        Halt::Failed(e) => Err(format!("{e:#}")),
    };
    let problems = children.stop_all().await;
    match (outcome, problems.is_empty()) {
        (Ok(()), true) => {
            println!("stopped; everything is kept in {} (`tocsin dev --fresh` starts over)", layout.shown.display());
            Ok(())
        }
        (Ok(()), false) => Err(CliError::Other(problems.join("; "))),
        (Err(e), _) => Err(CliError::Other(e)),
    }
}

/// Starts everything, in order, each step waiting until the last is ready.
async fn start(
    layout: &Layout,
    ports: &Ports,
    targets: &Targets,
    args: &DevArgs,
    children: &mut Children,
    progress: &mut Progress,
) -> Result<Running, Halt> {
    let tls = Tls::ensure(layout)?;
    let trust = tocsin_tls::ClientTls::new(Some(&tls.ca), None).map_err(anyhow::Error::from)?;
    let http = trust.reqwest().timeout(Duration::from_secs(2)).build().map_err(anyhow::Error::from)?;
    let cache = toml_str(&layout.plugin_cache.display().to_string());
    let ca = toml_str(&tls.ca.display().to_string());
    let runtime =
        format!("[runtime]\ncache_dir = {cache}\nmax_concurrent = 32\n\n[runtime.network]\nextra_roots = [{ca}]\n");

    // The controller.
    progress.start("starting the controller");
    let config = layout.write(
        "controller.toml",
        &format!(
            "# Written by `tocsin dev` at every start.\n\
             local_node = false      # the nodes are processes of their own\n\
             min_interval = \"1s\"\n\n\
             [cluster]\n\
             handback_after = \"5s\"  # a new node takes its checks after 5s of health\n\n\
             {runtime}\n\
             {tls}",
            tls = tls.section(),
        ),
    )?;
    let data = layout.dir.join("controller");
    let listen = format!("127.0.0.1:{}", ports.controller);
    let log = layout.log("controller");
    let args_ = [
        OsStr::new("serve"),
        OsStr::new("--listen"),
        OsStr::new(&listen),
        OsStr::new("--data-dir"),
        data.as_os_str(),
        OsStr::new("--config"),
        config.as_os_str(),
    ];
    children.spawn("controller", &layout.tocsin, &args_, &[], &log)?;
    // A first start compiles the built-in plugins: slow in a debug build.
    let api = listening(children, "the controller", &log, Duration::from_secs(300)).await?;
    let readyz = format!("{api}/readyz");
    children
        .poll("the controller's /readyz answering 200", Duration::from_secs(60), || async {
            Ok(http.get(&readyz).send().await.ok().filter(|r| r.status().is_success()).map(|_| ()))
        })
        .await?;
    progress.done("ready");

    // Its tokens.
    let admin_token = match std::fs::read_to_string(layout.dir.join("tokens/admin")) {
        Ok(token) => token.trim().to_string(),
        Err(_) => {
            let token = find_line(&log, "export TOCSIN_TOKEN=")
                .and_then(|l| l.trim().strip_prefix("export TOCSIN_TOKEN=").map(str::to_string))
                .ok_or_else(|| anyhow!("the controller printed no admin token; start over with --fresh"))?;
            save_secret(&layout.dir.join("tokens/admin"), &token)?;
            token
        }
    };
    let admin = Client::new(vec![api.clone()], Some(admin_token.clone()), &trust).map_err(cli_error)?;
    if let Err(e) = admin.get::<Value>("/api/v1/tokens").await {
        return Err(Halt::Failed(anyhow!(
            "the controller refuses the admin token in {} ({e}): start over with --fresh",
            layout.shown.join("tokens/admin").display()
        )));
    }
    let node_token = token(&admin, layout, "node", "node", "tocsin dev nodes").await?;
    let watchdog_token = token(&admin, layout, "watchdog", "watchdog", "tocsin dev watchdog").await?;

    // Alerts: every incident notifies `you` through a webhook to this terminal.
    progress.start("routing alerts to this terminal");
    let sink = targets.alerts_url("controller");
    upsert(&admin, "gateways", json!({"name": "dev-sink", "plugin": "webhook", "config": {"url": sink}, "allow": ["127.0.0.1"], "timeout": "5s"})).await?;
    upsert(&admin, "contacts", json!({"name": "you", "full_name": "You, trying Tocsin", "channels": [{"channel": "webhook", "address": sink}]})).await?;
    upsert(&admin, "routes", json!({"name": "webhook", "channel": "webhook", "gateways": ["dev-sink"]})).await?;
    upsert(&admin, "policies", json!({"name": "default", "steps": [{"notify": ["you"], "timeout": "10m"}]})).await?;
    progress.done("done");

    // Sample checks, through config as code: a second start updates them
    // (their ports may have changed) before any node runs them. The
    // watchdog's canaries of a previous start point at its old address: it
    // makes them anew.
    progress.start("adding the sample checks");
    for location in LOCATIONS {
        let path = format!("/api/v1/checks/watchdog-dev-canary-{location}");
        match admin.send_empty(Method::DELETE, &path).await {
            Ok(()) | Err(CliError::Api { status: 404, .. }) => {}
            Err(e) => return Err(cli_error(e)),
        }
    }
    let checks = sample_checks(&api, targets, args.flap_every);
    let document = json!({"checks": checks.iter().map(|(name, plugin, target, description)| json!({
        "name": name, "plugin": plugin, "target": target, "interval": INTERVAL, "allow": ["127.0.0.1"],
        "description": description, "tags": ["dev"],
    })).collect::<Vec<_>>()});
    let plan: Value = admin.send(Method::POST, "/api/v1/apply", &document).await.map_err(cli_error)?;
    let count = |key: &str| plan[key].as_array().map_or(0, Vec::len);
    progress.done(&format!(
        "{} created, {} updated, {} unchanged",
        count("created"),
        count("updated"),
        count("unchanged")
    ));

    // The nodes.
    let node_config = layout.write("node.toml", &format!("# Written by `tocsin dev` at every start.\n{runtime}"))?;
    for (location, port) in LOCATIONS.iter().zip(ports.nodes) {
        progress.start(&format!("starting node {location}"));
        let name = format!("node-{location}");
        let log = layout.log(&name);
        let data = layout.dir.join("nodes").join(location);
        let listen = format!("127.0.0.1:{port}");
        let args_ = [
            OsStr::new("node"),
            OsStr::new("--controller"),
            OsStr::new(&api),
            OsStr::new("--location"),
            OsStr::new(location),
            OsStr::new("--name"),
            OsStr::new(location),
            OsStr::new("--data-dir"),
            data.as_os_str(),
            OsStr::new("--listen"),
            OsStr::new(&listen),
            OsStr::new("--config"),
            node_config.as_os_str(),
            OsStr::new("--ca"),
            tls.ca.as_os_str(),
        ];
        children.spawn(&format!("node {location}"), &layout.tocsin, &args_, &[("TOCSIN_TOKEN", &node_token)], &log)?;
        listening(children, &format!("node {location}"), &log, Duration::from_secs(120)).await?;
        let what = format!("node {location} enrolled with the controller");
        children
            .poll(&what, Duration::from_secs(60), || async {
                let nodes: Vec<crate::model::Node> = admin.get("/api/v1/nodes").await.map_err(api_error)?;
                Ok(nodes.iter().any(|n| n.name == *location && n.location == *location && live(n)).then_some(()))
            })
            .await?;
        progress.done("enrolled");
    }

    // The watchdog.
    progress.start("starting the watchdog");
    let state = toml_str(&layout.dir.join("watchdog/state.db").display().to_string());
    let locations = LOCATIONS.iter().map(|l| toml_str(l)).collect::<Vec<_>>().join(", ");
    let config = layout.write_secret(
        "watchdog.toml",
        &format!(
            "# Written by `tocsin dev` at every start; see watchdog/watchdog.example.toml.\n\
             # No database_url: on SQLite the controller is the database's one writer.\n\
             name = \"dev\"\n\
             listen = \"127.0.0.1:{port}\"\n\
             state = {state}\n\
             interval = \"1s\"\n\
             controllers = [{api}]\n\
             token = {token}\n\n\
             [canary]\n\
             locations = [{locations}]\n\
             interval = \"5s\"\n\
             rotate = \"30s\"\n\
             deadline = \"20s\"\n\n\
             {tls}\n\
             [[notify]]\n\
             name = \"dev-sink\"\n\
             plugin = \"webhook\"\n\
             config = {{ url = {sink} }}\n",
            tls = tls.section(),
            port = ports.watchdog,
            api = toml_str(&api),
            token = toml_str(&watchdog_token),
            sink = toml_str(&targets.alerts_url("watchdog")),
        ),
    )?;
    let log = layout.log("watchdog");
    children.spawn("watchdog", &layout.watchdog, &[OsStr::new("--config"), config.as_os_str()], &[], &log)?;
    let status_page = listening(children, "the watchdog", &log, Duration::from_secs(120)).await?;
    let healthz = format!("{status_page}/healthz");
    children
        .poll("the watchdog's /healthz answering 200", Duration::from_secs(30), || async {
            Ok(http.get(&healthz).send().await.ok().filter(|r| r.status().is_success()).map(|_| ()))
        })
        .await?;
    progress.done("ready");

    Ok(Running { ca: tls.ca, api, status_page: format!("{status_page}/"), admin_token, checks })
}

/// Waits for a child's "listening on https://..." line; returns the URL.
async fn listening(children: &mut Children, what: &str, log: &Path, timeout: Duration) -> Result<String, Halt> {
    let needle = "listening on http";
    children
        .poll(&format!("{what} listening"), timeout, || async {
            Ok(find_line(log, needle).and_then(|l| l.split_once("listening on ").map(|(_, rest)| rest.to_string())))
        })
        .await
        .map(|rest| rest.split(|c: char| c.is_whitespace() || c == ';').next().unwrap_or_default().to_string())
        .map_err(|halt| match halt {
            Halt::Failed(e) => Halt::Failed(anyhow!("{e:#}; see its log, {}", log.display())),
            other => other,
        })
}

fn live(node: &crate::model::Node) -> bool {
    use crate::cluster::NodeState;
    matches!(node.state, NodeState::Active | NodeState::Returning)
}

/// (name, plugin, target, description) of each sample check.
fn sample_checks(api: &str, targets: &Targets, flap_every: Duration) -> Vec<(String, String, String, String)> {
    let controller = api.split_once("://").map_or(api, |(_, rest)| rest);
    [
        ("controller-api", "http", format!("{api}/healthz"), "The controller's /healthz".to_string()),
        ("controller-port", "tcp", controller.to_string(), "A TCP connection to the controller".to_string()),
        (
            "flaky",
            "http",
            targets.flaky_url(),
            format!("Served by tocsin dev: up, then down, every {}", format_duration(flap_every)),
        ),
        (
            "closed-port",
            "tcp",
            targets.closed.to_string(),
            "A port that refuses connections: down from the start, an incident opens".to_string(),
        ),
    ]
    .into_iter()
    .map(|(n, p, t, d)| (n.to_string(), p.to_string(), t, d))
    .collect()
}

/// The token kept in `tokens/<file>`, or a new one with `role`, kept there.
async fn token(admin: &Client, layout: &Layout, file: &str, role: &str, name: &str) -> Result<String, Halt> {
    let path = layout.dir.join("tokens").join(file);
    if let Ok(token) = std::fs::read_to_string(&path) {
        return Ok(token.trim().to_string());
    }
    let created: Value =
        admin.send(Method::POST, "/api/v1/tokens", &json!({"name": name, "role": role})).await.map_err(cli_error)?;
    let token = created["token"].as_str().ok_or_else(|| anyhow!("no token in {created}"))?.to_string();
    save_secret(&path, &token)?;
    Ok(token)
}

/// Creates an alerting object, or replaces it when it exists.
async fn upsert(admin: &Client, kind: &str, body: Value) -> Result<(), Halt> {
    let name = body["name"].as_str().unwrap_or_default().to_string();
    match admin.send::<Value, _>(Method::POST, &format!("/api/v1/{kind}"), &body).await {
        Ok(_) => Ok(()),
        Err(CliError::Api { status: 409, .. }) => {
            admin.send::<Value, _>(Method::PUT, &format!("/api/v1/{kind}/{name}"), &body).await.map_err(cli_error)?;
            Ok(())
        }
        Err(e) => Err(cli_error(e)),
    }
}

fn save_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    crate::config::save_secret(path, text).with_context(|| format!("writing {}", path.display()))
}

fn api_error(e: CliError) -> anyhow::Error {
    anyhow!("{e}")
}

fn cli_error(e: CliError) -> Halt {
    Halt::Failed(api_error(e))
}

/// A TOML string literal.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn banner(layout: &Layout, children: &Children, running: &Running, args: &DevArgs, started: Instant) {
    let tocsin = layout.tocsin.display();
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(String::new());
    line("Tocsin is running:".into());
    line(String::new());
    line(format!("  API          {}/api/v1  (OpenAPI: {}/api/v1/openapi.json)", running.api, running.api));
    line(format!("  status page  {}  (the watchdog's)", running.status_page));
    line(format!("  admin token  {}", running.admin_token));
    line(format!("  CA           {}  (trust it with --ca or TOCSIN_CA)", running.ca.display()));
    line("  alerts       printed here as they arrive".into());
    line(format!("  directory    {}", layout.dir.display()));
    line(String::new());
    line(format!("  {:<12} {:<8} {}", "PROCESS", "PID", "LOG"));
    for child in children.iter() {
        line(format!("  {:<12} {:<8} {}", child.name, child.pid, layout.shown_log(&child.name.replace(' ', "-"))));
    }
    line(String::new());
    line(format!("  Sample checks, every {INTERVAL}, run from {}:", LOCATIONS.join(" or ")));
    for (name, plugin, target, _) in &running.checks {
        let note = match name.as_str() {
            "flaky" => format!("  (up, then down, every {})", format_duration(args.flap_every)),
            "closed-port" => "  (nothing listens: an incident opens)".to_string(),
            _ => String::new(),
        };
        line(format!("    {name:<16} {plugin:<5} {target}{note}"));
    }
    line(String::new());
    line("Try, in another terminal:".into());
    line(String::new());
    line(format!(
        "  export TOCSIN_SERVER={} TOCSIN_TOKEN={} TOCSIN_CA={}",
        running.api,
        running.admin_token,
        running.ca.display()
    ));
    line(format!("  alias tocsin={tocsin}"));
    line("  tocsin check list".into());
    line("  tocsin node list".into());
    line("  tocsin incident list".into());
    line("  tocsin runs closed-port".into());
    line(String::new());
    line(format!("Ready in {:.1}s. Ctrl-C stops everything.", started.elapsed().as_secs_f64()));
    print!("{out}");
    let _ = std::io::stdout().flush();
}
