//! The `http` check: one request to the target URL, judged by its status,
//! body (keyword, regular expression, JSON path) and response time.

use std::collections::BTreeMap;

use serde_json_path::JsonPath;
use tocsin_plugin_sdk::prelude::*;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Request method.
    #[serde(default)]
    method: Method,
    /// Request headers.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Request body.
    #[serde(default)]
    body: Option<String>,
    /// Status codes that count as up: a code (`200`), a class (`2xx`) or a
    /// range (`200-299`).
    #[serde(default = "default_status")]
    #[schemars(inner(regex(pattern = r"^([1-5][0-9][0-9]|[1-5]xx|[1-5][0-9][0-9]-[1-5][0-9][0-9])$")))]
    expected_status: Vec<String>,
    /// Text the body must contain.
    #[serde(default)]
    keyword: Option<String>,
    /// Text the body must not contain.
    #[serde(default)]
    keyword_absent: Option<String>,
    /// A regular expression the body must match.
    #[serde(default)]
    #[schemars(extend("format" = "regex"))]
    regex: Option<String>,
    /// An assertion on a JSON body.
    #[serde(default)]
    json: Option<JsonAssertion>,
    /// Slower than this many milliseconds (whole exchange) is degraded.
    #[serde(default)]
    #[schemars(range(min = 1))]
    max_response_ms: Option<u32>,
    /// Follow redirects (up to `max_redirects`).
    #[serde(default = "yes")]
    follow_redirects: bool,
    #[serde(default = "default_redirects")]
    #[schemars(range(max = 20))]
    max_redirects: u8,
    /// Verify the server's TLS certificate.
    #[serde(default = "yes")]
    verify_tls: bool,
    /// Send `X-Tocsin-Check`, `X-Tocsin-Slot`, `X-Tocsin-Node`,
    /// `X-Tocsin-Location` and `X-Tocsin-Attempt`, so the target can tell
    /// which probe it sees.
    #[serde(default)]
    context_headers: bool,
    /// How much of the body to read for the keyword, regex and JSON checks.
    #[serde(default = "default_max_body")]
    #[schemars(range(min = 1, max = 4194304))]
    max_body_bytes: u32,
}

#[derive(Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
enum Method {
    #[default]
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

/// `path` (RFC 9535 JSONPath) must select something; with `equals`, the
/// first value it selects must equal it.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct JsonAssertion {
    path: String,
    #[serde(default)]
    equals: Option<serde_json::Value>,
}

fn default_status() -> Vec<String> {
    vec!["200-299".into()]
}
fn yes() -> bool {
    true
}
fn default_redirects() -> u8 {
    10
}
fn default_max_body() -> u32 {
    1 << 20
}

struct HttpCheck;

impl Check for HttpCheck {
    fn describe() -> PluginInfo {
        PluginInfo::check::<Config>(
            "http",
            env!("CARGO_PKG_VERSION"),
            "Requests a URL and checks its status, body and response time",
        )
    }

    fn run(request: Request) -> Result<Outcome, String> {
        let config: Config = request.config()?;
        let method = serde_json::to_value(&config.method).ok();
        let method = method.as_ref().and_then(|m| m.as_str()).unwrap_or("GET");
        let mut req = http::Request::new(method, &request.target);
        req.headers = config.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if config.context_headers {
            let c = &request.context;
            let attempt = match c.attempt {
                Attempt::Scheduled => "scheduled",
                Attempt::Confirmation => "confirmation",
                Attempt::Manual => "manual",
            };
            for (name, value) in [
                ("x-tocsin-check", c.check.clone()),
                ("x-tocsin-slot", c.slot.to_string()),
                ("x-tocsin-node", c.node.clone()),
                ("x-tocsin-location", c.location.clone()),
                ("x-tocsin-attempt", attempt.to_string()),
            ] {
                req.headers.push((name.to_string(), value));
            }
        }
        req.body = config.body.clone().unwrap_or_default().into_bytes();
        req.max_redirects = if config.follow_redirects { config.max_redirects } else { 0 };
        req.verify_tls = config.verify_tls;
        req.max_body_bytes = config.max_body_bytes;

        let response = match http::send(&req) {
            Ok(response) => response,
            Err(e) if e.is_target_failure() => return Ok(Outcome::down(e.describe())),
            // A refusal or a malformed request is a configuration problem,
            // not the target being down.
            Err(e) => return Err(e.describe()),
        };
        Ok(judge(&config, &response))
    }
}

