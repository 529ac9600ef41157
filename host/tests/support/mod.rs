//! `spawn_app()`: a whole controller (API, node, ingest) in this process on
//! port 0, with a database of its own on the chosen backend and an admin
//! token; `both!` runs a test on SQLite and on PostgreSQL.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tocsin::config::{Secret, ServeConfig};
use tocsin::model::Role;
use tocsin::store::{self, Db};
pub use tocsin_testkit::{Backend, TestDb};

/// Runs `$name(backend)` as two tests, `$name::sqlite` and `$name::postgres`.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(tocsin_testkit::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(tocsin_testkit::Backend::Postgres).await
            }
        }
    )*};
}

pub struct TestApp {
    pub url: String,
    pub admin: String,
    /// The key its secrets are sealed with (`TOCSIN_SECRETS_KEY`'s form).
    pub secrets_key: String,
    pub db: Db,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _data: tempfile::TempDir,
    _db: TestDb,
}

pub use tocsin_testkit::plugin_cache;

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// `spawn_app` with settings changed by `adjust`.
pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let test_db = TestDb::new(backend).await;
    let data = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut config = ServeConfig {
        listen: listener.local_addr().unwrap(),
        data_dir: data.path().to_path_buf(),
        database_url: Some(Secret::new(test_db.url.clone())),
        secrets_key: Some(Secret::new(tocsin::secrets::Keyring::generate())),
        location: "test".into(),
        node_name: "test-node".into(),
        min_interval: Duration::from_secs(1),
        editor_grants: Vec::new(),
        ..ServeConfig::default()
    };
    config.runtime.max_concurrent = 64;
    config.runtime.cache_dir = Some(plugin_cache());
    adjust(&mut config);
    // The test's own handle on the database seals and opens with the
    // server's key (the one `adjust` chose, if it did).
    let secrets_key = config.secrets_key.as_ref().expect("a secrets key").expose().to_string();
    let keys = tocsin::secrets::Keyring::from_keys(secrets_key.split(',')).unwrap();
    let db = Db::connect(&test_db.url, keys).await.expect("connecting to the test database");
    let (admin, hash) = tocsin::auth::mint("test-admin", Role::Admin, "test setup");
    let mut tx = db.writer().begin().await.unwrap();
    store::tokens::create(&mut tx, &admin.info, &hash).await.unwrap();
    tx.commit().await.unwrap();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tocsin::server::serve(config, listener, async move {
        let _ = stopped.await;
    }));
    let app = TestApp {
        url,
        admin: admin.token,
        secrets_key,
        db,
        http: reqwest::Client::new(),
        stop: Some(stop),
        server: Some(server),
        _data: data,
        _db: test_db,
    };
    app.wait_until(Duration::from_secs(30), async || {
        app.raw(Method::GET, "/healthz", None, None).await.0 == StatusCode::OK
    })
    .await;
    app
}

impl TestApp {
    /// The URL of its database (for reading it as a dump would).
    pub fn database_url(&self) -> &str {
        &self._db.url
    }

    /// A request with a token (or none) and a JSON body (or none).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
            }
            Err(e) => (StatusCode::from_u16(599).unwrap(), Value::String(e.to_string())),
        }
    }

    /// A request as the admin.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.raw(method, path, Some(&self.admin.clone()), body).await
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// Polls `condition` until it holds, failing after `timeout`.
    pub async fn wait_until(&self, timeout: Duration, mut condition: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !condition().await {
            assert!(Instant::now() < deadline, "condition not met within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server the way SIGTERM does, and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("the server task").expect("the server stops cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A local site for checks to probe: `/` answers 200, `/down` 503.
pub async fn target_site() -> String {
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "hello from the target" }))
        .route("/down", axum::routing::get(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}
