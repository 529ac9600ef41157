//! The node protocol over HTTP, to the first controller that answers. A
//! controller that cannot be reached, or answers 5xx, is skipped; the one
//! that last answered is tried first next time.

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
}

enum Body<'a, T: Serialize> {
    None,
    Json(&'a T),
}

impl HttpLink {
    pub fn new(controllers: Vec<String>, token: String) -> Result<HttpLink, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .user_agent(concat!("tocsin-node/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        let controllers = controllers.into_iter().map(|c| c.trim_end_matches('/').to_string()).collect();
        Ok(HttpLink { controllers, token, http, preferred: AtomicUsize::new(0) })
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
                Err(e) => failures.push(format!(
                    "{}: {}",
                    self.controllers[index],
                    if e.is_connect() { "cannot connect".into() } else { e.to_string() }
                )),
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