fn judge(config: &Config, response: &http::Response) -> Outcome {
    let t = &response.timings;
    let with_metrics = |outcome: Outcome| {
        outcome
            .metric("response_time", t.total_ms, "ms")
            .metric("dns_time", t.dns_ms, "ms")
            .metric("connect_time", t.connect_ms, "ms")
            .metric("tls_time", t.tls_ms, "ms")
            .metric("first_byte_time", t.first_byte_ms, "ms")
            .metric("status_code", response.status.into(), "")
            .metric("body_size", response.body.len() as f64, "bytes")
            .metric("redirects", response.redirects.into(), "")
    };
    let summary = format!("{} in {:.0} ms", response.status, t.total_ms);

    if !config.expected_status.iter().any(|spec| status_matches(spec, response.status)) {
        return with_metrics(Outcome::down(format!(
            "status {} is not one of {} ({:.0} ms)",
            response.status,
            config.expected_status.join(", "),
            t.total_ms
        )));
    }
    let text = response.text();
    let cut =
        if response.body_truncated { format!(" in the first {} bytes", response.body.len()) } else { String::new() };
    if let Some(keyword) = &config.keyword
        && !text.contains(keyword.as_str())
    {
        return with_metrics(Outcome::down(format!("{summary}, but {keyword:?} is not in the body{cut}")));
    }
    if let Some(absent) = &config.keyword_absent
        && text.contains(absent.as_str())
    {
        return with_metrics(Outcome::down(format!("{summary}, but the body contains {absent:?}")));
    }
    if let Some(pattern) = &config.regex {
        match regex::Regex::new(pattern) {
            Err(e) => {
                return with_metrics(Outcome::down(format!("regex {pattern:?} is invalid: {e}")));
            }
            Ok(re) if !re.is_match(&text) => {
                return with_metrics(Outcome::down(format!("{summary}, but the body does not match /{pattern}/{cut}")));
            }
            Ok(_) => {}
        }
    }
    if let Some(assertion) = &config.json
        && let Err(why) = check_json(assertion, &text)
    {
        return with_metrics(Outcome::down(format!("{summary}, but {why}")));
    }
    if let Some(max) = config.max_response_ms
        && t.total_ms > max as f64
    {
        return with_metrics(Outcome::degraded(format!("{summary}, slower than {max} ms")));
    }
    with_metrics(Outcome::up(summary))
}

fn status_matches(spec: &str, status: u16) -> bool {
    if let Some((low, high)) = spec.split_once('-') {
        return matches!((low.parse::<u16>(), high.parse::<u16>()), (Ok(l), Ok(h)) if (l..=h).contains(&status));
    }
    if let Some(class) = spec.strip_suffix("xx") {
        return class.parse::<u16>().is_ok_and(|c| status / 100 == c);
    }
    spec.parse::<u16>().is_ok_and(|code| code == status)
}

fn check_json(assertion: &JsonAssertion, text: &str) -> Result<(), String> {
    let path =
        JsonPath::parse(&assertion.path).map_err(|e| format!("JSON path {:?} is invalid: {e}", assertion.path))?;
    let body: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("the body is not JSON ({e})"))?;
    let found = path.query(&body).all();
    let Some(first) = found.first() else {
        return Err(format!("{} selects nothing", assertion.path));
    };
    match &assertion.equals {
        Some(expected) if *first != expected => Err(format!("{} is {first}, expected {expected}", assertion.path)),
        _ => Ok(()),
    }
}

export_check!(HttpCheck);
