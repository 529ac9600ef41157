//! The `pagerduty` notifier: raises, acknowledges and resolves PagerDuty
//! alerts through the Events API v2 (`POST {api_base}/v2/enqueue`).
//!
//! The incident's id is the `dedup_key`, so every notification about one
//! Tocsin incident lands on the same PagerDuty alert: `triggered`,
//! `escalated` and `test` send `trigger` (PagerDuty folds repeats into the
//! open alert), `acknowledged` sends `acknowledge` and `resolved` sends
//! `resolve`. Only `trigger` carries a payload; PagerDuty ignores it on the
//! other two. Who gets paged is PagerDuty's business (its escalation
//! policy), so the contact's address is not used.
//!
//! PagerDuty answers 202 `{"status":"success","dedup_key":...}`; the
//! dedup key is the message id. Failure mapping: 400 (an invalid event,
//! PagerDuty's `errors` quoted) is not retried and fails over; 429 (rate
//! limited), 5xx and network errors are retried and fail over.

use tocsin_plugin_sdk::prelude::*;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The integration key of an Events API v2 integration (32 characters).
    #[schemars(length(min = 32, max = 32))]
    routing_key: String,
    /// The API's base URL (change it for the EU service region or a test
    /// double).
    #[serde(default = "default_api_base")]
    #[schemars(regex(pattern = r"^https?://"))]
    api_base: String,
}

fn default_api_base() -> String {
    "https://events.pagerduty.com".into()
}

/// PagerDuty's limits on the fields this plugin fills.
const MAX_SUMMARY_CHARS: usize = 1024;
const MAX_SOURCE_CHARS: usize = 255;
const MAX_DEDUP_KEY_CHARS: usize = 255;

struct PagerDuty;

impl Notifier for PagerDuty {
    fn describe() -> PluginInfo {
        PluginInfo::notifier::<Config>(
            "pagerduty",
            env!("CARGO_PKG_VERSION"),
            "Triggers, acknowledges and resolves PagerDuty alerts (Events API v2)",
        )
    }

    fn deliver(config: String, n: Notification) -> Result<Delivered, Failure> {
        let config: Config = gateway_config(&config)?;
        let url = format!("{}/v2/enqueue", config.api_base.trim_end_matches('/'));
        let mut request =
            http::Request::new("POST", &url).json(&event(&config, &n)).header("accept", "application/json");
        request.max_redirects = 0;
        request.max_body_bytes = 64 << 10;

        let result = http::send(&request);
        if let Some(mut failure) = Failure::from_http(&result, "PagerDuty") {
            // PagerDuty's error body: {"status": "invalid event",
            // "message": "Event object is invalid", "errors": [...]}.
            if let Ok(response) = &result
                && let Ok(error) = serde_json::from_slice::<Answer>(&response.body)
            {
                let mut message = format!("PagerDuty answered {}: {}", response.status, error.message);
                if !error.errors.is_empty() {
                    message.push_str(&format!(" ({})", error.errors.join("; ")));
                }
                failure.message = message;
            }
            return Err(failure);
        }
        let response = result.expect("checked by from_http");
        let answer: Answer = serde_json::from_slice(&response.body).map_err(|e| Failure {
            message: format!("PagerDuty answered {} with an unexpected body: {e}", response.status),
            retry: false,
            failover: true,
        })?;
        if answer.status != "success" {
            return Err(Failure {
                message: format!(
                    "PagerDuty answered {} with status {:?}: {}",
                    response.status, answer.status, answer.message
                ),
                retry: false,
                failover: true,
            });
        }
        Ok(Delivered {
            message_id: answer.dedup_key.unwrap_or_else(|| dedup_key(&n)),
            detail: format!("{}: {}", action(n.event), answer.message),
        })
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    dedup_key: Option<String>,
    #[serde(default)]
    errors: Vec<String>,
}

fn action(event: Event) -> &'static str {
    match event {
        Event::Triggered | Event::Escalated | Event::Test => "trigger",
        Event::Acknowledged => "acknowledge",
        Event::Resolved => "resolve",
    }
}

/// PagerDuty's four severities from Tocsin's free-form one; an unknown
/// severity pages as `critical`, since paging too loudly beats missing it.
fn severity(severity: &str) -> &'static str {
    match severity.trim().to_ascii_lowercase().as_str() {
        "error" | "err" | "major" | "high" => "error",
        "warning" | "warn" | "minor" | "medium" | "degraded" => "warning",
        "info" | "informational" | "notice" | "low" | "ok" => "info",
        _ => "critical",
    }
}

fn dedup_key(n: &Notification) -> String {
    let key = if n.incident.is_empty() { &n.id } else { &n.incident };
    truncate(key, MAX_DEDUP_KEY_CHARS)
}

fn event(config: &Config, n: &Notification) -> serde_json::Value {
    let mut event = serde_json::json!({
        "routing_key": config.routing_key,
        "event_action": action(n.event),
        "dedup_key": dedup_key(n),
    });
    if action(n.event) != "trigger" {
        return event;
    }
    let mut summary = n.title.split_whitespace().collect::<Vec<_>>().join(" ");
    if matches!(n.event, Event::Test) {
        summary = format!("[test] {summary}");
    }
    let source = if n.source.trim().is_empty() { "tocsin" } else { n.source.trim() };
    let links = serde_json::json!({
        "incident": n.links.incident_url,
        "accept": n.links.accept_url,
        "reject": n.links.reject_url,
    });
    event["payload"] = serde_json::json!({
        "summary": truncate(&summary, MAX_SUMMARY_CHARS),
        "source": truncate(source, MAX_SOURCE_CHARS),
        "severity": severity(&n.severity),
        "custom_details": {
            "message": n.message,
            "event": event_name(n.event),
            "severity": n.severity,
            "links": links,
        },
    });
    event["client"] = "Tocsin".into();
    if let Some(url) = &n.links.incident_url {
        event["client_url"] = url.as_str().into();
        event["links"] = serde_json::json!([{ "href": url, "text": "View the incident in Tocsin" }]);
    }
    event
}

/// At most `max` characters, with an ellipsis when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

export_notifier!(PagerDuty);
