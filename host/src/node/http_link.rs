//! The node protocol over HTTP, to the first controller that answers. A
//! controller that cannot be reached, or answers 5xx, is skipped; the one
//! that last answered is tried first next time.
//!
//! The node's key, which binds its first enrollment to its node id, is
//! kept in a file only the node's user can read and sent with every call.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::link::{Beat, BeatReply, Hello, Link, LinkError, LinkResult, Upload, UploadReply, Welcome, Work};

pub struct HttpLink {
    controllers: Vec<String>,
    token: String,
    http: reqwest::Client,
    preferred: AtomicUsize,
    key: String,
}

/// The key in `path`, made there first if there is none.
fn node_key(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(key) if key.trim().len() >= 32 => return Ok(key.trim().to_string()),
        Ok(_) => return Err(std::io::Error::other("it is shorter than 32 characters; delete it to make a new one")),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let key = format!("tcnk_{}", hex::encode(rand::random::<[u8; 32]>()));
    crate::config::save_secret(path, &key)?;
    Ok(key)
}

enum Body<'a, T: Serialize> {
    None,
    Json(&'a T),
}

impl HttpLink {
    /// A link to `controllers` with a node `token`. The node's key is read
    /// from `key_file`, or made there (readable by this user only) before
    /// the first enrollment, so retrying an enrollment whose answer was lost
    /// still proves the same node.
    /// `tls`: whom the node trusts over https, and its client certificate.
    pub fn new(
        controllers: Vec<String>,
        token: String,
        key_file: &Path,
        tls: &tocsin_tls::ClientTls,
    ) -> Result<HttpLink, String> {
        let http = tls
            .reqwest()
            .connect_timeout(Duration::from_secs(3))
            .user_agent(concat!("tocsin-node/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        let controllers = controllers.into_iter().map(|c| c.trim_end_matches('/').to_string()).collect();
        let key = node_key(key_file).map_err(|e| format!("the node key {}: {e}", key_file.display()))?;
        Ok(HttpLink { controllers, token, http, preferred: AtomicUsize::new(0), key })
    }

    /// Sends to each controller in turn, starting with the one that last
    /// answered; returns the first answer that is not a failure of the
    /// controller itself.
    async fn send<T: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Body<'_, T>,
        timeout: Duration,
    ) -> LinkResult<(StatusCode, Vec<u8>)> {
        let n = self.controllers.len();
        let start = self.preferred.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for i in 0..n {
            let index = (start + i) % n;
            let url = format!("{}{path}", self.controllers[index]);
            let mut request = self.http.request(method.clone(), &url).bearer_auth(&self.token).timeout(timeout);
            request = request.header(crate::api::NODE_KEY, &self.key);
            if let Body::Json(body) = &body {
                request = request.json(body);
            }
            match request.send().await {
                Ok(response) if response.status().is_server_error() => {
                    failures.push(format!("{}: {}", self.controllers[index], response.status()));
                }
                Ok(response) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    let status = response.status();
                    let bytes = response.bytes().await.map_err(|e| LinkError::Unavailable(format!("{url}: {e}")))?;
                    return Ok((status, bytes.to_vec()));
                }
                Err(e) => failures.push(format!("{}: {}", self.controllers[index], crate::cli::describe(&e))),
            }
        }
        Err(LinkError::Unavailable(format!("no controller answered: {}", failures.join("; "))))
    }

    async fn call<T: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Body<'_, T>,
        timeout: Duration,
    ) -> LinkResult<Option<R>> {
        let (status, bytes) = self.send(method, path, body, timeout).await?;
        match status {
            StatusCode::NO_CONTENT => Ok(None),
            s if s.is_success() => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| LinkError::Unavailable(format!("unexpected answer to {path}: {e}"))),
            _ => {
                let text = String::from_utf8_lossy(&bytes);
                if text.contains("\"unknown_node\"") {
                    return Err(LinkError::Unknown);
                }
                if text.contains("\"node_key_mismatch\"") {
                    return Err(LinkError::Denied(format!("{path}: {text}")));
                }
                Err(LinkError::Refused(format!("{path}: {status}: {text}")))
            }
        }
    }
}

const CALL: Duration = Duration::from_secs(15);

impl Link for HttpLink {
    fn enroll(&self, hello: Hello) -> BoxFuture<'_, LinkResult<Welcome>> {
        Box::pin(async move {
            self.call(Method::POST, "/api/v1/node/enroll", Body::Json(&hello), CALL)
                .await?
                .ok_or_else(|| LinkError::Unavailable("empty answer to enroll".into()))
        })
    }

    fn heartbeat(&self, beat: Beat) -> BoxFuture<'_, LinkResult<BeatReply>> {
        Box::pin(async move {
            self.call(Method::POST, "/api/v1/node/heartbeat", Body::Json(&beat), Duration::from_secs(5))
                .await?
                .ok_or_else(|| LinkError::Unavailable("empty answer to a heartbeat".into()))
        })
    }

    fn work(&self, node_id: String, known: i64, wait: Duration) -> BoxFuture<'_, LinkResult<Option<Work>>> {
        Box::pin(async move {
            let path = format!("/api/v1/node/work?node={node_id}&version={known}&wait_ms={}", wait.as_millis());
            self.call::<(), Work>(Method::GET, &path, Body::None, wait + CALL).await
        })
    }

    fn upload(&self, upload: Upload) -> BoxFuture<'_, LinkResult<UploadReply>> {
        Box::pin(async move {
            self.call(Method::POST, "/api/v1/node/results", Body::Json(&upload), Duration::from_secs(60))
                .await?
                .ok_or_else(|| LinkError::Unavailable("empty answer to an upload".into()))
        })
    }

    fn plugin(&self, sha256: String) -> BoxFuture<'_, LinkResult<Vec<u8>>> {
        Box::pin(async move {
            let (status, bytes) = self
                .send::<()>(Method::GET, &format!("/api/v1/node/plugins/{sha256}"), Body::None, Duration::from_secs(60))
                .await?;
            if status.is_success() { Ok(bytes) } else { Err(LinkError::Refused(format!("plugin {sha256}: {status}"))) }
        })
    }
}
