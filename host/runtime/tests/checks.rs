//! The built-in checks against real local servers.

mod support;

use std::time::Duration;

use hickory_proto::rr::RData;
use hickory_proto::rr::rdata::{MX, TXT};
use serde_json::json;
use support::servers::*;
use support::*;
use tocsin_builtins::{DNS, HTTP, JSON_THRESHOLD, TCP, TLS_EXPIRY};
use tocsin_runtime::{CheckOutcome, Report, RunErrorKind, Runtime, Status};

async fn run(
    runtime: &Runtime,
    artifact: tocsin_builtins::Artifact,
    target: &str,
    config: serde_json::Value,
) -> Report<CheckOutcome> {
    let plugin = load(runtime, artifact).await;
    plugin.validate_config(&config).unwrap_or_else(|e| panic!("config {config}: {e}"));
    let mut call = call(target, config);
    call.allow = loopback();
    plugin.check(call).await
}

fn outcome(report: Report<CheckOutcome>) -> CheckOutcome {
    report.outcome.unwrap_or_else(|e| panic!("run error: {e}; logs: {:?}", report.logs))
}

fn metric(outcome: &CheckOutcome, name: &str) -> f64 {
    outcome.metrics.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("no metric {name}")).value
}

#[tokio::test]
async fn http_up_with_keyword_and_timings() {
    let site = http_server(test_site()).await;
    let runtime = runtime();
    let o = outcome(run(&runtime, HTTP, &format!("http://{site}/"), json!({"keyword": "Welcome"})).await);
    assert_eq!(o.status, Status::Up, "{}", o.message);
    assert!(o.message.starts_with("200 in "), "{}", o.message);
    assert_eq!(metric(&o, "status_code"), 200.0);
    assert!(metric(&o, "response_time") > 0.0);
    assert!(metric(&o, "connect_time") >= 0.0);
    assert_eq!(metric(&o, "body_size"), "Welcome to the test server".len() as f64);
}

#[tokio::test]
async fn http_status_codes_are_judged_by_the_expected_list() {
    let site = http_server(test_site()).await;
    let runtime = runtime();
    let url = format!("http://{site}/status/503");
    let o = outcome(run(&runtime, HTTP, &url, json!({})).await);
    assert_eq!(o.status, Status::Down);
    assert!(o.message.starts_with("status 503 is not one of 200-299"), "{}", o.message);
    let o = outcome(run(&runtime, HTTP, &url, json!({"expected_status": ["5xx"]})).await);
    assert_eq!(o.status, Status::Up, "{}", o.message);
    let o = outcome(
        run(&runtime, HTTP, &format!("http://{site}/status/404"), json!({"expected_status": ["200", "400-404"]})).await,
    );
    assert_eq!(o.status, Status::Up, "{}", o.message);
}

#[tokio::test]
async fn http_body_assertions() {
    let site = http_server(test_site()).await;
    let runtime = runtime();
    let root = format!("http://{site}/");
    let json_url = format!("http://{site}/json");
    let cases = [
        (&root, json!({"keyword": "Goodbye"}), Status::Down, "but \"Goodbye\" is not in the body"),
        (&root, json!({"keyword_absent": "Welcome"}), Status::Down, "but the body contains \"Welcome\""),
        (&root, json!({"regex": "^Welcome to .* server$"}), Status::Up, "200 in"),
        (&root, json!({"regex": "^Goodbye"}), Status::Down, "does not match /^Goodbye/"),
        (&json_url, json!({"json": {"path": "$.status", "equals": "ok"}}), Status::Up, "200 in"),
        (
            &json_url,
            json!({"json": {"path": "$.queue.depth", "equals": 8}}),
            Status::Down,
            "$.queue.depth is 7, expected 8",
        ),
        (&json_url, json!({"json": {"path": "$.missing"}}), Status::Down, "$.missing selects nothing"),
        (&root, json!({"json": {"path": "$.status"}}), Status::Down, "the body is not JSON"),
    ];
    for (url, config, status, message) in cases {
        let o = outcome(run(&runtime, HTTP, url, config.clone()).await);
        assert_eq!(o.status, status, "{config}: {}", o.message);
        assert!(o.message.contains(message), "{config}: {:?} lacks {message:?}", o.message);
    }
}

#[tokio::test]
async fn http_a_body_is_read_only_up_to_the_limit() {
    let site = http_server(test_site()).await;
    let runtime = runtime();
    let url = format!("http://{site}/big");
    let o = outcome(run(&runtime, HTTP, &url, json!({"keyword": "needle", "max_body_bytes": 65536})).await);
    assert_eq!(o.status, Status::Down);
    assert!(o.message.contains("is not in the body in the first 65536 bytes"), "{}", o.message);
    let o = outcome(run(&runtime, HTTP, &url, json!({"keyword": "needle", "max_body_bytes": 4194304})).await);
    assert_eq!(o.status, Status::Up, "{}", o.message);
}

