//! Hostile plugins are stopped and reported; the host keeps running.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;
use tocsin_builtins::{MISBEHAVE, NOOP};
use tocsin_runtime::{RunErrorKind, Status};

/// Lines the misbehave plugin writes in a flood (its `FLOOD`).
const FLOOD: u64 = 100_000;

async fn misbehave(action: &str, timeout: Duration) -> tocsin_runtime::Report<tocsin_runtime::CheckOutcome> {
    let runtime = runtime();
    let plugin = load(&runtime, MISBEHAVE).await;
    let mut call = call("https://example.invalid", json!({ "action": action }));
    call.timeout = timeout;
    plugin.check(call).await
}

#[tokio::test]
async fn a_trivial_check_runs() {
    let runtime = runtime();
    let plugin = load(&runtime, NOOP).await;
    assert_eq!(plugin.info().name, "noop");
    let report = plugin.check(call("x", json!({}))).await;
    let outcome = report.outcome.expect("noop runs");
    assert_eq!(outcome.status, Status::Up);
    assert_eq!(outcome.message, "ok");
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_at_the_deadline() {
    let started = Instant::now();
    let report = misbehave("loop", Duration::from_millis(300)).await;
    let err = report.outcome.unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Timeout { ms: 300 });
    assert_eq!(err.to_string(), "plugin misbehave@0.1.0: timed out after 300 ms");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_plugin_blocked_in_a_host_call_is_stopped_too() {
    let started = Instant::now();
    let report = misbehave("sleep", Duration::from_millis(300)).await;
    assert_eq!(report.outcome.unwrap_err().kind, RunErrorKind::Timeout { ms: 300 });
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_memory_bomb_is_stopped_at_the_cap() {
    let report = misbehave("memory", Duration::from_secs(10)).await;
    assert_eq!(report.outcome.unwrap_err().kind, RunErrorKind::MemoryLimit { limit_bytes: 32 << 20 });
}

#[tokio::test]
async fn a_panic_is_reported_with_its_message() {
    let report = misbehave("panic", Duration::from_secs(5)).await;
    match report.outcome.unwrap_err().kind {
        RunErrorKind::Panicked { message } => {
            assert!(message.starts_with("deliberate panic for the test (at "), "{message}")
        }
        other => panic!("expected a panic, got {other:?}"),
    }
}

#[tokio::test]
async fn a_trap_is_reported() {
    let report = misbehave("trap", Duration::from_secs(5)).await;
    match report.outcome.unwrap_err().kind {
        RunErrorKind::Trapped { message } => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stack_overflow_is_reported_where_it_happened() {
    // Rust keeps its stack in linear memory, so running off its end is an
    // out-of-bounds access rather than wasm's own stack overflow.
    let report = misbehave("stack-overflow", Duration::from_secs(5)).await;
    match report.outcome.unwrap_err().kind {
        RunErrorKind::Trapped { message } => {
            assert_eq!(message, "out of bounds memory access in tocsin_testing_misbehave::recurse")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[tokio::test]
async fn a_log_flood_is_cut_to_the_budget_and_counted() {
    let report = misbehave("log-flood", Duration::from_secs(30)).await;
    assert!(report.outcome.is_ok(), "{:?}", report.outcome);
    assert_eq!(report.logs.len(), 200);
    assert_eq!(report.logs_dropped, FLOOD - 200);
}

#[tokio::test]
async fn a_stdout_flood_is_cut_to_the_budget_and_counted() {
    let report = misbehave("stdout-flood", Duration::from_secs(30)).await;
    assert!(report.outcome.is_ok(), "{:?}", report.outcome);
    assert_eq!(report.logs.len(), 200);
    assert!(report.logs.iter().all(|l| l.source == "stdout"));
    assert_eq!(report.logs_dropped, FLOOD - 200);
}

#[tokio::test]
async fn a_huge_result_is_refused() {
    let report = misbehave("huge-message", Duration::from_secs(5)).await;
    let err = report.outcome.unwrap_err();
    assert_eq!(
        err.kind,
        RunErrorKind::OutputTooLarge { what: "its result message is 1048576 bytes; the limit is 16384".into() }
    );
    let report = misbehave("many-metrics", Duration::from_secs(5)).await;
    assert_eq!(
        report.outcome.unwrap_err().kind,
        RunErrorKind::OutputTooLarge { what: "it returned 10000 metrics; the limit is 64".into() }
    );
}

#[tokio::test]
async fn a_plugin_error_is_a_run_error_not_a_status() {
    let report = misbehave("fail", Duration::from_secs(5)).await;
    assert_eq!(
        report.outcome.unwrap_err().kind,
        RunErrorKind::Failed { message: "the plugin gave up on purpose".into() }
    );
}

#[tokio::test]
async fn a_request_to_a_host_not_granted_is_refused_and_recorded() {
    let runtime = runtime();
    let plugin = load(&runtime, MISBEHAVE).await;
    let report = plugin
        .check(call("https://example.invalid", json!({ "action": "fetch", "url": "http://evil.example:8080/steal" })))
        .await;
    let outcome = report.outcome.expect("the plugin handles the refusal");
    assert_eq!(outcome.status, Status::Down);
    assert_eq!(report.refusals, vec!["evil.example:8080: not the check's target and not in its allowlist".to_string()]);

    // Its own target is granted by name, but a loopback address is not
    // reachable without an explicit range grant (SSRF).
    let report =
        plugin.check(call("http://127.0.0.1:9/", json!({ "action": "fetch", "url": "http://127.0.0.1:9/" }))).await;
    assert_eq!(
        report.refusals,
        vec!["127.0.0.1:9: 127.0.0.1 is a non-public address (loopback); grant it explicitly with an allowlist entry such as 127.0.0.1/32".to_string()]
    );
}

#[tokio::test]
async fn the_host_survives_a_crowd_of_hostile_plugins() {
    let runtime = runtime();
    let plugin = load(&runtime, MISBEHAVE).await;
    let noop = load(&runtime, NOOP).await;
    let mut handles = Vec::new();
    for (i, action) in ["loop", "memory", "panic", "trap", "sleep", "huge-message"].iter().cycle().take(24).enumerate()
    {
        let plugin = plugin.clone();
        let mut call = call("x", json!({ "action": action }));
        call.timeout = Duration::from_millis(200 + 10 * i as u64);
        handles.push(tokio::spawn(async move { plugin.check(call).await }));
    }
    for handle in handles {
        assert!(handle.await.expect("no invocation panics the host").outcome.is_err());
    }
    // And the runtime still works.
    assert_eq!(noop.check(call("x", json!({}))).await.outcome.unwrap().status, Status::Up);
    assert_eq!(runtime.stats().running, 0);
}

#[tokio::test]
async fn slow_checks_cannot_take_the_notifiers_slots_and_waiting_has_a_deadline() {
    use support::servers::recording_gateway;
    use tocsin_builtins::WEBHOOK;

    let runtime = runtime_with(|c| {
        c.max_concurrent = 4;
        c.notifier_slots = Some(1);
        c.slot_wait = Duration::from_millis(300);
    });
    let (sleeper, webhook) = (load(&runtime, MISBEHAVE).await, load(&runtime, WEBHOOK).await);
    // Three checks blocked in a host call hold every check slot for 10 s.
    let mut slow = Vec::new();
    for _ in 0..3 {
        let (sleeper, mut call) = (sleeper.clone(), call("x", json!({ "action": "sleep" })));
        call.timeout = Duration::from_secs(10);
        slow.push(tokio::spawn(async move { sleeper.check(call).await }));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while runtime.stats().checks.running < 3 {
        assert!(Instant::now() < deadline, "the slow checks never started: {:?}", runtime.stats());
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // A fourth check waits out slot_wait and fails, typed; it never ran.
    let started = Instant::now();
    let refused = sleeper.check(call("x", json!({ "action": "sleep" }))).await.outcome.unwrap_err();
    assert!(matches!(refused.kind, RunErrorKind::NoSlot { slots: 3, .. }), "{refused}");
    assert_eq!(refused.kind.code(), "no_slot");
    assert!(started.elapsed() < Duration::from_secs(2), "gave up after {:?}", started.elapsed());

    // A notification goes out at once, on the reserved slot.
    let (gateway, inbox) = recording_gateway(200, r#"{"id": "m-1"}"#).await;
    let started = Instant::now();
    let config = json!({"url": format!("http://{gateway}/hook")});
    let delivered = delivery(deliver(&webhook, config, notification("webhook", "")).await);
    assert!(matches!(delivered, tocsin_runtime::Delivery::Delivered { .. }), "{delivered:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "the delivery took {:?}", started.elapsed());
    assert_eq!(inbox.lock().unwrap().len(), 1);

    let stats = runtime.stats();
    assert_eq!((stats.checks.running, stats.checks.waited, stats.checks.timed_out), (3, 1, 1), "{stats:?}");
    assert_eq!((stats.notifiers.waited, stats.notifiers.timed_out), (0, 0), "{stats:?}");
    for handle in slow {
        handle.abort();
    }
}
