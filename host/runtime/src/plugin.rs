//! Loading a plugin (validate, compile, pre-instantiate, describe) and
//! invoking it.
//!
//! Validation goes from cheap to authoritative: size, magic bytes, then
//! the size of its code and compilation (`compile.rs`), then the
//! component's exports and imports by name (so the error names the export
//! or import at fault), then `instantiate_pre` against the real linker,
//! then `describe` run in the sandbox.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::Store;
use wasmtime::component::Component;

use crate::Shared;
use crate::bindings::check::CheckPre;
use crate::bindings::check::exports::tocsin::plugin::check_api as wit_check;
use crate::bindings::notifier::NotifierPre;
use crate::invoke::{Invocation, State};
use crate::net::Grants;
use crate::types::*;

const CHECK_EXPORT: &str = "tocsin:plugin/check-api";
const NOTIFIER_EXPORT: &str = "tocsin:plugin/notifier-api";
const SUPPORTED: &str = "0.1";

/// Why an upload was refused. Each variant names the exact problem.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LoadError {
    #[error("the plugin is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("not a WebAssembly file: it does not start with the `\\0asm` magic bytes")]
    NotWasm,
    #[error(
        "a core WebAssembly module, not a component: build it with `--target wasm32-wasip2` \
         (or wrap it with `wasm-tools component new`)"
    )]
    NotComponent,
    #[error("not a valid component: {0}")]
    Invalid(String),
    #[error("too complex to compile: {what}")]
    TooComplex { what: String },
    #[error("compiling it took longer than {ms} ms")]
    CompileTimeout { ms: u64 },
    #[error(
        "the component implements neither the check nor the notifier world: it exports {exports}; \
         a check exports {CHECK_EXPORT}@{SUPPORTED}.x and a notifier exports {NOTIFIER_EXPORT}@{SUPPORTED}.x"
    )]
    WrongWorld { exports: String },
    #[error("the component exports both {CHECK_EXPORT} and {NOTIFIER_EXPORT}; a plugin is one or the other")]
    BothWorlds,
    #[error("the component exports {found}, but this Tocsin supports tocsin:plugin {SUPPORTED}.x")]
    UnsupportedVersion { found: String },
    #[error("the component imports {import}, which plugins may not use: {hint}")]
    ForbiddenImport { import: String, hint: String },
    #[error("the component does not fit the {world} world: {message}")]
    Link { world: PluginKind, message: String },
    #[error("describe() {0}")]
    Describe(RunErrorKind),
    #[error("describe() returned a bad answer: {0}")]
    BadInfo(String),
}

impl LoadError {
    /// A stable code for APIs.
    pub fn code(&self) -> &'static str {
        match self {
            LoadError::TooLarge { .. } => "plugin_too_large",
            LoadError::NotWasm => "not_wasm",
            LoadError::NotComponent => "not_a_component",
            LoadError::Invalid(_) => "invalid_component",
            LoadError::TooComplex { .. } => "plugin_too_complex",
            LoadError::CompileTimeout { .. } => "compile_timeout",
            LoadError::WrongWorld { .. } | LoadError::BothWorlds => "wrong_world",
            LoadError::UnsupportedVersion { .. } => "unsupported_version",
            LoadError::ForbiddenImport { .. } => "forbidden_import",
            LoadError::Link { .. } => "link_error",
            LoadError::Describe(_) => "describe_failed",
            LoadError::BadInfo(_) => "bad_plugin_info",
        }
    }
}

/// A configuration that fails the plugin's schema.
#[derive(Clone, Debug, PartialEq, thiserror::Error, serde::Serialize)]
#[error("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error, serde::Serialize)]
#[error("config{}: {message}", if pointer.is_empty() { String::new() } else { format!(" field {pointer}") })]
pub struct ConfigProblem {
    /// JSON pointer to the offending value, such as `/expected_status/0`.
    pub pointer: String,
    pub message: String,
}

/// A loaded plugin. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("id", &self.inner.info.id()).field("sha256", &self.inner.sha256).finish()
    }
}

struct Inner {
    info: PluginInfo,
    sha256: String,
    size: usize,
    exports: Exports,
    schema: jsonschema::Validator,
    shared: Arc<Shared>,
}

enum Exports {
    Check(CheckPre<State>),
    Notifier(NotifierPre<State>),
}

