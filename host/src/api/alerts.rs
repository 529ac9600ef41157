//! Inbound alerts: `POST /api/v1/alerts` (Tocsin's JSON) and
//! `POST /api/v1/alerts/alertmanager` (Prometheus Alertmanager's webhook
//! payload, as Alertmanager sends it). Both open, update and resolve
//! incidents by deduplication key, with the same life cycle as checks'.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{ApiError, AppState, Body, Params, Shared};
use crate::alerting::incidents::{self, Opened, Trigger};
use crate::alerting::model::{Alert, SEVERITIES};
use crate::model::now_ms;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(post_alert)).routes(routes!(post_alertmanager))
}

/// What an alert did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertOutcome {
    pub key: String,
    /// `opened`, `reopened`, `updated`, `resolved`, or `unknown` (a
    /// resolution for an incident that is not open).
    pub result: String,
    pub incident: Option<i64>,
}

fn bad(message: String) -> ApiError {
    ApiError::bad_request("invalid_alert", message)
}

/// The longest `source` and `key`, in bytes.
pub(super) const MAX_KEY: usize = 200;
pub(super) const STATUSES: &[&str] = &["firing", "resolved"];

fn validate(alert: &Alert) -> Result<(), ApiError> {
    let field_ok = |s: &str| !s.trim().is_empty() && s.len() <= MAX_KEY;
    if !field_ok(&alert.source) {
        return Err(bad(format!("source: 1 to {MAX_KEY} characters")));
    }
    if !field_ok(&alert.key) {
        return Err(bad(format!("key: 1 to {MAX_KEY} characters")));
    }
    if !STATUSES.contains(&alert.status.as_str()) {
        return Err(bad(format!("status {:?}: use firing or resolved", alert.status)));
    }
    if alert.status == "firing" && alert.summary.trim().is_empty() {
        return Err(bad("summary: a firing alert needs a one-line summary".into()));
    }
    if !SEVERITIES.contains(&alert.severity.as_str()) {
        return Err(bad(format!("severity {:?}: use one of {}", alert.severity, SEVERITIES.join(", "))));
    }
    Ok(())
}

/// Applies validated alerts in one transaction.
async fn apply(state: &AppState, alerts: &[Alert]) -> Result<Vec<AlertOutcome>, ApiError> {
    let now = now_ms();
    let mut tx = state.db.writer().begin().await?;
    let mut outcomes = Vec::with_capacity(alerts.len());
    for alert in alerts {
        let dedup_key = format!("{}:{}", alert.source, alert.key);
        if alert.status == "resolved" {
            let open: Option<i64> =
                sqlx::query_scalar("SELECT id FROM incidents WHERE dedup_key = $1 AND state <> 'resolved'")
                    .bind(&dedup_key)
                    .fetch_optional(&mut *tx)
                    .await?;
            let result = match open {
                Some(id) => {
                    incidents::resolve(&mut tx, id, &alert.source, "the alert resolved", now).await?;
                    "resolved"
                }
                None => "unknown",
            };
            outcomes.push(AlertOutcome { key: alert.key.clone(), result: result.into(), incident: open });
            continue;
        }
        let trigger = Trigger {
            dedup_key,
            source: alert.source.clone(),
            check_id: None,
            title: alert.summary.clone(),
            message: alert.details.clone(),
            severity: alert.severity.clone(),
            policy: alert.policy.clone(),
        };
        let (id, opened) = incidents::trigger(&mut tx, &state.alerting.rules, &trigger, now).await?;
        let result = match opened {
            Opened::New => "opened",
            Opened::Reopened => "reopened",
            Opened::Existing => "updated",
        };
        outcomes.push(AlertOutcome { key: alert.key.clone(), result: result.into(), incident: Some(id) });
    }
    tx.commit().await?;
    state.alerting.wake.notify_one();
    Ok(outcomes)
}

