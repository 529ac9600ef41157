//! The `tcp` check: connect to `host:port` (optionally over TLS), optionally
//! send a greeting and expect a reply containing some text.

use tocsin_plugin_sdk::prelude::*;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Text to send once connected (JSON escapes such as `\r\n` work).
    #[serde(default)]
    send: Option<String>,
    /// Text the reply must contain; without it, connecting is enough.
    #[serde(default)]
    expect: Option<String>,
    /// Speak TLS after connecting.
    #[serde(default)]
    tls: bool,
    /// Verify the server's certificate (with `tls`).
    #[serde(default = "yes")]
    verify_tls: bool,
    /// How much of the reply to read while looking for `expect`.
    #[serde(default = "default_max_bytes")]
    #[schemars(range(min = 1, max = 1048576))]
    max_bytes: u32,
}

fn yes() -> bool {
    true
}
fn default_max_bytes() -> u32 {
    64 << 10
}

struct TcpCheck;

impl Check for TcpCheck {
    fn describe() -> PluginInfo {
        PluginInfo::check::<Config>(
            "tcp",
            env!("CARGO_PKG_VERSION"),
            "Connects to host:port, optionally sends text and expects a reply",
        )
    }

    fn run(request: Request) -> Result<Outcome, String> {
        let config: Config = request.config()?;
        let (host, port) = split_target(&request.target)?;
        let started = std::time::Instant::now();
        let options =
            tcp::ConnectOptions { timeout_ms: 0, tls: config.tls, verify_tls: config.verify_tls, server_name: None };
        let conn = match tcp::connect(&host, port, &options) {
            Ok(conn) => conn,
            Err(e) if e.is_target_failure() => return Ok(Outcome::down(e.describe())),
            Err(e) => return Err(e.describe()),
        };
        let info = conn.info();
        let metrics = |outcome: Outcome| {
            outcome
                .metric("response_time", started.elapsed().as_secs_f64() * 1000.0, "ms")
                .metric("dns_time", info.dns_ms, "ms")
                .metric("connect_time", info.connect_ms, "ms")
                .metric("tls_time", info.tls_ms, "ms")
        };
        if let Some(greeting) = &config.send
            && let Err(e) = conn.send(greeting.as_bytes())
        {
            return Ok(metrics(Outcome::down(e.describe())));
        }
        let Some(expected) = &config.expect else {
            return Ok(metrics(Outcome::up(format!("connected to {} in {:.0} ms", info.remote_addr, info.connect_ms))));
        };
        let mut reply = Vec::new();
        loop {
            let text = String::from_utf8_lossy(&reply);
            if text.contains(expected.as_str()) {
                return Ok(metrics(Outcome::up(format!("{} answered {:?}", info.remote_addr, first_line(&text)))));
            }
            if reply.len() >= config.max_bytes as usize {
                return Ok(metrics(Outcome::down(format!(
                    "{expected:?} not in the first {} bytes of the reply: {:?}",
                    reply.len(),
                    first_line(&text)
                ))));
            }
            match conn.receive(config.max_bytes - reply.len() as u32, 0) {
                Ok(chunk) if chunk.is_empty() => {
                    return Ok(metrics(Outcome::down(format!(
                        "the connection closed before {expected:?} arrived; got {:?}",
                        first_line(&text)
                    ))));
                }
                Ok(chunk) => reply.extend_from_slice(&chunk),
                Err(e) => {
                    return Ok(metrics(Outcome::down(format!("{}; got {:?}", e.describe(), first_line(&text)))));
                }
            }
        }
    }
}

/// `host:port` or `[v6]:port`.
fn split_target(target: &str) -> Result<(String, u16), String> {
    let (host, port) = target.rsplit_once(':').ok_or_else(|| format!("target {target:?} must be host:port"))?;
    let port = port.parse::<u16>().map_err(|_| format!("target {target:?}: {port:?} is not a port"))?;
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_string(), port))
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").chars().take(200).collect()
}

export_check!(TcpCheck);
