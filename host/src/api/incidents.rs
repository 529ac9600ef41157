//! `/api/v1/incidents`: list, show with the whole timeline, accept
//! (acknowledge), reject on a contact's behalf, resolve; and
//! `/api/v1/gateways/totals`.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{ApiError, AppState, Body, OptionalBody, Params, Path, Shared};
use crate::alerting::model::{Event, GatewayTotals, Incident, IncidentState};
use crate::alerting::respond::{self, Answer, RespondError};
use crate::alerting::{incidents, outbox};
use crate::auth::Caller;
use crate::model::now_ms;
use crate::store;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_incidents))
        .routes(routes!(show_incident))
        .routes(routes!(accept_incident))
        .routes(routes!(reject_incident))
        .routes(routes!(resolve_incident))
        .routes(routes!(gateway_totals))
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    dedup_key: String,
    source: String,
    check_id: Option<i64>,
    title: String,
    message: String,
    severity: String,
    policy: Option<String>,
    state: String,
    opened_at: i64,
    acknowledged_at: Option<i64>,
    owner: Option<String>,
    resolved_at: Option<i64>,
    resolved_by: Option<String>,
    reopened: i64,
    escalation: Option<String>,
    step: Option<i64>,
    pass: Option<i64>,
}

const SELECT: &str = "SELECT i.id, i.dedup_key, i.source, i.check_id, i.title, i.message, i.severity, i.policy, i.state, \
    i.opened_at, i.acknowledged_at, i.owner, i.resolved_at, i.resolved_by, i.reopened, e.state AS escalation, \
    e.step, e.pass FROM incidents i LEFT JOIN escalations e ON e.incident_id = i.id";

impl Row {
    fn into_incident(self) -> Incident {
        let escalation = self.escalation.map(|e| match (e.as_str(), self.step, self.pass) {
            ("waiting", Some(step), Some(pass)) => format!("waiting (step {}, pass {})", step + 1, pass + 1),
            _ => e,
        });
        Incident {
            id: self.id,
            dedup_key: self.dedup_key,
            source: self.source,
            title: self.title,
            message: self.message,
            severity: self.severity,
            policy: self.policy,
            state: IncidentState::parse(&self.state).unwrap_or(IncidentState::Triggered),
            opened_at: self.opened_at,
            acknowledged_at: self.acknowledged_at,
            owner: self.owner,
            resolved_at: self.resolved_at,
            resolved_by: self.resolved_by,
            reopened: self.reopened,
            escalation,
        }
    }
}

async fn load_row(db: &store::Db, id: i64) -> Result<Row, ApiError> {
    let sql = format!("{SELECT} WHERE i.id = $1");
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(db.reader()).await?;
    row.ok_or_else(|| ApiError::not_found(format!("incident {id} not found")))
}

pub async fn load(db: &store::Db, id: i64) -> Result<Incident, ApiError> {
    load_row(db, id).await.map(Row::into_incident)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `triggered`, `acknowledged`, `resolved`, or `open` (the first two).
    state: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/incidents", tag = "incidents", params(ListQuery),
    responses((status = 200, description = "Newest first", body = Vec<Incident>), (status = 400, description = "Bad filter", body = ErrorBody)))]
async fn list_incidents(
    State(state): Shared,
    Params(q): Params<ListQuery>,
) -> Result<axum::Json<Vec<Incident>>, ApiError> {
    let filter = match q.state.as_deref() {
        None => "",
        Some("open") => " WHERE i.state <> 'resolved'",
        Some("triggered") => " WHERE i.state = 'triggered'",
        Some("acknowledged") => " WHERE i.state = 'acknowledged'",
        Some("resolved") => " WHERE i.state = 'resolved'",
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("state {other:?}: use triggered, acknowledged, resolved or open"),
            ));
        }
    };
    let limit = super::page_limit(q.limit, 100, super::MAX_PAGE)?;
    let sql = format!("{SELECT}{filter} ORDER BY i.id DESC LIMIT $1");
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(state.db.reader()).await?;
    Ok(axum::Json(rows.into_iter().map(Row::into_incident).collect()))
}

/// An incident with everything that happened to it.
#[derive(Serialize, ToSchema)]
pub struct IncidentDetail {
    #[serde(flatten)]
    pub incident: Incident,
    /// Oldest first: changes, escalation steps, notifications, deliveries,
    /// failovers, answers.
    pub timeline: Vec<Event>,
    /// The check's runs (scheduled and confirmation retests) while it was
    /// open, oldest first (checks only; at most 500).
    #[schema(value_type = Vec<Object>)]
    pub runs: Vec<serde_json::Value>,
}

#[utoipa::path(get, path = "/api/v1/incidents/{id}", tag = "incidents", params(("id" = i64, Path)),
    responses((status = 200, description = "OK", body = IncidentDetail), (status = 404, description = "Not found", body = ErrorBody)))]
