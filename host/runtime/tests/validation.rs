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

/// The cached artifact of `sha256` in a cache rooted at `root`.
fn cached(root: &std::path::Path, sha256: &str) -> std::path::PathBuf {
    let name = format!("{sha256}.cwasm");
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path().join(&name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no cached {name} under {}", root.display()))
}

#[tokio::test]
async fn a_tampered_cache_file_is_compiled_again_never_loaded() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let with_cache = || runtime_with(|c| c.cache_dir = Some(dir.path().to_path_buf()));
    let first = with_cache();
    let (misbehave, noop) = (load(&first, MISBEHAVE).await, load(&first, NOOP).await);
    drop(first);
    let key = dir.path().join("cache-key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600, "the key is private");
    assert_eq!(std::fs::read_to_string(&key).unwrap().trim().len(), 64, "256 bits, hex");
    let (victim, other) = (cached(dir.path(), misbehave.sha256()), cached(dir.path(), noop.sha256()));
    let original = std::fs::read(&victim).unwrap();

    // A flipped bit in the machine code, a flipped bit in the tag, and
    // another plugin's (authentic) file under this plugin's name.
    let mut code_flipped = original.clone();
    let last = code_flipped.len() - 1;
    code_flipped[last] ^= 1;
    let mut tag_flipped = original.clone();
    tag_flipped[0] ^= 1;
    let swapped = std::fs::read(&other).unwrap();
    for (attack, bytes) in [("flipped code", code_flipped), ("flipped tag", tag_flipped), ("swapped", swapped)] {
        std::fs::write(&victim, &bytes).unwrap();
        let runtime = with_cache();
        let plugin = load(&runtime, MISBEHAVE).await;
        let stats = runtime.stats();
        assert_eq!((stats.cache_rejected, stats.compiled), (1, 1), "{attack}: refused and compiled again");
        assert_eq!(plugin.info().name, "misbehave", "{attack}");
        assert_ne!(std::fs::read(&victim).unwrap(), bytes, "{attack}: the tampered file is replaced");
        // The recompiled file is authentic again: the next start loads it.
        let next = with_cache();
        load(&next, MISBEHAVE).await;
        assert_eq!((next.stats().cache_rejected, next.stats().compiled), (0, 0), "{attack}: cached again");
    }

    // A key the cache did not make (a new host, a restored backup) turns
    // every old file away.
    std::fs::write(&key, "00".repeat(32)).unwrap();
    let rekeyed = with_cache();
    load(&rekeyed, NOOP).await;
    assert_eq!((rekeyed.stats().cache_rejected, rekeyed.stats().compiled), (1, 1));
}

/// A component around one core module whose only function has `n`
/// straight-line additions over 64 locals: valid, small to send, and the
/// kind of body whose compilation grows fastest.
fn huge_function(n: usize) -> Vec<u8> {
    let mut body = String::with_capacity(n * 48);
    for i in 0..n {
        let (a, b) = (i % 64, (i * 7 + 3) % 64);
        body.push_str(&format!("local.get {a} local.get {b} i32.add local.set {a}\n"));
    }
    let text = format!(
        "(component (core module (func (export \"f\") (result i32) (local {}) {body} local.get 0)))",
        "i32 ".repeat(64)
    );
    wat::parse_str(text).unwrap()
}

#[tokio::test]
async fn a_function_too_large_to_compile_safely_is_refused_before_compiling() {
    let runtime = runtime();
    let hostile = huge_function(100_000);
    let started = std::time::Instant::now();
    let err = runtime.load(&hostile).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, LoadError::TooComplex { .. }), "{err:?}");
    assert_eq!(err.code(), "plugin_too_complex");
    assert!(err.to_string().contains("function 0 of core module 0 has a body of"), "{err}");
    assert!(err.to_string().contains("the limit is 524288"), "{err}");
    assert_eq!(runtime.stats().compiled, 0, "nothing was compiled");
    assert!(took < std::time::Duration::from_secs(2), "refusing took {took:?}");
}

#[tokio::test]
async fn too_many_locals_or_functions_are_refused_before_compiling() {
    let locals = wat::parse_str("(component (core module (func (local i64 i64 i64 i64) (local i32))))").unwrap();
    let err = runtime_with(|c| c.limits.max_function_locals = 4).load(&locals).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "too complex to compile: function 0 of core module 0 has more than 4 locals; the limit is 4"
    );
    let functions = wat::parse_str("(component (core module (func) (func) (func)))").unwrap();
    let err = runtime_with(|c| c.limits.max_functions = 2).load(&functions).await.unwrap_err();
    assert_eq!(err.to_string(), "too complex to compile: it has at least 3 functions; the limit is 2");
}

#[tokio::test]
async fn a_compilation_past_its_deadline_answers_at_the_deadline() {
    // Within the code limits, but the deadline is shorter than compiling
    // it takes: the load fails at the deadline (the work is abandoned).
    let runtime = runtime_with(|c| c.limits.compile_timeout = std::time::Duration::from_millis(20));
    let module = huge_function(30_000);
    let started = std::time::Instant::now();
    let err = runtime.load(&module).await.unwrap_err();
    assert_eq!(err, LoadError::CompileTimeout { ms: 20 });
    assert_eq!(err.code(), "compile_timeout");
    assert!(started.elapsed() < std::time::Duration::from_millis(500), "answered after {:?}", started.elapsed());
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
