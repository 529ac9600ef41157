//! The `dns` check: query the target name for a record type and compare the
//! answer with what is expected.

use tocsin_plugin_sdk::prelude::*;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The record type to ask for.
    #[serde(default = "default_type")]
    #[schemars(regex(pattern = r"^(A|AAAA|CNAME|MX|NS|TXT|SRV|SOA|CAA|PTR)$"))]
    record_type: String,
    /// Answers that must all be present, in presentation format
    /// (`192.0.2.1`, `10 mail.example.com.`). Without any, at least one
    /// record must come back.
    #[serde(default)]
    expected: Vec<String>,
    /// Require the answer to be exactly `expected`, nothing more.
    #[serde(default)]
    exact: bool,
    /// The response code that counts as up.
    #[serde(default = "default_rcode")]
    #[schemars(regex(pattern = r"^(NOERROR|NXDOMAIN|SERVFAIL|REFUSED)$"))]
    response_code: String,
    /// Name server to ask (`ip` or `ip:port`); default: the node's resolver.
    #[serde(default)]
    server: Option<String>,
}

fn default_type() -> String {
    "A".into()
}
fn default_rcode() -> String {
    "NOERROR".into()
}

struct DnsCheck;

impl Check for DnsCheck {
    fn describe() -> PluginInfo {
        PluginInfo::check::<Config>(
            "dns",
            env!("CARGO_PKG_VERSION"),
            "Resolves a name and checks the records and response code",
        )
    }

    fn run(request: Request) -> Result<Outcome, String> {
        let config: Config = request.config()?;
        let query = dns::Query {
            name: request.target.clone(),
            record_type: config.record_type.clone(),
            server: config.server.clone(),
            timeout_ms: 0,
        };
        let answer = match dns::resolve(&query) {
            Ok(answer) => answer,
            Err(e) if e.is_target_failure() => return Ok(Outcome::down(e.describe())),
            Err(e) => return Err(e.describe()),
        };
        Ok(judge(&config, &request.target, &answer)
            .metric("query_time", answer.elapsed_ms, "ms")
            .metric("records", answer.records.len() as f64, "")
            .metric("min_ttl", answer.min_ttl.into(), "s"))
    }
}

fn judge(config: &Config, name: &str, answer: &dns::Answer) -> Outcome {
    let what = format!("{name} {}", config.record_type);
    if answer.response_code != config.response_code {
        return Outcome::down(format!("{what}: {} (expected {})", answer.response_code, config.response_code));
    }
    let got: Vec<String> = answer.records.iter().map(|r| normalize(r)).collect();
    let shown = if got.is_empty() { "no records".to_string() } else { answer.records.join(", ") };
    if config.expected.is_empty() {
        if got.is_empty() && config.response_code == "NOERROR" {
            return Outcome::down(format!("{what}: no records"));
        }
        return Outcome::up(format!("{what}: {shown}"));
    }
    let missing: Vec<&String> = config.expected.iter().filter(|e| !got.contains(&normalize(e))).collect();
    if !missing.is_empty() {
        let missing: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        return Outcome::down(format!("{what}: missing {} (got {shown})", missing.join(", ")));
    }
    if config.exact && got.len() != config.expected.len() {
        return Outcome::down(format!("{what}: expected exactly {}, got {shown}", config.expected.join(", ")));
    }
    Outcome::up(format!("{what}: {shown}"))
}

/// Names compare without case and without the trailing dot; TXT data
/// without its quotes.
fn normalize(record: &str) -> String {
    record.trim().trim_matches('"').trim_end_matches('.').to_ascii_lowercase()
}

export_check!(DnsCheck);
