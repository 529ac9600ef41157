//! Helpers shared by the runtime's integration tests: a runtime with test
//! limits and the plugins from `tocsin-builtins`.

#![allow(dead_code)]

pub mod servers;

use std::time::Duration;

use tocsin_runtime::{CheckCall, Grant, Plugin, RunContext, Runtime, RuntimeConfig};

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