pub(crate) async fn load(shared: &Arc<Shared>, wasm: &[u8]) -> Result<Plugin, LoadError> {
    let limit = shared.config.limits.max_plugin_bytes;
    if wasm.len() > limit {
        return Err(LoadError::TooLarge { size: wasm.len(), limit });
    }
    if !wasm.starts_with(b"\0asm") {
        return Err(LoadError::NotWasm);
    }
    if wasmparser::Parser::is_core_wasm(wasm) {
        return Err(LoadError::NotComponent);
    }
    let sha256 = hex::encode(Sha256::digest(wasm));
    if let Some(plugin) = shared.loaded.lock().unwrap_or_else(|p| p.into_inner()).get(&sha256) {
        return Ok(plugin.clone());
    }

    let started = Instant::now();
    let component = crate::compile::compile(shared, &sha256, wasm).await?;
    let kind = world_of(shared, &component)?;
    let pre = shared
        .linker
        .instantiate_pre(&component)
        .map_err(|e| LoadError::Link { world: kind, message: format!("{e:#}") })?;
    let link_error = |e: wasmtime::Error| LoadError::Link { world: kind, message: format!("{e:#}") };
    let exports = match kind {
        PluginKind::Check => Exports::Check(CheckPre::new(pre).map_err(link_error)?),
        PluginKind::Notifier => Exports::Notifier(NotifierPre::new(pre).map_err(link_error)?),
    };
    let info = describe(shared, kind, &exports, &sha256).await?;
    let schema = check_info(&info, kind)?;
    tracing::info!(
        plugin = %info.id(), %kind, sha256 = %&sha256[..12], bytes = wasm.len(),
        ms = started.elapsed().as_millis() as u64, "plugin loaded"
    );
    let plugin = Plugin {
        inner: Arc::new(Inner {
            info,
            sha256: sha256.clone(),
            size: wasm.len(),
            exports,
            schema,
            shared: shared.clone(),
        }),
    };
    shared.loaded.lock().unwrap_or_else(|p| p.into_inner()).insert(sha256, plugin.clone());
    Ok(plugin)
}

/// Which world the component implements, judged by its exports, and
/// whether it imports only what the sandbox world provides.
fn world_of(shared: &Shared, component: &Component) -> Result<PluginKind, LoadError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(&shared.engine).map(|(name, _)| name.to_string()).collect();
    let find = |interface: &str| -> Result<bool, LoadError> {
        match exports.iter().find(|e| e.split('@').next() == Some(interface)) {
            None => Ok(false),
            Some(name) if version_of(name).is_some_and(|v| v.starts_with(&format!("{SUPPORTED}."))) => Ok(true),
            Some(name) => Err(LoadError::UnsupportedVersion { found: name.clone() }),
        }
    };
    let kind = match (find(CHECK_EXPORT)?, find(NOTIFIER_EXPORT)?) {
        (true, true) => return Err(LoadError::BothWorlds),
        (true, false) => PluginKind::Check,
        (false, true) => PluginKind::Notifier,
        (false, false) => {
            let exports = if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") };
            return Err(LoadError::WrongWorld { exports });
        }
    };
    for (name, _) in ty.imports(&shared.engine) {
        if let Some(hint) = forbidden(name) {
            return Err(LoadError::ForbiddenImport { import: name.to_string(), hint });
        }
    }
    Ok(kind)
}

fn version_of(name: &str) -> Option<&str> {
    name.split_once('@').map(|(_, v)| v)
}

