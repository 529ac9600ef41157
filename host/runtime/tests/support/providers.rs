//! Stand-ins for the notification providers' HTTP APIs: PagerDuty's Events
//! API v2, Slack's `chat.postMessage` and Vonage's SMS API. Each checks
//! what the real one checks (credentials, required fields, allowed values),
//! answers in its format, status codes and error vocabulary, and records
//! what it received.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::servers::{Inbox, Received, http_server};

/// How a fake provider behaves beyond checking requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Behaviour {
    Normal,
    /// Rate limited: the provider's "slow down" answer.
    Throttled,
    /// The provider's own internal error.
    Failing,
}

fn record(inbox: &Inbox, path: &str, headers: &HeaderMap, body: &str) {
    let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    inbox.lock().unwrap().push(Received { path: path.to_string(), headers, body: body.to_string() });
}

pub struct Fake {
    pub addr: SocketAddr,
    pub inbox: Inbox,
}

impl Fake {
    pub fn received(&self) -> Vec<Received> {
        self.inbox.lock().unwrap().clone()
    }
}

/// An integration key the fake PagerDuty knows; other 32-character keys
/// are refused as invalid events.
pub const PAGERDUTY_KEY: &str = "R0123456789abcdef0123456789ABCDE";

/// PagerDuty's Events API v2: `POST /v2/enqueue`, 202 with
/// `{"status":"success","message":"Event processed","dedup_key":...}`, or
/// 400 `{"status":"invalid event","message":"Event object is invalid",
/// "errors":[...]}`; 429 with an empty body when throttled.
pub async fn fake_pagerduty(behaviour: Behaviour) -> Fake {
    async fn enqueue(
        State((inbox, behaviour)): State<(Inbox, Behaviour)>,
        headers: HeaderMap,
        body: String,
    ) -> Response {
        record(&inbox, "/v2/enqueue", &headers, &body);
        match behaviour {
            Behaviour::Throttled => return StatusCode::TOO_MANY_REQUESTS.into_response(),
            Behaviour::Failing => {
                return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response();
            }
            Behaviour::Normal => {}
        }
        let invalid = |errors: Vec<String>| {
            let body = json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors});
            (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
        };
        let Ok(event) = serde_json::from_str::<Value>(&body) else {
            return invalid(vec!["Malformed JSON".into()]);
        };
        let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str).unwrap_or("").to_string();
        let mut errors = Vec::new();
        let key = text("/routing_key");
        if key.chars().count() != 32 {
            errors.push("Length of 'routing_key' is incorrect (should be 32 characters)".to_string());
        } else if key != PAGERDUTY_KEY {
            errors.push("Invalid routing key".to_string());
        }
        let action = text("/event_action");
        match action.as_str() {
            "trigger" => {
                for field in ["summary", "source"] {
                    if text(&format!("/payload/{field}")).trim().is_empty() {
                        errors.push(format!("'payload.{field}' is missing or blank"));
                    }
                }
                if text("/payload/summary").chars().count() > 1024 {
                    errors.push("'payload.summary' is too long (max 1024 characters)".into());
                }
                if !["critical", "error", "warning", "info"].contains(&text("/payload/severity").as_str()) {
                    errors.push("'payload.severity' is invalid (must be one of the following: 'critical', 'warning', 'error' or 'info')".into());
                }
            }
            "acknowledge" | "resolve" => {
                if text("/dedup_key").is_empty() {
                    errors.push("'dedup_key' is missing or blank".into());
                }
            }
            _ => errors.push(
                "'event_action' is invalid (must be one of the following: 'trigger', 'acknowledge' or 'resolve')"
                    .into(),
            ),
        }
        if text("/dedup_key").chars().count() > 255 {
            errors.push("'dedup_key' is too long (max 255 characters)".into());
        }
        if !errors.is_empty() {
            return invalid(errors);
        }
        let dedup_key = match text("/dedup_key") {
            key if key.is_empty() => format!("{:032x}", inbox.lock().unwrap().len()),
            key => key,
        };
        let body = json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key});
        (StatusCode::ACCEPTED, axum::Json(body)).into_response()
    }
    let inbox: Inbox = Arc::default();
    let app = Router::new().route("/v2/enqueue", post(enqueue)).with_state((inbox.clone(), behaviour));
    Fake { addr: http_server(app).await, inbox }
}

pub const SLACK_TOKEN: &str = "xoxb-1234-5678-tocsintest";

/// Channels the fake Slack workspace has, by name and by id.
const SLACK_CHANNELS: &[(&str, &str)] = &[("ops", "C0OPS00001"), ("alerts", "C0ALERTS02")];

