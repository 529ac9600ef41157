//! Secrets at rest, on both backends: what a copy of the database holds
//! (a `pg_dump` of the schema, the SQLite file's bytes), the start-up pass
//! over what an older version stored in clear, a controller with the wrong
//! key, and link keys that rotate.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::Sha256;
use support::*;
use tocsin::alerting::links::{Action, Claim, LinkError, Signer};
use tocsin::secrets::{Keyring, SecretsError};
use tocsin::store::{self, Db, StoreError};

both!(
    a_copy_of_the_database_holds_no_secret,
    clear_secrets_of_an_older_version_are_sealed_at_start,
    links_outlive_a_rotation_until_their_key_is_retired,
);

const WEBHOOK_PATH: &str = "/services/T0001/B0002/webhookPathS3cret";
const GATEWAY_HEADER: &str = "Bearer gatewayHeaderS3cret";
const CHECK_HEADER: &str = "Bearer checkHeaderS3cret";

/// Everything the database holds, as a dump of it would: `pg_dump` of the
/// test's schema, or the SQLite files' bytes.
fn dump(url: &str) -> String {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap();
        return ["", "-wal"]
            .iter()
            .filter_map(|suffix| std::fs::read(format!("{path}{suffix}")).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .collect();
    }
    let (server, query) = url.split_once('?').unwrap();
    let schema = query.rsplit("search_path%3D").next().unwrap();
    let out = std::process::Command::new("pg_dump")
        .args(["--data-only", "--schema", schema, server])
        .output()
        .unwrap_or_else(|e| panic!("running pg_dump (apt-get install postgresql-client): {e}"));
    assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A target that records the `Authorization` header of every request.
async fn header_target() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let recorded = seen.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let recorded = recorded.clone();
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
                recorded.lock().unwrap().push(auth.to_string());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/"), seen)
}

async fn a_copy_of_the_database_holds_no_secret(backend: Backend) {
    let app = spawn_app(backend).await;
    let gateway = json!({"name": "hook", "plugin": "webhook", "config": {
        "url": format!("https://hooks.slack.com{WEBHOOK_PATH}"), "headers": {"Authorization": GATEWAY_HEADER}}});
    let (status, answer) = app.call(Method::POST, "/api/v1/gateways", Some(gateway)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (target, seen) = header_target().await;
    let check = json!({"name": "private-api", "plugin": "http", "target": target, "interval": "1s",
        "allow": ["127.0.0.1"], "config": {"headers": {"Authorization": CHECK_HEADER}}});
    let (status, answer) = app.call(Method::POST, "/api/v1/checks", Some(check)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");

    // The node gets the secret in clear and uses it.
    app.wait_until(Duration::from_secs(30), async || seen.lock().unwrap().iter().any(|h| h == CHECK_HEADER)).await;
    // The API still hides it, and still shows where the webhook goes.
    let shown = app.get("/api/v1/gateways/hook").await;
    assert_eq!(shown["config"]["url"], "https://hooks.slack.com/***", "{shown}");

    let dumped = dump(app.database_url());
    for secret in ["webhookPathS3cret", "gatewayHeaderS3cret", "checkHeaderS3cret"] {
        assert!(!dumped.contains(secret), "the database holds {secret} in clear");
    }
    assert!(dumped.contains("enc:v1:"), "the secrets are there, sealed");
    // The link key is sealed too, and the clear one of older versions gone.
    let sealed: Vec<String> =
        sqlx::query_scalar("SELECT sealed FROM link_keys").fetch_all(app.db.reader()).await.unwrap();
    assert!(!sealed.is_empty() && sealed.iter().all(|k| k.starts_with("enc:v1:")), "{sealed:?}");
    assert_eq!(app.db.meta(tocsin::alerting::links::LEGACY_KEY).await.unwrap(), None);
    for key in &sealed {
        let clear = app.db.keys().open(key).unwrap();
        assert!(!dumped.contains(&clear), "the link key in clear in the dump");
    }
    app.stop().await;
}

/// The state an older version left: secrets in clear in a check, a
/// gateway and the feed, and the link key in clear in `meta`.
async fn older_version_state(db: &Db) -> String {
    let spec: tocsin::model::CheckSpec = serde_json::from_value(json!({"name": "old", "plugin": "http",
        "target": "https://example.com/", "config": {"headers": {"Authorization": CHECK_HEADER}}}))
    .unwrap();
    let mut tx = db.writer().begin().await.unwrap();
    store::checks::create(&mut tx, db.keys(), &spec, "test").await.unwrap();
    tx.commit().await.unwrap();
    let clear_config = json!({"headers": {"Authorization": CHECK_HEADER}}).to_string();
    sqlx::query("UPDATE checks SET config = $1 WHERE name = 'old'")
        .bind(&clear_config)
        .execute(db.writer())
        .await
        .unwrap();
    let gateway = json!({"name": "hook", "plugin": "webhook", "allow": [], "timeout": "10s",
        "config": {"url": format!("https://hooks.slack.com{WEBHOOK_PATH}")}});
    sqlx::query("INSERT INTO gateways (name, spec, created_at, updated_at) VALUES ('hook', $1, 0, 0)")
        .bind(gateway.to_string())
        .execute(db.writer())
        .await
        .unwrap();
    let body = json!({"name": "old", "config": clear_config}).to_string();
    sqlx::query("UPDATE changes SET body = $1 WHERE kind = 'check' AND name = 'old'")
        .bind(body)
        .execute(db.writer())
        .await
        .unwrap();
    let legacy = hex::encode([7u8; 32]);
    sqlx::query("DELETE FROM link_keys").execute(db.writer()).await.unwrap();
    db.set_meta(tocsin::alerting::links::LEGACY_KEY, &legacy).await.unwrap();
    legacy
}

/// A link as versions before rotation signed it: `<claim>.<tag>`.
fn old_link(key_hex: &str, claim: &Claim) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claim).unwrap());
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&hex::decode(key_hex).unwrap()).unwrap();
    mac.update(payload.as_bytes());
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

