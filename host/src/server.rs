//! `tocsin serve`: a controller (API, storage, scheduling), by default with
//! a probe node in the same process, on a bound listener until `shutdown`
//! resolves.
//!
//! Tasks and how they connect:
//!
//! ```text
//!  API ──changes──▶ coordinator (if it holds the lease) ──assignments──▶ database
//!   │                                                                      │
//!   └── /api/v1/node/* ──┐                       bulletin (work versions) ◀┘
//!                        ▼
//!              serving (enroll, heartbeat, work, results) ◀── LocalLink ── local node
//!                        │                                 ◀── HTTP ────── tocsin node
//!                        ▼
//!                     ingest ──▶ database
//! ```
//!
//! On shutdown the API stops accepting, the local node finishes its runs in
//! flight and uploads their results, the coordinator gives up the lease.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use tocsin_runtime::{Plugin, Runtime};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::alerting::{self, links::Signer, outbox::Deliverer};
use crate::api::{self, AppState};
use crate::auth::{self, Authenticator};
use crate::catalog::Catalog;
use crate::cluster::bulletin::Bulletin;
use crate::cluster::coordinator::Coordinator;
use crate::cluster::serving::{LocalLink, Serving};
use crate::config::{Secret, ServeConfig};
use crate::metrics::Metrics;
use crate::model::now_ms;
use crate::node::buffer::MemoryBuffer;
use crate::node::runner::{self, NodeSetup};
use crate::node::{AssignedCheck, Identity, PluginSource};
use crate::secrets::Keyring;
use crate::store::{self, Db};
use crate::sync;

