//! `/api/v1/tokens` (admin): create, list, revoke.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{ApiError, AppState, Body, Path, Shared};
use crate::auth::{self, Caller};
use crate::model::{NewToken, Role, TokenInfo};
use crate::store;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(list_tokens, create_token)).routes(routes!(revoke_token))
}

/// The longest token name, in bytes.
pub(super) const MAX_NAME: usize = 100;

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// What the token is for, shown in the audit trail.
    pub name: String,
    pub role: Role,
}

/// Create a token. Its secret is in the response and nowhere else.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = TokenRequest,
    responses((status = 201, description = "Created", body = NewToken), (status = 400, description = "Refused: the error names what is wrong", body = ErrorBody), (status = 403, description = "The token's role does not allow this", body = ErrorBody)))]
async fn create_token(
    State(state): Shared,
    caller: Caller,
    Body(request): Body<TokenRequest>,
) -> Result<(StatusCode, axum::Json<NewToken>), ApiError> {
    let name = request.name.trim();
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(ApiError::bad_request("invalid_token", format!("name: 1 to {MAX_NAME} characters")));
    }
    let (token, hash) = auth::mint(name, request.role, &caller.actor());
    let mut tx = state.db.writer().begin().await?;
    store::tokens::create(&mut tx, &token.info, &hash).await?;
    tx.commit().await?;
    tracing::info!(token = %token.info.id, role = %token.info.role, actor = %caller.actor(), "token created");
    Ok((StatusCode::CREATED, axum::Json(token)))
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", responses((status = 200, description = "OK", body = Vec<TokenInfo>), (status = 403, description = "The token's role does not allow this", body = ErrorBody)))]
async fn list_tokens(State(state): Shared) -> Result<axum::Json<Vec<TokenInfo>>, ApiError> {
    Ok(axum::Json(store::tokens::list(&state.db).await?))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = TokenInfo), (status = 404, description = "Not found", body = ErrorBody)))]
async fn revoke_token(
    State(state): Shared,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<TokenInfo>, ApiError> {
    let mut tx = state.db.writer().begin().await?;
    let token = store::tokens::revoke(&mut tx, &id, &caller.actor()).await?;
    tx.commit().await?;
    tracing::info!(token = %id, actor = %caller.actor(), "token revoked");
    Ok(axum::Json(token))
}
