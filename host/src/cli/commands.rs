//! Client commands: checks, plugins, runs, tokens, audit, nodes.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Method;

use super::client::Payload;
use super::output::{ago, details, print, truncate};
use super::{CliError, Client, Output};
use crate::api::{CheckList, RunPage};
use crate::model::wire::{format_duration, format_ms, parse_duration};
use crate::model::{AuditEntry, Check, CheckSpec, NewToken, PluginRecord, Role, TokenInfo};

#[derive(Subcommand)]
pub enum CheckCommand {
    /// Create a check.
    Add(AddArgs),
    /// List checks.
    List(ListArgs),
    /// Show a check with its latest runs.
    Show { name: String },
    /// Stop running a check (its history stays).
    Pause { name: String },
    /// Run a paused check again.
    Resume { name: String },
    /// Delete a check and its history.
    Rm { name: String },
}

#[derive(Args)]
pub struct AddArgs {
    /// Unique name: lowercase letters, digits, `.`, `_`, `-`.
    name: String,
    /// What to check: a URL, host:port or a name.
    #[arg(long)]
    target: String,
    /// The check plugin (`http`, `tcp`, `dns`, `tls-expiry` or an uploaded one, `name[@version]`).
    #[arg(long, default_value = "http")]
    plugin: String,
    /// How often, such as 30s or 5m.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    interval: Duration,
    /// Longest a run may take, at most the interval [default: 10s or the interval if shorter].
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// The plugin's configuration as a JSON object.
    #[arg(long, value_name = "JSON")]
    config: Option<String>,
    /// One configuration field, `key=value` (the value is JSON if it parses, else text). Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// A location to run from. Repeatable.
    #[arg(long = "location")]
    locations: Vec<String>,
    /// A tag. Repeatable.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// A host or address range the check may reach besides its target (`10.0.0.0/8`). Repeatable.
    #[arg(long = "allow")]
    allow: Vec<String>,
    #[arg(long, default_value = "")]
    description: String,
    /// Create it paused.
    #[arg(long)]
    paused: bool,
    /// How many other locations must also see a failure before the check is down (0: none).
    #[arg(long, default_value_t = 1)]
    confirm: u32,
    /// The escalation policy of its incidents (default: the policy named `default`).
    #[arg(long)]
    policy: Option<String>,
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(long)]
    status: Option<String>,
    #[arg(long)]
    plugin: Option<String>,
    #[arg(long)]
    location: Option<String>,
    #[arg(long)]
    tag: Option<String>,
}

fn config_of(args: &AddArgs) -> Result<serde_json::Value, CliError> {
    let mut config = match &args.config {
        Some(text) => serde_json::from_str(text).map_err(|e| CliError::Usage(format!("--config is not JSON: {e}")))?,
        None => serde_json::json!({}),
    };
    let object = config.as_object_mut().ok_or_else(|| CliError::Usage("--config must be a JSON object".into()))?;
    for pair in &args.set {
        let (key, value) =
            pair.split_once('=').ok_or_else(|| CliError::Usage(format!("--set {pair:?}: use key=value")))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
        object.insert(key.to_string(), value);
    }
    Ok(config)
}

fn check_rows(checks: &[Check]) -> Vec<Vec<String>> {
    checks
        .iter()
        .map(|c| {
            vec![
                c.spec.name.clone(),
                if c.spec.paused { format!("{} (paused)", c.status) } else { c.status.to_string() },
                c.spec.plugin.clone(),
                truncate(&c.spec.target, 40),
                format_duration(c.spec.interval),
                c.last_run_at.map(ago).unwrap_or_else(|| "never".into()),
                truncate(&c.last_message, 60),
            ]
        })
        .collect()
}

const CHECK_HEADER: &[&str] = &["NAME", "STATUS", "PLUGIN", "TARGET", "EVERY", "LAST RUN", "MESSAGE"];