/// Raise (or resolve) an alert.
#[utoipa::path(post, path = "/api/v1/alerts", tag = "incidents", request_body = Alert,
    responses((status = 200, description = "Applied", body = AlertOutcome), (status = 400, description = "Refused: the error names what is wrong", body = ErrorBody)))]
async fn post_alert(State(state): Shared, Body(alert): Body<Alert>) -> Result<axum::Json<AlertOutcome>, ApiError> {
    validate(&alert)?;
    let mut outcomes = apply(&state, std::slice::from_ref(&alert)).await?;
    Ok(axum::Json(outcomes.remove(0)))
}

/// Alertmanager's webhook payload (version 4).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerPayload {
    pub version: String,
    #[serde(default)]
    pub group_key: String,
    pub status: String,
    #[serde(default)]
    pub receiver: String,
    pub alerts: Vec<AlertmanagerAlert>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerAlert {
    pub status: String,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub generator_url: String,
    /// Alertmanager's identity of the alert (its label set).
    #[serde(default)]
    pub fingerprint: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertmanagerQuery {
    /// The escalation policy for these alerts (default: the `tocsin_policy`
    /// label, then the policy named `default`).
    policy: Option<String>,
}

/// Alertmanager's webhook receiver: point a `webhook_configs` URL here,
/// with the token as `http_config.authorization.credentials`.
#[utoipa::path(post, path = "/api/v1/alerts/alertmanager", tag = "incidents", params(AlertmanagerQuery),
    request_body = AlertmanagerPayload,
    responses((status = 200, description = "Applied, one outcome per alert", body = Vec<AlertOutcome>),
              (status = 400, description = "Not an Alertmanager payload", body = ErrorBody)))]
async fn post_alertmanager(
    State(state): Shared,
    Params(q): Params<AlertmanagerQuery>,
    Body(payload): Body<AlertmanagerPayload>,
) -> Result<axum::Json<Vec<AlertOutcome>>, ApiError> {
    if payload.version != "4" {
        return Err(bad(format!("version {:?}: only Alertmanager's webhook version 4 is understood", payload.version)));
    }
    let mut alerts = Vec::with_capacity(payload.alerts.len());
    for (i, a) in payload.alerts.iter().enumerate() {
        let name = a.labels.get("alertname").cloned().unwrap_or_default();
        if name.is_empty() {
            return Err(bad(format!("alerts[{i}]: no alertname label")));
        }
        // The fingerprint is Alertmanager's identity of an alert; older
        // versions lack it, and then the sorted labels are.
        let key = if a.fingerprint.is_empty() {
            a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
        } else {
            a.fingerprint.clone()
        };
        let summary = a.annotations.get("summary").cloned().unwrap_or_else(|| {
            let instance = a.labels.get("instance").map(|i| format!(" on {i}")).unwrap_or_default();
            format!("{name}{instance}")
        });
        let mut details = a.annotations.get("description").cloned().unwrap_or_default();
        if !a.generator_url.is_empty() {
            details.push_str(&format!("\n{}", a.generator_url));
        }
        let severity = a
            .labels
            .get("severity")
            .map(|s| s.to_ascii_lowercase())
            .filter(|s| SEVERITIES.contains(&s.as_str()))
            .unwrap_or_else(|| "critical".into());
        let alert = Alert {
            source: "alertmanager".into(),
            key,
            status: if a.status == "resolved" { "resolved".into() } else { "firing".into() },
            summary,
            details: details.trim().to_string(),
            severity,
            policy: q.policy.clone().or_else(|| a.labels.get("tocsin_policy").cloned()),
        };
        validate(&alert).map_err(|e| bad(format!("alerts[{i}]: {}", e.message)))?;
        alerts.push(alert);
    }
    tracing::info!(receiver = %payload.receiver, group = %payload.group_key, alerts = alerts.len(), status = %payload.status, "alerts from Alertmanager");
    Ok(axum::Json(apply(&state, &alerts).await?))
}