pub async fn serve(
    mut config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let tls = config.tls.server().context("TLS")?;
    config.sync.tls = config.tls.client().context("TLS for calls to other sites")?;
    let scheme = tocsin_tls::server::scheme(tls.as_ref());
    if tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "serving plain HTTP on a non-loopback address: tokens, node keys and gateway \
            credentials cross the network in clear; serve TLS (--tls-cert, --tls-key), put a TLS-terminating proxy \
            in front (deploy/haproxy) or keep this address on a private network");
    }
    #[cfg(feature = "testing")]
    api::testing::from_env()?;
    let keys = Keyring::load(
        config.secrets_key.as_ref().map(Secret::expose),
        config.secrets_key_file.as_deref(),
        &config.data_dir,
    )?;
    let db = match &config.database_url {
        Some(url) => Db::connect(url.expose(), keys)
            .await
            .with_context(|| format!("opening the database {}", url.redacted_url()))?,
        None => Db::open_dir(&config.data_dir, keys)
            .await
            .with_context(|| format!("opening the database in {}", config.data_dir.display()))?,
    };
    // Before anything reads a secret: a controller with the wrong key stops
    // here, having changed nothing.
    let sealing = store::sealing::run(&db).await.context("checking the stored secrets against the secrets key")?;
    tracing::info!(
        key = db.keys().current(),
        sealed = sealing.sealed,
        link_keys = sealing.link_keys,
        feed_entries_dropped = sealing.feed_dropped,
        "stored secrets are sealed with the secrets key"
    );
    let mut runtime_config = config.runtime.clone();
    runtime_config.cache_dir.get_or_insert_with(|| config.data_dir.join("plugin-cache"));
    // The node inside the controller must not probe the controller itself.
    runtime_config.network.forbidden.push(addr);
    let runtime = Runtime::new(runtime_config).context("starting the plugin runtime")?;
    let catalog = Catalog::new(runtime).await.context("loading the built-in plugins")?;
    catalog.learn_secrets(&db).await.context("reading the stored plugins' schemas")?;

    let site = sync::site::configure(&db, config.sync.site_name(), config.sync.follow.as_deref())
        .await
        .context("reading this site's role")?;
    let baseline = sync::feed::baseline(&db).await.context("starting the change feed")?;
    if baseline > 0 {
        tracing::info!(objects = baseline, "the change feed starts with every object that exists");
    }
    if site.role == sync::Role::Active {
        if let Some(token) = auth::first_admin(&db).await.context("creating the first admin token")? {
            println!("First start: created an admin token. It is shown only now; keep it safe:");
            println!("  export TOCSIN_TOKEN={token}");
        }
    } else {
        println!(
            "Site {} is passive, following {}: tokens and configuration come from there.",
            site.name,
            site.source.as_deref().unwrap_or("no one")
        );
    }
    let site = sync::SiteWatch::new(site, !config.sync.peers.is_empty());

    let controller = format!("{}@{addr}", config.node_name);
    let metrics = Arc::new(Metrics::default());
    let changes = Arc::new(Notify::new());
    let bulletin = Bulletin::new();
    let mut rules = config.alerting.clone();
    rules.public_url = config.public_url.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
    let signer = Signer::load(&db).await.context("reading the link signing key")?;
    let alerts = Arc::new(Notify::new());
    let serving = Arc::new(Serving {
        db: db.clone(),
        config: config.cluster.clone(),
        bulletin: bulletin.clone(),
        metrics: metrics.clone(),
        rules: rules.clone(),
        alerts: alerts.clone(),
    });
    let background = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(bulletin.clone().run(db.clone(), background.clone()));
    let following = Arc::new(std::sync::Mutex::new(sync::follower::FollowState::default()));
    tasks.spawn(sync::peers::run(db.clone(), site.clone(), config.sync.clone(), metrics.clone(), background.clone()));
    let follower = sync::follower::Follower {
        db: db.clone(),
        site: site.clone(),
        config: config.sync.clone(),
        metrics: metrics.clone(),
        state: following.clone(),
    };
    tasks.spawn(follower.run(background.clone()));
    let coordinator = Coordinator {
        db: db.clone(),
        config: config.cluster.clone(),
        me: controller.clone(),
        metrics: metrics.clone(),
        bulletin: bulletin.clone(),
        changes: changes.clone(),
        rules: rules.clone(),
        site: site.clone(),
    };
    tasks.spawn(coordinator.run(background.clone()));
    let deliverer = Arc::new(Deliverer {
        db: db.clone(),
        catalog: catalog.clone(),
        signer: signer.clone(),
        rules: rules.clone(),
        metrics: metrics.clone(),
    });
    tasks.spawn(alerting::run(db.clone(), deliverer, alerts.clone(), site.clone(), background.clone()));
    tasks.spawn(maintain(db.clone(), config.clone(), background.clone()));

    let stop_node = CancellationToken::new();
    let local_node = if config.local_node {
        let identity = Identity {
            id: local_node_id(&config.data_dir).context("reading the node id")?,
            name: config.node_name.clone(),
            location: config.location.clone(),
        };
        let runtime = catalog.runtime().clone();
        let setup = NodeSetup {
            identity: identity.clone(),
            link: Arc::new(LocalLink(serving.clone())),
            plugins: Arc::new(CatalogSource { catalog: catalog.clone(), db: db.clone() }),
            buffer: Arc::new(MemoryBuffer::default()),
            metrics: metrics.clone(),
            catch_up_slots: config.cluster.catch_up_slots,
            state_file: None,
            running: Arc::new(move || runtime.stats().running as u64),
        };
        Some((identity, tokio::spawn(runner::run(setup, stop_node.clone()))))
    } else {
        None
    };

    let state = Arc::new(AppState {
        db: db.clone(),
        catalog,
        auth: Authenticator::default(),
        metrics,
        changes,
        min_interval: config.min_interval,
        editor_grants: config.editor_grants.clone(),
        serving,
        controller: controller.clone(),
        alerting: api::Alerting { signer, rules, wake: alerts },
        site,
        sync: config.sync.clone(),
        following,
    });
    let backend = match db.backend {
        store::Backend::Sqlite => format!("SQLite in {}", config.data_dir.display()),
        store::Backend::Postgres => "PostgreSQL".to_string(),
    };
    let node = match &local_node {
        Some((identity, _)) => format!("node {} in {}", identity.name, identity.location),
        None => "no local node".to_string(),
    };
    println!("Tocsin {} listening on {scheme}://{addr} ({backend}; {node})", env!("CARGO_PKG_VERSION"));
    let client_certificates = tls.as_ref().is_some_and(tocsin_tls::ServerTls::mutual);
    tracing::info!(%addr, controller = %controller, %scheme, client_certificates, "controller started");

    let stop = stop_node.clone();
    // Handlers see connection addresses, for the sync allowlist.
    tocsin_tls::serve(listener, tls, api::router(state), async move {
        shutdown.await;
        tracing::info!("shutting down: finishing runs in flight and writing their results");
        stop.cancel();
    })
    .await
    .context("serving the API")?;

    stop_node.cancel();
    if let Some((_, node)) = local_node {
        let _ = node.await;
    }
    background.cancel();
    while tasks.join_next().await.is_some() {}
    tracing::info!("stopped");
    Ok(())
}

/// A node id that survives restarts: kept in the data directory.
pub fn local_node_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("node-id");
    if let Ok(id) = std::fs::read_to_string(&path)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_string());
    }
    std::fs::create_dir_all(data_dir)?;
    let id = format!("node-{:016x}", rand::random::<u64>());
    std::fs::write(&path, &id)?;
    Ok(id)
}

/// The in-process node takes its plugins from the controller's catalog.
struct CatalogSource {
    catalog: Catalog,
    db: Db,
}

impl PluginSource for CatalogSource {
    fn plugin<'a>(&'a self, check: &'a AssignedCheck) -> BoxFuture<'a, Result<Plugin, String>> {
        Box::pin(async move { self.catalog.get(&self.db, &check.plugin).await.map_err(|e| e.to_string()) })
    }
}

/// Hourly roll-ups and pruning.
async fn maintain(db: Db, config: ServeConfig, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let mut passes = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return,
        }
        if let Err(e) = store::rollup::roll_up(&db, now_ms()).await {
            tracing::warn!(error = %e, "rolling up runs failed");
        }
        if passes.is_multiple_of(10) {
            let now = now_ms();
            match store::rollup::prune(
                &db,
                now - config.keep_runs.as_millis() as i64,
                now - config.keep_hours.as_millis() as i64,
            )
            .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "pruned old runs"),
                Err(e) => tracing::warn!(error = %e, "pruning old runs failed"),
            }
        }
        passes += 1;
    }
}
