//! `tocsin node`: run a probe node (`tocsin node --controller URL --location
//! NAME`), or manage nodes (`list`, `drain`, `evict`, `resume`, `rm`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde::Deserialize;
use tocsin_runtime::{Runtime, RuntimeConfig};
use tokio_util::sync::CancellationToken;

use super::client::Payload;
use super::output::{ago, print};
use super::{CliError, Client, Output};
use crate::catalog::Catalog;
use crate::metrics::Metrics;
use crate::model::Node;
use crate::node::Identity;
use crate::node::buffer::{Buffer, DiskBuffer};
use crate::node::http_link::HttpLink;
use crate::node::plugins::NodePlugins;
use crate::node::runner::{self, NodeSetup};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct NodeArgs {
    #[command(subcommand)]
    command: Option<NodeCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
pub enum NodeCommand {
    /// List probe nodes with their state, load and last heartbeat.
    List,
    /// Move a node's checks to other nodes before maintenance.
    Drain { id: String },
    /// Take every check from a node at once (one that heartbeats but runs
    /// nothing); it owns nothing until resumed.
    Evict {
        id: String,
        /// Why, for the audit trail.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Let a drained or evicted node take checks again.
    Resume { id: String },
    /// Forget a node that owns no check (a replaced machine).
    Rm { id: String },
}

#[derive(Args)]
pub struct RunArgs {
    /// A controller's URL; give several to try them in order.
    #[arg(long = "controller", env = "TOCSIN_CONTROLLER", value_delimiter = ',', required = true)]
    controllers: Vec<String>,
    /// Where this node probes from, such as `eu-west`.
    #[arg(long, env = "TOCSIN_LOCATION", required = true)]
    location: Option<String>,
    /// The node's name (default: the host name).
    #[arg(long, env = "TOCSIN_NODE_NAME")]
    name: Option<String>,
    /// Its identity, buffered results and plugins.
    #[arg(long, env = "TOCSIN_DATA_DIR", default_value = "tocsin-node")]
    data_dir: PathBuf,
    /// Address of the node's `/healthz` and `/metrics`.
    #[arg(long, env = "TOCSIN_LISTEN", default_value = "127.0.0.1:7401")]
    listen: SocketAddr,
    /// A TOML file: `max_buffered`, `catch_up_slots`, and a `[runtime]` table.
    #[arg(long, env = "TOCSIN_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    /// Results kept while no controller answers (default 1 000 000).
    max_buffered: Option<u64>,
    catch_up_slots: Option<i64>,
    runtime: Option<RuntimeConfig>,
}

pub async fn run(args: NodeArgs, client: &Client, flags: &super::ClientArgs, out: Output) -> Result<(), CliError> {
    match args.command {
        Some(command) => manage(client, out, command).await,
        None => serve_node(args.run, flags.token.clone(), flags.tls()?).await,
    }
}

async fn manage(client: &Client, out: Output, command: NodeCommand) -> Result<(), CliError> {
    let header = &["ID", "NAME", "LOCATION", "STATE", "CHECKS", "HEARTBEAT", "VERSION"];
    let rows = |nodes: &Vec<Node>| {
        nodes
            .iter()
            .map(|n| {
                vec![
                    n.id.clone(),
                    n.name.clone(),
                    n.location.clone(),
                    serde_json::to_value(n.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                    n.load.to_string(),
                    ago(n.last_heartbeat),
                    n.version.clone(),
                ]
            })
            .collect()
    };
    match command {
        NodeCommand::List => {
            let nodes: Vec<Node> = client.get("/api/v1/nodes").await?;
            print(out, &nodes, header, rows);
        }
        NodeCommand::Drain { id } | NodeCommand::Evict { id, .. } | NodeCommand::Resume { id } if id.is_empty() => {
            return Err(CliError::Usage("name the node by its id (see tocsin node list)".into()));
        }
        NodeCommand::Drain { id } => {
            let node: Node = client
                .call(Method::POST, &format!("/api/v1/nodes/{}/drain", super::commands::urlencode(&id)), Payload::None)
                .await?;
            print(out, &vec![node], header, rows);
        }
        NodeCommand::Evict { id, reason } => {
            let path = format!("/api/v1/nodes/{}/evict", super::commands::urlencode(&id));
            let node: Node = client.send(Method::POST, &path, &serde_json::json!({ "reason": reason })).await?;
            print(out, &vec![node], header, rows);
        }
        NodeCommand::Resume { id } => {
            let node: Node = client
                .call(Method::POST, &format!("/api/v1/nodes/{}/resume", super::commands::urlencode(&id)), Payload::None)
                .await?;
            print(out, &vec![node], header, rows);
        }
        NodeCommand::Rm { id } => {
            client.send_empty(Method::DELETE, &format!("/api/v1/nodes/{}", super::commands::urlencode(&id))).await?;
            if out == Output::Table {
                println!("Forgot node {id}");
            }
        }
    }
    Ok(())
}

async fn serve_node(args: RunArgs, token: Option<String>, tls: tocsin_tls::ClientTls) -> Result<(), CliError> {
    super::serve::init_logging(super::serve::LogFormat::Text);
    let token = token.ok_or_else(|| {
        CliError::Usage(
            "a node token is needed: create one with `tocsin token create --role node` and pass --token".into(),
        )
    })?;
    let file = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
            toml::from_str::<NodeFile>(&text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?
        }
        None => NodeFile::default(),
    };
    let location = args.location.unwrap_or_default();
    let name = args.name.unwrap_or_else(crate::config::hostname);
    for (what, value) in [("location", &location), ("name", &name)] {
        if !crate::api::is_name(value) {
            return Err(CliError::Usage(format!(
                "--{what} {value:?}: use lowercase letters, digits, `.`, `_` and `-`"
            )));
        }
    }
    let other = |e: &dyn std::fmt::Display| CliError::Other(e.to_string());
    let identity =
        Identity { id: crate::server::local_node_id(&args.data_dir).map_err(|e| other(&e))?, name, location };
    let mut runtime_config = file.runtime.unwrap_or_default();
    runtime_config.cache_dir.get_or_insert_with(|| args.data_dir.join("plugin-cache"));
    let runtime = Runtime::new(runtime_config).map_err(|e| other(&e))?;
    let catalog = Catalog::new(runtime.clone()).await.map_err(|e| other(&e))?;
    for controller in args.controllers.iter().filter(|c| crate::config::clear_and_remote(c)) {
        tracing::warn!(%controller, "talking plain HTTP to a controller that is not on loopback: the node token and \
            key cross the network in clear; serve the controller over TLS (--tls-cert, --tls-key) and give the node \
            its https:// URL (and --ca)");
    }
    let link = Arc::new(
        HttpLink::new(args.controllers.clone(), token, &args.data_dir.join("node-key"), &tls).map_err(|e| other(&e))?,
    );
    let buffer: Arc<dyn Buffer> = Arc::new(
        DiskBuffer::open(&args.data_dir, file.max_buffered.unwrap_or(1_000_000)).await.map_err(|e| other(&e))?,
    );
    let metrics = Arc::new(Metrics::default());
    let plugins = Arc::new(NodePlugins {
        catalog,
        link: link.clone(),
        dir: args.data_dir.join("plugins"),
        loaded: Default::default(),
    });

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| CliError::Other(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener.local_addr().map_err(|e| other(&e))?;
    let endpoint = {
        let (metrics, buffer, runtime) = (metrics.clone(), buffer.clone(), runtime.clone());
        axum::Router::new()
            .route(
                "/healthz",
                axum::routing::get(|| async {
                    axum::Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
                }),
            )
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let (metrics, buffer, runtime) = (metrics.clone(), buffer.clone(), runtime.clone());
                    async move {
                        metrics.results_buffered.set(buffer.len() as i64);
                        metrics.results_dropped.set(buffer.dropped() as i64);
                        metrics.observe_runtime(&runtime.stats());
                        (
                            [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                            metrics.encode(),
                        )
                    }
                }),
            )
    };
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        super::serve::shutdown_signal().await;
        stop.cancel();
    });
    let http_stop = cancel.clone();
    tokio::spawn(
        async move { axum::serve(listener, endpoint).with_graceful_shutdown(http_stop.cancelled_owned()).await },
    );

    println!(
        "Tocsin node {} ({}) in {} listening on http://{addr}; controllers: {}",
        identity.name,
        identity.id,
        identity.location,
        args.controllers.join(", ")
    );
    let setup = NodeSetup {
        identity,
        link,
        plugins,
        buffer,
        metrics,
        catch_up_slots: file.catch_up_slots.unwrap_or(3),
        state_file: Some(args.data_dir.join("work.json")),
        running: Arc::new(move || runtime.stats().running as u64),
    };
    runner::run(setup, cancel).await;
    Ok(())
}
