//! Write Tocsin plugins in Rust.
//!
//! A check is a type implementing [`Check`], exported with
//! [`export_check!`]; a notifier implements [`Notifier`] and is exported with
//! [`export_notifier!`]. Build with `cargo build --release --target
//! wasm32-wasip2` and the `.wasm` in `target/wasm32-wasip2/release/` is a
//! component Tocsin accepts.
//!
//! ```ignore
//! use tocsin_plugin_sdk::prelude::*;
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct Config {
//!     /// Text the page must contain.
//!     keyword: String,
//! }
//!
//! struct Keyword;
//!
//! impl Check for Keyword {
//!     fn describe() -> PluginInfo {
//!         PluginInfo::check::<Config>("keyword", env!("CARGO_PKG_VERSION"), "Looks for a keyword in a page")
//!     }
//!
//!     fn run(request: Request) -> Result<Outcome, String> {
//!         let config: Config = request.config()?;
//!         let page = http::send(&http::Request::get(&request.target)).map_err(|e| e.to_string())?;
//!         Ok(if page.text().contains(&config.keyword) {
//!             Outcome::up("keyword found")
//!         } else {
//!             Outcome::down(format!("{:?} is not on the page", config.keyword))
//!         })
//!     }
//! }
//!
//! export_check!(Keyword);
//! ```
//!
//! The host gives a plugin no sockets, files or environment of its own:
//! the network is reached through [`http`], [`tcp`], [`dns`] and [`tls`],
//! which only reach the check's target and its allowlist.

// Lets the generated bindings name this crate the same way from inside and
// from the plugins that use it.
extern crate self as tocsin_plugin_sdk;

/// Bindings generated from `wit/plugin.wit`.
pub mod bindings {
    pub mod check {
        wit_bindgen::generate!({
            world: "check",
            path: "../../wit",
            pub_export_macro: true,
            export_macro_name: "export",
            default_bindings_module: "tocsin_plugin_sdk::bindings::check",
            runtime_path: "tocsin_plugin_sdk::__private::wit_bindgen::rt",
            generate_all,
        });
    }

    pub mod notifier {
        wit_bindgen::generate!({
            world: "notifier",
            path: "../../wit",
            pub_export_macro: true,
            export_macro_name: "export",
            default_bindings_module: "tocsin_plugin_sdk::bindings::notifier",
            runtime_path: "tocsin_plugin_sdk::__private::wit_bindgen::rt",
            with: {
                "tocsin:plugin/types@0.1.0": crate::bindings::check::tocsin::plugin::types,
                "tocsin:plugin/log@0.1.0": crate::bindings::check::tocsin::plugin::log,
                "tocsin:plugin/network@0.1.0": crate::bindings::check::tocsin::plugin::network,
                "tocsin:plugin/http@0.1.0": crate::bindings::check::tocsin::plugin::http,
                "tocsin:plugin/tcp@0.1.0": crate::bindings::check::tocsin::plugin::tcp,
                "tocsin:plugin/dns@0.1.0": crate::bindings::check::tocsin::plugin::dns,
                "tocsin:plugin/tls@0.1.0": crate::bindings::check::tocsin::plugin::tls,
            },
        });
    }
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}

pub use bindings::check::exports::tocsin::plugin::check_api::{
    self, Attempt, Context, Guest as Check, Outcome, Request, Status,
};
pub use bindings::check::tocsin::plugin::network::NetError;
pub use bindings::check::tocsin::plugin::types::{Metric, PluginInfo, PluginKind};
pub use bindings::check::tocsin::plugin::{dns, http, log, tcp, tls};
pub use bindings::notifier::exports::tocsin::plugin::notifier_api::{
    self, Contact, Delivered, Event, Failure, Guest as Notifier, Links, Notification,
};

/// Everything a plugin usually needs, in one `use`.
pub mod prelude {
    pub use crate::{
        Attempt, Check, Contact, Context, Delivered, Event, Failure, Metric, NetError, Notification, Notifier, Outcome,
        PluginInfo, Request, Status, dns, event_label, event_name, export_check, export_notifier, gateway_config, http,
        short_text, tcp, tls,
    };
    pub use schemars::JsonSchema;
    pub use serde::Deserialize;
}

/// Exports a type implementing [`Check`] as the plugin's `check-api`.
#[macro_export]
macro_rules! export_check {
    ($ty:ident) => {
        $crate::bindings::check::export!($ty with_types_in $crate::bindings::check);
    };
}

/// Exports a type implementing [`Notifier`] as the plugin's `notifier-api`.
#[macro_export]
macro_rules! export_notifier {
    ($ty:ident) => {
        $crate::bindings::notifier::export!($ty with_types_in $crate::bindings::notifier);
    };
}

/// Logs through the host; the lines are stored with the run.
#[macro_export]
macro_rules! log {
    ($level:ident, $($arg:tt)*) => {
        $crate::log::log($crate::log::Level::$level, &format!($($arg)*))
    };
}

impl PluginInfo {
    /// Describes a check whose configuration is `C` (its JSON Schema is
    /// derived from the type, doc comments included).
    pub fn check<C: schemars::JsonSchema>(name: &str, version: &str, description: &str) -> Self {
        Self::new::<C>(PluginKind::Check, name, version, description)
    }

    /// Describes a notifier whose gateway configuration is `C`.
    pub fn notifier<C: schemars::JsonSchema>(name: &str, version: &str, description: &str) -> Self {
        Self::new::<C>(PluginKind::Notifier, name, version, description)
    }

    fn new<C: schemars::JsonSchema>(kind: PluginKind, name: &str, version: &str, description: &str) -> Self {
        let schema = schemars::schema_for!(C);
        PluginInfo {
            name: name.to_string(),
            version: version.to_string(),
            kind,
            description: description.to_string(),
            config_schema: serde_json::to_string(&schema).expect("a JSON Schema serializes"),
        }
    }
}

impl Request {
    /// The check's configuration. The host has already checked it against
    /// the schema from `describe`, so an error here is a plugin bug.
    pub fn config<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(&self.config).map_err(|e| format!("config: {e}"))
    }
}