async fn show_incident(State(state): Shared, Path(id): Path<i64>) -> Result<axum::Json<IncidentDetail>, ApiError> {
    let row = load_row(&state.db, id).await?;
    let check = row.check_id;
    let incident = row.into_incident();
    let events: Vec<(i64, String, Option<String>, String)> =
        sqlx::query_as("SELECT at, kind, actor, detail FROM incident_events WHERE incident_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(state.db.reader())
            .await?;
    let timeline = events
        .into_iter()
        .map(|(at, kind, actor, detail)| Event {
            at,
            kind,
            actor,
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
        })
        .collect();
    let mut runs = Vec::new();
    if let Some(check) = check {
        let until = incident.resolved_at.unwrap_or_else(now_ms);
        let rows: Vec<(i64, i64, String, String, String, String, String)> = sqlx::query_as(
            "SELECT slot, seq, attempt, status, message, node, location FROM runs \
             WHERE check_id = $1 AND started_at >= $2 AND started_at <= $3 ORDER BY slot, seq LIMIT 500",
        )
        .bind(check)
        .bind(incident.opened_at - 5 * 60_000)
        .bind(until)
        .fetch_all(state.db.reader())
        .await?;
        runs = rows
            .into_iter()
            .map(|(slot, seq, attempt, status, message, node, location)| {
                serde_json::json!({"slot": crate::model::wire::format_ms(slot), "seq": seq, "attempt": attempt,
                                   "status": status, "message": message, "node": node, "location": location})
            })
            .collect();
    }
    Ok(axum::Json(IncidentDetail { incident, timeline, runs }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// The contact answering; default for accept: the caller's token name.
    #[serde(default)]
    pub contact: Option<String>,
}

fn answer_error(e: RespondError) -> ApiError {
    match e {
        RespondError::NotFound(_) => ApiError::not_found(e.to_string()),
        RespondError::Used(_) | RespondError::Closed(_) => {
            ApiError::new(axum::http::StatusCode::CONFLICT, "conflict", e.to_string())
        }
        RespondError::Store(s) => s.into(),
    }
}

/// Accept (acknowledge) an incident: it is the contact's (or the caller's),
/// and its escalation stops.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/accept", tag = "incidents", params(("id" = i64, Path)),
    request_body = Option<AnswerRequest>,
    responses((status = 200, description = "Accepted", body = Incident), (status = 404, description = "Not found", body = ErrorBody),
              (status = 409, description = "Resolved, or accepted already", body = ErrorBody)))]
async fn accept_incident(
    State(state): Shared,
    caller: Caller,
    Path(id): Path<i64>,
    OptionalBody(request): OptionalBody<AnswerRequest>,
) -> Result<axum::Json<Incident>, ApiError> {
    // The body is optional: `{"contact": ...}`, or nothing to accept as the caller.
    let request = request.unwrap_or_default();
    let incident = load(&state.db, id).await?;
    match &request.contact {
        Some(contact) => {
            let notification = respond::latest_for(&state.db, id, contact)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("contact {contact} was not notified of incident {id}")))?;
            respond::respond(&state.db, notification, Answer::Accept, &format!("api ({})", caller.name))
                .await
                .map_err(answer_error)?;
        }
        None => {
            if incident.state != IncidentState::Triggered {
                return Err(ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    "conflict",
                    format!("incident {id} is {}", incident.state.as_str()),
                ));
            }
            let mut tx = state.db.writer().begin().await?;
            incidents::acknowledge(&mut tx, id, &caller.name, "api", now_ms()).await?;
            tx.commit().await?;
        }
    }
    Ok(axum::Json(load(&state.db, id).await?))
}

/// Reject on behalf of a contact: their step may end at once.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/reject", tag = "incidents", params(("id" = i64, Path)),
    request_body = AnswerRequest,
    responses((status = 200, description = "Rejected", body = Incident), (status = 400, description = "No contact named", body = ErrorBody),
              (status = 404, description = "Not found", body = ErrorBody), (status = 409, description = "Answered already", body = ErrorBody)))]
async fn reject_incident(
    State(state): Shared,
    caller: Caller,
    Path(id): Path<i64>,
    Body(request): Body<AnswerRequest>,
) -> Result<axum::Json<Incident>, ApiError> {
    load(&state.db, id).await?;
    let contact = request
        .contact
        .ok_or_else(|| ApiError::bad_request("invalid_body", "contact: name the contact who rejects"))?;
    let notification = respond::latest_for(&state.db, id, &contact)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("contact {contact} was not notified of incident {id}")))?;
    respond::respond(&state.db, notification, Answer::Reject, &format!("api ({})", caller.name))
        .await
        .map_err(answer_error)?;
    state.alerting.wake.notify_one();
    Ok(axum::Json(load(&state.db, id).await?))
}

#[utoipa::path(post, path = "/api/v1/incidents/{id}/resolve", tag = "incidents", params(("id" = i64, Path)),
    responses((status = 200, description = "Resolved", body = Incident), (status = 404, description = "Not found", body = ErrorBody),
              (status = 409, description = "Resolved already", body = ErrorBody)))]
async fn resolve_incident(
    State(state): Shared,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<axum::Json<Incident>, ApiError> {
    load(&state.db, id).await?;
    let mut tx = state.db.writer().begin().await?;
    if !incidents::resolve(&mut tx, id, &caller.name, "resolved by hand", now_ms()).await? {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "conflict",
            format!("incident {id} is already resolved"),
        ));
    }
    tx.commit().await?;
    Ok(axum::Json(load(&state.db, id).await?))
}

#[utoipa::path(get, path = "/api/v1/gateways/totals", tag = "alerting",
    responses((status = 200, description = "Per gateway: sent, failed, failed over, given up, latency", body = Vec<GatewayTotals>)))]
async fn gateway_totals(State(state): Shared) -> Result<axum::Json<Vec<GatewayTotals>>, ApiError> {
    Ok(axum::Json(outbox::totals(&state.db).await?))
}
