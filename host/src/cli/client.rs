//! The CLI's HTTP client. Given several servers it tries them in order
//! until one answers: a server that cannot be reached, or answers 503, is
//! skipped; any other answer (success or error) is final.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::CliError;

#[derive(Clone)]
pub struct Client {
    servers: Vec<String>,
    token: Option<String>,
    http: reqwest::Client,
}

/// A request body.
pub enum Payload<'a> {
    None,
    Json(serde_json::Value),
    Wasm(&'a [u8]),
}

impl Client {
    /// `tls`: whom it trusts (and what it presents) over https.
    pub fn new(servers: Vec<String>, token: Option<String>, tls: &tocsin_tls::ClientTls) -> Result<Client, CliError> {
        let http = tls
            .reqwest()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .user_agent(concat!("tocsin-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Other(format!("HTTP client: {e}")))?;
        let servers = servers.into_iter().map(|s| s.trim_end_matches('/').to_string()).collect();
        Ok(Client { servers, token, http })
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        self.call(Method::GET, path, Payload::None).await
    }

    pub async fn send<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T, CliError> {
        let body = serde_json::to_value(body).map_err(|e| CliError::Other(e.to_string()))?;
        self.call(method, path, Payload::Json(body)).await
    }

    /// A request whose response has no body (204).
    pub async fn send_empty(&self, method: Method, path: &str) -> Result<(), CliError> {
        self.request(method, path, Payload::None).await.map(|_| ())
    }

    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        payload: Payload<'_>,
    ) -> Result<T, CliError> {
        let text = self.request(method, path, payload).await?;
        serde_json::from_str(&text)
            .map_err(|e| CliError::Other(format!("unexpected answer from the server ({e}): {text}")))
    }

    async fn request(&self, method: Method, path: &str, payload: Payload<'_>) -> Result<String, CliError> {
        let mut failures = Vec::new();
        for server in &self.servers {
            let mut request = self.http.request(method.clone(), format!("{server}{path}"));
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            request = match &payload {
                Payload::None => request,
                Payload::Json(body) => request.json(body),
                Payload::Wasm(bytes) => request.header("content-type", "application/wasm").body(bytes.to_vec()),
            };
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) => {
                    failures.push(format!("{server}: {}", describe(&e)));
                    continue;
                }
            };
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            if status == StatusCode::SERVICE_UNAVAILABLE && self.servers.len() > 1 {
                failures.push(format!("{server}: unavailable ({})", api_message(&text).1));
                continue;
            }
            if status.is_success() {
                return Ok(text);
            }
            let (code, message) = api_message(&text);
            return Err(CliError::Api { status: status.as_u16(), code, message });
        }
        Err(CliError::Unreachable(failures))
    }
}

/// What went wrong with a request, in a few words; a TLS failure says what
/// to do about it.
pub fn describe(e: &reqwest::Error) -> String {
    if let Some(problem) = tocsin_tls::certificate_problem(e) {
        problem
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.to_string()
    }
}

/// The `code` and `message` of an API error body.
fn api_message(text: &str) -> (String, String) {
    let parsed: Option<(String, String)> = serde_json::from_str::<serde_json::Value>(text).ok().and_then(|v| {
        let e = v.get("error")?;
        Some((e.get("code")?.as_str()?.to_string(), e.get("message")?.as_str()?.to_string()))
    });
    parsed.unwrap_or_else(|| ("http_error".into(), text.chars().take(500).collect()))
}
