//! Tocsin's plugin runtime: runs check and notifier components in a sandbox.
//!
//! A [`Runtime`] owns the process's one wasmtime `Engine`, the `Linker` with
//! the host interfaces of `wit/plugin.wit`, and the pool of instance slots.
//! [`Runtime::load`] validates an uploaded component (is it a component,
//! which world, which imports, does `describe` answer sensibly), compiles it
//! once (cached on disk by sha256) and pre-instantiates it. Each
//! [`Plugin::check`] or [`Plugin::deliver`] then gets a fresh `Store` with
//! a memory cap, a deadline and the network grants of that one call.
//!
//! ```no_run
//! # async fn demo(wasm: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tocsin_runtime::{CheckCall, Runtime, RuntimeConfig, RunContext};
//!
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let http = runtime.load(wasm).await?;
//! http.validate_config(&serde_json::json!({"expected_status": ["200"]}))?;
//! let report = http
//!     .check(CheckCall {
//!         target: "https://example.com".into(),
//!         config: r#"{"expected_status": ["200"]}"#.into(),
//!         context: RunContext::default(),
//!         allow: vec![],
//!         timeout: Duration::from_secs(10),
//!     })
//!     .await;
//! println!("{:?}", report.outcome);
//! # Ok(()) }
//! ```
//!
//! Architecture invariant: nothing a plugin does can crash or stall the
//! host. Every failure of a plugin becomes a [`RunError`] naming the plugin
//! and the reason, and every network access it was refused is listed in the
//! [`Report`].

mod bindings;
mod cache;
mod compile;
mod config;
mod engine;
mod host;
mod invoke;
mod logs;
pub mod net;
mod plugin;
mod pool;
mod types;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime::Engine;
use wasmtime::component::Linker;

pub use crate::config::{Limits, NetworkConfig, RuntimeConfig};
pub use crate::logs::{Level, LogLine};
pub use crate::net::{BadGrant, Grant, implied_grants, reaches_non_public, schema_defaults};
pub use crate::plugin::{ConfigError, ConfigProblem, LoadError, Plugin};
pub use crate::pool::SlotStats;
pub use crate::types::*;

/// A failure of the runtime itself (never of a plugin).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("wasm engine: {0}")]
    Engine(String),
    #[error("runtime configuration: {0}")]
    Config(String),
}

/// The plugin runtime of one process. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    engine: Engine,
    linker: Linker<invoke::State>,
    config: RuntimeConfig,
    net: Arc<net::NetShared>,
    pool: pool::Pool,
    cache: Option<cache::ArtifactCache>,
    /// One compilation at a time, held by the compiling thread until it
    /// ends (even when its caller gave up waiting for it), so abandoned
    /// compilations cannot pile up.
    compiler: Arc<tokio::sync::Semaphore>,
    loaded: Mutex<HashMap<String, Plugin>>,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    invocations: AtomicU64,
    compiled: AtomicU64,
}

/// Counters for `/metrics`.
#[derive(Clone, Copy, Debug)]
pub struct RuntimeStats {
    /// Invocations started since the runtime was created.
    pub invocations: u64,
    /// Invocations running now.
    pub running: usize,
    /// Pool slots: the most invocations that can run at once.
    pub slots: usize,
    /// Plugins compiled (cache misses) since the runtime was created.
    pub compiled: u64,
    /// Cached artifacts that failed their authentication and were
    /// discarded (then compiled again).
    pub cache_rejected: u64,
    pub checks: SlotStats,
    pub notifiers: SlotStats,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Self, Error> {
        let engine = engine::build(&config)?;
        let linker = engine::linker(&engine)?;
        let net = Arc::new(net::NetShared::new(&config.network, config.limits.max_body_bytes)?);
        let cache = match &config.cache_dir {
            Some(dir) => Some(cache::ArtifactCache::open(dir, &engine)?),
            None => None,
        };
        let shared = Arc::new(Shared {
            pool: pool::Pool::new(config.max_concurrent, config.notifier_slots, config.slot_wait)?,
            compiler: Arc::new(tokio::sync::Semaphore::new(1)),
            engine,
            linker,
            config,
            net,
            cache,
            loaded: Mutex::default(),
            stats: Stats::default(),
        });
        engine::start_ticker(Arc::downgrade(&shared));
        Ok(Self { shared })
    }

    /// Validates, compiles (or fetches from the cache) and describes a
    /// plugin. Loading the same bytes twice returns the same plugin.
    pub async fn load(&self, wasm: &[u8]) -> Result<Plugin, LoadError> {
        plugin::load(&self.shared, wasm).await
    }

    /// Forgets a loaded plugin (its compiled artifact stays cached on disk).
    pub fn unload(&self, sha256: &str) {
        self.shared.loaded.lock().unwrap_or_else(|p| p.into_inner()).remove(sha256);
    }

    /// See [`net::unreachable_target`]; this node's own grants count.
    pub fn unreachable_target(&self, target: &str, allow: &[Grant]) -> Option<String> {
        net::unreachable_target(target, allow, &self.shared.net.node_grants)
    }

    pub fn limits(&self) -> &Limits {
        &self.shared.config.limits
    }

    pub fn stats(&self) -> RuntimeStats {
        let pool = &self.shared.pool;
        RuntimeStats {
            invocations: self.shared.stats.invocations.load(Ordering::Relaxed),
            running: pool.running(),
            slots: pool.total(),
            compiled: self.shared.stats.compiled.load(Ordering::Relaxed),
            cache_rejected: self.shared.cache.as_ref().map_or(0, |c| c.rejected()),
            checks: pool.stats(PluginKind::Check),
            notifiers: pool.stats(PluginKind::Notifier),
        }
    }
}
