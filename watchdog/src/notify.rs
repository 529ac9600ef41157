//! The watchdog's own alarm path: the built-in notifier plugins, run
//! through the plugin runtime linked into this process. Nothing of the
//! platform is involved (no controller, no database, no outbox), which is
//! the point: it must work when all of those are down.
//!
//! Gateways are tried in the configured order until one delivers.

use std::sync::Arc;

use serde_json::Value;
use tocsin_runtime::{
    Contact, Delivery, DeliveryCall, Event, Grant, Links, Notification, Plugin, Runtime, RuntimeConfig,
};

use crate::config::Gateway;

/// One alarm: what changed, in words.
#[derive(Clone, Debug)]
pub struct Alarm {
    /// Stable per incident, so chat and paging tools thread or close it.
    pub key: String,
    pub resolved: bool,
    pub title: String,
    pub message: String,
    pub link: String,
}

pub struct Notifier {
    gateways: Vec<(Arc<Plugin>, GatewayConfig)>,
}

struct GatewayConfig {
    name: String,
    config: Value,
    to: String,
    allow: Vec<Grant>,
    timeout: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notify {gateway:?}: no built-in notifier named {plugin:?} (known: {known})")]
    UnknownPlugin { gateway: String, plugin: String, known: String },
    #[error("notify {gateway:?}: {message}")]
    Invalid { gateway: String, message: String },
}

impl Notifier {
    /// Loads and checks every gateway: a wrong plugin name, a config that
    /// fails the plugin's schema or a bad allow entry is an error at start.
    pub async fn new(gateways: &[Gateway]) -> anyhow::Result<Notifier> {
        let runtime = Runtime::new(RuntimeConfig { max_concurrent: 8, ..RuntimeConfig::default() })?;
        let mut loaded = Vec::new();
        for g in gateways {
            let artifact = tocsin_builtins::BUILTIN.iter().find(|a| a.name == g.plugin).ok_or_else(|| {
                NotifyError::UnknownPlugin {
                    gateway: g.name.clone(),
                    plugin: g.plugin.clone(),
                    known: tocsin_builtins::BUILTIN.iter().map(|a| a.name).collect::<Vec<_>>().join(", "),
                }
            })?;
            let plugin = runtime.load(artifact.wasm).await?;
            let invalid = |message: String| NotifyError::Invalid { gateway: g.name.clone(), message };
            if plugin.info().kind != tocsin_runtime::PluginKind::Notifier {
                return Err(invalid(format!("{} is a check, not a notifier", g.plugin)).into());
            }
            plugin.validate_config(&g.config).map_err(|e| invalid(e.to_string()))?;
            let mut allow = g
                .allow
                .iter()
                .map(|a| a.parse::<Grant>().map_err(|e| invalid(format!("allow {a:?}: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            allow.extend(tocsin_runtime::implied_grants(&g.config));
            allow
                .extend(tocsin_runtime::implied_grants(&tocsin_runtime::schema_defaults(&plugin.info().config_schema)));
            loaded.push((
                Arc::new(plugin),
                GatewayConfig {
                    name: g.name.clone(),
                    config: g.config.clone(),
                    to: g.to.clone(),
                    allow,
                    timeout: g.timeout,
                },
            ));
        }
        Ok(Notifier { gateways: loaded })
    }

    pub fn is_empty(&self) -> bool {
        self.gateways.is_empty()
    }

    /// Sends through the first gateway that delivers. Returns each attempt
    /// as (gateway, outcome) and whether one delivered.
    pub async fn send(&self, watchdog: &str, alarm: &Alarm) -> (Vec<(String, String)>, bool) {
        let mut attempts = Vec::new();
        for (plugin, g) in &self.gateways {
            let notification = Notification {
                id: format!("{}-{}", alarm.key, if alarm.resolved { "resolved" } else { "triggered" }),
                incident: alarm.key.clone(),
                event: if alarm.resolved { Event::Resolved } else { Event::Triggered },
                severity: if alarm.resolved { "info".into() } else { "critical".into() },
                title: alarm.title.clone(),
                message: alarm.message.clone(),
                source: format!("watchdog:{watchdog}"),
                contact: Contact { name: "on-call".into(), channel: g.name.clone(), address: g.to.clone() },
                links: Links { incident_url: Some(alarm.link.clone()), ..Links::default() },
            };
            let report = plugin
                .deliver(DeliveryCall {
                    config: g.config.to_string(),
                    notification,
                    allow: g.allow.clone(),
                    timeout: g.timeout,
                })
                .await;
            match report.outcome {
                Ok(Delivery::Delivered { message_id, .. }) => {
                    tracing::info!(gateway = %g.name, message_id = %message_id, title = %alarm.title, "alarm sent");
                    attempts.push((g.name.clone(), "delivered".to_string()));
                    return (attempts, true);
                }
                Ok(Delivery::Failed { message, .. }) => {
                    tracing::warn!(gateway = %g.name, error = %message, "alarm not delivered; trying the next gateway");
                    attempts.push((g.name.clone(), format!("failed: {message}")));
                }
                Err(e) => {
                    tracing::warn!(gateway = %g.name, error = %e, "alarm not delivered; trying the next gateway");
                    attempts.push((g.name.clone(), format!("failed: {e}")));
                }
            }
        }
        (attempts, false)
    }
}
