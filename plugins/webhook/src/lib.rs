//! The `webhook` notifier: POSTs the notification as JSON to a URL, either
//! Tocsin's own format or a Slack-compatible `{"text": ...}` payload.

use std::collections::BTreeMap;

use tocsin_plugin_sdk::prelude::*;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Where to send the notification.
    #[schemars(extend("format" = "uri"), regex(pattern = r"^https?://"))]
    url: String,
    /// Extra request headers (authentication, for example).
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// `tocsin`: the whole notification as JSON; `slack`: a Slack-compatible
    /// message (also understood by Mattermost, Rocket.Chat and others).
    #[serde(default)]
    format: Format,
    /// Verify the server's TLS certificate.
    #[serde(default = "yes")]
    verify_tls: bool,
}

#[derive(Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Tocsin,
    Slack,
}

fn yes() -> bool {
    true
}

struct Webhook;

impl Notifier for Webhook {
    fn describe() -> PluginInfo {
        PluginInfo::notifier::<Config>("webhook", env!("CARGO_PKG_VERSION"), "POSTs notifications as JSON to a URL")
    }

    fn deliver(config: String, n: Notification) -> Result<Delivered, Failure> {
        let config: Config = gateway_config(&config)?;
        let body = match config.format {
            Format::Tocsin => tocsin_payload(&n),
            Format::Slack => slack_payload(&n),
        };
        let mut request = http::Request::new("POST", &config.url).json(&body).header("idempotency-key", &n.id);
        request.verify_tls = config.verify_tls;
        request.max_redirects = 0;
        request.max_body_bytes = 16 << 10;
        for (name, value) in &config.headers {
            request = request.header(name, value);
        }
        let result = http::send(&request);
        if let Some(failure) = Failure::from_http(&result, "the webhook") {
            return Err(failure);
        }
        let response = result.expect("checked by from_http");
        let message_id = response
            .header("x-request-id")
            .map(str::to_string)
            .or_else(|| {
                serde_json::from_slice::<serde_json::Value>(&response.body)
                    .ok()?
                    .get("id")?
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| n.id.clone());
        Ok(Delivered { message_id, detail: format!("{} in {:.0} ms", response.status, response.timings.total_ms) })
    }
}

fn tocsin_payload(n: &Notification) -> serde_json::Value {
    serde_json::json!({
        "id": n.id,
        "incident": n.incident,
        "event": event_name(n.event),
        "severity": n.severity,
        "title": n.title,
        "message": n.message,
        "source": n.source,
        "contact": { "name": n.contact.name, "channel": n.contact.channel, "address": n.contact.address },
        "links": {
            "incident": n.links.incident_url,
            "accept": n.links.accept_url,
            "reject": n.links.reject_url,
        },
    })
}

fn slack_payload(n: &Notification) -> serde_json::Value {
    let mut text = format!("*[{}]* {}\n{}", event_name(n.event).to_uppercase(), n.title, n.message);
    let links: Vec<String> =
        [("Accept", &n.links.accept_url), ("Reject", &n.links.reject_url), ("Incident", &n.links.incident_url)]
            .into_iter()
            .filter_map(|(label, url)| url.as_ref().map(|u| format!("<{u}|{label}>")))
            .collect();
    if !links.is_empty() {
        text.push('\n');
        text.push_str(&links.join(" · "));
    }
    serde_json::json!({ "text": text })
}

export_notifier!(Webhook);