pub async fn check(client: &Client, out: Output, cmd: CheckCommand) -> Result<(), CliError> {
    match cmd {
        CheckCommand::Add(args) => {
            let spec = CheckSpec {
                name: args.name.clone(),
                description: args.description.clone(),
                plugin: args.plugin.clone(),
                target: args.target.clone(),
                config: config_of(&args)?,
                interval: args.interval,
                timeout: args.timeout.unwrap_or_default(),
                locations: args.locations.clone(),
                tags: args.tags.clone(),
                allow: args.allow.clone(),
                paused: args.paused,
                confirm: args.confirm,
                policy: args.policy.clone(),
            };
            let check: Check = client.send(Method::POST, "/api/v1/checks", &spec).await?;
            match out {
                Output::Json => print(out, &check, &[], |_| vec![]),
                Output::Table => println!(
                    "Created check {} ({} {} every {}). See its runs with: tocsin runs {}",
                    check.spec.name,
                    check.spec.plugin,
                    check.spec.target,
                    format_duration(check.spec.interval),
                    check.spec.name
                ),
            }
        }
        CheckCommand::List(args) => {
            let mut query = Vec::new();
            for (key, value) in
                [("status", args.status), ("plugin", args.plugin), ("location", args.location), ("tag", args.tag)]
            {
                if let Some(value) = value {
                    query.push(format!("{key}={}", urlencode(&value)));
                }
            }
            let mut checks = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let mut q = query.clone();
                if let Some(after) = &after {
                    q.push(format!("after={}", urlencode(after)));
                }
                let page: CheckList = client.get(&format!("/api/v1/checks?{}", q.join("&"))).await?;
                checks.extend(page.checks);
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            print(out, &checks, CHECK_HEADER, |c| check_rows(c));
        }
        CheckCommand::Show { name } => {
            let check: Check = client.get(&format!("/api/v1/checks/{}", urlencode(&name))).await?;
            let s = &check.spec;
            details(
                out,
                &check,
                vec![
                    ("name", s.name.clone()),
                    ("status", format!("{} since {}", check.status, format_ms(check.status_since))),
                    ("message", check.last_message.clone()),
                    ("plugin", s.plugin.clone()),
                    ("target", s.target.clone()),
                    ("config", s.config.to_string()),
                    ("every", format!("{} (timeout {})", format_duration(s.interval), format_duration(s.timeout))),
                    ("locations", if s.locations.is_empty() { "any".into() } else { s.locations.join(", ") }),
                    ("tags", s.tags.join(", ")),
                    ("allow", s.allow.join(", ")),
                    ("paused", s.paused.to_string()),
                    ("last run", check.last_run_at.map(ago).unwrap_or_else(|| "never".into())),
                ],
            );
        }
        CheckCommand::Pause { name } => {
            let check: Check =
                client.call(Method::POST, &format!("/api/v1/checks/{}/pause", urlencode(&name)), Payload::None).await?;
            print(out, &vec![check], CHECK_HEADER, |c| check_rows(c));
        }
        CheckCommand::Resume { name } => {
            let check: Check = client
                .call(Method::POST, &format!("/api/v1/checks/{}/resume", urlencode(&name)), Payload::None)
                .await?;
            print(out, &vec![check], CHECK_HEADER, |c| check_rows(c));
        }
        CheckCommand::Rm { name } => {
            client.send_empty(Method::DELETE, &format!("/api/v1/checks/{}", urlencode(&name))).await?;
            if out == Output::Table {
                println!("Deleted check {name}");
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Upload a .wasm component.
    Push {
        file: PathBuf,
        /// Must match the plugin's own name, if given.
        #[arg(long)]
        name: Option<String>,
        /// Must match the plugin's own version, if given.
        #[arg(long)]
        version: Option<String>,
    },
    /// List plugins.
    List,
    /// Show a plugin (`name` or `name@version`) with its config schema.
    Show { plugin: String },
    /// Delete an unused uploaded plugin version (`name@version`).
    Rm { plugin: String },
}

fn plugin_rows(plugins: &[PluginRecord]) -> Vec<Vec<String>> {
    plugins
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.version.clone(),
                p.kind.clone(),
                if p.builtin { "built-in".into() } else { "uploaded".into() },
                p.sha256[..12].to_string(),
                truncate(&p.description, 60),
            ]
        })
        .collect()
}

