//! Two sites for end-to-end tests: controllers with their own PostgreSQL
//! schemas, one following the other through the change feed, and an API
//! client that can pretend to come from another loopback address.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::cluster::{Controller, controller_with};

/// A site's one controller: [`Controller`] under the name tests read best.
pub type SiteProc = Controller;

/// The peer secret the sites of these tests share.
pub const PEER_SECRET: &str = "e2e-peer-secret-0123456789abcdef0123456789";

/// Starts one controller of site `site` on `listen` with database `db`;
/// `extra` are more `tocsin serve` flags (`--follow`, `--sync-peer`, ...).
pub fn site(site: &str, dir: &Path, listen: &str, db: &str, extra: &[&str]) -> SiteProc {
    let mut args = vec!["--site", site, "--sync-peer-secret", PEER_SECRET];
    args.extend(extra);
    controller_with(site, dir, listen, Some(db), &args)
}

/// The API over HTTP with a token.
#[derive(Clone)]
pub struct Api {
    pub url: String,
    token: String,
    http: reqwest::Client,
}

/// A status and a JSON body (Null when there was none).
pub type Answer = (u16, Value);

impl Api {
    pub fn new(url: &str, token: &str) -> Api {
        Api::from_address(url, token, None)
    }

    /// Requests leave from `local` (a loopback address other than 127.0.0.1
    /// looks like another machine to an allowlist).
    pub fn from_address(url: &str, token: &str, local: Option<IpAddr>) -> Api {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .local_address(local)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        Api { url: url.trim_end_matches('/').to_string(), token: token.to_string(), http }
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                (status, serde_json::from_str(&text).unwrap_or(Value::Null))
            }
            Err(e) => (0, json!({ "transport": e.to_string() })),
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Like `call`, but the answer must be a success.
    pub async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.call(method.clone(), path, body).await;
        assert!((200..300).contains(&status), "{method} {path}: HTTP {status} {answer}");
        answer
    }

    /// `/api/v1/sync/status`.
    pub async fn status(&self) -> Value {
        self.get("/api/v1/sync/status").await.1
    }

    pub async fn head(&self) -> i64 {
        self.status().await["site"]["head"].as_i64().unwrap_or(-1)
    }

    /// The whole feed, oldest first.
    pub async fn feed(&self) -> Vec<Value> {
        let mut entries = Vec::new();
        let (mut after, mut chain) = (0, String::new());
        loop {
            let path = format!("/api/v1/sync/feed?after={after}&after_chain={chain}");
            let page = self.ok(reqwest::Method::GET, &path, None).await;
            let got = page["entries"].as_array().cloned().unwrap_or_default();
            let Some(last) = got.last() else { return entries };
            (after, chain) = (last["seq"].as_i64().unwrap(), last["chain"].as_str().unwrap().to_string());
            entries.extend(got);
        }
    }

    /// Every configuration object, with the site's position.
    pub async fn snapshot(&self) -> Value {
        self.ok(reqwest::Method::GET, "/api/v1/sync/snapshot", None).await
    }

    pub async fn readyz(&self) -> u16 {
        self.get("/readyz").await.0
    }
}

/// Polls `condition` every 50 ms until it holds.
pub async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Change number `i` of a varied stream: checks, contacts, policies,
/// gateways, routes, tokens and silences created, changed and deleted.
pub async fn change(api: &Api, i: usize) {
    use reqwest::Method;
    let check = |n: usize, description: &str| {
        json!({"name": format!("c{n}"), "plugin": "http", "target": format!("https://example.com/{n}"), "interval": "60s",
               "description": description, "tags": ["sync", format!("t{}", n % 7)]})
    };
    let contact = |n: usize, address: &str| {
        json!({"name": format!("p{n}"), "full_name": format!("Person {n}"),
               "channels": [{"channel": "email", "address": address}]})
    };
    let (method, path, body) = match i % 12 {
        0 => (Method::POST, "/api/v1/checks".to_string(), Some(check(i, "new"))),
        1 => (Method::PUT, format!("/api/v1/checks/c{}", i - 1), Some(check(i - 1, "edited"))),
        2 => (Method::POST, format!("/api/v1/checks/c{}/pause", i - 2), None),
        3 => (Method::POST, "/api/v1/contacts".to_string(), Some(contact(i, "a@example.com"))),
        4 => (Method::PUT, format!("/api/v1/contacts/p{}", i - 1), Some(contact(i - 1, "b@example.com"))),
        5 => (
            Method::POST,
            "/api/v1/gateways".to_string(),
            Some(
                json!({"name": format!("g{i}"), "plugin": "webhook", "config": {"url": format!("https://hooks.example.com/{i}")}}),
            ),
        ),
        6 => (
            Method::POST,
            "/api/v1/policies".to_string(),
            Some(json!({"name": format!("pol{i}"), "steps": [{"notify": [format!("p{}", i - 3)], "timeout": "5m"}]})),
        ),
        7 => (Method::POST, "/api/v1/tokens".to_string(), Some(json!({"name": format!("tok{i}"), "role": "viewer"}))),
        8 => (
            Method::POST,
            "/api/v1/silences".to_string(),
            Some(
                json!({"sources": [format!("check:c{}", i - 8)], "ends_at": "2030-01-01T00:00:00Z", "comment": "sync test"}),
            ),
        ),
        9 => (Method::DELETE, format!("/api/v1/checks/c{}", i - 9), None),
        10 => (Method::DELETE, format!("/api/v1/policies/pol{}", i - 4), None),
        _ => (Method::DELETE, format!("/api/v1/gateways/g{}", i - 6), None),
    };
    api.ok(method, &path, body).await;
}
