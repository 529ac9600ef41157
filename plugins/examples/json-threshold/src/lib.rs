//! An example of a custom check, as `docs/writing-plugins.md` builds it:
//! GET a JSON API and compare one number in it with thresholds, for
//! example the depth of a job queue.

use tocsin_plugin_sdk::prelude::*;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// JSON pointer to the number, for example `/queue/depth`.
    pointer: String,
    /// Above this the check is degraded.
    warn_above: f64,
    /// Above this the check is down.
    down_above: f64,
}

struct JsonThreshold;

impl Check for JsonThreshold {
    fn describe() -> PluginInfo {
        PluginInfo::check::<Config>(
            "json-threshold",
            env!("CARGO_PKG_VERSION"),
            "Reads a number from a JSON API and compares it with thresholds",
        )
    }

    fn run(request: Request) -> Result<Outcome, String> {
        let config: Config = request.config()?;
        let response = match http::send(&http::Request::get(&request.target)) {
            Ok(response) => response,
            Err(e) if e.is_target_failure() => return Ok(Outcome::down(e.describe())),
            Err(e) => return Err(e.describe()),
        };
        let body: serde_json::Value = match serde_json::from_slice(&response.body) {
            Ok(body) => body,
            Err(e) => {
                return Ok(Outcome::down(format!("{} is not JSON: {e}", request.target)));
            }
        };
        let Some(value) = body.pointer(&config.pointer).and_then(|v| v.as_f64()) else {
            return Ok(Outcome::down(format!("no number at {}", config.pointer)));
        };
        let outcome = if value > config.down_above {
            Outcome::down(format!("{} is {value}, above {}", config.pointer, config.down_above))
        } else if value > config.warn_above {
            Outcome::degraded(format!("{} is {value}, above {}", config.pointer, config.warn_above))
        } else {
            Outcome::up(format!("{} is {value}", config.pointer))
        };
        Ok(outcome.metric("value", value, "").metric("response_time", response.timings.total_ms, "ms"))
    }
}

export_check!(JsonThreshold);
