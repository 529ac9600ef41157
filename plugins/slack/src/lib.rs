//! The `slack` notifier: posts the notification to a Slack channel with a
//! bot token, through the Web API's `chat.postMessage`
//! (`POST {api_base}/api/chat.postMessage`, `Authorization: Bearer ...`).
//!
//! The channel is the gateway's `channel` or, when it has none, the
//! contact's address (a contact on the `chat` channel: `#ops`, a channel
//! id such as `C0123456789`, or a user id for a direct message). The
//! message has a plain mrkdwn `text` (what notifications and old clients
//! show) with the accept, reject and incident links as `<url|Accept>`, and
//! the same as blocks with link buttons.
//!
//! Slack answers HTTP 200 for most errors, with `{"ok": false, "error":
//! "..."}`. Failure mapping: `ratelimited`, `internal_error`, `fatal_error`,
//! `service_unavailable` and `request_timeout` (and HTTP 429, with its
//! `Retry-After`, and 5xx) are retried and fail over; any other error
//! (`invalid_auth`, `not_authed`, `channel_not_found`, `not_in_channel`,
//! `account_inactive`, `token_revoked`, ...) is not retried and fails
//! over. The message id is `channel:ts`, which is what Slack needs to
//! update or thread on the message later.

use tocsin_plugin_sdk::prelude::*;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// A bot token (`xoxb-...`) with the `chat:write` scope.
    #[schemars(regex(pattern = r"^xox[a-z]-"))]
    token: String,
    /// Where to post (`#ops`, `C0123456789`); without it, the contact's
    /// address.
    #[serde(default)]
    channel: Option<String>,
    /// Also send Block Kit blocks (a section and link buttons); `text`
    /// alone when false.
    #[serde(default = "yes")]
    blocks: bool,
    /// The API's base URL (change it for a test double).
    #[serde(default = "default_api_base")]
    #[schemars(regex(pattern = r"^https?://"))]
    api_base: String,
}

fn yes() -> bool {
    true
}

fn default_api_base() -> String {
    "https://slack.com".into()
}

/// Slack's limit on a section's text.
const MAX_SECTION_CHARS: usize = 3000;

/// Errors that say "not now" rather than "not like this".
const TRANSIENT_ERRORS: &[&str] =
    &["ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"];

struct Slack;

impl Notifier for Slack {
    fn describe() -> PluginInfo {
        PluginInfo::notifier::<Config>(
            "slack",
            env!("CARGO_PKG_VERSION"),
            "Posts notifications to a Slack channel with a bot token (chat.postMessage)",
        )
    }

