//! `/api/v1/silences`: hold back notifications for matching sources until
//! a time (incidents and runs are still recorded). Editors may silence.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{ApiError, AppState, Body, Path, Shared};
use crate::alerting::model::Silence;
use crate::alerting::suppress;
use crate::auth::Caller;
use crate::model::now_ms;
use crate::store::audit::{self, Change};

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(list_silences, create_silence)).routes(routes!(delete_silence))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// Globs of alert sources (`check:db-*`); at least one (`*` for all).
    pub sources: Vec<String>,
    /// Until when, RFC 3339.
    #[serde(with = "crate::model::wire::timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: i64,
    #[serde(default)]
    pub comment: String,
}

/// Silences still in force.
#[utoipa::path(get, path = "/api/v1/silences", tag = "alerting", responses((status = 200, description = "OK", body = Vec<Silence>)))]
async fn list_silences(State(state): Shared) -> Result<axum::Json<Vec<Silence>>, ApiError> {
    let rows: Vec<(i64, String, i64, String, String)> =
        sqlx::query_as("SELECT id, sources, ends_at, comment, created_by FROM silences WHERE ends_at > $1 ORDER BY id")
            .bind(now_ms())
            .fetch_all(state.db.reader())
            .await?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|(id, sources, ends_at, comment, created_by)| Silence {
                id,
                sources: serde_json::from_str(&sources).unwrap_or_default(),
                ends_at,
                comment,
                created_by,
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/silences", tag = "alerting", request_body = NewSilence,
    responses((status = 201, description = "Created", body = Silence), (status = 400, description = "Refused", body = ErrorBody)))]
async fn create_silence(
    State(state): Shared,
    caller: Caller,
    Body(new): Body<NewSilence>,
) -> Result<(StatusCode, axum::Json<Silence>), ApiError> {
    if new.sources.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_silence",
            "sources: at least one pattern (`*` silences everything)",
        ));
    }
    suppress::globs(&new.sources).map_err(|e| ApiError::bad_request("invalid_silence", e))?;
    if new.ends_at <= now_ms() {
        return Err(ApiError::bad_request("invalid_silence", "ends_at is in the past"));
    }
    let mut tx = state.db.writer().begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO silences (sources, ends_at, comment, created_by, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(serde_json::to_string(&new.sources).unwrap_or_default())
    .bind(new.ends_at)
    .bind(&new.comment)
    .bind(caller.actor())
    .bind(now_ms())
    .fetch_one(&mut *tx)
    .await?;
    let silence =
        Silence { id, sources: new.sources, ends_at: new.ends_at, comment: new.comment, created_by: caller.actor() };
    let change = Change {
        actor: &caller.actor(),
        action: "silence.create",
        kind: "silence",
        name: &id.to_string(),
        before: None,
        after: audit::snapshot(&silence),
    };
    audit::record(&mut tx, change).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(silence)))
}

/// End a silence now.
#[utoipa::path(delete, path = "/api/v1/silences/{id}", tag = "alerting", params(("id" = i64, Path)),
    responses((status = 204, description = "Ended"), (status = 404, description = "Not found", body = ErrorBody)))]
async fn delete_silence(State(state): Shared, caller: Caller, Path(id): Path<i64>) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.writer().begin().await?;
    let ended = sqlx::query("UPDATE silences SET ends_at = $2 WHERE id = $1 AND ends_at > $2")
        .bind(id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if ended == 0 {
        return Err(ApiError::not_found(format!("silence {id} not found (or over already)")));
    }
    let change = Change {
        actor: &caller.actor(),
        action: "silence.end",
        kind: "silence",
        name: &id.to_string(),
        before: None,
        after: None,
    };
    audit::record(&mut tx, change).await?;
    tx.commit().await?;
    state.alerting.wake.notify_one();
    Ok(StatusCode::NO_CONTENT)
}