#[tokio::test]
async fn http_methods_headers_and_bodies_are_sent() {
    let site = http_server(test_site()).await;
    let runtime = runtime();
    let config = json!({
        "method": "POST",
        "headers": {"x-token": "s3cret"},
        "body": "ping",
        "json": {"path": "$.headers['x-token']", "equals": "s3cret"},
        "keyword": "\"body\":\"ping\""
    });
    let o = outcome(run(&runtime, HTTP, &format!("http://{site}/echo"), config).await);
    assert_eq!(o.status, Status::Up, "{}", o.message);
}

#[tokio::test]
async fn http_redirects() {
    let site = http_server(test_site()).await;
    let runtime = runtime();
    let url = format!("http://{site}/redirect");
    let o = outcome(run(&runtime, HTTP, &url, json!({"keyword": "Welcome"})).await);
    assert_eq!(o.status, Status::Up, "{}", o.message);
    assert_eq!(metric(&o, "redirects"), 1.0);

    let o = outcome(run(&runtime, HTTP, &url, json!({"follow_redirects": false})).await);
    assert_eq!(o.status, Status::Down);
    assert!(o.message.starts_with("status 303 is not one of 200-299"), "{}", o.message);

    let o = outcome(run(&runtime, HTTP, &format!("http://{site}/redirect-loop"), json!({"max_redirects": 3})).await);
    assert_eq!(o.status, Status::Down);
    assert_eq!(metric(&o, "redirects"), 3.0);

    // A redirect to a host the check was not granted is refused, and the
    // refusal is a configuration problem, not the target being down.
    let report = run(&runtime, HTTP, &format!("http://{site}/redirect-away"), json!({})).await;
    assert_eq!(
        report.refusals,
        vec!["elsewhere.example:80: not the check's target and not in its allowlist".to_string()]
    );
    assert!(matches!(report.outcome.unwrap_err().kind, RunErrorKind::Failed { .. }));
}

#[tokio::test]
async fn http_slow_responses_are_degraded_and_timeouts_are_down() {
    let site = http_server(test_site()).await;
    let runtime = runtime();
    let url = format!("http://{site}/slow");
    let o = outcome(run(&runtime, HTTP, &url, json!({"max_response_ms": 100})).await);
    assert_eq!(o.status, Status::Degraded);
    assert!(o.message.ends_with("slower than 100 ms"), "{}", o.message);

    let plugin = load(&runtime, HTTP).await;
    let mut call = call(&url, json!({}));
    call.allow = loopback();
    call.timeout = Duration::from_millis(200);
    let o = outcome(plugin.check(call).await);
    assert_eq!(o.status, Status::Down);
    assert!(o.message.starts_with("timed out"), "{}", o.message);
}

#[tokio::test]
async fn http_servers_that_answer_and_close_are_read_to_the_end() {
    let server = closing_http_server("Directory listing for /").await;
    let runtime = runtime();
    // The close can race the response head; do it often enough to see it.
    for _ in 0..30 {
        let o = outcome(run(&runtime, HTTP, &format!("http://{server}/"), json!({"keyword": "listing"})).await);
        assert_eq!(o.status, Status::Up, "{}", o.message);
        assert_eq!(metric(&o, "body_size"), "Directory listing for /".len() as f64);
    }
}

#[tokio::test]
async fn http_a_closed_port_is_down() {
    let closed = closed_port().await;
    let o = outcome(run(&runtime(), HTTP, &format!("http://{closed}/"), json!({})).await);
    assert_eq!(o.status, Status::Down);
    assert!(o.message.starts_with("connection failed"), "{}", o.message);
}

#[tokio::test]
async fn http_names_resolve_through_the_hosts_file() {
    let site = http_server(test_site()).await;
    let o = outcome(run(&runtime(), HTTP, &format!("http://localhost:{}/", site.port()), json!({})).await);
    assert_eq!(o.status, Status::Up, "{}", o.message);
}

