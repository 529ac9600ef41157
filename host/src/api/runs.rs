//! Runs: a check's history (paginated, by time range), the latest run of
//! every check, and the hourly series for graphs.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{ApiError, AppState, Params, Path, Shared};
use crate::model::wire::parse_time;
use crate::model::{Run, RunHour, now_ms};
use crate::store::{self, rollup};

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(list_runs)).routes(routes!(latest_runs)).routes(routes!(series))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// RFC 3339; default: the beginning.
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339, exclusive; default: now.
    #[param(format = DateTime)]
    to: Option<String>,
    /// The previous page's `next`.
    before: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<i64>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RunPage {
    /// Newest first.
    pub runs: Vec<Run>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

fn time_param(name: &str, value: Option<&str>, default: i64) -> Result<i64, ApiError> {
    match value {
        None => Ok(default),
        Some(v) => parse_time(v).map_err(|e| ApiError::bad_request("invalid_query", format!("{name}: {e}"))),
    }
}

#[utoipa::path(get, path = "/api/v1/checks/{name}/runs", tag = "runs", params(("name" = String, Path), RunsQuery),
    responses((status = 200, description = "OK", body = RunPage), (status = 400, description = "Refused: the error names what is wrong", body = ErrorBody), (status = 404, description = "Not found", body = ErrorBody)))]
async fn list_runs(
    State(state): Shared,
    Path(name): Path<String>,
    Params(q): Params<RunsQuery>,
) -> Result<axum::Json<RunPage>, ApiError> {
    let from = time_param("from", q.from.as_deref(), 0)?;
    let to = time_param("to", q.to.as_deref(), i64::MAX)?;
    let limit = super::page_limit(q.limit, 100, super::MAX_PAGE)?;
    let before = match q.before.as_deref() {
        None => None,
        Some(cursor) => Some(parse_cursor(cursor).ok_or_else(|| {
            ApiError::bad_request("invalid_query", format!("before {cursor:?}: pass the `next` of the previous page"))
        })?),
    };
    let check = store::checks::get(&state.db, &name).await?;
    let mut runs = store::runs::list(&state.db, check.id, from, to, before, limit + 1).await?;
    let next = if runs.len() as i64 > limit {
        runs.truncate(limit as usize);
        runs.last().map(|r| format!("{}.{}", r.slot, r.seq))
    } else {
        None
    };
    Ok(axum::Json(RunPage { runs, next }))
}

fn parse_cursor(cursor: &str) -> Option<(i64, i64)> {
    let (slot, seq) = cursor.split_once('.')?;
    Some((slot.parse().ok()?, seq.parse().ok()?))
}

/// The run of the newest slot of every check.
#[utoipa::path(get, path = "/api/v1/runs/latest", tag = "runs", responses((status = 200, description = "OK", body = Vec<Run>)))]
async fn latest_runs(State(state): Shared) -> Result<axum::Json<Vec<Run>>, ApiError> {
    Ok(axum::Json(store::runs::latest(&state.db).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// RFC 3339; default: 24 hours ago.
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339, exclusive; default: now.
    #[param(format = DateTime)]
    to: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Series {
    pub check: String,
    /// One entry per hour that had runs.
    pub hours: Vec<RunHour>,
    /// Over the whole range.
    pub availability: Option<f64>,
}

/// Hourly aggregates (runs by status, availability, response times).
#[utoipa::path(get, path = "/api/v1/checks/{name}/series", tag = "runs", params(("name" = String, Path), SeriesQuery),
    responses((status = 200, description = "OK", body = Series), (status = 404, description = "Not found", body = ErrorBody)))]
async fn series(
    State(state): Shared,
    Path(name): Path<String>,
    Params(q): Params<SeriesQuery>,
) -> Result<axum::Json<Series>, ApiError> {
    let now = now_ms();
    let from = time_param("from", q.from.as_deref(), now - 24 * rollup::HOUR_MS)?;
    let to = time_param("to", q.to.as_deref(), now)?;
    let check = store::checks::get(&state.db, &name).await?;
    let hours = rollup::series(&state.db, check.id, from, to).await?;
    let good: i64 = hours.iter().map(|h| h.up + h.degraded).sum();
    let judged: i64 = hours.iter().map(|h| h.runs - h.errors).sum();
    Ok(axum::Json(Series { check: check.spec.name, hours, availability: rollup::availability(good, judged) }))
}
