//! The change feed between two sites in process, on both backends: every
//! kind of object reaches the follower identically, a recovery reports what
//! it discarded, and a passive site refuses changes in the API and in the
//! store.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Backend, TestApp, spawn_app_with};
use tocsin::config::Secret;

fn allow_loopback(config: &mut tocsin::config::ServeConfig) {
    config.sync.allow = vec!["127.0.0.1/32".parse().unwrap()];
}

async fn ok(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> Value {
    let (status, answer) = app.raw(method.clone(), path, Some(token), body).await;
    assert!(status.is_success(), "{method} {path}: {status} {answer}");
    answer
}

async fn upload_plugin(app: &TestApp) {
    let response = app
        .http
        .post(format!("{}/api/v1/plugins", app.url))
        .bearer_auth(&app.admin)
        .header("content-type", "application/wasm")
        .body(tocsin_builtins::JSON_THRESHOLD.wasm.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

async fn snapshot(app: &TestApp, token: &str) -> Value {
    ok(app, token, Method::GET, "/api/v1/sync/snapshot", None).await
}

async fn every_kind_reaches_the_follower_identically(backend: Backend) {
    let primary = spawn_app_with(backend, allow_loopback).await;
    let token = primary.admin.clone();
    let p = |method, path: &'static str, body| {
        let (primary, token) = (&primary, token.clone());
        async move { ok(primary, &token, method, path, body).await }
    };
    upload_plugin(&primary).await;
    p(
        Method::POST,
        "/api/v1/checks",
        Some(json!({"name": "web", "plugin": "http", "target": "https://example.com/", "tags": ["a"]})),
    )
    .await;
    p(
        Method::POST,
        "/api/v1/contacts",
        Some(json!({"name": "ada", "channels": [{"channel": "email", "address": "ada@example.com"}]})),
    )
    .await;
    p(
        Method::POST,
        "/api/v1/gateways",
        Some(json!({"name": "hook", "plugin": "webhook", "config": {"url": "https://hooks.example.com/x"}})),
    )
    .await;

    // Secrets travel sealed: the feed and the snapshot carry none in clear.
    let feed = ok(&primary, &token, Method::GET, "/api/v1/sync/feed?after=0", None).await.to_string();
    assert!(!feed.contains("hooks.example.com/x") && feed.contains("enc:v1:"), "{feed}");

    let sync_token = token.clone();
    let primary_url = primary.url.clone();
    let same_key = primary.secrets_key.clone();
    let backup = spawn_app_with(backend, move |c| {
        allow_loopback(c);
        c.sync.token = Some(Secret::new(sync_token));
        c.sync.site = Some("backup".into());
        c.secrets_key = Some(Secret::new(same_key));
    })
    .await;
    // The backup took a change of its own (its first admin token), at the
    // same seq and epoch as the primary's first: following finds out and
    // stops; it must recover.
    ok(&backup, &backup.admin, Method::POST, "/api/v1/sync/follow", Some(json!({"from": primary_url}))).await;
    backup
        .wait_until(Duration::from_secs(20), async || {
            let status = backup.raw(Method::GET, "/api/v1/sync/status", None, None).await.1;
            status["following"]["diverged"] == true
        })
        .await;
    let (status, _) = backup.raw(Method::GET, "/api/v1/checks/web", Some(&backup.admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing applied past the divergence");
    let report =
        ok(&backup, &backup.admin, Method::POST, "/api/v1/sync/recover", Some(json!({"from": primary_url}))).await;
    let discarded = report["discarded"].as_array().unwrap();
    assert_eq!(discarded.len(), 1, "{report}");
    assert_eq!((discarded[0]["kind"].as_str(), discarded[0]["why"].as_str()), (Some("token"), Some("only here")));
    assert_eq!(discarded[0]["was"]["hash"], "***", "no hash in reports");
    assert_eq!(report["site"]["role"], "passive");

    // Every kind, created, changed and deleted on the primary.
    p(Method::POST, "/api/v1/checks", Some(json!({"name": "custom", "plugin": "json-threshold", "target": "https://example.com/j", "config": {"pointer": "/x", "warn_above": 1, "down_above": 2}}))).await;
    p(
        Method::PUT,
        "/api/v1/checks/web",
        Some(json!({"name": "web", "plugin": "http", "target": "https://example.com/", "description": "edited"})),
    )
    .await;
    p(Method::POST, "/api/v1/checks/web/pause", None).await;
    p(
        Method::POST,
        "/api/v1/policies",
        Some(json!({"name": "default", "steps": [{"notify": ["ada"], "timeout": "5m"}]})),
    )
    .await;
    p(Method::POST, "/api/v1/routes", Some(json!({"name": "mail", "channel": "email", "gateways": ["hook"]}))).await;
    p(Method::POST, "/api/v1/maintenance", Some(json!({"name": "nightly", "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-01T01:00:00Z", "sources": ["*"]}))).await;
    p(Method::POST, "/api/v1/silences", Some(json!({"sources": ["check:web"], "ends_at": "2030-01-01T00:00:00Z"})))
        .await;
    let minted = p(Method::POST, "/api/v1/tokens", Some(json!({"name": "ci", "role": "editor"}))).await;
    p(
        Method::POST,
        "/api/v1/checks",
        Some(json!({"name": "gone", "plugin": "http", "target": "https://example.com/g"})),
    )
    .await;
    p(Method::DELETE, "/api/v1/checks/gone", None).await;
    let head = ok(&primary, &token, Method::GET, "/api/v1/sync/status", None).await["site"]["head"].as_i64().unwrap();
    backup
        .wait_until(Duration::from_secs(20), async || {
            let status = backup.raw(Method::GET, "/api/v1/sync/status", None, None).await.1;
            status["site"]["head"].as_i64() >= Some(head)
        })
        .await;
    let (theirs, ours) = (snapshot(&primary, &token).await, snapshot(&backup, &token).await);
    assert_eq!(theirs["objects"], ours["objects"]);
    let kinds: Vec<&str> = ours["objects"].as_array().unwrap().iter().filter_map(|o| o["kind"].as_str()).collect();
    for kind in ["plugin", "check", "contact", "policy", "route", "maintenance", "silence", "token"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    // The plugin's bytes came along: the backup serves the check's plugin.
    let plugins = ok(&backup, &token, Method::GET, "/api/v1/plugins", None).await;
    assert!(plugins.to_string().contains("json-threshold"), "{plugins}");
    // A token minted at the primary works at the backup.
    let (status, _) = backup.raw(Method::GET, "/api/v1/checks", minted["token"].as_str(), None).await;
    assert_eq!(status, StatusCode::OK);

    // A passive site refuses changes in the API, and in the store too.
    let (status, refused) =
        backup.raw(Method::POST, "/api/v1/contacts", Some(&token), Some(json!({"name": "x", "channels": []}))).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("site_passive")));
    let (new, hash) = tocsin::auth::mint("direct", tocsin::model::Role::Admin, "test");
    let mut tx = backup.db.writer().begin().await.unwrap();
    let err = tocsin::store::tokens::create(&mut tx, &new.info, &hash).await.unwrap_err();
    assert!(matches!(err, tocsin::store::StoreError::Passive(_)), "{err}");
    drop(tx);
    assert_eq!(snapshot(&backup, &token).await["objects"], theirs["objects"], "nothing was written");
    backup.stop().await;
    primary.stop().await;
}

both!(every_kind_reaches_the_follower_identically, a_backup_with_another_key_stores_no_secret_it_cannot_open);

async fn a_backup_with_another_key_stores_no_secret_it_cannot_open(backend: Backend) {
    let primary = spawn_app_with(backend, allow_loopback).await;
    let token = primary.admin.clone();
    let gateway = json!({"name": "hook", "plugin": "webhook", "config": {"url": "https://hooks.example.com/s3cret"}});
    ok(&primary, &token, Method::POST, "/api/v1/gateways", Some(gateway)).await;
    let (sync_token, primary_url) = (token.clone(), primary.url.clone());
    // A key of its own (spawn_app's default): not the primary's.
    let backup = spawn_app_with(backend, move |c| {
        allow_loopback(c);
        c.sync.token = Some(Secret::new(sync_token));
        c.sync.site = Some("backup".into());
    })
    .await;
    let before = snapshot(&backup, &backup.admin).await;
    let (status, refused) =
        backup.raw(Method::POST, "/api/v1/sync/recover", Some(&backup.admin), Some(json!({"from": primary_url}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("gateway hook") && message.contains("same secrets key"), "{message}");
    assert_eq!(snapshot(&backup, &backup.admin).await, before, "nothing was stored");
    backup.stop().await;
    primary.stop().await;
}
