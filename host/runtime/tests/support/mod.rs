//! Helpers shared by the runtime's integration tests: a runtime with test
//! limits, the plugins from `tocsin-builtins`, and a notification to
//! deliver.

#![allow(dead_code)]

pub mod providers;
pub mod servers;
pub mod smtp;

use std::time::Duration;

use tocsin_runtime::{
    CheckCall, Contact, Delivery, DeliveryCall, Event, Grant, Links, Notification, Plugin, Report, RunContext, Runtime,
    RuntimeConfig,
};

pub fn runtime() -> Runtime {
    runtime_with(|_| {})
}

pub fn runtime_with(tune: impl FnOnce(&mut RuntimeConfig)) -> Runtime {
    let mut config = RuntimeConfig { max_concurrent: 32, ..RuntimeConfig::default() };
    config.limits.memory_bytes = 32 << 20;
    tune(&mut config);
    Runtime::new(config).expect("runtime")
}

pub async fn load(runtime: &Runtime, artifact: tocsin_builtins::Artifact) -> Plugin {
    runtime.load(artifact.wasm).await.unwrap_or_else(|e| panic!("loading {}: {e}", artifact.name))
}

pub fn call(target: &str, config: serde_json::Value) -> CheckCall {
    CheckCall {
        target: target.to_string(),
        config: config.to_string(),
        context: RunContext {
            check: "test".into(),
            node: "node-1".into(),
            location: "here".into(),
            ..Default::default()
        },
        allow: Vec::new(),
        timeout: Duration::from_secs(5),
    }
}

pub fn loopback() -> Vec<Grant> {
    vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()]
}

/// A notification of incident `inc-7` for Ada on `channel`.
pub fn notification(channel: &str, address: &str) -> Notification {
    Notification {
        id: "ntf-42".into(),
        incident: "inc-7".into(),
        event: Event::Triggered,
        severity: "critical".into(),
        title: "api.example.com is down".into(),
        message: "status 503 from 2 of 2 locations".into(),
        source: "check:api".into(),
        contact: Contact { name: "Ada".into(), channel: channel.into(), address: address.into() },
        links: Links {
            incident_url: Some("https://tocsin.example/incidents/inc-7".into()),
            accept_url: Some("https://tocsin.example/a/accept-token".into()),
            reject_url: Some("https://tocsin.example/a/reject-token".into()),
            callback_url: Some("https://tocsin.example/callbacks/twilio/cb-token".into()),
        },
    }
}

/// Delivers `n` with a config that must pass the plugin's schema; loopback
/// is granted.
pub async fn deliver(plugin: &Plugin, config: serde_json::Value, n: Notification) -> Report<Delivery> {
    plugin.validate_config(&config).unwrap_or_else(|e| panic!("config {config}: {e}"));
    plugin
        .deliver(DeliveryCall {
            config: config.to_string(),
            notification: n,
            allow: loopback(),
            timeout: Duration::from_secs(5),
        })
        .await
}

pub fn delivery(report: Report<Delivery>) -> Delivery {
    report.outcome.unwrap_or_else(|e| panic!("run error: {e}"))
}
