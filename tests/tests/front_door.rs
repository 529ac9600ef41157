//! One front door: the real HAProxy with `deploy/haproxy/haproxy.cfg` in
//! front of two sites. A client of the API and of inbound alerts keeps its
//! one address while the primary site dies and the backup is promoted.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use tocsin_e2e::sites::{Api, eventually, site};
use tocsin_e2e::{Backend, Proc, TestDb, cli};

fn haproxy(bind: &str, primary: &str, backup: &str) -> Proc {
    let found = Command::new("haproxy").arg("-v").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "this test runs the real HAProxy: install it with `apt-get install haproxy`"
    );
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy/haproxy.cfg");
    let mut cmd = Command::new("haproxy");
    cmd.arg("-db")
        .arg("-f")
        .arg(&config)
        .env("TOCSIN_FRONT_BIND", bind)
        .env("TOCSIN_PRIMARY", primary)
        .env("TOCSIN_BACKUP", backup);
    Proc::spawn("haproxy", cmd)
}

fn address(url: &str) -> &str {
    url.trim_start_matches("http://")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_keeps_its_address_across_a_site_failover() {
    let dir = tempfile::tempdir().unwrap();
    let (p_db, b_db) = (TestDb::new(Backend::Postgres).await, TestDb::new(Backend::Postgres).await);
    let (p_port, b_port) = (tocsin_testkit::free_port(), tocsin_testkit::free_port());
    let (p_url, b_url) = (format!("http://127.0.0.1:{p_port}"), format!("http://127.0.0.1:{b_port}"));
    let mut primary = site(
        "primary",
        &dir.path().join("p"),
        &format!("127.0.0.1:{p_port}"),
        &p_db.url,
        &["--sync-allow", "127.0.0.1", "--sync-peer", &b_url],
    );
    let token = primary.token.clone();
    let backup = site(
        "backup",
        &dir.path().join("b"),
        &format!("127.0.0.1:{b_port}"),
        &b_db.url,
        &["--follow", &p_url, "--sync-token", &token, "--sync-peer", &p_url, "--sync-allow", "127.0.0.1"],
    );
    let front = format!("127.0.0.1:{}", tocsin_testkit::free_port());
    let _proxy = haproxy(&front, address(&p_url), address(&b_url));
    let front_url = format!("http://{front}");
    let door = Api::new(&front_url, &token);
    eventually("the front door is ready", Duration::from_secs(20), || async { door.readyz().await == 200 }).await;

    // The client knows one address: the front door.
    let client = |args: &[&str]| cli(&front_url, &token, args);
    let raised = client(&["alert", "send", "--source", "billing", "--key", "before", "--summary", "Billing is down"]);
    assert_eq!(raised.code, 0, "{raised:?}");
    assert_eq!(client(&["check", "add", "shop", "--target", "https://example.com/shop"]).code, 0);
    let p_api = Api::new(&p_url, &token);
    let incidents = p_api.ok(Method::GET, "/api/v1/incidents", None).await;
    assert!(incidents.to_string().contains("Billing is down"), "the alert landed at the primary: {incidents}");
    let b_api = Api::new(&b_url, &token);
    let head = p_api.head().await;
    eventually("the backup caught up", Duration::from_secs(20), || async { b_api.head().await >= head }).await;

    // The primary site dies; the operator promotes the backup.
    primary.proc.kill();
    let killed = Instant::now();
    let promoted = cli(&b_url, &token, &["sync", "promote"]);
    assert_eq!(promoted.code, 0, "{promoted:?}");

    // The same client, the same address: alerts and the API work again.
    let mut attempts = 0;
    eventually("an alert through the front door reaches the backup", Duration::from_secs(30), || {
        attempts += 1;
        let out =
            client(&["alert", "send", "--source", "billing", "--key", "after", "--summary", "Billing still down"]);
        async move { out.code == 0 }
    })
    .await;
    let carried = killed.elapsed();
    eprintln!("front door: alerts accepted again {carried:?} after the primary was killed ({attempts} attempts)");
    let incidents = b_api.ok(Method::GET, "/api/v1/incidents", None).await;
    assert!(incidents.to_string().contains("Billing still down"), "the alert landed at the backup: {incidents}");
    let checks = client(&["check", "list", "-o", "json"]);
    assert_eq!(checks.code, 0, "{checks:?}");
    assert!(checks.stdout.contains("\"shop\""), "the check made before the failover is there: {}", checks.stdout);
    let answer = door
        .post("/api/v1/checks", json!({"name": "after", "plugin": "http", "target": "https://example.com/after"}))
        .await;
    assert_eq!(answer.0, 201, "changes go to the promoted site: {}", answer.1);
    assert_eq!(door.status().await["site"]["name"], "backup");
    let errors = backup.proc.unexpected_errors(&[]);
    assert!(errors.is_empty(), "backup logged errors: {errors:#?}");
}