#[tokio::test]
async fn https_verification_on_and_off() {
    let pki = Pki::new();
    let trusted = https_server(test_site(), pki.leaf(&["localhost", "127.0.0.1"], 90)).await;
    let untrusted = https_server(test_site(), Pki::self_signed(&["localhost"])).await;
    let runtime = runtime_with(|c| c.network.extra_roots = vec![pki.ca_file.path().to_path_buf()]);

    let o = outcome(run(&runtime, HTTP, &format!("https://localhost:{}/", trusted.port()), json!({})).await);
    assert_eq!(o.status, Status::Up, "{}", o.message);
    assert!(metric(&o, "tls_time") > 0.0);

    let url = format!("https://localhost:{}/", untrusted.port());
    let o = outcome(run(&runtime, HTTP, &url, json!({})).await);
    assert_eq!(o.status, Status::Down);
    assert!(o.message.contains("TLS failed") && o.message.contains("UnknownIssuer"), "{}", o.message);
    let o = outcome(run(&runtime, HTTP, &url, json!({"verify_tls": false})).await);
    assert_eq!(o.status, Status::Up, "{}", o.message);
}

#[tokio::test]
async fn tcp_banner_send_and_expect() {
    let server = tcp_server("220 mail.test ESMTP ready\r\n", None).await;
    let runtime = runtime();
    let target = server.to_string();
    let o = outcome(run(&runtime, TCP, &target, json!({})).await);
    assert_eq!(o.status, Status::Up, "{}", o.message);
    assert!(metric(&o, "connect_time") >= 0.0);

    let o = outcome(run(&runtime, TCP, &target, json!({"expect": "ESMTP"})).await);
    assert_eq!(o.status, Status::Up, "{}", o.message);
    assert!(o.message.contains("220 mail.test ESMTP ready"), "{}", o.message);

    let o = outcome(run(&runtime, TCP, &target, json!({"send": "PING\r\n", "expect": "PING"})).await);
    assert_eq!(o.status, Status::Up, "{}", o.message);

    // The echo server says nothing more after its banner: the check waits
    // for "+OK" until its timeout, then reports what it did get.
    let plugin = load(&runtime, TCP).await;
    let mut quiet = call(&target, json!({"expect": "+OK"}));
    quiet.allow = loopback();
    quiet.timeout = Duration::from_millis(500);
    let o = outcome(plugin.check(quiet).await);
    assert_eq!(o.status, Status::Down);
    assert!(
        o.message.starts_with("timed out") && o.message.ends_with("got \"220 mail.test ESMTP ready\""),
        "{}",
        o.message
    );

    let o = outcome(run(&runtime, TCP, &target, json!({"expect": "+OK", "max_bytes": 16})).await);
    assert_eq!(o.status, Status::Down);
    assert!(o.message.contains("not in the first 16 bytes"), "{}", o.message);

    let closed = closed_port().await;
    let o = outcome(run(&runtime, TCP, &closed.to_string(), json!({})).await);
    assert_eq!(o.status, Status::Down);
    assert!(o.message.starts_with("connection failed"), "{}", o.message);
}

#[tokio::test]
async fn tcp_over_tls() {
    let pki = Pki::new();
    let server = tcp_server("* OK IMAP ready\r\n", Some(pki.leaf(&["localhost"], 90))).await;
    let runtime = runtime_with(|c| c.network.extra_roots = vec![pki.ca_file.path().to_path_buf()]);
    let target = format!("localhost:{}", server.port());
    let o = outcome(run(&runtime, TCP, &target, json!({"tls": true, "expect": "* OK"})).await);
    assert_eq!(o.status, Status::Up, "{}", o.message);
    assert!(metric(&o, "tls_time") > 0.0);
}

#[tokio::test]
async fn dns_records_and_response_codes() {
    let server = dns_server(vec![
        a("www.test.example.", "192.0.2.10"),
        a("www.test.example.", "192.0.2.11"),
        record("test.example.", 3600, RData::MX(MX::new(10, "mail.test.example.".parse().unwrap()))),
        record("test.example.", 60, RData::TXT(TXT::new(vec!["v=spf1 -all".into()]))),
    ])
    .await;
    let runtime = runtime();
    let check = async |name: &str, config: serde_json::Value| {
        let mut config = config;
        config["server"] = json!(server.to_string());
        outcome(run(&runtime, DNS, name, config).await)
    };

    let o = check("www.test.example", json!({"expected": ["192.0.2.10"]})).await;
    assert_eq!(o.status, Status::Up, "{}", o.message);
    assert_eq!(metric(&o, "records"), 2.0);
    assert_eq!(metric(&o, "min_ttl"), 300.0);

    let o = check("www.test.example", json!({"expected": ["192.0.2.10"], "exact": true})).await;
    assert_eq!(o.status, Status::Down);
    assert!(o.message.contains("expected exactly 192.0.2.10"), "{}", o.message);

    let o = check("www.test.example", json!({"expected": ["192.0.2.99"]})).await;
    assert_eq!(o.status, Status::Down);
    assert!(o.message.contains("missing 192.0.2.99"), "{}", o.message);

    let o = check("test.example", json!({"record_type": "MX", "expected": ["10 mail.test.example"]})).await;
    assert_eq!(o.status, Status::Up, "{}", o.message);

    let o = check("test.example", json!({"record_type": "TXT", "expected": ["v=spf1 -all"]})).await;
    assert_eq!(o.status, Status::Up, "{}", o.message);

    let o = check("nope.test.example", json!({})).await;
    assert_eq!(o.status, Status::Down);
    assert!(o.message.contains("NXDOMAIN (expected NOERROR)"), "{}", o.message);
    let o = check("nope.test.example", json!({"response_code": "NXDOMAIN"})).await;
    assert_eq!(o.status, Status::Up, "{}", o.message);
}