const PLUGIN_HEADER: &[&str] = &["NAME", "VERSION", "KIND", "SOURCE", "SHA256", "DESCRIPTION"];

pub async fn plugin(client: &Client, out: Output, cmd: PluginCommand) -> Result<(), CliError> {
    match cmd {
        PluginCommand::Push { file, name, version } => {
            let wasm = std::fs::read(&file).map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
            let mut query = Vec::new();
            if let Some(name) = name {
                query.push(format!("name={}", urlencode(&name)));
            }
            if let Some(version) = version {
                query.push(format!("version={}", urlencode(&version)));
            }
            let answer: serde_json::Value = client
                .call(Method::POST, &format!("/api/v1/plugins?{}", query.join("&")), Payload::Wasm(&wasm))
                .await?;
            let record: PluginRecord =
                serde_json::from_value(answer.clone()).map_err(|e| CliError::Other(e.to_string()))?;
            match out {
                Output::Json => println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default()),
                Output::Table => {
                    let created = answer.get("created").and_then(|c| c.as_bool()).unwrap_or(false);
                    let verb = if created { "Uploaded" } else { "Already had" };
                    println!(
                        "{verb} {} plugin {}@{} (sha256 {})",
                        record.kind, record.name, record.version, record.sha256
                    );
                }
            }
        }
        PluginCommand::List => {
            let plugins: Vec<PluginRecord> = client.get("/api/v1/plugins").await?;
            print(out, &plugins, PLUGIN_HEADER, |p| plugin_rows(p));
        }
        PluginCommand::Show { plugin } => {
            let record: PluginRecord = match plugin.split_once('@') {
                Some((name, version)) => {
                    client.get(&format!("/api/v1/plugins/{}/{}", urlencode(name), urlencode(version))).await?
                }
                None => {
                    let versions: Vec<PluginRecord> =
                        client.get(&format!("/api/v1/plugins/{}", urlencode(&plugin))).await?;
                    versions
                        .into_iter()
                        .last()
                        .ok_or_else(|| CliError::Other(format!("plugin {plugin} has no versions")))?
                }
            };
            details(
                out,
                &record,
                vec![
                    ("plugin", format!("{}@{}", record.name, record.version)),
                    ("kind", record.kind.clone()),
                    ("source", if record.builtin { "built-in".into() } else { "uploaded".into() }),
                    ("sha256", record.sha256.clone()),
                    ("size", format!("{} bytes", record.size)),
                    ("description", record.description.clone()),
                    ("config schema", serde_json::to_string_pretty(&record.config_schema).unwrap_or_default()),
                ],
            );
        }
        PluginCommand::Rm { plugin } => {
            let (name, version) = plugin
                .split_once('@')
                .ok_or_else(|| CliError::Usage(format!("{plugin:?}: name the version to delete, name@version")))?;
            client
                .send_empty(Method::DELETE, &format!("/api/v1/plugins/{}/{}", urlencode(name), urlencode(version)))
                .await?;
            if out == Output::Table {
                println!("Deleted plugin {plugin}");
            }
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct RunsArgs {
    check: String,
    /// How many runs.
    #[arg(long, default_value_t = 20)]
    limit: i64,
    /// Only runs newer than this, such as 1h.
    #[arg(long, value_parser = parse_duration)]
    since: Option<Duration>,
}

pub async fn runs(client: &Client, out: Output, args: RunsArgs) -> Result<(), CliError> {
    let mut path = format!("/api/v1/checks/{}/runs?limit={}", urlencode(&args.check), args.limit);
    if let Some(since) = args.since {
        let from = crate::model::now_ms() - since.as_millis() as i64;
        path.push_str(&format!("&from={}", urlencode(&format_ms(from))));
    }
    let page: RunPage = client.get(&path).await?;
    print(out, &page.runs, &["SLOT", "STATUS", "NODE", "LOCATION", "TOOK", "MESSAGE"], |runs| {
        runs.iter()
            .map(|r| {
                vec![
                    format_ms(r.slot),
                    r.status.to_string(),
                    r.node.clone(),
                    r.location.clone(),
                    format!("{} ms", r.duration_ms),
                    truncate(&r.message, 70),
                ]
            })
            .collect()
    });
    Ok(())
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create {
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// What the token is for.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List tokens.
    List,
    /// Revoke a token by id.
    Revoke { id: String },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| {
        format!(
            "{s:?}: use viewer, editor or admin, or a scoped role: node (probe nodes), alerts (alert sources), watchdog"
        )
    })
}

fn token_rows(tokens: &[TokenInfo]) -> Vec<Vec<String>> {
    tokens
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.name.clone(),
                t.role.to_string(),
                format_ms(t.created_at),
                t.created_by.clone(),
                t.revoked_at.map(format_ms).unwrap_or_default(),
            ]
        })
        .collect()
}

