//! The `tocsin` command line: `serve` runs a controller; every other
//! command is a client of the HTTP API.
//!
//! Exit codes, for scripts: 0 done; 1 failed; 2 bad usage; 3 not found;
//! 4 refused as invalid or conflicting; 5 no server reachable; 6 not
//! authenticated or not allowed.

mod alerting;
mod apply;
mod bench;
mod client;
mod commands;
mod dev;
mod node;
mod output;
mod serve;
mod sync;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use client::{Client, describe};

#[derive(Parser)]
#[command(name = "tocsin", version, about = "Monitoring and alerting you can trust more than what it watches")]
#[command(after_help = "Exit codes: 0 done, 1 failed, 2 bad usage, 3 not found, 4 invalid or conflicting, \
                        5 no server reachable, 6 not authenticated or not allowed.")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args, Clone)]
pub struct ClientArgs {
    /// A controller's URL; give several to try them in order.
    #[arg(
        long = "server",
        global = true,
        env = "TOCSIN_SERVER",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:7400"
    )]
    servers: Vec<String>,
    /// API token (printed by `tocsin serve` on first start, or `tocsin token create`).
    #[arg(long, global = true, env = "TOCSIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Trust https servers whose certificate this CA (PEM) signed, besides
    /// the machine's trust store (`tocsin dev` prints its own).
    #[arg(long, global = true, env = "TOCSIN_CA")]
    ca: Option<std::path::PathBuf>,
    /// Present this certificate (PEM) to servers that require one (mutual TLS).
    #[arg(long, global = true, env = "TOCSIN_TLS_CLIENT_CERT", requires = "tls_client_key")]
    tls_client_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, env = "TOCSIN_TLS_CLIENT_KEY", requires = "tls_client_cert")]
    tls_client_key: Option<std::path::PathBuf>,
    /// `table` for people, `json` for scripts.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
}

impl ClientArgs {
    /// Whom this client trusts and what it presents, from the TLS flags.
    pub fn tls(&self) -> Result<tocsin_tls::ClientTls, CliError> {
        let identity = self.tls_client_cert.as_deref().zip(self.tls_client_key.as_deref());
        tocsin_tls::ClientTls::new(self.ca.as_deref(), identity).map_err(|e| CliError::Usage(e.to_string()))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a controller with a local probe node (SQLite in ./tocsin-data unless --database-url).
    Serve(serve::ServeArgs),
    /// Try it: a controller, two probe nodes, a watchdog and sample checks on this machine, in ./tocsin-dev.
    Dev(dev::DevArgs),
    /// Manage checks.
    #[command(subcommand)]
    Check(commands::CheckCommand),
    /// Manage plugins.
    #[command(subcommand)]
    Plugin(commands::PluginCommand),
    /// Show a check's runs, newest first.
    Runs(commands::RunsArgs),
    /// Manage API tokens (admin).
    #[command(subcommand)]
    Token(commands::TokenCommand),
    /// Make the checks match a YAML or TOML file (config as code).
    Apply(apply::ApplyArgs),
    /// Show the audit trail (admin).
    Audit(commands::AuditArgs),
    /// The key that signs response links (admin): rotate it.
    #[command(subcommand)]
    LinkKey(commands::LinkKeyCommand),
    /// Run a probe node (`--controller URL --location NAME`), or manage nodes (`list`, `drain`, ...).
    Node(node::NodeArgs),
    /// Incidents: list, show with the timeline, ack, reject, resolve.
    #[command(subcommand)]
    Incident(alerting::IncidentCommand),
    /// Raise or resolve an alert from another system.
    #[command(subcommand)]
    Alert(alerting::AlertCommand),
    /// People on call and how to reach them (admin).
    #[command(subcommand)]
    Contact(alerting::ContactCommand),
    /// Escalation policies: who is notified, in which order, for how long.
    #[command(subcommand)]
    Policy(alerting::PolicyCommand),
    /// Notifier gateways (admin), and their delivery totals.
    #[command(subcommand)]
    Gateway(alerting::GatewayCommand),
    /// Which gateways deliver each channel, in precedence order (admin).
    #[command(subcommand)]
    Route(alerting::RouteCommand),
    /// Maintenance windows: one-off or recurring, notifications held back.
    #[command(subcommand)]
    Maintenance(alerting::MaintenanceCommand),
    /// Silences: notifications held back for a while.
    #[command(subcommand)]
    Silence(alerting::SilenceCommand),
    /// Redundant sites: status, follow another site, recover from one, promote this one.
    #[command(subcommand)]
    Sync(sync::SyncCommand),
    /// Measure ingestion or probe throughput on this machine.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{message} ({code}, HTTP {status})")]
    Api { status: u16, code: String, message: String },
    #[error("no server answered: {}", .0.join("; "))]
    Unreachable(Vec<String>),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Other(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Api { status: 404, .. } => 3,
            CliError::Api { status: 401 | 403, .. } => 6,
            CliError::Api { status: 503, .. } | CliError::Unreachable(_) => 5,
            CliError::Api { status: 400..=499, .. } => 4,
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // reqwest and sqlx use rustls; this process uses the ring provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let command = match cli.command {
        Command::Serve(args) => return serve::run(args, &cli.client).await,
        Command::Dev(args) => return dev::run(args).await,
        Command::Bench(cmd) => return bench::run(cmd).await,
        other => other,
    };
    let client = Client::new(cli.client.servers.clone(), cli.client.token.clone(), &cli.client.tls()?)?;
    let out = cli.client.output;
    match command {
        Command::Serve(_) | Command::Dev(_) | Command::Bench(_) => unreachable!("handled above"),
        Command::Check(cmd) => commands::check(&client, out, cmd).await,
        Command::Plugin(cmd) => commands::plugin(&client, out, cmd).await,
        Command::Runs(args) => commands::runs(&client, out, args).await,
        Command::Token(cmd) => commands::token(&client, out, cmd).await,
        Command::Apply(args) => apply::run(&client, out, args).await,
        Command::Audit(args) => commands::audit(&client, out, args).await,
        Command::LinkKey(cmd) => commands::link_key(&client, out, cmd).await,
        Command::Node(args) => node::run(args, &client, &cli.client, out).await,
        Command::Incident(cmd) => alerting::incident(&client, out, cmd).await,
        Command::Alert(cmd) => alerting::alert(&client, out, cmd).await,
        Command::Contact(cmd) => alerting::contact(&client, out, cmd).await,
        Command::Policy(cmd) => alerting::policy(&client, out, cmd).await,
        Command::Gateway(cmd) => alerting::gateway(&client, out, cmd).await,
        Command::Route(cmd) => alerting::route(&client, out, cmd).await,
        Command::Maintenance(cmd) => alerting::maintenance(&client, out, cmd).await,
        Command::Silence(cmd) => alerting::silence(&client, out, cmd).await,
        Command::Sync(cmd) => sync::run(&client, out, cmd).await,
    }
}
