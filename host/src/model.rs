//! The nouns of Tocsin as the API, the CLI and config-as-code files speak
//! them: checks, runs, plugins, tokens, audit entries, nodes.
//!
//! Times are unix milliseconds in storage and RFC 3339 text on the wire;
//! durations are `30s`-style text (or a number of seconds) on the wire.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::wire::{duration, timestamp, timestamp_opt};

/// Unix milliseconds.
pub type Millis = i64;

pub fn now_ms() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// What a user writes to define a check (API body, `apply` file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Unique name: lowercase letters, digits, `.`, `_` and `-`.
    #[schema(example = "homepage")]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The check plugin, `name` or `name@version`.
    #[schema(example = "http")]
    pub plugin: String,
    /// What to check: a URL, `host:port` or a name, as the plugin expects.
    #[schema(example = "https://example.com")]
    pub target: String,
    /// The plugin's configuration; it must pass the plugin's JSON Schema.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    /// How often to run, such as `30s` or `5m`.
    #[serde(default = "default_interval", with = "duration")]
    #[schema(value_type = String, example = "60s")]
    pub interval: Duration,
    /// How long one run may take; at most the interval. Default (or 0):
    /// 10s, or the interval if that is shorter.
    #[serde(default, with = "duration")]
    #[schema(value_type = String, example = "10s")]
    pub timeout: Duration,
    /// Locations to run from; empty means any.
    #[serde(default)]
    pub locations: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Hosts and address ranges the check may reach beyond its target
    /// (`api.example.com`, `*.example.com`, `10.0.0.0/8`). Non-public
    /// addresses, loopback included, are reachable only through a range here.
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub paused: bool,
    /// How many other locations must also see a failure before the check
    /// is down (0: believe the first).
    #[serde(default = "default_confirm")]
    pub confirm: u32,
    /// The escalation policy of its incidents; none: the policy named
    /// `default`, if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "default")]
    pub policy: Option<String>,
}

fn default_confirm() -> u32 {
    1
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}
pub fn default_interval() -> Duration {
    Duration::from_secs(60)
}
/// The timeout of a check that names none.
pub fn default_timeout(interval: Duration) -> Duration {
    Duration::from_secs(10).min(interval)
}

/// The state of a check, from its latest runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// No run yet.
    Pending,
    Up,
    Degraded,
    Down,
    /// The plugin could not produce a verdict (misconfiguration, a plugin
    /// failure): the target's state is unknown.
    Error,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pending => "pending",
            CheckStatus::Up => "up",
            CheckStatus::Degraded => "degraded",
            CheckStatus::Down => "down",
            CheckStatus::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => CheckStatus::Pending,
            "up" => CheckStatus::Up,
            "degraded" => CheckStatus::Degraded,
            "down" => CheckStatus::Down,
            "error" => CheckStatus::Error,
            _ => return None,
        })
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A check as stored, with its current state.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Check {
    pub id: i64,
    #[serde(flatten)]
    #[schema(schema_with = spec_fields)]
    pub spec: CheckSpec,
    pub status: CheckStatus,
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub status_since: Millis,
    #[serde(default, with = "timestamp_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_run_at: Option<Millis>,
    pub last_message: String,
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
}

/// A spec's fields as part of a [`Check`]: `CheckSpec`'s schema without its
/// `additionalProperties: false`, which is about requests (an unknown field
/// is refused) and would refuse the state a check is answered with.
fn spec_fields() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
    use utoipa::openapi::{RefOr, Schema};
    let mut schema = <CheckSpec as utoipa::PartialSchema>::schema();
    if let RefOr::T(Schema::Object(object)) = &mut schema {
        object.additional_properties = None;
    }
    schema
}

/// One run of a check: the verdict for one slot, or a confirmation retest.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Run {
    pub check: String,
    /// The scheduled slot this run belongs to.
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub slot: Millis,
    /// 0 for the slot's run, 1 and up for confirmation retests.
    pub seq: i64,
    /// `scheduled`, `confirmation` or `manual`.
    pub attempt: String,
    pub status: CheckStatus,
    /// For `error` runs: `timeout`, `memory_limit`, `panicked`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    pub message: String,
    pub metrics: Vec<Metric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_ms: Option<f64>,
    pub node: String,
    pub location: String,
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Millis,
    pub duration_ms: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub logs: Vec<tocsin_runtime::LogLine>,
    /// Network access the host refused the plugin during this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit: String,
}

/// Runs of one hour, aggregated.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RunHour {
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub hour: Millis,
    pub runs: i64,
    pub up: i64,
    pub degraded: i64,
    pub down: i64,
    pub errors: i64,
    /// Share of runs that were up or degraded, 0 to 1, not counting runs
    /// that ended in an error (those say nothing about the target).
    pub availability: Option<f64>,
    pub response_avg_ms: Option<f64>,
    pub response_min_ms: Option<f64>,
    pub response_max_ms: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PluginRecord {
    pub name: String,
    pub version: String,
    /// `check` or `notifier`.
    pub kind: String,
    pub sha256: String,
    pub description: String,
    #[schema(value_type = Object)]
    pub config_schema: serde_json::Value,
    pub size: i64,
    /// Shipped inside the `tocsin` binary (cannot be deleted or replaced).
    pub builtin: bool,
    #[serde(default, with = "timestamp_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<Millis>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything but tokens.
    Viewer,
    /// Also changes checks and plugins.
    Editor,
    /// Also manages tokens and nodes and reads the audit trail.
    Admin,
    /// A probe node: only the node protocol, nothing else.
    Node,
    /// An alert source (Alertmanager, a script): raises and resolves
    /// inbound alerts, nothing else.
    Alerts,
    /// A watchdog: reads, and pulls exactly its levers (its canary checks,
    /// evicting a node, revoking the scheduling lease).
    Watchdog,
}

