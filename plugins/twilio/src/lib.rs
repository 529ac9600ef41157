//! The `twilio` notifier: a voice call that reads the alert and asks to
//! press 1 to accept or 2 to reject (Twilio posts the key press to the
//! notification's callback URL), or an SMS with accept and reject links.
//! Speaks Twilio's REST API: form-encoded POSTs with basic auth to
//! `/2010-04-01/Accounts/{sid}/Calls.json` and `/Messages.json`.

use base64::Engine as _;
use tocsin_plugin_sdk::prelude::*;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The account SID, `AC...`.
    #[schemars(regex(pattern = r"^AC[0-9a-zA-Z]{1,64}$"))]
    account_sid: String,
    auth_token: String,
    /// The Twilio number calls and messages come from, in E.164 (`+15550100`).
    #[schemars(regex(pattern = r"^\+[1-9][0-9]{1,14}$"))]
    from: String,
    /// The API's base URL (change it for a regional edge or a test double).
    #[serde(default = "default_api_base")]
    #[schemars(regex(pattern = r"^https?://"))]
    api_base: String,
    /// `voice`, `sms`, or `contact` to follow the contact's channel.
    #[serde(default)]
    mode: Mode,
    /// The Twilio voice that reads the alert, for example `Polly.Joanna`.
    #[serde(default)]
    voice: Option<String>,
}

#[derive(Clone, Copy, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Contact,
    Voice,
    Sms,
}

fn default_api_base() -> String {
    "https://api.twilio.com".into()
}

struct Twilio;

impl Notifier for Twilio {
    fn describe() -> PluginInfo {
        PluginInfo::notifier::<Config>(
            "twilio",
            env!("CARGO_PKG_VERSION"),
            "Calls (press 1 to accept, 2 to reject) or texts a contact through Twilio",
        )
    }

    fn deliver(config: String, n: Notification) -> Result<Delivered, Failure> {
        let config: Config = gateway_config(&config)?;
        let voice = match config.mode {
            Mode::Voice => true,
            Mode::Sms => false,
            Mode::Contact => n.contact.channel == "voice",
        };
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("To", &n.contact.address).append_pair("From", &config.from);
        let resource = if voice {
            form.append_pair("Twiml", &twiml(&n, config.voice.as_deref()));
            "Calls"
        } else {
            form.append_pair("Body", &short_text(&n));
            "Messages"
        };
        let url = format!(
            "{}/2010-04-01/Accounts/{}/{resource}.json",
            config.api_base.trim_end_matches('/'),
            config.account_sid
        );
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", config.account_sid, config.auth_token));
        let mut request = http::Request::new("POST", &url)
            .header("authorization", &format!("Basic {credentials}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form.finish());
        request.max_redirects = 0;
        request.max_body_bytes = 64 << 10;

        let result = http::send(&request);
        if let Some(mut failure) = Failure::from_http(&result, "Twilio") {
            // Twilio's error body: {"code": 21211, "message": "...", "status": 400}.
            if let Ok(response) = &result
                && let Ok(error) = serde_json::from_slice::<TwilioError>(&response.body)
            {
                failure.message = format!("Twilio error {} ({}): {}", error.code, response.status, error.message);
            }
            return Err(failure);
        }
        let response = result.expect("checked by from_http");
        let created: Created = serde_json::from_slice(&response.body).map_err(|e| Failure {
            message: format!("Twilio answered {} with an unexpected body: {e}", response.status),
            retry: false,
            failover: true,
        })?;
        let kind = if voice { "call" } else { "sms" };
        Ok(Delivered { message_id: created.sid, detail: format!("{kind} {}", created.status.unwrap_or_default()) })
    }
}

#[derive(Deserialize)]
struct Created {
    sid: String,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize)]
struct TwilioError {
    code: i64,
    message: String,
}

/// The call's script: read the alert twice, and take one key.
fn twiml(n: &Notification, voice: Option<&str>) -> String {
    let voice = voice.map(|v| format!(" voice=\"{}\"", xml_escape(v))).unwrap_or_default();
    let speech = xml_escape(&format!("Tocsin alert. {}. {}.", n.title, n.message));
    match &n.links.callback_url {
        Some(callback) => format!(
            "<Response><Gather numDigits=\"1\" timeout=\"10\" method=\"POST\" action=\"{}\">\
             <Say{voice} loop=\"2\">{speech} Press 1 to accept. Press 2 to reject.</Say></Gather>\
             <Say{voice}>No key was pressed. Goodbye.</Say></Response>",
            xml_escape(callback)
        ),
        None => format!("<Response><Say{voice} loop=\"2\">{speech}</Say></Response>"),
    }
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

export_notifier!(Twilio);
