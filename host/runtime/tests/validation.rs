//! Uploads are validated, and each refusal names the exact problem.

mod support;

use serde_json::json;
use support::*;
use tocsin_builtins::{COMMAND, HTTP, MISBEHAVE, NOOP, SOCKETS, TWILIO};
use tocsin_runtime::{LoadError, PluginKind};

#[tokio::test]
async fn every_builtin_loads_and_describes_itself() {
    let runtime = runtime();
    for artifact in tocsin_builtins::BUILTIN {
        let plugin = load(&runtime, *artifact).await;
        let info = plugin.info();
        assert_eq!(info.name, artifact.name);
        assert_eq!(info.version, "0.1.0");
        assert!(info.config_schema.is_object(), "{}: {}", info.name, info.config_schema);
        let notifier = matches!(artifact.name, "webhook" | "twilio" | "email" | "pagerduty" | "slack" | "vonage");
        let kind = if notifier { PluginKind::Notifier } else { PluginKind::Check };
        assert_eq!(info.kind, kind, "{}", info.name);
        assert_eq!(plugin.sha256().len(), 64);
    }
}

#[tokio::test]
async fn bytes_that_are_not_wasm_are_refused() {
    let err = runtime().load(b"#!/bin/sh\necho hi\n").await.unwrap_err();
    assert_eq!(err, LoadError::NotWasm);
    assert_eq!(err.to_string(), "not a WebAssembly file: it does not start with the `\\0asm` magic bytes");
}

#[tokio::test]
async fn a_core_module_is_refused_as_not_a_component() {
    let module = wat::parse_str("(module (func (export \"run\")))").unwrap();
    let err = runtime().load(&module).await.unwrap_err();
    assert_eq!(err, LoadError::NotComponent);
    assert!(err.to_string().contains("--target wasm32-wasip2"), "{err}");
}

#[tokio::test]
async fn a_corrupt_component_is_refused() {
    let mut bytes = NOOP.wasm.to_vec();
    bytes.truncate(bytes.len() / 2);
    let err = runtime().load(&bytes).await.unwrap_err();
    assert!(matches!(err, LoadError::Invalid(_)), "{err:?}");
}

#[tokio::test]
async fn a_command_component_is_the_wrong_world() {
    let err = runtime().load(COMMAND.wasm).await.unwrap_err();
    match &err {
        LoadError::WrongWorld { exports } => assert!(exports.starts_with("wasi:cli/run@0.2."), "{exports}"),
        other => panic!("expected the wrong world, got {other:?}"),
    }
    assert!(err.to_string().contains("a check exports tocsin:plugin/check-api@0.1.x"), "{err}");
}

#[tokio::test]
async fn a_component_of_an_unknown_world_is_refused() {
    let component = wat::parse_str(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func (export "hello") (canon lift (core func $i "f"))))"#,
    )
    .unwrap();
    let err = runtime().load(&component).await.unwrap_err();
    assert_eq!(err, LoadError::WrongWorld { exports: "hello".into() });
}

#[tokio::test]
async fn a_component_that_opens_its_own_sockets_is_refused() {
    let err = runtime().load(SOCKETS.wasm).await.unwrap_err();
    match &err {
        LoadError::ForbiddenImport { import, .. } => assert!(import.starts_with("wasi:sockets/"), "{import}"),
        other => panic!("expected a forbidden import, got {other:?}"),
    }
    assert!(err.to_string().contains("plugins reach the network only through tocsin:plugin/http"), "{err}");
}

#[tokio::test]
async fn an_oversized_upload_is_refused_before_anything_else() {
    let runtime = runtime_with(|c| c.limits.max_plugin_bytes = 100_000);
    let err = runtime.load(HTTP.wasm).await.unwrap_err();
    assert_eq!(err, LoadError::TooLarge { size: HTTP.wasm.len(), limit: 100_000 });
}

#[tokio::test]
async fn loading_the_same_bytes_twice_returns_the_same_plugin() {
    let runtime = runtime();
    let a = load(&runtime, NOOP).await;
    let b = load(&runtime, NOOP).await;
    assert_eq!(a.sha256(), b.sha256());
    assert_eq!(runtime.stats().compiled, 1);
}

#[tokio::test]
async fn compiled_plugins_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let first = runtime_with(|c| c.cache_dir = Some(dir.path().to_path_buf()));
    load(&first, MISBEHAVE).await;
    assert_eq!(first.stats().compiled, 1);
    drop(first);
    let second = runtime_with(|c| c.cache_dir = Some(dir.path().to_path_buf()));
    let plugin = load(&second, MISBEHAVE).await;
    assert_eq!(second.stats().compiled, 0, "the second runtime deserialized the cached artifact");
    let report = plugin.check(call("x", json!({"action": "fail"}))).await;
    assert!(report.outcome.is_err());
}

#[tokio::test]
async fn configs_are_checked_against_the_plugin_schema() {
    let runtime = runtime();
    let http = load(&runtime, HTTP).await;
    assert!(http.validate_config(&json!({})).is_ok());
    assert!(http.validate_config(&json!({"expected_status": ["2xx", "301"], "keyword": "ok"})).is_ok());

    let err = http.validate_config(&json!({"expected_status": ["2xx", "abc"], "max_response_ms": "fast"})).unwrap_err();
    let pointers: Vec<&str> = err.problems.iter().map(|p| p.pointer.as_str()).collect();
    assert!(pointers.contains(&"/expected_status/1"), "{err}");
    assert!(pointers.contains(&"/max_response_ms"), "{err}");
    assert!(err.to_string().contains("config field /max_response_ms: \"fast\" is not of type"), "{err}");

    let err = http.validate_config(&json!({"regex": "([unclosed"})).unwrap_err();
    assert_eq!(err.problems[0].pointer, "/regex", "{err}");

    let err = http.validate_config(&json!({"keywrod": "typo"})).unwrap_err();
    assert!(err.to_string().contains("keywrod"), "unknown fields are named: {err}");

    let twilio = load(&runtime, TWILIO).await;
    let err = twilio.validate_config(&json!({"account_sid": "AC1", "auth_token": "t"})).unwrap_err();
    assert!(err.to_string().contains("\"from\" is a required property"), "{err}");
}

#[tokio::test]
async fn a_notifier_is_not_run_as_a_check() {
    let runtime = runtime();
    let twilio = load(&runtime, TWILIO).await;
    let report = twilio.check(call("x", json!({}))).await;
    assert_eq!(
        report.outcome.unwrap_err().to_string(),
        "plugin twilio@0.1.0: is a notifier plugin, not a check plugin"
    );
}

#[tokio::test]
async fn oversized_inputs_are_refused_before_the_plugin_runs() {
    let runtime = runtime();
    let noop = load(&runtime, NOOP).await;
    let report = noop.check(call(&"x".repeat(5000), json!({}))).await;
    assert_eq!(
        report.outcome.unwrap_err().to_string(),
        "plugin noop@0.1.0: the target is 5000 bytes; the limit is 2048"
    );
}
