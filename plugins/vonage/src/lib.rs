//! The `vonage` notifier: an SMS with the alert and its accept and reject
//! links, through the Vonage (formerly Nexmo) SMS API: a form-encoded
//! `POST {api_base}/sms/json` with the account's key and secret. With
//! Twilio it gives SMS a second, independent provider to fail over to.
//!
//! The SMS API has no voice calls: a contact on the `voice` channel gets an
//! SMS from this gateway (route voice to Twilio first if a call matters).
//!
//! Numbers go without the `+` of E.164 (`14155550100`). Text that GSM-7
//! cannot carry is sent as `type=unicode`. Vonage splits a long text into
//! parts; each part has its own message id, and the delivery's message id
//! is the first one.
//!
//! Vonage answers HTTP 200 with a status per part; `"0"` is success.
//! Failure mapping: status 1 (throttled) and 10 (too many connections) are
//! retried and fail over; 5 (internal error) is retried and fails over;
//! any other status (2 missing parameter, 3 invalid parameter, 4 bad
//! credentials, 6 unroutable, 7 number barred, 8 account barred, 9 out of
//! credit, ...) is not retried and fails over, with Vonage's `error-text`.

use tocsin_plugin_sdk::prelude::*;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    api_key: String,
    api_secret: String,
    /// The sender: a Vonage number (`14155550100`, a leading `+` is
    /// dropped) or, where the destination allows it, an alphanumeric
    /// sender id of up to 11 characters.
    #[schemars(regex(pattern = r"^(\+?[0-9]{1,15}|[A-Za-z0-9 ]{1,11})$"))]
    from: String,
    /// The API's base URL (change it for a test double).
    #[serde(default = "default_api_base")]
    #[schemars(regex(pattern = r"^https?://"))]
    api_base: String,
}

fn default_api_base() -> String {
    "https://rest.nexmo.com".into()
}

/// Vonage's limit on `client-ref`.
const MAX_CLIENT_REF: usize = 100;

struct Vonage;

impl Notifier for Vonage {
    fn describe() -> PluginInfo {
        PluginInfo::notifier::<Config>(
            "vonage",
            env!("CARGO_PKG_VERSION"),
            "Texts a contact through the Vonage (Nexmo) SMS API; voice contacts get an SMS",
        )
    }

    fn deliver(config: String, n: Notification) -> Result<Delivered, Failure> {
        let config: Config = gateway_config(&config)?;
        let Some(to) = msisdn(&n.contact.address) else {
            // Twilio would refuse it too: the contact's number is wrong.
            return Err(Failure {
                message: format!("{:?} is not a phone number in E.164 (the contact's address)", n.contact.address),
                retry: false,
                failover: false,
            });
        };
        let text = short_text(&n);
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("api_key", &config.api_key)
            .append_pair("api_secret", &config.api_secret)
            .append_pair("from", config.from.trim().trim_start_matches('+'))
            .append_pair("to", &to)
            .append_pair("text", &text)
            .append_pair("client-ref", &n.id.chars().take(MAX_CLIENT_REF).collect::<String>());
        if !is_gsm7(&text) {
            form.append_pair("type", "unicode");
        }
        let url = format!("{}/sms/json", config.api_base.trim_end_matches('/'));
        let mut request = http::Request::new("POST", &url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form.finish());
        request.max_redirects = 0;
        request.max_body_bytes = 64 << 10;

        let result = http::send(&request);
        if let Some(failure) = Failure::from_http(&result, "Vonage") {
            return Err(failure);
        }
        let response = result.expect("checked by from_http");
        let answer: Answer = serde_json::from_slice(&response.body).map_err(|e| Failure {
            message: format!("Vonage answered {} with an unexpected body: {e}", response.status),
            retry: false,
            failover: true,
        })?;
        if let Some(failed) = answer.messages.iter().find(|m| m.status != "0") {
            let (retry, failover) = classify(&failed.status);
            let text = failed.error_text.as_deref().unwrap_or("no error-text");
            return Err(Failure { message: format!("Vonage status {}: {text}", failed.status), retry, failover });
        }
        let Some(message_id) = answer.messages.iter().find_map(|m| m.message_id.clone()) else {
            return Err(Failure {
                message: format!("Vonage answered {} without a message id", response.status),
                retry: false,
                failover: true,
            });
        };
        let parts = answer.messages.len();
        let detail = if parts == 1 { format!("sms to {to}") } else { format!("sms to {to} in {parts} parts") };
        Ok(Delivered { message_id, detail })
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    messages: Vec<Part>,
}

#[derive(Deserialize)]
struct Part {
    status: String,
    #[serde(rename = "message-id", default)]
    message_id: Option<String>,
    #[serde(rename = "error-text", default)]
    error_text: Option<String>,
}

/// (retry, failover) for a non-zero status.
fn classify(status: &str) -> (bool, bool) {
    match status {
        // Throttled, too many concurrent connections (a moment later the
        // same request passes), and Vonage's internal error.
        "1" | "10" | "5" => (true, true),
        _ => (false, true),
    }
}

/// `+1 (415) 555-0100` → `14155550100`: digits only, as Vonage wants.
fn msisdn(address: &str) -> Option<String> {
    let address = address.trim();
    let digits: String = address
        .strip_prefix('+')
        .unwrap_or(address)
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    (!digits.is_empty() && digits.len() <= 15 && digits.chars().all(|c| c.is_ascii_digit())).then_some(digits)
}

/// Whether GSM 03.38 (its basic set and the extension table) can carry
/// `text`; otherwise the SMS must be UCS-2 (`type=unicode`).
fn is_gsm7(text: &str) -> bool {
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXTENSION: &str = "\u{c}^{}\\[~]|€";
    text.chars().all(|c| BASIC.contains(c) || EXTENSION.contains(c))
}

export_notifier!(Vonage);
