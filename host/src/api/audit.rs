//! `/api/v1/audit` (admin): the audit trail, newest first, or the change
//! feed in order with `after`.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{ApiError, AppState, Params, Shared};
use crate::model::AuditEntry;
use crate::store;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries after this sequence number, oldest first (the change feed).
    after: Option<i64>,
    /// Entries before this sequence number, newest first.
    before: Option<i64>,
    /// 1 to 1000 (default 100).
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "OK", body = Vec<AuditEntry>), (status = 403, description = "The token's role does not allow this", body = ErrorBody)))]
async fn list_audit(
    State(state): Shared,
    Params(q): Params<AuditQuery>,
) -> Result<axum::Json<Vec<AuditEntry>>, ApiError> {
    let limit = super::page_limit(q.limit, 100, super::MAX_PAGE)?;
    let entries = match (q.after, q.before) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("invalid_query", "give `after` or `before`, not both")),
        (Some(after), None) => store::audit::list(&state.db, after, limit).await?,
        (None, before) => store::audit::recent(&state.db, before, limit).await?,
    };
    Ok(axum::Json(entries))
}
