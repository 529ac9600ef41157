//! The platform as the watchdog sees it: the controllers' HTTP API, and
//! nothing else. Every call has a short timeout; a controller that does
//! not answer in time is as good as down for a watchdog.

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};
use url::Url;

use crate::model::Millis;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Transport(String),
    #[error("HTTP {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("unexpected answer: {0}")]
    Decode(String),
}

impl CallError {
    fn from_reqwest(e: reqwest::Error) -> Self {
        CallError::Transport(describe(&e))
    }
}

/// What went wrong in a request, in words: the innermost cause says it
/// ("Connection refused"), reqwest's own message does not; a TLS failure
/// says what to do about it.
pub fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_string();
    }
    if let Some(problem) = tocsin_tls::certificate_problem(e) {
        return problem;
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[derive(Clone)]
pub struct Platform {
    http: reqwest::Client,
    token: SecretString,
}

/// `GET /api/v1/cluster`.
#[derive(Clone, Debug, Deserialize)]
pub struct Cluster {
    pub scheduler: Option<String>,
    pub epoch: i64,
    #[serde(with = "rfc3339")]
    pub lease_expires_at: Millis,
    #[serde(with = "rfc3339")]
    pub now: Millis,
    pub answered_by: String,
}

/// One entry of `GET /api/v1/nodes`.
#[derive(Clone, Debug, Deserialize)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub location: String,
    pub state: String,
    pub load: i64,
    #[serde(default)]
    pub runs_last_minute: i64,
    #[serde(default)]
    pub expected_last_minute: i64,
}

/// The parts of a check the canary needs.
#[derive(Clone, Debug, Deserialize)]
pub struct Check {
    pub target: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Run {
    #[serde(with = "rfc3339")]
    pub slot: Millis,
    pub location: String,
    pub status: String,
}

impl Platform {
    /// `timeout` bounds every call: a round must not wait on a controller
    /// longer than it waits between rounds, or outages are seen late.
    pub fn new(token: SecretString, timeout: Duration, tls: &tocsin_tls::ClientTls) -> Platform {
        Platform { http: http_client(timeout, tls), token }
    }

    /// `GET path` without a token; returns the status and how long it took.
    pub async fn probe(&self, base: &Url, path: &str) -> Result<(u16, Duration), CallError> {
        let started = Instant::now();
        let response = self.http.get(join(base, path)).send().await.map_err(CallError::from_reqwest)?;
        Ok((response.status().as_u16(), started.elapsed()))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        base: &Url,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, CallError> {
        let mut request = self.http.request(method, join(base, path)).bearer_auth(self.token.expose_secret());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(CallError::from_reqwest)?;
        let status = response.status();
        let text = response.text().await.map_err(CallError::from_reqwest)?;
        if !status.is_success() {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_string))
                .unwrap_or(text);
            return Err(CallError::Refused { status: status.as_u16(), message });
        }
        let text = if text.is_empty() { "null".to_string() } else { text };
        serde_json::from_str(&text).map_err(|e| CallError::Decode(e.to_string()))
    }

    pub async fn cluster(&self, base: &Url) -> Result<Cluster, CallError> {
        self.call(reqwest::Method::GET, base, "api/v1/cluster", None).await
    }

    pub async fn nodes(&self, base: &Url) -> Result<Vec<Node>, CallError> {
        self.call(reqwest::Method::GET, base, "api/v1/nodes", None).await
    }

    pub async fn check(&self, base: &Url, name: &str) -> Result<Option<Check>, CallError> {
        match self.call(reqwest::Method::GET, base, &format!("api/v1/checks/{name}"), None).await {
            Ok(check) => Ok(Some(check)),
            Err(CallError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates or replaces check `name` with `spec`.
    pub async fn put_check(&self, base: &Url, name: &str, spec: &Value, exists: bool) -> Result<(), CallError> {
        let _: Value = if exists {
            self.call(reqwest::Method::PUT, base, &format!("api/v1/checks/{name}"), Some(spec.clone())).await?
        } else {
            self.call(reqwest::Method::POST, base, "api/v1/checks", Some(spec.clone())).await?
        };
        Ok(())
    }

    pub async fn latest_runs(&self, base: &Url, check: &str, limit: u32) -> Result<Vec<Run>, CallError> {
        #[derive(Deserialize)]
        struct Page {
            runs: Vec<Run>,
        }
        let page: Page =
            self.call(reqwest::Method::GET, base, &format!("api/v1/checks/{check}/runs?limit={limit}"), None).await?;
        Ok(page.runs)
    }

    pub async fn evict(&self, base: &Url, node_id: &str, reason: &str, agreed_by: &[String]) -> Result<(), CallError> {
        let body = json!({"reason": reason, "agreed_by": agreed_by});
        let _: Value =
            self.call(reqwest::Method::POST, base, &format!("api/v1/nodes/{node_id}/evict"), Some(body)).await?;
        Ok(())
    }

    pub async fn revoke_lease(
        &self,
        base: &Url,
        epoch: i64,
        to: &str,
        reason: &str,
        agreed_by: &[String],
    ) -> Result<Cluster, CallError> {
        let body = json!({"epoch": epoch, "to": to, "reason": reason, "agreed_by": agreed_by});
        self.call(reqwest::Method::POST, base, "api/v1/cluster/lease/revoke", Some(body)).await
    }
}

/// The watchdog's HTTP client: every call bounded by `timeout`, and a fresh
/// connection each time, so "can it be reached" is what is measured; https
/// servers are verified against `tls`'s roots.
pub fn http_client(timeout: Duration, tls: &tocsin_tls::ClientTls) -> reqwest::Client {
    tls.reqwest()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_max_idle_per_host(0)
        .user_agent(concat!("tocsin-watchdog/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("an HTTP client (TLS provider installed at start)")
}

/// `base` joined with `path`, keeping any path prefix `base` has.
pub fn join(base: &Url, path: &str) -> String {
    format!("{}/{}", base.as_str().trim_end_matches('/'), path.trim_start_matches('/'))
}

/// The controllers' timestamps are RFC 3339 with milliseconds.
pub mod rfc3339 {
    use serde::{Deserialize, Deserializer};

    use crate::model::Millis;

    pub fn parse(s: &str) -> Option<Millis> {
        let t = humantime::parse_rfc3339_weak(s).ok()?;
        Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as Millis)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {s:?}")))
    }
}
