//! The vocabulary of alerting, as the API and the database see it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::Millis;
use crate::model::wire::{duration, timestamp, timestamp_opt};

/// How a contact can be reached.
pub const CHANNELS: &[&str] = &["voice", "sms", "chat", "email", "webhook"];

/// A person on call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// Lowercase letters, digits, `.`, `_` and `-`.
    #[schema(example = "ada")]
    pub name: String,
    #[serde(default)]
    #[schema(example = "Ada Lovelace")]
    pub full_name: String,
    /// In the order they are used when a step names the contact alone.
    pub channels: Vec<ContactChannel>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactChannel {
    /// `voice`, `sms`, `chat`, `email` or `webhook`.
    #[schema(example = "voice")]
    pub channel: String,
    /// A phone number in E.164 (`+15550100`), an email address, a chat
    /// channel, a URL: what the channel needs.
    #[schema(example = "+15550100")]
    pub address: String,
}

/// Who an escalation calls, in order, until someone accepts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[schema(example = "primary")]
    pub name: String,
    /// At least one.
    pub steps: Vec<Step>,
    /// How many times to go through the steps again after the last (0-9).
    #[serde(default)]
    pub repeat: u32,
    /// Notified once every pass is done and nobody accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Step>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Contacts to notify: `ada` (every channel of hers) or `ada:voice`.
    #[schema(example = json!(["ada:voice"]))]
    pub notify: Vec<String>,
    /// How long to wait for an answer before the next step.
    #[serde(with = "duration")]
    #[schema(value_type = String, example = "5m")]
    pub timeout: Duration,
}

/// An instance of a notifier plugin with its configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    #[schema(example = "twilio-main")]
    pub name: String,
    /// The notifier plugin, `name` or `name@version`.
    #[schema(example = "twilio")]
    pub plugin: String,
    /// Checked against the plugin's schema. Secrets in it are shown as
    /// `***` when read back.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    /// Hosts the plugin may reach besides those its config names.
    #[serde(default)]
    pub allow: Vec<String>,
    /// How long one delivery may take.
    #[serde(default = "default_gateway_timeout", with = "duration")]
    #[schema(value_type = String, example = "10s")]
    pub timeout: Duration,
}

fn default_gateway_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Which gateways deliver a channel, in precedence order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[schema(example = "sms")]
    pub name: String,
    #[schema(example = "sms")]
    pub channel: String,
    /// Alert sources this route is for, as globs (`check:api-*`,
    /// `alertmanager:*`); empty: any source. A route naming sources wins
    /// over one that does not.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Primary first; a failed delivery fails over to the next.
    pub gateways: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IncidentState {
    Triggered,
    Acknowledged,
    Resolved,
}

impl IncidentState {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Triggered => "triggered",
            IncidentState::Acknowledged => "acknowledged",
            IncidentState::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "triggered" => IncidentState::Triggered,
            "acknowledged" => IncidentState::Acknowledged,
            "resolved" => IncidentState::Resolved,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Incident {
    pub id: i64,
    /// `check:<id>` or `<source>:<key>`: a new alert with the same key
    /// updates this incident (or reopens it within the reopen window).
    pub dedup_key: String,
    /// `check:<name>`, or the source of an inbound alert.
    pub source: String,
    pub title: String,
    pub message: String,
    pub severity: String,
    pub policy: Option<String>,
    pub state: IncidentState,
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub opened_at: Millis,
    #[serde(default, with = "timestamp_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub acknowledged_at: Option<Millis>,
    /// Who accepted it.
    pub owner: Option<String>,
    #[serde(default, with = "timestamp_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub resolved_at: Option<Millis>,
    pub resolved_by: Option<String>,
    /// How many times it was reopened.
    pub reopened: i64,
    /// Where its escalation stands: `waiting` (step, pass), `accepted`,
    /// `exhausted`, `suppressed`, `stopped`, or none.
    pub escalation: Option<String>,
}

/// One line of an incident's timeline.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Event {
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub at: Millis,
    /// `opened`, `run`, `confirmation`, `escalated`, `notified`,
    /// `delivered`, `delivery_failed`, `failed_over`, `accepted`,
    /// `rejected`, `timed_out`, `looped`, `exhausted`, `suppressed`,
    /// `acknowledged`, `resolved`, `reopened`, `recovering`.
    pub kind: String,
    pub actor: Option<String>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// Per-gateway delivery totals.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct GatewayTotals {
    pub gateway: String,
    pub sent: i64,
    /// Attempts that failed and will be retried.
    pub failed: i64,
    /// Attempts that failed and went to the next gateway.
    pub failed_over: i64,
    /// Notifications no gateway could deliver in the end.
    pub given_up: i64,
    pub latency_avg_ms: Option<f64>,
    pub latency_max_ms: Option<i64>,
}

/// Notifications held back for a while, for the sources that match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    pub name: String,
    /// Globs of alert sources (`check:db-*`); empty: everything.
    #[serde(default)]
    pub sources: Vec<String>,
    /// A one-off window: from..until.
    #[serde(default, with = "timestamp_opt", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub starts_at: Option<Millis>,
    #[serde(default, with = "timestamp_opt", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<Millis>,
    /// A recurring window: when it starts, as cron (UTC), such as
    /// `0 2 * * SUN`, and how long it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, with = "duration_opt", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "2h")]
    pub duration: Option<Duration>,
    #[serde(default)]
    pub comment: String,
}

/// Notifications held back until `ends_at`, for the sources that match.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Silence {
    #[serde(default)]
    pub id: i64,
    pub sources: Vec<String>,
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: Millis,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub created_by: String,
}

/// An alert raised by another system.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// What raised it, such as `billing` or `prometheus`.
    #[schema(example = "billing")]
    pub source: String,
    /// Alerts with the same source and key are one incident.
    #[schema(example = "queue-backlog")]
    pub key: String,
    /// `firing` (default) or `resolved`.
    #[serde(default = "firing")]
    pub status: String,
    /// One line; required when firing.
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub details: String,
    /// `critical` (default), `error`, `warning` or `info`.
    #[serde(default = "critical")]
    pub severity: String,
    /// The escalation policy; default: the one named `default`.
    #[serde(default)]
    pub policy: Option<String>,
}

fn firing() -> String {
    "firing".into()
}

fn critical() -> String {
    "critical".into()
}

pub const SEVERITIES: &[&str] = &["critical", "error", "warning", "info"];

mod duration_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&crate::model::wire::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| crate::model::wire::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}