/// The interfaces of the `sandbox` world in `wit/plugin.wit`.
const ALLOWED_IMPORTS: &[&str] = &[
    "tocsin:plugin/types",
    "tocsin:plugin/log",
    "tocsin:plugin/network",
    "tocsin:plugin/http",
    "tocsin:plugin/tcp",
    "tocsin:plugin/dns",
    "tocsin:plugin/tls",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

fn forbidden(import: &str) -> Option<String> {
    let interface = import.split('@').next().unwrap_or(import);
    if ALLOWED_IMPORTS.contains(&interface) {
        return None;
    }
    Some(if interface.starts_with("wasi:sockets/") || interface.starts_with("wasi:http/") {
        "plugins reach the network only through tocsin:plugin/http, tcp, dns and tls, where the host \
         enforces the check's grants"
            .to_string()
    } else {
        "plugins may import only the interfaces of the `sandbox` world in wit/plugin.wit".to_string()
    })
}

/// Asks the plugin about itself, in a slot of its own kind: a notifier
/// loaded while checks crowd the pool still loads.
async fn describe(
    shared: &Arc<Shared>,
    kind: PluginKind,
    exports: &Exports,
    sha256: &str,
) -> Result<PluginInfo, LoadError> {
    let timeout = shared.config.limits.describe_timeout;
    let label = format!("sha256:{}", &sha256[..12]);
    let invocation =
        Invocation::start(shared, kind, label, Grants::none(), timeout).await.map_err(LoadError::Describe)?;
    let report = match exports {
        Exports::Check(pre) => {
            invocation
                .run(async |store| {
                    let instance = match pre.instantiate_async(&mut *store).await {
                        Ok(instance) => instance,
                        Err(e) => return instantiate_failed(e, store),
                    };
                    Ok(Ok(instance.tocsin_plugin_check_api().call_describe(&mut *store).await?))
                })
                .await
        }
        Exports::Notifier(pre) => {
            invocation
                .run(async |store| {
                    let instance = match pre.instantiate_async(&mut *store).await {
                        Ok(instance) => instance,
                        Err(e) => return instantiate_failed(e, store),
                    };
                    Ok(Ok(instance.tocsin_plugin_notifier_api().call_describe(&mut *store).await?))
                })
                .await
        }
    };
    let info = report.outcome.map_err(|e| LoadError::Describe(e.kind))?;
    let config_schema = serde_json::from_str(&info.config_schema)
        .map_err(|e| LoadError::BadInfo(format!("config-schema is not JSON: {e}")))?;
    Ok(PluginInfo {
        name: info.name,
        version: info.version,
        kind: info.kind.into(),
        description: info.description,
        config_schema,
    })
}

fn check_info(info: &PluginInfo, kind: PluginKind) -> Result<jsonschema::Validator, LoadError> {
    let bad = |m: String| Err(LoadError::BadInfo(m));
    let name_ok = info.name.len() <= 63
        && info.name.starts_with(|c: char| c.is_ascii_lowercase())
        && info.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !name_ok {
        return bad(format!("name {:?} must be lowercase letters, digits and `-`, starting with a letter", info.name));
    }
    if let Err(e) = semver::Version::parse(&info.version) {
        return bad(format!("version {:?} is not a semantic version: {e}", info.version));
    }
    if info.kind != kind {
        return bad(format!("it says it is a {} plugin but implements the {kind} world", info.kind));
    }
    if info.description.len() > 1024 {
        return bad(format!("description is {} bytes; the limit is 1024", info.description.len()));
    }
    if !info.config_schema.is_object() && !info.config_schema.is_boolean() {
        return bad("config-schema must be a JSON Schema object".into());
    }
    // Formats (`regex`, `uri`, ...) are checked too: a bad regular
    // expression should be refused when the check is created.
    jsonschema::options()
        .should_validate_formats(true)
        .build(&info.config_schema)
        .or_else(|e| bad(format!("config-schema is not a valid JSON Schema: {e}")))
}

/// A failed instantiation is a run error of its own, unless the memory
/// limit caused it (the caller classifies that).
fn instantiate_failed<T>(e: wasmtime::Error, store: &Store<State>) -> wasmtime::Result<Result<T, RunErrorKind>> {
    if store.data().limiter.hit {
        return Err(e);
    }
    Ok(Err(RunErrorKind::Instantiate { message: format!("{e:#}") }))
}

impl Plugin {
    pub fn info(&self) -> &PluginInfo {
        &self.inner.info
    }

    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// Size of the `.wasm` in bytes.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// Checks a configuration against the plugin's schema, naming every
    /// offending field.
    pub fn validate_config(&self, config: &serde_json::Value) -> Result<(), ConfigError> {
        let problems: Vec<ConfigProblem> = self
            .inner
            .schema
            .iter_errors(config)
            .map(|e| ConfigProblem { pointer: e.instance_path().to_string(), message: e.to_string() })
            .collect();
        if problems.is_empty() { Ok(()) } else { Err(ConfigError { problems }) }
    }

    fn early<T>(&self, kind: RunErrorKind) -> Report<T> {
        Report {
            outcome: Err(RunError { plugin: self.inner.info.id(), kind }),
            logs: Vec::new(),
            logs_dropped: 0,
            refusals: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    fn input_error(&self, what: &str, len: usize, limit: usize) -> Option<RunErrorKind> {
        (len > limit)
            .then(|| RunErrorKind::InputTooLarge { what: format!("the {what} is {len} bytes; the limit is {limit}") })
    }

    /// Runs the check once.
    pub async fn check(&self, call: CheckCall) -> Report<CheckOutcome> {
        let shared = &self.inner.shared;
        let limits = &shared.config.limits;
        let Exports::Check(pre) = &self.inner.exports else {
            return self.early(RunErrorKind::WrongKind { expected: PluginKind::Check, actual: PluginKind::Notifier });
        };
        let too_large = self
            .input_error("target", call.target.len(), limits.max_target_bytes)
            .or_else(|| self.input_error("config", call.config.len(), limits.max_config_bytes));
        if let Some(kind) = too_large {
            return self.early(kind);
        }
        shared.stats.invocations.fetch_add(1, Ordering::Relaxed);
        let grants = Grants::new(&call.target, &call.allow);
        let invocation =
            match Invocation::start(shared, PluginKind::Check, self.inner.info.id(), grants, call.timeout).await {
                Ok(invocation) => invocation,
                Err(kind) => return self.early(kind),
            };
        let context = &call.context;
        let request = wit_check::Request {
            target: call.target,
            config: call.config,
            context: wit_check::Context {
                check: context.check.clone(),
                node: context.node.clone(),
                location: context.location.clone(),
                attempt: context.attempt.into(),
                slot: context.slot_ms,
                deadline_ms: invocation.timeout().as_millis().min(u32::MAX as u128) as u32,
            },
        };
        let (max_message, max_metrics) = (limits.max_message_bytes, limits.max_metrics);
        invocation
            .run(async |store| {
                let instance = match pre.instantiate_async(&mut *store).await {
                    Ok(instance) => instance,
                    Err(e) => return instantiate_failed(e, store),
                };
                let result = instance.tocsin_plugin_check_api().call_run(&mut *store, &request).await?;
                Ok(match result {
                    Ok(outcome) => check_output(outcome.into(), max_message, max_metrics),
                    Err(message) => Err(RunErrorKind::Failed { message: truncate(message, max_message) }),
                })
            })
            .await
    }

    /// Delivers one notification.
    pub async fn deliver(&self, call: DeliveryCall) -> Report<Delivery> {
        let shared = &self.inner.shared;
        let limits = &shared.config.limits;
        let Exports::Notifier(pre) = &self.inner.exports else {
            return self.early(RunErrorKind::WrongKind { expected: PluginKind::Notifier, actual: PluginKind::Check });
        };
        if let Some(kind) = self.input_error("config", call.config.len(), limits.max_config_bytes) {
            return self.early(kind);
        }
        shared.stats.invocations.fetch_add(1, Ordering::Relaxed);
        // A notifier may reach the hosts its gateway config names only
        // through its allowlist: it has no target of its own.
        let grants = Grants::new("", &call.allow);
        let invocation =
            match Invocation::start(shared, PluginKind::Notifier, self.inner.info.id(), grants, call.timeout).await {
                Ok(invocation) => invocation,
                Err(kind) => return self.early(kind),
            };
        let notification = call.notification.into();
        let max_message = limits.max_message_bytes;
        invocation
            .run(async |store| {
                let instance = match pre.instantiate_async(&mut *store).await {
                    Ok(instance) => instance,
                    Err(e) => return instantiate_failed(e, store),
                };
                let result = instance
                    .tocsin_plugin_notifier_api()
                    .call_deliver(&mut *store, &call.config, &notification)
                    .await?;
                let delivery = Delivery::from(result);
                let size = match &delivery {
                    Delivery::Delivered { message_id, detail } => message_id.len() + detail.len(),
                    Delivery::Failed { message, .. } => message.len(),
                };
                if size > max_message {
                    return Ok(Err(RunErrorKind::OutputTooLarge {
                        what: format!("its delivery result is {size} bytes; the limit is {max_message}"),
                    }));
                }
                Ok(Ok(delivery))
            })
            .await
    }
}

fn check_output(outcome: CheckOutcome, max_message: usize, max_metrics: usize) -> Result<CheckOutcome, RunErrorKind> {
    let too_large = |what: String| Err(RunErrorKind::OutputTooLarge { what });
    if outcome.message.len() > max_message {
        return too_large(format!("its result message is {} bytes; the limit is {max_message}", outcome.message.len()));
    }
    if outcome.metrics.len() > max_metrics {
        return too_large(format!("it returned {} metrics; the limit is {max_metrics}", outcome.metrics.len()));
    }
    if let Some(m) = outcome.metrics.iter().find(|m| m.name.len() > 128 || m.unit.len() > 16) {
        return too_large(format!("metric {:?} has a name or unit that is too long", truncate(m.name.clone(), 64)));
    }
    Ok(outcome)
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}