#[tokio::test]
async fn dns_a_resolver_that_was_not_granted_is_refused() {
    let server = dns_server(vec![a("www.test.example.", "192.0.2.10")]).await;
    let plugin = load(&runtime(), DNS).await;
    let report = plugin.check(call("www.test.example", json!({"server": server.to_string()}))).await;
    assert_eq!(report.refusals.len(), 1, "{:?}", report.refusals);
    assert!(report.refusals[0].contains("127.0.0.1 is a non-public address"), "{:?}", report.refusals);
    assert!(report.outcome.is_err());
}

#[tokio::test]
async fn tls_expiry_days_left_chain_and_name() {
    let pki = Pki::new();
    let runtime = runtime_with(|c| c.network.extra_roots = vec![pki.ca_file.path().to_path_buf()]);
    let names = ["localhost", "127.0.0.1"];
    let healthy = https_server(test_site(), pki.leaf(&names, 90)).await;
    let soon = https_server(test_site(), pki.leaf(&names, 10)).await;
    let very_soon = https_server(test_site(), pki.leaf(&names, 1)).await;
    let expired = https_server(test_site(), pki.leaf(&names, -2)).await;
    let self_signed = https_server(test_site(), Pki::self_signed(&["localhost"])).await;
    let other_name = https_server(test_site(), pki.leaf(&["other.example"], 90)).await;

    let check = async |addr: std::net::SocketAddr, config: serde_json::Value| {
        outcome(run(&runtime, TLS_EXPIRY, &format!("localhost:{}", addr.port()), config).await)
    };
    let o = check(healthy, json!({})).await;
    assert_eq!(o.status, Status::Up, "{}", o.message);
    assert!((89.0..=90.0).contains(&metric(&o, "days_left")), "{}", metric(&o, "days_left"));
    assert!(o.message.contains("issued by CN=Tocsin Test CA"), "{}", o.message);

    let o = check(soon, json!({})).await;
    assert_eq!(o.status, Status::Degraded, "{}", o.message);
    let o = check(very_soon, json!({})).await;
    assert_eq!(o.status, Status::Down, "{}", o.message);
    assert!(
        o.message.starts_with("certificate expires in 1.0 days") || o.message.starts_with("certificate expires in 0.9"),
        "{}",
        o.message
    );
    let o = check(expired, json!({})).await;
    assert_eq!(o.status, Status::Down);
    assert!(o.message.starts_with("certificate expired on "), "{}", o.message);

    let o = check(self_signed, json!({})).await;
    assert_eq!(o.status, Status::Down);
    assert!(o.message.contains("not signed by a trusted authority"), "{}", o.message);
    let o = check(self_signed, json!({"verify_chain": false})).await;
    assert_eq!(o.status, Status::Up, "{}", o.message);

    let o = check(other_name, json!({})).await;
    assert_eq!(o.status, Status::Down);
    assert!(o.message.contains("not valid for localhost (it covers other.example)"), "{}", o.message);
    let o = check(other_name, json!({"verify_hostname": false})).await;
    assert_eq!(o.status, Status::Up, "{}", o.message);

    // The target may be a URL too.
    let o = outcome(run(&runtime, TLS_EXPIRY, &format!("https://127.0.0.1:{}/login", healthy.port()), json!({})).await);
    assert_eq!(o.status, Status::Up, "{}", o.message);
}

#[tokio::test]
async fn the_guide_example_reads_a_json_api() {
    let site = http_server(test_site()).await;
    let runtime = runtime();
    let url = format!("http://{site}/json");
    let o = outcome(
        run(&runtime, JSON_THRESHOLD, &url, json!({"pointer": "/queue/depth", "warn_above": 5, "down_above": 10}))
            .await,
    );
    assert_eq!(o.status, Status::Degraded, "{}", o.message);
    assert_eq!(metric(&o, "value"), 7.0);
    let o = outcome(
        run(&runtime, JSON_THRESHOLD, &url, json!({"pointer": "/queue/depth", "warn_above": 50, "down_above": 100}))
            .await,
    );
    assert_eq!(o.status, Status::Up, "{}", o.message);
}
