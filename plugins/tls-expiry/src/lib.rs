//! The `tls-expiry` check: handshake with the target and judge its
//! certificate: days left, trusted chain, matching name.

use tocsin_plugin_sdk::prelude::*;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Fewer days left than this is degraded.
    #[serde(default = "default_warn")]
    #[schemars(range(min = 0, max = 3650))]
    warn_days: u32,
    /// Fewer days left than this is down.
    #[serde(default = "default_critical")]
    #[schemars(range(min = 0, max = 3650))]
    critical_days: u32,
    /// An untrusted chain (unknown issuer, self-signed) is down.
    #[serde(default = "yes")]
    verify_chain: bool,
    /// A certificate not valid for the name is down.
    #[serde(default = "yes")]
    verify_hostname: bool,
    /// The name to send (SNI) and to verify; default: the target's host.
    #[serde(default)]
    server_name: Option<String>,
}

fn default_warn() -> u32 {
    14
}
fn default_critical() -> u32 {
    3
}
fn yes() -> bool {
    true
}

struct TlsExpiry;

impl Check for TlsExpiry {
    fn describe() -> PluginInfo {
        PluginInfo::check::<Config>(
            "tls-expiry",
            env!("CARGO_PKG_VERSION"),
            "Checks a TLS certificate: days until expiry, trusted chain, matching name",
        )
    }

    fn run(request: Request) -> Result<Outcome, String> {
        let config: Config = request.config()?;
        let (host, port) = split_target(&request.target)?;
        let options = tls::InspectOptions { server_name: config.server_name.clone(), timeout_ms: 0 };
        let report = match tls::inspect(&host, port, &options) {
            Ok(report) => report,
            Err(e) if e.is_target_failure() => return Ok(Outcome::down(e.describe())),
            Err(e) => return Err(e.describe()),
        };
        let Some(leaf) = report.chain.first() else {
            return Ok(Outcome::down(format!("{host}:{port} sent no certificate")));
        };
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let days_left = (leaf.not_after - now) as f64 / 86_400.0;
        let expires = date(leaf.not_after);
        let outcome = if days_left < 0.0 {
            Outcome::down(format!("certificate expired on {expires}"))
        } else if config.verify_chain && !report.trusted && !expired_only(&report) {
            Outcome::down(format!("certificate is not trusted: {}", report.verify_error.clone().unwrap_or_default()))
        } else if config.verify_hostname && !report.name_matches {
            let name = config.server_name.as_deref().unwrap_or(&host);
            Outcome::down(format!("certificate is not valid for {name} (it covers {})", leaf.sans.join(", ")))
        } else if days_left < config.critical_days as f64 {
            Outcome::down(format!("certificate expires in {days_left:.1} days, on {expires}"))
        } else if days_left < config.warn_days as f64 {
            Outcome::degraded(format!("certificate expires in {days_left:.1} days, on {expires}"))
        } else {
            Outcome::up(format!("certificate valid until {expires} ({:.0} days), issued by {}", days_left, leaf.issuer))
        };
        Ok(outcome.metric("days_left", days_left, "days").metric("handshake_time", report.handshake_ms, "ms"))
    }
}

/// Expiry is judged by the days left, not reported twice as distrust.
fn expired_only(report: &tls::Report) -> bool {
    report.verify_error.as_deref().is_some_and(|e| e.contains("expired"))
}

/// `host`, `host:port`, `[v6]:port` or an `https://` URL; the port
/// defaults to 443.
fn split_target(target: &str) -> Result<(String, u16), String> {
    let rest = target.split_once("://").map(|(_, r)| r).unwrap_or(target);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| format!("target {target:?} has an unclosed ["))?;
        let port = after.strip_prefix(':').map(parse_port).transpose()?.unwrap_or(443);
        return Ok((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_string(), parse_port(port)?)),
        None => Ok((authority.to_string(), 443)),
    }
}

fn parse_port(port: &str) -> Result<u16, String> {
    port.parse().map_err(|_| format!("{port:?} is not a port"))
}

fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix).map(|t| t.date().to_string()).unwrap_or_else(|_| unix.to_string())
}

export_check!(TlsExpiry);
