//! What an operator can tune: the pool size, per-invocation limits and the
//! node-wide network grants. Every limit has a default that suits a probe
//! node; all of them are in one place so they are easy to audit.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::net::Grant;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Where compiled plugins are cached by sha256. `None`: compile on
    /// every load (tests, one-shot tools).
    pub cache_dir: Option<PathBuf>,
    /// The most invocations running at once; further ones wait for a slot.
    pub max_concurrent: u32,
    /// Slots of `max_concurrent` only notifier calls take, so slow checks
    /// cannot hold back a notification. Default: a tenth, at least one.
    pub notifier_slots: Option<u32>,
    /// How long a call waits for a free slot before it fails with
    /// `no_slot`.
    #[serde(with = "crate::config::millis")]
    pub slot_wait: Duration,
    pub limits: Limits,
    pub network: NetworkConfig,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_concurrent: 1000,
            notifier_slots: None,
            slot_wait: Duration::from_secs(5),
            limits: Limits::default(),
            network: NetworkConfig::default(),
        }
    }
}

/// Limits on one plugin and one invocation.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// The largest `.wasm` accepted at upload.
    pub max_plugin_bytes: usize,
    /// Bounds on the code of a plugin, checked before it is compiled, so
    /// compiling it takes bounded time and memory: functions in all its
    /// modules, bytes of one function's body, locals of one function.
    pub max_functions: usize,
    pub max_function_bytes: usize,
    pub max_function_locals: u64,
    /// The longest a plugin may take to compile; an upload that takes
    /// longer is refused (`compile_timeout`).
    #[serde(with = "crate::config::millis")]
    pub compile_timeout: Duration,
    /// Linear memory a single invocation may use.
    pub memory_bytes: usize,
    /// The longest any invocation may run, whatever the check asks for.
    #[serde(with = "crate::config::millis")]
    pub max_timeout: Duration,
    /// Time allowed to `describe` at load.
    #[serde(with = "crate::config::millis")]
    pub describe_timeout: Duration,
    pub max_target_bytes: usize,
    pub max_config_bytes: usize,
    pub max_message_bytes: usize,
    pub max_metrics: usize,
    /// Log volume kept per run; beyond it lines are counted and dropped.
    pub max_log_bytes: usize,
    pub max_log_lines: usize,
    /// The most response body bytes the host hands to a plugin.
    pub max_body_bytes: usize,
    /// Open connections (and other host resources) per invocation.
    pub max_resources: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_plugin_bytes: 20 << 20,
            max_functions: 50_000,
            max_function_bytes: 512 << 10,
            max_function_locals: 10_000,
            compile_timeout: Duration::from_secs(60),
            memory_bytes: 64 << 20,
            max_timeout: Duration::from_secs(60),
            describe_timeout: Duration::from_secs(2),
            max_target_bytes: 2048,
            max_config_bytes: 64 << 10,
            max_message_bytes: 16 << 10,
            max_metrics: 64,
            max_log_bytes: 64 << 10,
            max_log_lines: 200,
            max_body_bytes: 4 << 20,
            max_resources: 64,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Grants every check on this node has in addition to its own, for
    /// example `10.0.0.0/8` where a node watches a private network.
    pub allow: Vec<Grant>,
    /// PEM files of extra certificate authorities to trust (private CAs).
    pub extra_roots: Vec<PathBuf>,
    /// Sent as `User-Agent` when a plugin does not set one.
    pub user_agent: String,
    /// Listeners no plugin may contact, whatever its grants: the
    /// controller's own, when the node runs inside it (an unspecified
    /// address stands for every local one).
    #[serde(skip)]
    pub forbidden: Vec<std::net::SocketAddr>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            extra_roots: Vec::new(),
            user_agent: concat!("Tocsin/", env!("CARGO_PKG_VERSION")).to_string(),
            forbidden: Vec::new(),
        }
    }
}

pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
