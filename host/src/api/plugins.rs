//! `/api/v1/plugins`: upload a `.wasm` (raw body or multipart), list, show
//! with the config schema, delete when unused.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{ApiError, AppState, Params, Path, Shared};
use crate::auth::Caller;
use crate::model::PluginRecord;

pub fn routes(max_plugin_bytes: usize) -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_plugins, upload_plugin))
        // Room for the plugin plus multipart framing; the runtime itself
        // refuses anything over its limit with a precise message.
        .layer(DefaultBodyLimit::max(max_plugin_bytes + (64 << 10)))
        .routes(routes!(get_plugin))
        .routes(routes!(get_plugin_version, delete_plugin))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// Must match the name the plugin gives itself, if given.
    name: Option<String>,
    /// Must match the version the plugin gives itself, if given.
    version: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Uploaded {
    #[serde(flatten)]
    pub plugin: PluginRecord,
    /// False when these exact bytes were already stored.
    pub created: bool,
}

/// What an upload carries; as a multipart form, these are its fields.
#[derive(ToSchema)]
pub struct PluginUpload {
    /// The `.wasm` component.
    #[schema(value_type = String, format = Binary)]
    file: Bytes,
    /// Must match the name the plugin gives itself, if given.
    name: Option<String>,
    /// Must match the version the plugin gives itself, if given.
    version: Option<String>,
}

/// Upload a plugin: the `.wasm` as the raw body (`application/wasm` or
/// `application/octet-stream`) or as the `file` field of a multipart form
/// (with optional `name` and `version` fields).
#[utoipa::path(post, path = "/api/v1/plugins", tag = "plugins", params(UploadQuery),
    request_body(content(("application/wasm"), ("application/octet-stream"), (PluginUpload = "multipart/form-data"))),
    responses((status = 201, description = "Created", body = Uploaded), (status = 200, body = Uploaded, description = "Already stored"),
              (status = 400, description = "Refused: the error names what is wrong", body = ErrorBody), (status = 409, description = "Conflicts with what exists", body = ErrorBody), (status = 413, description = "Too large", body = ErrorBody)))]
async fn upload_plugin(
    State(state): Shared,
    caller: Caller,
    Params(query): Params<UploadQuery>,
    request: Request,
) -> Result<(StatusCode, axum::Json<Uploaded>), ApiError> {
    let upload = read_upload(request, query, &state).await?;
    let (plugin, created) = state
        .catalog
        .upload(&state.db, &upload.file, upload.name.as_deref(), upload.version.as_deref(), &caller.actor())
        .await?;
    if created {
        tracing::info!(plugin = %format!("{}@{}", plugin.name, plugin.version), sha256 = %plugin.sha256, actor = %caller.actor(), "plugin uploaded");
    }
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(Uploaded { plugin, created })))
}

async fn read_upload(request: Request, query: UploadQuery, state: &Arc<AppState>) -> Result<PluginUpload, ApiError> {
    let too_large = |e: &dyn std::fmt::Display| {
        let limit = state.catalog.runtime().limits().max_plugin_bytes;
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "plugin_too_large",
            format!("the upload is over the {limit}-byte limit ({e})"),
        )
    };
    let content_type =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if content_type.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(request, state)
            .await
            .map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
        let (mut file, mut name, mut version) = (None, query.name, query.version);
        while let Some(field) = form.next_field().await.map_err(|e| {
            if e.body_text().contains("length limit") {
                too_large(&e.body_text())
            } else {
                ApiError::bad_request("invalid_body", e.body_text())
            }
        })? {
            let field_name = field.name().unwrap_or("").to_string();
            let bytes = field.bytes().await.map_err(|e| too_large(&e.body_text()))?;
            match field_name.as_str() {
                "file" => file = Some(bytes),
                "name" => name = Some(String::from_utf8_lossy(&bytes).into_owned()),
                "version" => version = Some(String::from_utf8_lossy(&bytes).into_owned()),
                other => {
                    return Err(ApiError::bad_request(
                        "invalid_body",
                        format!("unexpected form field {other:?}; send file, name and version"),
                    ));
                }
            }
        }
        let file = file.ok_or_else(|| ApiError::bad_request("invalid_body", "the form has no `file` field"))?;
        return Ok(PluginUpload { file, name, version });
    }
    if !content_type.is_empty() && content_type != "application/wasm" && content_type != "application/octet-stream" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "send the .wasm as application/wasm, application/octet-stream or multipart/form-data, not {content_type}"
            ),
        ));
    }
    let file = Bytes::from_request(request, state).await.map_err(|e| too_large(&e.body_text()))?;
    if file.is_empty() {
        return Err(ApiError::bad_request("invalid_body", "the body is empty: send the .wasm file"));
    }
    Ok(PluginUpload { file, name: query.name, version: query.version })
}

#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins", responses((status = 200, description = "OK", body = Vec<PluginRecord>)))]
async fn list_plugins(State(state): Shared) -> Result<axum::Json<Vec<PluginRecord>>, ApiError> {
    Ok(axum::Json(state.catalog.list(&state.db).await?))
}

/// All versions of a plugin.
#[utoipa::path(get, path = "/api/v1/plugins/{name}", tag = "plugins", params(("name" = String, Path)),
    responses((status = 200, description = "OK", body = Vec<PluginRecord>), (status = 404, description = "Not found", body = ErrorBody)))]
async fn get_plugin(State(state): Shared, Path(name): Path<String>) -> Result<axum::Json<Vec<PluginRecord>>, ApiError> {
    Ok(axum::Json(state.catalog.versions(&state.db, &name).await?))
}

#[utoipa::path(get, path = "/api/v1/plugins/{name}/{version}", tag = "plugins",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 200, description = "OK", body = PluginRecord), (status = 404, description = "Not found", body = ErrorBody)))]
async fn get_plugin_version(
    State(state): Shared,
    Path((name, version)): Path<(String, String)>,
) -> Result<axum::Json<PluginRecord>, ApiError> {
    let versions = state.catalog.versions(&state.db, &name).await?;
    versions
        .into_iter()
        .find(|p| p.version == version)
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found(format!("plugin {name}@{version} not found")))
}

#[utoipa::path(delete, path = "/api/v1/plugins/{name}/{version}", tag = "plugins",
    params(("name" = String, Path), ("version" = String, Path)),
    responses((status = 204, description = "Done"), (status = 404, description = "Not found", body = ErrorBody), (status = 409, body = ErrorBody, description = "Built-in, or used by checks")))]
async fn delete_plugin(
    State(state): Shared,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.catalog.delete(&state.db, &name, &version, &caller.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}
