//! `tocsin serve`: flags over the config file over defaults, logging, the
//! listener, and shutdown on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::CliError;
use crate::config::{Secret, ServeConfig, ServeFile};

#[derive(Args)]
pub struct ServeArgs {
    /// Address of the API.
    #[arg(long, env = "TOCSIN_LISTEN")]
    listen: Option<SocketAddr>,
    /// Where the embedded database and caches live.
    #[arg(long, env = "TOCSIN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// `postgres://...` to use PostgreSQL instead of SQLite.
    #[arg(long, env = "TOCSIN_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The file holding the key that seals secrets at rest (default
    /// `<data-dir>/secrets-key`, made at the first start). Every controller
    /// and site of a cluster needs the same key.
    #[arg(long, env = "TOCSIN_SECRETS_KEY_FILE")]
    secrets_key_file: Option<PathBuf>,
    /// The secrets key itself, instead of the file: 64 hex digits or base64
    /// (several comma-separated, the sealing one first). Give it in the
    /// environment: a flag shows in every process listing.
    #[arg(long, env = "TOCSIN_SECRETS_KEY", hide_env_values = true)]
    secrets_key: Option<String>,
    /// A TOML file of settings (flags win over it).
    #[arg(long, env = "TOCSIN_CONFIG")]
    config: Option<PathBuf>,
    /// The local node's location.
    #[arg(long, env = "TOCSIN_LOCATION")]
    location: Option<String>,
    /// The local node's name (default: the host name).
    #[arg(long, env = "TOCSIN_NODE_NAME")]
    node_name: Option<String>,
    /// This site's name, when there are several (default `main`).
    #[arg(long, env = "TOCSIN_SITE")]
    site: Option<String>,
    /// A new site starts passive, following the site at this URL.
    #[arg(long, env = "TOCSIN_FOLLOW")]
    follow: Option<String>,
    /// An admin token valid at the other sites, to read their change feed.
    #[arg(long, env = "TOCSIN_SYNC_TOKEN", hide_env_values = true)]
    sync_token: Option<String>,
    /// A secret every site of this deployment shares (32 characters or
    /// more): sites prove it to each other before one steps down for
    /// another's epoch or sends it the sync token.
    #[arg(long, env = "TOCSIN_SYNC_PEER_SECRET", hide_env_values = true)]
    sync_peer_secret: Option<String>,
    /// Another site's URL, asked for its epoch (repeat, or comma-separate).
    #[arg(long = "sync-peer", env = "TOCSIN_SYNC_PEERS", value_delimiter = ',')]
    sync_peers: Vec<String>,
    /// Addresses (CIDR) that may read this site's change feed.
    #[arg(long = "sync-allow", env = "TOCSIN_SYNC_ALLOW", value_delimiter = ',', value_parser = crate::sync::parse_net)]
    sync_allow: Vec<ipnet::IpNet>,
    /// Serve HTTPS with this certificate chain (PEM, the server's first).
    #[arg(long, env = "TOCSIN_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM).
    #[arg(long, env = "TOCSIN_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require every client (CLI, nodes, sites, watchdogs) to present a
    /// certificate signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "TOCSIN_CLIENT_CA")]
    client_ca: Option<PathBuf>,
    /// Log format on stderr; the level comes from RUST_LOG (default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `client`: the global `--ca` and client certificate, for calls to other sites.
pub async fn run(args: ServeArgs, client: &super::ClientArgs) -> Result<(), CliError> {
    init_logging(args.log_format);
    let file = match &args.config {
        Some(path) => ServeFile::read(path).map_err(|e| CliError::Usage(e.to_string()))?,
        None => ServeFile::default(),
    };
    let mut config = ServeConfig::from_file(file);
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(url) = args.database_url {
        config.database_url = Some(Secret::new(url));
    }
    if let Some(path) = args.secrets_key_file {
        config.secrets_key_file = Some(path);
    }
    if let Some(key) = args.secrets_key {
        config.secrets_key = Some(Secret::new(key));
    }
    if let Some(location) = args.location {
        config.location = location;
    }
    if let Some(name) = args.node_name {
        config.node_name = name;
    }
    if let Some(site) = args.site {
        config.sync.site = Some(site);
    }
    if let Some(url) = args.follow {
        config.sync.follow = Some(url);
    }
    if let Some(token) = args.sync_token {
        config.sync.token = Some(Secret::new(token));
    }
    if let Some(secret) = args.sync_peer_secret {
        config.sync.peer_secret = Some(Secret::new(secret));
    }
    if let Some(secret) = &config.sync.peer_secret
        && secret.expose().len() < crate::sync::proof::MIN_SECRET
    {
        return Err(CliError::Usage(format!(
            "the sync peer secret has {} characters; use {} or more (for example `openssl rand -hex 32`)",
            secret.expose().len(),
            crate::sync::proof::MIN_SECRET
        )));
    }
    if !args.sync_peers.is_empty() {
        config.sync.peers = args.sync_peers;
    }
    if !args.sync_allow.is_empty() {
        config.sync.allow = args.sync_allow;
    }
    let tls = &mut config.tls;
    for (flag, setting) in [
        (args.tls_cert, &mut tls.cert),
        (args.tls_key, &mut tls.key),
        (args.client_ca, &mut tls.client_ca),
        (client.ca.clone(), &mut tls.ca),
        (client.tls_client_cert.clone(), &mut tls.client_cert),
        (client.tls_client_key.clone(), &mut tls.client_key),
    ] {
        if flag.is_some() {
            *setting = flag;
        }
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| CliError::Other(format!("cannot listen on {}: {e}", config.listen)))?;
    crate::server::serve(config, listener, shutdown_signal()).await.map_err(|e| CliError::Other(format!("{e:#}")))
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = interrupt.await;
            return;
        }
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}