const TOKEN_HEADER: &[&str] = &["ID", "NAME", "ROLE", "CREATED", "BY", "REVOKED"];

pub async fn token(client: &Client, out: Output, cmd: TokenCommand) -> Result<(), CliError> {
    match cmd {
        TokenCommand::Create { role, name } => {
            let token: NewToken =
                client.send(Method::POST, "/api/v1/tokens", &serde_json::json!({"name": name, "role": role})).await?;
            match out {
                Output::Json => println!("{}", serde_json::to_string_pretty(&token).unwrap_or_default()),
                Output::Table => {
                    println!(
                        "Created {} token {} ({}). It is shown only now:",
                        token.info.role, token.info.id, token.info.name
                    );
                    println!("{}", token.token);
                }
            }
        }
        TokenCommand::List => {
            let tokens: Vec<TokenInfo> = client.get("/api/v1/tokens").await?;
            print(out, &tokens, TOKEN_HEADER, |t| token_rows(t));
        }
        TokenCommand::Revoke { id } => {
            let token: TokenInfo =
                client.call(Method::DELETE, &format!("/api/v1/tokens/{}", urlencode(&id)), Payload::None).await?;
            print(out, &vec![token], TOKEN_HEADER, |t| token_rows(t));
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum LinkKeyCommand {
    /// Sign links with a new key from now on; older keys stay until their
    /// links expire.
    Rotate {
        /// Drop every older key now: links already sent stop working (for
        /// a key that leaked).
        #[arg(long)]
        retire: bool,
    },
}

pub async fn link_key(client: &Client, out: Output, cmd: LinkKeyCommand) -> Result<(), CliError> {
    let LinkKeyCommand::Rotate { retire } = cmd;
    let rotation: crate::alerting::links::Rotation =
        client.send(Method::POST, "/api/v1/link-keys/rotate", &serde_json::json!({ "retire": retire })).await?;
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rotation).unwrap_or_default()),
        Output::Table => {
            println!("Links are signed with key {} from now on.", rotation.id);
            if !rotation.dropped.is_empty() {
                println!("Dropped keys (their links no longer work): {:?}", rotation.dropped);
            }
            let kept: Vec<String> =
                rotation.keys.iter().map(|k| format!("{} ({})", k.id, format_ms(k.created_at))).collect();
            println!("Keys: {}", kept.join(", "));
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct AuditArgs {
    #[arg(long, default_value_t = 50)]
    limit: i64,
}

pub async fn audit(client: &Client, out: Output, args: AuditArgs) -> Result<(), CliError> {
    let entries: Vec<AuditEntry> = client.get(&format!("/api/v1/audit?limit={}", args.limit)).await?;
    print(out, &entries, &["SEQ", "AT", "ACTOR", "ACTION", "OBJECT"], |entries| {
        entries
            .iter()
            .map(|e| vec![e.seq.to_string(), format_ms(e.at), e.actor.clone(), e.action.clone(), e.object_name.clone()])
            .collect()
    });
    Ok(())
}

pub fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