/// Slack's `chat.postMessage`: bearer token, JSON body; HTTP 200 with
/// `{"ok": true, "channel", "ts", "message"}` or `{"ok": false, "error"}`;
/// 429 with `Retry-After` when rate limited.
pub async fn fake_slack(behaviour: Behaviour) -> Fake {
    async fn post_message(
        State((inbox, behaviour)): State<(Inbox, Behaviour)>,
        headers: HeaderMap,
        body: String,
    ) -> Response {
        record(&inbox, "/api/chat.postMessage", &headers, &body);
        let answer = |value: Value| (StatusCode::OK, axum::Json(value)).into_response();
        let error = |code: &str| answer(json!({"ok": false, "error": code}));
        match behaviour {
            Behaviour::Throttled => {
                let mut response =
                    (StatusCode::TOO_MANY_REQUESTS, axum::Json(json!({"ok": false, "error": "ratelimited"})))
                        .into_response();
                response.headers_mut().insert("retry-after", "30".parse().unwrap());
                return response;
            }
            Behaviour::Failing => return error("internal_error"),
            Behaviour::Normal => {}
        }
        match headers.get("authorization").and_then(|v| v.to_str().ok()) {
            None => return error("not_authed"),
            Some(auth) if auth != format!("Bearer {SLACK_TOKEN}") => return error("invalid_auth"),
            Some(_) => {}
        }
        let Ok(message) = serde_json::from_str::<Value>(&body) else {
            return error("invalid_json");
        };
        let requested = message["channel"].as_str().unwrap_or("");
        if requested.is_empty() {
            return error("channel_not_found");
        }
        let name = requested.trim_start_matches('#');
        let Some((_, id)) = SLACK_CHANNELS.iter().find(|(n, id)| *n == name || *id == name) else {
            return error("channel_not_found");
        };
        let has_text = message["text"].as_str().is_some_and(|t| !t.is_empty());
        if !has_text && message["blocks"].as_array().is_none_or(Vec::is_empty) {
            return error("no_text");
        }
        if let Some(blocks) = message.get("blocks")
            && !blocks.as_array().is_some_and(|b| b.iter().all(|b| b["type"].is_string()))
        {
            return error("invalid_blocks");
        }
        let ts = format!("1700000000.{:06}", inbox.lock().unwrap().len());
        answer(json!({
            "ok": true,
            "channel": id,
            "ts": ts,
            "message": {"type": "message", "text": message["text"], "bot_id": "B0TOCSIN", "ts": ts},
        }))
    }
    let inbox: Inbox = Arc::default();
    let app = Router::new().route("/api/chat.postMessage", post(post_message)).with_state((inbox.clone(), behaviour));
    Fake { addr: http_server(app).await, inbox }
}

pub const VONAGE_KEY: &str = "a1b2c3d4";
pub const VONAGE_SECRET: &str = "vonage-test-secret";

/// Vonage's SMS API: `POST /sms/json`, form-encoded, credentials in the
/// form; always HTTP 200 with `{"message-count": "1", "messages": [{"status":
/// "0", "message-id", ...}]}`, a non-zero `status` and `error-text` on
/// failure. Long texts are split into parts, one message each.
pub async fn fake_vonage(behaviour: Behaviour) -> Fake {
    async fn send(State((inbox, behaviour)): State<(Inbox, Behaviour)>, headers: HeaderMap, body: String) -> Response {
        record(&inbox, "/sms/json", &headers, &body);
        let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
        let failed = |status: &str, text: &str| {
            axum::Json(json!({"message-count": "1", "messages": [{"status": status, "error-text": text}]}))
                .into_response()
        };
        for field in ["api_key", "api_secret", "from", "to", "text"] {
            if form.get(field).is_none_or(String::is_empty) {
                return failed("2", &format!("Missing {field} param"));
            }
        }
        if form["api_key"] != VONAGE_KEY || form["api_secret"] != VONAGE_SECRET {
            return failed("4", "Bad Credentials");
        }
        match behaviour {
            Behaviour::Throttled => return failed("1", "Throughput Rate Exceeded - please wait [ 1000 ] and retry"),
            Behaviour::Failing => return failed("5", "Internal Error"),
            Behaviour::Normal => {}
        }
        let to = &form["to"];
        if !to.chars().all(|c| c.is_ascii_digit()) || to.len() < 7 {
            return failed("3", "Invalid to param");
        }
        if to.starts_with("99") {
            return failed("7", "Number barred");
        }
        let unicode = form.get("type").is_some_and(|t| t == "unicode");
        let chars = form["text"].chars().count();
        let (single, part) = if unicode { (70, 67) } else { (160, 153) };
        let parts = if chars <= single { 1 } else { chars.div_ceil(part) };
        let n = inbox.lock().unwrap().len();
        let messages: Vec<Value> = (0..parts)
            .map(|i| {
                json!({
                    "to": to,
                    "message-id": format!("0A{:014X}", n * 100 + i),
                    "status": "0",
                    "remaining-balance": "3.14159265",
                    "message-price": "0.03330000",
                    "network": "12345",
                    "client-ref": form.get("client-ref").cloned().unwrap_or_default(),
                })
            })
            .collect();
        axum::Json(json!({"message-count": parts.to_string(), "messages": messages})).into_response()
    }
    let inbox: Inbox = Arc::default();
    let app = Router::new().route("/sms/json", post(send)).with_state((inbox.clone(), behaviour));
    Fake { addr: http_server(app).await, inbox }
}

/// The fields of a form-encoded body.
pub fn form(body: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes()).into_owned().collect()
}