async fn everything_stored(db: &Db) -> String {
    let mut all = Vec::new();
    for sql in [
        "SELECT config FROM checks",
        "SELECT spec FROM gateways",
        "SELECT COALESCE(body, '') FROM changes",
        "SELECT sealed FROM link_keys",
        "SELECT value FROM meta",
    ] {
        let rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(db.reader()).await.unwrap();
        all.extend(rows);
    }
    all.join("\n")
}

async fn clear_secrets_of_an_older_version_are_sealed_at_start(backend: Backend) {
    let test_db = TestDb::new(backend).await;
    let key = Keyring::generate();
    let db = Db::connect(&test_db.url, Keyring::from_keys([key.as_str()]).unwrap()).await.unwrap();
    let legacy = older_version_state(&db).await;
    let before = everything_stored(&db).await;
    assert!(before.contains("checkHeaderS3cret") && before.contains(&legacy), "the old state is in clear");

    let report = store::sealing::run(&db).await.unwrap();
    assert_eq!((report.sealed, report.link_keys), (2, 1), "{report:?}");
    assert!(report.feed_dropped >= 1, "the feed entries with clear secrets are gone: {report:?}");
    let after = everything_stored(&db).await;
    for clear in ["checkHeaderS3cret", "webhookPathS3cret", legacy.as_str()] {
        assert!(!after.contains(clear), "{clear} still in clear: {after}");
    }
    // What was sealed opens for use, and the old links still verify.
    let check = store::checks::get(&db, "old").await.unwrap();
    assert_eq!(check.spec.config["headers"]["Authorization"], CHECK_HEADER);
    let claim = Claim { notification: 5, action: Action::Accept, expires_at: i64::MAX };
    let signer = Signer::load(&db).await.unwrap();
    assert_eq!(signer.verify(&old_link(&legacy, &claim), 0).await, Ok(claim));
    assert_eq!(store::sealing::run(&db).await.unwrap(), Default::default(), "a second start has nothing to do");

    // A controller with another key stops at start, saying so, and
    // changes nothing.
    let sealed = everything_stored(&db).await;
    let stranger =
        Db::connect(&test_db.url, Keyring::from_keys([Keyring::generate().as_str()]).unwrap()).await.unwrap();
    let err = store::sealing::run(&stranger).await.unwrap_err();
    assert!(matches!(err, StoreError::Secrets(_, SecretsError::UnknownKey { .. })), "{err}");
    assert!(err.to_string().contains("same secrets key"), "{err}");
    assert_eq!(everything_stored(&db).await, sealed, "a wrong key changed nothing");
}

async fn links_outlive_a_rotation_until_their_key_is_retired(backend: Backend) {
    let app = spawn_app(backend).await;
    let signer = Signer::load(&app.db).await.unwrap();
    let first = signer.current().await.unwrap();
    // A link to a notification that does not exist: a verified link gets
    // 404, a refused one 403.
    let link = first.sign(&Claim { notification: 424242, action: Action::Accept, expires_at: i64::MAX });
    let open = async |link: &str| {
        let response = app.http.get(format!("{}/respond/{link}", app.url)).send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    };
    assert_eq!(open(&link).await.0, StatusCode::NOT_FOUND, "the link verifies");

    let rotation = app.call(Method::POST, "/api/v1/link-keys/rotate", Some(json!({}))).await;
    assert_eq!(rotation.0, StatusCode::OK, "{}", rotation.1);
    assert_eq!(rotation.1["id"], first.id + 1);
    assert_eq!(signer.current().await.unwrap().id, first.id + 1, "new links are signed with the new key");
    assert_eq!(open(&link).await.0, StatusCode::NOT_FOUND, "a link sent before the rotation still works");

    // A link naming a key that never existed, or signed with the right id
    // and the wrong key: refused.
    let unknown = tocsin::alerting::links::LinkKey::new(99, vec![1; 32]).sign(&Claim {
        notification: 424242,
        action: Action::Accept,
        expires_at: i64::MAX,
    });
    assert_eq!(signer.verify(&unknown, 0).await, Err(LinkError::UnknownKey));
    let forged = tocsin::alerting::links::LinkKey::new(first.id, vec![1; 32]).sign(&Claim {
        notification: 424242,
        action: Action::Accept,
        expires_at: i64::MAX,
    });
    assert_eq!(signer.verify(&forged, 0).await, Err(LinkError::Forged));

    // Retiring drops every older key at once: the old link stops working.
    let retired = app.call(Method::POST, "/api/v1/link-keys/rotate", Some(json!({"retire": true}))).await;
    assert_eq!(retired.0, StatusCode::OK, "{}", retired.1);
    assert_eq!(retired.1["dropped"], json!([first.id + 1, first.id]), "{}", retired.1);
    let (status, page) = open(&link).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("no longer exists"), "{page}");
    let audit = app.get("/api/v1/audit?limit=20").await.to_string();
    assert!(audit.contains("link_key.rotate") && audit.contains("link_key.rotate_and_retire"), "{audit}");
    assert!(!app.get("/api/v1/audit?limit=20").await.to_string().contains("enc:v1:"), "no key in the trail");
    app.stop().await;
}