impl Role {
    /// Viewer, editor and admin are ranked, each holding what the one
    /// below holds; the other roles are scoped to one integration.
    pub fn is_scoped(self) -> bool {
        matches!(self, Role::Node | Role::Alerts | Role::Watchdog)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
            Role::Node => "node",
            Role::Alerts => "alerts",
            Role::Watchdog => "watchdog",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "viewer" => Role::Viewer,
            "editor" => Role::Editor,
            "admin" => Role::Admin,
            "node" => Role::Node,
            "alerts" => Role::Alerts,
            "watchdog" => Role::Watchdog,
            _ => return None,
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    pub created_by: String,
    #[serde(default, with = "timestamp_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Millis>,
}

/// A token just created. The secret is shown this once and stored only
/// as a hash.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NewToken {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Position in the change feed.
    pub seq: i64,
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub at: Millis,
    /// The token that made the change: `name (id)`.
    pub actor: String,
    /// `check.create`, `plugin.delete`, `token.revoke`, ...
    pub action: String,
    pub object_kind: String,
    pub object_name: String,
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub location: String,
    pub version: String,
    /// `active`, `returning`, `suspect`, `dead`, `draining` or `evicted`.
    pub state: crate::cluster::NodeState,
    /// Checks it owns.
    pub load: i64,
    /// Its scheduled runs of slots in the last minute (database clock). Far
    /// below `expected_last_minute` on a node that heartbeats: it is wedged.
    pub runs_last_minute: i64,
    /// The scheduled runs a minute its checks call for.
    pub expected_last_minute: i64,
    /// What it said in its last heartbeat: runs in flight, results buffered.
    #[schema(value_type = Object)]
    pub stats: serde_json::Value,
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub registered_at: Millis,
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub last_heartbeat: Millis,
}

/// Wire formats for times and durations.
pub mod wire {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::Millis;

    pub fn format_ms(ms: Millis) -> String {
        let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
        humantime::format_rfc3339_millis(t).to_string()
    }

    pub fn parse_time(s: &str) -> Result<Millis, String> {
        // Any offset, as RFC 3339 (and the API's document) allows; humantime
        // takes only UTC, but also the looser forms people type.
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
            return Ok(t.timestamp_millis().max(0));
        }
        let t = humantime::parse_rfc3339_weak(s).map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))?;
        Ok(t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0))
    }

    /// `30s`, `5m`, `1h 30m`, or a number of seconds.
    pub fn parse_duration(s: &str) -> Result<Duration, String> {
        if let Ok(secs) = s.trim().parse::<f64>()
            && secs.is_finite()
            && secs >= 0.0
        {
            // Not `from_secs_f64`, which panics on a number too large.
            return Duration::try_from_secs_f64(secs).map_err(|_| format!("{s} seconds is too long a duration"));
        }
        humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?} is not a duration such as 30s or 5m: {e}"))
    }

    pub fn format_duration(d: Duration) -> String {
        humantime::format_duration(d).to_string().replace(' ', "")
    }

    pub mod timestamp {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&super::format_ms(*ms))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
            super::parse_time(&String::deserialize(d)?).map_err(serde::de::Error::custom)
        }
    }

    pub mod timestamp_opt {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => s.serialize_str(&super::format_ms(*ms)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| super::parse_time(&s).map_err(serde::de::Error::custom))
                .transpose()
        }
    }

    pub mod duration {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&super::format_duration(*d))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum Either {
                Seconds(f64),
                Text(String),
            }
            match Either::deserialize(d)? {
                Either::Seconds(secs) => super::parse_duration(&secs.to_string()),
                Either::Text(text) => super::parse_duration(&text),
            }
            .map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::wire::*;
    use super::*;

    #[test]
    fn durations_on_the_wire() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("1e300").is_err(), "too long, and no panic");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }

    #[test]
    fn specs_refuse_unknown_fields_and_take_defaults() {
        let spec: CheckSpec =
            serde_json::from_value(serde_json::json!({"name": "a", "plugin": "http", "target": "x"})).unwrap();
        assert_eq!(spec.interval, Duration::from_secs(60));
        assert_eq!(spec.config, serde_json::json!({}));
        let err = serde_json::from_value::<CheckSpec>(
            serde_json::json!({"name": "a", "plugin": "http", "target": "x", "intervall": 5}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `intervall`"), "{err}");
    }

    #[test]
    fn times_round_trip() {
        let ms = 1_700_000_000_123;
        assert_eq!(parse_time(&format_ms(ms)).unwrap(), ms);
        assert_eq!(parse_time("2023-11-14T23:13:20.123+01:00").unwrap(), ms);
    }
}
