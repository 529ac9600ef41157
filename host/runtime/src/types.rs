//! The runtime's public vocabulary: what goes into an invocation and what
//! comes out. These mirror the WIT records but are plain Rust with serde,
//! so the control plane can store and serve them without knowing wasmtime.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bindings::check::exports::tocsin::plugin::check_api as wit_check;
use crate::bindings::notifier::exports::tocsin::plugin::notifier_api as wit_notifier;
use crate::bindings::types as wit_types;
use crate::logs::LogLine;
use crate::net::Grant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    Check,
    Notifier,
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginKind::Check => "check",
            PluginKind::Notifier => "notifier",
        })
    }
}

/// What a plugin says about itself, checked by the host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub kind: PluginKind,
    pub description: String,
    pub config_schema: serde_json::Value,
}

impl PluginInfo {
    /// `name@version`, how plugins are named in messages.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attempt {
    #[default]
    Scheduled,
    Confirmation,
    Manual,
}

/// Where and when a check runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunContext {
    pub check: String,
    pub node: String,
    pub location: String,
    pub attempt: Attempt,
    /// The scheduled slot, unix milliseconds.
    pub slot_ms: i64,
}

/// One invocation of a check plugin.
#[derive(Clone, Debug)]
pub struct CheckCall {
    pub target: String,
    /// JSON text; already validated with [`crate::Plugin::validate_config`].
    pub config: String,
    pub context: RunContext,
    /// The check's allowlist, beyond its own target.
    pub allow: Vec<Grant>,
    pub timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Up,
    Down,
    Degraded,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    pub status: Status,
    pub message: String,
    pub metrics: Vec<Metric>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    Triggered,
    Escalated,
    Acknowledged,
    Resolved,
    Test,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Contact {
    pub name: String,
    pub channel: String,
    pub address: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Links {
    pub incident_url: Option<String>,
    pub accept_url: Option<String>,
    pub reject_url: Option<String>,
    pub callback_url: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Notification {
    pub id: String,
    pub incident: String,
    pub event: Event,
    pub severity: String,
    pub title: String,
    pub message: String,
    pub source: String,
    pub contact: Contact,
    pub links: Links,
}

/// One delivery through a notifier plugin.
#[derive(Clone, Debug)]
pub struct DeliveryCall {
    /// The gateway's configuration, JSON text.
    pub config: String,
    pub notification: Notification,
    pub allow: Vec<Grant>,
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Delivery {
    Delivered { message_id: String, detail: String },
    Failed { message: String, retry: bool, failover: bool },
}

/// Everything an invocation produced, whether or not it succeeded.
#[derive(Clone, Debug)]
pub struct Report<T> {
    pub outcome: Result<T, RunError>,
    pub logs: Vec<LogLine>,
    /// Log lines over the budget, counted but not kept.
    pub logs_dropped: u64,
    /// Network access the host refused, in order.
    pub refusals: Vec<String>,
    pub elapsed: Duration,
}

/// Why an invocation produced no result. Displays as
/// `plugin http@0.1.0: timed out after 5000 ms`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("plugin {plugin}: {kind}")]
pub struct RunError {
    pub plugin: String,
    pub kind: RunErrorKind,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunErrorKind {
    #[error("timed out after {ms} ms")]
    Timeout { ms: u64 },
    #[error("exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit { limit_bytes: usize },
    #[error("panicked: {message}")]
    Panicked { message: String },
    #[error("trapped: {message}")]
    Trapped { message: String },
    /// The plugin returned an error of its own.
    #[error("failed: {message}")]
    Failed { message: String },
    #[error("{what}")]
    OutputTooLarge { what: String },
    #[error("{what}")]
    InputTooLarge { what: String },
    #[error("is a {actual} plugin, not a {expected} plugin")]
    WrongKind { expected: PluginKind, actual: PluginKind },
    #[error("could not be started: {message}")]
    Instantiate { message: String },
    /// Every sandbox slot this kind of call may take stayed busy for the
    /// whole `slot_wait`: the node is overloaded, the plugin never ran.
    #[error("got no sandbox slot in {waited_ms} ms: all {slots} slots it may take are busy")]
    NoSlot { waited_ms: u64, slots: usize },
}

impl RunErrorKind {
    /// A stable code for storage and APIs.
    pub fn code(&self) -> &'static str {
        match self {
            RunErrorKind::Timeout { .. } => "timeout",
            RunErrorKind::MemoryLimit { .. } => "memory_limit",
            RunErrorKind::Panicked { .. } => "panicked",
            RunErrorKind::Trapped { .. } => "trapped",
            RunErrorKind::Failed { .. } => "failed",
            RunErrorKind::OutputTooLarge { .. } => "output_too_large",
            RunErrorKind::InputTooLarge { .. } => "input_too_large",
            RunErrorKind::WrongKind { .. } => "wrong_kind",
            RunErrorKind::Instantiate { .. } => "instantiate",
            RunErrorKind::NoSlot { .. } => "no_slot",
        }
    }
}

// Conversions between the WIT records and the types above.

impl From<wit_types::PluginKind> for PluginKind {
    fn from(k: wit_types::PluginKind) -> Self {
        match k {
            wit_types::PluginKind::Check => PluginKind::Check,
            wit_types::PluginKind::Notifier => PluginKind::Notifier,
        }
    }
}

impl From<Attempt> for wit_check::Attempt {
    fn from(a: Attempt) -> Self {
        match a {
            Attempt::Scheduled => wit_check::Attempt::Scheduled,
            Attempt::Confirmation => wit_check::Attempt::Confirmation,
            Attempt::Manual => wit_check::Attempt::Manual,
        }
    }
}

impl From<wit_check::Status> for Status {
    fn from(s: wit_check::Status) -> Self {
        match s {
            wit_check::Status::Up => Status::Up,
            wit_check::Status::Down => Status::Down,
            wit_check::Status::Degraded => Status::Degraded,
        }
    }
}

impl From<wit_check::Outcome> for CheckOutcome {
    fn from(o: wit_check::Outcome) -> Self {
        CheckOutcome {
            status: o.status.into(),
            message: o.message,
            metrics: o.metrics.into_iter().map(|m| Metric { name: m.name, value: m.value, unit: m.unit }).collect(),
        }
    }
}

impl From<Event> for wit_notifier::Event {
    fn from(e: Event) -> Self {
        match e {
            Event::Triggered => wit_notifier::Event::Triggered,
            Event::Escalated => wit_notifier::Event::Escalated,
            Event::Acknowledged => wit_notifier::Event::Acknowledged,
            Event::Resolved => wit_notifier::Event::Resolved,
            Event::Test => wit_notifier::Event::Test,
        }
    }
}

impl From<Notification> for wit_notifier::Notification {
    fn from(n: Notification) -> Self {
        wit_notifier::Notification {
            id: n.id,
            incident: n.incident,
            event: n.event.into(),
            severity: n.severity,
            title: n.title,
            message: n.message,
            source: n.source,
            contact: wit_notifier::Contact {
                name: n.contact.name,
                channel: n.contact.channel,
                address: n.contact.address,
            },
            links: wit_notifier::Links {
                incident_url: n.links.incident_url,
                accept_url: n.links.accept_url,
                reject_url: n.links.reject_url,
                callback_url: n.links.callback_url,
            },
        }
    }
}

impl From<Result<wit_notifier::Delivered, wit_notifier::Failure>> for Delivery {
    fn from(r: Result<wit_notifier::Delivered, wit_notifier::Failure>) -> Self {
        match r {
            Ok(d) => Delivery::Delivered { message_id: d.message_id, detail: d.detail },
            Err(f) => Delivery::Failed { message: f.message, retry: f.retry, failover: f.failover },
        }
    }
}