impl Outcome {
    pub fn up(message: impl Into<String>) -> Self {
        Self::new(Status::Up, message)
    }

    pub fn down(message: impl Into<String>) -> Self {
        Self::new(Status::Down, message)
    }

    pub fn degraded(message: impl Into<String>) -> Self {
        Self::new(Status::Degraded, message)
    }

    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Outcome { status, message: message.into(), metrics: Vec::new() }
    }

    /// Adds a metric, such as `("response_time", 12.5, "ms")`.
    pub fn metric(mut self, name: &str, value: f64, unit: &str) -> Self {
        self.metrics.push(Metric { name: name.to_string(), value, unit: unit.to_string() });
        self
    }
}

impl NetError {
    /// A sentence for a check's message, such as `connection failed: ...`.
    pub fn describe(&self) -> String {
        match self {
            NetError::Denied(m) => format!("refused by the host: {m}"),
            NetError::Dns(m) => format!("DNS lookup failed: {m}"),
            NetError::Connect(m) => format!("connection failed: {m}"),
            NetError::Timeout(m) => format!("timed out: {m}"),
            NetError::Tls(m) => format!("TLS failed: {m}"),
            NetError::Protocol(m) => format!("protocol error: {m}"),
            NetError::Invalid(m) => format!("invalid request: {m}"),
        }
    }

    /// Whether the error says something about the target (it is down) rather
    /// than about the check's configuration (refused, malformed).
    pub fn is_target_failure(&self) -> bool {
        !matches!(self, NetError::Denied(_) | NetError::Invalid(_))
    }
}

impl http::Request {
    /// A GET of `url` that follows up to 10 redirects and verifies TLS.
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    pub fn new(method: &str, url: &str) -> Self {
        http::Request {
            method: method.to_string(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: 0,
            max_redirects: 10,
            verify_tls: true,
            max_body_bytes: 1 << 20,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sends `value` as a JSON body.
    pub fn json<T: serde::Serialize>(self, value: &T) -> Self {
        self.header("content-type", "application/json").body(serde_json::to_vec(value).expect("a serializable value"))
    }
}

impl http::Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// `triggered`, `escalated`, ...: the event as gateways' payloads name it.
pub fn event_name(event: Event) -> &'static str {
    match event {
        Event::Triggered => "triggered",
        Event::Escalated => "escalated",
        Event::Acknowledged => "acknowledged",
        Event::Resolved => "resolved",
        Event::Test => "test",
    }
}

/// A notifier's configuration. The host has checked it against the schema
/// from `describe`, so an error here is a plugin bug: retrying this gateway
/// will not help, another one may.
pub fn gateway_config<T: serde::de::DeserializeOwned>(config: &str) -> Result<T, Failure> {
    serde_json::from_str(config).map_err(|e| Failure { message: format!("config: {e}"), retry: false, failover: true })
}

/// `Resolved`, `Escalated`, ...: how a notification that is not a new
/// alert says what it is; `None` for a new alert.
pub fn event_label(event: Event) -> Option<&'static str> {
    match event {
        Event::Triggered => None,
        Event::Escalated => Some("Escalated"),
        Event::Acknowledged => Some("Acknowledged"),
        Event::Resolved => Some("Resolved"),
        Event::Test => Some("Test"),
    }
}

/// A notification as a text message: `[Tocsin] Resolved: title: message`,
/// then the accept and reject links, if any.
pub fn short_text(n: &Notification) -> String {
    let label = event_label(n.event).map(|l| format!("{l}: ")).unwrap_or_default();
    let mut text = format!("[Tocsin] {label}{}: {}", n.title.trim(), n.message.trim());
    if let Some(url) = &n.links.accept_url {
        text.push_str(&format!("\nAccept: {url}"));
    }
    if let Some(url) = &n.links.reject_url {
        text.push_str(&format!("\nReject: {url}"));
    }
    text
}

impl Failure {
    /// Classifies a failed HTTP exchange with a gateway: a network error,
    /// a 429 or a 5xx may pass if retried and another gateway may work now;
    /// another 4xx will not pass if retried, but another gateway may take it.
    pub fn from_http(result: &Result<http::Response, NetError>, gateway: &str) -> Option<Failure> {
        match result {
            Err(e) => Some(Failure {
                message: format!("{gateway}: {}", e.describe()),
                retry: e.is_target_failure(),
                failover: true,
            }),
            Ok(r) if (200..300).contains(&r.status) => None,
            Ok(r) => {
                let transient = r.status == 429 || r.status >= 500;
                let body: String = r.text().chars().take(300).collect();
                Some(Failure {
                    message: format!("{gateway} answered {}: {}", r.status, body.trim()),
                    retry: transient,
                    failover: true,
                })
            }
        }
    }
}