    fn deliver(config: String, n: Notification) -> Result<Delivered, Failure> {
        let config: Config = gateway_config(&config)?;
        let channel = config.channel.clone().unwrap_or_else(|| n.contact.address.trim().to_string());
        if channel.is_empty() {
            return Err(Failure {
                message: "Slack: no channel: the gateway has no `channel` and the contact no address".into(),
                retry: false,
                failover: true,
            });
        }
        let mut message = serde_json::json!({
            "channel": channel,
            "text": text(&n),
            // Slack would otherwise fetch the links to preview them, and
            // these are one-click accept and reject links.
            "unfurl_links": false,
            "unfurl_media": false,
        });
        if config.blocks {
            message["blocks"] = blocks(&n);
        }
        let url = format!("{}/api/chat.postMessage", config.api_base.trim_end_matches('/'));
        let mut request = http::Request::new("POST", &url)
            .header("authorization", &format!("Bearer {}", config.token))
            // With the charset, Slack does not warn `missing_charset`.
            .header("content-type", "application/json; charset=utf-8")
            .body(serde_json::to_vec(&message).unwrap_or_default());
        request.max_redirects = 0;
        request.max_body_bytes = 256 << 10;

        let result = http::send(&request);
        if let Some(mut failure) = Failure::from_http(&result, "Slack") {
            if let Ok(response) = &result {
                let error = serde_json::from_slice::<Answer>(&response.body).ok().and_then(|a| a.error);
                let mut text = format!("Slack answered {}", response.status);
                if let Some(error) = error {
                    text.push_str(&format!(": {error}"));
                }
                if let Some(after) = response.header("retry-after") {
                    text.push_str(&format!(" (retry after {after} s)"));
                }
                failure.message = text;
            }
            return Err(failure);
        }
        let response = result.expect("checked by from_http");
        let answer: Answer = serde_json::from_slice(&response.body).map_err(|e| Failure {
            message: format!("Slack answered {} with an unexpected body: {e}", response.status),
            retry: false,
            failover: true,
        })?;
        if !answer.ok {
            let error = answer.error.unwrap_or_else(|| "unknown_error".into());
            return Err(Failure {
                message: format!("Slack error {error} (posting to {channel})"),
                retry: TRANSIENT_ERRORS.contains(&error.as_str()),
                failover: true,
            });
        }
        let (Some(ts), Some(posted_in)) = (answer.ts, answer.channel) else {
            return Err(Failure {
                message: "Slack answered ok without the message's channel and ts".into(),
                retry: false,
                failover: true,
            });
        };
        let mut detail = format!("posted to {posted_in}");
        if let Some(warning) = answer.warning {
            detail.push_str(&format!(" (Slack warns: {warning})"));
        }
        Ok(Delivered { message_id: format!("{posted_in}:{ts}"), detail })
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warning: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    ts: Option<String>,
}

fn links(n: &Notification) -> Vec<(&'static str, &str)> {
    [("Accept", &n.links.accept_url), ("Reject", &n.links.reject_url), ("Incident", &n.links.incident_url)]
        .into_iter()
        .filter_map(|(label, url)| url.as_deref().map(|u| (label, u)))
        .collect()
}

/// `*[TRIGGERED]* title` and the message, escaped for mrkdwn.
fn headline(n: &Notification) -> String {
    let mut text = format!("*[{}]* {}", event_name(n.event).to_uppercase(), escape(n.title.trim()));
    if !n.message.trim().is_empty() {
        text.push('\n');
        text.push_str(&escape(n.message.trim_end()));
    }
    text
}

fn text(n: &Notification) -> String {
    let mut text = headline(n);
    let links: Vec<String> = links(n).iter().map(|(label, url)| format!("<{}|{label}>", link_url(url))).collect();
    if !links.is_empty() {
        text.push('\n');
        text.push_str(&links.join(" · "));
    }
    text
}

fn blocks(n: &Notification) -> serde_json::Value {
    let mut headline: String = headline(n).chars().take(MAX_SECTION_CHARS).collect();
    if headline.is_empty() {
        headline.push(' ');
    }
    let mut context = vec![format!("Severity: {}", escape(&n.severity)), format!("Incident: {}", escape(&n.incident))];
    if !n.source.is_empty() {
        context.insert(0, format!("Source: {}", escape(&n.source)));
    }
    let mut blocks = vec![
        serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": headline}}),
        serde_json::json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context.join(" · ")}]}),
    ];
    let buttons: Vec<serde_json::Value> = links(n)
        .into_iter()
        .map(|(label, url)| {
            let mut button = serde_json::json!({
                "type": "button",
                "text": {"type": "plain_text", "text": label},
                "url": url,
                "action_id": label.to_ascii_lowercase(),
            });
            match label {
                "Accept" => button["style"] = "primary".into(),
                "Reject" => button["style"] = "danger".into(),
                _ => {}
            }
            button
        })
        .collect();
    if !buttons.is_empty() {
        blocks.push(serde_json::json!({"type": "actions", "elements": buttons}));
    }
    serde_json::Value::Array(blocks)
}

/// Slack's mrkdwn treats `&`, `<` and `>` as markup; these three are to be
/// escaped, nothing else.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A URL inside `<url|label>` cannot hold `|` or `>`.
fn link_url(url: &str) -> String {
    url.replace('|', "%7C").replace('>', "%3E")
}

export_notifier!(Slack);
