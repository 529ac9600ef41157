//! The command line: run a watchdog, check a config, or run a benchmark.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use secrecy::SecretString;

use crate::config::Config;
use crate::model::now_ms;
use crate::page::Published;
use crate::peer_secret::PeerSecret;
use crate::server::Shared;

#[derive(Parser)]
#[command(
    name = "tocsin-watchdog",
    version,
    about = "Watches a Tocsin platform from outside: probes, alarms, failover, status page"
)]
struct Cli {
    /// The watchdog's TOML config.
    #[arg(long, short, env = "TOCSIN_WATCHDOG_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// The secret the watchdogs share (overrides `peer_secret` in the
    /// config); prefer the environment variable to the flag, which other
    /// users of the machine can see.
    #[arg(long, env = "TOCSIN_WATCHDOG_PEER_SECRET", hide_env_values = true, global = true)]
    peer_secret: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Watch (the default).
    Run,
    /// Load and check the config (keys, URLs, hosts, gateways), then exit.
    CheckConfig,
    /// Measure the status page.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Server time of the status page with this much history.
    Page {
        #[arg(long, default_value_t = 90)]
        days: u32,
        #[arg(long, default_value_t = 50)]
        components: u32,
    },
    /// Kill the lease holder of a real two-controller cluster: time to the
    /// alarm and to the failover, against the lease lapsing by itself.
    Failover {
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// The `tocsin` binary (default: next to this one).
        #[arg(long)]
        tocsin: Option<PathBuf>,
        /// A PostgreSQL server to create a schema on for each round.
        #[arg(long, env = "TOCSIN_TEST_POSTGRES", default_value = "postgres://postgres@127.0.0.1:5432/test")]
        database_url: String,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    sqlx::any::install_default_drivers();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Run) {
            Command::Bench { what: Bench::Page { days, components } } => crate::bench::page(days, components).await,
            Command::Bench { what: Bench::Failover { rounds, tocsin, database_url } } => {
                crate::bench_failover::failover(crate::bench_failover::Args { rounds, tocsin, database_url }).await
            }
            command => {
                let Some(path) = cli.config else {
                    anyhow::bail!("name the config file: tocsin-watchdog --config watchdog.toml");
                };
                let config = Config::load(&path)?;
                let peer_secret = config.peer_secret(cli.peer_secret.map(SecretString::from))?;
                config.check_hosts().await?;
                let notifier = crate::notify::Notifier::new(&config.notify).await?;
                if matches!(command, Command::CheckConfig) {
                    println!(
                        "{}: OK ({} controllers, {} peers, {} gateways{})",
                        path.display(),
                        config.controllers.len(),
                        config.peers.len(),
                        config.notify.len(),
                        if peer_secret.is_some() { ", a peer secret" } else { "" }
                    );
                    return Ok(());
                }
                run(config, peer_secret, notifier).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(config: Config, peer_secret: Option<PeerSecret>, notifier: crate::notify::Notifier) -> anyhow::Result<()> {
    let server_tls = config.tls.server().map_err(|e| anyhow::anyhow!("[tls]: {e}"))?;
    let client_tls = config.tls.client().map_err(|e| anyhow::anyhow!("[tls]: {e}"))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let scheme = tocsin_tls::server::scheme(server_tls.as_ref());
    let public_url = match &config.public_url {
        Some(_) => config.public_url(),
        None => format!("{scheme}://{addr}"),
    };
    let state_path = config.state_path();
    let state = crate::state::State::open(&state_path)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the state {}: {e}", state_path.display()))?;
    if notifier.is_empty() {
        tracing::warn!("no [[notify]] gateway configured: this watchdog will not raise alarms");
    }
    let config = Arc::new(config);
    let metrics = crate::metrics::Metrics::default();
    let page = Published::new(metrics.page_renders.clone());
    // The page is served from the start, from what the state already holds.
    page.refresh(&state, now_ms(), &config.name).await;
    let shared = Arc::new(Shared {
        name: config.name.clone(),
        state,
        // Named from the start: a peer asking before the first round gets
        // this watchdog's name (with no judgement yet), not a nameless view.
        view: RwLock::new(crate::model::View { watchdog: config.name.clone(), ..Default::default() }),
        canary: Default::default(),
        metrics,
        page,
        peer_secret: peer_secret.clone(),
    });
    let cancel = CancellationToken::new();
    let server = {
        let cancel = cancel.clone();
        let app = crate::server::router(shared.clone());
        tokio::spawn(tocsin_tls::serve(listener, server_tls, app, cancel.cancelled_owned()))
    };
    println!("tocsin-watchdog {} listening on {scheme}://{addr} (status page), canary at {public_url}", config.name);
    tracing::info!(watchdog = %config.name, %addr, peers = config.peers.len(), quorum = config.quorum(), "watching");
    let watch = crate::watch::Watch::new(config.clone(), shared, notifier, public_url, peer_secret, &client_tls);
    let watching = tokio::spawn(watch.run(cancel.clone()));
    shutdown_signal().await;
    tracing::info!("stopping");
    cancel.cancel();
    let _ = watching.await;
    let _ = server.await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
