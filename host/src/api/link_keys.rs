//! `/api/v1/link-keys` (admin): rotating the key that signs response links.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{ApiError, AppState, Body, Shared};
use crate::alerting::links::{Rotation, Signer};
use crate::auth::Caller;
use crate::model::Role;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(rotate_link_key))
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RotateRequest {
    /// Drop every older key at once: links already sent stop working (for
    /// a key that leaked). Without it, older keys stay until their links
    /// have expired.
    pub retire: bool,
}

/// Add a link-signing key that signs every link from now on.
#[utoipa::path(post, path = "/api/v1/link-keys/rotate", tag = "alerting", request_body = RotateRequest,
    responses((status = 200, description = "Rotated", body = Rotation),
              (status = 403, description = "The token's role does not allow this", body = ErrorBody),
              (status = 409, description = "Another rotation ran at the same time", body = ErrorBody)))]
async fn rotate_link_key(
    State(state): Shared,
    caller: Caller,
    Body(request): Body<RotateRequest>,
) -> Result<axum::Json<Rotation>, ApiError> {
    caller.require(Role::Admin)?;
    let rotation = Signer::rotate(&state.db, state.alerting.rules.link_ttl, request.retire, &caller.actor()).await?;
    Ok(axum::Json(rotation))
}
